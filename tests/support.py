"""Helpers shared by the tests (a plain module, importable as `support` from any test or conftest):
test API keys, running `leadscore` commands and a real `leadscore serve` process, demo data with known bad
rows, a lead as the API receives it, and score-log rows written as the service writes them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
KEYS = {"scorer": "sc_test_key_0001", "sales": "sa_test_key_0001", "admin": "ad_test_key_0001"}
KEYS_ENV = ",".join(f"{role}:{key}" for role, key in KEYS.items())


def run_cli(*args: str, env=None, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`leadscore ARGS` as a user runs it: a process of this interpreter, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def copy_with_bad_events(demo_dir: Path, dest: Path):
    """A copy of the demo data in `dest` whose events file has an unknown type at row 6 and an unreadable
    timestamp at row 10 (rows counted from 1, as problems name them); those events."""
    import pandas as pd

    shutil.copytree(demo_dir, dest)
    events = pd.read_parquet(demo_dir / "events.parquet")
    events.loc[5, "type"] = "email_open"
    events.loc[9, "timestamp"] = "yesterday"
    events.to_parquet(dest / "events.parquet", index=False)
    return events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_server(
    tmp: Path,
    mlflow_uri: str,
    database_url: str | None = None,
    extra_env: dict | None = None,
    workers: int = 1,
    timeout: float = 90,
) -> Server:
    """Start `leadscore serve` as a real process on a free port and wait until it answers /healthz."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "LEADSCORE_API_KEYS": KEYS_ENV,
        "LEADSCORE_DATABASE_URL": database_url or f"sqlite:///{tmp / 'leadscore.db'}",
        "LEADSCORE_RELOAD_INTERVAL_SECONDS": "0",
        **(extra_env or {}),
    }
    log = tmp / f"server-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadscore", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
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


def api_lead(dataset, lead_id: str) -> dict:
    """A lead of `dataset` as the API receives it: created_at, attributes and all its events (also later
    ones)."""
    from leadscore.features import schema as S

    lead = dataset.leads.set_index(S.LEAD_ID).loc[lead_id]
    ev = dataset.events[dataset.events[S.LEAD_ID] == lead_id]
    return {
        "lead_id": lead_id,
        "created_at": lead[S.CREATED_AT].isoformat(),
        "attributes": {a: (lead[a] if isinstance(lead[a], str) else None) for a in S.LEAD_ATTRIBUTES},
        "events": [
            {"type": t, "timestamp": ts.isoformat(), "page": p if isinstance(p, str) else None}
            for t, ts, p in zip(ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE], strict=False)
        ],
    }


def score_entry(lead_id: str, at, **fields) -> dict:
    """A score as the service logs it (`store.score_log_row` takes it): `lead_id` scored and as of `at`, by
    version 1, 50 % (grade B), not handed over, no features or reasons; `fields` replace any of those."""
    return {
        "lead_id": lead_id,
        "scored_at": at,
        "as_of": at,
        "model_version": "1",
        "probability": 0.5,
        "score": 50,
        "grade": "B",
        "qualified": False,
        "features": {},
        "reasons": [],
        **fields,
    }


def log_scores(engine, entries) -> None:
    """Write `entries` (`score_entry` dicts) into the score log in one transaction, as the writer does."""
    from leadscore.serve import store

    with engine.begin() as conn:
        store.insert_score_log(conn, [store.score_log_row(e) for e in entries])
