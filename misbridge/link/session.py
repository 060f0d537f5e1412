"""The link protocol engine for one end of the line (§3 Link rules), sans-IO.

:class:`LinkSession` never touches a port and never reads a clock.  The caller feeds it the
bytes it read (:meth:`~LinkSession.receive_data`), writes what it returns
(:meth:`~LinkSession.data_to_send`), sleeps until :meth:`~LinkSession.next_deadline` and
then calls :meth:`~LinkSession.handle_timeout`; every method that depends on time takes
``now`` (seconds on a monotonic clock).  Results come out as events
(:meth:`~LinkSession.next_event`).

Sending is stop-and-wait: one frame in flight, the rest queued.  The frame in flight is sent
again on NAK or when its ACK timer expires; after ``max_retransmits`` retransmissions one
more NAK or timeout fails the link, and a failed session stays failed (a reopened link is a
new session: SEQ restarts at 1 and the duplicate filter forgets everything, §3 Reset).

One addition to the document: after sending a NAK, the session holds back further NAKs for
``nak_holdoff`` seconds unless a good frame arrives first.  The resync of §3 rule 4 rescans
a damaged frame's bytes, and every STX-looking byte inside it can start another bad frame;
NAKing each one would make the sender burn several retransmissions on one damaged frame and
could fail the link from a single corrupted byte.  ``nak_holdoff=0`` restores the literal
rule (one NAK per bad frame).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from misbridge.errors import LinkFailedError
from misbridge.link.constants import (
    ACK_TIMEOUT_S,
    INTER_BYTE_TIMEOUT_S,
    MAX_PAYLOAD_LEN,
    MAX_RETRANSMITS,
    NAK_HOLDOFF_S,
    SEQ_MAX,
    SEQ_MIN,
)
from misbridge.link.events import (
    DuplicateSuppressed,
    FrameRejected,
    GarbageDiscarded,
    LinkEvent,
    LinkFailed,
    PayloadAcked,
    PayloadReceived,
    RetransmitCause,
    Retransmitted,
)
from misbridge.link.frames import (
    NAK_BYTES,
    AckControl,
    BadFrame,
    DataFrame,
    Decoded,
    Discarded,
    FrameDecoder,
    NakControl,
    encode_ack,
    encode_frame,
)

__all__ = ["NAK_HOLDOFF_S", "InFlight", "LinkSession", "Role"]


class Role(Enum):
    """Which end of the line a session is; both follow the same rules (§3)."""

    HOST = "host"
    DEVICE = "device"


@dataclass(frozen=True)
class InFlight:
    """The frame waiting for its ACK: ``retransmits`` so far and when its timer expires."""

    seq: int
    retransmits: int
    deadline: float


@dataclass
class _Outgoing:
    seq: int
    frame: bytes
    retransmits: int = 0
    deadline: float = 0.0


class LinkSession:
    """One end of a mispos-v1 link: framing, ACK/NAK, retransmission, duplicate suppression.

    Args:
        role: HOST or DEVICE; the rules are the same, the role is for the caller's logs.
        ack_timeout: seconds to wait for ACK/NAK before retransmitting (§3 Sending rule 2).
        max_retransmits: retransmissions before the link fails (§3 Sending rule 5).
        inter_byte_timeout: a started frame stalled this long is bad (§3 Receiving rule 5).
        nak_holdoff: see the module docstring; 0 sends one NAK per bad frame.

    Raises:
        ValueError: a timeout is not positive, or a count or hold-off is negative.
    """

    def __init__(
        self,
        role: Role,
        *,
        ack_timeout: float = ACK_TIMEOUT_S,
        max_retransmits: int = MAX_RETRANSMITS,
        inter_byte_timeout: float = INTER_BYTE_TIMEOUT_S,
        nak_holdoff: float = NAK_HOLDOFF_S,
    ) -> None:
        if ack_timeout <= 0 or inter_byte_timeout <= 0:
            raise ValueError("ack_timeout and inter_byte_timeout must be positive")
        if max_retransmits < 0 or nak_holdoff < 0:
            raise ValueError("max_retransmits and nak_holdoff must not be negative")
        self._role = role
        self._ack_timeout = ack_timeout
        self._max_retransmits = max_retransmits
        self._nak_holdoff = nak_holdoff
        self._decoder = FrameDecoder(inter_byte_timeout)
        self._next_seq = SEQ_MIN
        self._last_delivered: int | None = None
        self._last_nak_at: float | None = None
        self._in_flight: _Outgoing | None = None
        self._queue: deque[_Outgoing] = deque()
        self._outbound = bytearray()
        self._events: deque[LinkEvent] = deque()
        self._failure: str | None = None

    @property
    def role(self) -> Role:
        """HOST or DEVICE."""
        return self._role

    @property
    def failed(self) -> bool:
        """True once the link has failed; it never recovers (open a new session)."""
        return self._failure is not None

    @property
    def in_flight(self) -> InFlight | None:
        """The frame waiting for its ACK, or None."""
        out = self._in_flight
        return None if out is None else InFlight(out.seq, out.retransmits, out.deadline)

    @property
    def queued(self) -> int:
        """Frames waiting behind the one in flight."""
        return len(self._queue)

    def send(self, payload: bytes, now: float) -> int:
        """Queue ``payload`` (``TYPE | TLV...``) as one frame; return the SEQ it was given.

        The frame goes out at once if nothing is in flight, else after the frames before it
        are acknowledged.  Its fate is reported later as :class:`PayloadAcked` or
        :class:`LinkFailed`.

        Raises:
            LinkFailedError: the link has failed.
            ValueError: ``payload`` is empty or longer than ``MAX_PAYLOAD_LEN``.
        """
        if self._failure is not None:
            raise LinkFailedError(self._failure)
        if not 1 <= len(payload) <= MAX_PAYLOAD_LEN:
            raise ValueError(f"payload must be 1..{MAX_PAYLOAD_LEN} bytes, got {len(payload)}")
        seq = self._next_seq
        # §2: after 255 comes 1; 0 is never used.
        self._next_seq = SEQ_MIN if seq == SEQ_MAX else seq + 1
        self._queue.append(_Outgoing(seq, encode_frame(bytes([seq]) + payload)))
        self._start_next(now)
        return seq

    def receive_data(self, data: bytes, now: float) -> None:
        """Process bytes read from the line at time ``now``.  Ignored once the link failed."""
        if self._failure is None:
            self._handle(self._decoder.feed(data, now), now)

    def handle_timeout(self, now: float) -> None:
        """Apply every timer due at ``now``: the inter-byte timeout, then the ACK timer."""
        if self._failure is not None:
            return
        # Decoder first: its timeout's resync may still deliver a frame buffered behind a stray STX.
        self._handle(self._decoder.check_timeout(now), now)
        out = self._in_flight
        if out is not None and now >= out.deadline:
            self._retransmit(out, now, "timeout")

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called, or None if no timer runs."""
        if self._failure is not None:
            return None
        deadlines = [self._decoder.next_deadline()]
        if self._in_flight is not None:
            deadlines.append(self._in_flight.deadline)
        return min((d for d in deadlines if d is not None), default=None)

    def data_to_send(self) -> bytes:
        """Take the bytes to write to the line: frames, retransmissions, ACKs and NAKs."""
        data = bytes(self._outbound)
        self._outbound.clear()
        return data

    def next_event(self) -> LinkEvent | None:
        """Take the oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[LinkEvent]:
        """Take every pending event, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    def _handle(self, items: list[Decoded], now: float) -> None:
        for item in items:
            if self._failure is not None:
                return
            match item:
                case DataFrame():
                    self._frame_received(item)
                case AckControl(seq=seq):
                    self._ack_received(seq, now)
                case NakControl():
                    # §3 Sending rule 4: a NAK with nothing in flight is ignored.
                    if self._in_flight is not None:
                        self._retransmit(self._in_flight, now, "nak")
                case BadFrame(reason=reason):
                    self._bad_frame(reason, now)
                case Discarded(count=count):
                    self._events.append(GarbageDiscarded(count))

    def _frame_received(self, frame: DataFrame) -> None:
        # §3 Receiving rule 6: a good frame is always acknowledged...
        self._outbound += encode_ack(frame.seq)
        self._last_nak_at = None
        # ...but a repeat of the last delivered SEQ is the peer resending after a lost ACK.
        if frame.seq == self._last_delivered:
            self._events.append(DuplicateSuppressed(frame.seq))
        else:
            self._last_delivered = frame.seq
            self._events.append(PayloadReceived(frame.seq, frame.payload))

    def _ack_received(self, seq: int, now: float) -> None:
        out = self._in_flight
        # §3 Sending rule 3: an ACK for any other SEQ is stale (second ACK of a resend).
        if out is None or seq != out.seq:
            return
        self._in_flight = None
        self._events.append(PayloadAcked(seq))
        self._start_next(now)

    def _bad_frame(self, reason: str, now: float) -> None:
        held = self._last_nak_at is not None and now - self._last_nak_at < self._nak_holdoff
        if not held:
            self._outbound += NAK_BYTES
            self._last_nak_at = now
        self._events.append(FrameRejected(reason, nak_sent=not held))

    def _start_next(self, now: float) -> None:
        if self._in_flight is None and self._queue:
            out = self._queue.popleft()
            out.deadline = now + self._ack_timeout
            self._outbound += out.frame
            self._in_flight = out

    def _retransmit(self, out: _Outgoing, now: float, cause: RetransmitCause) -> None:
        if out.retransmits >= self._max_retransmits:
            self._fail(f"frame SEQ {out.seq} unacknowledged after {out.retransmits} retransmissions ({cause})")
            return
        out.retransmits += 1
        out.deadline = now + self._ack_timeout
        self._outbound += out.frame
        self._events.append(Retransmitted(out.seq, out.retransmits, cause))

    def _fail(self, reason: str) -> None:
        unsent = len(self._queue) + (1 if self._in_flight is not None else 0)
        self._queue.clear()
        self._in_flight = None
        self._failure = reason
        self._events.append(LinkFailed(reason, unsent))
