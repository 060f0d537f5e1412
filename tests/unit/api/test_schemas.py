"""The OpenAPI document describes what the HTTP door really does (issue 10, item 10).

Checked two ways: the document itself (security, /metrics, amounts, bounds, error responses) and
the door's real answers, each validated against the schema the document gives for its status.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis.core.result import Err

from misbridge.api.http_app import create_app
from misbridge.api.schemas import card_key_pattern, openapi_document
from misbridge.api.security import ApiSecurity
from misbridge.config.settings import ApiSettings
from misbridge.ebuy import jsonio
from misbridge.ebuy.carddata import CARD_DATA_FIELDS, is_card_data_field
from misbridge.ebuy.examples import book_request
from misbridge.ebuy.requests import (
    BOOK_ACTIONS,
    complete_book_head,
    error_response,
    parse_request,
)
from misbridge.errors import RequestError

TOKEN = "tok-for-schema-tests"
BASE = "http://127.0.0.1:9101"
GOODS = {"goodsCategory": "1", "goodsId": "1", "goodsName": "x", "price": 1, "quantity": 1}
SALE = {"traceNo": "T1", "totalAmount": 1, "undiscountAmount": 0, "goodsDetail": [GOODS]}
#: What the backend simulator answers to a second inquiry about an unknown original, passed on as is.
BARRED_INQUIRY_ANSWER = {"traceNo": "Q2", "originalTraceNo": "NOPE1", "returnCode": "25",
                         "returnDesc": "not found; traceNo barred"}  # fmt: skip


class AnsweringService:
    def __init__(self) -> None:
        self.answer: dict[str, Any] = {"traceNo": "T1", "orderNo": "1", "transDate": "20260101000000",
                                       "returnCode": "00", "returnDesc": "SUCCESS", "paidAmount": 40.8}  # fmt: skip

    async def handle(
        self, action: str, body: dict[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]:
        return self.answer

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        if trace_no != "KNOWN1":
            return None
        return {"traceNo": trace_no, "action": "cardRedemption", "state": "approved", "maskedPan": "622562****8888",
                "returnCode": "00", "response": self.answer, "createdAt": "2026-01-01T00:00:00+00:00",
                "updatedAt": "2026-01-01T00:00:01+00:00", "transitions": [], "reversal": None,
                "backendCalls": []}  # fmt: skip

    async def health(self) -> tuple[bool, dict[str, Any]]:
        return False, {"status": "not ready", "device": {"connected": False}}


class FakeMetrics:
    async def render(self) -> tuple[bytes, str]:
        return b"misbridge_up 1\n", "text/plain; version=0.0.4; charset=utf-8"

    def api_refused(self, status: int) -> None:
        pass


@pytest.fixture
def document() -> dict[str, Any]:
    return openapi_document(token_required=True, metrics=True)


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _request_schema(document: dict[str, Any], action: str) -> dict[str, Any]:
    ref = document["paths"][f"/v1/{action}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return _resolve(document, ref)


# --- the document ------------------------------------------------------------------------------


def test_schemathesis_can_load_the_document(document: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    operations = {result.ok().label for result in schema.get_all_operations() if not isinstance(result, Err)}
    assert "POST /v1/cardRedemption" in operations
    assert "GET /metrics" in operations


def test_bearer_is_required_except_on_health_and_metrics(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert document["paths"]["/metrics"]["get"]["security"] == []
    sale = document["paths"]["/v1/cardRedemption"]["post"]
    assert "security" not in sale  # the document-wide requirement applies
    assert sale["responses"]["401"]["headers"]["WWW-Authenticate"]


def test_a_door_without_a_token_documents_none_and_no_metrics_without_a_source() -> None:
    document = openapi_document()
    assert "security" not in document
    assert "401" not in document["paths"]["/v1/cardRedemption"]["post"]["responses"]
    assert "/metrics" not in document["paths"]


def test_metrics_are_documented_as_prometheus_text(document: dict[str, Any]) -> None:
    answer = document["paths"]["/metrics"]["get"]["responses"]["200"]
    assert list(answer["content"]) == ["text/plain"]


def test_every_error_status_uses_the_shared_error_schema(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    continue
                schema = response["content"]["application/json"]["schema"]
                refs = [schema] if "$ref" in schema else schema["anyOf"]
                assert {"$ref": "#/components/schemas/ErrorResponse"} in refs, (method, path, status)
                assert re.search(r"\bMB\d\d ", response["description"]), (method, path, status)


@pytest.mark.parametrize(("status", "code"), [("400", "MB01"), ("408", "MB29"), ("409", "MB41"), ("413", "MB08"),
                                              ("415", "MB01"), ("421", "MB71"), ("422", "MB13"), ("500", "MB99"),
                                              ("503", "MB20"), ("504", "MB31")])  # fmt: skip
def test_a_sale_documents_each_status_with_its_codes(document: dict[str, Any], status: str, code: str) -> None:
    assert code in document["paths"]["/v1/cardRedemption"]["post"]["responses"][status]["description"]


def test_the_path_refusals_are_documented(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    assert responses["NoSuchPath"]["description"].startswith("MB09")
    assert responses["MethodNotAllowed"]["description"].startswith("MB70")
    assert "Allow" in responses["MethodNotAllowed"]["headers"]
    transaction = document["paths"]["/v1/transactions/{traceNo}"]["get"]["responses"]
    assert "MB44" in transaction["404"]["description"]
    assert "MB15" in transaction["422"]["description"]


@pytest.mark.parametrize("action", ["cardRedemption", "cardPayment"])
def test_amounts_have_at_most_two_decimals_and_a_total_above_zero(document: dict[str, Any], action: str) -> None:
    sale = _request_schema(document, action)["properties"]
    assert sale["totalAmount"]["multipleOf"] == 0.01
    assert sale["totalAmount"]["exclusiveMinimum"] == 0
    assert sale["undiscountAmount"]["multipleOf"] == 0.01
    assert "totalAmount" in sale["undiscountAmount"]["description"]
    goods = _resolve(document, sale["goodsDetail"]["items"])["properties"]
    assert goods["price"]["multipleOf"] == 0.01
    assert (goods["quantity"]["minimum"], goods["quantity"]["maximum"]) == (1, 99_999)


def test_card_data_keys_are_refused_in_any_case(document: dict[str, Any]) -> None:
    pattern = re.compile(card_key_pattern())
    for key in (*CARD_DATA_FIELDS, "cardNo", "Card_No", "TRACK-2", " pin block", "cvv.2"):
        for spelling in (key, key.upper(), key.swapcase()):
            assert pattern.match(spelling), spelling
            assert is_card_data_field(spelling), spelling  # the document says what the door does
    for other in ("cardType", "passwords", "pinned", "company", "valid"):
        assert not pattern.match(other), other
        assert not is_card_data_field(other), other
    sale = _request_schema(document, "cardRedemption")
    assert sale["propertyNames"] == {"not": {"pattern": card_key_pattern()}}


def test_amount_validation_matches_two_decimals(document: dict[str, Any]) -> None:
    price = jsonschema_rs.validator_for(_request_schema(document, "cardRedemption")["properties"]["totalAmount"])
    assert [price.is_valid(amount) for amount in (40.8, 9999999999.99, 0.01)] == [True] * 3
    assert [price.is_valid(amount) for amount in (1.005, 0, -1)] == [False] * 3


# --- the door's answers against the document ---------------------------------------------------


@pytest.fixture
def service() -> AnsweringService:
    return AnsweringService()


@pytest.fixture
async def door(service: AnsweringService) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    security = ApiSecurity.from_settings(ApiSettings(), SecretStr(TOKEN))
    transport = httpx.ASGITransport(app=create_app(service, security, metrics=FakeMetrics()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        document = (await client.get("/openapi.json", headers={"authorization": f"Bearer {TOKEN}"})).json()
        yield client, document


def _conforms(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """The answer's status is documented for the operation and its body validates against that schema."""
    responses = document["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, (path, method, response.status_code)
    content = responses[str(response.status_code)]["content"]
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in content, (path, response.headers["content-type"])
    if media_type == "application/json":
        schema = {**content[media_type]["schema"], "components": document["components"]}
        jsonschema_rs.validator_for(schema).validate(response.json())


AUTH = {"authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}


@pytest.mark.parametrize(
    ("method", "url", "path", "kwargs"),
    [("POST", "/v1/cardRedemption", "/v1/cardRedemption", {"json": SALE, "headers": AUTH}),
     ("POST", "/v1/cardRedemption", "/v1/cardRedemption", {"json": SALE}),
     ("POST", "/v1/cardRedemption", "/v1/cardRedemption", {"content": b"{", "headers": {**AUTH, **JSON}}),
     ("POST", "/v1/cardRedemption", "/v1/cardRedemption", {"content": b"{}", "headers": {**AUTH, **TEXT}}),
     ("POST", "/v1/cardRedemption", "/v1/cardRedemption", {"json": SALE, "headers": {**AUTH, "host": "evil.example"}}),
     ("POST", "/v1/cardRedemption", "/v1/cardRedemption", {"json": SALE, "headers": {**AUTH, "origin": "null"}}),
     ("POST", "/v1/inquiry", "/v1/inquiry", {"json": {"traceNo": "Q1", "originalTraceNo": "T1"}, "headers": AUTH}),
     ("GET", "/v1/transactions/KNOWN1", "/v1/transactions/{traceNo}", {"headers": AUTH}),
     ("GET", "/v1/transactions/NOPE", "/v1/transactions/{traceNo}", {"headers": AUTH}),
     ("GET", "/v1/transactions/a.b", "/v1/transactions/{traceNo}", {"headers": AUTH}),
     ("GET", "/v1/transactions/NOPE", "/v1/transactions/{traceNo}", {}),
     ("GET", "/health", "/health", {}),
     ("GET", "/metrics", "/metrics", {}),
     ("GET", "/openapi.json", "/openapi.json", {"headers": AUTH})],
)  # fmt: skip
async def test_each_answer_conforms_to_the_document(
    door: tuple[httpx.AsyncClient, dict[str, Any]], method: str, url: str, path: str, kwargs: dict[str, Any]
) -> None:
    client, document = door
    _conforms(document, path, method.lower(), await client.request(method, url, **kwargs))


async def test_an_answer_the_backend_left_without_order_no_conforms_once_completed(
    door: tuple[httpx.AsyncClient, dict[str, Any]], service: AnsweringService
) -> None:
    # The service completes the head of every backend answer (tests/integration/test_barred_trace.py
    # checks that end to end); the document requires the completed head.
    client, document = door
    service.answer = complete_book_head(BARRED_INQUIRY_ANSWER, "Q2")
    response = await client.post("/v1/inquiry", json={"traceNo": "Q2", "originalTraceNo": "NOPE1"}, headers=AUTH)
    assert response.status_code == 200
    _conforms(document, "/v1/inquiry", "post", response)


async def test_every_mb_code_answer_conforms_to_its_status(
    door: tuple[httpx.AsyncClient, dict[str, Any]], service: AnsweringService
) -> None:
    """Whatever MB code the service gives a sale, the status it maps to is documented with that code."""
    client, document = door
    responses = document["paths"]["/v1/cardRedemption"]["post"]["responses"]
    for code in ("MB10", "MB12", "MB13", "MB16", "MB20", "MB21", "MB25", "MB29", "MB31", "MB32", "MB41", "MB42",
                 "MB43", "MB91", "MB92", "MB99"):  # fmt: skip
        service.answer = {"traceNo": "T1", "orderNo": "", "transDate": "20260101000000", "returnCode": code,
                          "returnDesc": "x", "paidAmount": 0}  # fmt: skip
        response = await client.post("/v1/cardRedemption", json=SALE, headers=AUTH)
        _conforms(document, "/v1/cardRedemption", "post", response)
        assert code in responses[str(response.status_code)]["description"]


# --- every action of the book ------------------------------------------------------------------


def test_every_action_of_the_book_is_documented_with_its_request(document: dict[str, Any]) -> None:
    for action in BOOK_ACTIONS:
        schema = _request_schema(document, action)
        assert schema["required"][0] == "traceNo", action
        assert schema["propertyNames"] == {"not": {"pattern": card_key_pattern()}}, action


@pytest.mark.parametrize("action", BOOK_ACTIONS)
def test_an_action_the_service_runs_has_no_mb06_and_batch_codes_only_for_the_upload(
    document: dict[str, Any], action: str
) -> None:
    responses = str(document["paths"][f"/v1/{action}"]["post"]["responses"])
    assert "MB06" not in responses
    assert ("MB17" in responses) is ("MB18" in responses) is (action == "batchUpload")


@pytest.mark.parametrize(
    ("action", "field"),
    [("refundCardSale", "refundAmount"), ("refundQrcodeSale", "refundAmount"), ("qrcodeSale", "totalAmount"),
     ("accumulating", "totalAmount")],
)  # fmt: skip
def test_refunds_and_totals_are_above_zero_with_two_decimals(document: dict[str, Any], action: str, field: str) -> None:
    amount = _request_schema(document, action)["properties"][field]
    validator = jsonschema_rs.validator_for(amount)
    assert [validator.is_valid(value) for value in (40.8, 0.01)] == [True, True]
    assert [validator.is_valid(value) for value in (0, -1, 1.005, "40.8")] == [False] * 4


def test_the_batch_rules_json_schema_can_say_are_in_the_document(document: dict[str, Any]) -> None:
    batch = _request_schema(document, "batchUpload")["properties"]
    assert (batch["transRecord"]["minItems"], batch["transRecord"]["maxItems"]) == (1, 5000)
    assert "MB17" in batch["transCount"]["description"]
    assert "MB18" in batch["beginTime"]["description"]
    time = jsonschema_rs.validator_for(batch["beginTime"])
    assert time.is_valid("20161231102201")
    assert [time.is_valid(t) for t in ("2016123110220", "20161331102201", "18001231102201")] == [False] * 3
    record = _resolve(document, batch["transRecord"]["items"])["properties"]
    assert (record["status"]["minimum"], record["status"]["maximum"]) == (0, 9)
    assert record["paidAmount"]["multipleOf"] == 0.01


def test_qrcode_is_optional_bounded_and_without_control_characters(document: dict[str, Any]) -> None:
    for action in ("qrcodeSale", "ecouponInquiry"):
        schema = _request_schema(document, action)
        assert "qrcode" not in schema["required"]
        qrcode = jsonschema_rs.validator_for(schema["properties"]["qrcode"])
        assert [qrcode.is_valid(code) for code in ("280123121234567890", "二维码", "q" * 512)] == [True] * 3
        assert [qrcode.is_valid(code) for code in ("", "q" * 513, "a\nb", "a\x00", "a\x85")] == [False] * 5


class ValidatingService(AnsweringService):
    """Answers as the service does before any device: a refusal, or the fixed approval."""

    async def handle(
        self, action: str, body: dict[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]:
        try:
            parse_request(action, body)
        except RequestError as err:
            return error_response(str(body.get("traceNo", "")), err, err.return_code)
        return self.answer


@pytest.mark.parametrize("action", BOOK_ACTIONS)
async def test_the_door_answers_every_book_example_and_a_fault_as_documented(action: str) -> None:
    security = ApiSecurity.from_settings(ApiSettings(), SecretStr(TOKEN))
    transport = httpx.ASGITransport(app=create_app(ValidatingService(), security, metrics=FakeMetrics()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        document = (await client.get("/openapi.json", headers=AUTH)).json()
        path = f"/v1/{action}"
        good = await client.post(path, content=jsonio.dumps(book_request(action)), headers={**AUTH, **JSON})
        assert good.status_code == 200
        _conforms(document, path, "post", good)
        faulty = {key: value for key, value in book_request(action).items() if key != "traceNo"}
        bad = await client.post(path, content=jsonio.dumps(faulty), headers={**AUTH, **JSON})
        assert (bad.status_code, bad.json()["returnCode"]) == (422, "MB10")
        _conforms(document, path, "post", bad)
