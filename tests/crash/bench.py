"""The crash harness's bench: timers, the daemons' settings, the simulators, the forked daemon, the POS.

Everything here talks with blocking sockets, ``http.client`` and ``sqlite3``: the harness has no
event loop and no threads, so it may ``os.fork()`` a daemon child (:class:`DaemonChild`) that runs
the real :class:`~misbridge.app.daemon.Daemon` with the crash hook armed (tests/crash/harness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

from loguru import logger
from pydantic import SecretStr

from misbridge.api.pos_client import envelope_for
from misbridge.app.daemon import Daemon
from misbridge.app.simulated import Simulators, simulated_settings
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
from tests.crash import checker

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
    sims: Simulators,
    *,
    ports: tuple[int, int],
    journal: Path,
    inquiry_bound_s: float = INQUIRY_BOUND_S,
    options_on: str = "pad",
    root_key_file: Path | None = None,
) -> Settings:
    """The daemon wired to this lane's simulators (misbridge.app.simulated), with short timers so
    an unknown outcome is inquired, voided and settled within a second, on fixed ports.

    With ``root_key_file`` the daemon holds the store's rootKey and provisions a replaced pad
    itself (``keys.replaced_pad = "provision"``), as the provisioning runs of the key points need.

    The POS deadline is a round value the start-up validator accepts above card + PIN +
    2 x grace + backend deadline + inquiry bound (5 + 5 + 2 + 2 + 0.4 = 14.4 s; 17 s with the
    long bound of the inquiry scenarios).
    """
    keys: dict[str, Any] = {"replaced_pad": "provision", "root_key_file": root_key_file} if root_key_file else {}
    return simulated_settings(
        sims, journal,
        device={"card_timeout_s": 5, "pin_timeout_s": 5, "reply_grace_s": 1.0, "command_timeout_s": 2.0},
        backend={"connect_timeout_s": 0.5, "read_timeout_s": READ_TIMEOUT_S, "request_deadline_s": 2.0},
        resolution={"inquiry_interval_s": 0.05, "inquiry_bound_s": inquiry_bound_s,
                    "reversal_backoff_initial_s": 0.05, "reversal_backoff_max_s": 0.2, "drain_before_sale_s": 2.0},
        api={"host": HOST, "socket_port": ports[0], "http_port": ports[1], "socket_read_timeout_s": 0.5,
             "pos_deadline_s": 20.0},
        options={"on": options_on},
        keys=keys,
        log_level="INFO",
    )  # fmt: skip


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


def script_pad(control: Path, script: dict[str, Any]) -> None:
    """Queue one scripted customer step on the PIN-pad simulator's control socket (one JSON line).

    Raises:
        RuntimeError: the simulator refused it.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(control))
        sock.sendall(json.dumps(script).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    if not json.loads(answer or b"{}").get("ok"):
        raise RuntimeError(f"the PIN-pad simulator refused {script}: {answer!r}")


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

    def __init__(self, port: int, body: dict[str, Any], action: str = ACTION, *, device_no: str = "POS01") -> None:
        # The envelope's deviceNo picks the POS lane on a daemon with several (docs/operations.md "Lanes").
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.sendall(frame_message(encode_envelope(envelope_for(action, body, device_no=device_no))))

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
