"""The outbox (`db.outbox`): the handoff events `store.handoffs.write_scores` writes in the score's
transaction, in id order (the handoff cursor), pulled page by page by `GET /v1/handoffs`. Their delivery
to the webhook receiver is `outbox_delivery`; the admin endpoints' and retention's views `outbox_admin`.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.rows import aware

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
STATUSES = (PENDING, DELIVERED, DEAD)


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
