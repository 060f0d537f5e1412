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
import socket
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import SecretStr

from misbridge.api.guard import DoorGuard
from misbridge.api.http_app import create_app
from misbridge.api.policy import CallerPolicy
from misbridge.api.security import ApiSecurity
from misbridge.api.socket_server import Handler, PosSocketServer
from misbridge.api.unix_socket import bind_unix_socket
from misbridge.app.journal_file import open_journal
from misbridge.app.retention import run_retention
from misbridge.backend.client import BackendClient
from misbridge.backend.keys import KeyExchange
from misbridge.config.secrets import (
    API_TOKEN_CREDENTIAL,
    SIGNING_KEY_CREDENTIAL,
    load_root_key,
    load_secret,
    where_looked,
)
from misbridge.config.settings import Lane, Settings
from misbridge.core.health import backend_reachable
from misbridge.core.keys import KeyKeeper
from misbridge.core.lanes import LaneRouter, lane_log_context
from misbridge.core.latest_reconcile import LatestReconcileReader
from misbridge.core.progress import ProgressHub
from misbridge.core.service import TransactionService
from misbridge.device.base import PinPadDriver, create_driver
from misbridge.errors import ConfigError, PortUnavailable
from misbridge.host.asgi import AsgiServer
from misbridge.host.crashpoints import crash_point
from misbridge.host.net import bind_door
from misbridge.journal.store import Journal
from misbridge.telemetry.logs import quiet_loop_exception_handler
from misbridge.telemetry.metrics import LaneWatch, Metrics

#: How long start-up waits for the PIN pad before serving anyway (requests then get MB20).
DEVICE_WAIT_S = 5.0
#: How long the first sign-in may take before "ready" on a lane whose pad did not come within
#: DEVICE_WAIT_S: the backend call is quick, and the key is loaded in the background once the pad
#: is there (waiting DEVICE_WAIT_S again for the same absent pad only delayed the start).
PADLESS_SIGN_IN_WAIT_S = 1.0
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
            "backend.signing.enabled is true but no signing key was found "
            f"({where_looked(SIGNING_KEY_CREDENTIAL, signing.key_file)}): set backend.signing.key_file "
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


@dataclass
class _BoundDoors:
    """Every front door's socket, bound before anything else starts; taken by the servers as they open."""

    socket_door: socket.socket | None = None
    lane_doors: dict[str, socket.socket] = field(default_factory=dict)
    http_door: socket.socket | None = None

    def close(self) -> None:
        """Close the sockets no server took (start-up failed before the doors opened)."""
        for sock in (self.socket_door, self.http_door, *self.lane_doors.values()):
            if sock is not None:
                sock.close()
        self.socket_door, self.http_door, self.lane_doors = None, None, {}


def _bind_doors(settings: Settings) -> _BoundDoors:
    """Bind the e-Buy socket door, each lane's own port and the HTTP door (TCP or Unix socket).

    First thing at start-up: a port held by another program ends the start before the journal
    or a pad is touched, as one line naming the setting. Duplicate ports in the configuration
    never get here (the settings refuse them).

    Raises:
        PortUnavailable: a port is in use or not permitted (the sockets bound so far are closed).
        ConfigError: ``api.http_socket`` is not a socket file, or its group does not exist.
    """
    api, doors = settings.api, _BoundDoors()
    try:
        doors.socket_door = bind_door(api.host, api.socket_port, setting="api.socket_port")
        for index, lane in enumerate(settings.lanes):
            if lane.socket_port is not None:
                setting = f"lanes[{index}].socket_port"
                doors.lane_doors[lane.name] = bind_door(api.host, lane.socket_port, setting=setting)
        if api.http_socket is None:
            doors.http_door = bind_door(api.host, api.http_port, setting="api.http_port")
        else:
            doors.http_door = _bind_http_socket(settings)
    except BaseException:
        doors.close()
        raise
    return doors


def _bind_http_socket(settings: Settings) -> socket.socket:
    path = settings.api.http_socket
    assert path is not None
    try:
        return bind_unix_socket(path, group=settings.api.http_socket_group)
    except OSError as err:
        raise PortUnavailable(
            f"api.http_socket {path}: cannot listen there: {err.strerror or err}; check its directory exists and is "
            "the service's (RuntimeDirectory=), or change api.http_socket",
            setting="api.http_socket",
        ) from err


