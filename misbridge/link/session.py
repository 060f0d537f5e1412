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

**Session start (§3.1).** A HOST session opened with :meth:`~LinkSession.start` first sends
LINK_RESET with the caller's random nonce and holds every data frame back until the pad's
LINK_RESET_REPLY echoes that nonce (:class:`SessionStarted` ``confirmed=True``). It resends
LINK_RESET on NAK or after ``ack_timeout``, as a data frame; when the retransmissions are used
up it carries on without it (``confirmed=False``: a v1 pad, which NAKs SEQ 0). A DEVICE
session answers every LINK_RESET itself: it drops what it had in flight or queued, restarts
its SEQ at 1, forgets the last delivered SEQ, leaves a failed state, replies with the nonce
and reports :class:`SessionReset`, so that the pad also drops the command it was running.
``session_start=False`` makes a DEVICE session a v1 pad that knows no session start.

**ACK timer.** By default every send waits ``ack_timeout`` (the fixed timer of the document's
version 1.0, which the pad keeps). The host passes an :class:`~misbridge.link.timing.AckTimer`
instead: the wait then follows the frame's wire time at the configured baud rate plus the pad's
turnaround allowance, doubling per retransmission of the same frame (§12). The session start's
LINK_RESET always waits ``ack_timeout``: the pad has ``SESSION_REPLY_MAX_S`` to answer it.

