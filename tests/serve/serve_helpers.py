"""Helpers of the service tests: registering extra model versions (good or deliberately broken)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path


def register_version(
    tracking_uri: str, model, artifacts_dir: Path, mutate=None, promote: bool = False
) -> str:
    """Log `model` as a new pyfunc version of `leadscore` in the registry at `tracking_uri`; return its
    version. `mutate(bundle_dir)` may alter the saved files first (to make a broken version)."""
    import mlflow
    from leadscore.model import persist, registry
    from leadscore.model.pyfunc import LeadscorePyfunc
    from mlflow import MlflowClient

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        client = MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name("leadscore-serve-tests")
        exp_id = (
            exp.experiment_id
            if exp
            else client.create_experiment(
                "leadscore-serve-tests", artifact_location=Path(artifacts_dir).as_uri()
            )
        )
        with tempfile.TemporaryDirectory() as tmp:
            bundle = persist.save(model, Path(tmp) / "bundle")
            if mutate:
                mutate(bundle)
            with mlflow.start_run(experiment_id=exp_id):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=LeadscorePyfunc(),
                    artifacts={"bundle": str(bundle)},
                    pip_requirements=[],
                )
        version = str(mlflow.register_model(info.model_uri, registry.MODEL_NAME).version)
        if promote:
            registry.promote(version, client=client, reason="test")
        return version
    finally:
        mlflow.set_tracking_uri(previous)


def promote(tracking_uri: str, version: str) -> None:
    from leadscore.model import registry
    from mlflow import MlflowClient

    registry.promote(version, client=MlflowClient(tracking_uri), reason="test")


def shifted(model, b_shift: float):
    """A copy of `model` whose calibration intercept is moved by `b_shift` (different, valid scores)."""
    from leadscore.model.calibration import Platt

    m = copy.copy(model)
    m.__dict__.pop("_compiled", None)
    m.calibration = Platt(model.calibration.a, model.calibration.b + b_shift)
    return m


def break_calibration(bundle: Path) -> None:
    """Loads fine, scores NaN: must fail the smoke score."""
    spec = json.loads((bundle / "spec.json").read_text())
    spec["calibration"]["a"] = float("nan")
    (bundle / "spec.json").write_text(json.dumps(spec))


def break_format(bundle: Path) -> None:
    """Cannot be loaded at all."""
    spec = json.loads((bundle / "spec.json").read_text())
    spec["format"] = "not-a-leadscore-model"
    (bundle / "spec.json").write_text(json.dumps(spec))
