"""BackendClient over httpx.MockTransport: NOT SENT is retried, UNKNOWN never is, replies are checked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx
import pytest
from loguru import logger
from pydantic import SecretStr

from misbridge.backend import BackendClient, BackendReply
from misbridge.config.settings import BackendSettings, IdentitySettings, SigningSettings
from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import decode_body, encode_body
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, ConfigError, RequestError, ReturnCode

KEY = "unit-test-signing-key"
BASE_URL = "http://backend.test/ebuyweb-posp/api"
#: Short timers: 2 s deadline, retry window 2 - 0.2 - 0.5 = 1.3 s.
FAST = BackendSettings(url=BASE_URL, connect_timeout_s=0.2, read_timeout_s=0.5, request_deadline_s=2.0)

Handler = Callable[[httpx.Request], httpx.Response]


def request_body(request: httpx.Request) -> dict[str, Any]:
    """The decoded body of a request the client sent."""
    return decode_body(jsonio.loads(request.content)["body"])


def reply_envelope(
    action: str, body: Mapping[str, Any], *, key: str | None = KEY, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A backend reply envelope, signed with ``key`` (unsigned when None)."""
    envelope: dict[str, Any] = {
        "action": action,
        "deviceNo": "POS01",
        "shopNo": "CN123456",
        "brand": "663",
        "body": encode_body(body),
        **(extra or {}),
    }
    if key is not None:
        envelope["sign"] = signing.sign(envelope, key)
    return envelope


def json_response(value: Any, status: int = 200) -> httpx.Response:
    """An HTTP response whose content is ``value`` as Decimal-exact JSON."""
    return httpx.Response(status, content=jsonio.dumps(value).encode(), headers={"Content-Type": "application/json"})


def answer(request: httpx.Request, return_code: str = "00", **fields: Any) -> httpx.Response:
    """A correct signed reply to ``request``: same action and traceNo."""
    action = request.url.path.rsplit("/", 1)[-1]
    body = {"traceNo": request_body(request)["traceNo"], "returnCode": return_code, "returnDesc": "x", **fields}
    return json_response(reply_envelope(action, body))


class Script:
    """A MockTransport handler that plays one step per attempt and counts attempts."""

    def __init__(self, *steps: Handler | BaseException) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    @property
    def attempts(self) -> int:
        return len(self.requests)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]  # the last step repeats
        if isinstance(step, BaseException):
            raise step
        return step(request)


def make_client(
    handler: Callable[[httpx.Request], Any],
    *,
    settings: BackendSettings = FAST,
    key: str | None = KEY,
) -> BackendClient:
    """A BackendClient whose network is ``handler``."""
    return BackendClient(
        settings, IdentitySettings(), SecretStr(key) if key else None, transport=httpx.MockTransport(handler)
    )


def unsigned(settings: BackendSettings = FAST) -> BackendSettings:
    """``settings`` with signing turned off."""
    return settings.model_copy(update={"signing": SigningSettings(enabled=False)})


