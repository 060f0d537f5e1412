"""The configuration check ``misbridge serve`` runs before it starts, and ``misbridge check-config`` runs alone.

One list of checks, so check-config says OK exactly when serve would start: the settings
(``load_settings``: every key, the timers, lanes and doors on distinct ports), then what the
daemon itself refuses at start-up, each run through the very function the daemon runs: the
listen address, the signing key (``$CREDENTIALS_DIRECTORY`` or ``backend.signing.key_file``),
the POS API token and allowed origins, the allow-list's users and groups, each lane's pad
driver and device URL scheme, the backend URLs and TLS files, the rootKey's form, the HTTP
door's Unix socket.

Not checked by either, because only the running daemon can see them: whether a port is free
(``serve`` refuses a port in use with one line naming it), whether the PIN pad answers
(``misbridge probe --try URL``) and whether the backend is reachable (``misbridge status``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from misbridge.api.policy import CallerPolicy
from misbridge.api.security import ApiSecurity
from misbridge.api.unix_socket import check_unix_socket
from misbridge.app.daemon import check_bind_address, load_signing_key
from misbridge.backend.client import check_backend_settings
from misbridge.config.secrets import (
    API_TOKEN_CREDENTIAL,
    ROOT_KEY_CREDENTIAL,
    SIGNING_KEY_CREDENTIAL,
    load_root_key,
    load_secret,
)
from misbridge.config.settings import Settings
from misbridge.device.base import create_driver
from misbridge.errors import ConfigError

#: What neither check-config nor serve's configuration check can see (check-config prints it).
NOT_CHECKED = (
    "whether the ports are free (misbridge serve refuses a port in use, naming it)",
    "whether the PIN pad answers (misbridge probe --try URL)",
    "whether the backend is reachable (misbridge status, once misbridge runs)",
)


@dataclass(frozen=True)
class ConfigProblem:
    """One reason misbridge will not start: the setting, why, and what to do."""

    setting: str
    reason: str
    fix: str

    def __str__(self) -> str:
        named = self.reason if self.setting in self.reason else f"{self.setting}: {self.reason}"
        return f"{named} (fix: {self.fix})"


#: A check: runs the daemon's own function on the settings and turns its ConfigError into problems.
_Check = Callable[[Settings], list[ConfigProblem]]


def config_problems(settings: Settings) -> list[ConfigProblem]:
    """Every problem of ``settings`` that would stop ``misbridge serve``, in the order serve meets them.

    Each check runs even after another failed, so one run lists them all.
    """
    problems: list[ConfigProblem] = []
    for check in _CHECKS:
        for problem in check(settings):
            if problem not in problems:  # lanes share device.protocol: one line for it
                problems.append(problem)
    return problems


def require_valid(settings: Settings) -> None:
    """Raise unless :func:`config_problems` finds nothing (``misbridge serve`` then exits 2).

    Raises:
        ConfigError: one line per problem; a single problem is a single line.
    """
    problems = config_problems(settings)
    if len(problems) == 1:
        raise ConfigError(f"configuration refused: {problems[0]}")
    if problems:
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise ConfigError(f"configuration refused, {len(problems)} problems:\n{lines}")


def _refused(run: Callable[[], object]) -> str | None:
    """The message of the ConfigError ``run()`` raises, or None when it raises none."""
    try:
        run()
    except ConfigError as err:
        return err.message
    return None


def _listen_address(settings: Settings) -> list[ConfigProblem]:
    reason = _refused(lambda: check_bind_address(settings))
    if reason is None:
        return []
    fix = 'api.host = "127.0.0.1": the POS runs on this machine'
    return [ConfigProblem("api.host", reason, fix)]


def _signing_key(settings: Settings) -> list[ConfigProblem]:
    reason = _refused(lambda: load_signing_key(settings))
    if reason is None:
        return []
    fix = (
        f"the unit loads /etc/misbridge/credentials/{SIGNING_KEY_CREDENTIAL} (mode 0400): put the key there; "
        "backend.signing.enabled = false only if e-Buy does not sign"
    )
    return [ConfigProblem("backend.signing.key_file", reason, fix)]


def _api_security(settings: Settings) -> list[ConfigProblem]:
    # ApiSecurity as load_api_security builds it, without its no-token warning (the daemon logs that).
    reason = _refused(
        lambda: ApiSecurity.from_settings(settings.api, load_secret(API_TOKEN_CREDENTIAL, settings.api.token_file))
    )
    if reason is None:
        return []
    if "allowed_origins" in reason:
        return [ConfigProblem("api.allowed_origins", reason, "write each as scheme://host[:port]")]
    fix = "put a random token (openssl rand -hex 32) in the api-token credential or api.token_file"
    return [ConfigProblem("api.token_file", reason, fix)]


def _allow_list(settings: Settings) -> list[ConfigProblem]:
    reason = _refused(lambda: CallerPolicy.from_settings(settings.api))
    if reason is None:
        return []
    setting = "api.allowed_groups" if "allowed_groups" in reason else "api.allowed_users"
    fix = "name a user or group this machine has (getent passwd NAME, getent group NAME), or remove the entry"
    return [ConfigProblem(setting, reason, fix)]


def _pad_drivers(settings: Settings) -> list[ConfigProblem]:
    """Each lane's driver is built as the daemon builds it (nothing is opened): protocol and URL scheme."""
    problems = []
    for index, lane in enumerate(settings.lane_list()):
        reason = _refused(partial(create_driver, lane.device))
        if reason is None:
            continue
        if "device.protocol" in reason:
            problems.append(ConfigProblem("device.protocol", reason, 'device.protocol = "mispos-v1"'))
        else:
            setting = f"lanes[{index}].device_url" if settings.lanes else "device.url"
            fix = "a serial device path (/dev/mispos-...), socket://HOST:PORT or usb://VID:PID"
            problems.append(ConfigProblem(setting, reason, fix))
    return problems


