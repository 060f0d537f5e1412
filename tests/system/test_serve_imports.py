"""`misbridge serve` loads only what its configuration needs, and collects garbage once ready (issue 18).

Every module the daemon imports costs start-up time and resident memory for as long as it runs,
so the service must not load what it never uses: the USB stack for a serial pad, the simulators
and cryptography (theirs: misbridge never encrypts), the state machines' diagram code, the other
commands' modules (demo, reconcile, the conformance kit, pad provisioning, probe) and httpx's
command-line client (rich, pygments).

A real ``python -X importtime -m misbridge serve --config FILE`` runs on the simulators (a serial
pad on a pty, an ``http://`` backend) until it serves, then stops; its import log names every
module it imported, and every import it tried, so a module imported only to fail counts too.

``python -m misbridge`` pauses the garbage collector while it loads and starts; serve must turn it
back on once ready (else the daemon would never free a reference cycle): its DEBUG line says so.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from misbridge.app.simulated import Simulators, launched_simulators
from tests.system.tools import REPO

#: Module (or package, with everything under it) -> why the service must not import it.
MUST_NOT_IMPORT: dict[str, str] = {
    "usb": "the USB stack (pyusb): only a usb:// pad needs it",
    "misbridge.transport.usb": "the USB transport: only a usb:// pad needs it",
    "cryptography": "the simulators' 3DES: misbridge never encrypts",
    "simulators": "misbridge starts the simulators as processes, never imports them",
    "misbridge.app.simulated": "serve --simulators only",
    "statemachine.contrib": "the state machines' diagrams: docs/state-machine.md only",
    "misbridge.core.diagrams": "the state machines' diagrams: docs/state-machine.md only",
    "misbridge.app.demo": "misbridge demo",
    "misbridge.app.demo_book": "misbridge demo",
    "misbridge.app.demo_day": "misbridge demo",
    "misbridge.app.demo_eod": "misbridge demo",
    "misbridge.app.demo_lanes": "misbridge demo",
    "misbridge.app.reconcile": "misbridge reconcile",
    "misbridge.app.provision": "misbridge pad provision",
    "misbridge.tools.probe": "misbridge probe",
    "misbridge.tools.conformance.kit": "misbridge conformance (its options alone are in the parser)",
    "misbridge.tools.conformance.base": "misbridge conformance",
    "misbridge.tools.conformance.line": "misbridge conformance",
    "misbridge.api.schemas": "the OpenAPI document: built on the first GET /openapi.json",
    # httpx._main itself shows in the log: misbridge/__init__.py makes its import fail at once.
    "rich": "httpx's command-line client (installed in a development venv)",
    "pygments": "httpx's command-line client (installed in a development venv)",
}
#: What serve must have imported, or the log was not read right (the test could not fail).
MUST_IMPORT = ("misbridge.app.daemon", "httpx", "serial_asyncio_fast", "starlette")

_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)\s*$", re.MULTILINE)
_SERVING = re.compile(rb"^misbridge serving: .* HTTP http://([\d.]+:\d+)")
_STARTED_S = 60.0
_GC_RESUMED = "garbage collection resumed"


def _config(sims: Simulators, workdir: Path, log_level: str) -> Path:
    path = workdir / "misbridge.toml"
    path.write_text(
        f'log_level = "{log_level}"\n'
        f'[device]\nurl = "{sims.device_path}"\n'
        f'[backend]\nurl = "{sims.backend_url}"\n[backend.signing]\nkey_file = "{sims.signing_key_file}"\n'
        "[api]\nsocket_port = 0\nhttp_port = 0\n"
        f'[journal]\npath = "{workdir / "journal.db"}"\n',
        encoding="utf-8",
    )
    return path


async def _serve_log(workdir: Path, *, log_level: str = "INFO", until: str | None = None) -> str:
    """The ``-X importtime`` log of a ``misbridge serve`` that served (and logged ``until``), then stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISBRIDGE_", "WATCHDOG_", "NOTIFY_"))}
    env["PYTHONPATH"] = str(REPO)
    log = workdir / "serve.log"
    async with launched_simulators(workdir, pinpad_args=("--timeout-cap", "0.5")) as sims:
        config = _config(sims, workdir, log_level)
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-X", "importtime", "-m", "misbridge", "serve", "--config", str(config),
                cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )  # fmt: skip
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), _STARTED_S)
            serving = _SERVING.match(line)
            assert serving, f"{line!r}; {log.read_text(encoding='utf-8')[-3000:]}"
            # An answer after the line also means the stop signals are handled (installed right after it).
            async with httpx.AsyncClient(base_url=f"http://{serving[1].decode()}") as client:
                assert (await client.get("/health")).status_code == 200
            if until is not None:
                await _logged(log, until)
            process.terminate()
            assert await asyncio.wait_for(process.wait(), _STARTED_S) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return log.read_text(encoding="utf-8")


async def _logged(log: Path, text: str) -> None:
    """Return once ``log`` holds ``text``; fail after a while."""
    for _ in range(200):
        written = await asyncio.to_thread(log.read_text, encoding="utf-8")
        if text in written:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never logged {text!r}: {written[-3000:]}")


def forbidden_imports(imported: set[str]) -> dict[str, str]:
    """The modules of ``imported`` that :data:`MUST_NOT_IMPORT` names (or that lie under one), with why."""
    found = {}
    for module in imported:
        for name, why in MUST_NOT_IMPORT.items():
            if module == name or module.startswith(f"{name}."):
                found[module] = why
    return found


def test_forbidden_imports_matches_packages_not_prefixes() -> None:
    imported = {"usb", "usb.core", "usbx", "misbridge.app.demo_list", "misbridge.app.demo", "simulators.pinpad"}
    assert sorted(forbidden_imports(imported)) == ["misbridge.app.demo", "simulators.pinpad", "usb", "usb.core"]


@pytest.mark.timeout(180)
async def test_serve_imports_only_what_its_configuration_needs(tmp_path: Path) -> None:
    imported = set(_IMPORT_LINE.findall(await _serve_log(tmp_path)))
    assert set(MUST_IMPORT) <= imported, f"the import log was not read: {sorted(imported)[:20]}"
    assert forbidden_imports(imported) == {}


@pytest.mark.timeout(180)
async def test_serve_resumes_garbage_collection_once_ready(tmp_path: Path) -> None:
    log = await _serve_log(tmp_path, log_level="DEBUG", until=_GC_RESUMED)
    assert log.count(_GC_RESUMED) == 1
    # Resumed after ready, not before: the pause covers the whole start.
    assert log.index("misbridge ready:") < log.index(_GC_RESUMED)
