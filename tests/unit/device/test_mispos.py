"""MisPosV1Driver on in-memory pads: connection supervision, host timers, result-code mapping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from loguru import logger

from misbridge.config.settings import DeviceSettings
from misbridge.device import (
    DRIVERS,
    CardRead,
    EncryptedPin,
    MisPosV1Driver,
    PadInfo,
    PinPadDriver,
    ProgressStep,
    TransKind,
    create_driver,
)
from misbridge.device.mispos import Opener
from misbridge.device.mispos_results import Step, result_error
from misbridge.errors import (
    CardReadError,
    ConfigError,
    CustomerCancelled,
    DeviceBadReply,
    DeviceError,
    DeviceNotConnected,
    DeviceRejected,
    DeviceTimeout,
    ReturnCode,
)
from misbridge.link import (
    Cancel,
    CardData,
    Choice,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    DisplayText,
    LoadMasterKey,
    LoadWorkingKey,
    Message,
    PinBlock,
    Progress,
    ProgressStage,
    ReadCard,
    ReadCode,
    ReadPin,
    Result,
    ResultCode,
    StatusRequest,
    TransType,
)
from misbridge.link.constants import NO_REQUEST_ID
from misbridge.transport.base import ByteTransport
from tests.unit.device.fakes import FakePad, Responder, fast_session, pad_pipe

ENC = "0123456789ABCDEF"


def pad_replies(msg: Message) -> list[Message]:
    """A cooperative pad: a card, a PIN, everything else OK."""
    rid = msg.request_id
    if isinstance(msg, DeviceInfoRequest):
        return [DeviceInfo(rid, "FAKE", "0.1", "F001", 1)]
    if isinstance(msg, StatusRequest):
        return [DeviceStatus(rid, DeviceState.IDLE)]
    if isinstance(msg, ReadCard):
        return [
            Progress(rid, ProgressStage.WAITING_FOR_CARD),
            CardData(rid, "00", "622562******8888", ENC, ENC + ENC, "2812"),
        ]
    if isinstance(msg, ReadPin):
        return [
            Progress(rid, ProgressStage.WAITING_FOR_PIN),
            Progress(rid, ProgressStage.PIN_DIGIT_ENTERED, digits_entered=1),
            PinBlock(rid, ENC, msg.key_index),
        ]
    return [Result(rid, ResultCode.OK)]


class PadFactory:
    """The driver's opener: each open wires a new FakePad; the first ``failures`` opens fail."""

    def __init__(self, respond: Responder = pad_replies, failures: int = 0) -> None:
        self.respond = respond
        self.failures = failures
        self.attempts = 0
        self.pads: list[FakePad] = []
        self.opened = asyncio.Event()

    async def __call__(self, url: str, baudrate: int) -> ByteTransport:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise DeviceNotConnected(f"no device at {url}")
        host, pad = pad_pipe(self.respond)
        self.pads.append(pad)
        self.opened.set()
        return host

    @property
    def pad(self) -> FakePad:
        return self.pads[-1]

    async def close(self) -> None:
        for pad in self.pads:
            await pad.close()


def make_driver(factory: Opener, command_timeout_s: float = 0.5, **options: Any) -> MisPosV1Driver:
    settings = DeviceSettings(url="/dev/fake-pad", reply_grace_s=0.1, command_timeout_s=command_timeout_s)
    defaults: dict[str, Any] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "keepalive_s": None}
    return MisPosV1Driver(settings, opener=factory, session_factory=fast_session, **{**defaults, **options})


@pytest.fixture
async def factory() -> AsyncIterator[PadFactory]:
    pads = PadFactory()
    yield pads
    await pads.close()


@pytest.fixture
async def driver(factory: PadFactory) -> AsyncIterator[MisPosV1Driver]:
    drv = make_driver(factory)
    await drv.start()
    assert await drv.wait_connected(2)
    yield drv
    await drv.stop()


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    handler = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    yield lines
    logger.remove(handler)


# -- connection ------------------------------------------------------------------------------


async def test_connects_and_fills_info(driver: MisPosV1Driver) -> None:
    assert driver.connected
    assert driver.info == PadInfo("FAKE", "0.1", "F001", 1)
    assert await driver.device_info() == PadInfo("FAKE", "0.1", "F001", 1)
    assert isinstance(driver, PinPadDriver)


