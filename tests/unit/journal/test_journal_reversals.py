"""The durable reversal queue: atomic enqueue, due/pending order, attempts, done and needs_manual."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from misbridge.errors import JournalError
from misbridge.journal import Journal, ReversalConflictError, ReversalRecord, StateConflictError
from tests.unit.journal.helpers import T0, FakeClock, add_transaction, raw


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(db_path: Path, clock: FakeClock) -> AsyncIterator[Journal]:
    """A journal on the fake clock."""
    async with await Journal.open(db_path, clock=clock) as opened:
        yield opened


def at(seconds: float) -> datetime:
    """``seconds`` after the fake clock's start."""
    return T0 + timedelta(seconds=seconds)


async def queued(journal: Journal, trace_no: str, *, first_attempt_at: datetime | None = None) -> None:
    """A transaction in ``unknown`` that gives up into ``voiding`` with a queue entry."""
    await add_transaction(journal, trace_no, "unknown")
    await journal.enqueue_reversal(
        trace_no, from_state="unknown", event="give_up", detail="inquiry bound", first_attempt_at=first_attempt_at
    )


async def test_enqueue_moves_the_transaction_and_queues_it(queue: Journal) -> None:
    await queued(queue, "T1")
    record = await queue.get("T1")
    assert record is not None
    assert record.state == "voiding"
    last = (await queue.transitions("T1"))[-1]
    assert (last.from_state, last.to_state, last.event, last.detail, last.at) == (
        "unknown",
        "voiding",
        "give_up",
        "inquiry bound",
        T0,
    )
    assert await queue.reversal("T1") == ReversalRecord(
        original_trace_no="T1",
        state="pending",
        attempts=0,
        next_attempt_at=T0,  # due at once by default
        created_at=T0,
        updated_at=T0,
        last_error="",
    )
    assert await queue.count_reversals("pending") == 1


async def test_enqueue_to_another_state_with_a_later_first_attempt(queue: Journal) -> None:
    await add_transaction(queue, "T1", "inquiring")
    await queue.enqueue_reversal("T1", from_state="inquiring", event="void_unclaimed", first_attempt_at=at(30))
    reversal = await queue.reversal("T1")
    assert reversal is not None
    assert reversal.next_attempt_at == at(30)
    assert await queue.due_reversals() == []
    assert [r.original_trace_no for r in await queue.due_reversals(at(30))] == ["T1"]


async def test_cas_failure_leaves_no_queue_entry(queue: Journal) -> None:
    await add_transaction(queue, "T1", "inquiring")
    history = await queue.transitions("T1")
    with pytest.raises(StateConflictError, match="expected state 'unknown' but it is 'inquiring'"):
        await queue.enqueue_reversal("T1", from_state="unknown", event="give_up")
    with pytest.raises(StateConflictError, match="no such transaction"):
        await queue.enqueue_reversal("NOPE", from_state="unknown", event="give_up")
    assert await queue.reversal("T1") is None
    assert await queue.reversal("NOPE") is None
    assert await queue.count_reversals("pending") == 0
    record = await queue.get("T1")
    assert record is not None
    assert record.state == "inquiring"
    assert await queue.transitions("T1") == history


async def test_second_enqueue_is_refused_and_changes_nothing(queue: Journal) -> None:
    await queued(queue, "T1")
    log = await queue.transitions("T1")
    with pytest.raises(ReversalConflictError, match="expected no entry but it is 'pending'") as caught:
        await queue.enqueue_reversal("T1", from_state="voiding", event="again")
    assert isinstance(caught.value, JournalError)
    assert (caught.value.original_trace_no, caught.value.expected, caught.value.actual) == ("T1", None, "pending")
    assert await queue.transitions("T1") == log
    assert await queue.count_reversals("pending") == 1


async def test_naive_first_attempt_is_refused_and_writes_nothing(queue: Journal) -> None:
    await add_transaction(queue, "T1", "unknown")
    with pytest.raises(JournalError, match="timezone-aware"):
        await queue.enqueue_reversal("T1", from_state="unknown", event="give_up", first_attempt_at=datetime(2026, 5, 1))
    with pytest.raises(JournalError, match="timezone-aware"):
        await queue.due_reversals(datetime(2026, 5, 1))
    assert await queue.reversal("T1") is None
    record = await queue.get("T1")
    assert record is not None
    assert record.state == "unknown"


