"""JSON that keeps amounts exact, and refuses documents no e-Buy message needs.

Numbers with a fraction are read as :class:`decimal.Decimal` and written back with the digits
they came with (``1000.00`` stays ``1000.00``, ``40.8`` stays ``40.8``), so no amount ever
passes through a binary float. NaN and Infinity are refused: the book's Price type is finite.

:func:`loads` also enforces limits that keep a hostile or careless document from crashing
whoever reads it (docs/pos-api.md, "Input limits and card data"):

* an object may not name the same key twice (``{"a":1,"a":2}``: which one would count?);
* arrays and objects nest at most :data:`MAX_DEPTH` levels;
* a number has at most :data:`MAX_NUMBER_DIGITS` digits before its exponent and an exponent of
  at most :data:`MAX_EXPONENT`;
* a string may not hold a lone UTF-16 surrogate (``"\\udfff"``): it cannot be written as UTF-8.

Breaking one raises :class:`JSONLimitError`, a :data:`JSONDecodeError`, so every caller that
handles "not JSON" handles these too.
"""

from __future__ import annotations

import re
from decimal import Decimal
from itertools import accumulate
from typing import Any, Final

import simplejson

from misbridge.ebuy.carddata import MAX_DEPTH, shown

__all__ = ["MAX_DEPTH", "JSONDecodeError", "JSONLimitError", "dumps", "loads", "nesting_depth", "pretty"]

JSONDecodeError = simplejson.JSONDecodeError

#: Most digits a number may have before its exponent; the largest amount has 12.
MAX_NUMBER_DIGITS: Final = 40
#: Largest exponent magnitude a number may have (``1e999`` passes, ``1e1000`` does not).
MAX_EXPONENT: Final = 999

# A JSON string, or the unterminated rest of one: the possessive quantifiers and the optional
# closing quote make the scan linear even on ``"\"\"\"...`` (no restart at every quote).
_STRING_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NUMBER_PARTS = re.compile(r"-?(?P<int>\d*)(?:\.(?P<frac>\d*))?(?:[eE](?P<exp>[-+]?\d*))?")


class JSONLimitError(JSONDecodeError):
    """The text is JSON, but breaks one of misbridge's limits (see the module docstring).

    The message names the limit; what it quotes of the document is shortened, printable and
    has card numbers masked (:func:`misbridge.ebuy.carddata.shown`).
    """

    def __init__(self, message: str) -> None:
        # simplejson's constructor appends a line/column computed from a document we do not
        # keep (it may be large and hold card data); the message alone is the error.
        super().__init__(message, "", 0)
        self.args = (message,)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.msg,)


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON ``text`` (brackets inside strings do not count).

    Runs in linear time without recursion, so it is safe on any input; on text that is not
    JSON the result is meaningless but finite.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return text.count("[") + text.count("{")  # an upper bound is enough to pass
    brackets = _NOT_BRACKET.sub("", _STRING_TOKEN.sub("", text))
    return max(accumulate(_BRACKET_STEP[char] for char in brackets), default=0)


def _check_number(token: str) -> None:
    parts = _NUMBER_PARTS.fullmatch(token)
    if parts is None:  # the scanner only hands over JSON number tokens
        raise JSONLimitError(f"number {shown(token)} is not a JSON number")
    digits = len(parts["int"]) + len(parts["frac"] or "")
    if digits > MAX_NUMBER_DIGITS:
        raise JSONLimitError(f"number of {digits} digits: at most {MAX_NUMBER_DIGITS} are accepted")
    exponent = (parts["exp"] or "0").lstrip("+-").lstrip("0") or "0"
    if len(exponent) > len(str(MAX_EXPONENT)) or int(exponent) > MAX_EXPONENT:
        raise JSONLimitError(f"number {shown(token)} has an exponent beyond ±{MAX_EXPONENT}")


def _parse_int(token: str) -> int:
    _check_number(token)
    return int(token)


def _parse_decimal(token: str) -> Decimal:
    _check_number(token)
    return Decimal(token)


def _check_string(value: object) -> None:
    if isinstance(value, str) and not value.isascii() and (lone := _LONE_SURROGATE.search(value)):
        raise JSONLimitError(
            f"a string holds the lone UTF-16 surrogate escape \\u{ord(lone.group()):04x}, which is not a character"
        )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONLimitError(f"duplicate key {shown(key)} in an object: each key may appear once")
        _check_string(key)
        _check_string(value)
        result[key] = value
    return result


def _array(items: list[Any]) -> list[Any]:
    for item in items:
        _check_string(item)
    return items


def loads(text: str | bytes) -> Any:
    """Parse JSON text within misbridge's limits; fractional numbers become Decimal.

    Raises:
        JSONLimitError: duplicate key, nesting deeper than :data:`MAX_DEPTH`, a number too
            long or too large, a lone surrogate.
        JSONDecodeError: the text is not JSON (NaN/Infinity included).
        UnicodeDecodeError: ``text`` is bytes that are not UTF-8.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    # simplejson's scanner recurses once per level (in C too): a document nested thousands
    # deep would raise RecursionError inside it, so the depth is measured before it runs.
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise JSONLimitError(f"arrays and objects nest {depth} levels deep: at most {MAX_DEPTH} are accepted")
    decoder = simplejson.JSONDecoder(
        parse_float=_parse_decimal,
        parse_int=_parse_int,
        object_pairs_hook=_object,
        array_hook=_array,
        allow_nan=False,
    )
    value = decoder.decode(text)
    _check_string(value)
    return value


def dumps(value: Any) -> str:
    """Serialise to compact JSON; Decimal values are written as JSON numbers, digits kept."""
    return simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"))


def pretty(value: Any) -> str:
    """Indented JSON for people (demo, support tools); numbers keep their digits."""
    return simplejson.dumps(value, use_decimal=True, ensure_ascii=False, indent=2)