async def test_reconnect_backs_off_and_logs_once(warnings: list[str]) -> None:
    factory = PadFactory(failures=4)
    drv = make_driver(factory)
    started = time.monotonic()
    await drv.start()
    try:
        assert await drv.wait_connected(2)
        # 0.01 + 0.02 + 0.04 + 0.05 (cap) between the five attempts
        assert time.monotonic() - started >= 0.11
        assert factory.attempts == 5
        assert len([w for w in warnings if "not available" in w]) == 1
    finally:
        await drv.stop()
        await factory.close()


async def test_lost_link_marks_disconnected_and_reconnects(driver: MisPosV1Driver, factory: PadFactory) -> None:
    await factory.pads[0].close()
    await asyncio.sleep(0.01)
    assert not driver.connected
    with pytest.raises(DeviceNotConnected):
        await driver.read_card(100, 30)
    assert await driver.wait_connected(2)
    assert len(factory.pads) == 2


async def test_keepalive_reopens_a_pad_that_stops_answering() -> None:
    def respond(msg: Message) -> list[Message]:
        return [] if isinstance(msg, StatusRequest) else pad_replies(msg)

    factory = PadFactory(respond)
    drv = make_driver(factory, command_timeout_s=0.1, keepalive_s=0.05)
    await drv.start()
    try:
        assert await drv.wait_connected(2)
        factory.opened.clear()
        async with asyncio.timeout(2):
            await factory.opened.wait()  # reopened after the unanswered STATUS
        assert factory.attempts == 2
        assert any(isinstance(m, StatusRequest) for m in factory.pads[0].received)
    finally:
        await drv.stop()
        await factory.close()


async def test_commands_on_a_dead_link_fail_at_once_and_prompt_nobody() -> None:
    factory = PadFactory(failures=10**6)
    drv = make_driver(factory)
    await drv.start()
    try:
        started = time.monotonic()
        with pytest.raises(DeviceNotConnected) as caught:
            await drv.read_card(4080, 60)
        assert caught.value.return_code is ReturnCode.DEVICE_NOT_CONNECTED
        with pytest.raises(DeviceNotConnected):
            await drv.read_pin(4080, 60)
        with pytest.raises(DeviceNotConnected):
            await drv.status()
        await drv.cancel()  # nothing to cancel: no error
        assert time.monotonic() - started < 0.1
        assert not factory.pads
        assert not await drv.wait_connected(0.01)
    finally:
        await drv.stop()


async def test_stop_fails_a_pending_step(factory: PadFactory) -> None:
    factory.respond = lambda m: pad_replies(m) if isinstance(m, DeviceInfoRequest) else []
    drv = make_driver(factory)
    await drv.start()
    assert await drv.wait_connected(2)
    step = asyncio.create_task(drv.read_card(100, 30))
    await asyncio.sleep(0.02)
    await drv.stop()
    with pytest.raises(DeviceNotConnected):
        await step
    assert not drv.connected


# -- commands --------------------------------------------------------------------------------


async def test_read_card_then_pin_with_progress(driver: MisPosV1Driver, factory: PadFactory) -> None:
    seen: list[tuple[str, int]] = []
    driver.on_progress = lambda stage, digits: seen.append((stage, digits))
    card = await driver.read_card(4080, 30, "Amount 40.80")
    assert card == CardRead("00", "622562******8888", ENC, ENC + ENC, "2812")
    pin = await driver.read_pin(4080, 30, key_index=3)
    assert pin == EncryptedPin(ENC, 3)
    assert seen == [(ProgressStep.WAITING_CARD, 0), (ProgressStep.WAITING_PIN, 0), (ProgressStep.PIN_DIGIT, 1)]
    sent = factory.pad.received
    assert isinstance(sent[1], ReadCard)
    assert sent[1].prompt == "Amount 40.80"
    assert sent[1].timeout_s == 30
    assert isinstance(sent[2], ReadPin)
    assert sent[2].key_index == 3


