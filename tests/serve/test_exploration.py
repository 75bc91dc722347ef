"""Exploration through a real `leadscore serve`: the response says which leads were handed over for
exploration, rescoring never re-rolls the draw, and the score log records every lead's propensity."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa

from leadscore.model.exploration import explored

pytestmark = pytest.mark.slow
SHARE, SEED = 0.3, 11


def test_explored_leads_are_handed_over_marked_and_logged_and_rescoring_never_rerolls(
        trained, tmp_path, start_server, database_url):
    from leadscore.serve import db

    threshold = trained.result.model.policy.threshold
    server = start_server(tmp_path, trained.uri, database_url,
                          extra_env={"LEADSCORE_EXPLORATION_SHARE": str(SHARE), "LEADSCORE_EXPLORATION_SEED": str(SEED)})
    created = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    ids = [f"x-{i}" for i in range(300)]
    try:
        # given 300 new leads with nothing done yet (scored far below the threshold)
        leads = [{"lead_id": i, "created_at": created, "attributes": {}, "events": []} for i in ids]
        with server.client("scorer") as c:
            # when they are scored, then scored again in the opposite order, and once more by reference
            first = c.post("/v1/score", json={"leads": leads}).json()["results"]
            second = c.post("/v1/score", json={"leads": leads[::-1]}).json()["results"][::-1]
            for lead in leads[:20]:
                assert c.put(f"/v1/leads/{lead['lead_id']}", json={"created_at": created}).status_code in (200, 201)
            third = c.post("/v1/score", json={"leads": [{"lead_id": i} for i in ids[:20]]}).json()["results"]
        assert all(r["probability"] < threshold for r in first)
        # then exactly the leads the seeded per-lead draw picks are handed over, marked explored, at the share
        drawn = explored(ids, SHARE, SEED)
        assert [r["explored"] for r in first] == drawn.tolist()
        assert [r["qualified"] for r in first] == drawn.tolist()
        assert {r["propensity"] for r in first} == {SHARE}
        assert abs(drawn.mean() - SHARE) < 4 * np.sqrt(SHARE * (1 - SHARE) / len(ids))
        # and scoring again, in another request or by reference, gives every lead the same answer
        assert [r["explored"] for r in second] == drawn.tolist()
        assert [r["explored"] for r in third] == drawn[:20].tolist()

        # and every score-log row records the propensity and whether the lead was explored
        engine = db.make_engine(database_url)
        try:
            deadline = time.monotonic() + 15
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(sa.select(db.score_log.c.lead_id, db.score_log.c.qualified,
                                                  db.score_log.c.explored, db.score_log.c.propensity)).all()
                if len(rows) >= 620 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            engine.dispose()
        assert len(rows) == 620
        want = dict(zip(ids, drawn.tolist()))
        assert all(r.explored is want[r.lead_id] and r.qualified is want[r.lead_id] and r.propensity == SHARE
                   for r in rows)
    finally:
        server.stop()
    # and the seed in force was logged at start-up
    assert f"drawn with seed {SEED}" in server.log.read_text()
