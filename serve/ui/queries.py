"""Read queries of the sales page. Read-only, SQLAlchemy Core, the same SQL on SQLite and PostgreSQL.

The store (`leadscore.serve.store`) owns every write; feedback is written only through
`leadscore.serve.routes.feedback.save_feedback`. These queries add what the page needs on top of it: a
filtered, counted, paginated lead list, trends for one page of leads, a lead and its recent events. The
summary page's numbers are in `summary_numbers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadscore.serve import db, store

SL, LEADS, EVENTS, FB, STATE = db.score_log, db.leads, db.events, db.feedback, db.lead_state
ACCEPTED = ("qualified", "won", "lost")  # sales took the lead (a lost deal was qualified first)


# --- lead list -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ListFilter:
    grade: str | None = None
    source: str | None = None
    new_since: datetime | None = None  # the lead was created (or first scored, if never stored) at or after
    unreviewed: bool = False  # no feedback stored for the lead yet


def _latest_ids() -> sa.Subquery:
    return sa.select(SL.c.lead_id, sa.func.max(SL.c.id).label("id")).group_by(SL.c.lead_id).subquery("latest")


def _list_query(
    f: ListFilter, columns: Callable[[sa.ColumnElement[Any]], tuple[sa.ColumnElement[Any], ...]]
) -> sa.Select[*tuple[Any, ...]]:
    latest = _latest_ids()
    created = sa.func.coalesce(LEADS.c.created_at, SL.c.scored_at)
    q = sa.select(*columns(created)).select_from(
        SL.join(latest, SL.c.id == latest.c.id)
        .outerjoin(LEADS, LEADS.c.lead_id == SL.c.lead_id)
        .outerjoin(STATE, STATE.c.lead_id == SL.c.lead_id)
    )
    if f.grade:
        q = q.where(SL.c.grade == f.grade)
    if f.source:
        q = q.where(LEADS.c.attributes["source"].as_string() == f.source)
    if f.new_since:
        q = q.where(created >= f.new_since)
    if f.unreviewed:
        q = q.where(~sa.exists().where(FB.c.lead_id == SL.c.lead_id))
    return q


def lead_list(
    engine: sa.Engine, f: ListFilter, limit: int, offset: int, sort: store.ListSort = "score"
) -> tuple[list[dict[str, Any]], int]:
    """One page of leads by their latest score in the order `sort` (`store.list_order`: highest score first,
    or newly handed over first), and how many leads match in all."""

    def cols(created: sa.ColumnElement[Any]) -> tuple[sa.ColumnElement[Any], ...]:
        return (
            SL.c.id,
            SL.c.lead_id,
            SL.c.scored_at,
            SL.c.score,
            SL.c.probability,
            SL.c.grade,
            SL.c.qualified,
            SL.c.explored,  # the "hand over: exploration" tag
            SL.c.reasons,
            SL.c.model_version,
            LEADS.c.attributes,
            created.label("created_at"),
            STATE.c.handed_over_at,
        )

    q = _list_query(f, cols).order_by(*store.list_order(sort, SL.c.probability, SL.c.lead_id))
    q = q.limit(limit).offset(offset)
    count = sa.select(sa.func.count()).select_from(_list_query(f, lambda c: (SL.c.id,)).subquery())
    with engine.connect() as conn:
        total = conn.execute(count).scalar_one()
        rows = store.decode_score_log(conn, [store.row(r) for r in conn.execute(q).all()])
    ids = [r["lead_id"] for r in rows]
    previous = previous_scores(engine, ids)
    reviews = latest_feedback(engine, ids)
    for r in rows:
        r["previous_score"] = previous.get(r["lead_id"])
        r["feedback"] = reviews.get(r["lead_id"])
    return rows, total


def previous_scores(engine: sa.Engine, lead_ids: list[str]) -> dict[str, int]:
    """The score before the latest one, for each lead that has been scored at least twice."""
    if not lead_ids:
        return {}
    rn = sa.func.row_number().over(partition_by=SL.c.lead_id, order_by=SL.c.id.desc()).label("rn")
    sub = sa.select(SL.c.lead_id, SL.c.score, rn).where(SL.c.lead_id.in_(lead_ids)).subquery()
    with engine.connect() as conn:
        return {
            r.lead_id: r.score
            for r in conn.execute(sa.select(sub.c.lead_id, sub.c.score).where(sub.c.rn == 2))
        }


def latest_feedback(engine: sa.Engine, lead_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not lead_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(FB.c.lead_id, FB.c.outcome, FB.c.reason, FB.c.at, FB.c.id)
            .where(FB.c.lead_id.in_(lead_ids))
            .order_by(FB.c.at, FB.c.id)
        ).all()
    return {r.lead_id: store.row(r) for r in rows}  # the last one per lead wins


def sources(engine: sa.Engine, limit: int = 100) -> list[str]:
    """The lead sources present in the store, for the filter."""
    src = LEADS.c.attributes["source"].as_string()
    with engine.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                sa.select(src).where(src.is_not(None)).distinct().order_by(src).limit(limit)
            )
        ]


# --- one lead --------------------------------------------------------------------------------------------
def lead_row(engine: sa.Engine, lead_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        r = conn.execute(sa.select(LEADS).where(LEADS.c.lead_id == lead_id)).first()
    return store.row(r) if r else None


def handed_over_at(engine: sa.Engine, lead_id: str) -> datetime | None:
    """When the lead last crossed the handoff threshold (`lead_state`); None while it is not handed over."""
    with engine.connect() as conn:
        at = conn.execute(sa.select(STATE.c.handed_over_at).where(STATE.c.lead_id == lead_id)).scalar()
    return store.aware(at)


@dataclass
class Activity:
    """A lead's events around the score shown: `after` (newest first) happened at or after the moment the
    score was computed for, so it did not see them (features count events strictly before `as_of`);
    `seen` (newest first) are the newest it did see; n_* count all of each."""

    as_of: datetime | None
    after: list[dict[str, Any]]
    n_after: int
    seen: list[dict[str, Any]]
    n_seen: int


def activity(
    engine: sa.Engine, lead_id: str, as_of: datetime | None, seen_limit: int = 15, after_limit: int = 5
) -> Activity:
    """The events the score as of `as_of` saw, and those after it (all events are "seen" without a score)."""

    def newest(where: sa.ColumnElement[bool], limit: int) -> sa.Select[*tuple[Any, ...]]:
        return (
            sa.select(EVENTS.c.type, EVENTS.c.timestamp, EVENTS.c.page)
            .where(EVENTS.c.lead_id == lead_id, where)
            .order_by(EVENTS.c.timestamp.desc(), EVENTS.c.id.desc())
            .limit(limit)
        )

    def count(where: sa.ColumnElement[bool]) -> sa.Select[int]:
        return sa.select(sa.func.count()).select_from(EVENTS).where(EVENTS.c.lead_id == lead_id, where)

    before = EVENTS.c.timestamp < as_of if as_of is not None else sa.true()
    with engine.connect() as conn:
        seen = [store.row(r) for r in conn.execute(newest(before, seen_limit)).all()]
        n_seen = conn.execute(count(before)).scalar_one()
        after: list[dict[str, Any]] = []
        n_after = 0
        if as_of is not None:
            after = [
                store.row(r) for r in conn.execute(newest(EVENTS.c.timestamp >= as_of, after_limit)).all()
            ]
            n_after = conn.execute(count(EVENTS.c.timestamp >= as_of)).scalar_one()
    return Activity(as_of, after, n_after, seen, n_seen)


def feedback_by_id(engine: sa.Engine, feedback_id: int, lead_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        r = conn.execute(sa.select(FB).where(FB.c.id == feedback_id, FB.c.lead_id == lead_id)).first()
    return store.row(r) if r else None
