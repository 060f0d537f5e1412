"""Serve an ASGI app with uvicorn inside an already-running event loop, on a socket we bind.

Shared by the e-Buy backend simulator and the POS HTTP front door. The choices follow
python-ecosystem-notes §5:

* the socket is bound here (or handed in), so port 0 works and the real port is known, and a
  Unix socket keeps the mode its owner gave it (uvicorn would chmod its own to 0o666);
* uvicorn's ``capture_signals`` is a no-op: the process that embeds the server owns SIGINT and
  SIGTERM and calls :meth:`AsgiServer.stop` itself (uvicorn would otherwise re-raise the
  signal after serving, so the owner's handler would run twice);
* ``lifespan="off"``, ``log_config=None`` (keep the process's logging as it is),
  ``access_log=False`` (request lines could carry card data), the pure-Python h11 protocol.

Example::

    server = AsgiServer(app, "127.0.0.1", 0)
    port = await server.start()
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

#: How often :meth:`AsgiServer.start` looks whether uvicorn has started listening.
_START_POLL_S = 0.005
#: Our tick: uvicorn refreshes the Date header and checks for exit once per tick. uvicorn's own
#: is 0.1 s (refreshing the date every 10th); once a second is what the Date header needs, and
#: an idle daemon then wakes once a second instead of ten times (stop() does not wait for it).
_TICK_S = 1.0
#: on_tick(counter) refreshes the Date header only when counter % 10 == 0: ours always is.
_REFRESH_DATE = 0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn.Server that leaves the process's signal handlers alone and stops without polling delay."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        # uvicorn's own loop sleeps 0.1 s between ticks; this one ticks once a second and also
        # wakes at once when stop() asks.
        while not await self.on_tick(_REFRESH_DATE):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_requested.wait(), _TICK_S)


class AsgiServer:
    """One ASGI app served by uvicorn on one listening socket, started and stopped from async code.

    Args:
        app: the ASGI application.
        host: address to bind when no ``sock`` is given (IPv4 or IPv6 literal or name).
        port: port to bind; 0 picks a free one (see :attr:`port`).
        sock: an already-bound socket (TCP or Unix) to serve instead of binding ``host:port``.
        log_level: level of uvicorn's own loggers.
        graceful_shutdown_s: whole seconds :meth:`stop` lets in-flight requests finish before
            cancelling them (uvicorn takes an int).
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        log_level: str = "warning",
        graceful_shutdown_s: int = 5,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._sock = sock
        self._config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            log_level=log_level,
            http="h11",
            ws="none",
            timeout_graceful_shutdown=graceful_shutdown_s,
        )
        self._server = _EmbeddedServer(self._config)
        self._task: asyncio.Task[None] | None = None
        self._used = False

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when 0 was asked), or 0 for a Unix socket."""
        return self._port

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._task is not None and not self._task.done()

    async def start(self) -> int:
        """Bind (unless a socket was given), start serving and return the bound port.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: start was already called (a server is started once), or uvicorn
                stopped while starting.
        """
        if self._used:
            raise RuntimeError("AsgiServer.start() may be called only once")
        self._used = True
        sock = self._sock if self._sock is not None else bind_tcp(self._host, self._port)
        self._port = sock.getsockname()[1] if sock.family in (socket.AF_INET, socket.AF_INET6) else 0
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="asgi-server")
        while not self._server.started:
            if self._task.done():
                await self._task  # re-raise uvicorn's error, if any
                raise RuntimeError("uvicorn stopped before it started listening")
            await asyncio.sleep(_START_POLL_S)
        return self._port

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace time), close the socket.

        Safe to call twice, or without :meth:`start`.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._server.should_exit = True
        self._server.exit_requested.set()
        await task


async def serve_asgi(app: ASGIApp, sock: socket.socket, *, log_level: str = "warning") -> AsgiServer:
    """Start serving ``app`` on the already-bound ``sock``; returns the running server."""
    server = AsgiServer(app, sock=sock, log_level=log_level)
    await server.start()
    return server


def bind_tcp(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv4 or IPv6), with SO_REUSEADDR, not yet listening.

    Raises:
        OSError: the address cannot be resolved or bound.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
