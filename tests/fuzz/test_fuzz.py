"""The fuzz runs: a short one per target in every test run, 10⁶ executions each under ``make soak``.

Each run is a child process (:mod:`tests.fuzz.runner`); it must finish its executions, reach some
coverage, and find nothing.  A failure lists every finding with its reproducer file; turn each
into a case of tests/fuzz/test_regressions.py.  ``make fuzz`` runs the long ones alone and shows
their figures (docs/fuzzing.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.runner import FuzzRun, run_fuzzer

#: libFuzzer's seed for every run here: the same seed replays the same run.
SEED = 1
#: Executions of the short runs: together they stay well under 20 s on a busy 2-core machine.
QUICK_RUNS = {"link": 2_000, "envelope": 3_000, "request": 3_000}
#: Issue 10: at least 10⁶ executions of each target.
SOAK_RUNS = 1_000_000


def _check(run: FuzzRun, runs: int) -> None:
    print(f"\n{run.summary()}")  # noqa: T201 - the figures are the point of the run
    assert run.exit_code == 0, f"libFuzzer exited {run.exit_code}:\n{run.log_tail}"
    assert run.executions >= runs, f"only {run.executions} executions:\n{run.log_tail}"
    assert run.coverage > 0, "no coverage: misbridge was not instrumented"
    assert not run.findings, f"{run.summary()}\n{run.describe_findings()}"


@pytest.mark.parametrize("target", list(QUICK_RUNS))
def test_a_short_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    runs = QUICK_RUNS[target]
    _check(run_fuzzer(target, runs=runs, seed=SEED, workdir=tmp_path, timeout_s=100), runs)


@pytest.mark.soak
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("target", list(QUICK_RUNS))
def test_a_million_fuzz_executions_find_nothing(target: str, tmp_path: Path) -> None:
    print(f"\nfuzz {target}: {SOAK_RUNS} executions, progress in {tmp_path / 'libfuzzer.log'}", flush=True)  # noqa: T201
    _check(run_fuzzer(target, runs=SOAK_RUNS, seed=SEED, workdir=tmp_path, timeout_s=4 * 3600 - 60), SOAK_RUNS)