async def test_due_and_pending_order(queue: Journal, clock: FakeClock) -> None:
    await queued(queue, "A", first_attempt_at=at(10))  # created at 0, due at 10
    clock.advance(1)
    await queued(queue, "B")  # created at 1, due at 1
    clock.advance(1)
    await queued(queue, "C", first_attempt_at=at(5))  # created at 2, due at 5
    await queued(queue, "D", first_attempt_at=at(5))  # same instant as C: enqueue order

    def names(records: list[ReversalRecord]) -> list[str]:
        return [r.original_trace_no for r in records]

    assert names(await queue.due_reversals(at(0))) == []
    assert names(await queue.due_reversals(at(1))) == ["B"]  # next_attempt_at == now is due
    assert names(await queue.due_reversals(at(5))) == ["B", "C", "D"]
    assert names(await queue.due_reversals(at(10))) == ["A", "B", "C", "D"]  # oldest first
    assert names(await queue.pending_reversals()) == ["A", "B", "C", "D"]
    assert names(await queue.due_reversals()) == ["B"]  # the clock says 2 s

    await queue.record_reversal_attempt("B", next_attempt_at=at(3), error="timeout")
    assert names(await queue.due_reversals()) == []
    clock.advance(3)
    assert names(await queue.due_reversals()) == ["B", "C", "D"]


async def test_backoff_bookkeeping(queue: Journal, clock: FakeClock) -> None:
    await queued(queue, "T1")
    delays = [1, 2, 4, 8, 16, 32, 60, 60]  # what the caller computes: 1 s doubling to a 60 s cap
    for attempt, delay in enumerate(delays, start=1):
        now = clock.advance(0.5)
        due = now + timedelta(seconds=delay)
        await queue.record_reversal_attempt("T1", next_attempt_at=due, error=f"timeout {attempt}")
        reversal = await queue.reversal("T1")
        assert reversal is not None
        assert (reversal.state, reversal.attempts, reversal.last_error) == ("pending", attempt, f"timeout {attempt}")
        assert (reversal.next_attempt_at, reversal.updated_at, reversal.created_at) == (due, now, T0)
        assert await queue.due_reversals(due - timedelta(microseconds=1)) == []
        assert await queue.due_reversals(due) == [reversal]
    record = await queue.get("T1")
    assert record is not None
    assert record.state == "voiding"  # attempts do not touch the transaction


async def test_complete_moves_both_rows(queue: Journal, clock: FakeClock) -> None:
    await queued(queue, "T1")
    await queue.record_reversal_attempt("T1", next_attempt_at=at(1), error="timeout")
    now = clock.advance(1)
    response = {"returnCode": "MB40", "returnDesc": "已冲正", "amount": Decimal("40.80")}
    await queue.complete_reversal("T1", response=response, return_code="MB40", detail="void answered 00")

    reversal = await queue.reversal("T1")
    assert reversal is not None
    assert (reversal.state, reversal.attempts, reversal.updated_at, reversal.last_error) == (
        "done",
        2,
        now,
        "timeout",
    )
    record = await queue.get("T1")
    assert record is not None
    assert (record.state, record.return_code, record.response, record.updated_at) == ("voided", "MB40", response, now)
    last = (await queue.transitions("T1"))[-1]
    assert (last.from_state, last.to_state, last.event, last.detail) == (
        "voiding",
        "voided",
        "voided",
        "void answered 00",
    )
    assert (await queue.count_reversals("pending"), await queue.count_reversals("done")) == (0, 1)
    assert await queue.pending_reversals() == []
    assert await queue.due_reversals(at(10_000)) == []


async def test_a_done_reversal_cannot_be_reattempted(queue: Journal) -> None:
    await queued(queue, "T1")
    await queue.complete_reversal("T1")
    done = await queue.reversal("T1")
    log = await queue.transitions("T1")

    with pytest.raises(ReversalConflictError, match="expected state 'pending' but it is 'done'") as caught:
        await queue.record_reversal_attempt("T1", next_attempt_at=at(5), error="late")
    assert (caught.value.expected, caught.value.actual) == ("pending", "done")
    with pytest.raises(ReversalConflictError, match="'done'"):
        await queue.complete_reversal("T1")
    with pytest.raises(ReversalConflictError, match="'done'"):
        await queue.escalate_reversal("T1", detail="late")
    with pytest.raises(ReversalConflictError, match="expected no entry but it is 'done'"):
        await queue.enqueue_reversal("T1", from_state="voided", event="again")

    assert await queue.reversal("T1") == done
    assert await queue.transitions("T1") == log


