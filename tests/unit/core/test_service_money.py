"""TransactionService's money paths, against its protocols: scripted pad and backend, real journal.

Every test checks both what the journal holds and the returnCode the POS is told.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from misbridge.core.answers import answer_from_journal
from misbridge.core.service import TransactionService
from misbridge.ebuy.examples import card_redemption_request
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, CustomerCancelled
from misbridge.journal.store import Journal
from tests.unit.core.fakes import APPROVED, ScriptedBackend, ScriptedPad, reply

SALE = "cardRedemption"
_serial = iter(range(1, 1_000_000))


def sale_body(**changes: Any) -> dict[str, Any]:
    """The book's cardRedemption example under a new traceNo."""
    body = card_redemption_request()
    body["traceNo"] = f"UT{next(_serial):010d}"
    body.update(changes)
    return body


async def state_of(journal: Journal, trace_no: str) -> str | None:
    record = await journal.get(trace_no)
    return None if record is None else record.state


async def assert_journaled(journal: Journal, trace_no: str, state: str, answer: dict[str, Any]) -> None:
    """The row is in ``state`` and holds the answer the POS got: every later question gets the same."""
    record = await journal.get(trace_no)
    assert record is not None
    assert record.state == state
    assert record.return_code == answer["returnCode"]
    assert answer_from_journal(record) == answer


# --- one sale, each outcome ------------------------------------------------------------------------


