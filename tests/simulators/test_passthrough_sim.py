"""The pass-through actions end to end in one process: TransactionService, the real BackendClient,
the backend simulator on a localhost socket, a real journal (the pad is the scripted one: unused).

The simulator answers ``94`` to any traceNo it has seen, so a repeat answered ``00`` proves
misbridge did not send it again.
"""

from __future__ import annotations

from typing import Any

import pytest

from misbridge.config.settings import (
    ResolutionSettings,
)
from misbridge.core.service import TransactionService
from misbridge.ebuy.examples import book_request
from simulators.backend import BackendSimulator, Fault, FaultAction
from tests.simulators.conftest import book_trace_no

RESOLUTION = ResolutionSettings(inquiry_interval_s=0.01, inquiry_bound_s=0.5, drain_before_sale_s=1.0)


def fresh(action: str) -> dict[str, Any]:
    """The book's example of ``action`` under a new traceNo of the book's suggested form."""
    return {**book_request(action), "traceNo": book_trace_no()}


@pytest.fixture
def resolution() -> ResolutionSettings:
    return RESOLUTION


@pytest.mark.parametrize("action", ["accumulating", "ecouponInquiry", "summary", "batchUpload"])
async def test_the_books_example_answers_00_and_its_repeat_is_not_sent_again(
    service: TransactionService, action: str
) -> None:
    body = fresh(action)
    answer = await service.handle(action, body)
    assert (answer["returnCode"], answer["traceNo"]) == ("00", body["traceNo"]), answer
    assert await service.handle(action, dict(body)) == answer  # sent again, the simulator would say 94
    view = await service.transaction(body["traceNo"])
    assert view is not None
    assert view["state"] == ("approved" if action == "accumulating" else "answered")


async def test_an_accumulation_whose_reply_was_lost_is_found_approved_by_inquiry(
    service: TransactionService, sim: BackendSimulator
) -> None:
    sim.faults.add(Fault.DROP_AFTER_COMMIT, action=FaultAction.SALE)
    body = fresh("accumulating")
    answer = await service.handle("accumulating", body)
    assert answer["returnCode"] == "00", answer
    view = await service.transaction(body["traceNo"])
    assert view is not None
    assert [t["event"] for t in view["transitions"]] == [
        "intent", "submit", "outcome_unknown", "inquire", "inquiry_approved"
    ]  # fmt: skip


async def test_an_accumulation_that_never_arrived_is_declined_by_inquiry(
    service: TransactionService, sim: BackendSimulator
) -> None:
    sim.faults.add(Fault.DROP_BEFORE_COMMIT, action=FaultAction.SALE)
    body = fresh("accumulating")
    answer = await service.handle("accumulating", body)
    assert answer["returnCode"] == "MB33", answer
    view = await service.transaction(body["traceNo"])
    assert view is not None
    assert view["state"] == "declined"


async def test_a_summary_without_an_answer_is_asked_again_under_a_new_traceno(
    service: TransactionService, sim: BackendSimulator
) -> None:
    sim.faults.add(Fault.DROP_AFTER_COMMIT, action=FaultAction.QUERY)
    body = fresh("summary")
    lost = await service.handle("summary", body)
    assert lost["returnCode"] == "MB31"
    assert await service.handle("summary", body) == lost
    assert (await service.handle("summary", fresh("summary")))["returnCode"] == "00"


async def test_a_repeated_forwarded_inquiry_is_answered_from_the_journal(service: TransactionService) -> None:
    body = {"traceNo": fresh("summary")["traceNo"], "originalTraceNo": fresh("summary")["traceNo"]}
    answer = await service.handle("inquiry", body)
    assert answer["returnCode"] == "25"  # the simulator never saw the original
    assert await service.handle("inquiry", dict(body)) == answer  # not 94
