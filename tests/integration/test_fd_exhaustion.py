"""A flood of idle connections against a real daemon under a low descriptor limit (issue 10, item 2).

The daemon runs as ``python -m misbridge serve`` in a subprocess whose RLIMIT_NOFILE is set in
``preexec_fn`` (what ``ulimit -n`` or systemd's ``LimitNOFILE=`` do), wired to the two bench
simulators. The test process opens the flood against both doors, probes both doors and
``/health`` during it and after it, and measures the daemon's log growth and CPU time.

* ``make test`` runs a scaled flood (limit 256, 300 connections per door);
* ``make soak`` runs the issue's figures (limit 1 024, 1 150 connections per door), once with
  the default caps and once with caps raised above the descriptor limit, so that ``accept()``
  really fails with EMFILE and the quiet handling is what keeps the log small.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from misbridge.api.pos_client import envelope_for, read_framed
from misbridge.app.simulated import Simulators, launched_simulators
from misbridge.ebuy.envelope import encode_envelope, frame_message, parse_envelope

REPO = Path(__file__).resolve().parents[2]
_SERVING = re.compile(r"e-Buy socket ([\d.]+):(\d+), HTTP http://[\d.]+:(\d+)")
#: A request every door answers at once without the backend: an inquiry without traceNo (MB10).
_PROBE = frame_message(encode_envelope(envelope_for("inquiry", {})))
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class RunningDaemon:
    process: asyncio.subprocess.Process
    host: str
    socket_port: int
    http_port: int
    log_path: Path

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


def _config(sims: Simulators, workdir: Path, **api: Any) -> Path:
    api_lines = "\n".join(f"{key} = {value}" for key, value in api.items())
    path = workdir / "misbridge.toml"
    path.write_text(
        'log_level = "INFO"\n'
        f'[device]\nurl = "{sims.device_path}"\n'
        f'[backend]\nurl = "{sims.backend_url}"\n[backend.signing]\nkey_file = "{sims.signing_key_file}"\n'
        f"[api]\nsocket_port = 0\nhttp_port = 0\n{api_lines}\n"
        f'[journal]\npath = "{workdir / "journal.db"}"\n'
    )
    return path


def _limit_descriptors(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@contextlib.asynccontextmanager
async def running_daemon(workdir: Path, fd_limit: int, **api: Any) -> AsyncIterator[RunningDaemon]:
    async with launched_simulators(workdir, pinpad_args=("--timeout-cap", "0.3")) as sims:
        config = _config(sims, workdir, **api)
        log_path = workdir / "daemon.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "misbridge", "serve", "--config", str(config),
                cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_limit_descriptors(fd_limit),
            )  # fmt: skip
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            match = _SERVING.search(line.decode())
            assert match, f"daemon did not start: {line!r}; log: {log_path.read_text()[-2000:]}"
            yield RunningDaemon(process, match[1], int(match[2]), int(match[3]), log_path)
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


@dataclass
class Probe:
    """One request to a door: how long the answer took and what it was."""

    seconds: float
    outcome: str


async def probe_socket(daemon: RunningDaemon, timeout_s: float = 5.0) -> Probe:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(daemon.host, daemon.socket_port)
            try:
                writer.write(_PROBE)
                answer = parse_envelope(await read_framed(reader))
            finally:
                writer.close()
        return Probe(time.monotonic() - started, str(answer.body["returnCode"]))
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as err:
        return Probe(time.monotonic() - started, type(err).__name__)


async def probe_health(daemon: RunningDaemon, timeout_s: float = 5.0) -> Probe:
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            reply = await client.get(f"http://{daemon.host}:{daemon.http_port}/health")
        code = reply.json().get("returnCode", "") if reply.status_code != 200 else ""
        return Probe(time.monotonic() - started, f"{reply.status_code} {code}".strip())
    except (httpx.HTTPError, ValueError) as err:
        return Probe(time.monotonic() - started, type(err).__name__)


async def served_since(start: float, probe: Callable[[], Awaitable[Probe]], served: str) -> Probe:
    """Probe until served (or 5 s passed); the time counts from ``start``, the end of the flood.

    Right after the flood's connections close, the daemon may not have read their resets yet,
    so the first probe can still meet the cap (MB76); what counts is how soon service resumes.
    """
    while True:
        result = await probe()
        if result.outcome == served or time.monotonic() - start > 5:
            return Probe(time.monotonic() - start, result.outcome)
        await asyncio.sleep(0.02)


@dataclass
class Flood:
    """Idle connections held open against both doors."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    refused_at_once: int = 0
    failed: int = 0

    async def open(self, host: str, ports: tuple[int, ...], per_door: int) -> None:
        gate = asyncio.Semaphore(200)

        async def one(port: int) -> None:
            async with gate:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
                except (TimeoutError, OSError):
                    self.failed += 1
                    return
                self.writers.append(writer)
                # A refused connection is answered and closed at once; an admitted one stays silent.
                with contextlib.suppress(TimeoutError, OSError):
                    if await asyncio.wait_for(reader.read(1), 0.05):
                        self.refused_at_once += 1

        await asyncio.gather(*(one(port) for port in ports for _ in range(per_door)))

    def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()