#: The backend's settings its checks name in their messages (``backend ca_bundle ...``), with their fix.
_BACKEND_FIXES = (
    ("probe_url", "an http:// or https:// URL, or leave it unset"),
    ("ca_bundle", "the path of a readable PEM file of CA certificates, or leave it unset"),
    ("client_cert", "readable PEM files: the chain in backend.client_cert, its key in the tls-client-key credential"),
    ("url", "the e-Buy URL as https://HOST/PATH"),
)


def _backend(settings: Settings) -> list[ConfigProblem]:
    reason = _refused(lambda: check_backend_settings(settings.backend))
    if reason is None:
        return []
    key, fix = next((key, fix) for key, fix in _BACKEND_FIXES if key in reason)
    return [ConfigProblem(f"backend.{key}", reason, fix)]


def _root_key(settings: Settings) -> list[ConfigProblem]:
    keys = settings.keys
    if keys.replaced_pad != "provision":
        return []  # only then does the daemon read the rootKey
    reason = _refused(lambda: load_root_key(keys.root_key_credential, keys.root_key_file))
    if reason is None:
        return []
    fix = f"the {ROOT_KEY_CREDENTIAL} credential or keys.root_key_file must hold the 32 hex characters of the rootKey"
    return [ConfigProblem("keys.root_key_file", reason, fix)]


def _http_socket(settings: Settings) -> list[ConfigProblem]:
    path, group = settings.api.http_socket, settings.api.http_socket_group
    if path is None:
        return []
    reason = _refused(lambda: check_unix_socket(path, group=group))
    if reason is None:
        return []
    if "http_socket_group" in reason:
        return [ConfigProblem("api.http_socket_group", reason, "a group this machine has, or empty")]
    return [ConfigProblem("api.http_socket", reason, "a path under /run/misbridge/ that no other file uses")]


_CHECKS: tuple[_Check, ...] = (
    _listen_address,
    _signing_key,
    _api_security,
    _allow_list,
    _pad_drivers,
    _backend,
    _root_key,
    _http_socket,
)
