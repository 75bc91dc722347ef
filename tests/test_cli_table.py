"""`leadscore table` with a time-ordered holdout warns when the holdout's positive rate moved away from the
calibration slice's beyond noise (and says to recalibrate); with a random split it does not look."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli.main import app

N = 3000


def _export(path, jump: float):
    """A flat export over 2025: two columns that predict the label, and from the last 20 % of the year
    (the time split's holdout) the log-odds of every lead raised by `jump`."""
    rng = np.random.default_rng(3)
    t = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 365, N)), unit="D")
    x = rng.normal(size=N)
    channel = rng.choice(["web", "event", "partner"], N)
    logit = (
        -2.2 + 1.2 * x + np.where(channel == "event", 0.6, 0.0) + np.where(np.arange(N) >= 0.8 * N, jump, 0.0)
    )
    y = (rng.uniform(size=N) < 1 / (1 + np.exp(-logit))).astype(int)
    pd.DataFrame(
        {
            "id": [f"P{i}" for i in range(N)],
            "signup": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "engagement": x,
            "channel": channel,
            "converted": y,
        }
    ).to_csv(path, index=False)
    return path


def _table(path, split: str):
    return CliRunner().invoke(
        app,
        [
            "table",
            str(path),
            "--label",
            "converted",
            "--id",
            "id",
            "--split",
            split,
            "--model",
            "scorecard",
            "--no-register",
        ],
        catch_exceptions=False,
    )


@pytest.mark.parametrize("split", ["time:signup", "ordered"])
def test_a_moved_base_rate_is_warned_with_a_time_split(tmp_path, mlflow_uri, split):
    # given an export whose newest fifth converts about twice as often (log-odds + 0.9)
    done = _table(_export(tmp_path / "moved.csv", 0.9), split)
    # then training warns that the holdout's rate differs from the calibration slice's, and what to do
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "warning: the holdout's positive rate" in text and "Recalibrate on recent data" in text


def test_no_warning_without_a_move_or_with_a_random_split(tmp_path, mlflow_uri):
    # without a move: a time split finds the rates within noise
    steady = _table(_export(tmp_path / "steady.csv", 0.0), "time:signup")
    assert steady.exit_code == 0, steady.output
    # (whitespace normalised: the console wraps lines, which could split the phrase the check looks for)
    assert "positive rate" not in " ".join(steady.output.split())
    # with the move but a stratified (random) split: the holdout is not later in time, nothing to warn about
    stratified = _table(_export(tmp_path / "moved.csv", 0.9), "stratified")
    assert stratified.exit_code == 0, stratified.output
    assert "positive rate" not in " ".join(stratified.output.split())
