"""``misbridge-sim customer SOCKET JSON...``: the pad simulator's control socket from a shell, no netcat."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "simulators", *args],
        capture_output=True, text=True, timeout=30, check=False, cwd=REPO_ROOT, env=ENV,
    )  # fmt: skip


@pytest.fixture
def control(tmp_path: Path) -> Iterator[Path]:
    """A running pad simulator's control socket."""
    socket_path = tmp_path / "pad.ctl"
    pad = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "simulators", "pinpad", "--link", str(tmp_path / "pad"), "--control", str(socket_path)],
        cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            assert pad.poll() is None, "the pad simulator exited"
            assert time.monotonic() < deadline, "the pad simulator did not start"
            time.sleep(0.05)
        yield socket_path
    finally:
        pad.terminate()
        pad.wait(timeout=10)


def test_each_line_is_sent_and_answered(control: Path) -> None:
    done = _sim("customer", str(control), '{"card": "prepaid", "pin": "000000"}', '{"step": "choice", "option": 2}')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['{"ok": true}', '{"ok": true}']


def test_a_refused_line_exits_1_with_the_pads_reason(control: Path) -> None:
    done = _sim("customer", str(control), '{"card": "nosuch"}')
    assert done.returncode == 1
    assert '"ok": false' in done.stdout
    assert "nosuch" in done.stdout


def test_not_json_and_no_socket_are_one_sentence(tmp_path: Path) -> None:
    bad = _sim("customer", str(tmp_path / "none.ctl"), "{card: prepaid}")
    assert (bad.returncode, "Traceback" in bad.stderr) == (1, False)
    assert "not JSON" in bad.stderr
    missing = _sim("customer", str(tmp_path / "none.ctl"), '{"card": "prepaid"}')
    assert (missing.returncode, "Traceback" in missing.stderr) == (2, False)
    assert "cannot reach the pad's control socket" in missing.stderr
