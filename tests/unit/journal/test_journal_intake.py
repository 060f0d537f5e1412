"""A new sale's intake in one journal hop (``Journal.open_intent``): repeat check, voids first, intent.

Issue 18 merged the reads before a sale's intent (``get``, ``due_reversals``) into the intent's
own hop. These tests pin what that one hop must still be: one transaction, one trip to the
journal thread, nothing written for a repeat or while a void is due, and the same intent
``record_intent`` writes otherwise.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal import Journal, TransactionRecord
from misbridge.journal.transactions import Intake
from tests.journal_hops import journal_hops
from tests.unit.journal.helpers import T0, FakeClock, add_transaction, raw

LANE2 = "lane2"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def journal(db_path: Path, clock: FakeClock) -> AsyncIterator[Journal]:
    async with await Journal.open(db_path, clock=clock) as opened:
        yield opened


def new_sale(trace_no: str = "S1") -> TransactionRecord:
    return TransactionRecord.new(trace_no, "cardRedemption", "received", {"traceNo": trace_no, "totalAmount": "1.00"})


async def void_due_in(journal: Journal, trace_no: str, seconds: float) -> None:
    """A sale of ``journal``'s lane given up into ``voiding``, its void due ``seconds`` from T0."""
    await add_transaction(journal, trace_no, "unknown")
    await journal.enqueue_reversal(
        trace_no, from_state="unknown", event="give_up", first_attempt_at=T0 + timedelta(seconds=seconds)
    )


async def traced_statements(journal: Journal) -> list[str]:
    """From now on, every statement the journal's own connection runs (installed on its thread)."""
    statements: list[str] = []

    def install(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.append)

    await journal._run("trace", install)
    return statements


def heads(statements: list[str]) -> list[str]:
    return [s.split()[0].upper() for s in statements if s.split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK")]


async def test_a_new_sale_is_recorded_in_one_hop_and_one_transaction(journal: Journal, db_path: Path) -> None:
    statements = await traced_statements(journal)
    with journal_hops(journal) as hops:
        intake = await journal.open_intent(new_sale())
    assert intake == Intake()
    assert intake.recorded
    assert hops == ["_open_intent"]
    assert heads(statements) == ["BEGIN", "COMMIT"]  # the reads and the insert: one BEGIN IMMEDIATE ... COMMIT
    # What record_intent writes: the row in its initial state and the intent's transitions row.
    with raw(db_path) as conn:
        assert conn.execute("SELECT state, lane FROM transactions WHERE trace_no = 'S1'").fetchall() == [
            ("received", None)
        ]
        assert conn.execute("SELECT from_state, to_state, event FROM transitions WHERE trace_no = 'S1'").fetchall() == [
            ("", "received", "intent")
        ]


async def test_a_repeat_gets_the_journals_row_and_nothing_is_written(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "S1", "approved")
    before = await journal.transitions("S1")
    intake = await journal.open_intent(new_sale("S1"))
    assert intake.existing == await journal.get("S1")
    assert not intake.recorded
    assert not intake.voids_due
    assert await journal.transitions("S1") == before


async def test_a_due_void_stops_the_intent_and_writes_nothing(journal: Journal) -> None:
    await void_due_in(journal, "OLD", 0)
    intake = await journal.open_intent(new_sale())
    assert intake == Intake(voids_due=True)
    assert await journal.get("S1") is None
    # The caller sends the void, then records the intent as ever.
    await journal.record_intent(new_sale())
    assert (await journal.get("S1")) is not None


async def test_a_void_not_yet_due_does_not_hold_the_sale(journal: Journal, clock: FakeClock) -> None:
    await void_due_in(journal, "OLD", 30)
    assert (await journal.open_intent(new_sale("S1"))).recorded
    clock.advance(30)  # now it is due: the next sale waits for it
    assert (await journal.open_intent(new_sale("S2"))).voids_due


async def test_only_the_lanes_own_due_voids_hold_its_sale(journal: Journal) -> None:
    other = journal.for_lane(LANE2, default=False)
    await void_due_in(other, "OLD", 0)
    assert (await journal.for_lane("front", default=True).open_intent(new_sale("S1"))).recorded
    lane2 = await other.open_intent(new_sale("S2"))
    assert lane2.voids_due


async def test_open_intent_checks_what_record_intent_checks(journal: Journal) -> None:
    with pytest.raises(InvalidTransition, match="starts in 'received'"):
        await journal.open_intent(replace(new_sale(), state="approved"))
    foreign = replace(new_sale("S9"), lane="elsewhere")
    with pytest.raises(JournalError, match="lane 'elsewhere'"):
        await journal.open_intent(foreign)


async def test_a_failed_insert_leaves_nothing_behind(journal: Journal, db_path: Path) -> None:
    with raw(db_path) as conn:
        conn.execute("DROP TABLE transitions")
    with pytest.raises(JournalError, match="open_intent failed") as caught:
        await journal.open_intent(new_sale())
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert await journal.get("S1") is None  # the row inserted before the failure was rolled back
