"""``misbridge-sim``: the bench simulators, ``pinpad`` and ``backend``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from simulators import customer_cli
from simulators.backend import cli as backend_cli
from simulators.pinpad import cli as pinpad_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="misbridge-sim", description="misbridge bench simulators")
    commands = parser.add_subparsers(dest="command", required=True)
    pinpad_cli.add_arguments(commands.add_parser("pinpad", help="virtual MIS-POS PIN pad on a pty"))
    backend_cli.add_arguments(commands.add_parser("backend", help="e-Buy backend on HTTP"))
    customer_cli.add_arguments(
        commands.add_parser("customer", help="script a running pad simulator's next customers (its control socket)")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``misbridge-sim`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "customer":
        return customer_cli.run(args)
    run = pinpad_cli.run if args.command == "pinpad" else backend_cli.run
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130
