"""Load shedding: each worker bounds the work it takes on, and answers what is over the bound at once.

Without a bound, a flood of big requests queues in every worker: all of them slow down together (a 1,000-lead
request waited seconds behind the others), clients time out on work the server still does, and each queued
body, its parsed leads and its score-log rows grow the process. Here a worker admits a request only while it
has fewer than `LEADSCORE_MAX_INFLIGHT_REQUESTS` requests in flight and their bodies (by `Content-Length`)
stay within `LEADSCORE_MAX_INFLIGHT_BODY_BYTES`; otherwise it answers **503 with `Retry-After`** and a body
naming the reason, in a few milliseconds. An idle worker admits any request (one body within the size limit
is never refused for its size alone). Health, readiness and metrics are always answered. A chunked body
(no `Content-Length`) counts as a request only; its size is still capped by `LEADSCORE_MAX_BODY_BYTES`.
The body of a refused request is read and discarded before the answer, so a client that sends its whole body
before reading gets the 503, not a reset connection.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import orjson
from leadscore.serve.auth import holds_a_key
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:  # the metrics name the shed requests (SHED)
    from leadscore.serve.metrics import Metrics

ALWAYS = frozenset(("/healthz", "/readyz", "/metrics"))  # probes and scrapes answer under any load
RETRY_AFTER_SECONDS = 1  # about the time a worker needs to finish the work in flight at the bounds
_FREE = (0, 0)
SHED = "leadscore.shed"  # scope key: why the request was shed ("requests" or "bytes")
API_PREFIX = "/v1/"
PAGE_BODY_BYTES = 64_000  # a sales-page form is a few hundred bytes


class Admission:
    def __init__(
        self, max_requests: int, max_bytes: int, max_body_bytes: int, metrics: Metrics | None = None
    ):
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.requests = 0  # in flight in this worker
        self.bytes = 0  # their bodies' declared sizes
        self._lock = threading.Lock()  # one event loop per worker; tests may run several
        if metrics is not None:
            metrics.inflight_requests.set_function(lambda: self.requests)
            metrics.inflight_bytes.set_function(lambda: self.bytes)

    def admit(self, scope: Scope, path: str, keyed: bool = True) -> tuple[int, int] | None:
        """A ticket to `release` when the request is done, or None: answer it with `shed`.

        `keyed`: the request presents a valid API key. Only what is authenticated takes capacity: an API
        request without a valid key is not budgeted (the key check refuses it, 401 or 429), so connections
        that declare large bodies and never send them cannot shed everyone else; any other page (the sales
        page's forms) reserves at most `PAGE_BODY_BYTES` of the byte budget."""
        if path in ALWAYS or (not keyed and path.startswith(API_PREFIX)):
            return _FREE
        size = 0
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                size = min(int(value), self.max_body_bytes) if value.isdigit() else 0
                break
        if not path.startswith(API_PREFIX):
            size = min(size, PAGE_BODY_BYTES)
        with self._lock:
            if self.requests and self.requests >= self.max_requests:
                reason = "requests"
            elif self.requests and self.bytes + size > self.max_bytes:
                reason = "bytes"
            else:
                self.requests += 1
                self.bytes += size
                return (1, size)
        scope[SHED] = reason
        return None

    def release(self, ticket: tuple[int, int]) -> None:
        if ticket is not _FREE:
            with self._lock:
                self.requests -= ticket[0]
                self.bytes -= ticket[1]

    def reason(self, scope: Scope) -> str:
        if scope.get(SHED) == "bytes":
            return (
                f"the service is at capacity: this worker is working on {self.max_bytes:,} bytes of request "
                f"bodies; retry after {RETRY_AFTER_SECONDS} s or send smaller batches"
            )
        return (
            f"the service is at capacity: this worker is working on {self.max_requests} requests; retry "
            f"after {RETRY_AFTER_SECONDS} s"
        )

    async def shed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """503 with Retry-After. A client that asked `Expect: 100-continue` is answered before it sends its
        body (the server never says "100 Continue": the HTTP way to refuse an upload at once) and the
        connection is closed; any other client's body is read and discarded first, so it can read the answer
        rather than meet a reset connection mid-upload."""
        waits_for_continue = any(
            name == b"expect" and value.lower() == b"100-continue" for name, value in scope.get("headers", ())
        )
        seen = 0
        while not waits_for_continue and seen <= self.max_body_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client is gone
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = orjson.dumps({"detail": [{"field": "request", "reason": self.reason(scope)}]})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        ]
        if waits_for_continue:  # the unsent body must not be read as the next request
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if self.metrics is not None:  # timed by the metrics middleware as route "shed"
            self.metrics.shed.labels(scope[SHED]).inc()


class AdmissionMiddleware:
    """Every request passes its worker's `Admission` first: admitted (and released when answered) or shed."""

    def __init__(self, app: ASGIApp, admission: Admission, keys: dict[str, str]):
        self.app = app
        self.admission = admission
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ticket = self.admission.admit(scope, route_path(scope), holds_a_key(self.keys, scope))
        if ticket is None:  # over this worker's bound: 503 with Retry-After at once
            await self.admission.shed(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.release(ticket)


def route_path(scope: Scope) -> str:
    """The path the app routes on: without the root_path a proxy mounts the service under (uvicorn
    --root-path puts it in front of the path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
