"""The sales page's summary numbers with exploration on: the model's handoffs and the explored leads apart
(serve.ui.summary_numbers.summary, on a real store)."""

from __future__ import annotations

from datetime import timedelta

from leadscore.serve import store
from leadscore.serve.ui import summary_numbers
from support import log_scores, score_entry


def _score(engine, lead_id, at, qualified, explored):
    propensity = 1.0 if qualified and not explored else 0.05
    entry = score_entry(
        lead_id, at, qualified=qualified, features={"x": 1.0}, propensity=propensity, explored=explored
    )
    log_scores(engine, [entry])


def test_explored_leads_are_not_counted_as_the_models_handoffs(engine):
    # given M1, M2 handed over by the model, E1, E2 handed over for exploration (below the threshold),
    # O scored before exploration existed (explored NULL) over the threshold; sales reviewed four of them
    now = store.now()
    t = now - timedelta(days=10)
    for lid in ("M1", "M2", "E1", "E2", "O"):
        store.upsert_lead(engine, lid, t - timedelta(days=1), {})
    _score(engine, "M1", t, True, False)
    _score(engine, "M2", t, True, False)
    _score(engine, "E1", t, True, True)
    _score(engine, "E2", t, True, True)
    _score(engine, "O", t, True, None)
    at = t + timedelta(days=1)
    store.add_feedback(engine, "M1", "qualified", at=at)
    store.add_feedback(engine, "M2", "disqualified", reason="no_budget", at=at)
    store.add_feedback(engine, "E1", "qualified", at=at)
    store.add_feedback(engine, "E2", "disqualified", reason="no_budget", at=at)
    # when the summary is read
    s = summary_numbers.summary(engine, days=30, now=now)
    # then "handed over" and the acceptance rate are the model's decisions; explored leads are on their own
    assert (s.handed_over, s.accepted, s.rejected, s.awaiting) == (3, 1, 1, 1)
    assert (s.explored, s.explored_accepted, s.explored_rejected) == (2, 1, 1)
    assert sum(n for _, n in s.weeks) == 3
    # and in the agreement table the model said "not yet" to the explored leads
    a = s.agreement
    assert (a["handoff_confirmed"], a["handoff_rejected"], a["missed"], a["hold_confirmed"]) == (1, 1, 1, 1)
    assert a["explored"] == 2
