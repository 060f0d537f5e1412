"""misbridge.host.systemd against a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from misbridge.host import systemd


class Listener:
    """The service manager's end: a bound SOCK_DGRAM socket that collects what was sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def received(self) -> list[str]:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return messages


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if request.param == "path":
        # A short folder: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path can be longer.
        with tempfile.TemporaryDirectory(prefix="sdn-") as folder:
            address = str(Path(folder) / "notify")
            sock.bind(address)
            monkeypatch.setenv("NOTIFY_SOCKET", address)
            yield Listener(sock)
    else:
        name = f"misbridge-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield Listener(sock)
    sock.close()


def test_not_under_systemd_nothing_is_sent(clean_env: None) -> None:
    assert systemd.notify("READY=1") is False
    assert systemd.ready() is False


def test_ready_alone_and_with_a_status(listener: Listener) -> None:
    assert systemd.ready() is True
    assert systemd.ready("link up") is True
    assert listener.received() == ["READY=1", "READY=1\nSTATUS=link up"]


def test_status_stopping_and_extend_timeout(listener: Listener) -> None:
    systemd.status("recovering 2 transactions")
    systemd.stopping()
    systemd.stopping("draining 1 transaction")
    systemd.extend_timeout(90)
    assert listener.received() == [
        "STATUS=recovering 2 transactions",
        "STOPPING=1",
        "STOPPING=1\nSTATUS=draining 1 transaction",
        "EXTEND_TIMEOUT_USEC=90000000",
    ]


def test_a_status_text_cannot_inject_assignments(listener: Listener) -> None:
    systemd.status("pad gone\nREADY=1")
    assert listener.received() == ["STATUS=pad gone READY=1"]


def test_an_absent_listener_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/misbridge/notify")
    assert systemd.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert systemd.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        (None, None, None),
        ("0", None, None),
        ("ten", None, None),
        ("30000000", "not-a-pid", None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, clean_env: None, usec: str | None, pid: str | None, expected: float | None
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(pid, pid))
    assert systemd.watchdog_interval() == expected


async def test_watchdog_loop_pings_only_while_healthy(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000")  # WatchdogSec=2ms: a ping every millisecond
    answers = iter([True, True, False, False, True])
    done = asyncio.Event()

    def is_healthy() -> bool:
        answer = next(answers, None)
        if answer is None:
            done.set()
            return False
        return answer

    task = asyncio.create_task(systemd.watchdog_loop(is_healthy))
    await asyncio.wait_for(done.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert listener.received() == ["WATCHDOG=1"] * 3


async def test_a_self_check_that_raises_counts_as_unhealthy(listener: Listener) -> None:
    calls = 0
    third = asyncio.Event()

    def is_healthy() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("journal closed")
        if calls >= 3:
            third.set()
        return True

    task = asyncio.create_task(systemd.watchdog_loop(is_healthy, interval=0.001))
    await asyncio.wait_for(third.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert listener.received() == ["WATCHDOG=1"] * (calls - 1)


async def test_without_a_watchdog_the_loop_returns_at_once(clean_env: None) -> None:
    await asyncio.wait_for(systemd.watchdog_loop(lambda: True), timeout=1)
