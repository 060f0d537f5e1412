"""The backend fault table for the card sale, and the checker that judges each case's end.

* :class:`Case`, :func:`check`: one row of the fault table and the checker that judges its end
  (reliability-requirements R7-R9): exactly one original submission per traceNo, a final
  journal state, ``approved`` exactly when the ledger holds the money, and a POS answer that
  agrees with the journal.
* :func:`run_case`, :func:`run_once`: one run of a case on the short-timer bench
  (tests/integration/faultbench.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from misbridge.errors import ReturnCode
from tests.integration.faultbench import (
    FINAL_STATES,
    READ_TIMEOUT_S,
    BackendKind,
    Door,
    Fault,
    FaultBench,
    LedgerEntry,
    fresh_trace_no,
    redemption_body,
    reversal_pending,
)

# --- the fault table ---------------------------------------------------------------------------

EndState = Literal["approved", "declined", "aborted", "voided", "needs_manual"]
Inquiries = Literal["none", "some", "any"]


@dataclass(frozen=True)
class Case:
    """One row of the fault table: what breaks, and how the transaction must end.

    Attributes:
        id: short name (the pytest id).
        doc: one line: the fault and the expected end.
        faults: scripted on the simulator, bound to the case's traceNo.
        end: the journal state the transaction must come to rest in.
        pos_code: the returnCode the POS must be answered.
        submissions: original submissions the ledger must count (0: nothing reached it).
        backend: where the daemon's backend URL points: the simulator, a refusing port, a blackhole.
        inquiries: whether the journal must show inquiries ("none", "some") or may ("any").
        inquiry_codes: returnCodes that must appear among the inquiry answers.
        min_void_attempts: the void must have needed at least this many attempts.
    """

    id: str
    doc: str
    end: EndState
    pos_code: str
    faults: tuple[Fault, ...] = ()
    submissions: int = 1
    backend: BackendKind = "sim"
    inquiries: Inquiries = "any"
    inquiry_codes: tuple[str, ...] = ()
    min_void_attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    """What one run of a case produced: the POS answer, the journal view, the ledger record."""

    trace_no: str
    answer: dict[str, Any]
    view: dict[str, Any]
    ledger: LedgerEntry | None
    seconds: float

    @property
    def state(self) -> str:
        return str(self.view["state"])

    @property
    def pos_code(self) -> str:
        return str(self.answer.get("returnCode"))

    def calls(self, kind: str) -> list[dict[str, Any]]:
        """The journal's originated requests of ``kind`` (inquiry, void) about this transaction."""
        return [call for call in self.view.get("backendCalls") or [] if call.get("kind") == kind]

    def describe(self) -> str:
        """One line with every state that matters, for failure messages and the soak table."""
        ledger = (
            "absent"
            if self.ledger is None
            else (f"{self.ledger.state}/applied={self.ledger.applied}/submissions={self.ledger.submissions}")
        )
        events = [t.get("event") for t in self.view.get("transitions") or []]
        inquiry = [c.get("returnCode") for c in self.calls("inquiry")]
        voids = [c.get("returnCode") for c in self.calls("void")]
        reversal = self.view.get("reversal")
        return (
            f"{self.trace_no}: journal={self.state} pos={self.pos_code} ledger={ledger} "
            f"inquiries={inquiry} voids={voids} reversal={reversal} events={events}"
        )


#: The view of a sale refused before it was journaled (MB51).
NOT_JOURNALED: dict[str, Any] = {"state": "not journaled"}
#: MB51 comes after at most one probe (0.8 s): "refused in under a second", with room for a loaded box.
REFUSED_WITHIN_S = 2.0


def check(case: Case, outcome: Outcome) -> list[str]:
    """The checker: every way ``outcome`` breaks the rules of ``case`` (empty = all good)."""
    if outcome.pos_code == ReturnCode.BACKEND_DOWN.code:
        return _refused_as_down(case, outcome)
    problems: list[str] = []
    state, ledger = outcome.state, outcome.ledger
    submissions = 0 if ledger is None else ledger.submissions
    applied = ledger is not None and ledger.applied
    if submissions != case.submissions:
        problems.append(f"{submissions} original submission(s) in the ledger, expected {case.submissions}")
    if state != case.end:
        problems.append(f"journal ended {state}, expected {case.end}")
    if state not in FINAL_STATES and not (state == "needs_manual" == case.end):
        problems.append(f"journal state {state} is not final")
    if reversal_pending(outcome.view):
        problems.append("a reversal is still pending")
    if state == "needs_manual":
        # By design (R9): a definite void refusal leaves the money moved for a person to settle.
        if not applied:
            problems.append("needs_manual but the ledger shows no money moved: nothing to settle by hand")
    elif (state == "approved") != applied:
        problems.append(f"journal {state} but ledger applied={applied}")
    problems.extend(_pos_disagreements(case, outcome))
    problems.extend(_trail_disagreements(case, outcome))
    return problems


