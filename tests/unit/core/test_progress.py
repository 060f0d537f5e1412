"""The progress hub: which moves make which events, filtering, overflow, the subscriber cap, no card data.

The journal is a real SQLite file: the events come from its observer, as in the daemon.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from misbridge.core.progress import (
    DEFAULT_LANE,
    ProgressEvent,
    ProgressHub,
    Step,
    Subscription,
    events_for_move,
    masked,
)
from misbridge.errors import ReturnCode, StreamRefused
from misbridge.journal import Journal, TransactionRecord
from misbridge.journal.transactions import CommittedMove
from tests.unit.journal.helpers import add_transaction

#: A Luhn-valid test PAN; it must never appear whole in an event.
PAN = "6225620000008888"
SHOWN = "622562******8888"


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    async with await Journal.open(tmp_path / "journal.db") as opened:
        yield opened


def drained(subscription: Subscription) -> list[ProgressEvent]:
    """What is queued for ``subscription`` now, without waiting (the hub is synchronous)."""
    events = []
    while not subscription._queue.empty():
        item = subscription._queue.get_nowait()
        if item is not None:
            events.append(item)
    return events


async def collected(subscription: Subscription) -> list[ProgressEvent]:
    """Every event until the subscription ends (it must end within a second)."""

    async def read() -> list[ProgressEvent]:
        return [event async for event in subscription]

    return await asyncio.wait_for(read(), 1.0)


def move(to_state: str, **fields: str | None) -> CommittedMove:
    return CommittedMove(
        trace_no="T1",
        from_state="x",
        event="e",
        to_state=to_state,  # type: ignore[arg-type]  # a TxnState value; StrEnum compares equal
        masked_pan=fields.get("masked_pan"),
        card_type=fields.get("card_type"),
        return_code=fields.get("return_code"),
    )


# --- moves to events ------------------------------------------------------------------------------


async def test_a_card_sale_through_the_journal_makes_each_step_once_in_order(journal: Journal) -> None:
    hub = ProgressHub()
    journal.observer = hub.observer()
    with hub.subscribe(trace_no="T1") as subscription:
        await journal.record_intent(TransactionRecord.new("T1", "cardRedemption", "received", {"traceNo": "T1"}))
        state = await journal.record_transition("T1", "received", "start_card")
        state = await journal.record_transition("T1", state, "card_read", masked_pan=SHOWN, card_type="points")
        state = await journal.record_transition("T1", state, "pin_entered")
        await journal.record_transition("T1", state, "approve", response={"returnCode": "00"}, return_code="00")
        events = await collected(subscription)
    assert [e.step for e in events] == [
        Step.WAITING_FOR_CARD, Step.CARD_READ, Step.WAITING_FOR_PIN, Step.SUBMITTING, Step.RESULT
    ]  # fmt: skip
    assert events[1].as_json() | {"time": ""} == {
        "lane": "default", "traceNo": "T1", "step": "card_read", "time": "", "maskedPan": SHOWN, "cardType": "points"
    }  # fmt: skip
    assert events[-1].as_json()["state"] == "approved"
    assert events[-1].as_json()["returnCode"] == "00"
    assert hub.subscriber_count == 0  # a transaction's subscription ends with its result


async def test_no_event_carries_a_whole_pan_the_response_or_the_request(journal: Journal) -> None:
    hub = ProgressHub()
    journal.observer = hub.observer()
    secret_response = {"returnCode": "00", "printDetail": {"cardNo": PAN}, "memberName": "Zhang San"}
    with hub.subscribe() as everything:
        body = {"traceNo": "T2", "memo": "Zhang San"}
        await journal.record_intent(TransactionRecord.new("T2", "cardRedemption", "received", body))
        state = await journal.record_transition("T2", "received", "start_card")
        # A pad that sent the PAN unmasked: the event masks it again.
        state = await journal.record_transition("T2", state, "card_read", masked_pan=PAN, card_type="points")
        state = await journal.record_transition("T2", state, "pin_entered")
        await journal.record_transition("T2", state, "approve", response=secret_response, return_code="00")
        text = "\n".join(json.dumps(event.as_json()) for event in drained(everything))
    assert SHOWN in text
    assert PAN not in text
    assert "Zhang San" not in text
    assert "printDetail" not in text


def test_masking_keeps_only_the_first_six_and_last_four_digits() -> None:
    assert masked(PAN) == SHOWN
    assert masked(SHOWN) == SHOWN
    assert masked("6225 6200 0000 8888") == "6225 62** **** 8888"
    event = ProgressEvent.card_read("default", "T1", "4111111111111111", "x" * 100)
    assert event.masked_pan == "411111******1111"
    assert event.card_type == "x" * 32


def test_a_pin_step_carries_a_count_only() -> None:
    assert ProgressEvent.pin_digits("default", "T1", 3).as_json() | {"time": ""} == {
        "lane": "default", "traceNo": "T1", "step": "pin_digits", "time": "", "digits": 3
    }  # fmt: skip
    assert ProgressEvent.pin_digits("default", "T1", -1).digits == 0


@pytest.mark.parametrize(
    ("state", "steps"),
    [
        ("received", []),
        ("reading_card", [Step.WAITING_FOR_CARD]),
        ("reading_code", [Step.WAITING_FOR_CODE]),
        ("choosing", [Step.CHOOSING]),
        ("reading_pin", [Step.WAITING_FOR_PIN]),
        ("submitting", [Step.SUBMITTING]),
        ("unknown", []),
        ("inquiring", [Step.INQUIRING]),
        ("voiding", [Step.VOIDING]),
        ("approved", [Step.RESULT]),
        ("declined", [Step.RESULT]),
        ("aborted", [Step.RESULT]),
        ("voided", [Step.RESULT]),
        ("needs_manual", [Step.RESULT]),
    ],
)
def test_the_target_state_decides_the_step(state: str, steps: list[Step]) -> None:
    from misbridge.core.machine import TxnState

    found = events_for_move("default", move(TxnState(state)))
    assert [event.step for event in found] == steps


async def test_the_reversal_queue_moves_are_told_too(journal: Journal) -> None:
    hub = ProgressHub()
    journal.observer = hub.observer("lane-2")
    hub.add_lane("lane-2")
    await add_transaction(journal, "T3", "unknown")
    with hub.subscribe(lane="lane-2") as lane:
        await journal.enqueue_reversal("T3", from_state="unknown", event="give_up", return_code="MB32")
        await journal.complete_reversal("T3")
        events = drained(lane)
    assert [(e.step, e.state) for e in events] == [(Step.VOIDING, None), (Step.RESULT, "voided")]
    assert {e.lane for e in events} == {"lane-2"}
    assert events[-1].return_code is None  # complete_reversal keeps the stored MB32; the move names none


# --- subscribers ------------------------------------------------------------------------------------


def test_a_subscriber_gets_its_lane_or_its_trace_no_only() -> None:
    hub = ProgressHub(["default", "two"])
    default, two, t1 = hub.subscribe(lane="default"), hub.subscribe(lane="two"), hub.subscribe(trace_no="T1")
    hub.publish(ProgressEvent.of("default", "T1", Step.WAITING_FOR_CARD))
    hub.publish(ProgressEvent.of("two", "T2", Step.WAITING_FOR_CARD))
    hub.publish(ProgressEvent.of("two", "T1", Step.SUBMITTING))
    assert [(e.lane, e.trace_no) for e in drained(default)] == [("default", "T1")]
    assert [(e.lane, e.trace_no) for e in drained(two)] == [("two", "T2"), ("two", "T1")]
    assert [e.step for e in drained(t1)] == [Step.WAITING_FOR_CARD, Step.SUBMITTING]


async def test_a_lane_subscription_outlives_a_result_and_a_trace_subscription_does_not() -> None:
    hub = ProgressHub()
    lane, trace = hub.subscribe(lane=DEFAULT_LANE), hub.subscribe(trace_no="T1")
    hub.publish(ProgressEvent.result("default", "T1", "approved", "00"))
    hub.publish(ProgressEvent.result("default", "T1", "approved", "00"))  # cannot happen; must not reach `trace`
    hub.publish(ProgressEvent.of("default", "T2", Step.WAITING_FOR_CARD))
    assert [e.step for e in await collected(trace)] == [Step.RESULT]
    assert [e.trace_no for e in drained(lane)] == ["T1", "T1", "T2"]
    assert hub.subscriber_count == 1
    lane.close()
    assert hub.subscriber_count == 0


async def test_a_subscriber_that_falls_behind_ends_with_overflow_instead_of_growing() -> None:
    hub = ProgressHub(queue_limit=3)
    slow = hub.subscribe(lane=DEFAULT_LANE)
    for n in range(10):
        hub.publish(ProgressEvent.pin_digits("default", "T1", n))
    assert hub.subscriber_count == 0  # dropped at once, not when it reads
    events = await collected(slow)
    assert [e.step for e in events] == [Step.PIN_DIGITS] * 3 + [Step.OVERFLOW]
    assert [e.digits for e in events[:3]] == [0, 1, 2]
    assert slow._queue.qsize() == 0


def test_the_next_subscriber_beyond_the_cap_is_refused_with_mb77() -> None:
    hub = ProgressHub(max_subscribers=2)
    first = hub.subscribe()
    hub.subscribe(trace_no="T1")
    with pytest.raises(StreamRefused) as refused:
        hub.subscribe(lane=DEFAULT_LANE)
    assert refused.value.return_code is ReturnCode.TOO_MANY_STREAMS
    first.close()
    first.close()  # idempotent
    hub.subscribe(lane=DEFAULT_LANE)
    assert hub.subscriber_count == 2


def test_an_unknown_lane_is_refused_with_mb19_until_it_is_added() -> None:
    hub = ProgressHub()
    with pytest.raises(StreamRefused) as refused:
        hub.subscribe(lane="two")
    assert refused.value.return_code is ReturnCode.UNKNOWN_LANE
    assert "default" in refused.value.message
    hub.add_lane("two")
    assert hub.lanes == ("default", "two")
    hub.subscribe(lane="two")
    with pytest.raises(ValueError, match="not both"):
        hub.subscribe(lane="two", trace_no="T1")


async def test_closing_the_hub_ends_every_stream_and_refuses_new_ones() -> None:
    hub = ProgressHub()
    waiting = hub.subscribe(trace_no="T9")
    reader = asyncio.create_task(collected(waiting))
    await asyncio.sleep(0)
    hub.close()
    assert await reader == []
    assert hub.subscriber_count == 0
    with pytest.raises(StreamRefused) as refused:
        hub.subscribe()
    assert refused.value.return_code is ReturnCode.SHUTTING_DOWN


def test_a_settled_transaction_has_its_result_and_a_running_one_none() -> None:
    hub = ProgressHub()
    settled = hub.result_if_settled("T1", "declined", "51")
    assert settled is not None
    assert settled.as_json() | {"time": ""} == {
        "lane": "default", "traceNo": "T1", "step": "result", "time": "", "state": "declined", "returnCode": "51"
    }  # fmt: skip
    assert hub.result_if_settled("T1", "submitting", None) is None
    assert hub.result_if_settled("T1", "unknown", None) is None


async def test_the_observer_never_fails_the_move_it_reports(journal: Journal) -> None:
    hub = ProgressHub()
    journal.observer = hub.observer()
    subscription = hub.subscribe()

    def broken(event: ProgressEvent) -> bool:
        raise RuntimeError("a subscriber bug")

    subscription.matches = broken  # type: ignore[method-assign]
    await journal.record_intent(TransactionRecord.new("T4", "cardRedemption", "received", {"traceNo": "T4"}))
    assert await journal.record_transition("T4", "received", "start_card") == "reading_card"
    assert (await journal.get("T4")).state == "reading_card"  # type: ignore[union-attr]
