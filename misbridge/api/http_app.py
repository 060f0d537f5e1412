"""Front door 2: HTTP/JSON (default 127.0.0.1:9101).

``POST /v1/{action}`` takes the plain body JSON of an e-Buy action and returns the plain
response JSON. Every other answer of the door is JSON in the same e-Buy response shape with an
``MBxx`` returnCode and the HTTP status that belongs to it: refusals of the door's security rules
(:mod:`misbridge.api.security`: MB71 Host, MB72 Origin, MB73 token), a body over the book's
65 535 bytes (MB08), an unknown path (MB09), a wrong method (MB70), an unknown traceNo (MB44),
and an unhandled error (MB99, :mod:`misbridge.api.http_guards`). Processed transactions
(approved or declined by the backend) answer 200. ``GET /metrics`` serves the Prometheus text
format when the daemon hands in a metrics source. With a progress source, ``GET
/v1/transactions/{traceNo}/events``, ``GET /v1/lanes/{lane}/events`` and ``GET /v1/events`` stream
a transaction's or a lane's progress as Server-Sent Events (:mod:`misbridge.api.progress_stream`),
token-guarded like every route but ``/health`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from loguru import logger
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive

from misbridge.api.http_guards import (
    MAX_BODY_BYTES,
    TRACE_NO_SCOPE_KEY,
    AnswerEveryRequest,
    BodyLimit,
    JsonResponse,
    book_answer,
    trace_no_of,
)
from misbridge.api.progress_stream import KEEP_ALIVE_S, EventStream, ProgressSource, one_event
from misbridge.api.security import ApiSecurity, SecurityMiddleware
from misbridge.config.settings import DEFAULT_LANE, LANE_NAME_PATTERN
from misbridge.ebuy import jsonio
from misbridge.ebuy.requests import TRACE_NO_PATTERN
from misbridge.errors import RequestError, ReturnCode, StreamRefused
from misbridge.host.crashpoints import crash_point

__all__ = ["MAX_BODY_BYTES", "JsonResponse", "MetricsSource", "PosService", "ProgressSource", "create_app"]

_STATUS_BY_CODE = {member.code: member.http_status for member in ReturnCode}
_TRACE_NO = re.compile(TRACE_NO_PATTERN)
_LANE_NAME = re.compile(LANE_NAME_PATTERN)


class PosService(Protocol):
    """What the HTTP door needs from the service (kept narrow for tests)."""

    async def handle(
        self, action: str, body: dict[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]: ...

    async def transaction(self, trace_no: str) -> dict[str, Any] | None: ...

    async def health(self) -> tuple[bool, dict[str, Any]]: ...


class MetricsSource(Protocol):
    """What ``GET /metrics`` needs (``telemetry.metrics.Metrics`` has it; the api layer does not import it)."""

    async def render(self) -> tuple[bytes, str]: ...

    def api_refused(self, status: int) -> None: ...


def _refusal(err: RequestError | StreamRefused, *, status: int | None = None) -> JsonResponse:
    return book_answer(err.return_code, str(err), status=status)


def _status_for(body: dict[str, Any]) -> int:
    return _STATUS_BY_CODE.get(str(body.get("returnCode", "")), 200)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (and any other HTTPException) as book-shaped answers."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == ReturnCode.NO_SUCH_PATH.http_status:
        return book_answer(ReturnCode.NO_SUCH_PATH, "no such path on the HTTP door; the paths are in GET /openapi.json")
    if exc.status_code == ReturnCode.METHOD_NOT_ALLOWED.http_status:
        allowed = (exc.headers or {}).get("Allow", "")
        return book_answer(
            ReturnCode.METHOD_NOT_ALLOWED, f"method not allowed on this path; it takes {allowed}",
            headers={"Allow": allowed},
        )  # fmt: skip
    # Not raised by any route today; answered rather than left to Starlette's plain text.
    logger.bind(status=exc.status_code, path=request.url.path[:200]).error("unexpected HTTP exception")
    return book_answer(ReturnCode.INTERNAL, ReturnCode.INTERNAL.meaning)


async def _watch_for_hang_up(receive: Receive, caller_gone: asyncio.Event) -> None:
    """Set ``caller_gone`` when the server reports the POS closed its connection.

    Called only after the whole body was read, so the next message the server has for this
    request is ``http.disconnect``: uvicorn sends it when the connection is lost.
    """
    while (await receive())["type"] != "http.disconnect":
        pass
    caller_gone.set()


def _door_caller_gone(request: Request) -> asyncio.Event | None:
    """The event the POS door's connection sets when the peer goes (misbridge.host.asgi puts it in the
    scope's ``misbridge`` extension), or None when the app is served some other way."""
    extension = request.scope.get("extensions", {}).get("misbridge", {})
    gone = extension.get("caller_gone") if isinstance(extension, dict) else None
    return gone if isinstance(gone, asyncio.Event) else None


