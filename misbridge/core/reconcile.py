"""The end of day's comparison and report, without I/O: what the backend answered against what misbridge believes.

``misbridge reconcile`` (:mod:`misbridge.app.reconcile`) uploads the business day's records
(:mod:`misbridge.core.endofday`) with ``batchUpload`` and asks for the ``summary``; this module
decides what the answers mean:

* a record **matches** when the status batchUpload returned for it is the status misbridge
  believes; anything else (another status, or the record missing from the answer) is a
  :class:`Mismatch`, with what a person should do about it (:func:`advice`);
* the **totals**: the money transactions of the day as the journal holds them (sales approved,
  voided or refunded later count as sales; approved voids and refunds, and the void call of a
  sale misbridge voided itself, are subtracted; ``accumulating`` moves no money and is not counted),
  against the ``summary``'s ``volume`` and ``totalAmount``, exactly (Decimal).

* the **totals per activity** (:func:`by_activity`): where the ``summary`` gives its
  ``settleRecord`` lines (§8.8: ``activityNo``, ``isRefund``, ``volume``, ``totalAmount``), the
  journal's sales and its voids and refunds are added up per activityNo (the one the sale's
  approval named in its goodsDetail) and set against them, sales and refunds apart.

The ``summary`` counts what the backend decided since the *previous* summary, not one business
day: its totals agree with the day's only when the summary is asked once a day, after the day's
cut-off and before the next day's first sale. The report shows the summary's own
``beginDate``/``endDate`` so a reader can tell. That is why the totals decide the exit status
only when ``reconcile.totals_decide`` says the store's summary is asked so.

:class:`ReconcileReport` is the result: a readable table (:meth:`ReconcileReport.table`), JSON
(:meth:`ReconcileReport.to_json`) and CSV rows (:meth:`ReconcileReport.csv_rows`).

With several POS lanes (issue 16) each lane is reconciled on its own, under its own deviceNo,
and its report names it (:class:`ReportLane`): the table's heading, ``lane``/``deviceNo``/
``shopNo`` in the JSON, a first ``lane`` column in the CSV. A one-lane report has no lane and
reads exactly as before lanes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from misbridge.core.endofday import BookStatus, DayRecord, SetAside
from misbridge.core.machine import TransactionKind, kind_of

__all__ = [
    "CSV_COLUMNS",
    "EXIT_MATCHED",
    "EXIT_MISMATCHED",
    "STATUS_MEANINGS",
    "ActivityTotals",
    "Mismatch",
    "ReconcileReport",
    "ReportLane",
    "SettleLine",
    "SummaryTotals",
    "Totals",
    "advice",
    "by_activity",
    "compare",
    "exact_amount",
    "journal_totals",
    "meaning",
    "money",
    "settle_lines",
]

#: ``misbridge reconcile``'s exit status when every record and the totals agree.
EXIT_MATCHED: Final = 0
#: Its exit status when at least one record or the totals disagree.
EXIT_MISMATCHED: Final = 3

#: The book's transRecord statuses (§8.7), as the report prints them.
STATUS_MEANINGS: Final[Mapping[int, str]] = {
    0: "initial (the backend has not decided it yet)",
    1: "equal",
    2: "the backend holds more",
    3: "the backend holds less",
    4: "not in the backend",
    5: "failed",
    6: "reversed",
    7: "rolled back",
    8: "refunded",
}

#: The CSV file's columns, one row per mismatch and per set-aside transaction.
CSV_COLUMNS: Final = (
    "kind",
    "traceNo",
    "action",
    "journal_state",
    "journal_amount",
    "believed_status",
    "backend_status",
    "backend_meaning",
    "orderNo",
    "what_to_do",
    "volume",
    "net_amount",
    "activityNo",
    "isRefund",
)

_ACCUMULATING: Final = "accumulating"


def money(amount: Decimal) -> str:
    """An amount as the book writes it, exactly: at least two decimals ("40.80"), never rounded."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        return str(amount.quantize(Decimal("0.01")))  # exact: adding zeros
    return str(amount)


