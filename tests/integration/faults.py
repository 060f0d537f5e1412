"""Shared helpers for the backend fault table and the idempotency tests.

* :class:`SimBackend`: the backend simulator's test endpoints over HTTP (``/_sim/faults``,
  ``/_sim/ledger/{traceNo}``), so the simulator can run as a subprocess.
* :class:`FaultBench`: simulators plus an in-process daemon with **short timers**
  (:func:`fault_settings`) that can be restarted on the same journal, or pointed at another
  backend URL (connect refused, blackholed).
* :class:`Case`, :func:`check`: one row of the fault table and the checker that judges its end
  (reliability-requirements R7-R9): exactly one original submission per traceNo, a final
  journal state, ``approved`` exactly when the ledger holds the money, and a POS answer that
  agrees with the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.daemon import Daemon
from misbridge.app.simulated import Simulators, daemon_for, launched_simulators, simulated_settings
from misbridge.config.settings import Settings
from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from simulators.backend.app import DEFAULT_PREFIX
from simulators.backend.netfaults import blackhole_listener, refusing_port

Door = Literal["socket", "http"]
BackendKind = Literal["sim", "refused", "blackhole"]
#: The simulator's fault kinds this bench scripts (docs/backend.md, "Scripted faults").
FaultKind = Literal["sale", "inquiry", "void", "refund"]

# --- the short, consistent timer set -----------------------------------------------------------

CONNECT_TIMEOUT_S = 0.25
READ_TIMEOUT_S = 0.4
REQUEST_DEADLINE_S = 1.5
INQUIRY_INTERVAL_S = 0.05
INQUIRY_BOUND_S = 0.8
BACKOFF_INITIAL_S = 0.05
BACKOFF_MAX_S = 0.2
CARD_TIMEOUT_S = 5  # the validator's minimum
PIN_TIMEOUT_S = 5
REPLY_GRACE_S = 2.0
#: Must exceed card + PIN + 2 x grace + backend deadline + inquiry bound (16.3 s): the validator.
POS_DEADLINE_S = 20.0
#: How long a case may take to reach its end, voids included (generous: a loaded CI machine).
SETTLE_TIMEOUT_S = 15.0

#: Where a transaction may rest: final states, plus needs_manual (a person's turn, R9).
RESTING_STATES = frozenset({"approved", "declined", "aborted", "voided", "needs_manual"})
FINAL_STATES = frozenset({"approved", "declined", "aborted", "voided"})


def fresh_trace_no() -> str:
    """A traceNo never used before (the backend refuses repeats)."""
    return "F" + uuid.uuid4().hex[:20]


def redemption_body(trace_no: str | None = None, **changes: Any) -> dict[str, Any]:
    """The book's cardRedemption example under a new (or the given) traceNo."""
    body = card_redemption_request()
    body["traceNo"] = trace_no or fresh_trace_no()
    body.update(changes)
    return body


def fault_settings(sims: Simulators, workdir: Path, *, backend_url: str | None = None) -> Settings:
    """Daemon settings on the simulators with the fault table's short timers."""
    return simulated_settings(
        sims,
        workdir / "journal.db",
        device={"card_timeout_s": CARD_TIMEOUT_S, "pin_timeout_s": PIN_TIMEOUT_S, "reply_grace_s": REPLY_GRACE_S},
        backend={
            "url": backend_url or sims.backend_url,
            "connect_timeout_s": CONNECT_TIMEOUT_S,
            "read_timeout_s": READ_TIMEOUT_S,
            "request_deadline_s": REQUEST_DEADLINE_S,
        },
        resolution={
            "inquiry_interval_s": INQUIRY_INTERVAL_S,
            "inquiry_bound_s": INQUIRY_BOUND_S,
            "reversal_backoff_initial_s": BACKOFF_INITIAL_S,
            "reversal_backoff_max_s": BACKOFF_MAX_S,
            "drain_before_sale_s": 1.0,
        },
        # The duplicate-request tests open 50 connections at once from this one user.
        api={"socket_read_timeout_s": 0.5, "pos_deadline_s": POS_DEADLINE_S, "max_connections_per_user": 64},
    )