async def _handle_watched(service: PosService, action: str, body: dict[str, Any], request: Request) -> dict[str, Any]:
    caller_gone = _door_caller_gone(request)
    watcher = None
    if caller_gone is None:  # no door connection to ask: watch the ASGI messages instead
        caller_gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_for_hang_up(request.receive, caller_gone))
    try:
        return await service.handle(action, body, caller_gone=caller_gone)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if caller_gone.is_set():
            logger.bind(traceNo=trace_no_of(body), action=action[:64]).info(
                "the POS closed its HTTP connection before its answer"
            )


async def _post(service: PosService, request: Request) -> Response:
    """One POS request on ``service``: its JSON body in, the e-Buy answer out."""
    body = await _read_json_object(request)
    if isinstance(body, Response):
        return body
    request.scope[TRACE_NO_SCOPE_KEY] = trace_no_of(body)
    answer = await _handle_watched(service, request.path_params["action"], body, request)
    after_reply = BackgroundTask(crash_point, "pos.after_reply")
    return JsonResponse(answer, status_code=_status_for(answer), background=after_reply)


def _lane_routes(lane_named: Callable[[str], PosService | None]) -> list[Route]:
    """``POST /v1/lanes/{lane}/{action}`` and ``GET /v1/lanes/{lane}/health``: MB19 for a lane that does not exist."""

    async def post_lane_action(request: Request) -> Response:
        if request.path_params["action"] in _LANE_GET_PATHS:  # GET /v1/lanes/{lane}/health, …/events
            raise HTTPException(ReturnCode.METHOD_NOT_ALLOWED.http_status, headers={"Allow": "GET"})
        lane = lane_named(request.path_params["lane"])
        if lane is None:
            return _no_lane(request.path_params["lane"])
        return await _post(lane, request)

    async def get_lane_health(request: Request) -> Response:
        lane = lane_named(request.path_params["lane"])
        if lane is None:
            return _no_lane(request.path_params["lane"])
        ready, detail = await lane.health()
        return JsonResponse(detail, status_code=200 if ready else 503)

    return [
        Route("/v1/lanes/{lane}/health", get_lane_health, methods=["GET"]),
        Route("/v1/lanes/{lane}/{action}", post_lane_action, methods=["POST"]),
    ]


#: The last segments of a lane's GET paths: a POST to them is a wrong method, not an unknown action.
_LANE_GET_PATHS: Final = frozenset({"health", "events"})


def _no_lane(name: str) -> JsonResponse:
    shown = name if _LANE_NAME.fullmatch(name) else "(not a lane name)"
    return book_answer(ReturnCode.UNKNOWN_LANE, f"no lane named {shown!r} on this misbridge")


