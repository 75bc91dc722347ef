"""The outbox as the admin endpoints and retention see it: counts by status, the dead and failing events,
redelivery, pruning."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.outbox import DEAD, PENDING, STATUSES
from leadscore.serve.store.rows import aware, now, row


def _summary(r: Any) -> dict[str, Any]:
    d = row(r)
    return {
        "id": d["id"],
        "event_id": d["event_id"],
        "type": d["type"],
        "lead_id": d["lead_id"],
        "created_at": d["created_at"],
        "status": d["status"],
        "attempts": d["attempts"],
        "next_attempt_at": d["next_attempt_at"] if d["status"] == PENDING else None,
        "last_error": d["last_error"],
        "delivered_at": d["delivered_at"],
    }


_SUMMARY_COLUMNS = [
    db.outbox.c[name]
    for name in (
        "id",
        "event_id",
        "type",
        "lead_id",
        "created_at",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "delivered_at",
    )
]


def counts(engine: sa.Engine) -> dict[str, int]:
    """Events by status (every status present, 0 when none)."""
    o = db.outbox.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(o.status, sa.func.count()).group_by(o.status)).tuples()
        found: dict[str, int] = dict(rows.all())
    return {s: int(found.get(s, 0)) for s in STATUSES}


def pending_count(engine: sa.Engine) -> int:
    """Pending events (from the (status, next_attempt_at) index; the delivered rows are never counted)."""
    o = db.outbox.c
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(o.status == PENDING)).scalar_one())


def troubled(engine: sa.Engine, limit: int) -> dict[str, list[dict[str, Any]]]:
    """The dead events (newest first) and the failing ones (pending after a failed try, next due first)."""
    o = db.outbox.c
    with engine.connect() as conn:
        dead = conn.execute(
            sa.select(*_SUMMARY_COLUMNS).where(o.status == DEAD).order_by(o.id.desc()).limit(limit)
        ).all()
        failing = conn.execute(
            sa.select(*_SUMMARY_COLUMNS)
            .where(o.status == PENDING, o.last_error.is_not(None))
            .order_by(o.next_attempt_at, o.id)
            .limit(limit)
        ).all()
    return {"dead": [_summary(r) for r in dead], "failing": [_summary(r) for r in failing]}


def redeliver(engine: sa.Engine, event_id: str) -> dict[str, Any] | None:
    """Send the event again (dead, delivered or failing): pending, due now, attempts from 0, any lease
    dropped (a deliverer holding it can no longer record its outcome). Its last error is kept until the
    next try. The event as it now is; None for an unknown id."""
    o = db.outbox.c
    with engine.begin() as conn:
        n = conn.execute(
            sa.update(db.outbox)
            .where(o.event_id == event_id)
            .values(status=PENDING, attempts=0, next_attempt_at=now(), lease_until=None, delivered_at=None)
        ).rowcount
        if not n:
            return None
        r = conn.execute(sa.select(*_SUMMARY_COLUMNS).where(o.event_id == event_id)).one()
    return _summary(r)


def prune_outbox(
    engine: sa.Engine, older_than: datetime, expired_before: datetime, max_rows: int = 5000
) -> int:
    """Delete up to `max_rows` of the oldest events written before `older_than` that are delivered or dead,
    or pending but written before `expired_before` (never to be sent: past the max age); how many."""
    o = db.outbox.c
    oldest = (
        sa.select(o.id)
        .where(
            o.created_at < aware(older_than),
            sa.or_(o.status != PENDING, o.created_at < aware(expired_before)),
        )
        .order_by(o.id)
        .limit(max_rows)
        .scalar_subquery()
    )
    with engine.begin() as conn:
        return conn.execute(sa.delete(db.outbox).where(o.id.in_(oldest))).rowcount
