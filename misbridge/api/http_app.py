"""Front door 2: HTTP/JSON (default 127.0.0.1:9101).

``POST /v1/{action}`` takes the plain body JSON of an e-Buy action and returns the plain
response JSON. Refusals use the same e-Buy response shape with an ``MBxx`` returnCode and
an HTTP status that matches it; processed transactions (approved or declined by the
backend) answer 200. Every request first passes the door's security rules
(:mod:`misbridge.api.security`: Host, Origin, bearer token), whose refusals are plain
``{"error": ...}`` with 421, 403 or 401. ``GET /metrics`` serves the Prometheus text format
when the daemon hands in a metrics source.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from misbridge.api.schemas import openapi_document
from misbridge.api.security import ApiSecurity, SecurityMiddleware
from misbridge.crashpoints import crash_point
from misbridge.ebuy import jsonio
from misbridge.ebuy.requests import error_response
from misbridge.errors import RequestError, ReturnCode

_STATUS_BY_CODE = {member.code: member.http_status for member in ReturnCode}


class PosService(Protocol):
    """What the HTTP door needs from the service (kept narrow for tests)."""

    async def handle(self, action: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def transaction(self, trace_no: str) -> dict[str, Any] | None: ...

    async def health(self) -> tuple[bool, dict[str, Any]]: ...


class MetricsSource(Protocol):
    """What ``GET /metrics`` needs (``misbridge.metrics.Metrics`` has it; the api layer does not import it)."""

    async def render(self) -> tuple[bytes, str]: ...

    def api_refused(self, status: int) -> None: ...


class JsonResponse(Response):
    """JSON response written with exact decimals (40.8 stays 40.8)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsonio.dumps(content).encode("utf-8")


def _refusal(err: RequestError) -> JsonResponse:
    return JsonResponse(error_response("", err, err.return_code), status_code=err.http_status)


def _status_for(body: dict[str, Any]) -> int:
    return _STATUS_BY_CODE.get(str(body.get("returnCode", "")), 200)


def create_app(
    service: PosService, security: ApiSecurity | None = None, *, metrics: MetricsSource | None = None
) -> Starlette:
    """Build the Starlette app for a running service.

    Args:
        service: what runs the transactions.
        security: the door's rules; the default checks Host and Origin but asks for no token.
        metrics: serves ``GET /metrics`` and counts refusals; without it ``/metrics`` is 404.
    """

    async def post_action(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            err = RequestError("Content-Type must be application/json", return_code=ReturnCode.NOT_JSON)
            return JsonResponse(error_response("", err, err.return_code), status_code=415)
        try:
            body = jsonio.loads(await request.body())
        except (jsonio.JSONDecodeError, UnicodeError) as exc:
            return _refusal(RequestError(f"request body is not JSON: {exc}", return_code=ReturnCode.NOT_JSON))
        if not isinstance(body, dict):
            return _refusal(RequestError("request body must be a JSON object", return_code=ReturnCode.NOT_JSON))
        answer = await service.handle(request.path_params["action"], body)
        after_reply = BackgroundTask(crash_point, "pos.after_reply")
        return JsonResponse(answer, status_code=_status_for(answer), background=after_reply)

    async def get_transaction(request: Request) -> Response:
        view = await service.transaction(request.path_params["trace_no"])
        if view is None:
            return JsonResponse({"traceNo": request.path_params["trace_no"], "error": "not found"}, 404)
        return JsonResponse(view)

    async def get_health(_: Request) -> Response:
        ready, detail = await service.health()
        return JsonResponse(detail, status_code=200 if ready else 503)

    async def get_openapi(_: Request) -> Response:
        return JsonResponse(openapi_document())

    routes = [
        Route("/v1/transactions/{trace_no}", get_transaction, methods=["GET"]),
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
    app = Starlette(routes=routes)
    on_refusal = None if metrics is None else metrics.api_refused
    app.add_middleware(SecurityMiddleware, security=security or ApiSecurity(), on_refusal=on_refusal)
    return app

