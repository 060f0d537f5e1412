"""Answers that fit the book's framing (issue 10, item 1).

INTERFACE STUB: the real fitting replaces the body below.
"""

from __future__ import annotations

from misbridge.ebuy.envelope import Envelope, encode_envelope, frame_message


def frame_reply(reply: Envelope) -> bytes:
    """The framed socket answer for ``reply``, always within the 2-byte length prefix."""
    return frame_message(encode_envelope(reply))
