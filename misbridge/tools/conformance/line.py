"""The kit's end of the line: a host that writes exactly the bytes a check wants.

:class:`RawHost` does what misbridge's own host does (frames with SEQ, ``ACK SEQ`` for the pad's
frames, LINK_RESET) with misbridge.link's codec, but every step is in the check's hands, so it can
also misbehave on purpose: a bad LRC, garbage, a frame cut by the inter-byte timeout, a duplicate
SEQ, a NAK instead of an ACK, no ACK at all. Everything the pad sends is decoded with
:class:`~misbridge.link.FrameDecoder` and kept with its arrival time, so a check can ask what came,
in which order and how fast (docs/device-protocol.md §12).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from misbridge.errors import DeviceNotConnected, MessageError
from misbridge.link import (
    ACK_TIMEOUT_S,
    MAX_RETRANSMITS,
    NAK_BYTES,
    SEQ_MAX,
    SEQ_MIN,
    AckControl,
    DataFrame,
    Decoded,
    FrameDecoder,
    Message,
    NakControl,
    Progress,
    decode_message,
    encode_ack,
    encode_frame,
    encode_link_reset,
    encode_message,
    parse_link_reset,
)
from misbridge.transport.base import ByteTransport
from misbridge.transport.registry import open_transport

__all__ = ["Exchange", "RawHost", "Rx"]


@dataclass(frozen=True)
class Rx:
    """One item the pad sent, with the loop time it arrived."""

    at: float
    item: Decoded

    @property
    def frame(self) -> DataFrame | None:
        """The good frame, or None for a control or garbage."""
        return self.item if isinstance(self.item, DataFrame) else None

    @property
    def message(self) -> Message | None:
        """The decoded message of a data frame (SEQ 1..255), None otherwise or if undecodable."""
        frame = self.frame
        if frame is None or frame.seq == 0:
            return None
        try:
            return decode_message(frame.payload)
        except MessageError:
            return None


@dataclass
class Exchange:
    """One command sent by :meth:`RawHost.request` and what came back."""

    seq: int
    sent_at: float
    ack_at: float | None = None
    reply: Message | None = None
    reply_at: float | None = None
    progress: list[Progress] = field(default_factory=list)
    sends: int = 1

    @property
    def turnaround(self) -> float | None:
        """Seconds from the last byte written to the ACK (§12), if one came."""
        return None if self.ack_at is None else self.ack_at - self.sent_at


def _describe(message: Message | None) -> str:
    return "nothing" if message is None else repr(message)


class RawHost:
    """A host end of a mispos-v1 line, driven step by step by the checks.

    By default every good data frame of the pad is answered ``ACK SEQ`` at once; :attr:`answer`
    replaces that (return the bytes to send, or ``b""`` for none).
    """

    def __init__(self, transport: ByteTransport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder()
        self._arrived = asyncio.Event()
        self.received: list[Rx] = []
        self.answer: Callable[[DataFrame], bytes] = lambda frame: encode_ack(frame.seq)
        self.next_seq = SEQ_MIN
        #: Every ACK turnaround measured (§12), with the command's name.
        self.turnarounds: list[tuple[str, float]] = []
        #: Seconds from ACK to reply for the commands §12 bounds to 1 s.
        self.reply_delays: list[tuple[str, float]] = []
        #: Commands whose reply came before their ACK (§12 "ACK before the reply").
        self.reply_before_ack: list[str] = []
        self.down: DeviceNotConnected | None = None
        self._reader = asyncio.create_task(self._read_loop(), name="conformance-read")

    @classmethod
    async def open(cls, url: str, baudrate: int) -> RawHost:
        """Open the pad's port with misbridge's transports.

        Raises:
            DeviceNotConnected: the port cannot be opened.
            ConfigError: no transport for the URL.
        """
        return cls(await open_transport(url, baudrate=baudrate))

    async def aclose(self) -> None:
        """Stop reading and close the port."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._transport.aclose()

    def now(self) -> float:
        """The loop clock, the one arrival times are on."""
        return self._loop.time()

    # -- receiving ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._transport.read()
                self._take(self._decoder.feed(data, self.now()))
        except DeviceNotConnected as err:
            self.down = err
            self._arrived.set()

    def _take(self, items: list[Decoded]) -> None:
        now = self.now()
        for item in items:
            if isinstance(item, DataFrame) and item.seq != 0:
                reply = self.answer(item)
                if reply:
                    with contextlib.suppress(DeviceNotConnected):
                        self._transport.write(reply)
            self.received.append(Rx(now, item))
        if items:
            self._arrived.set()

    def mark(self) -> int:
        """A cursor: items received from now on have this index or higher."""
        return len(self.received)

    async def wait(self, match: Callable[[Rx], bool], timeout: float, since: int) -> Rx | None:  # noqa: ASYNC109
        """The first item from ``since`` on that ``match``es, waiting up to ``timeout`` s; None if none came."""
        deadline = self.now() + timeout
        index = since
        while True:
            while index < len(self.received):
                rx = self.received[index]
                index += 1
                if match(rx):
                    return rx
            remaining = deadline - self.now()
            if remaining <= 0 or self.down is not None:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.1)):
                    await self._arrived.wait()
            # A frame the pad left unfinished is judged by the inter-byte timeout, as §3 rule 5 says.
            self._take(self._decoder.check_timeout(self.now()))

    async def quiet(self, seconds: float, since: int) -> list[Rx]:
        """Wait ``seconds`` and return everything that came from ``since`` on."""
        await asyncio.sleep(seconds)
        self._take(self._decoder.check_timeout(self.now()))
        return self.received[since:]

    # -- sending -----------------------------------------------------------------------------

    async def write(self, data: bytes) -> float:
        """Write ``data`` and wait until it left; returns the loop time then.

        Raises:
            DeviceNotConnected: the port is gone.
        """
        if self.down is not None:
            raise DeviceNotConnected(self.down.message)
        self._transport.write(data)
        await self._transport.drain()
        return self.now()

    def take_seq(self) -> int:
        """The next SEQ of the kit's frames (1..255, then 1 again, §2)."""
        seq = self.next_seq
        self.next_seq = SEQ_MIN if seq == SEQ_MAX else seq + 1
        return seq

    async def start_session(self, timeout: float = ACK_TIMEOUT_S) -> Rx | None:  # noqa: ASYNC109
        """Send LINK_RESET with a new nonce (§3.1); the reply with our nonce, or None.

        On a reply the kit's SEQ restarts at 1; without one it carries on from where it was, as a
        host does with a pad that has no session start.
        """
        nonce = secrets.token_bytes(4)
        since = self.mark()
        await self.write(encode_link_reset(nonce))
        reply = await self.wait(lambda rx: _is_reply(rx, nonce), timeout, since)
        if reply is not None:
            self.next_seq = SEQ_MIN
        return reply

    async def send(self, payload: bytes, seq: int | None = None) -> tuple[int, float]:
        """One data frame ``SEQ | payload``; returns its SEQ and when it left."""
        seq = self.take_seq() if seq is None else seq
        return seq, await self.write(encode_frame(bytes([seq]) + payload))

    async def request(
        self,
        command: Message | bytes,
        request_id: int,
        *,
        timeout: float = 3.0,  # noqa: ASYNC109
        name: str = "",
        bounded: bool = False,
    ) -> Exchange:
        """Send a command (a message or a raw payload) and wait for its reply.

        The frame is resent after ``ACK_TIMEOUT_S`` without an ACK, up to ``MAX_RETRANSMITS``
        times, as a host does. The reply is the first message that is not PROGRESS with
        ``request_id`` (or a RESULT with REQUEST_ID 0, §5.4). ``bounded`` records the ACK-to-reply
        delay against §12's 1 s.
        """
        payload = encode_message(command) if not isinstance(command, bytes) else command
        label = name or (type(command).__name__ if not isinstance(command, bytes) else f"TYPE 0x{payload[0]:02X}")
        since = self.mark()
        seq, sent_at = await self.send(payload)
        exchange = Exchange(seq, sent_at)
        frame = encode_frame(bytes([seq]) + payload)
        ack: Rx | None = None
        for attempt in range(MAX_RETRANSMITS + 1):
            if attempt:
                exchange.sends += 1
                sent_at = await self.write(frame)
            ack = await self.wait(lambda rx: rx.item == AckControl(seq), ACK_TIMEOUT_S, since)
            if ack is not None:
                break
        if ack is not None:
            exchange.ack_at = ack.at
            exchange.sent_at = sent_at
            self.turnarounds.append((label, ack.at - sent_at))
        answer = await self.wait(lambda rx: _answers(rx, request_id), timeout, since)
        for rx in self.received[since:]:
            if isinstance(rx.message, Progress) and rx.message.request_id == request_id:
                exchange.progress.append(rx.message)
        if answer is not None:
            exchange.reply, exchange.reply_at = answer.message, answer.at
            if ack is not None and answer.at < ack.at:
                self.reply_before_ack.append(label)
            elif ack is not None and bounded:
                self.reply_delays.append((label, answer.at - ack.at))
        return exchange

    async def nak(self) -> float:
        """Send a single NAK."""
        return await self.write(NAK_BYTES)


def _is_reply(rx: Rx, nonce: bytes) -> bool:
    frame = rx.frame
    if frame is None or frame.seq != 0:
        return False
    reset = parse_link_reset(frame.data)
    return reset is not None and reset.reply and reset.nonce == nonce


def _answers(rx: Rx, request_id: int) -> bool:
    msg = rx.message
    if msg is None or isinstance(msg, Progress):
        return False
    return msg.request_id in (request_id, 0)


def is_nak(rx: Rx) -> bool:
    """The item is a NAK."""
    return isinstance(rx.item, NakControl)


def describe(message: Message | None) -> str:
    """A message as a report shows it (``repr`` never shows encrypted fields)."""
    return _describe(message)