BODY: dict[str, Any] = {"traceNo": "20261123120000000001", "totalAmount": Decimal("40.8"), "undiscountAmount": 0}


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every loguru message logged during the test."""
    lines: list[str] = []
    sink_id = logger.add(lambda message: lines.append(str(message)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink_id)


def unknown_marker() -> httpx.Request:
    return httpx.Request("POST", BASE_URL)


async def submit(client: BackendClient, body: dict[str, Any] | None = None) -> BackendReply:
    try:
        return await client.submit("cardRedemption", body or BODY)
    finally:
        await client.aclose()


# --- NOT SENT: retried ---------------------------------------------------------------------------


async def test_two_connect_errors_then_approval() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ConnectError("refused"), answer)
    reply = await submit(make_client(script))
    assert reply.approved
    assert script.attempts == 3


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_not_sent_forever_gives_backend_not_sent_within_the_deadline(error: type[httpx.HTTPError]) -> None:
    settings = FAST.model_copy(update={"request_deadline_s": 1.0, "connect_timeout_s": 0.1, "read_timeout_s": 0.3})
    script = Script(error("nope"))
    started = time.monotonic()
    with pytest.raises(BackendNotSent) as raised:
        await submit(make_client(script, settings=settings))
    elapsed = time.monotonic() - started
    assert elapsed < settings.request_deadline_s
    assert script.attempts > 1
    assert raised.value.return_code is ReturnCode.BACKEND_NOT_SENT
    assert isinstance(raised.value.__cause__, error)


async def test_retries_resend_the_identical_request() -> None:
    script = Script(httpx.ConnectError("refused"), answer)
    await submit(make_client(script))
    assert script.requests[0].content == script.requests[1].content


# --- UNKNOWN: exactly one attempt ----------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("slow", request=unknown_marker()),
        httpx.WriteTimeout("slow", request=unknown_marker()),
        httpx.ReadError("reset", request=unknown_marker()),
        httpx.WriteError("reset", request=unknown_marker()),
        httpx.RemoteProtocolError("Server disconnected without sending a response", request=unknown_marker()),
    ],
    ids=lambda err: type(err).__name__,
)
async def test_transport_errors_after_sending_are_unknown_after_one_attempt(error: httpx.HTTPError) -> None:
    script = Script(error)
    with pytest.raises(BackendOutcomeUnknown, match=type(error).__name__) as raised:
        await submit(make_client(script))
    assert script.attempts == 1
    assert raised.value.return_code is ReturnCode.BACKEND_UNKNOWN


async def test_overall_deadline_is_unknown_after_one_attempt() -> None:
    attempts = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    settings = FAST.model_copy(update={"request_deadline_s": 0.3, "connect_timeout_s": 0.1})
    with pytest.raises(BackendOutcomeUnknown, match="deadline"):
        await submit(make_client(hang, settings=settings))
    assert attempts == 1


def _status(status: int) -> Any:
    return lambda request: json_response({"error": "x"}, status=status)


def _content(content: bytes) -> Any:
    return lambda request: httpx.Response(200, content=content)


def _envelope(mutate: Any) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"traceNo": request_body(request)["traceNo"], "returnCode": "00"}
        envelope = reply_envelope("cardRedemption", body)
        mutate(envelope)
        return json_response(envelope)

    return handler


def _resigned(mutate: Any) -> Any:
    def change(envelope: dict[str, Any]) -> None:
        mutate(envelope)
        envelope["sign"] = signing.sign({k: v for k, v in envelope.items() if k != "sign"}, KEY)

    return _envelope(change)


def _body(body: dict[str, Any]) -> Any:
    return lambda request: json_response(reply_envelope("cardRedemption", body))


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (_status(500), "HTTP 500"),
        (_status(503), "HTTP 503"),
        (_status(404), "HTTP 404"),
        (_status(302), "HTTP 302"),
        (_content(b"<html>Bad Gateway</html>"), "not JSON"),
        (_content(b"[1, 2]"), "not a JSON object"),
        (_content(b"\xff\xfe"), "not JSON"),
        (_envelope(lambda env: env.pop("deviceNo")), "'deviceNo'"),
        (_envelope(lambda env: env.update(action=7)), "'action'"),
        (_envelope(lambda env: env.pop("sign")), "no signature"),
        (_envelope(lambda env: env.update(sign="0" * 32)), "signature"),
        (_envelope(lambda env: env.update(shopNo="CN999")), "signature"),
        (_resigned(lambda env: env.update(body="not base64!")), "Base64"),
        (_resigned(lambda env: env.update(action="inquiry")), "action"),
        (_body({"traceNo": "someone-else", "returnCode": "00"}), "traceNo"),
        (_body({"returnCode": "00"}), "traceNo"),
        (_body({"traceNo": BODY["traceNo"]}), "returnCode"),
        (_body({"traceNo": BODY["traceNo"], "returnCode": 0}), "returnCode"),
    ],
    ids=[
        "500",
        "503",
        "404",
        "redirect",
        "html",
        "json-array",
        "not-utf8",
        "missing-field",
        "non-string-field",
        "no-sign",
        "bad-sign",
        "tampered-field",
        "bad-body",
        "action-mismatch",
        "trace-mismatch",
        "no-trace",
        "no-return-code",
        "numeric-return-code",
    ],
)
async def test_bad_replies_are_unknown_after_one_attempt(handler: Any, reason: str) -> None:
    script = Script(handler)
    with pytest.raises(BackendOutcomeUnknown, match=reason):
        await submit(make_client(script))
    assert script.attempts == 1


# --- definite replies ----------------------------------------------------------------------------


async def test_decline_is_a_reply_not_an_exception() -> None:
    reply = await submit(make_client(Script(lambda request: answer(request, "55", returnDesc="incorrect PIN"))))
    assert not reply.approved
    assert reply.return_code == "55"
    assert reply.body["returnDesc"] == "incorrect PIN"


async def test_unknown_fields_are_preserved() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"traceNo": BODY["traceNo"], "returnCode": "00", "futureField": {"nested": [1, "a"]}}
        return json_response(reply_envelope("cardRedemption", body, extra={"timestamp": "1483372334", "zz": "y"}))

    reply = await submit(make_client(handler))
    assert reply.body["futureField"] == {"nested": [1, "a"]}
    assert reply.envelope["timestamp"] == "1483372334"
    assert reply.envelope["zz"] == "y"
    assert reply.action == "cardRedemption"


async def test_amounts_stay_decimal_both_ways() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(jsonio.dumps(request_body(request)))
        return answer(request, paidAmount=Decimal("40.8"), balance=Decimal("1000.00"))

    reply = await submit(make_client(handler))
    assert '"totalAmount":40.8' in seen[0]
    assert reply.body["paidAmount"] == Decimal("40.8")
    assert isinstance(reply.body["paidAmount"], Decimal)
    assert '"paidAmount":40.8' in jsonio.dumps(reply.body)
    assert '"balance":1000.00' in jsonio.dumps(reply.body)


async def test_request_shape_url_and_signature() -> None:
    script = Script(answer)
    await submit(make_client(script))
    request = script.requests[0]
    assert str(request.url) == f"{BASE_URL}/cardRedemption"
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    envelope = jsonio.loads(request.content)
    assert list(envelope) == ["action", "deviceNo", "shopNo", "brand", "body", "sign"]
    assert (envelope["action"], envelope["deviceNo"], envelope["shopNo"], envelope["brand"]) == (
        "cardRedemption",
        "POS01",
        "CN123456",
        "663",
    )
    assert signing.verify(envelope, KEY)
    assert request_body(request) == BODY


async def test_signing_options_follow_settings() -> None:
    settings = FAST.model_copy(update={"signing": FAST.signing.model_copy(update={"truncate": 16})})
    script = Script(lambda request: json_response(reply_envelope_truncated(request)))
    await submit(make_client(script, settings=settings))
    assert len(jsonio.loads(script.requests[0].content)["sign"]) == 16


def reply_envelope_truncated(request: httpx.Request) -> dict[str, Any]:
    envelope = reply_envelope("cardRedemption", {"traceNo": BODY["traceNo"], "returnCode": "00"}, key=None)
    envelope["sign"] = signing.sign(envelope, KEY, truncate=16)
    return envelope


async def test_signing_disabled_sends_no_sign_and_accepts_unsigned_replies() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"traceNo": BODY["traceNo"], "returnCode": "00"}
        return json_response(reply_envelope("cardRedemption", body, key=None))

    script = Script(handler)
    reply = await submit(make_client(script, settings=unsigned()))
    assert reply.approved
    assert "sign" not in jsonio.loads(script.requests[0].content)


async def test_no_key_means_unsigned(log_lines: list[str]) -> None:
    script = Script(
        lambda request: json_response(
            reply_envelope("cardRedemption", {"traceNo": BODY["traceNo"], "returnCode": "00"}, key=None)
        )
    )
    await submit(make_client(script, key=None))
    assert "sign" not in jsonio.loads(script.requests[0].content)
    assert any("no signing key" in line for line in log_lines)


async def test_verify_responses_off_accepts_a_bad_sign() -> None:
    settings = FAST.model_copy(update={"signing": FAST.signing.model_copy(update={"verify_responses": False})})
    reply = await submit(make_client(Script(_envelope(lambda env: env.update(sign="bad"))), settings=settings))
    assert reply.approved


async def test_missing_trace_no_is_refused_before_sending() -> None:
    script = Script(answer)
    with pytest.raises(RequestError) as raised:
        await submit(make_client(script), {"totalAmount": 1})
    assert raised.value.return_code is ReturnCode.MISSING_FIELD
    assert script.attempts == 0


@pytest.mark.parametrize("action", ["", "card/../x", "inquiry?x=1", "1abc"])
async def test_invalid_action_is_refused_before_sending(action: str) -> None:
    script = Script(answer)
    client = make_client(script)
    try:
        with pytest.raises(RequestError) as raised:
            await client.submit(action, BODY)
    finally:
        await client.aclose()
    assert raised.value.return_code is ReturnCode.UNKNOWN_ACTION
    assert script.attempts == 0


@pytest.mark.parametrize("url", ["ftp://backend/api", "not a url", "//backend/api"])
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        BackendClient(BackendSettings(url=url), IdentitySettings(), SecretStr(KEY))


def test_unreadable_ca_bundle_is_a_config_error(tmp_path: Any) -> None:
    settings = BackendSettings(url=BASE_URL, ca_bundle=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="ca_bundle"):
        BackendClient(settings, IdentitySettings(), SecretStr(KEY))


async def test_one_log_line_per_call_without_the_body(log_lines: list[str]) -> None:
    body = {**BODY, "cardInfo": {"cardNo": "C0FFEE0123456789", "password": "DEADBEEF00112233"}}
    script = Script(answer)
    await submit(make_client(script), body)
    lines = [line for line in log_lines if "backend" in line]
    assert len(lines) == 1
    assert "cardRedemption" in lines[0]
    assert BODY["traceNo"] in lines[0]
    assert "returnCode=00" in lines[0]
    assert "ms" in lines[0]
    envelope_body = jsonio.loads(script.requests[0].content)["body"]
    for secret in ("C0FFEE0123456789", "DEADBEEF00112233", envelope_body[:40]):
        assert all(secret not in line for line in log_lines)


async def test_failures_log_one_warning(log_lines: list[str]) -> None:
    with pytest.raises(BackendOutcomeUnknown):
        await submit(make_client(Script(_status(500))))
    lines = [line for line in log_lines if "backend" in line]
    assert len(lines) == 1
    assert "UNKNOWN" in lines[0]
    assert "HTTP 500" in lines[0]
