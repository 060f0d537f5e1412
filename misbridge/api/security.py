"""The HTTP door's defences against browsers and other local users (reliability requirement R17).

A web page the cashier (or anyone on the POS machine) opens can make the browser send requests
to ``127.0.0.1``. The browser cannot read the answers without CORS headers, but a POST still
arrives, and a POST here can start a card transaction. So every request passes, in this order:

1. **Host** must be a name of this service: ``127.0.0.1:<port>``, ``localhost:<port>``,
   ``[::1]:<port>``, ``api.host:<port>`` or an ``api.allowed_hosts`` entry; anything else is
   ``421 Misdirected Request``. This defeats DNS rebinding (a page on ``evil.example`` whose
   name is re-pointed at 127.0.0.1 sends ``Host: evil.example:9101``; cf. CVE-2018-5702).
2. **Origin**: browsers add it to every cross-origin request and to every POST. A request that
   carries one is refused with ``403`` unless the origin is in ``api.allowed_origins``. A
   request with ``Sec-Fetch-Site: cross-site`` or ``same-site`` (a browser sub-resource load,
   which may omit Origin) is refused the same way. The cashier POS is not a browser.
3. **Bearer token** (when one is configured, which the systemd unit always does): every request
   except ``GET /health`` and ``GET /metrics`` needs ``Authorization: Bearer <token>``, compared
   in constant time; otherwise ``401``. This is what keeps out other local *programs*.
4. Then the route: ``POST`` needs ``Content-Type: application/json`` (``415``, MB01), which a
   browser cannot send cross-origin without a CORS preflight, and the preflight is refused by 2.

No response ever carries an ``Access-Control-*`` header: they are stripped on the way out even
if a route added one. Refusals answer in the book's response shape like every other answer of
the door, with MB71 (421), MB72 (403) or MB73 (401, with ``WWW-Authenticate``) (docs/pos-api.md).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from misbridge.api.http_guards import book_answer
from misbridge.config.settings import ApiSettings
from misbridge.errors import ConfigError, ReturnCode

#: Paths a GET may reach without the bearer token: liveness probes and the Prometheus scraper.
OPEN_PATHS: frozenset[str] = frozenset({"/health", "/metrics"})
#: Names every TCP door answers to, on its own port.
LOCAL_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
#: Names a Unix-socket door answers to (curl --unix-socket sends "localhost"; no port).
UNIX_SOCKET_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]", "misbridge")
#: Sec-Fetch-Site values that mean "a page of another site or origin made the browser send this".
_FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
#: The port a browser leaves out of ``Host`` for ``http://``.
_HTTP_DEFAULT_PORT = 80
#: What a 401 tells the client to send (RFC 6750).
_CHALLENGE = 'Bearer realm="misbridge"'


@dataclass(frozen=True)
class ApiSecurity:
    """What the HTTP door accepts. The default (no token, no extra names) is what tests use.

    Attributes:
        allowed_hosts: extra ``Host`` values, ``name`` (on the door's port) or ``name:port``.
        allowed_origins: browser origins allowed to call the door (exact ``scheme://host[:port]``).
        token: the bearer token, or None for no token check.
        open_paths: paths a ``GET``/``HEAD`` reaches without the token.
    """

    allowed_hosts: frozenset[str] = frozenset()
    allowed_origins: frozenset[str] = frozenset()
    token: SecretStr | None = field(default=None, repr=False)
    open_paths: frozenset[str] = OPEN_PATHS

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.get_secret_value().strip():
            raise ConfigError("the POS API token is empty: put a random token in the api-token credential")

    @classmethod
    def from_settings(cls, api: ApiSettings, token: SecretStr | None) -> ApiSecurity:
        """The rules for ``api`` with ``token`` (from ``secrets.load_secret(API_TOKEN_CREDENTIAL, ...)``).

        Raises:
            ConfigError: the token is empty, or an allowed origin is not ``scheme://host[:port]``.
        """
        hosts = {_normalise_host(h) for h in api.allowed_hosts}
        if api.host not in ("127.0.0.1", "localhost", "::1"):
            hosts.add(_bracketed(api.host))
        origins = set()
        for origin in api.allowed_origins:
            scheme, sep, rest = origin.partition("://")
            if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
                raise ConfigError(f"api.allowed_origins: {origin!r} is not scheme://host[:port]")
            origins.add(origin.lower())
        return cls(allowed_hosts=frozenset(hosts), allowed_origins=frozenset(origins), token=token)

    def host_allowed(self, host_header: str | None, port: int | None) -> bool:
        """Whether ``host_header`` names this door (``port`` None: a Unix socket, any port)."""
        if not host_header:
            return False
        name, sent_port = split_host(host_header)
        if port is None:
            return name in {split_host(n)[0] for n in (*UNIX_SOCKET_NAMES, *self.allowed_hosts)}
        wanted = (name, _HTTP_DEFAULT_PORT if sent_port is None else sent_port)
        return wanted in {(n, port) for n in LOCAL_NAMES} or wanted in self._extra_pairs(port)

    def _extra_pairs(self, port: int) -> set[tuple[str, int]]:
        """``allowed_hosts`` as (name, port): a name without a port is allowed on the door's port."""
        pairs = set()
        for entry in self.allowed_hosts:
            name, fixed = split_host(entry)
            pairs.add((name, port if fixed is None else fixed))
        return pairs

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page of ``origin`` may call the door."""
        return origin.strip().lower() in self.allowed_origins

    def token_ok(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token (always True without a token)."""
        if self.token is None:
            return True
        scheme, _, presented = (authorization or "").strip().partition(" ")
        expected = self.token.get_secret_value().encode("utf-8")
        # compare_digest of equal-length inputs takes the same time whatever the bytes; hashing first
        # would also hide the length, but the length of a random token is not a secret.
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode("utf-8"), expected)


def _bracketed(name: str) -> str:
    try:
        return f"[{name}]" if ipaddress.ip_address(name).version == 6 else name.lower()
    except ValueError:
        return name.lower()


def _normalise_host(value: str) -> str:
    return value.strip().lower()


def split_host(value: str) -> tuple[str, int | None]:
    """``Host`` header text as (lower-case name without a trailing dot, port or None).

    ``[::1]:9101`` -> ``("[::1]", 9101)``; ``localhost.`` -> ``("localhost", None)``; a port
    that is not a number is kept in the name, so it matches nothing.
    """
    text = value.strip().lower()
    if text.startswith("[") and "]" in text:
        name, _, rest = text.partition("]")
        name += "]"
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            return text, None
    else:
        name, sep, port_text = text.rpartition(":")
        if not sep:
            name, port_text = text, None
    if port_text is not None and not (port_text.isascii() and port_text.isdigit()):
        return text, None
    return name.rstrip("."), None if port_text is None else int(port_text)


class SecurityMiddleware:
    """Pure ASGI middleware applying :class:`ApiSecurity` and stripping any CORS header."""

    def __init__(self, app: ASGIApp, security: ApiSecurity, on_refusal: Callable[[int], None] | None = None) -> None:
        self._app = app
        self._security = security
        self._on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off and websockets are not served; refuse anything else
            if scope["type"] == "lifespan":
                await self._app(scope, receive, send)
            return
        refusal = self._check(scope)
        if refusal is not None:
            code, message, headers = refusal
            logger.bind(status=code.http_status, method=scope["method"], path=scope["path"][:200]).warning(
                "HTTP request refused: {} {}", code.code, message
            )
            if self._on_refusal is not None:
                self._on_refusal(code.http_status)
            await book_answer(code, message, headers=headers)(scope, receive, send)
            return
        await self._app(scope, receive, _without_cors(send))

    def _check(self, scope: Scope) -> tuple[ReturnCode, str, dict[str, str] | None] | None:
        headers = Headers(scope=scope)
        server = scope.get("server")
        port = server[1] if server else None
        if not self._security.host_allowed(headers.get("host"), port):
            return ReturnCode.HOST_REFUSED, "misdirected request: the Host header does not name this service", None
        origin = headers.get("origin")
        if origin is not None:
            if not self._security.origin_allowed(origin):
                return ReturnCode.ORIGIN_REFUSED, "requests from web pages are refused (Origin not allowed)", None
        elif headers.get("sec-fetch-site", "").lower() in _FOREIGN_FETCH_SITES:
            return ReturnCode.ORIGIN_REFUSED, "requests from web pages are refused (cross-site)", None
        exempt = scope["method"] in _SAFE_METHODS and scope["path"] in self._security.open_paths
        if not exempt and not self._security.token_ok(headers.get("authorization")):
            return ReturnCode.TOKEN_REFUSED, "missing or wrong bearer token", {"WWW-Authenticate": _CHALLENGE}
        return None


def _without_cors(send: Send) -> Send:
    async def send_stripped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if not name.lower().startswith(b"access-control-")
                ],
            }
        await send(message)

    return send_stripped
