"""The HTTP door's outer guards: every answer is JSON in the book's shape, and no body is over the limit.

Two pure ASGI middlewares wrap the door's routes (:func:`misbridge.api.http_app.create_app`):

* :class:`AnswerEveryRequest` (outermost) turns any exception that escapes the door into
  ``500`` with ``MB99`` in the book's response shape, and logs it as one line. Starlette's own
  ``ServerErrorMiddleware`` would answer plain text and then re-raise, so that uvicorn logs a
  multi-line traceback; nothing escapes this guard, so neither happens.
* :class:`BodyLimit` reads the request body before the routes do, and never more than
  :data:`MAX_BODY_BYTES` (the book's 65 535-byte message): a larger declared ``Content-Length``
  is refused before a byte of it is read, a chunked body is cut off at the limit. The refusal is
  ``413`` with ``MB08`` and ``Connection: close``.

:func:`book_answer` builds those answers and the other refusals of the door (security rules,
unknown path, wrong method).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from loguru import logger
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from misbridge.ebuy import jsonio
from misbridge.ebuy.envelope import MAX_MESSAGE_LEN
from misbridge.ebuy.requests import error_response
from misbridge.errors import RequestError, ReturnCode

#: The largest request body the HTTP door reads: the socket door's 2-byte length prefix caps an
#: e-Buy message at 65 535 bytes, and a request must not be possible on one door only.
MAX_BODY_BYTES = MAX_MESSAGE_LEN
#: After refusing a body as too large, how long the door goes on reading (and dropping) what the
#: POS still sends before it closes. Closing a socket with unread bytes makes the kernel send a
#: reset, and a client still writing its body then fails on the write and may never read the 413.
LINGER_S = 1.0
#: The most of an exception's text one log line carries.
_LOGGED_ERROR_CHARS = 200


class JsonResponse(Response):
    """JSON response written with exact decimals (40.8 stays 40.8)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsonio.dumps(content).encode("utf-8")


def book_answer(
    code: ReturnCode, message: str, *, trace_no: str = "", status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JsonResponse:  # fmt: skip
    """A refusal in the book's response shape: ``returnCode`` ``code``, ``returnDesc`` ``message``.

    Args:
        status: the HTTP status; by default the one that belongs to ``code``.
    """
    body = error_response(trace_no, RequestError(message, return_code=code), code)
    return JsonResponse(body, status_code=status or code.http_status, headers=dict(headers or {}))


def trace_no_of(body: Any) -> str:
    """The request's ``traceNo`` when it has a string one, else ``""`` (for answers that echo it)."""
    trace_no = body.get("traceNo") if isinstance(body, dict) else None
    return trace_no if isinstance(trace_no, str) else ""


class AnswerEveryRequest:
    """Answers ``500``/``MB99`` in the book's shape for any exception that escapes ``app``.

    The exception is logged as one line (its type, the method and path, and the start of its
    text, all through the log scrubber) and not raised further: uvicorn would log a traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, send_watched)
        except Exception as exc:  # noqa: BLE001 -- the door's last resort: every request gets an answer
            _log_unhandled(scope, exc)
            if not started:  # once an answer has begun, uvicorn closes the connection after it
                answer = book_answer(ReturnCode.INTERNAL, ReturnCode.INTERNAL.meaning, trace_no=_trace_no(scope))
                await answer(scope, receive, send)


def _log_unhandled(scope: Scope, exc: Exception) -> None:
    text = " ".join(str(exc).split())[:_LOGGED_ERROR_CHARS]
    logger.bind(method=scope.get("method", ""), path=scope.get("path", "")[:_LOGGED_ERROR_CHARS]).error(
        "HTTP request failed, answered MB99: {}: {}", type(exc).__name__, text
    )


def _trace_no(scope: Scope) -> str:
    """The traceNo of the request, if the body was read and parsed before the failure."""
    trace_no = scope.get(TRACE_NO_SCOPE_KEY, "")
    return trace_no if isinstance(trace_no, str) else ""


#: Where the door notes the request's traceNo once it knows it, so even MB99 can echo it.
TRACE_NO_SCOPE_KEY = "misbridge.trace_no"


class BodyTooLarge(Exception):
    """The request body is over :data:`MAX_BODY_BYTES` (internal to :class:`BodyLimit`).

    Args:
        body_ended: the server has already passed on the end of the body (nothing left to drop).
    """

    def __init__(self, *, body_ended: bool) -> None:
        super().__init__("request body over the limit")
        self.body_ended = body_ended


class BodyLimit:
    """Reads each request body (at most ``limit`` bytes) before ``app`` runs, and replays it to ``app``.

    After the body, ``app``'s ``receive`` is the server's own again, so ``app`` can still see an
    ``http.disconnect`` when the POS hangs up while its request runs.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        try:
            self._check_declared_length(scope)
            body = await self._read_body(receive)
        except BodyTooLarge as too_large:
            await self._refuse(scope, receive, send, linger_s=0.0 if too_large.body_ended else LINGER_S)
            return
        if body is None:  # the POS hung up half way through its body: nobody to answer
            return
        await self._app(scope, _replaying(body, receive), send)

    def _check_declared_length(self, scope: Scope) -> None:
        declared = Headers(scope=scope).get("content-length")
        # h11 has already refused a Content-Length that is not a number.
        if declared is not None and declared.isdigit() and int(declared) > self._limit:
            raise BodyTooLarge(body_ended=False)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body; None if the POS hung up before sending all of it."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            more_body = message.get("more_body", False)
            size += len(chunk)
            if size > self._limit:
                raise BodyTooLarge(body_ended=not more_body)
            chunks.append(chunk)
            if not more_body:
                return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, linger_s: float) -> None:
        logger.bind(method=scope["method"], path=scope["path"][:_LOGGED_ERROR_CHARS]).warning(
            "HTTP request refused: MB08 body larger than {} bytes", self._limit
        )
        answer = book_answer(
            ReturnCode.REQUEST_TOO_LARGE,
            f"request body larger than {self._limit} bytes (the e-Buy message limit); nothing was done",
            headers={"Connection": "close"},
        )
        await send({"type": "http.response.start", "status": answer.status_code, "headers": answer.raw_headers})
        # The whole answer is out (its Content-Length says so); holding back the end of the
        # response keeps the connection open while the rest of the body is read and dropped.
        await send({"type": "http.response.body", "body": answer.body, "more_body": True})
        if linger_s > 0:
            await _drop_rest_of_body(receive, linger_s)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _drop_rest_of_body(receive: Receive, linger_s: float) -> None:
    """Read and forget the request body until it ends, the POS hangs up or ``linger_s`` is over."""
    try:
        async with asyncio.timeout(linger_s):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
    except TimeoutError:
        return


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` as one message first, then passes to the server's."""
    pending: bytes | None = body

    async def replay() -> Message:
        nonlocal pending
        if pending is None:
            return await receive()
        message: Message = {"type": "http.request", "body": pending, "more_body": False}
        pending = None
        return message

    return replay
