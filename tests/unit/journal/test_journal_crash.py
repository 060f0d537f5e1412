"""A process killed (os._exit) right after a journal COMMIT loses nothing."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from misbridge.journal import Journal

REPO_ROOT = Path(__file__).resolve().parents[3]

# Writes an intent (and optionally one transition), then dies without closing anything:
# no checkpoint, no connection close, no interpreter shutdown.
CHILD = """
import asyncio, os, sys
from decimal import Decimal
from pathlib import Path
from misbridge.journal import Journal, TransactionRecord

async def main() -> None:
    journal = await Journal.open(Path(sys.argv[1]))
    request = {"traceNo": "K1", "totalAmount": Decimal("40.80"), "remark": "断电测试"}
    await journal.record_intent(TransactionRecord.new("K1", "cardRedemption", "received", request))
    if sys.argv[2] == "transition":
        await journal.record_transition("K1", "received", "start_card")
    os._exit(137)

asyncio.run(main())
"""


@pytest.mark.parametrize(("after", "state"), [("intent", "received"), ("transition", "reading_card")])
async def test_killed_right_after_commit_keeps_the_row(tmp_path: Path, after: str, state: str) -> None:
    path = tmp_path / "journal.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(path), after, env=env)
    assert await asyncio.wait_for(child.wait(), timeout=60) == 137

    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0  # the commit is only in the WAL: reopening must recover it

    async with await Journal.open(path) as journal:
        record = await journal.get("K1")
        assert record is not None
        assert record.state == state
        assert str(record.request["totalAmount"]) == "40.80"
        assert record.request["remark"] == "断电测试"
        assert [t.to_state for t in await journal.transitions("K1")][-1] == state
        assert await journal.integrity_check() == "ok"
