"""Frames on the line (§2) and the incremental receiver that finds them (§3 Receiving).

::

    +-----+---------+--------------------+-----+-----+
    | STX | LEN     | DATA               | ETX | LRC |
    | 02  | 2 (BCD) | SEQ | TYPE | TLV.. | 03  | 1   |
    +-----+---------+--------------------+-----+-----+

Outside frames only ``ACK SEQ`` (2 bytes) and ``NAK`` (1 byte) mean something; every other
byte is garbage.  :class:`FrameDecoder` is sans-IO: bytes and the current time go in, a list
of :data:`Decoded` items comes out.  It never raises on line data, whatever arrives.

Limitations of mispos-v1 itself, which no decoder can remove:

- ``ACK SEQ`` carries no check.  A frame whose STX is destroyed is hunted through as
  garbage, and if it holds ``06 xx`` (a LEN of ``xx06`` followed by SEQ does) the receiver
  reads "ACK xx"; when xx is the SEQ of its own frame in flight and that frame was lost,
  the frame is silently dropped.  Likewise a damaged SEQ byte of a stale ACK.
- The LRC is 8 bits and LEN has no check of its own: a LEN damaged to a smaller value
  passes when DATA happens to hold ETX and the right LRC at the new end (about 2**-16 per
  damaged LEN), delivering a truncated DATA.  Damage to any other single byte is always
  detected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, TypeAlias

from misbridge.errors import FramingError
from misbridge.link.bcd import decode_bcd_length, encode_bcd_length
from misbridge.link.constants import (
    FRAME_OVERHEAD,
    INTER_BYTE_TIMEOUT_S,
    LEN_FIELD_SIZE,
    MAX_DATA_LEN,
    MAX_FRAME_LEN,
    MIN_DATA_LEN,
    SEQ_MAX,
    SEQ_MIN,
    ControlByte,
)
from misbridge.link.lrc import compute_lrc, lrc_ok

__all__ = [
    "NAK_BYTES",
    "AckControl",
    "BadFrame",
    "DataFrame",
    "Decoded",
    "Discarded",
    "FrameDecoder",
    "NakControl",
    "encode_ack",
    "encode_frame",
]

#: §2: ``NAK`` is a single byte.
NAK_BYTES: Final = bytes([ControlByte.NAK])

# STX and LEN: the part of a frame needed before its size is known.
_HEADER_LEN: Final = 1 + LEN_FIELD_SIZE
# The one rejection after which a bad frame's end is known: LEN led to its ETX, the LRC failed.
_BAD_LRC: Final = "bad LRC"
# §3 Receiving rule 1: while hunting, only these bytes end the discarding.
_HUNT_RE: Final = re.compile(b"[" + re.escape(bytes([ControlByte.STX, ControlByte.ACK, ControlByte.NAK])) + b"]")


@dataclass(frozen=True)
class DataFrame:
    """A good frame: its DATA (``SEQ | TYPE | TLV...``), LRC and ETX already checked.

    ``repr`` shows only SEQ and size: DATA can hold encrypted card and PIN data.
    """

    data: bytes

    @property
    def seq(self) -> int:
        """The sender's sequence number (first DATA byte); 0 for a link-control frame (§3.1)."""
        return self.data[0]

    @property
    def payload(self) -> bytes:
        """DATA without SEQ: ``TYPE | TLV...``."""
        return self.data[1:]

    def __repr__(self) -> str:
        return f"DataFrame(seq={self.seq}, len={len(self.data)})"


@dataclass(frozen=True)
class AckControl:
    """``ACK SEQ``: the peer received our frame ``seq`` intact."""

    seq: int


@dataclass(frozen=True)
class NakControl:
    """``NAK``: the peer received something broken and wants the frame in flight again."""


@dataclass(frozen=True)
class BadFrame:
    """A frame was started but is invalid or stalled; the receiver answers ``NAK``.

    ``in_wreckage`` is True when the frame started inside the bytes of an earlier bad frame (the
    resync rescans them, §3 rule 4): it is not a new sending of the peer, and the NAK of the
    earlier frame already asked for the resend (the session's NAK hold-off may skip its NAK).
    """

    reason: str
    in_wreckage: bool = False


@dataclass(frozen=True)
class Discarded:
    """``count`` garbage bytes were skipped while hunting for STX, ACK or NAK."""

    count: int


Decoded: TypeAlias = DataFrame | AckControl | NakControl | BadFrame | Discarded


def encode_frame(data: bytes) -> bytes:
    """Wrap DATA (``SEQ | TYPE | TLV...``) in ``STX | LEN | DATA | ETX | LRC``.

    The encoder refuses what a receiver must reject (§3 Receiving rule 3), so every frame it
    builds decodes back to the same DATA. SEQ 0 is allowed: it marks the link-control frames
    of the session start (§3.1, :mod:`misbridge.link.reset`).

    Raises:
        ValueError: DATA is shorter than 2 bytes or longer than ``MAX_DATA_LEN``.
    """
    if not MIN_DATA_LEN <= len(data) <= MAX_DATA_LEN:
        raise ValueError(f"DATA must be {MIN_DATA_LEN}..{MAX_DATA_LEN} bytes, got {len(data)}")
    body = encode_bcd_length(len(data)) + data + bytes([ControlByte.ETX])
    return bytes([ControlByte.STX]) + body + bytes([compute_lrc(body)])


