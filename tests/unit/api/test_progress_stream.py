"""The progress routes of the HTTP door over a real local server: SSE format, keep-alive, refusals, the document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.core.result import Err

from misbridge.api.http_app import create_app
from misbridge.api.progress_stream import sse_message
from misbridge.api.schemas import openapi_document
from misbridge.core.progress import ProgressEvent, ProgressHub, Step
from misbridge.host.asgi import AsgiServer

KEEP_ALIVE_S = 0.05


class JournalView:
    """The service as the progress routes see it: one finished transaction, FINAL1."""

    async def handle(
        self, action: str, body: dict[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]:
        raise AssertionError("no POST in these tests")

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        if trace_no == "FINAL1":
            return {"traceNo": trace_no, "state": "declined", "returnCode": "55"}
        if trace_no == "RUNNING1":
            return {"traceNo": trace_no, "state": "reading_pin", "returnCode": None}
        return None

    async def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ready"}


@pytest.fixture
async def door() -> AsyncIterator[tuple[httpx.AsyncClient, ProgressHub]]:
    hub = ProgressHub(max_subscribers=2)
    server = AsgiServer(create_app(JournalView(), progress=hub, keep_alive_s=KEEP_ALIVE_S), graceful_shutdown_s=1)
    port = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client, hub
    finally:
        hub.close()
        await server.stop()


async def _until(predicate: Any) -> None:
    async with asyncio.timeout(2):
        while not predicate():  # noqa: ASYNC110 - the hub has no event for it
            await asyncio.sleep(0.005)


def test_an_sse_message_is_event_data_id_and_a_blank_line() -> None:
    event = ProgressEvent.pin_digits("default", "T1", 2)
    text = sse_message(event, 7).decode()
    lines = text.split("\n")
    assert lines[0] == "event: pin_digits"
    assert lines[1].startswith('data: {"lane":"default","traceNo":"T1","step":"pin_digits","time":"')
    assert lines[1].endswith('"digits":2}')
    assert lines[2:] == ["id: 7", "", ""]


async def test_a_quiet_stream_keeps_alive_then_streams_and_ends_when_the_hub_closes(
    door: tuple[httpx.AsyncClient, ProgressHub],
) -> None:
    client, hub = door
    async with client.stream("GET", "/v1/events") as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        lines = response.aiter_lines()
        assert await anext(lines) == ": keep-alive"
        hub.publish(ProgressEvent.of("default", "T1", Step.WAITING_FOR_CARD))
        while (line := await anext(lines)) != "event: waiting_for_card":
            assert line in (": keep-alive", "")
        assert (await anext(lines)).startswith("data: ")
        assert await anext(lines) == "id: 1"
        hub.close()
        rest = [line async for line in lines]
    assert set(rest) <= {"", ": keep-alive"}


async def test_a_finished_transaction_answers_its_result_and_ends(door: tuple[httpx.AsyncClient, ProgressHub]) -> None:
    client, hub = door
    reply = await client.get("/v1/transactions/FINAL1/events")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert reply.text.startswith("event: result\ndata: ")
    assert '"state":"declined","returnCode":"55"}\nid: 1\n\n' in reply.text
    assert hub.subscriber_count == 0


async def test_a_running_or_unknown_transaction_waits_for_its_events(
    door: tuple[httpx.AsyncClient, ProgressHub],
) -> None:
    client, hub = door
    for trace_no in ("RUNNING1", "NOTYET1"):
        async with client.stream("GET", f"/v1/transactions/{trace_no}/events") as response:
            await _until(lambda: hub.subscriber_count == 1)
            hub.publish(ProgressEvent.result("default", trace_no, "approved", "00"))
            body = [line async for line in response.aiter_lines() if line.startswith("event: ")]
        assert body == ["event: result"]
        await _until(lambda: hub.subscriber_count == 0)


async def test_streams_beyond_the_cap_are_refused_with_mb77(door: tuple[httpx.AsyncClient, ProgressHub]) -> None:
    client, hub = door
    async with client.stream("GET", "/v1/events"), client.stream("GET", "/v1/lanes/default/events"):
        await _until(lambda: hub.subscriber_count == 2)
        reply = await client.get("/v1/transactions/T1/events")
        assert (reply.status_code, reply.json()["returnCode"]) == (503, "MB77")
    await _until(lambda: hub.subscriber_count == 0)


def test_the_document_lists_the_streams_and_schemathesis_loads_it() -> None:
    document = openapi_document(token_required=True, progress=True)
    schema = schemathesis.openapi.from_dict(document)
    operations = {result.ok().label for result in schema.get_all_operations() if not isinstance(result, Err)}
    assert {"GET /v1/events", "GET /v1/lanes/{lane}/events", "GET /v1/transactions/{traceNo}/events"} <= operations
    lanes = document["paths"]["/v1/lanes/{lane}/events"]["get"]["responses"]
    assert list(lanes["200"]["content"]) == ["text/event-stream"]
    assert "MB19" in lanes["404"]["description"]
    assert "MB77" in lanes["503"]["description"]
    assert "MB73" in lanes["401"]["description"]
    assert "/v1/events" not in openapi_document(token_required=True)["paths"]
