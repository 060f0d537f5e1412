"""The end of day's comparison and report (misbridge.core.reconcile): statuses, advice, totals, the report's forms."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from misbridge.core.endofday import BookStatus, DayRecord, SetAside
from misbridge.core.reconcile import (
    CSV_COLUMNS,
    ReconcileReport,
    SummaryTotals,
    Totals,
    advice,
    compare,
    journal_totals,
    money,
)

D = Decimal


def record(
    trace_no: str, action: str = "cardPayment", state: str = "approved", amount: str = "40.80", status: int = 1
) -> DayRecord:
    return DayRecord(trace_no, trace_no, action, state, D(amount), BookStatus(status), "20260501120000")


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


def report(mismatched: bool, backend_net: str = "40.80") -> ReconcileReport:
    records = [record("A")]
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
        backend=SummaryTotals(Totals(1, D(backend_net)), "20260501040000", "20260502040000"),
    )


def test_the_exit_status_follows_the_records_and_a_totals_difference_is_shown() -> None:
    assert report(mismatched=False).exit_status == 0
    assert report(mismatched=True).exit_status == 3
    differing = report(mismatched=False, backend_net="0")
    assert differing.exit_status == 0  # the summary counts since the previous one: a person judges
    assert not differing.totals_agree
    assert "net 0.00  -> DIFFER" in differing.table()
    assert differing.to_json()["totals"]["agree"] is False


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
