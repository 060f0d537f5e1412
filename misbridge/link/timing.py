"""The host's ACK timer, derived from the line speed and the frame just sent (§3, §12).

A fixed 1 s timer (``ACK_TIMEOUT_S``) is what version 1.0 of the document gave both ends; it is
sized for the slowest case (a 1024-byte frame at 19200 baud is 533 ms on the wire) and makes
every lost ACK cost a second even when the frame took 2 ms. :class:`AckTimer` waits instead for
what the frame can really take::

    wire time of the frame + wire time of ACK SEQ + ACK_TURNAROUND_S (the pad's allowance, §12)
        + ACK_TIMER_MARGIN_S (operating-system and USB latency)

clamped to ``[floor, ACK_TIMEOUT_S]``, and doubles it for each retransmission of the same frame
(capped at ``ACK_TIMEOUT_S`` too), so a pad that is merely slow is given back the patience of the
fixed timer before its link is declared failed. The floor is the operator's
(``device.ack_timeout_min_s``): on a pty or a USB-CDC pad the baud rate is nominal and only a
floor keeps a slow pad from being resent to early. Pure arithmetic: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from misbridge.link.constants import (
    ACK_TIMEOUT_MIN_S,
    ACK_TIMEOUT_S,
    ACK_TIMER_MARGIN_S,
    ACK_TURNAROUND_S,
    BITS_PER_BYTE,
    DEFAULT_BAUDRATE,
)

__all__ = ["ACK_LEN", "AckTimer", "wire_time_s"]

#: ``ACK SEQ`` is two bytes on the line (§2).
ACK_LEN = 2


def wire_time_s(byte_count: int, baudrate: int) -> float:
    """Seconds ``byte_count`` bytes take on the line at ``baudrate``, 8N1 (10 bits a byte, §1).

    Raises:
        ValueError: ``baudrate`` is not positive or ``byte_count`` is negative.
    """
    if baudrate <= 0 or byte_count < 0:
        raise ValueError(f"need baudrate > 0 and byte_count >= 0, got {baudrate} and {byte_count}")
    return byte_count * BITS_PER_BYTE / baudrate


@dataclass(frozen=True)
class AckTimer:
    """How long the sender waits for ``ACK SEQ`` or ``NAK`` after each send of a frame.

    Args:
        baudrate: the line speed the wire times are computed at (``device.baudrate``).
        floor: the shortest wait ever used (``device.ack_timeout_min_s``).
        ceiling: the longest wait ever used; ``ACK_TIMEOUT_S``, the timer of version 1.0.
        margin: added to wire times and turnaround for operating-system and USB latency.

    Raises:
        ValueError: a non-positive baud rate or floor, a negative margin, or floor > ceiling.
    """

    baudrate: int = DEFAULT_BAUDRATE
    floor: float = ACK_TIMEOUT_MIN_S
    ceiling: float = ACK_TIMEOUT_S
    margin: float = ACK_TIMER_MARGIN_S

    def __post_init__(self) -> None:
        if self.baudrate <= 0 or self.floor <= 0 or self.margin < 0:
            raise ValueError("AckTimer needs baudrate > 0, floor > 0 and margin >= 0")
        if self.floor > self.ceiling:
            raise ValueError(f"AckTimer floor {self.floor} s is above its ceiling {self.ceiling} s")

    def first(self, frame_len: int) -> float:
        """The wait after the first send of a ``frame_len``-byte frame (STX to LRC)."""
        needed = (
            wire_time_s(frame_len, self.baudrate) + wire_time_s(ACK_LEN, self.baudrate) + ACK_TURNAROUND_S + self.margin
        )
        return min(self.ceiling, max(self.floor, needed))

    def timeout(self, frame_len: int, retransmits: int = 0) -> float:
        """The wait after a send that follows ``retransmits`` retransmissions (0: the first send).

        Doubles per retransmission, capped at the ceiling: a lone lost ACK costs one short wait,
        a pad that answers late still gets about the fixed timer's total before the link fails.
        """
        if retransmits < 0:
            raise ValueError(f"retransmits must not be negative, got {retransmits}")
        # min(): past 2**16 every wait is at the ceiling anyway, and the float power stays finite.
        doubled: float = self.first(frame_len) * 2.0 ** min(retransmits, 16)
        return min(self.ceiling, doubled)
