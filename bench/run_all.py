"""Run every bench script (each as its own process) and print the one combined table.

``make bench`` calls this. Each script prints its own table as it finishes; the combined table,
the machine and the command come last. Options scale the run (defaults: what ``make bench`` does,
about 8 minutes on 2 cores: 1 000 redemptions and a 10 000-redemption growth run, 60 s idle,
20 per fault scenario, 200 each of voids, refunds and QR sales, 10 starts for the sign-in lines,
a 12 000-sale day reconciled 3 times, 8 lanes x 100 sales per phase).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Row, format_table, load_rows, machine_facts

#: The card-sale run against a backend simulator serving https (a test CA): the field's case.
HTTPS_RUN = "bench.redemptions https"


def _https_rows(rows: list[Row]) -> list[Row]:
    """Of the https run, only what TLS may change: the CPU per sale and the added latency."""
    kept = [row for row in rows if row.name.startswith(("1b.", "2."))]
    return [
        Row(row.name.replace("1b.", "1b. (https)", 1), row.goal, row.measured, row.verdict, row.note) for row in kept
    ]


def main() -> int:
    """Run the scripts; 0 when all of them ran (a missed goal is a result, not a failure)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redemptions", type=int, default=1000)
    parser.add_argument("--growth", type=int, default=10000)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--fault-count", type=int, default=20)
    parser.add_argument("--link-fault-count", type=int, default=200)
    parser.add_argument("--reconcile-records", type=int, default=12_000)
    parser.add_argument("--reconcile-repeat", type=int, default=3)
    parser.add_argument("--actions", type=int, default=200, help="voids, refunds and QR sales each (bench.actions)")
    parser.add_argument("--starts", type=int, default=10, help="daemon starts for the sign-in lines (bench.actions)")
    parser.add_argument("--lanes", type=int, default=8)
    # 100, not bench.lanes' own 200: its two paced phases last sales x 0.5 s each, and make bench stays ~8 minutes.
    parser.add_argument("--lane-sales", type=int, default=100, help="sales per lane in each phase (bench.lanes)")
    parser.add_argument(
        "--https-redemptions", type=int, default=300, help="redemptions against an https backend (0: skip that run)"
    )
    args = parser.parse_args()
    scripts: list[tuple[str, list[str]]] = [
        ("bench.codec", []),
        ("bench.startup", ["--idle-s", str(args.idle_s)]),
        ("bench.redemptions", ["--redemptions", str(args.redemptions), "--growth", str(args.growth)]),
        *(
            [(HTTPS_RUN, ["--redemptions", str(args.https_redemptions), "--growth", "0", "--https"])]
            if args.https_redemptions > 0
            else []
        ),
        ("bench.faults", ["--count", str(args.fault_count), "--link-count", str(args.link_fault_count)]),
        ("bench.actions", ["--count", str(args.actions), "--starts", str(args.starts)]),
        ("bench.reconcile", ["--records", str(args.reconcile_records), "--repeat", str(args.reconcile_repeat)]),
        ("bench.lanes", ["--lanes", str(args.lanes), "--sales", str(args.lane_sales)]),
    ]
    order = [
        "bench.redemptions",
        HTTPS_RUN,
        "bench.startup",
        "bench.codec",
        "bench.faults",
        "bench.reconcile",
        "bench.lanes",
        "bench.actions",
    ]
    rows: dict[str, list[Row]] = {}
    failed: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="misbridge-bench-rows-") as tmp:
        for module, extra in scripts:
            out = Path(tmp) / f"{module}.json"
            runnable = module.split()[0]  # "bench.redemptions https" runs bench.redemptions
            print(f"== {runnable} {' '.join(extra)}", flush=True)
            done = subprocess.run([sys.executable, "-m", runnable, "--json", str(out), *extra], check=False)  # noqa: S603
            if done.returncode != 0 or not out.exists():
                failed.append(module)
                rows[module] = [Row(module, "", f"FAILED (exit {done.returncode})", "n/a")]
            else:
                rows[module] = load_rows(out)
                if module == HTTPS_RUN:
                    rows[module] = _https_rows(rows[module])
            print(flush=True)
    facts = machine_facts()
    print("== misbridge benchmark")
    print(format_table([row for module in order for row in rows.get(module, [])]))
    print(
        f"\nmachine: nproc {facts['nproc']}, {facts['cpu']}, Python {facts['python']}; "
        f"command: {' '.join(['python -m bench.run_all', *sys.argv[1:]])}; took {time.monotonic() - started:.0f} s"
    )
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
