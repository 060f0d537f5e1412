"""Shared bench plumbing: result rows, percentiles, /proc readings, fsync timing, processes.

Every bench script measures, prints its own rows and, with ``--json PATH``, writes them for
``bench/run_all.py``, which prints the one combined table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx

from bench.tls import write_test_pki
from misbridge.app.simulated import launched_backend, launched_simulators, simulated_lanes, write_signing_key
from misbridge.ebuy import jsonio
from misbridge.journal.records import iso_utc, request_hash

#: 8N1: a start bit, 8 data bits and a stop bit per byte.
BITS_PER_BYTE = 10
READY_TIMEOUT_S = 20.0
HEALTH_POLL_S = 0.005


@dataclass(frozen=True)
class Row:
    """One line of the table: what, the goal, what was measured, ratio or verdict, a note."""

    name: str
    goal: str
    measured: str
    verdict: str
    note: str = ""


def verdict(ok: bool | None, ratio: str = "") -> str:
    """``ratio`` followed by PASS / MISS (or ``info`` when there is no goal)."""
    word = "info" if ok is None else ("PASS" if ok else "MISS")
    return f"{ratio} {word}".strip()


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table with a column for each field; notes go under the table, numbered."""
    head = ("measure", "goal", "measured", "ratio / verdict")
    cells = [head] + [
        (r.name, r.goal, r.measured, r.verdict + (f" [{i}]" if r.note else "")) for i, r in enumerate(rows, 1)
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = [" | ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    notes = [f"[{i}] {r.note}" for i, r in enumerate(rows, 1) if r.note]
    return "\n".join([*lines, "", *notes] if notes else lines)


def bench_args(description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``--json`` option."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    return parser


def emit(rows: Sequence[Row], json_path: Path | None) -> None:
    """Print the rows as a table; write them as JSON too when asked."""
    print(format_table(rows), flush=True)
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(r) for r in rows], ensure_ascii=False), encoding="utf-8")


