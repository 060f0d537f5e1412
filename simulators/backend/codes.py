"""The SIMULATOR's return codes. A real e-Buy backend's codes are unknown (book §16).

The book defines only "00 represent successful transaction, else represent fail"; these codes
borrow ISO 8583 response-code meanings where one fits (docs/backend.md, "Simulator return codes").
"""

from __future__ import annotations

from enum import StrEnum


class SimCode(StrEnum):
    """returnCode values the backend simulator sends."""

    APPROVED = "00"
    DO_NOT_HONOUR = "05"  # the test code that always declines
    CHOOSE_PRODUCT = "09"  # first round of a code with options: choose from activityProductList
    UNSUPPORTED_ACTION = "12"
    AMOUNT_EXCEEDS = "13"  # refundAmount above what is left of the original
    UNKNOWN_CARD = "14"  # also an unknown QR code, e-coupon or member
    ALREADY_VOIDED = "22"
    ORIGINAL_VOIDED = "23"  # inquiry or refund of a voided sale
    ORIGINAL_REFUNDED = "24"  # void of a sale that was (partly) refunded
    ORIGINAL_NOT_FOUND = "25"
    ORIGINAL_IN_PROGRESS = "26"
    FORMAT_ERROR = "30"
    INSUFFICIENT_FUNDS = "51"
    EXPIRED = "54"  # the expired test e-coupon
    INCORRECT_PIN = "55"
    CARD_MISMATCH = "57"  # a card void/refund presented another card than the sale's
    WRONG_FAMILY = "58"  # a card void/refund of a QR sale, or the other way round
    BAD_SIGNATURE = "63"
    DUPLICATE_TRACE_NO = "94"
    KEY_EXPIRED = "A0"  # UnionPay's "sign in again": the terminal's working key is out of date


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
