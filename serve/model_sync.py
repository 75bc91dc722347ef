"""Every worker of the service on the same model version within seconds of a promote, rollback or reload.

`leadscore serve --workers N` runs N processes, each with its own `ModelHolder`. Two checks bring them all to
the champion:

- the **reload generation**, a counter in the service's store (`model_generation`) that
  `POST /v1/admin/reload` bumps after it loaded the champion in the worker that got the call. Each worker
  reads it every `LEADSCORE_MODEL_SYNC_SECONDS` (1 s; one primary-key read, ~0.1 ms) and, when it moved,
  reloads as the admin asked (a refused version is tried again). It works with
  `LEADSCORE_RELOAD_INTERVAL_SECONDS=0` and across hosts that share a PostgreSQL store.
- the **registry alias**, asked every `LEADSCORE_RELOAD_INTERVAL_SECONDS` (1 s: one lookup costs ~6 ms of wall
  time and 2 ms of CPU against a SQLite registry), so `leadscore promote` / `rollback`, which only change the
  alias, reach every worker too.

Each worker reports what it serves to `serve_workers` (at once after a change, else every
`HEARTBEAT_SECONDS`), so the reload call can wait for the live workers and say what each one serves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.model_holder import ModelHolder
from sqlalchemy.dialects import postgresql, sqlite

log = logging.getLogger("leadscore.serve")

HEARTBEAT_SECONDS = (
    5.0  # a worker that reports nothing for LIVE_SECONDS is taken as gone (stopped, restarted)
)
LIVE_SECONDS = 15.0
FORGET_SECONDS = 3600.0  # reports of workers gone this long are deleted at the start of a worker

model_generation = sa.Table(
    "model_generation",
    db.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # one row, id 1
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

serve_workers = sa.Table(
    "serve_workers",
    db.metadata,
    sa.Column("worker", sa.String(160), primary_key=True),  # host:pid
    sa.Column("version", sa.String(32), nullable=True),
    sa.Column("generation", sa.BigInteger, nullable=False),  # the reload generation it has acted on
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def current_generation(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(model_generation.c.generation).where(model_generation.c.id == 1)).scalar()
            or 0
        )


def bump_generation(engine: sa.Engine) -> int:
    """Tell every worker to reload; the new generation."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.update(model_generation)
                .where(model_generation.c.id == 1)
                .values(generation=model_generation.c.generation + 1, updated_at=_now())
                .returning(model_generation.c.generation)
            ).scalar_one()
        )


def report(
    engine: sa.Engine, worker: str, version: str | None, generation: int, started_at: datetime
) -> None:
    values = {
        "worker": worker,
        "version": version,
        "generation": generation,
        "started_at": started_at,
        "reported_at": _now(),
    }
    insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(serve_workers)
    with engine.begin() as conn:
        conn.execute(
            insert.values(**values).on_conflict_do_update(
                index_elements=[serve_workers.c.worker],
                set_={k: v for k, v in values.items() if k not in ("worker", "started_at")},
            )
        )


def live_workers(engine: sa.Engine, within: float = LIVE_SECONDS) -> list[dict[str, Any]]:
    """The workers that reported in the last `within` seconds: worker, version, generation, reported_at."""
    since = _now() - timedelta(seconds=within)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                serve_workers.c.worker,
                serve_workers.c.version,
                serve_workers.c.generation,
                serve_workers.c.reported_at,
            )
            .where(serve_workers.c.reported_at >= since)
            .order_by(serve_workers.c.worker)
        ).all()
    return [{**r._mapping, "reported_at": _aware(r.reported_at)} for r in rows]


def forget_gone(engine: sa.Engine, older_than: float = FORGET_SECONDS) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.delete(serve_workers).where(
                serve_workers.c.reported_at < _now() - timedelta(seconds=older_than)
            )
        )


class ModelSync:
    """One worker's side: follow the generation and the alias, report what it serves."""

    def __init__(
        self,
        holder: ModelHolder,
        engine: sa.Engine,
        registry_every: float,
        sync_every: float,
        worker: str | None = None,
    ):
        self.holder = holder
        self.engine = engine
        self.registry_every = registry_every
        self.sync_every = sync_every
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = _now()
        self.generation = 0  # the reload generation this worker has acted on
        self._reported: tuple[str | None, int] | None = None  # (version, generation) last reported
        self._reported_at = 0.0
        self._next_registry_check = time.monotonic() + registry_every

    def start(self) -> None:
        """Before the first load: generations bumped before this worker existed are not for it."""
        forget_gone(self.engine)
        self.generation = current_generation(self.engine)
        self.report_now()  # a reload from now on waits for this worker too

    def report_now(self) -> None:
        report(self.engine, self.worker, self.holder.version, self.generation, self.started_at)
        self._reported, self._reported_at = (self.holder.version, self.generation), time.monotonic()

    def leave(self) -> None:
        """A stopping worker: no reload waits for it."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(serve_workers).where(serve_workers.c.worker == self.worker))

    def adopt(self, generation: int) -> None:
        """This worker reloaded for `generation` itself (the admin's call reached it)."""
        self.generation = max(self.generation, generation)
        self.report_now()

    def step(self) -> None:
        """One check (blocking: run in a thread). The store and the registry are checked apart: with the
        store down, a `leadscore promote` still reaches this worker through the alias check."""
        try:
            generation = current_generation(self.engine)
        except Exception as e:  # noqa: BLE001 - a store outage: said once, not every second
            self._store_down(e)
            generation = self.generation
        else:
            self._store_down(None)
        if generation > self.generation:
            outcome = self.holder.reload(force=True)
            log.info("reload generation %d: %s", generation, outcome.message)
            self.generation = generation
        elif self.registry_every > 0 and time.monotonic() >= self._next_registry_check:
            self._next_registry_check = time.monotonic() + self.registry_every
            self.holder.reload()
        if self._store_error is None and (
            (self.holder.version, self.generation) != self._reported
            or time.monotonic() - self._reported_at >= HEARTBEAT_SECONDS
        ):
            self.report_now()

    _store_error: str | None = None

    def _store_down(self, error: Exception | None) -> None:
        """Log the store's state when it changes: one warning when the reload generation cannot be read,
        one line when it can again."""
        now_error = None if error is None else type(error).__name__
        if now_error != self._store_error:
            if now_error:
                log.warning(
                    "cannot read the reload generation from the store (%s): promotions still arrive "
                    "through the registry's alias check",
                    now_error,
                )
            else:
                log.info("the store answers again: reload generations are followed")
            self._store_error = now_error

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.sync_every)
            try:
                await asyncio.to_thread(self.step)
            except Exception:  # noqa: BLE001 - the loop must survive anything (a database blip, the registry)
                log.exception("model check failed")

    def wait_for_all(self, generation: int, timeout: float) -> tuple[list[dict[str, Any]], bool]:
        """Wait up to `timeout` s until every live worker has acted on `generation`; (the live workers'
        reports, whether all had)."""
        deadline = time.monotonic() + timeout
        while True:
            workers = live_workers(self.engine)
            done = all(w["generation"] >= generation for w in workers)
            if done or time.monotonic() >= deadline:
                return workers, done
            time.sleep(0.1)
