"""Checks through misbridge's own driver (docs/device-protocol.md §3.1, §5, §5.1, §5.2, §7.1, §10, §11).

The normal path: :class:`~misbridge.device.mispos.MisPosV1Driver` opens the port, starts the
session, asks DEVICE_INFO and sends each command as the daemon does in a sale. A pad that passes
these works with misbridge; the raw checks then test the rules the driver never breaks on purpose.
"""

from __future__ import annotations

import asyncio
import re

from misbridge.config.settings import DeviceSettings
from misbridge.device.base import CodeEntry, ProgressStep
from misbridge.device.mispos import MisPosV1Driver
from misbridge.errors import DeviceRejected
from misbridge.link import SessionStarted
from misbridge.tools.conformance.base import Check, Failed, Run, Skipped, check, expect
from misbridge.tools.conformance.command_checks import CUSTOMER_S
from misbridge.tools.conformance.people import Act
from misbridge.tools.conformance.vectors import VECTOR_ENC_KEY, VECTOR_KCV, VECTOR_WRONG_KCV

DRIVER_CHECKS: list[Check] = []
MASKED_PAN = re.compile(r"^\d{6}\*+\d{4}$")
#: How long the driver may take to connect (the session start of a v1 pad alone takes 4 s).
CONNECT_S = 10.0


def driver(run: Run) -> MisPosV1Driver:
    """The driver the phase opened."""
    found = run.notes.get("driver")
    if not isinstance(found, MisPosV1Driver):
        raise Failed("misbridge's driver connected (driver-connect)", "no connection")
    return found


async def open_driver(run: Run) -> MisPosV1Driver:
    """Start misbridge's driver on the pad, recording session starts and progress stages."""
    pad = MisPosV1Driver(DeviceSettings(url=run.url, baudrate=run.baudrate), keepalive_s=None, backoff_max_s=1.0)
    sessions: list[bool] = run.notes.setdefault("sessions", [])
    stages: list[tuple[str, int]] = run.notes.setdefault("stages", [])

    def on_event(event: object) -> None:
        if isinstance(event, SessionStarted):
            sessions.append(event.confirmed)

    pad.on_link_event = on_event
    pad.on_progress = lambda step, digits: stages.append((step, digits))
    run.notes["driver"] = pad
    await pad.start()
    return pad


@check(DRIVER_CHECKS, "driver-connect", "misbridge's driver connects: session start answered, DEVICE_INFO", "3.1; 5.5")
async def connect(run: Run) -> str:
    pad = await open_driver(run)
    expect(await pad.wait_connected(CONNECT_S), f"connected within {CONNECT_S:g} s", "not connected (see the log)")
    sessions = run.notes["sessions"]
    expect(
        sessions[-1:] == [True],
        "LINK_RESET answered (session confirmed)",
        "no LINK_RESET_REPLY: the pad was taken for a v1 pad",
    )
    return "connected, session start confirmed"


@check(DRIVER_CHECKS, "device-info", "DEVICE_INFO names the pad and protocol version 1", "5; 5.5")
async def device_info(run: Run) -> str:
    info = await driver(run).device_info()
    run.pad.update(model=info.model, firmware=info.firmware, serial_no=info.serial_no, protocol=info.protocol)
    expect(bool(info.model and info.firmware and info.serial_no), "MODEL, FIRMWARE and SERIAL_NO not empty", repr(info))
    expect(info.protocol == 1, "PROTOCOL_VERSION 1", str(info.protocol))
    return f"{info.model} {info.firmware} ({info.serial_no})"


@check(DRIVER_CHECKS, "status-idle", "STATUS of an idle pad: DEVICE_STATE 00", "5")
async def status_idle(run: Run) -> str:
    state = await driver(run).status()
    expect(state == "idle", "idle", state)
    return "idle"


@check(DRIVER_CHECKS, "display-text", "DISPLAY_TEXT, ASCII and Chinese (UTF-8), RESULT 00", "10")
async def display_text(run: Run) -> str:
    pad = driver(run)
    await pad.display_text("misbridge conformance", seconds=2)
    await pad.display_text("请刷卡 misbridge 测试", seconds=2)
    return "both shown (RESULT 00)"


@check(
    DRIVER_CHECKS,
    "load-key-right-kcv",
    "LOAD_WORKING_KEY with the right KCV loads (§11 test vector, slot 2)",
    "11",
    keys=True,
)
async def load_right(run: Run) -> str:
    try:
        await driver(run).load_working_key(2, VECTOR_ENC_KEY, VECTOR_KCV)
    except DeviceRejected as err:
        if err.device_code == "06":
            run.notes["no_master_key"] = True
            raise Skipped("the pad holds no master key (RESULT 06): inject the test master key of §11") from err
        raise Failed("RESULT 00", f"RESULT {err.device_code}") from err
    run.notes["slot2_loaded"] = True
    return f"KCV {VECTOR_KCV}: RESULT 00"


@check(DRIVER_CHECKS, "load-key-wrong-kcv", "LOAD_WORKING_KEY with a wrong KCV: RESULT 11", "11; 6", keys=True)
async def load_wrong(run: Run) -> str:
    if run.notes.get("no_master_key"):
        raise Skipped("the pad holds no master key (see load-key-right-kcv)")
    try:
        await driver(run).load_working_key(2, VECTOR_ENC_KEY, VECTOR_WRONG_KCV)
    except DeviceRejected as err:
        expect(err.device_code == "11", "RESULT 11 KEY_CHECK_FAILED", f"RESULT {err.device_code}")
        return f"KCV {VECTOR_WRONG_KCV}: RESULT 11"
    raise Failed("RESULT 11 KEY_CHECK_FAILED", "RESULT 00: the pad took a key whose KCV does not match")


