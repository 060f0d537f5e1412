"""Several POS lanes on one daemon (issue 16): per-lane latency against one lane alone, CPU, memory.

``python -m misbridge serve`` runs as a real subprocess with ``[[lanes]]`` wired to one
``python -m simulators pinpad`` per lane (``lane1`` … with deviceNo ``POS01`` …; the customer
presents the default card and types the PIN at once, so the latency is misbridge's own) and one
``python -m simulators backend``. Each lane's POS is a loop in this process that sends a card
redemption through the e-Buy socket door (a new TCP connection each, the envelope naming the
lane's deviceNo, book §6.1), paced like a (very fast) cashier: a lane starts a sale every
``--pace-ms`` (or, when the answer takes longer, as soon as it is back).

1. warm-up: a few sales on every lane at once;
2. **one lane**: ``--sales`` paced sales on lane 1 while the other lanes stay idle (the same daemon);
3. **all lanes**: every lane sells ``--sales`` paced sales at the same time;
4. **saturation**: every lane sells ``--sales`` sales unpaced, each as soon as the answer is back:
   how many sales a second the whole bench (daemon, pads, backend, POS loops) reaches on this box.

Why paced: unpaced, every lane queues on the same CPUs as the simulators and the POS loops, so
latency grows with the number of lanes whatever misbridge does; the question the goal asks is
whether a lane waits for another lane, which a load below the box's capacity shows.

Latency is measured at the POS on the unpaced pty (no wire time added: a real pad adds the same
per lane, bench/wire.py). CPU is the daemon's utime + stime per sale of each phase
(``/proc/<pid>/stat``), memory its peak VmHWM. The goal: p50 of all lanes within 1.2x of one lane's.

Run alone: ``python -m bench.lanes [--lanes 8] [--sales 200] [--quick] [--json PATH]``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    Row,
    bench_args,
    cpu_seconds,
    daemon,
    daemon_config,
    emit,
    machine_busy_seconds,
    ms,
    peak_rss_mb,
    percentile,
    rss_mb,
    simulators,
    verdict,
)
from bench.wire import new_trace_no
from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.simulated import lane_device_no, lane_name
from misbridge.ebuy.examples import card_redemption_request

GOAL_P50_RATIO = 1.2
#: A lane starts a sale every this long: 30 times a fast cashier's pace, well below the box's capacity.
PACE_S = 0.5
WARMUP_PER_LANE = 5
#: The pad answers TIMEOUT after at most this long, should it ever wait for a customer.
PAD_TIMEOUT_CAP_S = "0.5"
QUICK_LANES, QUICK_SALES = 2, 20


@dataclass
class Phase:
    """One phase's sale latencies by lane number, the daemon's CPU over it and its wall time."""

    seconds: dict[int, list[float]] = field(default_factory=dict)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    machine_busy_s: float = 0.0
    pos_cpu_s: float = 0.0

    @property
    def sales(self) -> int:
        """How many sales the phase measured."""
        return sum(len(values) for values in self.seconds.values())

    @property
    def all_seconds(self) -> list[float]:
        """Every sale's latency, whichever lane."""
        return [value for values in self.seconds.values() for value in values]

    @property
    def cpu_ms_per_sale(self) -> float:
        """The daemon's CPU per sale, in milliseconds."""
        return self.cpu_s / self.sales * 1000

    def load(self) -> str:
        """How busy the machine was over the phase, in cores, and the daemon's and the POS loops' part."""

        def cores(seconds: float) -> str:
            return f"{seconds / self.wall_s:.2f}"

        return (
            f"machine busy {cores(self.machine_busy_s)} of {os.cpu_count()} cores, of which the daemon "
            f"{cores(self.cpu_s)}, the POS loops {cores(self.pos_cpu_s)}"
        )


@dataclass
class Measured:
    """What one run measured."""

    lanes: int
    sales: int
    pace_s: float = 0.0
    alone: Phase = field(default_factory=Phase)
    together: Phase = field(default_factory=Phase)
    saturated: Phase = field(default_factory=Phase)
    rss_warm_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    run_wall_s: float = 0.0


