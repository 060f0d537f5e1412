"""The progress streams on the real HTTP door: daemon, pty PIN pad and backend simulators, a token.

The door runs with a bearer token and a 1 s request deadline, so a stream that outlives the
deadline proves the deadline covers only the request's head and body, not the answer.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from misbridge.app.daemon import Daemon
from misbridge.app.simulated import simulated_daemon
from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from simulators.cards import CARDS
from tests.integration.conftest import bench_settings, new_trace_no

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "progress-stream-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUEST_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 0.3
CARD = "points-cash"


@dataclass
class StreamBench:
    daemon: Daemon
    http: httpx.AsyncClient
    control_path: Path

    async def customer(self, card: str) -> None:
        reader, writer = await asyncio.open_unix_connection(str(self.control_path))
        try:
            writer.write(json.dumps({"card": card, "action": "pay"}).encode() + b"\n")
            await writer.drain()
            assert json.loads(await reader.readline()).get("ok")
        finally:
            writer.close()
            await writer.wait_closed()

    async def sale(self, trace_no: str) -> dict[str, Any]:
        await self.customer(CARD)
        body = {**card_redemption_request(), "traceNo": trace_no}
        reply = await self.http.post(
            "/v1/cardRedemption", content=jsonio.dumps(body), headers={**AUTH, "content-type": "application/json"}
        )
        answer: dict[str, Any] = reply.json()
        return answer

    async def wait_for_subscribers(self, count: int) -> None:
        async with asyncio.timeout(3):
            while self.daemon.progress.subscriber_count != count:  # noqa: ASYNC110 - the hub has no event for it
                await asyncio.sleep(0.01)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bench(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[StreamBench]:
    workdir = tmp_path_factory.mktemp("progress")
    token_file = workdir / "api-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    settings = functools.partial(
        bench_settings, workdir=workdir, token_file=token_file,
        request_timeout_s=REQUEST_TIMEOUT_S, progress_keep_alive_s=KEEP_ALIVE_S,
    )  # fmt: skip
    async with simulated_daemon(workdir, settings, pinpad_args=("--timeout-cap", "0.3")) as running:
        base = f"http://{running.settings.api.host}:{running.daemon.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield StreamBench(running.daemon, http, running.sims.control_path)


@dataclass
class Received:
    """What a client read of one SSE stream."""

    events: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ended: bool = False

    def steps(self) -> list[str]:
        return [name for name, _, _ in self.events]


async def read_stream(response: httpx.Response, received: Received, *, results: int = 1) -> None:
    """Parse SSE messages into ``received`` until the stream ends or ``results`` results were read."""
    name, data, number = "", "", 0
    async for line in response.aiter_lines():
        if line.startswith(":"):
            received.comments.append(line)
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line.startswith("id: "):
            number = int(line.removeprefix("id: "))
        elif line == "" and name:
            received.events.append((name, json.loads(data), number))
            if name == "result":
                results -= 1
                if results == 0:
                    break
            name = ""
    else:
        received.ended = True


async def test_a_card_sale_streams_each_step_in_order_and_ends_with_its_result(bench: StreamBench) -> None:
    trace_no = new_trace_no()
    received = Received()
    # Subscribed before the sale is posted: the POS may ask for the stream first.
    async with bench.http.stream("GET", f"/v1/transactions/{trace_no}/events", headers=AUTH) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        reading = asyncio.create_task(read_stream(response, received, results=2))
        answer = await bench.sale(trace_no)
        await asyncio.wait_for(reading, 10)
    assert answer["returnCode"] == "00", answer
    assert received.ended, "the stream goes on after the result"
    steps = received.steps()
    digits = len(CARDS[CARD].pin)
    pin = ["pin_digits"] * digits
    assert steps == ["waiting_for_card", "card_read", "waiting_for_pin", *pin, "submitting", "result"]
    assert [number for _, _, number in received.events] == list(range(1, len(steps) + 1))
    payloads = [data for _, data, _ in received.events]
    assert {p["lane"] for p in payloads} == {"default"}
    assert {p["traceNo"] for p in payloads} == {trace_no}
    card = payloads[1]
    pan = CARDS[CARD].pan
    assert card["maskedPan"] == pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    assert card["cardType"]
    assert [p["digits"] for p in payloads if p["step"] == "pin_digits"] == list(range(1, digits + 1))
    assert payloads[-1]["state"] == "approved"
    assert payloads[-1]["returnCode"] == "00"
    everything = json.dumps(payloads)
    assert pan not in everything
    assert CARDS[CARD].pin not in everything.replace(pan[:6], "")  # the PIN digits never appear
    assert "orderNo" not in everything  # nothing of the answer's body
    await bench.wait_for_subscribers(0)

    # The same transaction again, finished: its result at once, then the end.
    received = Received()
    async with bench.http.stream("GET", f"/v1/transactions/{trace_no}/events", headers=AUTH) as response:
        await asyncio.wait_for(read_stream(response, received, results=2), 5)
    assert received.steps() == ["result"]
    assert received.ended
    assert received.events[0][1]["state"] == "approved"
    await bench.wait_for_subscribers(0)


async def test_a_lane_stream_sees_two_sales_and_outlives_the_request_deadline(bench: StreamBench) -> None:
    received = Received()
    first, second = new_trace_no(), new_trace_no()
    async with bench.http.stream("GET", "/v1/lanes/default/events", headers=AUTH) as response:
        assert response.status_code == 200
        reading = asyncio.create_task(read_stream(response, received, results=2))
        await asyncio.sleep(REQUEST_TIMEOUT_S * 2)  # quiet past the deadline: only keep-alives
        assert not reading.done(), "the stream was cut while quiet"
        assert received.comments, "no keep-alive comment while the stream was quiet"
        assert set(received.comments) == {": keep-alive"}
        assert (await bench.sale(first))["returnCode"] == "00"
        assert (await bench.sale(second))["returnCode"] == "00"
        await asyncio.wait_for(reading, 10)
    results = [data for name, data, _ in received.events if name == "result"]
    assert [(r["traceNo"], r["state"]) for r in results] == [(first, "approved"), (second, "approved")]
    assert {data["traceNo"] for _, data, _ in received.events} == {first, second}
    assert received.steps().count("waiting_for_card") == 2
    await bench.wait_for_subscribers(0)


async def test_the_default_lane_has_a_short_path_too(bench: StreamBench) -> None:
    received = Received()
    trace_no = new_trace_no()
    async with bench.http.stream("GET", "/v1/events", headers=AUTH) as response:
        reading = asyncio.create_task(read_stream(response, received))
        assert (await bench.sale(trace_no))["returnCode"] == "00"
        await asyncio.wait_for(reading, 10)
    assert received.events[-1][1]["traceNo"] == trace_no
    await bench.wait_for_subscribers(0)  # the client hung up: its subscription is gone too


@pytest.mark.parametrize("path", ["/v1/events", "/v1/lanes/default/events", "/v1/transactions/T1/events"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}"])
async def test_a_stream_without_the_token_is_refused_like_a_post(
    bench: StreamBench, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = await bench.http.get(path, headers=headers)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="misbridge"'
    assert reply.json()["returnCode"] == "MB73"
    assert bench.daemon.progress.subscriber_count == 0


async def test_an_unknown_lane_is_404_mb19_and_a_bad_trace_no_mb15(bench: StreamBench) -> None:
    reply = await bench.http.get("/v1/lanes/nope/events", headers=AUTH)
    assert (reply.status_code, reply.json()["returnCode"]) == (404, "MB19")
    assert "default" in reply.json()["returnDesc"]
    reply = await bench.http.get("/v1/transactions/bad%20trace/events", headers=AUTH)
    assert (reply.status_code, reply.json()["returnCode"]) == (422, "MB15")
    assert bench.daemon.progress.subscriber_count == 0


async def test_a_client_that_goes_away_is_no_subscriber_any_more(bench: StreamBench) -> None:
    port = bench.daemon.http_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/transactions/{new_trace_no()}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    await bench.wait_for_subscribers(1)
    writer.close()
    await writer.wait_closed()
    await bench.wait_for_subscribers(0)


async def _open_stream(port: int) -> tuple[bytes, asyncio.StreamWriter]:
    """A raw connection asking for the default lane's stream; its response head and its writer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    await writer.drain()
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5), writer


async def test_open_streams_count_against_the_doors_connection_cap(bench: StreamBench) -> None:
    cap = bench.daemon.settings.api.max_connections_per_user
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(cap + 1):
            head, writer = await _open_stream(bench.daemon.http_port)
            writers.append(writer)
            if not head.startswith(b"HTTP/1.1 200"):
                break
        # The connection after the streams (and any idle one of the test client) is refused.
        assert head.startswith(b"HTTP/1.1 503"), head
        assert len(writers) <= cap + 1
        assert bench.daemon.progress.subscriber_count == len(writers) - 1
    finally:
        for writer in writers:
            writer.close()
    await bench.wait_for_subscribers(0)
