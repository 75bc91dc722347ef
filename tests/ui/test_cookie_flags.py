"""Cookie flags that depend on settings, checked in-process (no server process or browser needed for a
header)."""

from __future__ import annotations

import contextlib
import re

import pytest
from fastapi.testclient import TestClient
from leadscore.serve.app import create_app

from leadscore.settings import Settings

SALES_KEY = "sa_cookie_flags_0001"


@pytest.fixture
def service(tmp_path, trained):
    """Make in-process services on one store (sessions live there) and the tests' registry; each runs its
    lifespan (store migrated, champion loaded)."""
    with contextlib.ExitStack() as stack:

        def make(secure: bool = False, session_secret: str = "") -> TestClient:
            settings = Settings(
                api_keys=f"sales:{SALES_KEY}",
                secure_cookies=secure,
                session_secret=session_secret,
                database_url=f"sqlite:///{tmp_path / 'x.db'}",
                mlflow_tracking_uri=trained.uri,
                reload_interval_seconds=0,
            )
            return stack.enter_context(TestClient(create_app(settings), base_url="https://testserver"))

        yield make


def sign_in(client: TestClient) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/signin").text).group(1)
    r = client.post("/ui/signin", data={"key": SALES_KEY, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    return next(h for h in r.headers.get_list("set-cookie") if h.startswith("leadscore_session="))


@pytest.mark.parametrize("secure", [True, False])
def test_session_cookie_is_secure_exactly_when_configured(service, secure):
    # given secure_cookies on or off: when a salesperson signs in
    cookie = sign_in(service(secure))
    # then the cookie is http-only, SameSite=Lax, scoped to /ui, and Secure only when configured
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/ui"} <= flags
    assert ("secure" in flags) is secure
    assert SALES_KEY not in cookie


def test_a_cookie_signed_with_another_secret_is_no_session(service):
    # given two services with the same keys but different session secrets, and a cookie from the first
    a, b = service(session_secret="secret-a" * 4), service(session_secret="secret-b" * 4)
    cookie = sign_in(a).split(";")[0].split("=", 1)[1]
    # when the cookie is shown to each: then the first knows the session (sign-in redirects onward)
    assert (
        a.get("/ui/signin", cookies={"leadscore_session": cookie}, follow_redirects=False).status_code == 303
    )
    # and the second does not (it shows the sign-in form)
    assert (
        b.get("/ui/signin", cookies={"leadscore_session": cookie}, follow_redirects=False).status_code == 200
    )
