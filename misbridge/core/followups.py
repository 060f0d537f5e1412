"""Before a QR void or refund leaves: what the journal knows of its original (docs/reliability.md).

``voidQrcodeSale`` and ``refundQrcodeSale`` name the sale they undo by ``originalTraceNo``. When
the journal holds that sale, misbridge refuses what the backend would refuse, before anything is
sent, each with its own code:

* the original is not an approved ``qrcodeSale`` (a card sale, declined, still unknown): MB48;
* the original is voided (by misbridge, or being voided by it, or by a void that is approved or
  still unresolved): MB45;
* a void of an original with a refund (approved or unresolved): MB46;
* a refund above what is left: ``totalAmount`` minus the ``refundAmount`` of every refund that
  is approved or unresolved, in exact decimals: MB47.

A void or refund that is unresolved (not declined or aborted) counts as done: it may have
happened. When the journal does not hold the original, the backend decides.

The caller runs the check and records the intent under one lock, so two refunds of one sale
cannot both pass the check.

The backend knows an options sale by its second round's traceNo, so a void or refund of one goes
out naming that (:func:`as_sent`); the journal keeps the POS's request as it came.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from misbridge.core.flow import sent_as
from misbridge.core.machine import TransactionKind, TxnState, kind_of
from misbridge.errors import RequestError, ReturnCode
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal

__all__ = ["FOLLOW_UP_ACTIONS", "as_sent", "check_follow_up"]

#: The POS actions that undo a QR sale, and the sale action they undo.
FOLLOW_UP_ACTIONS: Final[dict[str, str]] = {"voidQrcodeSale": "qrcodeSale", "refundQrcodeSale": "qrcodeSale"}
#: A void or refund in one of these moved nothing: it does not count against its original.
_MOVED_NOTHING: Final = frozenset({TxnState.DECLINED, TxnState.ABORTED})


async def check_follow_up(journal: Journal, action: str, body: Mapping[str, Any]) -> None:
    """Refuse ``action`` (a void or refund) now when its original in the journal rules it out.

    Raises:
        RequestError: MB45, MB46, MB47 or MB48 (see the module text); nothing was sent.
    """
    original_no = str(body["originalTraceNo"])
    original = await journal.get(original_no)
    if original is None:
        return  # not ours to judge: the backend decides
    _check_original(original, FOLLOW_UP_ACTIONS[action])
    counted = [
        record
        for record in await journal.followers(original_no, FOLLOW_UP_ACTIONS)
        if record.state not in _MOVED_NOTHING
    ]
    voids = [record for record in counted if kind_of(record.action) is TransactionKind.VOID]
    refunds = [record for record in counted if kind_of(record.action) is TransactionKind.REFUND]
    if voids:
        raise _refused(ReturnCode.ORIGINAL_VOIDED, f"{original_no} has the void {voids[0].trace_no} ({voids[0].state})")
    if kind_of(action) is TransactionKind.VOID:
        if refunds:
            shown = ", ".join(record.trace_no for record in refunds)
            raise _refused(ReturnCode.ORIGINAL_REFUNDED, f"{original_no} has the refund(s) {shown}")
        return
    _check_rest(original, refunds, _amount(body["refundAmount"]))


async def as_sent(journal: Journal, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` (a void or refund) naming its original as the backend knows it (an options sale's second round)."""
    return {**body, "originalTraceNo": await sent_as(journal, str(body["originalTraceNo"]))}


def _check_original(original: TransactionRecord, family: str) -> None:
    if original.action != family:
        raise _refused(ReturnCode.ORIGINAL_NOT_QR_SALE, f"{original.trace_no} is a {original.action}, not a {family}")
    if original.state in (TxnState.VOIDED, TxnState.VOIDING):
        raise _refused(ReturnCode.ORIGINAL_VOIDED, f"{original.trace_no} is {original.state} by misbridge")
    if original.state != TxnState.APPROVED:
        raise _refused(ReturnCode.ORIGINAL_NOT_QR_SALE, f"{original.trace_no} is {original.state}, not approved")


def _check_rest(original: TransactionRecord, refunds: list[TransactionRecord], wanted: Decimal) -> None:
    refunded = sum((_amount(record.request["refundAmount"]) for record in refunds), Decimal(0))
    rest = _amount(original.request["totalAmount"]) - refunded
    if wanted > rest:
        raise _refused(
            ReturnCode.REFUND_OVER_REST,
            f"refundAmount {wanted} is more than the {rest} left of {original.trace_no} ({refunded} refunded)",
        )


def _amount(value: object) -> Decimal:
    """An amount as the journal or the request holds it (a JSON number), exactly."""
    return Decimal(str(value))


def _refused(code: ReturnCode, detail: str) -> RequestError:
    return RequestError(f"{code.meaning}: {detail}", return_code=code)