def meaning(status: int | None) -> str:
    """A batchUpload status in words; ``None``: the answer did not list the record."""
    if status is None:
        return "not in the backend's answer"
    return STATUS_MEANINGS.get(status, f"unknown status {status}")


@dataclass(frozen=True)
class Mismatch:
    """One uploaded record whose backend status is not the one misbridge believes."""

    record: DayRecord
    backend_status: int | None  # None: the backend's answer did not list the record
    order_no: str  # the backend's orderNo of the transaction, "" when the journal has none
    what_to_do: str

    def to_json(self) -> dict[str, Any]:
        """The mismatch as the JSON report holds it (amounts as exact strings)."""
        return {
            "traceNo": self.record.trace_no,
            "journalTraceNo": self.record.journal_trace_no,
            "action": self.record.action,
            "journalState": self.record.state,
            "journalAmount": money(self.record.paid_amount),
            "believedStatus": int(self.record.status),
            "backendStatus": self.backend_status,
            "backendMeaning": meaning(self.backend_status),
            "orderNo": self.order_no,
            "whatToDo": self.what_to_do,
        }


def advice(record: DayRecord, backend_status: int | None, order_no: str) -> str:
    """What a person should do when the backend answers ``backend_status`` for ``record``."""
    ask = f"call e-Buy with orderNo {order_no or '(none in the journal)'} and traceNo {record.trace_no}"
    believed = record.status
    if backend_status is None:
        return "the backend's answer did not list this record: run misbridge reconcile again; if it stays, " + ask
    if backend_status == 0:
        return "the backend has not decided it yet: run misbridge reconcile again later"
    if backend_status == 2:
        return f"status 2: the backend charged more than the till ({money(record.paid_amount)}): {ask}"
    if backend_status == 3:
        return f"status 3: the backend charged less than the till ({money(record.paid_amount)}): {ask}"
    if backend_status == 4:
        if believed is BookStatus.FAILED:
            return "status 4, journal declined: nothing moved on either side; no action needed beyond noting it"
        return f"status 4, journal {record.state}: the backend has no record: {ask}"
    if backend_status == 1:
        return (
            f"status 1, journal {record.state} ({_believed(believed)}): the backend holds it as plain equal; "
            f"a void or refund may not have reached the backend: {ask}"
        )
    if backend_status == 5:
        return f"status 5, journal {record.state}: the backend says it failed, the till took it as done: {ask}"
    if backend_status == 6:
        return f"status 6, journal {record.state}: the backend reversed it and the journal has no void: {ask}"
    if backend_status == 7:
        return f"status 7, journal {record.state}: the backend rolled it back, nothing took effect there: {ask}"
    if backend_status == 8:
        return f"status 8, journal {record.state}: the backend holds a refund the journal does not: {ask}"
    return f"status {backend_status} is not in the book: {ask}"


def _believed(status: BookStatus) -> str:
    return meaning(int(status))


def compare(
    records: Iterable[DayRecord], answered: Mapping[str, int], order_nos: Mapping[str, str]
) -> tuple[int, list[Mismatch]]:
    """How many ``records`` matched, and the mismatches, in order.

    ``answered`` is the status batchUpload returned per traceNo (the backend's traceNo, as
    uploaded); ``order_nos`` the journal's orderNo per backend traceNo (only the mismatches'
    are needed).
    """
    matched = 0
    mismatches: list[Mismatch] = []
    for record in records:
        status = answered.get(record.trace_no)
        if status == int(record.status):
            matched += 1
            continue
        order_no = order_nos.get(record.trace_no, "")
        mismatches.append(Mismatch(record, status, order_no, advice(record, status, order_no)))
    return matched, mismatches


