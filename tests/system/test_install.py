"""`make install DESTDIR=...` produces a complete, private, relocatable tree (one slow test).

It builds the wheel, creates the venv with the interpreter the POS runs (Debian's python3)
and downloads the dependencies, so it takes about 30-60 s and needs the package index.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from misbridge import __version__
from tests.system.tools import REPO, parse_unit, values

INSTALL_PY = Path("/usr/bin/python3")

#: Path in the tree -> (permission bits, what it is).
EXPECTED = {
    "usr/bin/misbridge": 0o755,
    "usr/bin/misbridge-sim": 0o755,
    "usr/lib/systemd/system/misbridge.service": 0o644,
    "usr/lib/systemd/system/misbridge-reconcile.service": 0o644,
    "usr/lib/systemd/system/misbridge-reconcile.timer": 0o644,
    "usr/lib/udev/rules.d/99-misbridge-pinpad.rules": 0o644,
    "usr/lib/sysusers.d/misbridge.conf": 0o644,
    "usr/share/doc/misbridge/operations.md": 0o644,
    "etc/misbridge": 0o755,
    "etc/misbridge/credentials": 0o700,
    "etc/misbridge/misbridge.toml.example": 0o644,
    "opt/misbridge/pyvenv.cfg": 0o644,
}


def _clean_env() -> dict[str, str]:
    # An outer `make test` exports its own flags and jobserver; the inner make must not see them.
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR", "PREFIX", "OPTDIR", "VIRTUAL_ENV", "PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MISBRIDGE_")}


def _run(argv: list[str], *, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Fixed argv built here: nothing untrusted reaches the command line.
    return subprocess.run(  # noqa: S603
        argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, env=_clean_env(),
        cwd=cwd, timeout=timeout,
    )  # fmt: skip


@pytest.mark.timeout(900)
def test_make_install_into_a_staging_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make = shutil.which("make")
    if make is None or not INSTALL_PY.exists():
        pytest.skip("needs make and Debian's /usr/bin/python3 (apt-get install make python3)")
    root = tmp_path / "root"
    result = _run(
        [make, "--no-print-directory", "install", f"DESTDIR={root}", f"INSTALL_BUILDDIR={tmp_path / 'build'}"],
        cwd=REPO,
        timeout=840,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    for relative, mode in EXPECTED.items():
        path = root / relative
        assert path.exists(), f"{relative} missing"
        assert stat.S_IMODE(path.lstat().st_mode) == mode, f"{relative}: {oct(path.lstat().st_mode)}"

    everything = [p for p in root.rglob("*") if not p.is_symlink()]
    assert not [p for p in everything if p.stat().st_mode & stat.S_IWOTH], "world-writable files"
    # Nothing is left pointing into the staging folder: the tree works once copied to /.
    leaked = [p for p in everything if p.is_file() and str(root).encode() in p.read_bytes()]
    assert leaked == []
    # Secrets and the live configuration are the site's: install never creates them.
    assert list((root / "etc/misbridge/credentials").iterdir()) == []
    assert not (root / "etc/misbridge/misbridge.toml").exists()

    unit = parse_unit((root / "usr/lib/systemd/system/misbridge.service").read_text(encoding="utf-8"))
    binary = values(unit, "ExecStart")[0].split()[0]
    assert binary == "/usr/bin/misbridge"
    assert os.access(root / binary.lstrip("/"), os.X_OK)
    for name in ("misbridge.service", "misbridge-reconcile.service", "misbridge-reconcile.timer"):
        installed = (root / "usr/lib/systemd/system" / name).read_text(encoding="utf-8")
        assert installed == (REPO / "systemd" / name).read_text(encoding="utf-8"), name

    launcher = root / "usr/bin/misbridge"
    version = _run([str(launcher), "--version"], timeout=60)
    assert (version.returncode, version.stdout.strip()) == (0, f"misbridge {__version__}"), version.stderr
    example = root / "etc/misbridge/misbridge.toml.example"
    # check-config runs serve's check: the signing key must be where the unit would provide it.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ebuy-signing-key").write_text("0123456789abcdef\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    checked = _run([str(launcher), "check-config", "--config", str(example)], timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    sim = _run([str(root / "usr/bin/misbridge-sim"), "--help"], timeout=60)
    assert sim.returncode == 0, sim.stderr
