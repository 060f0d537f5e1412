"""Close an HTTP connection without a response, from inside a Starlette endpoint.

An ASGI app cannot say "hang up": if it returns or raises before starting a response, uvicorn
answers ``500 Internal Server Error`` itself. To drop the connection for real, the simulator
needs the connection's transport. uvicorn hands every app the ``send`` of its per-request
cycle, a bound method whose object holds ``transport`` and ``disconnected``;
:class:`ConnectionKeeper` (the outermost ASGI layer) puts that object into the scope before
Starlette wraps ``send``, and :class:`DropConnection`, returned by an endpoint, closes the
transport instead of answering. A client then sees:

* ``reset=False``: FIN before any response byte, httpx ``RemoteProtocolError`` ("Server
  disconnected without sending a response");
* ``reset=True``: ``SO_LINGER`` 0, so the close sends RST, httpx ``ReadError`` (connection reset).

Served in-process (``httpx.ASGITransport``) there is no connection: :class:`DropConnection`
raises :class:`ConnectionDropped`, which reaches the in-process client as an ``OSError``.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: Scope key under which :class:`ConnectionKeeper` leaves the server's request cycle.
CYCLE_KEY = "simulators.backend.cycle"
#: Event-loop turns to wait for the server to notice the closed connection.
_DISCONNECT_TURNS = 20


class ConnectionDropped(ConnectionResetError):
    """Raised in place of a drop when the app is not served over a real connection."""


class ConnectionKeeper:
    """ASGI middleware: keep the server's per-request cycle in the scope, for :class:`DropConnection`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[CYCLE_KEY] = getattr(send, "__self__", None)
        await self.app(scope, receive, send)


class DropConnection(Response):
    """A "response" that closes the connection without sending a byte.

    Args:
        reset: abort with RST (``SO_LINGER`` 0) instead of a plain close (FIN).
    """

    def __init__(self, *, reset: bool = False) -> None:
        super().__init__()
        self.reset = reset

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cycle = scope.get(CYCLE_KEY)
        transport = getattr(cycle, "transport", None)
        if not isinstance(transport, asyncio.Transport):
            raise ConnectionDropped("simulated connection drop (no real connection to close)")
        if self.reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        # uvicorn learns of the close one loop turn later (connection_lost); until then it would
        # take our silence for a missing response and try to send a 500 on the dead transport.
        for _ in range(_DISCONNECT_TURNS):
            if getattr(cycle, "disconnected", True):
                return
            await asyncio.sleep(0)
