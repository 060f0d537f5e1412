"""``misbridge probe``: find the PIN pad on this POS and ask it who it is.

Lists the serial ports (with their stable ``/dev/serial/by-id`` names) and the USB devices whose
VID:PID is one of the supported pads of the udev rules, then, with ``--try URL``, sends
DEVICE_INFO through the ``mispos-v1`` driver and prints the pad's model, firmware and serial.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misbridge.config.settings import DeviceSettings
from misbridge.device.base import PadInfo
from misbridge.device.mispos import MisPosV1Driver
from misbridge.errors import DeviceNotConnected, MisbridgeError, PadInUse
from misbridge.transport.base import ByteTransport
from misbridge.transport.registry import ensure_port_free, open_transport

BY_ID_DIR = Path("/dev/serial/by-id")
RULES_NAME = "99-misbridge-pinpad.rules"
#: Where the udev rules may be: the admin's override, the installed copy, the source tree.
RULES_PATHS = (
    Path("/etc/udev/rules.d") / RULES_NAME,
    Path("/usr/lib/udev/rules.d") / RULES_NAME,
    Path(__file__).resolve().parents[2] / "udev" / RULES_NAME,
)
#: ``misbridge probe --try``'s exit status when the pad cannot be opened or did not answer.
EXIT_CANNOT_OPEN = 1
_RULE_IDS = re.compile(r'ATTRS\{idVendor\}=="([0-9a-fA-F]{4})",\s*ATTRS\{idProduct\}=="([0-9a-fA-F]{4})"')


@dataclass(frozen=True)
class SerialPort:
    """One serial port as the probe shows it."""

    device: str
    by_id: tuple[str, ...]
    vid: int | None
    pid: int | None
    description: str
    known_pad: bool


@dataclass(frozen=True)
class UsbPad:
    """A USB device whose VID:PID is a supported pad's."""

    url: str
    vid: int
    pid: int
    product: str


def known_ids(paths: Iterable[Path] = RULES_PATHS) -> set[tuple[int, int]]:
    """The supported VID:PIDs: the ``ATTRS{idVendor}/{idProduct}`` lines of the first rules file found."""
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
        return {(int(v, 16), int(p, 16)) for line in lines for v, p in _RULE_IDS.findall(line)}
    return set()


def _by_id_names(by_id_dir: Path) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    try:
        entries = sorted(by_id_dir.iterdir())
    except OSError:
        return names
    for entry in entries:
        names.setdefault(os.path.realpath(entry), []).append(str(entry))
    return names


def serial_ports(known: set[tuple[int, int]], by_id_dir: Path = BY_ID_DIR) -> list[SerialPort]:
    """Every serial port pyserial finds, with its by-id names and whether it is a supported pad."""
    from serial.tools import list_ports

    names = _by_id_names(by_id_dir)
    ports = []
    for info in sorted(list_ports.comports(), key=lambda p: p.device):
        ids = (info.vid, info.pid)
        ports.append(SerialPort(
            device=info.device,
            by_id=tuple(names.get(os.path.realpath(info.device), [])),
            vid=info.vid,
            pid=info.pid,
            description=info.description or "",
            known_pad=ids in known,
        ))  # fmt: skip
    return ports


def usb_pads(known: set[tuple[int, int]], backend: Any = None) -> list[UsbPad]:
    """USB devices with a supported VID:PID, each with the ``usb://`` URL that selects it.

    Raises:
        DeviceNotConnected: no libusb, or enumeration failed.
    """
    from misbridge.transport.usb import UsbAddress, find_devices, serial_of

    pads = []
    for dev in find_devices(backend, lambda d: (d.idVendor, d.idProduct) in known):
        address = UsbAddress(dev.idVendor, dev.idProduct, serial_of(dev))
        pads.append(UsbPad(str(address), dev.idVendor, dev.idProduct, _product(dev)))
    return pads


def _product(dev: Any) -> str:
    from misbridge.transport.usb import string_of

    return string_of(dev, dev.iProduct) or ""


def listing(ports: list[SerialPort], pads: list[UsbPad] | None, usb_error: str = "") -> str:
    """The text ``misbridge probe`` prints."""
    lines = ["Serial ports:"]
    for port in ports:
        ids = f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None and port.pid is not None else "-"
        mark = "  <- supported PIN pad" if port.known_pad else ""
        lines.append(f"  {port.device}  {ids}  {port.description}{mark}")
        lines.extend(f"      {name}" for name in port.by_id)
    if not ports:
        lines.append("  (none)")
    lines.append("USB PIN pads (supported VID:PID):")
    if pads is None:
        lines.append(f"  (cannot list USB devices: {usb_error})")
    else:
        lines.extend(f"  {pad.url}  {pad.product}" for pad in pads)
        if not pads:
            lines.append("  (none)")
    return "\n".join(lines)


async def try_pad(url: str, *, baudrate: int = 115200, timeout: float = 5.0) -> PadInfo:  # noqa: ASYNC109
    """Open ``url`` with the mispos-v1 driver and return the pad's DEVICE_INFO.

    Raises:
        PadInUse: another program holds the port (said at once: waiting would not free it).
        DeviceNotConnected: the port cannot be opened, or the pad did not answer in ``timeout`` s.
        ConfigError: no transport for the URL.
    """
    await ensure_port_free(url, baudrate=baudrate)
    failures: list[MisbridgeError] = []

    async def opener(target: str, rate: int) -> ByteTransport:
        try:
            return await open_transport(target, baudrate=rate)
        except MisbridgeError as err:
            failures.append(err)
            raise

    settings = DeviceSettings(url=url, baudrate=baudrate, command_timeout_s=min(timeout, 60))
    driver = MisPosV1Driver(settings, opener=opener, keepalive_s=None)
    await driver.start()
    try:
        if await driver.wait_connected(timeout):
            return await driver.device_info()
    finally:
        await driver.stop()
    if failures and isinstance(failures[-1], PadInUse):  # taken between the check and the driver's open
        raise failures[-1]
    if failures:
        raise DeviceNotConnected(failures[-1].message)
    raise DeviceNotConnected(f"no DEVICE_INFO reply from {url} within {timeout:g} s (wrong port or baud rate?)")


def run_probe(try_url: str | None, *, baudrate: int, timeout: float) -> tuple[int, str]:
    """The ``misbridge probe`` command: exit status and text."""
    if try_url is not None:
        try:
            info = asyncio.run(try_pad(try_url, baudrate=baudrate, timeout=timeout))
        except PadInUse as err:
            return EXIT_CANNOT_OPEN, err.message  # the sentence names the port already
        except MisbridgeError as err:
            return EXIT_CANNOT_OPEN, f"{try_url}: {err.message}"
        return 0, (
            f"{try_url}: model {info.model}, firmware {info.firmware}, serial {info.serial_no},"
            f" protocol {info.protocol}"
        )
    known = known_ids()
    pads: list[UsbPad] | None
    try:
        pads, usb_error = usb_pads(known), ""
    except DeviceNotConnected as err:
        pads, usb_error = None, err.message
    return 0, listing(serial_ports(known), pads, usb_error)
