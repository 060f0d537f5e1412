"""Run :mod:`tests.fuzz.driver` in a child process and read back what it measured.

libFuzzer ends its process when the runs are done, so each run gets its own interpreter.  The
child runs with a fixed hash seed and, where ``setarch -R`` works, without address-space
randomisation: atheris feeds the operands of Python comparisons to libFuzzer, and object addresses
among them would otherwise make two runs with the same seed drift apart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["FuzzRun", "run_fuzzer"]

ROOT = Path(__file__).resolve().parents[2]
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.MULTILINE)
_EXECUTED = re.compile(r"^stat::number_of_executed_units: (\d+)", re.MULTILINE)
_STATUS = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/")
# What libFuzzer saves itself when a run dies: a crash, a hang past the per-input timeout, memory.
_ARTIFACTS = ("crash-*", "timeout-*", "oom-*", "leak-*")


@dataclass(frozen=True)
class FuzzRun:
    """What one run of a target measured."""

    target: str
    executions: int
    seconds: float
    coverage: int
    features: int
    corpus: int
    findings: list[dict[str, Any]]
    exit_code: int
    workdir: Path
    log_tail: str

    def summary(self) -> str:
        """One line for people: executions, time, coverage and findings."""
        rate = self.executions / self.seconds if self.seconds else 0.0
        return (
            f"fuzz {self.target}: {self.executions} executions in {self.seconds:.1f} s ({rate:.0f}/s), "
            f"cov {self.coverage}, ft {self.features}, corpus {self.corpus}, {len(self.findings)} findings"
        )

    def describe_findings(self) -> str:
        """Each finding with where it came from and its reproducer file."""
        return "\n".join(
            f"  {f['error']} at {f['where']}: {f['message']} (reproducer {self.workdir / f['reproducer']}, "
            f"{f['size']} bytes)"
            for f in self.findings
        )


@cache
def _no_aslr_prefix() -> tuple[str, ...]:
    setarch = shutil.which("setarch")
    if setarch is None:
        return ()
    prefix = (setarch, os.uname().machine, "-R")
    # A sandbox may forbid the personality() call; then run with randomisation.
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)  # noqa: S603 - fixed arguments
    return prefix if probe.returncode == 0 else ()


def run_fuzzer(target: str, *, runs: int, seed: int, workdir: Path, timeout_s: float) -> FuzzRun:
    """Fuzz ``target`` for ``runs`` executions with libFuzzer seed ``seed``; files go to ``workdir``.

    Raises:
        subprocess.TimeoutExpired: the run took longer than ``timeout_s``.
    """
    command = [
        *_no_aslr_prefix(),
        sys.executable, "-m", "tests.fuzz.driver", target,
        "--runs", str(runs), "--seed", str(seed), "--workdir", str(workdir),
        # No reloading of the corpus folder on a timer: the run depends on its inputs only.
        "--", "-reload=0",
    ]  # fmt: skip
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": path}
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "libfuzzer.log"
    started = time.monotonic()
    # Into a file as it goes: `tail -f DIR/libfuzzer.log` shows a long run's progress.
    with log_path.open("w", encoding="utf-8") as log_file:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
        )
    seconds = time.monotonic() - started
    log = log_path.read_text(encoding="utf-8", errors="replace")
    return FuzzRun(
        target=target,
        executions=_executions(log),
        seconds=seconds,
        coverage=_status(log, 1),
        features=_status(log, 2),
        corpus=_status(log, 3),
        findings=_findings(workdir),
        exit_code=done.returncode,
        workdir=workdir,
        log_tail=log[-3000:],
    )


def _executions(log: str) -> int:
    # libFuzzer's final statistics count every execution, seeds included; "Done N runs" too.
    executed = _EXECUTED.findall(log)
    if executed:
        return int(executed[-1])
    done = _DONE.findall(log)
    return int(done[-1][0]) if done else 0


def _status(log: str, group: int) -> int:
    found = _STATUS.findall(log)
    return int(found[-1][group - 1]) if found else 0


def _findings(workdir: Path) -> list[dict[str, Any]]:
    index = workdir / "findings.json"
    findings: list[dict[str, Any]] = json.loads(index.read_text(encoding="utf-8")) if index.exists() else []
    for pattern in _ARTIFACTS:
        for artifact in sorted(workdir.glob(pattern)):
            kind = artifact.name.split("-", 1)[0]
            findings.append(
                {"error": f"libFuzzer {kind}", "where": "see libfuzzer.log", "message": "", "reproducer": artifact.name,
                 "size": artifact.stat().st_size}
            )  # fmt: skip
    return findings