async def test_an_approved_sale_is_journaled_approved_and_answered_00(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(SALE, APPROVED)
    body = sale_body()
    answer = await service.handle(SALE, body)
    assert answer["returnCode"] == "00"
    assert answer["traceNo"] == body["traceNo"]
    await assert_journaled(journal, body["traceNo"], "approved", answer)
    action, sent = backend.calls[0]
    assert (action, sent["cardInfo"]["cardNo"], sent["cardInfo"]["password"]) == (SALE, "AA" * 8, "CC" * 8)


async def test_a_declined_sale_is_journaled_declined_with_the_backends_code(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(SALE, reply("51", "insufficient funds"))
    body = sale_body()
    answer = await service.handle(SALE, body)
    assert (answer["returnCode"], answer["paidAmount"]) == ("51", 0)
    await assert_journaled(journal, body["traceNo"], "declined", answer)


async def test_a_sale_never_sent_is_aborted_with_mb30_and_never_inquired(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(SALE, BackendNotSent("connection refused"))
    body = sale_body()
    answer = await service.handle(SALE, body)
    assert answer["returnCode"] == "MB30"
    await assert_journaled(journal, body["traceNo"], "aborted", answer)
    assert backend.actions() == [SALE]


async def test_a_customer_cancel_aborts_before_anything_is_sent(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    pad.card_error = CustomerCancelled("cancelled on the pad")
    body = sale_body()
    answer = await service.handle(SALE, body)
    assert answer["returnCode"] == "MB23"
    await assert_journaled(journal, body["traceNo"], "aborted", answer)
    assert backend.calls == []


# --- unknown outcome: inquiry, then void -----------------------------------------------------------


async def test_unknown_then_inquiry_approved_answers_the_approval(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(SALE, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", APPROVED | {"originalTraceNo": "ignored"})
    body = sale_body()
    answer = await service.handle(SALE, body)
    assert answer["returnCode"] == "00"
    assert answer["traceNo"] == body["traceNo"]
    assert "originalTraceNo" not in answer
    await assert_journaled(journal, body["traceNo"], "approved", answer)
    assert backend.actions() == [SALE, "inquiry"]
    assert backend.calls[1][1]["originalTraceNo"] == body["traceNo"]
    assert backend.calls[1][1]["traceNo"] != body["traceNo"], "an inquiry carries a traceNo of its own"


@pytest.mark.parametrize(
    ("inquiry_code", "pos_code"),
    [("51", "51"), ("25", "MB33")],
    ids=["original-declined", "original-not-found"],
)
async def test_unknown_then_inquiry_declined_answers_the_decline(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, inquiry_code: str, pos_code: str
) -> None:
    backend.will(SALE, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", reply(inquiry_code))
    body = sale_body()
    answer = await service.handle(SALE, body)
    assert answer["returnCode"] == pos_code
    await assert_journaled(journal, body["traceNo"], "declined", answer)


@pytest.mark.parametrize(
    "inquiry",
    [BackendOutcomeUnknown("read timeout"), reply("26", "in progress"), reply("94", "duplicate traceNo")],
    ids=["no-answer", "pending", "inquiry-refused"],
)
async def test_still_unknown_at_the_bound_queues_a_void_and_answers_mb32(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, inquiry: Any
) -> None:
    backend.will(SALE, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", inquiry)
    body = sale_body()
    answer = await service.handle(SALE, body)
    assert answer["returnCode"] == "MB32"
    await assert_journaled(journal, body["traceNo"], "voiding", answer)
    queued = await journal.reversal(body["traceNo"])
    assert queued is not None
    assert queued.state == "pending"
    assert backend.actions()[:2] == [SALE, "inquiry"], "inquired before giving up"


# --- repeats and a busy pad ------------------------------------------------------------------------


async def _running_sale(service: TransactionService, pad: ScriptedPad, body: dict[str, Any]) -> asyncio.Task[Any]:
    """Start a sale whose customer is still at the pad (the card is not read until ``pad.release``)."""
    pad.release.clear()
    first = asyncio.create_task(service.handle(SALE, body))
    async with asyncio.timeout(5):
        await pad.card_asked.wait()
    return first


async def test_a_repeat_while_running_joins_the_running_sale(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(SALE, APPROVED)
    body = sale_body()
    first = await _running_sale(service, pad, body)
    repeat = asyncio.create_task(service.handle(SALE, dict(body)))
    await asyncio.sleep(0.05)
    assert not repeat.done(), "the repeat must wait for the running sale's answer"
    pad.release.set()
    answers = await asyncio.gather(first, repeat)
    assert answers[0] == answers[1]
    assert answers[0]["returnCode"] == "00"
    await assert_journaled(journal, body["traceNo"], "approved", answers[0])
    assert (pad.card_prompts, backend.actions()) == (1, [SALE]), "prompted and submitted once"


async def test_a_repeat_after_the_end_replays_the_stored_answer(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(SALE, reply("51"))
    body = sale_body()
    answer = await service.handle(SALE, body)
    await asyncio.sleep(0.01)  # a replay must not take a new transDate from the clock
    replayed = await service.handle(SALE, dict(body))
    assert replayed == answer
    assert replayed["returnCode"] == "51"
    await assert_journaled(journal, body["traceNo"], "declined", answer)
    assert (pad.card_prompts, backend.actions()) == (1, [SALE])


async def test_a_finished_traceno_with_another_body_gets_mb41(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(SALE, APPROVED)
    body = sale_body()
    answer = await service.handle(SALE, body)
    other = await service.handle(SALE, body | {"totalAmount": body["totalAmount"] + 1})
    assert other["returnCode"] == "MB41"
    await assert_journaled(journal, body["traceNo"], "approved", answer)
    assert backend.actions() == [SALE]


async def test_a_running_traceno_with_another_body_gets_mb41(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(SALE, APPROVED)
    body = sale_body()
    first = await _running_sale(service, pad, body)
    other = await service.handle(SALE, body | {"totalAmount": body["totalAmount"] + 1})
    assert other["returnCode"] == "MB41"
    assert await state_of(journal, body["traceNo"]) == "reading_card"
    pad.release.set()
    assert (await first)["returnCode"] == "00"
    assert await state_of(journal, body["traceNo"]) == "approved"


async def test_a_second_sale_while_one_runs_gets_mb25_and_is_not_journaled(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(SALE, APPROVED)
    running, second = sale_body(), sale_body()
    first = await _running_sale(service, pad, running)
    busy = await asyncio.wait_for(service.handle(SALE, second), 5)  # refused at once, never queued behind
    assert busy["returnCode"] == "MB25"
    assert running["traceNo"] not in busy["returnDesc"], "MB25 never names the running traceNo"
    assert await journal.get(second["traceNo"]) is None
    pad.release.set()
    assert (await first)["returnCode"] == "00"
    assert await state_of(journal, running["traceNo"]) == "approved"
    assert pad.card_prompts == 1
