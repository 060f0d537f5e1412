"""The customer prompts of the whole book (§5.1 READ_CODE, §5.2 CHOOSE) and their replies.

qrcodeSale collects a QR code "thru scanning or direct input through keypad"; the backend's
activityProductList asks the customer to pick one option.  Like every message these are
frozen dataclasses checked against their wire layout in :data:`misbridge.link.messages.MESSAGE_SPECS`.

A scanned or keyed code may be a bearer payment code: ``code_text`` stays out of ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from misbridge.link.codes import CodeInput, MessageType
from misbridge.link.message_base import MessageBase

__all__ = ["Choice", "Choose", "CodeData", "ReadCode"]


@dataclass(frozen=True)
class ReadCode(MessageBase):
    """READ_CODE: scan or key in a code within ``timeout_s``; answered by :class:`CodeData` or RESULT.

    ``amount_minor`` 0 shows no amount; ``code_input`` is a :class:`CodeInput` value.
    """

    TYPE: ClassVar[MessageType] = MessageType.READ_CODE
    request_id: int
    timeout_s: int
    prompt: str = ""
    amount_minor: int = 0
    code_input: str = CodeInput.SCAN_OR_KEYPAD


@dataclass(frozen=True)
class Choose(MessageBase):
    """CHOOSE: show ``options`` (keys 1..n) and let the customer pick one; answered by :class:`Choice`."""

    TYPE: ClassVar[MessageType] = MessageType.CHOOSE
    request_id: int
    timeout_s: int
    options: tuple[str, ...]
    prompt: str = ""


@dataclass(frozen=True)
class CodeData(MessageBase):
    """CODE_DATA: the code read; ``source`` is a :class:`~misbridge.link.codes.CodeSource` value."""

    TYPE: ClassVar[MessageType] = MessageType.CODE_DATA
    request_id: int
    code_text: str = field(repr=False)
    source: str


@dataclass(frozen=True)
class Choice(MessageBase):
    """CHOICE: the option the customer picked, numbered from 1 as on the keys."""

    TYPE: ClassVar[MessageType] = MessageType.CHOICE
    request_id: int
    index: int
