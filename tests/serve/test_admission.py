"""Only what is authenticated takes a worker's capacity: connections without a valid key that declare large
bodies and never send them do not make the service shed requests with a key (a real server process)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from support import KEYS

pytestmark = pytest.mark.slow


def _idle_upload(url: str, length: int, headers: str = "") -> socket.socket:
    """A connection that sends a POST's head declaring `length` body bytes, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(
        f"POST /v1/score HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    return s


def test_keyless_idle_uploads_do_not_shed_requests_with_a_key(trained, tmp_path, start_server):
    # given a worker whose budget of request bodies is 8 MB, and connections without a key (or with a wrong
    # one) that declare 5 MB and 3 MB bodies and send none of it
    server = start_server(tmp_path, trained.uri, extra_env={"LEADSCORE_MAX_INFLIGHT_BODY_BYTES": "8000000"})
    idle = []
    try:
        idle = [
            _idle_upload(server.url, 5_000_000),
            _idle_upload(server.url, 3_000_000, "X-API-Key: not-a-key\r\n"),
        ]
        time.sleep(0.5)  # the worker has taken both heads
        # when a client with a key scores a lead
        with server.client("scorer") as c:
            r = c.post("/v1/score", json=trained.result.model.info["example"])
        # then it is scored, not shed
        assert r.status_code == 200, r.text
    finally:
        for s in idle:
            s.close()
        server.stop()


@pytest.fixture
def busy_worker(trained, tmp_path, start_server):
    """A worker whose 8 MB body budget is taken by two keyed uploads in progress (5 MB and 3 MB declared,
    nothing sent); yields the server and the idle sockets (closed afterwards)."""
    server = start_server(tmp_path, trained.uri, extra_env={"LEADSCORE_MAX_INFLIGHT_BODY_BYTES": "8000000"})
    key = f"Authorization: Bearer {KEYS['scorer']}\r\n"
    idle = []
    try:
        idle += [_idle_upload(server.url, 5_000_000, key), _idle_upload(server.url, 3_000_000, key)]
        time.sleep(0.5)  # the worker has taken both heads
        yield server, idle
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_requests_with_a_key_still_share_the_budget(busy_worker, trained):
    server, _ = busy_worker
    # when another request with a key arrives, then the bound holds: it is shed with Retry-After
    r = httpx.post(
        f"{server.url}/v1/score",
        json=trained.result.model.info["example"],
        headers={"Authorization": f"Bearer {KEYS['scorer']}"},
        timeout=30,
    )
    assert r.status_code == 503 and r.headers["retry-after"], r.text


def test_an_upload_that_asks_to_continue_is_refused_before_its_body(busy_worker):
    server, idle = busy_worker
    # when a keyed client announces a 2 MB batch with `Expect: 100-continue` and waits, sending nothing
    asking = _idle_upload(
        server.url, 2_000_000, f"Authorization: Bearer {KEYS['scorer']}\r\nExpect: 100-continue\r\n"
    )
    idle.append(asking)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = asking.recv(4096)
        assert chunk, f"connection closed before an answer: {head!r}"
        head += chunk
    # then the first answer is the refusal itself, not "100 Continue": no byte of the body was needed
    status, _, rest = head.partition(b"\r\n")
    assert status == b"HTTP/1.1 503 Service Unavailable", head
    assert b"retry-after: 1" in rest.lower() and b"connection: close" in rest.lower()
