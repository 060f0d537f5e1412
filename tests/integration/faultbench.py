"""The short-timer bench that the backend fault table and the idempotency tests run on.

* :class:`SimBackend`: the backend simulator's test endpoints over HTTP (``/_sim/faults``,
  ``/_sim/ledger/{traceNo}``), so the simulator can run as a subprocess.
* :class:`FaultBench`: simulators plus an in-process daemon with **short timers**
  (:func:`fault_settings`) that can be restarted on the same journal, or pointed at another
  backend URL (connect refused, blackholed).

The fault table itself (its cases and the checker) is in tests/integration/faults.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
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
        """Wait until the pad holds the signed-in key and recovery is done.

        Not /health's 200: a daemon restarted on an unreachable backend is not "ready", yet it
        takes cards (its sign-in from before the restart stands) and that is what a case tests.
        """
        async with asyncio.timeout(timeout_s):
            while True:
                health = (await self.http.get("/health")).json()
                if health["pad"].get("key_ok") and health["backend"]["signed_in"] and not health["recovering"]:
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
            if view is not None and state in RESTING_STATES and not reversal_pending(view):
                return view
            assert loop.time() < deadline, f"{trace_no} did not settle in {timeout_s:g}s; states seen: {seen}"
            await asyncio.sleep(0.05)


def reversal_pending(view: dict[str, Any]) -> bool:
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
