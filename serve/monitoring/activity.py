"""The activity checks, counted by the database: volume (scores per day in the window) and feedback
coverage (the share of scored and of handed-over leads with a verdict)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from leadscore.features.feedback import VERDICTS
from leadscore.serve import db
from leadscore.serve.monitoring.status import NOT_ENOUGH, OK, WARN

from leadscore.settings import Settings


def volume(conn: sa.Connection, now: datetime, window: timedelta) -> dict[str, Any]:
    """Scores per UTC day in the window, counted by the database (every score, not the rows read for drift):
    one pass over the window with a sum per day (chunks of days: SQLite allows 2,000 result columns)."""
    sl = db.score_log.c
    lo = now - window
    first = lo.date()
    days = [first + timedelta(days=i) for i in range((now.date() - first).days + 1)]
    counts: list[int] = []
    for i in range(0, len(days), 200):
        starts = [datetime.combine(d, datetime.min.time(), tzinfo=UTC) for d in days[i : i + 200]]
        columns = [
            sa.func.coalesce(
                sa.func.sum(
                    sa.case(
                        ((sl.scored_at >= start) & (sl.scored_at < start + timedelta(days=1)), 1), else_=0
                    )
                ),
                0,
            )
            for start in starts
        ]
        counts += [
            int(c)
            for c in conn.execute(sa.select(*columns).where(sl.scored_at > lo, sl.scored_at <= now)).one()
        ]
    per_day = [{"day": d.isoformat(), "n": c} for d, c in zip(days, counts, strict=False)]
    n = sum(counts)
    return {
        "status": OK if n else WARN,
        "n": n,
        "per_day": per_day,
        "message": f"{n} scores in the window"
        if n
        else "no scores in the window: is anything calling the API?",
    }


def coverage(
    conn: sa.Connection, now: datetime, window: timedelta, horizon: timedelta, settings: Settings
) -> dict[str, Any]:
    """Feedback coverage, counted by the database: the leads scored in the window, and the leads handed over
    (scored at or above the threshold) whose horizon ended in the window and that are stored (only a stored
    lead can get a verdict, as for calibration), and how many of each have a verdict."""
    sl, fb = db.score_log.c, db.feedback.c
    verdict = sa.exists().where(fb.lead_id == sl.lead_id, fb.outcome.in_(VERDICTS), fb.at <= now)
    stored = sa.exists().where(db.leads.c.lead_id == sl.lead_id)

    def leads(*where: sa.ColumnElement[bool]) -> tuple[int, int]:
        n = sa.func.count(sa.distinct(sl.lead_id))
        with_verdict = sa.func.count(sa.distinct(sa.case((verdict, sl.lead_id))))
        got = conn.execute(sa.select(n, with_verdict).where(*where)).one()
        return int(got[0]), int(got[1])

    scored, scored_with = leads(sl.scored_at > now - window, sl.scored_at <= now)
    due, due_with = leads(
        sl.qualified.is_(True), sl.as_of > now - window - horizon, sl.as_of <= now - horizon, stored
    )
    share = scored_with / scored if scored else None
    due_share = due_with / due if due else None
    status = (
        (WARN if due_share < settings.monitor_coverage_warn else OK) if due_share is not None else NOT_ENOUGH
    )
    msg = f"{scored_with} of {scored} leads scored in the window have a verdict" + (
        f"; {due_with} of {due} handed-over leads due a verdict have one" if due else ""
    )
    return {
        "status": status,
        "scored_leads": scored,
        "with_verdict": scored_with,
        "share": share,
        "handed_over_due": due,
        "handed_over_due_with_verdict": due_with,
        "handed_over_share": due_share,
        "message": msg,
    }