def load_rows(path: Path) -> list[Row]:
    """Rows written by :func:`emit`."""
    return [Row(**item) for item in json.loads(path.read_text(encoding="utf-8"))]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    """Seconds as milliseconds with a sensible number of digits."""
    value = seconds * 1000
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process so far (``/proc/<pid>/stat`` utime, stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks  # fields 14 and 15 of proc(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    return sum(cpu_split(pid))


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent not idle since boot (first line of ``/proc/stat``).

    The difference over a run against its wall time x nproc tells whether the machine was
    saturated (every process: the daemon, the simulators, the bench itself and anything else).
    """
    fields = [int(value) for value in Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _status_mb(pid: int, field_name: str) -> float:
    """One ``kB`` field of ``/proc/<pid>/status`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name} for pid {pid}")


def rss_mb(pid: int) -> float:
    """Resident set size of one process in MiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    return _status_mb(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float:
    """The highest resident set size of one process so far, in MiB (``VmHWM`` of ``/proc/<pid>/status``)."""
    return _status_mb(pid, "VmHWM")


def fsync_times(directory: Path, count: int = 200) -> list[float]:
    """Seconds per ``write(64 bytes) + fsync`` on a file in ``directory`` (same disk as the journal)."""
    path = directory / "fsync-probe.bin"
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, b"x" * 64)
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return times


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def machine_facts() -> dict[str, str]:
    """nproc, CPU model, Python version: what docs/performance.md records."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": sys.version.split()[0]}


# -- journals ----------------------------------------------------------------------------------

#: What every seeded sale was paid (the answer's paidAmount): the figure batchUpload carries.
SEEDED_PAID = Decimal("1")


def insert_approved_sales(path: Path, count: int, at: datetime) -> list[str]:
    """``count`` approved card redemptions created ``at`` in the journal ``path``; their traceNos.

    Raw SQL in one transaction: the journal's own writes (6 commits with fsync per sale) would
    take minutes for a 12 000-sale day, and what a reconcile bench or test measures is the
    upload and the report, not how the rows got there. Each paid :data:`SEEDED_PAID`.
    """
    created = iso_utc(at)
    rows = []
    for index in range(count):
        trace_no = f"bulk{index:06d}"
        request = jsonio.dumps({"traceNo": trace_no, "totalAmount": Decimal(index % 100) + Decimal("0.99")})
        answer = jsonio.dumps(
            {"traceNo": trace_no, "orderNo": f"O{index}", "returnCode": "00", "paidAmount": SEEDED_PAID}
        )
        rows.append((trace_no, request, request_hash(jsonio.loads(request)), answer, created, created))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, response_json,"
            " return_code, created_at, updated_at) VALUES (?, 'cardRedemption', 'approved', ?, ?, ?, '00', ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return [row[0] for row in rows]


# -- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sims:
    """Where the simulators listen; ``lanes`` is the ``[[lanes]]`` for their pads (empty for one pad)."""

    device_path: Path
    control_path: Path
    backend_url: str
    key_file: Path
    lanes: tuple[dict[str, object], ...] = ()
    ca_bundle: Path | None = None

    @property
    def backend_extra(self) -> dict[str, dict[str, object]]:
        """The daemon's settings for this backend beyond its URL: the test CA when it serves https."""
        return {} if self.ca_bundle is None else {"backend": {"ca_bundle": str(self.ca_bundle)}}


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


def write_key(workdir: Path) -> Path:
    """A fresh signing key file shared by the backend simulator and the daemon."""
    return write_signing_key(workdir)


@contextlib.asynccontextmanager
async def backend_simulator(workdir: Path, key_file: Path, ledger_file: Path | None = None) -> AsyncIterator[str]:
    """``python -m simulators backend`` on a free port (on ``ledger_file`` if given); yields its URL.

    Log: ``backend.log``.
    """
    async with launched_backend(workdir, key_file, log=workdir / "backend.log", ledger_file=ledger_file) as url:
        yield url


@contextlib.asynccontextmanager
async def simulators(workdir: Path, *pinpad_args: str, lanes: int = 1, tls: bool = False) -> AsyncIterator[Sims]:
    """Both simulators as subprocesses, zero customer delay; yields where they are.

    ``tls``: the backend simulator serves https with a certificate of a test CA made for this
    run (:mod:`bench.tls`); pass :attr:`Sims.backend_extra` to :func:`daemon_config`.

    Started by misbridge.app.simulated like every simulated bench; each logs to its own file
    (``pinpad.log``, ``backend.log``) so the pad's summary line can be read after it exits.
    ``lanes`` pads run, one per lane (every pad logs to ``pinpad.log``).
    """
    pki = write_test_pki(workdir) if tls else None
    async with launched_simulators(
        workdir,
        pinpad_args=("--card-delay", "0", "--pin-delay", "0", *pinpad_args),
        pad_log=workdir / "pinpad.log",
        backend_log=workdir / "backend.log",
        lanes=lanes,
        backend_args=() if pki is None else ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)),
    ) as sims:
        yield Sims(
            sims.device_path,
            sims.control_path,
            sims.backend_url,
            sims.signing_key_file,
            tuple(simulated_lanes(sims)),
            None if pki is None else pki.ca_cert,
        )


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    sections: dict[str, dict[str, object]],
    log_level: str = "INFO",
    lanes: Sequence[Mapping[str, object]] = (),
) -> Path:
    """A misbridge TOML file from ``{section: {key: value}}`` (dotted sections allowed), then a ``[[lanes]]`` each."""
    lines = [f"log_level = {_toml(log_level)}"]
    for section, keys in sections.items():
        lines.append(f"\n[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in keys.items()]
    for lane in lanes:
        lines.append("\n[[lanes]]")
        lines += [f"{key} = {_toml(value)}" for key, value in lane.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def daemon_config(
    workdir: Path,
    sims_device: Path,
    backend_url: str,
    key_file: Path,
    *,
    name: str = "misbridge",
    extra: dict[str, dict[str, object]] | None = None,
    lanes: Sequence[Mapping[str, object]] = (),
) -> tuple[Path, int, int]:
    """Write a daemon TOML wired to the simulators on fixed free ports: (path, socket port, http port).

    ``lanes``: its ``[[lanes]]`` (:attr:`Sims.lanes` for the simulators' pads); none for one lane.
    """
    socket_port, http_port = free_port(), free_port()
    sections: dict[str, dict[str, object]] = {
        "device": {"url": str(sims_device)},
        "backend": {"url": backend_url},
        "backend.signing": {"key_file": str(key_file)},
        "api": {"socket_port": socket_port, "http_port": http_port},
        "journal": {"path": str(workdir / f"{name}-journal.db")},
    }
    for section, keys in (extra or {}).items():
        sections.setdefault(section, {}).update(keys)
    return write_config(workdir / f"{name}.toml", sections, lanes=lanes), socket_port, http_port


@dataclass
class DaemonProcess:
    """A running ``python -m misbridge serve`` and how long it took to answer /health 200."""

    process: asyncio.subprocess.Process
    socket_port: int
    http_port: int
    ready_s: float

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        return self.process.pid


async def wait_health(http_port: int, process: asyncio.subprocess.Process, started: float) -> float:
    """Poll ``GET /health`` every 5 ms until it answers 200; seconds since ``started``."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=1.0) as client:
        while time.perf_counter() - started < READY_TIMEOUT_S:
            if process.returncode is not None:
                raise RuntimeError(f"misbridge serve exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health")).status_code == 200:
                    return time.perf_counter() - started
            await asyncio.sleep(HEALTH_POLL_S)
    raise RuntimeError("misbridge serve did not become healthy")


@contextlib.asynccontextmanager
async def daemon(
    config: Path,
    socket_port: int,
    http_port: int,
    log: Path,
    *,
    module: str = "misbridge",
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[DaemonProcess]:
    """``python -m misbridge serve --config <config>`` as a real subprocess, healthy on entry.

    ``module``: another entry point taking misbridge's arguments (``bench.counting_daemon``);
    ``env``: variables added to this process's environment for it.
    """
    with log.open("ab") as log_file:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "serve",
            "--config",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=None if env is None else {**os.environ, **env},
        )
    try:
        ready = await wait_health(http_port, proc, started)
        yield DaemonProcess(proc, socket_port, http_port, ready)
    finally:
        await _stop(proc)
