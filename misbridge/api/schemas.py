"""The HTTP front door's OpenAPI document: what the door really accepts and really answers.

Request bodies of all twelve actions of the book come from the same pydantic models that validate
them (``misbridge.ebuy.requests``), completed with what those models check in code rather than in
their JSON Schema: amounts have at most two decimals (``multipleOf: 0.01``), a total or a refund is
greater than 0, a quantity is at most :data:`MAX_QUANTITY`, and card-data keys are refused. Rules
relating two fields (``undiscountAmount <= totalAmount``; a batch's ``transCount`` and its records,
its ``beginTime`` and ``endTime``) cannot be said in JSON Schema; their descriptions say them.

Every answer that is not a processed transaction has the book's response shape with an ``MBxx``
code (``ErrorResponse``); each status lists the codes that can come with it, from
:class:`misbridge.errors.ReturnCode`, so the document cannot drift from the code table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from misbridge import __version__
from misbridge.config.settings import DEFAULT_LANE
from misbridge.ebuy.carddata import CARD_DATA_FIELDS
from misbridge.ebuy.requests import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    REQUEST_MODELS,
    TRACE_NO_PATTERN,
)
from misbridge.errors import ReturnCode

#: The largest goods quantity the door accepts (validated in misbridge.ebuy.requests).
#: The smallest step of an amount: the book's Price has at most two decimals (fen).
AMOUNT_STEP = Decimal("0.01")

_REF = "#/components/schemas/{model}"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_JSON = "application/json"

#: Codes any request can get from the door itself, before it reaches a route.
_DOOR_CODES = (
    ReturnCode.REQUEST_TIMEOUT, ReturnCode.REQUEST_TOO_LARGE, ReturnCode.HOST_REFUSED, ReturnCode.ORIGIN_REFUSED,
    ReturnCode.CALLER_NOT_ALLOWED, ReturnCode.CALLER_UNIDENTIFIED, ReturnCode.TOO_MANY_CONNECTIONS,
    ReturnCode.INTERNAL,
)  # fmt: skip
#: Codes that only the socket door (framing, envelope) or no documented operation can give.
_NOT_FROM_AN_ACTION = frozenset({
    ReturnCode.BAD_LENGTH_PREFIX, ReturnCode.BAD_ENVELOPE, ReturnCode.BAD_BODY_ENCODING, ReturnCode.UNKNOWN_ACTION,
    ReturnCode.UNSUPPORTED_ACTION, ReturnCode.NO_SUCH_PATH, ReturnCode.TRANSACTION_NOT_FOUND,
    ReturnCode.METHOD_NOT_ALLOWED, ReturnCode.TOKEN_REFUSED, ReturnCode.TOO_MANY_STREAMS,
})  # fmt: skip
#: Codes only a batchUpload body can get.
_BATCH_CODES = frozenset({ReturnCode.BATCH_COUNT_MISMATCH, ReturnCode.BATCH_WINDOW})
#: Codes of ``POST /v1/{action}`` for an action the service runs: everything about a transaction.
_ACTION_CODES = tuple(code for code in ReturnCode if code not in _NOT_FROM_AN_ACTION | _BATCH_CODES)
_TRACE_NO_PARAMETER = {"name": "traceNo", "in": "path", "required": True,
                       "schema": {"type": "string", "pattern": TRACE_NO_PATTERN}}  # fmt: skip


# --- component schemas written by hand -------------------------------------------------------------

_BOOK_HEAD_DESCRIPTIONS = {
    "traceNo": 'the request\'s traceNo ("" when the request had no readable one)',
    "orderNo": "the backend's order number",
    "transDate": "yyyyMMddHHmmss",
    "returnCode": '"00" approved; a backend code for its declines; MBxx for misbridge\'s own (docs/return-codes.md)',
    "returnDesc": "what happened, naming the field and the reason",
    "paidAmount": "amount paid, yuan",
}

ERROR_RESPONSE: dict[str, Any] = {
    "type": "object",
    "description": "misbridge's own answer: the book's response shape with an MBxx returnCode; nothing was charged "
                   "unless the code says otherwise (MB31, MB34)",
    "required": list(_BOOK_HEAD_DESCRIPTIONS),
    "additionalProperties": False,
    "properties": {
        "traceNo": {"type": "string", "description": _BOOK_HEAD_DESCRIPTIONS["traceNo"]},
        "orderNo": {"const": "", "description": "always empty: no order was made"},
        "transDate": {"type": "string", "pattern": "^[0-9]{14}$", "description": "yyyyMMddHHmmss, misbridge's clock"},
        "returnCode": {"type": "string", "pattern": "^MB[0-9]{2}$", "description": "see docs/return-codes.md"},
        "returnDesc": {"type": "string", "description": _BOOK_HEAD_DESCRIPTIONS["returnDesc"]},
        "paidAmount": {"const": 0, "description": "always 0"},
    },
}  # fmt: skip

# The book marks every head field mandatory, and a backend does leave some out (a "not found"
# inquiry answer has no order), so misbridge fills in what is missing on the way to the POS
# (misbridge.ebuy.requests.complete_book_head). paidAmount stays optional: an approval that
# lacks it cannot be completed, since only the backend knows what was paid.
EBUY_RESPONSE: dict[str, Any] = {
    "type": "object",
    "description": "the e-Buy backend's response body, passed on unchanged (approved or declined: read "
                   "returnCode); fields beyond these are the backend's (goodsDetail, fundChannel, printDetail...)",
    "required": ["traceNo", "orderNo", "transDate", "returnCode", "returnDesc"],
    "additionalProperties": True,
    "properties": {
        "traceNo": {"type": "string", "description": _BOOK_HEAD_DESCRIPTIONS["traceNo"]},
        "orderNo": {"type": "string", "description": _BOOK_HEAD_DESCRIPTIONS["orderNo"]},
        "transDate": {"type": "string", "description": _BOOK_HEAD_DESCRIPTIONS["transDate"]},
        "returnCode": {"type": "string", "description": _BOOK_HEAD_DESCRIPTIONS["returnCode"]},
        "returnDesc": {"type": "string", "description": _BOOK_HEAD_DESCRIPTIONS["returnDesc"]},
        "paidAmount": {"type": "number", "description": _BOOK_HEAD_DESCRIPTIONS["paidAmount"]},
    },
}  # fmt: skip

TRANSACTION_VIEW: dict[str, Any] = {
    "type": "object",
    "description": "what the journal holds about one transaction (card numbers masked)",
    "required": ["traceNo", "action", "state"],
    "additionalProperties": True,
    "properties": {
        "traceNo": {"type": "string"},
        "action": {"type": "string"},
        "state": {"type": "string", "description": "docs/state-machine.md"},
        "maskedPan": {"type": ["string", "null"], "description": "first 6 and last 4 digits"},
        "returnCode": {"type": ["string", "null"]},
        "response": {"type": ["object", "null"], "description": "the answer the POS was given"},
        "createdAt": {"type": "string"},
        "updatedAt": {"type": "string"},
        "transitions": {"type": "array", "items": {"type": "object"}},
        "reversal": {"type": ["object", "null"]},
        "backendCalls": {"type": "array", "items": {"type": "object"}},
        "posInquiries": {
            "type": "array",
            "items": {"type": "object"},
            "description": "POS inquiries misbridge forwarded to e-Buy about this traceNo (action, state then empty)",
        },
        "lane": {"type": "string", "description": "a named POS lane's transaction's lane; absent: the default lane"},
    },
}

HEALTH: dict[str, Any] = {
    "type": "object",
    "description": "readiness: counts and device state, no card data and no traceNo",
    "required": ["status"],
    "additionalProperties": True,
    "properties": {"status": {"type": "string", "enum": ["ready", "not ready"]}},
}

_DOOR_DESCRIPTION = (
    "The HTTP door of misbridge (docs/pos-api.md). Every answer is JSON; every refusal has the e-Buy response "
    "shape with an MBxx returnCode (docs/return-codes.md). A path no operation takes answers 404 MB09, a method "
    "a path does not take 405 MB70 with Allow, a body over 65535 bytes 413 MB08."
)

BEARER_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "description": "the api-token credential (docs/operations.md); required on every operation except "
                   "GET /health and GET /metrics when the door has a token configured, as the systemd unit always does",
}  # fmt: skip


# --- request schemas: the validating models, completed ---------------------------------------------


#: What the door ignores between the letters of a field name when it compares it with the
#: card-data names (misbridge.ebuy.carddata.normalised_name): white space, "_", "." and "-".
_NAME_NOISE = r"[\s_.\-]*"


def _loosely(word: str) -> str:
    """An ECMA 262 pattern for ``word`` in any case with name noise anywhere (no ``i`` flag in JSON Schema)."""
    return _NAME_NOISE.join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def card_key_pattern(keys: Iterable[str] = CARD_DATA_FIELDS) -> str:
    """A pattern matching exactly the card-data keys the door refuses (any case, ``Card_No`` too)."""
    return f"^{_NAME_NOISE}(" + "|".join(_loosely(key) for key in sorted(keys)) + f"){_NAME_NOISE}$"


def _is_amount(node: dict[str, Any]) -> bool:
    return node.get("type") == "number" and node.get("maximum") == float(MAX_AMOUNT)


def _complete_amounts(node: Any) -> None:
    """Add the two-decimals rule to every amount (the book's Price) in ``node``, at any depth."""
    if isinstance(node, dict):
        if _is_amount(node):
            node["multipleOf"] = float(AMOUNT_STEP)
            node.setdefault("description", "yuan, a JSON number with at most 2 decimals, e.g. 40.8 (MB12)")
        for value in node.values():
            _complete_amounts(value)
    elif isinstance(node, list):
        for value in node:
            _complete_amounts(value)


#: What the descriptions of the request fields say beyond their JSON Schema.
_FIELD_DESCRIPTIONS = {
    "totalAmount": "yuan, greater than 0, at most 2 decimals (MB12)",
    "refundAmount": "yuan, greater than 0, at most 2 decimals (MB12)",
    "undiscountAmount": "yuan, at most 2 decimals; must not be greater than totalAmount (MB13)",
    "qrcode": "optional: the PIN pad can collect it; 1 to 512 characters, no control characters (MB11)",
    "transCount": "the number of transRecord entries (MB17), at most 5000",
    "beginTime": "yyyyMMddHHmmss, not after endTime and at most 7 days before it (MB18)",
    "endTime": "yyyyMMddHHmmss, at most 7 days after beginTime (MB18)",
    "acquirer": "e.g. citicCashpay, at most 256 characters (MB11); voiding a cardPayment needs it (book §10.5)",
}


def _describe_fields(properties: dict[str, Any]) -> None:
    for field, description in _FIELD_DESCRIPTIONS.items():
        if field in properties:
            properties[field]["description"] = description


def _complete_request_schemas(defs: dict[str, Any]) -> None:
    no_card_keys = {"not": {"pattern": card_key_pattern()}}
    for name, schema in defs.items():
        if schema.get("type") == "object" and name.endswith(("Request", "Detail", "Record")):
            schema["propertyNames"] = no_card_keys
        if name.endswith("Request"):
            _describe_fields(schema["properties"])
    quantity = defs["GoodsDetail"]["properties"]["quantity"]
    quantity["maximum"] = MAX_QUANTITY
    quantity["description"] = f"1 to {MAX_QUANTITY}, a JSON integer (MB11)"
    _complete_amounts(defs)


def _request_schemas() -> tuple[dict[str, str], dict[str, Any]]:
    """``{action: $ref}`` and the component schemas of every request model."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(model, "validation") for model in REQUEST_MODELS.values()]
    refs, defs = models_json_schema(models, ref_template=_REF)
    schemas: dict[str, Any] = defs.get("$defs", {})
    _complete_request_schemas(schemas)
    return {action: refs[(model, "validation")]["$ref"] for action, model in REQUEST_MODELS.items()}, schemas


# --- responses ---------------------------------------------------------------------------------------


def _error_responses(codes: Iterable[ReturnCode]) -> dict[str, Any]:
    """One response per HTTP status, its description listing the MBxx codes that come with it."""
    by_status: dict[int, list[ReturnCode]] = defaultdict(list)
    for code in codes:
        by_status[code.http_status].append(code)
    return {
        str(status): {
            "description": "; ".join(f"{code.code} {code.meaning}" for code in members),
            "content": {_JSON: {"schema": _ERROR_REF}},
        }
        for status, members in sorted(by_status.items())
    }


def _with_token_refusal(responses: dict[str, Any], token_required: bool) -> dict[str, Any]:
    if token_required:
        responses.update(_error_responses([ReturnCode.TOKEN_REFUSED]))
        responses["401"]["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="misbridge"'}
        }
    return dict(sorted(responses.items()))


def _action_operation(action: str, request_ref: str, token_required: bool) -> dict[str, Any]:
    codes = _ACTION_CODES if action != "batchUpload" else (*_ACTION_CODES, *sorted(_BATCH_CODES, key=lambda c: c.code))
    responses = _error_responses(codes)
    responses["415"] = {
        "description": "MB01 the Content-Type is not application/json",
        "content": {_JSON: {"schema": _ERROR_REF}},
    }
    responses["200"] = {
        "description": 'processed by the backend: "00" approved, any other returnCode is its decline',
        "content": {_JSON: {"schema": {"$ref": _REF.format(model="EbuyResponse")}}},
    }
    return {
        "operationId": action,
        "summary": f"e-Buy {action}",
        "requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": request_ref}}}},
        "responses": _with_token_refusal(responses, token_required),
    }


def _transaction_operation(token_required: bool) -> dict[str, Any]:
    responses = _error_responses([*_DOOR_CODES, ReturnCode.TRANSACTION_NOT_FOUND, ReturnCode.BAD_TRACE_NO])
    responses["200"] = {
        "description": "the journal's view of the transaction",
        "content": {_JSON: {"schema": {"$ref": _REF.format(model="TransactionView")}}},
    }
    return {
        "operationId": "transaction",
        "summary": "what misbridge's journal knows about one traceNo",
        "parameters": [_TRACE_NO_PARAMETER],
        "responses": _with_token_refusal(responses, token_required),
    }


_STREAM_DESCRIPTION = (
    'Server-Sent Events (docs/pos-api.md, "Progress stream"): per event the lines `event: <step>`, '
    "`data: <JSON: lane, traceNo, step, time and the step's fields>`, `id: <n>` and a blank line; "
    "`: keep-alive` comments when quiet. Steps: waiting_for_card, card_read (maskedPan, cardType), "
    "waiting_for_pin, pin_digits (digits), waiting_for_code, choosing, submitting, inquiring, voiding, "
    "result (state, returnCode), overflow (the client fell behind; the stream ends)"
)
#: Codes any progress stream can be refused with besides the door's own.
_STREAM_CODES = (ReturnCode.TOO_MANY_STREAMS, ReturnCode.SHUTTING_DOWN)


def _stream_operation(
    operation_id: str, summary: str, codes: Iterable[ReturnCode], parameters: list[dict[str, Any]], token_required: bool
) -> dict[str, Any]:
    responses = _error_responses([*_DOOR_CODES, *_STREAM_CODES, *codes])
    responses["200"] = {
        "description": _STREAM_DESCRIPTION,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = _with_token_refusal(responses, token_required)
    return operation


def _lane_parameter(lanes: Sequence[str]) -> dict[str, Any]:
    """The ``{lane}`` path parameter: one of this misbridge's lanes (any other name is answered MB19)."""
    return {
        "name": "lane", "in": "path", "required": True, "schema": {"type": "string", "enum": list(lanes)},
        "description": 'a lane of this misbridge ("default" with one PIN pad; [[lanes]] names the others)',
    }  # fmt: skip


def _lane_paths(action_refs: dict[str, str], token_required: bool, lanes: Sequence[str]) -> dict[str, Any]:
    """``POST /v1/lanes/{lane}/{action}`` for every action, and ``GET /v1/lanes/{lane}/health``."""
    lane_parameter = _lane_parameter(lanes)
    paths: dict[str, Any] = {}
    for action, ref in action_refs.items():
        operation = _action_operation(action, ref, token_required)
        operation["operationId"] = f"lane_{action}"
        operation["summary"] = f"e-Buy {action} on one lane (its PIN pad and deviceNo)"
        operation["parameters"] = [lane_parameter]
        operation["responses"] = _with_lane_refusal(operation["responses"])
        paths[f"/v1/lanes/{{lane}}/{action}"] = {"post": operation}
    health = _health_operation()
    health.update(operationId="laneHealth", summary="one lane's readiness (its pad, keys and backend)")
    health["parameters"] = [lane_parameter]
    health["responses"] = _with_lane_refusal(health["responses"])
    if token_required:
        del health["security"]  # only /health and /metrics are open; a lane's health needs the token
        health["responses"] = _with_token_refusal(health["responses"], token_required)
    paths["/v1/lanes/{lane}/health"] = {"get": health}
    return paths


def _with_lane_refusal(responses: dict[str, Any]) -> dict[str, Any]:
    """``responses`` with the 404 an unknown lane gets (MB19) next to the door's own 404s."""
    unknown = _error_responses([ReturnCode.UNKNOWN_LANE])["404"]
    merged = dict(responses)
    if "404" in merged:
        merged["404"] = {**merged["404"], "description": merged["404"]["description"] + "; " + unknown["description"]}
    else:
        merged["404"] = unknown
    return dict(sorted(merged.items()))


def _progress_paths(token_required: bool, lanes: Sequence[str]) -> dict[str, Any]:
    lane_parameter = _lane_parameter(lanes)
    return {
        "/v1/transactions/{traceNo}/events": {"get": _stream_operation(
            "transactionEvents",
            "one transaction's progress until its result (subscribe before posting it if you like)",
            [ReturnCode.BAD_TRACE_NO], [_TRACE_NO_PARAMETER], token_required,
        )},
        "/v1/lanes/{lane}/events": {"get": _stream_operation(
            "laneEvents", "every transaction's progress on one lane", [ReturnCode.UNKNOWN_LANE], [lane_parameter],
            token_required,
        )},
        "/v1/events": {"get": _stream_operation(
            "events", "every transaction's progress on the default lane", [], [], token_required
        )},
    }  # fmt: skip


def _health_operation() -> dict[str, Any]:
    responses = _error_responses(_DOOR_CODES)
    health_ref = {"$ref": _REF.format(model="Health")}
    responses["200"] = {"description": "ready (PIN pad connected)", "content": {_JSON: {"schema": health_ref}}}
    responses["503"] = {
        "description": "not ready (PIN pad down, starting or stopping), with the same details; or "
                       + responses["503"]["description"],
        "content": {_JSON: {"schema": {"anyOf": [health_ref, _ERROR_REF]}}},
    }  # fmt: skip
    return {"operationId": "health", "summary": "readiness, for probes (no token needed)", "security": [],
            "responses": dict(sorted(responses.items()))}  # fmt: skip


def _metrics_operation() -> dict[str, Any]:
    responses = _error_responses(_DOOR_CODES)
    responses["200"] = {
        "description": 'Prometheus text exposition format 0.0.4 (docs/operations.md, "Metrics")',
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    return {"operationId": "metrics", "summary": "Prometheus metrics (no token needed)", "security": [],
            "responses": dict(sorted(responses.items()))}  # fmt: skip


def _openapi_operation(token_required: bool) -> dict[str, Any]:
    responses = _error_responses(_DOOR_CODES)
    responses["200"] = {"description": "this document", "content": {_JSON: {"schema": {"type": "object"}}}}
    return {"operationId": "openapi", "summary": "this OpenAPI document",
            "responses": _with_token_refusal(responses, token_required)}  # fmt: skip


def _path_refusals() -> dict[str, Any]:
    """The answers to a request no operation takes (documented for reference; every path has them)."""
    refusals = _error_responses([ReturnCode.NO_SUCH_PATH, ReturnCode.METHOD_NOT_ALLOWED])
    refusals["405"]["headers"] = {"Allow": {"schema": {"type": "string"}, "description": "the methods the path takes"}}
    return {"NoSuchPath": refusals["404"], "MethodNotAllowed": refusals["405"]}


def openapi_document(
    *,
    token_required: bool = False,
    metrics: bool = False,
    progress: bool = False,
    lanes: Sequence[str] = (DEFAULT_LANE,),
) -> dict[str, Any]:
    """OpenAPI 3.1 for the door as configured.

    Args:
        token_required: the door checks a bearer token (then every operation but ``/health`` and
            ``/metrics`` lists the ``bearer`` security requirement and its 401).
        metrics: the door serves ``GET /metrics``.
        progress: the door serves the progress streams (``/v1/.../events``).
        lanes: the names ``{lane}`` takes in ``/v1/lanes/{lane}/…``, the default lane first.
    """
    action_refs, schemas = _request_schemas()
    schemas.update(EbuyResponse=EBUY_RESPONSE, ErrorResponse=ERROR_RESPONSE, TransactionView=TRANSACTION_VIEW,
                   Health=HEALTH)  # fmt: skip
    paths: dict[str, Any] = {
        f"/v1/{action}": {"post": _action_operation(action, ref, token_required)} for action, ref in action_refs.items()
    }
    paths["/v1/transactions/{traceNo}"] = {"get": _transaction_operation(token_required)}
    paths.update(_lane_paths(action_refs, token_required, lanes))
    if progress:
        paths.update(_progress_paths(token_required, lanes))
    paths["/health"] = {"get": _health_operation()}
    paths["/openapi.json"] = {"get": _openapi_operation(token_required)}
    if metrics:
        paths["/metrics"] = {"get": _metrics_operation()}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "misbridge POS API",
            "version": __version__,
            "description": _DOOR_DESCRIPTION,
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": _path_refusals(),
            "securitySchemes": {"bearer": BEARER_SCHEME},
        },
    }
    if token_required:
        document["security"] = [{"bearer": []}]
    return document