@dataclass
class _LaneParts:
    """What one lane runs on: its journal view, pad, backend client (the lane's deviceNo), keys and service."""

    lane: Lane
    journal: Journal
    pinpad: PinPadDriver
    backend: BackendClient
    keys: KeyKeeper
    service: TransactionService

    def task_name(self, work: str) -> str:
        """A background task's name: the default lane's as it always was, another lane's with its name."""
        return work if self.lane.default else f"{work} ({self.lane.name})"

    def metrics_watch(self, healthy_within_s: float) -> LaneWatch:
        """Where the lane's scrape-time gauges come from: its reversal queue, pad, keys and backend."""
        pinpad, keys = self.pinpad, self.keys
        return LaneWatch(
            self.lane.name, journal=self.journal, device_connected=lambda: pinpad.connected,
            signed_in=lambda: keys.status.signed_in, pad_key_ok=lambda: keys.status.pad_key_ok,
            backend_last_ok_s=keys.reach.last_ok_age_s,
            backend_reachable=lambda: backend_reachable(keys.reach, healthy_within_s),
        )  # fmt: skip


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
        self._lanes: list[_LaneParts] = []
        self._router: LaneRouter | None = None
        self._socket_servers: list[PosSocketServer] = []
        self._http_server: AsgiServer | None = None
        self._doors = _BoundDoors()
        #: The progress events of every lane, for the HTTP door's streams (one hub per daemon).
        self.progress = ProgressHub([lane.name for lane in settings.lane_list()])
        self._several_lanes = len(settings.lane_list()) > 1  # only then do log lines name their lane
        self._background: set[asyncio.Task[None]] = set()
        self._previous_exception_handler: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def service(self) -> TransactionService:
        """The default lane's running transaction service."""
        assert self._lanes, "daemon not started"
        return self._lanes[0].service

    @property
    def router(self) -> LaneRouter:
        """Every lane's service, as the doors reach them."""
        assert self._router is not None, "daemon not started"
        return self._router

    def is_alive(self) -> bool:
        """Watchdog self-check: started, and no lane's reversal-queue worker or key keeper has died."""
        running = {task.get_name() for task in self._background if not task.done()}
        needed = {parts.task_name(work) for parts in self._lanes for work in ("reversal queue", "key keeper")}
        return self._router is not None and needed <= running

    async def start(self) -> None:
        """Open the journal, start the PIN-pad link and backend client, then open the front doors."""
        check_bind_address(self.settings)
        # Before anything logs or opens: a port in use ends the start here, with nothing to undo.
        self._doors = _bind_doors(self.settings)
        try:
            await self._start_behind_bound_doors()
        except BaseException:
            self._doors.close()  # the sockets no server took yet; stop() closes the servers'
            raise

    async def _start_behind_bound_doors(self) -> None:
        settings = self.settings
        security = load_api_security(settings)
        policy = CallerPolicy.from_settings(settings.api)
        logger.info("descriptor limit {}", raise_fd_limit())
        self._quiet_the_loop()
        Path(settings.journal.path).parent.mkdir(parents=True, exist_ok=True)
        self._journal = await open_journal(settings.journal)
        lanes = settings.lane_list()
        await self._report_work_of_other_lanes(lanes)
        follow_up_lock = asyncio.Lock()  # one void or refund check at a time across every lane

        async def start_lane(lane: Lane) -> _LaneParts:
            with self._lane_logs(lane):  # the pad driver's tasks, started here, name the lane too
                return await self._start_lane(lane, self._lane_journal(lane, len(lanes)), follow_up_lock)

        # Side by side: each lane may wait DEVICE_WAIT_S for its pad, and an unplugged one must not
        # hold the start-up of the others.
        started = await asyncio.gather(*(start_lane(lane) for lane in lanes), return_exceptions=True)
        self._lanes = [parts for parts in started if isinstance(parts, _LaneParts)]  # stop() closes these
        failed = [error for error in started if isinstance(error, BaseException)]
        if failed:
            raise failed[0]
        self._router = LaneRouter([(parts.lane, parts.service) for parts in self._lanes])
        await self._open_socket_doors(policy)
        self._watch_metrics()
        app = create_app(
            self._router.front(), security, metrics=self.metrics, lanes=self._router.door,
            lane_names=self._router.names, progress=self.progress,
            keep_alive_s=settings.api.progress_keep_alive_s,
        )  # fmt: skip
        gate = DoorGuard("http", settings.api, policy)
        sock, self._doors.http_door = self._doors.http_door, None
        self._http_server = AsgiServer(app, sock=sock, gate=gate)
        self.http_port = await self._http_server.start()
        # The doors are open so /health and inquiries answer, but card requests get MB92 until
        # every interrupted transaction is finished (recovery commits each step, so a crash
        # during recovery just means recovery runs again). Lanes recover side by side: one
        # lane's long recovery does not hold another's sales.
        await self._each_lane(lambda parts: parts.service.recover())
        for parts in self._lanes:
            with self._lane_logs(parts.lane):
                self._spawn(parts.service.resolver.run_worker(), parts.task_name("reversal queue"))
        # The first sign-in before "ready", so a sale right after start-up finds the key loaded.
        await self._each_lane(
            lambda parts: parts.keys.first_round(DEVICE_WAIT_S if parts.pinpad.connected else PADLESS_SIGN_IN_WAIT_S)
        )
        for parts in self._lanes:
            with self._lane_logs(parts.lane):
                self._spawn(parts.keys.run(), parts.task_name("key keeper"))
        self._spawn(run_retention(self._journal, settings.journal.retention_days), "journal retention")
        logger.info(
            "misbridge ready: socket {}:{}, HTTP {}:{}, lane(s) {}",
            settings.api.host,
            self.socket_port,
            settings.api.host,
            self.http_port,
            ", ".join(f"{parts.lane.name} ({parts.lane.identity.device_no})" for parts in self._lanes),
        )

    async def _report_work_of_other_lanes(self, lanes: list[Lane]) -> None:
        """Say so when the journal holds unfinished transactions of a lane this configuration does not serve.

        With several lanes each lane recovers and voids its own rows only, so a removed lane's
        unfinished work would be nobody's: an ERROR with an alert field. A one-lane daemon reads
        the whole journal and finishes them, under its own deviceNo: a warning.
        """
        assert self._journal is not None
        open_work = await self._journal.open_by_lane()
        served: set[str | None] = {None if lane.default else lane.name for lane in lanes}
        left = {lane: count for lane, count in open_work.items() if lane not in served}
        for lane, count in sorted(left.items(), key=lambda item: str(item[0])):
            if len(lanes) == 1:
                logger.warning(
                    "{} unfinished transaction(s) of lane {} (recorded with several lanes): this one-lane misbridge "
                    "finishes them under its own deviceNo {}", count, lane, lanes[0].identity.device_no,
                )  # fmt: skip
                continue
            logger.bind(alert="LANE_NOT_CONFIGURED").error(
                "{} unfinished transaction(s) of lane {}, which is not configured: no lane recovers or voids them; "
                "put its [[lanes]] block back until 'misbridge journal list --lane {} --state open' lists none",
                count, lane, lane,
            )  # fmt: skip

    def _lane_journal(self, lane: Lane, lane_count: int) -> Journal:
        """The journal as ``lane`` sees it: the whole journal for a one-lane daemon, else the lane's view."""
        assert self._journal is not None
        if lane_count == 1:
            return self._journal  # as it always was: every row is the one lane's
        return self._journal.for_lane(lane.name, default=lane.default)

    def _lane_logs(self, lane: Lane) -> AbstractContextManager[None]:
        """Log lines made inside (and in tasks started inside) name ``lane``, when the daemon has several."""
        return lane_log_context(lane.name, several=self._several_lanes)

    async def _each_lane(self, work: Callable[[_LaneParts], Awaitable[object]]) -> None:
        """Run ``work`` for every lane side by side, each in its lane's log context."""

        async def one(parts: _LaneParts) -> None:
            with self._lane_logs(parts.lane):
                await work(parts)

        await asyncio.gather(*(one(parts) for parts in self._lanes))

    async def _start_lane(self, lane: Lane, journal: Journal, follow_up_lock: asyncio.Lock) -> _LaneParts:
        """Start ``lane``'s pad link and build its backend client, key keeper and service."""
        settings = self.settings.for_lane(lane)
        metrics = self.metrics.for_lane(lane.name)
        pinpad = create_driver(settings.device)
        pinpad.on_link_event = metrics.record_link_event
        await pinpad.start()
        if not await pinpad.wait_connected(DEVICE_WAIT_S):
            logger.warning(
                "lane {}: PIN pad at {} not connected yet; retrying in the background", lane.name, lane.device.url
            )
        backend = BackendClient(
            settings.backend, settings.identity, self._signing_key, on_attempt=metrics.backend_attempt
        )
        keys = self._key_keeper(settings, journal, pinpad, backend)
        service = TransactionService(
            settings, journal, pinpad, backend, metrics=metrics, keys=keys, follow_up_lock=follow_up_lock,
            progress=self.progress, lane=lane.name,
        )  # fmt: skip
        return _LaneParts(lane, journal, pinpad, backend, keys, service)

    async def _open_socket_doors(self, policy: CallerPolicy) -> None:
        """The e-Buy socket door (routing by deviceNo), and each lane's own port."""
        router, settings = self.router, self.settings
        default = router.door(router.default)
        assert default is not None
        sock, self._doors.socket_door = self._doors.socket_door, None
        main = PosSocketServer(
            default.handle, settings.api, settings.identity, policy=policy, route=_by_device_no(router), sock=sock
        )
        self._socket_servers.append(main)
        self.socket_port = await main.start()
        for parts in self._lanes:
            if parts.lane.socket_port is None:
                continue
            door = router.door(parts.lane.name)
            assert door is not None
            own = PosSocketServer(
                door.handle, settings.api, parts.lane.identity, policy=policy, port=parts.lane.socket_port,
                sock=self._doors.lane_doors.pop(parts.lane.name, None),
            )  # fmt: skip
            self._socket_servers.append(own)
            await own.start()

    def _watch_metrics(self) -> None:
        """The journal-wide gauges' sources, and every lane's (labelled with the lane)."""
        assert self._journal is not None
        latest, healthy_within_s = self._lanes[0].service.latest_reconcile, self.settings.backend.healthy_within_s
        self.metrics.watch(
            journal=self._journal,
            journal_path=Path(self.settings.journal.path),
            reconcile_mismatches=lambda: _open_mismatches(latest),
            lanes=[parts.metrics_watch(healthy_within_s) for parts in self._lanes],
        )

    def _key_keeper(
        self, settings: Settings, journal: Journal, pinpad: PinPadDriver, backend: BackendClient
    ) -> KeyKeeper:
        """The keeper of a lane's pad keys; it holds the rootKey only when it may provision a replaced pad."""
        keys = settings.keys
        root_key = None
        if keys.replaced_pad == "provision":
            root_key = load_root_key(keys.root_key_credential, keys.root_key_file)
        center = KeyExchange(backend, keys, root_key)
        if self._clock is None:
            return KeyKeeper(settings, journal, pinpad, center, backend)
        return KeyKeeper(settings, journal, pinpad, center, backend, clock=self._clock)

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
        for parts in self._lanes:
            parts.service.stop_accepting()
        for server in self._socket_servers:
            await server.stop()
        self._doors.close()  # a start that failed before the doors opened leaves them bound
        # The streams end now, so the HTTP door's graceful stop does not wait for them.
        self.progress.close()
        if self._http_server is not None:
            await self._http_server.stop()
        if self._lanes:
            crash_point("shutdown.drain")
            await self._each_lane(lambda parts: parts.service.drain())
            await self._each_lane(lambda parts: parts.service.resolver.finish())
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for parts in self._lanes:
            await parts.pinpad.stop()
            await parts.backend.aclose()
        if self._journal is not None:
            await self._journal.close()
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous_exception_handler)
            self._loop = None
        logger.info("misbridge stopped")


def _by_device_no(router: LaneRouter) -> Callable[[str], Handler | None]:
    """The socket door's route: the handler of the lane the envelope's deviceNo names."""

    def route(device_no: str) -> Handler | None:
        door = router.by_device_no(device_no)
        return None if door is None else door.handle

    return route


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
