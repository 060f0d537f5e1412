"""``misbridge-sim backend``: run the e-Buy backend simulator until SIGINT/SIGTERM.

``simulators/cli.py`` owns the top-level parser; it calls :func:`add_arguments` for the
``backend`` sub-command and awaits :func:`run`.

A test that needs the backend to be unreachable for a while stops this process and starts it
again on the same ``--port`` (the socket has SO_REUSEADDR, so the port is free at once); with
``--ledger-file`` the restarted simulator carries on with the same ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from simulators.backend.app import DEFAULT_PREFIX, TEST_SIGNING_KEY, BackendSimulator

DEFAULT_PORT = 9200
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the backend simulator's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}, 0 = any)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"URL path before /{{action}} ({DEFAULT_PREFIX})")
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="file holding the signing key (default: the published test key)",
    )
    parser.add_argument("--no-signing", action="store_true", help="neither verify requests nor sign replies")
    parser.add_argument(
        "--sign-exclude-body", action="store_true", help="leave body out of the signed string (default: in)"
    )
    parser.add_argument(
        "--sign-truncate", type=int, default=0, metavar="N", help="keep N hex chars of the MD5 (0 = all 32)"
    )
    parser.add_argument(
        "--ledger-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="keep the ledger in this JSON file: read at start if present, rewritten after every change",
    )
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="serve https with this certificate")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="the key of --tls-cert")


def signing_key(args: argparse.Namespace) -> str | None:
    """The key ``args`` ask for: None with --no-signing, the file's first line, or the test key.

    Raises:
        OSError: the key file cannot be read.
    """
    if args.no_signing:
        return None
    if args.key_file is None:
        return TEST_SIGNING_KEY
    return str(args.key_file.read_text(encoding="utf-8").strip())


async def run(args: argparse.Namespace) -> int:
    """Serve until cancelled or SIGINT/SIGTERM; returns the exit status (0, or 2 for a bad key or ledger file)."""
    try:
        key = signing_key(args)
    except OSError as err:
        print(f"cannot read --key-file: {err}", file=sys.stderr)
        return 2
    try:
        sim = BackendSimulator(
            signing_key=key,
            include_body=not args.sign_exclude_body,
            truncate=args.sign_truncate,
            prefix=args.prefix,
            ledger_file=args.ledger_file,
        )
    except (OSError, ValueError) as err:
        print(f"cannot use --ledger-file: {err}", file=sys.stderr)
        return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("--tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    url = await sim.start(args.host, args.port, tls_cert=args.tls_cert, tls_key=args.tls_key)
    print(f"e-Buy backend simulator listening on {url}", flush=True)
    try:
        await _wait_for_stop_signal()
    finally:
        await sim.stop()
    return 0


async def _wait_for_stop_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError):  # not the main thread: only cancellation stops us
            continue
        installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