def encode_ack(seq: int) -> bytes:
    """``ACK SEQ``: acknowledge the peer's frame ``seq``.

    Raises:
        ValueError: ``seq`` is outside ``SEQ_MIN..SEQ_MAX``.
    """
    if not SEQ_MIN <= seq <= SEQ_MAX:
        raise ValueError(f"SEQ must be {SEQ_MIN}..{SEQ_MAX}, got {seq}")
    return bytes([ControlByte.ACK, seq])


class FrameDecoder:
    """Incremental deframer for one direction of the line (§3 Receiving rules 1-5).

    Feed it bytes as they arrive, in chunks of any size, with the current time.  It keeps at
    most one unfinished frame (never more than ``MAX_FRAME_LEN`` bytes).  A bad frame is
    reported as :class:`BadFrame` and resynchronised by dropping only its STX and hunting
    again from the next byte, so a real frame that started inside the garbage is still found.

    One rule goes beyond the document (its §3 *refinements*): ACK and NAK bytes inside the
    **wreckage** of a bad frame are not recognised (only STX is hunted for there).  The bytes
    after a bad frame's STX are mostly the rest of that frame; its bytes that equal ACK or NAK
    (a TYPE, a LEN like ``01 06``, an LRC...) would otherwise be read as control sequences:
    an ``06 xx`` could acknowledge the receiver's own frame in flight although the peer never
    got it (silent loss), stray NAKs burn retransmissions, and an LRC of 0x06 would take the
    STX of the prompt retransmission as its SEQ and lose that too.  Where the wreckage ends:

    - a frame rejected for its LRC alone had its ETX where LEN put it, so its end is known: the
      wreckage is its own bytes.  An ``ACK SEQ`` or ``NAK`` right behind it counts, and a frame
      the resync starts inside it may not run past that end (it is rejected when its LEN says
      it would), so it cannot swallow the control or the resend that follows;
    - after any other bad frame (LEN not BCD or too large, no ETX, inter-byte timeout) nothing
      tells where it ends: the wreckage lasts until a good frame arrives or the line pauses for
      ``inter_byte_timeout``, and an ACK or NAK in it is missed (the sender's ACK timer resends).

    Bad frames that start inside wreckage are reported with ``in_wreckage=True``.

    Args:
        inter_byte_timeout: a started frame with no new byte for this long is bad (§3 rule 5).
    """

    def __init__(self, inter_byte_timeout: float = INTER_BYTE_TIMEOUT_S) -> None:
        self._timeout = inter_byte_timeout
        # The frame (from its STX) or ACK being received; empty while hunting.
        self._unit = bytearray()
        # DATA length once LEN has been read and accepted.
        self._data_len: int | None = None
        self._last_byte_at = 0.0
        # Stream offsets (bytes fed before): of the next byte to arrive, and of _unit[0].
        self._received = 0
        self._unit_start = 0
        # ACK and NAK count only at offsets from here on (a known end of wreckage); None: not
        # until a good frame arrives or the line pauses (the end of the wreckage is unknown).
        self._controls_from: int | None = 0

    @property
    def buffered(self) -> int:
        """Bytes held for the unfinished frame or ACK (never more than ``MAX_FRAME_LEN``)."""
        return len(self._unit)

    def next_deadline(self) -> float | None:
        """When the unfinished frame or ACK times out, or None if nothing is pending."""
        return self._last_byte_at + self._timeout if self._unit else None

    def feed(self, data: bytes, now: float) -> list[Decoded]:
        """Process bytes that arrived at time ``now``; return what they completed, in order.

        An overdue inter-byte timeout is applied first, so a caller that forgot to call
        :meth:`check_timeout` still gets the right result.  Never raises on line data.
        """
        out = self.check_timeout(now)
        if data:
            if now - self._last_byte_at >= self._timeout:
                # A pause ends whatever the bad frame was: the next bytes are a new sending.
                self._controls_from = self._received
            self._last_byte_at = now
            # Scanning in slices of MAX_FRAME_LEN bounds the copy a resync makes (see _reject).
            for start in range(0, len(data), MAX_FRAME_LEN):
                piece = bytes(data[start : start + MAX_FRAME_LEN])
                self._scan(piece, self._received, out)
                self._received += len(piece)
        return out

    def check_timeout(self, now: float) -> list[Decoded]:
        """Apply the inter-byte timeout (§3 rule 5): a stalled frame becomes :class:`BadFrame`."""
        out: list[Decoded] = []
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            # Every byte still buffered arrived before the deadline, so whatever the resync
            # leaves half-received is just as stale: reject until nothing is pending.
            while self._unit:
                if self._unit[0] == ControlByte.ACK:
                    self._unit.clear()
                    out.append(Discarded(1))
                else:
                    rest_at = self._unit_start + 1
                    self._scan(self._reject("inter-byte timeout", out), rest_at, out)
        return out

    def _scan(self, view: bytes, base: int, out: list[Decoded]) -> None:
        # view[k] is the byte at stream offset base + k: a view is always a contiguous stretch.
        i = 0
        while i < len(view):
            if not self._unit:
                i = self._hunt(view, i, base, out)
            elif self._unit[0] == ControlByte.ACK:
                i = self._ack_seq(view, i, out)
            else:
                rest_at = self._unit_start + 1
                rest, i = self._frame_bytes(view, i, out)
                if rest is not None:
                    view, i, base = rest + view[i:], 0, rest_at

    def _hunt(self, view: bytes, i: int, base: int, out: list[Decoded]) -> int:
        # Inside wreckage (view[i:wreck_end]) only STX is hunted for; ACK and NAK count after it.
        wreck_end = len(view) if self._controls_from is None else min(len(view), self._controls_from - base)
        if i < wreck_end:
            start = view.find(ControlByte.STX, i, wreck_end)
            stop = wreck_end if start < 0 else start
        else:
            match = _HUNT_RE.search(view, i)
            start = match.start() if match else -1
            stop = len(view) if match is None else start
        if stop > i:
            out.append(Discarded(stop - i))
        if start < 0:
            return stop
        if view[start] == ControlByte.NAK:
            out.append(NakControl())
        else:
            self._unit.append(view[start])
            self._unit_start = base + start
        return start + 1

    def _ack_seq(self, view: bytes, i: int, out: list[Decoded]) -> int:
        seq = view[i]
        self._unit.clear()
        # §2: SEQ 0 is never used, so "ACK 0" cannot be an acknowledgement.
        out.append(AckControl(seq) if seq else Discarded(2))
        return i + 1

    def _frame_bytes(self, view: bytes, i: int, out: list[Decoded]) -> tuple[bytes | None, int]:
        """Take bytes of the current frame; return the bytes to re-hunt if it was rejected."""
        i = self._fill(view, i, self._frame_size())
        if len(self._unit) < self._frame_size():
            return None, i
        reason = self._accept_len() if self._data_len is None else self._accept_frame(out)
        return (self._reject(reason, out) if reason else None), i

    def _frame_size(self) -> int:
        # Until LEN has been accepted, only STX and LEN are wanted.
        return _HEADER_LEN if self._data_len is None else FRAME_OVERHEAD + self._data_len

    def _fill(self, view: bytes, i: int, size: int) -> int:
        chunk = view[i : i + size - len(self._unit)]
        self._unit += chunk
        return i + len(chunk)

    def _accept_len(self) -> str | None:
        try:
            n = decode_bcd_length(bytes(self._unit[1:_HEADER_LEN]))
        except FramingError:
            return "LEN is not BCD"
        if n > MAX_DATA_LEN:
            return f"LEN {n} > MAX_DATA_LEN"
        if n < MIN_DATA_LEN:
            # §3 rule 3 would reject it after DATA anyway; rejecting now resyncs sooner.
            return f"LEN {n} leaves no room for SEQ and TYPE"
        known_end = self._controls_from
        if self._in_wreckage() and known_end is not None and self._unit_start + FRAME_OVERHEAD + n > known_end:
            # Started inside a bad frame whose end is known: it cannot run past that end, and
            # waiting for it would swallow the ACK, NAK or resend that follows.
            return "runs past the end of a damaged frame"
        self._data_len = n
        return None

    def _accept_frame(self, out: list[Decoded]) -> str | None:
        # The cheap ETX test first: it is what fails when a resync lands on a stray STX.
        if self._unit[-2] != ControlByte.ETX:
            return "no ETX after DATA"
        if not lrc_ok(bytes(self._unit[1:-1]), self._unit[-1]):
            return _BAD_LRC
        # SEQ 0 is a link-control frame (§3.1 session start): delivered; the session decides.
        out.append(DataFrame(bytes(self._unit[_HEADER_LEN:-2])))
        self._controls_from = 0
        self._reset()
        return None

    def _in_wreckage(self) -> bool:
        """True when the frame being received started inside an earlier bad frame's bytes."""
        return self._controls_from is None or self._unit_start < self._controls_from

    def _reject(self, reason: str, out: list[Decoded]) -> bytes:
        # §3 rule 4: drop only the STX and hunt again from the next byte.  The caller scans
        # the returned bytes (at stream offset _unit_start + 1) before the rest of its input.
        in_wreckage = self._in_wreckage()
        out.append(BadFrame(reason, in_wreckage=in_wreckage))
        if not in_wreckage:
            # A new wreckage. Only a frame whose ETX sat where LEN put it has a known end.
            known_end = reason == _BAD_LRC
            self._controls_from = self._unit_start + len(self._unit) if known_end else None
        rest = bytes(self._unit[1:])
        self._reset()
        return rest

    def _reset(self) -> None:
        self._unit.clear()
        self._data_len = None
