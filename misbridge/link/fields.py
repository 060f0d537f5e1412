"""Value kinds of TLV fields (§4): how a Python attribute becomes TLV bytes and back.

**text** is UTF-8; **digits** are ASCII decimal digits (held as ``int`` for numbers, as
``str`` for codes whose leading zeros matter); **hex** is ASCII uppercase hexadecimal;
**printable** is ASCII 0x20..0x7E.  A *list* field (``count`` > 0) holds a tuple of values, one
per tag from ``tag`` on (``OPTION_1``, ``OPTION_2``, ...).  Checks return what is wrong instead
of raising, and never quote the value: some fields are encrypted card or PIN data, or codes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final, TypeAlias, cast

from misbridge.errors import MessageError
from misbridge.link.codes import Tag
from misbridge.link.constants import TEXT_ENCODING

__all__ = ["MAX_AMOUNT_MINOR", "FieldSpec", "Kind", "check_value", "from_wire", "read_field", "to_wire", "wire_items"]

#: Not in the document: misbridge's bound on AMOUNT, 12 digits (just under 10 billion yuan).
MAX_AMOUNT_MINOR: Final = 999_999_999_999


class Kind(Enum):
    """§4 value kinds, as misbridge holds them in Python."""

    NUMBER = "number"  # digits on the wire, int in Python
    DIGITS = "digits"  # digits on the wire, str in Python (leading zeros matter: "00", "2512")
    TEXT = "text"  # UTF-8
    HEX = "hex"  # uppercase hex of whole bytes
    MASKED_PAN = "masked PAN"  # first 6 and last 4 digits, the rest '*'
    PRINTABLE = "printable"  # ASCII 0x20..0x7E


@dataclass(frozen=True)
class FieldSpec:
    """How one dataclass attribute travels: tag, kind and limits.

    ``optional`` fields are left out of the message when they hold the dataclass default,
    and take that default when absent.  ``size`` is the exact length of DIGITS / HEX text;
    ``max_len`` the longest TEXT / PRINTABLE (in characters); ``low``/``high`` bound a NUMBER.
    ``count`` > 0 makes a list field: a tuple of 1..count non-empty values (0..count if
    optional) on the tags ``tag``, ``tag + 1``, ... in order.
    """

    attr: str
    tag: Tag
    kind: Kind
    optional: bool = False
    size: int | None = None
    low: int = 0
    high: int = 0
    max_len: int | None = None
    count: int = 0


_DIGITS_RE: Final = re.compile(r"[0-9]*")
# More digits than any NUMBER field allows; the range check then gives the precise message.
_MAX_NUMBER_DIGITS: Final = len(str(MAX_AMOUNT_MINOR)) + 1
_HEX_RE: Final = re.compile(r"(?:[0-9A-F]{2})*")
# §4 MASKED_PAN: first 6 and last 4 digits, the rest '*'; a PAN has at most 19 digits.
_MASKED_PAN_RE: Final = re.compile(r"[0-9]{6}\*{1,9}[0-9]{4}")
_PRINTABLE_RE: Final = re.compile(r"[\x20-\x7E]*")

# A check returns what is wrong with a value, or None.
_Check: TypeAlias = Callable[["FieldSpec", object], str | None]


def check_value(fs: FieldSpec, value: object) -> str | None:
    """What is wrong with ``value`` for field ``fs`` (type, format, range), or None if valid."""
    if fs.count:
        return _check_list(fs, value)
    problem = _CHECKS[fs.kind](fs, value)
    if problem is None and fs.max_len is not None and isinstance(value, str) and len(value) > fs.max_len:
        return f"must be at most {fs.max_len} characters, got {len(value)}"
    return problem


def wire_items(fs: FieldSpec, value: object) -> list[tuple[int, bytes]]:
    """The ``(tag, VALUE bytes)`` pairs of a valid ``value``: one, or one per list item."""
    if not fs.count:
        return [(fs.tag.value, to_wire(fs, value))]
    items = cast(tuple[object, ...], value)  # checked at construction
    return [(fs.tag.value + i, to_wire(fs, item)) for i, item in enumerate(items)]


def read_field(fs: FieldSpec, tlvs: Mapping[int, bytes], context: str) -> object | None:
    """The value of ``fs`` among decoded TLVs, or None when it is absent (still unchecked).

    Raises:
        MessageError: see :func:`from_wire`; or a list with a gap (``OPTION_3`` without ``OPTION_2``).
    """
    if not fs.count:
        raw = tlvs.get(fs.tag)
        return None if raw is None else from_wire(fs, raw, context)
    tags = [fs.tag.value + i for i in range(fs.count)]
    present = [tag in tlvs for tag in tags]
    size = sum(present)
    if not all(present[:size]):
        raise MessageError(f"{context} {Tag(tags[present.index(False)]).name} missing before a later one")
    return (
        tuple(from_wire(dataclasses.replace(fs, tag=Tag(tag), count=0), tlvs[tag], context) for tag in tags[:size])
        or None
    )


def to_wire(fs: FieldSpec, value: object) -> bytes:
    """The TLV VALUE bytes of a valid ``value``."""
    # int() first: str() of an int subclass need not be its digits.
    text = str(int(value)) if isinstance(value, int) else str(value)
    return text.encode(TEXT_ENCODING if fs.kind is Kind.TEXT else "ascii")


def from_wire(fs: FieldSpec, raw: bytes, context: str) -> object:
    """Parse TLV VALUE bytes; the result still needs :func:`check_value` (ranges, formats).

    Raises:
        MessageError: not UTF-8 (text), not ASCII (other kinds), or a NUMBER that is not
            decimal digits or has too many of them.  ``context`` starts the message.
    """
    encoding = TEXT_ENCODING if fs.kind is Kind.TEXT else "ascii"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise MessageError(f"{context} {fs.tag.name} is not {encoding}") from None
    if fs.max_len is not None and len(text) > fs.max_len:
        # Checked here too so that a huge value is refused before anything else looks at it.
        raise MessageError(f"{context} {fs.tag.name} is longer than {fs.max_len} characters")
    if fs.kind is not Kind.NUMBER:
        return text
    if not text or not _DIGITS_RE.fullmatch(text):
        raise MessageError(f"{context} {fs.tag.name} is not decimal digits")
    significant = text.lstrip("0") or "0"
    if len(significant) > _MAX_NUMBER_DIGITS:
        # Also keeps int() below Python's limit on digits (ValueError past 4300).
        raise MessageError(f"{context} {fs.tag.name} has {len(significant)} digits")
    return int(significant)


def _check_number(fs: FieldSpec, value: object) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be an int, got {type(value).__name__}"
    if not fs.low <= value <= fs.high:
        return f"must be {fs.low}..{fs.high}, got {value}"
    return None


def _check_pattern(pattern: re.Pattern[str], rule: str) -> _Check:
    # Values are never quoted: some of these fields are encrypted card or PIN data.
    def check(fs: FieldSpec, value: object) -> str | None:
        if not isinstance(value, str):
            return f"must be a str, got {type(value).__name__}"
        if not value:
            # An optional field is empty when it is absent.
            return None if fs.optional else "must not be empty"
        if not pattern.fullmatch(value):
            return f"must be {rule}"
        if fs.size is not None and len(value) != fs.size:
            return f"must be {fs.size} characters, got {len(value)}"
        return None

    return check


def _check_text(fs: FieldSpec, value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a str, got {type(value).__name__}"
    try:
        value.encode(TEXT_ENCODING)
    except UnicodeEncodeError:
        return "is not encodable as UTF-8"
    return None


def _check_list(fs: FieldSpec, value: object) -> str | None:
    if not isinstance(value, tuple):
        return f"must be a tuple, got {type(value).__name__}"
    if not (0 if fs.optional else 1) <= len(value) <= fs.count:
        return f"must hold {0 if fs.optional else 1}..{fs.count} values, got {len(value)}"
    item = dataclasses.replace(fs, count=0, optional=False)
    for number, element in enumerate(value, start=1):
        problem = "must not be empty" if element == "" else check_value(item, element)
        if problem is not None:
            return f"item {number} {problem}"
    return None


_CHECKS: Final[Mapping[Kind, _Check]] = {
    Kind.NUMBER: _check_number,
    Kind.DIGITS: _check_pattern(_DIGITS_RE, "ASCII digits"),
    Kind.HEX: _check_pattern(_HEX_RE, "uppercase hex of whole bytes"),
    Kind.MASKED_PAN: _check_pattern(_MASKED_PAN_RE, "6 digits, 1-9 '*', 4 digits (never a full PAN)"),
    Kind.TEXT: _check_text,
    Kind.PRINTABLE: _check_pattern(_PRINTABLE_RE, "printable ASCII (0x20..0x7E)"),
}
