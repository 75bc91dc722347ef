"""Shared fixtures: demo data, a real SQLite-backed MLflow with a trained champion, and a real server.

Session-scoped and seeded, so the suite is deterministic and each expensive thing is built once. Plain
helpers (test keys, `start_server`) live in `tests/support.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import KEYS, KEYS_ENV, REPO, SHARED_DATASETS, Server, free_port, start_server  # noqa: F401

DEMO_LEADS = 4000
DEMO_SEED = 7


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    from leadscore.demo.generate import generate

    out = tmp_path_factory.mktemp("demo") / "data"
    generate(out, DEMO_LEADS, seed=DEMO_SEED)
    return out


@pytest.fixture(scope="session")
def demo_dataset(demo_dir):
    from leadscore.features.loading import load_dataset

    return load_dataset(demo_dir)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    return uri


@dataclass
class Trained:
    uri: str
    result: object
    tracked: object
    config: object


@pytest.fixture(scope="session")
def trained(demo_dataset, demo_dir, mlflow_uri) -> Trained:
    """A scorecard trained on the demo data, registered as version 1 and champion in a real registry."""
    from leadscore.model import tracking
    from leadscore.model.train import TrainConfig, train

    config = TrainConfig(model="scorecard")
    result = train(demo_dataset, config)
    tracked = tracking.track(
        result, demo_dataset, config, holdout_values=result.holdout_values, data_source=str(demo_dir)
    )
    return Trained(mlflow_uri, result, tracked, config)


@pytest.fixture(scope="session")
def boosted_result(demo_dataset):
    """A small boosted model (calibrated, with a policy) trained on the demo data, with its fitted
    estimator; not registered."""
    from leadscore.model.boosted import BoostedParams
    from leadscore.model.train import TrainConfig, train

    config = TrainConfig(model="boosted", boosted=BoostedParams(max_iter=60))
    return train(demo_dataset, config)


@pytest.fixture(scope="session")
def boosted_model(boosted_result):
    """The model of `boosted_result`."""
    return boosted_result.model


@pytest.fixture(scope="session")
def server(trained, tmp_path_factory) -> Server:
    """The real service (uvicorn process) serving the trained champion, with test API keys."""
    # many tests send wrong keys on purpose from this one address: no throttling of them here
    # (tests/serve/test_auth_guard.py tests the limit)
    s = start_server(
        tmp_path_factory.mktemp("server"), trained.uri, extra_env={"LEADSCORE_AUTH_FAILURE_LIMIT": "0"}
    )
    yield s
    s.stop()


def pytest_report_header(config) -> str:
    return _shared_datasets_line()


def pytest_terminal_summary(terminalreporter) -> None:
    # Said again at the end, beside the skip reasons: a run without the real data tests less than it seems.
    if not SHARED_DATASETS.is_dir():
        terminalreporter.write_sep("-", _shared_datasets_line(), yellow=True)


def _shared_datasets_line() -> str:
    if SHARED_DATASETS.is_dir():
        names = ", ".join(sorted(p.name for p in SHARED_DATASETS.iterdir()))
        return f"real datasets: {SHARED_DATASETS} ({names})"
    return (
        f"real datasets: none at {SHARED_DATASETS}: the tests on real data (X Education) are skipped; "
        "clone the project beside shared/ to run them"
    )
