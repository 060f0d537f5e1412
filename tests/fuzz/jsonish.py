"""Structure-aware inputs: fuzz bytes read as choices that write JSON text.

Byte mutations of JSON text mostly break it at the first byte, and the parser (C) and the model
checks (Rust) give a coverage-guided fuzzer no feedback to climb by.  So the request and envelope
targets can also read their input as a program: every byte picks the next choice (a field, a value
kind, a size), and the result is JSON *text* written here, with what a careful encoder never
writes: duplicate keys, lone surrogate escapes, numbers of thousands of digits or absurd exponents,
nesting thousands deep, card-data field names in any case, the book's examples edited in place.
The text still goes through :func:`misbridge.ebuy.jsonio.loads` like any other.

Writing never fails, whatever the bytes; running out of bytes reads as zeros.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any, Final, TypeAlias

from misbridge.ebuy import jsonio
from misbridge.ebuy.carddata import CARD_DATA_FIELDS
from misbridge.ebuy.examples import card_redemption_request

__all__ = ["Choices", "Node", "book_body", "render", "write_body", "write_string", "write_value"]

# A tree of JSON text: an object keeps its (key, value) pairs as a list, so keys may repeat.
Node: TypeAlias = "list[tuple[str, Node]] | tuple[Node, ...] | str"

_MAX_DEPTH: Final = 6
_MAX_ITEMS: Final = 5
_KEYS: Final = (
    "traceNo", "originalTraceNo", "totalAmount", "undiscountAmount", "goodsDetail", "memberDetail", "acquirer",
    "goodsCategory", "goodsId", "goodsName", "price", "quantity", "rebateCode",
    "memberId", "memberName", "grade", "status", "balance", "pointBalance",
    "cardNo", "pan", "cvv", "Password", "TRACK2", "PinBlock", "cardinfo", "", "memo", *sorted(CARD_DATA_FIELDS),
)  # fmt: skip
_STRINGS: Final = (
    "", "99000009100010101732123", "P00001", "牙膏", "000", "01", "TONY", "1", "x" * 41, "trace no",
    "\udfff", "a\ud800b", "\ud83d\ude00", "\x00", "6225620000008888", "4111 1111 1111 1111", "6901234567892",
)  # fmt: skip
_NUMBERS: Final = (
    "0", "-0", "1", "-1", "2", "8", "24.8", "40.8", "1000.00", "0.001", "1.005", "0.10", "-0.0", "1e2", "1E+2",
    "9999999999.99", "10000000000", "12345678901234567890", "1e99999999999999999999", "1E-99999999999999999999",
    "1e-7", "0e0", "30000",
)  # fmt: skip
_LITERALS: Final = ("true", "false", "null")
_BOOK_PATHS: Final = (
    ("traceNo",), ("totalAmount",), ("undiscountAmount",), ("goodsDetail",), ("memberDetail",),
    ("goodsDetail", 0), ("goodsDetail", 0, "price"), ("goodsDetail", 0, "quantity"), ("goodsDetail", 1, "goodsName"),
    ("goodsDetail", 1, "goodsId"), ("memberDetail", "balance"), ("memberDetail", "pointBalance"),
)  # fmt: skip


#: Characters one input may spend on long strings, long numbers and deep nesting together: a
#: little more than the book's 65 535-byte message, so one of each limit can be crossed while the
#: cost of an execution stays bounded (the fuzzer would otherwise favour ever larger inputs).
SIZE_BUDGET: Final = 70_000


class Choices:
    """Reads the fuzz bytes one choice at a time; zeros once they run out."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._budget = SIZE_BUDGET

    def byte(self) -> int:
        """The next byte, 0 past the end."""
        value = self._data[self._pos] if self._pos < len(self._data) else 0
        self._pos += 1
        return value

    def below(self, n: int) -> int:
        """A number in ``0..n-1`` (``n`` at most 65 536)."""
        return ((self.byte() << 8 | self.byte()) if n > 256 else self.byte()) % n

    def size(self, limit: int, cost: int = 1) -> int:
        """A size in ``1..limit`` of things costing ``cost`` characters each, within the budget left."""
        wanted = 1 + self.below(limit)
        granted = max(1, min(wanted, self._budget // cost))
        self._budget -= granted * cost
        return granted

    def pick(self, options: Sequence[str]) -> str:
        """One of ``options``."""
        return options[self.below(len(options))]

    def rest(self) -> bytes:
        """The bytes not read yet (and no more choices after them)."""
        rest = self._data[self._pos :]
        self._pos = len(self._data)
        return rest


def _quote(text: str) -> str:
    # ensure_ascii writes a lone surrogate as its \\uXXXX escape, which is how a POS would send it.
    return json.dumps(text, ensure_ascii=True)


def write_string(choices: Choices) -> str:
    """A JSON string literal: a telling one, a long one, or text made of the next bytes."""
    kind = choices.below(4)
    if kind == 0:
        return _quote(choices.pick(_STRINGS))
    if kind == 1:
        char = choices.pick(("A", "9", "牙", "\udfff"))
        return _quote(char * choices.size(65_536, cost=len(_quote(char)) - 2))
    size = choices.below(32)
    raw = bytes(choices.byte() for _ in range(size))
    return _quote(raw.decode("utf-8", errors="surrogateescape"))


def _number(choices: Choices) -> str:
    kind = choices.below(4)
    if kind < 2:
        return choices.pick(_NUMBERS)
    digits = "1" * choices.size(6_000)
    return digits if kind == 2 else f"0.{digits}"


def _nest(choices: Choices) -> Node:
    depth = choices.size(2_000, cost=6)
    inner = choices.pick(_LITERALS)
    if choices.byte() & 1:
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


def write_value(choices: Choices, depth: int = 0) -> Node:
    """Any JSON value, nested at most a few levels (plus the deliberately deep ones)."""
    kind = choices.below(8) if depth < _MAX_DEPTH else 2 + choices.below(3)
    if kind <= 1:
        return [(_key(choices), write_value(choices, depth + 1)) for _ in range(choices.below(_MAX_ITEMS + 1))]
    if kind == 2:
        return write_string(choices)
    if kind == 3:
        return _number(choices)
    if kind == 4:
        return choices.pick(_LITERALS)
    if kind == 5:
        return tuple(write_value(choices, depth + 1) for _ in range(choices.below(_MAX_ITEMS + 1)))
    if kind == 6:
        return _nest(choices)
    return book_body(choices.below(2))


def _key(choices: Choices) -> str:
    return write_string(choices) if choices.below(8) == 0 else _quote(choices.pick(_KEYS))


def _tree(value: Any) -> Node:
    if isinstance(value, dict):
        return [(_quote(key), _tree(item)) for key, item in value.items()]
    if isinstance(value, list):
        return tuple(_tree(item) for item in value)
    # jsonio keeps the digits of the book's amounts (40.8, 1000.00) as they were published.
    return _quote(value) if isinstance(value, str) else jsonio.dumps(value)


@cache
def book_body(kind: int) -> Node:
    """The §10.2 example as a tree: a card redemption (0) or a card payment (1).

    Cached, and never changed in place: :func:`_edit` builds new lists and tuples.
    """
    body = card_redemption_request()
    if kind == 1:
        body["acquirer"] = "01"
    return [(_quote(key), _tree(value)) for key, value in body.items()]


def _edit(node: Node, path: tuple[str | int, ...], choices: Choices) -> Node:
    """``node`` with the value at ``path`` replaced, removed or given a duplicate key."""
    if not path:
        return write_value(choices, 1)
    step, rest = path[0], path[1:]
    if isinstance(node, tuple) and isinstance(step, int) and step < len(node):
        return (*node[:step], _edit(node[step], rest, choices), *node[step + 1 :])
    if not isinstance(node, list) or isinstance(step, int):
        return node
    out: list[tuple[str, Node]] = []
    for key, value in node:
        if key != _quote(step):
            out.append((key, value))
            continue
        operation = choices.below(4) if not rest else 0
        if operation == 1:
            continue  # removed
        if operation == 2:
            out.append((key, value))  # the same key twice: which value wins?
        out.append((key, _edit(value, rest, choices)))
    return out


def write_body(choices: Choices) -> Node:
    """A request body: the book's example edited in a few places, or anything at all."""
    kind = choices.below(4)
    if kind == 3:
        return write_value(choices)
    if kind == 2:
        # An object of the book's field names with values of any kind, nested a level or two.
        return [(_key(choices), write_value(choices, _MAX_DEPTH - 2)) for _ in range(choices.below(_MAX_ITEMS * 2))]
    body = book_body(kind)
    for _ in range(choices.below(4)):  # no edit at all for zeros: the book's own example
        body = _edit(body, _BOOK_PATHS[choices.below(len(_BOOK_PATHS))], choices)
    if choices.byte() & 1 and isinstance(body, list):
        body = [*body, (_key(choices), write_value(choices, 1))]
    return body


def render(node: Node) -> str:
    """The JSON text of a tree, compact."""
    if isinstance(node, str):
        return node
    if isinstance(node, tuple):
        return "[" + ",".join(render(item) for item in node) + "]"
    return "{" + ",".join(f"{key}:{render(value)}" for key, value in node) + "}"
