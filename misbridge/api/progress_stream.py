"""The HTTP door's progress streams: Server-Sent Events of one transaction or of one lane.

``GET /v1/transactions/{traceNo}/events``, ``GET /v1/lanes/{lane}/events`` and ``GET /v1/events``
(the default lane) answer ``200 text/event-stream`` and then one SSE message per progress event::

    event: card_read
    data: {"lane":"default","traceNo":"T1","step":"card_read","time":"…","maskedPan":"622562******8888",…}
    id: 2

and a comment line (``: keep-alive``) whenever :data:`KEEP_ALIVE_S` pass without one, so a proxy
or an idle timer in between does not close a quiet stream. A transaction's stream ends after its
``result`` event; any stream ends after an ``overflow`` event (the client fell behind) or when
misbridge stops. A client that closes its connection frees its subscription at once.

The api layer does not import core: the events and the hub come in through the protocols below
(``misbridge.core.progress`` fits them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from misbridge.ebuy import jsonio

__all__ = [
    "KEEP_ALIVE_S",
    "EventStream",
    "ProgressEventLike",
    "ProgressSource",
    "ProgressSubscription",
    "one_event",
    "sse_message",
]

#: Seconds without an event after which the stream sends a ``: keep-alive`` comment.
KEEP_ALIVE_S: Final = 15.0
_KEEP_ALIVE: Final = b": keep-alive\n\n"
_MEDIA_TYPE: Final = "text/event-stream"
#: nginx and its kin buffer a response unless told not to: a cashier screen needs each event now.
_HEADERS: Final = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ProgressEventLike(Protocol):
    """One progress event (``misbridge.core.progress.ProgressEvent``)."""

    @property
    def step(self) -> str: ...

    def as_json(self) -> dict[str, Any]: ...


class ProgressSubscription(Protocol):
    """A subscriber's events in order; iteration ends with the stream (``core.progress.Subscription``)."""

    def __aiter__(self) -> AsyncIterator[ProgressEventLike]: ...

    def close(self) -> None: ...


class ProgressSource(Protocol):
    """What the progress routes need from the hub (``misbridge.core.progress.ProgressHub``)."""

    @property
    def lanes(self) -> tuple[str, ...]: ...

    def subscribe(self, *, lane: str | None = None, trace_no: str | None = None) -> ProgressSubscription: ...

    def result_if_settled(
        self, trace_no: str, state: str, return_code: str | None, *, lane: str | None = None
    ) -> ProgressEventLike | None: ...


def sse_message(event: ProgressEventLike, number: int) -> bytes:
    """``event`` as one SSE message: ``event:``, ``data:`` (one line of JSON), ``id:``, blank line."""
    data = jsonio.dumps(event.as_json())  # compact JSON: a newline inside a string is escaped
    return f"event: {event.step}\ndata: {data}\nid: {number}\n\n".encode()


class EventStream(Response):
    """A response that streams ``subscription`` until it ends or the client goes.

    Args:
        subscription: the events to send; closed when the response ends, however it ends.
        keep_alive_s: the longest quiet time before a ``: keep-alive`` comment.
    """

    media_type = _MEDIA_TYPE

    def __init__(self, subscription: ProgressSubscription, *, keep_alive_s: float = KEEP_ALIVE_S) -> None:
        # Like Starlette's StreamingResponse, no body: so no Content-Length, and the head goes at once.
        self.status_code = 200
        self.background = None
        self.init_headers(_HEADERS)
        self._subscription = subscription
        self._keep_alive_s = keep_alive_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            pump = asyncio.create_task(self._pump(send), name="progress stream")
            gone = asyncio.create_task(_client_gone(receive), name="progress stream client")
            try:
                await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, gone):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if pump.done() and not pump.cancelled():
                pump.result()  # a failed send surfaces to the door's last-resort handler
        finally:
            self._subscription.close()  # a client that went away is no subscriber any more

    async def _pump(self, send: Send) -> None:
        events = aiter(self._subscription)
        number = 0
        while True:
            try:
                event = await asyncio.wait_for(anext(events), self._keep_alive_s)
            except TimeoutError:
                await send({"type": "http.response.body", "body": _KEEP_ALIVE, "more_body": True})
                continue
            except StopAsyncIteration:
                break
            number += 1
            await send({"type": "http.response.body", "body": sse_message(event, number), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def one_event(event: ProgressEventLike) -> Response:
    """A finished transaction's stream: its ``result`` event, then the end."""
    return Response(sse_message(event, 1), media_type=_MEDIA_TYPE, headers=_HEADERS)


async def _client_gone(receive: Receive) -> None:
    """Return when the server reports the client closed its connection.

    A GET's only request message is its empty body; after it the next message the server has
    for this request is ``http.disconnect``.
    """
    while (await receive())["type"] != "http.disconnect":
        pass
