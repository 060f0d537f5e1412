"""misbridge settings: a TOML file, every key overridable from the environment.

``MISBRIDGE_CONFIG`` (or ``--config``) names the TOML file; ``MISBRIDGE_<SECTION>__<KEY>``
overrides one key (``MISBRIDGE_DEVICE__URL=/dev/mispos``). Secrets are never settings:
settings only name the *file* a secret is read from (systemd credentials, see docs/operations.md).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from misbridge.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/misbridge/misbridge.toml")
#: The machine's zone when ``reconcile.time_zone`` is empty (the tz database file the system uses).
LOCAL_ZONE_FILE = Path("/etc/localtime")
#: Most records one batchUpload may carry (book §11.2 "Maximum:5000").
MAX_BATCH_SIZE = 5000
#: The TOML file of the Settings being built by load_settings (None: $MISBRIDGE_CONFIG, if set).
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("misbridge_config_file", default=None)


class _Section(BaseModel):
    # A misspelt key must be an error, not a silently ignored line.
    model_config = ConfigDict(extra="forbid")


class IdentitySettings(_Section):
    """Who this cashier terminal is, as the e-Buy envelope names it."""

    device_no: str = Field("POS01", description="deviceNo: cashier terminal number")
    shop_no: str = Field("CN123456", description="shopNo: merchant / shop number")
    brand: str = Field("663", description="brand: brand number allocated by e-Buy")


class DeviceSettings(_Section):
    """The PIN pad link."""

    url: str = Field("/dev/mispos", description="serial device path or pyserial URL (socket://host:port)")
    baudrate: int = Field(115200, gt=0)
    ack_timeout_min_s: float = Field(
        0.25,
        ge=0.05,
        le=1.0,
        description="shortest wait for the pad's ACK of a frame; the wait is the frame's wire time at baudrate "
        "+ the pad's 0.2 s turnaround + 50 ms, at least this, at most 1 s (docs/device-protocol.md §12); "
        "raise it for a pad that acknowledges late (a nominal baud rate on USB-CDC says nothing of its speed)",
    )
    protocol: str = Field("mispos-v1", description="PIN-pad driver, see docs/device-protocol.md")
    card_timeout_s: int = Field(60, ge=5, le=300, description="customer time to present a card")
    pin_timeout_s: int = Field(60, ge=5, le=300, description="customer time to enter the PIN")
    code_timeout_s: int = Field(60, ge=5, le=300, description="customer time to scan or key in a QR code")
    choice_timeout_s: int = Field(60, ge=5, le=300, description="customer time to choose a transaction option")
    reply_grace_s: float = Field(5.0, gt=0, le=30, description="extra wait for the pad's reply")
    command_timeout_s: float = Field(5.0, gt=0, le=60, description="wait for non-customer commands")
    key_index: int = Field(1, ge=1, le=99, description="working-key slot the pad encrypts with")


class SigningSettings(_Section):
    """Request/response signature (the book says MD5; the details are ours, docs/backend.md)."""

    enabled: bool = True
    key_file: Path | None = Field(None, description="file holding the signing key (systemd credential)")
    include_body: bool = Field(True, description="sign the Base64 body too (recommended)")
    truncate: int = Field(0, ge=0, le=32, description="keep only the first N hex chars (0 = all 32)")
    verify_responses: bool = True


class BackendSettings(_Section):
    """The e-Buy backend (HTTP/HTTPS POST of the envelope)."""

    url: str = Field("https://ebuy.invalid/ebuyweb-posp/api", description="base URL; /{action} is appended")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(45.0, gt=0, description="per-read timeout after the request was written")
    request_deadline_s: float = Field(50.0, gt=0, description="hard limit on one backend call")
    healthy_within_s: float = Field(
        300.0,
        gt=0,
        description="/health counts the backend reachable if it answered within this many seconds; "
        "misbridge probes it when idle for half of it",
    )
    ca_bundle: Path | None = Field(None, description="PEM file of the CAs trusted for the backend (default: system)")
    client_cert: Path | None = Field(
        None, description="PEM certificate chain presented to the backend (mutual TLS); not a secret"
    )
    client_key_file: Path | None = Field(
        None,
        description="private key of client_cert; default: the systemd credential tls-client-key "
        "($CREDENTIALS_DIRECTORY/tls-client-key)",
    )
    probe_url: str | None = Field(
        None,
        description="URL whose answer shows the backend host is up (any HTTP status counts), asked with a "
        "HEAD before a card action while the last call could not connect; default: url",
    )
    signing: SigningSettings = SigningSettings()


class ResolutionSettings(_Section):
    """How unknown outcomes are resolved (inquiry) and undone (void): docs/reliability.md."""

    inquiry_interval_s: float = Field(5.0, gt=0, description="pause between two inquiries of one transaction")
    inquiry_bound_s: float = Field(90.0, gt=0, description="after this long still unknown -> void")
    void_action: str = Field("voidCardSale", description="backend action that undoes a card sale")
    void_actions: dict[str, str] = Field(
        {"qrcodeSale": "voidQrcodeSale"},
        description="backend action that undoes a sale of this action, where it is not void_action",
    )
    reversal_backoff_initial_s: float = Field(1.0, gt=0)
    reversal_backoff_max_s: float = Field(60.0, gt=0)
    reversal_expire_s: float = Field(86400.0, gt=0, description="a void unconfirmed this long -> needs_manual")
    drain_before_sale_s: float = Field(5.0, ge=0, description="time spent sending due voids before a new sale")
    unvoidable_actions: list[str] = Field(
        ["accumulating"],
        description="sale actions the backend has no void for: still unknown at the inquiry bound they go to "
        "needs_manual, and an approval found after the POS was answered is kept",
    )
    not_found_codes: list[str] = Field(["25"], description="inquiry codes meaning: the backend never had it")
    pending_codes: list[str] = Field(["26"], description="inquiry/void codes meaning: still in progress, ask again")
    void_done_codes: list[str] = Field(["00", "22", "25"], description="void codes meaning: nothing remains moved")
    void_resend_done_codes: list[str] = Field(
        ["00", "22"],
        description="codes of a POS void sent again by the reversal queue meaning: the void is done (22: the "
        "first attempt went through); any other definite code but pending/rejected -> needs_manual",
    )
    rejected_codes: list[str] = Field(
        ["12", "30", "63", "94"],
        description="codes that refuse the inquiry/void request itself (unsupported, format, signature, "
        "duplicate traceNo): they say nothing about the original, so misbridge asks again",
    )


class OptionSettings(_Section):
    """Transaction options (the book's "prompts transaction options"): docs/pos-api.md, qrcodeSale."""

    on: Literal["pad", "pos"] = Field(
        "pad", description="who chooses: the customer on the pad, or the POS (it gets the list and asks again)"
    )
    choose_codes: list[str] = Field(
        ["09"], description="qrcodeSale return codes meaning: choose one of activityProductList, then ask again"
    )
    pos_choice_timeout_s: float = Field(
        120.0, gt=0, le=3600, description='how long the POS has to send its choice (on = "pos"); later: MB37'
    )


class ApiSettings(_Section):
    """The two POS front doors; loopback only unless explicitly allowed."""

    host: str = "127.0.0.1"
    socket_port: int = Field(9100, ge=0, le=65535, description="e-Buy message-structure socket")
    http_port: int = Field(9101, ge=0, le=65535, description="HTTP/JSON front door")
    allow_non_loopback: bool = False
    socket_read_timeout_s: float = Field(5.0, gt=0, description="max gap while a framed message arrives")
    pos_deadline_s: float = Field(300.0, gt=0, description="longest a POS request may take end to end")
    allowed_hosts: list[str] = Field(
        [],
        description="extra Host header values the HTTP door accepts besides 127.0.0.1, localhost and [::1] "
        "on its port ('name' or 'name:port'); any other Host gets 421 (DNS rebinding)",
    )
    allowed_origins: list[str] = Field(
        [],
        description="browser origins (scheme://host[:port]) allowed to call the HTTP door; a request with "
        "any other Origin header gets 403. Leave empty unless the POS is a web page",
    )
    token_file: Path | None = Field(
        None,
        description="file holding the POS API bearer token, for running outside systemd (else the systemd "
        "credential api-token); when a token is set every request but GET /health and /metrics needs it",
    )
    http_socket: Path | None = Field(
        None,
        description="serve the HTTP door on this Unix socket (mode 0660) instead of 127.0.0.1:http_port",
    )
    http_socket_group: str = Field(
        "", description="group given the Unix socket of api.http_socket (empty: the service's own group)"
    )
    allowed_users: list[str] = Field(
        [],
        description="local users (names or numeric uids) whose programs may use both doors; the kernel says "
        "who opened each connection (docs/operations.md, 'Who may talk to misbridge')",
    )
    allowed_groups: list[str] = Field(
        [],
        description="local groups whose members may use both doors (membership from the user database), "
        "e.g. misbridge-pos, the group the package creates for the POS application's user",
    )
    allow_root: bool = Field(True, description="root may always use the doors (it could bypass any check)")
    allow_self: bool = Field(True, description="the daemon's own user may use the doors (misbridge's own tools)")
    request_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="a whole request (socket: prefix and JSON; HTTP: head and body) must arrive within this "
        "many seconds of the connection or of the previous answer",
    )
    idle_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a socket-door connection with no request for this long is closed"
    )
    progress_keep_alive_s: float = Field(
        15.0, gt=0, le=300, description="a quiet progress stream sends a ': keep-alive' comment this often"
    )
    max_connections: int = Field(64, ge=1, le=900, description="open connections per door")
    max_connections_per_user: int = Field(16, ge=1, le=900, description="open connections per door and local user")
    unknown_inquiries_per_minute: int = Field(
        10,
        ge=0,
        le=10000,
        description="inquiries about originals misbridge does not know that are forwarded to the backend per "
        "minute; more get MB43 (each forwarded one bars its originalTraceNo for later sales)",
    )


