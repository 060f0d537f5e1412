"""Killed processes (os._exit) never make a traceNo reusable nor split a voiding from its queue entry.

Each child writes through the real journal, then dies without closing anything: no checkpoint,
no connection close, no interpreter shutdown.  "Inside the transaction" is reached by wrapping
one of the journal thread's helpers so that it calls ``os._exit`` after the counter bump (or
the CAS) and before the COMMIT; the child prints what it saw committed before dying.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from misbridge.journal import Journal
from tests.unit.journal.helpers import counter, raw, serial_of

REPO_ROOT = Path(__file__).resolve().parents[3]

ALLOCATE_CHILD = """
import asyncio, os, sys
from pathlib import Path
from misbridge.journal import Journal, TransactionRecord, calls

async def main() -> None:
    path, mode = Path(sys.argv[1]), sys.argv[2]
    journal = await Journal.open(path)
    if await journal.get("K1") is None:
        await journal.record_intent(TransactionRecord.new("K1", "cardRedemption", "received", {"traceNo": "K1"}))
    print(await journal.allocate_call("K1", "inquiry"), flush=True)
    if mode == "after_commit":
        os._exit(137)
    insert_call = calls._insert_call

    def dying_insert(*args: object) -> None:
        if mode == "after_insert":
            insert_call(*args)  # counter bumped and row inserted, not committed
        os._exit(137)  # mode "before_insert": counter bumped only

    calls._insert_call = dying_insert
    await journal.allocate_call("K1", "void")
    os._exit(1)  # not reached

asyncio.run(main())
"""

ENQUEUE_CHILD = """
import asyncio, os, sys
from pathlib import Path
from misbridge.journal import Journal, TransactionRecord, reversals

async def main() -> None:
    path, mode = Path(sys.argv[1]), sys.argv[2]
    journal = await Journal.open(path)
    await journal.record_intent(TransactionRecord.new("K1", "cardRedemption", "received", {"traceNo": "K1"}))
    state = "received"
    for event in ("start_card", "card_read", "pin_entered", "outcome_unknown"):
        state = await journal.record_transition("K1", state, event)
    if mode == "inside":
        cas = reversals.compare_and_set_in_transaction

        def dying_cas(*args: object) -> None:
            cas(*args)  # transaction moved to voiding, queue row not yet inserted, nothing committed
            os._exit(137)

        reversals.compare_and_set_in_transaction = dying_cas
    await journal.enqueue_reversal("K1", from_state="unknown", event="give_up")
    os._exit(137)

asyncio.run(main())
"""


async def run_child(script: str, *args: str) -> list[str]:
    """Run ``script`` with ``args``; it must die with 137.  Returns its stdout lines."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == 137
    return stdout.decode().split()


async def test_killed_right_after_allocation_never_reuses_the_serial(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    seen: list[str] = []
    for _ in range(3):  # three crashed runs in a row, each reopening the last one's file
        seen += await run_child(ALLOCATE_CHILD, str(path), "after_commit")
    assert [serial_of(t) for t in seen] == [1, 2, 3]
    assert path.with_name(path.name + "-wal").stat().st_size > 0  # only in the WAL: reopen recovers it

    async with await Journal.open(path) as journal:
        assert [c.trace_no for c in await journal.calls("K1")] == seen
        assert all(c.state == "sent" for c in await journal.calls("K1"))
        assert serial_of(await journal.allocate_call("K1", "inquiry")) == 4
        assert await journal.integrity_check() == "ok"


@pytest.mark.parametrize("mode", ["before_insert", "after_insert"])
async def test_killed_inside_the_allocation_leaves_neither_bump_nor_row(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "journal.db"
    [committed] = await run_child(ALLOCATE_CHILD, str(path), mode)
    assert serial_of(committed) == 1
    assert counter(path) == 1  # the second allocation's bump died with its transaction
    with raw(path) as conn:
        assert conn.execute("SELECT trace_no FROM backend_calls").fetchall() == [(committed,)]

    async with await Journal.open(path) as journal:
        assert [c.trace_no for c in await journal.calls("K1")] == [committed]
        # 2 was never handed out (nothing returned it), so it is the next one; 1 is never reused
        assert serial_of(await journal.allocate_call("K1", "void")) == 2
        assert await journal.integrity_check() == "ok"


@pytest.mark.parametrize(("mode", "state", "queued"), [("inside", "unknown", False), ("after_commit", "voiding", True)])
async def test_killed_enqueue_is_all_or_nothing(tmp_path: Path, mode: str, state: str, queued: bool) -> None:
    path = tmp_path / "journal.db"
    await run_child(ENQUEUE_CHILD, str(path), mode)
    async with await Journal.open(path) as journal:
        record = await journal.get("K1")
        assert record is not None
        assert record.state == state
        assert [t.to_state for t in await journal.transitions("K1")][-1] == state
        reversal = await journal.reversal("K1")
        assert (reversal is not None) is queued
        assert await journal.count_reversals("pending") == int(queued)
        assert await journal.integrity_check() == "ok"
