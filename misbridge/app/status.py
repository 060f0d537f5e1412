"""``misbridge status``: the running misbridge's ``/health``, read through its HTTP door, for a technician.

The command asks the daemon rather than looking at the pad or the journal itself: only the
daemon knows whether it signed in, which key the pad holds and when the backend last answered.
It reaches the door the way the configuration says (``api.host:api.http_port``, or the Unix
socket ``api.http_socket``) and prints one fact per line. Exit status: 0 ready, 1 not ready,
2 no usable answer (misbridge not running, not answering, or something else on that port).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx
from pydantic import SecretStr

from misbridge.config.secrets import API_TOKEN_CREDENTIAL, load_secret
from misbridge.config.settings import ApiSettings
from misbridge.errors import ConfigError

EXIT_READY: Final = 0
EXIT_NOT_READY: Final = 1
EXIT_UNREACHABLE: Final = 2
#: Where a technician looks next when misbridge does not answer at all.
SYSTEMD_HINT: Final = "systemctl status misbridge"
DEFAULT_TIMEOUT_S: Final = 5.0
#: The Host a Unix-socket door accepts (api/security.py UNIX_SOCKET_NAMES); what curl sends too.
_UNIX_BASE_URL: Final = "http://localhost"
_LABEL_WIDTH: Final = 12
#: Wildcard listen addresses are not places to connect to; their loopback is.
_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped away, not bound


@dataclass(frozen=True)
class HealthTarget:
    """Where the door is: an ``http://host:port`` base URL, or a Unix socket (then the URL is nominal)."""

    base_url: str
    socket: Path | None = None

    @property
    def name(self) -> str:
        """The door as a person would type it: ``http://127.0.0.1:9101`` or ``unix:/run/misbridge/api.sock``."""
        return f"unix:{self.socket}" if self.socket is not None else self.base_url

    @classmethod
    def from_settings(cls, api: ApiSettings) -> HealthTarget:
        """The door ``misbridge serve`` opens with these settings."""
        if api.http_socket is not None:
            return cls(_UNIX_BASE_URL, api.http_socket)
        host = _WILDCARDS.get(api.host, api.host)
        return cls(f"http://{_bracketed(host)}:{api.http_port}")

    @classmethod
    def parse(cls, url: str) -> HealthTarget:
        """``http://HOST:PORT`` (a trailing ``/health`` is dropped) or ``unix:/PATH``.

        Raises:
            ConfigError: anything else.
        """
        if url.startswith("unix:"):
            path = Path(url.removeprefix("unix:"))
            if not path.is_absolute():
                raise ConfigError(f"--url {url!r}: a Unix socket is given as unix:/absolute/path")
            return cls(_UNIX_BASE_URL, path)
        if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1].strip("/")) == 0:
            raise ConfigError(f"--url {url!r}: give http://HOST:PORT or unix:/PATH")
        return cls(url.rstrip("/").removesuffix("/health").rstrip("/"))


@dataclass(frozen=True)
class HealthAnswer:
    """What ``/health`` answered: the HTTP status, the text as received and its JSON object."""

    http_status: int
    text: str
    body: dict[str, Any]

    @property
    def ready(self) -> bool:
        """200 and ``"status": "ready"``: a 503, or a body that disagrees with its status, is not ready."""
        return self.http_status == 200 and self.body.get("status") == "ready"

    @property
    def exit_status(self) -> int:
        """0 ready, 1 not ready."""
        return EXIT_READY if self.ready else EXIT_NOT_READY


@dataclass(frozen=True)
class NoHealth:
    """No usable ``/health`` answer, in one line that names the door (exit status 2)."""

    message: str


def health_target(api: ApiSettings, url: str | None = None) -> HealthTarget:
    """``url`` when given (``--url``), else the door the settings name.

    Raises:
        ConfigError: ``url`` is neither ``http://HOST:PORT`` nor ``unix:/PATH``.
    """
    return HealthTarget.parse(url) if url else HealthTarget.from_settings(api)


def api_token(api: ApiSettings) -> SecretStr | None:
    """The door's bearer token if this user can read it, else None.

    ``/health`` needs no token, so a technician without access to the credential (it is
    root-only) still gets the answer: a token that cannot be read, or could not travel in a
    header, is simply not sent.
    """
    try:
        token = load_secret(API_TOKEN_CREDENTIAL, api.token_file)
    except (OSError, UnicodeDecodeError):
        return None
    return token if token is not None and token.get_secret_value().isascii() else None


