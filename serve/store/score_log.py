"""Reads of the score log: a lead's history, its newest scores, and the newest score of every lead (the
sales page's list and GET /v1/leads)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.rows import row
from leadscore.serve.store.score_log_rows import decode_score_log


def score_history(engine: sa.Engine, lead_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The lead's newest `limit` score-log rows, newest first, features and reasons as the API shows them."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(db.score_log)
            .where(db.score_log.c.lead_id == lead_id)
            .order_by(db.score_log.c.scored_at.desc(), db.score_log.c.id.desc())
            .limit(limit)
        ).all()
        return decode_score_log(conn, [row(r) for r in rows])


def latest_scores(
    engine: sa.Engine,
    grade: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
    source: str | None = None,
    unreviewed: bool = False,
) -> list[dict[str, Any]]:
    """The newest score of each lead, highest score first, with the lead's attributes."""
    latest = (
        sa.select(db.score_log.c.lead_id, sa.func.max(db.score_log.c.id).label("id"))
        .group_by(db.score_log.c.lead_id)
        .subquery()
    )
    q = (
        sa.select(db.score_log, db.leads.c.attributes, db.leads.c.created_at.label("lead_created_at"))
        .join(latest, db.score_log.c.id == latest.c.id)
        .join(db.leads, db.leads.c.lead_id == db.score_log.c.lead_id, isouter=True)
    )
    if grade:
        q = q.where(db.score_log.c.grade == grade)
    if since:
        q = q.where(db.score_log.c.scored_at >= since)
    if unreviewed:
        q = q.where(~sa.exists().where(db.feedback.c.lead_id == db.score_log.c.lead_id))
    with engine.connect() as conn:
        rows = decode_score_log(
            conn,
            [
                row(r)
                for r in conn.execute(
                    q.order_by(db.score_log.c.probability.desc(), db.score_log.c.lead_id)
                    .limit(limit)
                    .offset(offset)
                )
            ],
        )
    if source:
        rows = [r for r in rows if (r.get("attributes") or {}).get("source") == source]
    return rows


def recent_scores(
    engine: sa.Engine, lead_ids: Collection[str], per_lead: int = 2
) -> dict[str, list[dict[str, Any]]]:
    """The newest `per_lead` score-log rows (score, grade, scored_at) of each lead, newest first."""
    if not lead_ids:
        return {}
    rn = (
        sa.func.row_number()
        .over(
            partition_by=db.score_log.c.lead_id,
            order_by=(db.score_log.c.scored_at.desc(), db.score_log.c.id.desc()),
        )
        .label("rn")
    )
    inner = (
        sa.select(
            db.score_log.c.lead_id, db.score_log.c.score, db.score_log.c.grade, db.score_log.c.scored_at, rn
        )
        .where(db.score_log.c.lead_id.in_(set(lead_ids)))
        .subquery()
    )
    q = sa.select(inner).where(inner.c.rn <= per_lead).order_by(inner.c.lead_id, inner.c.rn)
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    for r in rows:
        out.setdefault(r.lead_id, []).append(row(r))
    return out
