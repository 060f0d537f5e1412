"""``misbridge probe`` listing: udev IDs, serial ports with by-id names, USB pads on a fake bus."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from serial.tools import list_ports

from misbridge.tools import probe
from misbridge.tools.probe import known_ids, listing, serial_ports, usb_pads
from tests.unit.transport.fake_usb import FakeBackend, FakeUsbDevice

ROOT = Path(__file__).resolve().parents[3]


def test_known_ids_come_from_the_udev_rules(tmp_path: Path) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text(
        '# ATTRS{idVendor}=="dead", ATTRS{idProduct}=="beef"\n'
        'ATTRS{idVendor}=="1209", ATTRS{idProduct}=="0001", ENV{MISBRIDGE_PINPAD}="1"\n'
    )
    assert known_ids([tmp_path / "missing", rules]) == {(0x1209, 0x0001)}
    shipped = known_ids([ROOT / "udev" / probe.RULES_NAME])
    assert (0x1209, 0x0001) in shipped
    assert known_ids([tmp_path / "missing"]) == set()


def test_serial_ports_with_by_id_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = tmp_path / "ttyACM0"
    device.touch()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-Acme_Pad_1234-if00").symlink_to(device)
    ports = [
        SimpleNamespace(device=str(device), vid=0x1209, pid=0x0001, description="Acme Pad"),
        SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None, description="n/a"),
    ]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    found = serial_ports({(0x1209, 0x0001)}, by_id)
    assert [(p.device, p.known_pad) for p in found] == [("/dev/ttyS0", False), (str(device), True)]
    assert found[1].by_id == (str(by_id / "usb-Acme_Pad_1234-if00"),)
    text = listing(found, [], "")
    assert f"{device}  1209:0001  Acme Pad  <- supported PIN pad" in text
    assert "usb-Acme_Pad_1234-if00" in text
    assert "/dev/ttyS0  -  n/a" in text


def test_usb_pads_on_a_fake_bus() -> None:
    backend = FakeBackend(FakeUsbDevice(0x1209, 0x0001, "PAD-A"), FakeUsbDevice(0x046D, 0xC52B, address=3))
    pads = usb_pads({(0x1209, 0x0001)}, backend)
    assert [p.url for p in pads] == ["usb://1209:0001?serial=PAD-A"]
    assert "usb://1209:0001?serial=PAD-A" in listing([], pads)
    assert "(cannot list USB devices: no libusb)" in listing([], None, "no libusb")
