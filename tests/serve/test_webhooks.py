"""Webhook delivery of the outbox's handoff events (serve/webhooks.py, serve/webhook_http.py,
serve/store/outbox*.py) to a real local HTTP receiver, on SQLite and PostgreSQL: signed bodies byte for byte,
retries with backoff, dead letters, redelivery, leases between deliverers, max age, retention; and the pull
and admin endpoints."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from leadscore.serve import db, store
from leadscore.serve.metrics import Metrics
from leadscore.serve.store import outbox, outbox_admin, outbox_delivery
from leadscore.serve.store.rows import now
from leadscore.serve.webhooks import WebhookDeliverer
from pydantic import ValidationError
from support import KEYS, KEYS_ENV, REPO
from webhook_receiver import SECRET, Receiver

from leadscore.settings import Settings


def add_event(
    engine: sa.Engine, lead_id: str = "L-1", age: timedelta = timedelta(0), kind: str = "lead.handoff"
):
    """An outbox row as the core's writer makes one (body: the JSON with sorted keys); its event id."""
    event_id = str(uuid.uuid4())
    created = now() - age
    body = json.dumps(
        {
            "event_id": event_id,
            "type": kind,
            "created_at": created.isoformat(),
            "lead_id": lead_id,
            "score": 81,
            "grade": "A",
            "probability": 0.42,
            "qualified": True,
            "explored": False,
            "previous_grade": "B",
            "previous_qualified": False,
            "as_of": created.isoformat(),
            "scored_at": created.isoformat(),
            "model_version": "1",
            "reasons": [{"feature": "demo_requested", "text": "Requested a demo — é"}],
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    with engine.begin() as conn:
        conn.execute(
            sa.insert(db.outbox).values(
                event_id=event_id,
                type=kind,
                lead_id=lead_id,
                created_at=created,
                body=body,
                status="pending",
                attempts=0,
                next_attempt_at=created,
            )
        )
    return event_id


def settings(url: str, database_url: str, **kw) -> Settings:
    return Settings(
        webhook_url=url,
        webhook_secret=SECRET,
        database_url=database_url,
        webhook_backoff_seconds=0.02,
        webhook_backoff_max_seconds=0.1,
        webhook_timeout_seconds=kw.pop("webhook_timeout_seconds", 2),
        **kw,
    )


def stored(engine: sa.Engine, event_id: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(db.outbox).where(db.outbox.c.event_id == event_id)).one()._mapping)


def wait_until(check, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def docs_verify(secret: str, body: bytes, signature: str) -> bool:
    """The `verify` function docs/webhooks.md gives receivers, run as printed."""
    doc = (REPO / "docs" / "webhooks.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "def verify" in b]
    scope: dict = {}
    exec(code, scope)
    return scope["verify"](secret, body, signature)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def deliverers():
    """Start deliverers; each is stopped after the test."""
    started: list[WebhookDeliverer] = []

    def start(engine, s: Settings, metrics: Metrics | None = None) -> WebhookDeliverer:
        d = WebhookDeliverer(engine, s, metrics or Metrics(), poll_seconds=0.05)
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def test_each_event_is_posted_once_byte_for_byte_and_signed(engine, database_url, receiver, deliverers):
    # given three pending events
    ids = [add_event(engine, f"L-{i}") for i in range(3)]
    metrics = Metrics()
    # when a deliverer runs
    deliverers(engine, settings(receiver.url, database_url), metrics)
    got = receiver.wait_for(3)
    # then each was received once, its stored body byte for byte, signed with the secret
    assert sorted(r.event_id for r in got) == sorted(ids)
    for r in got:
        row = stored(engine, r.event_id)
        assert r.body == row["body"].encode()
        assert r.signature_ok
        expected = hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.headers["X-Leadscore-Signature"] == f"sha256={expected}"
        assert r.headers["Content-Type"] == "application/json"
        assert r.event["event_id"] == r.event_id
        assert docs_verify(SECRET, r.body, r.headers["X-Leadscore-Signature"])  # the docs' snippet agrees
        assert not docs_verify(SECRET, r.body + b" ", r.headers["X-Leadscore-Signature"])
    assert wait_until(lambda: all(stored(engine, i)["status"] == "delivered" for i in ids))
    assert all(stored(engine, i)["attempts"] == 1 and stored(engine, i)["delivered_at"] for i in ids)
    assert len(receiver.received) == 3
    assert wait_until(lambda: metrics.webhook_delivered._value.get() == 3)  # counted after the store


def test_failing_three_times_then_succeeding_is_delivered_once(engine, database_url, receiver, deliverers):
    # given a receiver that answers 500 to the first three tries of every event
    receiver.fail_each = 3
    ids = [add_event(engine, f"L-{i}") for i in range(2)]
    metrics = Metrics()
    deliverers(engine, settings(receiver.url, database_url), metrics)
    # then each event is accepted exactly once, on its fourth try, with the same event id and body
    got = receiver.wait_for(2)
    assert sorted(r.event_id for r in got) == sorted(ids)
    assert wait_until(lambda: all(stored(engine, i)["status"] == "delivered" for i in ids))
    for i in ids:
        tries = [r for r in receiver.received if r.event_id == i]
        assert [r.status for r in tries] == [500, 500, 500, 200]
        assert len({r.body for r in tries}) == 1
        assert stored(engine, i)["attempts"] == 4 and stored(engine, i)["last_error"] is None
    assert wait_until(lambda: metrics.webhook_failed._value.get() == 6)


def test_dead_after_max_attempts_listed_and_redelivered(engine, database_url, receiver, deliverers, tmp_path):
    # given a receiver that always fails and at most 3 tries
    receiver.fail_each = 10**6
    event_id = add_event(engine)
    metrics = Metrics()
    s = settings(receiver.url, database_url, webhook_max_attempts=3, api_keys=KEYS_ENV)
    deliverer = deliverers(engine, s, metrics)
    # then it is dead after the third try, with the error
    assert wait_until(lambda: stored(engine, event_id)["status"] == "dead")
    row = stored(engine, event_id)
    assert row["attempts"] == 3 and row["last_error"] == "HTTP 500"
    assert len(receiver.received) == 3
    assert wait_until(lambda: metrics.webhook_dead._value.get() == 1)
    # and the admin endpoint lists it
    app = _app(s)
    app.state.service.webhooks = deliverer
    with _client(app) as client:
        admin = {"Authorization": f"Bearer {KEYS['admin']}"}
        status = client.get("/v1/admin/webhooks", headers=admin).json()
        assert status["counts"] == {"pending": 0, "delivered": 0, "dead": 1}
        assert [(d["event_id"], d["attempts"], d["last_error"]) for d in status["dead"]] == [
            (event_id, 3, "HTTP 500")
        ]
        assert "token" not in json.dumps(status)  # the receiver is shown without path or query
        # when the receiver is fixed and an admin redelivers it
        receiver.fail_each = 0
        r = client.post(f"/v1/admin/webhooks/{event_id}/redeliver", headers=admin)
        assert r.status_code == 200 and r.json()["status"] == "pending" and r.json()["attempts"] == 0
        # then it is delivered, with the same body
        assert wait_until(lambda: stored(engine, event_id)["status"] == "delivered")
        assert [r.status for r in receiver.received] == [500, 500, 500, 200]
        assert len({r.body for r in receiver.received}) == 1
        # bad input names the field; an unknown event is a 404; a sales key may not
        r = client.post("/v1/admin/webhooks/not-a-uuid/redeliver", headers=admin)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "event_id"
        r = client.post(f"/v1/admin/webhooks/{uuid.uuid4()}/redeliver", headers=admin)
        assert r.status_code == 404 and r.json()["detail"][0]["field"] == "event_id"
        sales = {"Authorization": f"Bearer {KEYS['sales']}"}
        assert client.get("/v1/admin/webhooks", headers=sales).status_code == 403


def _app(s: Settings):
    """The app on these settings; its store is migrated by the `engine` fixture."""
    from leadscore.serve.app import create_app

    return create_app(s)


@contextlib.contextmanager
def _client(app) -> Iterator[TestClient]:
    """A client without the app's lifespan (entering a TestClient would run it and load a model): the
    routes and the store are all these tests need."""
    client = TestClient(app)
    try:
        yield client
    finally:
        client.close()


def test_two_deliverers_never_send_one_event_at_once(engine, database_url, receiver, deliverers):
    # given a slow receiver and two deliverers on one store (two service processes, or two hosts)
    receiver.stall = 0.2
    ids = [add_event(engine, f"L-{i}") for i in range(8)]
    s = settings(receiver.url, database_url, webhook_workers=3)
    deliverers(engine, s)
    deliverers(db.make_engine(database_url), s)
    # then every event is received exactly once, never by both at a time
    got = receiver.wait_for(8, timeout=30)
    assert sorted(r.event_id for r in got) == sorted(ids)
    assert len(receiver.received) == 8 and receiver.overlaps == 0


def test_an_abandoned_lease_is_delivered_once_it_expires(engine, database_url, receiver, deliverers):
    # given an event claimed by a deliverer that then died (kill -9): leased, never answered
    event_id = add_event(engine)
    (dead_claim,) = outbox_delivery.claim(engine, 10, lease_seconds=1.0)
    assert outbox_delivery.claim(engine, 10, lease_seconds=1.0) == []  # held: nobody else takes it meanwhile
    # when a live deliverer runs
    deliverers(engine, settings(receiver.url, database_url))
    # then the event is delivered after the lease ran out
    assert [r.event_id for r in receiver.wait_for(1)] == [event_id]
    assert wait_until(lambda: stored(engine, event_id)["status"] == "delivered")
    # and the dead claim, were it to come back, can no longer record an outcome over it
    assert not outbox_delivery.mark_failed(engine, dead_claim, "late", None)
    assert stored(engine, event_id)["status"] == "delivered"


def test_a_timeout_is_a_failed_try(engine, database_url, receiver, deliverers):
    # given a receiver slower than the timeout
    receiver.stall = 1.5
    event_id = add_event(engine)
    deliverers(
        engine, settings(receiver.url, database_url, webhook_timeout_seconds=0.3, webhook_max_attempts=1)
    )
    assert wait_until(lambda: stored(engine, event_id)["status"] == "dead")
    assert stored(engine, event_id)["last_error"] == "timeout: no answer within 0.3 s"


def test_an_unreachable_receiver_is_retried(engine, database_url, deliverers):
    # given a URL where nothing listens
    from support import free_port

    event_id = add_event(engine)
    deliverers(engine, settings(f"http://127.0.0.1:{free_port()}/x", database_url, webhook_max_attempts=2))
    assert wait_until(lambda: stored(engine, event_id)["status"] == "dead")
    row = stored(engine, event_id)
    assert row["attempts"] == 2 and row["last_error"] == "connection refused"


def test_an_event_older_than_the_max_age_is_dead_unsent(engine, database_url, receiver, deliverers):
    # given an event written 4 days ago and never tried (delivery was off), and a fresh one
    old = add_event(engine, "L-old", age=timedelta(days=4))
    fresh = add_event(engine, "L-new")
    deliverers(engine, settings(receiver.url, database_url, webhook_max_age_hours=72))
    # then the fresh one is delivered and the old one is dead without a try
    assert [r.event_id for r in receiver.wait_for(1)] == [fresh]
    assert wait_until(lambda: stored(engine, old)["status"] == "dead")
    assert stored(engine, old)["attempts"] == 0 and "expired" in stored(engine, old)["last_error"]
    # an admin may still send it: a redelivered event is not expired again
    outbox_admin.redeliver(engine, old)
    assert sorted(r.event_id for r in receiver.wait_for(2)) == sorted([old, fresh])


def test_retention_deletes_old_delivered_and_dead_events_only(engine):
    old_delivered, old_dead, old_pending, old_unsendable, recent = (
        add_event(engine, age=timedelta(days=200)),
        add_event(engine, age=timedelta(days=200)),
        add_event(engine, age=timedelta(days=200)),
        add_event(engine, age=timedelta(days=200)),
        add_event(engine, age=timedelta(days=1)),
    )
    with engine.begin() as conn:
        o = db.outbox.c
        conn.execute(
            sa.update(db.outbox).where(o.event_id.in_([old_delivered, recent])).values(status="delivered")
        )
        conn.execute(sa.update(db.outbox).where(o.event_id == old_dead).values(status="dead"))
    # an old pending one is kept while it could still be sent (max age beyond the retention), then not
    assert store.prune_outbox_all(engine, retention_days=180, max_age_hours=365 * 24) == 2
    assert store.prune_outbox_all(engine, retention_days=180, max_age_hours=72) == 2
    assert store.prune_outbox_all(engine, retention_days=0, max_age_hours=72) == 0  # 0 keeps everything
    with engine.connect() as conn:
        left = set(conn.execute(sa.select(db.outbox.c.event_id)).scalars())
    assert left == {recent}
    del old_pending, old_unsendable


def test_pull_lists_events_in_order_with_a_cursor(engine, database_url, tmp_path):
    ids = [add_event(engine, f"L-{i}", age=timedelta(seconds=5)) for i in range(5)]
    app = _app(Settings(database_url=database_url, api_keys=KEYS_ENV))
    with _client(app) as client:
        seen, cursor = [], 0
        for role in ("scorer", "sales", "admin"):
            page = client.get(
                "/v1/handoffs",
                params={"since": cursor, "limit": 2},
                headers={"Authorization": f"Bearer {KEYS[role]}"},
            )
            assert page.status_code == 200
            body = page.json()
            seen += [e["event"]["event_id"] for e in body["events"]]
            assert all(
                e["status"] == "pending" and e["event"]["type"] == "lead.handoff" for e in body["events"]
            )
            cursor = body["next"]
        assert seen == ids
        # past the end: an empty page keeps the cursor
        last = client.get(
            "/v1/handoffs", params={"since": cursor}, headers={"Authorization": f"Bearer {KEYS['sales']}"}
        )
        assert last.json() == {"events": [], "next": cursor}
        # a new event comes after the cursor
        new = add_event(engine, "L-9", age=timedelta(seconds=5))
        page = client.get(
            "/v1/handoffs", params={"since": cursor}, headers={"Authorization": f"Bearer {KEYS['sales']}"}
        )
        assert [e["event"]["event_id"] for e in page.json()["events"]] == [new]
        # bad input names the field; no key is a 401
        r = client.get(
            "/v1/handoffs", params={"since": -1}, headers={"Authorization": f"Bearer {KEYS['sales']}"}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "since"
        r = client.get(
            "/v1/handoffs", params={"limit": 5000}, headers={"Authorization": f"Bearer {KEYS['sales']}"}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "limit"
        assert client.get("/v1/handoffs").status_code == 401


def test_a_webhook_url_that_is_not_http_or_lacks_a_secret_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="LEADSCORE_WEBHOOK_URL must be an http"):
        Settings(webhook_url="ftp://hooks.example.com/x", webhook_secret=SECRET)
    with pytest.raises(ValidationError, match="LEADSCORE_WEBHOOK_SECRET must be set"):
        Settings(webhook_url="https://hooks.example.com/x")
    assert Settings(webhook_url="", webhook_secret="").webhook_url is None
    # a port that is no port, spaces or control characters: refused at start-up, not at every try
    for bad, reason in [
        ("https://hooks.example.com:https/x", "port that is not a number"),
        ("https://hooks.example.com:70000/x", "port that is not a number"),
        ("https://hooks.example.com/a b", "spaces or control characters"),
        ("https://hooks.example.com/a\r\nX-Injected: 1", "spaces or control characters"),
    ]:
        with pytest.raises(ValidationError, match=reason) as refused:
            Settings(webhook_url=bad, webhook_secret=SECRET)
        assert "hooks.example.com" not in str(refused.value)
    assert Settings(webhook_url="https://[::1]:8443/x", webhook_secret=SECRET).webhook_url
    # `leadscore serve` stops at once with the message, never showing a value
    env = {
        "LEADSCORE_WEBHOOK_URL": "file:///etc/passwd",
        "LEADSCORE_WEBHOOK_SECRET": "s3cret-value-never-shown",
        "PATH": "/usr/bin:/bin",
    }
    p = subprocess.run(
        [sys.executable, "-m", "leadscore", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    out = " ".join((p.stdout + p.stderr).split())
    assert "LEADSCORE_WEBHOOK_URL must be an http:// or https:// URL" in out
    assert "s3cret" not in out and "passwd" not in out and "Traceback" not in out


def test_credentials_in_the_url_are_sent_as_basic_auth(engine, database_url, receiver, deliverers):
    event_id = add_event(engine)
    url = receiver.url.replace("http://", "http://hook:p%40ss@")
    deliverers(engine, settings(url, database_url))
    (got,) = receiver.wait_for(1)
    assert got.event_id == event_id
    assert got.headers["Authorization"] == "Basic " + base64.b64encode(b"hook:p@ss").decode()


def test_the_pending_gauge_counts_in_the_background(engine):
    from leadscore.serve.webhooks import PendingGauge

    for _ in range(2):
        add_event(engine)
    gauge = PendingGauge(engine, ttl=0)
    assert wait_until(lambda: gauge() == 2)


def test_the_pull_cursor_never_passes_an_event_whose_transaction_commits_late(engine, database_url):
    """PostgreSQL draws an id at insert and shows the row at commit: a page must not list a later id while
    an earlier one may still commit (the cursor would pass it for good)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    from test_handoff_events import row

    with engine.begin() as conn:  # the score's feature set is stored (else B would wait on A's insert of it)
        store.write_scores(conn, [row("warm", "D", False)])
    # given a transaction that wrote event A (the smaller id) and stays open
    slow = engine.connect()
    tx = slow.begin()
    store.write_scores(slow, [row("late-a", "A", True)])
    # and another that wrote event B (a larger id) and committed
    with engine.begin() as conn:
        store.write_scores(conn, [row("late-b", "A", True)])
    # when a client reads a page meanwhile
    page: list[list[str]] = []
    reader = threading.Thread(
        target=lambda: page.append([e["event"]["lead_id"] for e in outbox.outbox_page(engine, 0, 100)])
    )
    reader.start()
    reader.join(0.5)
    waited = reader.is_alive()  # the page waits for A's transaction rather than list B without it
    tx.commit()
    slow.close()
    reader.join(30)
    # then it lists A and B in id order, once A is committed
    assert waited and page == [["late-a", "late-b"]]


def test_pull_ids_are_never_reused_after_retention_deletes_the_newest_events(engine):
    # given events a pull client has read up to its cursor, then all deleted by retention
    for i in range(3):
        add_event(engine, f"L-{i}", age=timedelta(days=200))
    with engine.begin() as conn:
        conn.execute(sa.update(db.outbox).values(status="delivered"))
    cursor = outbox.outbox_page(engine, 0, 100)[-1]["id"]
    assert store.prune_outbox_all(engine, retention_days=180, max_age_hours=72) == 3
    # when a new event is written
    new = add_event(engine, "L-new")
    # then it comes after the client's cursor (an id is never drawn twice)
    assert [e["event"]["event_id"] for e in outbox.outbox_page(engine, cursor, 100)] == [new]
    # and the code's table declares what the migration built
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateTable

    assert "AUTOINCREMENT" in str(CreateTable(db.outbox).compile(dialect=sqlite.dialect()))


@pytest.fixture
def dribbler():
    """A receiver that answers one byte of a status line every 0.1 s and never finishes (for 60 s): every
    read of the answer is within any per-read timeout, the whole answer never comes."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                deadline = time.monotonic() + 60
                line = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000
                for byte in line:
                    if stop.is_set() or time.monotonic() > deadline:
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.1)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    t.join(5)
    server.close()


def test_a_try_is_cut_at_its_deadline_however_slowly_the_receiver_answers(engine, database_url, dribbler):
    # given a receiver that dribbles its answer, each byte well within the 0.3 s timeout
    event_id = add_event(engine)
    s = settings(dribbler, database_url, webhook_timeout_seconds=0.3, webhook_max_attempts=1)
    d = WebhookDeliverer(engine, s, Metrics())
    # then the try is cut at its deadline (3 x the timeout), well before its lease runs out
    assert d.lease_seconds >= d.try_seconds + 10
    (claimed,) = outbox_delivery.claim(engine, 1, d.lease_seconds)
    assert d.deliver(claimed) is False
    row = stored(engine, event_id)
    assert row["status"] == "dead" and row["last_error"] == "timeout: the try took longer than 0.9 s"


def test_an_outcome_recorded_too_late_is_not_counted(engine, database_url, receiver):
    # given an event claimed by a deliverer, then redelivered by an admin (the claim's lease is dropped)
    event_id = add_event(engine)
    metrics = Metrics()
    d = WebhookDeliverer(engine, settings(receiver.url, database_url), metrics)
    (claimed,) = outbox_delivery.claim(engine, 1, d.lease_seconds)
    outbox_admin.redeliver(engine, event_id)
    # when the first deliverer's try ends (the receiver accepts it)
    d.deliver(claimed)
    # then its outcome is neither recorded nor counted: the redelivered try will be
    assert stored(engine, event_id)["status"] == "pending"
    assert metrics.webhook_delivered._value.get() == 0
    receiver.fail_each = 10**6
    (claimed,) = outbox_delivery.claim(engine, 1, d.lease_seconds)
    outbox_admin.redeliver(engine, event_id)
    d.deliver(claimed)
    assert metrics.webhook_failed._value.get() == 0 and stored(engine, event_id)["attempts"] == 0


def test_a_failed_try_never_records_the_url():
    from http.client import InvalidURL

    from leadscore.serve.webhook_http import describe

    url = "http://hook:s3cret@example.com/x y"
    for error in (InvalidURL(f"URL can't contain control characters. {url!r}"), ValueError(url)):
        assert "s3cret" not in describe(error, 5, 15) and "example.com" not in describe(error, 5, 15)


def test_events_past_the_max_age_die_together_with_one_log_line(engine, database_url, receiver, caplog):
    # given events written 4 days ago while no URL was set, and a fresh one
    old = [add_event(engine, f"L-old-{i}", age=timedelta(days=4)) for i in range(5)]
    fresh = add_event(engine, "L-new")
    metrics = Metrics()
    # when a deliverer starts with a URL
    with caplog.at_level("INFO", logger="leadscore.serve.webhooks"):
        d = WebhookDeliverer(engine, settings(receiver.url, database_url), metrics, poll_seconds=0.05)
        d.start()
        try:
            assert [r.event_id for r in receiver.wait_for(1)] == [fresh]
            assert wait_until(lambda: all(stored(engine, i)["status"] == "dead" for i in old))
        finally:
            d.stop()
    # then the old ones are dead unsent, said in one line, and counted
    assert all("expired" in stored(engine, i)["last_error"] for i in old)
    lines = [r.getMessage() for r in caplog.records if "dead" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("webhooks: 5 events written more than 72 h ago")
    assert metrics.webhook_dead._value.get() == 5
