"""The composition root: builds journal, PIN-pad driver, backend client, service and front doors.

``Daemon`` is what ``misbridge serve`` runs and what ``misbridge demo`` and the integration
tests start in-process. It is the only module that knows every layer; the layers themselves
follow the import rules in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import resource
import signal
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import SecretStr

from misbridge.api.guard import DoorGuard
from misbridge.api.http_app import create_app
from misbridge.api.policy import CallerPolicy
from misbridge.api.security import ApiSecurity
from misbridge.api.socket_server import PosSocketServer
from misbridge.api.unix_socket import bind_unix_socket
from misbridge.app.retention import run_retention
from misbridge.backend.client import BackendClient
from misbridge.backend.keys import KeyExchange
from misbridge.config.secrets import API_TOKEN_CREDENTIAL, SIGNING_KEY_CREDENTIAL, load_root_key, load_secret
from misbridge.config.settings import Settings
from misbridge.core.health import backend_reachable
from misbridge.core.keys import KeyKeeper
from misbridge.core.latest_reconcile import LatestReconcileReader
from misbridge.core.progress import ProgressHub
from misbridge.core.service import TransactionService
from misbridge.device.base import PinPadDriver, create_driver
from misbridge.errors import ConfigError
from misbridge.host.asgi import AsgiServer
from misbridge.host.crashpoints import crash_point
from misbridge.journal.store import Journal
from misbridge.telemetry.logs import quiet_loop_exception_handler
from misbridge.telemetry.metrics import Metrics

#: How long start-up waits for the PIN pad before serving anyway (requests then get MB20).
DEVICE_WAIT_S = 5.0
#: The soft descriptor limit asked for when the hard limit is unlimited.
_FD_LIMIT_WHEN_UNLIMITED = 1 << 19


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as systemd advises services to); returns it.

    The doors' caps keep misbridge far below 1 024 descriptors, but the soft limit is what a
    flood of connections runs into first, and raising it costs nothing under epoll.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _FD_LIMIT_WHEN_UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as err:
            logger.warning("could not raise the descriptor limit from {} to {}: {}", soft, target, err)
    return int(soft)


def check_bind_address(settings: Settings) -> None:
    """Refuse a non-loopback listen address unless explicitly allowed.

    Raises:
        ConfigError: api.host is not a loopback address and api.allow_non_loopback is false.
    """
    host = settings.api.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        if not settings.api.allow_non_loopback:
            raise ConfigError(
                f"api.host {host!r} is not a loopback address; set api.allow_non_loopback = true to allow it"
            )
        logger.warning(
            "the POS API listens on non-loopback address {}: callers from other machines cannot be identified "
            "and are refused with MB75 (docs/operations.md, 'Who may talk to misbridge')", host,
        )  # fmt: skip


def _open_mismatches(reader: LatestReconcileReader) -> int:
    """The gauge's value: the latest run's mismatches, 0 before the first run."""
    latest = reader.get()
    return 0 if latest is None else latest.mismatches


def load_signing_key(settings: Settings) -> SecretStr | None:
    """The backend signing key from its file or systemd credential (never from argv or TOML).

    Raises:
        ConfigError: signing is enabled but no key is available.
    """
    signing = settings.backend.signing
    if not signing.enabled:
        return None
    key = load_secret(SIGNING_KEY_CREDENTIAL, signing.key_file)
    if key is None:
        raise ConfigError(
            "backend.signing.enabled is true but no signing key was found: set backend.signing.key_file "
            f"or provide the systemd credential {SIGNING_KEY_CREDENTIAL!r}"
        )
    return key


def load_api_security(settings: Settings) -> ApiSecurity:
    """The HTTP door's rules, with the bearer token from api.token_file or the api-token credential.

    Raises:
        ConfigError: the token is empty or api.allowed_origins is malformed.
    """
    token = load_secret(API_TOKEN_CREDENTIAL, settings.api.token_file)
    if token is None:
        logger.warning(
            "the POS API has no token (credential {!r}): any local program may start transactions", API_TOKEN_CREDENTIAL
        )
    return ApiSecurity.from_settings(settings.api, token)


class Daemon:
    """A running misbridge: start() brings every part up, stop() takes it down in order.

    Args:
        settings: the whole configuration.
        signing_key: the backend signing key (:func:`load_signing_key`), None with signing off.
        metrics: where the metrics go (default: a new registry).
        clock: local aware time for the key keeper's sign-in schedule (``keys.sign_in_at``);
            None is the system clock. Tests pass one to show "the next day" without waiting.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        signing_key: SecretStr | None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self._signing_key = signing_key
        self._clock = clock
        self.socket_port = 0
        self.http_port = 0
        self._journal: Journal | None = None
        self._pinpad: PinPadDriver | None = None
        self._backend: BackendClient | None = None
        self._service: TransactionService | None = None
        self._keys: KeyKeeper | None = None
        self._socket_server: PosSocketServer | None = None
        self._http_server: AsgiServer | None = None
        #: The progress events of every lane, for the HTTP door's streams (one hub per daemon).
        #: One service runs today: the default lane's; each lane's service adds its lane.
        self._lane = settings.lane_list()[0].name
        self.progress = ProgressHub([self._lane])
        self._background: set[asyncio.Task[None]] = set()
        self._previous_exception_handler: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def service(self) -> TransactionService:
        """The running transaction service."""
        assert self._service is not None, "daemon not started"
        return self._service

    def is_alive(self) -> bool:
        """Watchdog self-check: started, and neither the reversal-queue worker nor the key keeper has died."""
        running = {task.get_name() for task in self._background if not task.done()}
        return self._service is not None and {"reversal queue", "key keeper"} <= running

    async def start(self) -> None:
        """Open the journal, start the PIN-pad link and backend client, then open the front doors."""
        settings = self.settings
        check_bind_address(settings)
        security = load_api_security(settings)
        policy = CallerPolicy.from_settings(settings.api)
        logger.info("descriptor limit {}", raise_fd_limit())
        self._quiet_the_loop()
        Path(settings.journal.path).parent.mkdir(parents=True, exist_ok=True)
        self._journal = await Journal.open(Path(settings.journal.path))
        self._pinpad = create_driver(settings.device)
        self._pinpad.on_link_event = self.metrics.record_link_event
        await self._pinpad.start()
        if not await self._pinpad.wait_connected(DEVICE_WAIT_S):
            logger.warning("PIN pad at {} not connected yet; retrying in the background", settings.device.url)
        self._backend = BackendClient(
            settings.backend, settings.identity, self._signing_key, on_attempt=self.metrics.backend_attempt
        )
        self._keys = self._key_keeper(self._journal, self._pinpad, self._backend)
        self._service = TransactionService(
            settings, self._journal, self._pinpad, self._backend, metrics=self.metrics, keys=self._keys,
            progress=self.progress, lane=self._lane,
        )  # fmt: skip
        self._socket_server = PosSocketServer(self._service.handle, settings.api, settings.identity, policy=policy)
        self.socket_port = await self._socket_server.start()
        pinpad = self._pinpad
        latest = self._service.latest_reconcile
        keys, healthy_within_s = self._keys, settings.backend.healthy_within_s
        self.metrics.watch(
            journal=self._journal,
            journal_path=Path(settings.journal.path),
            device_connected=lambda: pinpad.connected,
            signed_in=lambda: keys.status.signed_in,
            pad_key_ok=lambda: keys.status.pad_key_ok,
            backend_last_ok_s=keys.reach.last_ok_age_s,
            backend_reachable=lambda: backend_reachable(keys.reach, healthy_within_s),
            reconcile_mismatches=lambda: _open_mismatches(latest),
        )
        app = create_app(
            self._service, security, metrics=self.metrics, progress=self.progress,
            keep_alive_s=settings.api.progress_keep_alive_s,
        )  # fmt: skip
        gate = DoorGuard("http", settings.api, policy)
        if settings.api.http_socket is not None:
            sock = bind_unix_socket(settings.api.http_socket, group=settings.api.http_socket_group)
            self._http_server = AsgiServer(app, sock=sock, gate=gate)
        else:
            self._http_server = AsgiServer(app, settings.api.host, settings.api.http_port, gate=gate)
        self.http_port = await self._http_server.start()
        # The doors are open so /health and inquiries answer, but card requests get MB92 until
        # every interrupted transaction is finished (recovery commits each step, so a crash
        # during recovery just means recovery runs again).
        await self._service.recover()
        self._spawn(self._service.resolver.run_worker(), "reversal queue")
        # The first sign-in before "ready", so a sale right after start-up finds the key loaded.
        await self._keys.first_round(DEVICE_WAIT_S)
        self._spawn(self._keys.run(), "key keeper")
        self._spawn(run_retention(self._journal, settings.journal.retention_days), "journal retention")
        logger.info(
            "misbridge ready: socket {}:{}, HTTP {}:{}",
            settings.api.host,
            self.socket_port,
            settings.api.host,
            self.http_port,
        )

    def _key_keeper(self, journal: Journal, pinpad: PinPadDriver, backend: BackendClient) -> KeyKeeper:
        """The keeper of the pad's keys; it holds the rootKey only when it may provision a replaced pad."""
        keys = self.settings.keys
        root_key = None
        if keys.replaced_pad == "provision":
            root_key = load_root_key(keys.root_key_credential, keys.root_key_file)
        center = KeyExchange(backend, keys, root_key)
        if self._clock is None:
            return KeyKeeper(self.settings, journal, pinpad, center, backend)
        return KeyKeeper(self.settings, journal, pinpad, center, backend, clock=self._clock)

    def _quiet_the_loop(self) -> None:
        """Install the exception handler that keeps a descriptor flood out of the log (restored by stop)."""
        self._loop = asyncio.get_running_loop()
        self._previous_exception_handler = self._loop.get_exception_handler()
        self._loop.set_exception_handler(quiet_loop_exception_handler)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        """Stop taking requests, let running transactions finish, then close everything."""
        if self._service is not None:
            self._service.stop_accepting()
        if self._socket_server is not None:
            await self._socket_server.stop()
        # The streams end now, so the HTTP door's graceful stop does not wait for them.
        self.progress.close()
        if self._http_server is not None:
            await self._http_server.stop()
        if self._service is not None:
            crash_point("shutdown.drain")
            await self._service.drain()
            await self._service.resolver.finish()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._pinpad is not None:
            await self._pinpad.stop()
        if self._backend is not None:
            await self._backend.aclose()
        if self._journal is not None:
            await self._journal.close()
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous_exception_handler)
            self._loop = None
        logger.info("misbridge stopped")


async def wait_for_stop_signal() -> None:
    """Return when SIGTERM or SIGINT arrives."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
