"""Unplug the PIN pad at every phase of the link, with the real driver over a real pty.

For each phase the pty master is closed (``SimulatedPinPad.unplug()`` or a simulator fault that
unplugs at the right byte) and the test checks that:

- the command in progress fails with DeviceNotConnected at once (no hang until a timer);
- ``driver.connected`` goes False;
- nothing spins while the pad is away: the process uses < 5 % of one core over 2 s;
- a new pad on the same ``--link`` path is connected again within 5 s, and answers.

The "during the backend submit" phase belongs to the transaction service (the driver is idle
then); it is covered with the service's own tests, not here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from misbridge.config.settings import DeviceSettings
from misbridge.device import MisPosV1Driver
from misbridge.errors import DeviceNotConnected
from simulators.pinpad import Customer, SimulatedPinPad
from tests.keys import signed_in_pad_key

#: Longest acceptable time from the unplug to the failed command.
FAIL_WITHIN_S = 1.0
#: Reconnect requirement (R13): back within 5 s of the pad reappearing.
RECONNECT_WITHIN_S = 5.0
CPU_SAMPLE_S = 2.0
CPU_MAX_FRACTION = 0.05


@pytest.fixture
def link_path(tmp_path: Path) -> Path:
    return tmp_path / "mispos"


@pytest.fixture
async def pad(link_path: Path) -> AsyncIterator[SimulatedPinPad]:
    simulator = SimulatedPinPad(link=str(link_path), timeout_cap_s=30, working_key_hex=signed_in_pad_key().hex())
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def driver(pad: SimulatedPinPad, link_path: Path) -> AsyncIterator[MisPosV1Driver]:
    drv = MisPosV1Driver(DeviceSettings(url=str(link_path), reply_grace_s=1.0, command_timeout_s=3.0))
    await drv.start()
    assert await drv.wait_connected(3)
    yield drv
    await drv.stop()


async def _until(condition: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling a property the health check also polls
            await asyncio.sleep(0.005)


async def _fails_fast(step: Awaitable[object]) -> None:
    started = time.monotonic()
    async with asyncio.timeout(FAIL_WITHIN_S):
        with pytest.raises(DeviceNotConnected):
            await step
    assert time.monotonic() - started < FAIL_WITHIN_S


async def _quiet_then_back(driver: MisPosV1Driver, link_path: Path) -> None:
    await _until(lambda: not driver.connected, FAIL_WITHIN_S)
    with pytest.raises(DeviceNotConnected):
        await driver.status()

    cpu_before = time.process_time()
    await asyncio.sleep(CPU_SAMPLE_S)
    cpu = time.process_time() - cpu_before
    assert cpu < CPU_MAX_FRACTION * CPU_SAMPLE_S, f"{cpu:.3f} s CPU in {CPU_SAMPLE_S} s while unplugged"
    assert not driver.connected

    replacement = SimulatedPinPad(link=str(link_path), working_key_hex=signed_in_pad_key().hex())
    await replacement.start()
    try:
        appeared = time.monotonic()
        assert await driver.wait_connected(RECONNECT_WITHIN_S)
        assert time.monotonic() - appeared < RECONNECT_WITHIN_S
        assert (await driver.device_info()).model == "MISBRIDGE-SIM"
        assert (await driver.read_card(100, 30)).masked_pan
    finally:
        await replacement.stop()


def _progress_log(driver: MisPosV1Driver) -> list[str]:
    stages: list[str] = []
    driver.on_progress = lambda stage, _digits: stages.append(stage)
    return stages


async def test_unplug_while_idle(driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path) -> None:
    pad.unplug()
    await _fails_fast(driver.read_card(100, 30))
    await _quiet_then_back(driver, link_path)


async def test_unplug_while_waiting_for_the_card(driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path) -> None:
    pad.enqueue_customer(Customer(action="no-card"))
    stages = _progress_log(driver)
    step = asyncio.create_task(driver.read_card(100, 30))
    await _until(lambda: "waiting_card" in stages)
    pad.unplug()
    await _fails_fast(step)
    await _quiet_then_back(driver, link_path)


async def test_unplug_while_waiting_for_the_pin(driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path) -> None:
    pad.enqueue_customer(Customer(action="no-pin"))
    stages = _progress_log(driver)
    await driver.read_card(100, 30)
    step = asyncio.create_task(driver.read_pin(100, 30))
    await _until(lambda: "waiting_pin" in stages)
    pad.unplug()
    await _fails_fast(step)
    await _quiet_then_back(driver, link_path)


async def test_unplug_while_the_host_awaits_an_ack(
    driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path
) -> None:
    pad.enqueue_customer(Customer(action="no-card"))
    pad.faults.withhold_ack = 1
    step = asyncio.create_task(driver.read_card(100, 30))
    await _until(lambda: pad.commands["ReadCard"] == 1)
    link = driver._link
    assert link is not None
    assert link._session.in_flight is not None  # the host still waits for the ACK of READ_CARD
    pad.unplug()
    await _fails_fast(step)
    await _quiet_then_back(driver, link_path)


async def test_unplug_in_the_middle_of_a_frame(driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path) -> None:
    pad.faults.cut_frame = True  # half of the DEVICE_INFO reply, then the cable goes
    await _fails_fast(driver.device_info())
    assert not pad.faults.cut_frame
    await _quiet_then_back(driver, link_path)


async def test_unplug_right_after_the_card_data(driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path) -> None:
    pad.faults.unplug_after = "card-data"
    card = await driver.read_card(100, 30)  # delivered and acknowledged, then the cable goes
    assert card.masked_pan
    await _fails_fast(driver.read_pin(100, 30))
    await _quiet_then_back(driver, link_path)


async def test_unplug_right_after_the_pin(driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path) -> None:
    pad.faults.unplug_after = "pin-block"
    await driver.read_card(100, 30)
    pin = await driver.read_pin(100, 30)
    assert pin.key_index == 1
    await _until(lambda: not driver.connected, FAIL_WITHIN_S)
    await _fails_fast(driver.display_text("Thank you"))
    await _quiet_then_back(driver, link_path)
