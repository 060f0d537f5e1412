"""PIN-pad application messages (§4 TLV fields, §5 messages, §6 result codes).

A message is ``TYPE (1 byte) | TLV...``; the link adds the SEQ byte in front.  Each message is
a frozen dataclass that validates itself when built, so an invalid message can neither be
sent nor come out of :func:`decode_message`.  The wire layout of every message lives in one
table, :data:`MESSAGE_SPECS`, which both :func:`encode_message` and :func:`decode_message`
read; nothing else knows tags.

Encrypted PAN, tracks, IC data, PIN block and working key are ``repr=False`` fields: they never
show up in logs or tracebacks, and validation errors never quote them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias

from misbridge.errors import MessageError
from misbridge.link.codes import (
    PROTOCOL_VERSION,
    CardType,
    DeviceState,
    MessageType,
    ProgressStage,
    ResultCode,
    Tag,
)
from misbridge.link.constants import MAX_PAYLOAD_LEN
from misbridge.link.fields import MAX_AMOUNT_MINOR, FieldSpec, Kind, check_value, from_wire, to_wire
from misbridge.link.tlv import decode_tlvs, encode_tlvs

# The code tables are re-exported: the document promises its names in this module too.
__all__ = [
    "MAX_AMOUNT_MINOR",
    "MESSAGE_SPECS",
    "PROTOCOL_VERSION",
    "Cancel",
    "CardData",
    "CardType",
    "Command",
    "DeviceInfo",
    "DeviceInfoRequest",
    "DeviceState",
    "DeviceStatus",
    "DisplayText",
    "LoadWorkingKey",
    "Message",
    "MessageSpec",
    "MessageType",
    "PinBlock",
    "Progress",
    "ProgressStage",
    "ReadCard",
    "ReadPin",
    "Reply",
    "Result",
    "ResultCode",
    "StatusRequest",
    "Tag",
    "decode_message",
    "encode_message",
]


class _Message:
    """Base of every message: validation against :data:`MESSAGE_SPECS` at construction."""

    TYPE: ClassVar[MessageType]

    def __post_init__(self) -> None:
        spec = _SPECS_BY_CLASS[type(self)]
        for fs in spec.fields:
            _check_field(spec, fs, getattr(self, fs.attr))
        self._check()

    def _check(self) -> None:
        """Rules across fields; overridden where the document has some."""


# --- host -> pad (§5 commands) -------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfoRequest(_Message):
    """DEVICE_INFO: ask the pad who it is; answered by :class:`DeviceInfo`."""

    TYPE: ClassVar[MessageType] = MessageType.DEVICE_INFO
    request_id: int


@dataclass(frozen=True)
class ReadCard(_Message):
    """READ_CARD: wait up to ``timeout_s`` for a card; answered by :class:`CardData` or :class:`Result`."""

    TYPE: ClassVar[MessageType] = MessageType.READ_CARD
    request_id: int
    amount_minor: int
    timeout_s: int
    prompt: str = ""


@dataclass(frozen=True)
class ReadPin(_Message):
    """READ_PIN: PIN entry bound to the last card read; answered by :class:`PinBlock` or :class:`Result`."""

    TYPE: ClassVar[MessageType] = MessageType.READ_PIN
    request_id: int
    amount_minor: int
    timeout_s: int
    prompt: str = ""
    key_index: int = 1
    pin_min_len: int = 4
    pin_max_len: int = 12

    def _check(self) -> None:
        if self.pin_min_len > self.pin_max_len:
            raise MessageError(f"ReadPin: pin_min_len {self.pin_min_len} > pin_max_len {self.pin_max_len}")


@dataclass(frozen=True)
class Cancel(_Message):
    """CANCEL: end the running READ_CARD / READ_PIN; answered by :class:`Result` ``00``."""

    TYPE: ClassVar[MessageType] = MessageType.CANCEL
    request_id: int


@dataclass(frozen=True)
class DisplayText(_Message):
    """DISPLAY_TEXT: show ``prompt``; ``display_seconds`` 0 leaves the duration to the pad."""

    TYPE: ClassVar[MessageType] = MessageType.DISPLAY_TEXT
    request_id: int
    prompt: str
    display_seconds: int = 0


@dataclass(frozen=True)
class StatusRequest(_Message):
    """STATUS: ask whether the pad is busy (also the idle keep-alive ping)."""

    TYPE: ClassVar[MessageType] = MessageType.STATUS
    request_id: int


@dataclass(frozen=True)
class LoadWorkingKey(_Message):
    """LOAD_WORKING_KEY: store a working key (encrypted under the master key) in ``key_index``."""

    TYPE: ClassVar[MessageType] = MessageType.LOAD_WORKING_KEY
    request_id: int
    key_index: int
    enc_working_key_hex: str = field(repr=False)
    key_check_value_hex: str


# --- pad -> host (§5) ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo(_Message):
    """DEVICE_INFO_REPLY: model, firmware, serial number and protocol version of the pad."""

    TYPE: ClassVar[MessageType] = MessageType.DEVICE_INFO_REPLY
    request_id: int
    model: str
    firmware: str
    serial_no: str
    protocol_version: int


@dataclass(frozen=True)
class CardData(_Message):
    """CARD_DATA: the card read; only ``masked_pan`` is clear, the rest is encrypted by the pad."""

    TYPE: ClassVar[MessageType] = MessageType.CARD_DATA
    request_id: int
    card_type: str
    masked_pan: str
    enc_pan_hex: str = field(repr=False)
    enc_track2_hex: str = field(repr=False)
    expiry: str
    enc_track1_hex: str = field(default="", repr=False)
    enc_track3_hex: str = field(default="", repr=False)
    card_sn: str = ""
    enc_ic_data_hex: str = field(default="", repr=False)

    def _check(self) -> None:
        # §4 EXPIRY is YYMM.
        if not 1 <= int(self.expiry[2:]) <= 12:
            raise MessageError("CardData: expiry month must be 01..12")


@dataclass(frozen=True)
class PinBlock(_Message):
    """PIN_BLOCK: the encrypted ISO 9564 format-0 PIN block, opaque to misbridge."""

    TYPE: ClassVar[MessageType] = MessageType.PIN_BLOCK
    request_id: int
    pin_block_hex: str = field(repr=False)
    key_index: int


@dataclass(frozen=True)
class Progress(_Message):
    """PROGRESS: informative step of a running command; never a result."""

    TYPE: ClassVar[MessageType] = MessageType.PROGRESS
    request_id: int
    stage: str
    digits_entered: int = 0


@dataclass(frozen=True)
class DeviceStatus(_Message):
    """STATUS_REPLY: ``state`` is a :class:`DeviceState` value."""

    TYPE: ClassVar[MessageType] = MessageType.STATUS_REPLY
    request_id: int
    state: str


@dataclass(frozen=True)
class Result(_Message):
    """RESULT: outcome of a command; ``code`` is a :class:`ResultCode` value."""

    TYPE: ClassVar[MessageType] = MessageType.RESULT
    request_id: int
    code: str
    text: str = ""


Command: TypeAlias = DeviceInfoRequest | ReadCard | ReadPin | Cancel | DisplayText | StatusRequest | LoadWorkingKey
Reply: TypeAlias = DeviceInfo | CardData | PinBlock | Progress | DeviceStatus | Result
Message: TypeAlias = Command | Reply


# --- the wire layout -----------------------------------------------------------------------


@dataclass(frozen=True)
class MessageSpec:
    """The wire layout of one message class."""

    cls: type[Message]
    fields: tuple[FieldSpec, ...]
    defaults: Mapping[str, object]

    @property
    def type(self) -> MessageType:
        """The TYPE byte of the message."""
        return self.cls.TYPE


def _spec(cls: type[Message], *fields: FieldSpec) -> MessageSpec:
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    return MessageSpec(cls, fields, defaults)


def _number(attr: str, tag: Tag, low: int, high: int, *, optional: bool = False) -> FieldSpec:
    return FieldSpec(attr, tag, Kind.NUMBER, optional=optional, low=low, high=high)


def _text(attr: str, tag: Tag, *, optional: bool = False) -> FieldSpec:
    return FieldSpec(attr, tag, Kind.TEXT, optional=optional)


def _digits(attr: str, tag: Tag, size: int | None, *, optional: bool = False) -> FieldSpec:
    return FieldSpec(attr, tag, Kind.DIGITS, optional=optional, size=size)


def _hex(attr: str, tag: Tag, size: int | None = None, *, optional: bool = False) -> FieldSpec:
    return FieldSpec(attr, tag, Kind.HEX, optional=optional, size=size)


# §4 ranges: REQUEST_ID 1..9999, TIMEOUT_S 1..999, KEY_INDEX 1..99.  PIN lengths 4..12 are
# the ISO 9564 format-0 limits; DISPLAY_SECONDS and PROTOCOL_VERSION bounds are misbridge's.
_REQUEST_ID = _number("request_id", Tag.REQUEST_ID, 1, 9999)
_AMOUNT = _number("amount_minor", Tag.AMOUNT, 0, MAX_AMOUNT_MINOR)
_TIMEOUT = _number("timeout_s", Tag.TIMEOUT_S, 1, 999)
_PROMPT = _text("prompt", Tag.PROMPT, optional=True)

MESSAGE_SPECS: Final[Mapping[MessageType, MessageSpec]] = {
    spec.type: spec
    for spec in (
        _spec(DeviceInfoRequest, _REQUEST_ID),
        _spec(ReadCard, _REQUEST_ID, _AMOUNT, _TIMEOUT, _PROMPT),
        _spec(
            ReadPin,
            _REQUEST_ID,
            _AMOUNT,
            _TIMEOUT,
            _PROMPT,
            _number("key_index", Tag.KEY_INDEX, 1, 99, optional=True),
            _number("pin_min_len", Tag.PIN_MIN_LEN, 4, 12, optional=True),
            _number("pin_max_len", Tag.PIN_MAX_LEN, 4, 12, optional=True),
        ),
        _spec(Cancel, _REQUEST_ID),
        _spec(
            DisplayText,
            _REQUEST_ID,
            _text("prompt", Tag.PROMPT),
            _number("display_seconds", Tag.DISPLAY_SECONDS, 0, 999, optional=True),
        ),
        _spec(StatusRequest, _REQUEST_ID),
        _spec(
            LoadWorkingKey,
            _REQUEST_ID,
            _number("key_index", Tag.KEY_INDEX, 1, 99),
            _hex("enc_working_key_hex", Tag.ENC_WORKING_KEY),
            _hex("key_check_value_hex", Tag.KEY_CHECK_VALUE, 6),
        ),
        _spec(
            DeviceInfo,
            _REQUEST_ID,
            _text("model", Tag.MODEL),
            _text("firmware", Tag.FIRMWARE),
            _text("serial_no", Tag.SERIAL_NO),
            _number("protocol_version", Tag.PROTOCOL_VERSION, 1, 99),
        ),
        _spec(
            CardData,
            _REQUEST_ID,
            _digits("card_type", Tag.CARD_TYPE, 2),
            FieldSpec("masked_pan", Tag.MASKED_PAN, Kind.MASKED_PAN),
            _hex("enc_pan_hex", Tag.ENC_PAN),
            _hex("enc_track2_hex", Tag.ENC_TRACK2),
            _digits("expiry", Tag.EXPIRY, 4),
            _hex("enc_track1_hex", Tag.ENC_TRACK1, optional=True),
            _hex("enc_track3_hex", Tag.ENC_TRACK3, optional=True),
            _digits("card_sn", Tag.CARD_SN, None, optional=True),
            _hex("enc_ic_data_hex", Tag.ENC_IC_DATA, optional=True),
        ),
        _spec(
            PinBlock,
            _REQUEST_ID,
            _hex("pin_block_hex", Tag.PIN_BLOCK, 16),
            _number("key_index", Tag.KEY_INDEX, 1, 99),
        ),
        _spec(
            Progress,
            _REQUEST_ID,
            _digits("stage", Tag.PROGRESS_STAGE, 2),
            _number("digits_entered", Tag.DIGITS_ENTERED, 0, 12, optional=True),
        ),
        _spec(DeviceStatus, _REQUEST_ID, _digits("state", Tag.DEVICE_STATE, 2)),
        _spec(
            Result,
            _REQUEST_ID,
            _digits("code", Tag.RESULT_CODE, 2),
            _text("text", Tag.RESULT_TEXT, optional=True),
        ),
    )
}
_SPECS_BY_CLASS: Final[Mapping[type[_Message], MessageSpec]] = {s.cls: s for s in MESSAGE_SPECS.values()}


def _check_field(spec: MessageSpec, fs: FieldSpec, value: object) -> None:
    problem = check_value(fs, value)
    if problem is not None:
        raise MessageError(f"{spec.cls.__name__}.{fs.attr} ({fs.tag.name}) {problem}")


# --- encode / decode -----------------------------------------------------------------------


def encode_message(msg: Message) -> bytes:
    """``TYPE | TLV...`` for ``msg``; optional fields at their default are left out.

    Raises:
        MessageError: the message does not fit in one frame (``MAX_PAYLOAD_LEN``).
    """
    spec = _SPECS_BY_CLASS[type(msg)]
    items = [
        (fs.tag.value, to_wire(fs, getattr(msg, fs.attr)))
        for fs in spec.fields
        if not (fs.optional and getattr(msg, fs.attr) == spec.defaults[fs.attr])
    ]
    payload = bytes([spec.type]) + encode_tlvs(items)
    if len(payload) > MAX_PAYLOAD_LEN:
        raise MessageError(f"{type(msg).__name__} is {len(payload)} bytes, a frame holds {MAX_PAYLOAD_LEN}")
    return payload


def decode_message(payload: bytes) -> Message:
    """Parse ``TYPE | TLV...`` (a frame's DATA without SEQ) into its message dataclass.

    Tags the message does not use are skipped (§4, forward compatibility).

    Raises:
        MessageError: empty payload, unknown TYPE, bad TLV, missing mandatory tag, a value
            that is not valid digits / hex / UTF-8, or a value out of range.
    """
    if not payload:
        raise MessageError("empty payload: no TYPE byte")
    try:
        spec = MESSAGE_SPECS[MessageType(payload[0])]
    except ValueError:
        raise MessageError(f"unknown message type 0x{payload[0]:02X}") from None
    tlvs = decode_tlvs(payload[1:])
    kwargs: dict[str, Any] = {}
    for fs in spec.fields:
        raw = tlvs.get(fs.tag)
        if raw is not None:
            kwargs[fs.attr] = from_wire(fs, raw, spec.type.name)
        elif not fs.optional:
            raise MessageError(f"{spec.type.name} without mandatory {fs.tag.name}")
    return spec.cls(**kwargs)
