"""POS inquiries forwarded to the backend (schema v3, issue 10 item 7): journaled before they leave,
and the traceNos they burn can never start a transaction or be handed out by misbridge."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal import Journal
from misbridge.journal.store import BarredTraceNoError, DuplicateTraceNoError, KnownOriginalError
from tests.unit.journal.helpers import add_transaction, raw

CST = timezone(timedelta(hours=8))


async def test_a_forwarded_inquiry_is_recorded_sent_then_answered(journal: Journal) -> None:
    inquiry = await journal.record_pos_inquiry("INQ1", "FUTURE1")
    [sent] = await journal.pos_inquiries("FUTURE1")
    assert (sent.id, sent.trace_no, sent.original_trace_no, sent.state) == (inquiry, "INQ1", "FUTURE1", "sent")
    assert (sent.return_code, sent.response) == (None, None)

    answer = {"traceNo": "INQ1", "returnCode": "25", "returnDesc": "not found", "paidAmount": Decimal("0.00")}
    assert await journal.record_pos_inquiry_result(inquiry, "answer", return_code="25", response=answer) == "answered"
    [done] = await journal.pos_inquiries("INQ1")  # found by its own traceNo too
    assert (done.state, done.return_code, done.response) == ("answered", "25", answer)
    assert done.response is not None
    assert str(done.response["paidAmount"]) == "0.00"
    assert done.updated_at >= done.created_at


async def test_a_forwarded_inquiry_gets_exactly_one_result(journal: Journal) -> None:
    inquiry = await journal.record_pos_inquiry("INQ1", "FUTURE1")
    assert await journal.record_pos_inquiry_result(inquiry, "no_answer") == "unknown"
    with pytest.raises(JournalError, match="already 'unknown'"):
        await journal.record_pos_inquiry_result(inquiry, "answer", return_code="00")
    with pytest.raises(JournalError, match="no such row"):
        await journal.record_pos_inquiry_result(inquiry + 1, "no_answer")


@pytest.mark.parametrize("event", ["sent", "approve", "escalate", "inquire"])
async def test_a_forwarded_inquiry_moves_only_by_the_query_machine(journal: Journal, event: str) -> None:
    inquiry = await journal.record_pos_inquiry("INQ1", "FUTURE1")
    with pytest.raises(InvalidTransition):
        await journal.record_pos_inquiry_result(inquiry, event)
    [row] = await journal.pos_inquiries("INQ1")
    assert row.state == "sent", "nothing was written"


async def test_an_inquiry_about_a_journaled_original_is_not_recorded(journal: Journal) -> None:
    await add_transaction(journal, "SALE1", "approved")
    with pytest.raises(KnownOriginalError, match="SALE1"):
        await journal.record_pos_inquiry("INQ1", "SALE1")
    assert await journal.pos_inquiries("SALE1") == []
    assert await journal.barred_as("INQ1") is None


@pytest.mark.parametrize(
    ("trace_no", "seen_as"),
    [("FUTURE1", "originalTraceNo of a forwarded POS inquiry"), ("INQ1", "traceNo of a forwarded POS inquiry")],
)
async def test_both_trace_nos_of_a_forwarded_inquiry_are_barred(journal: Journal, trace_no: str, seen_as: str) -> None:
    await journal.record_pos_inquiry("INQ1", "FUTURE1")
    assert await journal.barred_as(trace_no) == f"the {seen_as}"
    with pytest.raises(BarredTraceNoError, match=seen_as) as refused:
        await add_transaction(journal, trace_no, "received")
    assert isinstance(refused.value, DuplicateTraceNoError)
    assert refused.value.trace_no == trace_no
    assert await journal.get(trace_no) is None
    assert await journal.count() == 0


async def test_a_trace_no_misbridge_sent_is_barred_too(journal: Journal) -> None:
    await add_transaction(journal, "T1")
    call = await journal.allocate_call("T1", "inquiry")
    assert await journal.barred_as(call) == "the traceNo of a request misbridge sent"
    assert await journal.barred_as("T1") is None, "a journaled transaction is not barred: it is a repeat"


async def test_a_sale_committed_first_wins_over_a_concurrent_inquiry(journal: Journal) -> None:
    """The unknown-original check and the insert are one transaction: whichever commits first wins."""
    sale = asyncio.ensure_future(add_transaction(journal, "RACE1", "received"))
    inquiry = asyncio.ensure_future(journal.record_pos_inquiry("INQ1", "RACE1"))
    await sale
    with pytest.raises(KnownOriginalError):
        await inquiry
    assert await journal.barred_as("RACE1") is None


async def test_misbridge_never_allocates_a_trace_no_a_pos_inquiry_burned(journal: Journal) -> None:
    local = datetime(2026, 5, 1, 12, 0, tzinfo=CST)
    await add_transaction(journal, "T1")
    await journal.record_pos_inquiry("202605011200000000000001", "X")  # as the inquiry's own traceNo
    await journal.record_pos_inquiry("Y", "202605011200000000000002")  # as an original
    assert await journal.allocate_call("T1", "void", local_now=local) == "202605011200000000000003"


def test_hand_written_sql_cannot_use_a_barred_trace_no_or_forget_one(db_path: Path) -> None:
    async def seed() -> None:
        async with await Journal.open(db_path) as journal:
            await add_transaction(journal, "SALE1")
            await journal.record_pos_inquiry("INQ1", "FUTURE1")

    asyncio.run(seed())
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="forwarded inquiry"):
            conn.execute(
                "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, created_at,"
                " updated_at) VALUES ('FUTURE1', 'cardRedemption', 'received', '{}', 'h', 't', 't')"
            )
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            conn.execute("DELETE FROM pos_inquiries")
        with pytest.raises(sqlite3.IntegrityError, match="answer from it"):
            conn.execute(
                "INSERT INTO pos_inquiries (trace_no, original_trace_no, state, created_at, updated_at)"
                " VALUES ('INQ2', 'SALE1', 'sent', 't', 't')"
            )
        conn.execute("UPDATE pos_inquiries SET state = 'unknown'")
        with pytest.raises(sqlite3.IntegrityError, match="already has its result"):
            conn.execute("UPDATE pos_inquiries SET state = 'answered'")
