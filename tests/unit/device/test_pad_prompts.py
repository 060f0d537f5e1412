"""The whole-book pad steps end to end: MisPosV1Driver against the simulated pad over a memory pipe.

READ_CODE (scan or key in a code), CHOOSE (pick an option) and the transaction kind of a card
step, with their timeouts, cancels and the answers of a pad without a scanner or from before them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from misbridge.config.settings import DeviceSettings
from misbridge.device import CodeEntry, CodeOrigin, MisPosV1Driver, ProgressStep, TransKind
from misbridge.errors import CustomerCancelled, DeviceError, DeviceRejected, DeviceTimeout, ReturnCode
from misbridge.link import ResultCode
from misbridge.transport.base import ByteTransport
from misbridge.transport.memory import memory_pipe
from simulators.pinpad.customer import DEFAULT_CODE, ScriptedChoice, ScriptedCode
from simulators.pinpad.device import SimulatedPinPad
from simulators.pinpad.faults import Faults
from tests.keys import signed_in_pad_key
from tests.unit.device.fakes import fast_session

#: Builds a simulated pad (keyword options of SimulatedPinPad) and a driver connected to it.
PadMaker = Callable[..., Awaitable[tuple[MisPosV1Driver, SimulatedPinPad]]]


@pytest.fixture
async def connect() -> AsyncIterator[PadMaker]:
    """Builds a simulated pad (keyword options) and a driver connected to it in-process."""
    opened: list[tuple[MisPosV1Driver, SimulatedPinPad]] = []

    async def make(**options: object) -> tuple[MisPosV1Driver, SimulatedPinPad]:
        # Signed in (a working key in slot 1), as misbridge leaves the pad: card steps need the key.
        pad_options = {"timeout_cap_s": 0.05, "working_key_hex": signed_in_pad_key().hex(), **options}
        pad = SimulatedPinPad(**pad_options)  # type: ignore[arg-type]

        async def opener(url: str, baudrate: int) -> ByteTransport:
            host_end, pad_end = memory_pipe()
            pad.serve(pad_end)
            return host_end

        settings = DeviceSettings(url="/dev/sim-pad", reply_grace_s=0.5, command_timeout_s=1)
        driver = MisPosV1Driver(settings, opener=opener, session_factory=fast_session, keepalive_s=None)
        await driver.start()
        assert await driver.wait_connected(2)
        opened.append((driver, pad))
        return driver, pad

    yield make
    for driver, pad in opened:
        await driver.stop()
        await pad.stop()


async def test_a_scanned_code_comes_back_with_its_origin(connect: PadMaker) -> None:
    driver, pad = await connect()
    steps: list[str] = []
    driver.on_progress = lambda stage, _digits: steps.append(stage)
    pad.prompts.enqueue(ScriptedCode("6901234567892", "barcode"))
    code = await driver.read_code("Scan", 30, amount_minor=4080)
    assert (code.text, code.origin) == ("6901234567892", CodeOrigin.BARCODE)
    assert "6901234567892" not in repr(code)
    assert ProgressStep.WAITING_CODE in steps
    default = await driver.read_code("Scan", 30)  # nobody scripted: the book's example QR code
    assert (default.text, default.origin) == (DEFAULT_CODE, CodeOrigin.QR_CODE)


async def test_a_code_keyed_in(connect: PadMaker) -> None:
    driver, pad = await connect()
    pad.prompts.enqueue(ScriptedCode("12345678", "keypad"))
    code = await driver.read_code("Key in the code", 30)
    assert (code.text, code.origin) == ("12345678", CodeOrigin.KEYPAD)
    pad.prompts.enqueue(ScriptedCode("87654321", "qr"))
    assert (await driver.read_code("Key in", 30, entry=CodeEntry.KEYPAD)).origin is CodeOrigin.KEYPAD


async def test_without_a_scanner_codes_are_keyed_and_scan_only_is_refused(connect: PadMaker) -> None:
    driver, _pad = await connect(scanner=False)
    assert (await driver.read_code("Code", 30)).origin is CodeOrigin.KEYPAD
    with pytest.raises(DeviceRejected) as info:
        await driver.read_code("Scan", 30, entry=CodeEntry.SCAN)
    assert info.value.device_code == ResultCode.NO_SCANNER
    assert info.value.return_code is ReturnCode.DEVICE_ERROR


async def test_code_cancel_and_timeout(connect: PadMaker) -> None:
    driver, pad = await connect()
    pad.prompts.enqueue(ScriptedCode(action="cancel"))
    with pytest.raises(CustomerCancelled):
        await driver.read_code("Scan", 30)
    pad.prompts.enqueue(ScriptedCode(action="none"))
    with pytest.raises(DeviceTimeout) as info:
        await driver.read_code("Scan", 1)
    assert info.value.return_code is ReturnCode.CARD_TIMEOUT


async def test_the_host_cancels_a_code_prompt(connect: PadMaker) -> None:
    driver, pad = await connect()
    pad.prompts.enqueue(ScriptedCode(hesitate_s=5))
    reading = asyncio.create_task(driver.read_code("Scan", 30))
    await asyncio.sleep(0.1)
    assert await driver.status() == "busy"
    await driver.cancel()
    with pytest.raises(CustomerCancelled, match="cancelled by the host"):
        await reading
    assert await driver.status() == "idle"


async def test_choose_returns_the_index_of_the_option(connect: PadMaker) -> None:
    driver, pad = await connect()
    steps: list[str] = []
    driver.on_progress = lambda stage, _digits: steps.append(stage)
    pad.prompts.enqueue(ScriptedChoice(3))
    assert await driver.choose("Pick", ["活动一", "活动二", "活动三"], 30) == 2
    assert ProgressStep.WAITING_CHOICE in steps
    assert await driver.choose("Pick", ["only"], 30) == 0  # nobody scripted: the first option


async def test_choose_cancel_timeout_and_a_key_with_no_option(connect: PadMaker) -> None:
    driver, pad = await connect()
    pad.prompts.enqueue(ScriptedChoice(action="cancel"))
    with pytest.raises(CustomerCancelled):
        await driver.choose("Pick", ["A", "B"], 30)
    pad.prompts.enqueue(ScriptedChoice(action="none"))
    with pytest.raises(DeviceTimeout) as info:
        await driver.choose("Pick", ["A", "B"], 1)
    assert info.value.return_code is ReturnCode.CARD_TIMEOUT
    pad.prompts.enqueue(ScriptedChoice(5))  # the pad ignores key 5 when two options are shown
    with pytest.raises(DeviceTimeout):
        await driver.choose("Pick", ["A", "B"], 1)


@pytest.mark.parametrize("options", [[], ["x"] * 10, ["A", ""], ["A", "y" * 33]], ids=["none", "ten", "empty", "long"])
async def test_options_the_protocol_cannot_carry_are_a_value_error(connect: PadMaker, options: list[str]) -> None:
    driver, pad = await connect()
    with pytest.raises(ValueError, match="options"):
        await driver.choose("Pick", options, 30)
    assert pad.commands["Choose"] == 0


async def test_a_refund_shows_what_is_refunded_and_the_amount(connect: PadMaker) -> None:
    driver, pad = await connect()
    await driver.read_card(4080, 30, kind=TransKind.REFUND, reference="99000009100010101732124")
    assert pad.displayed == "REFUND 40.80 of 99000009100010101732124"
    await driver.read_pin(4080, 30, kind=TransKind.VOID, reference="171698602301")
    assert pad.displayed == "VOID 40.80 of 171698602301"
    await driver.read_card(100, 30)
    assert pad.displayed == "1.00"
    with pytest.raises(ValueError, match="at most 40"):
        await driver.read_card(100, 30, kind=TransKind.VOID, reference="x" * 41)


async def test_a_legacy_pad_answers_bad_command_and_shows_a_sale(connect: PadMaker) -> None:
    driver, pad = await connect(legacy=True)
    for step in (driver.read_code("Scan", 30), driver.choose("Pick", ["A"], 30)):
        with pytest.raises(DeviceRejected) as info:
            await step
        assert info.value.device_code == ResultCode.BAD_COMMAND
    await driver.read_card(4080, 30, kind=TransKind.VOID, reference="T1")
    assert pad.displayed == "40.80"  # it skips TRANS_TYPE and REFERENCE (§4 unknown tags)


async def test_unplug_after_the_code_data_is_acknowledged(connect: PadMaker) -> None:
    driver, pad = await connect()
    pad.faults = Faults(unplug_after="code-data")
    assert (await driver.read_code("Scan", 30)).text == DEFAULT_CODE
    await asyncio.sleep(0.05)
    with pytest.raises(DeviceError):  # the pad is gone: nothing acknowledges the next command
        await driver.status()