@dataclass
class FloodReport:
    fd_limit: int
    per_door: int
    refused_at_once: int
    connect_failures: int
    daemon_fds_during: int
    during: dict[str, Probe]
    after: dict[str, Probe]
    log_growth_bytes: int
    cpu_share: float
    tracebacks: int

    def summary(self) -> str:
        def show(probes: dict[str, Probe]) -> str:
            return ", ".join(f"{door} {p.outcome} in {p.seconds * 1000:.0f} ms" for door, p in probes.items())

        return (
            f"limit {self.fd_limit}, {self.per_door} per door: refused at once {self.refused_at_once}, "
            f"connect failures {self.connect_failures}, daemon fds {self.daemon_fds_during}; during: "
            f"{show(self.during)}; after: {show(self.after)}; log +{self.log_growth_bytes} B, "
            f"CPU {self.cpu_share:.0%} of a core, {self.tracebacks} tracebacks"
        )


async def run_flood(workdir: Path, *, fd_limit: int, per_door: int, hold_s: float, **api: Any) -> FloodReport:
    async with running_daemon(workdir, fd_limit, **api) as daemon:
        assert (await probe_socket(daemon)).outcome == "MB10"
        assert (await probe_health(daemon)).outcome == "200"
        log_before = daemon.log_path.stat().st_size
        cpu_before, wall_before = daemon.cpu_seconds(), time.monotonic()
        flood = Flood()
        try:
            await flood.open(daemon.host, (daemon.socket_port, daemon.http_port), per_door)
            fds_during = daemon.open_fds()
            during = {"socket": await probe_socket(daemon), "health": await probe_health(daemon)}
            await asyncio.sleep(hold_s)
        finally:
            flood.close()
        flood_ended = time.monotonic()
        after = {
            "socket": await served_since(flood_ended, lambda: probe_socket(daemon), "MB10"),
            "health": await served_since(flood_ended, lambda: probe_health(daemon), "200"),
        }
        cpu_share = (daemon.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
        log_text = daemon.log_path.read_text(errors="replace")
        return FloodReport(
            fd_limit, per_door, flood.refused_at_once, flood.failed, fds_during, during, after,
            daemon.log_path.stat().st_size - log_before, cpu_share, log_text.count("Traceback"),
        )  # fmt: skip


def _assert_recovered(report: FloodReport, within_s: float = 1.0) -> None:
    sys.stderr.write(report.summary() + "\n")  # the figures for docs/reliability.md (shown with -s)
    assert report.after["socket"].outcome == "MB10", report.summary()
    assert report.after["health"].outcome == "200", report.summary()
    assert all(probe.seconds < within_s for probe in report.after.values()), report.summary()
    assert report.log_growth_bytes < 1_000_000, report.summary()
    assert report.tracebacks == 0, report.summary()


async def test_a_scaled_flood_leaves_both_doors_answering(tmp_path: Path) -> None:
    report = await run_flood(tmp_path, fd_limit=256, per_door=300, hold_s=1.0)
    _assert_recovered(report)
    # The caps answered the excess (MB76) and closed it instead of letting it pile up: the
    # daemon holds 2 x 16 flood connections (one uid) besides its own ~30 descriptors.
    assert report.refused_at_once > 0
    assert report.daemon_fds_during < 128
    assert report.cpu_share < 0.9


async def test_a_scaled_flood_past_the_descriptor_limit_logs_one_line_not_tracebacks(tmp_path: Path) -> None:
    # Caps above what the descriptor limit allows: accept() fails with EMFILE.
    report = await run_flood(
        tmp_path, fd_limit=256, per_door=300, hold_s=2.0, max_connections=250, max_connections_per_user=250
    )
    log_text = (tmp_path / "daemon.log").read_text(errors="replace")
    assert "EMFILE" in log_text, "the flood did not exhaust the descriptors; the test proves nothing"
    # accept() stays paused for asyncio's 1 s after its last EMFILE, then the stale backlog drains.
    _assert_recovered(report, within_s=3.0)
    # CPython 3.11 retried accept() up to `backlog` times per wake-up (uvicorn: 2 048): a third
    # of a core went into EMFILE retries until the doors asked for a few per wake-up.
    assert report.cpu_share < 0.2, report.summary()


@pytest.mark.soak
async def test_the_issue_flood_under_ulimit_1024(tmp_path: Path) -> None:
    report = await run_flood(tmp_path, fd_limit=1024, per_door=1150, hold_s=10.0)
    _assert_recovered(report)
    assert report.cpu_share < 0.8


@pytest.mark.soak
@pytest.mark.timeout(300)
async def test_the_issue_flood_under_ulimit_1024_with_caps_above_the_limit(tmp_path: Path) -> None:
    report = await run_flood(
        tmp_path, fd_limit=1024, per_door=1150, hold_s=100.0, max_connections=900, max_connections_per_user=900
    )
    assert "EMFILE" in (tmp_path / "daemon.log").read_text(errors="replace")
    _assert_recovered(report, within_s=3.0)
    assert report.cpu_share < 0.8
