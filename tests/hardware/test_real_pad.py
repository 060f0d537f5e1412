"""The PIN pad on the bench: what a technician runs against a real device.

Opt-in (``make test-hardware DEVICE_URL=/dev/mispos``, or ``pytest -m hardware --device-url=URL``);
skipped otherwise. The link tests need only the pad; the card and PIN tests need a person at it
(``--device-customer``): the pad asks for a card and a PIN, on a test card. Nothing here prints or
keeps card data: only the masked PAN and the lengths of the encrypted fields are checked.
``tests/hardware/test_suite_on_simulator.py`` runs this file against the pty simulator so it
cannot rot while no pad is attached.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from misbridge.config.settings import DeviceSettings
from misbridge.device.base import PinPadDriver, create_driver
from misbridge.tools.probe import try_pad

pytestmark = pytest.mark.hardware

#: The customer's time at the pad in the card and PIN tests.
CUSTOMER_S = 60
MASKED_PAN = re.compile(r"^\d{6}\*+\d{4}$")


@pytest.fixture
def connect_s(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("--device-timeout"))


@pytest.fixture
def device(request: pytest.FixtureRequest) -> DeviceSettings:
    return DeviceSettings(
        url=request.config.getoption("--device-url"), baudrate=request.config.getoption("--device-baud")
    )


@pytest.fixture
async def pad(device: DeviceSettings, connect_s: float) -> AsyncIterator[PinPadDriver]:
    driver = create_driver(device)
    await driver.start()
    try:
        assert await driver.wait_connected(connect_s), f"no mispos-v1 pad answered at {device.url}"
        yield driver
    finally:
        await driver.stop()


@pytest.fixture
def customer(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--device-customer"):
        pytest.skip("needs a person at the pad: add --device-customer")


async def test_device_info_names_the_pad(device: DeviceSettings, connect_s: float) -> None:
    info = await try_pad(device.url, baudrate=device.baudrate, timeout=connect_s)
    assert info.model
    assert info.firmware
    assert info.serial_no
    assert info.protocol == 1


async def test_status_and_display(pad: PinPadDriver) -> None:
    assert await pad.status()
    await pad.display_text("misbridge bench test", seconds=2)
    assert pad.connected


async def test_card_then_pin_comes_back_encrypted(pad: PinPadDriver, customer: None) -> None:
    card = await pad.read_card(1, CUSTOMER_S, "Test 0.01: present a TEST card")
    assert MASKED_PAN.match(card.masked_pan), card.masked_pan
    assert card.enc_pan_hex
    assert card.enc_track2_hex
    pin = await pad.read_pin(1, CUSTOMER_S, "Test: enter the PIN")
    assert len(pin.pin_block_hex) == 16  # one 8-byte 3DES block
