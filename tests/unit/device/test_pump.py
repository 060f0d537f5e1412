"""The one link pump, in both roles: the daemon's LinkDriver against the simulated pad, in-process."""

from __future__ import annotations

import asyncio

from misbridge.device.link_driver import LinkDriver
from misbridge.device.pump import LinkPump
from misbridge.errors import DeviceNotConnected
from misbridge.link import (
    CardData,
    DeviceInfo,
    DeviceInfoRequest,
    LinkEvent,
    LinkFailed,
    ReadCard,
    Retransmitted,
    Role,
    StatusRequest,
    encode_message,
)
from misbridge.link.testing import drop_writes
from misbridge.transport.memory import memory_pipe
from simulators.pinpad.device import SimulatedPinPad
from simulators.pinpad.faults import Faults
from tests.keys import signed_in_pad_key
from tests.unit.device.fakes import FAST_ACK_TIMEOUT_S, fast_session


async def test_the_simulated_pad_serves_a_memory_pipe_in_process() -> None:
    host_end, pad_end = memory_pipe()
    # The line's faults work on any transport; a working key in slot 1 for the card step.
    pad = SimulatedPinPad(faults=Faults(nak=1, bad_lrc=1), working_key_hex=signed_in_pad_key().hex())
    pad.serve(pad_end)
    link = LinkDriver(host_end, fast_session())
    link.start()
    try:
        info = await link.request(DeviceInfoRequest(1), timeout=2)
        assert isinstance(info, DeviceInfo)
        assert info.model == "MISBRIDGE-SIM"
        assert isinstance(await link.request(ReadCard(2, 100, 30), timeout=2), CardData)
        assert pad.faults.injected == {"nak": 1, "bad_lrc": 1}
    finally:
        await link.aclose()
        await pad.stop()


async def test_end_of_file_is_reported_once_and_stops_the_pump() -> None:
    near, far = memory_pipe()
    failures: list[DeviceNotConnected] = []
    pump = LinkPump(fast_session(Role.DEVICE), near, on_event=lambda _: None, on_failure=failures.append)
    pump.start()
    await far.aclose()
    await asyncio.sleep(0.01)
    assert len(failures) == 1
    assert "end of file" in failures[0].message
    assert not pump.running
    await pump.aclose()


async def test_timers_run_on_the_injected_clock() -> None:
    # A clock a day ahead of the loop's: the ACK timer still fires after ack_timeout, not a day late.
    loop = asyncio.get_running_loop()
    near, _far = memory_pipe()  # nobody acknowledges
    events: list[LinkEvent] = []
    pump = LinkPump(
        fast_session(), near, on_event=events.append, on_failure=lambda _: None, clock=lambda: loop.time() + 86_400.0
    )
    pump.start()
    pump.send(encode_message(StatusRequest(1)))
    await asyncio.sleep(FAST_ACK_TIMEOUT_S * 6)
    assert sum(isinstance(e, Retransmitted) for e in events) == 3
    assert isinstance(events[-1], LinkFailed)
    await pump.aclose()


async def test_aclose_waits_for_the_read_task() -> None:
    near, _far = memory_pipe()
    pump = LinkPump(fast_session(), near, on_event=lambda _: None, on_failure=lambda _: None)
    pump.start()
    await pump.aclose()
    assert pump._reader is not None
    assert pump._reader.done()
    assert not pump.running


async def test_the_fault_vocabulary_numbers_memory_writes_from_one() -> None:
    # drop_writes(1) on the host's end loses the host's first write: its first frame.
    host_end, pad_end = memory_pipe()
    host_end.manipulator = drop_writes(1)
    pad = SimulatedPinPad()
    pad.serve(pad_end)
    events: list[LinkEvent] = []
    link = LinkDriver(host_end, fast_session(), on_event=events.append)
    link.start()
    try:
        assert isinstance(await link.request(DeviceInfoRequest(1), timeout=2), DeviceInfo)
        assert [e.cause for e in events if isinstance(e, Retransmitted)] == ["timeout"]
        assert pad.commands["DeviceInfoRequest"] == 1
    finally:
        await link.aclose()
        await pad.stop()