@dataclass(frozen=True)
class Totals:
    """Money transactions counted and their net amount (sales less voids and refunds), exact."""

    volume: int
    net: Decimal

    def to_json(self) -> dict[str, Any]:
        """``{"volume": n, "totalAmount": "12.34"}`` (the amount as an exact string)."""
        return {"volume": self.volume, "totalAmount": money(self.net)}


@dataclass(frozen=True)
class SettleLine:
    """One ``settleRecord`` of the summary (§8.8): an activity's sales (or refunds) and their amount."""

    activity_no: str
    activity_name: str
    is_refund: bool
    volume: int
    amount: Decimal


@dataclass(frozen=True)
class SummaryTotals:
    """What the backend's ``summary`` answered: its totals, the period it covers, its settleRecord lines.

    ``settle`` is None when the answer had no ``settleRecord`` list (the totals are then
    compared as a whole only).
    """

    totals: Totals
    begin_date: str
    end_date: str
    settle: tuple[SettleLine, ...] | None = None


def settle_lines(entries: object) -> tuple[SettleLine, ...] | None:
    """A summary's ``settleRecord`` (§8.8) as lines; None when the reply has none.

    The book makes settleRecord mandatory; a backend that leaves it out is compared on its
    totals alone. Amounts may be strings (the book's example) or numbers.

    Raises:
        ValueError: settleRecord is not a list, or a line lacks a field or holds a bad one
            (the message names it).
    """
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise ValueError("settleRecord is not a list")
    return tuple(_settle_line(number, entry) for number, entry in enumerate(entries, start=1))


def _settle_line(number: int, entry: object) -> SettleLine:
    try:
        if not isinstance(entry, Mapping):
            raise TypeError("not an object")
        is_refund = entry["isRefund"]
        if not isinstance(is_refund, bool):
            raise TypeError("isRefund is not true or false")
        volume = entry["volume"]
        if isinstance(volume, bool) or int(volume) != volume or volume < 0:
            raise ValueError(f"volume {volume!r} is not a count")
        amount = entry["totalAmount"]
        exact = exact_amount(amount)
        if exact is None:
            raise ValueError(f"totalAmount {amount!r} is not an amount")
        return SettleLine(str(entry["activityNo"]), str(entry.get("activityName", "")), is_refund, int(volume), exact)
    except KeyError as missing:
        raise ValueError(f"settleRecord line {number} has no {missing}") from missing
    except (TypeError, ValueError) as bad:
        raise ValueError(f"settleRecord line {number} is unreadable: {bad}") from bad


def exact_amount(value: object) -> Decimal | None:
    """An amount of a backend reply exactly: a Decimal (as jsonio reads numbers), an int or a numeric string.

    None for anything else: a boolean, NaN, an infinity, text that is no number.
    """
    if isinstance(value, bool) or not isinstance(value, (Decimal, str, int)):
        return None
    try:
        exact = value if isinstance(value, Decimal) else Decimal(value)
    except ArithmeticError:
        return None
    return exact if exact.is_finite() else None


@dataclass(frozen=True)
class ActivityTotals:
    """One activity's sales (``is_refund`` False) or its voids and refunds, journal against backend.

    ``journal`` / ``backend`` hold the volume and the amount added up (positive, not netted);
    a side that has no such line holds zeros.
    """

    activity_no: str  # "" for the journal's sales without one activityNo
    activity_name: str
    is_refund: bool
    journal: Totals
    backend: Totals

    @property
    def agree(self) -> bool:
        """Whether both sides count the same transactions and amount, exactly."""
        return self.journal == self.backend

    def to_json(self) -> dict[str, Any]:
        """The line as the JSON report holds it (amounts as exact strings)."""
        return {
            "activityNo": self.activity_no,
            "activityName": self.activity_name,
            "isRefund": self.is_refund,
            "journal": self.journal.to_json(),
            "backend": self.backend.to_json(),
            "agree": self.agree,
        }


