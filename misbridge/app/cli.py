"""The ``misbridge`` command: serve, demo, check-config, status, journal, reconcile, probe, conformance and pad."""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from loguru import logger

from misbridge import __version__
from misbridge.app.demo_list import DEFAULT_DEMO_CARD, DEMO_CARDS, DEMO_SCENARIOS, scenario_list
from misbridge.app.status import (
    DEFAULT_TIMEOUT_S,
    EXIT_UNREACHABLE,
    NoHealth,
    api_token,
    describe,
    health_target,
    read_health,
)
from misbridge.config.secrets import use_installed_credentials
from misbridge.config.settings import DEFAULT_CONFIG_PATH, ApiSettings, Settings, load_settings
from misbridge.config.settings import JournalSettings as JournalConfig
from misbridge.ebuy import jsonio
from misbridge.errors import ConfigError, InvalidTransition, JournalError
from misbridge.host import systemd
from misbridge.journal import SCHEMA_VERSION
from misbridge.journal.lanes import LaneFilter
from misbridge.journal.queries import STATE_FILTERS
from misbridge.journal.records import KeyCallKind
from misbridge.journal.schema import KEY_CALL_KINDS
from misbridge.journal.store import StateConflictError
from misbridge.telemetry.logs import configure_logging
from misbridge.tools import journal as journaltool

if TYPE_CHECKING:
    from misbridge.app.daemon import Daemon

# Each command imports the modules only it runs inside its own branch below (the daemon, the
# demo, reconcile, the kit...): every command pays for what this module imports, `serve`'s
# start-up included (docs/performance.md; tests/system/test_serve_imports.py).

#: Most simulated lanes ``--lanes`` starts (each is a pad simulator process).
MAX_SIMULATED_LANES = 32

#: The commands that read no configuration: ``--config`` before them is refused, not silently ignored.
CONFIGLESS_COMMANDS: Final = frozenset({"demo", "probe", "conformance"})

#: The ports systemd/misbridge.service lets the daemon bind (its SocketBindAllow= lines; a test compares).
UNIT_SOCKET_BIND_ALLOW: Final = ("tcp:9100", "tcp:9101", "tcp:9110-9139")

#: How long after ready serve resumes the garbage collector ``python -m misbridge`` paused.
RESUME_GC_AFTER_READY_S: Final = 0.5

_CONFIG_HELP: Final = "TOML configuration (default: $MISBRIDGE_CONFIG, else /etc/misbridge/misbridge.toml if it exists)"


def _shared_option(flag: str, help_text: str, *, owner: bool = False) -> argparse.ArgumentParser:
    """A ``parents=`` parser with one option that a command shares with the subcommands below it.

    Each of them takes it, so it may stand before or after a subcommand (``misbridge journal list
    --journal X`` and ``misbridge journal --journal X list``). Only the owner, the highest parser
    that takes it, gives it a default (``None``); the others take it with ``default=SUPPRESS``:
    argparse copies a subcommand's values, defaults included, over those parsed before it, so a
    default below the owner would erase the value given before the subcommand.
    """
    holder = argparse.ArgumentParser(add_help=False)
    default = None if owner else argparse.SUPPRESS
    holder.add_argument(flag, type=Path, metavar="FILE", default=default, help=help_text)
    return holder


def _config(help_text: str = _CONFIG_HELP) -> argparse.ArgumentParser:
    """``--config`` for a command below the top (the top parser owns it)."""
    return _shared_option("--config", help_text)


def _ports_help() -> str:
    """Where the ports of ``serve`` are set, and what the unit lets it bind (``serve --help``)."""
    fields = ApiSettings.model_fields
    *single, lane_range = UNIT_SOCKET_BIND_ALLOW
    return (
        f"Ports: the e-Buy socket door listens on api.socket_port (default {fields['socket_port'].default}) "
        f"and the HTTP door on api.http_port (default {fields['http_port'].default}), on api.host, in the TOML "
        "configuration's [api]; a lane may have an e-Buy socket port of its own, [[lanes]] socket_port. "
        f"As a service, the unit (systemd/misbridge.service) lets misbridge bind only {', '.join(single)} and "
        f"{lane_range} (SocketBindAllow=): another port needs its own SocketBindAllow=tcp:PORT in a drop-in "
        "(systemctl edit misbridge, [Service] section), or the bind is refused. An HTTP door on a Unix socket "
        "(api.http_socket) needs none. docs/operations.md, 'Network: the backend must be allowed explicitly'."
    )


