"""simulators.backend.ledger: the ledger file (atomic rewrite, reload, in-progress records) and applied."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from misbridge.ebuy import jsonio
from simulators.backend import Ledger, TraceRecord, TraceState
from simulators.cards import CARDS


def approved_sale(ledger: Ledger, trace_no: str) -> TraceRecord:
    record = ledger.count_submission(trace_no, "cardRedemption")
    ledger.apply("member", points_delta=0, balance_delta=Decimal("-40.8"))
    record.state, record.card, record.balance_delta = TraceState.APPROVED, "member", Decimal("-40.8")
    record.total_amount = Decimal("40.8")
    record.response = {"traceNo": trace_no, "returnCode": "00", "paidAmount": Decimal("40.8")}
    return record


def test_open_creates_the_file_and_reload_restores_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = Ledger.open(CARDS, path)
    assert path.exists()
    approved_sale(ledger, "S1")
    void = ledger.count_submission("V1", "voidCardSale")
    void.original_trace_no = "S1"
    assert ledger.next_order_serial() == 1
    ledger.save()
    reloaded = Ledger.open(CARDS, path)
    assert reloaded.snapshot() == ledger.snapshot()
    assert reloaded.balance("member") == Decimal("959.20")
    record = reloaded.get("S1")
    assert record is not None
    assert record.response["paidAmount"] == Decimal("40.8")
    assert reloaded.next_order_serial() == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]  # no temporary file left behind


def test_a_record_saved_in_progress_comes_back_not_applied(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = Ledger.open(CARDS, path)
    ledger.count_submission("S2", "cardRedemption").state = TraceState.IN_PROGRESS
    ledger.save()
    record = Ledger.open(CARDS, path).get("S2")
    assert record is not None
    assert (record.state, record.submissions, record.used) == (TraceState.NOT_APPLIED, 1, False)


@pytest.mark.parametrize("content", [b"", b"[]", b'{"format": 99}', b'{"format": 1, "balances": {}}'])
def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ledger.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="ledger"):
        Ledger.open(CARDS, path)


def test_without_a_file_save_does_nothing(tmp_path: Path) -> None:
    ledger = Ledger(CARDS)
    approved_sale(ledger, "S3")
    ledger.save()
    assert list(tmp_path.iterdir()) == []


def test_applied_and_kind() -> None:
    ledger = Ledger(CARDS)
    sale = approved_sale(ledger, "S4")
    inquiry = ledger.count_submission("I4", "inquiry")
    inquiry.state = TraceState.APPROVED
    assert (sale.kind, sale.applied, inquiry.kind, inquiry.applied) == ("sale", True, "inquiry", False)
    sale.state = TraceState.VOIDED
    assert not sale.applied
    assert ledger.count_submission("P4", "cardPayment").kind == "sale"
    saved = jsonio.loads(jsonio.dumps(sale.to_json()))
    assert (saved["state"], saved["applied"], saved["kind"]) == ("voided", False, "sale")


def test_refunds_codes_members_and_the_summary_mark_survive_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = Ledger.open(CARDS, path)
    sale = approved_sale(ledger, "S1")
    sale.refunded_amount, sale.refunded_by, sale.summarized = Decimal("10.5"), ["R1"], True
    ledger.apply_code("280123121234567890", Decimal("-1.25"))
    ledger.apply_member("M000001545", 40)
    ledger.summary_since = {"POS01": "20250101120000"}
    ledger.save()
    reloaded = Ledger.open(CARDS, path)
    assert reloaded.snapshot() == ledger.snapshot()
    assert reloaded.code_balance("280123121234567890") == Decimal("9998.75")
    assert reloaded.member_points("M000001545") == 30_040
    assert reloaded.summary_since == {"POS01": "20250101120000"}
    record = reloaded.get("S1")
    assert record is not None
    assert (record.refunded_amount, record.refunded_by, record.summarized) == (Decimal("10.5"), ["R1"], True)


def test_a_file_from_before_the_whole_book_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = Ledger.open(CARDS, path)
    approved_sale(ledger, "S1")
    ledger.save()
    state = jsonio.loads(path.read_bytes())
    for name in ("codes", "members", "summarySince"):
        del state[name]
    for record in state["records"]:
        for name in ("refundedAmount", "refundedBy", "qrcode", "memberId", "acquirer", "summarized"):
            del record[name]
    path.write_bytes(jsonio.dumps(state).encode())
    reloaded = Ledger.open(CARDS, path)
    assert reloaded.member_points("M000001545") == 30_000
    record = reloaded.get("S1")
    assert record is not None
    assert record.refunded_amount == 0
