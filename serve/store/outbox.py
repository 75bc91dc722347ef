"""Reads and updates of the outbox (`db.outbox`): the handoff events `store.handoffs.write_scores` writes in
the score's transaction, claimed here by the webhook deliverers, listed by `GET /v1/handoffs` and looked
after by the admin endpoints and retention.

A deliverer claims due `pending` rows by setting their `lease_until` in one statement (SQLite: one
UPDATE ... RETURNING, which holds the database's write lock; PostgreSQL: the same UPDATE over a sub-select
`FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's rows instead of waiting), so no two
deliverers, in this process or any other on any host, hold the same event at once. The lease is the
claim's token: an outcome is recorded only while the row still carries it, so a deliverer whose lease ran
out (and whose event another one took) cannot overwrite that one's result. A claimed row whose deliverer
died (kill -9, a lost host) is due again when its lease expires: at-least-once, never lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.rows import aware, now, row

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
STATUSES = (PENDING, DELIVERED, DEAD)
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


def claim(engine: sa.Engine, limit: int, lease_seconds: float, at: datetime | None = None) -> list[Claimed]:
    """Lease up to `limit` due pending events (oldest due first) for `lease_seconds`; those leased."""
    if limit <= 0:
        return []
    t = at or now()
    lease = t + timedelta(seconds=lease_seconds)
    o = db.outbox.c
    due = (
        sa.select(o.id)
        .where(
            o.status == PENDING,
            o.next_attempt_at <= t,
            sa.or_(o.lease_until.is_(None), o.lease_until < t),
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
        .values(lease_until=lease)
        .returning(o.id, o.event_id, o.body, o.attempts, o.created_at, o.last_error)
    )
    with engine.begin() as conn:
        rows = conn.execute(stmt).all()
    return sorted(
        (
            Claimed(
                r.id, r.event_id, r.body, r.attempts, aware(r.created_at), r.last_error is not None, lease
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
                sa.or_(o.lease_until.is_(None), o.lease_until < t),
            )
            .values(**_expired_values(max_age_hours))
        ).rowcount


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


# The PostgreSQL advisory lock (an arbitrary constant key) that orders the pull cursor: writers of outbox rows
# hold it shared from their insert to their commit, a page reader takes it exclusively while it reads.
_PG_CURSOR_LOCK = 0x4C53_4F42  # "LSOB"
_PG_READ_LOCK_TIMEOUT = "5s"  # a reader waits at most this long for the writers in flight, then returns none


def before_insert(conn: sa.Connection) -> None:
    """Call in the writer's transaction right before it inserts outbox rows (the last thing it locks before
    its commit, so a reader queued on the lock never waits on a writer that waits on another writer).

    PostgreSQL draws an id when a row is inserted and shows the row when its transaction commits, so an
    event with a smaller id could appear after a page listed a larger one, and a reader whose cursor passed
    it would skip it for good. Writers hold the cursor lock shared until their commit; `outbox_page` reads
    under it exclusively, when no insert is in flight: every id drawn before is committed or rolled back.
    SQLite has one writer at a time, committing in id order, and needs nothing."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": _PG_CURSOR_LOCK})


def outbox_page(engine: sa.Engine, since_id: int, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` events after `since_id`, in id order: their body as an object, the delivery state.

    Exact on PostgreSQL too (`before_insert`): the page is read under the cursor lock, in a transaction of
    its own that waits for the inserts in flight to commit (a few ms) and holds new ones back while it
    reads. A reader that cannot get the lock within `_PG_READ_LOCK_TIMEOUT` gets an empty page (the cursor
    stays; the next poll lists the events)."""
    o = db.outbox.c
    q = sa.select(o.id, o.body, o.status, o.attempts, o.delivered_at).where(o.id > since_id)
    q = q.order_by(o.id).limit(limit)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"SET LOCAL lock_timeout = '{_PG_READ_LOCK_TIMEOUT}'"))
            try:
                with conn.begin_nested():
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CURSOR_LOCK})
            except sa.exc.OperationalError as e:
                if getattr(e.orig, "sqlstate", None) != "55P03":  # lock_not_available
                    raise
                return []
        rows = conn.execute(q).all()
    return [
        {
            "id": r.id,
            "status": r.status,
            "attempts": r.attempts,
            "delivered_at": aware(r.delivered_at),
            "event": orjson.loads(r.body),
        }
        for r in rows
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
