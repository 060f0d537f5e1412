"""The end of day's records: what misbridge believes of one business day, as batchUpload wants it.

A business day ``D`` runs from ``D`` at ``reconcile.cut_off`` to ``D+1`` at ``cut_off``, local
time in ``reconcile.time_zone`` (:class:`BusinessDay`); a transaction belongs to the day in
which the POS asked for it (its journal ``created_at``). A store that closes at 02:00 therefore
books its 01:30 sale on the day before.

:func:`day_records` reads the journal (:meth:`misbridge.journal.store.Journal.day_rows`) and
:func:`records_of` decides, without I/O, one book transRecord (§8.7: ``traceNo``,
``paidAmount``, ``status``) per transaction that moved (or may have moved) value: sales
(``cardRedemption``, ``cardPayment``, ``qrcodeSale``, ``accumulating``), voids and refunds.

Which status misbridge believes, per kind and final state (the book's §8.7 numbers):

=======  ==========  =========================================  ======  ==========================
kind     state       its voids / refunds (any day)              status  paidAmount
=======  ==========  =========================================  ======  ==========================
sale     approved    none approved                              1       the approval's paidAmount
sale     approved    an approved void                           6       (the request's totalAmount
sale     approved    an approved refund (no void)               8       when the approval has none)
sale     voided      (misbridge voided it: unknown outcome)     6       as above
sale     declined    —                                          5       the request's totalAmount
void     approved    —                                          1       the voided sale's, as above
refund   approved    —                                          1       the approval's refundAmount
                                                                        (else the request's)
void,    declined    —                                          5       as for approved
refund
any      aborted     —                                          not uploaded: never reached the
                                                                backend, nothing moved
=======  ==========  =========================================  ======  ==========================

Set aside, not guessed (:attr:`DayRecords.set_aside`, each with its reason): a transaction
that is not final (``submitting``, ``unknown``, ``voiding``, ``needs_manual``, still on the
pad, …); an approved sale with a void or refund that is not final (1, 6 or 8 would be a
guess); a void whose sale the journal does not hold (its amount is unknown).

A void or refund that is declined or aborted counts for nothing (it moved nothing). The status
is what misbridge believes *now*: a sale of day D refunded on day D+1 is uploaded with 8 when
day D is reconciled after the refund, as the backend would then answer.

``traceNo`` is the one the backend knows: an options ``qrcodeSale`` (a first round that offered
options) went out, and was paid, under its last option round's traceNo
(:func:`misbridge.core.flow.sent_as`); every other transaction under its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import IntEnum
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from misbridge.config.settings import MAX_BATCH_SIZE, ReconcileSettings
from misbridge.core.followups import FOLLOW_UP_ACTIONS
from misbridge.core.kinds import TABLES
from misbridge.core.machine import TransactionKind, TxnState, kind_of
from misbridge.journal.day import DayRows
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal

__all__ = [
    "BOOK_TIME_FORMAT",
    "BookStatus",
    "BusinessDay",
    "DayRecord",
    "DayRecords",
    "SetAside",
    "batches",
    "business_day",
    "business_day_at",
    "day_records",
    "records_of",
]

#: The book's local time format (transDate, beginTime, endTime).
BOOK_TIME_FORMAT: Final = "%Y%m%d%H%M%S"
_APPROVED_CODE: Final = "00"
#: A void or refund in one of these moved nothing: it does not change its sale's status.
_MOVED_NOTHING: Final = frozenset({TxnState.DECLINED, TxnState.ABORTED})


class BookStatus(IntEnum):
    """The transRecord statuses misbridge may believe (book §8.7); 2, 3, 4 and 7 only the backend answers."""

    EQUAL = 1
    FAILED = 5
    REVERSED = 6
    REFUNDED = 8


@dataclass(frozen=True)
class BusinessDay:
    """The business day ``business_date``: from ``begin`` (included) to ``end`` (excluded), aware, in the day's zone."""

    business_date: date
    begin: datetime
    end: datetime

    @classmethod
    def of(cls, day: date, cut_off: time, zone: ZoneInfo) -> BusinessDay:
        """Business day ``day``: ``day`` at ``cut_off`` to the next day at ``cut_off``, local time in ``zone``.

        On a daylight-saving change the day is an hour shorter or longer: it still ends when
        the wall clock shows ``cut_off``.
        """
        begin = datetime.combine(day, cut_off, tzinfo=zone)
        end = datetime.combine(day + timedelta(days=1), cut_off, tzinfo=zone)
        return cls(day, begin, end)

    @property
    def begin_time(self) -> str:
        """batchUpload's ``beginTime``: the first second of the day, yyyyMMddHHmmss local."""
        return self.book_time(self.begin)

    @property
    def end_time(self) -> str:
        """batchUpload's ``endTime``: the last second of the day (the book's times are whole seconds)."""
        return self.book_time(self.end - timedelta(seconds=1))

    def book_time(self, moment: datetime) -> str:
        """``moment`` (aware) as the book's yyyyMMddHHmmss, local time in the day's zone."""
        return moment.astimezone(self.begin.tzinfo).strftime(BOOK_TIME_FORMAT)

    def holds(self, moment: datetime) -> bool:
        """Whether the aware ``moment`` falls in this business day."""
        return self.begin <= moment < self.end


