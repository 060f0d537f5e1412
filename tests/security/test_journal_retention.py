"""Retention (R16): final rows older than the retention are purged, non-final rows never, and the purge is journaled."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misbridge.app.retention import purge, retention_cutoff, run_retention
from misbridge.errors import JournalError
from misbridge.journal.records import TransactionRecord
from misbridge.journal.schema import FINAL_STATES
from misbridge.journal.store import Journal
from tests.security.journals import NOW, RECENT, RETENTION_DAYS, ROWS, build_journal, request
from tests.seeding import seed_transaction


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return [tuple(row) for row in conn.execute(query).fetchall()]


def _trace_nos(path: Path, table: str, column: str = "trace_no") -> set[str]:
    return {str(row[0]) for row in _rows(path, f"SELECT {column} FROM {table}")}  # noqa: S608 - test constants


@pytest.fixture
async def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    await build_journal(path)
    return path


async def test_purge_deletes_old_final_rows_and_keeps_everything_else(journal_path: Path) -> None:
    before_serial = _rows(journal_path, "SELECT value FROM counters WHERE name = 'trace_serial'")
    async with await Journal.open(journal_path) as journal:
        deleted = await journal.purge(retention_cutoff(RETENTION_DAYS, now=NOW))
    purged = {trace_no for trace_no, (_, gone) in ROWS.items() if gone}
    kept = set(ROWS) - purged
    assert deleted == len(purged) == 4
    assert _trace_nos(journal_path, "transactions") == kept
    assert _trace_nos(journal_path, "transitions") == kept
    assert _trace_nos(journal_path, "backend_calls", "original_trace_no") == kept & {
        "OLD-NEEDS-MANUAL",
        "OLD-VOIDING",
        "NEW-VOIDED",
    }
    assert _trace_nos(journal_path, "reversals", "original_trace_no") == {"OLD-NEEDS-MANUAL", "OLD-VOIDING",
                                                                          "NEW-VOIDED"}  # fmt: skip
    # The purge journals itself, with what it deleted from each table.
    (row,) = _rows(journal_path, "SELECT cutoff, transactions, transitions, backend_calls, reversals FROM purges")
    assert row[0] == (NOW - timedelta(days=RETENTION_DAYS)).isoformat(timespec="microseconds")
    assert row[1:] == (4, 5 + 5 + 2 + 7, 2, 1)  # transitions: approved, declined, aborted, voided
    # The serial counter is kept: a traceNo misbridge originated is never handed out again.
    assert _rows(journal_path, "SELECT value FROM counters WHERE name = 'trace_serial'") == before_serial


async def test_the_survivors_are_untouched_and_still_usable(journal_path: Path) -> None:
    async with await Journal.open(journal_path) as journal:
        before = {t: (await journal.get(t), await journal.transitions(t), await journal.calls(t),
                      await journal.reversal(t)) for t in ROWS if not ROWS[t][1]}  # fmt: skip
        await journal.purge(retention_cutoff(RETENTION_DAYS, now=NOW))
        after = {t: (await journal.get(t), await journal.transitions(t), await journal.calls(t),
                     await journal.reversal(t)) for t in before}  # fmt: skip
        assert after == before
        assert [r.original_trace_no for r in await journal.pending_reversals()] == ["OLD-VOIDING"]
        assert await journal.count_reversals("needs_manual") == 1
        # The journal goes on: the pending void can still complete, and new calls get new serials.
        call = await journal.allocate_call("OLD-VOIDING", "void")
        assert call.endswith("0000000009")
        await journal.complete_reversal("OLD-VOIDING")
        assert (await journal.get("OLD-VOIDING")).state == "voided"  # type: ignore[union-attr]
        assert await journal.integrity_check() == "ok"


async def test_a_second_purge_deletes_nothing_and_is_journaled_too(journal_path: Path) -> None:
    async with await Journal.open(journal_path) as journal:
        cutoff = retention_cutoff(RETENTION_DAYS, now=NOW)
        assert await journal.purge(cutoff) == 4
        assert await journal.purge(cutoff) == 0
    assert [row[1:] for row in _rows(journal_path, "SELECT id, transactions FROM purges ORDER BY id")] == [(4,), (0,)]


async def test_batches_write_one_purge_row(journal_path: Path) -> None:
    async with await Journal.open(journal_path) as journal:
        assert await journal.purge(retention_cutoff(RETENTION_DAYS, now=NOW), batch_size=1) == 4
    assert _rows(journal_path, "SELECT transactions, reversals FROM purges") == [(4, 1)]


async def test_a_longer_cutoff_keeps_the_recent_rows(journal_path: Path) -> None:
    async with await Journal.open(journal_path) as journal:
        assert await journal.purge(RECENT - timedelta(seconds=1)) == 4
        assert await journal.purge(NOW) == 2  # NEW-APPROVED and NEW-VOIDED are final too
        assert {r.trace_no for r in await journal.list_by_states(FINAL_STATES)} == set()
        assert await journal.count() == 4  # the four non-final rows, however old


async def test_bad_arguments_are_journal_errors(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path / "j.db") as journal:
        with pytest.raises(JournalError, match="timezone-aware"):
            await journal.purge(datetime(2026, 1, 1))
        with pytest.raises(JournalError, match="batch_size"):
            await journal.purge(NOW, batch_size=0)
        assert await journal.purge(NOW) == 0  # an empty journal


async def test_purge_helper_logs_and_run_retention_survives_errors(journal_path: Path) -> None:
    async with await Journal.open(journal_path) as journal:
        assert await purge(journal, RETENTION_DAYS, now=NOW) == 4
    closed = journal  # a closed journal makes every purge fail: the loop must log and go on
    task = asyncio.create_task(run_retention(closed, RETENTION_DAYS, interval_s=0.01))
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


STATES = ("received", "reading_card", "reading_pin", "submitting", "unknown", "inquiring", *FINAL_STATES)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(STATES), st.integers(0, 400)), min_size=1, max_size=12))
async def test_property_no_non_final_row_is_ever_purged(tmp_path_factory: pytest.TempPathFactory,
                                                       rows: list[tuple[str, int]]) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("prop") / "journal.db"
    clock = [NOW]
    async with await Journal.open(path, clock=lambda: clock[0]) as journal:
        for index, (state, age) in enumerate(rows):
            clock[0] = NOW - timedelta(days=age)
            trace_no = f"P{index}"
            await seed_transaction(journal, TransactionRecord.new(trace_no, "cardRedemption", state, request(trace_no),
                                                              now=clock[0]))  # fmt: skip
        clock[0] = NOW
        deleted = await journal.purge(retention_cutoff(RETENTION_DAYS, now=NOW))
        left = {f"P{i}" for i in range(len(rows))} - {f"P{i}" for i, (s, a) in enumerate(rows)
                                                        if s in FINAL_STATES and a > RETENTION_DAYS}  # fmt: skip
        survivors = {r.trace_no for r in await journal.list_by_states(STATES)}
    assert survivors == left
    assert deleted == len(rows) - len(left)
