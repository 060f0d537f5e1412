"""Scripted faults: what goes wrong with the next matching request, before or after its commit.

A fault is queued for an action kind (``sale`` = cardRedemption / cardPayment / qrcodeSale /
accumulating, ``inquiry``, ``void``, ``refund``, ``query`` = ecouponInquiry / summary,
``upload`` = batchUpload) or for one action by name (``qrcodeSale``), optionally only for one
traceNo, for the next ``times`` matching requests. Queue them in-process
(``sim.faults.add(...)``) or over HTTP from any process (``POST /_sim/faults``, see
docs/backend.md, "Scripted faults"). Each matching request takes the oldest matching entry (FIFO).

"Commit" is the moment the simulator's handler decides the request and the ledger changes.
``*-before-commit`` faults act before it (nothing is applied, except after
``delay-before-commit``, which only waits), ``*-after-commit`` faults after it (money moved,
the reply is lost or spoiled): the UNKNOWN case misbridge resolves by inquiry and void (R7).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from simulators.backend.book import BOOK_ACTIONS, KEY_ACTIONS, kind_of

#: Longest delay a fault may ask for.
MAX_DELAY_S = 3600.0


class Fault(StrEnum):
    """What happens to a matching request."""

    DELAY_BEFORE_COMMIT = "delay-before-commit"  # wait delay_s (the record is in_progress), then process
    DELAY_AFTER_COMMIT = "delay-after-commit"  # process, then wait delay_s before replying
    DROP_BEFORE_COMMIT = "drop-before-commit"  # close the connection without processing or replying
    DROP_AFTER_COMMIT = "drop-after-commit"  # process, then close the connection without a reply
    HTTP_500_BEFORE_COMMIT = "http-500-before-commit"  # answer HTTP 500 without processing
    HTTP_500_AFTER_COMMIT = "http-500-after-commit"  # process, then answer HTTP 500
    NON_JSON_AFTER_COMMIT = "non-json-after-commit"  # process, then answer an HTML error page
    BAD_SIGN_AFTER_COMMIT = "bad-sign-after-commit"  # process, then reply with a wrong signature
    WRONG_TRACE_AFTER_COMMIT = "wrong-trace-after-commit"  # process, then reply (signed) for another traceNo
    MISSING_SIGN_AFTER_COMMIT = "missing-sign-after-commit"  # process, then reply without a signature
    DECLINE = "decline"  # answer returnCode ``code`` (well formed, signed) without processing

    @property
    def commits(self) -> bool:
        """True when the request is processed (the ledger changes) despite the fault."""
        return self is Fault.DELAY_BEFORE_COMMIT or self.value.endswith("-after-commit")

    @property
    def delays(self) -> bool:
        """True for the faults that take ``delay_s``."""
        return self in (Fault.DELAY_BEFORE_COMMIT, Fault.DELAY_AFTER_COMMIT)

    @property
    def drops(self) -> bool:
        """True for the faults that close the connection (and may ``reset`` it)."""
        return self in (Fault.DROP_BEFORE_COMMIT, Fault.DROP_AFTER_COMMIT)


class FaultAction(StrEnum):
    """Which kind of request a fault is for (a fault may also name one action: :data:`FAULT_TARGETS`)."""

    SALE = "sale"  # cardRedemption, cardPayment, qrcodeSale, accumulating
    INQUIRY = "inquiry"
    VOID = "void"  # voidCardSale, voidQrcodeSale
    REFUND = "refund"  # refundCardSale, refundQrcodeSale
    QUERY = "query"  # ecouponInquiry, summary
    UPLOAD = "upload"  # batchUpload

    @classmethod
    def of(cls, action: str) -> FaultAction | None:
        """The kind of an e-Buy action name, None for actions faults never apply to."""
        kind = kind_of(action)
        return None if kind == "other" else cls(kind)


#: What a fault's ``action`` may name: a kind, or one of the book's actions.
FAULT_TARGETS = frozenset({*FaultAction, *BOOK_ACTIONS, *KEY_ACTIONS})


@dataclass
class ScriptedFault:
    """One queue entry: ``fault`` for the next ``times`` requests of ``action`` (None: any kind).

    ``action`` is a kind (:class:`FaultAction`) or one action's name (``"qrcodeSale"``).

    ``trace_no`` (when set) limits it to requests whose traceNo or originalTraceNo is that
    value. ``delay_s`` is for the delay faults, ``code`` / ``desc`` for ``decline``, ``reset``
    for the drop faults (RST instead of FIN: the client sees a reset instead of a close).
    """

    fault: Fault
    action: str | None = None
    times: int = 1
    delay_s: float = 0.0
    trace_no: str | None = None
    code: str | None = None
    desc: str | None = None
    reset: bool = False

    def __post_init__(self) -> None:
        check_fault(
            self.fault, times=self.times, delay_s=self.delay_s, code=self.code, desc=self.desc, reset=self.reset
        )
        if self.action is not None:
            check_target(self.action)

    def matches(self, action: FaultAction | None, trace_nos: Iterable[str], name: str = "") -> bool:
        """True when a request of kind ``action`` (action name ``name``) carrying ``trace_nos`` takes this fault."""
        if action is None or self.action not in (None, action, name):
            return False
        return self.trace_no is None or self.trace_no in trace_nos

    def to_json(self) -> dict[str, Any]:
        """The entry as ``GET /_sim/faults`` lists it (``times`` = uses left)."""
        return asdict(self)


def check_target(action: str) -> None:
    """Refuse a fault ``action`` that is neither a kind nor a book action.

    Raises:
        ValueError: what it may be instead.
    """
    if action not in FAULT_TARGETS:
        raise ValueError(f"action must be a kind ({', '.join(FaultAction)}) or a book action, not {action!r}")


def check_fault(fault: Fault, *, times: int, delay_s: float, code: str | None, desc: str | None, reset: bool) -> None:
    """Refuse settings that do not fit the fault.

    Raises:
        ValueError: what is wrong, in words a test author can act on.
    """
    if times < 1:
        raise ValueError("times must be at least 1")
    if fault.delays and not 0 < delay_s <= MAX_DELAY_S:
        raise ValueError(f"{fault} needs delay_s > 0 (at most {MAX_DELAY_S:g})")
    if not fault.delays and delay_s:
        raise ValueError(f"delay_s is only for the delay faults, not {fault}")
    if fault is Fault.DECLINE and (not code or code == "00"):
        raise ValueError('decline needs a code other than "00"')
    if fault is not Fault.DECLINE and (code is not None or desc is not None):
        raise ValueError(f"code and desc are only for decline, not {fault}")
    if reset and not fault.drops:
        raise ValueError(f"reset is only for the drop faults, not {fault}")


class FaultRequest(BaseModel):
    """One object of ``POST /_sim/faults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str
    fault: Fault
    times: int = Field(1, ge=1, le=100_000)
    delay_s: float = Field(0.0, ge=0, le=MAX_DELAY_S)
    trace_no: Annotated[str, Field(min_length=1)] | None = None
    code: Annotated[str, Field(pattern=r"^[0-9A-Za-z]{1,8}$")] | None = None
    desc: str | None = None
    reset: bool = False

    @model_validator(mode="after")
    def _fits_the_fault(self) -> FaultRequest:
        check_target(self.action)
        check_fault(
            self.fault, times=self.times, delay_s=self.delay_s, code=self.code, desc=self.desc, reset=self.reset
        )
        return self

    def scripted(self) -> ScriptedFault:
        """The queue entry this request asks for."""
        return ScriptedFault(**self.model_dump())