def business_day_at(moment: datetime, cut_off: time, zone: ZoneInfo) -> date:
    """The business date ``moment`` (aware) belongs to: before ``cut_off`` local, the day before's."""
    local = moment.astimezone(zone)
    return local.date() - timedelta(days=1) if local.time() < cut_off else local.date()


def business_day(settings: ReconcileSettings, day: date) -> BusinessDay:
    """Business day ``day`` as ``[reconcile]`` configures it.

    Raises:
        ValueError: ``settings.time_zone`` names no zone.
    """
    return BusinessDay.of(day, settings.cut_off_time(), settings.zone())


@dataclass(frozen=True)
class DayRecord:
    """One transaction of the day as misbridge believes it; :meth:`trans_record` is its book form."""

    trace_no: str  # as the backend knows it (an options sale's last round)
    journal_trace_no: str  # as the POS named it, the journal's key
    action: str
    state: str
    paid_amount: Decimal
    status: BookStatus
    trans_time: str  # when the POS asked, yyyyMMddHHmmss local
    #: The sale's activityNo as its approval's goodsDetail gave it (a void's or refund's: its sale's);
    #: "" when the journal has none, or the sale's goods name several.
    activity_no: str = ""

    def trans_record(self) -> dict[str, Any]:
        """The book's transRecord (§8.7): ``traceNo``, ``paidAmount`` (exact), ``status`` (a number, as §11.2 sends)."""
        return {"traceNo": self.trace_no, "paidAmount": self.paid_amount, "status": int(self.status)}


@dataclass(frozen=True)
class SetAside:
    """A transaction of the day not uploaded because misbridge does not know what to believe; why."""

    trace_no: str
    action: str
    state: str
    reason: str


@dataclass(frozen=True)
class DayRecords:
    """The business day's records, oldest first, and what was set aside instead of guessed."""

    day: BusinessDay
    records: tuple[DayRecord, ...]
    set_aside: tuple[SetAside, ...]

    def trans_records(self) -> list[dict[str, Any]]:
        """Every record's book form, in order."""
        return [record.trans_record() for record in self.records]

    def batches(self, size: int = MAX_BATCH_SIZE) -> list[list[dict[str, Any]]]:
        """:meth:`trans_records` in batchUpload calls of at most ``size`` records.

        Raises:
            ValueError: ``size`` is not 1 to 5000.
        """
        return batches(self.trans_records(), size)


_T = TypeVar("_T")