def test_encrypted_fields_stay_out_of_repr() -> None:
    card = CardRead("00", "622562******8888", "AA" * 8, "BB" * 8, "2812", "CC" * 8, "DD" * 8, "01", "EE" * 8)
    pin = EncryptedPin("FF" * 8, 1)
    for text in (repr(card), repr(pin)):
        assert not any(c * 4 in text for c in "ABCDEF")
    assert "622562******8888" in repr(card)


async def test_host_timer_expiry_cancels_the_pad_and_raises_pin_timeout(factory: PadFactory) -> None:
    factory.respond = lambda m: [] if isinstance(m, ReadPin) else pad_replies(m)
    drv = make_driver(factory)
    await drv.start()
    try:
        assert await drv.wait_connected(2)
        started = time.monotonic()
        with pytest.raises(DeviceTimeout) as caught:
            await drv.read_pin(100, 1)  # TIMEOUT_S 1 + grace 0.1
        assert 1.05 <= time.monotonic() - started < 1.6
        assert caught.value.return_code is ReturnCode.PIN_TIMEOUT
        assert isinstance(factory.pad.received[-1], Cancel)
    finally:
        await drv.stop()


async def test_pad_timeout_on_the_card_step_is_card_timeout_without_cancel(
    driver: MisPosV1Driver, factory: PadFactory
) -> None:
    factory.pad.respond = lambda m: [Result(m.request_id, ResultCode.TIMEOUT)]
    with pytest.raises(DeviceTimeout) as caught:
        await driver.read_card(100, 5)
    assert caught.value.return_code is ReturnCode.CARD_TIMEOUT
    assert not any(isinstance(m, Cancel) for m in factory.pad.received)


async def test_caller_cancellation_cancels_the_prompt_on_the_pad(driver: MisPosV1Driver, factory: PadFactory) -> None:
    factory.pad.respond = lambda m: [Result(m.request_id, ResultCode.OK)] if isinstance(m, Cancel) else []
    step = asyncio.create_task(driver.read_card(100, 30))
    await asyncio.sleep(0.02)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    await asyncio.sleep(0.05)
    assert isinstance(factory.pad.received[-1], Cancel)


async def test_status_is_busy_while_a_customer_step_runs(driver: MisPosV1Driver, factory: PadFactory) -> None:
    assert await driver.status() == "idle"
    factory.pad.respond = lambda m: []
    step = asyncio.create_task(driver.read_card(100, 30))
    await asyncio.sleep(0.02)
    assert await driver.status() == "busy"
    assert isinstance(factory.pad.received[-1], ReadCard)  # STATUS was not sent during READ_CARD
    step.cancel()
    await asyncio.wait([step])


async def test_display_text_and_load_working_key(driver: MisPosV1Driver, factory: PadFactory) -> None:
    await driver.display_text("Thank you", seconds=3)
    await driver.load_working_key(2, "00" * 16, "ABCDEF")
    assert factory.pad.received[-2] == DisplayText(2, "Thank you", display_seconds=3)
    assert factory.pad.received[-1] == LoadWorkingKey(3, 2, "00" * 16, "ABCDEF")
    factory.pad.respond = lambda m: [Result(m.request_id, ResultCode.NO_KEY, "slot empty")]
    with pytest.raises(DeviceRejected) as caught:
        await driver.load_working_key(2, "00" * 16, "ABCDEF")
    assert caught.value.device_code == "06"
    assert caught.value.return_code is ReturnCode.DEVICE_ERROR


async def test_an_unexpected_reply_type_is_a_bad_reply(driver: MisPosV1Driver, factory: PadFactory) -> None:
    factory.pad.respond = lambda m: [DeviceStatus(m.request_id, DeviceState.IDLE)]
    with pytest.raises(DeviceBadReply, match="ReadCard with DeviceStatus"):
        await driver.read_card(100, 30)


