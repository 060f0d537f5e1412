"""The end of day's comparison and report (misbridge.core.reconcile): statuses, advice, totals, the report's forms."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from misbridge.core.endofday import BookStatus, DayRecord, SetAside
from misbridge.core.reconcile import (
    CSV_COLUMNS,
    ReconcileReport,
    SettleLine,
    SummaryTotals,
    Totals,
    advice,
    by_activity,
    compare,
    journal_totals,
    money,
    settle_lines,
)

D = Decimal


def record(
    trace_no: str,
    action: str = "cardPayment",
    state: str = "approved",
    amount: str = "40.80",
    status: int = 1,
    activity: str = "",
) -> DayRecord:
    return DayRecord(trace_no, trace_no, action, state, D(amount), BookStatus(status), "20260501120000", activity)


def test_a_record_matches_only_with_the_status_misbridge_believes() -> None:
    records = [record("A"), record("B", status=6), record("C", status=5), record("D")]
    matched, mismatches = compare(records, {"A": 1, "B": 1, "C": 5}, {"B": "ORD-B"})
    assert matched == 2
    assert [(m.record.trace_no, m.backend_status, m.order_no) for m in mismatches] == [
        ("B", 1, "ORD-B"),
        ("D", None, ""),
    ]
    assert (
        "a void or refund may not have reached the backend: call e-Buy with orderNo ORD-B" in mismatches[0].what_to_do
    )
    assert mismatches[1].what_to_do.startswith("the backend's answer did not list this record: run misbridge reconcile")
    assert "orderNo (none in the journal) and traceNo D" in mismatches[1].what_to_do


@pytest.mark.parametrize(
    ("believed", "state", "backend", "starts"),
    [
        (1, "approved", 4, "status 4, journal approved: the backend has no record: call e-Buy with orderNo O1"),
        (5, "declined", 4, "status 4, journal declined: nothing moved on either side"),
        (1, "approved", 2, "status 2: the backend charged more than the till (40.80)"),
        (1, "approved", 3, "status 3: the backend charged less than the till (40.80)"),
        (1, "approved", 0, "the backend has not decided it yet: run misbridge reconcile again later"),
        (6, "voided", 8, "status 8, journal voided: the backend holds a refund the journal does not"),
        (1, "approved", 9, "status 9 is not in the book"),
    ],
)
def test_the_advice_names_the_disagreement_and_the_next_step(
    believed: int, state: str, backend: int, starts: str
) -> None:
    assert advice(record("T1", state=state, status=believed), backend, "O1").startswith(starts)


def test_the_totals_count_money_as_the_summary_does() -> None:
    day = [
        record("S1", amount="40.8"),  # approved sale
        record("S2", amount="10.00", status=8),  # refunded later: still a sale
        record("S3", state="voided", amount="5.00", status=6),  # misbridge voided it: a sale and its void call
        record("S5", state="voided", amount="2.00", status=6),  # the POS voided it: V5 below is its void
        record("S4", state="declined", amount="99.00", status=5),  # moved nothing
        record("R1", action="refundCardSale", amount="3.30"),
        record("V1", action="voidCardSale", amount="1.00"),
        record("V5", action="voidCardSale", amount="2.00"),
        record("A1", action="accumulating", amount="7.00"),  # points, no money
    ]
    assert journal_totals(day, {"S3"}) == Totals(volume=8, net=D("46.50"))
    assert journal_totals(day) == Totals(volume=7, net=D("51.50"))  # S3's void call not counted
    assert journal_totals([]) == Totals(0, D(0))


def test_money_adds_zeros_and_never_rounds() -> None:
    assert [money(D(v)) for v in ("40.8", "12000", "0", "1.234", "-3.3")] == [
        "40.80",
        "12000.00",
        "0.00",
        "1.234",
        "-3.30",
    ]


def test_the_activity_lines_set_sales_and_refunds_apart_per_activity() -> None:
    day = [
        record("S1", amount="40.8", activity="ACT1"),
        record("S2", amount="10.00", activity="ACT1", status=8),  # refunded: still a sale
        record("S3", state="voided", amount="5.00", status=6, activity="ACT2"),  # misbridge voided it
        record("S4", state="declined", amount="99.00", status=5, activity="ACT1"),  # moved nothing
        record("R1", action="refundCardSale", amount="3.30", activity="ACT1"),
        record("Q1", action="qrcodeSale", amount="1.00"),  # its goods named no single activity
        record("A1", action="accumulating", amount="7.00", activity="ACT1"),  # points, no money
    ]
    settle = [
        SettleLine("ACT1", "积分兑换", False, 1, D("40.80")),  # split by customer: the same activity twice
        SettleLine("ACT1", "积分兑换", False, 1, D("10")),
        SettleLine("ACT1", "退货", True, 1, D("3.30")),
        SettleLine("ACT2", "收单", False, 1, D("5.00")),
        SettleLine("ACT3", "其他", False, 2, D("8.00")),  # the backend only
    ]
    lines = by_activity(day, {"S3"}, settle)
    shown = [(line.activity_no, line.activity_name, line.is_refund, line.journal, line.backend) for line in lines]
    assert shown == [
        ("", "qrcodeSale", False, Totals(1, D("1.00")), Totals(0, D(0))),
        ("ACT1", "积分兑换", False, Totals(2, D("50.80")), Totals(2, D("50.80"))),
        ("ACT1", "退货", True, Totals(1, D("3.30")), Totals(1, D("3.30"))),
        ("ACT2", "收单", False, Totals(1, D("5.00")), Totals(1, D("5.00"))),
        ("ACT2", "cardPayment", True, Totals(1, D("5.00")), Totals(0, D(0))),  # the void call of S3
        ("ACT3", "其他", False, Totals(0, D(0)), Totals(2, D("8.00"))),
    ]
    assert [line.agree for line in lines] == [False, True, True, True, False, False]
    assert lines[1].to_json() == {
        "activityNo": "ACT1",
        "activityName": "积分兑换",
        "isRefund": False,
        "journal": {"volume": 2, "totalAmount": "50.80"},
        "backend": {"volume": 2, "totalAmount": "50.80"},
        "agree": True,
    }
    assert by_activity([], (), []) == ()
    assert by_activity(day, (), None) == ()  # no settleRecord: nothing to compare per activity


def report(
    mismatched: bool,
    backend_net: str = "40.80",
    settle: tuple[SettleLine, ...] | None = None,
    totals_decide: bool = False,
) -> ReconcileReport:
    records = [record("A", activity="ACT1")]
    _, mismatches = compare(records, {"A": 4 if mismatched else 1}, {"A": "O-A"})
    return ReconcileReport(
        business_date=date(2026, 5, 1),
        run_at=datetime(2026, 5, 2, 4, 5, tzinfo=UTC),
        begin_time="20260501040000",
        end_time="20260502035959",
        upload_trace_nos=("U1",),
        summary_trace_no="S1",
        uploaded=1,
        matched=1 - len(mismatches),
        mismatches=tuple(mismatches),
        set_aside=(SetAside("P1", "cardPayment", "unknown", "not final (unknown): its outcome is not known yet"),),
        journal=journal_totals(records),
        backend=SummaryTotals(Totals(1, D(backend_net)), "20260501040000", "20260502040000", settle),
        activities=by_activity(records, (), settle),
        totals_decide=totals_decide,
    )


def test_the_exit_status_follows_the_records_and_a_totals_difference_is_shown() -> None:
    assert report(mismatched=False).exit_status == 0
    assert report(mismatched=True).exit_status == 3
    differing = report(mismatched=False, backend_net="0")
    assert differing.exit_status == 0  # the summary counts since the previous one: a person judges
    assert not differing.totals_agree
    assert "net 0.00  -> DIFFER" in differing.table()
    assert differing.to_json()["totals"]["agree"] is False
    assert "result: every record matches; the totals differ" in differing.table()
    assert report(mismatched=False, backend_net="0", totals_decide=True).exit_status == 3
    assert report(mismatched=False, totals_decide=True).exit_status == 0


def test_an_activity_that_differs_is_a_totals_difference() -> None:
    agreeing = report(mismatched=False, settle=(SettleLine("ACT1", "收单", False, 1, D("40.80")),))
    assert agreeing.totals_agree
    assert "ACT1 收单, sales: 1 40.80 | 1 40.80  -> agree" in agreeing.table()
    differing = (SettleLine("ACT9", "收单", False, 1, D("40.80")),)  # the same total, another activity
    assert not report(mismatched=False, settle=differing).totals_agree
    assert report(mismatched=False, settle=differing, totals_decide=True).exit_status == 3
    without = report(mismatched=False)
    assert without.totals_agree
    assert "by activity: the summary gave no settleRecord lines" in without.table()
    assert without.to_json()["totals"]["byActivity"] is None
    rows = report(mismatched=False, settle=differing).csv_rows()
    assert [(row["kind"], row["activityNo"], row["backend_meaning"]) for row in rows[-4:]] == [
        ("activity_journal", "ACT1", ""),
        ("activity_backend", "ACT1", "DIFFER"),
        ("activity_journal", "ACT9", ""),
        ("activity_backend", "ACT9", "DIFFER"),
    ]


def test_the_report_forms_hold_the_same_facts() -> None:
    shown = report(mismatched=True)
    table = shown.table()
    assert "  A  cardPayment  approved 40.80  ->  4 not in the backend" in table
    assert "SET ASIDE, not uploaded (1)" in table
    assert "  P1  cardPayment  unknown: not final (unknown)" in table
    data = shown.to_json()
    assert data["mismatches"][0]["journalAmount"] == "40.80"
    assert data["mismatches"][0]["orderNo"] == "O-A"
    assert data["exitStatus"] == 3
    rows = shown.csv_rows()
    assert all(set(row) == set(CSV_COLUMNS) for row in rows)
    assert [row["kind"] for row in rows] == ["mismatch", "set_aside", "journal_totals", "backend_totals"]
    assert rows[-1]["backend_meaning"] == "agree"


def test_settle_lines_read_the_books_lines_and_name_a_bad_field() -> None:
    book_line = {
        "activityNo": "2016101201",
        "activityName": "浦发银行积分兑换",
        "productName": "大杯",
        "customer": "浦发银行",
        "isRefund": False,
        "volume": 130,
        "totalReceiptAmount": "2082.10",
        "totalAmount": "2082.10",
    }
    assert settle_lines([book_line, {**book_line, "isRefund": True, "totalAmount": D("1.5")}]) == (
        SettleLine("2016101201", "浦发银行积分兑换", False, 130, D("2082.10")),
        SettleLine("2016101201", "浦发银行积分兑换", True, 130, D("1.5")),
    )
    assert settle_lines(None) is None
    assert settle_lines([]) == ()
    bad = {
        "settleRecord is not a list": {"activityNo": "1"},
        "line 1 has no 'isRefund'": [{k: v for k, v in book_line.items() if k != "isRefund"}],
        "line 2 is unreadable: isRefund is not true or false": [book_line, {**book_line, "isRefund": "false"}],
        "line 1 is unreadable: volume '130' is not a count": [{**book_line, "volume": "130"}],
        "line 1 is unreadable: volume -1 is not a count": [{**book_line, "volume": -1}],
        "line 1 is unreadable: totalAmount 'NaN' is not an amount": [{**book_line, "totalAmount": "NaN"}],
        "line 1 is unreadable: totalAmount '12,00' is not an amount": [{**book_line, "totalAmount": "12,00"}],
        "line 1 is unreadable: not an object": ["2082.10"],
        "line 1 is unreadable: totalAmount None is not an amount": [{**book_line, "totalAmount": None}],
    }
    for message, entries in bad.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            settle_lines(entries)
