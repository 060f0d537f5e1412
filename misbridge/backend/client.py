"""The e-Buy backend client: POST the signed envelope, classify what came back.

This is the only module that catches ``httpx`` errors; each one leaves as a
:class:`~misbridge.errors.BackendError`. The classification is money safety
(docs/backend.md, "Errors"):

* **NOT SENT** (:data:`~misbridge.backend.retry.NOT_SENT`): the request never left this
  host. It is retried within the deadline; if it never gets through,
  :class:`~misbridge.errors.BackendNotSent`.
* **UNKNOWN**: anything that happens once the request may have been written: read or write
  timeout, reset, the overall deadline, a non-200 status, a reply that is not JSON, lacks an
  envelope field, has an undecodable body, a missing or wrong signature, another ``traceNo``
  or another action. :class:`~misbridge.errors.BackendOutcomeUnknown`, never retried.
* A definite, well-signed reply is a :class:`BackendReply`, approval or decline alike.

Every attempt also updates the client's :class:`~misbridge.backend.reachability.Reachability`
(is the host answering at all?), and :meth:`BackendClient.probe` asks the host cheaply without
sending a transaction (docs/backend.md, "Is the backend reachable?").
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from loguru import logger
from pydantic import SecretStr

from misbridge.backend.reachability import Reachability
from misbridge.backend.retry import NOT_SENT, SUBMIT_RETRY, RetryPolicy, call_retrying_not_sent
from misbridge.config.secrets import TLS_CLIENT_KEY_CREDENTIAL, secret_path
from misbridge.config.settings import BackendSettings, IdentitySettings
from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import ENVELOPE_FIELDS, Envelope, decode_body, envelope_dict
from misbridge.errors import (
    BackendNotSent,
    BackendOutcomeUnknown,
    ConfigError,
    RequestError,
    ReturnCode,
)
from misbridge.host.crashpoints import crash_point

#: The returnCode of an approved transaction (book §9: "00 represent successful transaction").
APPROVED_CODE = "00"
#: What an action name may look like; it becomes the last URL path segment.
_ACTION = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


@dataclass(frozen=True)
class BackendReply:
    """A definite backend answer: the reply passed every check of :meth:`BackendClient.submit`.

    Attributes:
        action: the envelope's action (equal to the request's).
        body: the decoded reply body; amounts are Decimal; unknown fields kept as received.
        envelope: the reply envelope as received (``body`` still Base64, ``sign`` and any
            extra fields included).
    """

    action: str
    body: dict[str, Any]
    envelope: dict[str, Any]

    @property
    def return_code(self) -> str:
        """The body's ``returnCode`` ("00" = success)."""
        return str(self.body["returnCode"])

    @property
    def approved(self) -> bool:
        """True only for returnCode "00"; anything else is a definite decline."""
        return self.return_code == APPROVED_CODE


