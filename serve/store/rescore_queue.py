"""The rescore queue: stored leads waiting to be scored again with the champion, and the runs that queue a
new champion's active leads (`serve.rescore` works them off; docs/retraining.md, "Fresh scores").

A lead is queued in the transaction that changed it (`enqueue`, called by `store.leads`), so an acknowledged
write is rescored even if the process dies right after answering. Priority 0 (activity) is worked off at
once, priority 1 (a new champion's active leads, `start_run`) at a bounded rate. Rescorers in several
processes share the queue: each claims rows with a lease (`claim`; on PostgreSQL by the server's clock, so
hosts' clocks need not agree), and a claim whose process died is taken over when its lease runs out.
`finish` deletes a claimed row only if it was not queued again while its lead was being scored: a lead with
new events during its rescore is scored once more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.rows import aware, lease_clock, now, row

ACTIVITY, CHAMPION = 0, 1  # priorities: new activity first, a new champion's leads at a bounded rate

q = db.rescore_queue.c
runs = db.rescore_runs.c


def enqueue(conn: sa.Connection, lead_ids: Iterable[str]) -> None:
    """Queue leads for a prompt rescore (new activity), in the caller's transaction. A lead already queued
    gets a new `enqueued_at` (a rescore running now will not drop it) and priority 0 (a new champion's
    rate no longer holds it back)."""
    t = now()
    values = [{"lead_id": lid, "priority": ACTIVITY, "enqueued_at": t} for lid in sorted(set(lead_ids))]
    if not values:
        return
    insert = db.dialect_insert(conn)(db.rescore_queue)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[q.lead_id],
            set_={"priority": ACTIVITY, "enqueued_at": insert.excluded.enqueued_at},
        ),
        values,
    )


@dataclass(frozen=True)
class Claimed:
    """Leads a rescorer holds (until its lease, `claimed_until`, runs out): lead_id -> the `enqueued_at` it
    was claimed with."""

    priority: int
    leads: dict[str, datetime]


def claim(engine: sa.Engine, worker: str, priority: int, limit: int, lease_seconds: float) -> Claimed:
    """Claim up to `limit` due rows of `priority` (unclaimed, or whose lease ran out), oldest first.
    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so rescorers claiming at once take different rows; SQLite's
    UPDATE holds its one write lock."""
    if limit <= 0:
        return Claimed(priority, {})
    due = sa.or_(q.claimed_until.is_(None), q.claimed_until < lease_clock(engine.dialect))
    # a CTE is evaluated once: as an `IN (subquery)`, PostgreSQL ran the LIMIT ... SKIP LOCKED subquery
    # again per row and claimed more than `limit`
    pick = (
        sa.select(q.lead_id)
        .where(q.priority == priority, due)
        .order_by(q.enqueued_at, q.lead_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    with engine.begin() as conn:
        got = conn.execute(
            sa.update(db.rescore_queue)
            .where(q.lead_id == pick.c.lead_id)
            .values(claimed_until=lease_clock(engine.dialect, lease_seconds), claimed_by=worker)
            .returning(q.lead_id, q.enqueued_at)
        ).all()
    return Claimed(priority, {r.lead_id: r.enqueued_at for r in got})


def finish(conn: sa.Connection, worker: str, claimed: Claimed) -> None:
    """In the transaction that wrote the leads' new scores: delete the claimed rows that were not queued
    again meanwhile (same `enqueued_at`), and release the others for the next pass."""
    if not claimed.leads:
        return
    conn.execute(
        sa.delete(db.rescore_queue).where(
            q.lead_id == sa.bindparam("lid"), q.enqueued_at == sa.bindparam("at"), q.claimed_by == worker
        ),
        [{"lid": lid, "at": at} for lid, at in claimed.leads.items()],
    )
    conn.execute(
        sa.update(db.rescore_queue)
        .where(q.lead_id.in_(list(claimed.leads)), q.claimed_by == worker)
        .values(claimed_until=None, claimed_by=None)
    )


def waiting(engine: sa.Engine, priority: int) -> int:
    """Rows of `priority` in the queue (claimed or not)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(db.rescore_queue).where(q.priority == priority)
            ).scalar_one()
        )


def start_run(engine: sa.Engine, version: str, active_days: float) -> int | None:
    """Queue the active leads (an event in the last `active_days` days) for a rescore with champion
    `version`, once per version whichever process asks first: the insert of the version's `rescore_runs` row
    decides, in the transaction that queues the leads. Leads already queued keep their row (and priority).
    A run still going for an older version ends here: its leads are among those now queued.
    The number of leads the run waits for (`total`), or None if another process started it."""
    t = now()
    with engine.begin() as conn:
        started = conn.execute(
            db.dialect_insert(conn)(db.rescore_runs)
            .values(model_version=version, total=0, started_at=t, finished_at=None)
            .on_conflict_do_nothing()
            .returning(runs.model_version)
        ).first()
        if started is None:
            return None
        ev = db.events.c
        active = sa.select(db.leads.c.lead_id, sa.literal(CHAMPION), sa.literal(t)).where(
            sa.exists().where(
                ev.lead_id == db.leads.c.lead_id, ev.timestamp >= t - timedelta(days=active_days)
            )
        )
        conn.execute(
            db.dialect_insert(conn)(db.rescore_queue)
            .from_select([q.lead_id, q.priority, q.enqueued_at], active)
            .on_conflict_do_nothing()
        )
        total = int(
            conn.execute(
                sa.select(sa.func.count()).select_from(db.rescore_queue).where(q.priority == CHAMPION)
            ).scalar_one()
        )
        conn.execute(sa.update(db.rescore_runs).where(runs.model_version == version).values(total=total))
        conn.execute(
            sa.update(db.rescore_runs)
            .where(runs.model_version != version, runs.finished_at.is_(None))
            .values(finished_at=t)
        )
        finish_runs(conn)
        return total


def finish_runs(conn: sa.Connection) -> None:
    """Mark the running run finished when no lead waits at priority 1 any more."""
    conn.execute(
        sa.update(db.rescore_runs)
        .where(runs.finished_at.is_(None), ~sa.exists().where(q.priority == CHAMPION))
        .values(finished_at=now())
    )


def run_progress(engine: sa.Engine, version: str) -> dict[str, Any] | None:
    """The rescore run of `version`: version, total, done (queued leads no longer waiting at priority 1),
    started_at, finished_at; None if there is none."""
    with engine.connect() as conn:
        r = conn.execute(sa.select(db.rescore_runs).where(runs.model_version == version)).first()
        if r is None:
            return None
        left = 0
        if r.finished_at is None:
            left = int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(db.rescore_queue).where(q.priority == CHAMPION)
                ).scalar_one()
            )
    d = row(r)
    return {
        "version": d["model_version"],
        "total": d["total"],
        "done": max(0, d["total"] - left),
        "started_at": aware(d["started_at"]),
        "finished_at": d["finished_at"],
    }
