"""Benchmark: `leadscore rescore --all` on a store of N demo leads (default 1M) with all their events.

The store is built once per size from the cached benchmark dataset (`_util.ensure_dataset`, 1M leads, seed
0): migrated by the service's own `db.migrate`, then leads and events bulk-loaded (SQLite: the sqlite3
driver's `executemany` in the formats SQLAlchemy writes; PostgreSQL: `COPY`). `leadscore import` would do
the same through SQLAlchemy rows and score every lead on the way, hours at this size, so it is not used
here. The model is bench/score.py's boosted model (347 trees, trained once on a 20k-lead sample), registered
as champion in a private MLflow registry. Each run works on a fresh copy of the store (SQLite) or a fresh
database (PostgreSQL) and times the real command in a child process: wall time and peak RSS (ru_maxrss: of
its largest process; the command's worker processes each hold about as much).
Goal on 2 cores with SQLite: 1M leads in <= 60 s.

Run: `python bench/rescore.py [--leads 100000] [--database-url postgresql+psycopg://...] [--runs 2]
[--workers 1]`
(`--runs 2`: the second run rescores leads that already have a lead state, the daily case).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

GOAL_S = 60
CHUNK = 200_000


def _ts(values) -> list[str | None]:
    """The dataset's ISO-8601 strings as SQLAlchemy's SQLite DateTime stores them (UTC, no offset)."""
    import pandas as pd

    t = pd.to_datetime(pd.Series(values), utc=True, format="ISO8601").dt.tz_localize(None)
    return list(t.dt.strftime("%Y-%m-%d %H:%M:%S.%f"))


def _frames(data: Path, n: int):
    """The first `n` leads of the dataset (by lead id) and their events, in chunks of `CHUNK` leads."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    leads = pq.read_table(data / "leads.parquet").sort_by("lead_id").slice(0, n)
    events = pq.read_table(data / "events.parquet", columns=["lead_id", "type", "timestamp", "page"])
    events = events.filter(pc.is_in(events["lead_id"], value_set=leads["lead_id"])).sort_by("lead_id")
    ev_ids = events["lead_id"].to_numpy(zero_copy_only=False)
    for start in range(0, leads.num_rows, CHUNK):
        part = leads.slice(start, CHUNK)
        ids = part["lead_id"].to_numpy(zero_copy_only=False)
        lo, hi = ev_ids.searchsorted(ids[0], "left"), ev_ids.searchsorted(ids[-1], "right")
        yield part.to_pandas(), events.slice(lo, hi - lo).to_pandas()


def _lead_rows(leads, now: str):
    import orjson
    from leadscore.features import schema as S

    attrs = leads[list(S.LEAD_ATTRIBUTES)].to_dict("records")
    return [
        (lid, created, orjson.dumps({k: v for k, v in a.items() if isinstance(v, str)}).decode(), now)
        for lid, created, a in zip(leads["lead_id"], _ts(leads["created_at"]), attrs, strict=True)
    ]


def build_sqlite(path: Path, data: Path, n: int) -> None:
    from leadscore.serve import db

    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    db.migrate(f"sqlite:///{tmp}")
    now = "2026-07-01 00:00:00.000000"
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA synchronous=OFF")
    for leads, events in _frames(data, n):
        conn.executemany("INSERT INTO leads VALUES (?, ?, ?, ?)", _lead_rows(leads, now))
        conn.executemany(
            "INSERT INTO events (lead_id, type, timestamp, page, received_at) VALUES (?, ?, ?, ?, ?)",
            zip(
                events["lead_id"],
                events["type"],
                _ts(events["timestamp"]),
                events["page"].where(events["page"].notna(), None),
                [now] * len(events),
                strict=True,
            ),
        )
        conn.commit()
        print(f"  stored {len(leads):,} leads, {len(events):,} events", flush=True)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    tmp.rename(path)


def build_postgres(url: str, data: Path, n: int) -> None:
    import psycopg
    from leadscore.serve import db

    db.migrate(url)
    now = "2026-07-01 00:00:00+00"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        for leads, events in _frames(data, n):
            with conn.cursor().copy(
                "COPY leads (lead_id, created_at, attributes, updated_at) FROM STDIN"
            ) as cp:
                for lid, created, attrs, _ in _lead_rows(leads, now):
                    cp.write_row((lid, created + "+00", attrs, now))
            with conn.cursor().copy(
                "COPY events (lead_id, type, timestamp, page, received_at) FROM STDIN"
            ) as cp:
                for row in zip(
                    events["lead_id"],
                    events["type"],
                    events["timestamp"],
                    events["page"].where(events["page"].notna(), None),
                    strict=True,
                ):
                    cp.write_row((*row, now))
            conn.commit()
            print(f"  stored {len(leads):,} leads, {len(events):,} events", flush=True)
        conn.execute("ANALYZE")


