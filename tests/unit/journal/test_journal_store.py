"""Journal on a real SQLite file: intents, compare-and-set transitions, reads, durability settings."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal import (
    SCHEMA_VERSION,
    DuplicateTraceNoError,
    Journal,
    JournalSettings,
    StateConflictError,
    TransactionRecord,
)
from tests.seeding import seed_transaction


def sample_request(trace_no: str = "T0001") -> dict[str, Any]:
    """A scrubbed POS body with exact amounts and Chinese text."""
    return {
        "traceNo": trace_no,
        "totalAmount": Decimal("1000.00"),
        "undiscountAmount": Decimal("0.10"),
        "goodsDetail": [{"goodsName": "农夫山泉 550ml，整箱", "price": Decimal("40.8"), "quantity": 2}],
        "remark": "收银台 3 号",
    }


def make_record(trace_no: str = "T0001", state: str = "received") -> TransactionRecord:
    """A new intent record for ``trace_no``."""
    return TransactionRecord.new(trace_no, "cardRedemption", state, sample_request(trace_no))


async def test_intent_then_transitions(journal: Journal) -> None:
    record = make_record()
    await journal.record_intent(record)
    assert await journal.get("T0001") == record

    await journal.record_transition("T0001", "received", "start_card")
    await journal.record_transition("T0001", "reading_card", "card_read", masked_pan="622588******1234", card_type="IC")
    await journal.record_transition("T0001", "reading_pin", "pin_entered")
    response = {"returnCode": "00", "balance": Decimal("59.20"), "returnDesc": "交易成功"}
    await journal.record_transition(
        "T0001", "submitting", "approve", response=response, return_code="00", detail="auth 123"
    )

    final = await journal.get("T0001")
    assert final is not None
    assert final.state == "approved"
    assert (final.masked_pan, final.card_type) == ("622588******1234", "IC")  # kept: later steps passed None
    assert final.response == response
    assert final.return_code == "00"
    assert final.created_at == record.created_at
    assert final.updated_at >= record.updated_at

    steps = [(t.from_state, t.to_state, t.event) for t in await journal.transitions("T0001")]
    assert steps == [
        ("", "received", "intent"),
        ("received", "reading_card", "start_card"),
        ("reading_card", "reading_pin", "card_read"),
        ("reading_pin", "submitting", "pin_entered"),
        ("submitting", "approved", "approve"),
    ]
    log = await journal.transitions("T0001")
    assert log[-1].detail == "auth 123"
    assert [t.id for t in log] == sorted(t.id for t in log)


async def test_compare_and_set_refuses_a_stale_state(journal: Journal) -> None:
    await journal.record_intent(make_record())
    await journal.record_transition("T0001", "received", "start_card")
    with pytest.raises(StateConflictError, match="expected state 'received' but it is 'reading_card'") as caught:
        await journal.record_transition("T0001", "received", "abort", return_code="MB23")
    assert (caught.value.expected, caught.value.actual) == ("received", "reading_card")
    record = await journal.get("T0001")
    assert record is not None
    assert (record.state, record.return_code) == ("reading_card", None)
    assert len(await journal.transitions("T0001")) == 2  # the failed step left no row


async def test_transition_of_an_unknown_trace_no(journal: Journal) -> None:
    with pytest.raises(StateConflictError, match="no such transaction") as caught:
        await journal.record_transition("NOPE", "received", "abort")
    assert caught.value.actual is None
    assert await journal.transitions("NOPE") == []


async def test_duplicate_intent(journal: Journal) -> None:
    first = make_record()
    await journal.record_intent(first)
    other = TransactionRecord.new("T0001", "cardRedemption", "received", {"different": True})
    with pytest.raises(DuplicateTraceNoError, match="T0001") as caught:
        await journal.record_intent(other)
    assert isinstance(caught.value, JournalError)
    assert caught.value.trace_no == "T0001"
    assert await journal.get("T0001") == first
    assert len(await journal.transitions("T0001")) == 1
    assert await journal.count() == 1


@pytest.mark.parametrize("final", ["approved", "declined", "aborted", "voided"])
async def test_nothing_leaves_a_final_state(journal: Journal, db_path: Path, final: str) -> None:
    await seed_transaction(journal, make_record(state=final))
    history = await journal.transitions("T0001")
    with pytest.raises(InvalidTransition, match=f"'outcome_unknown' is not allowed in state '{final}'"):
        await journal.record_transition("T0001", final, "outcome_unknown")
    with pytest.raises(InvalidTransition, match="unknown event 'again'"):
        await journal.record_transition("T0001", final, "again")
    assert await journal.transitions("T0001") == history

    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        for new_state in ("unknown", final, "received"):
            with pytest.raises(sqlite3.IntegrityError, match="final state"):
                raw.execute("UPDATE transactions SET state = ? WHERE trace_no = 'T0001'", (new_state,))
        with pytest.raises(sqlite3.IntegrityError, match="final state"):
            raw.execute("UPDATE transactions SET state = 'received', return_code = 'x'")
    finally:
        raw.close()
    record = await journal.get("T0001")
    assert record is not None
    assert record.state == final


async def test_non_final_states_may_change_via_raw_sql(journal: Journal, db_path: Path) -> None:
    await seed_transaction(journal, make_record(state="unknown"))
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute("UPDATE transactions SET state = 'inquiring' WHERE trace_no = 'T0001'")
    finally:
        raw.close()
    record = await journal.get("T0001")
    assert record is not None
    assert record.state == "inquiring"


async def test_reopen_reads_back_exactly(db_path: Path) -> None:
    record = make_record()
    response = {"returnCode": "00", "returnDesc": "交易成功，余额：59.20", "balance": Decimal("59.20")}
    async with await Journal.open(db_path) as journal:
        await journal.record_intent(record)
        await journal.record_transition("T0001", "received", "abort", response=response, return_code="00")
        log = await journal.transitions("T0001")

    async with await Journal.open(db_path) as reopened:
        back = await reopened.get("T0001")
        assert back is not None
        assert back.request == sample_request()
        amount = back.request["totalAmount"]
        assert isinstance(amount, Decimal)
        assert str(amount) == "1000.00"
        assert str(back.request["goodsDetail"][0]["price"]) == "40.8"
        assert back.request["goodsDetail"][0]["quantity"] == 2
        assert back.request["goodsDetail"][0]["goodsName"] == "农夫山泉 550ml，整箱"
        assert back.response == response
        assert str(back.response["balance"]) == "59.20"
        assert back.request_hash == record.request_hash
        assert back.created_at == record.created_at
        assert await reopened.transitions("T0001") == log
        assert await reopened.count() == 1


async def test_durability_settings_are_in_force(journal: Journal, db_path: Path) -> None:
    assert await journal.settings() == JournalSettings(
        journal_mode="wal", synchronous="FULL", foreign_keys=True, schema_version=SCHEMA_VERSION, page_cache_kib=512
    )
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persisted in the file
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
    finally:
        raw.close()


async def test_integrity_check_and_count(journal: Journal) -> None:
    assert await journal.count() == 0
    for n in range(3):
        await journal.record_intent(make_record(f"T{n}"))
    assert await journal.count() == 3
    assert await journal.integrity_check() == "ok"


async def test_fifty_concurrent_transitions_all_land(journal: Journal) -> None:
    trace_nos = [f"C{n:03d}" for n in range(50)]
    await asyncio.gather(*(journal.record_intent(make_record(t)) for t in trace_nos))
    await asyncio.gather(*(journal.record_transition(t, "received", "start_card", detail=t) for t in trace_nos))
    records = await journal.list_by_states(["reading_card"])
    assert sorted(r.trace_no for r in records) == trace_nos
    for trace_no in trace_nos:
        log = await journal.transitions(trace_no)
        assert [(t.to_state, t.detail) for t in log] == [("received", ""), ("reading_card", trace_no)]
    assert await journal.integrity_check() == "ok"


async def test_list_by_states(journal: Journal) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n, state in enumerate(["unknown", "approved", "voiding", "unknown", "received"]):
        record = TransactionRecord.new(f"L{n}", "cardRedemption", state, {}, now=start - timedelta(minutes=n))
        await seed_transaction(journal, record)
    found = await journal.list_by_states(s for s in ("unknown", "voiding"))
    assert [r.trace_no for r in found] == ["L3", "L2", "L0"]  # oldest first
    assert await journal.list_by_states([]) == []
    assert await journal.list_by_states(["declined"]) == []


async def test_injected_clock_stamps_transitions(db_path: Path) -> None:
    moment = datetime(2026, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    async with await Journal.open(db_path, clock=lambda: moment) as journal:
        await journal.record_intent(make_record())
        await journal.record_transition("T0001", "received", "abort")
        record = await journal.get("T0001")
        assert record is not None
        assert record.updated_at == moment
        assert record.updated_at.utcoffset() == timedelta(0)  # read back in UTC
        assert (await journal.transitions("T0001"))[-1].at == moment


async def test_naive_clock_is_refused(db_path: Path) -> None:
    async with await Journal.open(db_path, clock=datetime.now) as journal:
        await journal.record_intent(make_record())
        with pytest.raises(JournalError, match="timezone-aware"):
            await journal.record_transition("T0001", "received", "abort")


async def test_get_unknown_is_none(journal: Journal) -> None:
    assert await journal.get("missing") is None


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("request_json", "[1, 2]", "not a JSON object"),
        ("request_json", "{not json", "not JSON"),
        ("created_at", "yesterday", "corrupt"),
        ("updated_at", "2026-01-01T00:00:00", "corrupt"),  # no offset
    ],
)
async def test_corrupt_rows_raise_journal_error(
    journal: Journal, db_path: Path, column: str, value: str, message: str
) -> None:
    await journal.record_intent(make_record())
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute(f"UPDATE transactions SET {column} = ?", (value,))  # noqa: S608 - test-chosen column
    finally:
        raw.close()
    with pytest.raises(JournalError, match=message):
        await journal.get("T0001")


async def test_corrupt_transition_time_raises_journal_error(journal: Journal, db_path: Path) -> None:
    await journal.record_intent(make_record())
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute("UPDATE transitions SET at = 'noon'")
    finally:
        raw.close()
    with pytest.raises(JournalError, match="corrupt"):
        await journal.transitions("T0001")


async def test_closed_journal_refuses_calls(db_path: Path) -> None:
    journal = await Journal.open(db_path)
    await journal.close()
    await journal.close()  # idempotent
    with pytest.raises(JournalError, match="closed"):
        await journal.count()


async def test_open_failures_are_journal_errors(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot open journal"):
        await Journal.open(tmp_path / "missing-dir" / "journal.db")
    with pytest.raises(JournalError, match="WAL mode refused"):
        await Journal.open(Path(":memory:"))


async def test_newer_schema_is_refused(db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(JournalError, match="newer"):
        await Journal.open(db_path)


async def test_sqlite_errors_are_translated(journal: Journal, db_path: Path) -> None:
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute("DROP TABLE transitions")
    finally:
        raw.close()
    with pytest.raises(JournalError, match="record_intent failed") as caught:
        await journal.record_intent(make_record())
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert await journal.get("T0001") is None  # the half-done write was rolled back


def _journal_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("misbridge-journal")]


async def test_all_calls_run_on_one_worker_thread_that_close_stops(db_path: Path) -> None:
    assert _journal_threads() == []
    journal = await Journal.open(db_path)
    await asyncio.gather(*(journal.record_intent(make_record(f"W{n}")) for n in range(20)))
    assert len(_journal_threads()) == 1
    await journal.close()
    assert _journal_threads() == []


async def test_the_journal_refuses_a_move_the_machine_forbids_and_writes_nothing(journal: Journal) -> None:
    await journal.record_intent(make_record())
    history = await journal.transitions("T0001")
    # Straight from received to approved would skip the card, the PIN and the backend call.
    with pytest.raises(InvalidTransition, match="'approve' is not allowed in state 'received'"):
        await journal.record_transition("T0001", "received", "approve", return_code="00")
    record = await journal.get("T0001")
    assert record is not None
    assert (record.state, record.return_code) == ("received", None)
    assert await journal.transitions("T0001") == history
    # The target is the machine's: the caller names only the event.
    assert await journal.record_transition("T0001", "received", "start_card") == "reading_card"


async def test_the_journal_refuses_a_move_into_the_reversal_queue_the_machine_forbids(journal: Journal) -> None:
    await seed_transaction(journal, make_record(state="submitting"))
    with pytest.raises(InvalidTransition, match="'give_up' is not allowed in state 'submitting'"):
        await journal.enqueue_reversal("T0001", from_state="submitting", event="give_up")
    assert await journal.reversal("T0001") is None


@pytest.mark.parametrize("state", ["reading_card", "approved", "unknown", "sent"])
async def test_an_intent_starts_only_in_the_initial_state(journal: Journal, state: str) -> None:
    with pytest.raises(InvalidTransition, match=f"a cardRedemption starts in 'received', not '{state}'"):
        await journal.record_intent(make_record(state=state))
    assert await journal.get("T0001") is None


async def test_an_intent_needs_an_action_with_a_machine(journal: Journal) -> None:
    bogus = TransactionRecord.new("T0001", "DownloadKey", "received", {})
    with pytest.raises(InvalidTransition, match="'DownloadKey' is not an action"):
        await journal.record_intent(bogus)
