"""The HTTP front door's OpenAPI document, built from the same models that validate requests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from misbridge import __version__
from misbridge.ebuy.requests import REQUEST_MODELS, Price


class EbuyResponse(BaseModel):
    """The common head of every e-Buy response body; backend fields beyond it pass through."""

    model_config = ConfigDict(extra="allow")

    traceNo: str
    orderNo: str
    transDate: str
    returnCode: str
    returnDesc: str
    paidAmount: Price | None = None


def _operation(action: str, request_ref: str) -> dict[str, Any]:
    body = {"application/json": {"schema": {"$ref": request_ref}}}
    answer = {"application/json": {"schema": {"$ref": "#/components/schemas/EbuyResponse"}}}
    return {
        "post": {
            "operationId": action,
            "summary": f"e-Buy {action}",
            "requestBody": {"required": True, "content": body},
            "responses": {
                "200": {"description": "processed: 00 approved, else a decline", "content": answer},
                "4XX": {"description": "refused by misbridge (returnCode MBxx)", "content": answer},
                "5XX": {"description": "device or backend failure (returnCode MBxx)", "content": answer},
            },
        }
    }


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for ``POST /v1/{action}``, ``GET /health`` and ``GET /v1/transactions/{traceNo}``."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(model, "validation") for model in REQUEST_MODELS.values()]
    models.append((EbuyResponse, "serialization"))
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    paths: dict[str, Any] = {
        f"/v1/{action}": _operation(action, refs[(model, "validation")]["$ref"])
        for action, model in REQUEST_MODELS.items()
    }
    paths["/health"] = {"get": {"operationId": "health", "responses": {
        "200": {"description": "ready"}, "503": {"description": "not ready (PIN pad down)"}}}}
    paths["/v1/transactions/{traceNo}"] = {"get": {
        "operationId": "transaction",
        "parameters": [{"name": "traceNo", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "journal view"}, "404": {"description": "unknown traceNo"}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "misbridge POS API", "version": __version__},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