def read_health(
    target: HealthTarget, token: SecretStr | None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> HealthAnswer | NoHealth:
    """GET ``/health`` from ``target``; every failure becomes a :class:`NoHealth` line, never an exception."""
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}
    transport = httpx.HTTPTransport(uds=str(target.socket)) if target.socket is not None else None
    where = target.name
    try:
        # trust_env=False: an http_proxy in the technician's shell must not carry a loopback
        # request off the machine (or to a proxy that answers in misbridge's place).
        with httpx.Client(transport=transport, timeout=timeout_s, trust_env=False) as client:
            response = client.get(f"{target.base_url}/health", headers=headers)
    except httpx.TimeoutException:
        return NoHealth(f"misbridge at {where} did not answer within {timeout_s:g} s; see {SYSTEMD_HINT}")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as err:
        return NoHealth(f"cannot reach misbridge at {where} ({_reason(err)}); is it running? see {SYSTEMD_HINT}")
    return _answer(where, response)


def _answer(where: str, response: httpx.Response) -> HealthAnswer | NoHealth:
    try:
        body = json.loads(response.text)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return NoHealth(
            f"{where} answered /health with HTTP {response.status_code}, not misbridge's JSON: "
            f"is something else listening there? see {SYSTEMD_HINT}"
        )
    if response.status_code not in (200, 503):
        # The door refused the request itself (the caller's user not allowed, a Host it rejects):
        # its body is the book's refusal, which says why.
        code, text = _clean(body.get("returnCode", "")), _clean(body.get("returnDesc", ""))
        return NoHealth(f"misbridge at {where} refused /health: HTTP {response.status_code} {code} {text}".rstrip())
    return HealthAnswer(response.status_code, response.text, body)


def _reason(err: BaseException) -> str:
    """The error's text (``[Errno 111] Connection refused``), else its causes', else its type's name."""
    while err.__cause__ is not None and not str(err):
        err = err.__cause__
    return _clean(str(err)) or type(err).__name__


# -- the technician's report ---------------------------------------------------------------------


def describe(target: HealthTarget, answer: HealthAnswer) -> str:
    """The report: the verdict, why (when not ready), then one fact per line.

    Fields a misbridge does not report (an older one, a test setup without a backend) are
    left out rather than shown as failures.
    """
    body = answer.body
    lines = [f"misbridge at {target.name}: {'READY' if answer.ready else 'NOT READY'}"]
    if not answer.ready:
        lines += ["why:", *(f"  - {reason}" for reason in _reasons(body))]
    lanes = _section(body, "lanes")
    if lanes:
        for name, lane in lanes.items():
            lane_body = lane if isinstance(lane, dict) else {}
            verdict = "ready" if lane_body.get("status") == "ready" else "NOT ready"
            device_no = f", deviceNo {_clean(lane_body['deviceNo'])}" if lane_body.get("deviceNo") else ""
            lines.append(f"lane {_clean(name)}{device_no}: {verdict}")
            lines += [f"  {line}" for line in _lane_facts(lane_body)]
    else:
        lines += _lane_facts(body)
    shared = [
        ("in flight", _count(body.get("inFlight"), "transaction", "transactions")),
        ("reversals", _reversals_line(_section(body, "reversals"))),
        ("reconcile", _reconcile_line(_section(body, "reconcile"))),
    ]
    lines += [f"{label:<{_LABEL_WIDTH}} {text}" for label, text in shared if text]
    alerts = body.get("alerts")
    if isinstance(alerts, list) and alerts:
        lines += ["alerts:", *(f"  - {_clean(alert)}" for alert in alerts)]
    return "\n".join(lines)


def _lane_facts(body: dict[str, Any]) -> list[str]:
    """One lane's pad, keys and backend lines (a one-lane misbridge's are its whole report's)."""
    pad = _section(body, "pad") or _section(body, "device")
    backend = _section(body, "backend")
    facts = [
        ("PIN pad", _pad_line(pad)),
        ("master key", _master_key_line(pad)),
        ("working key", _working_key_line(pad, backend)),
        ("signed in", _signed_in_line(backend)),
        ("backend", _backend_line(backend)),
    ]
    return [f"{label:<{_LABEL_WIDTH}} {text}" for label, text in facts if text]


