"""``/_sim/disagree``: every batchUpload status 1-8 for an otherwise matching record, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from misbridge.ebuy import jsonio
from simulators.backend import BackendSimulator
from simulators.backend.disagree import parse_disagree_request
from tests.simulators.booksim import SimClient, fresh_trace_no, qr_sale
from tests.simulators.test_sim_management import upload

D = Decimal


@asynccontextmanager
async def served() -> AsyncIterator[SimClient]:
    """A simulator listening on a real local port, and a signed-in client talking HTTP to it."""
    sim = BackendSimulator()
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim.port}") as http:
            client = SimClient(sim, http)
            await client.sign_in()
            yield client
    finally:
        await sim.stop()


async def _tell(client: SimClient, body: dict[str, Any]) -> httpx.Response:
    return await client.http.post("/_sim/disagree", content=jsonio.dumps(body))


async def _sales(client: SimClient, count: int) -> list[str]:
    """``count`` approved QR sales of 40.8; their traceNos."""
    trace_nos = []
    for _ in range(count):
        sale = qr_sale(fresh_trace_no())
        assert (await client.call("qrcodeSale", sale))["returnCode"] == "00"
        trace_nos.append(sale["traceNo"])
    return trace_nos


async def test_every_status_1_to_8_on_demand() -> None:
    async with served() as client:
        untouched, more, less, dropped, failed, reversed_, rolled_back, refunded = await _sales(client, 8)
        told = [
            {"traceNo": more, "as": "amount", "amount": "40.81"},
            {"traceNo": less, "as": "amount", "amount": "40.79"},
            {"traceNo": dropped, "as": "drop"},
            {"traceNo": failed, "as": "failed"},
            {"traceNo": reversed_, "as": "reversed"},
            {"traceNo": rolled_back, "as": "rolled_back"},
            {"traceNo": refunded, "as": "refunded"},
        ]
        for body in told:
            assert (await _tell(client, body)).status_code == 200
        order = (untouched, more, less, dropped, failed, reversed_, rolled_back, refunded)
        reply = await client.call("batchUpload", upload(*[(no, "40.80") for no in order]))
        assert reply["returnCode"] == "00"
        assert [r["status"] for r in reply["transRecord"]] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert [r["traceNo"] for r in reply["transRecord"]] == list(order)
        listed = (await client.http.get("/_sim/disagree")).json()
        assert listed == {"told": told}


async def test_a_told_amount_equal_to_the_upload_matches() -> None:
    async with served() as client:
        (sale,) = await _sales(client, 1)
        await _tell(client, {"traceNo": sale, "as": "amount", "amount": "12.3"})
        reply = await client.call("batchUpload", upload((sale, "12.30"), (sale, D("12.31"))))
        assert [r["status"] for r in reply["transRecord"]] == [1, 3]


async def test_a_later_tell_replaces_and_delete_forgets() -> None:
    async with served() as client:
        (sale,) = await _sales(client, 1)
        await _tell(client, {"traceNo": sale, "as": "drop"})
        response = await _tell(client, {"traceNo": sale, "as": "refunded"})
        assert response.json() == {"told": [{"traceNo": sale, "as": "refunded"}]}
        assert (await client.call("batchUpload", upload((sale, "40.8"))))["transRecord"][0]["status"] == 8
        cleared = await client.http.delete("/_sim/disagree")
        assert cleared.json() == {"cleared": 1, "told": []}
        assert (await client.call("batchUpload", upload((sale, "40.8"))))["transRecord"][0]["status"] == 1


async def test_the_ledger_and_summary_are_left_alone() -> None:
    async with served() as client:
        (sale,) = await _sales(client, 1)
        before = await client.entry(sale)
        await _tell(client, {"traceNo": sale, "as": "drop"})
        assert await client.entry(sale) == before
        summary = await client.call("summary", {"traceNo": fresh_trace_no()})
        assert summary["volume"] == 1


BAD_BODIES = [
    b"not json",
    b"[]",
    b'{"traceNo": "t1"}',
    b'{"traceNo": "t1", "as": "lost"}',
    b'{"traceNo": "", "as": "drop"}',
    b'{"traceNo": 12, "as": "drop"}',
    b'{"traceNo": "t1", "as": "amount"}',
    b'{"traceNo": "t1", "as": "amount", "amount": 12.34}',
    b'{"traceNo": "t1", "as": "amount", "amount": "12.345"}',
    b'{"traceNo": "t1", "as": "amount", "amount": "-1"}',
    b'{"traceNo": "t1", "as": "drop", "amount": "1.00"}',
    b'{"traceNo": "t1", "as": "drop", "colour": "red"}',
]


async def test_bad_bodies_are_400_and_tell_nothing() -> None:
    async with served() as client:
        for raw in BAD_BODIES:
            response = await client.http.post("/_sim/disagree", content=raw)
            assert response.status_code == 400, raw
            assert "error" in response.json()
        assert (await client.http.get("/_sim/disagree")).json() == {"told": []}


@pytest.mark.parametrize("raw", BAD_BODIES)
def test_the_parser_refuses_each_bad_body(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_disagree_request(raw)


def test_the_parser_reads_a_good_body() -> None:
    told = parse_disagree_request(b'{"traceNo": "t1", "as": "amount", "amount": "0.5"}')
    assert (told.trace_no, told.as_, told.amount) == ("t1", "amount", "0.5")
    assert [told.status(D(x)) for x in ("0.50", "0.49", "0.51")] == [1, 2, 3]
