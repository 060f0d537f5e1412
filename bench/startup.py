"""Start-up (``misbridge serve`` to ``GET /health`` 200), idle CPU and RSS, and what each import costs.

The simulators are started once; then ``python -m misbridge serve --config <toml>`` is started
``--starts`` times (a fresh journal each time), timing from the spawn to the first 200 from
``/health`` (polled every 5 ms, so the figure is up to 5 ms late). "Ready" includes the Python
interpreter start, imports, the journal, the PIN-pad link (DEVICE_INFO), the first sign-in and
both front doors. Each daemon's user + sys CPU at that moment is read too (on a busy shared
machine the wall time also holds waiting for a core; the CPU does not), and its VmRSS 1 s later.
The last daemon is then left idle for ``--idle-s`` seconds and its user + sys CPU read.

misbridge is byte-compiled first (``compileall``, into its ``__pycache__``), as the Debian
package ships it: a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile
every one of its modules at every start (~160 ms here). ``--no-compile`` measures that case.

The **import footprint** rows say how much of start-up and of the idle RSS is only loading
code: a fresh interpreter imports (a) nothing, (b) the libraries misbridge is built on and
nothing of misbridge, (c) what ``misbridge serve`` imports before it starts; each is timed from
spawn to exit (best of ``--starts``) and reports its VmRSS after the imports. The **per
dependency** rows (4d) give each library's cost twice: alone in a fresh interpreter (above the
bare one; libraries share what they import, asyncio and ssl above all, so these do not add
up), and in the order serve meets them, each one's share of (b) (best of ``--starts``).

Run alone: ``python -m bench.startup [--starts 5] [--idle-s 60] [--no-compile]``.
"""

from __future__ import annotations

import asyncio
import compileall
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import misbridge
from bench.common import Row, bench_args, cpu_seconds, daemon, daemon_config, emit, ms, rss_mb, simulators, verdict

#: Issue 18's goals: ready within 450 ms, at most 45 MB resident when idle (3a measures it too).
GOAL_READY_S = 0.45
GOAL_IDLE_RSS_MB = 45.0
#: "Idle CPU over 60 s ~ 0", read as at most 0.1 % of one core.
GOAL_IDLE_FRACTION = 0.001
#: How long after /health 200 the idle RSS is read (as 3a does).
SETTLE_S = 1.0

#: Every interpreter below starts with this, as misbridge/__init__.py does before anything imports
#: httpx: a development venv has the libraries of httpx's command-line client, the till's does not.
_AS_MISBRIDGE = "import sys; sys.modules.setdefault('httpx._main', None)\n"

#: The libraries ``misbridge serve`` stands on (pyproject dependencies and the standard library
#: parts that weigh), in the order its imports first reach them: (name, what is imported).
DEPENDENCIES: tuple[tuple[str, str], ...] = (
    ("asyncio (stdlib)", "asyncio"),
    ("ssl (stdlib)", "ssl"),
    ("sqlite3 (stdlib)", "sqlite3"),
    ("loguru", "loguru"),
    ("pydantic", "pydantic.main"),  # `import pydantic` alone defers BaseModel's machinery
    ("pydantic-settings", "pydantic_settings"),
    ("simplejson", "simplejson"),
    ("httpx", "httpx"),
    ("tenacity", "tenacity"),
    ("python-statemachine", "statemachine"),
    ("pyserial", "serial"),
    ("pyserial-asyncio-fast", "serial_asyncio_fast"),
    ("starlette", "starlette.applications"),
    ("uvicorn", "uvicorn"),
    ("prometheus-client", "prometheus_client"),
)
#: Dependencies serve does not import for a serial pad; their cost alone, for the record.
NOT_ON_THE_SERVE_PATH: tuple[tuple[str, str], ...] = (("pyusb (usb:// pads only)", "usb.core"),)

DEPENDENCY_IMPORTS = ", ".join(module for _, module in DEPENDENCIES)
#: What serve imports before it starts (the start itself imports a few more: anyio's backend, the transport).
SERVE_IMPORTS = "misbridge.app.cli, misbridge.app.daemon, misbridge.app.preflight"
FOOTPRINTS = {
    "bare interpreter": "pass",
    "dependencies only": f"import {DEPENDENCY_IMPORTS}",
    "misbridge serve's imports": f"import {SERVE_IMPORTS}",
}
_VMRSS = (
    "\ndef _rss():\n    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024\n"
)
_PRINT_RSS = _VMRSS + "print(_rss())"
#: Imports each of argv[1:] in turn; prints {"start": VmRSS MiB, "steps": [[seconds, VmRSS MiB after], ...]}.
_IN_ORDER = _VMRSS + (
    "import importlib, json, time\nstart, steps = _rss(), []\nfor name in sys.argv[1:]:\n"
    "    began = time.perf_counter()\n    importlib.import_module(name)\n"
    "    steps.append([time.perf_counter() - began, _rss()])\nprint(json.dumps({'start': start, 'steps': steps}))"
)


@dataclass
class Starts:
    """What the daemon starts measured: wall and CPU seconds to ready, idle RSS, idle CPU of the last."""

    ready_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    idle_cpu_s: float = 0.0


def byte_compile() -> None:
    """Write misbridge's byte-code next to its sources (``__pycache__``), as the package build does."""
    compileall.compile_dir(Path(misbridge.__file__).parent, quiet=1)


def _run_python(code: str, *args: str) -> tuple[float, str]:
    """(seconds from spawn to exit, stdout) of ``python -c code args``."""
    started = time.perf_counter()
    command = [sys.executable, "-c", _AS_MISBRIDGE + code, *args]  # our own constant code
    out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    return time.perf_counter() - started, out.stdout


