"""The shared PIN-pad simulator survives a host that dies mid-command (what the crash harness does).

The harness kills the daemon with ``os._exit`` while the pad may be running READ_CARD or READ_PIN,
then a new daemon opens the same pty. The pad must treat the reopen as a fresh link (device
protocol §3 *Reset*): the running command is dropped without a word on the new link, the card
is forgotten, and the next command is served instead of answered BUSY.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from misbridge.device.link_driver import LinkDriver
from misbridge.link import (
    CardData,
    DeviceState,
    DeviceStatus,
    LinkSession,
    ReadCard,
    ReadPin,
    Result,
    ResultCode,
    Role,
    StatusRequest,
)
from simulators.pinpad import Customer, SimulatedPinPad
from tests.keys import signed_in_pad_key

#: Long enough that a customer who walks away is still "thinking" when the host comes back.
WALK_AWAY_S = 30.0


@pytest.fixture
async def pad(tmp_path: Path) -> AsyncIterator[SimulatedPinPad]:
    # Signed in (a working key in slot 1): the card steps below need one.
    simulator = SimulatedPinPad(
        link=str(tmp_path / "mispos"), timeout_cap_s=WALK_AWAY_S, working_key_hex=signed_in_pad_key().hex()
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


async def _open_link(pad: SimulatedPinPad) -> LinkDriver:
    from misbridge.transport import open_transport

    assert pad.link_path is not None
    link = LinkDriver(await open_transport(pad.link_path, baudrate=115200), LinkSession(Role.HOST))
    link.start()
    return link


async def _wait_for_job(pad: SimulatedPinPad, running: bool) -> None:
    async with asyncio.timeout(2):
        while (pad._job is not None) != running:  # noqa: ASYNC110 - the pad has no event for it
            await asyncio.sleep(0.005)


async def test_reopen_drops_a_running_read_card(pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="no-card"))
    first = await _open_link(pad)
    step = asyncio.create_task(first.request(ReadCard(1, 100, 60), timeout=WALK_AWAY_S))
    await _wait_for_job(pad, running=True)
    await first.aclose()  # the host dies with READ_CARD running
    step.cancel()
    second = await _open_link(pad)
    try:
        await _wait_for_job(pad, running=False)
        assert await second.request(StatusRequest(1), timeout=2) == DeviceStatus(1, DeviceState.IDLE)
        card = await second.request(ReadCard(2, 100, 60), timeout=2)
        assert isinstance(card, CardData), card
    finally:
        await second.aclose()


async def test_reopen_drops_a_running_read_pin_and_forgets_the_card(pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="no-pin"))
    first = await _open_link(pad)
    assert isinstance(await first.request(ReadCard(1, 100, 60), timeout=2), CardData)
    step = asyncio.create_task(first.request(ReadPin(2, 100, 60, "", 1), timeout=WALK_AWAY_S))
    await _wait_for_job(pad, running=True)
    await first.aclose()
    step.cancel()
    second = await _open_link(pad)
    try:
        await _wait_for_job(pad, running=False)
        refused = await second.request(ReadPin(1, 100, 60, "", 1), timeout=2)
        assert isinstance(refused, Result)
        assert refused.code == ResultCode.BAD_COMMAND  # no card on the new link
    finally:
        await second.aclose()


async def test_a_cancel_racing_the_reopen_says_nothing_on_the_new_link(pad: SimulatedPinPad) -> None:
    # The old host sent CANCEL and died before the pad's job saw its cancellation; the new
    # host must not get that job's HOST_CANCELLED result on its fresh session.
    pad.enqueue_customer(Customer(action="no-card"))
    first = await _open_link(pad)
    step = asyncio.create_task(first.request(ReadCard(1, 100, 60), timeout=WALK_AWAY_S))
    await _wait_for_job(pad, running=True)
    pad._cancel_job()  # CANCEL arrived ...
    pad._host_opened()  # ... and the port was reopened, in the same loop turn
    sent: list[bytes] = []
    pad._port.write = sent.append  # type: ignore[method-assign, assignment]
    await _wait_for_job(pad, running=False)
    await asyncio.sleep(0.05)
    assert sent == []
    step.cancel()
    await first.aclose()
