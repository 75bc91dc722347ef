"""Sales' feedback in the store. Written synchronously: an acknowledged feedback is durable. Read back per
lead (the API, the sales page) and as an outcomes table (export, retrain, monitoring)."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.rows import IN_CHUNK, aware, now, row
from sqlalchemy.exc import IntegrityError


class Conflict(ValueError):
    """An idempotency key was reused with a different request."""


class UnknownLead(LookupError):
    """Feedback for a lead the store has never seen: it could never become a training label."""

    def __init__(self, lead_id: str):
        super().__init__(lead_id)
        self.lead_id = lead_id


def add_feedback(
    engine: sa.Engine,
    lead_id: str,
    outcome: str,
    reason: str | None = None,
    note: str | None = None,
    at: datetime | None = None,
    idempotency_key: str | None = None,
    source: str = "api",
) -> tuple[dict[str, Any], bool]:
    """Store one feedback; (row, duplicate). A retry with the same idempotency key is stored once.

    UnknownLead when `lead_id` is not in `leads` (stored with PUT /v1/leads): its verdict could never be a
    training label (export and retrain join feedback to stored leads). A retry of feedback accepted before
    that rule is still answered with the stored row."""
    received = now()
    values = {
        "lead_id": lead_id,
        "outcome": outcome,
        "reason": reason,
        "note": note,
        "at": aware(at) or received,
        "received_at": received,
        "source": source,
        "idempotency_key": idempotency_key,
    }
    request = (lead_id, outcome, reason, note, at, idempotency_key)
    try:
        with engine.begin() as conn:
            if (
                conn.execute(sa.select(db.leads.c.lead_id).where(db.leads.c.lead_id == lead_id)).first()
                is None
            ):
                raise UnknownLead(lead_id)
            inserted = conn.execute(sa.insert(db.feedback).values(**values)).inserted_primary_key
            assert inserted is not None  # a single-row INSERT always has one
            new_id = inserted[0]
        return {**values, "id": new_id}, False
    except UnknownLead:
        if idempotency_key is None:
            raise
        existing = _by_key(engine, idempotency_key)
        if existing is None:
            raise
        return _same_request(existing, *request), True
    except IntegrityError:
        if idempotency_key is None:
            raise
        existing = _by_key(engine, idempotency_key)
        if existing is None:  # the key's row is gone again: the failure was something else
            raise
        return _same_request(existing, *request), True


def _by_key(engine: sa.Engine, idempotency_key: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        existing = conn.execute(
            sa.select(db.feedback).where(db.feedback.c.idempotency_key == idempotency_key)
        ).first()
    return None if existing is None else row(existing)


def _same_request(
    existing: dict[str, Any],
    lead_id: str,
    outcome: str,
    reason: str | None,
    note: str | None,
    at: datetime | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """`existing` if it is the same request again: same lead, outcome, reason, note, and time (a request
    without `at` was stored at the moment it was received); else Conflict."""
    same_at = existing["at"] == (aware(at) or existing["received_at"])
    if (existing["lead_id"], existing["outcome"], existing["reason"], existing["note"]) != (
        lead_id,
        outcome,
        reason,
        note,
    ) or not same_at:
        raise Conflict(
            f"idempotency_key {idempotency_key!r} was already used for a different feedback"
        ) from None
    return existing


def feedback_for(engine: sa.Engine, lead_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(db.feedback)
            .where(db.feedback.c.lead_id == lead_id)
            .order_by(db.feedback.c.at, db.feedback.c.id)
        ).all()
    return [row(r) for r in rows]


def feedback_frame(
    bind: sa.Engine | sa.Connection,
    since: datetime | None = None,
    *,
    lead_ids: Collection[str] | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Stored feedback as an outcomes table (lead_id, outcome, at, reason) plus id, note, source, received_at
    and idempotency_key, ready to join the canonical data model (`features.feedback.with_feedback`): the one
    read of feedback that export, retrain and monitoring share.

    `since`: only feedback received at or after it; `until`: only feedback given (`at`) at or before it;
    `lead_ids`: only those leads' feedback (read in bounded IN lists). `bind`: an engine, or a connection
    already open (monitoring reads everything on one)."""
    q = sa.select(db.feedback)
    if since is not None:
        q = q.where(db.feedback.c.received_at >= since)
    if until is not None:
        q = q.where(db.feedback.c.at <= until)
    if lead_ids is None:
        queries = [q]
    else:
        ids = sorted(set(lead_ids))
        queries = [
            q.where(db.feedback.c.lead_id.in_(ids[i : i + IN_CHUNK])) for i in range(0, len(ids), IN_CHUNK)
        ]
    with nullcontext(bind) if isinstance(bind, sa.Connection) else bind.connect() as conn:
        rows = [row(r) for part in queries for r in conn.execute(part).all()]
    rows.sort(key=lambda r: (r["at"], r["id"]))
    df = pd.DataFrame(rows, columns=[c.name for c in db.feedback.columns])
    if len(df):
        df["at"] = pd.to_datetime(df["at"], utc=True)
        df["received_at"] = pd.to_datetime(df["received_at"], utc=True)
    return df
