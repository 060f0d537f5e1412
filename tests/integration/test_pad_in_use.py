"""A pad the daemon holds: every tool that opens the pad itself says so, and how to free it.

misbridge's own driver holds the simulated pad's port (the exclusive lock a running service
takes), and ``misbridge probe --try``, ``misbridge pad provision`` and ``misbridge conformance``
run as processes of their own against it, as a technician would run them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from misbridge.config.settings import DeviceSettings
from misbridge.device import MisPosV1Driver
from misbridge.errors import DeviceNotConnected, PadInUse
from misbridge.transport import open_transport
from misbridge.transport.serial import is_port_locked
from simulators.crypto import TEST_ROOT_KEY_HEX
from simulators.pinpad import SimulatedPinPad

REPO_ROOT = Path(__file__).resolve().parents[2]
#: What every tool must say: who holds the pad, and the two ways out.
THE_SENTENCE = ("is in use by another program", "most likely the misbridge service", "systemctl stop misbridge",
                "misbridge status")  # fmt: skip


@pytest.fixture
async def held_pad(tmp_path: Path) -> AsyncIterator[Path]:
    """A simulated pad whose port misbridge's driver holds open, as the running service does."""
    link = tmp_path / "mispos"
    pad = SimulatedPinPad(link=str(link))
    await pad.start()
    service = MisPosV1Driver(DeviceSettings(url=str(link)), keepalive_s=None)
    await service.start()
    try:
        assert await service.wait_connected(5)
        yield link
    finally:
        await service.stop()
        await pad.stop()


async def _misbridge(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISBRIDGE_") and k != "CREDENTIALS_DIRECTORY"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "misbridge", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _says_the_pad_is_in_use(text: str, port: Path) -> None:
    assert "Traceback" not in text
    for part in (*THE_SENTENCE, str(port)):
        assert part in text, text


async def test_the_transport_names_a_locked_port_as_in_use(held_pad: Path) -> None:
    with pytest.raises(PadInUse) as refused:
        await open_transport(str(held_pad), baudrate=115200)
    assert isinstance(refused.value, DeviceNotConnected)  # the daemon's reconnect loop treats it as ever
    assert refused.value.url == str(held_pad)
    assert isinstance(refused.value.__cause__, BaseException)
    assert is_port_locked(refused.value.__cause__)


def test_only_the_lock_refusal_counts_as_in_use() -> None:
    assert is_port_locked(OSError(11, "Resource temporarily unavailable"))
    assert is_port_locked(Exception("Could not exclusively lock port /dev/ttyACM0: [Errno 11] ..."))
    assert not is_port_locked(FileNotFoundError(2, "No such file or directory"))
    assert not is_port_locked(PermissionError(13, "Permission denied"))


async def test_probe_try_says_the_pad_is_in_use_at_once(held_pad: Path) -> None:
    began = time.monotonic()
    code, _out, err = await _misbridge("probe", "--try", str(held_pad), "--timeout", "8")
    assert code == 1  # the probe's "cannot open" status
    _says_the_pad_is_in_use(err, held_pad)
    assert len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - began < 8  # not after waiting out --timeout: the lock does not go away


async def test_pad_provision_says_the_pad_is_in_use(held_pad: Path, tmp_path: Path) -> None:
    root_key = tmp_path / "ebuy-root-key"
    root_key.write_text(TEST_ROOT_KEY_HEX + "\n", encoding="utf-8")
    root_key.chmod(0o400)
    config = tmp_path / "misbridge.toml"
    config.write_text(
        f"[device]\nurl = {json.dumps(str(held_pad))}\n"
        '[backend]\nurl = "http://127.0.0.1:9/ebuyweb-posp/api"\n[backend.signing]\nenabled = false\n'
        f"[journal]\npath = {json.dumps(str(tmp_path / 'journal.db'))}\n"
        f"[keys]\nroot_key_file = {json.dumps(str(root_key))}\n",
        encoding="utf-8",
    )
    began = time.monotonic()
    code, out, err = await _misbridge("pad", "provision", "--config", str(config))
    assert code == 1, out + err
    _says_the_pad_is_in_use(out + err, held_pad)
    assert time.monotonic() - began < 10  # provisioning's own wait for the pad is 10 s


async def test_conformance_says_the_pad_is_in_use_and_checks_nothing(held_pad: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, out, err = await _misbridge("conformance", "--device-url", str(held_pad), "--report", str(report))
    assert code == 2, out + err
    _says_the_pad_is_in_use(err, held_pad)
    assert not report.exists()  # no report of 47 failures the pad is not to blame for