_REQUESTS: TypeAdapter[FaultRequest | list[FaultRequest]] = TypeAdapter(FaultRequest | list[FaultRequest])


def parse_fault_requests(raw: bytes) -> list[FaultRequest]:
    """The body of ``POST /_sim/faults``: one fault object or a list of them.

    Raises:
        pydantic.ValidationError: (a ValueError) the body is not JSON or a field is wrong.
    """
    parsed = _REQUESTS.validate_json(raw)
    return parsed if isinstance(parsed, list) else [parsed]


class FaultScript:
    """A FIFO of scripted faults; each matching request uses up one ``times`` of the first match."""

    def __init__(self) -> None:
        self._queue: list[ScriptedFault] = []

    def add(
        self,
        fault: Fault,
        *,
        action: str | None = None,
        times: int = 1,
        delay_s: float = 0.0,
        trace_no: str | None = None,
        code: str | None = None,
        desc: str | None = None,
        reset: bool = False,
    ) -> None:
        """Queue ``fault`` for the next ``times`` requests of ``action`` (None: any kind).

        Raises:
            ValueError: the settings do not fit the fault (see :func:`check_fault`).
        """
        self.append(ScriptedFault(fault, action, times, delay_s, trace_no, code, desc, reset))

    def append(self, scripted: ScriptedFault) -> None:
        """Queue one entry (a copy: the script counts its uses down)."""
        self._queue.append(ScriptedFault(**asdict(scripted)))

    def take(self, action: FaultAction | None, trace_nos: Iterable[str] = (), name: str = "") -> ScriptedFault | None:
        """Use up one ``times`` of the first entry matching a request (kind ``action``, action ``name``).

        Returns that fault, if any.
        """
        trace_nos = tuple(no for no in trace_nos if no)
        for index, scripted in enumerate(self._queue):
            if scripted.matches(action, trace_nos, name):
                scripted.times -= 1
                if scripted.times == 0:
                    del self._queue[index]
                return ScriptedFault(**{**asdict(scripted), "times": 1})
        return None

    def pending(self) -> list[dict[str, Any]]:
        """The queue, oldest first, as JSON objects."""
        return [scripted.to_json() for scripted in self._queue]

    def clear(self) -> int:
        """Drop every queued fault; returns how many uses were left."""
        left = len(self)
        self._queue.clear()
        return left

    def __len__(self) -> int:
        """How many uses are left, all entries together."""
        return sum(scripted.times for scripted in self._queue)
