"""R3: crash the daemon at every one of its crash points, restart it, and find 0 lost, 0 doubled, 0 stuck, 0 key.

The harness forks daemons, so it runs in its own process (``python -m tests.crash.harness``), never
inside pytest. ``make test`` runs every point x 20; ``make soak`` (``-m soak``) every point x 200.
``make soak`` always prints the table (as the fault table does); ``make test`` prints it on failure
and with ``pytest -s``. docs/reliability.md has measured ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from misbridge.host.crashpoints import DAEMON_POINTS
from tests.crash.checker import COLUMNS as VIOLATIONS

ROOT = Path(__file__).resolve().parents[2]


def run_harness(runs: int, tmp_path: Path, timeout_s: float, capsys: pytest.CaptureFixture[str] | None = None) -> None:
    report = tmp_path / "crash.json"
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tests.crash.harness", "--points", "all", "--runs", str(runs),
         "--json", str(report), "--workdir", str(tmp_path / "work"), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    if capsys is not None:
        with capsys.disabled():  # the soak's deliverable is this table, shown even when all is well
            sys.stdout.write("\n" + completed.stdout)
    else:
        sys.stdout.write(completed.stdout)
    sys.stderr.write(completed.stderr[-20_000:])
    assert completed.returncode == 0, completed.stdout[-20_000:] + completed.stderr[-5_000:]
    rows = {row["point"]: row for row in json.loads(report.read_text(encoding="utf-8"))["rows"]}
    assert len(DAEMON_POINTS) >= 18
    assert sorted(rows) == sorted(DAEMON_POINTS)
    for point in DAEMON_POINTS:
        row = rows[point]
        assert row["runs"] == runs, row
        assert row["reached"] == runs, f"{point} was not reached in every run: {row}"
        assert all(row[column] == 0 for column in VIOLATIONS), row


@pytest.mark.timeout(1200)
def test_every_crash_point_20_runs(tmp_path: Path) -> None:
    run_harness(20, tmp_path, timeout_s=1150)


@pytest.mark.soak
@pytest.mark.timeout(4 * 3600)
def test_every_crash_point_200_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_harness(200, tmp_path, timeout_s=4 * 3600 - 60, capsys=capsys)
