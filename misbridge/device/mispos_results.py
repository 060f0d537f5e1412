"""mispos-v1 replies as misbridge values, and RESULT codes as misbridge errors (docs/device-protocol.md §6)."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from misbridge.device.base import CardRead, CodeEntry, CodeOrigin, CodeRead, PadInfo, TransKind
from misbridge.errors import (
    CardReadError,
    CustomerCancelled,
    DeviceBadReply,
    DeviceError,
    DeviceRejected,
    DeviceTimeout,
    ReturnCode,
)
from misbridge.link import (
    PROTOCOL_VERSION,
    CardData,
    CodeData,
    CodeInput,
    CodeSource,
    DeviceInfo,
    Message,
    Result,
    ResultCode,
    TransType,
)

_Reply = TypeVar("_Reply", bound=Message)


class Step(Enum):
    """Which kind of command a result code answers; decides the timeout return code (§6)."""

    CARD = "card"
    PIN = "pin"
    CODE = "code"
    CHOICE = "choice"
    COMMAND = "command"

    @property
    def timeout_code(self) -> ReturnCode:
        """The returnCode of a timeout in this step (§6 TIMEOUT, §7 host timers)."""
        return _TIMEOUT_CODES[self]


# A code or a choice stands where the card stands in the flow: no answer is "nothing presented".
_TIMEOUT_CODES = {
    Step.CARD: ReturnCode.CARD_TIMEOUT,
    Step.PIN: ReturnCode.PIN_TIMEOUT,
    Step.CODE: ReturnCode.CARD_TIMEOUT,
    Step.CHOICE: ReturnCode.CARD_TIMEOUT,
    Step.COMMAND: ReturnCode.DEVICE_ERROR,
}


_RESULT_NAMES = {code.value: code.name for code in ResultCode}
#: Result codes that are DeviceRejected, with the returnCode they carry (§6); others: DEVICE_ERROR.
_REJECTED_CODES: dict[str, ReturnCode] = {
    ResultCode.CARD_REMOVED: ReturnCode.CARD_REMOVED,
    ResultCode.BUSY: ReturnCode.DEVICE_BUSY,
}


def result_error(result: Result, step: Step) -> DeviceError:
    """The misbridge error for a non-OK RESULT (docs/device-protocol.md §6).

    A code the document does not define is a DeviceRejected with DEVICE_ERROR.
    """
    code = result.code
    detail = f"PIN pad result {code} {_RESULT_NAMES.get(code, 'UNKNOWN')}"
    detail += f": {result.text}" if result.text else ""
    if code == ResultCode.CUSTOMER_CANCEL:
        return CustomerCancelled(f"customer cancelled on the PIN pad ({detail})")
    if code == ResultCode.HOST_CANCELLED:
        return CustomerCancelled(f"step cancelled by the host ({detail})")
    if code == ResultCode.TIMEOUT:
        return DeviceTimeout(f"customer did not act in time ({detail})", return_code=step.timeout_code)
    if code == ResultCode.CARD_READ_ERROR:
        return CardReadError(f"card could not be read ({detail})")
    return_code = _REJECTED_CODES.get(code, ReturnCode.DEVICE_ERROR)
    return DeviceRejected(detail, device_code=code, return_code=return_code)


def expect(reply: Message, kind: type[_Reply], step: Step) -> _Reply:
    """``reply`` if it is a ``kind``; else the error its RESULT code means.

    Raises:
        DeviceError: the reply is a non-OK RESULT (see :func:`result_error`); DeviceBadReply
            when it is of another type (§6.1).
    """
    if isinstance(reply, kind):
        return reply
    if isinstance(reply, Result):
        raise result_error(reply, step)
    raise DeviceBadReply(f"unexpected {type(reply).__name__} in reply to a {kind.__name__} request")


def expect_ok(reply: Message, step: Step) -> None:
    """Accept only ``RESULT 00``.

    Raises:
        DeviceError: any other reply.
    """
    result = expect(reply, Result, step)
    if result.code != ResultCode.OK:
        raise result_error(result, step)


#: TRANS_TYPE for each kind of confirmation, CODE_INPUT for each entry, origin of each CODE_SOURCE.
TRANS_TYPES = {TransKind.SALE: TransType.SALE, TransKind.VOID: TransType.VOID, TransKind.REFUND: TransType.REFUND}
CODE_INPUTS = {
    CodeEntry.ANY: CodeInput.SCAN_OR_KEYPAD,
    CodeEntry.SCAN: CodeInput.SCAN_ONLY,
    CodeEntry.KEYPAD: CodeInput.KEYPAD_ONLY,
}
_ORIGINS: dict[str, CodeOrigin] = {
    CodeSource.KEYPAD: CodeOrigin.KEYPAD,
    CodeSource.BARCODE: CodeOrigin.BARCODE,
    CodeSource.QR_CODE: CodeOrigin.QR_CODE,
}


def code_read(reply: CodeData) -> CodeRead:
    """The code of a CODE_DATA; an undocumented CODE_SOURCE counts as keyed in (§4)."""
    return CodeRead(reply.code_text, _ORIGINS.get(reply.source, CodeOrigin.KEYPAD))


def pad_info(reply: DeviceInfo) -> PadInfo:
    """The identity in a DEVICE_INFO_REPLY."""
    return PadInfo(
        reply.model,
        reply.firmware,
        reply.serial_no,
        int(reply.protocol_version),
        reply.master_key_kcv,
        reply.working_key_kcv,
    )


def check_protocol_version(info: PadInfo) -> None:
    """Refuse a pad that does not speak version 1 (docs/device-protocol.md §5.5).

    Raises:
        DeviceRejected: PROTOCOL_VERSION is not 1; the driver does not use the pad and retries.
    """
    if info.protocol != PROTOCOL_VERSION:
        raise DeviceRejected(
            f"PIN pad {info.model} {info.firmware} speaks mispos protocol version {info.protocol};"
            f" this misbridge speaks version {PROTOCOL_VERSION} only",
            device_code="",
        )


def card_read(card: CardData) -> CardRead:
    """The card in a CARD_DATA, still encrypted."""
    return CardRead(
        card_type=card.card_type,
        masked_pan=card.masked_pan,
        enc_pan_hex=card.enc_pan_hex,
        enc_track2_hex=card.enc_track2_hex,
        expiry=card.expiry,
        enc_track1_hex=card.enc_track1_hex,
        enc_track3_hex=card.enc_track3_hex,
        card_sn=card.card_sn,
        enc_ic_data_hex=card.enc_ic_data_hex,
    )
