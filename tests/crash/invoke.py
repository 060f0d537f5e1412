"""Running the crash harness from pytest: it forks daemons, so it runs as a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_harness(
    options: Sequence[str],
    runs: int,
    tmp_path: Path,
    timeout_s: float,
    capsys: pytest.CaptureFixture[str] | None = None,
) -> dict[str, Any]:
    """``python -m tests.crash.harness --points all --runs RUNS OPTIONS…``: its JSON report, once it exited 0.

    The table goes to standard output: with ``capsys`` (the soak) even when all is well, else
    pytest shows it on failure (and with ``-s``).
    """
    report = tmp_path / "crash.json"
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tests.crash.harness", *options, "--points", "all", "--runs", str(runs),
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
    data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    return data
