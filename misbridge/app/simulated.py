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
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misbridge.app.daemon import Daemon, load_signing_key
from misbridge.config.settings import LaneSettings, Settings
from misbridge.errors import ConfigError

READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class PadSimulator:
    """Where one running PIN-pad simulator is: its pty link and its control socket."""

    device_path: Path
    control_path: Path


@dataclass(frozen=True)
class Simulators:
    """Where the running simulators are; ``pads`` holds one pad per lane, the first one also as ``device_path``."""

    device_path: Path
    control_path: Path
    backend_url: str
    signing_key_file: Path
    log_path: Path
    pads: tuple[PadSimulator, ...] = ()

    @property
    def lane_count(self) -> int:
        """How many lanes (pads) run: 1 for a classic bench."""
        return max(1, len(self.pads))

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
    lanes: int = 1,
    backend_args: tuple[str, ...] = (),
) -> AsyncIterator[Simulators]:
    """Run both simulators for the duration of the ``async with`` block.

    Args:
        workdir: a private directory for the pty link, control socket, key file and logs.
        card: the test card the simulated customer presents by default.
        pinpad_args: extra ``misbridge-sim pinpad`` options (e.g. ``--timeout-cap 0.5`` in tests).
        pad_log, backend_log: where each simulator's stderr goes (default: both to
            ``workdir/simulators.log``).
        lanes: how many PIN pads to run, one per lane (``pinpad``, ``pinpad-2``, …).
        backend_args: extra ``misbridge-sim backend`` options (e.g. ``--tls-cert``/``--tls-key``:
            https, and ``backend_url`` says so).
    """
    if lanes < 1:
        raise ValueError(f"lanes must be 1 or more, not {lanes}")
    key_file = write_signing_key(workdir)
    pads = tuple(_pad_paths(workdir, number) for number in range(1, lanes + 1))
    log_path = pad_log or workdir / "simulators.log"
    pad_processes = [await _spawn(_pad_args(pad, card, pinpad_args), log_path) for pad in pads]
    backend = await _spawn(
        ["backend", "--port", "0", "--key-file", str(key_file), *backend_args], backend_log or log_path
    )
    processes = [*pad_processes, backend]
    drains: list[asyncio.Task[None]] = []
    try:
        for pad_process in pad_processes:
            await _ready_line(pad_process, "PIN pad", log_path)
        backend_line = await _ready_line(backend, "backend", backend_log or log_path)
        drains = [asyncio.create_task(_drain(p)) for p in processes]
        yield Simulators(
            device_path=pads[0].device_path,
            control_path=pads[0].control_path,
            backend_url=backend_line.split()[-1],
            signing_key_file=key_file,
            log_path=log_path,
            pads=pads,
        )
    finally:
        await asyncio.gather(*(_stop(p) for p in processes))
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)


def _pad_paths(workdir: Path, number: int) -> PadSimulator:
    """Lane ``number``'s pad files: ``pinpad``/``pinpad.ctl`` for the first (as ever), ``pinpad-N`` after."""
    stem = "pinpad" if number == 1 else f"pinpad-{number}"
    return PadSimulator(workdir / stem, workdir / f"{stem}.ctl")


def _pad_args(pad: PadSimulator, card: str | None, extra: tuple[str, ...]) -> list[str]:
    args = ["pinpad", "--link", str(pad.device_path), "--control", str(pad.control_path)]
    if card:
        args += ["--card", card]
    return [*args, *extra]


def lane_name(number: int) -> str:
    """The simulated bench's name of lane ``number`` (1-based): ``lane1``, ``lane2``, …"""
    return f"lane{number}"


def lane_device_no(number: int) -> str:
    """The simulated bench's deviceNo of lane ``number``: ``POS01``, ``POS02``, … (the first is the default's)."""
    return f"POS{number:02d}"


def simulated_lanes(sims: Simulators) -> list[dict[str, Any]]:
    """``[[lanes]]`` for the simulators' pads; empty for one pad (a one-lane bench is configured as ever)."""
    if sims.lane_count == 1:
        return []
    return [
        {"name": lane_name(number), "device_url": str(pad.device_path), "device_no": lane_device_no(number)}
        for number, pad in enumerate(sims.pads, start=1)
    ]


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
            "lanes": _wired_lanes(base, sims),
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
        "lanes": simulated_lanes(sims),
    }
    return Settings(**_merged(wiring, sections))


def _wired_lanes(base: Settings, sims: Simulators) -> list[LaneSettings]:
    """``base``'s lanes (names, deviceNos, ports kept) on the simulators' pads, or the bench's own lanes.

    Raises:
        ConfigError: ``base`` has lanes, but not as many as there are simulated pads.
    """
    if not base.lanes:
        return [LaneSettings(**lane) for lane in simulated_lanes(sims)]
    if len(base.lanes) != sims.lane_count:
        raise ConfigError(f"the configuration has {len(base.lanes)} lanes but {sims.lane_count} pads were simulated")
    return [
        lane.model_copy(update={"device_url": str(pad.device_path)})
        for lane, pad in zip(base.lanes, sims.pads, strict=True)
    ]


@dataclass
class BenchDir:
    """A bench run's private directory (simulator logs, journal); removed at the end unless :attr:`keep` is set."""

    path: Path
    keep: bool = False


@contextlib.contextmanager
def bench_workdir(prefix: str) -> Iterator[BenchDir]:
    """A temporary directory for a bench run that outlives the run when it failed.

    An error raised inside keeps it (it may name ``simulators.log`` in it, as the "did not start"
    error does: a message must never send a person to a file already deleted); so does a caller
    that sets ``keep`` on a run that ended badly. Otherwise it is removed, as a temporary
    directory is.
    """
    bench = BenchDir(Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        yield bench
    except Exception:
        bench.keep = True
        raise
    finally:
        if not bench.keep:
            shutil.rmtree(bench.path, ignore_errors=True)


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
    lanes: int = 1,
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
        lanes: how many lanes, each with a simulated pad of its own (``lane1`` … with deviceNo
            ``POS01`` …; one lane is configured without ``[[lanes]]``, as ever).
        sections: settings by section merged over the wiring (see :func:`simulated_settings`).
    """
    async with launched_simulators(workdir, card=card, pinpad_args=pinpad_args, lanes=lanes) as sims:
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