def _refused_as_down(case: Case, outcome: Outcome) -> list[str]:
    """MB51: right only for an unreachable backend that a call before this one found down, and
    only if nothing was journaled, nothing reached the backend, and it came at once."""
    problems: list[str] = []
    if case.backend == "sim":
        problems.append("MB51 (backend known down) from a reachable backend")
    if outcome.view is not NOT_JOURNALED:
        problems.append(f"MB51 but the journal holds the sale ({outcome.state})")
    if outcome.ledger is not None:
        problems.append("MB51 but the backend's ledger holds the sale")
    if outcome.seconds > REFUSED_WITHIN_S:
        problems.append(f"MB51 after {outcome.seconds:.2f} s, not at once")
    if outcome.answer.get("traceNo") != outcome.trace_no:
        problems.append(f"POS answer carries traceNo {outcome.answer.get('traceNo')!r}")
    return problems


def _pos_disagreements(case: Case, outcome: Outcome) -> list[str]:
    problems: list[str] = []
    state, code = outcome.state, outcome.pos_code
    if code != case.pos_code:
        problems.append(f"POS answered {code}, expected {case.pos_code}")
    if outcome.answer.get("traceNo") != outcome.trace_no:
        problems.append(f"POS answer carries traceNo {outcome.answer.get('traceNo')!r}")
    if state == "approved" and code != "00":
        problems.append(f"approved but the POS was answered {code}")
    if code == "00" and state != "approved":
        problems.append(f"the POS was told 00 but the journal says {state}")
    if state in ("voided", "needs_manual") and code != "MB32":
        problems.append(f"{state} but the POS was answered {code}, not MB32")
    if state in ("declined", "aborted") and code != outcome.view.get("returnCode"):
        problems.append(f"{state}: POS answered {code} but the journal holds {outcome.view.get('returnCode')}")
    return problems


def _trail_disagreements(case: Case, outcome: Outcome) -> list[str]:
    problems: list[str] = []
    inquiries = outcome.calls("inquiry")
    if case.inquiries == "none" and inquiries:
        problems.append(f"{len(inquiries)} inquiry(ies) sent, expected none")
    if case.inquiries == "some" and not inquiries:
        problems.append("no inquiry sent, expected at least one")
    codes = {call.get("returnCode") for call in inquiries}
    missing = [code for code in case.inquiry_codes if code not in codes]
    if missing:
        problems.append(f"inquiry answers {sorted(c or '-' for c in codes)} lack {missing}")
    reversal = outcome.view.get("reversal")
    attempts = int(reversal.get("attempts", 0)) if isinstance(reversal, dict) else 0
    if attempts < case.min_void_attempts:
        problems.append(f"void took {attempts} attempt(s), expected at least {case.min_void_attempts}")
    if outcome.state in ("voided", "needs_manual") and not outcome.calls("void"):
        problems.append(f"{outcome.state} without any void sent")
    return problems


async def run_case(bench: FaultBench, case: Case, door: Door = "socket") -> Outcome:
    """Run ``case`` once, on a daemon pointed at the backend the case needs."""
    async with bench.using(case.backend):
        return await run_once(bench, case, door)


async def run_once(bench: FaultBench, case: Case, door: Door = "socket") -> Outcome:
    """Script ``case``'s faults, send one cardRedemption, wait for its end; the outcome.

    The daemon must already point at the backend ``case.backend`` names (:meth:`FaultBench.using`).
    """
    trace_no = fresh_trace_no()
    body = redemption_body(trace_no)
    await bench.backend.clear_faults()
    await bench.backend.add_faults(case.faults, trace_no)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        answer = await bench.send("cardRedemption", body, door)
        # MB51 is answered before anything is journaled: there is nothing to settle.
        refused = answer.get("returnCode") == ReturnCode.BACKEND_DOWN.code
        view = (await bench.view(trace_no) or NOT_JOURNALED) if refused else await bench.settle(trace_no)
    finally:
        await bench.backend.clear_faults()
    seconds = loop.time() - started
    return Outcome(trace_no, answer, view, await bench.backend.entry(trace_no), seconds)