# --- the backend simulator's test endpoints ----------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scripted backend fault (``POST /_sim/faults``), for requests about the case's traceNo."""

    action: FaultKind
    fault: str
    times: int = 1
    delay_s: float = 0.0
    code: str | None = None

    def payload(self, trace_no: str | None) -> dict[str, Any]:
        """The JSON object; ``trace_no`` binds it to that traceNo (or originalTraceNo)."""
        fields: dict[str, Any] = {"action": self.action, "fault": self.fault, "times": self.times}
        if self.delay_s:
            fields["delay_s"] = self.delay_s
        if self.code is not None:
            fields["code"] = self.code
        if trace_no is not None:
            fields["trace_no"] = trace_no
        return fields

    def __str__(self) -> str:
        extra = f" {self.delay_s:.2f}s" if self.delay_s else ""
        extra += f" code {self.code}" if self.code else ""
        times = f" x{self.times}" if self.times != 1 else ""
        return f"{self.action}:{self.fault}{extra}{times}"


@dataclass(frozen=True)
class LedgerEntry:
    """What the backend simulator holds for one traceNo (``GET /_sim/ledger/{traceNo}``)."""

    submissions: int
    state: str
    applied: bool
    raw: dict[str, Any]


class SimBackend:
    """The backend simulator's test endpoints, reached over HTTP like any other process would."""

    def __init__(self, backend_url: str) -> None:
        url = httpx.URL(backend_url)
        self.base = f"{url.scheme}://{url.netloc.decode('ascii')}"

    async def _call(self, method: str, path: str, payload: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            return await client.request(method, path, json=payload)

    async def clear_faults(self) -> None:
        """Drop every queued fault."""
        reply = await self._call("DELETE", "/_sim/faults")
        assert reply.status_code == 200, f"DELETE /_sim/faults: {reply.status_code} {reply.text}"

    async def add_faults(self, faults: Iterable[Fault], trace_no: str | None) -> None:
        """Queue ``faults`` (bound to ``trace_no`` when given)."""
        payload = [fault.payload(trace_no) for fault in faults]
        if not payload:
            return
        reply = await self._call("POST", "/_sim/faults", payload)
        assert reply.status_code == 200, f"POST /_sim/faults {payload}: {reply.status_code} {reply.text}"

    async def pending_faults(self) -> list[dict[str, Any]]:
        """The fault script still queued."""
        reply = await self._call("GET", "/_sim/faults")
        pending: list[dict[str, Any]] = reply.json()["pending"]
        return pending

    async def entry(self, trace_no: str) -> LedgerEntry | None:
        """The ledger record of ``trace_no``, None when the simulator never saw it."""
        reply = await self._call("GET", f"/_sim/ledger/{trace_no}")
        if reply.status_code == 404:
            return None
        assert reply.status_code == 200, f"GET /_sim/ledger/{trace_no}: {reply.status_code} {reply.text}"
        raw: dict[str, Any] = reply.json()
        return LedgerEntry(int(raw["submissions"]), str(raw["state"]), bool(raw["applied"]), raw)


# --- the bench -----------------------------------------------------------------------------------


class FaultBench:
    """Simulators plus one daemon at a time, on one journal, with the short timers.

    Args:
        sims: the running simulators.
        workdir: where the journal lives.
    """

    def __init__(self, sims: Simulators, workdir: Path) -> None:
        self.sims = sims
        self.workdir = workdir
        self.backend = SimBackend(sims.backend_url)
        self._daemon: Daemon | None = None
        self._http: httpx.AsyncClient | None = None
        self.backend_url = sims.backend_url

    @property
    def daemon(self) -> Daemon:
        """The running daemon."""
        assert self._daemon is not None, "no daemon running"
        return self._daemon

    @property
    def http(self) -> httpx.AsyncClient:
        """An HTTP client on the running daemon's HTTP door."""
        assert self._http is not None, "no daemon running"
        return self._http

    async def start(self, backend_url: str | None = None) -> None:
        """Start a daemon (on the simulator's backend unless ``backend_url`` says otherwise)."""
        assert self._daemon is None, "a daemon is already running"
        self.backend_url = backend_url or self.sims.backend_url
        settings = fault_settings(self.sims, self.workdir, backend_url=self.backend_url)
        daemon = daemon_for(settings)
        await daemon.start()
        self._daemon = daemon
        base = f"http://{settings.api.host}:{daemon.http_port}"
        self._http = httpx.AsyncClient(base_url=base, timeout=30)
        await self.wait_ready()

    async def stop(self) -> None:
        """Stop the daemon (it finishes what is running first). Safe without one."""
        daemon, self._daemon = self._daemon, None
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
        if daemon is not None:
            await daemon.stop()

    async def restart(self, backend_url: str | None = None) -> None:
        """Stop the daemon and start a new one on the same journal file."""
        await self.stop()
        await self.start(backend_url)

    @contextlib.asynccontextmanager
    async def backend_at(self, url: str) -> AsyncIterator[None]:
        """Run a daemon whose backend is ``url`` for the block, then the simulator's again."""
        await self.restart(url)
        try:
            yield
        finally:
            await self.restart()

    @contextlib.asynccontextmanager
    async def using(self, kind: BackendKind) -> AsyncIterator[None]:
        """Run the block with the daemon's backend at the simulator, a refusing port or a blackhole."""
        if kind == "sim":
            yield
            return
        async with unreachable_backend(kind) as url, self.backend_at(url):
            yield

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until /health says ready (PIN pad connected, recovery done)."""
        async with asyncio.timeout(timeout_s):
            while True:
                if (await self.http.get("/health")).status_code == 200:
                    return
                await asyncio.sleep(0.05)

    async def customer(self, card: str, *, action: str = "pay") -> None:
        """Script the next customer at the simulated PIN pad."""
        order = {"card": card, "action": action}
        reader, writer = await asyncio.open_unix_connection(str(self.sims.control_path))
        try:
            writer.write(jsonio.dumps(order).encode() + b"\n")
            await writer.drain()
            answer = jsonio.loads(await reader.readline())
        finally:
            writer.close()
            await writer.wait_closed()
        assert answer.get("ok"), answer

    async def send(self, action: str, body: dict[str, Any], door: Door = "socket") -> dict[str, Any]:
        """One POS request through ``door``; returns the e-Buy response body."""
        if door == "socket":
            daemon = self.daemon
            envelope = envelope_for(action, body)
            answer = await socket_request(daemon.settings.api.host, daemon.socket_port, envelope, reply_timeout_s=30)
            assert answer.action == action
            return answer.body
        reply = await self.http.post(
            f"/v1/{action}", content=jsonio.dumps(body), headers={"content-type": "application/json"}
        )
        result: dict[str, Any] = jsonio.loads(reply.content)
        return result

    async def view(self, trace_no: str) -> dict[str, Any] | None:
        """``GET /v1/transactions/{traceNo}``, None on 404."""
        reply = await self.http.get(f"/v1/transactions/{trace_no}")
        if reply.status_code == 404:
            return None
        assert reply.status_code == 200, f"GET /v1/transactions/{trace_no}: {reply.status_code} {reply.text}"
        result: dict[str, Any] = jsonio.loads(reply.content)
        return result

    async def settle(self, trace_no: str, timeout_s: float = SETTLE_TIMEOUT_S) -> dict[str, Any]:
        """Wait until ``trace_no`` rests (final or needs_manual) with no pending reversal; its view.

        Raises:
            AssertionError: it did not settle in time (the states seen are in the message).
        """
        seen: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            view = await self.view(trace_no)
            state = None if view is None else str(view["state"])
            if not seen or seen[-1] != state:
                seen.append(str(state))
            if view is not None and state in RESTING_STATES and not _reversal_pending(view):
                return view
            assert loop.time() < deadline, f"{trace_no} did not settle in {timeout_s:g}s; states seen: {seen}"
            await asyncio.sleep(0.05)


def _reversal_pending(view: dict[str, Any]) -> bool:
    reversal = view.get("reversal")
    return isinstance(reversal, dict) and reversal.get("state") == "pending"


@contextlib.asynccontextmanager
async def unreachable_backend(kind: Literal["refused", "blackhole"]) -> AsyncIterator[str]:
    """A backend URL whose connects are refused, or time out (simulators.backend.netfaults)."""
    if kind == "refused":
        yield f"http://127.0.0.1:{refusing_port()}{DEFAULT_PREFIX}"
        return
    async with blackhole_listener() as (host, port):
        yield f"http://{host}:{port}{DEFAULT_PREFIX}"


@contextlib.asynccontextmanager
async def running_fault_bench(workdir: Path) -> AsyncIterator[FaultBench]:
    """Simulators as subprocesses plus a short-timer daemon, for the duration of the block."""
    async with launched_simulators(workdir, pinpad_args=("--timeout-cap", "0.3")) as sims:
        bench = FaultBench(sims, workdir)
        await bench.start()
        try:
            yield bench
        finally:
            await bench.stop()


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


def check(case: Case, outcome: Outcome) -> list[str]:
    """The checker: every way ``outcome`` breaks the rules of ``case`` (empty = all good)."""
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
    if _reversal_pending(outcome.view):
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
        view = await bench.settle(trace_no)
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
        "backend port refuses connections: retried, never sent -> aborted MB30",
        "aborted",
        "MB30",
        submissions=0,
        backend="refused",
        inquiries="none",
    ),
    Case(
        "connect-timeout",
        "backend never answers the SYN: connect times out, never sent -> aborted MB30",
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
