"""The technician's interactive simulator: pick the card and type the PIN at the terminal."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from misbridge.config.settings import DeviceSettings
from misbridge.device import MisPosV1Driver
from misbridge.errors import CustomerCancelled
from simulators.cards import CARDS
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
