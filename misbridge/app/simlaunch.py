"""Start the two bench simulators as real subprocesses (``misbridge-sim pinpad`` / ``backend``).

Used by ``misbridge serve --simulators`` and ``misbridge demo``. misbridge never imports the
simulators: it runs them like a technician would and learns their addresses from the one line
each prints when ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from misbridge.errors import ConfigError

READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Simulators:
    """Where the running simulators are."""

    device_path: Path
    control_path: Path
    backend_url: str
    signing_key_file: Path
    log_path: Path


async def _spawn(args: list[str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as log_file:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulators", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log_file,
        )  # fmt: skip


async def _ready_line(process: asyncio.subprocess.Process, name: str, log: Path) -> str:
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
    except TimeoutError:
        line = b""
    if not line:
        raise ConfigError(f"the {name} simulator did not start; see {log}")
    return line.decode("utf-8").strip()


async def _drain(process: asyncio.subprocess.Process) -> None:
    # Keep reading so a chatty simulator never blocks on a full pipe.
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def launched_simulators(
    workdir: Path, *, card: str | None = None, pinpad_args: tuple[str, ...] = ()
) -> AsyncIterator[Simulators]:
    """Run both simulators for the duration of the ``async with`` block.

    Args:
        workdir: a private directory for the pty link, control socket, key file and logs.
        card: the test card the simulated customer presents by default.
        pinpad_args: extra ``misbridge-sim pinpad`` options (e.g. ``--timeout-cap 0.5`` in tests).
    """
    key_file = workdir / "signing.key"
    key_file.write_text(secrets.token_hex(16), encoding="utf-8")
    os.chmod(key_file, 0o600)
    sims = Simulators(
        device_path=workdir / "pinpad",
        control_path=workdir / "pinpad.ctl",
        backend_url="",
        signing_key_file=key_file,
        log_path=workdir / "simulators.log",
    )
    pad_args = ["pinpad", "--link", str(sims.device_path), "--control", str(sims.control_path)]
    if card:
        pad_args += ["--card", card]
    pad_args += pinpad_args
    pad = await _spawn(pad_args, sims.log_path)
    backend = await _spawn(["backend", "--port", "0", "--key-file", str(key_file)], sims.log_path)
    drains: list[asyncio.Task[None]] = []
    try:
        await _ready_line(pad, "PIN pad", sims.log_path)
        backend_line = await _ready_line(backend, "backend", sims.log_path)
        drains = [asyncio.create_task(_drain(p)) for p in (pad, backend)]
        yield Simulators(**{**sims.__dict__, "backend_url": backend_line.split()[-1]})
    finally:
        await asyncio.gather(_stop(pad), _stop(backend))
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
