"""A TCP proxy that a test switches between forwarding and a network blackhole.

Put it between misbridge and the backend simulator (``backend.url`` names the proxy's port)
and call :meth:`BlackholeProxy.blackhole` / :meth:`BlackholeProxy.restore`:

* **forwarding**: every accepted connection gets its own upstream connection, and bytes flow
  both ways unchanged;
* **blackholed**: as a network that silently drops every packet looks to the client once it
  has a connection. A new connection is accepted, and then nothing: its request bytes are read
  and thrown away, nothing reaches the backend, and no byte, FIN or RST ever comes back, so the
  client waits for its read timeout (httpx ``ReadTimeout``: outcome UNKNOWN for misbridge).
  Connections that were open when the blackhole began are **frozen** the same way: bytes in
  either direction are dropped, including a reply the backend sends for a request that was in
  flight (so that request may have been applied with its answer lost), and the backend's FIN is
  not passed on.

A connection accepted or frozen during a blackhole stays dead after :meth:`restore`, as one
whose packets a firewall dropped would be: only new connections are forwarded again. The
client's own timeout ends it.

``stats`` counts what happened, so a test can show that the daemon really tried during the
blackhole (``swallowed``) and that nothing got through meanwhile (``forwarded_while_blackholed``).

simulators/backend/netfaults.py has the connect-level faults (refused, SYN dropped); this is
the read-level blackhole those cannot give for a live backend.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

#: Bytes read per chunk.
_CHUNK = 65536


@dataclass
class ProxyStats:
    """What the proxy has seen so far.

    Attributes:
        accepted: client connections accepted, in either mode.
        forwarded: connections given an upstream connection (accepted while forwarding).
        swallowed: connections accepted while blackholed (never forwarded, never answered).
        frozen: forwarded connections that were open when a blackhole began.
        dropped_bytes: bytes thrown away (both directions, both kinds of dead connection).
        forwarded_while_blackholed: bytes passed on while blackholed: always 0 (a self-check).
        upstream_failures: upstream connects that failed (the client is then closed at once).
    """

    accepted: int = 0
    forwarded: int = 0
    swallowed: int = 0
    frozen: int = 0
    dropped_bytes: int = 0
    forwarded_while_blackholed: int = 0
    upstream_failures: int = 0


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side, the upstream side, and whether it is dead."""

    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    upstream_reader: asyncio.StreamReader | None = None
    upstream_writer: asyncio.StreamWriter | None = None
    dead: bool = False


class BlackholeProxy:
    """A loopback TCP proxy to ``upstream_host:upstream_port`` with a blackhole switch.

    Args:
        upstream_host: where the real server listens.
        upstream_port: its port.
        host: the address the proxy listens on.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.stats = ProxyStats()
        self._blackholed = False
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def blackholed(self) -> bool:
        """True between :meth:`blackhole` and :meth:`restore`."""
        return self._blackholed

    async def start(self, port: int = 0) -> int:
        """Listen (forwarding) on ``port``, 0 = a free one; returns the port.

        After :meth:`stop`, ``start(proxy.port)`` listens on the same port again: between the
        two, connects are refused, as when the backend's process is down (asyncio's listening
        socket has SO_REUSEADDR, so the port is free at once).
        """
        self._server = await asyncio.start_server(self._accept, self.host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def blackhole(self) -> None:
        """From now on drop everything: new connections are swallowed, open ones frozen."""
        self._blackholed = True
        for link in self._links:
            if not link.dead:
                link.dead = True
                self.stats.frozen += 1

    def restore(self) -> None:
        """Forward new connections again (connections that died in the blackhole stay dead)."""
        self._blackholed = False

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Closing both sides ends every handler (its reads see EOF). Cancelling them instead
        # makes Python 3.11's start_server callback log the CancelledError as an error.
        for link in list(self._links):
            for side in (link.client_writer, link.upstream_writer):
                if side is not None:
                    side.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def __aenter__(self) -> BlackholeProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- connections -----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        link = _Link(reader, writer)
        self.stats.accepted += 1
        try:
            self._links.add(link)
            if self._blackholed:
                link.dead = True
                self.stats.swallowed += 1
                await self._client_to_upstream(link)  # reads and drops until the client hangs up
                return
            try:
                link.upstream_reader, link.upstream_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                self.stats.upstream_failures += 1
                return
            self.stats.forwarded += 1
            if self.blackholed and not link.dead:  # the blackhole began while we connected upstream
                link.dead = True
                self.stats.frozen += 1
            upstream = asyncio.create_task(self._upstream_to_client(link))
            try:
                await self._client_to_upstream(link)  # the client decides when the connection ends
            finally:
                upstream.cancel()
                await asyncio.gather(upstream, return_exceptions=True)
        finally:
            self._links.discard(link)
            self._handlers.discard(task)
            for side in (link.upstream_writer, link.client_writer):
                if side is not None:
                    side.close()
                    with contextlib.suppress(OSError):
                        await side.wait_closed()

    async def _client_to_upstream(self, link: _Link) -> None:
        while True:
            try:
                data = await link.client_reader.read(_CHUNK)
            except OSError:
                return
            if not data:
                return
            if link.dead or link.upstream_writer is None:
                self.stats.dropped_bytes += len(data)
                continue
            try:
                link.upstream_writer.write(data)
                await link.upstream_writer.drain()
            except OSError:
                return

    async def _upstream_to_client(self, link: _Link) -> None:
        assert link.upstream_reader is not None
        while True:
            try:
                data = await link.upstream_reader.read(_CHUNK)
            except OSError:
                data = b""
            if not data:
                if not link.dead:
                    link.client_writer.close()  # pass the close on: the client's read ends
                return  # dead: the client hears nothing, not even the close
            if link.dead:
                self.stats.dropped_bytes += len(data)
                continue
            if self._blackholed:
                self.stats.forwarded_while_blackholed += len(data)
            try:
                link.client_writer.write(data)
                await link.client_writer.drain()
            except OSError:
                return
