"""The host's end of a link: requests and their replies over one :class:`LinkSession`.

The session (misbridge.link) owns every protocol rule and :class:`~misbridge.device.pump.LinkPump`
moves its bytes and time (the same pump drives the simulated pad's DEVICE end); this module
gives the HOST role its meaning.

Every link starts with the session start of docs/device-protocol.md §3.1: :meth:`LinkDriver.start`
has the session send LINK_RESET with a random nonce, and commands wait behind it.

Decoded replies go to the waiter of their ``request_id``; PROGRESS goes to the progress callback.
A reply misbridge cannot use (§6.1: it does not decode, or its REQUEST_ID is neither a waiting
command's nor one the host gave up on) fails the waiting command at once with DeviceBadReply
and leaves the link up. A late reply to a command the host gave up on (timed out, cancelled)
is stale: logged and dropped.
A failed link, a transport error or end of file fails every waiter with DeviceNotConnected and
marks the link down for good: the owner closes it and opens a new one (a fresh session).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable

from loguru import logger

from misbridge.device.pump import LinkPump
from misbridge.errors import (
    DeviceBadReply,
    DeviceNotConnected,
    DeviceTimeout,
    LinkFailedError,
    MessageError,
    ReturnCode,
)
from misbridge.link import (
    SESSION_NONCE_LEN,
    Cancel,
    DuplicateSuppressed,
    FrameRejected,
    GarbageDiscarded,
    LinkEvent,
    LinkFailed,
    LinkSession,
    Message,
    PayloadAcked,
    PayloadReceived,
    Progress,
    Retransmitted,
    SessionStarted,
    StaleFrameDiscarded,
    decode_message,
    encode_message,
    request_id_of,
)
from misbridge.link.constants import NO_REQUEST_ID
from misbridge.transport.base import ByteTransport

#: Request ids are 1..9999 (docs/device-protocol.md §4 REQUEST_ID), then 1 again.
REQUEST_ID_MIN = 1
REQUEST_ID_MAX = 9999
#: How many request ids given up on (timed out, cancelled, failed) are remembered as stale.
ABANDONED_IDS_KEPT = 32


class LinkDriver:
    """One open link to a pad: a transport plus a host-role session.

    Args:
        transport: an open byte transport; the driver closes it in :meth:`aclose`.
        session: a fresh ``LinkSession(Role.HOST, ...)``.
        on_progress: receives every PROGRESS message.
        on_down: called once, synchronously, when the link goes down.
        name: label for log lines (the device URL).
        session_start: begin with the session start (§3.1); False only for tests of v1 behaviour.
    """

    def __init__(
        self,
        transport: ByteTransport,
        session: LinkSession,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_down: Callable[[DeviceNotConnected], None] | None = None,
        on_event: Callable[[LinkEvent], None] | None = None,
        name: str = "pinpad",
        session_start: bool = True,
    ) -> None:
        self._transport = transport
        self._session = session
        self._on_event = on_event
        self._on_progress = on_progress
        self._on_down = on_down
        self._name = name
        self._loop = asyncio.get_running_loop()
        self._waiters: dict[int, asyncio.Future[Message]] = {}
        self._exclusive = asyncio.Lock()
        self._next_id = REQUEST_ID_MIN
        self._pump = LinkPump(session, transport, on_event=self._handle_event, on_failure=self._go_down, name=name)
        self._down_error: DeviceNotConnected | None = None
        self._down = asyncio.Event()
        self._closed = False
        self._session_start = session_start
        self._confirmed: bool | None = None
        self._started = asyncio.Event()
        self._abandoned: deque[int] = deque(maxlen=ABANDONED_IDS_KEPT)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Send LINK_RESET (§3.1) and start the read task; call once, right after construction."""
        if self._session_start:
            self._session.start(secrets.token_bytes(SESSION_NONCE_LEN), self._pump.now())
        else:
            self._started.set()
        self._pump.start()
        self._pump.flush()

    async def wait_started(self) -> None:
        """Wait until the session start is over (answered or given up) or the link is down.

        Bounded by the link's own timers: LINK_RESET is sent at most ``MAX_RETRANSMITS + 1`` times.
        """
        await self._started.wait()

    @property
    def session_confirmed(self) -> bool | None:
        """True once the pad answered LINK_RESET, False if it never did (a v1 pad), None until then."""
        return self._confirmed

    @property
    def up(self) -> bool:
        """True until the link fails, the transport fails or :meth:`aclose` is called."""
        return self._down_error is None

    @property
    def down_error(self) -> DeviceNotConnected | None:
        """Why the link went down, once it did."""
        return self._down_error

    @property
    def busy(self) -> bool:
        """True while a command (other than CANCEL) waits for its reply."""
        return self._exclusive.locked()

    async def wait_down(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - bool, not raise
        """Wait until the link is down; False if ``timeout`` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._down.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Mark the link down, fail waiters, stop the read task and close the transport."""
        if self._closed:
            return
        self._closed = True
        self._go_down(DeviceNotConnected(f"link to {self._name} closed"))
        await self._pump.aclose()
        await self._transport.aclose()

    # -- requests ----------------------------------------------------------------------------

    def next_request_id(self) -> int:
        """A new request id, 1..9999 cycling."""
        request_id = self._next_id
        self._next_id = REQUEST_ID_MIN if request_id >= REQUEST_ID_MAX else request_id + 1
        return request_id

    # The timeout must become a DeviceTimeout carrying ``timeout_code``, so it is a parameter.
    async def request(
        self,
        msg: Message,
        *,
        timeout: float,  # noqa: ASYNC109
        timeout_code: ReturnCode = ReturnCode.DEVICE_ERROR,
    ) -> Message:
        """Send ``msg`` and return the reply carrying its request id.

        Commands are sent one at a time (a second caller waits for the first reply); CANCEL is
        sent at once, even while a READ_CARD or READ_PIN runs. The wait for the lock counts in
        ``timeout``. PROGRESS messages are never replies.

        Raises:
            DeviceNotConnected: the link is down or goes down before the reply.
            DeviceTimeout: no reply within ``timeout`` seconds (with ``timeout_code``).
        """
        self._check_up()
        try:
            async with asyncio.timeout(timeout):
                if isinstance(msg, Cancel):
                    return await self._exchange(msg)
                async with self._exclusive:
                    return await self._exchange(msg)
        except TimeoutError:
            raise DeviceTimeout(
                f"{self._name}: no reply to {type(msg).__name__} within {timeout:g} s",
                return_code=timeout_code,
            ) from None

    async def _exchange(self, msg: Message) -> Message:
        self._check_up()
        request_id = msg.request_id
        if request_id in self._waiters:
            raise ValueError(f"request id {request_id} is already waiting for a reply")
        waiter: asyncio.Future[Message] = self._loop.create_future()
        self._waiters[request_id] = waiter
        try:
            logger.debug("{}: send {} id={}", self._name, type(msg).__name__, request_id)
            try:
                self._pump.send(encode_message(msg))
            except LinkFailedError as err:
                self._go_down(DeviceNotConnected(f"link to {self._name} failed: {err.message}"))
            return await waiter
        finally:
            self._waiters.pop(request_id, None)
            if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
                # Given up on: a reply that still comes for it is stale, not a broken pad.
                self._abandoned.append(request_id)

    def _check_up(self) -> None:
        if self._down_error is not None:
            raise DeviceNotConnected(self._down_error.message)

    # -- events ------------------------------------------------------------------------------

    def _handle_event(self, event: LinkEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)
        if isinstance(event, PayloadReceived):
            self._payload_received(event.payload)
        elif isinstance(event, LinkFailed):
            logger.warning("{}: link failed: {}", self._name, event.reason)
            self._go_down(DeviceNotConnected(f"link to {self._name} failed: {event.reason}"))
        elif isinstance(event, PayloadAcked):
            logger.debug("{}: frame {} acknowledged", self._name, event.seq)
        elif isinstance(event, Retransmitted):
            logger.debug("{}: frame {} resent (attempt {}, {})", self._name, event.seq, event.attempt, event.cause)
        elif isinstance(event, SessionStarted):
            self._session_started(event.confirmed)
        elif isinstance(event, FrameRejected | DuplicateSuppressed | GarbageDiscarded | StaleFrameDiscarded):
            logger.debug("{}: {}", self._name, event)

    def _session_started(self, confirmed: bool) -> None:
        self._confirmed = confirmed
        self._started.set()
        if confirmed:
            logger.debug("{}: session started (LINK_RESET answered)", self._name)
        else:
            logger.warning(
                "{}: the PIN pad did not answer LINK_RESET (a mispos-v1 pad without session start);"
                " carrying on without it",
                self._name,
            )

    def _payload_received(self, payload: bytes) -> None:
        try:
            msg = decode_message(payload)
        except MessageError as err:
            # MessageError texts name tags and limits, never values (misbridge.link.fields).
            self._bad_reply(f"invalid message ({len(payload)} bytes): {err.message}", request_id_of(payload))
            return
        request_id = msg.request_id
        waiter = self._waiter_for(msg)
        if waiter is not None and not waiter.done():
            if isinstance(msg, Progress):
                self._progress_received(msg)
                return
            logger.debug("{}: reply {} id={}", self._name, type(msg).__name__, request_id)
            waiter.set_result(msg)
            return
        self._bad_reply(f"{type(msg).__name__} with REQUEST_ID {request_id}, which no command waits for", request_id)

    def _bad_reply(self, what: str, request_id: int | None) -> None:
        """§6.1: end the command the pad answered with something unusable; keep the link."""
        if request_id is not None and request_id in self._abandoned:
            logger.debug("{}: late message for command {} given up on, dropped: {}", self._name, request_id, what)
            return
        waiter = self._waiters.get(request_id) if request_id is not None else None
        pending = [w for w in self._waiters.values() if not w.done()]
        targets = [waiter] if waiter is not None and not waiter.done() else pending
        ended = "; the waiting command ends" if targets else "; no command was waiting"
        logger.warning("{}: the PIN pad sent something misbridge cannot use: {}{}", self._name, what, ended)
        for target in targets:
            target.set_exception(DeviceBadReply(f"the PIN pad answered something misbridge cannot use: {what}"))

    def _waiter_for(self, msg: Message) -> asyncio.Future[Message] | None:
        if msg.request_id != NO_REQUEST_ID:
            return self._waiters.get(msg.request_id)
        # §5.4: RESULT 07 with REQUEST_ID 0 answers a command the pad could not identify. The pad
        # answers it as soon as the frame arrives, so it is the last command sent still waiting.
        logger.warning("{}: the pad could not read the REQUEST_ID of a command: {}", self._name, msg)
        pending = [w for w in self._waiters.values() if not w.done()]
        return pending[-1] if pending else None

    def _progress_received(self, msg: Progress) -> None:
        if self._on_progress is None:
            return
        try:
            self._on_progress(msg)
        except Exception:  # noqa: BLE001 - a faulty observer must not break the link; logged with traceback
            logger.exception("{}: progress callback failed", self._name)

    def _go_down(self, error: DeviceNotConnected) -> None:
        if self._down_error is not None:
            return
        self._down_error = error
        self._pump.stop()  # no more timers; a failed link is never used again
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(DeviceNotConnected(error.message))
        self._down.set()
        self._started.set()
        if self._on_down is not None:
            self._on_down(error)
