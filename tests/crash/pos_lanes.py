"""The crash harness with several POS lanes in flight: ``python -m tests.crash.harness --pos-lanes 2``.

Issue 16 made one daemon serve several POS lanes (docs/operations.md "Lanes"): each with its own
pad, deviceNo, key keeper, reversal-queue worker and start-up recovery over its view of the one
journal (``Journal.for_lane``; the default lane's rows have ``lane`` NULL, another lane's its
name). This mode crashes such a daemon with a sale in flight on *every* POS lane.

"Lane" alone in tests/crash/ is a harness worker (tests/crash/lane.py); here it is always "POS
lane". A :class:`PosLanesBench` is a harness worker whose daemons run with ``[[lanes]]`` lane1
(deviceNo POS01, the default lane), lane2 (POS02), ..., one pad simulator each, against the
worker's one backend simulator and journal. A run:

1. draws one plan for the point (:func:`~tests.crash.scenarios.card_sale_plan`: the plain card
   sale's scenarios, never a QR sale or a POS void or refund) and scripts its backend faults for
   *every* lane's traceNo, so each lane's sale takes the same path and whichever lane passes the
   point first kills the daemon (a point's ``:nth`` counts the passes of all lanes) while the
   other lane's sale is somewhere else in flight;
2. sends a ``cardRedemption`` on every POS lane at the same moment over the shared socket door,
   each with its own traceNo and amount and its lane's deviceNo in the envelope; which lane sends
   first is drawn per run;
3. after the crash (and, for ``recovery.*``, a second daemon that dies in the recovery of both
   lanes side by side) forks a clean daemon and repeats every lane's request (same traceNo, same
   body, same lane) at the same moment, then waits until each is final with no reversal left;
4. checks every lane's transaction with the one-lane rules (tests/crash/checker.py: lost,
   doubled, stuck, answer, integrity, key) and :func:`~tests.crash.checker.check_pos_lane`: its
   journal row is in the lane it was sent on. At the end the worker sweeps its whole journal,
   which must also hold no row outside the daemons' POS lanes.

A run is one line of the table: a violation on any lane counts, each message names its lane and
traceNo, and ``RunResult.pos_lanes`` holds every lane's transaction (the JSON report has them).
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misbridge.app.simulated import lane_device_no, lane_name
from tests.crash import checker
from tests.crash.bench import (
    ACTION,
    ANSWER_S,
    CRASH_AFTER_ANSWER_S,
    CRASHED,
    POLL_S,
    RECOVERY_CRASH_S,
    SETTLE_S,
    SIGTERM_STATE_S,
    DaemonChild,
    PosCall,
    pos_body,
)
from tests.crash.lane import Lane
from tests.crash.report import RunResult
from tests.crash.scenarios import CARD_SALE_RUN_POINTS, Plan, Stage, card_sale_plan

#: The points the several-POS-lane mode runs: every point a plain ``cardRedemption`` reaches.
POS_LANES_POINTS = CARD_SALE_RUN_POINTS


@dataclass(frozen=True)
class PosLaneSale:
    """One POS lane's ``cardRedemption`` in a run: the lane, where its row must land, what its POS sends."""

    #: 1-based: lane1 is the default lane.
    number: int
    name: str
    device_no: str
    #: The journal's ``lane`` of its row: None for the default lane, else the lane's name.
    journal_lane: str | None
    trace_no: str
    body: dict[str, Any]


def pos_lane_sales(count: int, index: int, rng: random.Random) -> list[PosLaneSale]:
    """Every POS lane's sale of run ``index``: a traceNo of its own (the lane's number in it), a random amount."""
    sales = []
    for number in range(1, count + 1):
        trace_no = f"C{number}{rng.getrandbits(60):015x}{index:04d}"
        name = lane_name(number)
        journal_lane = None if number == 1 else name
        sales.append(PosLaneSale(number, name, lane_device_no(number), journal_lane, trace_no, pos_body(trace_no, rng)))
    return sales


