"""A real local webhook receiver for the tests: an HTTP server in a thread that verifies each request's
signature the way docs/webhooks.md tells receivers to, and can fail or stall on purpose."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "whsec_test_0123456789abcdef"


@dataclass
class Received:
    event_id: str
    body: bytes
    headers: dict[str, str]
    signature_ok: bool
    status: int  # what the receiver answered

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`fail_first[event_id]` (or `fail_each`): answer that many requests of an event with 500 first;
    `stall`: hold each request that many seconds before answering."""

    secret: str = SECRET
    fail_each: int = 0
    stall: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)  # event id -> requests being answered now
    overlaps: int = 0  # requests of an event that arrived while another of the same event was in flight
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/leadscore?token=abc"

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event_id = self.headers.get("X-Leadscore-Event-Id", "")
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(expected, self.headers.get("X-Leadscore-Signature", ""))
                with receiver.lock:
                    if receiver.in_flight.get(event_id):
                        receiver.overlaps += 1
                    receiver.in_flight[event_id] = receiver.in_flight.get(event_id, 0) + 1
                    tries = sum(1 for r in receiver.received if r.event_id == event_id)
                if receiver.stall:
                    time.sleep(receiver.stall)
                status = 200 if ok and tries >= receiver.fail_each else (401 if not ok else 500)
                with receiver.lock:
                    receiver.in_flight[event_id] -= 1
                    receiver.received.append(Received(event_id, body, dict(self.headers), ok, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def accepted(self) -> list[Received]:
        """The requests answered 2xx (what a de-duplicating receiver acts on)."""
        with self.lock:
            return [r for r in self.received if r.status == 200]

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        """Wait until `n` requests were accepted (or the timeout passed); the accepted ones."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.accepted()) < n:
            time.sleep(0.02)
        return self.accepted()
