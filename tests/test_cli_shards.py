"""`leadscore features` and `leadscore score` in lead-hash shards give exactly the unsharded output, row order
included: on tables stored as directories of part files, with exact duplicate events spread across part
files, timestamps in several UTC offsets and no dataset.json (the snapshot comes from the whole data)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.features.loading import load_dataset
from leadscore.features.shards import auto_shards, shard_of
from support import REPO, copy_with_bad_events
from typer.testing import CliRunner

from leadscore.cli.main import app

AS_OF = "2026-03-01T00:00:00Z"


@pytest.fixture(scope="module")
def parts_dir(demo_dir, tmp_path_factory):
    """The demo data as part files: leads in 2 parts, events in 3 with 400 exact duplicates of part 1's
    rows in part 3, a tenth of the event times written with a +05:30 offset; no dataset.json."""
    out = tmp_path_factory.mktemp("parts") / "data"
    (out / "leads").mkdir(parents=True)
    (out / "events.parquet").mkdir()
    leads = pd.read_parquet(demo_dir / "leads.parquet")
    events = pd.read_parquet(demo_dir / "events.parquet")
    rng = np.random.default_rng(0)
    shifted = rng.random(len(events)) < 0.1
    local = pd.to_datetime(events.loc[shifted, S.TIMESTAMP], utc=True).dt.tz_convert("Asia/Kolkata")
    events.loc[shifted, S.TIMESTAMP] = local.map(lambda t: t.isoformat())
    half = len(leads) // 2
    leads.iloc[:half].to_parquet(out / "leads" / "part-0.parquet", index=False)
    leads.iloc[half:].to_parquet(out / "leads" / "part-1.parquet", index=False)
    third = len(events) // 3
    parts = [events.iloc[:third], events.iloc[third : 2 * third], events.iloc[2 * third :]]
    parts[2] = pd.concat([parts[2], parts[0].sample(400, random_state=1)], ignore_index=True)
    for i, p in enumerate(parts):
        p.to_parquet(out / "events.parquet" / f"part-{i:05d}.parquet", index=False)
    (out / "events.parquet" / "_SUCCESS").write_text("")
    shutil.copy(demo_dir / "outcomes.parquet", out / "outcomes.parquet")
    return out


def _cli(*args: str, env: dict | None = None) -> str:
    done = CliRunner().invoke(app, list(args), env=env)
    assert done.exit_code == 0, done.output
    return done.output


def _features(data: Path, out: Path, shards: int) -> str:
    """`leadscore features` of `data` as of AS_OF into `out`, in `shards` shards."""
    return _cli("features", "--data", str(data), "--as-of", AS_OF, "--out", str(out), "--shards", str(shards))


def _removed(notes: tuple[str, ...]) -> int:
    return sum(int(m.group(1)) for n in notes if (m := re.match(r"removed (\d+) exact duplicate", n)))


def test_features_in_shards_equal_the_unsharded_features(parts_dir, demo_dataset, tmp_path):
    # given data whose duplicates the loader removes (so the test covers its rule)
    dataset = load_dataset(parts_dir)
    assert _removed(dataset.notes) == _removed(demo_dataset.notes) + 400
    # when features are written all at once and in 1, 3 and 7 shards
    out = {}
    for n in (1, 3, 7):
        _features(parts_dir, tmp_path / f"{n}.parquet", n)
        out[n] = pd.read_parquet(tmp_path / f"{n}.parquet")
    _features(parts_dir, tmp_path / "3.csv", 3)
    _features(parts_dir, tmp_path / "1.csv", 1)
    # then every lead created before the moment is there once, in the leads' order, with the same values
    created = pd.to_datetime(dataset.leads[S.CREATED_AT], utc=True)
    expected_ids = dataset.leads.loc[created < pd.Timestamp(AS_OF), S.LEAD_ID].tolist()
    assert out[1][S.LEAD_ID].tolist() == expected_ids and len(expected_ids) > 1000
    pd.testing.assert_frame_equal(out[3], out[1])
    pd.testing.assert_frame_equal(out[7], out[1])
    assert (tmp_path / "3.csv").read_bytes() == (tmp_path / "1.csv").read_bytes()


def test_more_shards_than_leads_leaves_empty_shards_harmless(demo_dir, tmp_path):
    # given five leads with their events and outcomes
    small = tmp_path / "small"
    small.mkdir()
    leads = pd.read_parquet(demo_dir / "leads.parquet").head(5)
    keep = leads[S.LEAD_ID]
    for table in ("events", "outcomes"):
        df = pd.read_parquet(demo_dir / f"{table}.parquet")
        df[df[S.LEAD_ID].isin(keep)].to_parquet(small / f"{table}.parquet", index=False)
    leads.to_parquet(small / "leads.parquet", index=False)
    shutil.copy(demo_dir / "dataset.json", small / "dataset.json")
    assert len(set(shard_of(keep.to_numpy(dtype=object), 16))) < 16  # some shards are empty
    # when features are written in 16 shards and at once
    for n in (1, 16):
        _features(small, tmp_path / f"{n}.parquet", n)
    # then the outputs are the same
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "16.parquet"), pd.read_parquet(tmp_path / "1.parquet")
    )


def test_scores_in_shards_equal_the_unsharded_scores(trained, parts_dir, tmp_path):
    # given the champion and the part-file data without dataset.json (the moment is the data's last time)
    env = {"MLFLOW_TRACKING_URI": trained.uri}
    # when every lead is scored at once and in 4 shards, as of the default moment
    for n in (1, 4):
        _cli(
            "score",
            "--data",
            str(parts_dir),
            "--out",
            str(tmp_path / f"{n}.parquet"),
            "--shards",
            str(n),
            env=env,
        )
    _cli("score", "--data", str(parts_dir), "--out", str(tmp_path / "4.csv"), "--shards", "4", env=env)
    _cli("score", "--data", str(parts_dir), "--out", str(tmp_path / "1.csv"), "--shards", "1", env=env)
    # then scores, grades, handoff decisions and reasons are the same, row for row
    one, four = pd.read_parquet(tmp_path / "1.parquet"), pd.read_parquet(tmp_path / "4.parquet")
    assert len(one) > 1000 and one["as_of"].nunique() == 1
    assert one["as_of"].iloc[0] == load_dataset(parts_dir).snapshot_at
    pd.testing.assert_frame_equal(four, one)
    assert (tmp_path / "4.csv").read_bytes() == (tmp_path / "1.csv").read_bytes()


def test_a_problem_in_a_shard_names_the_source_file_and_row(demo_dir, tmp_path):
    # given bad values at known rows of the events file
    bad = tmp_path / "bad"
    events = copy_with_bad_events(demo_dir, bad)
    # when features are written in 3 shards
    done = CliRunner().invoke(
        app,
        [
            "features",
            "--data",
            str(bad),
            "--as-of",
            AS_OF,
            "--out",
            str(tmp_path / "x.parquet"),
            "--shards",
            "3",
        ],
    )
    # then the command fails naming the file and row of the source, not of a shard, and writes nothing
    assert done.exit_code == 2
    err = "".join(done.output.split())  # the console wraps long paths anywhere
    s5, s9 = shard_of(events[S.LEAD_ID].iloc[[5, 9]].to_numpy(dtype=object), 3)
    # (shards are read in order: the problems of the first shard with any are reported)
    if s5 <= s9:
        assert "".join(f"{bad / 'events.parquet'}, row 6, column 'type': 'email_open' is not".split()) in err
    if s9 <= s5:
        assert "".join(f"{bad / 'events.parquet'}, row 10, column 'timestamp': not an ISO".split()) in err
    assert "shard-" not in err
    assert not (tmp_path / "x.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("leadscore-shards-")]


def test_automatic_shards_follow_the_memory_rule(demo_dir):
    # the rule: (events x 100 B + leads x 700 B) over the budget less 600 MiB, rounded up
    events = len(pd.read_parquet(demo_dir / "events.parquet", columns=[S.LEAD_ID]))
    leads = len(pd.read_parquet(demo_dir / "leads.parquet", columns=[S.LEAD_ID]))
    assert auto_shards(demo_dir) == 1
    budget_gb = (600 * 2**20 + (events * 100 + leads * 700) / 2.5) / 1e9
    assert auto_shards(demo_dir, budget_gb) == 3


def test_the_docs_state_the_codes_memory_rule():
    from leadscore.features import shards

    from leadscore.cli.sharding import DEFAULT_BUDGET_GB as CLI_BUDGET_GB

    doc = " ".join((REPO / "docs" / "scale.md").read_text().split())
    rule = (
        f"N = ceil((events x {shards.BYTES_PER_EVENT} B + leads x {shards.BYTES_PER_LEAD} B) / "
        f"(budget - {shards.BASE_BYTES // 2**20} MiB)), "
        f"budget = --memory-budget ({shards.DEFAULT_BUDGET_GB:g} GB)"
    )
    assert rule in doc
    assert CLI_BUDGET_GB == shards.DEFAULT_BUDGET_GB  # the option's default, repeated to keep --help fast
