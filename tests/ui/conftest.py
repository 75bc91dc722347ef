"""Fixtures of the sales-page tests: a real server with scored demo leads, and a real browser.

The server is our own `leadscore serve` process (own SQLite file, so the API tests' data and ours do not
mix), filled through the public API exactly as a CRM integration would: PUT /v1/leads, POST /v1/events,
POST /v1/score with lead_id-only leads at several moments (so each lead has a score history), and some
POST /v1/feedback. The browser is Debian's chromium driven by Playwright.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from support import KEYS, Server, start_server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
N_LEADS = 64  # more than one page (50) so pagination is exercised
N_REVIEWED = 16  # leads that already have feedback from the API
SCORE_AGES_DAYS = (1, 3, 7, 21)  # each lead is scored as of these ages: a score history with a trend
HOSTILE_ID = "L-hostile"
HOSTILE_TITLE = '<script>alert("x")</script><b>Boss</b>'
HOSTILE_AGE = np.timedelta64(400, "D")
SEED = 11


@dataclass
class UI:
    server: Server
    db: Path
    lead_ids: list[str]
    reviewed: set[str]
    scores: int
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def sql(self, query: str, *params) -> list[tuple]:
        """Read the server's SQLite file directly (read-only): what is really stored."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(query, params).fetchall()


def _clean(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v)


def _iso(t) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="session")
def ui(trained, demo_dataset, tmp_path_factory) -> UI:
    """A real server with N_LEADS demo leads stored, scored at SCORE_AGES_DAYS and partly reviewed."""
    tmp = tmp_path_factory.mktemp("ui-server")
    # monitoring over all the demo's years with a low minimum, so the summary's calibration line has figures;
    # no rescore after storing: each lead's history is exactly its scores at SCORE_AGES_DAYS
    server = start_server(
        tmp,
        trained.uri,
        extra_env={
            "LEADSCORE_MONITOR_WINDOW_DAYS": "3650",
            "LEADSCORE_MONITOR_MIN_LABELED": "20",
            "LEADSCORE_RESCORE_ON_ACTIVITY": "false",
        },
    )
    try:
        yield _populate(server, tmp / "leadscore.db", demo_dataset)
    finally:
        server.stop()


def _populate(server: Server, db: Path, ds) -> UI:
    rng = np.random.default_rng(SEED)
    leads = ds.leads.iloc[np.sort(rng.choice(len(ds.leads), N_LEADS, replace=False))]
    ids = leads["lead_id"].tolist()
    attrs = ("source", "industry", "company_size", "country", "job_title", "email_domain")
    with server.client("scorer") as scorer, server.client("sales") as sales:
        for _, row in leads.iterrows():
            r = scorer.put(
                f"/v1/leads/{row['lead_id']}",
                json={
                    "created_at": _iso(row["created_at"]),
                    "attributes": {a: _clean(row.get(a)) for a in attrs},
                },
            )
            assert r.status_code == 200, r.text
        # a lead whose job title is an attack: it must show as text, never run; created long before the
        # others, so when it is scored now it is older than any lead the model learned from
        r = scorer.put(
            f"/v1/leads/{HOSTILE_ID}",
            json={
                "created_at": _iso(ds.leads["created_at"].min() - HOSTILE_AGE),
                "attributes": {"job_title": HOSTILE_TITLE, "source": "event"},
            },
        )
        assert r.status_code == 200, r.text
        ev = ds.events[ds.events["lead_id"].isin(ids)]
        events = [
            {
                "lead_id": e.lead_id,
                "type": e.type,
                "timestamp": _iso(e.timestamp),
                **({"page": e.page} if isinstance(e.page, str) else {}),
            }
            for e in ev.itertuples()
        ]
        for i in range(0, len(events), 5000):
            r = scorer.post("/v1/events", json={"events": events[i : i + 5000]})
            assert r.status_code == 201, r.text
        created = dict(zip(leads["lead_id"], leads["created_at"], strict=False))
        for days in SCORE_AGES_DAYS:
            body = {
                "leads": [
                    {"lead_id": lid, "as_of": _iso(created[lid] + np.timedelta64(days, "D"))} for lid in ids
                ]
                + [{"lead_id": HOSTILE_ID}]
            }
            r = scorer.post("/v1/score", json=body)
            assert r.status_code == 200, r.text
        # sales already reviewed some leads through the API, with what really happened to them
        outcomes = ds.outcomes[ds.outcomes["lead_id"].isin(ids)].sort_values("at").groupby("lead_id").last()
        reviewed = set()
        for lid, o in outcomes.head(N_REVIEWED).iterrows():
            outcome = {"opportunity": "qualified"}.get(o["outcome"], o["outcome"])
            reason = o["reason"] if outcome == "disqualified" and isinstance(o["reason"], str) else None
            r = sales.post("/v1/feedback", json={"lead_id": lid, "outcome": outcome, "reason": reason})
            assert r.status_code == 201, r.text
            reviewed.add(lid)
    expected = (len(ids) + 1) * len(SCORE_AGES_DAYS)
    deadline = time.monotonic() + 30
    ui = UI(server, db, ids, reviewed, expected)
    while ui.sql("SELECT count(*) FROM score_log")[0][0] < expected:  # the score log is written in batches
        assert time.monotonic() < deadline, "the score log was not written within 30 s"
        time.sleep(0.1)
    return ui


# --- the browser -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip(
            f"Debian's chromium is not installed ({CHROMIUM}): run `apt-get install chromium` "
            "(make test does it through .ci/system-deps.sh)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) per test, laptop-sized."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    yield pg
    context.close()


def sign_in(page, url: str, role: str = "sales") -> None:
    page.goto(f"{url}/ui/signin")
    page.fill("input[name=key]", KEYS[role])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{url}/ui/leads")
