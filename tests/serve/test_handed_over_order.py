"""The lead lists' "newly handed over" order (the sales page's list and GET /v1/leads share
`store.list_order`) on SQLite and PostgreSQL, from scores written the one way they are (`write_scores`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from leadscore.serve import store
from leadscore.serve.store.handoffs import write_scores
from leadscore.serve.ui import queries

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)

# (lead, hours after T0, probability, handed over) in the order they are scored
SCORES = [
    ("a", 0, 0.80, True),  # crossed at T0
    ("c", 0, 0.90, True),  # crossed at T0, stays over: still handed over at T0
    ("c", 1, 0.92, True),
    ("b", 0, 0.30, False),
    ("b", 1, 0.60, True),  # crossed at T0 + 1 h
    ("d", 0, 0.70, True),
    ("d", 2, 0.40, False),  # fell back below: not handed over now
    ("e", 0, 0.20, False),  # never handed over
    ("f", 0, 0.75, True),
    ("f", 1, 0.45, False),
    ("f", 3, 0.55, True),  # crossed again at T0 + 3 h: the latest crossing counts
]


def _row(lead_id: str, hours: int, p: float, qualified: bool) -> tuple:
    t = T0 + hours * H
    return store.score_log_row(
        {
            "lead_id": lead_id,
            "scored_at": t + timedelta(minutes=1),
            "as_of": t,
            "model_version": "1",
            "probability": p,
            "score": round(100 * p),
            "grade": "A" if p >= 0.5 else "C",
            "qualified": qualified,
            "features": {"lead_age_days": 3},
            "reasons": [],
            "propensity": 1.0 if qualified else 0.0,
            "explored": False,
        }
    )


@pytest.fixture
def scored(engine):
    for s in SCORES:  # one transaction per score, as the service writes them over time
        with engine.begin() as conn:
            write_scores(conn, [_row(*s)], notify=False)
    return engine


def test_newly_handed_over_lists_the_latest_crossing_first_then_the_rest_by_score(scored):
    # when both lists are read newly handed over first
    api = store.latest_scores(scored, sort="handed_over")
    page, total = queries.lead_list(scored, queries.ListFilter(), 50, 0, sort="handed_over")
    # then the latest crossing comes first (ties by score), then the leads not handed over now, by score
    expected = ["f", "b", "c", "a", "d", "e"]
    assert [r["lead_id"] for r in api] == [r["lead_id"] for r in page] == expected and total == 6
    # and each handed-over lead says when it crossed: the moment (as_of) of its latest crossing, in UTC
    crossed = {"f": T0 + 3 * H, "b": T0 + H, "c": T0, "a": T0}
    for rows in (api, page):
        assert {r["lead_id"]: r["handed_over_at"] for r in rows} == {
            lead: crossed.get(lead) for lead in expected
        }
    # and the default order is still the highest latest score first
    assert [r["lead_id"] for r in store.latest_scores(scored)] == ["c", "a", "b", "f", "d", "e"]


def test_newly_handed_over_pages_and_filters_like_the_default_order(scored):
    # when a filtered list is paged newly handed over first
    f = queries.ListFilter(grade="A")
    first, total = queries.lead_list(scored, f, 2, 0, sort="handed_over")
    second, _ = queries.lead_list(scored, f, 2, 2, sort="handed_over")
    # then the pages follow each other in that order and only the grade-A leads are counted
    assert [r["lead_id"] for r in first + second] == ["f", "b", "c", "a"] and total == 4
    assert [r["lead_id"] for r in store.latest_scores(scored, grade="A", offset=2, sort="handed_over")] == [
        "c",
        "a",
    ]
