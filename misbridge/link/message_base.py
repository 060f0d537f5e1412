"""What every mispos-v1 message shares: self-validation against its wire layout.

A message class is a frozen dataclass deriving from :class:`MessageBase`; its wire layout is a
:class:`MessageSpec` (tag, kind and limits of each attribute) registered in
:data:`SPECS_BY_CLASS` by the table in :mod:`misbridge.link.messages`.  Building a message
checks every field against that layout, so an invalid message can neither be sent nor decoded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from misbridge.errors import MessageError
from misbridge.link.codes import MessageType, Tag
from misbridge.link.fields import FieldSpec, Kind, check_value

__all__ = [
    "SPECS_BY_CLASS",
    "MessageBase",
    "MessageSpec",
    "digits_field",
    "hex_field",
    "make_spec",
    "number_field",
    "printable_field",
    "text_field",
]


@dataclass(frozen=True)
class MessageBase:
    """Base of every message (a frozen dataclass without fields): validation at construction."""

    TYPE: ClassVar[MessageType]

    def __post_init__(self) -> None:
        spec = SPECS_BY_CLASS[type(self)]
        for fs in spec.fields:
            problem = check_value(fs, getattr(self, fs.attr))
            if problem is not None:
                raise MessageError(f"{spec.cls.__name__}.{fs.attr} ({fs.tag.name}) {problem}")
        self._check()

    def _check(self) -> None:
        """Rules across fields; overridden where the document has some."""


@dataclass(frozen=True)
class MessageSpec:
    """The wire layout of one message class."""

    cls: type[MessageBase]
    fields: tuple[FieldSpec, ...]
    defaults: Mapping[str, object]

    @property
    def type(self) -> MessageType:
        """The TYPE byte of the message."""
        return self.cls.TYPE


#: Every message class and its layout; filled by :func:`make_spec`.
SPECS_BY_CLASS: dict[type[MessageBase], MessageSpec] = {}


def make_spec(cls: type[MessageBase], *fields: FieldSpec) -> MessageSpec:
    """The layout of ``cls`` (a dataclass), registered for its validation."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    spec = MessageSpec(cls, fields, defaults)
    SPECS_BY_CLASS[cls] = spec
    return spec


def number_field(attr: str, tag: Tag, low: int, high: int, *, optional: bool = False) -> FieldSpec:
    """Digits on the wire, an ``int`` in ``low..high`` in Python."""
    return FieldSpec(attr, tag, Kind.NUMBER, optional=optional, low=low, high=high)


def text_field(attr: str, tag: Tag, *, optional: bool = False, max_len: int | None = None, count: int = 0) -> FieldSpec:
    """UTF-8 text (a list of texts with ``count``)."""
    return FieldSpec(attr, tag, Kind.TEXT, optional=optional, max_len=max_len, count=count)


def digits_field(attr: str, tag: Tag, size: int | None, *, optional: bool = False) -> FieldSpec:
    """ASCII digits held as ``str`` (leading zeros matter), ``size`` of them if given."""
    return FieldSpec(attr, tag, Kind.DIGITS, optional=optional, size=size)


def hex_field(attr: str, tag: Tag, size: int | None = None, *, optional: bool = False) -> FieldSpec:
    """Uppercase hex of whole bytes, ``size`` characters if given."""
    return FieldSpec(attr, tag, Kind.HEX, optional=optional, size=size)


def printable_field(attr: str, tag: Tag, max_len: int) -> FieldSpec:
    """Printable ASCII, 1..``max_len`` characters."""
    return FieldSpec(attr, tag, Kind.PRINTABLE, max_len=max_len)