def _reasons(body: dict[str, Any]) -> list[str]:
    """The daemon's own reasons; for a misbridge that gives none, what its fields imply."""
    reasons = body.get("reasons")
    if isinstance(reasons, list) and reasons:
        return [_clean(reason) for reason in reasons]
    implied = []
    if (_section(body, "pad") or _section(body, "device")).get("connected") is False:
        implied.append("the PIN pad is not connected")
    if body.get("accepting") is False:
        implied.append("misbridge is not accepting transactions (shutting down)")
    if body.get("recovering") is True:
        implied.append("misbridge is finishing interrupted transactions")
    return implied or [f"status {_clean(body.get('status', 'missing'))!r}"]


def _pad_line(pad: dict[str, Any]) -> str | None:
    if "connected" not in pad:
        return None
    if pad["connected"] is not True:
        return "NOT connected"
    identity = [_clean(pad[key]) for key in ("model", "firmware") if pad.get(key)]
    if pad.get("serialNo"):
        identity.append(f"(serial {_clean(pad['serialNo'])})")
    return "  ".join(["connected", " ".join(identity)]) if identity else "connected"


def _master_key_line(pad: dict[str, Any]) -> str | None:
    return _kcv(pad, "master_key_kcv") if "master_key_kcv" in pad else None


def _working_key_line(pad: dict[str, Any], backend: dict[str, Any]) -> str | None:
    if not ({"working_key_kcv", "key_ok"} & pad.keys() or "working_key_kcv" in backend):
        return None
    parts = [_kcv(pad, "working_key_kcv")]
    if "working_key_kcv" in backend:
        issued = backend["working_key_kcv"]
        parts.append(f"(the backend's: {_clean(issued) if issued else 'none yet'})")
    if isinstance(pad.get("key_ok"), bool):
        parts.append("ok" if pad["key_ok"] else "NOT OK")
    return " ".join(parts)


def _kcv(pad: dict[str, Any], key: str) -> str:
    if pad.get(key):
        return f"KCV {_clean(pad[key])}"
    # A disconnected pad reports nothing; the "PIN pad" line above already says so.
    return "none" if pad.get("connected") is True else "unknown"


def _signed_in_line(backend: dict[str, Any]) -> str | None:
    if "signed_in" not in backend:
        return None
    at = backend.get("signed_in_at")
    if backend["signed_in"] is True:
        return f"yes, at {_local_time(at)}" if at else "yes"
    return f"NO (last at {_local_time(at)})" if at else "NO"


def _backend_line(backend: dict[str, Any]) -> str | None:
    if "reachable" not in backend and "last_ok_s" not in backend:
        return None
    parts = []
    if "reachable" in backend:
        parts.append("reachable" if backend["reachable"] is True else "NOT reachable")
    if "last_ok_s" in backend:
        age = backend["last_ok_s"]
        known = isinstance(age, int | float) and not isinstance(age, bool) and math.isfinite(age)
        parts.append(f"last answered {_ago(float(age))} ago" if known else "no answer since misbridge started")
    return ", ".join(parts)


def _reversals_line(reversals: dict[str, Any]) -> str | None:
    if not reversals:
        return None
    manual = reversals.get("needsManual")
    needs = "needs" if manual == 1 else "need"
    return f"{_number(reversals.get('pending'))} pending, {_number(manual)} {needs} a person"


def _reconcile_line(reconcile: dict[str, Any]) -> str | None:
    """The latest end-of-day run: ``2026-05-01: all matched`` or ``2026-05-01: 2 MISMATCHES, see REPORT``."""
    if not reconcile:
        return None
    day, mismatches = _clean(reconcile.get("date", "?")), reconcile.get("mismatches")
    if mismatches == 0:
        return f"{day}: all matched"
    return f"{day}: {_number(mismatches)} MISMATCH(ES), see {_clean(reconcile.get('report', '?'))}"


def _count(value: object, one: str, many: str) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return f"{value} {one if value == 1 else many}"


def _number(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "?"


def _ago(seconds: float) -> str:
    """``12 s``, ``5 min``, ``3 h``: as precise as a person needs."""
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds // 60:.0f} min"
    return f"{seconds // 3600:.0f} h"


def _local_time(value: object) -> str:
    """An ISO time as ``2026-12-05 03:00:02``, in the daemon's local time (the offset it sent)."""
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return _clean(value)


def _section(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _clean(value: object) -> str:
    """``value`` as text without control characters: a reply must not drive the technician's terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
