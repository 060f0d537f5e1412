"""The POS's queries and uploads (schema v4): journaled ``sent`` before they leave, one result by the
kind's machine, and a traceNo the backend saw in one can start nothing else."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal import Journal
from misbridge.journal.records import request_hash
from misbridge.journal.store import BarredTraceNoError, DuplicateTraceNoError
from tests.unit.journal.helpers import add_transaction, raw

SUMMARY = {"traceNo": "SUM1"}


async def test_a_query_is_recorded_sent_then_answered(journal: Journal) -> None:
    await journal.record_query("SUM1", "summary", SUMMARY)
    sent = await journal.query("SUM1")
    assert sent is not None
    assert (sent.action, sent.state, sent.request, sent.response) == ("summary", "sent", SUMMARY, None)
    assert sent.request_hash == request_hash(SUMMARY)

    answer = {"traceNo": "SUM1", "returnCode": "00", "volume": 3, "totalAmount": Decimal("12.30")}
    state = await journal.record_query_result("SUM1", "summary", "answer", response=answer, return_code="00")
    assert state == "answered"
    done = await journal.query("SUM1")
    assert done is not None
    assert (done.state, done.return_code, done.response) == ("answered", "00", answer)
    assert await journal.query("OTHER") is None


async def test_an_upload_follows_the_upload_machine_and_gets_one_result(journal: Journal) -> None:
    body = {"traceNo": "UP1", "transCount": 0}
    await journal.record_query("UP1", "batchUpload", body)
    with pytest.raises(InvalidTransition):
        await journal.record_query_result("UP1", "batchUpload", "resend", response={}, return_code="MB31")
    no_answer = {"returnCode": "MB31"}
    assert await journal.record_query_result(
        "UP1", "batchUpload", "no_answer", response=no_answer, return_code="MB31"
    ) == "unknown"  # fmt: skip
    with pytest.raises(JournalError, match="already 'unknown'"):
        await journal.record_query_result("UP1", "batchUpload", "answer", response={}, return_code="00")
    with pytest.raises(JournalError, match="no such query"):
        await journal.record_query_result("UP2", "batchUpload", "answer", response={}, return_code="00")


async def test_a_query_traceno_is_used_once_whatever_used_it(journal: Journal) -> None:
    await journal.record_query("SUM1", "summary", SUMMARY)
    with pytest.raises(DuplicateTraceNoError):
        await journal.record_query("SUM1", "summary", SUMMARY)
    with pytest.raises(BarredTraceNoError, match="query"):
        await add_transaction(journal, "SUM1", "received")
    assert await journal.barred_as("SUM1") == "the traceNo of a POS query or upload"

    await add_transaction(journal, "SALE1", "approved")
    with pytest.raises(BarredTraceNoError, match="transaction"):
        await journal.record_query("SALE1", "ecouponInquiry", {"traceNo": "SALE1", "qrcode": "X"})
    await journal.record_pos_inquiry("INQ1", "FUTURE1", "h")
    for used in ("INQ1", "FUTURE1"):
        with pytest.raises(BarredTraceNoError, match="inquiry"):
            await journal.record_query(used, "summary", {"traceNo": used})


async def test_only_queries_and_uploads_go_in_the_table(journal: Journal) -> None:
    with pytest.raises(JournalError, match="CHECK constraint"):
        await journal.record_query("X1", "cardRedemption", {"traceNo": "X1"})
    with pytest.raises(InvalidTransition, match="not an action"):
        await journal.record_query("X2", "DownloadKey", {"traceNo": "X2"})
    assert await journal.query("X1") is None


async def test_the_triggers_keep_the_rules_against_hand_written_sql(journal: Journal, db_path: Path) -> None:
    await journal.record_query("SUM1", "summary", SUMMARY)
    await journal.record_query_result("SUM1", "summary", "answer", response={}, return_code="00")
    await add_transaction(journal, "SALE1", "approved")
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="already has its result"):
            conn.execute("UPDATE pos_queries SET state = 'sent' WHERE trace_no = 'SUM1'")
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            conn.execute("DELETE FROM pos_queries")
        with pytest.raises(sqlite3.IntegrityError, match="already used"):
            conn.execute(
                "INSERT INTO pos_queries (trace_no, action, state, request_json, request_hash, created_at,"
                " updated_at) VALUES ('SALE1', 'summary', 'sent', '{}', 'h', 'x', 'x')"
            )
        with pytest.raises(sqlite3.IntegrityError, match="seen by the backend in a query"):
            conn.execute(
                "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, created_at,"
                " updated_at) VALUES ('SUM1', 'cardRedemption', 'received', '{}', 'h', 'x', 'x')"
            )


async def test_a_forwarded_inquiry_keeps_its_request_hash(journal: Journal) -> None:
    inquiry = await journal.record_pos_inquiry("INQ1", "FUTURE1", "hash1")
    await journal.record_pos_inquiry_result(inquiry, "no_answer", return_code="MB31", response={"returnCode": "MB31"})
    again = await journal.record_pos_inquiry("INQ1", "FUTURE2")
    latest = await journal.forwarded_inquiry("INQ1")
    assert latest is not None
    assert (latest.id, latest.request_hash) == (again, None)
    [first] = [row for row in await journal.pos_inquiries("FUTURE1")]
    assert (first.request_hash, first.response) == ("hash1", {"returnCode": "MB31"})
    assert await journal.forwarded_inquiry("FUTURE1") is None  # only by its own traceNo


async def test_unanswered_queries_are_those_still_sent_before_the_cutoff(journal: Journal) -> None:
    await journal.record_query("SUM1", "summary", SUMMARY)
    await journal.record_query("SUM2", "summary", {"traceNo": "SUM2"})
    await journal.record_query_result("SUM2", "summary", "answer", response={}, return_code="00")
    cutoff = datetime.now(UTC)
    await journal.record_query("SUM3", "summary", {"traceNo": "SUM3"})
    assert [q.trace_no for q in await journal.unanswered_queries(cutoff)] == ["SUM1"]
    with pytest.raises(JournalError, match="timezone-aware"):
        await journal.unanswered_queries(datetime(2026, 1, 1))  # naive on purpose