async def sell(socket_port: int, lane: int) -> float:
    """One card redemption on lane ``lane`` through the socket door: seconds until the answer.

    Raises:
        RuntimeError: the sale was not approved (its figures would not be a sale's).
    """
    body = card_redemption_request()
    body["traceNo"] = new_trace_no()
    envelope = envelope_for("cardRedemption", body, device_no=lane_device_no(lane))
    started = time.perf_counter()
    answer = await socket_request("127.0.0.1", socket_port, envelope)
    elapsed = time.perf_counter() - started
    if answer.body.get("returnCode") != "00":
        # returnCode and returnDesc only: the rest of an answer may hold card data.
        code, desc = answer.body.get("returnCode"), answer.body.get("returnDesc", "")
        raise RuntimeError(f"{lane_name(lane)}: sale not approved: {code} {desc}")
    return elapsed


async def pos_loop(socket_port: int, lane: int, sales: int, pace_s: float = 0.0) -> list[float]:
    """Lane ``lane``'s POS: ``sales`` sales, one started every ``pace_s`` (0: as soon as the last was answered)."""
    latencies = []
    next_start = time.perf_counter() + pace_s * (lane % 8) / 8  # lanes do not all start in the same instant
    for _ in range(sales):
        await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
        next_start += pace_s
        latencies.append(await sell(socket_port, lane))
    return latencies


async def run_phase(pid: int, socket_port: int, lanes: Sequence[int], sales: int, pace_s: float = 0.0) -> Phase:
    """Every lane in ``lanes`` runs its POS loop at the same time; the daemon ``pid``'s CPU over it."""
    cpu_before, busy_before, pos_before = cpu_seconds(pid), machine_busy_seconds(), time.process_time()
    started = time.perf_counter()
    results = await asyncio.gather(*(pos_loop(socket_port, lane, sales, pace_s) for lane in lanes))
    wall = time.perf_counter() - started
    return Phase(
        dict(zip(lanes, results, strict=True)),
        cpu_s=cpu_seconds(pid) - cpu_before,
        wall_s=wall,
        machine_busy_s=machine_busy_seconds() - busy_before,
        pos_cpu_s=time.process_time() - pos_before,
    )


async def measure(lanes: int, sales: int, pace_s: float = PACE_S, warmup: int = WARMUP_PER_LANE) -> Measured:
    """Start the simulators and the daemon, then run the warm-up, one lane alone, every lane at once, unpaced."""
    started = time.perf_counter()
    result = Measured(lanes, sales, pace_s)
    every_lane = range(1, lanes + 1)
    with tempfile.TemporaryDirectory(prefix="misbridge-bench-lanes-") as tmp:
        workdir = Path(tmp)
        async with simulators(workdir, "--timeout-cap", PAD_TIMEOUT_CAP_S, lanes=lanes) as sims:
            config, socket_port, http_port = daemon_config(
                workdir, sims.device_path, sims.backend_url, sims.key_file, lanes=sims.lanes
            )
            async with daemon(config, socket_port, http_port, workdir / "daemon.log") as proc:
                await run_phase(proc.pid, socket_port, every_lane, warmup)
                result.rss_warm_mb = rss_mb(proc.pid)
                result.alone = await run_phase(proc.pid, socket_port, [1], sales, pace_s)
                result.together = await run_phase(proc.pid, socket_port, every_lane, sales, pace_s)
                result.saturated = await run_phase(proc.pid, socket_port, every_lane, sales)
                result.rss_end_mb = rss_mb(proc.pid)
                result.rss_peak_mb = peak_rss_mb(proc.pid)
    result.run_wall_s = time.perf_counter() - started
    return result


def _p50_p99(values: Sequence[float]) -> str:
    return f"p50 {ms(percentile(values, 50))}, p99 {ms(percentile(values, 99))}"


def _idle_others(lanes: int) -> str:
    others = lanes - 1
    if not others:
        return "(the daemon's only lane)"
    if others == 1:
        return "while the other lane of the same daemon stays idle"
    return f"while the other {others} lanes of the same daemon stay idle"


def lane_rows(m: Measured) -> list[Row]:
    """One row per lane of the all-lanes phase: its p50/p99 and its p50 against one lane alone's."""
    alone_p50 = percentile(m.alone.all_seconds, 50)
    rows = []
    for lane, values in sorted(m.together.seconds.items()):
        ratio = percentile(values, 50) / alone_p50
        rows.append(
            Row(f"8b. {m.lanes} lanes: {lane_name(lane)}", "(report)", _p50_p99(values), verdict(None, f"{ratio:.2f}x"))
        )
    return rows


