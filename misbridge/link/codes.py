"""Code tables of mispos-v1: message types (§5), TLV tags (§4), result codes (§6) and the
enumerated field values, each member named exactly as in ``docs/device-protocol.md``.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final

__all__ = [
    "PROTOCOL_VERSION",
    "CardType",
    "CodeInput",
    "CodeSource",
    "DeviceState",
    "LinkControl",
    "MessageType",
    "ProgressStage",
    "ResultCode",
    "Tag",
    "TransType",
]

#: §4 PROTOCOL_VERSION: ``1`` for this document.
PROTOCOL_VERSION: Final = 1


class MessageType(IntEnum):
    """§5: the TYPE byte.  Host -> pad commands are 0x0_, pad -> host messages 0x8_."""

    DEVICE_INFO = 0x01
    READ_CARD = 0x02
    READ_PIN = 0x03
    CANCEL = 0x04
    DISPLAY_TEXT = 0x05
    STATUS = 0x06
    LOAD_WORKING_KEY = 0x07
    READ_CODE = 0x08
    CHOOSE = 0x09
    # 0x0A stays unassigned: §5.4's worked example of a command the pad does not know uses it.
    LOAD_MASTER_KEY = 0x0B
    DEVICE_INFO_REPLY = 0x81
    CARD_DATA = 0x82
    PIN_BLOCK = 0x83
    PROGRESS = 0x84
    STATUS_REPLY = 0x85
    CODE_DATA = 0x86
    CHOICE = 0x87
    RESULT = 0x8F


class LinkControl(IntEnum):
    """§3.1: the TYPE byte of link-control frames (SEQ 0); the link layer answers them itself."""

    LINK_RESET = 0x00
    LINK_RESET_REPLY = 0x80


class Tag(IntEnum):
    """§4: TLV tags."""

    AMOUNT = 0x9F01
    PROMPT = 0x9F02
    TIMEOUT_S = 0x9F03
    CARD_TYPE = 0x9F04
    MASKED_PAN = 0x9F05
    ENC_PAN = 0x9F06
    ENC_TRACK2 = 0x9F07
    ENC_TRACK1 = 0x9F08
    ENC_TRACK3 = 0x9F09
    EXPIRY = 0x9F0A
    CARD_SN = 0x9F0B
    ENC_IC_DATA = 0x9F0C
    PIN_BLOCK = 0x9F10
    KEY_INDEX = 0x9F11
    PIN_MIN_LEN = 0x9F12
    PIN_MAX_LEN = 0x9F13
    RESULT_CODE = 0x9F20
    RESULT_TEXT = 0x9F21
    REQUEST_ID = 0x9F22
    PROGRESS_STAGE = 0x9F30
    DIGITS_ENTERED = 0x9F31
    MODEL = 0x9F40
    FIRMWARE = 0x9F41
    SERIAL_NO = 0x9F42
    PROTOCOL_VERSION = 0x9F43
    SESSION_NONCE = 0x9F44
    DEVICE_STATE = 0x9F50
    ENC_WORKING_KEY = 0x9F51
    KEY_CHECK_VALUE = 0x9F52
    DISPLAY_SECONDS = 0x9F53
    ENC_MASTER_KEY = 0x9F54
    MASTER_KEY_KCV = 0x9F55
    WORKING_KEY_KCV = 0x9F56
    TRANS_TYPE = 0x9F60
    REFERENCE = 0x9F61
    CODE_INPUT = 0x9F62
    CODE_TEXT = 0x9F63
    CODE_SOURCE = 0x9F64
    CHOICE_INDEX = 0x9F65
    # OPTION_n is 0x9F70 + n: the last digit is the key the customer presses.
    OPTION_1 = 0x9F71
    OPTION_2 = 0x9F72
    OPTION_3 = 0x9F73
    OPTION_4 = 0x9F74
    OPTION_5 = 0x9F75
    OPTION_6 = 0x9F76
    OPTION_7 = 0x9F77
    OPTION_8 = 0x9F78
    OPTION_9 = 0x9F79


class ResultCode(StrEnum):
    """§6: RESULT_CODE values."""

    OK = "00"
    CUSTOMER_CANCEL = "01"
    TIMEOUT = "02"
    CARD_READ_ERROR = "03"
    CARD_REMOVED = "04"
    BUSY = "05"
    NO_KEY = "06"
    BAD_COMMAND = "07"
    HOST_CANCELLED = "08"
    HARDWARE_ERROR = "09"
    NO_SCANNER = "10"
    KEY_CHECK_FAILED = "11"


class ProgressStage(StrEnum):
    """§5: PROGRESS_STAGE values."""

    WAITING_FOR_CARD = "01"
    CARD_READ = "02"
    WAITING_FOR_PIN = "03"
    PIN_DIGIT_ENTERED = "04"
    PIN_COMPLETE = "05"
    WAITING_FOR_CODE = "06"
    WAITING_FOR_CHOICE = "07"


class DeviceState(StrEnum):
    """§4: DEVICE_STATE values."""

    IDLE = "00"
    BUSY = "01"


class CardType(StrEnum):
    """§4: CARD_TYPE values (the e-Buy cardInfo cardType)."""

    MAGNETIC_STRIPE = "00"
    IC = "01"
    NFC_IC = "02"


class TransType(StrEnum):
    """§4: TRANS_TYPE values, what a READ_CARD / READ_PIN asks the customer to confirm."""

    SALE = "00"
    VOID = "01"
    REFUND = "02"


class CodeInput(StrEnum):
    """§4: CODE_INPUT values, how READ_CODE lets the customer give the code."""

    SCAN_OR_KEYPAD = "00"
    SCAN_ONLY = "01"
    KEYPAD_ONLY = "02"


class CodeSource(StrEnum):
    """§4: CODE_SOURCE values, how the code in CODE_DATA was given."""

    KEYPAD = "00"
    BARCODE = "01"
    QR_CODE = "02"
