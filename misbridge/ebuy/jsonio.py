"""JSON that keeps amounts exact.

Numbers with a fraction are read as :class:`decimal.Decimal` and written back with the digits
they came with (``1000.00`` stays ``1000.00``, ``40.8`` stays ``40.8``), so no amount ever
passes through a binary float. NaN and Infinity are refused: the book's Price type is finite.
"""

from __future__ import annotations

from typing import Any

import simplejson

JSONDecodeError = simplejson.JSONDecodeError


def loads(text: str | bytes) -> Any:
    """Parse JSON text; fractional numbers become Decimal.

    Raises:
        JSONDecodeError: the text is not JSON (NaN/Infinity included).
    """
    return simplejson.loads(text, use_decimal=True, allow_nan=False)


def dumps(value: Any) -> str:
    """Serialise to compact JSON; Decimal values are written as JSON numbers, digits kept."""
    return simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"))



def pretty(value: Any) -> str:
    """Indented JSON for people (demo, support tools); numbers keep their digits."""
    return simplejson.dumps(value, use_decimal=True, ensure_ascii=False, indent=2)