class JournalSettings(_Section):
    """The SQLite journal."""

    path: Path = Path("/var/lib/misbridge/journal.db")
    retention_days: int = Field(
        90,
        ge=1,
        le=3650,
        description="final transactions older than this many days are purged (misbridge journal purge); "
        "unfinished ones are never purged",
    )
    backups_kept: int = Field(
        5,
        ge=1,
        le=100,
        description="copies of the journal taken before a schema upgrade (backups/journal-v<version>-<UTC time>"
        ".sqlite next to the journal) that are kept; older ones are deleted",
    )


class KeySettings(_Section):
    """Keys and sign-in (docs/backend.md, "Keys and sign-in"); the book names only DownloadKey."""

    root_key_credential: str = Field(
        "ebuy-root-key", description="systemd credential holding the e-Buy rootKey (32 hex), for provisioning"
    )
    root_key_file: Path | None = Field(
        None, description="file holding the rootKey instead of the credential (root-only, mode 0400)"
    )
    download_key_action: str = Field("DownloadKey", description="action fetching mwTmk, signed with the rootKey")
    sign_in_action: str = Field("signIn", description="action of the daily sign-in that issues the working key")
    mw_tmk_field: str = Field("mwTmk", description="DownloadKey reply: mwTmk, 32 hex, TDES-ECB under the rootKey")
    mw_tmk_kcv_field: str = Field("mwTmkKcv", description="DownloadKey reply: KCV of mwTmk, 6..16 hex")
    pin_key_field: str = Field("pinKey", description="sign-in reply: pinKey, 32 hex, TDES-ECB under mwTmk")
    pin_key_kcv_field: str = Field("pinKeyKcv", description="sign-in reply: KCV of pinKey, 6..16 hex")
    key_expired_codes: list[str] = Field(
        ["A0"], description="returnCodes meaning: the working key is out of date, sign in again"
    )
    sign_in_at: str = Field(
        "03:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="local time of the daily sign-in (HH:MM)"
    )
    replaced_pad: Literal["report", "provision"] = Field(
        "report",
        description="a pad whose master key is not the store's (a new serial): report it (run misbridge pad "
        "provision), or provision it at once (the daemon then needs the rootKey credential)",
    )


