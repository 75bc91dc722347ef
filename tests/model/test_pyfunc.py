"""The registered model as MLflow sees it: a pyfunc that loads and scores, with its plots, lineage, and an
sklearn estimator saved by skops with exactly the trusted types."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient


def test_registered_model_loads_as_pyfunc_and_scores(trained):
    # given the session's registered champion (in the session's own registry)
    mlflow.set_tracking_uri(trained.uri)
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
