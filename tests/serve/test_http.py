"""The service's HTTP protocol (uvicorn's httptools, one write per response) on a recording socket."""

from __future__ import annotations

import asyncio

from leadscore.serve.http import HttpToolsProtocol
from uvicorn.config import Config
from uvicorn.server import ServerState

REQUEST = b"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


class RecordingTransport(asyncio.Transport):
    """The socket side of a connection: what the protocol writes, in order, and whether it closed."""

    def __init__(self):
        super().__init__()
        self.writes: list[bytes] = []
        self.closed_after: int | None = None  # writes made before close()
        self.written_after_close = 0

    def write(self, data):
        if self.closed_after is not None:
            self.written_after_close += 1
        self.writes.append(bytes(data))

    def close(self):
        self.closed_after = len(self.writes)

    def is_closing(self):
        return self.closed_after is not None

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


async def _answer(app, data: bytes, settle: float = 0.05) -> RecordingTransport:
    config = Config(app=app, http=HttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(data)
    await asyncio.sleep(settle)
    return transport


async def _json_app(scope, receive, send):
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def test_a_response_goes_out_in_one_write():
    # given an app that sends its head and its body as two ASGI messages (as every framework does)
    # when a request comes in
    transport = asyncio.run(_answer(_json_app, REQUEST))
    # then the client gets the whole response in one write: status line, headers and body
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head
    assert body == b'{"ok":true}'


def test_pipelined_requests_get_their_responses_in_order_and_close_flushes_first():
    # given two requests sent back to back on one connection, the second asking to close it
    closing = REQUEST.replace(b"host: x", b"host: x\r\nconnection: close")
    # when both are answered
    transport = asyncio.run(_answer(_json_app, REQUEST + closing))
    # then both responses are there, whole and in order, and everything was written before the close
    out = b"".join(transport.writes)
    assert out.count(b"HTTP/1.1 200 OK") == 2 and out.count(b'{"ok":true}') == 2
    assert out.index(b'{"ok":true}') < out.rindex(b"HTTP/1.1 200 OK")
    assert transport.closed_after == len(transport.writes) and transport.written_after_close == 0


def test_a_streamed_response_is_not_held_back():
    # given an app that sends a first chunk, waits, then sends the rest
    async def streaming(scope, receive, send):
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"second"})

    # when a request comes in
    transport = asyncio.run(_answer(streaming, REQUEST, settle=0.1))
    # then the head and the first chunk went out before the app waited, the rest after
    assert len(transport.writes) == 2
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK") and b"first" in transport.writes[0]
    assert b"second" in transport.writes[1] and b"first" not in transport.writes[1]


def test_a_big_response_is_not_held_back_whole():
    # given an app that sends a 1 MiB body in 64 chunks within one event-loop step
    from leadscore.serve.http import HOLD_BYTES

    chunks = [bytes([65 + i % 26]) * 16384 for i in range(64)]

    async def big(scope, receive, send):
        await receive()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"1048576")],
            }
        )
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < 63})

    # when a request comes in
    transport = asyncio.run(_answer(big, REQUEST))
    # then it goes out in pieces of about HOLD_BYTES (so uvicorn's flow control sees them), all of it, in order
    assert len(transport.writes) >= 1_048_576 // (HOLD_BYTES + 16384)
    assert max(len(w) for w in transport.writes) < HOLD_BYTES + 16384 + 1024
    assert b"".join(transport.writes).partition(b"\r\n\r\n")[2] == b"".join(chunks)
