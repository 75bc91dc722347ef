"""Plumbing the notebooks share: where the data and the MLflow store are, and a real service process.

No modelling here: everything a model does is in the `leadscore` package, which the notebooks call. This
module only answers "where?" the same way in every notebook (paths, the tracking URI) and starts/stops a
`leadscore serve` subprocess for notebook 04. The notebooks import it from their own folder.
"""

from __future__ import annotations

import atexit
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / "data" / "notebooks"
EXPERIMENT = "leadscore"  # the experiment `leadscore.model.tracking` logs to


def demo_data(cache: str | Path | None, leads: int, seed: int) -> Path:
    """The demo dataset for (leads, seed) in `cache` (default <repo>/data/notebooks), generated once."""
    from leadscore.demo.generate import generate

    out = Path(cache or DEFAULT_CACHE) / f"demo-{leads}-seed{seed}"
    if not (out / "dataset.json").exists():  # written last: its presence means the data is complete
        generate(out, leads, seed=seed)
    return out


def data_dir(export: str | Path | None, cache: str | Path | None, leads: int, seed: int) -> Path:
    """A real export directory if one is given, else the cached demo data."""
    if export:
        path = Path(export).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"export directory {path} does not exist")
        return path
    return demo_data(cache, leads, seed)


def tracking_uri(explicit: str | None = None) -> str:
    """The MLflow store: `explicit`, else $MLFLOW_TRACKING_URI, else the project's <repo>/mlflow.db.

    A relative SQLite path (the Makefile's `sqlite:///mlflow.db`) is taken relative to the repository root,
    where `make` runs, not to the notebook's folder, so notebooks, `make run` and the CLI share one store.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{(REPO / uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def use_mlflow(uri: str) -> str:
    """Point MLflow (and any subprocess) at `uri`. For a SQLite store, artifacts go to `mlruns/` next to the
    database file (MLflow's default would be the notebook's working folder)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(EXPERIMENT) is None:
        db_file = Path(uri.removeprefix("sqlite:///"))
        mlflow.create_experiment(EXPERIMENT, artifact_location=(db_file.parent / "mlruns").as_uri())
    return uri


def mlflow_ui_command(uri: str, port: int = 5000) -> str:
    """The command that opens the MLflow UI on the same store (run it from the repository root)."""
    return f"{Path(sys.prefix) / 'bin' / 'mlflow'} ui --backend-store-uri {uri} --port {port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """A real `leadscore serve` process on a free local port, with fresh API keys (never printed)."""

    url: str
    proc: subprocess.Popen = field(repr=False)
    log: Path
    keys: dict[str, str] = field(repr=False)

    @classmethod
    def start(
        cls,
        workdir: str | Path,
        mlflow_uri: str,
        database_url: str,
        reload_interval: float = 0,
        timeout: float = 120,
    ) -> Service:
        import httpx

        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        keys = {role: f"{role[:2]}_{secrets.token_urlsafe(18)}" for role in ("scorer", "sales", "admin")}
        port = free_port()
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "LEADSCORE_DATABASE_URL": database_url,
            "LEADSCORE_API_KEYS": ",".join(f"{r}:{k}" for r, k in keys.items()),
            "LEADSCORE_RELOAD_INTERVAL_SECONDS": str(reload_interval),
        }
        log = workdir / f"service-{port}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "leadscore", "serve", "--port", str(port)],
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        service = cls(f"http://127.0.0.1:{port}", proc, log, keys)
        atexit.register(service.stop)  # the kernel's exit stops it even if the last cell never runs
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the service exited with code {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                    return service
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        service.stop()
        raise RuntimeError(f"the service did not answer within {timeout}s:\n{log.read_text()[-3000:]}")

    def client(self, role: str):
        """An HTTP client authenticated as `role` (scorer, sales or admin)."""
        import httpx

        headers = {"Authorization": f"Bearer {self.keys[role]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
