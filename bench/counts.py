"""Units of work per card sale: loop turns, journal hops, commits, log lines, backend connections, pad frames.

CPU per sale (``bench.redemptions``) says how much; this says of what. The daemon runs as
``python -m bench.counting_daemon serve`` (misbridge's own command line with counters wrapped
around the event loop, the executor, SQLite, httpx and the pad link; see that module) on the
simulators, as in ``bench.redemptions``; a POS loop sends card redemptions through the socket
door one after another. The counters are read before and after the measured sales (``SIGUSR2``),
and once more after an idle period as long as the sales took, so the background work of the
same span (key checks, keep-alives, probes) can be told apart: "per sale" is (sales span minus
idle span) / sales. Log lines are counted in the daemon's log file (INFO, to a file).

``--gap S`` waits S seconds between sales, as a quiet till does: with a gap longer than the
backend client's keep-alive expiry (httpx's default 5 s) each sale opens a new connection (a new
TLS handshake over https); back to back they share one.

Run: ``python -m bench.counts [--sales 200] [--https] [--gap S]``. Counting costs CPU; never time with it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from bench.common import Row, bench_args, daemon, daemon_config, emit, simulators
from bench.redemptions import WARMUP, bridge_once

#: The daemon's one-line log format starts with a timestamp, then the level (telemetry/logs.py).
_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|SUCCESS|WARNING|ERROR|CRITICAL)\b")
_DUMP_WAIT_S = 5.0

Counts = collections.Counter[str]


async def read_counts(pid: int, path: Path) -> Counts:
    """Ask the counting daemon for its counters (``SIGUSR2``) and wait for the file it writes."""
    path.unlink(missing_ok=True)  # noqa: ASYNC240 - a tiny local file between two measured spans
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + _DUMP_WAIT_S
    while not path.exists():  # noqa: ASYNC240
        if time.monotonic() > deadline:
            raise RuntimeError("the counting daemon wrote no counters")
        await asyncio.sleep(0.01)
    return collections.Counter(json.loads(path.read_text(encoding="utf-8")))  # noqa: ASYNC240


def log_lines(log: Path) -> Counts:
    """Lines of the daemon's log by level (``log lines: INFO`` ...) and in all."""
    counts: Counts = collections.Counter()
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        level = _LEVEL.search(line[:60])
        counts[f"log lines: {level.group(1) if level else 'other'}"] += 1
        counts["log lines: all"] += 1
    return counts


def per_sale(busy: Counts, idle: Counts, sales: int) -> dict[str, float]:
    """(busy - idle) / sales for every counter either span saw."""
    return {name: (busy[name] - idle[name]) / sales for name in sorted(set(busy) | set(idle))}


async def measure(
    sales: int, *, https: bool = False, gap_s: float = 0.0
) -> tuple[dict[str, float], dict[str, float], float]:
    """(per sale, idle per second, idle seconds) over ``sales`` redemptions after a warm-up."""
    with tempfile.TemporaryDirectory(prefix="misbridge-counts-") as tmp:
        workdir = Path(tmp)
        dump = workdir / "counts.json"
        log = workdir / "daemon.log"
        async with simulators(workdir, tls=https) as sims:
            config, socket_port, http_port = daemon_config(
                workdir, sims.device_path, sims.backend_url, sims.key_file, extra=sims.backend_extra
            )
            env = {"MISBRIDGE_BENCH_COUNTS": str(dump)}
            async with daemon(config, socket_port, http_port, log, module="bench.counting_daemon", env=env) as proc:
                for _ in range(WARMUP):
                    await bridge_once(socket_port)
                await asyncio.sleep(0.2)  # the last sale's final ACK and its log line
                start = (await read_counts(proc.pid, dump)) + log_lines(log)
                started = time.monotonic()
                for _ in range(sales):
                    await asyncio.sleep(gap_s)
                    await bridge_once(socket_port)
                await asyncio.sleep(0.2)
                span = time.monotonic() - started
                after_sales = (await read_counts(proc.pid, dump)) + log_lines(log)
                await asyncio.sleep(span)
                after_idle = (await read_counts(proc.pid, dump)) + log_lines(log)
    busy = after_sales - start
    idle = after_idle - after_sales
    # Counter subtraction drops zeros and negatives; keep the names either way.
    busy.update({name: 0 for name in after_sales if name not in busy})
    return per_sale(busy, idle, sales), {name: n / span for name, n in idle.items()}, span


def rows(result: Mapping[str, float], idle: Mapping[str, float], idle_s: float, scheme: str) -> list[Row]:
    """One line per counter: per sale (background subtracted) and the idle rate."""
    return [
        Row(
            f"{name} ({scheme})",
            "(report)",
            f"{value:.2f} per sale",
            "info",
            f"idle: {idle.get(name, 0.0):.2f}/s over {idle_s:.1f} s" if idle.get(name) else "",
        )
        for name, value in result.items()
    ]


def main() -> None:
    """Count and print."""
    parser = bench_args(__doc__ or "")
    parser.add_argument("--sales", type=int, default=200, help="measured card sales (default 200)")
    parser.add_argument("--https", action="store_true", help="the backend simulator over https with a test CA")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between two sales (default 0)")
    args = parser.parse_args()
    result, idle, idle_s = asyncio.run(measure(args.sales, https=args.https, gap_s=args.gap))
    scheme = ("https" if args.https else "http") + (f", {args.gap:g} s apart" if args.gap else "")
    emit(rows(result, idle, idle_s, scheme), args.json)


if __name__ == "__main__":
    main()