class PosLanesBench(Lane):
    """A harness worker whose daemons serve ``pos_lanes`` POS lanes; each run sells on all of them at once."""

    def __init__(self, name: str, workdir: Path, seed: str, *, pos_lanes: int = 2) -> None:
        if pos_lanes < 2:
            raise ValueError(f"a PosLanesBench needs 2 or more POS lanes, not {pos_lanes}")
        super().__init__(name, workdir, seed, pos_lanes=pos_lanes)
        self.pos_lanes = pos_lanes

    def sweep(self) -> list[str]:
        """The whole journal: every transaction final, no reversal left, integrity ok, each in a POS lane."""
        lanes = {None, *(lane_name(number) for number in range(2, self.pos_lanes + 1))}
        return checker.sweep(self.journal, pos_lanes=lanes)

    # -- one run ---------------------------------------------------------------------------------

    def run(self, point: str, index: int) -> RunResult:
        """One crash run at ``point`` with a sale in flight on every POS lane, and its check."""
        started = time.monotonic()
        rng = random.Random(f"{self.seed}:{point}:{index}:pos-lanes")
        plan = card_sale_plan(point, rng)
        sales = pos_lane_sales(self.pos_lanes, index, rng)
        order = rng.sample(sales, len(sales))  # who sends first: either lane may meet the point first
        log = self.logs / f"{point}-{index:04d}"
        variant = f"{plan.variant}; {', '.join(sale.name for sale in order)} send in this order"
        result = RunResult(
            point, index, sales[0].trace_no, variant, [s.crash_at for s in plan.stages], [], False, log=f"{log}.*.log"
        )
        first: dict[str, dict[str, Any] | None] = {sale.trace_no: None for sale in sales}
        try:
            for number, stage in enumerate(plan.stages):
                answers = self._crash_all(stage, order, log.with_name(f"{log.name}.{number}.log"), result, plan)
                for trace_no, answer in answers.items():
                    first[trace_no] = first[trace_no] or answer
            result.reached = all(code == CRASHED for code in result.exits) and not result.setup
        finally:
            self.backend.clear_faults()
        repeated = self._clean_all(order, log.with_name(f"{log.name}.clean.log"), result, plan)
        for sale in sales:
            self._check_sale(result, sale, first[sale.trace_no], repeated.get(sale.trace_no))
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _send_all(self, order: list[PosLaneSale]) -> list[tuple[PosLaneSale, PosCall]]:
        """Every lane's request, one right after the other on its own connection (the daemon serves them at once)."""
        port = self.settings.api.socket_port
        return [(sale, PosCall(port, sale.body, ACTION, device_no=sale.device_no)) for sale in order]

    def _crash_all(
        self, stage: Stage, order: list[PosLaneSale], log: Path, result: RunResult, plan: Plan
    ) -> dict[str, dict[str, Any] | None]:
        """One daemon that should die at ``stage.crash_at``: each lane's answer (None: none before the crash)."""
        child = self._fork(stage.crash_at, log, plan, long_bound=stage.long_inquiry_bound)
        answers: dict[str, dict[str, Any] | None] = {}
        if not stage.sends_request:
            status = child.wait(RECOVERY_CRASH_S)
        elif not self._ready(child, result):
            status = child.poll()
        else:
            self.backend.add_faults([fault.request(sale.trace_no) for sale in order for fault in stage.faults])
            calls = self._send_all(order)
            if stage.sigterm_at_state is not None:
                self._sigterm_at(stage.sigterm_at_state, order, child, result)
            answers = {sale.trace_no: call.answer(ANSWER_S) for sale, call in calls}
            status = child.wait(CRASH_AFTER_ANSWER_S)
        if status is None:  # the point was not reached: stop this daemon and go on
            child.stop()
        result.exits.append(status)
        return answers

    def _sigterm_at(self, state: str, order: list[PosLaneSale], child: DaemonChild, result: RunResult) -> None:
        """SIGTERM once every lane's transaction was seen in ``state`` (or the wait ran out with some seen).

        Each lane's sale is held by the backend, so they are in ``state`` together; a lane not
        seen there is noted in the variant, and none seen at all is a setup failure.
        """
        pending = {sale.trace_no: sale.name for sale in order}
        seen: list[str] = []
        deadline = time.monotonic() + SIGTERM_STATE_S
        while pending and time.monotonic() < deadline and child.poll() is None:
            for trace_no in list(pending):
                if checker.read_state(self.journal, trace_no)[0] == state:
                    seen.append(pending.pop(trace_no))
            time.sleep(POLL_S)
        if not seen:
            result.setup.append(f"SIGTERM sent without seeing a transaction {state}")
        elif pending:
            result.variant += f"; SIGTERM with {', '.join(seen)} seen {state}, not {', '.join(pending.values())}"
        child.signal(signal.SIGTERM)

    def _clean_all(
        self, order: list[PosLaneSale], log: Path, result: RunResult, plan: Plan
    ) -> dict[str, dict[str, Any] | None]:
        """The clean daemon: every lane's POS repeats its request at once; each lane's answer."""
        child = self._fork(None, log, plan)
        repeated: dict[str, dict[str, Any] | None] = {}
        try:
            if not self._ready(child, result):
                result.stuck.append(f"the clean daemon did not become healthy (exit {child.poll()})")
                return repeated
            repeated = {sale.trace_no: call.answer(ANSWER_S) for sale, call in self._send_all(order)}
            deadline = time.monotonic() + SETTLE_S
            for sale in order:
                self._wait_settled(sale.trace_no, max(0.0, deadline - time.monotonic()))
        finally:
            self._stop_clean(child, result)
        return repeated

    def _check_sale(
        self,
        result: RunResult,
        sale: PosLaneSale,
        first: dict[str, Any] | None,
        repeated: dict[str, Any] | None,
    ) -> None:
        """One lane's transaction: the one-lane rules and its POS lane, into ``result`` under its name."""
        view = checker.read_journal(self.journal, sale.trace_no)
        entry = self.backend.ledger(sale.trace_no)
        calls = {no: self.backend.ledger(no) for no, _ in view.calls}
        verdict = checker.check_run(view, entry, calls, repeated_answer=repeated, first_answer=first)
        checker.check_keys(verdict, {sale.trace_no: entry}, state=view.state, approves=False)
        checker.check_pos_lane(verdict, view, sale.journal_lane)
        for column in checker.COLUMNS:
            getattr(result, column).extend(f"{sale.name} {sale.trace_no}: {text}" for text in getattr(verdict, column))
        txn = {
            "lane": sale.name,
            "trace_no": sale.trace_no,
            "journal_lane": view.lane,
            "state": view.state,
            "reversal": view.reversal_state,
            "ledger": entry.state,
            "submissions": entry.submissions,
            "first_answer": _code(first),
            "repeated_answer": _code(repeated),
            "transitions": list(view.transitions),
        }
        result.pos_lanes.append(txn)
        if sale.number == 1:  # the run's own fields are the default lane's, as in a one-lane run
            result.state, result.reversal = view.state, view.reversal_state
            result.ledger, result.submissions = entry.state, entry.submissions
            result.transitions = list(view.transitions)
            result.first_answer, result.repeated_answer = _code(first), _code(repeated)


def _code(body: dict[str, Any] | None) -> str | None:
    return None if body is None else str(body.get("returnCode"))
