"""The inquiry loop, the reversal queue and start-up recovery, each driven on its own.

A real journal seeded along the machine (tests/seeding.py), a scripted backend; every test
checks the journal row and the returnCode the POS is told about it from then on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from misbridge.config.settings import Settings
from misbridge.core.answers import answer_from_journal
from misbridge.core.inquiry import InquiryLoop
from misbridge.core.recovery import Recovery
from misbridge.core.reversals import ReversalQueue
from misbridge.ebuy.examples import card_redemption_request
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal
from tests.seeding import seed_transaction
from tests.unit.core.fakes import APPROVED, ScriptedBackend, reply

VOID = "voidCardSale"
_serial = iter(range(1, 1_000_000))


async def seeded(journal: Journal, state: str, **request: Any) -> str:
    """A cardRedemption journaled in ``state`` (walked there along its machine); its traceNo."""
    body = card_redemption_request() | request
    body["traceNo"] = trace_no = f"RS{next(_serial):010d}"
    await seed_transaction(journal, TransactionRecord.new(trace_no, "cardRedemption", state, body))
    return trace_no


async def told(journal: Journal, trace_no: str) -> tuple[str, str]:
    """(journal state, returnCode the POS is told about it)."""
    record = await journal.get(trace_no)
    assert record is not None
    return record.state, answer_from_journal(record)["returnCode"]


async def queued_void(journal: Journal, reversals: ReversalQueue, trace_no: str | None = None) -> str:
    """A transaction in ``voiding`` with its void queued, as the inquiry loop leaves it."""
    trace_no = trace_no or await seeded(journal, "unknown")
    await reversals.enqueue_void(trace_no, "unknown", "give_up", "test")
    return trace_no


# --- the reversal queue ----------------------------------------------------------------------------


async def test_queueing_a_void_answers_mb32_from_then_on(journal: Journal, reversals: ReversalQueue) -> None:
    trace_no = await queued_void(journal, reversals)
    assert await told(journal, trace_no) == ("voiding", "MB32")
    entry = await journal.reversal(trace_no)
    assert entry is not None
    assert (entry.state, entry.attempts) == ("pending", 0)


@pytest.mark.parametrize("code", ["00", "22", "25"], ids=["done", "already-voided", "not-found"])
async def test_an_acknowledged_void_ends_voided_and_keeps_the_mb32(
    journal: Journal, reversals: ReversalQueue, backend: ScriptedBackend, code: str
) -> None:
    trace_no = await queued_void(journal, reversals, await seeded(journal, "unknown", acquirer="ACQ9"))
    backend.will(VOID, reply(code))
    assert await reversals.drain() == 1
    assert await told(journal, trace_no) == ("voided", "MB32")
    entry = await journal.reversal(trace_no)
    assert entry is not None
    assert (entry.state, entry.attempts) == ("done", 1)
    action, sent = backend.calls[0]
    assert (action, sent["originalTraceNo"], sent["acquirer"]) == (VOID, trace_no, "ACQ9")
    assert sent["traceNo"] != trace_no, "a void carries a traceNo of its own"


@pytest.mark.parametrize(
    "failure",
    [BackendOutcomeUnknown("read timeout"), BackendNotSent("refused"), reply("26", "in progress")],
    ids=["unknown", "not-sent", "pending"],
)
async def test_a_void_failing_until_the_expiry_needs_manual(
    journal: Journal, reversals: ReversalQueue, backend: ScriptedBackend, failure: Any
) -> None:
    trace_no = await queued_void(journal, reversals)
    backend.will(VOID, failure)
    await reversals.drain()
    assert await told(journal, trace_no) == ("voiding", "MB32"), "a failed attempt keeps it queued"
    async with asyncio.timeout(10):  # retried with backoff until reversal_expire_s (1 s)
        while (entry := await journal.reversal(trace_no)) is not None and entry.state == "pending":
            await reversals.drain()
            await asyncio.sleep(0.01)
    assert entry is not None
    assert entry.state == "needs_manual"
    assert entry.attempts >= 2
    assert await told(journal, trace_no) == ("needs_manual", "MB34"), "a repeat is told a person must reconcile it"
    assert await journal.count_reversals("needs_manual") == 1


async def test_a_refused_void_needs_manual_at_once(
    journal: Journal, reversals: ReversalQueue, backend: ScriptedBackend
) -> None:
    trace_no = await queued_void(journal, reversals)
    backend.will(VOID, reply("51", "refused"))
    await reversals.drain()
    assert await told(journal, trace_no) == ("needs_manual", "MB34")
    assert backend.actions() == [VOID]


async def test_a_void_not_due_yet_is_not_sent(journal: Journal, settings: Settings, backend: ScriptedBackend) -> None:
    slow_backoff = settings.resolution.model_copy(
        update={"reversal_backoff_initial_s": 30, "reversal_backoff_max_s": 60}
    )
    reversals = ReversalQueue(slow_backoff, journal, backend)
    trace_no = await queued_void(journal, reversals)
    backend.will(VOID, BackendOutcomeUnknown("read timeout"))
    await reversals.drain()
    assert await reversals.drain() == 0, "backoff: the failed void is not due again at once"
    assert backend.actions() == [VOID]
    assert await told(journal, trace_no) == ("voiding", "MB32")


async def test_the_worker_sends_a_void_as_soon_as_it_is_queued(
    journal: Journal, reversals: ReversalQueue, backend: ScriptedBackend
) -> None:
    backend.will(VOID, reply("00"))
    worker = asyncio.create_task(reversals.run_worker())
    try:
        trace_no = await queued_void(journal, reversals)
        async with asyncio.timeout(5):
            while (await told(journal, trace_no))[0] != "voided":  # noqa: ASYNC110 - the worker's work
                await asyncio.sleep(0.01)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert await told(journal, trace_no) == ("voided", "MB32")


# --- the inquiry loop ------------------------------------------------------------------------------


async def test_an_approval_nobody_waits_for_is_voided(
    journal: Journal, inquiries: InquiryLoop, backend: ScriptedBackend
) -> None:
    trace_no = await seeded(journal, "unknown")
    backend.will("inquiry", APPROVED)
    assert await inquiries.resolve(trace_no, claim_deadline=None) == "voiding"
    assert await told(journal, trace_no) == ("voiding", "MB32")


async def test_an_approval_after_the_claim_deadline_is_voided(
    journal: Journal, inquiries: InquiryLoop, backend: ScriptedBackend
) -> None:
    trace_no = await seeded(journal, "unknown")
    backend.will("inquiry", APPROVED)
    assert await inquiries.resolve(trace_no, claim_deadline=0.0) == "voiding"
    assert await told(journal, trace_no) == ("voiding", "MB32")


async def test_an_inquiry_retries_until_the_backend_knows(
    journal: Journal, settings: Settings, reversals: ReversalQueue, backend: ScriptedBackend
) -> None:
    patient = settings.resolution.model_copy(update={"inquiry_bound_s": 30})
    inquiries = InquiryLoop(patient, journal, backend, reversals)
    trace_no = await seeded(journal, "unknown")
    backend.will("inquiry", BackendNotSent("refused"), reply("26"), APPROVED)
    deadline = asyncio.get_running_loop().time() + 60
    assert await inquiries.resolve(trace_no, claim_deadline=deadline) == "approved"
    assert await told(journal, trace_no) == ("approved", "00")
    calls = await journal.calls(trace_no)
    assert [c.state for c in calls] == ["unknown", "answered", "answered"], "each inquiry is journaled"
    assert {c.kind for c in calls} == {"inquiry"}


# --- start-up recovery -----------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["received", "reading_card", "reading_pin"])
async def test_recovery_aborts_a_pre_submit_transaction_with_mb28(
    journal: Journal, recovery: Recovery, backend: ScriptedBackend, state: str
) -> None:
    trace_no = await seeded(journal, state)
    assert await recovery.recover() == 1
    assert await told(journal, trace_no) == ("aborted", "MB28")
    assert backend.calls == [], "nothing was sent, nothing is asked"


#: Money-at-risk states; recover() counts one for each step it takes (made unknown, then resolved).
AT_RISK = [("submitting", 2), ("unknown", 1), ("inquiring", 2)]


@pytest.mark.parametrize(("state", "steps"), AT_RISK)
async def test_recovery_voids_a_money_at_risk_transaction_found_approved(
    journal: Journal, recovery: Recovery, backend: ScriptedBackend, state: str, steps: int
) -> None:
    trace_no = await seeded(journal, state)
    backend.will("inquiry", APPROVED)
    backend.will(VOID, reply("00"))
    assert await recovery.recover() == steps
    assert await told(journal, trace_no) == ("voided", "MB32"), "nobody waits for it after a restart"
    assert backend.actions() == ["inquiry", VOID]


@pytest.mark.parametrize(("state", "steps"), AT_RISK)
async def test_recovery_declines_a_money_at_risk_transaction_the_backend_never_had(
    journal: Journal, recovery: Recovery, backend: ScriptedBackend, state: str, steps: int
) -> None:
    trace_no = await seeded(journal, state)
    backend.will("inquiry", reply("25", "not found"))
    assert await recovery.recover() == steps
    assert await told(journal, trace_no) == ("declined", "MB33")
    assert backend.actions() == ["inquiry"]


async def test_recovery_sends_a_void_left_queued(
    journal: Journal, recovery: Recovery, reversals: ReversalQueue, backend: ScriptedBackend
) -> None:
    trace_no = await queued_void(journal, reversals)
    backend.will(VOID, reply("00"))
    assert await recovery.recover() == 0, "a queued void is the queue's, not an interrupted transaction"
    assert await told(journal, trace_no) == ("voided", "MB32")


async def test_recovery_leaves_final_transactions_alone(
    journal: Journal, recovery: Recovery, backend: ScriptedBackend
) -> None:
    approved, declined = await seeded(journal, "approved"), await seeded(journal, "declined")
    assert await recovery.recover() == 0
    assert (await told(journal, approved))[0] == "approved"
    assert (await told(journal, declined))[0] == "declined"
    assert backend.calls == []
