"""The webhook deliverers' side of the outbox: claiming due events with a lease, recording each try.

A deliverer claims due `pending` rows by setting their `lease_until` in one statement (SQLite: one
UPDATE ... RETURNING, which holds the database's write lock; PostgreSQL: the same UPDATE over a sub-select
`FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's rows instead of waiting), so no two
deliverers, in this process or any other on any host, hold the same event at once: on PostgreSQL the
lease is set and checked by the server's clock, so hosts' clocks need not agree. The lease is the
claim's token: an outcome is recorded only while the row still carries it, so a deliverer whose lease ran
out (and whose event another one took) cannot overwrite that one's result. A claimed row whose deliverer
died (kill -9, a lost host) is due again when its lease expires: at-least-once, never lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.outbox import DEAD, DELIVERED, PENDING
from leadscore.serve.store.rows import aware, lease_clock, now

MAX_ERROR = 300  # characters of last_error kept


@dataclass(frozen=True)
class Claimed:
    """An event a deliverer holds until `lease_until`."""

    id: int
    event_id: str
    body: str  # the exact JSON text to send (and sign)
    attempts: int
    created_at: datetime
    tried: bool  # attempted before (last_error is set): an event redelivered by an admin counts as tried
    lease_until: datetime


def claim(engine: sa.Engine, limit: int, lease_seconds: float) -> list[Claimed]:
    """Lease up to `limit` due pending events (oldest due first) for `lease_seconds`; those leased."""
    if limit <= 0:
        return []
    # due times are written by the hosts' clocks (an event's creation, a retry's backoff) and read by this
    # one's: a skew only moves when an event is due, never who holds it (the lease is the store's clock)
    t = now()
    o = db.outbox.c
    due = (
        sa.select(o.id)
        .where(
            o.status == PENDING,
            o.next_attempt_at <= t,
            sa.or_(o.lease_until.is_(None), o.lease_until < lease_clock(engine.dialect)),
        )
        .order_by(o.next_attempt_at, o.id)
        .limit(limit)
    )
    with engine.connect() as conn:  # a read first: an idle poll takes no write lock (SQLite has one)
        if conn.execute(due.with_only_columns(o.id).limit(1)).first() is None:
            return []
    if engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        sa.update(db.outbox)
        .where(o.id.in_(due.scalar_subquery()))
        .values(lease_until=lease_clock(engine.dialect, lease_seconds))
        .returning(o.id, o.event_id, o.body, o.attempts, o.created_at, o.last_error, o.lease_until)
    )
    with engine.begin() as conn:
        rows = conn.execute(stmt).all()
    return sorted(
        (
            Claimed(
                r.id,
                r.event_id,
                r.body,
                r.attempts,
                aware(r.created_at),
                r.last_error is not None,
                aware(r.lease_until),
            )
            for r in rows
        ),
        key=lambda c: c.id,
    )


def _held(event: Claimed) -> sa.ColumnElement[bool]:
    o = db.outbox.c
    return sa.and_(o.id == event.id, o.status == PENDING, o.lease_until == event.lease_until)


def mark_delivered(engine: sa.Engine, event: Claimed, at: datetime | None = None) -> bool:
    """The receiver answered 2xx: delivered (if the lease is still ours; else another deliverer holds it)."""
    with engine.begin() as conn:
        return bool(
            conn.execute(
                sa.update(db.outbox)
                .where(_held(event))
                .values(
                    status=DELIVERED,
                    attempts=event.attempts + 1,
                    delivered_at=at or now(),
                    lease_until=None,
                    last_error=None,
                )
            ).rowcount
        )


def mark_failed(engine: sa.Engine, event: Claimed, error: str, retry_at: datetime | None) -> bool:
    """A failed try: due again at `retry_at`, or dead when it is None."""
    values: dict[str, Any] = {
        "attempts": event.attempts + 1,
        "last_error": error[:MAX_ERROR],
        "lease_until": None,
    }
    if retry_at is None:
        values["status"] = DEAD
    else:
        values["next_attempt_at"] = retry_at
    with engine.begin() as conn:
        return bool(conn.execute(sa.update(db.outbox).where(_held(event)).values(**values)).rowcount)


def _expired_values(max_age_hours: float) -> dict[str, Any]:
    return {
        "status": DEAD,
        "lease_until": None,
        "last_error": f"expired: not attempted within {max_age_hours:g} h of being written "
        "(LEADSCORE_WEBHOOK_MAX_AGE_HOURS); redeliver it to send it anyway",
    }


def mark_expired(engine: sa.Engine, event: Claimed, max_age_hours: float) -> bool:
    """Dead without a try: the event was never attempted within `max_age_hours` of being written."""
    with engine.begin() as conn:
        return bool(
            conn.execute(
                sa.update(db.outbox).where(_held(event)).values(**_expired_values(max_age_hours))
            ).rowcount
        )


def expire_untried(engine: sa.Engine, max_age_hours: float, at: datetime | None = None) -> int:
    """`mark_expired` of every pending event never tried, not leased and written more than `max_age_hours`
    ago, in one statement (a URL set long after the events were written: thousands at once); how many."""
    t = at or now()
    o = db.outbox.c
    with engine.begin() as conn:
        return conn.execute(
            sa.update(db.outbox)
            .where(
                o.status == PENDING,
                o.last_error.is_(None),
                o.created_at < t - timedelta(hours=max_age_hours),
                sa.or_(o.lease_until.is_(None), o.lease_until < lease_clock(engine.dialect)),
            )
            .values(**_expired_values(max_age_hours))
        ).rowcount
