"""Reads of the score log: a lead's history, its newest scores, and the newest score of every lead (the
sales page's list and GET /v1/leads) with the one order both lists share (`list_order`)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Literal

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


# The orders of a list of leads: highest score first, or the leads handed over most recently first.
ListSort = Literal["score", "handed_over"]
LIST_SORTS: tuple[ListSort, ...] = ("score", "handed_over")


def list_order(
    sort: ListSort, probability: sa.ColumnElement[Any], lead_id: sa.ColumnElement[Any]
) -> tuple[sa.ColumnElement[Any], ...]:
    """ORDER BY of a lead list (the query outer-joins `lead_state`): `score` is the highest probability
    first; `handed_over` the leads whose latest crossing of the handoff threshold (`handed_over_at`) is the
    newest first, then the leads not handed over now, by score (a sort hides no lead: filters do)."""
    by_score = (probability.desc(), lead_id)
    if sort == "score":
        return by_score
    at = db.lead_state.c.handed_over_at
    return (at.is_(None), at.desc(), *by_score)  # NULLs last on SQLite and PostgreSQL alike


def latest_scores(
    engine: sa.Engine,
    grade: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
    source: str | None = None,
    unreviewed: bool = False,
    sort: ListSort = "score",
) -> list[dict[str, Any]]:
    """The newest score of each lead in the order `sort` (`list_order`), with the lead's attributes and
    when it was handed over (`handed_over_at`, None while not handed over)."""
    latest = (
        sa.select(db.score_log.c.lead_id, sa.func.max(db.score_log.c.id).label("id"))
        .group_by(db.score_log.c.lead_id)
        .subquery()
    )
    q = (
        sa.select(
            db.score_log,
            db.leads.c.attributes,
            db.leads.c.created_at.label("lead_created_at"),
            db.lead_state.c.handed_over_at,
        )
        .join(latest, db.score_log.c.id == latest.c.id)
        .join(db.leads, db.leads.c.lead_id == db.score_log.c.lead_id, isouter=True)
        .join(db.lead_state, db.lead_state.c.lead_id == db.score_log.c.lead_id, isouter=True)
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
                    q.order_by(*list_order(sort, db.score_log.c.probability, db.score_log.c.lead_id))
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
