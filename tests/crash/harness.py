"""Crash-point harness: kill misbridge at every named durable step, restart it, check nothing is lost.

Run it as a program (pytest runs it in a subprocess, tests/crash/test_crash_points.py)::

    python -m tests.crash.harness --points all --runs 20 [--seed S] [--jobs 4] [--json FILE]
    python -m tests.crash.harness --pos-lanes 2 --points all --runs 5    # 2 POS lanes in flight

It prints ``point | runs | reached | lost | doubled | stuck | answer | integrity | key | pos_lane |
verdict`` and exits 1 on any violation or on any run whose crash point was not reached.

How a run goes (docs/reliability.md, "Crash points"):

1. The harness process imports misbridge once and starts the backend simulator and the pty PIN-pad
   simulator once (per lane), as subprocesses. It has no event loop and no threads, so it can
   ``os.fork()``.
2. For each run it scripts the backend faults the point needs (tests/crash/scenarios.py), forks a
   daemon child with ``MISBRIDGE_TEST_HOOKS=1 MISBRIDGE_CRASH_AT=<point>[:<nth>]`` that runs the real
   :class:`~misbridge.app.daemon.Daemon` on fixed ports against a journal file shared by all runs, and
   sends it one ``cardRedemption`` over the e-Buy socket door (for the QR points a ``qrcodeSale``, its
   code sometimes read on the pad, its options sometimes chosen by the POS in a second request; for
   the follow-up points, and some runs of the card points, an approved ``qrcodeSale`` or
   ``cardRedemption`` first, then the void or refund of it: tests/crash/flows.py). Exit status 137
   means the point was reached. (Recovery points first crash a daemon at a *prep* point, then one
   inside recovery.)
3. It clears the faults, forks a clean daemon, waits for ``/health`` 200 and the daemon's
   "misbridge ready:" log line (recovery done and the reversal worker running, see
   :meth:`Lane._ready`), repeats the POS's last request (same traceNo, same body), waits until the
   transaction is final with no reversal pending, and stops the daemon with SIGTERM (it must
   exit 0).
4. The checker (tests/crash/checker.py) compares the journal (read-only), the simulator's ledger
   and the POS answers; at the end each lane sweeps its whole journal.

``--jobs N`` runs N lanes in parallel. A lane is a forked worker with its own bench (both
simulators, two ports, a journal) that runs its share of the runs; lanes share nothing.

``--pos-lanes N`` (N >= 2) gives every daemon N POS lanes (``[[lanes]]``, one pad simulator each;
not to be confused with the harness's lanes above) and sends a ``cardRedemption`` on each of them
at the same moment in every run: tests/crash/pos_lanes.py. It runs the points a plain card sale
reaches (``all`` means those); the QR, follow-up and key points are refused there.

The modules: this one is the command line; tests/crash/bench.py the timers, the daemons' settings,
the simulator processes, the forked daemon child and the POS's socket call; tests/crash/lane.py one
lane's runs and the lanes in parallel; tests/crash/report.py a run's record, the table and the
failure paragraphs; tests/crash/scenarios.py and tests/crash/flows.py what each run does.
"""

from __future__ import annotations

import argparse
import functools
import json
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from misbridge.host import crashpoints
from tests.crash.bench import DEFAULT_JOBS
from tests.crash.lane import BenchFactory, Lane, run_all
from tests.crash.pos_lanes import POS_LANES_POINTS, PosLanesBench
from tests.crash.report import failures, render, summarize
from tests.crash.scenarios import uncovered_points

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
    parser.add_argument(
        "--pos-lanes",
        type=int,
        default=1,
        help="POS lanes per daemon, a sale in flight on each in every run (default 1; 2 or more: "
        "the plain card sale's points only)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every run's result to this file")
    parser.add_argument("--workdir", type=Path, default=None, help="keep journals and logs here (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--quiet", action="store_true", help="no progress dots")
    return parser.parse_args(argv)


def _refusal(unknown: Sequence[str]) -> str:
    # The end of day's points belong to a command, not the daemon this harness forks.
    reconcile = [p for p in unknown if p in crashpoints.RECONCILE_POINTS]
    others = [p for p in unknown if p not in reconcile]
    lines = [f"unknown points: {', '.join(others)}\n"] if others else []
    if reconcile:
        lines.append(
            f"not daemon points: {', '.join(reconcile)} (misbridge reconcile's: tests/crash/test_reconcile_crash.py)\n"
        )
    return "".join(lines)


def _pos_lanes_refusal(points: Sequence[str]) -> str | None:
    """Why ``--pos-lanes`` > 1 cannot run ``points`` (None: it can)."""
    others = [p for p in points if p in crashpoints.DAEMON_POINTS and p not in POS_LANES_POINTS]
    if not others:
        return None
    return (
        f"not run with --pos-lanes: {', '.join(others)} (a POS lane's QR, follow-up and key points "
        "run with one POS lane; docs/reliability.md, 'Two POS lanes in flight')\n"
    )


def _bench(pos_lanes: int) -> BenchFactory:
    """What each harness lane runs on: one POS lane per daemon, or tests/crash/pos_lanes.py's several."""
    return Lane if pos_lanes == 1 else functools.partial(PosLanesBench, pos_lanes=pos_lanes)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the harness over the daemon's points; 0 when every point was reached in every run with no violation."""
    args = _parse(argv)
    missing = uncovered_points()
    if missing:
        sys.stderr.write(f"no crash scenario for: {', '.join(missing)}\n")
        return 2
    if args.runs < 1 or args.jobs < 1 or args.pos_lanes < 1:
        sys.stderr.write("--runs, --jobs and --pos-lanes must be >= 1\n")
        return 2
    daemon_points = crashpoints.DAEMON_POINTS if args.pos_lanes == 1 else POS_LANES_POINTS
    points = list(daemon_points) if args.points == "all" else [p.strip() for p in args.points.split(",") if p]
    unknown = [p for p in points if p not in crashpoints.DAEMON_POINTS]
    refusal = _refusal(unknown) if unknown else _pos_lanes_refusal(points) if args.pos_lanes > 1 else None
    if refusal:
        sys.stderr.write(refusal)
        return 2
    seed = args.seed if args.seed is not None else secrets.token_hex(4)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="misbridge-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sys.stdout.write(
        f"crash harness: {len(points)} points x {args.runs} runs, seed {seed}, {args.jobs} lane(s), "
        f"{args.pos_lanes} POS lane(s) per daemon, workdir {workdir}\n"
    )
    started = time.monotonic()
    results, errors = run_all(
        points, args.runs, seed=seed, jobs=args.jobs, workdir=workdir, progress=not args.quiet,
        bench=_bench(args.pos_lanes),
    )  # fmt: skip
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
                    "pos_lanes": args.pos_lanes,
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
