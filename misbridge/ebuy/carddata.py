"""Card data: the fields and card numbers a POS must never send, found at any depth.

misbridge reads the card and the PIN on the PIN pad; nothing the POS sends may hold them
(docs/pos-api.md, "Input limits and card data"). This module finds them in three places:

* field names (:data:`CARD_DATA_FIELDS`), compared without case, ``_``, ``-``, ``.`` or
  spaces, so ``cardNo``, ``CARD_NO`` and ``card-no`` are one name;
* card numbers in text (:func:`card_number_spans`): a run of 13 to 19 digits, alone or in
  groups joined by single spaces or dashes (``4111 1111 1111 1111``), that passes the Luhn
  check and is not a ``yyyyMMddHHmmss`` date-time;
* the same numbers written as JSON numbers.

:func:`refuse_card_data` refuses a request holding any of them, naming the path, never the
value; :func:`storable` makes the copy of a request or response that the journal may keep.
It is pure code: the Luhn check and the masked form live here so that the e-Buy layer, the
journal and the log scrubber (through :mod:`misbridge.ebuy.pan`) share one definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from misbridge.errors import RequestError, ReturnCode

#: Shortest and longest card number (ISO/IEC 7812 PANs are 13 to 19 digits long).
PAN_LENGTHS: Final = range(13, 20)
#: Deepest nesting of objects and arrays accepted, in JSON text (:mod:`misbridge.ebuy.jsonio`)
#: and in a request body. The book's deepest request, a goods line in ``goodsDetail`` in the
#: body, has 3 levels.
MAX_DEPTH: Final = 32
#: Characters of an untrusted text shown in an error message.
SHOWN_CHARS: Final = 64

#: Field names that carry card or PIN data, normalised (:func:`normalised_name`). ``valid``
#: (the older book's expiry in ``cardInfo``) is not here: the word is too common to refuse
#: alone, and ``cardInfo`` itself is refused.
CARD_DATA_FIELDS: Final = frozenset(
    {
        "cardinfo", "cardno", "cardnumber", "pan", "primaryaccountnumber", "encpan",
        "cvv", "cvv2", "cvc", "cvc2", "cvn", "cvn2", "cardsecuritycode", "securitycode",
        "password", "passwd", "pin", "pincode", "cardpin", "pinblock", "encpinblock",
        "track", "track1", "track2", "track3", "trackdata", "track1data", "track2data", "track3data",
        "enctrack1", "enctrack2", "enctrack3", "icdata", "encicdata", "cardsn",
        "encpanhex", "enctrack1hex", "enctrack2hex", "enctrack3hex", "encicdatahex", "pinblockhex",
        "expiry", "expirydate", "expdate", "expirationdate", "cardexpiry", "validdate", "validthru",
    }
)  # fmt: skip
#: Top-level request fields that are identifiers, not text: never read as card numbers.
REQUEST_IDENTIFIERS: Final = frozenset({"traceNo", "originalTraceNo"})
#: Top-level fields that hold a payment code scanned from the customer's phone or coupon (book
#: §10.3, §10.9): not read as card numbers on intake, since wallet codes are 18 digits and one in
#: ten passes the Luhn check. The code is a one-time token: logs redact it
#: (:data:`misbridge.ebuy.redaction.SENSITIVE_FIELDS`) and the journal's copy masks any card
#: number in it (:func:`storable` does not exempt it).
PAYMENT_CODE_FIELDS: Final = frozenset({"qrcode"})
# A batchUpload record (book §11.2): its traceNo names a transaction, like the top-level one.
_BATCH_RECORD_PATH = re.compile(r"transRecord\[\d+\]")
#: Top-level fields a stored request or response keeps as they are (a replayed answer must
#: carry the backend's orderNo exactly).
STORED_IDENTIFIERS: Final = REQUEST_IDENTIFIERS | {"orderNo"}
#: The field that may hold a GTIN (EAN-8, UPC-A, EAN-13, GTIN-14) barcode.
BARCODE_FIELD: Final = "goodsId"
GTIN_LENGTHS: Final = (8, 12, 13, 14)
#: What a stored copy holds instead of an object or array nested deeper than MAX_DEPTH.
REMOVED: Final = "[removed]"

_NAME_NOISE = re.compile(r"[\s_.\-]+")
# Digit groups joined by single spaces or dashes; possessive, so a long run never backtracks.
_DIGIT_GROUPS = re.compile(r"(?<!\d)\d++(?:[ -]\d++)*+")
_GROUP = re.compile(r"\d+")
# 13 digits with at most one separator between each: nothing shorter can hold a card number.
_THIRTEEN_DIGITS = re.compile(r"\d(?:[ -]?\d){12}")
_TIMESTAMP_YEARS = range(1990, 2100)


def normalised_name(name: str) -> str:
    """``name`` folded for comparison with :data:`CARD_DATA_FIELDS` (``Card_No`` -> ``cardno``)."""
    return _NAME_NOISE.sub("", name.casefold())


def is_card_data_field(name: str) -> bool:
    """True when a field called ``name`` would carry card or PIN data."""
    return normalised_name(name) in CARD_DATA_FIELDS


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check (what card numbers do)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def gtin_valid(digits: str) -> bool:
    """True when ``digits`` is an EAN-8, UPC-A, EAN-13 or GTIN-14 with a correct check digit."""
    if len(digits) not in GTIN_LENGTHS or not (digits.isascii() and digits.isdigit()):
        return False
    body, check = digits[:-1], int(digits[-1])
    weighted = sum(int(char) * (3 if index % 2 == 0 else 1) for index, char in enumerate(reversed(body)))
    return (10 - weighted % 10) % 10 == check


def _is_timestamp(digits: str) -> bool:
    # A 14-digit yyyyMMddHHmmss (transDate, the book's traceNo prefix) is a date, not a card:
    # no 14-digit card number starts with 19 or 20 (they are Diners Club, 30/36/38).
    if len(digits) != 14 or int(digits[:4]) not in _TIMESTAMP_YEARS:
        return False
    try:
        datetime.strptime(digits, "%Y%m%d%H%M%S")  # a shape check: no time zone involved
    except ValueError:
        return False
    return True


def looks_like_card_number(digits: str) -> bool:
    """True when a string of 13-19 digits passes the Luhn check and is not a date-time."""
    return len(digits) in PAN_LENGTHS and luhn_valid(digits) and not _is_timestamp(digits)


def may_hold_card_number(text: str) -> bool:
    """Cheap test: False means :func:`card_number_spans` finds nothing in ``text``."""
    return _THIRTEEN_DIGITS.search(text) is not None


def card_number_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every card number in ``text``, separators inside included.

    Digit groups joined by single spaces or dashes are read together; any consecutive run
    of whole groups holding 13-19 digits counts, so ``qty 2 4111 1111 1111 1111`` still
    yields the card number. The longest match from each group wins.
    """
    if not may_hold_card_number(text):
        return []
    spans = []
    for run in _DIGIT_GROUPS.finditer(text):
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run.group())]
        spans += _card_numbers_in_groups(text, groups)
    return spans


