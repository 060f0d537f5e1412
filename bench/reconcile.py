"""End-of-day reconciliation of a large day (issue 15): how long ``misbridge reconcile`` takes.

A fresh journal gets ``--records`` approved card redemptions in one business day (raw SQL, as
``tests/integration/test_reconcile.py`` seeds its 12 000-record day), and the backend simulator
starts on a ledger file holding the same sales, approved for the same amounts, so every record
matches (status 1) instead of coming back 4 "not in the backend". Then ``python -m misbridge
reconcile --json`` runs as its own process, as an operator or the systemd timer runs it: the wall
time is the whole command (interpreter start, imports, every batchUpload, the summary, the
report files), and its peak RSS is the child's ``ru_maxrss``. Each repeat starts from scratch
(new journal, new ledger, new simulator); the table gives the min and the median.

    python -m bench.reconcile --records 12000 --repeat 3
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import SEEDED_PAID, Row, backend_simulator, bench_args, emit, insert_approved_sales, write_key
from misbridge.ebuy import jsonio
from misbridge.journal import Journal
from simulators.backend import Ledger, TraceState
from simulators.cards import CARDS, DEFAULT_CARD

CUT_OFF = "04:00"
#: Longest a run may take before the bench calls it hung (the command's own deadlines are shorter).
RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Run:
    """One reconciliation: what the report said and what it cost."""

    records: int
    batches: int
    matched: int
    mismatched: int
    exit_status: int
    wall_s: float
    peak_rss_mb: float


def zone_at_noon(now: datetime) -> str:
    """An ``Etc/GMT`` zone where ``now`` is about noon: the seeded day is hours from its cut-off."""
    offset = 12 - now.astimezone(UTC).hour
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


def write_ledger(path: Path, trace_nos: list[str], at: datetime) -> None:
    """A backend ledger file in which each of ``trace_nos`` is an approved sale of :data:`SEEDED_PAID`."""
    ledger = Ledger(CARDS, path)
    trans_date = at.astimezone().strftime("%Y%m%d%H%M%S")  # the simulator's clock is local and naive
    for serial, trace_no in enumerate(trace_nos, 1):
        record = ledger.count_submission(trace_no, "cardRedemption")
        record.state, record.card, record.total_amount = TraceState.APPROVED, DEFAULT_CARD, SEEDED_PAID
        record.response = {
            "traceNo": trace_no,
            "orderNo": f"O{serial}",
            "transDate": trans_date,
            "returnCode": "00",
            "paidAmount": SEEDED_PAID,
        }
    ledger.save()


def write_config(path: Path, backend_url: str, key_file: Path, journal: Path, zone: str) -> None:
    """The TOML the command runs with: the backend, its key, the journal and the business day."""
    path.write_text(
        f'[backend]\nurl = "{backend_url}"\n[backend.signing]\nkey_file = "{key_file}"\n'
        f'[journal]\npath = "{journal}"\n[reconcile]\ncut_off = "{CUT_OFF}"\ntime_zone = "{zone}"\n',
        encoding="utf-8",
    )


def run_command(config: Path) -> tuple[int, str, float, float]:
    """``python -m misbridge reconcile --json`` for the last complete day: (exit, stdout, wall s, peak RSS MiB)."""
    env = {key: value for key, value in os.environ.items() if key != "MISBRIDGE_CONFIG"}
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        child = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "misbridge", "reconcile", "--config", str(config), "--json"],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        # wait4, not wait: its rusage is this child's own, so ru_maxrss is the command's peak RSS.
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return child.returncode, out.read().decode("utf-8"), wall, usage.ru_maxrss / 1024


async def one_run(records: int) -> Run:
    """Seed a fresh day of ``records`` sales on both sides, reconcile it once, read the report."""
    with tempfile.TemporaryDirectory(prefix="misbridge-bench-reconcile-") as tmp:
        workdir = Path(tmp)
        now = datetime.now(UTC)
        sold_at = now - timedelta(days=1)  # inside the last complete business day, the command's default
        journal = workdir / "journal.db"
        await (await Journal.open(journal)).close()  # the schema
        trace_nos = insert_approved_sales(journal, records, sold_at)
        ledger = workdir / "ledger.json"
        write_ledger(ledger, trace_nos, sold_at)
        key_file = write_key(workdir)
        async with backend_simulator(workdir, key_file, ledger) as url:
            config = workdir / "misbridge.toml"
            write_config(config, url, key_file, journal, zone_at_noon(now))
            code, stdout, wall, rss = await asyncio.wait_for(asyncio.to_thread(run_command, config), RUN_TIMEOUT_S)
        if code not in (0, 3):
            raise RuntimeError(f"misbridge reconcile exited {code}; see {workdir / 'backend.log'}")
        report: dict[str, Any] = jsonio.loads(stdout)
    return Run(
        records=int(report["uploaded"]),
        batches=len(report["batchUploadTraceNos"]),
        matched=int(report["matched"]),
        mismatched=len(report["mismatches"]),
        exit_status=code,
        wall_s=wall,
        peak_rss_mb=rss,
    )


def min_median(values: list[float], unit: str, digits: int) -> str:
    """``min X / median Y unit`` (just ``X unit`` for one value)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f} {unit}"
    return f"min {min(values):.{digits}f} / median {statistics.median(values):.{digits}f} {unit}"


def rows_for(runs: list[Run]) -> list[Row]:
    """The table: counts from the last run (every run reports the same), timings as min / median."""
    last = runs[-1]
    walls = [run.wall_s for run in runs]
    per_batch = [run.wall_s / run.batches for run in runs]
    rates = [run.records / run.wall_s for run in runs]
    rss = [run.peak_rss_mb for run in runs]
    n = len(runs)
    return [
        Row(
            "7a. reconcile: records, batchUploads",
            "3 batches for 12000",
            f"{last.records} records, {last.batches} batchUpload calls",
            "info",
            f"report: matched {last.matched}, mismatched {last.mismatched}, exit {last.exit_status}",
        ),
        Row(
            "7b. reconcile: whole command",
            "(report)",
            min_median(walls, "s", 2),
            "info",
            f"python -m misbridge reconcile --json as a process, {n} run(s): " + ", ".join(f"{w:.2f} s" for w in walls),
        ),
        Row(
            "7c. reconcile: seconds per batch",
            "(report)",
            min_median(per_batch, "s", 2),
            "info",
            "whole command / batches",
        ),
        Row("7d. reconcile: records per second", "(report)", min_median(sorted(rates), "rec/s", 0), "info"),
        Row("7e. reconcile: peak RSS", "(report)", min_median(rss, "MB", 1), "info", "ru_maxrss of the command"),
    ]


async def main_async(records: int, repeat: int) -> list[Run]:
    """``repeat`` independent runs, one after the other."""
    return [await one_run(records) for _ in range(repeat)]


def main() -> int:
    """Measure and print the table; 0 when every run produced a report."""
    parser = bench_args(__doc__ or "")
    parser.add_argument("--records", type=int, default=12_000, help="sales in the day (default 12000)")
    parser.add_argument("--repeat", type=int, default=3, help="independent runs; min and median (default 3)")
    args = parser.parse_args()
    if args.records < 1 or args.repeat < 1:
        parser.error("--records and --repeat must be at least 1")
    runs = asyncio.run(main_async(args.records, args.repeat))
    emit(rows_for(runs), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