# --- the table itself -----------------------------------------------------------------------------

#: Longer than the read timeout, shorter than (read timeout + inquiry bound): the inquiry sees it land.
DELAY_PAST_READ_TIMEOUT_S = 0.6
#: Inside the read timeout, with room for the request's own time.
SLOW_BUT_IN_TIME_S = 0.15
#: So many failing inquiries that none succeeds before the bound.
MANY = 1000

_INQUIRY_FAILS = Fault("inquiry", "http-500-after-commit", times=MANY)
_LOST_SALE_REPLY = Fault("sale", "drop-after-commit")

TABLE: tuple[Case, ...] = (
    Case(
        "connect-refused",
        "backend port refuses connections: retried, never sent -> aborted MB30; while it stays down, MB51 at once",
        "aborted",
        "MB30",
        submissions=0,
        backend="refused",
        inquiries="none",
    ),
    Case(
        "connect-timeout",
        "backend never answers the SYN: connect times out, never sent -> aborted MB30; then MB51 after one probe",
        "aborted",
        "MB30",
        submissions=0,
        backend="blackhole",
        inquiries="none",
    ),
    Case(
        "read-timeout-before-commit",
        "backend holds the sale past the read timeout before deciding -> inquiry sees 26 then 00 -> approved",
        "approved",
        "00",
        (Fault("sale", "delay-before-commit", delay_s=DELAY_PAST_READ_TIMEOUT_S),),
        inquiries="some",
        inquiry_codes=("26", "00"),
    ),
    Case(
        "read-timeout-after-commit",
        "backend decides, then holds the reply past the read timeout -> inquiry 00 -> approved",
        "approved",
        "00",
        (Fault("sale", "delay-after-commit", delay_s=DELAY_PAST_READ_TIMEOUT_S),),
        inquiries="some",
        inquiry_codes=("00",),
    ),
    Case(
        "http-500-after-commit",
        "sale applied, then HTTP 500 -> inquiry 00 -> approved",
        "approved",
        "00",
        (Fault("sale", "http-500-after-commit"),),
        inquiries="some",
        inquiry_codes=("00",),
    ),
    Case(
        "http-500-before-commit",
        "HTTP 500 without applying the sale -> inquiry 25 -> declined MB33",
        "declined",
        "MB33",
        (Fault("sale", "http-500-before-commit"),),
        inquiries="some",
        inquiry_codes=("25",),
    ),
    Case(
        "non-json-after-commit",
        "sale applied, reply is an HTML page -> inquiry 00 -> approved",
        "approved",
        "00",
        (Fault("sale", "non-json-after-commit"),),
        inquiries="some",
        inquiry_codes=("00",),
    ),
    Case(
        "bad-sign-after-commit",
        "sale applied, reply signature wrong -> inquiry 00 -> approved",
        "approved",
        "00",
        (Fault("sale", "bad-sign-after-commit"),),
        inquiries="some",
        inquiry_codes=("00",),
    ),
    Case(
        "missing-sign-after-commit",
        "sale applied, reply unsigned -> inquiry 00 -> approved",
        "approved",
        "00",
        (Fault("sale", "missing-sign-after-commit"),),
        inquiries="some",
        inquiry_codes=("00",),
    ),
    Case(
        "wrong-trace-after-commit",
        "sale applied, reply names another traceNo -> inquiry 00 -> approved",
        "approved",
        "00",
        (Fault("sale", "wrong-trace-after-commit"),),
        inquiries="some",
        inquiry_codes=("00",),
    ),
    Case(
        "drop-after-commit",
        "sale applied, connection closed before the reply -> inquiry 00 -> approved",
        "approved",
        "00",
        (_LOST_SALE_REPLY,),
        inquiries="some",
        inquiry_codes=("00",),
    ),
    Case(
        "slow-within-read-timeout",
        "reply late but inside the read timeout -> approved directly, no inquiry",
        "approved",
        "00",
        (Fault("sale", "delay-after-commit", delay_s=SLOW_BUT_IN_TIME_S),),
        inquiries="none",
    ),
    Case(
        "inquiry-failing-too",
        "reply lost and every inquiry fails -> bound reached -> void -> voided",
        "voided",
        "MB32",
        (_LOST_SALE_REPLY, _INQUIRY_FAILS),
        inquiries="some",
    ),
    Case(
        "void-failing-3-times",
        "as inquiry-failing-too, and the void fails 3 times -> backoff -> voided",
        "voided",
        "MB32",
        (_LOST_SALE_REPLY, _INQUIRY_FAILS, Fault("void", "http-500-before-commit", times=3)),
        inquiries="some",
        min_void_attempts=4,
    ),
    Case(
        "void-refused",
        "as inquiry-failing-too, and the void is refused (57) -> needs_manual (R9, by design)",
        "needs_manual",
        "MB32",
        (_LOST_SALE_REPLY, _INQUIRY_FAILS, Fault("void", "decline", code="57")),
        inquiries="some",
    ),
    Case(
        "inquiry-rejected",
        "sale reply lost, first inquiry refused as a request (94) -> says nothing -> next inquiry 00 -> approved",
        "approved",
        "00",
        (_LOST_SALE_REPLY, Fault("inquiry", "decline", code="94")),
        inquiries="some",
        inquiry_codes=("94", "00"),
    ),
    Case(
        "drop-before-commit",
        "connection closed before the sale was applied -> inquiry 25 -> declined MB33",
        "declined",
        "MB33",
        (Fault("sale", "drop-before-commit"),),
        inquiries="some",
        inquiry_codes=("25",),
    ),
    Case(
        "backend-decline",
        "a definite decline (51) -> declined with the backend's code, no inquiry",
        "declined",
        "51",
        (Fault("sale", "decline", code="51"),),
        inquiries="none",
    ),
)