**NAK hold-off** (the document's §3 *refinements*): after sending a NAK, the session holds back
the NAK of a bad frame that started inside the wreckage of an earlier one
(:attr:`~misbridge.link.frames.BadFrame.in_wreckage`) for ``nak_holdoff`` seconds, unless a
good frame arrives first.  The resync of §3 rule 4 rescans a damaged frame's bytes, and every
STX-looking byte inside it can start another bad frame; NAKing each one would make the sender
burn several retransmissions on one damaged frame and could fail the link from a single
corrupted byte.  A bad frame that starts after the known end of the last one (the resend,
spoiled again) is the sender's next sending and is NAKed at once.  ``nak_holdoff=0`` restores
the literal rule (one NAK per bad frame).
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
    SEQ_SESSION,
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
    SessionReset,
    SessionStarted,
    StaleFrameDiscarded,
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
from misbridge.link.reset import encode_link_reset, parse_link_reset
from misbridge.link.timing import AckTimer

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
        ack_timeout: seconds to wait for ACK/NAK before retransmitting (§3 Sending rule 2); with
            ``ack_timer``, only the session start's LINK_RESET waits this long.
        ack_timer: the data frames' wait from their size and retransmission count (§12, the
            host's timer); None: every send waits ``ack_timeout``.
        max_retransmits: retransmissions before the link fails (§3 Sending rule 5).
        inter_byte_timeout: a started frame stalled this long is bad (§3 Receiving rule 5).
        nak_holdoff: see the module docstring; 0 sends one NAK per bad frame.
        session_start: DEVICE only: answer LINK_RESET (§3.1); False plays a v1 pad, which
            rejects SEQ 0 as a bad frame.

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
        session_start: bool = True,
        ack_timer: AckTimer | None = None,
    ) -> None:
        if ack_timeout <= 0 or inter_byte_timeout <= 0:
            raise ValueError("ack_timeout and inter_byte_timeout must be positive")
        if max_retransmits < 0 or nak_holdoff < 0:
            raise ValueError("max_retransmits and nak_holdoff must not be negative")
        self._role = role
        self._ack_timeout = ack_timeout
        self._ack_timer = ack_timer
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
        self._session_start = session_start
        # HOST: the LINK_RESET waiting for its reply, and the nonce it carries.
        self._reset: _Outgoing | None = None
        self._nonce = b""

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
    def starting(self) -> bool:
        """HOST: True from :meth:`start` until the session start is over (answered or given up)."""
        return self._reset is not None

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

    def start(self, nonce: bytes, now: float) -> None:
        """HOST: begin the session start (§3.1) with a random ``nonce``; call before any send.

        LINK_RESET goes out at once; frames passed to :meth:`send` wait until it is answered
        (or given up), and the outcome is reported as :class:`SessionStarted`.

        Raises:
            ValueError: not a HOST session, already started or sending, or a nonce of the wrong size.
        """
        if self._role is not Role.HOST:
            raise ValueError("only the host starts a session")
        if self._nonce or self._in_flight is not None or self._queue or self._next_seq != SEQ_MIN:
            raise ValueError("start() comes first, once per session")
        self._reset = _Outgoing(SEQ_SESSION, encode_link_reset(nonce), deadline=now + self._ack_timeout)
        self._nonce = nonce
        self._outbound += self._reset.frame

    def receive_data(self, data: bytes, now: float) -> None:
        """Process bytes read from the line at time ``now``.

        Ignored once the link failed, except that a failed DEVICE session still answers LINK_RESET.
        """
        if self._failure is None or self._answers_resets():
            self._handle(self._decoder.feed(data, now), now)

    def handle_timeout(self, now: float) -> None:
        """Apply every timer due at ``now``: the inter-byte timeout, then the ACK timer."""
        if self._failure is not None:
            return
        # Decoder first: its timeout's resync may still deliver a frame buffered behind a stray STX.
        self._handle(self._decoder.check_timeout(now), now)
        if self._reset is not None and now >= self._reset.deadline:
            self._retry_start(now, "timeout")
        out = self._in_flight
        if out is not None and now >= out.deadline:
            self._retransmit(out, now, "timeout")

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called, or None if no timer runs."""
        if self._failure is not None:
            return None
        deadlines = [self._decoder.next_deadline()]
        for out in (self._in_flight, self._reset):
            if out is not None:
                deadlines.append(out.deadline)
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
            if self._failure is not None and not (
                isinstance(item, DataFrame) and item.seq == SEQ_SESSION and self._answers_resets()
            ):
                continue
            match item:
                case DataFrame(seq=0):
                    self._control_frame(item, now)
                case DataFrame():
                    self._frame_received(item)
                case AckControl(seq=seq):
                    self._ack_received(seq, now)
                case NakControl():
                    # §3 Sending rule 4: a NAK with nothing in flight is ignored.
                    if self._reset is not None:
                        self._retry_start(now, "nak")
                    elif self._in_flight is not None:
                        self._retransmit(self._in_flight, now, "nak")
                case BadFrame(reason=reason, in_wreckage=in_wreckage):
                    self._bad_frame(reason, now, may_hold=in_wreckage)
                case Discarded(count=count):
                    self._events.append(GarbageDiscarded(count))

    def _answers_resets(self) -> bool:
        return self._role is Role.DEVICE and self._session_start

    def _control_frame(self, frame: DataFrame, now: float) -> None:
        """A good frame with SEQ 0: the session start (§3.1); never ACKed, never delivered."""
        if self._role is Role.DEVICE and not self._session_start:
            # A v1 pad: §3 Receiving rule 3 makes SEQ 0 a bad frame (held off as version 1.0 did,
            # so the host's LINK_RESETs are answered at the pace of its timer).
            self._bad_frame("SEQ 0", now, may_hold=True)
            return
        reset = parse_link_reset(frame.data)
        if self._role is Role.DEVICE and reset is not None and not reset.reply:
            self._reset_device(reset.nonce)
        elif self._role is Role.HOST and reset is not None and reset.reply and self._reset is not None:
            if reset.nonce != self._nonce:
                self._events.append(FrameRejected("LINK_RESET_REPLY with another nonce (stale)", nak_sent=False))
                return
            self._reset = None
            # Whatever arrived before the reply belonged to the pad's previous session.
            self._last_delivered = None
            self._events.append(SessionStarted(confirmed=True))
            self._start_next(now)
        else:
            self._events.append(FrameRejected("SEQ 0 frame that is no session start for this end", nak_sent=False))

    def _reset_device(self, nonce: bytes) -> None:
        dropped = len(self._queue) + (1 if self._in_flight is not None else 0)
        self._queue.clear()
        self._in_flight = None
        self._failure = None
        self._next_seq = SEQ_MIN
        self._last_delivered = None
        self._last_nak_at = None
        # Nothing of the old session may follow the reply: an ACK or frame not yet written goes.
        self._outbound.clear()
        self._outbound += encode_link_reset(nonce, reply=True)
        self._events.append(SessionReset(dropped))

    def _retry_start(self, now: float, cause: RetransmitCause) -> None:
        out = self._reset
        assert out is not None
        if out.retransmits >= self._max_retransmits:
            # No answer to any of the sends: a v1 pad (it NAKs SEQ 0) or none; carry on as v1.
            self._reset = None
            self._events.append(SessionStarted(confirmed=False))
            self._start_next(now)
            return
        out.retransmits += 1
        out.deadline = now + self._ack_timeout
        self._outbound += out.frame
        self._events.append(Retransmitted(out.seq, out.retransmits, cause))

    def _frame_received(self, frame: DataFrame) -> None:
        # §3 Receiving rule 6: a good frame is always acknowledged...
        self._outbound += encode_ack(frame.seq)
        self._last_nak_at = None
        if self._reset is not None:
            # §3.1: before the session start ends, the pad's frames are its previous session's.
            self._events.append(StaleFrameDiscarded(frame.seq))
            return
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

    def _bad_frame(self, reason: str, now: float, *, may_hold: bool) -> None:
        held = may_hold and self._last_nak_at is not None and now - self._last_nak_at < self._nak_holdoff
        if not held:
            self._outbound += NAK_BYTES
            self._last_nak_at = now
        self._events.append(FrameRejected(reason, nak_sent=not held))

    def _start_next(self, now: float) -> None:
        if self._in_flight is None and self._reset is None and self._queue:
            out = self._queue.popleft()
            out.deadline = now + self._wait_for(out)
            self._outbound += out.frame
            self._in_flight = out

    def _retransmit(self, out: _Outgoing, now: float, cause: RetransmitCause) -> None:
        if out.retransmits >= self._max_retransmits:
            self._fail(f"frame SEQ {out.seq} unacknowledged after {out.retransmits} retransmissions ({cause})")
            return
        out.retransmits += 1
        out.deadline = now + self._wait_for(out)
        self._outbound += out.frame
        self._events.append(Retransmitted(out.seq, out.retransmits, cause))

    def _wait_for(self, out: _Outgoing) -> float:
        """The ACK timer of this send of a data frame (§3 Sending rule 2, §12)."""
        if self._ack_timer is None:
            return self._ack_timeout
        return self._ack_timer.timeout(len(out.frame), out.retransmits)

    def _fail(self, reason: str) -> None:
        unsent = len(self._queue) + (1 if self._in_flight is not None else 0)
        self._queue.clear()
        self._in_flight = None
        self._failure = reason
        self._events.append(LinkFailed(reason, unsent))
