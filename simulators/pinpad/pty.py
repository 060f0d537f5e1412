"""A pseudo-terminal that plays the PIN pad's serial port.

The daemon opens the *slave* side (``/dev/pts/N``, or the stable ``--link`` symlink a udev rule
would give a real pad); the simulator drives the *master* side with ``loop.add_reader`` on a
non-blocking fd. A thread blocked in ``os.read(master)`` would keep the pty alive after close
and hide the unplug from the daemon (python-ecosystem-notes.md §2), hence no threads here.

A real pad sees the host open its port (DTR rises on USB CDC-ACM) and starts a fresh link
(docs/device-protocol.md §3 *Reset*). A pty has no DTR, so the master runs in packet mode
(``TIOCPKT``) with ``EXTPROC`` set on the slave: every ``tcsetattr`` the daemon makes when it
opens the port then reaches the master as a ``TIOCPKT_IOCTL`` status packet, reported through
``on_open``.

:class:`PtyPort` is a :class:`~misbridge.transport.base.ByteTransport`, so the pad drives it with
the daemon's own :class:`~misbridge.device.pump.LinkPump` (and tests can swap in a memory pipe).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import termios
import tty
from collections.abc import Callable
from pathlib import Path

from misbridge.errors import DeviceNotConnected

_LOGGER = logging.getLogger(__name__)

READ_CHUNK = 4096
#: Packet-mode status bit: the slave's termios changed (linux/tty.h TIOCPKT_IOCTL).
TIOCPKT_IOCTL = 0x40
#: Packet-mode prefix of a data packet.
TIOCPKT_DATA = 0x00
_EXTPROC = getattr(termios, "EXTPROC", 0o200000)


class PtyPort:
    """One pty pair whose master end is served on the running event loop; a ``ByteTransport``.

    :meth:`read` returns what the daemon wrote to the slave; it raises DeviceNotConnected once
    the port is closed (:meth:`close`, or an error or end of file on the master).

    Args:
        on_open: called when the daemon (re)opens or reconfigures the slave; the bytes read
            before it and not yet taken by :meth:`read` are dropped (they belong to the old link).
        link: optional path of a symlink to the slave, replaced atomically if it exists.
    """

    def __init__(
        self,
        *,
        on_open: Callable[[], None] | None = None,
        link: str | os.PathLike[str] | None = None,
    ) -> None:
        self._on_open = on_open
        self._link = Path(link) if link is not None else None
        self._master = -1
        self._slave = -1
        self._slave_path = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = bytearray()
        self._writer_armed = False
        self._inbox = bytearray()
        # Set when bytes arrive or the port closes (wakes read), and when _pending empties (drain).
        self._arrived = asyncio.Event()
        self._flushed = asyncio.Event()

    @property
    def slave_path(self) -> str:
        """``/dev/pts/N`` of the open pty; empty before :meth:`open`."""
        return self._slave_path

    @property
    def link_path(self) -> str | None:
        """The stable symlink to the slave, when one was requested."""
        return str(self._link) if self._link is not None else None

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._master >= 0

    def open(self) -> str:
        """Create the pty in raw mode, start reading the master and return the slave path.

        Raises:
            OSError: the ``link`` symlink cannot be made (its folder is missing or not writable); the pty is closed.
        """
        if self.is_open:
            return self._slave_path
        self._loop = asyncio.get_running_loop()
        self._master, self._slave = os.openpty()
        # Raw before the daemon opens the slave: no echo, no CR/LF mangling, 8-bit clean.
        tty.setraw(self._slave)
        _enable_open_detection(self._master, self._slave)
        os.set_blocking(self._master, False)
        self._slave_path = os.ttyname(self._slave)
        self._loop.add_reader(self._master, self._read_ready)
        if self._link is not None:
            try:
                _replace_symlink(self._link, self._slave_path)
            except OSError:
                self.close()  # no half-open pad: the pty goes with the link it could not get
                raise
        _LOGGER.debug("pty open: %s", self._slave_path)
        return self._slave_path

    async def read(self) -> bytes:
        """The next bytes the daemon wrote (all that arrived since the last call).

        Raises:
            DeviceNotConnected: the port is closed.
        """
        while not self._inbox:
            if not self.is_open:
                raise DeviceNotConnected(f"pty {self._slave_path or '(never opened)'} is closed")
            self._arrived.clear()
            await self._arrived.wait()
        data = bytes(self._inbox)
        self._inbox.clear()
        return data

    def write(self, data: bytes) -> None:
        """Send ``data`` to the daemon; buffered if the pty is full.

        Raises:
            DeviceNotConnected: the port is closed.
        """
        if not self.is_open:
            raise DeviceNotConnected(f"pty {self._slave_path or '(never opened)'} is closed")
        if data:
            self._pending += data
            self._flush()

    async def drain(self) -> None:
        """Wait until the bytes buffered for the daemon are in the pty (or the port closed)."""
        while self._pending and self.is_open:
            self._flushed.clear()
            await self._flushed.wait()

    async def aclose(self) -> None:
        """:meth:`close`, for the ``ByteTransport`` contract."""
        self.close()

    def discard_output(self) -> None:
        """Drop bytes queued for the daemon but not yet written (the link was reset)."""
        self._pending.clear()
        if self._writer_armed and self._loop is not None and self.is_open:
            self._loop.remove_writer(self._master)
        self._writer_armed = False

    def close(self) -> None:
        """Unplug: stop reading, close master and slave, remove our symlink.

        The daemon's next read on the slave then fails (SerialException / EIO), as with a
        real USB pad pulled out. Idempotent.
        """
        if not self.is_open:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._master)
        if self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False
        for fd in (self._slave, self._master):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1
        self._pending.clear()
        self._inbox.clear()
        self._arrived.set()
        self._flushed.set()
        if self._link is not None:
            _remove_symlink_to(self._link, self._slave_path)
        _LOGGER.debug("pty closed: %s", self._slave_path)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            # EIO: no process holds the slave open (we keep ours, so this means a real fault).
            _LOGGER.debug("pty master read failed: %s", err)
            self.close()
            return
        if not data:
            self.close()
            return
        if data[0] == TIOCPKT_DATA:
            if len(data) > 1:
                self._inbox += data[1:]
                self._arrived.set()
        elif data[0] & TIOCPKT_IOCTL and self._on_open is not None:
            self._inbox.clear()
            self._on_open()

    def _flush(self) -> None:
        assert self._loop is not None
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            written = 0
        except OSError as err:
            _LOGGER.debug("pty master write failed: %s", err)
            self.close()
            return
        del self._pending[:written]
        if self._pending and not self._writer_armed:
            self._loop.add_writer(self._master, self._flush)
            self._writer_armed = True
        elif not self._pending and self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False
        if not self._pending:
            self._flushed.set()


def _enable_open_detection(master: int, slave: int) -> None:
    attrs = termios.tcgetattr(slave)
    attrs[3] |= _EXTPROC  # lflag: report termios changes to the master
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))


def _replace_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink()  # leave the folder as it was
        raise


def _remove_symlink_to(link: Path, target: str) -> None:
    # Only our own link: a newer simulator may already have pointed it at its pty.
    with contextlib.suppress(OSError):
        if link.is_symlink() and os.readlink(link) == target:
            link.unlink()
