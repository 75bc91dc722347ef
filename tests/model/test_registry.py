"""The champion gate, promotion and rollback against a real SQLite-backed MLflow registry."""

from __future__ import annotations

import copy
import dataclasses

import mlflow
import numpy as np
import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.model import gate, registry, tracking
from leadscore.model.train import TrainConfig, train
from mlflow import MlflowClient


def earlier_snapshot(dataset, days: int):
    """`dataset` as exported `days` earlier: nothing at or after the earlier snapshot is in it."""
    cut = dataset.snapshot_at - pd.Timedelta(days=days)
    return dataclasses.replace(
        dataset,
        leads=dataset.leads[dataset.leads[S.CREATED_AT] < cut].reset_index(drop=True),
        events=dataset.events[dataset.events[S.TIMESTAMP] < cut].reset_index(drop=True),
        outcomes=dataset.outcomes[dataset.outcomes[S.OUTCOME_AT] < cut].reset_index(drop=True),
        snapshot_at=cut,
    )


@pytest.fixture(scope="module")
def registry_with_two_versions(demo_dataset, tmp_path_factory):
    # a registry of its own, so promotions here do not disturb the session's champion
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment(tracking.EXPERIMENT, artifact_location=(root / "mlruns").as_uri())
    config = TrainConfig(model="scorecard")
    # the first champion: trained on the export as it was a week before the demo data's snapshot
    older = earlier_snapshot(demo_dataset, 7)
    good = train(older, config)
    first = tracking.track(good, older, config, holdout_values=good.holdout_values)
    # a deliberately bad challenger: its points shuffled, so it ranks no better than chance
    rng = np.random.default_rng(0)
    bad_model = copy.copy(good.model)
    bad_model.__dict__.pop("_compiled", None)  # the compiled scoring tables of the unscrambled model
    bad_model.info = dict(good.model.info)
    bad_model.explainer = type(good.model.explainer)(
        edges=good.model.explainer.edges,
        tables=tuple(rng.permutation(t) for t in good.model.explainer.tables),
        base=good.model.explainer.base,
    )
    bad = dataclasses.replace(good, model=bad_model)
    second = tracking.track(bad, older, config, holdout_values=bad.holdout_values)
    yield uri, first, second, good, older
    mlflow.set_tracking_uri(previous)


def test_first_version_becomes_champion(registry_with_two_versions):
    uri, first, _, _, _ = registry_with_two_versions
    assert first.version == "1" and first.decision.promote and first.decision.rule == "first"
    assert registry.alias_version(registry.CHAMPION) == "1"


def test_worse_challenger_is_not_promoted(registry_with_two_versions):
    _, first, second, _, _ = registry_with_two_versions
    # then the scrambled model stays challenger, and the decision with its numbers is recorded
    assert second.version == "2" and not second.decision.promote and second.decision.rule == "worse"
    assert second.decision.auc_diff < 0 and second.decision.auc_diff_high < 0
    assert registry.alias_version(registry.CHAMPION) == "1"
    assert registry.alias_version(registry.CHALLENGER) == "2"
    tags = MlflowClient().get_model_version(registry.MODEL_NAME, "2").tags
    assert '"promote": false' in tags["gate"] and '"rule": "worse"' in tags["gate"]


def test_ties_keep_the_champion_unless_the_challenger_is_fresher(registry_with_two_versions, demo_dataset):
    _, _, _, good, older = registry_with_two_versions
    config = TrainConfig(model="scorecard")
    # given the same model registered again on the same data: a tie, nothing fresher -> the champion stays
    again = tracking.track(good, older, config, holdout_values=good.holdout_values)
    assert not again.decision.promote and again.decision.rule == "tie", again.decision.reason
    assert "not fresher" in again.decision.reason
    assert registry.alias_version(registry.CHAMPION) == "1"
    # when the same family is retrained on the export a week later (a weekly retrain): a tie, fresher ->
    # promoted
    newer = train(demo_dataset, config)
    fresh = tracking.track(newer, demo_dataset, config, holdout_values=newer.holdout_values)
    assert fresh.decision.promote and fresh.decision.rule == "fresher", fresh.decision.reason
    assert fresh.decision.auc_diff_low <= 0 <= fresh.decision.auc_diff_high
    assert registry.alias_version(registry.CHAMPION) == fresh.version
    # and rolling back restores the previous champion
    assert registry.rollback() == "1"
    assert registry.alias_version(registry.CHAMPION) == "1"
    # and manual promotion works and is recorded
    registry.promote("2", reason="test")
    assert registry.alias_version(registry.CHAMPION) == "2"
    assert MlflowClient().get_model_version(registry.MODEL_NAME, "2").tags["previous_champion"] == "1"


def _with_data(model, snapshot_at: str):
    m = copy.copy(model)
    m.info = {**model.info, "data": {"snapshot_at": snapshot_at, "sha256": snapshot_at}}
    return m


TIE = {
    "diff": -0.0059,
    "low": -0.0145,
    "high": 0.0027,
}  # notebook 02's boosted - scorecard on its default data


@pytest.mark.parametrize(
    "cmp, ece_new, family, fresher, promote, rule",
    [
        (TIE, 0.02, "boosted", True, False, "tie"),  # never switch family on a tie, fresher or not
        (TIE, 0.02, "scorecard", False, False, "tie"),  # same family, same data: no flip
        (TIE, 0.02, "scorecard", True, True, "fresher"),  # same family, later snapshot: the retrain wins
        ({"diff": 0.02, "low": 0.01, "high": 0.03}, 0.02, "boosted", False, True, "better"),
        ({"diff": -0.02, "low": -0.03, "high": -0.01}, 0.02, "scorecard", True, False, "worse"),
        ({"diff": 0.02, "low": 0.01, "high": 0.03}, 0.05, "scorecard", True, False, "worse_calibrated"),
    ],
)
def test_gate_rules(trained, boosted_model, cmp, ece_new, family, fresher, promote, rule):
    scorecard = trained.result.model
    champion = _with_data(scorecard, "2026-06-01T00:00:00+00:00")
    challenger = _with_data(
        scorecard if family == "scorecard" else boosted_model,
        "2026-07-01T00:00:00+00:00" if fresher else "2026-06-01T00:00:00+00:00",
    )
    decision = gate.decide(cmp, ece_new, 0.02, challenger, champion)
    assert decision[:2] == (promote, rule), decision[2]


def test_the_gate_with_weights_compares_as_on_the_rows_repeated(trained, boosted_model):
    # given the scorecard's holdout, with integer inverse-propensity weights, and the same rows repeated
    result = trained.result
    y = result.rows.loc[result.rows["part"] == "holdout", "label"].to_numpy()
    values = result.holdout_values
    w = np.random.default_rng(0).choice([1, 1, 2, 20], size=len(y))
    dup = np.repeat(np.arange(len(y)), w)
    # when the gate compares the boosted challenger with the scorecard champion both ways
    weighted = gate.compare(boosted_model, result.model, values, y, weight=w)
    repeated = gate.compare(boosted_model, result.model, {k: v[dup] for k, v in values.items()}, y[dup])
    # then it sees the same ECEs and ROC AUC difference, not the unweighted ones
    assert (weighted.ece_challenger, weighted.ece_champion, weighted.auc_diff) == pytest.approx(
        (repeated.ece_challenger, repeated.ece_champion, repeated.auc_diff), rel=1e-9
    )
    plain = gate.compare(boosted_model, result.model, values, y)
    assert weighted.ece_challenger != pytest.approx(plain.ece_challenger, rel=1e-3)
