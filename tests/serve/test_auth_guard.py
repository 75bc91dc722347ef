"""Key checks against the real app and store (in-process ASGI, SQLite, the trained champion): wrong keys are
throttled per client address (429 + Retry-After) on the API and the sales-page sign-in alike, every failed
check is audited without the key, the 403 names the role needed and the one held, and no redirect is built
from the Host header."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from leadscore.serve.app import create_app
from leadscore.serve.auth import FailureLimiter, throttle_key
from support import KEYS, KEYS_ENV

from leadscore.settings import Settings

LIMIT, WINDOW = 3, 600
ATTACKER, OTHER = ("203.0.113.7", 40001), ("198.51.100.9", 40002)
WRONG_KEY = "zq_WRONG_guess_7731"  # a key nobody has: no part of it may reach the log


@pytest.fixture
def app(trained, tmp_path):
    settings = Settings(
        api_keys=KEYS_ENV,
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        mlflow_tracking_uri=trained.uri,
        reload_interval_seconds=0,
        auth_failure_limit=LIMIT,
        auth_failure_window_seconds=WINDOW,
    )
    app = create_app(settings)
    with TestClient(app, client=OTHER):  # runs the lifespan: migrated store, champion loaded
        yield app


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def audit_log():
    """The lines written to the audit logger during the test, formatted as the service formats them."""
    logger, handler = logging.getLogger("leadscore.serve.audit"), Lines()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def client(app, address, role: str | None = None, key: str | None = None) -> TestClient:
    headers = {"Authorization": f"Bearer {key or KEYS[role]}"} if (key or role) else {}
    return TestClient(app, client=address, headers=headers, follow_redirects=False)


def example(app) -> dict:
    return client(app, OTHER, "scorer").get("/v1/model").json()["example"]


def test_wrong_keys_from_one_address_get_429_with_retry_after_even_for_the_right_key(app):
    body = example(app)
    attacker = client(app, ATTACKER, key=WRONG_KEY)
    # given LIMIT wrong keys from one address: each is a plain 401
    assert [attacker.post("/v1/score", json=body).status_code for _ in range(LIMIT)] == [401] * LIMIT
    # when it tries again, then it is told to wait, with the reason and Retry-After (at most the window)
    r = attacker.post("/v1/score", json=body)
    assert r.status_code == 429, r.text
    assert 0 < int(r.headers["retry-after"]) <= WINDOW
    (detail,) = r.json()["detail"]
    assert detail["field"] == "authorization" and "too many failed key checks" in detail["reason"]
    # and while it waits even the right key is refused, on the scoring path and on every other route
    assert client(app, ATTACKER, "scorer").post("/v1/score", json=body).status_code == 429
    assert client(app, ATTACKER, "admin").get("/v1/leads").status_code == 429
    # but another address with the right key is served as before
    assert client(app, OTHER, "scorer").post("/v1/score", json=body).status_code == 200


def test_missing_keys_and_wrong_roles_are_not_counted_as_guesses(app):
    # given an address that sends no key, and one whose valid sales key calls an admin route, many times
    for _ in range(LIMIT + 2):
        assert client(app, ATTACKER).get("/v1/model").status_code == 401
        assert client(app, OTHER, "sales").post("/v1/admin/reload").status_code == 403
    # then neither is throttled: only wrong keys are guesses
    assert client(app, ATTACKER, "scorer").get("/v1/model").status_code == 200
    assert client(app, OTHER, "sales").get("/v1/model").status_code == 200


def _signin(c: TestClient, key: str):
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/signin").text).group(1)
    return c.post("/ui/signin", data={"key": key, "csrf": token, "next": "/ui/leads"})


def test_sign_in_is_throttled_with_the_api_by_one_count_per_address(app):
    browser = client(app, ATTACKER)
    # given LIMIT wrong keys on the sign-in page: each is refused with 401
    assert [_signin(browser, WRONG_KEY).status_code for _ in range(LIMIT)] == [401] * LIMIT
    # when the right key follows, then it must wait too: a 429 page saying why, no session
    r = _signin(browser, KEYS["sales"])
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= WINDOW
    assert "Too many wrong keys" in r.text and "leadscore_session" not in r.headers.get("set-cookie", "")
    # and the API from that address waits as well (one count per address for every door)
    assert client(app, ATTACKER, "sales").get("/v1/model").status_code == 429
    # while another address signs in
    assert _signin(client(app, OTHER), KEYS["sales"]).status_code == 303


def test_every_failed_check_is_audited_without_the_key(app, audit_log):
    # given a wrong key on the API and the sign-in page, no key, and a sales key on an admin route
    client(app, ATTACKER, key=WRONG_KEY).post("/v1/score", json={"leads": []})
    client(app, ATTACKER).get("/v1/leads")
    client(app, OTHER, "sales").post("/v1/admin/reload")
    _signin(client(app, ATTACKER), WRONG_KEY)
    # then each has one line naming method, path, client address, what failed and the role needed
    assert audit_log == [
        f"WARNING leadscore.serve.audit: {line}"
        for line in (
            "auth failure: POST /v1/score from 203.0.113.7: invalid API key; needs the scorer or admin role",
            "auth failure: GET /v1/leads from 203.0.113.7: no API key; "
            "needs the scorer or sales or admin role",
            "auth failure: POST /v1/admin/reload from 198.51.100.9: a sales key; needs the admin role",
            "auth failure: POST /ui/signin from 203.0.113.7: invalid key; needs the sales or admin role",
        )
    ]
    # and no part of any key presented (not even 5 characters of it)
    text = "\n".join(audit_log)
    for key in (WRONG_KEY, *KEYS.values()):
        assert not any(key[i : i + 5] in text for i in range(len(key) - 4)), key


def test_a_path_cannot_forge_audit_lines(app, audit_log):
    # given a lead path holding an encoded newline and a fake log line
    client(app, ATTACKER).get("/v1/leads/x%0Aauth failure: forged")
    # then the audit line stays one line, the newline shown escaped
    (line,) = audit_log
    assert "\n" not in line and "/v1/leads/x\\nauth failure: forged" in line


@pytest.mark.parametrize(
    "role, method, path, needed",
    [
        ("sales", "POST", "/v1/admin/reload", "admin"),
        ("scorer", "POST", "/v1/feedback", "sales or admin"),
        ("sales", "POST", "/v1/score", "scorer or admin"),
    ],
)
def test_403_names_the_role_needed_and_the_role_held(app, role, method, path, needed):
    r = client(app, OTHER, role).request(method, path, json={})
    assert r.status_code == 403
    assert r.json()["detail"] == [
        {
            "field": "authorization",
            "reason": f"this route needs the {needed} role; your key has the {role} role",
        }
    ]


@pytest.mark.parametrize(
    "method, path", [("POST", "/v1/score/"), ("GET", "/v1/model/"), ("GET", "/v1/leads/")]
)
def test_a_trailing_slash_is_404_never_a_redirect_to_the_host_header(app, method, path):
    # given a request with a trailing slash and a forged Host header
    r = client(app, OTHER, "admin").request(method, path, headers={"Host": "evil.example"}, json={})
    # then it is a 404 with the usual error body, and nothing points at the forged host
    assert r.status_code == 404 and "location" not in r.headers
    assert r.json()["detail"][0]["field"] == "path" and "evil.example" not in r.text


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_window_slides_and_memory_stays_bounded():
    clock = Clock()
    limiter = FailureLimiter(limit=3, window=10, max_clients=100, clock=clock)
    # given three failures at t = 0, 1, 2: then the address waits until the first leaves the window
    for t in (0, 1, 2):
        clock.now = 1000 + t
        assert limiter.retry_after("a") == 0
        limiter.fail("a")
    assert limiter.retry_after("a") == 8 and limiter.retry_after("b") == 0
    # when the first has left the window, then one more try is allowed; a failure there blocks again
    clock.now = 1010.5
    assert limiter.retry_after("a") == 0
    limiter.fail("a")
    assert limiter.retry_after("a") == 1  # until the failure at t = 1 leaves
    # and a flood from many addresses keeps at most max_clients of them
    for i in range(1000):
        limiter.fail(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter.failures) <= 100
    # and limit 0 is no limit
    off = FailureLimiter(limit=0, window=10, clock=clock)
    for _ in range(50):
        off.fail("a")
    assert off.retry_after("a") == 0


def test_a_flood_from_many_addresses_does_not_clear_a_lockout():
    clock = Clock()
    clock.now = 1000.0
    limiter = FailureLimiter(limit=3, window=300, max_clients=100, clock=clock)
    # given an address locked out
    for _ in range(3):
        limiter.fail("a")
    assert limiter.retry_after("a") > 0
    # when a thousand other addresses fail once each (the table holds at most 100)
    for i in range(1000):
        limiter.fail(f"10.0.{i // 256}.{i % 256}")
    # then the locked-out address is still locked out, and memory is still bounded
    assert limiter.retry_after("a") > 0 and len(limiter.failures) <= 100


def test_ipv6_failures_count_against_the_64_a_host_holds():
    # given two addresses of one /64 and one of another, and IPv4 addresses as they are
    assert throttle_key("2001:db8:1:2::1") == throttle_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert throttle_key("2001:db8:1:3::1") != throttle_key("2001:db8:1:2::1")
    assert throttle_key("192.0.2.7") == "192.0.2.7" and throttle_key("unknown") == "unknown"


def test_sales_page_sessions_end_at_sign_out_on_either_store(trained, database_url):
    # given the service on SQLite or PostgreSQL and a signed-in salesperson whose cookie was copied
    settings = Settings(
        api_keys=KEYS_ENV,
        database_url=database_url,
        mlflow_tracking_uri=trained.uri,
        reload_interval_seconds=0,
    )
    with TestClient(create_app(settings), follow_redirects=False) as c:
        assert _signin(c, KEYS["sales"]).status_code == 303
        copied = c.cookies["leadscore_session"]
        page = c.get("/ui/summary")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        # when they sign out
        assert c.post("/ui/signout", data={"csrf": csrf}).status_code == 303
        # then the copy opens nothing: the page sends it to sign-in
        c.cookies.clear()
        r = c.get("/ui/summary", cookies={"leadscore_session": copied})
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin")


@pytest.mark.slow
def test_a_real_server_throttles_by_the_connecting_address_and_logs_no_key(start_server, trained, tmp_path):
    # given `leadscore serve` (one worker) with a limit of LIMIT wrong keys
    import httpx

    server = start_server(tmp_path, trained.uri, extra_env={"LEADSCORE_AUTH_FAILURE_LIMIT": str(LIMIT)})
    try:

        def from_address(ip: str, key: str) -> httpx.Client:
            return httpx.Client(
                base_url=server.url,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
                transport=httpx.HTTPTransport(local_address=ip),
            )

        # when 127.0.0.2 sends LIMIT + 1 wrong keys, then the last is told to wait, and so is its right key
        with from_address("127.0.0.2", WRONG_KEY) as attacker:
            codes = [attacker.get("/v1/model").status_code for _ in range(LIMIT + 1)]
        assert codes == [401] * LIMIT + [429]
        with from_address("127.0.0.2", KEYS["scorer"]) as same:
            r = same.get("/v1/model")
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        # while 127.0.0.1 is served
        with from_address("127.0.0.1", KEYS["scorer"]) as other:
            assert other.get("/v1/model").status_code == 200
    finally:
        server.stop()
    # and the server's log has an audit line per wrong key, naming the address and never the key
    log = server.log.read_text()
    assert log.count("auth failure: GET /v1/model from 127.0.0.2: invalid API key") == LIMIT
    assert not any(WRONG_KEY[i : i + 5] in log for i in range(len(WRONG_KEY) - 4))
