"""DownloadKey and sign-in over httpx.MockTransport: signatures, key fields, declines, malformed keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from misbridge.backend import BackendClient
from misbridge.backend.keys import download_key, is_key_expired, sign_in
from misbridge.config.settings import BackendSettings, IdentitySettings, KeySettings, SigningSettings
from misbridge.ebuy import jsonio, signing
from misbridge.errors import BackendOutcomeUnknown, KeyExchangeError, ReturnCode
from tests.unit.backend.test_backend_client import BASE_URL, json_response, reply_envelope, request_body

KEY = "unit-test-signing-key"
ROOT = "31" * 16
ENC = "E51D9047310F731798CF74AF483931B3"
SETTINGS = BackendSettings(url=BASE_URL, signing=SigningSettings(key_file=None))
KEYS = KeySettings()


def client(handler: Any) -> BackendClient:
    return BackendClient(SETTINGS, IdentitySettings(), SecretStr(KEY), transport=httpx.MockTransport(handler))


def answering(fields: Mapping[str, Any], *, reply_key: str, code: str = "00") -> Any:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        action = request.url.path.rsplit("/", 1)[-1]
        body = {"traceNo": request_body(request)["traceNo"], "returnCode": code, "returnDesc": "d", **fields}
        return json_response(reply_envelope(action, body, key=reply_key))

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


async def test_download_key_is_signed_with_the_root_key_and_returns_mwtmk_with_a_6_hex_kcv() -> None:
    handler = answering({"mwTmk": ENC.lower(), "mwTmkKcv": "712C8C734B2E669E"}, reply_key=ROOT)
    backend = client(handler)
    wrapped = await download_key(backend, KEYS, SecretStr(ROOT), "T1")
    assert (wrapped.name, wrapped.enc_key_hex, wrapped.kcv_hex) == ("mwTmk", ENC, "712C8C")
    assert ENC not in repr(wrapped)
    sent = jsonio.loads(handler.seen[0].content)
    assert handler.seen[0].url.path.endswith("/DownloadKey")
    assert signing.verify(sent, ROOT)
    assert not signing.verify(sent, KEY)
    await backend.aclose()


async def test_a_download_key_reply_not_signed_with_the_root_key_is_unknown() -> None:
    backend = client(answering({"mwTmk": ENC, "mwTmkKcv": "712C8C"}, reply_key=KEY))
    with pytest.raises(BackendOutcomeUnknown, match="signature"):
        await download_key(backend, KEYS, SecretStr(ROOT), "T1")
    await backend.aclose()


async def test_sign_in_uses_the_shared_key_and_the_configured_names() -> None:
    keys = KeySettings(sign_in_action="logon", pin_key_field="pik", pin_key_kcv_field="pikCheck")
    handler = answering({"pik": ENC, "pikCheck": "8D0A74B8", "keyVersion": "20240102"}, reply_key=KEY)
    backend = client(handler)
    wrapped = await sign_in(backend, keys, "T2")
    assert (wrapped.name, wrapped.kcv_hex, wrapped.reply["keyVersion"]) == ("pinKey", "8D0A74", "20240102")
    assert handler.seen[0].url.path.endswith("/logon")
    assert request_body(handler.seen[0]) == {"traceNo": "T2"}
    await backend.aclose()


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"pinKeyKcv": "8D0A74"}, "pinKey is not 32 hex"),
        ({"pinKey": ENC[:16], "pinKeyKcv": "8D0A74"}, "pinKey is not 32 hex"),
        ({"pinKey": ENC + "00", "pinKeyKcv": "8D0A74"}, "pinKey is not 32 hex"),
        ({"pinKey": "X" * 32, "pinKeyKcv": "8D0A74"}, "pinKey is not 32 hex"),
        ({"pinKey": ENC}, "pinKeyKcv is not a key check value"),
        ({"pinKey": ENC, "pinKeyKcv": "8D0A"}, "pinKeyKcv is not a key check value"),
        ({"pinKey": ENC, "pinKeyKcv": "8D0A74B"}, "pinKeyKcv is not a key check value"),
    ],
)
async def test_a_malformed_key_is_refused_without_quoting_it(fields: dict[str, Any], match: str) -> None:
    backend = client(answering(fields, reply_key=KEY))
    with pytest.raises(KeyExchangeError, match=match) as caught:
        await sign_in(backend, KEYS, "T3")
    assert ENC not in str(caught.value)
    assert ENC[:16] not in str(caught.value)
    assert caught.value.return_code is ReturnCode.KEYS_NOT_READY
    await backend.aclose()


async def test_a_declined_sign_in_names_the_backend_code() -> None:
    backend = client(answering({}, reply_key=KEY, code="96"))
    with pytest.raises(KeyExchangeError) as caught:
        await sign_in(backend, KEYS, "T4")
    assert caught.value.backend_code == "96"
    await backend.aclose()


def test_key_expired_codes_are_configurable() -> None:
    assert is_key_expired("A0", KEYS)
    assert not is_key_expired("55", KEYS)
    assert is_key_expired("99", KeySettings(key_expired_codes=["99"]))
