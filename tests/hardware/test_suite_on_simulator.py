"""The hardware suite run against the pty PIN-pad simulator, so it is exercised on every ``make test``.

A real subprocess ``pytest -m hardware --device-url <pty> --device-customer`` on
``tests/hardware/test_real_pad.py``, exactly as a technician runs it on a pad; the simulator's
default customer presents a test card and types its PIN.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from misbridge.app.simulated import launched_simulators

SUITE = Path(__file__).with_name("test_real_pad.py")


async def _pytest(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "hardware",
        str(SUITE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def test_the_hardware_suite_passes_on_the_simulated_pad(tmp_path: Path) -> None:
    async with launched_simulators(tmp_path) as sims:
        code, out = await _pytest("--device-url", str(sims.device_path), "--device-customer")
    assert code == 0, out
    assert "3 passed" in out, out


async def test_without_a_device_url_the_suite_is_skipped_with_the_reason() -> None:
    code, out = await _pytest("-rs")
    assert code == 0, out
    assert "3 skipped" in out, out
    assert "needs a real PIN pad" in out, out


async def test_a_wrong_device_url_fails_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-pad"
    code, out = await _pytest("--device-url", str(missing), "--device-timeout", "1")
    assert code == 1, out
    assert str(missing) in out, out
