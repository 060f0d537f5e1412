"""Before a void or refund is prompted or sent: what the journal knows of its original (docs/reliability.md).

``voidQrcodeSale``, ``refundQrcodeSale``, ``voidCardSale`` and ``refundCardSale`` name the sale
they undo by ``originalTraceNo``. When the journal holds that sale, misbridge refuses what the
backend would refuse, before anything is sent and, for a card void or refund, before the
customer is asked for card and PIN, each with its own code:

* the original is not an approved sale of the action's family (a QR void or refund of a card
  sale, declined, still unknown): MB48 for a QR one, MB49 for a card one;
* the original is voided (by misbridge, or being voided by it, or by a void that is approved or
  still unresolved): MB45;
* a void of an original with a refund (approved or unresolved): MB46;
* a refund above what is left: ``totalAmount`` minus the ``refundAmount`` of every refund that
  is approved or unresolved, in exact decimals: MB47;
* a card void of a ``cardPayment`` without ``acquirer`` (book §10.5: mandatory for voiding an
  acquiring transaction): MB10 naming ``acquirer``; a card void or refund naming another
  acquirer than the ``cardPayment``'s: MB11 naming it.

A void or refund that is unresolved (not declined or aborted) counts as done: it may have
happened. When the journal does not hold the original, the backend decides.

The caller runs the check and records the intent under one lock (:func:`record_follow_up`), so
two refunds of one sale cannot both pass the check.

The backend knows an options sale by its second round's traceNo, so a void or refund of one goes
out naming that (:func:`as_sent`); the journal keeps the POS's request as it came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from misbridge.core.flow import sent_as
from misbridge.core.machine import TransactionKind, TxnState, kind_of
from misbridge.ebuy.requests import CARD_ACTIONS
from misbridge.errors import RequestError, ReturnCode
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal

__all__ = [
    "CARD_FOLLOW_UPS",
    "FOLLOW_UP_ACTIONS",
    "QR_FOLLOW_UPS",
    "as_posted",
    "as_sent",
    "batch_as_posted",
    "batch_as_sent",
    "check_follow_up",
    "record_follow_up",
]  # fmt: skip

#: The POS actions that undo a QR sale (no pad), and those that undo a card sale (card and PIN on the pad).
QR_FOLLOW_UPS: Final = ("voidQrcodeSale", "refundQrcodeSale")
CARD_FOLLOW_UPS: Final = ("voidCardSale", "refundCardSale")
#: Every void or refund, and the sale actions it may undo.
FOLLOW_UP_ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    **{action: ("qrcodeSale",) for action in QR_FOLLOW_UPS},
    **{action: CARD_ACTIONS for action in CARD_FOLLOW_UPS},
}
#: A void or refund in one of these moved nothing: it does not count against its original.
_MOVED_NOTHING: Final = frozenset({TxnState.DECLINED, TxnState.ABORTED})


async def record_follow_up(
    journal: Journal, lock: asyncio.Lock, action: str, record: TransactionRecord, body: Mapping[str, Any]
) -> TransactionRecord | None:
    """Check ``action`` against its original and record its intent (``record``), under ``lock``.

    Returns:
        The original as the journal holds it, or None when it does not (the backend decides).

    Raises:
        RequestError: as :func:`check_follow_up`; nothing was recorded.
    """
    async with lock:
        original = await check_follow_up(journal, action, body)
        await journal.record_intent(record)
    return original


async def check_follow_up(journal: Journal, action: str, body: Mapping[str, Any]) -> TransactionRecord | None:
    """Refuse ``action`` (a void or refund) now when its original in the journal rules it out.

    Returns:
        The original, or None when the journal does not hold it.

    Raises:
        RequestError: MB10, MB11, MB45, MB46, MB47, MB48 or MB49 (see the module text); nothing was sent.
    """
    original_no = str(body["originalTraceNo"])
    original = await journal.get(original_no)
    if original is None:
        return None  # not ours to judge: the backend decides
    _check_original(original, action)
    _check_acquirer(original, action, body)
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
        return original
    _check_rest(original, refunds, _amount(body["refundAmount"]))
    return original


async def as_sent(journal: Journal, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` (a void or refund) naming its original as the backend knows it (an options sale's second round)."""
    return {**body, "originalTraceNo": await sent_as(journal, str(body["originalTraceNo"]))}


