"""``python -m bench.lanes --quick`` runs end to end and prints rows that parse (timings are not judged).

The bench runs as a process of its own, as ``make bench`` runs it: real simulators, a real
``misbridge serve`` subprocess with two lanes, the POS loops over the socket door.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bench.common import load_rows
from bench.lanes import QUICK_LANES, QUICK_SALES, Measured, Phase, rows

REPO = Path(__file__).resolve().parents[2]
P50_P99 = re.compile(r"^p50 [\d.]+ (ms|us), p99 [\d.]+ (ms|us)$")


def run_quick(json_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.lanes", "--quick", "--json", str(json_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_quick_run_prints_every_row_and_writes_them_as_json(tmp_path: Path) -> None:
    json_path = tmp_path / "lanes.json"
    done = run_quick(json_path)
    assert done.returncode == 0, done.stderr[-2000:]
    by_name = {row.name: row for row in load_rows(json_path)}
    lanes = [f"8b. {QUICK_LANES} lanes: lane{n}" for n in range(1, QUICK_LANES + 1)]
    for name in ["8a. one lane alone", *lanes, f"8c. {QUICK_LANES} lanes: every sale"]:
        assert P50_P99.match(by_name[name].measured), by_name[name]
        assert name in done.stdout
    ratio = by_name[f"8d. p50 {QUICK_LANES} lanes / p50 one lane"]
    assert re.fullmatch(r"[\d.]+x (PASS|MISS)", ratio.verdict)
    assert re.fullmatch(r"[\d.]+ ms \(2 lanes\), [\d.]+ ms \(one lane\)", by_name["8e. daemon CPU per sale"].measured)
    assert re.fullmatch(r"[\d.]+ MB", by_name["8f. daemon peak RSS"].measured)
    wall = by_name[f"8g. saturation, {QUICK_LANES} lanes x {QUICK_SALES} sales unpaced"]
    assert re.fullmatch(r"[\d.]+ s = \d+ sales/s", wall.measured)


def _phase(lanes: int, seconds: float) -> Phase:
    return Phase({lane: [seconds] * 10 for lane in range(1, lanes + 1)}, cpu_s=0.1 * lanes, wall_s=1.0)


def test_the_goal_is_the_p50_of_every_lane_within_1_2_times_one_lane_alone() -> None:
    def goal_row(together_s: float) -> str:
        measured = Measured(
            2, 10, alone=_phase(1, 0.010), together=_phase(2, together_s), saturated=_phase(2, together_s)
        )
        return next(r.verdict for r in rows(measured) if r.name.startswith("8d."))

    assert goal_row(0.012) == "1.20x PASS"
    assert goal_row(0.0121) == "1.21x MISS"
