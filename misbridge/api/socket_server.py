"""Front door 1: the e-Buy message structure on a TCP socket (default 127.0.0.1:9100).

Each message is a 2-byte big-endian length and the JSON envelope ``{action, deviceNo, shopNo,
brand, body}`` (book §6); the answer has the same form, with the envelope fields echoed and
``body`` the Base64 of the response JSON. A connection may carry many requests one after the
other. When the stream itself cannot be trusted any more (a length prefix that lies, bytes that
are not JSON, a request cut off at its deadline) misbridge answers with an error and closes the
connection, because the next message boundary is unknown.

Every message gets an answer in the book's shape: a refusal, a crash of the parser or of the
handler (MB99), an answer that cannot be framed (MB99) all answer; nothing closes silently
except a connection that never sent a byte. Before a byte is read the door's
:class:`~misbridge.api.guard.DoorGuard` checks who is calling and the connection budget.

Deadlines (docs/pos-api.md, "Connection limits and deadlines"): a connection that sends nothing
for ``api.idle_timeout_s`` (from the accept or from the previous answer) is closed; once a
request's first byte arrived, the whole request must arrive within ``api.request_timeout_s``
(or ``api.socket_read_timeout_s`` if that is shorter), else MB07 and close.

While the handler runs the door watches the connection: when the POS closes it, the
``caller_gone`` event handed to the handler is set (a card sale whose customer was not prompted
yet then ends with MB29). Bytes the POS pipelined meanwhile stay unread for the next request.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Protocol, cast

from loguru import logger

from misbridge.api.guard import BROKEN_STREAM_LINGER_BYTES, RATE_LIMIT_EXTRA, DoorGuard, Ticket
from misbridge.api.policy import CallerPolicy
from misbridge.config.settings import ApiSettings, IdentitySettings
from misbridge.ebuy.envelope import (
    Envelope,
    encode_envelope,
    frame_message,
    parse_envelope,
    read_length_prefix,
)
from misbridge.ebuy.fitting import frame_reply
from misbridge.ebuy.requests import BOOK_ACTIONS, error_response
from misbridge.errors import RequestError, ReturnCode
from misbridge.host.crashpoints import crash_point
from misbridge.host.net import bind_tcp


class Handler(Protocol):
    """What the door hands each request to (``TransactionService.handle``)."""

    async def __call__(
        self, action: str, body: dict[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> Mapping[str, Any]: ...


#: Errors after which the byte stream has no trustworthy message boundary.
_STREAM_BROKEN = (ReturnCode.BAD_LENGTH_PREFIX, ReturnCode.NOT_JSON, ReturnCode.REQUEST_TIMEOUT)
#: Bytes a JSON document may start with (whitespace, then a value).
_JSON_FIRST_BYTES = frozenset(b' \t\r\n{["-0123456789tfn')
#: The first three bytes of an HTTP request line: an upper-case method.
_HTTP_METHOD_START = re.compile(rb"[A-Z]{3}")
#: Longest deviceNo/shopNo/brand/traceNo echoed back; a longer one is not the POS's own value.
_ECHO_MAX_CHARS = 64
#: Read buffer of a connection; also where reading pauses while pipelined bytes wait.
_READ_LIMIT = 64 * 1024
#: Longest text of a foreign exception put into a returnDesc or a log line.
_DETAIL_MAX_CHARS = 200
#: accept() calls per wake-up of the listening socket. CPython 3.11's accept loop does not stop
#: at EMFILE: it tries this many times, each failure scheduling another retry, which turned a
#: descriptor shortage into a busy loop. A small number keeps that to a few tries per second.
ACCEPTS_PER_WAKEUP = 4
#: The kernel's queue of connections not accepted yet (set after asyncio's listen() call).
LISTEN_BACKLOG = 512


class _Next(Enum):
    """What the connection does after one message."""

    KEEP = "serve the next message"
    CLOSE = "close"
    LINGER = "drain what the peer still sends, then close"


class _WatchedReader(asyncio.StreamReader):
    """A StreamReader that also says when the peer stopped sending, without consuming bytes."""

    def __init__(self) -> None:
        super().__init__(limit=_READ_LIMIT)
        self.peer_done = asyncio.Event()

    def feed_eof(self) -> None:
        super().feed_eof()
        self.peer_done.set()

    def set_exception(self, exc: Exception) -> None:
        super().set_exception(exc)
        self.peer_done.set()


class PosSocketServer:
    """Serves the e-Buy framed protocol to the cashier POS.

    Args:
        handler: runs one request (``TransactionService.handle``).
        api: address, limits and deadlines.
        identity: deviceNo/shopNo/brand used in answers that cannot echo the request's.
        policy: who may talk (default: everyone the kernel can identify).
        route: with several lanes, the handler of the lane the envelope's ``deviceNo`` names,
            None when it names none (answered MB19); without, every request goes to ``handler``.
        port: listen here instead of ``api.socket_port`` (a lane's own port).
        sock: an already-bound TCP socket to listen on instead of binding ``api.host`` and the port
            (the daemon binds every door before it starts anything else).
    """

    def __init__(
        self,
        handler: Handler,
        api: ApiSettings,
        identity: IdentitySettings,
        *,
        policy: CallerPolicy | None = None,
        route: Callable[[str], Handler | None] | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self._handler = handler
        self._sock = sock
        self._route = route
        self._port = api.socket_port if port is None else port
        self._api = api
        self._identity = identity
        self.guard = DoorGuard("socket", api, policy)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # Connections between the first byte of a message and the end of its answer: stop()
        # lets these finish, so a sale in flight still reaches the POS (a restart between two
        # transactions, docs/operations.md "Upgrade and rollback").
        self._busy: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> int:
        """Listen; returns the bound port (useful when the configured port is 0)."""
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            return asyncio.StreamReaderProtocol(_WatchedReader(), self._on_connection)

        sock = self._sock if self._sock is not None else bind_tcp(self._api.host, self._port)
        self._server = await loop.create_server(protocol, sock=sock, backlog=ACCEPTS_PER_WAKEUP)
        sock.listen(LISTEN_BACKLOG)
        port = int(sock.getsockname()[1])
        logger.info("e-Buy socket front door listening on {}:{}", self._api.host, port)
        return port

    async def stop(self) -> None:
        """Stop listening, close idle connections, and let each message being served get its answer.

        A connection waiting for its next message is closed at once. One whose message has
        started arriving is served to the end: the service refuses a new transaction once it
        stops accepting (the POS gets that answer), and a transaction already running ends
        before its answer is written. Every wait of a message is bounded (the read deadline,
        the transaction's own deadlines), so this returns. Each such connection closes after
        its answer.
        """
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            if task not in self._busy:
                task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # --- one connection -------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ticket = self.guard.admit(writer.get_extra_info("socket"))
        if ticket.refusal is not None:
            writer.write(self._framed_refusal(ticket.refusal))
            self.guard.linger_then_close(writer.transport, keep=writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        watched = cast(_WatchedReader, reader)
        next_step = _Next.CLOSE
        try:
            next_step = await self._serve(watched, writer, ticket)
        except (OSError, asyncio.CancelledError):
            # The peer reset, stop() cancelled us, or the answer did not drain in time (TimeoutError).
            writer.transport.abort()
        finally:
            ticket.release()
            self._connections.discard(task)
            if next_step is _Next.LINGER and not watched.peer_done.is_set():
                self.guard.linger_then_close(writer.transport, budget=BROKEN_STREAM_LINGER_BYTES, keep=writer)
            else:
                writer.close()

    async def _serve(self, reader: _WatchedReader, writer: asyncio.StreamWriter, ticket: Ticket) -> _Next:
        while (next_step := await self._serve_one(reader, writer, ticket)) is _Next.KEEP:
            if self._stopping:
                return _Next.CLOSE
        return next_step

    async def _serve_one(self, reader: _WatchedReader, writer: asyncio.StreamWriter, ticket: Ticket) -> _Next:
        """Read one message and answer it."""
        first = await self._first_byte(reader)
        if first is None:
            return _Next.CLOSE
        task = asyncio.current_task()
        assert task is not None
        self._busy.add(task)
        try:
            return await self._answer(reader, writer, ticket, first)
        finally:
            self._busy.discard(task)

    async def _answer(
        self, reader: _WatchedReader, writer: asyncio.StreamWriter, ticket: Ticket, first: bytes
    ) -> _Next:
        """Read the rest of the message that began with ``first`` and answer it."""
        deadline_s = min(self._api.request_timeout_s, self._api.socket_read_timeout_s)
        try:
            async with asyncio.timeout(deadline_s):
                payload = await self._read_message(reader, first)
            envelope = _parse(payload)
        except TimeoutError:
            err = RequestError(
                f"the request was not complete within {deadline_s:g} s of its first byte",
                return_code=ReturnCode.REQUEST_TIMEOUT,
            )
            await self._send_error(writer, err, ticket)
            return _Next.LINGER
        except RequestError as err:
            await self._send_error(writer, err, ticket)
            if err.return_code is ReturnCode.BAD_LENGTH_PREFIX:
                return _Next.CLOSE  # the peer closed its side: nothing left to drain
            return _Next.LINGER if err.return_code in _STREAM_BROKEN else _Next.KEEP
        body = await self._run_handler(envelope, reader.peer_done, ticket)
        await self._send(writer, envelope, body, ticket)
        crash_point("pos.after_reply")
        return _Next.KEEP

    async def _first_byte(self, reader: _WatchedReader) -> bytes | None:
        """The first byte of the next message; None when the peer closed or stayed silent too long."""
        try:
            async with asyncio.timeout(self._api.idle_timeout_s):
                return await reader.readexactly(1)
        except (asyncio.IncompleteReadError, TimeoutError):
            return None

    async def _read_message(self, reader: _WatchedReader, first: bytes) -> bytes:
        """The rest of the prefix and the announced JSON bytes."""
        prefix = first + await self._read_exactly(reader, 1, announced=None, already=0)
        expected = read_length_prefix(prefix)
        return await self._read_payload(reader, prefix, expected)

    async def _read_payload(self, reader: _WatchedReader, prefix: bytes, expected: int) -> bytes:
        """The ``expected`` message bytes; refused at its first byte if that cannot start JSON.

        A browser (or any HTTP client) pointed at this port sends ``POST /... HTTP/1.1``: its
        first two bytes become the length prefix and the next byte is a letter, which no JSON
        document starts with. Refusing there answers at once instead of after the deadline.
        Either way the request never reaches the service (docs/pos-api.md, "Browsers").
        """
        if expected == 0:
            return b""
        first = await self._read_exactly(reader, 1, announced=expected)
        if first[0] not in _JSON_FIRST_BYTES:
            if _HTTP_METHOD_START.fullmatch(prefix + first):
                logger.bind(**{RATE_LIMIT_EXTRA: ("socket", "http-request", None)}).warning(
                    "an HTTP request arrived on the e-Buy socket door (a browser or HTTP client?)"
                )
            raise RequestError(
                f"message is not JSON: no JSON document starts with byte {first!r}", return_code=ReturnCode.NOT_JSON
            )
        return first + await self._read_exactly(reader, expected - 1, announced=expected, already=1)

    @staticmethod
    async def _read_exactly(reader: _WatchedReader, count: int, *, announced: int | None, already: int = 0) -> bytes:
        """``count`` more bytes of a message of ``announced`` bytes (None: the prefix), ``already`` of them in."""
        try:
            return await reader.readexactly(count)
        except asyncio.IncompleteReadError as err:
            if announced is None:
                message = "1 byte of a 2-byte length prefix, then EOF"
            else:
                message = (
                    f"length prefix announced {announced} bytes but the connection closed after "
                    f"{already + len(err.partial)}"
                )
            raise RequestError(message, return_code=ReturnCode.BAD_LENGTH_PREFIX) from err

    # --- the handler ----------------------------------------------------------------------

    async def _run_handler(self, envelope: Envelope, caller_gone: asyncio.Event, ticket: Ticket) -> dict[str, Any]:
        """The handler's answer; any exception of it becomes an MB99 answer and one log line."""
        handler = self._handler if self._route is None else self._route(envelope.device_no)
        if handler is None:
            err = RequestError(
                f"deviceNo {_echoable(envelope.device_no)!r} is no lane's: send the deviceNo of this POS's lane",
                return_code=ReturnCode.UNKNOWN_LANE,
            )
            self.guard.log_edge(ticket, err.return_code, f"refused a message: {err}")
            return error_response(_echoable(envelope.body.get("traceNo")), err, err.return_code)
        try:
            return dict(await handler(envelope.action, envelope.body, caller_gone=caller_gone))
        except Exception as err:  # noqa: BLE001 -- every request gets an answer in the book's shape
            self.guard.log_edge(ticket, ReturnCode.INTERNAL, f"the handler failed: {_describe(err)}")
            failure = RequestError("internal error while processing the request", return_code=ReturnCode.INTERNAL)
            return error_response(_echoable(envelope.body.get("traceNo")), failure, ReturnCode.INTERNAL)

    # --- answers --------------------------------------------------------------------------

    async def _send_error(self, writer: asyncio.StreamWriter, err: RequestError, ticket: Ticket) -> None:
        self.guard.log_edge(ticket, err.return_code, f"refused a message: {err}")
        await self._send(writer, None, error_response("", err, err.return_code), ticket)

    async def _send(
        self, writer: asyncio.StreamWriter, request: Envelope | None, body: dict[str, Any], ticket: Ticket
    ) -> None:
        """Write the framed answer (frame_reply fits any answer into the framing and never raises)."""
        writer.write(frame_reply(self._reply_envelope(request, body)))
        # An honest POS reads its answer at once; one that does not may not pin the connection.
        async with asyncio.timeout(self._api.request_timeout_s):
            await writer.drain()

    def _reply_envelope(self, request: Envelope | None, body: dict[str, Any]) -> Envelope:
        """The answer's envelope: the request's fields echoed when they are the POS's own, ours otherwise.

        A hostile request must not have a huge or unencodable value sent back: an action outside
        the book's list is echoed as "", an over-long or unencodable deviceNo/shopNo/brand is
        replaced by this misbridge's own.
        """
        own = self._identity
        if request is None:
            return Envelope("", own.device_no, own.shop_no, own.brand, body)
        action = request.action if request.action in BOOK_ACTIONS else ""
        return Envelope(
            action,
            _echoable(request.device_no) or own.device_no,
            _echoable(request.shop_no) or own.shop_no,
            _echoable(request.brand) or own.brand,
            body,
        )

    def _framed_refusal(self, code: ReturnCode) -> bytes:
        own = self._identity
        body = self.guard.answer_body(code)
        return frame_message(encode_envelope(Envelope("", own.device_no, own.shop_no, own.brand, body)))


def _parse(payload: bytes) -> Envelope:
    """The envelope of ``payload``; a parser that gives up on hostile input is MB01, not a crash."""
    try:
        return parse_envelope(payload)
    except RequestError:
        raise
    except (RecursionError, ValueError) as err:
        # Nesting deeper than the parser's stack, an integer beyond Python's digit limit...
        raise RequestError(
            f"message breaks misbridge's JSON limits: {_describe(err)}", return_code=ReturnCode.NOT_JSON
        ) from err
    except Exception as err:  # a parser crash must still be answered
        raise RequestError(f"message could not be read: {_describe(err)}", return_code=ReturnCode.INTERNAL) from err


def _echoable(value: Any) -> str:
    """``value`` if it is a short string that can be sent back as UTF-8, else ""."""
    if not isinstance(value, str) or len(value) > _ECHO_MAX_CHARS:
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return value


def _describe(err: BaseException) -> str:
    """``Type: text`` of a foreign exception, cut short and safe to log or send."""
    text = str(err)
    if len(text) > _DETAIL_MAX_CHARS:
        text = text[:_DETAIL_MAX_CHARS] + "..."
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