def by_activity(
    records: Iterable[DayRecord], self_voided: Collection[str], settle: Iterable[SettleLine] | None
) -> tuple[ActivityTotals, ...]:
    """The journal's day (as :func:`journal_totals` counts it) per activityNo and refund-or-not, against ``settle``.

    Lines are sorted by activityNo, sales before refunds; a line only one side has shows zeros
    on the other. ``settle`` None (the summary gave no settleRecord): no lines, nothing to set
    the journal against.
    """
    if settle is None:
        return ()
    journal: dict[tuple[str, bool], Totals] = {}
    names: dict[tuple[str, bool], str] = {}
    for record in records:
        if record.action == _ACCUMULATING or record.status is BookStatus.FAILED:
            continue
        is_sale = kind_of(record.action) is TransactionKind.SALE
        _add(journal, (record.activity_no, not is_sale), record.paid_amount)
        names.setdefault((record.activity_no, not is_sale), record.action)
        if is_sale and record.trace_no in self_voided:
            _add(journal, (record.activity_no, True), record.paid_amount)
            names.setdefault((record.activity_no, True), record.action)
    backend: dict[tuple[str, bool], Totals] = {}
    for line in settle:
        key = (line.activity_no, line.is_refund)
        backend[key] = _plus(backend.get(key, _NOTHING), Totals(line.volume, line.amount))
        names[key] = line.activity_name  # the backend's name wins over the journal's action
    return tuple(
        ActivityTotals(no, names[key], refund, journal.get(key, _NOTHING), backend.get(key, _NOTHING))
        for key in sorted(journal.keys() | backend.keys())
        for no, refund in (key,)
    )


_NOTHING: Final = Totals(0, Decimal(0))


def _plus(left: Totals, right: Totals) -> Totals:
    return Totals(left.volume + right.volume, left.net + right.net)


def _add(tally: dict[tuple[str, bool], Totals], key: tuple[str, bool], amount: Decimal) -> None:
    tally[key] = _plus(tally.get(key, _NOTHING), Totals(1, amount))


def journal_totals(records: Iterable[DayRecord], self_voided: Collection[str] = ()) -> Totals:
    """The day's money transactions as the journal holds them (module text): volume and net amount.

    ``self_voided`` names (by backend traceNo) the sales misbridge voided itself (an approved
    void call of its own, a reversal): that void is no journal transaction, but the backend
    counts it, so it is subtracted here. A sale the POS voided is ``voided`` too; its void is a
    record of its own and is subtracted as such.
    """
    volume = 0
    net = Decimal(0)
    for record in records:
        if record.action == _ACCUMULATING or record.status is BookStatus.FAILED:
            continue
        volume += 1
        if kind_of(record.action) is not TransactionKind.SALE:
            net -= record.paid_amount
            continue
        net += record.paid_amount
        if record.trace_no in self_voided:
            volume += 1
            net -= record.paid_amount
    return Totals(volume, net)


@dataclass(frozen=True)
class ReportLane:
    """The POS lane a report is of, when misbridge serves several: its name and the identity it uploaded under.

    ``default`` marks the default lane (the journal's rows without a lane), whose report files
    keep the names they had before lanes.
    """

    name: str
    device_no: str
    shop_no: str
    default: bool = False

    def to_json(self) -> dict[str, str]:
        """The report's ``lane``, ``deviceNo`` and ``shopNo``."""
        return {"lane": self.name, "deviceNo": self.device_no, "shopNo": self.shop_no}