async def test_escalate_moves_both_rows(queue: Journal, clock: FakeClock) -> None:
    await queued(queue, "T1")
    await queue.record_reversal_attempt("T1", next_attempt_at=at(1), error="91 issuer unavailable")
    now = clock.advance(86_400)
    await queue.escalate_reversal("T1", detail="void not confirmed after 1 attempts")

    reversal = await queue.reversal("T1")
    assert reversal is not None
    assert (reversal.state, reversal.attempts, reversal.last_error, reversal.updated_at) == (
        "needs_manual",
        1,
        "91 issuer unavailable",
        now,
    )
    record = await queue.get("T1")
    assert record is not None
    assert record.state == "needs_manual"
    last = (await queue.transitions("T1"))[-1]
    assert (last.from_state, last.to_state, last.event, last.detail) == (
        "voiding",
        "needs_manual",
        "escalate",
        "void not confirmed after 1 attempts",
    )
    assert await queue.count_reversals("needs_manual") == 1
    assert await queue.pending_reversals() == []
    with pytest.raises(ReversalConflictError, match="'needs_manual'"):
        await queue.record_reversal_attempt("T1", next_attempt_at=at(5), error="late")


async def test_transaction_conflict_rolls_the_queue_change_back(queue: Journal, db_path: Path) -> None:
    await queued(queue, "T1")
    with raw(db_path) as conn:  # something moved the transaction out of voiding behind our back
        conn.execute("UPDATE transactions SET state = 'unknown' WHERE trace_no = 'T1'")
    with pytest.raises(StateConflictError, match="expected state 'voiding' but it is 'unknown'"):
        await queue.complete_reversal("T1")
    with pytest.raises(StateConflictError, match="'voiding'"):
        await queue.escalate_reversal("T1", detail="x")
    reversal = await queue.reversal("T1")
    assert reversal is not None
    assert (reversal.state, reversal.attempts) == ("pending", 0)


async def test_changes_to_a_missing_entry(queue: Journal) -> None:
    await add_transaction(queue, "T1", "voiding")  # voiding without an entry (cannot happen via the API)
    with pytest.raises(ReversalConflictError, match="expected state 'pending' but there is none"):
        await queue.record_reversal_attempt("T1", next_attempt_at=at(1), error="x")
    with pytest.raises(ReversalConflictError, match="there is none"):
        await queue.complete_reversal("T1")
    with pytest.raises(ReversalConflictError, match="there is none"):
        await queue.escalate_reversal("T1", detail="x")
    record = await queue.get("T1")
    assert record is not None
    assert record.state == "voiding"
    assert await queue.reversal("T1") is None
    assert await queue.count_reversals("done") == 0


async def test_queue_survives_reopen(db_path: Path, clock: FakeClock) -> None:
    async with await Journal.open(db_path, clock=clock) as journal:
        await queued(journal, "T1")
        await journal.record_reversal_attempt("T1", next_attempt_at=at(2), error="timeout")
        before = await journal.reversal("T1")
    async with await Journal.open(db_path, clock=clock) as journal:
        assert await journal.pending_reversals() == [before]
        assert await journal.integrity_check() == "ok"


async def test_database_guards_the_queue(queue: Journal, db_path: Path) -> None:
    await queued(queue, "DONE")
    await queue.complete_reversal("DONE")
    await queued(queue, "PEND")
    await queue.record_reversal_attempt("PEND", next_attempt_at=at(1), error="x")
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="reversal is done"):
            conn.execute("UPDATE reversals SET state = 'pending' WHERE original_trace_no = 'DONE'")
        with pytest.raises(sqlite3.IntegrityError, match="reversal is done"):
            conn.execute("UPDATE reversals SET next_attempt_at = 'x' WHERE original_trace_no = 'DONE'")
        with pytest.raises(sqlite3.IntegrityError, match="never dropped"):
            conn.execute("DELETE FROM reversals WHERE original_trace_no = 'PEND'")
        with pytest.raises(sqlite3.IntegrityError, match="attempts only grow"):
            conn.execute("UPDATE reversals SET attempts = 0 WHERE original_trace_no = 'PEND'")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint"):
            conn.execute("UPDATE reversals SET state = 'dropped' WHERE original_trace_no = 'PEND'")
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute(
                "INSERT INTO reversals (original_trace_no, state, next_attempt_at, created_at, updated_at)"
                " VALUES ('NOPE', 'pending', 't', 't', 't')"
            )
        conn.execute("DELETE FROM reversals WHERE original_trace_no = 'DONE'")  # a done entry may be purged later
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert await queue.integrity_check() == "ok"


def test_reversal_record_checks_its_values() -> None:
    with pytest.raises(ValueError, match="reversal state"):
        ReversalRecord("T1", "dropped", 0, T0, T0, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="next_attempt_at"):
        ReversalRecord("T1", "pending", 0, datetime(2026, 1, 1), T0, T0)


async def test_corrupt_reversal_row_raises_journal_error(queue: Journal, db_path: Path) -> None:
    await queued(queue, "T1")
    with raw(db_path) as conn:
        conn.execute("UPDATE reversals SET next_attempt_at = 'soon'")
    with pytest.raises(JournalError, match="corrupt"):
        await queue.reversal("T1")
    with pytest.raises(JournalError, match="corrupt"):
        await queue.pending_reversals()
