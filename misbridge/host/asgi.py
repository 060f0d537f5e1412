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

With a :class:`ConnectionGate` (the POS HTTP door), connections are served by
:class:`GatedH11Protocol` instead, which adds what uvicorn lacks (local-caller-identity §4-§5):

* before a byte is read, the gate identifies the caller and checks the connection budget; a
  refusal is answered at once (403 MB74/MB75, 503 MB76, book-shaped JSON, ``Connection:
  close``) and the connection is drained briefly, then closed;
* a request deadline: the head and body must arrive within the gate's ``request_timeout_s``
  of the accept or of the previous answer. uvicorn's keep-alive timer starts only after an
  answer and any byte stops it, so a partial head would otherwise hold the connection forever.
  A partial request at the deadline gets 408 MB07 and the connection is closed; a silent one
  is just closed;
* the caller and a ``caller_gone`` event (set when the peer closes) go into the ASGI scope as
  ``scope["extensions"]["misbridge"] = {"caller": ..., "caller_gone": asyncio.Event}``;
* an exception of the app is answered 500 with book-shaped MB99 JSON and one log line, not
  uvicorn's plain-text 500 and multi-line traceback.

It relies on uvicorn internals (``H11Protocol.app``, ``.cycle``, ``.conn``, ``.connections``,
``on_response_complete``; ``RequestResponseCycle.disconnected``, ``.message_event``);
tests/unit/test_asgi_gate.py pins them.

Example::

    server = AsgiServer(app, "127.0.0.1", 0)
    port = await server.start()
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar, Protocol

import h11
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from misbridge.errors import ReturnCode
from misbridge.host.net import bind_tcp

__all__ = ["SCOPE_EXTENSION", "AsgiServer", "GatedH11Protocol", "bind_tcp", "gated_protocol", "serve_asgi"]

#: Key of this server's entry in ``scope["extensions"]``.
SCOPE_EXTENSION = "misbridge"
#: h11 states of the peer after which its request has fully arrived (or never will).
_REQUEST_IN = frozenset({h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR})
#: h11's default buffer for an incomplete head (h11 keeps the constant in a private module).
_H11_DEFAULT_HEAD_LIMIT = 16 * 1024
#: Longest text of a foreign exception put into a log line.
_DETAIL_MAX_CHARS = 200
#: accept() calls per wake-up of the listening socket, which uvicorn takes from ``backlog``.
#: CPython 3.11's accept loop does not stop at EMFILE: it tries this many times, each failure
#: scheduling another retry, which turned a descriptor shortage into a busy loop.
ACCEPTS_PER_WAKEUP = 4
#: The kernel's queue of connections not accepted yet (set again after uvicorn's listen()).
LISTEN_BACKLOG = 512

#: How often :meth:`AsgiServer.start` looks whether uvicorn has started listening.
_START_POLL_S = 0.005
#: Our tick: uvicorn refreshes the Date header and checks for exit once per tick. uvicorn's own
#: is 0.1 s (refreshing the date every 10th); once a second is what the Date header needs, and
#: an idle daemon then wakes once a second instead of ten times (stop() does not wait for it).
_TICK_S = 1.0
#: on_tick(counter) refreshes the Date header only when counter % 10 == 0: ours always is.
_REFRESH_DATE = 0


class ConnectionTicket(Protocol):
    """A gate's verdict on one connection (misbridge.api.guard.Ticket)."""

    @property
    def refusal(self) -> ReturnCode | None: ...

    @property
    def identity(self) -> object: ...

    def release(self) -> None: ...


class ConnectionGate(Protocol):
    """What :class:`GatedH11Protocol` asks of its door (misbridge.api.guard.DoorGuard)."""

    @property
    def request_timeout_s(self) -> float: ...

    def admit(self, sock: Any) -> ConnectionTicket: ...

    def answer_json(self, code: ReturnCode, description: str = "") -> bytes: ...

    def linger_then_close(self, transport: asyncio.BaseTransport, *, budget: int = ...) -> None: ...

    def log_edge(self, ticket: Any, code: ReturnCode, detail: str) -> None: ...


