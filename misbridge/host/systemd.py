"""systemd integration without libsystemd: readiness, status, stopping and the watchdog.

The notification protocol is one datagram of ``KEY=value`` lines sent to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace); see
sd_notify(3). Outside systemd the variable is unset and every function here is a no-op, so
``misbridge serve`` behaves the same on a developer's terminal.

The unit (systemd/misbridge.service) is ``Type=notify`` with ``WatchdogSec=``: misbridge says
READY=1 once recovery has finished, pets the watchdog from :func:`watchdog_loop` while its own
self-check passes, and says STOPPING=1 when SIGTERM starts the drain.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

from loguru import logger


def notify(state: str) -> bool:
    """Send ``state`` (newline-separated ``KEY=value`` assignments) to the service manager.

    Returns:
        True if the datagram was sent; False when not running under systemd (no
        ``$NOTIFY_SOCKET``), for an unsupported address, or when sending failed (logged).
        Never raises: a lost notification must not take the daemon down.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]  # abstract namespace
    elif address[0] != "/":
        logger.warning("NOTIFY_SOCKET {!r} is neither a path nor an abstract socket; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as err:
        logger.warning("could not notify systemd ({}): {}", state.split("\n", 1)[0], err)
        return False
    return True


def _one_line(text: str) -> str:
    # A newline would start a new assignment: "STATUS=x\nREADY=1" must not be injectable.
    return " ".join(text.split())


def ready(status_text: str | None = None) -> bool:
    """Tell systemd start-up is complete (``Type=notify`` leaves "activating")."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(status_text)}" if status_text else ""))


def stopping(status_text: str | None = None) -> bool:
    """Tell systemd the service is shutting down (shown as "deactivating" at once)."""
    return notify("STOPPING=1" + (f"\nSTATUS={_one_line(status_text)}" if status_text else ""))


def status(text: str) -> bool:
    """Set the one-line status that ``systemctl status misbridge`` shows."""
    return notify(f"STATUS={_one_line(text)}")


def extend_timeout(seconds: float) -> bool:
    """Ask for ``seconds`` more before the start (or stop) timeout fires (EXTEND_TIMEOUT_USEC)."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")


def watchdog_interval() -> float | None:
    """Seconds between two WATCHDOG=1 pings, or None when systemd's watchdog is off for us.

    Half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3) recommends pinging well within it).
    ``$WATCHDOG_PID``, when set, must be this process: a child that inherited the
    environment (a simulator, a subprocess) must not pet the parent's watchdog.
    """
    usec_text = os.environ.get("WATCHDOG_USEC", "")
    pid_text = os.environ.get("WATCHDOG_PID", "")
    try:
        usec = int(usec_text)
        if pid_text and int(pid_text) != os.getpid():
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


def _healthy(is_healthy: Callable[[], bool]) -> bool:
    try:
        return bool(is_healthy())
    except Exception:  # noqa: BLE001 - a failing self-check is an unhealthy daemon, not a crashed loop
        logger.exception("watchdog self-check raised")
        return False


async def watchdog_loop(is_healthy: Callable[[], bool], *, interval: float | None = None) -> None:
    """Pet systemd's watchdog every ``interval`` seconds while ``is_healthy()`` is true.

    ``interval`` defaults to :func:`watchdog_interval`; when that is None (no watchdog) this
    returns at once. While the self-check fails no ping is sent, so systemd kills and
    restarts the service after ``WatchdogSec=`` unless the check passes again before then.
    Run it as a task and cancel it after the daemon has stopped.
    """
    period = watchdog_interval() if interval is None else interval
    if period is None:
        return
    was_healthy = True
    while True:
        healthy = _healthy(is_healthy)
        if healthy:
            notify("WATCHDOG=1")
            if not was_healthy:
                logger.warning("watchdog self-check passes again; pinging systemd")
        elif was_healthy:
            logger.error("watchdog self-check failed; no longer pinging systemd (it restarts us if this lasts)")
        was_healthy = healthy
        await asyncio.sleep(period)