@pytest.mark.parametrize(
    ("code", "step", "error", "return_code"),
    [
        (ResultCode.CUSTOMER_CANCEL, Step.CARD, CustomerCancelled, ReturnCode.CUSTOMER_CANCELLED),
        (ResultCode.TIMEOUT, Step.CARD, DeviceTimeout, ReturnCode.CARD_TIMEOUT),
        (ResultCode.TIMEOUT, Step.PIN, DeviceTimeout, ReturnCode.PIN_TIMEOUT),
        (ResultCode.CARD_READ_ERROR, Step.CARD, CardReadError, ReturnCode.CARD_READ_ERROR),
        (ResultCode.CARD_REMOVED, Step.PIN, DeviceRejected, ReturnCode.CARD_REMOVED),
        (ResultCode.BUSY, Step.CARD, DeviceRejected, ReturnCode.DEVICE_BUSY),
        (ResultCode.NO_KEY, Step.PIN, DeviceRejected, ReturnCode.DEVICE_ERROR),
        (ResultCode.BAD_COMMAND, Step.PIN, DeviceRejected, ReturnCode.DEVICE_ERROR),
        (ResultCode.HOST_CANCELLED, Step.CARD, CustomerCancelled, ReturnCode.CUSTOMER_CANCELLED),
        (ResultCode.HARDWARE_ERROR, Step.COMMAND, DeviceRejected, ReturnCode.DEVICE_ERROR),
        (ResultCode.TIMEOUT, Step.CODE, DeviceTimeout, ReturnCode.CARD_TIMEOUT),
        (ResultCode.TIMEOUT, Step.CHOICE, DeviceTimeout, ReturnCode.CARD_TIMEOUT),
        (ResultCode.NO_SCANNER, Step.CODE, DeviceRejected, ReturnCode.DEVICE_ERROR),
        (ResultCode.BAD_COMMAND, Step.CHOICE, DeviceRejected, ReturnCode.DEVICE_ERROR),
    ],
)
def test_result_codes_map_to_errors(
    code: ResultCode, step: Step, error: type[DeviceError], return_code: ReturnCode
) -> None:
    err = result_error(Result(1, code, "detail"), step)
    assert type(err) is error
    assert err.return_code is return_code
    assert code.value in err.message
    assert "detail" in err.message
    if isinstance(err, DeviceRejected):
        assert err.device_code == code.value


def test_an_undocumented_result_code_is_a_device_error() -> None:
    err = result_error(Result(1, "42"), Step.CARD)
    assert isinstance(err, DeviceRejected)
    assert err.device_code == "42"
    assert err.return_code is ReturnCode.DEVICE_ERROR
    assert "UNKNOWN" in err.message


async def test_an_undocumented_progress_stage_is_ignored(driver: MisPosV1Driver, factory: PadFactory) -> None:
    seen: list[tuple[str, int]] = []
    driver.on_progress = lambda stage, digits: seen.append((stage, digits))
    factory.pad.respond = lambda m: [
        Progress(m.request_id, "77"),
        Progress(m.request_id, "02"),
        CardData(m.request_id, "01", "622562******8888", ENC, ENC, "2812"),
    ]
    assert (await driver.read_card(100, 30)).card_type == "01"
    assert seen == [(ProgressStep.CARD_READ, 0)]


async def test_a_config_error_while_opening_is_retried_not_fatal(warnings: list[str]) -> None:
    attempts = 0

    async def opener(url: str, baudrate: int) -> ByteTransport:
        nonlocal attempts
        attempts += 1
        raise ConfigError("baud rate not supported")

    drv = make_driver(opener)
    await drv.start()
    try:
        assert not await drv.wait_connected(0.1)
        assert attempts >= 3
        assert len([w for w in warnings if "baud rate not supported" in w]) == 1
    finally:
        await drv.stop()


# -- registry --------------------------------------------------------------------------------


def test_registry_builds_mispos_v1_and_names_the_known_drivers() -> None:
    assert "mispos-v1" in DRIVERS
    assert isinstance(create_driver(DeviceSettings()), MisPosV1Driver)
    with pytest.raises(ConfigError, match="mispos-v1"):
        create_driver(DeviceSettings(protocol="acme-v9"))


def test_a_device_url_without_a_transport_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        MisPosV1Driver(DeviceSettings(url="bogus://pad"))


async def test_a_choice_beyond_the_options_is_rejected(driver: MisPosV1Driver, factory: PadFactory) -> None:
    factory.pad.respond = lambda m: [Choice(m.request_id, 3)]
    with pytest.raises(DeviceBadReply, match="option 3 of 2"):
        await driver.choose("Pick", ["A", "B"], 5)


