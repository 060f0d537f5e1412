"""mispos-v1 RESULT codes as misbridge errors (docs/device-protocol.md §6)."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from misbridge.errors import (
    CardReadError,
    CustomerCancelled,
    DeviceError,
    DeviceRejected,
    DeviceTimeout,
    ReturnCode,
)
from misbridge.link import Message, Result, ResultCode

_Reply = TypeVar("_Reply", bound=Message)


class Step(Enum):
    """Which kind of command a result code answers; decides the timeout return code (§6)."""

    CARD = ReturnCode.CARD_TIMEOUT
    PIN = ReturnCode.PIN_TIMEOUT
    COMMAND = ReturnCode.DEVICE_ERROR


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
        return DeviceTimeout(f"customer did not act in time ({detail})", return_code=step.value)
    if code == ResultCode.CARD_READ_ERROR:
        return CardReadError(f"card could not be read ({detail})")
    return_code = _REJECTED_CODES.get(code, ReturnCode.DEVICE_ERROR)
    return DeviceRejected(detail, device_code=code, return_code=return_code)


def expect(reply: Message, kind: type[_Reply], step: Step) -> _Reply:
    """``reply`` if it is a ``kind``; else the error its RESULT code means.

    Raises:
        DeviceError: the reply is a non-OK RESULT (see :func:`result_error`) or of another type.
    """
    if isinstance(reply, kind):
        return reply
    if isinstance(reply, Result):
        raise result_error(reply, step)
    raise DeviceRejected(f"unexpected {type(reply).__name__} in reply to a {kind.__name__} request", device_code="")


def expect_ok(reply: Message, step: Step) -> None:
    """Accept only ``RESULT 00``.

    Raises:
        DeviceError: any other reply.
    """
    result = expect(reply, Result, step)
    if result.code != ResultCode.OK:
        raise result_error(result, step)
