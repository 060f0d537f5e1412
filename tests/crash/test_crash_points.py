"""R3: crash the daemon at every one of its crash points, restart it, and find 0 lost, 0 doubled, 0 stuck, 0 key.

The harness forks daemons, so it runs in its own process (``python -m tests.crash.harness``), never
inside pytest. ``make test`` runs every point x 10; ``make soak`` (``-m soak``) every point x 200.
``make soak`` always prints the table (as the fault table does); ``make test`` prints it on failure
and with ``pytest -s``. docs/reliability.md has measured ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from misbridge.host.crashpoints import DAEMON_POINTS
from tests.crash.checker import COLUMNS as VIOLATIONS
from tests.crash.invoke import run_harness


def check_every_point(
    runs: int, tmp_path: Path, timeout_s: float, capsys: pytest.CaptureFixture[str] | None = None
) -> None:
    rows = {row["point"]: row for row in run_harness([], runs, tmp_path, timeout_s, capsys)["rows"]}
    assert len(DAEMON_POINTS) >= 18
    assert sorted(rows) == sorted(DAEMON_POINTS)
    for point in DAEMON_POINTS:
        row = rows[point]
        assert row["runs"] == runs, row
        assert row["reached"] == runs, f"{point} was not reached in every run: {row}"
        assert all(row[column] == 0 for column in VIOLATIONS), row


@pytest.mark.timeout(900)
def test_every_crash_point_10_runs(tmp_path: Path) -> None:
    # x 10 keeps make test within its 10 minutes on 2 cores (x 20 took 103 s of it); the soak runs x 200.
    check_every_point(10, tmp_path, timeout_s=850)


@pytest.mark.soak
@pytest.mark.timeout(4 * 3600)
def test_every_crash_point_200_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_every_point(200, tmp_path, timeout_s=4 * 3600 - 60, capsys=capsys)