def batches(items: Sequence[_T], size: int = MAX_BATCH_SIZE) -> list[list[_T]]:
    """``items`` in order, cut into lists of ``size`` (the last one shorter); none for no items.

    Raises:
        ValueError: ``size`` is not 1 to 5000 (the book's most per batchUpload).
    """
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_SIZE} records, not {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


async def day_records(journal: Journal, day: BusinessDay) -> DayRecords:
    """Business day ``day``'s records from ``journal`` (:func:`records_of` on what it holds).

    Raises:
        JournalError: the read failed or a row is corrupt.
    """
    return records_of(await journal.day_rows(day.begin, day.end, FOLLOW_UP_ACTIONS), day)


def records_of(rows: DayRows, day: BusinessDay) -> DayRecords:
    """The rule of the module text applied to ``rows`` (what the journal holds of ``day``)."""
    followers = _followers_by_original(rows.followers)
    records: list[DayRecord] = []
    set_aside: list[SetAside] = []
    for transaction in rows.transactions:
        outcome = _believed(transaction, followers.get(transaction.trace_no, ()), rows.originals)
        if isinstance(outcome, str):
            set_aside.append(SetAside(transaction.trace_no, transaction.action, transaction.state, outcome))
        elif outcome is not None:
            status, paid = outcome
            trace_no = rows.sent_as.get(transaction.trace_no, transaction.trace_no)
            trans_time = day.book_time(transaction.created_at)
            activity_no = _activity_of(transaction, rows.originals)
            records.append(
                DayRecord(
                    trace_no,
                    transaction.trace_no,
                    transaction.action,
                    transaction.state,
                    paid,
                    status,
                    trans_time,
                    activity_no,
                )
            )
    return DayRecords(day, tuple(records), tuple(set_aside))


def _activity_of(transaction: TransactionRecord, originals: Mapping[str, TransactionRecord]) -> str:
    """The activityNo the backend books ``transaction`` under: its sale's approval's goodsDetail (§8.1).

    The book returns ``activityNo`` per goodsDetail entry "once e-Buy backend system confirm
    transaction success"; a sale whose entries name one activity is that activity's. None, or
    several (the amount per activity is not known), give "".
    """
    if kind_of(transaction.action) is TransactionKind.SALE:
        sale: TransactionRecord | None = transaction
    else:
        sale = originals.get(str(transaction.request.get("originalTraceNo")))
    goods = ((sale.response or {}) if sale is not None else {}).get("goodsDetail")
    if not isinstance(goods, list):
        return ""
    named = {str(item["activityNo"]) for item in goods if isinstance(item, dict) and item.get("activityNo")}
    return named.pop() if len(named) == 1 else ""


def _followers_by_original(followers: Iterable[TransactionRecord]) -> dict[str, list[TransactionRecord]]:
    by_original: dict[str, list[TransactionRecord]] = {}
    for follower in followers:
        by_original.setdefault(str(follower.request.get("originalTraceNo")), []).append(follower)
    return by_original


#: What :func:`_believed` decides: a status and paidAmount, a reason to set it aside, or None (not uploaded).
_Belief = tuple[BookStatus, Decimal] | str | None


def _believed(
    transaction: TransactionRecord, followers: Sequence[TransactionRecord], originals: Mapping[str, TransactionRecord]
) -> _Belief:
    kind = kind_of(transaction.action)
    state = TxnState(transaction.state)
    if state not in TABLES[kind].final_states:
        return f"not final ({state.value}): its outcome is not known yet"
    if state is TxnState.ABORTED:
        return None
    if kind is TransactionKind.SALE:
        return _sale(transaction, state, followers)
    if state is not TxnState.APPROVED and state is not TxnState.DECLINED:
        raise AssertionError(f"{transaction.trace_no}: a {kind.value} has no final state {state.value!r}")
    status = BookStatus.EQUAL if state is TxnState.APPROVED else BookStatus.FAILED
    if kind is TransactionKind.REFUND:
        return status, _approved_amount(transaction, "refundAmount", "refundAmount")
    original = originals.get(str(transaction.request.get("originalTraceNo")))
    if original is None:
        return "the voided sale is not in the journal: the void's amount is unknown"
    return status, _approved_amount(transaction, "paidAmount", None, fallback=_sale_amount(original))


def _sale(transaction: TransactionRecord, state: TxnState, followers: Sequence[TransactionRecord]) -> _Belief:
    amount = _sale_amount(transaction)
    if state is TxnState.DECLINED:
        return BookStatus.FAILED, amount
    if state is TxnState.VOIDED:
        return BookStatus.REVERSED, amount
    counted = [follower for follower in followers if follower.state not in _MOVED_NOTHING]
    unsettled = [follower for follower in counted if follower.state != TxnState.APPROVED]
    if unsettled:
        shown = ", ".join(f"{follower.action} {follower.trace_no} ({follower.state})" for follower in unsettled)
        return f"its {shown} is not final: 1, 6 or 8 would be a guess"
    if any(kind_of(follower.action) is TransactionKind.VOID for follower in counted):
        return BookStatus.REVERSED, amount
    if counted:
        return BookStatus.REFUNDED, amount
    return BookStatus.EQUAL, amount


def _sale_amount(sale: TransactionRecord) -> Decimal:
    """What a sale paid: its approval's paidAmount, else what the POS asked (totalAmount)."""
    return _approved_amount(sale, "paidAmount", "totalAmount")


def _approved_amount(
    record: TransactionRecord, answer_key: str, request_key: str | None, *, fallback: Decimal | None = None
) -> Decimal:
    """``answer_key`` of ``record``'s approval, else its request's ``request_key`` (else ``fallback``), exactly."""
    answer = record.response or {}
    if answer.get("returnCode") == _APPROVED_CODE and answer.get(answer_key) is not None:
        return _exact(answer[answer_key])
    if request_key is not None:
        return _exact(record.request[request_key])
    if fallback is None:
        raise AssertionError(f"{record.trace_no}: no amount to fall back on")
    return fallback


def _exact(value: object) -> Decimal:
    """An amount as the journal holds it (a JSON number read as Decimal, or a numeric string), exactly."""
    return value if isinstance(value, Decimal) else Decimal(str(value))