class BackendClient:
    """Sends e-Buy actions to the backend as signed envelopes over HTTP(S).

    Args:
        settings: URL, timeouts, TLS bundle and signing options.
        identity: deviceNo, shopNo and brand for the envelope.
        signing_key: the shared signing key; requests are signed and replies verified only
            when ``settings.signing.enabled`` and a key is given.
        transport: an httpx transport to use instead of the network (tests).
        retry_policy: how NOT SENT requests are retried.
        on_attempt: told ``(action, attempt number)`` before each attempt of :meth:`submit`
            (metrics); never by :meth:`probe`.

    Raises:
        ConfigError: the URL or probe URL is not an http(s) URL, or the CA bundle cannot be loaded.
    """

    def __init__(
        self,
        settings: BackendSettings,
        identity: IdentitySettings,
        signing_key: SecretStr | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_policy: RetryPolicy = SUBMIT_RETRY,
        on_attempt: Callable[[str, int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_attempt = on_attempt
        self._identity = identity
        self._key = signing_key.get_secret_value() if signing_key and settings.signing.enabled else None
        self._retry_policy = retry_policy
        self._base_url = _checked_base_url(settings.url)
        self._probe_url = _checked_url(settings.probe_url, "probe_url") if settings.probe_url else self._base_url
        self._reach = Reachability()
        if settings.signing.enabled and self._key is None:
            logger.warning("backend signing is enabled but no signing key is configured: requests go unsigned")
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_s,
                read=settings.read_timeout_s,
                write=settings.read_timeout_s,
                pool=settings.connect_timeout_s,
            ),
            verify=self._tls_context(settings, transport),
            transport=transport,
            follow_redirects=False,
            event_hooks={"response": [self._heard_back, _after_write]},
        )

    @staticmethod
    def _tls_context(settings: BackendSettings, transport: httpx.AsyncBaseTransport | None) -> ssl.SSLContext | bool:
        if transport is not None:
            return True  # a transport brings its own TLS
        plain_http = urlsplit(settings.url).scheme == "http"
        if plain_http and settings.ca_bundle is None and settings.client_cert is None:
            # Plain HTTP never uses it, but httpx builds one anyway (loading a CA bundle costs
            # ~30 ms of start-up): hand it one that trusts nothing, so it fails closed if ever used.
            return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return _tls_context(settings)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def known_down(self) -> bool:
        """The backend is known to be down: the last attempt could not connect (NOT SENT:
        refused, connect timeout, TLS handshake failed) and no call or probe got an answer since.

        A call that connected but got no answer (an UNKNOWN read timeout or reset) does not make
        it down; a call or probe cut off by a deadline or cancelled changes nothing.
        """
        return self._reach.down

    @property
    def last_error(self) -> str | None:
        """A short text of the most recent failed call or probe (never a body or a key), or None."""
        return self._reach.last_error

    def last_ok_age_s(self) -> float | None:
        """Seconds (monotonic) since the backend last sent any HTTP response, or None if never.

        Any response counts, a non-200 status or an unsigned reply included: the host answered.
        """
        return self._reach.last_ok_age_s()

    async def probe(self, timeout_s: float = 1.0) -> bool:
        """Whether the backend host answers at all: a HEAD of ``backend.probe_url`` (default ``url``).

        Any HTTP response, whatever its status, means reachable (and clears :attr:`known_down`).
        A connect or TLS error, or no response within ``timeout_s`` (connect, send and read
        together), means not reachable; :attr:`known_down` is left as it was. The probe is no
        transaction attempt (``on_attempt`` is not told) and never raises for network errors.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self._http.head(self._probe_url, timeout=httpx.Timeout(timeout_s))
        except TimeoutError:
            self._reach.failed(f"probe: no answer within {timeout_s:g}s")
            return False
        except (httpx.HTTPError, OSError) as err:
            self._reach.failed(f"probe: {type(err).__name__}")
            return False
        return True

    async def _heard_back(self, response: httpx.Response) -> None:
        # Reply headers are in: whatever the status or content, the host is up.
        self._reach.answered()

    async def submit(
        self, action: str, body: Mapping[str, Any], *, signing_key: SecretStr | None = None
    ) -> BackendReply:
        """Send one action and return the backend's definite reply.

        Args:
            action: the e-Buy action (``cardRedemption``, ``inquiry``, ``voidCardSale``...).
            body: the action's request body; it must hold a string ``traceNo``.
            signing_key: sign the request and verify the reply with this key instead of the
                shared signing key (DownloadKey is signed with the rootKey, book §7.2).

        Raises:
            RequestError: ``action`` is not a plain name or ``body`` has no string ``traceNo``
                (nothing was sent).
            BackendNotSent: the request never reached the backend; nothing happened there.
            BackendOutcomeUnknown: the backend may have processed the request; do not
                re-submit, resolve it by inquiry (and void).
        """
        _check_action(action)
        trace_no = _trace_no(body)
        key = signing_key.get_secret_value() if signing_key is not None else self._key
        payload = self._request_envelope(action, body, key)
        started = time.monotonic()
        attempts = 0

        def count(attempt: int) -> None:
            nonlocal attempts
            attempts = attempt
            if self._on_attempt is not None:
                self._on_attempt(action, attempt)

        try:
            response = await self._post(action, payload, count)
            reply = self._check_reply(action, trace_no, response, key)
        except (BackendNotSent, BackendOutcomeUnknown) as err:
            self._reach.failed(f"{action} {_outcome(err)}: {err}")
            _log_failure(action, trace_no, err, attempts, started)
            raise
        logger.info(
            "backend {} traceNo={} returnCode={} attempts={} {}ms",
            action,
            trace_no,
            reply.return_code,
            attempts,
            _ms_since(started),
        )
        return reply

    def _request_envelope(self, action: str, body: Mapping[str, Any], key: str | None) -> bytes:
        identity = self._identity
        fields = envelope_dict(Envelope(action, identity.device_no, identity.shop_no, identity.brand, dict(body)))
        if key is not None:
            fields[signing.SIGN_FIELD] = signing.sign(
                fields,
                key,
                include_body=self._settings.signing.include_body,
                truncate=self._settings.signing.truncate,
            )
        return jsonio.dumps(fields).encode("utf-8")

    async def _post(self, action: str, payload: bytes, on_attempt: Callable[[int], None]) -> httpx.Response:
        settings = self._settings
        url = f"{self._base_url}/{action}"

        async def attempt() -> httpx.Response:
            try:
                return await self._http.post(url, content=payload, headers={"Content-Type": "application/json"})
            except NOT_SENT:
                self._reach.not_connected()
                raise
            except (httpx.HTTPError, OSError):
                # After the connect (pooled or new): the host took the connection, it is not down.
                self._reach.connected_without_answer()
                raise

        try:
            async with asyncio.timeout(settings.request_deadline_s):
                return await call_retrying_not_sent(
                    self._retry_policy,
                    attempt,
                    deadline_s=settings.request_deadline_s,
                    connect_timeout_s=settings.connect_timeout_s,
                    read_timeout_s=settings.read_timeout_s,
                    on_attempt=on_attempt,
                )
        except NOT_SENT as err:
            raise BackendNotSent(f"backend not reached ({type(err).__name__}); nothing was sent") from err
        except TimeoutError as err:
            raise BackendOutcomeUnknown(f"no reply within the {settings.request_deadline_s}s request deadline") from err
        except (httpx.HTTPError, OSError) as err:
            raise BackendOutcomeUnknown(f"{type(err).__name__} after the request may have been written") from err

    def _check_reply(self, action: str, trace_no: str, response: httpx.Response, key: str | None) -> BackendReply:
        if response.status_code != httpx.codes.OK:
            raise BackendOutcomeUnknown(f"backend answered HTTP {response.status_code}")
        envelope = _reply_envelope(response.content)
        self._check_signature(envelope, key)
        if envelope["action"] != action:
            raise BackendOutcomeUnknown(f"reply is for action {envelope['action']!r}, not {action!r}")
        try:
            body = decode_body(envelope["body"])
        except RequestError as err:
            raise BackendOutcomeUnknown("reply body is not Base64 of UTF-8 JSON") from err
        if body.get("traceNo") != trace_no:
            raise BackendOutcomeUnknown("reply traceNo does not match the request traceNo")
        if not isinstance(body.get("returnCode"), str):
            raise BackendOutcomeUnknown("reply body has no returnCode string")
        return BackendReply(action=action, body=body, envelope=envelope)

    def _check_signature(self, envelope: Mapping[str, Any], key: str | None) -> None:
        options = self._settings.signing
        if key is None or not options.verify_responses:
            return
        if signing.SIGN_FIELD not in envelope:
            raise BackendOutcomeUnknown("reply has no signature")
        if not signing.verify(envelope, key, include_body=options.include_body, truncate=options.truncate):
            raise BackendOutcomeUnknown("reply signature does not verify")


async def _after_write(response: httpx.Response) -> None:
    # Reply headers are in: the request was written and the backend acted on it. A crash here
    # is the "approved but the answer was lost" case the crash harness must survive. A probe
    # (HEAD) submits nothing, so it has no crash point.
    if response.request.method != "POST":
        return
    crash_point(f"backend.{response.request.url.path.rsplit('/', 1)[-1]}.after_write")


def check_backend_settings(settings: BackendSettings) -> None:
    """What :class:`BackendClient` checks of ``settings`` when it is built, without building one.

    For the configuration check both ``misbridge serve`` and ``misbridge check-config`` run; it
    loads the CA bundle and the client certificate and key, and connects to nothing.

    Raises:
        ConfigError: the URL or probe URL is not an http(s) URL, or the TLS files cannot be loaded.
    """
    _checked_base_url(settings.url)
    if settings.probe_url:
        _checked_url(settings.probe_url, "probe_url")
    BackendClient._tls_context(settings, None)


def _checked_base_url(url: str) -> str:
    return _checked_url(url, "url").rstrip("/")


def _checked_url(url: str, setting: str) -> str:
    try:
        scheme = httpx.URL(url).scheme
    except httpx.InvalidURL as err:
        raise ConfigError(f"backend {setting} {url!r} is not a valid URL: {err}") from err
    if scheme not in ("http", "https"):
        raise ConfigError(f"backend {setting} {url!r} must be http:// or https://")
    return url


def _tls_context(settings: BackendSettings) -> ssl.SSLContext:
    cafile = str(settings.ca_bundle) if settings.ca_bundle is not None else None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"backend ca_bundle {cafile!r} cannot be loaded: {err}") from err
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert is not None:
        key = secret_path(TLS_CLIENT_KEY_CREDENTIAL, settings.client_key_file)
        try:
            context.load_cert_chain(str(settings.client_cert), str(key) if key else None)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"backend client_cert {str(settings.client_cert)!r} (key {str(key) if key else 'in the same file'!r}) "
                f"cannot be loaded: {err}"
            ) from err
    return context


def _check_action(action: str) -> None:
    if not _ACTION.fullmatch(action):
        raise RequestError(f"invalid backend action {action!r}", return_code=ReturnCode.UNKNOWN_ACTION, field="action")


def _trace_no(body: Mapping[str, Any]) -> str:
    trace_no = body.get("traceNo")
    if not isinstance(trace_no, str) or not trace_no:
        raise RequestError(
            "backend request body needs a traceNo string", return_code=ReturnCode.MISSING_FIELD, field="traceNo"
        )
    return trace_no


def _reply_envelope(content: bytes) -> dict[str, Any]:
    try:
        value = jsonio.loads(content)
    except (jsonio.JSONDecodeError, UnicodeError) as err:
        raise BackendOutcomeUnknown("reply is not JSON") from err
    if not isinstance(value, dict):
        raise BackendOutcomeUnknown("reply is not a JSON object")
    for name in ENVELOPE_FIELDS:
        if not isinstance(value.get(name), str):
            raise BackendOutcomeUnknown(f"reply envelope field {name!r} is missing or not a string")
    return value


def _outcome(err: Exception) -> str:
    return "NOT SENT" if isinstance(err, BackendNotSent) else "UNKNOWN"


def _log_failure(action: str, trace_no: str, err: Exception, attempts: int, started: float) -> None:
    logger.warning(
        "backend {} traceNo={} {}: {} attempts={} {}ms",
        action,
        trace_no,
        _outcome(err),
        err,
        attempts,
        _ms_since(started),
    )


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
