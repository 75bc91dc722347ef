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


def test_registered_model_loads_as_pyfunc_and_scores(trained):
    # given the session's registered champion
    loaded = mlflow.pyfunc.load_model("models:/leadscore@champion")
    example = trained.result.model.info["example"]
    from leadscore.model.pyfunc import example_frame

    # when scoring its input example through the generic pyfunc interface
    out = loaded.predict(example_frame(example))
    # then it returns a probability, score, grade and reasons
    assert 0 <= out["probability"].iloc[0] <= 1 and out["grade"].iloc[0] in "ABCD"
    assert out["reasons"].iloc[0].startswith("[{")
    # and the run holds plots, lineage and the definition
    run = MlflowClient().get_run(trained.tracked.run_id)
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert {"plots/reliability.png", "plots/gains_lift.png", "plots/score_distribution.png",
            "plots/reasons_summary.png"} <= names
    assert run.data.tags["leadscore.version"]
    assert "holdout.roc_auc" in run.data.metrics


def test_skops_file_lists_exactly_trusted_types(trained, tmp_path):
    from leadscore.model import persist

    path = persist.save(trained.result.model, tmp_path / "b", estimator=trained.result.estimator)
    est = persist.load_estimator(path)
    assert type(est).__name__ == type(trained.result.estimator).__name__