def rows(m: Measured) -> list[Row]:
    """The table lines for one run."""
    alone, together = m.alone.all_seconds, m.together.all_seconds
    ratio = percentile(together, 50) / percentile(alone, 50)
    p99_ratio = percentile(together, 99) / percentile(alone, 99)
    return [
        Row(
            "8a. one lane alone",
            "(report)",
            _p50_p99(alone),
            verdict(None),
            f"{m.sales} sales on lane1 (deviceNo {lane_device_no(1)}), one started every {m.pace_s * 1000:.0f} ms, "
            f"{_idle_others(m.lanes)}; after {WARMUP_PER_LANE} warm-up sales per lane",
        ),
        *lane_rows(m),
        Row(
            f"8c. {m.lanes} lanes: every sale",
            "(report)",
            _p50_p99(together),
            verdict(None, f"p99 {p99_ratio:.2f}x"),
            f"{m.lanes} lanes x {m.sales} sales, each lane starting one every {m.pace_s * 1000:.0f} ms; "
            "8b's and 8c's ratios are against 8a",
        ),
        Row(
            f"8d. p50 {m.lanes} lanes / p50 one lane",
            f"<= {GOAL_P50_RATIO:g}x",
            f"{ms(percentile(together, 50))} vs {ms(percentile(alone, 50))}",
            verdict(ratio <= GOAL_P50_RATIO, f"{ratio:.2f}x"),
            "on the unpaced pty (no wire time added; a real pad's 115200 baud adds the same to every lane)",
        ),
        Row(
            "8e. daemon CPU per sale",
            "(report)",
            f"{m.together.cpu_ms_per_sale:.2f} ms ({m.lanes} lanes), {m.alone.cpu_ms_per_sale:.2f} ms (one lane)",
            verdict(None, f"{m.together.cpu_ms_per_sale / m.alone.cpu_ms_per_sale:.2f}x"),
            f"user+sys of the daemon process over each phase / its sales, log_level INFO "
            f"({m.together.cpu_s:.2f} s over {m.together.sales} sales, {m.alone.cpu_s:.2f} s over {m.alone.sales})",
        ),
        Row(
            "8f. daemon peak RSS",
            "(report)",
            f"{m.rss_peak_mb:.1f} MB",
            verdict(None),
            f"VmHWM at the end; VmRSS after the warm-up {m.rss_warm_mb:.1f} MB, at the end {m.rss_end_mb:.1f} MB",
        ),
        Row(
            f"8g. saturation, {m.lanes} lanes x {m.sales} sales unpaced",
            "(report)",
            f"{m.saturated.wall_s:.2f} s = {m.saturated.sales / m.saturated.wall_s:.0f} sales/s",
            verdict(None, _p50_p99(m.saturated.all_seconds)),
            f"each lane's POS sending its next sale when the answer is back: {m.saturated.load()}; daemon CPU "
            f"{m.saturated.cpu_ms_per_sale:.2f} ms per sale. Paced phases: {m.together.load()} ({m.lanes} lanes), "
            f"{m.alone.load()} (one lane). The whole run with start-up and warm-up {m.run_wall_s:.1f} s",
        ),
    ]


def main() -> None:
    """Measure and print."""
    parser = bench_args(__doc__ or "")
    parser.add_argument("--lanes", type=int, default=8, help="lanes, each with its own pad and POS (default 8)")
    parser.add_argument("--sales", type=int, default=200, help="sales per lane in each phase (default 200)")
    parser.add_argument(
        "--pace-ms", type=float, default=PACE_S * 1000,
        help=f"a lane starts a sale every this many ms in the paced phases (default {PACE_S * 1000:.0f})",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_LANES} lanes x {QUICK_SALES} sales (overrides the two above)"
    )
    args = parser.parse_args()
    lanes, sales = (QUICK_LANES, QUICK_SALES) if args.quick else (args.lanes, args.sales)
    if lanes < 1 or sales < 1 or args.pace_ms < 0:
        parser.error("--lanes and --sales must be 1 or more, --pace-ms 0 or more")
    pace_s = 0.05 if args.quick else args.pace_ms / 1000
    emit(rows(asyncio.run(measure(lanes, sales, pace_s))), args.json)


if __name__ == "__main__":
    main()
