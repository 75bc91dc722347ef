"""The champion gate, promotion and rollback against a real SQLite-backed MLflow registry."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from leadscore.model import registry, tracking
from leadscore.model.train import TrainConfig, train


@pytest.fixture(scope="module")
def registry_with_two_versions(demo_dataset, tmp_path_factory):
    # a registry of its own, so promotions here do not disturb the session's champion
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    good = train(demo_dataset, TrainConfig(model="scorecard"))
    first = tracking.track(good, demo_dataset, TrainConfig(model="scorecard"), holdout_values=good.holdout_values)
    # a deliberately bad challenger: trained with a shuffled label, so it ranks no better than chance
    bad = train(demo_dataset, TrainConfig(model="scorecard", seed=1))
    rng = np.random.default_rng(0)
    bad_model = bad.model
    bad_model.explainer = type(bad_model.explainer)(
        edges=bad_model.explainer.edges,
        tables=tuple(rng.permutation(t) for t in bad_model.explainer.tables), base=bad_model.explainer.base)
    second = tracking.track(bad, demo_dataset, TrainConfig(model="scorecard"), holdout_values=bad.holdout_values)
    yield uri, first, second, good
    mlflow.set_tracking_uri(previous)


def test_first_version_becomes_champion(registry_with_two_versions):
    uri, first, _, _ = registry_with_two_versions
    assert first.version == "1" and first.decision.promote
    assert registry.alias_version(registry.CHAMPION) == "1"


def test_worse_challenger_is_not_promoted(registry_with_two_versions):
    _, first, second, _ = registry_with_two_versions
    # then the scrambled model stays challenger, and the decision with its numbers is recorded
    assert second.version == "2" and not second.decision.promote
    assert second.decision.auc_diff < 0 and second.decision.auc_diff_high < 0
    assert registry.alias_version(registry.CHAMPION) == "1"
    assert registry.alias_version(registry.CHALLENGER) == "2"
    tags = MlflowClient().get_model_version(registry.MODEL_NAME, "2").tags
    assert '"promote": false' in tags["gate"]


def test_equal_challenger_is_promoted_and_rollback_restores(registry_with_two_versions, demo_dataset):
    _, _, _, good = registry_with_two_versions
    # given the same good model registered again (not worse beyond noise)
    third = tracking.track(good, demo_dataset, TrainConfig(model="scorecard"), holdout_values=good.holdout_values)
    assert third.decision.promote, third.decision.reason
    assert registry.alias_version(registry.CHAMPION) == third.version
    # when rolling back, the previous champion returns
    assert registry.rollback() == "1"
    assert registry.alias_version(registry.CHAMPION) == "1"
    # and manual promotion works and is recorded
    registry.promote("2", reason="test")
    assert registry.alias_version(registry.CHAMPION) == "2"
    assert MlflowClient().get_model_version(registry.MODEL_NAME, "2").tags["previous_champion"] == "1"
