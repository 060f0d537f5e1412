"""The daemon wired to both simulators: the one place that builds it.

:func:`simulated_daemon` starts the two bench simulators as real subprocesses
(``misbridge-sim pinpad`` / ``backend``) and a :class:`~misbridge.app.daemon.Daemon` wired to
them. ``misbridge serve --simulators``, ``misbridge demo``, the benchmarks and the tests all use
it; what a caller needs of its own (timers, ports, fault options for the pad, a journal path,
starting the daemon itself) is a parameter. Callers that run the daemon as a subprocess of
its own use the lower half, :func:`launched_simulators` (and :func:`simulated_settings` for
the wiring).

misbridge never imports the simulators: it runs them like a technician would and learns their
addresses from the one line each prints when ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misbridge.app.daemon import Daemon, load_signing_key
from misbridge.config.settings import Settings
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

    @property
    def backend_base(self) -> str:
        """The backend simulator's origin (``http://127.0.0.1:PORT``), where its ``/_sim`` endpoints are."""
        return self.backend_url.split("/ebuyweb-posp")[0]


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
async def launched_backend(
    workdir: Path, key_file: Path, *, log: Path | None = None, ledger_file: Path | None = None
) -> AsyncIterator[str]:
    """Run the backend simulator alone (on a free port, signing with ``key_file``); yields its URL.

    ``ledger_file`` starts it with that ledger (``--ledger-file``): a bench can hand it a day of sales.
    """
    log = log or workdir / "simulators.log"
    ledger = ["--ledger-file", str(ledger_file)] if ledger_file is not None else []
    backend = await _spawn(["backend", "--port", "0", "--key-file", str(key_file), *ledger], log)
    drain: asyncio.Task[None] | None = None
    try:
        url = (await _ready_line(backend, "backend", log)).split()[-1]
        drain = asyncio.create_task(_drain(backend))
        yield url
    finally:
        await _stop(backend)
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)


def write_signing_key(workdir: Path) -> Path:
    """A fresh signing key file (mode 0600) shared by the backend simulator and the daemon."""
    key_file = workdir / "signing.key"
    key_file.write_text(secrets.token_hex(16), encoding="utf-8")
    os.chmod(key_file, 0o600)
    return key_file


@contextlib.asynccontextmanager
async def launched_simulators(
    workdir: Path,
    *,
    card: str | None = None,
    pinpad_args: tuple[str, ...] = (),
    pad_log: Path | None = None,
    backend_log: Path | None = None,
) -> AsyncIterator[Simulators]:
    """Run both simulators for the duration of the ``async with`` block.

    Args:
        workdir: a private directory for the pty link, control socket, key file and logs.
        card: the test card the simulated customer presents by default.
        pinpad_args: extra ``misbridge-sim pinpad`` options (e.g. ``--timeout-cap 0.5`` in tests).
        pad_log, backend_log: where each simulator's stderr goes (default: both to
            ``workdir/simulators.log``).
    """
    key_file = write_signing_key(workdir)
    sims = Simulators(
        device_path=workdir / "pinpad",
        control_path=workdir / "pinpad.ctl",
        backend_url="",
        signing_key_file=key_file,
        log_path=pad_log or workdir / "simulators.log",
    )
    pad_args = ["pinpad", "--link", str(sims.device_path), "--control", str(sims.control_path)]
    if card:
        pad_args += ["--card", card]
    pad_args += pinpad_args
    pad = await _spawn(pad_args, sims.log_path)
    backend = await _spawn(["backend", "--port", "0", "--key-file", str(key_file)], backend_log or sims.log_path)
    drains: list[asyncio.Task[None]] = []
    try:
        await _ready_line(pad, "PIN pad", sims.log_path)
        backend_line = await _ready_line(backend, "backend", backend_log or sims.log_path)
        drains = [asyncio.create_task(_drain(p)) for p in (pad, backend)]
        yield Simulators(**{**sims.__dict__, "backend_url": backend_line.split()[-1]})
    finally:
        await asyncio.gather(_stop(pad), _stop(backend))
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        nested = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = _merged(out[key], value) if nested else value
    return out


def simulated_settings(sims: Simulators, journal: Path, *, base: Settings | None = None, **sections: Any) -> Settings:
    """Settings that wire a daemon to the running simulators.

    The PIN pad (``device.url``), the backend (``backend.url`` and its signing ``key_file``) and
    the journal path always come from here.

    Args:
        base: settings to wire as they are (``misbridge serve --simulators --config ...``: its
            ports, timers and identity stay). Without it, the defaults with both front doors on
            free loopback ports.
        sections: further settings by section, merged over the wiring, e.g.
            ``api={"socket_read_timeout_s": 0.5}`` or ``log_level="DEBUG"`` (only without ``base``).
    """
    if base is not None:
        if sections:
            raise TypeError("simulated_settings: sections are applied only without base")
        return base.model_copy(update={
            "device": base.device.model_copy(update={"url": str(sims.device_path)}),
            "backend": base.backend.model_copy(update={
                "url": sims.backend_url,
                "signing": base.backend.signing.model_copy(update={"key_file": sims.signing_key_file}),
            }),
            "journal": base.journal.model_copy(update={"path": journal}),
        })  # fmt: skip
    wiring: dict[str, Any] = {
        "device": {"url": str(sims.device_path)},
        "backend": {"url": sims.backend_url, "signing": {"key_file": sims.signing_key_file}},
        "api": {"socket_port": 0, "http_port": 0},
        "journal": {"path": journal},
    }
    return Settings(**_merged(wiring, sections))


def daemon_for(settings: Settings) -> Daemon:
    """A daemon (not started) for ``settings``, with the signing key they name."""
    return Daemon(settings, signing_key=load_signing_key(settings))


@dataclass(frozen=True)
class SimulatedDaemon:
    """A daemon wired to both simulators, and where everything is."""

    daemon: Daemon
    settings: Settings
    sims: Simulators
    workdir: Path


#: Builds the daemon's settings from the running simulators (for callers with their own timers).
SettingsFor = Callable[[Simulators], Settings]


@contextlib.asynccontextmanager
async def simulated_daemon(
    workdir: Path,
    settings: Settings | SettingsFor | None = None,
    *,
    card: str | None = None,
    pinpad_args: tuple[str, ...] = (),
    start: bool = True,
    **sections: Any,
) -> AsyncIterator[SimulatedDaemon]:
    """Both simulators and a daemon wired to them, for the duration of the ``async with`` block.

    Args:
        workdir: a private directory for the simulators' files and the journal (``journal.db``).
        settings: settings to wire (see :func:`simulated_settings`'s ``base``), or a function
            from the running simulators to the daemon's settings; default: the defaults, wired.
        card, pinpad_args: for the simulated PIN pad (see :func:`launched_simulators`).
        start: start the daemon on entry and stop it on exit; with False the caller starts
            and stops it (``misbridge serve`` does, between its systemd notifications).
        sections: settings by section merged over the wiring (see :func:`simulated_settings`).
    """
    async with launched_simulators(workdir, card=card, pinpad_args=pinpad_args) as sims:
        if callable(settings):
            wired = settings(sims)
        else:
            wired = simulated_settings(sims, workdir / "journal.db", base=settings, **sections)
        daemon = daemon_for(wired)
        if not start:
            yield SimulatedDaemon(daemon, wired, sims, workdir)
            return
        await daemon.start()
        try:
            yield SimulatedDaemon(daemon, wired, sims, workdir)
        finally:
            await daemon.stop()
