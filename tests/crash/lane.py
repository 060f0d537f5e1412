"""One lane of the crash harness (a bench of its own: simulators, ports, a journal) and the lanes in parallel.

:class:`Lane` runs one crash run after the other (:meth:`Lane.run`: the crashing daemons, the
clean one, the check); :func:`run_all` forks ``--jobs`` lane workers and gathers their results
(tests/crash/harness.py; docs/reliability.md, "Crash points").

A harness *lane* is a parallel worker, not a POS lane: with ``pos_lanes`` > 1 its daemons serve
that many POS lanes (``[[lanes]]``, one pad simulator each; tests/crash/pos_lanes.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import secrets
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from misbridge.app.daemon import load_signing_key
from misbridge.app.simulated import PadSimulator, Simulators
from misbridge.config.settings import Settings
from simulators.crypto import TEST_ROOT_KEY_HEX
from tests.crash import checker, scenarios
from tests.crash.bench import (
    ACTION,
    ANSWER_S,
    CRASH_AFTER_ANSWER_S,
    CRASHED,
    HEALTHY_S,
    HOST,
    INQUIRY_BOUND_S,
    POLL_S,
    READY_LINE,
    RECOVERY_CRASH_S,
    SETTLE_S,
    SIGTERM_STATE_S,
    Backend,
    DaemonChild,
    PosCall,
    SimProcess,
    daemon_settings,
    free_port,
    pos_body,
    prewarm,
    script_pad,
)
from tests.crash.flows import Flow, Request
from tests.crash.report import RunResult
from tests.crash.scenarios import Plan, Stage, plan_for

#: The answers that offer options to a POS that chooses (the daemons' ``options.choose_codes``).
OPTION_CODES = ("09",)

# --- one lane: its pads, two ports, a journal ----------------------------------------------------------


class Lane:
    """Runs crash runs one after the other on its own bench: backend and PIN-pad simulators, ports, journal.

    Lanes share nothing. Each journal numbers the traceNos misbridge originates (inquiry, void)
    from its own serial, so two daemons against one backend simulator would send the same
    inquiry traceNo and see "94 duplicate"; and one lane's ``DELETE /_sim/faults`` would wipe
    the other's script.
    """

    def __init__(self, name: str, workdir: Path, seed: str, *, pos_lanes: int = 1) -> None:
        self.name = name
        self.workdir = workdir
        self.seed = seed
        self.logs = workdir / "runs"
        self.logs.mkdir(parents=True, exist_ok=True)
        key_file = workdir / "signing.key"
        key_file.write_text(secrets.token_hex(16), encoding="utf-8")
        key_file.chmod(0o600)
        self.backend_sim = SimProcess(["backend", "--port", "0", "--key-file", str(key_file)], workdir / "backend.log")
        #: One pad simulator per POS lane the daemons serve (the first as it always was).
        self.pad_sims = [_pad_sim(workdir, number) for number in range(1, pos_lanes + 1)]
        self.pads = [pad for pad, _ in self.pad_sims]
        try:
            self.backend = Backend(self.backend_sim.ready_line().split()[-1])
            for _, process in self.pad_sims:
                process.ready_line()
        except BaseException:
            self.close()
            raise
        ports = (free_port(), free_port())
        self.pad_control = self.pads[0].control_path

        # More than one pad: simulated_settings gives the daemons [[lanes]] lane1 (POS01), lane2 (POS02), ...
        sims = Simulators(device_path=self.pads[0].device_path, control_path=self.pad_control,
                          backend_url=self.backend.url, signing_key_file=key_file,
                          log_path=workdir / "pinpad.log", pads=tuple(self.pads))  # fmt: skip

        # The store's rootKey, for the daemons of the runs that provision a pad (the key points).
        root_key = workdir / "root.key"
        root_key.write_text(TEST_ROOT_KEY_HEX, encoding="utf-8")
        root_key.chmod(0o600)

        def settings(inquiry_bound_s: float, options_on: str, provision: bool) -> Settings:
            return daemon_settings(
                sims, ports=ports, journal=workdir / "journal.db", inquiry_bound_s=inquiry_bound_s,
                options_on=options_on, root_key_file=root_key if provision else None,
            )  # fmt: skip

        # Inquiry scenarios crash at the 1st or 2nd inquiry; a long bound keeps a slow machine
        # from giving up (and voiding) before the 2nd one. Some options runs have the POS choose.
        self.variants = {
            (long, chooser, provision): settings(
                scenarios.LONG_INQUIRY_BOUND_S if long else INQUIRY_BOUND_S, chooser, provision
            )
            for long in (False, True)
            for chooser in ("pad", "pos")
            for provision in (False, True)
        }
        self.settings = self.variants[False, "pad", False]
        self.key = load_signing_key(self.settings)
        self.journal = Path(self.settings.journal.path)

    def close(self) -> None:
        """Stop the simulators."""
        for _, process in self.pad_sims:
            process.stop()
        self.backend_sim.stop()

    def sweep(self) -> list[str]:
        """The whole journal at the end of the lane's runs (:func:`checker.sweep`)."""
        return checker.sweep(self.journal)

    # -- helpers ---------------------------------------------------------------------------------

    def _fork(self, crash_at: str | None, log: Path, plan: Plan, *, long_bound: bool = False) -> DaemonChild:
        """A daemon; every daemon of a run where the POS chooses options has ``options.on = "pos"``,
        every daemon of a run that provisions a pad the rootKey."""
        chooser = plan.flow.options_on if plan.flow is not None else "pad"
        return DaemonChild(self.variants[long_bound, chooser, plan.provision], self.key, crash_at, log)

    def _health_ok(self) -> bool:
        conn = http.client.HTTPConnection(HOST, self.settings.api.http_port, timeout=2)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def _ready(self, child: DaemonChild, result: RunResult) -> bool:
        """Wait until the daemon says ``/health`` 200 *and* has logged the end of its start-up.

        ``/health`` answers 503 until recovery has finished: the service is built with
        ``_recovering = True`` (misbridge/core/service.py), which only ``recover()`` clears, and
        card requests get MB92 meanwhile. :meth:`Daemon.start` logs :data:`READY_LINE` right after
        ``recover()`` returns, once the reversal worker is spawned, so the two should come together;
        the line is still awaited because a 200 alone does not say the reversal worker runs. A 200
        seen before the line (the log written late) is counted in the run's ``early_health`` and
        reported.
        """
        deadline = time.monotonic() + HEALTHY_S
        healthy = False
        while time.monotonic() < deadline:
            if child.poll() is not None:
                return False
            if healthy or self._health_ok():
                if child.logged(READY_LINE):
                    return True
                if not healthy:
                    result.early_health += 1
                healthy = True
            time.sleep(POLL_S)
        return False

    def _wait_state(self, trace_no: str, state: str, child: DaemonChild, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and child.poll() is None:
            if checker.read_state(self.journal, trace_no)[0] == state:
                return True
            time.sleep(POLL_S)
        return False

    def _wait_settled(self, trace_no: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state, reversal = checker.read_state(self.journal, trace_no)
            if state in checker.FINAL_STATES and reversal in (None, "done"):
                return
            time.sleep(0.01)

    # -- one run ---------------------------------------------------------------------------------

    def run(self, point: str, index: int) -> RunResult:
        """One crash run at ``point`` and its check."""
        started = time.monotonic()
        rng = random.Random(f"{self.seed}:{point}:{index}")
        trace_no = f"C{rng.getrandbits(64):016x}{index:04d}"
        plan = plan_for(point, rng, trace_no)
        request = plan.flow.request if plan.flow else Request(ACTION, pos_body(trace_no, rng))
        log = self.logs / f"{point}-{index:04d}"
        result = RunResult(
            point, index, trace_no, plan.variant, [s.crash_at for s in plan.stages], [], False, log=f"{log}.*.log"
        )
        first_answer: dict[str, Any] | None = None
        last = request  # what the POS asked last, and repeats after the restart
        try:
            for number, stage in enumerate(plan.stages):
                stage_log = log.with_name(f"{log.name}.{number}.log")
                answer, last = self._crash_stage(stage, trace_no, last, stage_log, result, plan, number == 0)
                first_answer = first_answer or answer
            result.reached = all(code == CRASHED for code in result.exits) and not result.setup
        finally:
            self.backend.clear_faults()
        repeated = self._clean_stage(trace_no, last, log.with_name(f"{log.name}.clean.log"), result, plan)
        self._check(result, first_answer, repeated, plan)
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _crash_stage(
        self,
        stage: Stage,
        trace_no: str,
        request: Request,
        log: Path,
        result: RunResult,
        plan: Plan,
        first: bool,
    ) -> tuple[dict[str, Any] | None, Request]:
        """One daemon that should die at ``stage.crash_at``: its answer, if any, and what the POS asked last."""
        flow = plan.flow
        if stage.pad_keys is not None:  # what the daemon's start-up finds in the pad
            script_pad(self.pad_control, {"step": "keys", "keys": stage.pad_keys})
        child = self._fork(stage.crash_at, log, plan, long_bound=stage.long_inquiry_bound)
        answer: dict[str, Any] | None = None
        original = flow.original if flow is not None and first else None
        if not stage.sends_request:
            status = child.wait(RECOVERY_CRASH_S)
        elif not self._ready(child, result) or not self._original(original, result):
            status = child.poll()
        else:
            # Scripted once a follow-up's original is made: they are bound to the run's traceNo,
            # which none of the original's requests carries.
            self.backend.add_faults([fault.request(trace_no) for fault in stage.faults])
            if flow is not None and flow.pad_code is not None:
                script_pad(self.pad_control, {"step": "code", "code": flow.pad_code})  # read before any QR point
            call = PosCall(self.settings.api.socket_port, request.body, request.action)
            if stage.sigterm_at_state is not None:
                if not self._wait_state(trace_no, stage.sigterm_at_state, child, SIGTERM_STATE_S):
                    result.setup.append(f"SIGTERM sent without seeing the transaction {stage.sigterm_at_state}")
                child.signal(signal.SIGTERM)
            answer, request = self._choose(call.answer(ANSWER_S), request, flow)
            status = child.wait(CRASH_AFTER_ANSWER_S)
        if status is None:  # the point was not reached: stop this daemon and go on
            child.stop()
        result.exits.append(status)
        return answer, request

    def _choose(
        self, answer: dict[str, Any] | None, request: Request, flow: Flow | None
    ) -> tuple[dict[str, Any] | None, Request]:
        """A POS that chooses options (docs/pos-api.md): offered them, it sends the same request again with
        the first ``activityProductNo`` added. Returns the last answer (None: the connection ended) and
        the last request, which the POS repeats after a restart."""
        products = (answer or {}).get("activityProductList")
        if flow is None or flow.options_on != "pos" or _code(answer) not in OPTION_CODES or not products:
            return answer, request
        choice = Request(request.action, {**request.body, "activityProductNo": products[0]["activityProductNo"]})
        return PosCall(self.settings.api.socket_port, choice.body, choice.action).answer(ANSWER_S), choice

    def _original(self, original: Request | None, result: RunResult) -> bool:
        """Make a follow-up's original (an approved QR or card sale) on the crashing daemon; False if not approved."""
        if original is None:
            return True
        answer = PosCall(self.settings.api.socket_port, original.body, original.action).answer(ANSWER_S)
        if _code(answer) != checker.APPROVED_CODE:
            result.setup.append(f"the original {original.action} was answered {_code(answer)}, not 00")
            return False
        return True

    def _clean_stage(
        self, trace_no: str, request: Request, log: Path, result: RunResult, plan: Plan
    ) -> dict[str, Any] | None:
        flow = plan.flow
        child = self._fork(None, log, plan)
        repeated: dict[str, Any] | None = None
        try:
            if not self._ready(child, result):
                result.stuck.append(f"the clean daemon did not become healthy (exit {child.poll()})")
                return None
            repeated = PosCall(self.settings.api.socket_port, request.body, request.action).answer(ANSWER_S)
            repeated, _ = self._choose(repeated, request, flow)  # offered options again: the POS chooses
            self._wait_settled(trace_no, SETTLE_S)
        finally:
            self._stop_clean(child, result)
        return repeated

    @staticmethod
    def _stop_clean(child: DaemonChild, result: RunResult) -> None:
        """SIGTERM the clean daemon: anything but exit 0 is a stuck shutdown."""
        status = child.stop()
        result.exits.append(status)
        if status != 0:
            result.stuck.append(f"the clean daemon exited {status} after SIGTERM")

    def _check(
        self, result: RunResult, first: dict[str, Any] | None, repeated: dict[str, Any] | None, plan: Plan
    ) -> None:
        flow = plan.flow
        view = checker.read_journal(self.journal, result.trace_no)
        sale = self.backend.ledger(result.trace_no)
        calls = {no: self.backend.ledger(no) for no, _ in view.calls}
        moves_by = {"void": ("void",), "refund": ()}.get(flow.kind, ("option",)) if flow else ("option",)
        codes = checker.VOID_APPROVED_CODES if flow and flow.kind == "void" else (checker.APPROVED_CODE,)
        verdict = checker.check_run(
            view, sale, calls, repeated_answer=repeated, first_answer=first, moves_by=moves_by, approved_codes=codes
        )
        card_requests = {result.trace_no: sale}
        if flow is not None and flow.original is not None:
            self._check_original(verdict, view, flow)
            original_no = str(flow.original.body["traceNo"])
            card_requests[original_no] = self.backend.ledger(original_no)
        checker.check_keys(verdict, card_requests, state=view.state, approves=plan.approves)
        checker.check_pos_lane(verdict, view, None)  # one POS lane: the default lane's rows, as ever
        result.state, result.reversal = view.state, view.reversal_state
        result.ledger, result.submissions = sale.state, sale.submissions
        result.transitions = list(view.transitions)
        result.first_answer = _code(first)
        result.repeated_answer = _code(repeated)
        result.lost += verdict.lost
        result.doubled += verdict.doubled
        result.stuck += verdict.stuck
        result.answer += verdict.answer
        result.integrity += verdict.integrity
        result.key += verdict.key
        result.pos_lane += verdict.pos_lane

    def _check_original(self, verdict: checker.Verdict, view: checker.JournalView, flow: Flow) -> None:
        """The follow-up's original: the journal's view and its ledger entry as the backend knows it."""
        assert flow.original is not None
        original_no = str(flow.original.body["traceNo"])
        original = checker.read_journal(self.journal, original_no)
        known_as = [no for no, kind in original.calls if kind == "option"] or [original_no]
        voiders = frozenset({view_no for view_no, _ in view.calls} | {str(flow.request.body["traceNo"])})
        checker.check_original(
            verdict,
            view,
            original,
            self.backend.ledger(known_as[-1]),
            kind=flow.kind,
            refund_amount=flow.refund_amount,
            voiders=voiders,
        )


def _code(body: dict[str, Any] | None) -> str | None:
    return None if body is None else str(body.get("returnCode"))


def _pad_sim(workdir: Path, number: int) -> tuple[PadSimulator, SimProcess]:
    """POS lane ``number``'s pad simulator: ``pinpad``/``pinpad.ctl`` for the first, ``pinpad-N`` after."""
    stem = "pinpad" if number == 1 else f"pinpad-{number}"
    pad = PadSimulator(workdir / stem, workdir / f"{stem}.ctl")
    args = ["pinpad", "--link", str(pad.device_path), "--control", str(pad.control_path)]
    return pad, SimProcess(args, workdir / f"{stem}.log")


#: Builds a lane's bench: (name, workdir, seed) -> a Lane (or a subclass, tests/crash/pos_lanes.py).
BenchFactory = Callable[[str, Path, str], Lane]


# --- lanes in parallel -------------------------------------------------------------------------------


def _lane_worker(
    lane_dir: Path, seed: str, tasks: list[tuple[str, int]], out: Path, progress: bool, bench: BenchFactory
) -> NoReturn:
    code = 1
    try:
        lane = bench(lane_dir.name, lane_dir, seed)
        try:
            with out.open("w", encoding="utf-8") as sink:
                for point, index in tasks:
                    result = lane.run(point, index)
                    sink.write(json.dumps(asdict(result)) + "\n")
                    sink.flush()
                    if progress:
                        mark = "." if result.ok else ("u" if not result.reached else "F")
                        sys.stderr.write(mark)
                        sys.stderr.flush()
        finally:
            lane.close()
        leftovers = lane.sweep()
        for problem in leftovers:
            sys.stderr.write(f"lane {lane.name}: {problem}\n")
        code = 3 if leftovers else 0
    except BaseException:  # noqa: BLE001 - reported, then os._exit (a forked lane never returns)
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def run_all(
    points: Sequence[str],
    runs: int,
    *,
    seed: str,
    jobs: int,
    workdir: Path,
    progress: bool,
    bench: BenchFactory = Lane,
) -> tuple[list[RunResult], list[str]]:
    """Run ``runs`` crash runs for each point on ``jobs`` lanes; returns the results and lane errors.

    ``bench`` builds each lane (default :class:`Lane`: daemons with one POS lane).
    """
    prewarm()
    # Interleave the points so each lane gets a fair mix of slow and fast scenarios.
    tasks = [(point, index) for index in range(runs) for point in points]
    lanes: list[tuple[int, Path]] = []
    for lane_no in range(min(jobs, len(tasks))):
        lane_dir = workdir / f"lane{lane_no}"
        lane_dir.mkdir(parents=True, exist_ok=True)
        out = lane_dir / "results.jsonl"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _lane_worker(lane_dir, seed, tasks[lane_no::jobs], out, progress, bench)
        lanes.append((pid, out))
    errors: list[str] = []
    results: list[RunResult] = []
    for pid, out in lanes:
        _, raw = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(raw)
        if status == 3:
            errors.append(f"lane {out.parent.name}: its journal holds unfinished transactions (see stderr)")
        elif status != 0:
            errors.append(f"lane {out.parent.name} exited {status}")
        if out.exists():
            results += [RunResult(**json.loads(line)) for line in out.read_text(encoding="utf-8").splitlines()]
    if progress:
        sys.stderr.write("\n")
    results.sort(key=lambda r: (points.index(r.point), r.index))
    return results, errors