@check(
    DRIVER_CHECKS,
    "card-and-pin",
    "READ_CARD then READ_PIN: card data, progress stages, PIN block",
    "5; 10",
    acts=(Act.PAY,),
    limit_s=2 * CUSTOMER_S + 20,
)
async def card_and_pin(run: Run) -> str:
    pad = driver(run)
    stages: list[tuple[str, int]] = run.notes["stages"]
    stages.clear()
    await run.person.do(Act.PAY)
    card = await pad.read_card(1, CUSTOMER_S, "conformance kit: 0.01")
    expect(bool(MASKED_PAN.match(card.masked_pan)), "MASKED_PAN: first 6 and last 4 digits", card.masked_pan)
    expect(bool(card.enc_pan_hex and card.enc_track2_hex), "ENC_PAN and ENC_TRACK2", "missing")
    key_index = 2 if run.notes.get("slot2_loaded") else 1
    try:
        pin = await pad.read_pin(1, CUSTOMER_S, "conformance kit: PIN", key_index=key_index)
    except DeviceRejected as err:
        run.notes["slot2_pin"] = f"RESULT {err.device_code}"
        raise Failed("PIN_BLOCK", f"RESULT {err.device_code} for KEY_INDEX {key_index}") from err
    run.notes["slot2_pin"] = "PIN_BLOCK"
    expect(len(pin.pin_block_hex) == 16, "a PIN_BLOCK of 16 hex characters", f"{len(pin.pin_block_hex)} characters")
    names = [step for step, _ in stages]
    wanted = [ProgressStep.WAITING_CARD, ProgressStep.CARD_READ, ProgressStep.WAITING_PIN, ProgressStep.PIN_COMPLETE]
    missing = [w.value for w in wanted if w.value not in names]
    expect(not missing, "PROGRESS 01, 02, 03, 04 (digits), 05", f"missing {missing}")
    digits = [n for step, n in stages if step == ProgressStep.PIN_DIGIT]
    expect(
        bool(digits) and digits == sorted(digits) and 4 <= digits[-1] <= 12,
        "DIGITS_ENTERED counting up to 4..12",
        str(digits),
    )
    return f"{card.masked_pan}; {len(digits)} PIN digit stages; PIN block under KEY_INDEX {key_index}"


@check(
    DRIVER_CHECKS,
    "load-key-kept",
    "after RESULT 11 the slot keeps its key (READ_PIN with it works)",
    "11",
    acts=(Act.PAY,),
    keys=True,
)
async def key_kept(run: Run) -> str:
    if not run.notes.get("slot2_loaded"):
        raise Skipped("slot 2 was not loaded (see load-key-right-kcv)")
    outcome = run.notes.get("slot2_pin")
    if outcome is None:
        raise Skipped("card-and-pin did not reach READ_PIN")
    expect(outcome == "PIN_BLOCK", "a PIN_BLOCK under KEY_INDEX 2", outcome)
    return (
        "READ_PIN with KEY_INDEX 2 gave a PIN block"
        " (which key encrypted it is not checked: misbridge never opens a PIN block)"
    )


@check(
    DRIVER_CHECKS,
    "read-code",
    "READ_CODE: a code scanned or keyed in comes back with its source",
    "5.1",
    acts=(Act.CODE,),
    limit_s=CUSTOMER_S + 20,
)
async def read_code(run: Run) -> str:
    await run.person.do(Act.CODE)
    code = await driver(run).read_code("conformance kit: code", CUSTOMER_S, 1, CodeEntry.ANY)
    expect(
        1 <= len(code.text) <= 512 and code.text.isprintable(),
        "1..512 printable characters",
        f"{len(code.text)} characters",
    )
    return f"{len(code.text)} characters from the {code.origin}"


@check(
    DRIVER_CHECKS,
    "choose",
    "CHOOSE: key 2 picks the second option",
    "5.2",
    acts=(Act.CHOOSE_2,),
    limit_s=CUSTOMER_S + 20,
)
async def choose(run: Run) -> str:
    await run.person.do(Act.CHOOSE_2)
    index = await driver(run).choose("conformance kit: press 2", ["first", "second", "third"], CUSTOMER_S)
    expect(index == 1, "the second option (CHOICE_INDEX 2)", f"option {index + 1}")
    return "CHOICE_INDEX 2"


@check(
    DRIVER_CHECKS,
    "unplug-replug",
    "unplugged and plugged back: a new session and DEVICE_INFO within 5 s",
    "7.1; 3 Reset",
    acts=(Act.UNPLUG, Act.REPLUG),
    limit_s=150,
)
async def unplug_replug(run: Run) -> str:
    pad = driver(run)
    sessions: list[bool] = run.notes["sessions"]
    before = len(sessions)
    await run.person.do(Act.UNPLUG)
    async with asyncio.timeout(CUSTOMER_S):
        while pad.connected:  # noqa: ASYNC110 - the driver has no event for going down
            await asyncio.sleep(0.05)
    await run.person.do(Act.REPLUG)
    expect(await pad.wait_connected(CUSTOMER_S), "the pad back within a minute of the replug", "not connected")
    expect(sessions[before:][-1:] == [True], "a new session started (LINK_RESET answered)", str(sessions[before:]))
    info = await pad.device_info()
    return f"back as {info.model} ({info.serial_no}) with a new session"