def _parser() -> argparse.ArgumentParser:
    top_config = _shared_option(
        "--config",
        f"{_CONFIG_HELP}; for every command but {', '.join(sorted(CONFIGLESS_COMMANDS))}, before or after it",
        owner=True,
    )
    parser = argparse.ArgumentParser(
        prog="misbridge", description="e-Buy cashier-side middleware", parents=[top_config]
    )
    parser.add_argument("--version", action="version", version=f"misbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the daemon", description="Run the daemon (what the misbridge service runs).",
        epilog=_ports_help(), parents=[_config("TOML configuration file (default: $MISBRIDGE_CONFIG)")],
    )  # fmt: skip
    serve.add_argument(
        "--simulators", action="store_true",
        help="start the PIN-pad and backend simulators and wire the daemon to them (bench / POS development)",
    )  # fmt: skip
    serve.add_argument(
        "--lanes", type=_lane_count, default=None, metavar="N",
        help="with --simulators: N lanes, each with a simulated PIN pad (lane1..laneN, deviceNo POS01..); "
        "default: the configuration's [[lanes]], else 1",
    )  # fmt: skip
    demo = commands.add_parser(
        "demo", help="run a scenario (a card sale by default) on the simulators and print it",
        epilog=scenario_list(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    demo.add_argument(
        "--card", choices=DEMO_CARDS, metavar="NAME",
        help=f"test card the simulated customer presents: {', '.join(DEMO_CARDS)} (default: {DEFAULT_DEMO_CARD})",
    )  # fmt: skip
    demo.add_argument(
        "--lanes", type=_lane_count, metavar="N",
        help="N lanes, each with its own simulated PIN pad, selling at the same time: one receipt per lane",
    )  # fmt: skip
    demo.add_argument("-v", "--verbose", action="store_true", help="show the daemon's log lines")
    demo.add_argument(
        "--scenario", default="approve", choices=list(DEMO_SCENARIOS), metavar="NAME",
        help="the scenario (default: approve); every one is listed below",
    )  # fmt: skip
    commands.add_parser(
        "check-config", help="run the configuration check misbridge serve runs, and print every problem",
        description="Run exactly the checks misbridge serve runs before it starts: every setting, the signing key "
        "and API token as serve looks them up ($CREDENTIALS_DIRECTORY, else /etc/misbridge/credentials, or the "
        "configured file), the listen address, the ports (no two doors on one), the allow-list's users and groups, "
        "each lane's pad driver, the backend URLs and TLS files. Every problem is printed with its setting and "
        "the fix. Not checked, because only the running daemon sees them: a port held by another program, the "
        "PIN pad, the backend's reachability. Exit status: 0 serve would start, 2 it would refuse.",
        parents=[_config("the configuration file to check (required)")],
    )  # fmt: skip
    _add_status_parser(commands)
    _add_journal_parser(commands)
    _add_reconcile_parser(commands)
    probe = commands.add_parser(
        "probe", help="list serial ports and USB PIN pads; --try URL asks a pad for its DEVICE_INFO"
    )
    probe.add_argument(
        "--try",
        dest="try_url",
        metavar="URL",
        help="device path or URL to ask (/dev/mispos, /dev/ttyACM0, usb://1209:0001)",
    )
    probe.add_argument("--baudrate", type=int, default=115200, help="line speed for --try (default 115200)")
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the pad (default 5)")
    from misbridge.tools.conformance.options import add_arguments as conformance_arguments

    conformance = commands.add_parser(
        "conformance",
        help="certify a PIN pad: every rule of the mispos-v1 protocol checked, with a report",
        description="The conformance kit for pad makers (docs/operations.md, 'Certifying a PIN pad'): "
        "every check cites its section of docs/device-protocol.md; exit status 1 when one fails, 2 when nothing "
        "was checked (the pad's port held by another program, e.g. the misbridge service).",
    )
    conformance_arguments(conformance)
    pad = commands.add_parser("pad", help="PIN pad keys: provision a new or replaced pad", parents=[_config()])
    pad_commands = pad.add_subparsers(dest="pad_command", required=True)
    provision = pad_commands.add_parser(
        "provision",
        help="load the store's master key into the pad (DownloadKey), then sign in and load today's key",
        description="Run at install or after a pad was replaced, with the misbridge service stopped "
        "(systemctl stop misbridge): the service owns the pad's port. Needs the rootKey credential "
        "ebuy-root-key (or keys.root_key_file). docs/operations.md, 'Keys'.",
        parents=[_config()],
    )
    provision.add_argument(
        "--lane", metavar="NAME",
        help="the [[lanes]] lane whose pad to provision, under its deviceNo and shopNo (default: the default lane; "
        "'default' names it too)",
    )  # fmt: skip
    return parser


def _add_status_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "status", help="is the running misbridge ready? the pad, its keys, the sign-in, the backend",
        description="Ask the running misbridge for its /health through its HTTP door and print it for a "
        "technician (docs/operations.md, 'misbridge status'). Exit status: 0 ready, 1 not ready, "
        "2 misbridge not reachable.", parents=[_config()],
    )  # fmt: skip
    command.add_argument(
        "--url", help="ask this door instead of the configured one: http://HOST:PORT or unix:/PATH of the socket"
    )
    command.add_argument("--json", action="store_true", help="print /health's JSON as misbridge sent it")
    command.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_S:g})",
    )  # fmt: skip


