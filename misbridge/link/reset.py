"""Session start (§3.1): the LINK_RESET frame, its reply, and the random nonce they share.

::

    host  LINK_RESET        02 00 14 | 00 00 | 9F 44 00 08 <8 hex> | 03 LRC
    pad   LINK_RESET_REPLY  02 00 14 | 00 80 | 9F 44 00 08 <same>  | 03 LRC
                                       SEQ TYPE  SESSION_NONCE

Both are ordinary frames (STX, BCD LEN, ETX, LRC) with SEQ 0, which data frames never use: a
receiver tells them from data at the first DATA byte, they are never acknowledged with
``ACK SEQ`` (the reply is the acknowledgement) and never counted as duplicates. A v1 receiver
that predates them rejects SEQ 0 as a bad frame and NAKs it, which is how the host learns it
talks to such a pad.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from misbridge.errors import MessageError
from misbridge.link.codes import LinkControl, Tag
from misbridge.link.constants import SEQ_SESSION, SESSION_NONCE_LEN
from misbridge.link.frames import encode_frame
from misbridge.link.tlv import decode_tlvs, encode_tlvs

__all__ = ["LinkReset", "encode_link_reset", "parse_link_reset"]

_NONCE_RE: Final = re.compile(rb"[0-9A-F]{%d}" % (2 * SESSION_NONCE_LEN))


@dataclass(frozen=True)
class LinkReset:
    """A decoded link-control frame: LINK_RESET (``reply`` False) or LINK_RESET_REPLY."""

    nonce: bytes
    reply: bool


def encode_link_reset(nonce: bytes, *, reply: bool = False) -> bytes:
    """The whole frame of LINK_RESET (or, with ``reply``, LINK_RESET_REPLY) carrying ``nonce``.

    Raises:
        ValueError: ``nonce`` is not ``SESSION_NONCE_LEN`` bytes.
    """
    if len(nonce) != SESSION_NONCE_LEN:
        raise ValueError(f"a session nonce is {SESSION_NONCE_LEN} bytes, got {len(nonce)}")
    kind = LinkControl.LINK_RESET_REPLY if reply else LinkControl.LINK_RESET
    tlv = encode_tlvs([(Tag.SESSION_NONCE.value, nonce.hex().upper().encode("ascii"))])
    return encode_frame(bytes([SEQ_SESSION, kind]) + tlv)


def parse_link_reset(data: bytes) -> LinkReset | None:
    """The LINK_RESET or LINK_RESET_REPLY in a good frame's DATA (``SEQ 0 | TYPE | TLV...``).

    None when DATA is not one: SEQ is not 0, the TYPE is another, the TLVs are broken, or
    SESSION_NONCE is missing or not 8 uppercase hex characters. Other tags are skipped (§4).
    """
    if len(data) < 2 or data[0] != SEQ_SESSION or data[1] not in set(LinkControl):
        return None
    try:
        tlvs = decode_tlvs(data[2:])
    except MessageError:
        return None
    raw = tlvs.get(Tag.SESSION_NONCE)
    if raw is None or not _NONCE_RE.fullmatch(raw):
        return None
    return LinkReset(bytes.fromhex(raw.decode("ascii")), reply=data[1] == LinkControl.LINK_RESET_REPLY)
