"""The HTTP door's rules (R17): Host 421 MB71, Origin 403 MB72, bearer token 401 MB73, JSON only 415, no CORS.

The app runs in-process (httpx.ASGITransport: the scope's ``server`` is the URL's host and port)
and, for the Unix-socket variant, on a real socket bound by ``bind_unix_socket``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from misbridge.api.http_app import create_app
from misbridge.api.security import ApiSecurity, SecurityMiddleware, split_host
from misbridge.api.unix_socket import bind_unix_socket
from misbridge.config.settings import ApiSettings
from misbridge.errors import ConfigError
from misbridge.host.asgi import AsgiServer

PORT = 9101
BASE = f"http://127.0.0.1:{PORT}"
TOKEN = "s3cret-token-for-tests"
JSON = {"content-type": "application/json"}
SALE = b'{"traceNo":"T1","totalAmount":1,"undiscountAmount":0,"goodsDetail":[]}'


class FakeService:
    """Records what reaches the service; answers like an approval."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, dict[str, Any]]] = []

    async def handle(
        self, action: str, body: dict[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]:
        self.handled.append((action, body))
        return {
            "traceNo": body.get("traceNo", ""),
            "orderNo": "1",
            "transDate": "20260101000000",
            "returnCode": "00",
            "returnDesc": "ok",
            "paidAmount": 1,
        }

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        return {"traceNo": trace_no, "state": "approved"}

    async def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ready"}


class FakeMetrics:
    def __init__(self) -> None:
        self.refused: list[int] = []

    async def render(self) -> tuple[bytes, str]:
        return b"misbridge_up 1\n", "text/plain; version=0.0.4; charset=utf-8"

    def api_refused(self, status: int) -> None:
        self.refused.append(status)


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def metrics() -> FakeMetrics:
    return FakeMetrics()


def _client(app: Any, base: str = BASE) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


@pytest.fixture
async def open_door(service: FakeService, metrics: FakeMetrics) -> AsyncIterator[httpx.AsyncClient]:
    """The door as tests and the bench run it: no token."""
    async with _client(create_app(service, metrics=metrics)) as client:
        yield client


@pytest.fixture
async def token_door(service: FakeService, metrics: FakeMetrics) -> AsyncIterator[httpx.AsyncClient]:
    """The door as the systemd unit runs it: with the api-token credential."""
    security = ApiSecurity.from_settings(ApiSettings(), SecretStr(TOKEN))
    async with _client(create_app(service, security, metrics=metrics)) as client:
        yield client


def _no_cors(response: httpx.Response) -> None:
    cors = [name for name in response.headers if name.lower().startswith("access-control-")]
    assert cors == [], f"CORS headers sent: {cors}"


# --- Host ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}", f"LOCALHOST:{PORT}"])
async def test_local_names_on_the_door_port_are_accepted(open_door: httpx.AsyncClient, host: str) -> None:
    response = await open_door.get("/health", headers={"host": host})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "host",
    ["evil.example", f"evil.example:{PORT}", "127.0.0.1", "127.0.0.1:80", f"127.0.0.2:{PORT}", "localhost:9100",
     f"localhost.evil.example:{PORT}", f"127.0.0.1.nip.io:{PORT}", ""],
)  # fmt: skip
async def test_any_other_host_is_421_and_reaches_nothing(
    open_door: httpx.AsyncClient, service: FakeService, metrics: FakeMetrics, host: str
) -> None:
    for response in (
        await open_door.get("/health", headers={"host": host}),
        await open_door.post("/v1/cardRedemption", content=SALE, headers={**JSON, "host": host}),
    ):
        assert response.status_code == 421
        assert response.json()["returnCode"] == "MB71"
        assert response.json()["returnDesc"] == "misdirected request: the Host header does not name this service"
        _no_cors(response)
    assert service.handled == []
    assert metrics.refused == [421, 421]


