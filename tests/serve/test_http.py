"""The HTTP layer of `leadscore serve` (stock uvicorn, httptools and uvloop) on raw sockets, as clients and
proxies use it: keep-alive and pipelining, and a client that goes away in the middle of its body."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest
from support import KEYS


@pytest.fixture(scope="module")
def example(server) -> dict:
    with server.client("scorer") as c:
        return c.get("/v1/model").json()["example"]


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _post(body: bytes, *, length: int | None = None) -> bytes:
    return (
        f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEYS['scorer']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body) if length is None else length}\r\n\r\n"
    ).encode() + body


def _responses(sock: socket.socket, n: int) -> list[tuple[int, bytes]]:
    """The next `n` responses on the connection: (status, body), framed by their Content-Length."""
    data, out = b"", []
    while len(out) < n:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1")
            length = int(re.search(r"(?im)^content-length: *(\d+)", head).group(1))
            if len(data) >= head_end + 4 + length:
                out.append((int(head.split()[1]), data[head_end + 4 : head_end + 4 + length]))
                data = data[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} responses"
        data += chunk
    return out


def _metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEYS['admin']}"}).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_pipelined_requests_on_one_connection_get_whole_answers_in_order(server, example):
    # given three requests written back to back on one keep-alive connection: a score, a health check, and a
    # score with explain=full
    one = json.dumps(example).encode()
    full = _post(one).replace(b"/v1/score", b"/v1/score?explain=full", 1)
    with _connect(server.url) as s:
        s.sendall(_post(one) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + full)
        # when the answers are read
        answers = _responses(s, 3)
    # then each request got its own whole answer, in the order sent
    assert [status for status, _ in answers] == [200, 200, 200]
    first, health, explained = (json.loads(body) for _, body in answers)
    assert "explanation" not in first["results"][0] and health == {"status": "ok"}
    assert explained["results"][0]["explanation"]
    assert first["results"][0]["probability"] == explained["results"][0]["probability"]


def test_a_client_that_goes_away_mid_body_gets_nothing_scored(server, example):
    # given the scores served so far, and a client that sends a whole scoring request's JSON under a
    # Content-Length promising more, and leaves: a server that scored what it had would score this lead
    body = json.dumps(example).encode()
    scored = _metric(server.url, "leadscore_score_count")
    gone = _metric(server.url, "leadscore_requests_total", 'status="499"')
    with _connect(server.url) as s:
        s.sendall(_post(body, length=len(body) + 64))
    # when the service has seen it leave (counted as 499, a request its client closed)
    deadline = time.monotonic() + 30
    while _metric(server.url, "leadscore_requests_total", 'status="499"') == gone:
        assert time.monotonic() < deadline, "the service never saw the client leave"
        time.sleep(0.05)
    # then nothing was scored for it, and the service goes on answering
    assert _metric(server.url, "leadscore_score_count") == scored
    with _connect(server.url) as s:
        s.sendall(_post(body))
        assert _responses(s, 1)[0][0] == 200
