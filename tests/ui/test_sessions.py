"""Sales-page sessions live in the service's store: signing out, expiry and key rotation end them, whatever
cookie a browser (or someone who copied it) still holds. Against the real server process and its SQLite
file, and in-process apps sharing one store for key rotation (a restart with other keys)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import sqlite3

import httpx
import pytest
from fastapi.testclient import TestClient
from leadscore.serve.app import create_app

from leadscore.settings import Settings

from .conftest import KEYS
from .test_sales_page import feedback_rows, signed_in_client

pytestmark = pytest.mark.slow


def replay(ui, cookie: str) -> httpx.Client:
    """A fresh client holding only a copy of a session cookie."""
    return httpx.Client(base_url=ui.url, cookies={"leadscore_session": cookie}, timeout=30)


def cookie_token(cookie: str) -> str:
    """The session token a cookie carries (its signed payload)."""
    payload = cookie.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def session_row_id(cookie: str) -> str:
    """The store's id of the session a cookie names: sha256 of its token."""
    return hashlib.sha256(cookie_token(cookie).encode()).hexdigest()


def test_a_cookie_captured_before_sign_out_opens_nothing_after(ui):
    # given a signed-in client, its CSRF token, and a copy of its cookie taken before sign-out
    c, csrf = signed_in_client(ui)
    captured = c.cookies["leadscore_session"]
    lead_id = sorted(set(ui.lead_ids) - ui.reviewed)[-5]
    assert replay(ui, captured).get("/ui/leads").status_code == 200
    # when the user signs out
    assert c.post("/ui/signout", data={"csrf": csrf}).status_code == 303
    # then the copied cookie gets the sign-in page, for pages and for forms, and stores nothing
    with replay(ui, captured) as thief:
        r = thief.get("/ui/leads")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin")
        r = thief.post(
            f"/ui/leads/{lead_id}/feedback",
            data={"outcome": "qualified", "form_key": "after-signout-1", "csrf": csrf},
        )
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin")
    assert feedback_rows(ui, lead_id) == []
    # and the session's row is gone from the store
    assert ui.sql("SELECT count(*) FROM ui_sessions WHERE id = ?", session_row_id(captured)) == [(0,)]


def test_a_session_past_its_expiry_in_the_store_ends(ui):
    # given a live session
    c, _ = signed_in_client(ui)
    cookie = c.cookies["leadscore_session"]
    assert c.get("/ui/leads").status_code == 200
    # when its expiry in the store passes (the cookie itself is still within its max-age)
    with sqlite3.connect(ui.db, timeout=30) as conn:
        changed = conn.execute(
            "UPDATE ui_sessions SET expires_at = '2000-01-01 00:00:00.000000' WHERE id = ?",
            (session_row_id(cookie),),
        ).rowcount
    assert changed == 1
    # then it is no session any more
    r = replay(ui, cookie).get("/ui/summary")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin")


def test_the_store_holds_neither_the_key_nor_the_cookie_token(ui):
    # given a session opened on the server: its store row holds no key and no token
    c, _ = signed_in_client(ui, "admin")
    cookie = c.cookies["leadscore_session"]
    ((stored,),) = ui.sql("SELECT id || key_fp || csrf FROM ui_sessions WHERE id = ?", session_row_id(cookie))
    assert not any(key in stored for key in KEYS.values())
    assert cookie_token(cookie) not in stored


# --- key rotation: a restart with other keys, same store and session secret ---------------------------------
OLD, NEW = "sa_rotation_old_0001", "sa_rotation_new_0001"


@pytest.fixture
def services(tmp_path, trained):
    with contextlib.ExitStack() as stack:

        def start(keys: str) -> TestClient:
            settings = Settings(
                api_keys=keys,
                session_secret="rotation-secret" * 3,
                reload_interval_seconds=0,
                database_url=f"sqlite:///{tmp_path / 'store.db'}",
                mlflow_tracking_uri=trained.uri,
            )
            return stack.enter_context(TestClient(create_app(settings), follow_redirects=False))

        yield start


def _sign_in(client: TestClient, key: str) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/signin").text).group(1)
    r = client.post("/ui/signin", data={"key": key, "csrf": token})
    assert r.status_code == 303, r.text
    client.cookies.clear()  # the next sign-in on this client starts afresh; the caller holds the cookie
    return r.cookies["leadscore_session"]


def test_removing_a_key_ends_the_sessions_opened_with_it(services):
    # given sessions opened with two sales keys
    before = services(f"sales:{OLD},sales:{NEW}")
    old, new = _sign_in(before, OLD), _sign_in(before, NEW)
    # when the service restarts without the old key (same store, same session secret)
    after = services(f"sales:{NEW}")
    # then the old key's session is over and the other key's session goes on
    r = after.get("/ui/leads", cookies={"leadscore_session": old})
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin")
    assert after.get("/ui/leads", cookies={"leadscore_session": new}).status_code == 200
    # and a key turned into a scorer key opens the page no more
    demoted = services(f"scorer:{NEW}")
    assert demoted.get("/ui/leads", cookies={"leadscore_session": new}).status_code == 303
