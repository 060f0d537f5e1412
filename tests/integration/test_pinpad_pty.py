"""MisPosV1Driver against the simulated PIN pad over a real pty (no mocks of serial).

Every byte goes through pyserial-asyncio-fast, the kernel's pty and misbridge.link on both
sides, as on the bench with a real pad behind a udev symlink.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loguru import logger

from misbridge.config.settings import DeviceSettings
from misbridge.device import MisPosV1Driver
from misbridge.device.link_driver import LinkDriver
from misbridge.errors import (
    CardReadError,
    CustomerCancelled,
    DeviceNotConnected,
    DeviceRejected,
    DeviceTimeout,
    ReturnCode,
)
from misbridge.link import (
    DisplayText,
    DuplicateSuppressed,
    FrameRejected,
    GarbageDiscarded,
    LinkSession,
    ReadCard,
    Result,
    ResultCode,
    Retransmitted,
    Role,
)
from misbridge.tools.probe import try_pad
from misbridge.transport import open_transport
from simulators.cards import CARDS, DEFAULT_CARD
from simulators.crypto import (
    TEST_MASTER_KEY_HEX,
    decrypt_pin,
    decrypt_text,
    encrypt_text,
    key_check_value,
    wrap_key,
)
from simulators.pinpad import Customer, SimulatedPinPad
from simulators.pinpad.control import ControlServer, enqueue_remote
from simulators.pinpad.faults import Faults
from tests.keys import signed_in_pad_key

#: The working key the pads here hold in slot 1, as misbridge leaves a pad after its sign-in.
KEY = signed_in_pad_key()
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_CAP_S = 0.3


def settings_for(path: Path) -> DeviceSettings:
    return DeviceSettings(url=str(path), reply_grace_s=1.0, command_timeout_s=2.0)


@pytest.fixture
def link_path(tmp_path: Path) -> Path:
    return tmp_path / "mispos"


@pytest.fixture
async def pad(link_path: Path) -> AsyncIterator[SimulatedPinPad]:
    simulator = SimulatedPinPad(link=str(link_path), timeout_cap_s=TIMEOUT_CAP_S, working_key_hex=KEY.hex())
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def driver(pad: SimulatedPinPad, link_path: Path) -> AsyncIterator[MisPosV1Driver]:
    drv = MisPosV1Driver(settings_for(link_path))
    await drv.start()
    assert await drv.wait_connected(3)
    yield drv
    await drv.stop()


# -- the happy path --------------------------------------------------------------------------


async def test_device_info(driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path) -> None:
    assert os.readlink(link_path) == pad.slave_path
    info = await driver.device_info()
    assert (info.model, info.firmware, info.serial_no, info.protocol) == ("MISBRIDGE-SIM", "1.0.0", "SIM0001", 1)
    assert driver.info == info
    assert await driver.status() == "idle"


@pytest.mark.parametrize("name", sorted(CARDS))
async def test_card_and_pin_for_every_card(driver: MisPosV1Driver, pad: SimulatedPinPad, name: str) -> None:
    card = CARDS[name]
    pad.enqueue_customer(Customer(name))
    progress: list[tuple[str, int]] = []
    driver.on_progress = lambda stage, digits: progress.append((stage, digits))
    read = await driver.read_card(4080, 30, "Amount 40.80")
    assert read.masked_pan == card.masked_pan
    assert read.expiry == card.expiry
    assert decrypt_text(read.enc_pan_hex, KEY) == card.pan
    assert decrypt_text(read.enc_track2_hex, KEY) == card.track2
    pin = await driver.read_pin(4080, 30, "Enter PIN")
    assert decrypt_pin(pin.pin_block_hex, card.pan, KEY) == card.pin
    assert pin.key_index == 1
    digits = [("pin_digit", n) for n in range(1, len(card.pin) + 1)]
    # §5 PROGRESS: every stage of a card and a PIN step, 02 before CARD_DATA and 05 before PIN_BLOCK.
    assert progress == [("waiting_card", 0), ("card_read", 0), ("waiting_pin", 0), *digits, ("pin_complete", 0)]


async def test_the_default_customer_pays_with_the_default_card(driver: MisPosV1Driver) -> None:
    read = await driver.read_card(100, 30)
    pin = await driver.read_pin(100, 30)
    assert read.masked_pan == CARDS[DEFAULT_CARD].masked_pan
    assert decrypt_pin(pin.pin_block_hex, CARDS[DEFAULT_CARD].pan, KEY) == CARDS[DEFAULT_CARD].pin


async def test_a_wrong_pin_is_encrypted_as_typed(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer("points", pin="000000"))
    await driver.read_card(100, 30)
    pin = await driver.read_pin(100, 30)
    assert decrypt_pin(pin.pin_block_hex, CARDS["points"].pan, KEY) == "000000"


async def test_display_text(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    await driver.display_text("谢谢 Thank you", seconds=2)
    assert pad.displayed == "谢谢 Thank you"


# -- §11 LOAD_WORKING_KEY, with the test vectors of the key-management guide ---------------------

#: UnionPay sign-in vector (mode 003): the PIK wrapped under the simulator's master key, its KCV.
VECTOR_ENC_PIK, VECTOR_KCV = "6701EAD6A9AD51E51AA406E2C27FCFA9", "8D0A74"
VECTOR_PIK = bytes.fromhex("807A23AD32B36D457AE91FDF927570EA")


async def test_a_working_key_with_the_right_kcv_is_unwrapped_and_used(driver: MisPosV1Driver) -> None:
    await driver.load_working_key(2, VECTOR_ENC_PIK, VECTOR_KCV)
    card = CARDS[DEFAULT_CARD]
    read = await driver.read_card(100, 30)
    assert decrypt_text(read.enc_pan_hex, KEY) == card.pan  # card data: slot 1 (CARD_KEY_INDEX)
    pin = await driver.read_pin(100, 30, key_index=2)
    assert pin.key_index == 2
    assert decrypt_pin(pin.pin_block_hex, card.pan, VECTOR_PIK) == card.pin


async def test_a_wrong_kcv_is_refused_with_11_and_the_slot_keeps_its_key(driver: MisPosV1Driver) -> None:
    with pytest.raises(DeviceRejected) as caught:
        await driver.load_working_key(1, VECTOR_ENC_PIK, "8D0A75")
    assert caught.value.device_code == ResultCode.KEY_CHECK_FAILED
    assert ResultCode.KEY_CHECK_FAILED.value == "11"
    card = CARDS[DEFAULT_CARD]
    read = await driver.read_card(100, 30)
    pin = await driver.read_pin(100, 30)
    assert decrypt_text(read.enc_pan_hex, KEY) == card.pan  # still the test key
    assert decrypt_pin(pin.pin_block_hex, card.pan, KEY) == card.pin


async def test_a_pad_fresh_from_provisioning_reads_no_card_until_the_backend_working_key_loads(
    link_path: Path,
) -> None:
    pad = SimulatedPinPad(link=str(link_path))  # the default: the master key, no working key
    await pad.start()
    drv = MisPosV1Driver(settings_for(link_path), keepalive_s=None)
    await drv.start()
    try:
        assert await drv.wait_connected(3)
        assert drv.info is not None
        assert drv.info.working_key_kcv == ""
        with pytest.raises(DeviceRejected) as caught:
            await drv.read_card(100, 30)
        assert caught.value.device_code == ResultCode.NO_KEY
        master = bytes.fromhex(TEST_MASTER_KEY_HEX)
        await drv.load_working_key(1, wrap_key(KEY, master), key_check_value(KEY))
        card = CARDS[DEFAULT_CARD]
        read = await drv.read_card(100, 30)
        pin = await drv.read_pin(100, 30)
        assert decrypt_text(read.enc_pan_hex, KEY) == card.pan
        assert decrypt_pin(pin.pin_block_hex, card.pan, KEY) == card.pin
    finally:
        await drv.stop()
        await pad.stop()


@pytest.mark.parametrize(
    ("slot", "enc", "code"),
    [(11, VECTOR_ENC_PIK, "07"), (2, VECTOR_ENC_PIK[:16], "07"), (2, VECTOR_ENC_PIK + "00" * 8, "07")],
    ids=["no-such-slot", "single-length", "triple-length"],
)
async def test_a_working_key_the_pad_cannot_take_is_bad_command(
    driver: MisPosV1Driver, slot: int, enc: str, code: str
) -> None:
    with pytest.raises(DeviceRejected) as caught:
        await driver.load_working_key(slot, enc, VECTOR_KCV)
    assert caught.value.device_code == code


async def test_a_pad_without_a_master_key_answers_no_key(link_path: Path) -> None:
    pad = SimulatedPinPad(link=str(link_path), master_key_hex="")
    await pad.start()
    drv = MisPosV1Driver(settings_for(link_path), keepalive_s=None)
    await drv.start()
    try:
        assert await drv.wait_connected(3)
        with pytest.raises(DeviceRejected) as caught:
            await drv.load_working_key(1, VECTOR_ENC_PIK, VECTOR_KCV)
        assert caught.value.device_code == ResultCode.NO_KEY
    finally:
        await drv.stop()
        await pad.stop()


# -- §11 LOAD_MASTER_KEY: provisioning under the transport key (the store's rootKey) ------------

#: The key-management guide's transport vector: a TMK wrapped under KTK 3131…31 (the simulators' rootKey).
VECTOR_ENC_TMK, VECTOR_TMK_KCV = "E51D9047310F731798CF74AF483931B3", "712C8C"
VECTOR_TMK = bytes.fromhex("1CF88AB5D64F314F9EF237FBD99E29CD")


async def test_device_info_reports_the_kcvs_of_the_keys_the_pad_holds(driver: MisPosV1Driver) -> None:
    info = await driver.device_info()
    assert (info.master_key_kcv, info.working_key_kcv) == (
        key_check_value(bytes.fromhex(TEST_MASTER_KEY_HEX)),
        key_check_value(KEY),
    )


async def test_a_master_key_under_the_transport_key_replaces_the_old_one_and_drops_the_working_keys(
    driver: MisPosV1Driver,
) -> None:
    await driver.load_master_key(VECTOR_ENC_TMK, VECTOR_TMK_KCV)
    info = await driver.device_info()
    assert (info.master_key_kcv, info.working_key_kcv) == (VECTOR_TMK_KCV, "")
    with pytest.raises(DeviceRejected) as caught:
        await driver.read_card(100, 30)
    assert caught.value.device_code == ResultCode.NO_KEY
    # A working key wrapped under the new master key loads; one under the old does not.
    with pytest.raises(DeviceRejected) as caught:
        await driver.load_working_key(1, VECTOR_ENC_PIK, VECTOR_KCV)
    assert caught.value.device_code == ResultCode.KEY_CHECK_FAILED
    await driver.load_working_key(1, wrap_key(KEY, VECTOR_TMK), key_check_value(KEY))
    card = CARDS[DEFAULT_CARD]
    read = await driver.read_card(100, 30)
    pin = await driver.read_pin(100, 30)
    assert decrypt_pin(pin.pin_block_hex, card.pan, KEY) == card.pin
    assert decrypt_text(read.enc_pan_hex, KEY) == card.pan


async def test_a_master_key_with_a_wrong_kcv_is_refused_and_the_pad_keeps_its_keys(driver: MisPosV1Driver) -> None:
    with pytest.raises(DeviceRejected) as caught:
        await driver.load_master_key(VECTOR_ENC_TMK, "712C8D")
    assert caught.value.device_code == ResultCode.KEY_CHECK_FAILED
    info = await driver.device_info()
    assert info.working_key_kcv == key_check_value(KEY)
    with pytest.raises(DeviceRejected) as caught:
        await driver.load_master_key(VECTOR_ENC_TMK[:16], VECTOR_TMK_KCV)
    assert caught.value.device_code == ResultCode.BAD_COMMAND


async def test_a_pad_without_a_transport_key_cannot_be_provisioned_over_the_line(link_path: Path) -> None:
    pad = SimulatedPinPad(link=str(link_path), master_key_hex="", working_key_hex="", transport_key_hex="")
    await pad.start()
    drv = MisPosV1Driver(settings_for(link_path), keepalive_s=None)
    await drv.start()
    try:
        assert await drv.wait_connected(3)
        assert drv.info is not None
        assert (drv.info.master_key_kcv, drv.info.working_key_kcv) == ("", "")
        with pytest.raises(DeviceRejected) as caught:
            await drv.load_master_key(VECTOR_ENC_TMK, VECTOR_TMK_KCV)
        assert caught.value.device_code == ResultCode.NO_KEY
    finally:
        await drv.stop()
        await pad.stop()


async def test_a_pin_is_bound_to_one_card_read(driver: MisPosV1Driver) -> None:
    # §5: the card read is used by one READ_PIN, whatever its outcome; the next needs a new card.
    await driver.read_card(100, 30)
    await driver.read_pin(100, 30)
    with pytest.raises(DeviceRejected) as caught:
        await driver.read_pin(100, 30)
    assert caught.value.device_code == ResultCode.BAD_COMMAND


# -- the customer does something else --------------------------------------------------------


async def test_customer_cancels_at_the_card_step(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="cancel-card"))
    with pytest.raises(CustomerCancelled) as caught:
        await driver.read_card(100, 30)
    assert caught.value.return_code is ReturnCode.CUSTOMER_CANCELLED


async def test_customer_cancels_at_the_pin_step(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="cancel-pin"))
    await driver.read_card(100, 30)
    with pytest.raises(CustomerCancelled):
        await driver.read_pin(100, 30)


async def test_no_card_is_a_card_timeout(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="no-card"))
    started = time.monotonic()
    with pytest.raises(DeviceTimeout) as caught:
        await driver.read_card(100, 5)
    assert caught.value.return_code is ReturnCode.CARD_TIMEOUT
    assert TIMEOUT_CAP_S <= time.monotonic() - started < 2


async def test_no_pin_is_a_pin_timeout(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="no-pin"))
    await driver.read_card(100, 30)
    with pytest.raises(DeviceTimeout) as caught:
        await driver.read_pin(100, 5)
    assert caught.value.return_code is ReturnCode.PIN_TIMEOUT


async def test_unreadable_card(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="card-error"))
    with pytest.raises(CardReadError) as caught:
        await driver.read_card(100, 30)
    assert caught.value.return_code is ReturnCode.CARD_READ_ERROR


async def test_card_removed_at_the_pin_step(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="remove-card"))
    await driver.read_card(100, 30)
    with pytest.raises(DeviceRejected) as caught:
        await driver.read_pin(100, 30)
    assert caught.value.return_code is ReturnCode.CARD_REMOVED


async def test_read_pin_without_a_card_is_refused(driver: MisPosV1Driver) -> None:
    with pytest.raises(DeviceRejected) as caught:
        await driver.read_pin(100, 30)
    assert caught.value.device_code == ResultCode.BAD_COMMAND.value


async def test_host_cancel_ends_the_running_step(link_path: Path) -> None:
    slow = SimulatedPinPad(link=str(link_path), card_delay_s=5, working_key_hex=KEY.hex())
    await slow.start()
    drv = MisPosV1Driver(settings_for(link_path))
    await drv.start()
    try:
        assert await drv.wait_connected(3)
        step = asyncio.create_task(drv.read_card(100, 30))
        await asyncio.sleep(0.1)
        await drv.cancel()
        with pytest.raises(CustomerCancelled, match="host"):
            await step
        assert await drv.status() == "idle"
    finally:
        await drv.stop()
        await slow.stop()


async def test_a_second_command_while_busy_gets_result_busy(pad: SimulatedPinPad, link_path: Path) -> None:
    # The driver never does this (one command at a time); a raw link shows the pad's side.
    session = LinkSession(Role.HOST)
    link = LinkDriver(await open_transport(str(link_path), baudrate=115200), session)
    link.start()
    pad.enqueue_customer(Customer(action="no-card"))
    try:
        card = asyncio.create_task(link.request(ReadCard(1, 100, 30), timeout=5))
        await asyncio.sleep(0.05)
        busy = await link._exchange(DisplayText(2, "hello"))
        assert busy == Result(2, ResultCode.BUSY, "busy")
        assert await card == Result(1, ResultCode.TIMEOUT, "no card")
    finally:
        await link.aclose()


# -- the cable -------------------------------------------------------------------------------


async def test_unplug_while_idle_then_replug_on_the_same_link(
    driver: MisPosV1Driver, pad: SimulatedPinPad, link_path: Path
) -> None:
    pad.unplug()
    async with asyncio.timeout(1):
        # Polls the property the daemon's health check reads; there is no event to wait on.
        while driver.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert not link_path.exists()  # noqa: ASYNC240 - one stat in a test; the udev link went away
    started = time.monotonic()
    with pytest.raises(DeviceNotConnected):
        await driver.read_card(100, 30)
    assert time.monotonic() - started < 0.1

    replacement = SimulatedPinPad(link=str(link_path), working_key_hex=KEY.hex())
    await replacement.start()
    try:
        assert await driver.wait_connected(5)
        read = await driver.read_card(100, 30)
        assert read.masked_pan == CARDS[DEFAULT_CARD].masked_pan
    finally:
        await replacement.stop()


async def test_unplug_during_a_card_step_fails_it_at_once(driver: MisPosV1Driver, pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(action="no-card"))
    pad._timeout_cap_s = 30
    step = asyncio.create_task(driver.read_card(100, 30))
    await asyncio.sleep(0.1)
    pad.unplug()
    async with asyncio.timeout(1):
        with pytest.raises(DeviceNotConnected):
            await step


async def test_a_second_daemon_cannot_open_the_pad(driver: MisPosV1Driver, link_path: Path) -> None:
    with pytest.raises(DeviceNotConnected, match="lock"):
        await open_transport(str(link_path), baudrate=115200)


# -- logs ------------------------------------------------------------------------------------


async def test_logs_show_the_masked_pan_only(
    driver: MisPosV1Driver, pad: SimulatedPinPad, caplog: pytest.LogCaptureFixture
) -> None:
    card = CARDS["member"]
    pad.enqueue_customer(Customer("member"))
    daemon_lines: list[str] = []
    handler = logger.add(lambda m: daemon_lines.append(str(m)), level="DEBUG", format="{message}")
    try:
        with caplog.at_level(logging.DEBUG, logger="simulators.pinpad"):
            read = await driver.read_card(100, 30)
            pin = await driver.read_pin(100, 30)
    finally:
        logger.remove(handler)
    text = caplog.text + "\n".join(daemon_lines)
    assert card.masked_pan in caplog.text
    assert card.masked_pan in "\n".join(daemon_lines)
    for secret in (card.pan, read.enc_pan_hex, read.enc_track2_hex, pin.pin_block_hex, encrypt_text(card.track2, KEY)):
        assert secret not in text
    assert repr(read).count("enc_") == 0


# -- control channel and command line --------------------------------------------------------


async def test_control_socket_enqueues_customers(pad: SimulatedPinPad, tmp_path: Path) -> None:
    control = ControlServer(pad, tmp_path / "pad.ctl")
    await control.start()
    try:
        await enqueue_remote(control.path, card="prepaid", action="pay")
        assert pad.queued_customers == 1
        with pytest.raises(ValueError, match="unknown card"):
            await enqueue_remote(control.path, card="no-such-card")
        reader, writer = await asyncio.open_unix_connection(control.path)
        writer.write(b'{"action": "dance"}\nnot json\n{"pin": "12"}\n{"card": "points", "pin": null}\n')
        replies = [json.loads(await reader.readline()) for _ in range(4)]
        writer.close()
        await writer.wait_closed()
        assert [r["ok"] for r in replies] == [False, False, False, True]
        assert "unknown action" in replies[0]["error"]
        assert pad.queued_customers == 2
    finally:
        await control.stop()
    assert not (tmp_path / "pad.ctl").exists()


async def test_command_line_simulator_serves_until_sigterm(tmp_path: Path) -> None:
    link, control = tmp_path / "pinpad", tmp_path / "pinpad.ctl"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "pinpad", "--link", str(link), "--control", str(control),
        "--card", "points", "--timeout-cap", "0.2", "--keys", "signed-in",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(10):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("PIN pad simulator on /dev/pts/")
        assert f"link {link}" in line
        await enqueue_remote(control, card="member")
        drv = MisPosV1Driver(settings_for(link))
        await drv.start()
        try:
            assert await drv.wait_connected(3)
            assert (await drv.read_card(100, 30)).masked_pan == CARDS["member"].masked_pan
            assert (await drv.read_card(100, 30)).masked_pan == CARDS["points"].masked_pan
        finally:
            await drv.stop()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            assert await process.wait() == 0
    assert not link.exists()
    assert not control.exists()


# -- line faults the technicians' simulator injects ------------------------------------------

FAULT_CASES = {
    "nak": (Faults(nak=2), Retransmitted),
    "withhold-ack": (Faults(withhold_ack=1), Retransmitted),
    "bad-lrc": (Faults(bad_lrc=2), FrameRejected),
    "garbage": (Faults(garbage=3), GarbageDiscarded),
    "duplicate": (Faults(duplicate=3), DuplicateSuppressed),
    "silence": (Faults(silence_s=1.5), None),  # the pad resends its own frames after the silence
    "slow-bytes": (Faults(slow_ms=2), None),
}


@pytest.mark.parametrize("case", sorted(FAULT_CASES))
async def test_the_link_recovers_from_line_faults_and_delivers_each_event_once(link_path: Path, case: str) -> None:
    faults, expected_event = FAULT_CASES[case]
    pad = SimulatedPinPad(link=str(link_path), working_key_hex=KEY.hex())
    await pad.start()
    drv = MisPosV1Driver(settings_for(link_path), keepalive_s=None)
    await drv.start()
    events: list[object] = []
    progress: list[tuple[str, int]] = []
    try:
        assert await drv.wait_connected(3)
        drv.on_link_event = events.append
        drv.on_progress = lambda stage, digits: progress.append((stage, digits))
        pad.faults = faults
        pad.enqueue_customer(Customer("member"))
        card = CARDS["member"]
        async with asyncio.timeout(10):
            read = await drv.read_card(100, 30)
            pin = await drv.read_pin(100, 30)
        assert read.masked_pan == card.masked_pan
        assert decrypt_pin(pin.pin_block_hex, card.pan, KEY) == card.pin
        # Each event exactly once, whatever the line did.
        digits = [("pin_digit", n) for n in range(1, len(card.pin) + 1)]
        assert progress == [("waiting_card", 0), ("card_read", 0), ("waiting_pin", 0), *digits, ("pin_complete", 0)]
        assert pad.commands == {"DeviceInfoRequest": 1, "ReadCard": 1, "ReadPin": 1}
        if expected_event is not None:
            assert any(isinstance(e, expected_event) for e in events), events
        assert drv.connected
        assert await drv.status() == "idle"
    finally:
        await drv.stop()
        await pad.stop()


async def test_the_trace_shows_frames_with_the_pan_masked_and_secrets_elided(
    link_path: Path,
) -> None:
    lines: list[str] = []
    pad = SimulatedPinPad(link=str(link_path), trace=lines.append, faults=Faults(garbage=1), working_key_hex=KEY.hex())
    await pad.start()
    drv = MisPosV1Driver(settings_for(link_path), keepalive_s=None)
    await drv.start()
    try:
        assert await drv.wait_connected(3)
        pad.enqueue_customer(Customer("member"))
        read = await drv.read_card(100, 30)
        pin = await drv.read_pin(100, 30)
    finally:
        await drv.stop()
        await pad.stop()
    card = CARDS["member"]
    text = "\n".join(lines)
    assert any("host>pad frame" in line and "ReadCard" in line and "amount_minor=100" in line for line in lines)
    assert any(
        "pad>host frame" in line and f"masked_pan={card.masked_pan}" in line and "elided" in line for line in lines
    )
    assert any("pad>host ACK seq=" in line for line in lines)
    assert any("host>pad ACK seq=" in line for line in lines)
    assert any("pad>host garbage" in line for line in lines)
    for secret in (card.pan, read.enc_pan_hex, pin.pin_block_hex, read.enc_pan_hex[:16].lower()):
        assert secret.lower() not in text.lower()
    hex_pan = " ".join(f"{b:02x}" for b in card.pan.encode())
    assert hex_pan not in text


async def test_command_line_faults_scenario_and_trace_file(tmp_path: Path) -> None:
    link, trace = tmp_path / "pinpad", tmp_path / "trace.log"
    scenario = tmp_path / "bench.toml"
    scenario.write_text(
        '[pad]\ncard = "points"\ntimeout_cap = 0.2\nkeys = "signed-in"\n'
        "[faults]\nnak = 1\nbad_lrc = 1\n"
        '[[customers]]\ncard = "member"\n[[customers]]\naction = "card-error"\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "pinpad", "--link", str(link), "--scenario", str(scenario),
        "--duplicate", "1", "--trace", str(trace),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(10):
            assert (await process.stdout.readline()).startswith(b"PIN pad simulator on")
        drv = MisPosV1Driver(settings_for(link), keepalive_s=None)
        await drv.start()
        try:
            assert await drv.wait_connected(5)
            assert (await drv.read_card(100, 30)).masked_pan == CARDS["member"].masked_pan
            with pytest.raises(CardReadError):
                await drv.read_card(100, 30)
            assert (await drv.read_card(100, 30)).masked_pan == CARDS["points"].masked_pan
        finally:
            await drv.stop()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            assert await process.wait() == 0
    lines = trace.read_text().splitlines()
    assert any("pad>host NAK" in line for line in lines)
    assert any("DeviceInfo id=" in line and "model=MISBRIDGE-SIM" in line for line in lines)
    assert CARDS["member"].pan not in trace.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nak", "-1"], "nak must not be negative"),
        (["--pin", "12"], "4 to 12 digits"),
    ],
)
def test_command_line_rejects_bad_values(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from simulators.cli import main

    assert main(["pinpad", *argv]) == 2
    assert message in capsys.readouterr().err


# -- misbridge probe -------------------------------------------------------------------------


async def test_probe_try_reads_the_pads_identity(pad: SimulatedPinPad, link_path: Path) -> None:
    info = await try_pad(str(link_path), timeout=3)
    assert (info.model, info.firmware, info.serial_no) == ("MISBRIDGE-SIM", "1.0.0", "SIM0001")


async def test_probe_try_reports_a_missing_pad(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotConnected, match="cannot open"):
        await try_pad(str(tmp_path / "nothing"), timeout=0.5)


def _misbridge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "misbridge", *args],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip


def test_probe_command_line(tmp_path: Path) -> None:
    async def serve_and_probe() -> subprocess.CompletedProcess[str]:
        simulator = SimulatedPinPad(link=str(tmp_path / "pad"))
        await simulator.start()
        try:
            return await asyncio.to_thread(_misbridge, "probe", "--try", str(tmp_path / "pad"))
        finally:
            await simulator.stop()

    done = asyncio.run(serve_and_probe())
    assert done.returncode == 0, done.stderr
    assert "model MISBRIDGE-SIM, firmware 1.0.0, serial SIM0001" in done.stdout
    missing = _misbridge("probe", "--try", str(tmp_path / "gone"), "--timeout", "0.5")
    assert missing.returncode == 1
    assert "cannot open PIN pad" in missing.stderr
    listed = _misbridge("probe")
    assert listed.returncode == 0, listed.stderr
    assert "Serial ports:" in listed.stdout
    assert "USB PIN pads" in listed.stdout
