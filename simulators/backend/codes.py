"""The SIMULATOR's return codes. A real e-Buy backend's codes are unknown (book §16).

The book defines only "00 represent successful transaction, else represent fail"; these codes
borrow ISO 8583 response-code meanings where one fits (docs/backend.md, "Simulator return codes").
"""

from __future__ import annotations

from enum import StrEnum


class SimCode(StrEnum):
    """returnCode values the backend simulator sends."""

    APPROVED = "00"
    UNSUPPORTED_ACTION = "12"
    UNKNOWN_CARD = "14"
    ALREADY_VOIDED = "22"
    ORIGINAL_VOIDED = "23"
    ORIGINAL_NOT_FOUND = "25"
    ORIGINAL_IN_PROGRESS = "26"
    FORMAT_ERROR = "30"
    INSUFFICIENT_FUNDS = "51"
    INCORRECT_PIN = "55"
    BAD_SIGNATURE = "63"
    DUPLICATE_TRACE_NO = "94"


#: returnDesc of an approval, as in the book's examples.
SUCCESS_DESC = "SUCCESS"


class Declined(Exception):
    """A request the simulator answers with a non-"00" code; raised deep, caught by the handler.

    Args:
        code: the returnCode.
        desc: the readable returnDesc.
    """

    def __init__(self, code: SimCode, desc: str) -> None:
        super().__init__(f"{code.value} {desc}")
        self.code = code
        self.desc = desc
