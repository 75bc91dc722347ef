"""Batch scoring (`leadscore score`) gives every lead the API's score and reasons, and writes a file."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.features.frames import feature_frame
from leadscore.features.live import lead_features, to_ms
from leadscore.model.batch import lead_rows, score_dataset, score_table
from leadscore.model.reason_groups import MIN_ABS_IMPACT, groups, pick_reasons
from leadscore.model.reasons import top_reasons
from support import api_lead
from typer.testing import CliRunner

TOP = 5
N_SAMPLE = 150


@pytest.fixture(scope="module")
def as_of(demo_dataset):
    # a moment inside the data, so that some leads are not created yet and events after it exist
    created = demo_dataset.leads[S.CREATED_AT]
    return (created.min() + (created.max() - created.min()) * 0.8).floor("s")


def _check_equal_to_api(model, dataset, batch: pd.DataFrame, lead_ids, as_of: pd.Timestamp) -> None:
    leads = [api_lead(dataset, lid) for lid in lead_ids]
    values = lead_features(leads, [to_ms(as_of.to_pydatetime())] * len(leads))
    api = model.results(values, list(lead_ids))
    got = batch.set_index(S.LEAD_ID).loc[list(lead_ids)]
    n_reasons = 0
    for r, (_, row) in zip(api, got.iterrows(), strict=False):
        assert row["probability"] == pytest.approx(r["probability"], abs=1e-9), r["lead_id"]
        assert (row["score"], row["grade"], bool(row["qualified"])) == (
            r["score"],
            r["grade"],
            r["qualified"],
        )
        assert (row["insight"] if isinstance(row["insight"], str) else None) == r["insight"]
        pos = [x for x in r["reasons"] if x["impact"] > 0]
        neg = [x for x in r["reasons"] if x["impact"] < 0]
        for side, expected in (("pos", pos), ("neg", neg)):
            for k in range(TOP):
                feature = row[f"{side}_{k + 1}_feature"]
                if k < len(expected):
                    e = expected[k]
                    assert (feature, int(row[f"{side}_{k + 1}_points"]), row[f"{side}_{k + 1}_text"]) == (
                        e["feature"],
                        e["points"],
                        e["text"],
                    ), (r["lead_id"], side, k)
                    n_reasons += 1
                else:  # an empty slot is null, not a made-up reason
                    assert pd.isna(feature) and pd.isna(row[f"{side}_{k + 1}_text"])
    assert n_reasons > len(api)  # the comparison really covered reasons


@pytest.mark.parametrize("family", ["scorecard", "boosted"])
def test_batch_scores_and_reasons_equal_the_api(
    family, trained, boosted_model, demo_dataset, as_of, tmp_path
):
    # given a registered scorecard or a boosted model, and a moment inside the data
    model = trained.result.model if family == "scorecard" else boosted_model
    assert model.family == family
    out = tmp_path / "scores.parquet"
    # when every lead is scored in batch, in several chunks
    summary = score_dataset(demo_dataset, model, out, as_of, top_n=TOP, chunk_leads=1500)
    batch = pd.read_parquet(out)
    # then there is one row per lead created before the moment, with that moment
    expected_ids = demo_dataset.leads.loc[demo_dataset.leads[S.CREATED_AT] < as_of, S.LEAD_ID]
    assert summary.n_rows == len(batch) == len(expected_ids) < len(demo_dataset.leads)
    assert list(batch[S.LEAD_ID]) == list(expected_ids)
    assert (batch["as_of"] == as_of).all()
    # and sampled leads get exactly what the API (live features + ScoringModel.results) returns
    sample = expected_ids.sample(N_SAMPLE, random_state=3).to_numpy()
    _check_equal_to_api(model, demo_dataset, batch, sample, as_of)


def test_top_reason_selection_breaks_ties_like_the_api():
    # given contributions full of ties (few distinct values), as coarse scorecards produce, over features
    # that form reason groups (a channel over its 7/30/90-day windows) and single features
    from leadscore.features import catalog
    from leadscore.model.encoding import Encoder

    names = tuple(f.name for f in catalog.FEATURES if f.kind == "numeric")[:16]
    enc = Encoder(features=names, categorical=(), vocab={})
    rng = np.random.default_rng(0)
    C = rng.integers(-3, 4, size=(400, len(names))).astype(float) * 0.05
    C[:50] = 0.05  # rows where every feature ties
    # when the top reasons are picked for a whole chunk and for a request's few rows
    _, member, impact, ok = pick_reasons(C, names, 4)
    listed = top_reasons(C, np.zeros_like(C), enc, top_n=4)
    few = top_reasons(C[:7], np.zeros_like(C[:7]), enc, top_n=4)  # the API's few-rows path
    # then they are the ones a stable sort picks, in the same order and with the same members and impacts
    # as one row at a time with a plain loop (the reference below)
    for i in range(len(C)):
        expected = _reference_reasons(C[i], names, 4)
        got = [(names[member[i, k]], impact[i, k]) for k in np.flatnonzero(ok[i])]
        assert got == expected, i
        assert [(r["feature"], r["impact"]) for r in listed[i]] == [(f, round(x, 6)) for f, x in expected], i
        if i < len(few):
            assert few[i] == listed[i]
    # and with fewer reason groups than reasons asked for, the missing slots stay empty
    two = names[:2]
    _, member, impact, ok = pick_reasons(C[:, :2], two, 4)
    for i in range(len(C)):
        assert [(two[member[i, k]], impact[i, k]) for k in np.flatnonzero(ok[i])] == _reference_reasons(
            C[i, :2], two, 4
        )


def _reference_reasons(contrib: np.ndarray, names: tuple[str, ...], top_n: int) -> list[tuple[str, float]]:
    """(feature, impact) of one row's reasons, the obvious way: group sums by np.add.at in feature order,
    a stable sort, the first strongest member of each group."""
    _, index = groups(names)
    G = np.zeros(int(index.max()) + 1)
    np.add.at(G, index, contrib)
    order = np.argsort(-G, kind="stable")
    chosen = [g for g in order[:top_n] if G[g] > MIN_ABS_IMPACT] + [
        g for g in order[::-1][:top_n] if G[g] < -MIN_ABS_IMPACT
    ]
    out = []
    for g in chosen:
        members = np.flatnonzero(index == g)
        out.append((names[int(members[np.argmax(np.sign(G[g]) * contrib[members])])], float(G[g])))
    return out


def test_feature_table_file_scores_like_the_dataset(trained, demo_dataset, as_of, tmp_path):
    # given the feature table `leadscore features` writes, as a file
    rows = lead_rows(demo_dataset, as_of)
    table = feature_frame(demo_dataset, rows)
    table.insert(0, "as_of", rows["as_of"].to_numpy())
    table.insert(0, S.LEAD_ID, rows[S.LEAD_ID].to_numpy())
    features_file = tmp_path / "features.parquet"
    table.to_parquet(features_file, index=False)
    model = trained.result.model
    # when it is scored as a file and the dataset is scored directly
    score_table(features_file, model, tmp_path / "a.csv", chunk_rows=1000)
    score_dataset(demo_dataset, model, tmp_path / "b.csv", as_of)
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    # then both give the same scores and reasons
    pd.testing.assert_frame_equal(a, b)


def _env(trained) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": trained.uri}


def test_cli_writes_scores_with_reasons(trained, demo_dir, demo_dataset, tmp_path):
    # given a champion in the registry and a dataset directory
    out = tmp_path / "out" / "scores.csv"
    # when `leadscore score` runs as a real process
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadscore",
            "score",
            "--data",
            str(demo_dir),
            "--out",
            str(out),
            "--top",
            "3",
        ],
        env=_env(trained),
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then it succeeds and writes one row per lead as of the snapshot, with 3 + 3 reason slots
    assert proc.returncode == 0, proc.stderr
    assert "scored" in proc.stderr and "version 1" in proc.stderr
    df = pd.read_csv(out)
    assert len(df) == int((demo_dataset.leads[S.CREATED_AT] < demo_dataset.snapshot_at).sum())
    assert {
        "lead_id",
        "as_of",
        "probability",
        "score",
        "grade",
        "qualified",
        "pos_3_text",
        "neg_3_points",
    } <= set(df)
    assert "pos_4_text" not in df
    assert df["probability"].between(0, 1).all() and set(df["grade"]) <= set("ABCD")
    assert df["pos_1_text"].notna().mean() > 0.9


@pytest.mark.parametrize(
    "make_data, expected",
    [
        (lambda tmp: tmp / "nowhere", "does not exist"),
        (lambda tmp: tmp, "expected leads.parquet or leads.csv"),
        (lambda tmp: (tmp / "notes.txt").write_text("x") and tmp / "notes.txt", "neither a directory nor"),
        (
            lambda tmp: (tmp / "f.csv").write_text("lead_id,source\nL1,web\n") and tmp / "f.csv",
            "missing column(s)",
        ),
    ],
)
def test_bad_data_gets_a_clear_error(make_data, expected, trained, tmp_path):
    # given a --data that is missing, an empty directory, an unknown kind of file or a table without features
    from leadscore.cli.main import app

    data = make_data(tmp_path)
    # when scoring it
    result = CliRunner().invoke(
        app,
        ["score", "--data", str(data), "--out", str(tmp_path / "s.parquet")],
        env={"MLFLOW_TRACKING_URI": trained.uri},
    )
    # then the command fails with exit code 2 and says what is wrong, without a traceback
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "s.parquet").exists()
