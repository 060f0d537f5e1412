"""``voidQrcodeSale`` and ``refundQrcodeSale`` through the service: scripted backend, real journal.

Happy paths, every check against an original in the journal (refused before anything is sent),
an original the journal does not hold (the backend decides), a void whose outcome stays unknown
(sent again by the reversal queue until confirmed) and a refund whose outcome stays unknown
(never sent twice: needs_manual).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from misbridge.core.machine import TxnState
from misbridge.core.service import TransactionService
from misbridge.errors import BackendOutcomeUnknown
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal
from tests.unit.core.fakes import APPROVED, ScriptedBackend, ScriptedPad, reply

VOID = "voidQrcodeSale"
REFUND = "refundQrcodeSale"
_serial = iter(range(1, 1_000_000))


def trace_no() -> str:
    """A fresh POS traceNo."""
    return f"QF{next(_serial):010d}"


async def qr_sale(
    journal: Journal, total: str = "40.80", *, action: str = "qrcodeSale", state: str = "approved"
) -> str:
    """An original sale in the journal, approved by default (``submit`` then ``approve``)."""
    original = trace_no()
    body = {"traceNo": original, "totalAmount": Decimal(total), "undiscountAmount": 0, "goodsDetail": [],
            "qrcode": "280123121234567890"}  # fmt: skip
    await journal.record_intent(TransactionRecord.new(original, action, TxnState.RECEIVED, body))
    await journal.record_transition(original, "received", "submit")
    if state != "submitting":
        event = {"approved": "approve", "declined": "decline"}[state]
        await journal.record_transition(original, "submitting", event, response={"returnCode": "00"}, return_code="00")
    return original


def void_of(original: str) -> dict[str, Any]:
    """A POS void of ``original``."""
    return {"traceNo": trace_no(), "originalTraceNo": original}


def refund_of(original: str, amount: str) -> dict[str, Any]:
    """A POS refund of ``amount`` of ``original``."""
    return {"traceNo": trace_no(), "originalTraceNo": original, "refundAmount": Decimal(amount)}


async def state_of(journal: Journal, trace: str) -> str | None:
    record = await journal.get(trace)
    return None if record is None else record.state


# --- happy paths ---------------------------------------------------------------------------------


async def test_a_qr_void_is_submitted_without_the_pad_and_approved(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(VOID, APPROVED)
    body = void_of(await qr_sale(journal))
    answer = await service.handle(VOID, body)
    assert answer["returnCode"] == "00"
    assert backend.calls == [(VOID, body)]
    assert pad.card_prompts == 0
    assert [t.event for t in await journal.transitions(body["traceNo"])] == ["intent", "submit", "approve"]
    assert await service.handle(VOID, body) == answer  # a repeat: the stored answer, not sent again
    assert backend.actions() == [VOID]


async def test_partial_refunds_add_up_to_the_rest_and_no_further(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(REFUND, APPROVED)
    original = await qr_sale(journal, "40.80")
    for amount in ("10.10", "30.60", "0.10"):
        body = refund_of(original, amount)
        answer = await service.handle(REFUND, body)
        assert answer["returnCode"] == "00", amount
    over = await service.handle(REFUND, refund_of(original, "0.01"))
    assert over["returnCode"] == "MB47"
    assert "0.00 left" in over["returnDesc"]
    assert backend.actions() == [REFUND, REFUND, REFUND]


async def test_a_declined_refund_does_not_count_against_the_rest(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(REFUND, reply("13", "refund amount exceeds"), APPROVED)
    original = await qr_sale(journal, "20")
    first = await service.handle(REFUND, refund_of(original, "20"))
    assert first["returnCode"] == "13"  # the backend's decline, passed on
    assert (await service.handle(REFUND, refund_of(original, "20")))["returnCode"] == "00"


# --- refused before anything is sent --------------------------------------------------------------


async def test_a_void_after_a_void_is_mb45(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(VOID, APPROVED)
    original = await qr_sale(journal)
    assert (await service.handle(VOID, void_of(original)))["returnCode"] == "00"
    second = void_of(original)
    answer = await service.handle(VOID, second)
    assert answer["returnCode"] == "MB45"
    assert backend.actions() == [VOID]
    assert await journal.get(second["traceNo"]) is None, "a refusal is not a transaction"


async def test_a_refund_after_a_void_is_mb45(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(VOID, APPROVED)
    original = await qr_sale(journal)
    await service.handle(VOID, void_of(original))
    assert (await service.handle(REFUND, refund_of(original, "1")))["returnCode"] == "MB45"
    assert backend.actions() == [VOID]


async def test_a_void_after_a_refund_is_mb46(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(REFUND, APPROVED)
    original = await qr_sale(journal)
    await service.handle(REFUND, refund_of(original, "1"))
    assert (await service.handle(VOID, void_of(original)))["returnCode"] == "MB46"
    assert backend.actions() == [REFUND]


async def test_a_refund_over_the_total_is_mb47(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    original = await qr_sale(journal, "40.80")
    answer = await service.handle(REFUND, refund_of(original, "40.81"))
    assert answer["returnCode"] == "MB47"
    assert backend.calls == []


@pytest.mark.parametrize("action", [VOID, REFUND])
@pytest.mark.parametrize(
    ("sale_action", "sale_state"),
    [("cardRedemption", "approved"), ("qrcodeSale", "declined")],
    ids=["card", "declined"],
)
async def test_an_original_that_is_no_approved_qr_sale_is_mb48(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, action: str, sale_action: str,
    sale_state: str,
) -> None:  # fmt: skip
    original = await qr_sale(journal, action=sale_action, state=sale_state)
    body = void_of(original) if action == VOID else refund_of(original, "1")
    assert (await service.handle(action, body))["returnCode"] == "MB48"
    assert backend.calls == []


async def test_an_unresolved_void_counts_as_a_void(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    original = await qr_sale(journal)
    pending = void_of(original)
    await journal.record_intent(TransactionRecord.new(pending["traceNo"], VOID, TxnState.RECEIVED, pending))
    assert (await service.handle(REFUND, refund_of(original, "1")))["returnCode"] == "MB45"
    assert backend.calls == []


@pytest.mark.parametrize("action", [VOID, REFUND])
async def test_an_original_the_journal_does_not_hold_is_the_backends_call(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, action: str
) -> None:
    backend.will(action, reply("25", "original not found"))
    body = void_of("ELSEWHERE1") if action == VOID else refund_of("ELSEWHERE1", "5")
    answer = await service.handle(action, body)
    assert answer["returnCode"] == "25"
    assert await state_of(journal, body["traceNo"]) == "declined"


# --- unknown outcomes ------------------------------------------------------------------------------


async def test_an_unknown_void_is_inquired_and_an_approval_kept(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(VOID, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", APPROVED)
    body = void_of(await qr_sale(journal))
    assert (await service.handle(VOID, body))["returnCode"] == "00"
    assert await state_of(journal, body["traceNo"]) == "approved"
    assert backend.actions() == [VOID, "inquiry"]


async def test_a_void_still_unknown_is_sent_again_until_confirmed(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(VOID, BackendOutcomeUnknown("read timeout"), BackendOutcomeUnknown("again"), reply("22", "voided"))
    backend.will("inquiry", reply("26", "in progress"))
    original = await qr_sale(journal)
    body = void_of(original)
    answer = await service.handle(VOID, body)
    assert answer["returnCode"] == "MB36"
    assert await state_of(journal, body["traceNo"]) == "voiding"
    queued = await journal.reversal(body["traceNo"])
    assert queued is not None
    assert queued.state == "pending"
    await service.resolver.drain()  # the resend whose reply is lost: retried later
    assert await state_of(journal, body["traceNo"]) == "voiding"
    reversal = await journal.reversal(body["traceNo"])
    assert reversal is not None
    await service.resolver.attempt_void(reversal)  # answered 22: the first one went through
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert (record.state, record.return_code) == ("approved", "22")
    voids = [(a, b) for a, b in backend.calls if a == VOID]
    assert len(voids) == 3
    assert {b["originalTraceNo"] for _, b in voids} == {original}
    assert len({b["traceNo"] for _, b in voids}) == 3, "each send under its own traceNo"
    calls = await journal.calls(body["traceNo"])
    assert [c.kind for c in calls].count("void") == 2


async def test_a_resent_void_refused_goes_to_needs_manual(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(VOID, BackendOutcomeUnknown("read timeout"), reply("24", "original refunded"))
    backend.will("inquiry", BackendOutcomeUnknown("no answer"))
    body = void_of(await qr_sale(journal))
    assert (await service.handle(VOID, body))["returnCode"] == "MB36"
    await service.resolver.drain()
    assert await state_of(journal, body["traceNo"]) == "needs_manual"


async def test_a_refund_still_unknown_goes_to_needs_manual_and_is_never_sent_again(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(REFUND, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", reply("26", "in progress"))
    original = await qr_sale(journal)
    body = refund_of(original, "5")
    answer = await service.handle(REFUND, body)
    assert answer["returnCode"] == "MB34"
    assert "never sent twice" in answer["returnDesc"]
    assert await state_of(journal, body["traceNo"]) == "needs_manual"
    assert await journal.reversal(body["traceNo"]) is None
    await service.resolver.drain()
    assert backend.actions().count(REFUND) == 1
    # It may have happened: it still counts against what is left.
    assert (await service.handle(REFUND, refund_of(original, "35.81")))["returnCode"] == "MB47"


async def test_a_refund_the_inquiry_finds_never_happened_is_declined(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(REFUND, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", reply("25", "not found"))
    body = refund_of(await qr_sale(journal), "5")
    assert (await service.handle(REFUND, body))["returnCode"] == "MB33"
    assert await state_of(journal, body["traceNo"]) == "declined"
    assert backend.actions() == [REFUND, "inquiry"]


@pytest.mark.parametrize("action", [VOID, REFUND])
async def test_an_original_misbridge_is_voiding_is_mb45(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, action: str
) -> None:
    original = await qr_sale(journal, state="submitting")
    await journal.record_transition(original, "submitting", "outcome_unknown")
    await service.resolver.enqueue_void(original, "unknown", "give_up", "test")
    body = void_of(original) if action == VOID else refund_of(original, "1")
    answer = await service.handle(action, body)
    assert answer["returnCode"] == "MB45"
    assert "voiding" in answer["returnDesc"]
    assert backend.calls == []
