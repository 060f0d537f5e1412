"""PIN-pad application messages (§4 TLV fields, §5 messages, §6 result codes).

A message is ``TYPE (1 byte) | TLV...``; the link adds the SEQ byte in front.  Each message is
a frozen dataclass that validates itself when built, so an invalid message can neither be
sent nor come out of :func:`decode_message`.  The wire layout of every message lives in one
table, :data:`MESSAGE_SPECS`, which both :func:`encode_message` and :func:`decode_message`
read; nothing else knows tags.  The base class and the field helpers live in
:mod:`~misbridge.link.message_base`, the whole-book prompts (READ_CODE, CHOOSE and their
replies) in :mod:`~misbridge.link.prompts`; this module is the table and the codec.

Encrypted PAN, tracks, IC data, PIN block and working key are ``repr=False`` fields: they never
show up in logs or tracebacks, and validation errors never quote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias, cast

from misbridge.errors import MessageError
from misbridge.link.codes import (
    PROTOCOL_VERSION,
    CardType,
    CodeInput,
    CodeSource,
    DeviceState,
    MessageType,
    ProgressStage,
    ResultCode,
    Tag,
    TransType,
)
from misbridge.link.constants import (
    KCV_HEX_LEN,
    MAX_CODE_LEN,
    MAX_OPTION_LEN,
    MAX_OPTIONS,
    MAX_PAYLOAD_LEN,
    MAX_PROMPT_LEN,
    MAX_REFERENCE_LEN,
    NO_REQUEST_ID,
)
from misbridge.link.fields import MAX_AMOUNT_MINOR, FieldSpec, Kind, read_field, wire_items
from misbridge.link.message_base import (
    MessageBase,
    MessageSpec,
    digits_field,
    hex_field,
    make_spec,
    number_field,
    printable_field,
    text_field,
)
from misbridge.link.prompts import Choice, Choose, CodeData, ReadCode
from misbridge.link.tlv import decode_tlvs, encode_tlvs

# The code tables are re-exported: the document promises its names in this module too.
__all__ = [
    "MAX_AMOUNT_MINOR",
    "MESSAGE_SPECS",
    "PROTOCOL_VERSION",
    "Cancel",
    "CardData",
    "CardType",
    "Choice",
    "Choose",
    "CodeData",
    "CodeInput",
    "CodeSource",
    "Command",
    "DeviceInfo",
    "DeviceInfoRequest",
    "DeviceState",
    "DeviceStatus",
    "DisplayText",
    "LoadMasterKey",
    "LoadWorkingKey",
    "Message",
    "MessageSpec",
    "MessageType",
    "PinBlock",
    "Progress",
    "ProgressStage",
    "ReadCard",
    "ReadCode",
    "ReadPin",
    "Reply",
    "Result",
    "ResultCode",
    "StatusRequest",
    "Tag",
    "TransType",
    "decode_message",
    "encode_message",
    "request_id_of",
]


# --- host -> pad (§5 commands) -------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfoRequest(MessageBase):
    """DEVICE_INFO: ask the pad who it is; answered by :class:`DeviceInfo`."""

    TYPE: ClassVar[MessageType] = MessageType.DEVICE_INFO
    request_id: int


@dataclass(frozen=True)
class ReadCard(MessageBase):
    """READ_CARD: wait up to ``timeout_s`` for a card; answered by :class:`CardData` or :class:`Result`.

    ``trans_type`` (a :class:`TransType` value) and ``reference`` say what the customer confirms.
    """

    TYPE: ClassVar[MessageType] = MessageType.READ_CARD
    request_id: int
    amount_minor: int
    timeout_s: int
    prompt: str = ""
    trans_type: str = TransType.SALE
    reference: str = ""


@dataclass(frozen=True)
class ReadPin(MessageBase):
    """READ_PIN: PIN entry bound to the last card read; answered by :class:`PinBlock` or :class:`Result`."""

    TYPE: ClassVar[MessageType] = MessageType.READ_PIN
    request_id: int
    amount_minor: int
    timeout_s: int
    prompt: str = ""
    key_index: int = 1
    pin_min_len: int = 4
    pin_max_len: int = 12
    trans_type: str = TransType.SALE
    reference: str = ""

    def _check(self) -> None:
        if self.pin_min_len > self.pin_max_len:
            raise MessageError(f"ReadPin: pin_min_len {self.pin_min_len} > pin_max_len {self.pin_max_len}")


@dataclass(frozen=True)
class Cancel(MessageBase):
    """CANCEL: end the running READ_CARD / READ_PIN; answered by :class:`Result` ``00``."""

    TYPE: ClassVar[MessageType] = MessageType.CANCEL
    request_id: int


@dataclass(frozen=True)
class DisplayText(MessageBase):
    """DISPLAY_TEXT: show ``prompt`` for ``display_seconds``; 0 (left out): until the next command (§10)."""

    TYPE: ClassVar[MessageType] = MessageType.DISPLAY_TEXT
    request_id: int
    prompt: str
    display_seconds: int = 0


@dataclass(frozen=True)
class StatusRequest(MessageBase):
    """STATUS: ask whether the pad is busy (also the idle keep-alive ping)."""

    TYPE: ClassVar[MessageType] = MessageType.STATUS
    request_id: int


@dataclass(frozen=True)
class LoadWorkingKey(MessageBase):
    """LOAD_WORKING_KEY: store a working key (encrypted under the master key) in ``key_index``."""

    TYPE: ClassVar[MessageType] = MessageType.LOAD_WORKING_KEY
    request_id: int
    key_index: int
    enc_working_key_hex: str = field(repr=False)
    key_check_value_hex: str


@dataclass(frozen=True)
class LoadMasterKey(MessageBase):
    """LOAD_MASTER_KEY: replace the master key with one encrypted under the pad's transport key (§11).

    Used once at provisioning (``misbridge pad provision``): the host forwards the backend's
    DownloadKey answer (``mwTmk`` under ``rootKey``) unchanged, and never holds the key in clear.
    """

    TYPE: ClassVar[MessageType] = MessageType.LOAD_MASTER_KEY
    request_id: int
    enc_master_key_hex: str = field(repr=False)
    key_check_value_hex: str


# --- pad -> host (§5) ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo(MessageBase):
    """DEVICE_INFO_REPLY: model, firmware, serial number and protocol version of the pad.

    ``master_key_kcv`` and ``working_key_kcv`` (slot 1) are the KCVs of the keys the pad holds,
    "" when the slot is empty or the pad predates the tags (§11).
    """

    TYPE: ClassVar[MessageType] = MessageType.DEVICE_INFO_REPLY
    request_id: int
    model: str
    firmware: str
    serial_no: str
    protocol_version: int
    master_key_kcv: str = ""
    working_key_kcv: str = ""


@dataclass(frozen=True)
class CardData(MessageBase):
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
class PinBlock(MessageBase):
    """PIN_BLOCK: the encrypted ISO 9564 format-0 PIN block, opaque to misbridge."""

    TYPE: ClassVar[MessageType] = MessageType.PIN_BLOCK
    request_id: int
    pin_block_hex: str = field(repr=False)
    key_index: int


@dataclass(frozen=True)
class Progress(MessageBase):
    """PROGRESS: informative step of a running command; never a result."""

    TYPE: ClassVar[MessageType] = MessageType.PROGRESS
    request_id: int
    stage: str
    digits_entered: int = 0


@dataclass(frozen=True)
class DeviceStatus(MessageBase):
    """STATUS_REPLY: ``state`` is a :class:`DeviceState` value."""

    TYPE: ClassVar[MessageType] = MessageType.STATUS_REPLY
    request_id: int
    state: str


@dataclass(frozen=True)
class Result(MessageBase):
    """RESULT: outcome of a command; ``code`` is a :class:`ResultCode` value.

    ``request_id`` is the command's, or ``NO_REQUEST_ID`` (0) in a ``07`` answering a command
    whose REQUEST_ID was missing or invalid (§5.4).
    """

    TYPE: ClassVar[MessageType] = MessageType.RESULT
    request_id: int
    code: str
    text: str = ""

    def _check(self) -> None:
        if self.request_id == NO_REQUEST_ID and self.code != ResultCode.BAD_COMMAND:
            raise MessageError(f"Result: REQUEST_ID {NO_REQUEST_ID} only answers a BAD_COMMAND, not {self.code}")


Command: TypeAlias = (
    DeviceInfoRequest
    | ReadCard
    | ReadPin
    | Cancel
    | DisplayText
    | StatusRequest
    | LoadWorkingKey
    | LoadMasterKey
    | ReadCode
    | Choose
)
Reply: TypeAlias = DeviceInfo | CardData | PinBlock | Progress | DeviceStatus | Result | CodeData | Choice
Message: TypeAlias = Command | Reply


# --- the wire layout -----------------------------------------------------------------------


# §4 ranges: REQUEST_ID 1..9999, TIMEOUT_S 1..999, KEY_INDEX 1..99.  PIN lengths 4..12 are
# the ISO 9564 format-0 limits; DISPLAY_SECONDS and PROTOCOL_VERSION bounds are misbridge's.
_REQUEST_ID = number_field("request_id", Tag.REQUEST_ID, 1, 9999)
_AMOUNT = number_field("amount_minor", Tag.AMOUNT, 0, MAX_AMOUNT_MINOR)
_TIMEOUT = number_field("timeout_s", Tag.TIMEOUT_S, 1, 999)
_PROMPT = text_field("prompt", Tag.PROMPT, optional=True, max_len=MAX_PROMPT_LEN)
# §5.4: a RESULT 07 may carry NO_REQUEST_ID (0) when the command's own REQUEST_ID was unusable.
_RESULT_REQUEST_ID = number_field("request_id", Tag.REQUEST_ID, NO_REQUEST_ID, 9999)
# What a card or PIN step asks the customer to confirm (§4 TRANS_TYPE, REFERENCE); absent: a sale.
_CONFIRMING = (
    digits_field("trans_type", Tag.TRANS_TYPE, 2, optional=True),
    text_field("reference", Tag.REFERENCE, optional=True, max_len=MAX_REFERENCE_LEN),
)

MESSAGE_SPECS: Final[Mapping[MessageType, MessageSpec]] = {
    spec.type: spec
    for spec in (
        make_spec(DeviceInfoRequest, _REQUEST_ID),
        make_spec(ReadCard, _REQUEST_ID, _AMOUNT, _TIMEOUT, _PROMPT, *_CONFIRMING),
        make_spec(
            ReadPin,
            _REQUEST_ID,
            _AMOUNT,
            _TIMEOUT,
            _PROMPT,
            number_field("key_index", Tag.KEY_INDEX, 1, 99, optional=True),
            number_field("pin_min_len", Tag.PIN_MIN_LEN, 4, 12, optional=True),
            number_field("pin_max_len", Tag.PIN_MAX_LEN, 4, 12, optional=True),
            *_CONFIRMING,
        ),
        make_spec(Cancel, _REQUEST_ID),
        make_spec(
            DisplayText,
            _REQUEST_ID,
            text_field("prompt", Tag.PROMPT, max_len=MAX_PROMPT_LEN),
            number_field("display_seconds", Tag.DISPLAY_SECONDS, 0, 999, optional=True),
        ),
        make_spec(StatusRequest, _REQUEST_ID),
        make_spec(
            LoadWorkingKey,
            _REQUEST_ID,
            number_field("key_index", Tag.KEY_INDEX, 1, 99),
            hex_field("enc_working_key_hex", Tag.ENC_WORKING_KEY),
            hex_field("key_check_value_hex", Tag.KEY_CHECK_VALUE, KCV_HEX_LEN),
        ),
        make_spec(
            LoadMasterKey,
            _REQUEST_ID,
            hex_field("enc_master_key_hex", Tag.ENC_MASTER_KEY),
            hex_field("key_check_value_hex", Tag.KEY_CHECK_VALUE, KCV_HEX_LEN),
        ),
        make_spec(
            DeviceInfo,
            _REQUEST_ID,
            text_field("model", Tag.MODEL),
            text_field("firmware", Tag.FIRMWARE),
            text_field("serial_no", Tag.SERIAL_NO),
            number_field("protocol_version", Tag.PROTOCOL_VERSION, 1, 99),
            hex_field("master_key_kcv", Tag.MASTER_KEY_KCV, KCV_HEX_LEN, optional=True),
            hex_field("working_key_kcv", Tag.WORKING_KEY_KCV, KCV_HEX_LEN, optional=True),
        ),
        make_spec(
            CardData,
            _REQUEST_ID,
            digits_field("card_type", Tag.CARD_TYPE, 2),
            FieldSpec("masked_pan", Tag.MASKED_PAN, Kind.MASKED_PAN),
            hex_field("enc_pan_hex", Tag.ENC_PAN),
            hex_field("enc_track2_hex", Tag.ENC_TRACK2),
            digits_field("expiry", Tag.EXPIRY, 4),
            hex_field("enc_track1_hex", Tag.ENC_TRACK1, optional=True),
            hex_field("enc_track3_hex", Tag.ENC_TRACK3, optional=True),
            digits_field("card_sn", Tag.CARD_SN, None, optional=True),
            hex_field("enc_ic_data_hex", Tag.ENC_IC_DATA, optional=True),
        ),
        make_spec(
            PinBlock,
            _REQUEST_ID,
            hex_field("pin_block_hex", Tag.PIN_BLOCK, 16),
            number_field("key_index", Tag.KEY_INDEX, 1, 99),
        ),
        make_spec(
            Progress,
            _REQUEST_ID,
            digits_field("stage", Tag.PROGRESS_STAGE, 2),
            number_field("digits_entered", Tag.DIGITS_ENTERED, 0, 12, optional=True),
        ),
        make_spec(DeviceStatus, _REQUEST_ID, digits_field("state", Tag.DEVICE_STATE, 2)),
        make_spec(
            Result,
            _RESULT_REQUEST_ID,
            digits_field("code", Tag.RESULT_CODE, 2),
            text_field("text", Tag.RESULT_TEXT, optional=True),
        ),
        make_spec(
            ReadCode,
            _REQUEST_ID,
            _TIMEOUT,
            _PROMPT,
            number_field("amount_minor", Tag.AMOUNT, 0, MAX_AMOUNT_MINOR, optional=True),
            digits_field("code_input", Tag.CODE_INPUT, 2, optional=True),
        ),
        make_spec(
            Choose,
            _REQUEST_ID,
            _TIMEOUT,
            text_field("options", Tag.OPTION_1, max_len=MAX_OPTION_LEN, count=MAX_OPTIONS),
            _PROMPT,
        ),
        make_spec(
            CodeData,
            _REQUEST_ID,
            printable_field("code_text", Tag.CODE_TEXT, MAX_CODE_LEN),
            digits_field("source", Tag.CODE_SOURCE, 2),
        ),
        make_spec(Choice, _REQUEST_ID, number_field("index", Tag.CHOICE_INDEX, 1, MAX_OPTIONS)),
    )
}
_SPECS_BY_CLASS: Final[Mapping[type[MessageBase], MessageSpec]] = {s.cls: s for s in MESSAGE_SPECS.values()}


# --- encode / decode -----------------------------------------------------------------------


def encode_message(msg: Message) -> bytes:
    """``TYPE | TLV...`` for ``msg``; optional fields at their default are left out.

    Raises:
        MessageError: the message does not fit in one frame (``MAX_PAYLOAD_LEN``).
    """
    spec = _SPECS_BY_CLASS[type(msg)]
    items = [
        item
        for fs in spec.fields
        if not (fs.optional and getattr(msg, fs.attr) == spec.defaults[fs.attr])
        for item in wire_items(fs, getattr(msg, fs.attr))
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
        value = read_field(fs, tlvs, spec.type.name)
        if value is not None:
            kwargs[fs.attr] = value
        elif not fs.optional:
            raise MessageError(f"{spec.type.name} without mandatory {fs.tag.name}")
    return cast(Message, spec.cls(**kwargs))


def request_id_of(payload: bytes) -> int | None:
    """The REQUEST_ID of a payload :func:`decode_message` refused, if it has a valid one.

    A pad answers a command it cannot take (an unknown TYPE, a missing field) with RESULT
    ``07`` BAD_COMMAND carrying this id (§6), so the host is not left waiting for its timeout.
    """
    try:
        value = read_field(_REQUEST_ID, decode_tlvs(payload[1:]), "payload")
    except MessageError:
        return None
    return value if isinstance(value, int) and 1 <= value <= _REQUEST_ID.high else None
