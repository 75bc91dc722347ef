"""Job locks in the store (serve/locks.py), on SQLite and PostgreSQL: one holder at a time, a live holder is
never displaced, an abandoned one (heartbeat stopped) is taken over after the stale timeout, and the
heartbeat keeps a long run's lock alive."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from leadscore.serve import locks, store


def _age_heartbeat(engine, seconds: float) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(locks.job_locks).values(heartbeat_at=store.now() - timedelta(seconds=seconds)))


def test_one_holder_at_a_time_and_a_stale_lock_is_taken_over(engine):
    first = locks.JobLock(engine, "retrain", holder="a pid 1")
    first.acquire()
    first._stop.set()  # as if its process died: the heartbeat stops, the row stays
    # a second run while the first one's heartbeat is fresh is refused, naming the holder and since when
    with pytest.raises(
        locks.LockHeld, match=r"another retrain is running: held by a pid 1 since \d{4}-"
    ) as held:
        locks.JobLock(engine, "retrain", holder="b pid 2").acquire()
    assert held.value.holder == "a pid 1"
    # a lock of another name is independent
    other = locks.JobLock(engine, "export", holder="b pid 2")
    other.acquire()
    other.release()
    # once the heartbeat is older than the stale timeout, the next run takes it over
    _age_heartbeat(engine, locks.STALE_AFTER_SECONDS + 1)
    second = locks.JobLock(engine, "retrain", holder="b pid 2")
    second.acquire()
    assert second.took_over == "a pid 1"
    # and the abandoned holder's late release does not free the new holder's lock
    first.release()
    with pytest.raises(locks.LockHeld, match="held by b pid 2"):
        locks.JobLock(engine, "retrain", holder="c pid 3").acquire()
    second.release()
    third = locks.JobLock(engine, "retrain", holder="c pid 3")
    third.acquire()
    third.release()


def test_the_heartbeat_keeps_a_long_run_alive(engine):
    # given a holder whose stale timeout is short (its heartbeat runs every tenth of it)
    holder = locks.JobLock(engine, "retrain", holder="long pid 1", stale_after=2.0)
    holder.acquire()
    try:
        _age_heartbeat(engine, 10)  # as if it had been silent for longer than the timeout
        with engine.connect() as conn:
            aged = conn.execute(sa.select(locks.job_locks.c.heartbeat_at)).scalar_one()
        # when its heartbeat has beaten again, its lock is fresh and a second run is refused
        for _ in range(100):
            with engine.connect() as conn:
                if conn.execute(sa.select(locks.job_locks.c.heartbeat_at)).scalar_one() != aged:
                    break
            time.sleep(0.1)
        with pytest.raises(locks.LockHeld, match="held by long pid 1"):
            locks.JobLock(engine, "retrain", holder="other pid 2", stale_after=2.0).acquire()
    finally:
        holder.release()
