"""The transaction view, built once (journal/queries.py) for the HTTP door and ``misbridge journal show``."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from misbridge.journal import Journal, TransactionRecord
from misbridge.journal.queries import EXPORT_COLUMNS, http_view
from misbridge.tools import journal as journaltool
from tests.security.journals import ROWS, build_journal, request

CANARY_PAN = "6225620000018888"


async def reference_http_view(journal: Journal, trace_no: str) -> dict[str, Any] | None:
    """The HTTP door's view as TransactionService.transaction built it from the record API."""
    record = await journal.get(trace_no)
    if record is None:
        return None
    reversal = await journal.reversal(trace_no)
    return {
        "traceNo": record.trace_no,
        "action": record.action,
        "state": record.state,
        "maskedPan": record.masked_pan,
        "returnCode": record.return_code,
        "response": record.response,
        "createdAt": record.created_at.isoformat(),
        "updatedAt": record.updated_at.isoformat(),
        "transitions": [
            {"from": t.from_state, "to": t.to_state, "event": t.event, "at": t.at.isoformat(), "detail": t.detail}
            for t in await journal.transitions(trace_no)
        ],
        "reversal": None if reversal is None else {
            "state": reversal.state, "attempts": reversal.attempts, "lastError": reversal.last_error,
            "nextAttemptAt": reversal.next_attempt_at.isoformat(), "createdAt": reversal.created_at.isoformat(),
        },
        "backendCalls": [
            {"traceNo": c.trace_no, "kind": c.kind, "state": c.state, "returnCode": c.return_code}
            for c in await journal.calls(trace_no)
        ],
    }  # fmt: skip


@pytest.fixture
async def built(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    await build_journal(path)
    return path


@pytest.mark.parametrize("trace_no", sorted(ROWS))
async def test_the_http_view_is_a_projection_of_the_full_view(built: Path, trace_no: str) -> None:
    async with await Journal.open(built) as journal:
        full = await journal.transaction_view(trace_no)
        assert full is not None
        projected = http_view(full)
        assert projected.pop("posInquiries") == []
        assert projected == await reference_http_view(journal, trace_no)
    # The read-only tool shows the same full view, from the same query.
    assert journaltool.show(built, trace_no) == full


async def test_the_full_view_has_every_column_and_the_trail(built: Path) -> None:
    async with await Journal.open(built) as journal:
        view = await journal.transaction_view("OLD-VOIDED")
        assert view is not None
        assert list(view)[: len(EXPORT_COLUMNS)] == list(EXPORT_COLUMNS)
        assert (view["returnCode"], view["cardType"], view["totalAmount"]) == ("MB32", "00", "40.8")
        assert view["request"]["totalAmount"] == Decimal("40.8")
        assert [c["kind"] for c in view["backendCalls"]] == ["inquiry", "void"]
        assert view["backendCalls"][1]["response"] == {"returnCode": "00"}
        assert view["reversal"]["state"] == "done"
        assert view["reversal"]["updatedAt"]
        # A request misbridge sent finds its original, as in the tool.
        assert await journal.transaction_view(view["backendCalls"][0]["traceNo"]) == view
        assert await journal.transaction_view("NOPE") is None


async def test_forwarded_pos_inquiries_are_in_both_views(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    answer = {"traceNo": "INQ1", "returnCode": "25", "returnDesc": "not found", "paidAmount": Decimal("0.00")}
    async with await Journal.open(path) as journal:
        first = await journal.record_pos_inquiry("INQ1", "FUTURE1")
        await journal.record_pos_inquiry_result(first, "answer", return_code="25", response=answer)
        await journal.record_pos_inquiry("INQ2", "FUTURE1")
        by_original = await journal.transaction_view("FUTURE1")
        by_inquiry = await journal.transaction_view("INQ2")
    assert by_original is not None
    assert by_inquiry == by_original
    assert (by_original["traceNo"], by_original["action"], by_original["state"]) == ("FUTURE1", "", "")
    assert (by_original["transitions"], by_original["backendCalls"], by_original["reversal"]) == ([], [], None)
    assert [(i["traceNo"], i["originalTraceNo"], i["state"], i["returnCode"]) for i in by_original["posInquiries"]] == [
        ("INQ1", "FUTURE1", "answered", "25"), ("INQ2", "FUTURE1", "sent", None)
    ]  # fmt: skip
    assert by_original["posInquiries"][0]["response"] == answer
    assert journaltool.show(path, "INQ1") == by_original
    shown = http_view(by_original)
    assert (shown["traceNo"], shown["maskedPan"], shown["returnCode"]) == ("FUTURE1", None, None)
    assert [i["traceNo"] for i in shown["posInquiries"]] == ["INQ1", "INQ2"]


async def test_the_view_is_masked_even_if_card_data_were_stored(tmp_path: Path) -> None:
    """Second line of defence: a card number given as the masked PAN or in a detail is not shown."""
    async with await Journal.open(tmp_path / "journal.db") as journal:
        await journal.record_intent(TransactionRecord.new("LEAK", "cardRedemption", "received", request("LEAK")))
        await journal.record_transition("LEAK", "received", "abort", masked_pan=CANARY_PAN, detail=f"pan {CANARY_PAN}")
        view = await journal.transaction_view("LEAK")
    assert view is not None
    assert CANARY_PAN not in repr(view)
    assert view["maskedPan"] == "622562******8888"
    assert http_view(view)["transitions"][-1]["detail"] == "pan 622562******8888"