def _card_numbers_in_groups(text: str, groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    found = []
    first = 0
    while first < len(groups):
        last = _longest_card_number_from(text, groups, first)
        if last is None:
            first += 1
        else:
            found.append((groups[first][0], groups[last][1]))
            first = last + 1
    return found


def _longest_card_number_from(text: str, groups: list[tuple[int, int]], first: int) -> int | None:
    best = None
    digits = ""
    for last in range(first, len(groups)):
        digits += text[groups[last][0] : groups[last][1]]
        if len(digits) > PAN_LENGTHS[-1]:
            break
        if looks_like_card_number(digits):
            best = last
    return best


def holds_card_number(text: str) -> bool:
    """True when ``text`` contains a card number (see :func:`card_number_spans`)."""
    return bool(card_number_spans(text))


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits of a card number, the rest ``*``."""
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def _mask_digits(number: str) -> str:
    """``number`` with every digit but the first 6 and the last 4 as ``*``, separators kept."""
    total = sum(char.isdigit() for char in number)
    out, seen = [], 0
    for char in number:
        if char.isdigit():
            seen += 1
            out.append(char if seen <= 6 or seen > total - 4 else "*")
        else:
            out.append(char)
    return "".join(out)


def mask_card_numbers(text: str) -> str:
    """``text`` with every card number masked to its first 6 and last 4 digits."""
    spans = card_number_spans(text)
    if not spans:
        return text
    parts, done = [], 0
    for start, end in spans:
        parts += [text[done:start], _mask_digits(text[start:end])]
        done = end
    parts.append(text[done:])
    return "".join(parts)


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """A quoted, printable, shortened form of untrusted ``text`` for a message or log line.

    Non-printable characters (control characters, lone surrogates) appear as escapes, card
    numbers masked, and more than ``limit`` characters are cut with the full length given:
    ``'aaaa…' (30000 characters)``.
    """
    # Mask before cutting: a card number across the cut would leave a digit run too short to be
    # recognised, shown in clear.
    masked = mask_card_numbers(text)
    cut = masked if len(masked) <= limit else masked[:limit]
    printable = repr(cut.encode("utf-8", "backslashreplace").decode("utf-8"))
    return printable if len(text) <= limit else f"{printable[:-1]}…{printable[-1]} ({len(text)} characters)"


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    path: str
    value: Any
    depth: int


def _child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    name = key if len(key) <= SHOWN_CHARS and key.isprintable() and key else shown(key)
    return f"{path}.{name}" if path else name


def _children(node: _Node) -> Iterator[tuple[str | int, Any]]:
    if isinstance(node.value, Mapping):
        yield from node.value.items()
    elif isinstance(node.value, list | tuple):
        yield from enumerate(node.value)


def _number_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    return str(value)


def _refusal(path: str, why: str) -> RequestError:
    return RequestError(
        f"'{path}' {why}: card and PIN data come only from the PIN pad, never from the POS",
        return_code=ReturnCode.CARD_DATA_REFUSED,
        field=path,
    )


def _is_exempt(parent: _Node, key: str | int, value: Any, identifiers: frozenset[str]) -> bool:
    """True when ``value`` is an identifier or a barcode, not text that could hold a card."""
    if parent.depth == 1 and key in identifiers:
        return True
    return key == BARCODE_FIELD and isinstance(value, str) and gtin_valid(value)


#: Longest field name the decision cache keeps (a POS's own names are short; a hostile 60 KB key
#: would otherwise stay in memory, 1 024 of them for the life of the process).
_CACHED_KEY_CHARS = 64


def _is_posted_identifier(parent: _Node, key: str | int, value: Any) -> bool:
    """True for text the POS must be able to send though it may pass Luhn: a payment code at the
    top of the body, or the traceNo of a batchUpload record (read on intake only)."""
    if not isinstance(value, str):
        return False
    if parent.depth == 1:
        return key in PAYMENT_CODE_FIELDS
    return key == "traceNo" and _BATCH_RECORD_PATH.fullmatch(parent.path) is not None


def _key_problem(key: str) -> str | None:
    return _short_key_problem(key) if len(key) <= _CACHED_KEY_CHARS else _decide_key(key)


@lru_cache(maxsize=1024)
def _short_key_problem(key: str) -> str | None:
    # Requests repeat the same few keys on every goods line: decide each name once.
    return _decide_key(key)


def _decide_key(key: str) -> str | None:
    if is_card_data_field(key):
        return "is a card-data field"
    if holds_card_number(key):
        return "has a field name holding what looks like a card number"
    return None


def _check_key(node: _Node, key: str | int) -> None:
    if isinstance(key, str) and (problem := _key_problem(key)) is not None:
        path = _child_path(node.path, key) if problem.startswith("is") else node.path or "body"
        raise _refusal(path, problem)


def _holds_card_number(value: Any) -> bool:
    text = value if isinstance(value, str) else _number_text(value)
    return text is not None and holds_card_number(text)


_CARD_NUMBER_PROBLEM = "holds what looks like a card number (a Luhn-valid run of 13-19 digits)"


def refuse_card_data(body: Mapping[str, Any], *, identifiers: frozenset[str] = REQUEST_IDENTIFIERS) -> None:
    """Refuse ``body`` if it holds card data anywhere, or nests deeper than :data:`MAX_DEPTH`.

    Walks the body without recursion, in document order, and reports the first problem. The
    top-level ``identifiers``, a top-level payment code (:data:`PAYMENT_CODE_FIELDS`), a batch
    record's ``traceNo`` and a ``goodsId`` that is a valid GTIN are not read as text.

    Raises:
        RequestError: MB16 naming the path of a card-data field, a card number or a field
            name holding one (never the value); MB11 when nested too deep.
    """
    stack = [_Node("", body, 1)]
    while stack:
        node = stack.pop()
        if node.depth > MAX_DEPTH:
            raise RequestError(
                f"'{node.path}' is nested deeper than {MAX_DEPTH} levels",
                return_code=ReturnCode.BAD_FIELD,
                field=node.path,
            )
        pending = []
        for key, value in _children(node):
            _check_key(node, key)
            if isinstance(value, Mapping | list | tuple):
                pending.append(_Node(_child_path(node.path, key), value, node.depth + 1))
            elif (
                not _is_exempt(node, key, value, identifiers)
                and not _is_posted_identifier(node, key, value)
                and _holds_card_number(value)
            ):
                raise _refusal(_child_path(node.path, key), _CARD_NUMBER_PROBLEM)
        stack += reversed(pending)


def refuse_card_data_in_text(name: str, text: str) -> None:
    """Refuse a single named text (an envelope field, an action) that is or holds card data.

    Raises:
        RequestError: MB16 naming ``name``, never the text.
    """
    if is_card_data_field(name):
        raise _refusal(name, "is a card-data field")
    if holds_card_number(text):
        raise _refusal(name, _CARD_NUMBER_PROBLEM)


# --- storage -------------------------------------------------------------------------------


def storable(value: Any, *, identifiers: frozenset[str] = STORED_IDENTIFIERS) -> Any:
    """A copy of a request or response that holds no card data, for the journal.

    Card-data fields are dropped at any depth, card numbers in text (field names included)
    and in numbers are masked to first 6 / last 4, an object or list nested deeper than
    :data:`MAX_DEPTH` becomes :data:`REMOVED`. The top-level ``identifiers`` and valid GTIN
    ``goodsId`` values are kept as they are. A body without card data comes back equal.
    """
    return _storable(_Node("", value, 1), identifiers)


def _storable(node: _Node, identifiers: frozenset[str]) -> Any:
    value = node.value
    if isinstance(value, Mapping | list | tuple) and node.depth > MAX_DEPTH:
        return REMOVED
    if isinstance(value, Mapping):
        return {
            mask_card_numbers(str(key)): _storable_child(node, key, item, identifiers)
            for key, item in value.items()
            if not (isinstance(key, str) and is_card_data_field(key))
        }
    if isinstance(value, list | tuple):
        return [_storable_child(node, index, item, identifiers) for index, item in enumerate(value)]
    if isinstance(value, str):
        return mask_card_numbers(value)
    number = _number_text(value)
    if number is not None and holds_card_number(number):
        return mask_card_numbers(number)
    return value


def _storable_child(parent: _Node, key: str | int, value: Any, identifiers: frozenset[str]) -> Any:
    if _is_exempt(parent, key, value, identifiers):
        return value
    return _storable(_Node("", value, parent.depth + 1), identifiers)
