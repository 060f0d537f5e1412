"""The frame check byte (§2): LRC is the XOR of every byte of LEN, DATA and ETX.

Consequence used by the tests: XOR over LEN..LRC inclusive is 0 for every valid frame.
"""

from __future__ import annotations

from functools import reduce
from operator import xor

__all__ = ["compute_lrc", "lrc_ok"]


def compute_lrc(data: bytes) -> int:
    """XOR of all bytes of ``data`` (pass LEN + DATA + ETX, never the STX)."""
    return reduce(xor, data, 0)


def lrc_ok(data: bytes, lrc: int) -> bool:
    """True when ``lrc`` is the LRC of ``data`` (LEN + DATA + ETX)."""
    return compute_lrc(data) == lrc
