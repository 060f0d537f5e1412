"""misbridge.link: the mispos-v1 PIN-pad wire protocol (``docs/device-protocol.md``), sans-IO.

Bytes in, events out, time passed in as ``now``: nothing here opens a port, starts a task or
reads a clock, and only the standard library and :mod:`misbridge.errors` are imported
(``tests/unit/test_layering.py`` enforces it).  Layers, bottom up:

- :mod:`~misbridge.link.constants`: every constant of the document, under its name there;
- :mod:`~misbridge.link.bcd`, :mod:`~misbridge.link.lrc`: LEN/LENGTH and the check byte;
- :mod:`~misbridge.link.frames`: ``STX | LEN | DATA | ETX | LRC``, ``ACK SEQ``, ``NAK`` and
  the incremental :class:`FrameDecoder`;
- :mod:`~misbridge.link.session`: :class:`LinkSession`, stop-and-wait with retransmission and
  duplicate suppression, reporting :mod:`~misbridge.link.events`;
- :mod:`~misbridge.link.tlv`, :mod:`~misbridge.link.fields`, :mod:`~misbridge.link.codes`,
  :mod:`~misbridge.link.message_base`, :mod:`~misbridge.link.prompts`,
  :mod:`~misbridge.link.messages`: the payload of a frame, as typed frozen dataclasses.

:mod:`~misbridge.link.testing` (not imported here) joins two sessions over an in-memory line.
"""

from misbridge.link.bcd import decode_bcd_length, encode_bcd_length
from misbridge.link.constants import (
    ACK_TIMEOUT_S,
    DEFAULT_BAUDRATE,
    INTER_BYTE_TIMEOUT_S,
    MAX_DATA_LEN,
    MAX_FRAME_LEN,
    MAX_PAYLOAD_LEN,
    MAX_RETRANSMITS,
    SEQ_MAX,
    SEQ_MIN,
    TEXT_ENCODING,
    ControlByte,
)
from misbridge.link.events import (
    DuplicateSuppressed,
    FrameRejected,
    GarbageDiscarded,
    LinkEvent,
    LinkFailed,
    PayloadAcked,
    PayloadReceived,
    Retransmitted,
)
from misbridge.link.frames import (
    NAK_BYTES,
    AckControl,
    BadFrame,
    DataFrame,
    Decoded,
    Discarded,
    FrameDecoder,
    NakControl,
    encode_ack,
    encode_frame,
)
from misbridge.link.lrc import compute_lrc, lrc_ok
from misbridge.link.messages import (
    PROTOCOL_VERSION,
    Cancel,
    CardData,
    CardType,
    Choice,
    Choose,
    CodeData,
    CodeInput,
    CodeSource,
    Command,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    DisplayText,
    LoadWorkingKey,
    Message,
    MessageType,
    PinBlock,
    Progress,
    ProgressStage,
    ReadCard,
    ReadCode,
    ReadPin,
    Reply,
    Result,
    ResultCode,
    StatusRequest,
    Tag,
    TransType,
    decode_message,
    encode_message,
    request_id_of,
)
from misbridge.link.session import InFlight, LinkSession, Role
from misbridge.link.tlv import decode_tlvs, encode_tlvs

# Everything in __all__ is the public API of the link layer.
__all__ = [
    "ACK_TIMEOUT_S",
    "DEFAULT_BAUDRATE",
    "INTER_BYTE_TIMEOUT_S",
    "MAX_DATA_LEN",
    "MAX_FRAME_LEN",
    "MAX_PAYLOAD_LEN",
    "MAX_RETRANSMITS",
    "NAK_BYTES",
    "PROTOCOL_VERSION",
    "SEQ_MAX",
    "SEQ_MIN",
    "TEXT_ENCODING",
    "AckControl",
    "BadFrame",
    "Cancel",
    "CardData",
    "CardType",
    "Choice",
    "Choose",
    "CodeData",
    "CodeInput",
    "CodeSource",
    "Command",
    "ControlByte",
    "DataFrame",
    "Decoded",
    "DeviceInfo",
    "DeviceInfoRequest",
    "DeviceState",
    "DeviceStatus",
    "Discarded",
    "DisplayText",
    "DuplicateSuppressed",
    "FrameDecoder",
    "FrameRejected",
    "GarbageDiscarded",
    "InFlight",
    "LinkEvent",
    "LinkFailed",
    "LinkSession",
    "LoadWorkingKey",
    "Message",
    "MessageType",
    "NakControl",
    "PayloadAcked",
    "PayloadReceived",
    "PinBlock",
    "Progress",
    "ProgressStage",
    "ReadCard",
    "ReadCode",
    "ReadPin",
    "Reply",
    "Result",
    "ResultCode",
    "Retransmitted",
    "Role",
    "StatusRequest",
    "Tag",
    "TransType",
    "compute_lrc",
    "decode_bcd_length",
    "decode_message",
    "decode_tlvs",
    "encode_ack",
    "encode_bcd_length",
    "encode_frame",
    "encode_message",
    "encode_tlvs",
    "lrc_ok",
    "request_id_of",
]
