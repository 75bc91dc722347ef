"""bench/loop.py, the simulation of the learning loop, in two tiny rounds so it cannot rot: each arm's
champion scores the month's leads through the service's scoring path (score log at the scoring moment),
sales give verdicts only to the leads handed over, `retrain` registers a new version from the store, and
each round is judged on the next month's leads. Real MLflow registry (SQLite in a temporary folder), real
SQLite stores."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from leadscore.settings import get_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import loop  # noqa: E402


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # run() moves into its work folder; this puts the process back afterwards
        mp.setenv("MLFLOW_TRACKING_URI", before)  # run() points it at its own registry; restored after
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        get_settings.cache_clear()
        cfg = loop.LoopConfig(leads=15_000, rounds=2, history_months=9, arms=("a", "b"), out=tmp / "loop")
        try:
            summary = loop.run(cfg)
            yield cfg, summary, _read(cfg)
        finally:
            mlflow.set_tracking_uri(before)
            get_settings.cache_clear()


def _read(cfg) -> dict:
    """Each arm's store: score log, feedback and hand-over events; and its registered versions."""
    out = {}
    for arm in cfg.arms:
        engine = sa.create_engine(f"sqlite:///{cfg.out / 'work' / f'store-{arm}.db'}")
        with engine.connect() as conn:
            out[arm] = {
                name: pd.read_sql(q, conn)
                for name, q in {
                    "scores": "SELECT lead_id, as_of, model_version, qualified, explored, propensity "
                    "FROM score_log",
                    "feedback": "SELECT lead_id, outcome, at, source FROM feedback",
                    "handed": "SELECT lead_id, timestamp FROM events WHERE type = 'handed_to_sales'",
                    "leads": "SELECT lead_id, created_at FROM leads",
                }.items()
            }
        engine.dispose()
        mlflow.set_tracking_uri(f"sqlite:///{cfg.out / 'work' / 'mlflow.db'}")
        out[arm]["versions"] = sorted(
            int(v.version)
            for v in MlflowClient().search_model_versions(
                f"name = '{loop.model_name(next(a for a in loop.ARMS if a.key == arm))}'"
            )
        )
    return out


def test_every_round_retrains_and_is_judged_on_the_next_month(two_rounds):
    cfg, summary, stores = two_rounds
    rows = pd.DataFrame(summary["rows"])
    assert sorted(map(tuple, rows[["arm", "round"]].to_numpy())) == [(a, r) for a in "ab" for r in (1, 2)]
    assert set(rows["retrain"]) <= {"promoted", "kept"}, rows[["arm", "round", "retrain", "why"]]
    assert ((rows["roc_auc"] > 0.6) & (rows["roc_auc"] <= 1) & (rows["ece"] >= 0)).all()
    for arm in cfg.arms:
        # the initial champion and one version registered by `retrain` in each round
        assert stores[arm]["versions"] == [1, 2, 3]
    assert (cfg.out / "loop.png").stat().st_size > 10_000


def test_leads_are_scored_at_the_scoring_moment_by_the_champion_in_force(two_rounds):
    cfg, summary, stores = two_rounds
    for arm in cfg.arms:
        s, leads = stores[arm]["scores"], stores[arm]["leads"].set_index("lead_id")
        created = pd.to_datetime(leads.loc[s["lead_id"], "created_at"], utc=True, format="ISO8601").to_numpy()
        as_of = pd.to_datetime(s["as_of"], utc=True, format="ISO8601").to_numpy()
        assert (as_of - created == np.timedelta64(loop.SCORE_AGE_DAYS, "D")).all()
        assert s["lead_id"].is_unique  # each lead scored once, in its own month's round
        # round 1 with the initial champion (version 1), round 2 with the one round 1's retrain left in force
        r = pd.DataFrame(summary["rows"]).set_index(["arm", "round"])
        assert set(s["model_version"]) == {"1", str(r.loc[(arm, 1), "version"])}
        assert len(s) == r.loc[(arm, 1), "leads"] + r.loc[(arm, 2), "leads"]


def test_sales_see_only_the_leads_handed_over(two_rounds):
    cfg, summary, stores = two_rounds
    for arm in cfg.arms:
        s, fb, handed = stores[arm]["scores"], stores[arm]["feedback"], stores[arm]["handed"]
        sim = fb[fb["source"] == "sim"]
        history = set(stores[arm]["leads"]["lead_id"]) - set(s["lead_id"])  # the backfill: every lead decided
        round_fb = set(sim["lead_id"]) - history
        over = set(s.loc[s["qualified"].astype(bool), "lead_id"])
        assert set(handed["lead_id"]) == over  # the model's hand-overs, and only those, reached sales
        assert round_fb == over
        assert 0 < len(over) < len(s)


def test_exploration_hands_over_a_share_of_the_leads_below_the_threshold_with_their_propensity(two_rounds):
    cfg, summary, stores = two_rounds
    a, b = stores["a"]["scores"], stores["b"]["scores"]
    assert not a["explored"].astype(bool).any() and set(a["propensity"]) <= {0.0, 1.0}
    explored = b[b["explored"].astype(bool)]
    below = b[b["propensity"] < 1]
    assert len(explored) > 0 and (explored["propensity"] == 0.05).all()
    assert explored["qualified"].astype(bool).all()  # handed over: sales got them and gave verdicts
    assert set(explored["lead_id"]) <= set(stores["b"]["feedback"]["lead_id"])
    assert 0.01 < len(explored) / len(below) < 0.15  # about the share drawn (5 %) of the leads below it