def http_answer(status: int, body: bytes) -> bytes:
    """A whole HTTP/1.1 response with a JSON ``body`` that closes the connection."""
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GatedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the door's caller check, connection budget and request deadline."""

    gate: ClassVar[ConnectionGate]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.caller_gone = asyncio.Event()
        self._ticket: ConnectionTicket | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._request_bytes = 0
        self._handed_over = False

    # --- uvicorn's protocol interface ------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        ticket = self._ticket = self.gate.admit(transport.get_extra_info("socket"))
        if ticket.refusal is not None:
            self._handed_over = True
            transport.write(http_answer(ticket.refusal.http_status, self.gate.answer_json(ticket.refusal)))
            self.gate.linger_then_close(transport)
            return
        super().connection_made(transport)
        self.app = self._guarded(self.app)
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handed_over:
            return
        self._let_go()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        self.caller_gone.set()
        super().eof_received()

    def data_received(self, data: bytes) -> None:
        self._request_bytes += len(data)
        super().data_received(data)
        if self.conn.their_state in _REQUEST_IN:
            self._disarm()

    def send_400_response(self, msg: str) -> None:
        """A head h11 cannot parse gets the book's JSON shape too, not uvicorn's plain text.

        A head that outgrew h11's buffer is MB08 (too large); anything else is MB01.
        """
        if self._request_bytes > self._head_limit():
            code, description = ReturnCode.REQUEST_TOO_LARGE, "the HTTP request head is larger than 16 KiB"
        else:
            code, description = ReturnCode.NOT_JSON, "not a valid HTTP/1.1 request"
        self.gate.log_edge(self._ticket, code, description)
        self._hand_over(http_answer(code.http_status, self.gate.answer_json(code, description)))

    def _head_limit(self) -> int:
        configured = self.config.h11_max_incomplete_event_size
        return int(configured) if configured is not None else _H11_DEFAULT_HEAD_LIMIT

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state not in _REQUEST_IN:
            self._request_bytes = 0
            self._arm_deadline()

    # --- the request deadline ------------------------------------------------------------

    def _arm_deadline(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.gate.request_timeout_s, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_started(self) -> bool:
        return self._request_bytes > 0 or self.conn.their_state is not h11.IDLE or bool(self.conn.trailing_data[0])

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if not self._request_started():
            self.transport.close()  # a silent connection is just closed
            return
        timeout = self.gate.request_timeout_s
        self.gate.log_edge(self._ticket, ReturnCode.REQUEST_TIMEOUT, f"request incomplete after {timeout:g} s")
        answer = b""
        # No answer when the app already started one (it answered without reading the body).
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            description = f"the request (head and body) was not complete within {timeout:g} s"
            body = self.gate.answer_json(ReturnCode.REQUEST_TIMEOUT, description)
            answer = http_answer(ReturnCode.REQUEST_TIMEOUT.http_status, body)
        self._hand_over(answer)

    def _hand_over(self, answer: bytes) -> None:
        """Write ``answer``, detach from uvicorn's bookkeeping and let the gate drain and close."""
        self._handed_over = True
        self._let_go()
        self.connections.discard(self)
        self._unset_keepalive_if_required()
        if self.cycle is not None and not self.cycle.response_complete:
            # The app waiting for the rest of the body gets http.disconnect; its sends are dropped.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.flow.resume_writing()
        if answer:
            self.transport.write(answer)
        self.gate.linger_then_close(self.transport)

    def _let_go(self) -> None:
        self._disarm()
        self.caller_gone.set()
        if self._ticket is not None:
            self._ticket.release()

    # --- the app -------------------------------------------------------------------------

    def _guarded(self, app: Any) -> Any:
        """``app`` with the caller in the scope and its exceptions answered as MB99 JSON."""
        ticket = self._ticket
        assert ticket is not None
        extension = {"caller": ticket.identity, "caller_gone": self.caller_gone}

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[SCOPE_EXTENSION] = extension
            started = False

            async def tracking_send(message: Message) -> None:
                nonlocal started
                started = started or message["type"] == "http.response.start"
                await send(message)

            try:
                await app(scope, receive, tracking_send)
            except Exception as err:  # noqa: BLE001 -- answered below, never a plain-text 500
                if self._handed_over:
                    return  # the door already answered (408) and closed
                self.gate.log_edge(ticket, ReturnCode.INTERNAL, f"the HTTP app failed: {_describe(err)}")
                if not started:
                    await _send_internal_error(send, self.gate.answer_json(ReturnCode.INTERNAL, "internal error"))

        return guarded


async def _send_internal_error(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": ReturnCode.INTERNAL.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _describe(err: BaseException) -> str:
    text = str(err)[:_DETAIL_MAX_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def gated_protocol(gate: ConnectionGate) -> type[GatedH11Protocol]:
    """A :class:`GatedH11Protocol` class bound to ``gate`` (uvicorn instantiates it per connection)."""
    return type("GatedH11ProtocolForDoor", (GatedH11Protocol,), {"gate": gate})


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
        gate: the door's caller check, connection budget and deadline (:class:`GatedH11Protocol`);
            without one, uvicorn's plain h11 protocol serves.
        tls_cert, tls_key: PEM certificate chain and its key: serve TLS (the backend simulator
            over https); both or neither.
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
        gate: ConnectionGate | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("AsgiServer: tls_cert and tls_key go together")
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
            http="h11" if gate is None else gated_protocol(gate),
            ws="none",
            timeout_graceful_shutdown=graceful_shutdown_s,
            backlog=ACCEPTS_PER_WAKEUP,
            ssl_certfile=None if tls_cert is None else str(tls_cert),
            ssl_keyfile=None if tls_key is None else str(tls_key),
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
        sock.listen(LISTEN_BACKLOG)
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
