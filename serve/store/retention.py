"""Retention (LEADSCORE_SCORE_LOG_RETENTION_DAYS): old score-log rows deleted in short, bounded steps, by the
score-log writer between its batches and by `leadscore prune`; old outbox events (delivered, dead, or too
old ever to be sent) likewise, by each service worker every 10 minutes and by `leadscore prune`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from leadscore.serve import db
from leadscore.serve.store.outbox_admin import prune_outbox
from leadscore.serve.store.rows import aware, now


def prune_score_log(engine: sa.Engine, older_than: datetime, max_rows: int = 5000) -> int:
    """Delete up to `max_rows` of the oldest score-log rows scored before `older_than`; how many. Bounded,
    so each step is a short transaction that neither holds SQLite's write lock nor grows PostgreSQL's
    undo for long; call it again while it returns `max_rows`.

    The rows the selection table is built from (serve.export.selection_table) are never deleted, whatever
    their age: every handed-over row (each is a training row with its own propensity: deleting one would
    drop a moment the policy decided, and which ones survived would depend on what came after them) and
    each lead's newest row (a lead never handed over is described by its last score). Handed-over rows are
    the small share of the log that sales was sent; the rows retention deletes are the scores that did
    not hand their lead over."""
    sl = db.score_log.c
    other = db.score_log.alias("other")
    o = other.c

    def before(
        a: Any, b: Any
    ) -> sa.ColumnElement[
        bool
    ]:  # a's row came before b's, in the order selection_table reads them (scored_at, id)
        return sa.or_(a.scored_at < b.scored_at, sa.and_(a.scored_at == b.scored_at, a.id < b.id))

    newer = sa.exists().where(o.lead_id == sl.lead_id, before(sl, o))
    oldest = (
        sa.select(sl.id)
        .where(sl.scored_at < aware(older_than), newer, sa.not_(sl.qualified))
        .order_by(sl.scored_at)
        .limit(max_rows)
        .scalar_subquery()
    )
    with engine.begin() as conn:
        return conn.execute(sa.delete(db.score_log).where(sl.id.in_(oldest))).rowcount


def prune_all(engine: sa.Engine, retention_days: float, max_rows: int = 5000) -> int:
    """Delete every score-log row older than `retention_days` (0: keep forever), in steps of `max_rows`."""
    if retention_days <= 0:
        return 0
    cutoff = now() - timedelta(days=retention_days)
    total = 0
    while (n := prune_score_log(engine, cutoff, max_rows)) > 0:
        total += n
        if n < max_rows:
            break
    return total


def prune_outbox_all(
    engine: sa.Engine, retention_days: float, max_age_hours: float, max_rows: int = 5000
) -> int:
    """Delete the outbox events written more than `retention_days` ago (0: keep forever) that are delivered
    or dead, or still pending past `max_age_hours` (never to be sent), in steps of `max_rows`. A pending
    event that may still be sent is kept whatever its age: nothing accepted is lost."""
    if retention_days <= 0:
        return 0
    t = now()
    total = 0
    while (
        n := prune_outbox(
            engine, t - timedelta(days=retention_days), t - timedelta(hours=max_age_hours), max_rows
        )
    ) > 0:
        total += n
        if n < max_rows:
            break
    return total
