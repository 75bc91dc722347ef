"""Fixtures of the service tests: PostgreSQL when one is running, copies of the model registry that a test
may change, and a helper registering extra model versions (good or deliberately broken)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

PG_ENV = "LEADSCORE_TEST_POSTGRES_URL"
NO_PG_REASON = (f"{PG_ENV} is not set: no PostgreSQL server for the tests (`.ci/run` starts one with "
                "`.ci/postgres.sh`)")


def fresh_pg_database(base_url: str, name: str) -> str:
    """A new empty database on the test PostgreSQL server; its URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database: SQLite in a temporary file, or one on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(NO_PG_REASON)
    return fresh_pg_database(base, f"ls_{request.node.name.split('[')[0][-30:]}_{os.getpid()}".lower())


@pytest.fixture
def registry_copy(trained, tmp_path) -> str:
    """A private copy of the registry holding the trained champion (version 1), which a test may change."""
    src = Path(trained.uri.removeprefix("sqlite:///"))
    dst = tmp_path / "mlflow.db"
    shutil.copy(src, dst)
    return f"sqlite:///{dst}"


def register_version(tracking_uri: str, model, artifacts_dir: Path, mutate=None, promote: bool = False) -> str:
    """Log `model` as a new pyfunc version of `leadscore` in the registry at `tracking_uri`; return its
    version. `mutate(bundle_dir)` may alter the saved files first (to make a broken version)."""
    import mlflow
    from mlflow import MlflowClient

    from leadscore.model import persist, registry
    from leadscore.model.pyfunc import LeadscorePyfunc

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        client = MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name("leadscore-serve-tests")
        exp_id = exp.experiment_id if exp else client.create_experiment(
            "leadscore-serve-tests", artifact_location=Path(artifacts_dir).as_uri())
        with tempfile.TemporaryDirectory() as tmp:
            bundle = persist.save(model, Path(tmp) / "bundle")
            if mutate:
                mutate(bundle)
            with mlflow.start_run(experiment_id=exp_id):
                info = mlflow.pyfunc.log_model(name="model", python_model=LeadscorePyfunc(),
                                               artifacts={"bundle": str(bundle)}, pip_requirements=[])
        version = str(mlflow.register_model(info.model_uri, registry.MODEL_NAME).version)
        if promote:
            registry.promote(version, client=client, reason="test")
        return version
    finally:
        mlflow.set_tracking_uri(previous)


def promote(tracking_uri: str, version: str) -> None:
    from mlflow import MlflowClient

    from leadscore.model import registry

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
