"""Crash-point harness: kill misbridge at every named durable step, restart it, check nothing is lost.

Run it as a program (pytest runs it in a subprocess, tests/crash/test_crash_points.py)::

    python -m tests.crash.harness --points all --runs 20 [--seed S] [--jobs 4] [--json FILE]

It prints ``point | runs | reached | lost | doubled | stuck | answer | integrity | verdict`` and
exits 1 on any violation or on any run whose crash point was not reached.

How a run goes (docs/reliability.md, "Crash points"):

1. The harness process imports misbridge once and starts the backend simulator and the pty PIN-pad
   simulator once (per lane), as subprocesses. It has no event loop and no threads, so it can
   ``os.fork()``.
2. For each run it scripts the backend faults the point needs (tests/crash/scenarios.py), forks a
   daemon child with ``MISBRIDGE_TEST_HOOKS=1 MISBRIDGE_CRASH_AT=<point>[:<nth>]`` that runs the real
   :class:`~misbridge.app.daemon.Daemon` on fixed ports against a journal file shared by all runs, and
   sends it one ``cardRedemption`` over the e-Buy socket door (for the QR points a ``qrcodeSale``; for
   the follow-up points an approved ``qrcodeSale`` first, then the void or refund of it:
   tests/crash/flows.py). Exit status 137 means the point was reached. (Recovery points first crash a
   daemon at a *prep* point, then one inside recovery.)
3. It clears the faults, forks a clean daemon, waits for ``/health`` 200 and the daemon's
   "misbridge ready:" log line (recovery done and the reversal worker running, see
   :meth:`Lane._ready`), repeats the same POS request (same traceNo, same body), waits until the
   transaction is final with no reversal pending, and stops the daemon with SIGTERM (it must
   exit 0).
4. The checker (tests/crash/checker.py) compares the journal (read-only), the simulator's ledger
   and the POS answers; at the end each lane sweeps its whole journal.

``--jobs N`` runs N lanes in parallel. A lane is a forked worker with its own bench (both
simulators, two ports, a journal) that runs its share of the runs; lanes share nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

from loguru import logger
from pydantic import SecretStr

from misbridge.api.pos_client import envelope_for
from misbridge.app.daemon import Daemon, load_signing_key
from misbridge.config.settings import Settings
from misbridge.ebuy import jsonio
from misbridge.ebuy.envelope import (
    LENGTH_PREFIX_LEN,
    encode_envelope,
    frame_message,
    parse_envelope,
    read_length_prefix,
)
from misbridge.host import crashpoints
from misbridge.telemetry.logs import configure_logging
from tests.crash import checker, scenarios
from tests.crash.flows import Flow, Request
from tests.crash.scenarios import Stage, plan_for, uncovered_points

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
ACTION = "cardRedemption"
#: Exit status of a daemon that died at its crash point (misbridge.host.crashpoints.EXIT_CODE).
CRASHED = crashpoints.EXIT_CODE

#: Seconds to wait for a simulator's ready line.
SIM_START_S = 15.0
#: Seconds a daemon may take to answer /health 200 (start-up, PIN-pad link, recovery).
HEALTHY_S = 15.0
#: Seconds to wait for the POS answer (or for the crash that ends the connection).
ANSWER_S = 20.0
#: Seconds a crashing daemon may live on after the POS answer or EOF (voids run after the answer).
CRASH_AFTER_ANSWER_S = 5.0
#: Seconds a recovery-only stage may take to crash.
RECOVERY_CRASH_S = 15.0
#: Seconds for the transaction to become final with no reversal pending, after the repeat.
SETTLE_S = 10.0
#: Seconds a daemon may take to stop after SIGTERM.
STOP_S = 10.0
#: Seconds to wait for the journal state that triggers a scripted SIGTERM.
SIGTERM_STATE_S = 5.0
POLL_S = 0.005
#: The daemons' backend read timeout: a sale's reply must come within it, even on a loaded machine
#: (points such as submit.after_reply are only reached with a reply); scenarios.LATE_S exceeds it.
READ_TIMEOUT_S = 1.0
#: How long an outcome stays unknown before misbridge voids it: short, so void scenarios are quick.
INQUIRY_BOUND_S = 0.4
#: Lanes by default: a run mostly waits (timers, uvicorn's shutdown pause), so 4 lanes keep 2 cores busy.
DEFAULT_JOBS = 4
#: What Daemon.start() logs once recovery is done and the reversal worker runs.
READY_LINE = "misbridge ready:"
#: Modules a daemon imports lazily (httpx's transport, uvicorn's protocol, pyserial): imported once
#: here, before any fork, instead of once per forked daemon (~90 ms of CPU each).
PREWARM = (
    "anyio._backends._asyncio",
    "certifi",
    "encodings.idna",
    "h11",
    "httpcore",
    "serial",
    "serial_asyncio_fast",
    "misbridge.transport.serial",
    "uvicorn.lifespan.off",
    "uvicorn.protocols.http.h11_impl",
)


# --- configuration ---------------------------------------------------------------------------------


def daemon_settings(
    *,
    device: Path,
    backend_url: str,
    key_file: Path,
    ports: tuple[int, int],
    journal: Path,
    inquiry_bound_s: float = INQUIRY_BOUND_S,
) -> Settings:
    """Short timers so an unknown outcome is inquired, voided and settled within a second.

    The POS deadline is a round value the start-up validator accepts above card + PIN +
    2 x grace + backend deadline + inquiry bound (5 + 5 + 2 + 2 + 0.4 = 14.4 s; 17 s with the
    long bound of the inquiry scenarios).
    """
    return Settings(
        device={
            "url": str(device),
            "card_timeout_s": 5,
            "pin_timeout_s": 5,
            "reply_grace_s": 1.0,
            "command_timeout_s": 2.0,
        },
        backend={
            "url": backend_url,
            "connect_timeout_s": 0.5,
            "read_timeout_s": READ_TIMEOUT_S,
            "request_deadline_s": 2.0,
            "signing": {"key_file": key_file},
        },
        resolution={
            "inquiry_interval_s": 0.05,
            "inquiry_bound_s": inquiry_bound_s,
            "reversal_backoff_initial_s": 0.05,
            "reversal_backoff_max_s": 0.2,
            "drain_before_sale_s": 2.0,
        },
        api={
            "host": HOST,
            "socket_port": ports[0],
            "http_port": ports[1],
            "socket_read_timeout_s": 0.5,
            "pos_deadline_s": 20.0,
        },
        journal={"path": journal},
        log_level="INFO",
    )


def free_port() -> int:
    """A TCP port nothing listens on right now (the daemons bind it with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- simulators ----------------------------------------------------------------------------------------


class SimProcess:
    """One simulator subprocess whose stdout goes to a file; its first line says where it listens."""

    def __init__(self, args: Sequence[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "simulators", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip

    def ready_line(self) -> str:
        """The first line the simulator printed.

        Raises:
            RuntimeError: it exited or printed nothing within SIM_START_S.
        """
        deadline = time.monotonic() + SIM_START_S
        while time.monotonic() < deadline:
            text = self.log.read_text(encoding="utf-8", errors="replace")
            if "\n" in text:
                return text.split("\n", 1)[0].strip()
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"simulator did not start; see {self.log}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Backend:
    """The backend simulator's test endpoints, over blocking http.client."""

    def __init__(self, url: str) -> None:
        self.url = url
        rest = url.split("://", 1)[1]
        hostport = rest.split("/", 1)[0]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            payload = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, jsonio.loads(data) if data else None

    def add_faults(self, faults: Sequence[dict[str, Any]]) -> None:
        """Queue faults (``POST /_sim/faults``).

        Raises:
            RuntimeError: the simulator refused them.
        """
        if not faults:
            return
        status, answer = self._call("POST", "/_sim/faults", list(faults))
        if status != 200:
            raise RuntimeError(f"POST /_sim/faults {faults} -> {status} {answer}")

    def clear_faults(self) -> None:
        """``DELETE /_sim/faults``."""
        self._call("DELETE", "/_sim/faults")

    def ledger(self, trace_no: str) -> checker.LedgerEntry:
        """``GET /_sim/ledger/{traceNo}`` (404: never seen).

        Raises:
            RuntimeError: any other status.
        """
        status, record = self._call("GET", f"/_sim/ledger/{trace_no}")
        if status == 404:
            return checker.LedgerEntry.from_json(None)
        if status != 200 or not isinstance(record, dict):
            raise RuntimeError(f"GET /_sim/ledger/{trace_no} -> {status} {record}")
        return checker.LedgerEntry.from_json(record)


# --- the daemon child ------------------------------------------------------------------------------


async def _serve(settings: Settings, key: SecretStr | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    daemon = Daemon(settings, signing_key=key)
    try:
        await daemon.start()
        await stop.wait()
        logger.info("crash harness: SIGTERM, stopping")
    finally:
        await daemon.stop()
    return 0


def prewarm() -> None:
    """Import :data:`PREWARM` (missing ones are skipped: they only save time)."""
    for name in PREWARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _child_main(settings: Settings, key: SecretStr | None, crash_at: str | None, log: Path) -> NoReturn:
    """The forked daemon: logs to ``log``, crash hook armed for ``crash_at``; never returns."""
    code = 70
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        # The backend is plain http://, but BackendClient builds a TLS context anyway, and loading
        # the system's CA store costs ~50 ms of CPU per daemon. An empty CA file makes it free.
        os.environ["SSL_CERT_FILE"] = os.devnull
        os.environ["SSL_CERT_DIR"] = os.devnull
        os.environ.pop(crashpoints.ENV_POINT, None)
        os.environ.pop(crashpoints.ENV_ENABLE, None)
        if crash_at:
            os.environ[crashpoints.ENV_ENABLE] = "1"
            os.environ[crashpoints.ENV_POINT] = crash_at
        # misbridge was imported before the fork: re-read the hook's environment. reload() runs
        # the module again in the same namespace, so every `from ... import crash_point` sees it.
        importlib.reload(crashpoints)
        configure_logging(settings.log_level, stream=sys.stderr)
        logger.info("crash harness: daemon pid {} crash_at={}", os.getpid(), crash_at or "-")
        code = asyncio.run(_serve(settings, key))
    except BaseException:  # noqa: BLE001 - the child reports everything, then leaves via os._exit
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class DaemonChild:
    """A forked daemon and its exit status."""

    def __init__(self, settings: Settings, key: SecretStr | None, crash_at: str | None, log: Path) -> None:
        if threading.active_count() != 1:
            raise RuntimeError("the harness must not run threads when it forks")
        sys.stdout.flush()
        sys.stderr.flush()
        self.log = log
        self.log_offset = log.stat().st_size if log.exists() else 0
        pid = os.fork()
        if pid == 0:
            _child_main(settings, key, crash_at, log)
        self.pid = pid
        self.crash_at = crash_at
        self.status: int | None = None

    def logged(self, text: str) -> bool:
        """True once this daemon (not an earlier one writing the same file) has logged ``text``."""
        with self.log.open("rb") as stream:
            stream.seek(self.log_offset)
            return text.encode() in stream.read()

    def poll(self) -> int | None:
        """The exit code once it exited (negative: killed by that signal), else None."""
        if self.status is None:
            pid, raw = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = os.waitstatus_to_exitcode(raw)
        return self.status

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the exit code."""
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        return self.status

    def signal(self, signum: int) -> None:
        """Send ``signum`` unless it already exited."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def stop(self, timeout: float = STOP_S) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time (the status then says -9)."""
        self.signal(signal.SIGTERM)
        if self.wait(timeout) is None:
            self.signal(signal.SIGKILL)
            self.wait(5)
        return self.status


# --- the POS ---------------------------------------------------------------------------------------


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class PosCall:
    """One POS request on the e-Buy socket door (blocking socket, 2-byte length + envelope)."""

    def __init__(self, port: int, body: dict[str, Any], action: str = ACTION) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.sendall(frame_message(encode_envelope(envelope_for(action, body))))

    def answer(self, timeout: float) -> dict[str, Any] | None:
        """The answer body, or None when the connection ended (or stayed silent) without one."""
        try:
            self.sock.settimeout(timeout)
            prefix = _recv_exactly(self.sock, LENGTH_PREFIX_LEN)
            payload = _recv_exactly(self.sock, read_length_prefix(prefix)) if prefix else None
        except OSError:
            return None
        finally:
            self.sock.close()
        return parse_envelope(payload).body if payload else None


def pos_body(trace_no: str, rng: random.Random) -> dict[str, Any]:
    """A one-line cardRedemption for a random amount."""
    amount = Decimal(rng.randint(100, 9_999)) / 100
    return {
        "traceNo": trace_no,
        "totalAmount": amount,
        "undiscountAmount": Decimal(0),
        "goodsDetail": [
            {
                "goodsCategory": "001",
                "goodsId": "P00001",
                "goodsName": "crash harness",
                "price": amount,
                "quantity": 1,
                "rebateCode": "000",
            }
        ],
    }


# --- one lane: a pad, two ports, a journal --------------------------------------------------------------


@dataclass
class RunResult:
    """Everything one run observed, and the checker's verdict."""

    point: str
    index: int
    trace_no: str
    variant: str
    crash_at: list[str]
    exits: list[int | None]
    reached: bool
    state: str | None = None
    reversal: str | None = None
    ledger: str = ""
    submissions: int = 0
    transitions: list[str] = field(default_factory=list)
    first_answer: str | None = None
    repeated_answer: str | None = None
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    #: Why the scenario did not happen as planned (the run then counts as not reached).
    setup: list[str] = field(default_factory=list)
    #: Times /health answered 200 before the daemon had logged the end of its start-up.
    early_health: int = 0
    seconds: float = 0.0
    log: str = ""

    @property
    def ok(self) -> bool:
        """Reached and no violation."""
        return self.reached and not (self.lost or self.doubled or self.stuck or self.answer or self.integrity)


class Lane:
    """Runs crash runs one after the other on its own bench: backend and PIN-pad simulators, ports, journal.

    Lanes share nothing. Each journal numbers the traceNos misbridge originates (inquiry, void)
    from its own serial, so two daemons against one backend simulator would send the same
    inquiry traceNo and see "94 duplicate"; and one lane's ``DELETE /_sim/faults`` would wipe
    the other's script.
    """

    def __init__(self, name: str, workdir: Path, seed: str) -> None:
        self.name = name
        self.workdir = workdir
        self.seed = seed
        self.logs = workdir / "runs"
        self.logs.mkdir(parents=True, exist_ok=True)
        key_file = workdir / "signing.key"
        key_file.write_text(secrets.token_hex(16), encoding="utf-8")
        key_file.chmod(0o600)
        self.backend_sim = SimProcess(["backend", "--port", "0", "--key-file", str(key_file)], workdir / "backend.log")
        link = workdir / "pinpad"
        self.pad = SimProcess(
            ["pinpad", "--link", str(link), "--control", str(workdir / "pinpad.ctl")], workdir / "pinpad.log"
        )
        try:
            self.backend = Backend(self.backend_sim.ready_line().split()[-1])
            self.pad.ready_line()
        except BaseException:
            self.close()
            raise
        ports = (free_port(), free_port())

        def settings(inquiry_bound_s: float) -> Settings:
            return daemon_settings(
                device=link,
                backend_url=self.backend.url,
                key_file=key_file,
                ports=ports,
                journal=workdir / "journal.db",
                inquiry_bound_s=inquiry_bound_s,
            )

        self.settings = settings(INQUIRY_BOUND_S)
        # Inquiry scenarios crash at the 1st or 2nd inquiry; a long bound keeps a slow machine
        # from giving up (and voiding) before the 2nd one.
        self.slow_settings = settings(scenarios.LONG_INQUIRY_BOUND_S)
        self.key = load_signing_key(self.settings)
        self.journal = Path(self.settings.journal.path)

    def close(self) -> None:
        """Stop both simulators."""
        self.pad.stop()
        self.backend_sim.stop()

    # -- helpers ---------------------------------------------------------------------------------

    def _fork(self, crash_at: str | None, log: Path, *, long_bound: bool = False) -> DaemonChild:
        return DaemonChild(self.slow_settings if long_bound else self.settings, self.key, crash_at, log)

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
        try:
            for number, stage in enumerate(plan.stages):
                original = plan.flow.original if plan.flow and number == 0 else None
                answer = self._crash_stage(
                    stage, trace_no, request, log.with_name(f"{log.name}.{number}.log"), result, original
                )
                first_answer = first_answer or answer
            result.reached = all(code == CRASHED for code in result.exits) and not result.setup
        finally:
            self.backend.clear_faults()
        repeated = self._clean_stage(trace_no, request, log.with_name(f"{log.name}.clean.log"), result)
        self._check(result, first_answer, repeated, plan.flow)
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _crash_stage(
        self,
        stage: Stage,
        trace_no: str,
        request: Request,
        log: Path,
        result: RunResult,
        original: Request | None = None,
    ) -> dict[str, Any] | None:
        child = self._fork(stage.crash_at, log, long_bound=stage.long_inquiry_bound)
        answer: dict[str, Any] | None = None
        if not stage.sends_request:
            status = child.wait(RECOVERY_CRASH_S)
        elif not self._ready(child, result) or not self._original(original, result):
            status = child.poll()
        else:
            # Scripted once a follow-up's original is made: they are bound to the run's traceNo,
            # which none of the original's requests carries.
            self.backend.add_faults([fault.request(trace_no) for fault in stage.faults])
            call = PosCall(self.settings.api.socket_port, request.body, request.action)
            if stage.sigterm_at_state is not None:
                if not self._wait_state(trace_no, stage.sigterm_at_state, child, SIGTERM_STATE_S):
                    result.setup.append(f"SIGTERM sent without seeing the transaction {stage.sigterm_at_state}")
                child.signal(signal.SIGTERM)
            answer = call.answer(ANSWER_S)
            status = child.wait(CRASH_AFTER_ANSWER_S)
        if status is None:  # the point was not reached: stop this daemon and go on
            child.stop()
        result.exits.append(status)
        return answer

    def _original(self, original: Request | None, result: RunResult) -> bool:
        """Make a follow-up's original (an approved QR sale) on the crashing daemon; False if it was not approved."""
        if original is None:
            return True
        answer = PosCall(self.settings.api.socket_port, original.body, original.action).answer(ANSWER_S)
        if _code(answer) != checker.APPROVED_CODE:
            result.setup.append(f"the original {original.action} was answered {_code(answer)}, not 00")
            return False
        return True

    def _clean_stage(self, trace_no: str, request: Request, log: Path, result: RunResult) -> dict[str, Any] | None:
        child = self._fork(None, log)
        repeated: dict[str, Any] | None = None
        try:
            if not self._ready(child, result):
                result.stuck.append(f"the clean daemon did not become healthy (exit {child.poll()})")
                return None
            repeated = PosCall(self.settings.api.socket_port, request.body, request.action).answer(ANSWER_S)
            self._wait_settled(trace_no, SETTLE_S)
        finally:
            status = child.stop()
            result.exits.append(status)
            if status != 0:
                result.stuck.append(f"the clean daemon exited {status} after SIGTERM")
        return repeated

    def _check(
        self, result: RunResult, first: dict[str, Any] | None, repeated: dict[str, Any] | None, flow: Flow | None
    ) -> None:
        view = checker.read_journal(self.journal, result.trace_no)
        sale = self.backend.ledger(result.trace_no)
        calls = {no: self.backend.ledger(no) for no, _ in view.calls}
        moves_by = {"void": ("void",), "refund": ()}.get(flow.kind, ("option",)) if flow else ("option",)
        codes = checker.VOID_APPROVED_CODES if flow and flow.kind == "void" else (checker.APPROVED_CODE,)
        verdict = checker.check_run(
            view, sale, calls, repeated_answer=repeated, first_answer=first, moves_by=moves_by, approved_codes=codes
        )
        if flow is not None and flow.original is not None:
            self._check_original(verdict, view, flow)
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


# --- lanes in parallel -------------------------------------------------------------------------------


def _lane_worker(lane_dir: Path, seed: str, tasks: list[tuple[str, int]], out: Path, progress: bool) -> NoReturn:
    code = 1
    try:
        lane = Lane(lane_dir.name, lane_dir, seed)
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
        leftovers = checker.sweep(lane.journal)
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
    points: Sequence[str], runs: int, *, seed: str, jobs: int, workdir: Path, progress: bool
) -> tuple[list[RunResult], list[str]]:
    """Run ``runs`` crash runs for each point on ``jobs`` lanes; returns the results and lane errors."""
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
            _lane_worker(lane_dir, seed, tasks[lane_no::jobs], out, progress)
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


# --- the table ----------------------------------------------------------------------------------------

COLUMNS = ("point", "runs", "reached", "lost", "doubled", "stuck", "answer", "integrity", "verdict")


@dataclass
class Row:
    """One line of the table."""

    point: str
    runs: int = 0
    reached: int = 0
    lost: int = 0
    doubled: int = 0
    stuck: int = 0
    answer: int = 0
    integrity: int = 0

    @property
    def verdict(self) -> str:
        """ok, or what failed."""
        bad = self.lost + self.doubled + self.stuck + self.answer + self.integrity
        if self.runs == 0:
            return "NOT RUN"
        if bad:
            return "FAIL"
        return "ok" if self.reached == self.runs else "UNREACHED"


def summarize(points: Sequence[str], results: Sequence[RunResult]) -> list[Row]:
    """One row per point, in the order given."""
    rows = {point: Row(point) for point in points}
    for result in results:
        row = rows[result.point]
        row.runs += 1
        row.reached += result.reached
        for column in ("lost", "doubled", "stuck", "answer", "integrity"):
            setattr(row, column, getattr(row, column) + bool(getattr(result, column)))
    return list(rows.values())


def render(rows: Sequence[Row]) -> str:
    """The table as Markdown (what docs/reliability.md pastes)."""
    lines = [[row.point, *(str(getattr(row, c)) for c in COLUMNS[1:-1]), row.verdict] for row in rows]
    total = Row("total")
    for row in rows:
        for column in COLUMNS[1:-1]:
            setattr(total, column, getattr(total, column) + getattr(row, column))
    lines.append([f"**{total.point}**", *(str(getattr(total, c)) for c in COLUMNS[1:-1]), total.verdict])
    widths = [max(len(COLUMNS[i]), *(len(line[i]) for line in lines)) for i in range(len(COLUMNS))]

    def fmt(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + " |"

    out = [fmt(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines]
    return "\n".join(out)


def failures(results: Sequence[RunResult]) -> Iterator[str]:
    """One paragraph per failed run: what happened and why it failed."""
    for r in results:
        if r.ok:
            continue
        problems = [
            f"{name}: {text}"
            for name in ("lost", "doubled", "stuck", "answer", "integrity")
            for text in getattr(r, name)
        ]
        if not r.reached:
            problems[:0] = [f"not reached (exit statuses {r.exits})", *r.setup]
        yield (
            f"{r.point} run {r.index} traceNo {r.trace_no} [{r.variant}] crash_at={r.crash_at}\n"
            f"  state {r.state}, reversal {r.reversal}, ledger {r.ledger} x{r.submissions}, "
            f"first answer {r.first_answer}, repeated answer {r.repeated_answer}\n"
            f"  transitions: {'; '.join(r.transitions) or '-'}\n"
            + "".join(f"  {p}\n" for p in problems)
            + f"  log: {r.log}"
        )


# --- command line ----------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.crash.harness", description=__doc__.split("\n")[0])
    parser.add_argument("--points", default="all", help="'all' or a comma-separated list of crash points")
    parser.add_argument("--runs", type=int, default=20, help="runs per point (default 20)")
    parser.add_argument("--seed", default=None, help="seed for the scenario variants (default: random)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"parallel lanes, each with its own simulators and journal (default {DEFAULT_JOBS})",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every run's result to this file")
    parser.add_argument("--workdir", type=Path, default=None, help="keep journals and logs here (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--quiet", action="store_true", help="no progress dots")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the harness; 0 when every point was reached in every run with no violation."""
    args = _parse(argv)
    missing = uncovered_points()
    if missing:
        sys.stderr.write(f"no crash scenario for: {', '.join(missing)}\n")
        return 2
    points = list(crashpoints.POINTS) if args.points == "all" else [p.strip() for p in args.points.split(",") if p]
    unknown = [p for p in points if p not in crashpoints.POINTS]
    if unknown or args.runs < 1 or args.jobs < 1:
        sys.stderr.write(f"unknown points: {', '.join(unknown)}\n" if unknown else "--runs and --jobs must be >= 1\n")
        return 2
    seed = args.seed if args.seed is not None else secrets.token_hex(4)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="misbridge-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sys.stdout.write(
        f"crash harness: {len(points)} points x {args.runs} runs, seed {seed}, {args.jobs} lane(s), workdir {workdir}\n"
    )
    started = time.monotonic()
    results, errors = run_all(points, args.runs, seed=seed, jobs=args.jobs, workdir=workdir, progress=not args.quiet)
    wall = time.monotonic() - started
    rows = summarize(points, results)
    sys.stdout.write(render(rows) + "\n")
    sys.stdout.write(
        f"{len(results)} runs in {wall:.1f} s ({wall / max(len(results), 1) * 1000:.0f} ms per run, "
        f"{args.jobs} lane(s)), seed {seed}\n"
    )
    early = [r for r in results if r.early_health]
    if early:
        sys.stdout.write(
            f"note: in {len(early)} run(s) /health answered 200 before the daemon had logged its ready line "
            "(recovery was done: /health is 503 while recovering); the harness waited for the line\n"
        )
    for paragraph in failures(results):
        sys.stdout.write(paragraph + "\n")
    for error in errors:
        sys.stdout.write(f"harness error: {error}\n")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "seed": seed,
                    "points": points,
                    "runs": args.runs,
                    "jobs": args.jobs,
                    "wall_s": round(wall, 1),
                    "errors": errors,
                    "rows": [{**asdict(row), "verdict": row.verdict} for row in rows],
                    "results": [asdict(result) for result in results],
                },
                indent=1,
            ),
            encoding="utf-8",
        )
    passed = not errors and all(row.verdict == "ok" for row in rows)
    if passed and args.workdir is None and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not passed:
        sys.stdout.write(f"logs and journals kept in {workdir}\n")
    sys.stdout.flush()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