def ensure_champion(root: Path) -> str:
    """A private MLflow registry whose champion is bench/score.py's boosted model; its tracking URI."""
    import score  # bench/score.py: the cached benchmark model

    uri = f"sqlite:///{root / 'rescore-mlflow.db'}"
    if (root / "rescore-mlflow.db").exists():
        return uri
    import mlflow
    from leadscore.model import registry
    from leadscore.model.pyfunc import LeadscorePyfunc
    from mlflow import MlflowClient

    bundle = score.ensure_model("boosted")
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("rescore-bench", artifact_location=(root / "rescore-artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=LeadscorePyfunc(),
            artifacts={"bundle": str(bundle)},
            pip_requirements=[],
        )
    version = str(mlflow.register_model(info.model_uri, registry.MODEL_NAME).version)
    registry.promote(version, client=MlflowClient(uri), reason="benchmark")
    return uri


def run_rescore(env: dict, log: Path, workers: int | None) -> tuple[float, float, float, str]:
    """`leadscore rescore --all` in a child process: (wall s, CPU s (user + system of the command and its
    worker processes: what the run costs, whatever else the machine runs), peak RSS GiB of its largest
    process (with worker processes, each holds about that much), its last line)."""
    t = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leadscore", "rescore", "--all"]
            + ([] if workers is None else ["--workers", str(workers)]),
            env=env,
            stdout=out,
            stderr=out,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"leadscore rescore failed:\n{text[-2000:]}")
    summary = " ".join(("rescored" + text.rsplit("rescored", 1)[-1]).split())
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20, summary


def _in_child(build, *args) -> None:
    """`build(*args)` in a child process. Building holds GBs of frames, and the timed command, started from a
    process that large, reported the builder's size as its own peak (3.6 GiB on PostgreSQL: ru_maxrss counts
    the pages of the fork before exec); the command itself peaks at about 0.6 GiB."""
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(target=build, args=args)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"building the store failed (exit {proc.exitcode})")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--leads", type=int, default=1_000_000)
    p.add_argument("--database-url", default=None, help="PostgreSQL (a database this run may empty)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument(
        "--workers", type=int, default=None, help="the command's --workers (default: one per core)"
    )
    a = p.parse_args()
    data = _util.ensure_dataset()
    root = data.parent
    tracking = ensure_champion(root)
    print(f"machine: {_util.machine()}")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "LEADSCORE_MODEL_URI": "models:/leadscore@champion",
        # Bytecode as a deployed install has it (pip writes it at install, a process at first import):
        # without it every run compiled ~2,500 modules from source first, ~4 s of CPU that is not the
        # command's. A private cache, warmed below, whatever PYTHONDONTWRITEBYTECODE the shell sets.
        "PYTHONPYCACHEPREFIX": str(root / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    warm = root / "rescore-warm.db"
    warm.unlink(missing_ok=True)
    subprocess.run(  # the real command on an empty store: imports (and caches) what a timed run imports
        [sys.executable, "-m", "leadscore", "rescore", "--all", "--workers", "1"],
        env={**env, "LEADSCORE_DATABASE_URL": f"sqlite:///{warm}"},
        check=True,
        capture_output=True,
    )
    if a.database_url is None:
        template = root / f"rescore-store-{a.leads}.db"
        if not template.exists():
            print(f"building the store of {a.leads:,} leads (once) ...", flush=True)
            _in_child(build_sqlite, template, data, a.leads)
        from leadscore.serve import db

        db.migrate(f"sqlite:///{template}")  # a store built by older code: upgraded once, not in a timed run
        work = root / "rescore-run.db"
        for f in (work, Path(f"{work}-wal"), Path(f"{work}-shm")):
            f.unlink(missing_ok=True)
        shutil.copy(template, work)
        env["LEADSCORE_DATABASE_URL"] = f"sqlite:///{work}"
    else:
        print(f"building the store of {a.leads:,} leads in PostgreSQL ...", flush=True)
        _in_child(build_postgres, a.database_url, data, a.leads)
        env["LEADSCORE_DATABASE_URL"] = a.database_url
    for i in range(a.runs):
        load = os.getloadavg()[0]
        wall, cpu, peak, last = run_rescore(env, root / "rescore-run.log", a.workers)
        print(
            f"run {i + 1}: {last}\n  {a.leads:,} leads in {wall:.1f} s ({a.leads / wall:,.0f} leads/s; goal "
            f"{GOAL_S} s for 1M on SQLite), CPU {cpu:.1f} s, peak RSS {peak:.2f} GiB (largest process), "
            f"load average {load:.1f} at the start",
            flush=True,
        )


if __name__ == "__main__":
    main()
