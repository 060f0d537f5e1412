"""The technician's interactive simulator: pick the card and type the PIN at the terminal."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.simulated import Simulators, daemon_for, launched_backend, simulated_settings, write_signing_key
from misbridge.config.settings import DeviceSettings
from misbridge.device import MisPosV1Driver
from misbridge.ebuy.examples import card_redemption_request
from misbridge.errors import CustomerCancelled
from simulators.cards import CARDS, DEFAULT_CARD
from simulators.crypto import decrypt_pin
from tests.keys import load_working_key, signed_in_pad_key


async def _until(stream: asyncio.StreamReader, text: str) -> str:
    seen = b""
    while text.encode() not in seen:
        chunk = await asyncio.wait_for(stream.read(256), 10)
        assert chunk, f"simulator ended before asking {text!r}; it said {seen!r}"
        seen += chunk
    return seen.decode()


async def _answer(process: asyncio.subprocess.Process, prompt: str, answer: str) -> str:
    assert process.stdout is not None
    assert process.stdin is not None
    said = await _until(process.stdout, prompt)
    process.stdin.write(answer.encode() + b"\n")
    await process.stdin.drain()
    return said


async def test_the_technician_picks_the_card_and_types_the_pin(tmp_path: Path) -> None:
    link = tmp_path / "pinpad"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "pinpad", "--interactive", "--link", str(link),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    await _until(process.stdout, "PIN pad simulator on")
    driver = MisPosV1Driver(DeviceSettings(url=str(link)))
    await driver.start()
    key = signed_in_pad_key()
    try:
        assert await driver.wait_connected(5)
        await load_working_key(driver, key)  # the pad starts provisioned: misbridge's sign-in loads the key
        reading = asyncio.create_task(driver.read_card(4080, 30))
        prompt = await _answer(process, "READ_CARD 40.80", "prepaid")
        assert "member" in prompt  # the technician is shown the card names
        card = await reading
        assert card.masked_pan == CARDS["prepaid"].masked_pan
        entering = asyncio.create_task(driver.read_pin(4080, 30))
        await _answer(process, "PIN for", "")  # Enter: the right PIN
        pin = await entering
        assert decrypt_pin(pin.pin_block_hex, CARDS["prepaid"].pan, key) == CARDS["prepaid"].pin

        reading = asyncio.create_task(driver.read_card(100, 30))
        await _answer(process, "READ_CARD 1.00", "member")
        await reading
        entering = asyncio.create_task(driver.read_pin(100, 30))
        await _answer(process, "PIN for", "cancel")
        with pytest.raises(CustomerCancelled):
            await entering
    finally:
        await driver.stop()
        process.terminate()
        await process.wait()


async def test_a_pin_too_short_is_asked_again_and_the_sale_completes(tmp_path: Path) -> None:
    """The technician types "12" at the PIN prompt: refused and asked again, not a dead pad job.

    The whole chain as a technician bench-tests it: the interactive pad on its pty (a process of
    its own, typed at over a pipe), the backend simulator, misbridge signing in and loading the
    day's key, and the POS's card sale on the socket door.
    """
    link = tmp_path / "pinpad"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "pinpad", "--interactive", "--link", str(link),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        await _until(process.stdout, "PIN pad simulator on")
        key_file = write_signing_key(tmp_path)
        async with launched_backend(tmp_path, key_file) as backend_url:
            sims = Simulators(link, tmp_path / "no-control", backend_url, key_file, tmp_path / "simulators.log")
            daemon = daemon_for(simulated_settings(sims, tmp_path / "journal.db"))
            await daemon.start()
            try:
                request = card_redemption_request()
                sale = asyncio.create_task(
                    socket_request(daemon.settings.api.host, daemon.socket_port,
                                   envelope_for("cardRedemption", request), reply_timeout_s=30)
                )  # fmt: skip
                await _answer(process, "READ_CARD", "")  # Enter: the default card
                await _answer(process, "PIN for", "12")
                await _answer(process, "4 to 12 digits: PIN again", "12ab")
                await _answer(process, "4 to 12 digits: PIN again", CARDS[DEFAULT_CARD].pin)
                answer = await asyncio.wait_for(sale, 20)
                assert answer.body["returnCode"] == "00", answer.body
                assert answer.body["traceNo"] == request["traceNo"]
            finally:
                await daemon.stop()
    finally:
        process.terminate()
        await process.wait()