def import_footprint(code: str, runs: int) -> tuple[float, float]:
    """(best seconds from spawn to exit, VmRSS MiB after the imports) of ``python -c code``."""
    best, rss = float("inf"), float("inf")
    for _ in range(runs):
        seconds, out = _run_python(code + _PRINT_RSS)
        best = min(best, seconds)
        rss = min(rss, float(out.strip().splitlines()[-1]))
    return best, rss


def imports_in_order(modules: list[str], runs: int) -> list[tuple[float, float]]:
    """Per module, imported one after the other in one fresh interpreter: (best seconds, median MiB it added)."""
    seconds: list[list[float]] = [[] for _ in modules]
    added: list[list[float]] = [[] for _ in modules]
    for _ in range(runs):
        reading = json.loads(_run_python(_IN_ORDER, *modules)[1])
        before = reading["start"]
        for index, (took, rss) in enumerate(reading["steps"]):
            seconds[index].append(took)
            added[index].append(rss - before)
            before = rss
    return [(min(took), statistics.median(mib)) for took, mib in zip(seconds, added, strict=True)]


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


def dependency_rows(runs: int) -> list[Row]:
    """4d: each dependency's import cost, alone and in serve's order (issue 18: what each one costs)."""
    bare_s, bare_mb = import_footprint("pass", runs)
    in_order = imports_in_order([module for _, module in DEPENDENCIES], runs)
    out = []
    for index, (name, module) in enumerate((*DEPENDENCIES, *NOT_ON_THE_SERVE_PATH)):
        alone_s, alone_mb = import_footprint(f"import {module}", runs)
        measured = f"alone +{ms(max(0.0, alone_s - bare_s))}, +{alone_mb - bare_mb:.1f} MB"
        if index < len(in_order):
            order_s, order_mb = in_order[index]
            measured += f"; in serve's order +{ms(order_s)}, +{order_mb:.1f} MB"
        out.append(Row(f"4d. import cost: {name}", "(report)", measured, "info", f"import {module}"))
    return out


async def measure(starts: int, idle_s: float) -> Starts:
    """Start the daemon ``starts`` times; the last one then idles ``idle_s``."""
    result = Starts()
    with tempfile.TemporaryDirectory(prefix="misbridge-bench-start-") as tmp:
        workdir = Path(tmp)
        async with simulators(workdir) as sims:
            for i in range(starts):
                config, socket_port, http_port = daemon_config(
                    workdir, sims.device_path, sims.backend_url, sims.key_file, name=f"start{i}"
                )
                async with daemon(config, socket_port, http_port, workdir / "daemon.log") as proc:
                    result.ready_s.append(proc.ready_s)
                    result.cpu_s.append(cpu_seconds(proc.pid))
                    await asyncio.sleep(SETTLE_S)  # let start-up work settle
                    result.rss_mb.append(rss_mb(proc.pid))
                    if i == starts - 1:
                        before = cpu_seconds(proc.pid)
                        await asyncio.sleep(idle_s)
                        result.idle_cpu_s = cpu_seconds(proc.pid) - before
    return result


def rows(measured: Starts, idle_s: float, *, compiled: bool) -> list[Row]:
    """The table lines."""
    median, cpu, rss = (statistics.median(v) for v in (measured.ready_s, measured.cpu_s, measured.rss_mb))
    fraction = measured.idle_cpu_s / idle_s
    code = (
        "misbridge byte-compiled first, as the package ships it"
        if compiled
        else "misbridge's sources not byte-compiled"
    )
    return [
        Row(
            "4a. start-up to /health 200",
            f"<= {ms(GOAL_READY_S)}",
            f"{ms(median)} (median of {len(measured.ready_s)})",
            verdict(median <= GOAL_READY_S, f"{median / GOAL_READY_S:.2f}x of goal"),
            f"python -m misbridge serve as a subprocess, all starts: {', '.join(ms(r) for r in measured.ready_s)}; "
            f"includes interpreter start and imports; {code}",
        ),
        Row(
            "4a. start-up CPU to /health 200",
            "(report)",
            f"{ms(cpu)} (median)",
            "info",
            f"user+sys of the daemon when /health first answered 200: {', '.join(ms(c) for c in measured.cpu_s)}",
        ),
        Row(
            f"4b. idle CPU over {idle_s:g} s",
            "~0 (<= 0.1 % of a core)",
            f"{measured.idle_cpu_s * 1000:.0f} ms = {fraction * 100:.3f} %",
            verdict(fraction <= GOAL_IDLE_FRACTION, f"{fraction / GOAL_IDLE_FRACTION:.2f}x of goal"),
            "user+sys of the idle daemon (keep-alive STATUS ping every 10 s, systemd watchdog off)",
        ),
        Row(
            "4e. daemon RSS idle",
            f"<= {GOAL_IDLE_RSS_MB:g} MB",
            f"{rss:.1f} MB (median of {len(measured.rss_mb)})",
            verdict(rss <= GOAL_IDLE_RSS_MB, f"{rss / GOAL_IDLE_RSS_MB:.2f}x of goal"),
            f"VmRSS {SETTLE_S:g} s after /health answered 200, as 3a: {', '.join(f'{r:.1f}' for r in measured.rss_mb)}",
        ),
    ]


def main() -> None:
    """Measure and print."""
    parser = bench_args(__doc__ or "")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--no-compile", action="store_true", help="do not byte-compile misbridge first")
    args = parser.parse_args()
    if not args.no_compile:
        byte_compile()
    measured = asyncio.run(measure(args.starts, args.idle_s))
    table = rows(measured, args.idle_s, compiled=not args.no_compile)
    emit(table + footprint_rows(args.starts) + dependency_rows(args.starts), args.json)


if __name__ == "__main__":
    main()
