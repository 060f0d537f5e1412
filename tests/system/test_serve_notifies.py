"""`misbridge serve` speaks the notify protocol the unit relies on (Type=notify, WatchdogSec=).

A real process with a datagram socket as its NOTIFY_SOCKET: READY=1 once serving, WATCHDOG=1
at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM, then exit 0. Every message must come from
the main process itself (the unit has NotifyAccess=main); SO_PASSCRED tells the sender.
Skipped until the command line calls misbridge.host.systemd (the wiring lives in cli.py/daemon.py).
"""

from __future__ import annotations

import ast
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.tools import REPO


def _wired() -> bool:
    for module in ("cli", "daemon"):
        tree = ast.parse((REPO / "misbridge" / "app" / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                node.module == "misbridge.host.systemd"
                or (node.module == "misbridge.host" and any(alias.name == "systemd" for alias in node.names))
            ):
                return True
            if isinstance(node, ast.Import) and any(alias.name == "misbridge.host.systemd" for alias in node.names):
                return True
    return False


pytestmark = pytest.mark.skipif(not _wired(), reason="misbridge serve does not call misbridge.host.systemd yet")


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    with tempfile.TemporaryDirectory(prefix="sdn-") as folder:  # AF_UNIX paths: 108 bytes at most
        address = str(Path(folder) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with sock:
            yield sock, address


def _receive(sock: socket.socket, deadline: float) -> tuple[int, str]:
    """(sender pid, message) of the next datagram."""
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("iII")))
    pid = next(
        (struct.unpack("iII", d[: struct.calcsize("iII")])[0] for lvl, typ, d in ancillary
         if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS),
        -1,
    )  # fmt: skip
    return pid, data.decode()


def _until(sock: socket.socket, prefix: str, deadline: float) -> list[tuple[int, str]]:
    seen = []
    while True:
        seen.append(_receive(sock, deadline))
        if seen[-1][1].startswith(prefix):
            return seen


def test_ready_watchdog_stopping_from_the_main_process(
    notify_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, address = notify_socket
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISBRIDGE_", "WATCHDOG_", "NOTIFY_"))}
    env |= {
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "400000",  # a ping every 0.2 s
        "MISBRIDGE_API__SOCKET_PORT": "0",
        "MISBRIDGE_API__HTTP_PORT": "0",
    }
    log = tmp_path / "serve.log"
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "misbridge", "serve", "--simulators"],
            env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        before_ready = _until(sock, "READY=1", deadline)
        pings = [_receive(sock, deadline) for _ in range(2)]
        process.send_signal(signal.SIGTERM)
        after_term = _until(sock, "STOPPING=1", deadline)
        extension = _until(sock, "EXTEND_TIMEOUT_USEC=", deadline)
        assert process.wait(timeout=60) == 0, log.read_text(encoding="utf-8")[-3000:]
    except TimeoutError:
        pytest.fail(f"no notification in time; misbridge said:\n{log.read_text(encoding='utf-8')[-3000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    messages = before_ready + pings + after_term
    assert {pid for pid, _ in messages} == {process.pid}, messages
    assert [m for _, m in pings] == ["WATCHDOG=1", "WATCHDOG=1"]
    assert all(m in ("WATCHDOG=1",) for _, m in after_term[:-1]), after_term
    # The stop may wait for a sale in flight: systemd is asked for api.pos_deadline_s (300 s) more.
    assert extension[-1] == (process.pid, "EXTEND_TIMEOUT_USEC=300000000"), extension
