"""Exploration through a real `leadscore serve`: the response says which leads were handed over for
exploration, rescoring never re-rolls the draw, and the score log records every lead's propensity."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from leadscore.model.exploration import explored

pytestmark = pytest.mark.slow


def _sales_page(server):
    """An HTTP client signed in to the sales page with the sales key (a real session cookie)."""
    import re

    import httpx
    from support import KEYS

    c = httpx.Client(base_url=server.url, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/signin").text).group(1)
    assert (
        c.post("/ui/signin", data={"key": KEYS["sales"], "csrf": token, "next": "/ui/leads"}).status_code
        == 303
    )
    return c


SHARE, SEED = 0.3, 11


def test_explored_leads_are_handed_over_marked_and_logged_and_rescoring_never_rerolls(
    trained, tmp_path, start_server, database_url
):
    from leadscore.serve import db

    threshold = trained.result.model.policy.threshold
    server = start_server(
        tmp_path,
        trained.uri,
        database_url,
        extra_env={"LEADSCORE_EXPLORATION_SHARE": str(SHARE), "LEADSCORE_EXPLORATION_SEED": str(SEED)},
    )
    created = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    ids = [f"x-{i}" for i in range(300)]
    try:
        # given 300 new leads with nothing done yet (scored far below the threshold)
        leads = [{"lead_id": i, "created_at": created, "attributes": {}, "events": []} for i in ids]
        with server.client("scorer") as c:
            # when they are scored, then scored again in the opposite order, and once more by reference
            first = c.post("/v1/score", json={"leads": leads}).json()["results"]
            second = c.post("/v1/score", json={"leads": leads[::-1]}).json()["results"][::-1]
            for lead in leads[:20]:
                assert c.put(f"/v1/leads/{lead['lead_id']}", json={"created_at": created}).status_code in (
                    200,
                    201,
                )
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

        # and every score-log row records the propensity and whether the lead was explored: the API's
        # 620 and the 20 background rescores that storing the first 20 leads asked for
        engine = db.make_engine(database_url)
        try:
            deadline = time.monotonic() + 15
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.select(
                            db.score_log.c.lead_id,
                            db.score_log.c.qualified,
                            db.score_log.c.explored,
                            db.score_log.c.propensity,
                        )
                    ).all()
                if len(rows) >= 640 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            engine.dispose()
        assert len(rows) == 640
        want = dict(zip(ids, drawn.tolist(), strict=False))
        assert all(
            r.explored is want[r.lead_id] and r.qualified is want[r.lead_id] and r.propensity == SHARE
            for r in rows
        )

        # and the sales page says why an explored lead is to be handed over; a lead that was only scored
        # inline shows why no verdict can be taken, and the API refuses feedback for it, naming the fix
        sales = _sales_page(server)
        stored_explored = next(i for i, d in zip(ids[:20], drawn[:20], strict=False) if d)
        inline_explored = next(i for i, d in zip(ids[20:], drawn[20:], strict=False) if d)
        page = sales.get(f"/ui/leads/{stored_explored}").text
        assert "Handed over for exploration" in page and 'id="no-feedback"' not in page
        page = sales.get(f"/ui/leads/{inline_explored}").text
        assert "Handed over for exploration" in page and "Feedback cannot be taken for this lead" in page
        assert 'value="disqualified"' not in page
        # and the list tags them so, and counts their draw as a handoff: newly handed over, they come first
        rows = sales.get("/ui/leads", params={"sort": "handed_over"}).text.split("<tbody>")[1].split("</tr>")
        assert "hand over: exploration" in rows[0] and "handed over <time" in rows[0]
        with server.client("sales") as c:
            refused = c.post("/v1/feedback", json={"lead_id": inline_explored, "outcome": "qualified"})
            taken = c.post("/v1/feedback", json={"lead_id": stored_explored, "outcome": "qualified"})
        assert refused.status_code == 404, refused.text
        [detail] = refused.json()["detail"]
        assert detail["field"] == "lead_id" and inline_explored in detail["reason"]
        assert f"PUT /v1/leads/{inline_explored} " in detail["reason"]
        assert taken.status_code == 201
    finally:
        server.stop()
    # and the seed in force was logged at start-up
    assert f"drawn with seed {SEED}" in server.log.read_text()