class ReconcileSettings(_Section):
    """The end of day (docs/operations.md, "End of day: which records"): the business day and the upload.

    A business day D runs from D at ``cut_off`` to D+1 at ``cut_off``, local time in
    ``time_zone``: a store open past midnight books its 01:30 sales on the day it opened.
    """

    cut_off: str = Field(
        "04:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="local time (HH:MM) a business day ends and the next begins",
    )
    time_zone: str = Field(
        "", description="IANA time zone of the business day (Asia/Shanghai); empty: the machine's local zone"
    )
    batch_size: int = Field(
        MAX_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, description="records per batchUpload call (the book allows 5000)"
    )
    totals_decide: bool = Field(
        False,
        description="a totals difference (summary or per activity) makes the exit status 3; only for a store "
        "whose summary is asked by misbridge reconcile alone, once a day",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        if name:
            _zone_named(name)
        return name

    def cut_off_time(self) -> time:
        """:attr:`cut_off` as a time of day."""
        return time.fromisoformat(self.cut_off)

    def zone(self) -> ZoneInfo:
        """:attr:`time_zone`, or the machine's local zone (``/etc/localtime``; UTC when it has none).

        Raises:
            ValueError: :attr:`time_zone` names no zone of the tz database.
        """
        if self.time_zone:
            return _zone_named(self.time_zone)
        try:
            with LOCAL_ZONE_FILE.open("rb") as local:
                return ZoneInfo.from_file(local, key="localtime")
        except (OSError, ValueError):
            return ZoneInfo("UTC")  # a container without /etc/localtime runs on UTC


def _zone_named(name: str) -> ZoneInfo:
    # ZoneInfo also accepts a path-like key; a zone name never starts with "/" or holds "..".
    try:
        if name.startswith("/") or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from err


#: The name of the one lane of a configuration without ``[[lanes]]``.
DEFAULT_LANE: Final = "default"
#: A lane name: it appears in URLs (``/v1/lanes/{lane}/…``), metric labels and log lines.
LANE_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class LaneSettings(_Section):
    """One lane (``[[lanes]]``): a POS terminal and its PIN pad, served by the same daemon as the others.

    What a lane leaves out comes from ``[device]`` and ``[identity]``; the first lane is the
    default lane (the plain ``/v1/{action}`` path, and socket requests naming no lane's deviceNo
    when it is the only one).
    """

    name: str = Field(pattern=LANE_NAME_PATTERN, description="the lane's name in URLs, metrics and logs")
    device_url: str = Field(
        min_length=1, description="the lane's PIN pad: serial path, /dev/serial/by-id path, or usb://VID:PID[/serial]"
    )
    device_no: str = Field(min_length=1, max_length=32, description="deviceNo the backend knows this lane by")
    shop_no: str | None = Field(None, min_length=1, max_length=32, description="shopNo when it differs from identity")
    socket_port: int | None = Field(
        None, ge=1, le=65535, description="an e-Buy socket port of this lane's own (every request on it is the lane's)"
    )
    key_index: int | None = Field(None, ge=1, le=99, description="working-key slot, when not device.key_index")


@dataclass(frozen=True)
class Lane:
    """A lane as the daemon runs it: its name, its pad's settings, the identity it sends, its own port."""

    name: str
    device: DeviceSettings
    identity: IdentitySettings
    socket_port: int | None
    default: bool


class Settings(BaseSettings):
    """All misbridge settings."""

    model_config = SettingsConfigDict(env_prefix="MISBRIDGE_", env_nested_delimiter="__", extra="forbid")

    identity: IdentitySettings = IdentitySettings()
    device: DeviceSettings = DeviceSettings()
    backend: BackendSettings = BackendSettings()
    resolution: ResolutionSettings = ResolutionSettings()
    options: OptionSettings = OptionSettings()
    api: ApiSettings = ApiSettings()
    journal: JournalSettings = JournalSettings()
    keys: KeySettings = KeySettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    lanes: list[LaneSettings] = Field(
        default_factory=list, description="several POS lanes, each with its own PIN pad; empty: one lane from [device]"
    )
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def lane_list(self) -> list[Lane]:
        """Every lane the daemon serves, the default one first.

        Without ``[[lanes]]`` that is one lane named :data:`DEFAULT_LANE` made of ``[device]``
        and ``[identity]`` as they are, so a one-pad configuration runs as it always did.
        """
        if not self.lanes:
            return [Lane(DEFAULT_LANE, self.device, self.identity, None, default=True)]
        return [self._lane(index, lane) for index, lane in enumerate(self.lanes)]

    def _lane(self, index: int, lane: LaneSettings) -> Lane:
        device = self.device.model_copy(update={"url": lane.device_url})
        if lane.key_index is not None:
            device = device.model_copy(update={"key_index": lane.key_index})
        identity = self.identity.model_copy(
            update={"device_no": lane.device_no, "shop_no": lane.shop_no or self.identity.shop_no}
        )
        return Lane(lane.name, device, identity, lane.socket_port, default=index == 0)

    def lane_named(self, name: str | None = None) -> Lane:
        """The lane called ``name``; the default lane for None or :data:`DEFAULT_LANE` (whatever it is called).

        For the tools' ``--lane`` (``misbridge reconcile``, ``misbridge pad provision``).

        Raises:
            ValueError: no lane is called ``name``; the message lists the lanes.
        """
        lanes = self.lane_list()
        if name is None:
            return lanes[0]
        for lane in lanes:
            if lane.name == name or (name == DEFAULT_LANE and lane.default):
                return lane
        raise ValueError(f"--lane {name}: no such lane; the lanes are {', '.join(lane.name for lane in lanes)}")

    def for_lane(self, lane: Lane) -> Settings:
        """These settings as ``lane``'s service sees them: ``device`` and ``identity`` are the lane's."""
        return self.model_copy(update={"device": lane.device, "identity": lane.identity})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML path is read here, at call time: a toml_file in model_config would be fixed
        # when the class is defined (python-ecosystem-notes §7).
        toml_path = _CONFIG_FILE.get() or os.environ.get("MISBRIDGE_CONFIG", "")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    @model_validator(mode="after")
    def _timers_consistent(self) -> Settings:
        device_steps = self.device.card_timeout_s + self.device.pin_timeout_s + 2 * self.device.reply_grace_s
        internal = device_steps + self.backend.request_deadline_s + self.resolution.inquiry_bound_s
        if self.api.pos_deadline_s <= internal:
            raise ValueError(
                f"api.pos_deadline_s ({self.api.pos_deadline_s:g}) must exceed device.card_timeout_s + "
                f"device.pin_timeout_s + 2 x device.reply_grace_s + backend.request_deadline_s + "
                f"resolution.inquiry_bound_s ({internal:g}): the POS must never give up before misbridge does"
            )
        if self.resolution.reversal_backoff_max_s < self.resolution.reversal_backoff_initial_s:
            raise ValueError("resolution.reversal_backoff_max_s must be >= resolution.reversal_backoff_initial_s")
        if self.backend.request_deadline_s <= self.backend.connect_timeout_s:
            raise ValueError("backend.request_deadline_s must exceed backend.connect_timeout_s")
        self._lanes_distinct()
        self._ports_distinct()
        return self

    def _lanes_distinct(self) -> None:
        """Two lanes never share a name, a pad or a deviceNo."""
        for field, what in (("name", "name"), ("device_url", "device_url"), ("device_no", "device_no")):
            seen: set[str] = set()
            for index, lane in enumerate(self.lanes):
                value = str(getattr(lane, field))
                if value in seen:
                    raise ValueError(f"lanes[{index}].{what} {value!r} is already another lane's")
                seen.add(value)

    def _ports_distinct(self) -> None:
        """No two doors on one port: api.socket_port, api.http_port (unless on a Unix socket), the lanes' ports.

        Two of misbridge's own doors would not even refuse each other at bind time (both set
        SO_REUSEADDR and neither listens yet), so this is the only place that sees it.
        """
        doors: list[tuple[int | None, str]] = [(self.api.socket_port, "api.socket_port")]
        if self.api.http_socket is None:
            doors.append((self.api.http_port, "api.http_port"))
        doors += [(lane.socket_port, f"lanes[{index}].socket_port") for index, lane in enumerate(self.lanes)]
        taken: dict[int, str] = {}
        for port, setting in doors:
            if not port:  # None: the lane has no port of its own; 0: any free port
                continue
            if port in taken:
                raise ValueError(f"{setting} {port} is already {taken[port]}: give each door a port of its own")
            taken[port] = setting


def load_settings(config_path: Path | None = None, **overrides: object) -> Settings:
    """Build settings from the TOML file (if any), the environment and ``overrides``.

    Raises:
        ConfigError: the file is missing or a value is invalid; the message names each key.
    """
    if config_path is not None and not config_path.is_file():
        raise ConfigError(f"configuration file {config_path} does not exist")
    token = _CONFIG_FILE.set(config_path)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        source = config_path or os.environ.get("MISBRIDGE_CONFIG") or "the environment"
        problems = describe_errors(err)
        # One problem on the same line: `misbridge serve`'s refusal is then one line in the journal.
        problems = " " + problems.strip() if "\n" not in problems else "\n" + problems
        raise ConfigError(f"invalid configuration in {source}:{problems}") from err
    except ValueError as err:
        raise ConfigError(f"invalid configuration: {err}") from err
    finally:
        _CONFIG_FILE.reset(token)


def describe_errors(err: ValidationError) -> str:
    """One line per problem: the dotted key, the reason, and the value that was given."""
    lines = []
    for problem in err.errors(include_url=False):
        key = ".".join(str(part) for part in problem["loc"])
        reason = str(problem["msg"]).removeprefix("Value error, ")
        given = f" (got {problem['input']!r})" if problem["type"] not in ("missing", "value_error") else ""
        if problem["type"] == "extra_forbidden":
            reason, given = "unknown setting (misspelt?)", ""
        # A check across sections (the timers, the ports) names its settings in its own message.
        lines.append(f"  {key}: {reason}{given}" if key else f"  {reason}")
    return "\n".join(lines)
