"""The sales page in a real browser (Debian's chromium via Playwright) against a real server and database."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest
from leadscore.serve.store import REASON_FIELDS

from .conftest import HOSTILE_ID, HOSTILE_TITLE, KEYS, N_LEADS, sign_in

pytestmark = pytest.mark.slow
SCREENSHOTS = os.environ.get(
    "LEADSCORE_SCREENSHOTS"
)  # a directory: save screenshots there (docs/screenshots/make.py)


def signed_in_client(ui, role: str = "sales") -> tuple[httpx.Client, str]:
    """An HTTP client holding a real session cookie, and the CSRF token the server put in the page."""
    c = httpx.Client(base_url=ui.url, timeout=30)
    form = c.get("/ui/signin").text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    r = c.post("/ui/signin", data={"key": KEYS[role], "csrf": token, "next": "/ui/leads"})
    assert r.status_code == 303, r.text
    page = c.get("/ui/leads").text
    return c, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def feedback_rows(ui, lead_id: str) -> list[tuple]:
    return ui.sql("SELECT outcome, reason, note, source FROM feedback WHERE lead_id = ? ORDER BY id", lead_id)


# --- the main flow -----------------------------------------------------------------------------------------
def test_sign_in_review_a_lead_and_mark_it_not_qualified(ui, page):
    # given a signed-in salesperson on the lead list
    sign_in(page, ui.url)
    rows = page.locator("table.leads tbody tr")
    assert rows.count() == 50  # one page of the N_LEADS + 1 scored leads
    scores = [int(s) for s in page.locator("td.score .big").all_inner_texts()]
    assert scores == sorted(scores, reverse=True), "leads are listed by score, highest first"
    assert page.locator("td.why .reason").count() >= 50, "each lead shows its strongest reasons in words"

    # when they open the best lead nobody has reviewed yet
    page.check("input[name=unreviewed]")
    page.click("button:has-text('Filter')")
    first = page.locator("td.lead-id a").first
    lead_id = first.inner_text()
    assert lead_id not in ui.reviewed
    first.click()
    page.wait_for_url(re.compile(rf"/ui/leads/{re.escape(lead_id)}$"))

    # then they read every reason, as a sentence with its points, and the score history
    db_score = ui.sql(
        "SELECT score, reasons FROM score_log WHERE lead_id = ? ORDER BY id DESC LIMIT 1", lead_id
    )[0]
    assert page.locator(".stat .big").first.inner_text() == str(db_score[0])
    reasons = page.locator("ul.reasons li").all_inner_texts()
    stored = [
        dict(zip(REASON_FIELDS, r, strict=False)) for r in json.loads(db_score[1])
    ]  # stored as arrays, without keys
    assert len(reasons) == len(stored) > 0
    for r in stored:
        assert any(r["text"] in shown for shown in reasons), f"reason {r['text']!r} is not on the page"
    assert all(re.match(r"^[+−]\d+\s", shown) for shown in reasons), reasons
    assert page.locator("svg.chart circle").count() == 4  # scored at four ages

    # when they say "Not qualified" because it is a student, with a note
    page.select_option("select[name=reason]", "student")
    page.fill("textarea[name=note]", "Asked about the student plan <b>twice</b>")
    page.click("button:has-text('Not qualified')")

    # then the page confirms it and shows it in the lead's history, escaped as text
    page.wait_for_selector(".alert.ok")
    assert "Not qualified (student)" in page.locator(".alert.ok").inner_text()
    history = page.locator("ul.history li").first.inner_text()
    assert "Not qualified (student)" in history and "Asked about the student plan <b>twice</b>" in history
    # and the database holds exactly that feedback, stored as the API would with source "ui"
    assert feedback_rows(ui, lead_id) == [
        ("disqualified", "student", "Asked about the student plan <b>twice</b>", "ui")
    ]
    # and the list no longer offers it as "not yet reviewed"
    page.goto(f"{ui.url}/ui/leads?unreviewed=1")
    assert lead_id not in page.locator("td.lead-id a").all_inner_texts()


def test_qualified_and_won_buttons_store_feedback_once_each(ui, page):
    # given a signed-in salesperson on an unreviewed lead's page
    lead_id = max(set(ui.lead_ids) - ui.reviewed)
    sign_in(page, ui.url)
    page.goto(f"{ui.url}/ui/leads/{lead_id}")
    # when they click "Qualified", then later "Won"
    page.click("button:has-text('Qualified')")
    page.wait_for_selector(".alert.ok")
    page.click("button:has-text('Won')")
    page.wait_for_selector(".alert.ok:has-text('Won')")
    # then both are stored, in order, and both show in the history (newest first)
    assert feedback_rows(ui, lead_id) == [("qualified", None, None, "ui"), ("won", None, None, "ui")]
    assert [t.split("\n")[0] for t in page.locator("ul.history .tag").all_inner_texts()] == [
        "Won",
        "Qualified",
    ]


def test_not_qualified_without_a_reason_is_refused_with_the_field_named(ui):
    # given a real session and an unreviewed lead
    c, csrf = signed_in_client(ui)
    lead_id = sorted(set(ui.lead_ids) - ui.reviewed)[-2]
    # when the form is sent without a reason (a browser would not, but a form can be tampered with)
    r = c.post(
        f"/ui/leads/{lead_id}/feedback", data={"csrf": csrf, "outcome": "disqualified", "form_key": "k" * 20}
    )
    # then the answer is a 422 naming the field, and nothing is stored
    assert r.status_code == 422 and "reason: choose why" in r.text
    # when the reason is not one of the list
    r = c.post(
        f"/ui/leads/{lead_id}/feedback",
        data={"csrf": csrf, "outcome": "disqualified", "reason": "rude", "form_key": "k" * 20},
    )
    assert r.status_code == 422 and "reason" in r.text
    assert feedback_rows(ui, lead_id) == []


# --- refused cases -----------------------------------------------------------------------------------------
def test_without_a_session_every_page_redirects_to_sign_in_and_back(ui, page):
    # given no session: when a lead page is opened, then the browser lands on sign-in
    lead_id = ui.lead_ids[3]
    page.goto(f"{ui.url}/ui/leads/{lead_id}")
    assert "/ui/signin" in page.url and page.locator("input[name=key]").is_visible()
    for path in ("/ui/leads", "/ui/summary", "/ui"):
        r = httpx.get(ui.url + path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin"), path
    # when they sign in, then they come back to the page they asked for
    page.fill("input[name=key]", KEYS["sales"])
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{ui.url}/ui/leads/{lead_id}")
    # and an off-site "next" is not followed
    r = httpx.get(f"{ui.url}/ui/signin", params={"next": "https://evil.example/ui"})
    assert 'value="/ui/leads"' in r.text and "evil.example" not in r.text


def test_scorer_key_and_wrong_key_are_refused(ui, page):
    # given the sign-in page: when a scorer key is entered, then it is refused with a clear message
    page.goto(f"{ui.url}/ui/signin")
    page.fill("input[name=key]", KEYS["scorer"])
    page.click("button:has-text('Sign in')")
    assert "This is a scorer key" in page.locator(".alert.error").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "leadscore_session"]
    page.goto(f"{ui.url}/ui/leads")
    assert "/ui/signin" in page.url
    # when a wrong key is entered, then it is refused too, and the key is not echoed back
    page.fill("input[name=key]", "not-a-real-key-123")
    page.click("button:has-text('Sign in')")
    assert "not valid" in page.locator(".alert.error").inner_text()
    assert "not-a-real-key-123" not in page.content()
    # and an admin key may sign in
    sign_in(page, ui.url, "admin")


def test_forged_feedback_forms_are_refused_and_store_nothing(ui):
    # given a real session, its CSRF token and an unreviewed lead
    c, csrf = signed_in_client(ui)
    lead_id = sorted(set(ui.lead_ids) - ui.reviewed)[-3]
    url = f"/ui/leads/{lead_id}/feedback"
    good = {"outcome": "qualified", "form_key": "forged-form-key-1"}
    # when the form comes without a token, or with a wrong one, then it is refused with 403
    assert c.post(url, data=good).status_code == 403
    r = c.post(url, data={**good, "csrf": csrf[:-2] + "xx"})
    assert r.status_code == 403 and "Nothing was saved" in r.text
    # and another session's token does not work in this session
    _, other_csrf = signed_in_client(ui)
    assert c.post(url, data={**good, "csrf": other_csrf}).status_code == 403
    # when another site posts the form with no session cookie, then it gets sign-in, not a save
    r = httpx.post(ui.url + url, data={**good, "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin")
    # when the session cookie is forged (tampered signature), then it is no session at all
    forged = httpx.Client(
        base_url=ui.url, cookies={"leadscore_session": c.cookies["leadscore_session"][:-3] + "abc"}
    )
    assert forged.post(url, data={**good, "csrf": csrf}).status_code == 303
    # then nothing at all was stored for the lead
    assert feedback_rows(ui, lead_id) == []
    # and the sign-in form itself needs its token
    r = httpx.post(ui.url + "/ui/signin", data={"key": KEYS["sales"], "next": "/ui/leads"})
    assert r.status_code == 403 and "leadscore_session" not in r.headers.get("set-cookie", "")


def test_session_cookie_is_http_only_same_site_and_holds_no_key(ui, page):
    # given a signed-in browser
    sign_in(page, ui.url)
    cookie = next(c for c in page.context.cookies() if c["name"] == "leadscore_session")
    # then the cookie is hidden from scripts, not sent on cross-site posts, scoped to the page
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui"
    # and neither the cookie, the pages nor the server log contain any key
    page.goto(f"{ui.url}/ui/leads/{ui.lead_ids[0]}")
    html = page.content()
    log = Path(ui.server.log).read_text()
    for key in KEYS.values():
        assert key not in cookie["value"] and key not in html and key not in log
    # when they sign out, then the pages need a new sign-in
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/ui/signin"))
    page.goto(f"{ui.url}/ui/summary")
    assert "/ui/signin" in page.url


def test_sign_out_deletes_the_cookie_and_needs_its_token(ui):
    # given two signed-in clients
    c, csrf = signed_in_client(ui)
    c2, _ = signed_in_client(ui)
    # when one signs out with its token, then its cookie is deleted and the pages need sign-in again
    r = c.post("/ui/signout", data={"csrf": csrf})
    assert r.status_code == 303 and "leadscore_session" not in c.cookies
    assert c.get("/ui/leads").status_code == 303
    # when a sign-out comes without the token (another site forcing it), then it is refused
    assert c2.post("/ui/signout", data={}).status_code == 403
    assert c2.get("/ui/leads").status_code == 200


# --- what the list offers -----------------------------------------------------------------------------------
def test_filters_and_pagination(ui, page):
    sign_in(page, ui.url)
    # given the unfiltered list: then it pages through every scored lead
    assert f"of {N_LEADS + 1}" in page.locator(".page-head p").inner_text()
    page.click("a:has-text('Next →')")
    assert page.locator("table.leads tbody tr").count() == N_LEADS + 1 - 50
    assert "Page 2 of 2" in page.locator(".pager").inner_text()
    # when filtered by grade, then every row has that grade and the count matches the database
    grades = dict(
        ui.sql(
            "SELECT s.lead_id, s.grade FROM score_log s JOIN (SELECT lead_id, max(id) id FROM score_log "
            "GROUP BY lead_id) l ON s.id = l.id"
        )
    )
    grade = max(set(grades.values()), key=list(grades.values()).count)
    page.goto(f"{ui.url}/ui/leads?grade={grade}")
    shown = page.locator("td[data-label=Grade] .grade").all_inner_texts()
    assert set(shown) == {grade} and len(shown) == min(50, list(grades.values()).count(grade))
    # when filtered by source, then only leads from that source are listed
    page.goto(f"{ui.url}/ui/leads")
    source = page.locator("select[name=source] option").nth(1).get_attribute("value")
    page.select_option("select[name=source]", source)
    page.click("button:has-text('Filter')")
    want = {
        lid
        for (lid,) in ui.sql(
            "SELECT lead_id FROM leads WHERE json_extract(attributes, '$.source') = ?", source
        )
    }
    assert set(page.locator("td.lead-id a").all_inner_texts()) == want
    # when "new since" is after every lead, then the list is empty and says so
    page.goto(f"{ui.url}/ui/leads?since=2099-01-01")
    assert "No lead matches these filters" in page.content()
    # when "new since" is not a date, then a 422 names the field
    c, _ = signed_in_client(ui)
    r = c.get("/ui/leads", params={"since": "yesterday"})
    assert r.status_code == 422 and "new since: give a date" in r.text


def test_lead_data_is_escaped_never_run(ui, page):
    # given a lead whose job title holds HTML and a script
    sign_in(page, ui.url)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # when its page is opened, then the title shows as text and no script ran
    page.goto(f"{ui.url}/ui/leads/{HOSTILE_ID}")
    assert HOSTILE_TITLE in page.locator(".page-head").inner_text()
    assert page.locator(".page-head b").count() == 0 and page.locator("main script").count() == 0
    assert dialogs == []
    # and an unknown or malformed lead id gives a 404 page, not an error
    assert page.goto(f"{ui.url}/ui/leads/nobody-here").status == 404
    assert page.goto(f"{ui.url}/ui/leads/%3Cscript%3E").status == 404


def test_summary_page_shows_the_sales_numbers(ui, page):
    # given leads handed over by the model and sales feedback stored through the API and the page
    sign_in(page, ui.url)
    page.goto(f"{ui.url}/ui/summary?days=365")
    # then the handover count is the number of leads that ever reached the threshold (the model's decision,
    # not exploration's: serve.ui.summary_numbers.summary)
    handed = ui.sql(
        "SELECT count(DISTINCT lead_id) FROM score_log WHERE qualified AND NOT coalesce(explored, 0)"
    )[0][0]
    assert page.locator(".stat .value").first.inner_text() == str(handed)
    assert page.locator("svg.chart rect.bar").count() >= 52
    # and the per-grade table counts every reviewed lead once
    reviewed = ui.sql("SELECT count(DISTINCT lead_id) FROM feedback")[0][0]
    counts = [
        int(t) for t in page.locator("table.compact").first.locator("tbody td:nth-child(2)").all_inner_texts()
    ]
    assert sum(counts) == reviewed
    # and once the report exists (GET /v1/monitoring computes it; the page never waits for it, saying
    # "computing" before), the calibration line says what the scores predicted and what qualified
    with ui.server.client("sales") as c:
        cal = c.get("/v1/monitoring").json()["checks"]["calibration"]
    assert cal["n"] >= 20
    page.reload()
    line = page.locator(".calibration-line").inner_text()
    assert (
        f"scores said {100 * cal['predicted_rate']:.0f} %, {100 * cal['observed_rate']:.0f} % qualified"
        in line
        and f"{cal['n']} lead moments" in line
    ), line
    # and a bad period is a 422 naming the field
    c, _ = signed_in_client(ui)
    r = c.get("/ui/summary", params={"days": "7"})
    assert r.status_code == 422 and "days: must be one of" in r.text


# --- fits a laptop and a phone ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 860}, {"width": 390, "height": 844}], ids=["laptop", "phone"]
)
def test_pages_fit_the_screen_without_sideways_scrolling(ui, browser, viewport):
    # given a browser the size of a laptop or a phone
    context = browser.new_context(viewport=viewport, device_scale_factor=2 if viewport["width"] < 500 else 1)
    page = context.new_page()
    try:
        sign_in(page, ui.url)
        lead_id = page.locator("td.lead-id a").first.inner_text()
        for name, path in (
            ("list", "/ui/leads"),
            ("lead", f"/ui/leads/{lead_id}"),
            ("summary", "/ui/summary"),
        ):
            # when each page is shown
            page.goto(ui.url + path)
            # then nothing is wider than the screen
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} page is {overflow}px wider than a {viewport['width']}px screen"
            if SCREENSHOTS:
                kind = "phone" if viewport["width"] < 500 else "laptop"
                page.screenshot(
                    path=str(Path(SCREENSHOTS) / f"{name}-{kind}.png"),
                    full_page=(name == "lead" and kind == "laptop"),
                )
    finally:
        context.close()


def test_a_resubmitted_feedback_form_is_stored_once(ui):
    # given a real session and an unreviewed lead
    c, csrf = signed_in_client(ui)
    lead_id = sorted(set(ui.lead_ids) - ui.reviewed)[-4]
    form = {"csrf": csrf, "outcome": "lost", "form_key": "double-click-key-0001"}
    # when the same form is posted twice (a double click, or the back button and submit again)
    first = c.post(f"/ui/leads/{lead_id}/feedback", data=form)
    second = c.post(f"/ui/leads/{lead_id}/feedback", data=form)
    # then both answers confirm the same stored feedback, and it is stored once
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert feedback_rows(ui, lead_id) == [("lost", None, None, "ui")]