async def test_allowed_hosts_and_the_listen_address_are_accepted(service: FakeService) -> None:
    api = ApiSettings(host="10.0.0.5", allow_non_loopback=True, allowed_hosts=["pos-gw.store.lan", "alias:8080"])
    app = create_app(service, ApiSecurity.from_settings(api, None))
    async with _client(app) as client:
        for host, status in [(f"pos-gw.store.lan:{PORT}", 200), (f"POS-GW.store.lan.:{PORT}", 200),
                             ("alias:8080", 200), (f"alias:{PORT}", 421), (f"10.0.0.5:{PORT}", 200),
                             ("pos-gw.store.lan:1", 421)]:  # fmt: skip
            assert (await client.get("/health", headers={"host": host})).status_code == status, host


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9101", ("127.0.0.1", 9101)), ("LocalHost.:9101", ("localhost", 9101)),
     ("localhost", ("localhost", None)), ("[::1]:9101", ("[::1]", 9101)), ("[::1]", ("[::1]", None)),
     ("[::1]x", ("[::1]x", None)), ("host:port", ("host:port", None)), ("host:", ("host:", None)),
     ("host:٣", ("host:٣", None))],
)  # fmt: skip
def test_split_host(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host(text) == expected


async def test_default_port_80_may_be_left_out(service: FakeService) -> None:
    async with _client(create_app(service), "http://127.0.0.1") as client:
        assert (await client.get("/health", headers={"host": "localhost"})).status_code == 200
        assert (await client.get("/health", headers={"host": "evil.example"})).status_code == 421


# --- Origin, Sec-Fetch-Site, preflight, CORS ------------------------------------------------


@pytest.mark.parametrize(
    "origin", ["http://127.0.0.2:8001", "http://127.0.0.1:9101", "null", "https://evil.example", "file://"]
)
async def test_a_request_from_a_web_page_is_403(
    open_door: httpx.AsyncClient, service: FakeService, origin: str
) -> None:
    for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        response = await open_door.post(
            "/v1/cardRedemption", content=SALE, headers={"content-type": content_type, "origin": origin}
        )
        assert response.status_code == 403
        assert response.json()["returnCode"] == "MB72"
        assert "Origin" in response.json()["returnDesc"]
        _no_cors(response)
    assert (await open_door.get("/health", headers={"origin": origin})).status_code == 403
    assert service.handled == []


@pytest.mark.parametrize("site", ["cross-site", "same-site", "CROSS-SITE"])
async def test_a_browser_subresource_without_origin_is_403(open_door: httpx.AsyncClient, site: str) -> None:
    response = await open_door.get("/v1/transactions/T1", headers={"sec-fetch-site": site, "sec-fetch-mode": "no-cors"})
    assert response.status_code == 403


async def test_typing_the_url_in_a_browser_still_shows_health(open_door: httpx.AsyncClient) -> None:
    response = await open_door.get("/health", headers={"sec-fetch-site": "none", "sec-fetch-mode": "navigate"})
    assert response.status_code == 200


async def test_a_cors_preflight_is_refused_without_cors_headers(open_door: httpx.AsyncClient) -> None:
    preflight = await open_door.options(
        "/v1/cardRedemption",
        headers={"origin": "http://127.0.0.2:8001", "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"},
    )  # fmt: skip
    assert preflight.status_code == 403
    _no_cors(preflight)
    bare = await open_door.options("/v1/cardRedemption")
    assert bare.status_code == 405
    _no_cors(bare)


async def test_an_allow_listed_origin_passes_but_gets_no_cors_headers(service: FakeService) -> None:
    api = ApiSettings(allowed_origins=["http://pos-ui.local:3000"])
    async with _client(create_app(service, ApiSecurity.from_settings(api, None))) as client:
        response = await client.post(
            "/v1/cardRedemption", content=SALE, headers={**JSON, "origin": "http://POS-UI.local:3000"}
        )
        assert response.status_code == 200
        _no_cors(response)
        other = await client.post("/v1/cardRedemption", content=SALE, headers={**JSON, "origin": "http://x:3000"})
        assert other.status_code == 403
    assert len(service.handled) == 1


async def test_cors_headers_a_route_adds_are_stripped() -> None:
    async def leaky(_: Request) -> JSONResponse:
        return JSONResponse({}, headers={"Access-Control-Allow-Origin": "*", "X-Kept": "1"})

    app = SecurityMiddleware(Starlette(routes=[Route("/x", leaky)]), ApiSecurity())
    async with _client(app) as client:
        response = await client.get("/x")
    assert response.status_code == 200
    assert response.headers["x-kept"] == "1"
    _no_cors(response)


@pytest.mark.parametrize("origin", ["127.0.0.1:3000", "ftp://x", "http://x/path", "http://"])
def test_malformed_allowed_origins_are_a_config_error(origin: str) -> None:
    with pytest.raises(ConfigError, match="allowed_origins"):
        ApiSecurity.from_settings(ApiSettings(allowed_origins=[origin]), None)


# --- bearer token ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN]
)
async def test_without_the_right_token_every_transaction_request_is_401(
    token_door: httpx.AsyncClient, service: FakeService, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    for response in (
        await token_door.post("/v1/cardRedemption", content=SALE, headers={**JSON, **headers}),
        await token_door.get("/v1/transactions/T1", headers=headers),
        await token_door.get("/openapi.json", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="misbridge"'
        assert response.json()["returnCode"] == "MB73"
        assert response.json()["returnDesc"] == "missing or wrong bearer token"
    assert service.handled == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_right_token_passes(token_door: httpx.AsyncClient, service: FakeService, scheme: str) -> None:
    auth = {"authorization": f"{scheme} {TOKEN}"}
    assert (await token_door.post("/v1/cardRedemption", content=SALE, headers={**JSON, **auth})).status_code == 200
    assert (await token_door.get("/v1/transactions/T1", headers=auth)).status_code == 200
    assert len(service.handled) == 1


async def test_health_and_metrics_need_no_token(token_door: httpx.AsyncClient) -> None:
    assert (await token_door.get("/health")).status_code == 200
    metrics = await token_door.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert (await token_door.head("/health")).status_code in (200, 405)


async def test_open_paths_are_open_to_get_only(token_door: httpx.AsyncClient) -> None:
    assert (await token_door.post("/health", content=b"{}", headers=JSON)).status_code == 401


async def test_host_and_origin_are_checked_before_the_token(token_door: httpx.AsyncClient) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert (await token_door.get("/metrics", headers={"host": "evil.example:9101"})).status_code == 421
    assert (await token_door.get("/metrics", headers={"origin": "http://127.0.0.2"})).status_code == 403
    response = await token_door.post("/v1/cardRedemption", content=SALE, headers={**JSON, **auth, "origin": "null"})
    assert response.status_code == 403


@pytest.mark.parametrize("token", ["", "   ", "\n"])
def test_an_empty_token_is_a_config_error(token: str) -> None:
    with pytest.raises(ConfigError, match="empty"):
        ApiSecurity(token=SecretStr(token))


def test_the_token_never_shows_in_repr() -> None:
    security = ApiSecurity(token=SecretStr(TOKEN))
    assert TOKEN not in repr(security)
    assert TOKEN not in str(security)


# --- content type (kept from the walking skeleton) -------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_post_without_json_content_type_is_415_mb01(
    token_door: httpx.AsyncClient, service: FakeService, content_type: str | None
) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"} | ({} if content_type is None else {"content-type": content_type})
    response = await token_door.post("/v1/cardRedemption", content=SALE, headers=headers)
    assert response.status_code == 415
    assert response.json()["returnCode"] == "MB01"
    assert service.handled == []


async def test_without_a_metrics_source_there_is_no_metrics_route(service: FakeService) -> None:
    async with _client(create_app(service)) as client:
        assert (await client.get("/metrics")).status_code == 404


# --- the Unix-socket door --------------------------------------------------------------------


async def test_unix_socket_door_is_0660_and_checks_host_origin_and_token(tmp_path: Path, service: FakeService) -> None:
    path = tmp_path / "api.sock"
    path.touch()
    with pytest.raises(ConfigError, match="not a socket"):
        bind_unix_socket(path)
    path.unlink()
    security = ApiSecurity.from_settings(ApiSettings(), SecretStr(TOKEN))
    server = AsgiServer(create_app(service, security), sock=bind_unix_socket(path))
    await server.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/health", headers={"host": "evil.example"})).status_code == 421
            assert (await client.get("/health", headers={"origin": "http://127.0.0.2"})).status_code == 403
            assert (await client.post("/v1/cardRedemption", content=SALE, headers=JSON)).status_code == 401
            auth = {**JSON, "authorization": f"Bearer {TOKEN}"}
            assert (await client.post("/v1/cardRedemption", content=SALE, headers=auth)).status_code == 200
    finally:
        await server.stop()
    # A stale socket from a previous run is replaced.
    bind_unix_socket(path).close()


def test_unix_socket_unknown_group_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no group"):
        bind_unix_socket(tmp_path / "api.sock", group="no-such-group-misbridge")
