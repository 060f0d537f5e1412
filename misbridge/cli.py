"""The ``misbridge`` command: ``serve``, ``demo`` and ``check-config``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from loguru import logger

from misbridge import __version__, systemd
from misbridge.config import Settings, load_settings
from misbridge.daemon import Daemon, load_signing_key, wait_for_stop_signal
from misbridge.errors import ConfigError
from misbridge.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="misbridge", description="e-Buy cashier-side middleware")
    parser.add_argument("--version", action="version", version=f"misbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", type=Path, help="TOML configuration file (default: $MISBRIDGE_CONFIG)")
    serve.add_argument(
        "--simulators", action="store_true",
        help="start the PIN-pad and backend simulators and wire the daemon to them (bench / POS development)",
    )  # fmt: skip
    demo = commands.add_parser("demo", help="run one card redemption on the simulators and print it")
    demo.add_argument("--card", help="test card the simulated customer presents (default: points-cash)")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the daemon's log lines")
    demo.add_argument(
        "--scenario", default="approve", choices=["approve", "lost-reply", "lost-reply-void"],
        help="approve (default); lost-reply: the backend's answer is lost and misbridge inquires; "
        "lost-reply-void: inquiries fail too and misbridge voids the sale",
    )  # fmt: skip
    check = commands.add_parser("check-config", help="validate a configuration file and print every problem")
    check.add_argument("--config", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``misbridge`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            configure_logging("INFO" if args.verbose else "WARNING")
            from misbridge.demo import run_demo

            return asyncio.run(run_demo(sys.stdout, card=args.card, scenario=args.scenario))
        if args.command == "check-config":
            load_settings(args.config)
            print(f"{args.config}: OK")
            return 0
        return asyncio.run(_serve(args.config, simulators=args.simulators))
    except ConfigError as err:
        print(f"misbridge: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _serve(config: Path | None, *, simulators: bool) -> int:
    settings = load_settings(config)
    configure_logging(settings.log_level)
    if not simulators:
        return await _run_daemon(settings)
    from misbridge.simlaunch import launched_simulators

    with tempfile.TemporaryDirectory(prefix="misbridge-sim-") as tmp:
        workdir = Path(tmp)
        async with launched_simulators(workdir) as sims:
            wired = settings.model_copy(update={
                "device": settings.device.model_copy(update={"url": str(sims.device_path)}),
                "backend": settings.backend.model_copy(update={
                    "url": sims.backend_url,
                    "signing": settings.backend.signing.model_copy(update={"key_file": sims.signing_key_file}),
                }),
                "journal": settings.journal.model_copy(update={"path": workdir / "journal.db"}),
            })  # fmt: skip
            print(f"PIN pad simulator: {sims.device_path} (customer control socket {sims.control_path})")
            print(f"backend simulator: {sims.backend_url}")
            print(f"journal (temporary): {workdir / 'journal.db'}", flush=True)
            return await _run_daemon(wired)


async def _run_daemon(settings: Settings) -> int:
    daemon = Daemon(settings, signing_key=load_signing_key(settings))
    systemd.status("starting: journal, PIN pad link, recovery of interrupted transactions")
    await daemon.start()
    systemd.ready(f"serving: e-Buy socket {settings.api.host}:{daemon.socket_port}, HTTP port {daemon.http_port}")
    watchdog = asyncio.create_task(systemd.watchdog_loop(daemon.is_alive), name="systemd watchdog")
    print(
        f"misbridge serving: e-Buy socket {settings.api.host}:{daemon.socket_port}, "
        f"HTTP http://{settings.api.host}:{daemon.http_port}  (Ctrl-C to stop)",
        flush=True,
    )
    try:
        await wait_for_stop_signal()
        logger.info("stop requested")
    finally:
        systemd.stopping("draining transactions in flight")
        await daemon.stop()
        watchdog.cancel()  # after stop: the pings go on while running transactions drain
    return 0
