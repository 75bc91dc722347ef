"""Commands as a user runs them: `leadscore features` proves point-in-time correctness on demo data, and the
MLproject's entry point trains through `mlflow run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support import REPO, copy_with_bad_events, run_cli


def test_features_command_ignores_everything_at_or_after_as_of(demo_dir, tmp_path):
    # given the demo data and a copy with extra events and outcomes stamped at and after the as-of moment
    as_of = "2026-01-15T00:00:00Z"
    future = tmp_path / "future"
    shutil.copytree(demo_dir, future)
    events = pd.read_parquet(demo_dir / "events.parquet")
    leads = events["lead_id"].drop_duplicates().head(300)
    extra = pd.DataFrame({"lead_id": leads, "type": "demo_requested", "timestamp": as_of, "page": None})
    later = extra.assign(timestamp="2026-01-20T10:00:00+05:00", type="web_visit", page="pricing")
    pd.concat([events, extra, later], ignore_index=True).to_parquet(future / "events.parquet", index=False)
    outcomes = pd.read_parquet(demo_dir / "outcomes.parquet")
    pd.concat(
        [outcomes, pd.DataFrame({"lead_id": leads, "outcome": "qualified", "at": as_of, "reason": None})],
        ignore_index=True,
    ).to_parquet(future / "outcomes.parquet", index=False)
    # when features are written as of that moment from both
    for src, out in ((demo_dir, "a.parquet"), (future, "b.parquet")):
        done = run_cli("features", "--data", str(src), "--as-of", as_of, "--out", str(tmp_path / out))
        assert done.returncode == 0, done.stderr[-2000:]
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    # then every lead created before the moment is there, and no value differs
    assert len(a) > 1000 and a["lead_id"].is_unique
    pd.testing.assert_frame_equal(a, b)


def test_bad_data_is_reported_with_file_row_column_and_reason(demo_dir, tmp_path):
    bad = tmp_path / "bad"
    copy_with_bad_events(demo_dir, bad)
    done = run_cli(
        "features", "--data", str(bad), "--as-of", "2026-01-01", "--out", str(tmp_path / "x.parquet")
    )
    assert done.returncode == 2
    err = " ".join(done.stderr.split())
    assert "row 6, column 'type': 'email_open' is not one of" in err
    assert "row 10, column 'timestamp': not an ISO-8601 timestamp: 'yesterday'" in err
    assert not (tmp_path / "x.parquet").exists()


def test_mlproject_train_entry_point(tmp_path):
    # given small demo data and the project's venv on PATH (as after `source .venv/bin/activate`),
    # when the MLproject's train entry point runs through `mlflow run`
    bindir = str(Path(sys.executable).parent)
    # (mlflow.set_experiment in earlier tests leaves MLFLOW_EXPERIMENT_ID of the session's store behind)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
    }
    assert (
        run_cli(
            "demo-data", "--leads", "1500", "--seed", "2", "--out", str(tmp_path / "d"), env=env
        ).returncode
        == 0
    )
    mlflow = Path(sys.executable).parent / "mlflow"
    done = subprocess.run(
        [
            str(mlflow),
            "run",
            str(REPO),
            "-e",
            "train",
            "--env-manager",
            "local",
            "-P",
            f"data={tmp_path / 'd'}",
            "-P",
            "model=scorecard",
            "-P",
            f"metrics_out={tmp_path / 'm.json'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    # then it trains, logs and registers, and writes the metrics file
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "m.json").exists()
    assert "succeeded" in done.stderr


def test_demo_data_drift_options(tmp_path):
    import json

    # when demo data is generated with --drift, and with --drift-at a moment without an offset (UTC)
    assert run_cli("demo-data", "--leads", "200", "--drift", "--out", str(tmp_path / "a")).returncode == 0
    assert (
        run_cli(
            "demo-data", "--leads", "200", "--drift-at", "2026-03-01", "--out", str(tmp_path / "b")
        ).returncode
        == 0
    )
    # then params.json records the documented default moment, and the given one
    params = [json.loads((tmp_path / d / "ground_truth" / "params.json").read_text()) for d in ("a", "b")]
    assert params[0]["drift"]["at"] == "2026-01-01T00:00:00+00:00"
    assert params[1]["drift"]["at"] == "2026-03-01T00:00:00+00:00"
    # and a moment that is not a time is refused, naming the option
    bad = run_cli("demo-data", "--leads", "200", "--drift-at", "march", "--out", str(tmp_path / "c"))
    assert bad.returncode == 2 and "--drift-at" in bad.stderr


def test_dataset_json_snapshot_at_without_offset_is_utc_and_a_bad_one_is_named(demo_dir, tmp_path):
    import json

    from leadscore.features.loading import DataError, load_dataset

    # given the demo data with its dataset.json's snapshot_at written without an offset
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    meta = json.loads((demo_dir / "dataset.json").read_text())
    utc = pd.Timestamp(meta["snapshot_at"]).tz_convert("UTC")
    (data / "dataset.json").write_text(json.dumps({**meta, "snapshot_at": utc.strftime("%Y-%m-%dT%H:%M:%S")}))
    # when it is loaded, then the time is UTC, as every time without an offset in the data
    assert load_dataset(data).snapshot_at == utc
    # and a snapshot_at that is not a time is a data problem naming the file and the field
    (data / "dataset.json").write_text(json.dumps({**meta, "snapshot_at": "last friday"}))
    with pytest.raises(DataError, match=r"dataset\.json, column 'snapshot_at': not an ISO-8601"):
        load_dataset(data)
