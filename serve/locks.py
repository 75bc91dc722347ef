"""Job locks in the service's store: a row per running job, so two runs of a scheduled job (`leadscore
retrain` from cron on two hosts, a CronJob retried while the last pod still runs) never race.

A row in the store, not a lock file: the store is what every host running the job shares (PostgreSQL, or
one SQLite file), and a file lock on one host says nothing to another. Taking the lock is one INSERT (the
primary key makes it atomic on both databases); the holder refreshes `heartbeat_at` while it works, and a
lock whose heartbeat is older than `stale_after` seconds is taken as abandoned (a run killed with -9, a
lost node) and taken over with a compare-and-set UPDATE, so a crash blocks the job for minutes, not forever.
Times are the job hosts' clocks (UTC): keep them in sync (NTP), as the stale timeout assumes.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from leadscore.serve import db, store

STALE_AFTER_SECONDS = 600.0  # a holder refreshes every STALE_AFTER / 10: ten missed refreshes mean it is gone

job_locks = sa.Table(
    "job_locks",
    db.metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),  # host pid N
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
)


class LockHeld(RuntimeError):
    def __init__(self, name: str, holder: str, since: datetime, heartbeat: datetime, stale_after: float):
        self.name, self.holder, self.since, self.heartbeat = name, holder, since, heartbeat
        self.stale_after = stale_after
        super().__init__(
            f"another {name} is running: held by {holder} since {since:%Y-%m-%d %H:%M:%S} UTC "
            f"(last heartbeat {heartbeat:%H:%M:%S} UTC)"
        )


def holder_name() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


@dataclass
class JobLock:
    """`with JobLock(engine, "retrain"):` holds the lock for the block or raises `LockHeld` at once."""

    engine: sa.Engine
    name: str
    stale_after: float = STALE_AFTER_SECONDS
    holder: str = ""

    def __post_init__(self) -> None:
        self.holder = self.holder or holder_name()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.took_over: str | None = None  # the stale holder this lock replaced, if any

    def acquire(self) -> None:
        t = store.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(job_locks).values(
                        name=self.name, holder=self.holder, acquired_at=t, heartbeat_at=t
                    )
                )
        except sa.exc.IntegrityError:
            self._take_over_if_stale(t)
        self._beat = threading.Thread(target=self._heartbeat, name=f"{self.name}-lock", daemon=True)
        self._beat.start()

    def _take_over_if_stale(self, t: datetime) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(job_locks).where(job_locks.c.name == self.name)).first()
            if row is None:  # released between our insert and this read: try once more
                conn.execute(
                    sa.insert(job_locks).values(
                        name=self.name, holder=self.holder, acquired_at=t, heartbeat_at=t
                    )
                )
                return
            beat = store.aware(row.heartbeat_at)
            if t - beat < timedelta(seconds=self.stale_after):
                raise LockHeld(self.name, row.holder, store.aware(row.acquired_at), beat, self.stale_after)
            # the staleness is checked again in the UPDATE itself: of two runs taking over the same stale lock
            # (or a holder that beat just now), exactly one outcome wins
            taken = conn.execute(
                sa.update(job_locks)
                .where(
                    job_locks.c.name == self.name,
                    job_locks.c.heartbeat_at < t - timedelta(seconds=self.stale_after),
                )
                .values(holder=self.holder, acquired_at=t, heartbeat_at=t)
            ).rowcount
        if taken != 1:
            raise LockHeld(self.name, row.holder, store.aware(row.acquired_at), beat, self.stale_after)
        self.took_over = row.holder

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 10):
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        sa.update(job_locks)
                        .where(job_locks.c.name == self.name, job_locks.c.holder == self.holder)
                        .values(heartbeat_at=store.now())
                    )
            except sa.exc.SQLAlchemyError:  # a passing store outage: the next beat tries again
                pass

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(job_locks).where(job_locks.c.name == self.name, job_locks.c.holder == self.holder)
            )

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
