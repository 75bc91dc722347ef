"""uvicorn's httptools protocol, sending each response in one write.

uvicorn writes a response's head (status line and headers) as soon as the app sends
`http.response.start`, and its body with `http.response.body`: two `write` calls, two TCP segments, and a
client that wakes up for the head, finds no body yet and waits again. Here the connection's writes within
one event-loop step are joined and written once, at the end of that step (or before the connection is
closed): the same bytes, in the same order, one system call and one wake-up of the client per response.
A response streamed over several steps still goes out step by step, and once a step has held
`HOLD_BYTES` its writes go straight through (so uvicorn's flow control sees them as before).

`leadscore serve` runs uvicorn with `http="leadscore.serve.http:HttpToolsProtocol"`.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol

log = logging.getLogger("leadscore.serve")
HOLD_BYTES = 64 * 1024  # at most this much is held back in one step


class _OneWritePerStep:
    """A transport whose writes are held until the end of the event-loop step, then written together.
    Everything else goes to the real transport."""

    __slots__ = ("_transport", "_loop", "_pending", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._held = 0  # bytes in _pending

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending, self._held = [data], len(data)
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)
            self._held += len(data)
        if self._held >= HOLD_BYTES:
            self._flush()

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending, self._held = self._pending, None, 0
        if pending and not self._transport.is_closing():
            try:
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            except Exception:  # noqa: BLE001 - a callback of the loop: drop the connection, not the worker
                log.exception("could not write a response; closing the connection")
                self._transport.abort()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending, self._held = None, 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class HttpToolsProtocol(_HttpToolsProtocol):
    """uvicorn's `httptools` protocol with one write per response (see the module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWritePerStep(transport, self.loop))  # type: ignore[arg-type]
