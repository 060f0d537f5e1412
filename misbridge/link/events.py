"""What a :class:`~misbridge.link.session.LinkSession` reports, as frozen dataclasses.

:class:`PayloadReceived`, :class:`PayloadAcked` and :class:`LinkFailed` drive the device
layer.  The others are diagnostics: they change nothing but let the device layer count NAKs,
retransmissions and resyncs for its metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "DuplicateSuppressed",
    "FrameRejected",
    "GarbageDiscarded",
    "LinkEvent",
    "LinkFailed",
    "PayloadAcked",
    "PayloadReceived",
    "RetransmitCause",
    "Retransmitted",
    "SessionReset",
    "SessionStarted",
    "StaleFrameDiscarded",
]

RetransmitCause: TypeAlias = Literal["nak", "timeout"]


@dataclass(frozen=True)
class PayloadReceived:
    """The peer's frame ``seq`` arrived intact; ``payload`` is ``TYPE | TLV...``.

    ``repr`` shows only the size: the payload can hold encrypted card and PIN data.
    """

    seq: int
    payload: bytes

    def __repr__(self) -> str:
        return f"PayloadReceived(seq={self.seq}, len={len(self.payload)})"


@dataclass(frozen=True)
class PayloadAcked:
    """Our frame ``seq`` was acknowledged by the peer."""

    seq: int


@dataclass(frozen=True)
class LinkFailed:
    """Retransmissions are exhausted (§3 Sending rule 5); the session is dead.

    ``unsent`` counts the frames that failed with it: the one in flight plus every queued one.
    """

    reason: str
    unsent: int


@dataclass(frozen=True)
class FrameRejected:
    """Diagnostic: a bad frame arrived; ``nak_sent`` is False when the NAK was held back."""

    reason: str
    nak_sent: bool = True


@dataclass(frozen=True)
class DuplicateSuppressed:
    """Diagnostic: the peer resent frame ``seq`` (our ACK was lost); ACKed, not delivered."""

    seq: int


@dataclass(frozen=True)
class Retransmitted:
    """Diagnostic: frame ``seq`` was sent again; ``attempt`` counts retransmissions from 1."""

    seq: int
    attempt: int
    cause: RetransmitCause


@dataclass(frozen=True)
class GarbageDiscarded:
    """Diagnostic: ``count`` bytes outside any frame were skipped."""

    count: int


@dataclass(frozen=True)
class SessionStarted:
    """HOST: the session start (§3.1) is over; data frames may flow, from SEQ 1.

    ``confirmed`` is True when the pad answered LINK_RESET with our nonce; False when it never
    did within the retries (a v1 pad that predates the session start): the link carries on as
    a v1 link, without the guarantee that the pad forgot its last delivered SEQ.
    """

    confirmed: bool


@dataclass(frozen=True)
class SessionReset:
    """DEVICE: the host started a new session (LINK_RESET, §3.1); everything of the old one is gone.

    ``dropped`` counts our frames that were never acknowledged (in flight or queued) and will
    never be sent: whatever command they answered belongs to the host's previous session.
    """

    dropped: int


@dataclass(frozen=True)
class StaleFrameDiscarded:
    """Diagnostic, HOST: a data frame arrived before the session start ended; ACKed, not delivered."""

    seq: int


LinkEvent: TypeAlias = (
    PayloadReceived
    | PayloadAcked
    | LinkFailed
    | FrameRejected
    | DuplicateSuppressed
    | Retransmitted
    | GarbageDiscarded
    | SessionStarted
    | SessionReset
    | StaleFrameDiscarded
)
