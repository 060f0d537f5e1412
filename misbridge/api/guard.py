"""What both front doors do before a request: who may hold a connection, how many, and refusals a peer can read.

Each door has one :class:`DoorGuard`. When a connection is accepted, before a byte of it is
read, the door calls :meth:`DoorGuard.admit`:

1. the :class:`~misbridge.api.peer.CallerPolicy` says who opened the peer socket and whether
   that user may talk (MB74 not allowed, MB75 could not be identified);
2. the door's budget: at most ``api.max_connections`` open connections, at most
   ``api.max_connections_per_user`` of them for one local user (MB76 beyond either).

An admitted connection holds a slot until :meth:`Ticket.release`; a refused one never holds
one. The door answers a refusal at once (one framed envelope on the socket door, a JSON 403/503
on the HTTP door) and hands the connection to :meth:`DoorGuard.linger_then_close`.

Why linger: closing a socket whose peer is still writing makes the kernel answer with a reset,
and a client that gets ECONNRESET on its send usually never reads the refusal waiting in its
receive buffer. So after the answer the door half-closes, reads and discards what still comes
(at most :data:`LINGER_S` and a byte budget), then closes. At most :data:`MAX_LINGERING`
connections per door linger at a time; beyond that the door closes at once, so lingering can
never be used to hold descriptors.

Every decision writes one log line, rate-limited per (door, code, uid) by misbridge.telemetry.logs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from misbridge.api.peer import Caller, PeerIdentity, Unidentified
from misbridge.api.policy import CallerPolicy
from misbridge.config.settings import ApiSettings
from misbridge.ebuy import jsonio
from misbridge.ebuy.requests import error_response
from misbridge.errors import RequestError, ReturnCode

#: Longest a refused or broken connection is drained before it is closed.
LINGER_S = 1.0
#: Bytes drained after a refusal made before reading anything: one whole request (65 537 bytes)
#: fits, so an honest caller's send always completes.
LINGER_BYTES = 64 * 1024
#: Bytes drained after a message broke the stream (item 10: a 65 535 prefix followed by a 10 MB
#: stream); still bounded by LINGER_S.
BROKEN_STREAM_LINGER_BYTES = 16 * 1024 * 1024
#: Connections per door that may linger at once.
MAX_LINGERING = 8
#: The extra that misbridge.telemetry.logs rate-limits on (first line in full, then a summary per 10 s).
#: Spelled out again because the api layer may not import misbridge.telemetry.logs; test_logs checks both agree.
RATE_LIMIT_EXTRA = "_rate"


@dataclass(eq=False)
class Ticket:
    """The door's verdict on one accepted connection.

    Attributes:
        identity: who opened the peer socket (or why that is unknown).
        refusal: None when the connection may be served; else the code to answer and close with.
    """

    identity: PeerIdentity
    refusal: ReturnCode | None
    _guard: DoorGuard | None = field(default=None, repr=False)

    @property
    def caller(self) -> Caller | None:
        """The identified caller, or None."""
        return self.identity if isinstance(self.identity, Caller) else None

    @property
    def uid_text(self) -> str:
        """The caller's uid for log lines, or ``unknown``."""
        return str(self.identity.uid) if isinstance(self.identity, Caller) else "unknown"

    def release(self) -> None:
        """Give the connection's slot back (safe to call twice; a no-op for a refused connection)."""
        guard, self._guard = self._guard, None
        if guard is not None:
            guard._release(self)