async def _read_json_object(request: Request) -> dict[str, Any] | JsonResponse:
    """The request body as a JSON object, or the MB01 answer saying why it is not one."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        err = RequestError("Content-Type must be application/json", return_code=ReturnCode.NOT_JSON)
        return _refusal(err, status=415)
    try:
        body = jsonio.loads(await request.body())
    except (jsonio.JSONDecodeError, UnicodeError) as exc:
        return _refusal(RequestError(f"request body is not JSON: {exc}", return_code=ReturnCode.NOT_JSON))
    if not isinstance(body, dict):
        return _refusal(RequestError("request body must be a JSON object", return_code=ReturnCode.NOT_JSON))
    return body


def _bad_trace_no() -> JsonResponse:
    err = RequestError("'traceNo' must be 1 to 40 letters, digits, '_' or '-'", return_code=ReturnCode.BAD_TRACE_NO)
    return _refusal(err)


def _progress_routes(service: PosService, progress: ProgressSource, keep_alive_s: float) -> list[Route]:
    """The three progress streams (:mod:`misbridge.api.progress_stream`)."""

    async def transaction_events(request: Request) -> Response:
        trace_no = request.path_params["trace_no"]
        if not _TRACE_NO.fullmatch(trace_no):
            return _bad_trace_no()
        try:
            # Subscribed before the journal is read: a result committed in between is not missed.
            subscription = progress.subscribe(trace_no=trace_no)
        except StreamRefused as err:
            return _refusal(err)
        try:
            view = await service.transaction(trace_no)
        except BaseException:
            subscription.close()
            raise
        # A view of another traceNo is the original of a request sent about this one: not this one's end.
        if view is not None and view.get("traceNo") == trace_no:
            lane = view.get("lane")
            settled = progress.result_if_settled(
                trace_no, str(view["state"]), view.get("returnCode"), lane=lane if isinstance(lane, str) else None
            )
            if settled is not None:
                subscription.close()
                return one_event(settled)
        # Unknown yet is fine: the POS may subscribe before it posts the sale.
        return EventStream(subscription, keep_alive_s=keep_alive_s)

    def lane_stream(lane: str) -> Response:
        try:
            return EventStream(progress.subscribe(lane=lane), keep_alive_s=keep_alive_s)
        except StreamRefused as err:
            return _refusal(err)

    async def lane_events(request: Request) -> Response:
        return lane_stream(request.path_params["lane"])

    async def default_lane_events(_: Request) -> Response:
        return lane_stream(progress.lanes[0])

    return [
        Route("/v1/transactions/{trace_no}/events", transaction_events, methods=["GET"]),
        Route("/v1/lanes/{lane}/events", lane_events, methods=["GET"]),
        Route("/v1/events", default_lane_events, methods=["GET"]),
    ]


def create_app(
    service: PosService,
    security: ApiSecurity | None = None,
    *,
    metrics: MetricsSource | None = None,
    lanes: Callable[[str], PosService | None] | None = None,
    lane_names: Sequence[str] = (DEFAULT_LANE,),
    progress: ProgressSource | None = None,
    keep_alive_s: float = KEEP_ALIVE_S,
) -> Starlette:
    """Build the Starlette app for a running service.

    Args:
        service: what runs the transactions (the default lane's, for ``/v1/{action}``).
        security: the door's rules; the default checks Host and Origin but asks for no token.
        metrics: serves ``GET /metrics`` and counts refusals; without it ``/metrics`` is 404.
        lanes: each lane's service by name, None for no such lane (``/v1/lanes/{lane}/…``);
            without it the only lane is ``service``, named ``default``.
        lane_names: the lanes' names, the default first (the OpenAPI document lists them).
        progress: serves the progress streams (``/v1/.../events``); without it they are 404.
        keep_alive_s: the longest a progress stream stays quiet before a ``: keep-alive`` comment.
    """
    lane_named = lanes if lanes is not None else (lambda name: service if name == DEFAULT_LANE else None)

    async def post_action(request: Request) -> Response:
        return await _post(service, request)

    async def get_transaction(request: Request) -> Response:
        trace_no = request.path_params["trace_no"]
        if not _TRACE_NO.fullmatch(trace_no):
            return _bad_trace_no()
        view = await service.transaction(trace_no)
        if view is None:
            code = ReturnCode.TRANSACTION_NOT_FOUND
            return book_answer(code, f"no transaction with traceNo {trace_no} in the journal", trace_no=trace_no)
        return JsonResponse(view)

    async def get_health(_: Request) -> Response:
        ready, detail = await service.health()
        return JsonResponse(detail, status_code=200 if ready else 503)

    rules = security or ApiSecurity()
    # Built on the first GET /openapi.json, then kept: generating every request model's JSON
    # Schema takes ~8 ms and 0.5 MB that start-up and /health never need.
    document: dict[str, Any] | None = None

    async def get_openapi(_: Request) -> Response:
        nonlocal document
        if document is None:
            from misbridge.api.schemas import openapi_document  # its module too: nothing else needs it

            document = openapi_document(
                token_required=rules.token is not None,
                metrics=metrics is not None,
                progress=progress is not None,
                lanes=lane_names,
            )
        return JsonResponse(document)

    routes = [
        Route("/v1/transactions/{trace_no}", get_transaction, methods=["GET"]),
        # The streams first: GET /v1/lanes/{lane}/events is no lane action.
        *([] if progress is None else _progress_routes(service, progress, keep_alive_s)),
        *_lane_routes(lane_named),
        Route("/v1/{action}", post_action, methods=["POST"]),
        Route("/health", get_health, methods=["GET"]),
        Route("/openapi.json", get_openapi, methods=["GET"]),
    ]
    if metrics is not None:
        source = metrics

        async def get_metrics(_: Request) -> Response:
            body, content_type = await source.render()
            return Response(body, media_type=content_type)

        routes.append(Route("/metrics", get_metrics, methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
    # "/health/" is a path of its own (404), not a redirect: every answer is JSON with a code.
    app.router.redirect_slashes = False
    on_refusal = None if metrics is None else metrics.api_refused
    # add_middleware puts each one outside the ones before it: the guard is outermost, then the
    # security rules (refused before a byte of the body is read), then the body limit.
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(SecurityMiddleware, security=rules, on_refusal=on_refusal)
    app.add_middleware(AnswerEveryRequest)
    return app
