"""``misbridge-sim pinpad --link PATH`` where PATH cannot be made: one sentence with the fix, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _pinpad(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "simulators", "pinpad", *args],
        capture_output=True, text=True, timeout=30, check=False, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip


def test_a_link_in_a_missing_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "not-made"
    done = _pinpad("--link", str(folder / "mispos"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [sentence] = done.stderr.strip().splitlines()
    assert f"the folder {folder} does not exist" in sentence
    assert f"mkdir -p {folder}" in sentence
    assert "existing folder" in sentence
    assert not folder.exists()  # nothing made behind the technician's back


def test_a_link_that_is_a_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    taken = tmp_path / "a-folder"
    taken.mkdir()
    done = _pinpad("--link", str(taken))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [sentence] = done.stderr.strip().splitlines()
    assert f"cannot make the link {taken}" in sentence
    assert "give a new file name" in sentence
    assert [entry.name for entry in tmp_path.iterdir()] == ["a-folder"]  # no temporary symlink left behind
    assert list(taken.iterdir()) == []