def _add_reconcile_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "reconcile", help="end of day: upload a business day to e-Buy (batchUpload), compare, and report",
        description="Upload the business day's transactions with batchUpload, ask the summary, and report "
        "every record the backend disagrees about with what to do (docs/operations.md, 'End of day'). "
        "The report is printed and written as JSON and CSV under <journal directory>/reports/<date>/; with "
        "several [[lanes]], one per lane, each under its own deviceNo. "
        "Exit status: 0 everything matches, 3 mismatches, 1 backend unreachable or failed (run again), "
        "2 configuration or usage error.", parents=[_config()],
    )  # fmt: skip
    which = command.add_mutually_exclusive_group()
    which.add_argument(
        "--date", type=_business_date, help="business day YYYY-MM-DD (default: the last complete business day)"
    )
    which.add_argument(
        "--since",
        type=_since,
        metavar="DATE|last",
        help="every business day from DATE (YYYY-MM-DD) to the last complete one, oldest first; 'last': every "
        "day after the newest one that has a report (what the timer runs, so a day the machine was off is not "
        "skipped)",
    )
    command.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    command.add_argument(
        "--lane", metavar="NAME",
        help="only this [[lanes]] lane ('default': the default lane); default: every lane, one report each",
    )  # fmt: skip


def _lane_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_SIMULATED_LANES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lanes from 1 to {MAX_SIMULATED_LANES}")
    return count


def _since(text: str) -> date | Literal["last"]:
    if text == "last":
        return "last"
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a date YYYY-MM-DD nor 'last'") from None


def _business_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


_JOURNAL_HELP: Final = "journal file (default: journal.path of the configuration)"