_AFTER_COMMIT_SPOILERS = (
    "http-500-after-commit",
    "non-json-after-commit",
    "bad-sign-after-commit",
    "missing-sign-after-commit",
    "wrong-trace-after-commit",
    "drop-after-commit",
)

#: A void that fails: not applied, or applied with its reply lost (the retry then gets 22, "already voided").
_VOID_FAILURES = ("http-500-before-commit", "drop-before-commit", "http-500-after-commit")


def vary(case: Case, rng: random.Random) -> Case:
    """``case`` with its delays, failure counts and failing-inquiry kind drawn from ``rng``.

    Every draw stays in the range that keeps the case's expected end: a before-commit delay
    lands after the read timeout and well before the inquiry bound, a slow reply stays inside
    the read timeout, and a failing void fails 1 to 5 times.
    """
    faults: list[Fault] = []
    for fault in case.faults:
        if fault.fault == "delay-before-commit":
            fault = dataclasses.replace(fault, delay_s=round(rng.uniform(0.55, 0.85), 3))
        elif fault.fault == "delay-after-commit" and fault.delay_s > READ_TIMEOUT_S:
            fault = dataclasses.replace(fault, delay_s=round(rng.uniform(0.5, 1.2), 3))
        elif fault.fault == "delay-after-commit":
            fault = dataclasses.replace(fault, delay_s=round(rng.uniform(0.01, 0.2), 3))
        elif fault.action == "inquiry" and fault.times == MANY:
            fault = dataclasses.replace(fault, fault=rng.choice(_AFTER_COMMIT_SPOILERS))
        elif fault.action == "void" and fault.fault == "http-500-before-commit":
            fault = dataclasses.replace(fault, fault=rng.choice(_VOID_FAILURES), times=rng.randint(1, 5))
        faults.append(fault)
    min_attempts = case.min_void_attempts
    if min_attempts:
        min_attempts = 1 + next(f.times for f in faults if f.action == "void")
    return dataclasses.replace(case, faults=tuple(faults), min_void_attempts=min_attempts)


def summary_table(rows: Sequence[tuple[str, int, int, float, float, str]]) -> str:
    """The soak's table: case, runs, failures, mean and max seconds, ends seen."""
    header = f"{'case':<34} {'runs':>5} {'fail':>5} {'mean s':>7} {'max s':>7}  ends"
    lines = [header, "-" * len(header)]
    for name, runs, failed, mean, worst, ends in rows:
        lines.append(f"{name:<34} {runs:>5} {failed:>5} {mean:>7.2f} {worst:>7.2f}  {ends}")
    return "\n".join(lines)
