"""What the cashier's screen may follow of a transaction while the POS waits: a fan-out of small events.

The journal tells :meth:`ProgressHub.observer` of every state change it commits
(:class:`~misbridge.journal.transactions.CommittedMove`), and the service tells the hub how many
PIN digits the customer has typed (the pad's progress reports). The hub turns them into
:class:`ProgressEvent` values and hands each to the subscribers that asked for its lane or its
traceNo (the HTTP door's ``/events`` streams, docs/pos-api.md "Progress stream").

The target state of a move decides its step::

    reading_card -> waiting_for_card        submitting -> submitting (contacting the backend)
    reading_pin  -> card_read, waiting_for_pin   inquiring  -> inquiring
    reading_code -> waiting_for_code        voiding    -> voiding
    choosing     -> choosing                approved, declined, aborted, voided, needs_manual -> result

(``received`` and ``unknown`` say nothing a cashier acts on: the next move follows at once.)

An event carries only what a cashier's screen shows: the lane, the traceNo, the step, the time,
and per step the masked PAN (first 6 and last 4 digits, re-masked here whatever came in) and the
card type, the number of PIN digits, the final state and return code. Never the PIN, tracks, IC
data, the request or the answer's body.

Pure asyncio, no I/O: one hub per daemon (no module state), so tests may run several. A
subscriber has a bounded queue; one that does not keep up is ended with a final ``overflow``
event instead of growing memory, and the number of subscribers is capped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Self

from loguru import logger

from misbridge.config.settings import DEFAULT_LANE
from misbridge.core.machine import TxnState
from misbridge.errors import ReturnCode, StreamRefused
from misbridge.journal.transactions import CommittedMove

__all__ = [
    "DEFAULT_LANE",
    "MAX_SUBSCRIBERS",
    "QUEUE_LIMIT",
    "RESULT_STATES",
    "ProgressEvent",
    "ProgressHub",
    "Step",
    "Subscription",
    "events_for_move",
]

#: Events a subscriber may have waiting before it is ended with ``overflow``.
QUEUE_LIMIT: Final = 64
#: Subscribers of one hub at once; the next one is refused (MB77).
MAX_SUBSCRIBERS: Final = 32
#: Longest card type shown (the pad's text; a screen needs a word).
_CARD_TYPE_MAX: Final = 32
#: Digits of a PAN that may be shown: the first 6 and the last 4 (PCI DSS 3.4.1).
_PAN_HEAD, _PAN_TAIL = 6, 4


class Step(StrEnum):
    """What a progress event says; the value is the SSE event name."""

    WAITING_FOR_CARD = "waiting_for_card"
    CARD_READ = "card_read"
    WAITING_FOR_PIN = "waiting_for_pin"
    PIN_DIGITS = "pin_digits"
    WAITING_FOR_CODE = "waiting_for_code"
    CHOOSING = "choosing"
    SUBMITTING = "submitting"
    INQUIRING = "inquiring"
    VOIDING = "voiding"
    RESULT = "result"
    #: Not a transaction's step: the subscriber fell behind and its stream ends here.
    OVERFLOW = "overflow"


#: States after which nothing more happens without a person: the transaction's ``result``.
RESULT_STATES: Final = frozenset(
    {TxnState.APPROVED, TxnState.DECLINED, TxnState.ABORTED, TxnState.VOIDED, TxnState.NEEDS_MANUAL}
)
_STEP_OF_STATE: Final = {
    TxnState.READING_CARD: Step.WAITING_FOR_CARD,
    TxnState.READING_CODE: Step.WAITING_FOR_CODE,
    TxnState.CHOOSING: Step.CHOOSING,
    TxnState.SUBMITTING: Step.SUBMITTING,
    TxnState.INQUIRING: Step.INQUIRING,
    TxnState.VOIDING: Step.VOIDING,
}


def masked(pan: str) -> str:
    """``pan`` with every digit but the first 6 and the last 4 as ``*`` (an already masked PAN is unchanged)."""
    total = sum(char.isdigit() for char in pan)
    out, seen = [], 0
    for char in pan:
        if char.isdigit():
            seen += 1
            out.append(char if seen <= _PAN_HEAD or seen > total - _PAN_TAIL else "*")
        else:
            out.append(char)
    return "".join(out)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ProgressEvent:
    """One step of one transaction on one lane. Build it with the class methods (they mask)."""

    lane: str
    trace_no: str
    step: Step
    at: datetime
    masked_pan: str | None = None
    card_type: str | None = None
    digits: int | None = None
    state: str | None = None
    return_code: str | None = None

    @classmethod
    def of(cls, lane: str, trace_no: str, step: Step, *, at: datetime | None = None) -> ProgressEvent:
        """A step that carries nothing beyond its name."""
        return cls(lane, trace_no, step, at or _now())

    @classmethod
    def card_read(
        cls, lane: str, trace_no: str, masked_pan: str, card_type: str | None, *, at: datetime | None = None
    ) -> ProgressEvent:
        """The card was read: the PAN masked again here, whatever came in."""
        card = None if card_type is None else card_type[:_CARD_TYPE_MAX]
        return cls(lane, trace_no, Step.CARD_READ, at or _now(), masked_pan=masked(masked_pan), card_type=card)

    @classmethod
    def pin_digits(cls, lane: str, trace_no: str, digits: int, *, at: datetime | None = None) -> ProgressEvent:
        """The customer has typed ``digits`` PIN digits (a count, never a digit)."""
        return cls(lane, trace_no, Step.PIN_DIGITS, at or _now(), digits=max(0, digits))

    @classmethod
    def result(
        cls, lane: str, trace_no: str, state: str, return_code: str | None, *, at: datetime | None = None
    ) -> ProgressEvent:
        """The transaction ended in ``state`` (a final state, or ``needs_manual``) with ``return_code``."""
        return cls(lane, trace_no, Step.RESULT, at or _now(), state=state, return_code=return_code)

    def as_json(self) -> dict[str, Any]:
        """The stream's ``data`` object: ``lane``, ``traceNo``, ``step``, ``time`` and the step's own fields."""
        data: dict[str, Any] = {
            "lane": self.lane,
            "traceNo": self.trace_no,
            "step": self.step.value,
            "time": self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        extra = {
            "maskedPan": self.masked_pan,
            "cardType": self.card_type,
            "digits": self.digits,
            "state": self.state,
            "returnCode": self.return_code,
        }
        if self.step is Step.RESULT:  # a result always names both, returnCode null when none was stored
            return {**data, "state": self.state, "returnCode": self.return_code}
        return {**data, **{name: value for name, value in extra.items() if value is not None}}


def events_for_move(lane: str, move: CommittedMove, *, at: datetime | None = None) -> list[ProgressEvent]:
    """The events a committed move makes: its target state decides (module docstring)."""
    when = at or _now()
    target = move.to_state
    if target is TxnState.READING_PIN:
        read = [] if move.masked_pan is None else [
            ProgressEvent.card_read(lane, move.trace_no, move.masked_pan, move.card_type, at=when)
        ]  # fmt: skip
        return [*read, ProgressEvent.of(lane, move.trace_no, Step.WAITING_FOR_PIN, at=when)]
    if target in RESULT_STATES:
        return [ProgressEvent.result(lane, move.trace_no, target.value, move.return_code, at=when)]
    step = _STEP_OF_STATE.get(target)
    return [] if step is None else [ProgressEvent.of(lane, move.trace_no, step, at=when)]


class Subscription:
    """One subscriber's events, in order: ``async for event in subscription``; close it when done.

    Iteration ends after an ``overflow`` event, after the result of the traceNo it follows (when
    it follows one), or when the hub closes. Use it as a context manager so it is freed at once
    however the consumer stops.
    """

    def __init__(self, hub: ProgressHub, lane: str | None, trace_no: str | None, limit: int) -> None:
        self.lane = lane
        self.trace_no = trace_no
        self._hub = hub
        self._limit = limit
        # Unbounded as a structure, bounded by _offer: room is always left for the last event.
        self._queue: asyncio.Queue[ProgressEvent | None] = asyncio.Queue()
        self._ended = False  # nothing more is queued
        self._done = False  # the consumer saw the last event

    def matches(self, event: ProgressEvent) -> bool:
        """Whether ``event`` is for this subscriber (its lane, or its traceNo on any lane)."""
        if self.trace_no is not None:
            return event.trace_no == self.trace_no
        return self.lane is None or event.lane == self.lane

    def _offer(self, event: ProgressEvent) -> bool:
        """Queue ``event``; False when this subscriber ended (overflowed, or saw its result)."""
        if self._ended:
            return False
        if self._queue.qsize() >= self._limit:
            lane = event.lane if self.lane is None else self.lane
            overflow = ProgressEvent.of(lane, self.trace_no or "", Step.OVERFLOW)
            self._queue.put_nowait(overflow)
            self._ended = True
            return False
        self._queue.put_nowait(event)
        if self.trace_no is not None and event.step is Step.RESULT:
            self._ended = True
        return not self._ended

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    def close(self) -> None:
        """Stop receiving events and free the hub's place at once (idempotent)."""
        self._end()
        self._hub._forget(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ProgressEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self._done = True
            raise StopAsyncIteration
        if event.step is Step.OVERFLOW or (self.trace_no is not None and event.step is Step.RESULT):
            self._done = True
        return event

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ProgressHub:
    """Fans progress events out to subscribers, by lane or by traceNo.

    Args:
        lanes: the lanes a subscriber may name (the daemon's PIN pads); more with :meth:`add_lane`.
        queue_limit: events one subscriber may have waiting before it is ended with ``overflow``.
        max_subscribers: subscribers at once; the next is refused with MB77.
    """

    def __init__(
        self,
        lanes: Iterable[str] = (DEFAULT_LANE,),
        *,
        queue_limit: int = QUEUE_LIMIT,
        max_subscribers: int = MAX_SUBSCRIBERS,
    ) -> None:
        self._lanes: list[str] = list(dict.fromkeys(lanes))
        self._queue_limit = queue_limit
        self._max_subscribers = max_subscribers
        self._subscribers: list[Subscription] = []
        self._closed = False

    @property
    def lanes(self) -> tuple[str, ...]:
        """The lanes a subscriber may name, in the order they were added."""
        return tuple(self._lanes)

    @property
    def subscriber_count(self) -> int:
        """Subscribers now (a stream whose client went away is no longer one)."""
        return len(self._subscribers)

    def add_lane(self, lane: str) -> None:
        """Let subscribers name ``lane`` (a PIN pad added to the daemon)."""
        if lane not in self._lanes:
            self._lanes.append(lane)

    def subscribe(self, *, lane: str | None = None, trace_no: str | None = None) -> Subscription:
        """A new subscriber to ``lane``'s events, or to ``trace_no``'s on any lane (not both; neither: every event).

        A traceNo the hub has not seen is fine: the POS may subscribe before it posts the sale.

        Raises:
            StreamRefused: MB19 ``lane`` is not a lane of this hub; MB77 too many subscribers;
                MB91 the hub is closed (misbridge is stopping).
            ValueError: both ``lane`` and ``trace_no`` given.
        """
        if lane is not None and trace_no is not None:
            raise ValueError("subscribe to a lane or to a traceNo, not both")
        if self._closed:
            raise StreamRefused(ReturnCode.SHUTTING_DOWN.meaning, return_code=ReturnCode.SHUTTING_DOWN)
        if lane is not None and lane not in self._lanes:
            known = ", ".join(self._lanes)
            raise StreamRefused(f"no lane {lane!r} (lanes: {known})", return_code=ReturnCode.UNKNOWN_LANE)
        if len(self._subscribers) >= self._max_subscribers:
            raise StreamRefused(
                f"{self._max_subscribers} progress streams are open already; retry in a moment",
                return_code=ReturnCode.TOO_MANY_STREAMS,
            )
        subscription = Subscription(self, lane, trace_no, self._queue_limit)
        self._subscribers.append(subscription)
        return subscription

    def publish(self, event: ProgressEvent) -> None:
        """Hand ``event`` to every subscriber it is for; never blocks, never raises for a slow one."""
        for subscription in list(self._subscribers):
            if subscription.matches(event) and not subscription._offer(event):
                self._forget(subscription)  # overflowed, or its transaction's result was the last

    def observer(self, lane: str = DEFAULT_LANE) -> Callable[[CommittedMove], None]:
        """The journal's observer for ``lane``'s journal: each committed move becomes its events.

        It never raises (the move is committed already; its caller must not see it fail): a
        failure to publish is logged and the move's events are lost, nothing else.
        """

        def committed(move: CommittedMove) -> None:
            try:
                for event in events_for_move(lane, move):
                    self.publish(event)
            except Exception:  # noqa: BLE001 -- the caller's transaction must go on whatever the screen misses
                logger.bind(traceNo=move.trace_no).exception("progress event lost")

        return committed

    def result_if_settled(
        self, trace_no: str, state: str, return_code: str | None, *, lane: str | None = None
    ) -> ProgressEvent | None:
        """The ``result`` event of a transaction the journal holds in ``state``, or None while it runs."""
        if state not in {s.value for s in RESULT_STATES}:
            return None
        return ProgressEvent.result(lane or self._default_lane(), trace_no, state, return_code)

    def close(self) -> None:
        """End every subscription and refuse new ones (shutdown): their streams finish at once."""
        self._closed = True
        for subscription in list(self._subscribers):
            subscription._end()
        self._subscribers.clear()

    def _default_lane(self) -> str:
        return self._lanes[0] if self._lanes else DEFAULT_LANE

    def _forget(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