def _add_journal_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    journal = commands.add_parser(
        "journal", help="list, show, export (masked), purge or resolve the transaction journal; list key calls; "
        "its schema version",
        description="Read the journal read-only (safe while misbridge runs), purge old final transactions, "
        "or record how a transaction left for a person (needs_manual) was resolved. --config and --journal "
        "may stand before or after the subcommand.",
        parents=[_config(), _shared_option("--journal", _JOURNAL_HELP, owner=True)],
    )  # fmt: skip
    tools = journal.add_subparsers(dest="journal_command", required=True)

    def tool(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        # Each subcommand takes the journal's options too, so they work after it (issue 17).
        parents = [_config(), _shared_option("--journal", _JOURNAL_HELP)]
        return tools.add_parser(name, help=help_text, description=description, parents=parents)

    since_help = "only transactions created since then: 7d, 12h, 30m or an ISO date/time (local time if naive)"
    states = ", ".join(state for state in STATE_FILTERS if state not in journaltool.STATE_GROUPS)
    state_help = f"only this state: {states}; or final / open (every final / every other one)"
    lane_help = "only this POS lane's transactions; 'default' for the default lane's (default: every lane)"
    listing = tool("list", "newest transactions first, as a table")
    listing.add_argument("--since", help=since_help)
    listing.add_argument("--state", choices=STATE_FILTERS, metavar="STATE", help=state_help)
    listing.add_argument("--lane", type=_lane, help=lane_help)
    listing.add_argument("--limit", type=_positive_count, default=50, help="at most this many lines (default 50)")
    show = tool("show", "one transaction: request, answer, transitions, backend calls, reversal")
    show.add_argument("trace_no", metavar="TRACENO")
    export = tool("export", "every matching transaction, oldest first, for reconciliation")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--since", help=since_help)
    export.add_argument("--state", choices=STATE_FILTERS, metavar="STATE", help=state_help)
    export.add_argument("--lane", type=_lane, help=lane_help)
    export.add_argument("--output", type=Path, help="write to this file instead of standard output")
    _add_key_calls_parser(tool)
    purge = tool("purge", "delete final transactions older than the retention (never open ones)")
    purge.add_argument("--older-than-days", type=int, help="retention in days (default: journal.retention_days)")
    purge.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    resolve = tool(
        "resolve", "record how a needs_manual transaction was settled with e-Buy (closes its reversal)",
        description="After reconciling a needs_manual transaction with e-Buy by hand, record the outcome: a sale "
        "as voided, approved or declined (an accumulating, which cannot be voided: approved or declined), a void "
        "or refund as approved or declined. The transaction and its reversal "
        "are closed in one write, with the note in its trail. Safe while misbridge runs.",
    )  # fmt: skip
    resolve.add_argument("trace_no", metavar="TRACENO")
    resolve.add_argument(
        "--as",
        dest="outcome",
        required=True,
        choices=["voided", "approved", "declined"],
        help="what e-Buy holds: voided, approved or declined (sale); approved or declined (void, refund)",
    )
    resolve.add_argument(
        "--note", required=True, help="who decided and on what evidence (e.g. 'e-Buy support ticket 4711, J. Li')"
    )
    schema = tool(
        "schema", "the journal's schema version and the oldest misbridge that may open it (read-only)",
        description="Print 'schema N, readable by code >= M, this misbridge knows K' without migrating or "
        "writing anything (for package scripts: may this release, or the one rolled back to, open the "
        "journal?). Exit 0 when this misbridge opens the journal (an older one it first upgrades, after a "
        "backup), 1 when it refuses it or cannot read it.",
    )  # fmt: skip
    schema.add_argument("--json", action="store_true", help='{"schema": N, "minReader": M, "knows": K, "opens": ...}')


def _add_key_calls_parser(tool: Callable[..., argparse.ArgumentParser]) -> None:
    # Not "calls": `journal show` lists a transaction's backendCalls (inquiries, voids), another table.
    command = tool(
        "key-calls", "misbridge's own calls, newest first: key downloads, sign-ins (with the KCV), end of day",
        description="List the requests misbridge sent under a traceNo of its own, outside any transaction "
        "(the key_calls table): downloadKey, signIn (with the check value of the key it issued, never a key), "
        "and the end of day's batchUpload and summary; when each was allocated, and how it ended: answered "
        f"(with its return code), unknown (no usable reply) or '{journaltool.NO_RESULT_YET}'. Read-only: "
        "safe while misbridge runs.",
    )  # fmt: skip
    command.add_argument(
        "--kind", type=_key_call_kind,
        help=f"only this kind: {', '.join(KEY_CALL_KINDS)} (sign-in and download-key work too)",
    )  # fmt: skip
    command.add_argument(
        "--since", help="only calls allocated since then: 2026-05-01, 7d, 12h, 30m or an ISO date/time (local if naive)"
    )
    command.add_argument(
        "--limit", type=_positive_count, default=journaltool.DEFAULT_KEY_CALLS_LIMIT,
        help=f"at most this many lines (default {journaltool.DEFAULT_KEY_CALLS_LIMIT})",
    )  # fmt: skip
    command.add_argument(
        "--lane", type=_lane, help="only this POS lane's calls; 'default' for the default lane's (default: every lane)"
    )
    command.add_argument("--json", action="store_true", help="print a JSON array instead of a table")


def _lane(text: str) -> LaneFilter:
    """``--lane``: a lane's name, or ``default`` for the default lane."""
    try:
        return LaneFilter.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _key_call_kind(text: str) -> str:
    """``--kind``: a kind as the journal writes it, in any case, with or without ``-``/``_`` (``sign-in``)."""
    wanted = text.replace("-", "").replace("_", "").lower()
    for kind in KEY_CALL_KINDS:
        if kind.lower() == wanted:
            return kind
    raise argparse.ArgumentTypeError(f"{text!r} is not a kind of call: use one of {', '.join(KEY_CALL_KINDS)}")


def _positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` (default ``sys.argv[1:]``) parsed, with the checks argparse cannot make.

    A usage error prints the usage and the reason and exits with status 2 (:class:`SystemExit`),
    as argparse does: ``--config`` for a command that reads no configuration is refused rather
    than ignored, and ``check-config`` needs one (given before or after it).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.config is not None and args.command in CONFIGLESS_COMMANDS:
        parser.error(f"{args.command} reads no configuration: leave out --config")
    if args.command == "check-config" and args.config is None:
        parser.error("check-config needs --config FILE, the configuration to check")
    return args


def resume_garbage_collection() -> bool:
    """Collect once, freeze what is left and turn the collector back on, if ``python -m misbridge`` paused it.

    What is left is the modules (and serve's started daemon), there for the process's life: frozen
    (:func:`gc.freeze`), no later collection walks it again. When the collector runs already (the
    console script, a test calling :func:`main`) nothing is done: freezing a process's objects is
    its owner's call. True when it resumed the collector.
    """
    if gc.isenabled():
        return False
    gc.collect()
    gc.freeze()
    gc.enable()
    return True


def _resume_garbage_collection_after_start() -> None:
    if resume_garbage_collection():
        logger.debug("garbage collection resumed, {} objects of start-up frozen", gc.get_freeze_count())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``misbridge`` console script."""
    args = parse_arguments(argv)
    try:
        if args.command == "serve":  # the collector resumes a moment after the daemon is ready (_run_daemon)
            return asyncio.run(_serve(args.config, simulators=args.simulators, lanes=args.lanes))
        resume_garbage_collection()
        return _command(args)
    except ConfigError as err:
        print(f"misbridge: {err}", file=sys.stderr)
        return 2
    except JournalError as err:  # e.g. serve on a journal it refuses: say why, exit non-zero, do not start
        print(f"misbridge: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _command(args: argparse.Namespace) -> int:
    """Run every command but ``serve``; its exit status."""
    if args.command == "demo":
        return _demo(args)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "journal":
        return _journal(args)
    if args.command == "status":
        return _status(args)
    if args.command == "conformance":
        configure_logging("CRITICAL")
        from misbridge.tools.conformance.kit import main as conformance

        return conformance(args)
    if args.command == "pad":
        settings = load_settings(_config_path(args.config))
        configure_logging("WARNING")
        from misbridge.app.provision import provision_pad

        return asyncio.run(provision_pad(settings, sys.stdout, lane=args.lane))
    if args.command == "reconcile":
        return _reconcile(args)
    return _probe(args)  # the parser's last command


def _probe(args: argparse.Namespace) -> int:
    """``misbridge probe``: list the ports and pads, or ask one pad (``--try``)."""
    configure_logging("CRITICAL")
    from misbridge.tools.probe import run_probe

    status, text = run_probe(args.try_url, baudrate=args.baudrate, timeout=args.timeout)
    print(text, file=sys.stdout if status == 0 else sys.stderr)
    return status


def _check_config(config: Path) -> int:
    """Run serve's configuration check on ``config``: 0 and a summary when serve would start, 2 and every problem."""
    from misbridge.api.policy import CallerPolicy
    from misbridge.app.preflight import NOT_CHECKED, config_problems

    configure_logging("WARNING")  # what serve would warn about (a secret file others can read) shows here too
    credentials = use_installed_credentials()  # from a root shell: the files the unit loads
    settings = load_settings(config)  # a bad key or value: ConfigError, every one named, exit 2
    problems = config_problems(settings)
    if problems:
        print(
            f"misbridge: {config}: misbridge serve would refuse to start, {len(problems)} problem(s):", file=sys.stderr
        )
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{config}: OK")
    for line in _config_summary(settings, credentials):
        print(f"  {line}")
    print("Not checked (only the running misbridge can): " + "; ".join(NOT_CHECKED))
    policy = CallerPolicy.from_settings(settings.api)
    print("Local users allowed on both doors (docs/operations.md, 'Who may talk to misbridge'):")
    for line in policy.summary():
        print(f"  {line}")
    return 0


def _config_summary(settings: Settings, credentials: Path | None) -> list[str]:
    """What a checked configuration serves: lanes, doors, backend, where the credentials come from."""
    api = settings.api
    lines = [
        f"lane {lane.name}: deviceNo {lane.identity.device_no}, PIN pad {lane.device.url}"
        + (f", own e-Buy socket port {lane.socket_port}" if lane.socket_port else "")
        for lane in settings.lane_list()
    ]
    http = f"unix:{api.http_socket}" if api.http_socket else f"{api.host}:{api.http_port}"
    lines.append(f"doors: e-Buy socket {api.host}:{api.socket_port}, HTTP {http}")
    signing = "signed" if settings.backend.signing.enabled else "unsigned (backend.signing.enabled = false)"
    lines.append(f"backend: {settings.backend.url}, {signing}")
    lines.append(f"credentials: {credentials or 'none ($CREDENTIALS_DIRECTORY unset, no /etc/misbridge/credentials)'}")
    return lines


def _config_path(config: Path | None) -> Path | None:
    """``--config``, else $MISBRIDGE_CONFIG (None: settings read it), else the installed file if it exists."""
    if config is None and not os.environ.get("MISBRIDGE_CONFIG") and DEFAULT_CONFIG_PATH.is_file():
        return DEFAULT_CONFIG_PATH
    return config


def _journal(args: argparse.Namespace) -> int:
    """``misbridge journal ...``; 0 done, 1 not found or unreadable, 2 configuration or usage error."""
    settings = load_settings(_config_path(args.config))
    path: Path = args.journal or settings.journal.path
    try:
        since = journaltool.parse_since(args.since) if getattr(args, "since", None) else None
    except ValueError as err:
        print(f"misbridge: {err}", file=sys.stderr)
        return 2
    try:
        if args.journal_command == "list":
            rows = journaltool.list_transactions(path, since=since, state=args.state, limit=args.limit, lane=args.lane)
            print(journaltool.format_table(rows))
        elif args.journal_command == "show":
            view = journaltool.show(path, args.trace_no)
            if view is None:
                print(f"misbridge: no transaction {args.trace_no!r} in {path}", file=sys.stderr)
                return 1
            print(jsonio.pretty(view))
        elif args.journal_command == "export":
            if args.output is None:
                journaltool.export(path, sys.stdout, fmt=args.format, since=since, state=args.state, lane=args.lane)
            else:
                with args.output.open("w", encoding="utf-8", newline="") as out:
                    count = journaltool.export(
                        path, out, fmt=args.format, since=since, state=args.state, lane=args.lane
                    )
                print(f"{count} transaction(s) written to {args.output}", file=sys.stderr)
        elif args.journal_command == "key-calls":
            _journal_key_calls(path, args.kind, since, args.limit, as_json=args.json, lane=args.lane)
        elif args.journal_command == "resolve":
            return _journal_resolve(settings.journal, path, args.trace_no, args.outcome, args.note)
        elif args.journal_command == "schema":
            return _journal_schema(path, as_json=args.json)
        else:
            days = settings.journal.retention_days if args.older_than_days is None else args.older_than_days
            return _journal_purge(settings.journal, path, days, args.dry_run)
    except JournalError as err:
        print(f"misbridge: {err}", file=sys.stderr)
        return 1
    return 0


def _journal_key_calls(
    path: Path,
    kind: KeyCallKind | None,
    since: datetime | None,
    limit: int,
    *,
    as_json: bool,
    lane: LaneFilter | None = None,
) -> None:
    """``journal key-calls``: the table, a JSON array, or one line saying there are none."""
    calls = journaltool.list_key_calls(path, kind=kind, since=since, limit=limit, lane=lane)
    if as_json:
        print(jsonio.pretty([journaltool.key_call_row(call) for call in calls]))
    elif calls:
        print(journaltool.format_key_calls(calls))
    else:
        only = "".join(
            (
                f" of kind {kind}" if kind else "",
                f" since {since:%Y-%m-%d %H:%M %z}" if since else "",
                f" of lane {lane.label}" if lane else "",
            )
        )
        print(f"no calls{only} in {path} (key downloads, sign-ins, end-of-day batchUpload and summary)")


def _journal_schema(path: Path, *, as_json: bool) -> int:
    """``journal schema``: 0 this misbridge opens the journal, 1 it refuses it (newer than it may read)."""
    compat = journaltool.schema_compat(path)
    opens = compat.readable_by(SCHEMA_VERSION)
    if as_json:
        known = {"schema": compat.version, "minReader": compat.min_reader, "knows": SCHEMA_VERSION, "opens": opens}
        print(jsonio.pretty(known))
    else:
        print(compat.describe())
    return 0 if opens else 1


def _journal_purge(config: JournalConfig, path: Path, retention_days: int, dry_run: bool) -> int:
    from misbridge.app import retention
    from misbridge.app.journal_file import open_journal

    if retention_days < 1:
        print("misbridge: the retention must be at least 1 day", file=sys.stderr)
        return 2
    cutoff = retention.retention_cutoff(retention_days)
    if dry_run:
        count = journaltool.purgeable_count(path, cutoff)
        print(f"{count} final transaction(s) last changed before {cutoff:%Y-%m-%d %H:%M} UTC would be purged")
        return 0
    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")
    configure_logging("INFO")

    async def run() -> int:
        async with await open_journal(config, path) as journal:
            return await retention.purge(journal, retention_days)

    count = asyncio.run(run())
    print(f"{count} final transaction(s) last changed before {cutoff:%Y-%m-%d %H:%M} UTC purged")
    return 0


def _journal_resolve(config: JournalConfig, path: Path, trace_no: str, outcome: str, note: str) -> int:
    """``journal resolve``: 0 resolved, 1 unknown traceNo, not needs_manual or an outcome its kind cannot have."""
    from misbridge.app.journal_file import open_journal

    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")

    async def run() -> tuple[str, str | None]:
        async with await open_journal(config, path) as journal:
            state = await journal.resolve(trace_no, outcome, note=note)
            reversal = await journal.reversal(trace_no)
            return state, None if reversal is None else reversal.state

    try:
        state, reversal = asyncio.run(run())
    except StateConflictError as err:
        if err.actual is None:
            print(f"misbridge: no transaction {trace_no!r} in {path}", file=sys.stderr)
        else:
            print(f"misbridge: transaction {trace_no!r} is {err.actual!r}, not 'needs_manual': only a transaction "
                  "misbridge gave to a person can be resolved", file=sys.stderr)  # fmt: skip
        return 1
    except InvalidTransition as err:
        print(f"misbridge: {err}", file=sys.stderr)
        return 1
    closed = "; its reversal is closed (done)" if reversal == "done" else ""
    print(f"{trace_no}: needs_manual -> {state} (resolve_{outcome}){closed}; note: {note}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """``misbridge demo``: 0 when the scenario (or every lane's sale) ended as it should."""
    configure_logging("INFO" if args.verbose else "ERROR")
    if args.lanes is not None:
        if args.scenario != "approve":
            raise ConfigError("--lanes runs card sales; it takes no --scenario")
        from misbridge.app.demo_lanes import run_lanes_demo

        return asyncio.run(run_lanes_demo(sys.stdout, lanes=args.lanes, card=args.card))
    from misbridge.app.demo import run_demo

    return asyncio.run(run_demo(sys.stdout, card=args.card, scenario=args.scenario))


def _reconcile(args: argparse.Namespace) -> int:
    """``misbridge reconcile``: 0 matched, 3 mismatches, 1 backend unreachable or failed, 2 usage error."""
    settings = load_settings(_config_path(args.config))
    configure_logging("ERROR")  # the report is the output; the backend client's info lines would break it
    from misbridge.app.reconcile import run_reconcile

    return asyncio.run(
        run_reconcile(
            settings, sys.stdout, day=args.date, since=args.since, as_json=args.json, err=sys.stderr, lane=args.lane
        )
    )


def _status(args: argparse.Namespace) -> int:
    """``misbridge status``: 0 ready, 1 not ready, 2 no usable answer (or a configuration error)."""
    configure_logging("ERROR")  # a warning about the token file's mode would break the report's lines
    settings = load_settings(_config_path(args.config))
    target = health_target(settings.api, args.url)
    answer = read_health(target, api_token(settings.api), timeout_s=args.timeout)
    if isinstance(answer, NoHealth):
        print(f"misbridge: {answer.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(answer.text.rstrip("\n") if args.json else describe(target, answer))
    return answer.exit_status


async def _serve(config: Path | None, *, simulators: bool, lanes: int | None = None) -> int:
    if lanes is not None and not simulators:
        raise ConfigError("--lanes needs --simulators (a real store lists its lanes in [[lanes]])")
    from misbridge.app.daemon import Daemon, load_signing_key
    from misbridge.app.preflight import require_valid

    settings = load_settings(config)
    configure_logging(settings.log_level)
    if not simulators:
        require_valid(settings)  # the check misbridge check-config runs: exit 2 with every problem
        return await _run_daemon(Daemon(settings, signing_key=load_signing_key(settings)))
    from misbridge.app.simulated import bench_workdir, simulated_daemon

    pad_count = lanes if lanes is not None else max(1, len(settings.lanes))
    if lanes is not None and settings.lanes and lanes != len(settings.lanes):
        raise ConfigError(f"--lanes {lanes}: the configuration lists {len(settings.lanes)} lanes")
    with bench_workdir("misbridge-sim-") as work:  # kept if the run fails: the error may name its simulators.log
        async with simulated_daemon(work.path, settings, start=False, lanes=pad_count) as bench:
            sims = bench.sims
            pads = [(pad.device_path, pad.control_path) for pad in sims.pads] or [(sims.device_path, sims.control_path)]
            for number, (device, control) in enumerate(pads, start=1):
                lane = f"lane {number}: " if len(pads) > 1 else ""
                print(f"{lane}PIN pad simulator: {device} (customer control socket {control})")
            print(f"backend simulator: {sims.backend_url}")
            print(f"journal (temporary): {bench.settings.journal.path}", flush=True)
            require_valid(bench.settings)
            return await _run_daemon(bench.daemon)


async def _run_daemon(daemon: Daemon) -> int:
    from misbridge.app.daemon import wait_for_stop_signal

    settings = daemon.settings
    systemd.status("starting: journal, PIN pad link, recovery of interrupted transactions")
    await daemon.start()
    systemd.ready(f"serving: e-Buy socket {settings.api.host}:{daemon.socket_port}, HTTP port {daemon.http_port}")
    # The one full collection (~20 ms) a moment after ready: not before the first /health 200.
    asyncio.get_running_loop().call_later(RESUME_GC_AFTER_READY_S, _resume_garbage_collection_after_start)
    watchdog = asyncio.create_task(systemd.watchdog_loop(daemon.is_alive), name="systemd watchdog")
    http = (
        f"unix:{settings.api.http_socket}"
        if settings.api.http_socket
        else f"http://{settings.api.host}:{daemon.http_port}"
    )
    print(
        f"misbridge serving: e-Buy socket {settings.api.host}:{daemon.socket_port}, HTTP {http}  (Ctrl-C to stop)",
        flush=True,
    )
    try:
        await wait_for_stop_signal()
        logger.info("stop requested")
    finally:
        systemd.stopping("draining transactions in flight")
        # A sale in flight is finished, never cut (a restart or an upgrade waits for it): ask
        # systemd for the longest a transaction may still take, beyond TimeoutStopSec=.
        systemd.extend_timeout(settings.api.pos_deadline_s)
        await daemon.stop()
        watchdog.cancel()  # after stop: the pings go on while running transactions drain
    return 0