@dataclass(frozen=True)
class ReconcileReport:
    """One run of ``misbridge reconcile`` for one business day: what matched, what did not, the totals."""

    business_date: date
    run_at: datetime
    begin_time: str
    end_time: str
    upload_trace_nos: tuple[str, ...]
    summary_trace_no: str
    uploaded: int
    matched: int
    mismatches: tuple[Mismatch, ...]
    set_aside: tuple[SetAside, ...]
    journal: Totals
    backend: SummaryTotals
    activities: tuple[ActivityTotals, ...] = ()
    totals_decide: bool = False
    #: The lane reconciled, with several lanes; None with one (the report reads as before lanes).
    lane: ReportLane | None = None

    @property
    def totals_agree(self) -> bool:
        """Whether the summary's volume and net amount, and each activity line, equal the journal's, exactly."""
        return self.journal == self.backend.totals and all(line.agree for line in self.activities)

    @property
    def exit_status(self) -> int:
        """0 when every uploaded record matched, 3 when one did not (or the totals differ and decide).

        By default the totals do not decide it: the summary counts since the previous summary,
        so a re-run of a day (or a summary asked by the POS meanwhile) makes them differ with
        nothing wrong; a difference is printed for a person to judge (docs/operations.md, "End
        of day"). ``totals_decide`` (``reconcile.totals_decide``) is for a store whose summary
        is asked only by this run, once a day: then a difference is a mismatch too.
        """
        return EXIT_MISMATCHED if self.to_act_on else EXIT_MATCHED

    @property
    def to_act_on(self) -> int:
        """How many findings a person must act on: the mismatches, and the totals when they decide and differ."""
        return len(self.mismatches) + (1 if self.totals_decide and not self.totals_agree else 0)

    def to_json(self) -> dict[str, Any]:
        """The whole report as JSON-ready data (amounts as exact strings)."""
        lane = {} if self.lane is None else self.lane.to_json()
        return {
            "businessDate": self.business_date.isoformat(),
            **lane,
            "runAt": self.run_at.isoformat(),
            "beginTime": self.begin_time,
            "endTime": self.end_time,
            "batchUploadTraceNos": list(self.upload_trace_nos),
            "summaryTraceNo": self.summary_trace_no,
            "uploaded": self.uploaded,
            "matched": self.matched,
            "mismatches": [mismatch.to_json() for mismatch in self.mismatches],
            "setAside": [
                {"traceNo": s.trace_no, "action": s.action, "state": s.state, "reason": s.reason}
                for s in self.set_aside
            ],
            "totals": {
                "journal": self.journal.to_json(),
                "backend": {
                    **self.backend.totals.to_json(),
                    "beginDate": self.backend.begin_date,
                    "endDate": self.backend.end_date,
                },
                "byActivity": None if self.backend.settle is None else [line.to_json() for line in self.activities],
                "agree": self.totals_agree,
                "decide": self.totals_decide,
            },
            "exitStatus": self.exit_status,
        }

    @property
    def csv_columns(self) -> tuple[str, ...]:
        """The CSV's columns: :data:`CSV_COLUMNS`, after a ``lane`` column when the report is a lane's."""
        return CSV_COLUMNS if self.lane is None else ("lane", *CSV_COLUMNS)

    def csv_rows(self) -> list[dict[str, str]]:
        """One row per mismatch, per set-aside transaction, and the two totals, under :attr:`csv_columns`."""
        rows = self._csv_rows()
        if self.lane is None:
            return rows
        return [{"lane": self.lane.name, **row} for row in rows]

    def _csv_rows(self) -> list[dict[str, str]]:
        rows = [_mismatch_row(mismatch) for mismatch in self.mismatches]
        rows += [_set_aside_row(aside) for aside in self.set_aside]
        rows += [
            _totals_row("journal_totals", self.journal, ""),
            _totals_row("backend_totals", self.backend.totals, _verdict(self.journal == self.backend.totals)),
        ]
        for line in self.activities:
            rows.append(_activity_row("activity_journal", line, line.journal, ""))
            rows.append(_activity_row("activity_backend", line, line.backend, _verdict(line.agree)))
        return rows

    def table(self) -> str:
        """The report for a person, one fact per line."""
        lane = "" if self.lane is None else f"lane {self.lane.name} (deviceNo {self.lane.device_no}), "
        lines = [
            f"misbridge reconcile: {lane}business day {self.business_date} ({self.begin_time} to {self.end_time})",
            f"uploaded {self.uploaded} record(s) in {len(self.upload_trace_nos)} batchUpload call(s); "
            f"matched {self.matched}, mismatched {len(self.mismatches)}",
        ]
        if self.mismatches:
            lines.append("")
            lines.append("MISMATCHES (traceNo  action  journal state amount  ->  backend status: what to do)")
            for m in self.mismatches:
                status = "-" if m.backend_status is None else str(m.backend_status)
                lines.append(
                    f"  {m.record.trace_no}  {m.record.action}  {m.record.state} {money(m.record.paid_amount)}"
                    f"  ->  {status} {meaning(m.backend_status)}"
                )
                lines.append(f"      what to do: {m.what_to_do}")
        if self.set_aside:
            lines.append("")
            lines.append(f"SET ASIDE, not uploaded ({len(self.set_aside)}): settle these first, then run again")
            for aside in self.set_aside:
                lines.append(f"  {aside.trace_no}  {aside.action}  {aside.state}: {aside.reason}")
        backend = self.backend.totals
        lines += [
            "",
            f"totals   journal: {self.journal.volume} transaction(s), net {money(self.journal.net)}",
            f"         backend summary ({self.backend.begin_date} to {self.backend.end_date}): "
            f"{backend.volume} transaction(s), net {money(backend.net)}  -> "
            + _verdict(self.journal == backend, explained=True),
            *self._activity_lines(),
            "",
            self._result_line(),
        ]
        return "\n".join(lines)

    def _result_line(self) -> str:
        if self.mismatches:
            return "result: MISMATCHES, act on them"
        if self.exit_status == EXIT_MISMATCHED:
            return "result: the TOTALS DIFFER and decide here (reconcile.totals_decide): act on them"
        if not self.totals_agree:
            return "result: every record matches; the totals differ, alone no mismatch (reconcile.totals_decide)"
        return "result: everything matches"

    def _activity_lines(self) -> list[str]:
        if self.backend.settle is None:
            return ["         by activity: the summary gave no settleRecord lines"]
        lines = ["         by activity (activityNo name, sales or refunds: journal | backend):"]
        for line in self.activities:
            side = "refunds" if line.is_refund else "sales"
            lines.append(
                f"           {line.activity_no or '(none)'} {line.activity_name}, {side}: "
                f"{line.journal.volume} {money(line.journal.net)} | {line.backend.volume} {money(line.backend.net)}"
                f"  -> {_verdict(line.agree)}"
            )
        return lines


