"""The request body limit (`LEADSCORE_MAX_BODY_BYTES`): 413 with the app's error body, for every route.

FastAPI's own `max_body_size` is not used: for a request whose Content-Length is over the limit, Starlette
replaces whatever the app answers by a plain-text 413, where the API promises its JSON error body.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """413 for request bodies over `limit` bytes, by Content-Length or as the body streams in.

    The body is read here first (the app reads all of it anyway) and replayed to the app, so an oversized
    chunked body is answered 413 before any route sees it, not a parse error.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, scope.get("headers", ()), self.limit)
        except TooLarge:
            await _too_large(send, self.limit)
            return
        except ClientGone as gone:  # the app sees the disconnect
            await self.app(scope, _replay([gone.message], receive), send)
            return
        await self.app(
            scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send
        )


class TooLarge(Exception):
    """The body is over the size limit (413)."""


class ClientGone(Exception):
    """The client disconnected before its body was complete."""

    def __init__(self, message: Message):
        super().__init__("client disconnected")
        self.message = message


async def read_body(receive: Receive, headers: Iterable[tuple[bytes, bytes]], limit: int) -> bytes:
    """The whole request body, or TooLarge as soon as Content-Length or the bytes received pass `limit`,
    or ClientGone."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise TooLarge
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone(message)
        body = message.get("body", b"")
        seen += len(body)
        if seen > limit:
            raise TooLarge
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


def too_large_body(limit: int) -> bytes:
    return b'{"detail":[{"field":"body","reason":"request body larger than %d bytes"}]}' % limit


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _too_large(send: Send, limit: int) -> None:
    body = too_large_body(limit)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
