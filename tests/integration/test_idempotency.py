"""Idempotent intake: the POS's traceNo is the key (issue #4; reliability-requirements R5, R6).

* the same traceNo with the same body is one transaction: one prompt on the pad, one backend
  submission, one answer for every repeat, concurrent or later, across a daemon restart;
* the same traceNo with another body is refused (MB41), while the first runs and after;
* ``inquiry`` from the POS about a journaled original is answered from the journal, without a
  backend call; about an original misbridge never saw, it is forwarded;
* ``GET /v1/transactions/{traceNo}`` shows the state and the final response.

Runs on its own short-timer bench (tests/integration/faultbench.py), which a test may restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from misbridge.ebuy import jsonio
from simulators.cards import CARDS
from tests.integration.faultbench import (
    FINAL_STATES,
    Door,
    Fault,
    FaultBench,
    fresh_trace_no,
    redemption_body,
)
from tests.integration.faults import TABLE, run_once

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONCURRENT = 50
#: Keeps a sale in flight (reply held, still inside the read timeout) so repeats find it running.
HOLD = Fault("sale", "delay-after-commit", delay_s=0.25)
_VOIDED_CASE = next(case for case in TABLE if case.id == "inquiry-failing-too")
#: As _VOIDED_CASE, but the void fails 7 times first: with backoff 0.05 -> 0.2 s it stays queued
#: for more than a second, as every failed void does in production (backoff starts at 1 s).
_SLOW_VOID_CASE = dataclasses.replace(
    _VOIDED_CASE,
    faults=(*_VOIDED_CASE.faults, Fault("void", "http-500-before-commit", times=7)),
    min_void_attempts=8,
)


def _events(view: dict[str, Any]) -> list[str]:
    return [str(t["event"]) for t in view["transitions"]]


def _printed_card(answer: dict[str, Any]) -> str:
    return str(answer["printDetail"]["cardNo64"])


def _book_mask(card: str) -> str:
    pan = CARDS[card].pan
    return pan[:6] + "****" + pan[-4:]


async def _approved(bench: FaultBench, door: Door = "socket") -> tuple[dict[str, Any], dict[str, Any]]:
    """A fresh approved redemption: (request body, POS answer)."""
    body = redemption_body()
    answer = await bench.send("cardRedemption", body, door)
    assert answer["returnCode"] == "00", answer
    return body, answer


async def _wait_in_flight(bench: FaultBench, trace_no: str) -> None:
    """Until the journal shows ``trace_no`` started and not yet at rest (/health shows only a count)."""
    async with asyncio.timeout(5):
        while True:
            view = await bench.view(trace_no)
            if view is not None and view["state"] not in FINAL_STATES:
                return
            await asyncio.sleep(0.005)


async def test_fifty_concurrent_identical_requests_make_one_submission_and_one_prompt(
    fault_bench: FaultBench,
) -> None:
    """50 identical requests at once (socket and HTTP mixed): 1 submission, 1 pad prompt, 50 equal answers."""
    bench = fault_bench
    body = redemption_body()
    trace_no = body["traceNo"]
    await bench.backend.clear_faults()
    await bench.backend.add_faults([HOLD], trace_no)
    await bench.customer("prepaid")  # the one customer this transaction may take
    await bench.customer("member")  # must still be waiting afterwards
    doors: list[Door] = ["socket" if i % 2 == 0 else "http" for i in range(CONCURRENT)]
    answers = await asyncio.gather(*(bench.send("cardRedemption", body, door) for door in doors))

    first = answers[0]
    assert first["returnCode"] == "00", first
    assert _printed_card(first) == _book_mask("prepaid")
    different = [(i, doors[i], a) for i, a in enumerate(answers) if a != first]
    assert not different, f"{len(different)} answer(s) differ from the first, e.g. {different[0]} vs {first}"
    entry = await bench.backend.entry(trace_no)
    assert entry is not None
    assert entry.submissions == 1, entry.raw
    view = await bench.view(trace_no)
    assert view is not None
    assert _events(view).count("start_card") == 1, _events(view)
    # The pad served exactly one customer: the next transaction gets the second one.
    _, following = await _approved(bench)
    assert _printed_card(following) == _book_mask("member"), "the pad was prompted more than once"


async def test_same_trace_no_with_another_body_is_refused_while_running_and_after(fault_bench: FaultBench) -> None:
    """A changed amount under a used traceNo: MB41 on both doors, during the sale and after it."""
    bench = fault_bench
    body = redemption_body()
    trace_no = body["traceNo"]
    other = {**body, "totalAmount": Decimal("1.00"), "undiscountAmount": 0}
    await bench.backend.clear_faults()
    await bench.backend.add_faults([HOLD], trace_no)
    first = asyncio.create_task(bench.send("cardRedemption", body))
    await _wait_in_flight(bench, trace_no)
    during = [await bench.send("cardRedemption", other, door) for door in ("socket", "http")]
    assert not first.done(), "the first request ended before the conflicting ones were answered"
    answer = await first
    after = [await bench.send("cardRedemption", other, door) for door in ("socket", "http")]

    assert answer["returnCode"] == "00", answer
    assert [a["returnCode"] for a in during + after] == ["MB41"] * 4, during + after
    assert all(a["traceNo"] == trace_no for a in during + after)
    conflict = await bench.http.post(
        "/v1/cardRedemption", content=jsonio.dumps(other), headers={"content-type": "application/json"}
    )
    assert conflict.status_code == 409
    entry = await bench.backend.entry(trace_no)
    assert entry is not None
    assert entry.submissions == 1, entry.raw
    view = await bench.view(trace_no)
    assert view is not None
    assert view["state"] == "approved"
    assert view["response"] == answer


async def test_repeats_after_a_restart_return_the_stored_answer(fault_bench: FaultBench) -> None:
    """Stop the daemon, start a new one on the same journal: repeats get the stored answers, nothing is sent."""
    bench = fault_bench
    approved_body, approved = await _approved(bench)
    voided = await run_once(bench, _VOIDED_CASE)
    assert voided.state == "voided", voided.describe()
    voided_body = redemption_body(voided.trace_no)
    stored_void_answer = (await bench.view(voided.trace_no) or {})["response"]
    before = {no: await bench.backend.entry(no) for no in (approved_body["traceNo"], voided.trace_no)}
    trail = {no: _events(await bench.view(no) or {}) for no in before}

    await bench.restart()

    for door in ("socket", "http"):
        assert await bench.send("cardRedemption", approved_body, door) == approved, door
        assert await bench.send("cardRedemption", voided_body, door) == stored_void_answer, door
    changed = {**approved_body, "totalAmount": Decimal("2.00"), "undiscountAmount": 0}
    assert (await bench.send("cardRedemption", changed))["returnCode"] == "MB41"
    for trace_no, entry in before.items():
        assert entry is not None
        assert (await bench.backend.entry(trace_no)) == entry, "a repeat after the restart reached the backend"
        view = await bench.view(trace_no)
        assert view is not None
        assert _events(view) == trail[trace_no], "a repeat after the restart changed the journal"


async def test_a_voided_sale_repeats_the_answer_the_pos_got_first(fault_bench: FaultBench) -> None:
    """The POS was told MB32 while the void was queued; a repeat after the void went through tells it the same."""
    bench = fault_bench
    voided = await run_once(bench, _SLOW_VOID_CASE)
    assert voided.state == "voided", voided.describe()
    assert voided.view["reversal"]["attempts"] >= 8, voided.describe()
    repeat = await bench.send("cardRedemption", redemption_body(voided.trace_no))
    assert repeat == voided.answer, "the stored answer is not the one the POS got"
    assert voided.view["response"] == voided.answer, "the journal holds another answer than the POS got"


async def test_pos_inquiry_of_a_journaled_original_is_answered_from_the_journal(fault_bench: FaultBench) -> None:
    """inquiry about a transaction misbridge holds: the journal answers, no backend inquiry is sent."""
    bench = fault_bench
    body, approved = await _approved(bench)
    original = body["traceNo"]
    for door in ("socket", "http"):
        inquiry_no = fresh_trace_no()
        answer = await bench.send("inquiry", {"traceNo": inquiry_no, "originalTraceNo": original}, door)
        assert answer["returnCode"] == "00", answer
        assert answer["traceNo"] == inquiry_no
        assert answer["originalTraceNo"] == original
        assert answer["orderNo"] == approved["orderNo"]
        assert answer["fundChannel"] == approved["fundChannel"]
        assert await bench.backend.entry(inquiry_no) is None, "the inquiry was forwarded to the backend"
    view = await bench.view(original)
    assert view is not None
    assert [c for c in view["backendCalls"] if c["kind"] == "inquiry"] == []
    entry = await bench.backend.entry(original)
    assert entry is not None
    assert entry.submissions == 1


async def test_pos_inquiry_of_a_voided_original_reports_the_void_from_the_journal(fault_bench: FaultBench) -> None:
    """inquiry about a transaction misbridge voided: its stored MB32, nothing sent."""
    bench = fault_bench
    voided = await run_once(bench, _VOIDED_CASE)
    assert voided.state == "voided", voided.describe()
    calls_before = (await bench.view(voided.trace_no) or {})["backendCalls"]
    inquiry_no = fresh_trace_no()
    answer = await bench.send("inquiry", {"traceNo": inquiry_no, "originalTraceNo": voided.trace_no})
    assert answer["returnCode"] == "MB32", answer
    assert (answer["traceNo"], answer["originalTraceNo"]) == (inquiry_no, voided.trace_no)
    assert await bench.backend.entry(inquiry_no) is None
    assert (await bench.view(voided.trace_no) or {})["backendCalls"] == calls_before


async def test_pos_inquiry_of_an_unknown_original_is_forwarded_to_the_backend(fault_bench: FaultBench) -> None:
    """inquiry about a traceNo misbridge never saw: the backend answers (25, not found), under the POS's traceNo."""
    bench = fault_bench
    inquiry_no, stranger = fresh_trace_no(), fresh_trace_no()
    answer = await bench.send("inquiry", {"traceNo": inquiry_no, "originalTraceNo": stranger})
    assert answer["returnCode"] == "25", answer
    assert answer["traceNo"] == inquiry_no
    entry = await bench.backend.entry(inquiry_no)
    assert entry is not None, "the inquiry never reached the backend"
    assert entry.submissions == 1
    # misbridge holds no transaction for the stranger, only the inquiry it forwarded about it
    for trace_no in (stranger, inquiry_no):
        view = await bench.view(trace_no)
        assert view is not None
        assert (view["traceNo"], view["action"], view["state"]) == (stranger, "", "")
        assert [(i["traceNo"], i["state"], i["returnCode"]) for i in view["posInquiries"]] == [
            (inquiry_no, "answered", "25")
        ]


async def test_transaction_view_shows_state_final_response_and_reversal(fault_bench: FaultBench) -> None:
    """GET /v1/transactions/{traceNo}: approved with its answer; voided with MB32 and its done reversal; 404."""
    bench = fault_bench
    body, approved = await _approved(bench, door="http")
    view = await bench.view(body["traceNo"])
    assert view is not None
    assert (view["traceNo"], view["state"], view["returnCode"]) == (body["traceNo"], "approved", "00")
    assert view["response"] == approved
    assert view["reversal"] is None
    assert view["backendCalls"] == []

    voided = await run_once(bench, _VOIDED_CASE)
    view = voided.view
    assert (view["state"], view["returnCode"]) == ("voided", "MB32"), voided.describe()
    assert view["response"]["returnCode"] == "MB32"
    assert view["reversal"]["state"] == "done"
    kinds = {call["kind"] for call in view["backendCalls"]}
    assert kinds == {"inquiry", "void"}, view["backendCalls"]

    assert await bench.view(fresh_trace_no()) is None
