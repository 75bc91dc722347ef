"""One try of a webhook over HTTP: the signed request's headers, the POST within a deadline, a failed try
in a few words, and the receiver as logged (docs/webhooks.md). `serve.webhooks` decides what to send when."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import socket
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

SIGNATURE_HEADER = "X-Leadscore-Signature"
EVENT_ID_HEADER = "X-Leadscore-Event-Id"
USER_AGENT = "Leadscore-Webhooks/1"


def signature(secret: bytes, body: bytes) -> str:
    """The value of X-Leadscore-Signature: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def request_headers(secret: bytes, event_id: str, body: bytes) -> dict[str, str]:
    """The headers of an event's POST: its id, and the signature of the exact body sent."""
    return {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event_id,
        SIGNATURE_HEADER: signature(secret, body),
        "User-Agent": USER_AGENT,
    }


class TryDeadline(TimeoutError):
    """A try outlasted its wall-clock deadline (a receiver that dribbles its answer, a slow name lookup)."""


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, deadline: float) -> int:
    """POST `body` to `url` and return the status; redirects are not followed (a 3xx is a failed try).
    `timeout` bounds each step (connecting, sending, waiting for the status line) and `deadline` (seconds)
    the whole try: a timer shuts the connection then, however slowly the receiver dribbles bytes, and a
    connection made after it (a name lookup that took that long) sends nothing. So a try never outlives
    the lease it was claimed with, and no other deliverer sends the event while it runs. The answer's body
    is not read."""
    parts = urlsplit(url)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.username is not None:  # https://user:password@host/...: HTTP basic authentication
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers = {**headers, "Authorization": "Basic " + base64.b64encode(pair).decode()}
    ends = time.monotonic() + deadline
    cut = threading.Event()

    def shut() -> None:
        cut.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # wakes a thread blocked on the socket
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(deadline, shut)
    timer.daemon = True
    timer.start()
    try:
        conn.connect()
        if cut.is_set() or time.monotonic() >= ends:
            raise TryDeadline
        conn.request("POST", path, body=body, headers=headers)
        return conn.getresponse().status  # an answer read whole is the receiver's, even at the deadline
    except Exception:  # a shut socket surfaces as an OSError or a broken answer (http.client.HTTPException)
        if cut.is_set():
            raise TryDeadline from None
        raise
    finally:
        timer.cancel()
        conn.close()


def describe(error: BaseException, timeout: float, deadline: float) -> str:
    """A failed try in a few words for `last_error`. Never the URL (it may carry credentials), so never
    the text of an exception that might quote it."""
    if isinstance(error, TryDeadline):
        return f"timeout: the try took longer than {deadline:g} s"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"timeout: no answer within {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or type(error).__name__}"
    if isinstance(error, socket.gaierror):
        return "the host name did not resolve"
    if isinstance(error, (ValueError, http.client.InvalidURL)):  # their text may quote the URL
        return f"{type(error).__name__}: the URL was refused (check LEADSCORE_WEBHOOK_URL)"
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"[:200]
    if isinstance(error, http.client.HTTPException):  # a malformed answer: its text is the receiver's
        return f"{type(error).__name__}: {error}"[:200]
    return type(error).__name__


def receiver(url: str) -> str:
    """The receiver as logged: scheme, host and port only (a path or query may carry a token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"
