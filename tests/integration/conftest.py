"""A whole misbridge on the bench: simulators as subprocesses, the daemon in-process, real ports."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio

from misbridge.app.daemon import Daemon
from misbridge.app.simulated import Simulators, simulated_daemon, simulated_settings
from misbridge.config.settings import Settings
from tests.integration.faultbench import FaultBench, running_fault_bench


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
    return simulated_settings(
        sims,
        workdir / "journal.db",
        device={"card_timeout_s": 5, "pin_timeout_s": 5, "reply_grace_s": 2.0},
        api={"socket_read_timeout_s": 0.5, **api},
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bench(tmp_path_factory: Any) -> AsyncIterator[Bench]:
    workdir: Path = tmp_path_factory.mktemp("bench")
    settings = functools.partial(bench_settings, workdir=workdir)
    async with simulated_daemon(workdir, settings, pinpad_args=("--timeout-cap", "0.3")) as running:
        base = f"http://{running.settings.api.host}:{running.daemon.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Bench(running.daemon, running.sims, http)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fault_bench(tmp_path_factory: Any) -> AsyncIterator[FaultBench]:
    """Simulators plus a daemon with short timers that a test may restart (tests/integration/faultbench.py)."""
    async with running_fault_bench(tmp_path_factory.mktemp("faults")) as bench:
        yield bench
