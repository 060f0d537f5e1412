"""Start-up (``misbridge serve`` to ``GET /health`` 200) and idle CPU of the running daemon.

The simulators are started once; then ``python -m misbridge serve --config <toml>`` is started
``--starts`` times (a fresh journal each time), timing from the spawn to the first 200 from
``/health`` (polled every 5 ms, so the figure is up to 5 ms late). "Ready" includes the Python
interpreter start, imports, the journal, the PIN-pad link (DEVICE_INFO) and both front doors.
The last daemon is then left idle for ``--idle-s`` seconds and its user + sys CPU read.

The **import footprint** rows say how much of start-up and of the idle RSS is only loading
code: a fresh interpreter imports (a) nothing, (b) the libraries misbridge is built on and
nothing of misbridge, (c) ``misbridge.app.cli`` (everything ``misbridge serve`` loads); each is
timed from spawn to exit (best of ``--starts``) and reports its VmRSS after the imports.

Run alone: ``python -m bench.startup [--starts 5] [--idle-s 60]``.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Row, bench_args, cpu_seconds, daemon, daemon_config, emit, ms, simulators, verdict

GOAL_READY_S = 0.6
#: "Idle CPU over 60 s ~ 0", read as at most 0.1 % of one core.
GOAL_IDLE_FRACTION = 0.001


#: The libraries ``misbridge serve`` stands on (pyproject dependencies, as the daemon uses them).
DEPENDENCY_IMPORTS = (
    "asyncio, ssl, sqlite3, serial_asyncio_fast, pydantic, pydantic_settings, httpx, tenacity, loguru, "
    "statemachine, starlette.applications, uvicorn, prometheus_client, simplejson"
)
FOOTPRINTS = {
    "bare interpreter": "pass",
    "dependencies only": f"import {DEPENDENCY_IMPORTS}",
    "misbridge serve's imports": "import misbridge.app.cli",
}
_PRINT_RSS = (
    "\nfor line in open('/proc/self/status'):\n    if line.startswith('VmRSS:'): print(int(line.split()[1]) / 1024)"
)


def import_footprint(code: str, runs: int) -> tuple[float, float]:
    """(best seconds from spawn to exit, VmRSS MiB after the imports) of ``python -c code``."""
    best, rss = float("inf"), 0.0
    for _ in range(runs):
        started = time.perf_counter()
        command = [sys.executable, "-c", code + _PRINT_RSS]  # our own constant code
        out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
        best = min(best, time.perf_counter() - started)
        rss = float(out.stdout.strip().splitlines()[-1])
    return best, rss


def footprint_rows(runs: int) -> list[Row]:
    """What loading the code alone costs, against the start-up and idle-RSS goals."""
    out = []
    for name, code in FOOTPRINTS.items():
        seconds, rss = import_footprint(code, runs)
        out.append(
            Row(
                f"4c. import: {name}",
                "(report)",
                f"{ms(seconds)}, RSS {rss:.1f} MB",
                "info",
                f"python -c {code!r} (best of {runs}); the floor under 4a and 3a" if name != "bare interpreter" else "",
            )
        )
    return out


async def measure(starts: int, idle_s: float) -> tuple[list[float], float]:
    """(seconds to ready for each start, idle CPU seconds over ``idle_s``)."""
    ready: list[float] = []
    with tempfile.TemporaryDirectory(prefix="misbridge-bench-start-") as tmp:
        workdir = Path(tmp)
        async with simulators(workdir) as sims:
            for i in range(starts):
                config, socket_port, http_port = daemon_config(
                    workdir, sims.device_path, sims.backend_url, sims.key_file, name=f"start{i}"
                )
                async with daemon(config, socket_port, http_port, workdir / "daemon.log") as proc:
                    ready.append(proc.ready_s)
                    if i == starts - 1:
                        await asyncio.sleep(1.0)  # let start-up work settle
                        before = cpu_seconds(proc.pid)
                        await asyncio.sleep(idle_s)
                        idle_cpu = cpu_seconds(proc.pid) - before
    return ready, idle_cpu


def rows(ready: list[float], idle_cpu: float, idle_s: float) -> list[Row]:
    """The table lines."""
    median = statistics.median(ready)
    fraction = idle_cpu / idle_s
    return [
        Row(
            "4a. start-up to /health 200",
            f"<= {ms(GOAL_READY_S)}",
            f"{ms(median)} (median of {len(ready)})",
            verdict(median <= GOAL_READY_S, f"{median / GOAL_READY_S:.2f}x of goal"),
            f"python -m misbridge serve as a subprocess, all starts: {', '.join(ms(r) for r in ready)}; "
            "includes interpreter start and imports",
        ),
        Row(
            f"4b. idle CPU over {idle_s:g} s",
            "~0 (<= 0.1 % of a core)",
            f"{idle_cpu * 1000:.0f} ms = {fraction * 100:.3f} %",
            verdict(fraction <= GOAL_IDLE_FRACTION, f"{fraction / GOAL_IDLE_FRACTION:.2f}x of goal"),
            "user+sys of the idle daemon (keep-alive STATUS ping every 10 s, systemd watchdog off)",
        ),
    ]


def main() -> None:
    """Measure and print."""
    parser = bench_args(__doc__ or "")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=60.0)
    args = parser.parse_args()
    ready, idle_cpu = asyncio.run(measure(args.starts, args.idle_s))
    emit(rows(ready, idle_cpu, args.idle_s) + footprint_rows(args.starts), args.json)


if __name__ == "__main__":
    main()
