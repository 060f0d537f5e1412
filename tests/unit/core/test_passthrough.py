"""The pass-through actions through ``TransactionService.handle``: scripted backend, real journal.

``accumulating`` moves value as a sale without the pad (approve, decline, not sent, unknown then
inquired, needs_manual at the bound); ``ecouponInquiry``, ``summary`` and ``batchUpload`` move
nothing and are sent once (answered, no answer, repeat, conflicting repeat); a repeated
forwarded ``inquiry`` gets its stored answer.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from misbridge.config.settings import Settings
from misbridge.core.answers import answer_from_journal
from misbridge.core.recovery import Recovery
from misbridge.core.service import TransactionService
from misbridge.ebuy.examples import book_request
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal
from tests.unit.core.fakes import APPROVED, ScriptedBackend, ScriptedPad, reply

POINTS = "accumulating"
QUERIES = ("ecouponInquiry", "summary", "batchUpload")
_serial = iter(range(1, 1_000_000))

#: What the backend answers each pass-through action with (book §10.9, §10.10, §11.1, §11.2).
ANSWERS: dict[str, dict[str, Any]] = {
    "accumulating": {"returnCode": "00", "returnDesc": "SUCCESS", "orderNo": "ORD7", "transDate": "20161231120533"},
    "ecouponInquiry": {"returnCode": "00", "returnDesc": "SUCCESS", "orderNo": "171698602301",
                       "transDate": "20161231120533", "canPayAmount": Decimal("40.8"),
                       "activityProductNo": "2016123101"},
    "summary": {"returnCode": "00", "returnDesc": "SUCCESS", "transDate": "20161231102201", "settleRecord": [],
                "beginDate": "20161029113602", "endDate": "20161030113602", "volume": 0,
                "totalReceiptAmount": 0, "totalAmount": 0},
    "batchUpload": {"returnCode": "00", "returnDesc": "SUCCESS", "transDate": "20161231120533",
                    "transRecord": [{"traceNo": "99000009100010101732123", "paidAmount": Decimal("100.00"),
                                     "status": 1}]},
}  # fmt: skip


def body_of(action: str, **changes: Any) -> dict[str, Any]:
    """The book's example of ``action`` under a new traceNo."""
    body = book_request(action)
    body["traceNo"] = f"PT{next(_serial):010d}"
    body.update(changes)
    return body


async def state_of(journal: Journal, trace_no: str) -> str | None:
    record = await journal.get(trace_no)
    return None if record is None else record.state


# --- the book's examples, end to end ---------------------------------------------------------------


@pytest.mark.parametrize("action", [POINTS, *QUERIES])
async def test_the_books_example_is_carried_out_and_answered_with_the_backends_reply(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad, action: str
) -> None:
    backend.will(action, ANSWERS[action])
    body = book_request(action)
    answer = await service.handle(action, body)
    assert answer == {"traceNo": body["traceNo"], "orderNo": answer.get("orderNo", ""), **ANSWERS[action]}
    assert backend.calls == [(action, body)]  # passed on as the POS sent it: no cardInfo, nothing added
    assert pad.card_prompts == 0
    if action == POINTS:
        assert await state_of(journal, body["traceNo"]) == "approved"
    else:
        query = await journal.query(body["traceNo"])
        assert query is not None
        assert (query.state, query.return_code, query.response) == ("answered", "00", answer)
        assert await journal.get(body["traceNo"]) is None


# --- accumulating ----------------------------------------------------------------------------------