def as_posted(answer: Mapping[str, Any], posted: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """The backend's ``answer`` to a void or refund sent as ``sent``, naming the original as the POS did.

    An options sale is known to the backend by its second round (:func:`as_sent`), which its
    answer may echo as ``originalTraceNo``; the POS named the sale by its own traceNo and gets
    that back (the journal and the transaction view keep both).
    """
    named = sent.get("originalTraceNo")
    if answer.get("originalTraceNo") == named and named != posted.get("originalTraceNo"):
        return {**answer, "originalTraceNo": posted.get("originalTraceNo")}
    return dict(answer)


def _check_original(original: TransactionRecord, action: str) -> None:
    family = FOLLOW_UP_ACTIONS[action]
    # A void or refund of the wrong family, or of a sale not approved: MB48 (QR) or MB49 (card).
    code = ReturnCode.ORIGINAL_NOT_QR_SALE if action in QR_FOLLOW_UPS else ReturnCode.ORIGINAL_NOT_CARD_SALE
    if original.action not in family:
        raise _refused(code, f"{original.trace_no} is a {original.action}, not a {' or '.join(family)}")
    if original.state in (TxnState.VOIDED, TxnState.VOIDING):
        raise _refused(ReturnCode.ORIGINAL_VOIDED, f"{original.trace_no} is {original.state} by misbridge")
    if original.state != TxnState.APPROVED:
        raise _refused(code, f"{original.trace_no} is {original.state}, not approved")


def _check_acquirer(original: TransactionRecord, action: str, body: Mapping[str, Any]) -> None:
    """A cardPayment's void names its acquirer (book §10.5); a void or refund never names another."""
    if original.action != "cardPayment":
        return
    acquirer, paid_with = body.get("acquirer"), original.request.get("acquirer")
    if acquirer is None and kind_of(action) is TransactionKind.VOID:
        raise RequestError(
            f"acquirer is mandatory for voiding a cardPayment ({original.trace_no} was paid via {paid_with})",
            return_code=ReturnCode.MISSING_FIELD,
        )
    if acquirer is not None and acquirer != paid_with:
        raise RequestError(
            f"acquirer {acquirer!r} is not the one {original.trace_no} was paid via ({paid_with})",
            return_code=ReturnCode.BAD_FIELD,
        )


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


async def batch_as_sent(journal: Journal, body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``batchUpload`` body with each record named as the backend knows it, and the renames made.

    A record of an options sale carries the POS's traceNo; the backend knows that sale by its
    second round (:func:`~misbridge.core.flow.sent_as`) and would answer it "not found". Returns
    the body to send and ``{sent traceNo: POS traceNo}`` for :func:`batch_as_posted`.
    """
    records = body.get("transRecord")
    if not isinstance(records, list):
        return dict(body), {}
    renames: dict[str, str] = {}
    sent_records = []
    for record in records:
        posted = record.get("traceNo") if isinstance(record, Mapping) else None
        sent = await sent_as(journal, posted) if isinstance(posted, str) else posted
        if isinstance(posted, str) and sent != posted:
            renames[str(sent)] = posted
            record = {**record, "traceNo": sent}
        sent_records.append(record)
    return {**body, "transRecord": sent_records}, renames


def batch_as_posted(answer: Mapping[str, Any], renames: Mapping[str, str]) -> dict[str, Any]:
    """The backend's ``batchUpload`` answer with each renamed record under the POS's traceNo again."""
    records = answer.get("transRecord")
    if not renames or not isinstance(records, list):
        return dict(answer)
    posted = [
        {**record, "traceNo": renames[record["traceNo"]]}
        if isinstance(record, Mapping) and record.get("traceNo") in renames
        else record
        for record in records
    ]
    return {**answer, "transRecord": posted}