def _verdict(agree: bool, *, explained: bool = False) -> str:
    if agree:
        return "agree"
    return "DIFFER: see docs/operations.md, 'End of day: running the reconciliation'" if explained else "DIFFER"


def _activity_row(kind: str, line: ActivityTotals, totals: Totals, verdict: str) -> dict[str, str]:
    row = _totals_row(kind, totals, verdict)
    row.update(action=line.activity_name, activityNo=line.activity_no, isRefund=str(line.is_refund).lower())
    return row


def _mismatch_row(mismatch: Mismatch) -> dict[str, str]:
    record = mismatch.record
    return {
        "kind": "mismatch",
        "traceNo": record.trace_no,
        "action": record.action,
        "journal_state": record.state,
        "journal_amount": money(record.paid_amount),
        "believed_status": str(int(record.status)),
        "backend_status": "" if mismatch.backend_status is None else str(mismatch.backend_status),
        "backend_meaning": meaning(mismatch.backend_status),
        "orderNo": mismatch.order_no,
        "what_to_do": mismatch.what_to_do,
        "volume": "",
        "net_amount": "",
        "activityNo": record.activity_no,
        "isRefund": "",
    }


def _set_aside_row(aside: SetAside) -> dict[str, str]:
    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(kind="set_aside", traceNo=aside.trace_no, action=aside.action, journal_state=aside.state)
    row["what_to_do"] = aside.reason
    return row


def _totals_row(kind: str, totals: Totals, verdict: str) -> dict[str, str]:
    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(kind=kind, volume=str(totals.volume), net_amount=money(totals.net), backend_meaning=verdict)
    return row