async def test_accumulating_is_submitted_without_the_pad_and_journaled_as_a_sale(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(POINTS, APPROVED)
    body = body_of(POINTS)
    answer = await service.handle(POINTS, body)
    assert answer["returnCode"] == "00"
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert answer_from_journal(record) == answer
    assert [t.event for t in await journal.transitions(body["traceNo"])] == ["intent", "submit", "approve"]
    assert await service.handle(POINTS, body) == answer  # a repeat: the stored answer, not sent again
    assert backend.actions() == [POINTS]


async def test_a_declined_accumulation_keeps_the_backends_code(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(POINTS, reply("14", "unknown member"))
    body = body_of(POINTS)
    answer = await service.handle(POINTS, body)
    assert (answer["returnCode"], answer["paidAmount"]) == ("14", 0)
    assert await state_of(journal, body["traceNo"]) == "declined"


async def test_an_accumulation_never_sent_is_aborted_mb30(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(POINTS, BackendNotSent("connection refused"))
    body = body_of(POINTS)
    assert (await service.handle(POINTS, body))["returnCode"] == "MB30"
    assert await state_of(journal, body["traceNo"]) == "aborted"
    assert backend.actions() == [POINTS]


async def test_an_unknown_accumulation_is_inquired_and_an_approval_kept(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(POINTS, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", reply("26", "in progress"), APPROVED)
    body = body_of(POINTS)
    answer = await service.handle(POINTS, body)
    assert answer["returnCode"] == "00"
    assert await state_of(journal, body["traceNo"]) == "approved"
    assert backend.actions() == [POINTS, "inquiry", "inquiry"]  # never re-submitted


async def test_an_approval_found_after_the_pos_gave_up_is_kept_not_voided(
    settings: Settings, journal: Journal, pad: ScriptedPad, backend: ScriptedBackend
) -> None:
    settings.api.pos_deadline_s = 1.0  # the claim deadline has passed before the inquiry answers
    service = TransactionService(settings, journal, pad, backend)
    await service.recover()
    backend.will(POINTS, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", APPROVED)
    body = body_of(POINTS)
    assert (await service.handle(POINTS, body))["returnCode"] == "00"
    assert await state_of(journal, body["traceNo"]) == "approved"
    assert "voidCardSale" not in backend.actions()


async def test_an_accumulation_still_unknown_at_the_bound_goes_to_a_person_not_to_a_void(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(POINTS, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", BackendOutcomeUnknown("read timeout"))
    body = body_of(POINTS)
    answer = await service.handle(POINTS, body)
    assert answer["returnCode"] == "MB34"
    assert "no void" in answer["returnDesc"]
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert (record.state, answer_from_journal(record)) == ("needs_manual", answer)
    assert await journal.reversal(body["traceNo"]) is None
    assert "voidCardSale" not in backend.actions()
    assert await service.handle(POINTS, body) == answer

    resolved = await journal.resolve(body["traceNo"], "declined", note="e-Buy: no points posted")
    assert resolved == "declined"


async def test_accumulating_waits_for_start_up_recovery_but_not_for_the_pad(
    settings: Settings, journal: Journal, pad: ScriptedPad, backend: ScriptedBackend
) -> None:
    service = TransactionService(settings, journal, pad, backend)
    assert (await service.handle(POINTS, body_of(POINTS)))["returnCode"] == "MB92"
    await service.recover()
    pad.release.clear()  # a customer stands at the pad: a card sale runs
    backend.will("cardRedemption", APPROVED)
    backend.will(POINTS, APPROVED)
    sale = asyncio.create_task(service.handle("cardRedemption", body_of("cardRedemption")))
    await pad.card_asked.wait()
    assert (await service.handle(POINTS, body_of(POINTS)))["returnCode"] == "00"
    pad.release.set()
    assert (await sale)["returnCode"] == "00"


async def test_a_repeat_while_it_runs_joins_it_and_another_body_is_mb41(
    service: TransactionService, backend: ScriptedBackend
) -> None:
    gate = asyncio.Event()
    original_submit = backend.submit

    async def slow_submit(action: str, body: Any) -> Any:
        await gate.wait()
        return await original_submit(action, body)

    backend.submit = slow_submit  # type: ignore[method-assign,assignment]
    backend.will(POINTS, APPROVED)
    body = body_of(POINTS)
    first = asyncio.create_task(service.handle(POINTS, body))
    repeat = asyncio.create_task(service.handle(POINTS, dict(body)))
    await asyncio.sleep(0.01)
    other = await service.handle(POINTS, {**body, "points": 7})
    assert other["returnCode"] == "MB41"
    gate.set()
    assert await first == await repeat
    assert backend.actions() == [POINTS]


async def test_an_accumulation_with_a_sales_traceno_is_mb41(
    service: TransactionService, backend: ScriptedBackend
) -> None:
    backend.will("cardRedemption", APPROVED)
    sale = body_of("cardRedemption")
    await service.handle("cardRedemption", sale)
    answer = await service.handle(POINTS, body_of(POINTS, traceNo=sale["traceNo"]))
    assert answer["returnCode"] == "MB41"
    assert backend.actions() == ["cardRedemption"]


# --- queries and the upload ------------------------------------------------------------------------


@pytest.mark.parametrize("action", QUERIES)
async def test_a_query_repeat_gets_the_stored_answer_and_another_body_mb41(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, action: str
) -> None:
    backend.will(action, ANSWERS[action])
    body = body_of(action)
    answer = await service.handle(action, body)
    assert answer["returnCode"] == "00"
    assert await service.handle(action, dict(body)) == answer
    other_action = "summary" if action != "summary" else "ecouponInquiry"
    other = {**book_request(other_action), "traceNo": body["traceNo"]}
    assert (await service.handle(other_action, other))["returnCode"] == "MB41"
    if action == "ecouponInquiry":
        changed = {**body, "qrcode": "HDCP00000000009999"}
        assert (await service.handle(action, changed))["returnCode"] == "MB41"
    assert backend.actions() == [action]  # one request per traceNo


@pytest.mark.parametrize(
    ("error", "code"), [(BackendNotSent("connection refused"), "MB30"), (BackendOutcomeUnknown("timeout"), "MB31")]
)
@pytest.mark.parametrize("action", QUERIES)
async def test_a_query_without_an_answer_is_never_sent_again(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, action: str, error: Exception, code: str
) -> None:
    backend.will(action, error, ANSWERS[action])
    body = body_of(action)
    answer = await service.handle(action, body)
    assert answer["returnCode"] == code
    query = await journal.query(body["traceNo"])
    assert query is not None
    assert (query.state, query.return_code) == ("unknown", code)
    assert await service.handle(action, body) == answer  # the stored answer: the POS asks under a new traceNo
    assert backend.actions() == [action]
    assert (await service.handle(action, body_of(action)))["returnCode"] == "00"


async def test_a_query_with_a_traceno_already_used_is_mb41_and_not_sent(
    service: TransactionService, backend: ScriptedBackend
) -> None:
    backend.will("cardRedemption", APPROVED)
    sale = body_of("cardRedemption")
    await service.handle("cardRedemption", sale)
    answer = await service.handle("summary", {"traceNo": sale["traceNo"]})
    assert answer["returnCode"] == "MB41"
    assert backend.actions() == ["cardRedemption"]


async def test_a_sale_with_a_querys_traceno_is_refused_before_the_pad(
    service: TransactionService, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will("summary", ANSWERS["summary"])
    await service.handle("summary", {"traceNo": "PTQ0000000001"})
    answer = await service.handle("cardRedemption", body_of("cardRedemption", traceNo="PTQ0000000001"))
    assert answer["returnCode"] == "MB42"
    assert pad.card_prompts == 0


async def test_queries_run_while_a_card_sale_holds_the_pad(
    service: TransactionService, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    pad.release.clear()
    backend.will("cardRedemption", APPROVED)
    backend.will("summary", ANSWERS["summary"])
    sale = body_of("cardRedemption")
    running = asyncio.create_task(service.handle("cardRedemption", sale))
    await pad.card_asked.wait()
    assert (await service.handle("summary", body_of("summary")))["returnCode"] == "00"
    assert (await service.handle("summary", {"traceNo": sale["traceNo"]}))["returnCode"] == "MB41"
    pad.release.set()
    assert (await running)["returnCode"] == "00"


# --- a repeated forwarded inquiry --------------------------------------------------------------------


async def test_a_repeated_forwarded_inquiry_gets_the_stored_answer_and_is_not_sent_twice(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will("inquiry", {**reply("25", "original transaction not found")}, reply("94", "duplicate traceNo"))
    body = {"traceNo": "PTI0000000001", "originalTraceNo": "ELSEWHERE1"}
    answer = await service.handle("inquiry", body)
    assert answer["returnCode"] == "25"
    assert await service.handle("inquiry", dict(body)) == answer
    assert backend.actions() == ["inquiry"]
    other = await service.handle("inquiry", {**body, "originalTraceNo": "ELSEWHERE2"})
    assert other["returnCode"] == "MB41"
    assert backend.actions() == ["inquiry"]


async def test_a_forwarded_inquiry_without_an_answer_is_repeated_from_the_journal(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will("inquiry", BackendOutcomeUnknown("timeout"), reply("94", "duplicate traceNo"))
    body = {"traceNo": "PTI0000000002", "originalTraceNo": "ELSEWHERE3"}
    answer = await service.handle("inquiry", body)
    assert answer["returnCode"] == "MB31"
    assert await service.handle("inquiry", body) == answer
    assert backend.actions() == ["inquiry"]


async def test_an_inquiry_with_a_querys_traceno_is_mb41(service: TransactionService, backend: ScriptedBackend) -> None:
    backend.will("summary", ANSWERS["summary"])
    await service.handle("summary", {"traceNo": "PTQ0000000002"})
    answer = await service.handle("inquiry", {"traceNo": "PTQ0000000002", "originalTraceNo": "ELSEWHERE4"})
    assert answer["returnCode"] == "MB41"
    assert backend.actions() == ["summary"]


# --- start-up recovery -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inquiry", "final"), [(APPROVED, "approved"), (BackendOutcomeUnknown("down"), "needs_manual")]
)
async def test_recovery_resolves_an_interrupted_accumulation_without_a_void(
    journal: Journal, recovery: Recovery, backend: ScriptedBackend, inquiry: Any, final: str
) -> None:
    body = body_of(POINTS)
    await journal.record_intent(TransactionRecord.new(body["traceNo"], POINTS, "received", body))
    await journal.record_transition(body["traceNo"], "received", "submit")  # then the process died
    backend.will("inquiry", inquiry)
    assert await recovery.recover() == 2  # made unknown, then resolved
    assert await state_of(journal, body["traceNo"]) == final  # approved with nobody waiting: kept
    assert "voidCardSale" not in backend.actions()
    assert await journal.reversal(body["traceNo"]) is None


async def test_recovery_closes_a_query_left_sent_and_its_repeat_is_not_sent(
    service: TransactionService, journal: Journal, recovery: Recovery, backend: ScriptedBackend
) -> None:
    body = body_of("summary")
    await journal.record_query(body["traceNo"], "summary", body)  # then the process died
    assert await recovery.recover() == 1
    query = await journal.query(body["traceNo"])
    assert query is not None
    assert (query.state, query.return_code) == ("unknown", "MB31")
    assert query.response is not None
    assert await service.handle("summary", body) == query.response
    assert backend.actions() == []


async def test_a_query_is_shown_by_the_transaction_view(service: TransactionService, backend: ScriptedBackend) -> None:
    backend.will("summary", ANSWERS["summary"])
    body = body_of("summary")
    answer = await service.handle("summary", body)
    view = await service.transaction(body["traceNo"])
    assert view is not None
    assert (view["action"], view["state"], view["returnCode"], view["response"]) == (
        "summary",
        "answered",
        "00",
        answer,
    )
    assert (view["transitions"], view["backendCalls"], view["reversal"]) == ([], [], None)


async def test_a_card_sale_with_the_traceno_of_a_running_accumulation_is_mb41(
    service: TransactionService, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    gate = asyncio.Event()
    original_submit = backend.submit

    async def slow_submit(action: str, body: Any) -> Any:
        await gate.wait()
        return await original_submit(action, body)

    backend.submit = slow_submit  # type: ignore[method-assign,assignment]
    backend.will(POINTS, APPROVED)
    body = body_of(POINTS)
    running = asyncio.create_task(service.handle(POINTS, body))
    await asyncio.sleep(0.01)
    sale = await service.handle("cardRedemption", body_of("cardRedemption", traceNo=body["traceNo"]))
    assert sale["returnCode"] == "MB41"
    assert pad.card_prompts == 0
    gate.set()
    assert (await running)["returnCode"] == "00"
