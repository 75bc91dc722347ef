"""Shared fixtures: demo data, a real SQLite-backed MLflow with a trained champion, and a real server.

Session-scoped and seeded, so the suite is deterministic and each expensive thing is built once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
KEYS = {"scorer": "sc_test_key_0001", "sales": "sa_test_key_0001", "admin": "ad_test_key_0001"}
KEYS_ENV = ",".join(f"{role}:{key}" for role, key in KEYS.items())
DEMO_LEADS = 4000
DEMO_SEED = 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    tracked = tracking.track(result, demo_dataset, config, holdout_values=result.holdout_values,
                             data_source=str(demo_dir))
    return Trained(mlflow_uri, result, tracked, config)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    env: dict
    log: Path

    def client(self, role: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def stop(self, sig: int | None = None) -> None:
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            self.proc.wait(timeout=20)


def start_server(tmp: Path, mlflow_uri: str, database_url: str | None = None, extra_env: dict | None = None,
                 workers: int = 1, timeout: float = 90) -> Server:
    """Start `leadscore serve` as a real process on a free port and wait until it answers /healthz."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "LEADSCORE_API_KEYS": KEYS_ENV,
           "LEADSCORE_DATABASE_URL": database_url or f"sqlite:///{tmp / 'leadscore.db'}",
           "LEADSCORE_RELOAD_INTERVAL_SECONDS": "0", **(extra_env or {})}
    log = tmp / f"server-{port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "leadscore", "serve", "--port", str(port),
                             "--workers", str(workers)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, proc, env, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start in {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def server(trained, tmp_path_factory) -> Server:
    """The real service (uvicorn process) serving the trained champion, with test API keys."""
    s = start_server(tmp_path_factory.mktemp("server"), trained.uri)
    yield s
    s.stop()
