"""The pad is unplugged while misbridge submits to the backend (issue #5, phase "during submit").

After the PIN block the pad is no longer needed: the transaction goes on to its end (approved,
journaled, the POS told) and the lost pad only shows in /health.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import httpx

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.simulated import simulated_daemon
from misbridge.ebuy.examples import card_redemption_request
from tests.integration.conftest import bench_settings, new_trace_no


async def test_unplug_after_the_pin_block_still_completes_the_sale(tmp_path: Path) -> None:
    settings = functools.partial(bench_settings, workdir=tmp_path)
    async with simulated_daemon(tmp_path, settings, pinpad_args=("--unplug-after", "pin-block")) as running:
        daemon, sims = running.daemon, running.sims
        body = card_redemption_request() | {"traceNo": new_trace_no()}
        answer = await socket_request("127.0.0.1", daemon.socket_port, envelope_for("cardRedemption", body))
        assert answer.body["returnCode"] == "00", answer.body
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.http_port}") as http:
            record = (await http.get(f"/v1/transactions/{body['traceNo']}")).json()
            assert record["state"] == "approved"
            for _ in range(50):
                health = await http.get("/health")
                if health.status_code == 503:
                    break
                await asyncio.sleep(0.1)
            assert health.status_code == 503
            assert health.json()["pad"]["connected"] is False
            base = sims.backend_url.split("/ebuyweb-posp")[0]
            ledger = (await http.get(f"{base}/_sim/ledger/{body['traceNo']}")).json()
        assert (ledger["submissions"], ledger["applied"]) == (1, True)
