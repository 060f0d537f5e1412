"""A whole misbridge on the bench: simulators as subprocesses, the daemon in-process, real ports."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio

from misbridge.app.daemon import Daemon, load_signing_key
from misbridge.app.simlaunch import Simulators, launched_simulators
from misbridge.config.settings import Settings
from tests.integration.faults import FaultBench, running_fault_bench


@dataclass
class Bench:
    """Handles on a running daemon and its simulators."""

    daemon: Daemon
    sims: Simulators
    http: httpx.AsyncClient

    @property
    def host(self) -> str:
        return self.daemon.settings.api.host

    async def customer(
        self, card: str, *, pin: str | None = None, action: str = "pay", hesitate_s: float = 0.0
    ) -> None:
        """Script the next customer at the simulated PIN pad."""
        order: dict[str, Any] = {"card": card, "action": action, "hesitate_s": hesitate_s}
        if pin is not None:
            order["pin"] = pin
        reader, writer = await asyncio.open_unix_connection(str(self.sims.control_path))
        try:
            writer.write(json.dumps(order).encode() + b"\n")
            await writer.drain()
            answer = json.loads(await reader.readline())
        finally:
            writer.close()
            await writer.wait_closed()
        assert answer.get("ok"), answer

    async def ledger(self) -> dict[str, Any]:
        """The backend simulator's ledger."""
        base = self.sims.backend_url.split("/ebuyweb-posp")[0]
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"{base}/_sim/ledger")
        result: dict[str, Any] = reply.json()
        return result


def new_trace_no() -> str:
    """A traceNo never used before (the backend refuses repeats)."""
    return "T" + uuid.uuid4().hex[:20]


def bench_settings(sims: Simulators, workdir: Path, **api: Any) -> Settings:
    """Daemon settings wired to the simulators, on free ports, with short socket timeouts."""
    return Settings(
        device={"url": str(sims.device_path), "card_timeout_s": 5, "pin_timeout_s": 5, "reply_grace_s": 2.0},
        backend={"url": sims.backend_url, "signing": {"key_file": sims.signing_key_file}},
        api={"socket_port": 0, "http_port": 0, "socket_read_timeout_s": 0.5, **api},
        journal={"path": workdir / "journal.db"},
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bench(tmp_path_factory: Any) -> AsyncIterator[Bench]:
    workdir: Path = tmp_path_factory.mktemp("bench")
    async with launched_simulators(workdir, pinpad_args=("--timeout-cap", "0.3")) as sims:
        settings = bench_settings(sims, workdir)
        daemon = Daemon(settings, signing_key=load_signing_key(settings))
        await daemon.start()
        try:
            base = f"http://{settings.api.host}:{daemon.http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                yield Bench(daemon, sims, http)
        finally:
            await daemon.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fault_bench(tmp_path_factory: Any) -> AsyncIterator[FaultBench]:
    """Simulators plus a daemon with short timers that a test may restart (tests/integration/faults.py)."""
    async with running_fault_bench(tmp_path_factory.mktemp("faults")) as bench:
        yield bench