async def test_the_transaction_kind_travels_with_the_card_and_pin_steps(
    driver: MisPosV1Driver, factory: PadFactory
) -> None:
    await driver.read_card(4080, 5, kind=TransKind.VOID, reference="T1")
    await driver.read_pin(4080, 5, kind=TransKind.REFUND, reference="T2")
    card, pin = factory.pad.received[-2:]
    assert isinstance(card, ReadCard)
    assert (card.trans_type, card.reference) == (TransType.VOID, "T1")
    assert isinstance(pin, ReadPin)
    assert (pin.trans_type, pin.reference) == (TransType.REFUND, "T2")


async def test_a_pad_silent_on_a_command_it_does_not_know_times_out_and_is_cancelled(
    driver: MisPosV1Driver, factory: PadFactory
) -> None:
    factory.pad.respond = lambda m: [] if isinstance(m, ReadCode) else pad_replies(m)
    with pytest.raises(DeviceTimeout):
        await driver.read_code("Scan", 1)
    assert isinstance(factory.pad.received[-1], Cancel)


# -- §5.4, §5.5: a command the pad cannot identify; another protocol version -----------------


async def test_a_pad_of_another_protocol_version_is_refused_and_retried(warnings: list[str]) -> None:
    def respond(msg: Message) -> list[Message]:
        if isinstance(msg, DeviceInfoRequest):
            return [DeviceInfo(msg.request_id, "FUTURE", "9.0", "F002", 2)]
        return pad_replies(msg)

    factory = PadFactory(respond)
    drv = make_driver(factory)
    await drv.start()
    try:
        assert not await drv.wait_connected(0.3)
        assert factory.attempts >= 2  # refused, closed, reopened with backoff
        assert any("protocol version 2" in w and "version 1 only" in w for w in warnings)
        with pytest.raises(DeviceNotConnected):
            await drv.read_card(100, 30)
    finally:
        await drv.stop()
        await factory.close()


async def test_a_bad_command_answered_without_a_request_id_ends_the_command_at_once() -> None:
    def respond(msg: Message) -> list[Message]:
        if isinstance(msg, DisplayText):
            return [Result(NO_REQUEST_ID, ResultCode.BAD_COMMAND, "no REQUEST_ID")]
        return pad_replies(msg)

    factory = PadFactory(respond)
    drv = make_driver(factory, command_timeout_s=5.0)
    await drv.start()
    try:
        assert await drv.wait_connected(2)
        started = time.monotonic()
        with pytest.raises(DeviceRejected) as caught:
            await drv.display_text("hello")
        assert caught.value.device_code == ResultCode.BAD_COMMAND
        assert time.monotonic() - started < 1.0  # not the 5 s command timer
        assert drv.connected
        assert await drv.status() == "idle"
    finally:
        await drv.stop()
        await factory.close()


async def test_a_key_check_failure_is_a_device_error_with_its_pad_code(factory: PadFactory) -> None:
    def respond(msg: Message) -> list[Message]:
        if isinstance(msg, LoadWorkingKey):
            return [Result(msg.request_id, ResultCode.KEY_CHECK_FAILED, "KCV mismatch")]
        return pad_replies(msg)

    factory.respond = respond
    drv = make_driver(factory)
    await drv.start()
    try:
        assert await drv.wait_connected(2)
        with pytest.raises(DeviceRejected) as caught:
            await drv.load_working_key(1, "00" * 16, "000000")
        assert caught.value.device_code == "11"
        assert caught.value.return_code is ReturnCode.DEVICE_ERROR
    finally:
        await drv.stop()


async def test_load_master_key_sends_the_ciphertext_and_reports_a_kcv_mismatch(
    driver: MisPosV1Driver, factory: PadFactory
) -> None:
    await driver.load_master_key("11" * 16, "712C8C")
    assert factory.pad.received[-1] == LoadMasterKey(2, "11" * 16, "712C8C")
    factory.pad.respond = lambda m: [Result(m.request_id, ResultCode.KEY_CHECK_FAILED, "KCV")]
    with pytest.raises(DeviceRejected) as caught:
        await driver.load_master_key("11" * 16, "712C8D")
    assert caught.value.device_code == "11"
