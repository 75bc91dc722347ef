"""The summary page's numbers: leads handed over per week, sales' acceptance, qualification rate per grade,
the model's agreement with sales, and why leads were not qualified. Read-only, the same SQL on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from leadscore.model.policy import GRADES
from leadscore.serve import store
from leadscore.serve.ui.queries import ACCEPTED, FB, SL


@dataclass
class Summary:
    days: int
    start: datetime
    weeks: list[tuple[datetime, int]]  # (Monday 00:00 UTC, leads handed over that week)
    handed_over: int = 0  # by the model's decision (qualified, not explored)
    accepted: int = 0
    rejected: int = 0
    awaiting: int = 0
    explored: int = 0  # handed over for exploration (below the threshold, drawn): not the model's decision
    explored_accepted: int = 0
    explored_rejected: int = 0
    by_grade: dict[str, dict[str, Any]] = field(default_factory=dict)  # grade -> reviewed, qualified, rate
    agreement: dict[str, Any] = field(default_factory=dict)
    reasons: list[tuple[str, int]] = field(default_factory=list)  # why sales said "not qualified"

    @property
    def acceptance_rate(self) -> float | None:
        n = self.accepted + self.rejected
        return self.accepted / n if n else None


def _monday(t: datetime) -> datetime:
    d = t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return d - timedelta(days=d.weekday())


def summary(engine: sa.Engine, days: int = 90, now: datetime | None = None) -> Summary:
    """The sales-and-marketing numbers over the last `days`.

    - handed over: a lead's first score at or above the handoff threshold (`qualified` and not `explored`
      in the score log: the model's decision), counted in the week it happened;
    - explored: a lead's first score handed over for exploration (`explored`), counted on its own, with
      sales' verdicts on those leads; a lead explored and later over the threshold counts in both;
    - acceptance: of the leads handed over in the period, the share sales accepted (their latest feedback is
      qualified, won or lost) among those sales reviewed;
    - qualification rate per grade and agreement: feedback received in the period, each compared with the
      lead's latest score at or before the feedback (the score sales saw), or its first score if none.
    """
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    # the model's decision: handed over and not drawn for exploration (NULL: logged before exploration
    # existed)
    by_model = sa.and_(SL.c.qualified.is_(True), sa.func.coalesce(SL.c.explored, False).is_(False))
    first_handoff = (
        sa.select(SL.c.lead_id, sa.func.min(SL.c.scored_at).label("at"))
        .where(by_model)
        .group_by(SL.c.lead_id)
        .subquery()
    )
    handed = sa.select(first_handoff.c.lead_id, first_handoff.c.at).where(first_handoff.c.at >= start)
    first_explored = (
        sa.select(SL.c.lead_id, sa.func.min(SL.c.scored_at).label("at"))
        .where(SL.c.explored.is_(True))
        .group_by(SL.c.lead_id)
        .subquery()
    )
    explored = sa.select(first_explored.c.lead_id).where(first_explored.c.at >= start)

    # the latest feedback of each lead received in the period, and the score the lead had then
    last_fb = (
        sa.select(FB.c.lead_id, sa.func.max(FB.c.id).label("id"))
        .where(FB.c.received_at >= start)
        .group_by(FB.c.lead_id)
        .subquery()
    )
    fb, s2 = FB.alias("fb"), SL.alias("s2")
    seen_before = (
        sa.select(sa.func.max(s2.c.id))
        .where(s2.c.lead_id == fb.c.lead_id, s2.c.scored_at <= fb.c.at)
        .correlate(fb)
        .scalar_subquery()
    )
    first_any = (
        sa.select(sa.func.min(s2.c.id)).where(s2.c.lead_id == fb.c.lead_id).correlate(fb).scalar_subquery()
    )
    reviewed = sa.select(
        fb.c.lead_id, fb.c.outcome, fb.c.reason, SL.c.grade, SL.c.qualified, SL.c.explored, SL.c.score
    ).select_from(
        fb.join(last_fb, fb.c.id == last_fb.c.id).join(
            SL, SL.c.id == sa.func.coalesce(seen_before, first_any)
        )
    )
    verdict_of_all = sa.select(FB.c.lead_id, FB.c.outcome).order_by(FB.c.at, FB.c.id)
    with engine.connect() as conn:
        handed_rows = conn.execute(handed).all()
        review_rows = conn.execute(reviewed).all()
        handed_ids = {r.lead_id for r in handed_rows}
        explored_ids = {r.lead_id for r in conn.execute(explored)}
        verdict: dict[str, str] = {}
        if handed_ids | explored_ids:
            for fb_row in conn.execute(verdict_of_all.where(FB.c.lead_id.in_(handed_ids | explored_ids))):
                verdict[fb_row.lead_id] = fb_row.outcome

    weeks: Counter[Any] = Counter(_monday(store.aware(r.at)) for r in handed_rows)
    first_week = _monday(start)
    out = Summary(days=days, start=start, weeks=[])
    w = first_week
    while w <= now:
        out.weeks.append((w, weeks.get(w, 0)))
        w += timedelta(days=7)
    out.handed_over = len(handed_ids)
    for lid in handed_ids:
        v = verdict.get(lid)
        if v is None:
            out.awaiting += 1
        elif v in ACCEPTED:
            out.accepted += 1
        else:
            out.rejected += 1
    out.explored = len(explored_ids)
    for lid in explored_ids:
        v = verdict.get(lid)
        out.explored_accepted += v in ACCEPTED
        out.explored_rejected += v is not None and v not in ACCEPTED

    grades: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    matrix: Counter[tuple[bool, bool]] = Counter()
    scores: dict[bool, list[int]] = {True: [], False: []}
    reasons: Counter[Any] = Counter()
    explored_reviewed = 0
    for r in review_rows:
        positive = r.outcome in ACCEPTED
        grades[r.grade][0] += 1
        grades[r.grade][1] += positive
        # the model's decision: an explored lead was handed over by the draw, the model said "not yet"
        matrix[(bool(r.qualified) and not r.explored, positive)] += 1
        explored_reviewed += bool(r.explored)
        scores[positive].append(r.score)
        if r.outcome == "disqualified":
            reasons[r.reason or "other"] += 1
    out.by_grade = {
        g: {
            "reviewed": grades[g][0],
            "qualified": grades[g][1],
            "rate": grades[g][1] / grades[g][0] if grades[g][0] else None,
        }
        for g in GRADES
    }
    n = sum(matrix.values())
    agree = matrix[(True, True)] + matrix[(False, False)]
    out.agreement = {
        "reviewed": n,
        "agree": agree,
        "rate": agree / n if n else None,
        "handoff_confirmed": matrix[(True, True)],  # model: hand over; sales: qualified
        "handoff_rejected": matrix[(True, False)],  # model: hand over; sales: not qualified
        "missed": matrix[(False, True)],  # model: not yet; sales: qualified
        "hold_confirmed": matrix[(False, False)],  # model: not yet; sales: not qualified
        "explored": explored_reviewed,  # of those, handed over for exploration (in the "not yet" row)
        "mean_score_qualified": sum(scores[True]) / len(scores[True]) if scores[True] else None,
        "mean_score_not_qualified": sum(scores[False]) / len(scores[False]) if scores[False] else None,
    }
    out.reasons = reasons.most_common()
    return out
