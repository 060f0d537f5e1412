"""The operator's last word on a needs_manual transaction: the kind's resolve_* event, and its reversal closed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal import Journal, ReversalConflictError, StateConflictError, TransactionRecord
from tests.seeding import seed_transaction
from tests.unit.journal.helpers import T0, add_transaction


async def escalated_sale(journal: Journal, trace_no: str) -> None:
    """A sale whose void went unconfirmed: transaction and queue entry both needs_manual."""
    await add_transaction(journal, trace_no, "unknown")
    await journal.enqueue_reversal(trace_no, from_state="unknown", event="give_up")
    await journal.escalate_reversal(trace_no, detail="void unconfirmed for 24 h")


@pytest.mark.parametrize("outcome", ["voided", "approved"])
async def test_a_sale_is_resolved_and_its_reversal_closed_in_one_write(journal: Journal, outcome: str) -> None:
    await escalated_sale(journal, "S1")
    assert await journal.resolve("S1", outcome, note="e-Buy ticket 4711") == outcome
    record = await journal.get("S1")
    assert record is not None
    assert record.state == outcome
    last = (await journal.transitions("S1"))[-1]
    assert (last.from_state, last.to_state, last.event, last.detail) == (
        "needs_manual", outcome, f"resolve_{outcome}", "e-Buy ticket 4711"
    )  # fmt: skip
    reversal = await journal.reversal("S1")
    assert reversal is not None
    assert reversal.state == "done"
    assert await journal.count_reversals("needs_manual") == 0
    # Closed, it is purgeable like any final transaction once old enough.
    assert await journal.purge(record.updated_at + timedelta(seconds=1)) == 1


@pytest.mark.parametrize(("action", "outcome"), [("voidCardSale", "declined"), ("refundCardSale", "approved")])
async def test_a_void_or_refund_is_resolved_without_a_queue_entry(journal: Journal, action: str, outcome: str) -> None:
    request = {"traceNo": "V1", "originalTraceNo": "S0"}
    await seed_transaction(journal, TransactionRecord.new("V1", action, "needs_manual", request, now=T0))
    assert await journal.resolve("V1", outcome, note="checked with e-Buy") == outcome
    assert await journal.reversal("V1") is None


async def test_what_the_table_forbids_is_refused_and_nothing_is_written(journal: Journal) -> None:
    await escalated_sale(journal, "S1")
    with pytest.raises(InvalidTransition, match=r"can be resolved as approved or declined or voided, not 'aborted'"):
        await journal.resolve("S1", "aborted", note="x")
    with pytest.raises(JournalError, match="a note is required"):
        await journal.resolve("S1", "voided", note="  ")
    await add_transaction(journal, "A1", "approved")
    with pytest.raises(StateConflictError, match=r"expected state 'needs_manual' but it is 'approved'"):
        await journal.resolve("A1", "voided", note="x")
    with pytest.raises(StateConflictError, match="no such transaction"):
        await journal.resolve("NOPE", "voided", note="x")
    record = await journal.get("S1")
    assert record is not None
    assert record.state == "needs_manual"
    reversal = await journal.reversal("S1")
    assert reversal is not None
    assert reversal.state == "needs_manual"


async def test_a_queue_entry_in_another_state_rolls_the_move_back(journal: Journal) -> None:
    await add_transaction(journal, "S1", "unknown")
    await journal.enqueue_reversal("S1", from_state="unknown", event="give_up")
    await journal.escalate_reversal("S1", detail="unconfirmed")
    # Only hand-written SQL can put an entry out of step with its transaction; the journal still refuses.
    await journal._run("test", lambda conn: conn.execute("UPDATE reversals SET state = 'pending'"))
    with pytest.raises(ReversalConflictError, match="expected state 'needs_manual' but it is 'pending'"):
        await journal.resolve("S1", "voided", note="x")
    record = await journal.get("S1")
    assert record is not None
    assert record.state == "needs_manual"
