"""A throw-away Debian 12 root for the package tests: debootstrap once, copy per test, chroot into it.

The base (``debootstrap --variant=minbase bookworm`` plus python3.11, libusb and the standalone
sysusers) is made once into ``build/deb/chroot-base`` and copied for each test (about 1 s). A
copy gets ``/proc`` and ``/dev`` (for the simulators' ptys) and a ``policy-rc.d`` that refuses
every service action, as on a build box: there is no systemd as PID 1 here, so the package's
restart step is played by the test (SIGTERM, then a new start, as ``systemctl restart`` does).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Final

from tests.system.tools import REPO

DEB_DIR: Final = REPO / "build" / "deb"
BASE: Final = DEB_DIR / "chroot-base"
MIRROR: Final = os.environ.get("MISBRIDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES: Final = "python3.11,libusb-1.0-0,systemd-standalone-sysusers"
ENV: Final = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


def ensure_base() -> Path:
    """The debootstrapped base, made on first use (about 30 s with the network)."""
    if (BASE / "usr" / "bin" / "python3.11").exists():
        return BASE
    partial = BASE.with_name("chroot-base.partial")
    shutil.rmtree(partial, ignore_errors=True)
    DEB_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # noqa: S603 - fixed argv
        ["debootstrap", f"--include={BASE_PACKAGES}", "--variant=minbase", "bookworm", str(partial), MIRROR],  # noqa: S607
        check=True,
        capture_output=True,
    )
    partial.rename(BASE)
    return BASE


class Chroot:
    """One copy of the base with /proc and /dev mounted; :meth:`close` unmounts and removes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        if mounts_under(root):
            raise RuntimeError(f"{root} still has mounts from an earlier run: umount -R -l them first")
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["cp", "-a", str(ensure_base()), str(root)], check=True)  # noqa: S603, S607
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)  # noqa: S603, S607
        subprocess.run(["mount", "--rbind", "/dev", str(root / "dev")], check=True)  # noqa: S603, S607
        subprocess.run(["mount", "--make-rslave", str(root / "dev")], check=True)  # noqa: S603, S607
        policy = root / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\n# package tests: no service starts or restarts here\nexit 101\n")
        policy.chmod(0o755)

    def path(self, inside: str) -> Path:
        """The host path of ``inside`` (an absolute path in the chroot)."""
        return self.root / inside.lstrip("/")

    def run(self, command: str, *, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``command`` with sh in the chroot; its output is returned (and shown when ``check`` fails)."""
        result = subprocess.run(  # noqa: S603 - the test's own commands
            ["chroot", str(self.root), "sh", "-c", command],  # noqa: S607
            capture_output=True,
            text=True,
            env=ENV,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{command!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def spawn(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``command`` in the chroot; ``exec`` keeps the program itself the process (signals reach it)."""
        with log.open("ab") as out:
            return subprocess.Popen(  # noqa: S603 - the test's own commands
                ["chroot", str(self.root), "sh", "-c", f"exec {command}"],  # noqa: S607
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
            )

    def kill_processes(self) -> None:
        """SIGKILL every process whose root is this copy (what the test started, and their children)."""
        root = str(self.root.resolve())
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "root") == root:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue  # gone meanwhile, or not ours to read

    def close(self) -> None:
        """Stop what runs in it, unmount (lazily: a straggler may still hold /dev) and remove the copy."""
        self.kill_processes()
        for mount in ("dev", "proc"):
            subprocess.run(["umount", "-R", "-l", str(self.root / mount)], check=False)  # noqa: S603, S607
        # Never remove a tree that still has a mount in it: through a bind of /dev that would
        # delete the host's device nodes.
        if not mounts_under(self.root):
            shutil.rmtree(self.root, ignore_errors=True)


def mounts_under(root: Path) -> list[str]:
    """The mount points at or below ``root`` (from /proc/self/mountinfo)."""
    prefix = str(root.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if point == prefix or point.startswith(prefix + "/")]