class DoorGuard:
    """Connection accounting, caller check and lingering refusals of one door.

    Args:
        door: ``socket`` or ``http``, for log lines.
        api: the limits (``max_connections``, ``max_connections_per_user``, ``request_timeout_s``).
        policy: who may talk; :meth:`CallerPolicy.allow_all` when not given.
    """

    def __init__(self, door: str, api: ApiSettings, policy: CallerPolicy | None = None) -> None:
        self.door = door
        self.request_timeout_s = api.request_timeout_s
        self._max_open = api.max_connections
        self._max_per_user = api.max_connections_per_user
        self._policy = policy if policy is not None else CallerPolicy.allow_all()
        self._open = 0
        self._open_by_uid: Counter[int] = Counter()
        self._lingering = 0

    @property
    def open_connections(self) -> int:
        """Connections holding a slot now."""
        return self._open

    @property
    def lingering(self) -> int:
        """Connections being drained before their close now."""
        return self._lingering

    def admit(self, sock: Any) -> Ticket:
        """Identify the peer of the accepted ``sock`` and decide; an admitted ticket holds a slot.

        ``sock`` is the connected socket (asyncio's ``TransportSocket`` is fine). Nothing is read.
        """
        identity = self._identify(sock)
        refusal = self._policy.refusal(identity) or self._over_budget(identity)
        if refusal is not None:
            self._log_refusal(identity, refusal)
            return Ticket(identity, refusal)
        ticket = Ticket(identity, None, self)
        self._open += 1
        if isinstance(identity, Caller):
            self._open_by_uid[identity.uid] += 1
        return ticket

    def _identify(self, sock: Any) -> PeerIdentity:
        if sock is None:
            return Unidentified("the connection has no socket")
        try:
            return self._policy.identify(sock)
        except OSError as err:
            # The peer vanished between accept and the lookup: nobody to serve.
            return Unidentified(f"lookup failed: {type(err).__name__}")

    def _over_budget(self, identity: PeerIdentity) -> ReturnCode | None:
        if self._open >= self._max_open:
            return ReturnCode.TOO_MANY_CONNECTIONS
        if isinstance(identity, Caller) and self._open_by_uid[identity.uid] >= self._max_per_user:
            return ReturnCode.TOO_MANY_CONNECTIONS
        return None

    def _release(self, ticket: Ticket) -> None:
        self._open -= 1
        if isinstance(ticket.identity, Caller):
            uid = ticket.identity.uid
            self._open_by_uid[uid] -= 1
            if self._open_by_uid[uid] <= 0:
                del self._open_by_uid[uid]

    def _log_refusal(self, identity: PeerIdentity, code: ReturnCode) -> None:
        if isinstance(identity, Caller):
            who = f"uid {identity.uid}" + (f" pid {identity.pid}" if identity.pid is not None else "")
            uid: int | None = identity.uid
        else:
            who, uid = f"an unidentified peer ({identity.reason})", None
        logger.bind(**{RATE_LIMIT_EXTRA: (self.door, code.code, uid)}).warning(
            "{} door refused a connection from {}: {} {} (open {}/{})",
            self.door, who, code.code, code.meaning, self._open, self._max_open,
        )  # fmt: skip

    def log_edge(self, ticket: Ticket, code: ReturnCode, detail: str) -> None:
        """One rate-limited line about a request this door cut short or refused."""
        uid = ticket.identity.uid if isinstance(ticket.identity, Caller) else None
        logger.bind(**{RATE_LIMIT_EXTRA: (self.door, code.code, uid)}).warning(
            "{} door: {} {} (uid {})", self.door, code.code, detail, ticket.uid_text
        )

    @staticmethod
    def answer_body(code: ReturnCode, description: str = "") -> dict[str, Any]:
        """The book-shaped answer body for ``code`` (no traceNo: nothing of the request was read)."""
        return error_response("", RequestError(description or code.meaning, return_code=code), code)

    def answer_json(self, code: ReturnCode, description: str = "") -> bytes:
        """:meth:`answer_body` as UTF-8 JSON (the HTTP door's refusal body)."""
        return jsonio.dumps(self.answer_body(code, description)).encode("utf-8")

    def linger_then_close(
        self, transport: asyncio.BaseTransport, *, budget: int = LINGER_BYTES, keep: object = None
    ) -> None:
        """Take over ``transport`` after an answer was written: half-close, drain a little, close.

        The transport's protocol is replaced; the caller must not use or close it afterwards.
        ``keep`` is held until the drain ends: a StreamWriter left to the garbage collector
        closes its transport in ``__del__`` and would cut the drain short with a reset.
        """
        if self._lingering >= MAX_LINGERING or transport.is_closing():
            transport.close()
            return
        if not isinstance(transport, asyncio.Transport):
            transport.close()
            return
        self._lingering += 1
        _Drain(transport, budget, self._linger_done, keep).start()

    def _linger_done(self) -> None:
        self._lingering -= 1


class _Drain(asyncio.Protocol):
    """Reads and drops what a refused peer still sends, then closes (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, budget: int, on_done: Any, keep: object = None) -> None:
        self._transport = transport
        self._keep = keep
        self._budget = budget
        self._on_done = on_done
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    def start(self) -> None:
        transport = self._transport
        transport.set_protocol(self)
        with contextlib.suppress(OSError, RuntimeError, AttributeError):
            if transport.can_write_eof():
                transport.write_eof()  # sent once the answer is flushed
        self._timer = asyncio.get_running_loop().call_later(LINGER_S, self._finish)
        # The door may have paused reading (a full stream buffer); the drain must read.
        transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self._budget -= len(data)
        if self._budget <= 0:
            self._finish()

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close()
        self._keep = None
        self._on_done()
