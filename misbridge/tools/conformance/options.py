"""The options of ``misbridge conformance``, apart from the kit.

``misbridge``'s parser lists every command's options whatever command runs, ``serve`` included;
this module is all of the kit that the daemon's start-up imports (the checks, their vectors and
the raw host load only when ``conformance`` runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``misbridge conformance``."""
    parser.add_argument(
        "--device-url",
        metavar="URL",
        help="the pad: /dev/mispos, /dev/ttyACM0, socket://host:port, usb://VID:PID (needed except with --list)",
    )
    parser.add_argument("--baudrate", type=int, default=115200, help="line speed (default 115200)")
    parser.add_argument(
        "--customer",
        action="store_true",
        help="someone is at the pad: run the card, PIN, code, choice and cable checks, with instructions on screen",
    )
    parser.add_argument(
        "--sim-control",
        metavar="PATH",
        help="misbridge-sim pinpad's control socket: the kit scripts the simulated customer",
    )
    parser.add_argument(
        "--test-keys",
        action="store_true",
        help="the pad holds the test keys of docs/device-protocol.md §11 (transport key 3131...31, master key"
        " CA5D...E9): run the key checks, which load keys and put back the ones found when they are test keys",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("conformance-report.json"),
        metavar="FILE",
        help="the JSON report (default conformance-report.json)",
    )
    parser.add_argument("--text", type=Path, metavar="FILE", help="also write the readable report to FILE")
    parser.add_argument(
        "--only", action="append", metavar="CHECK", help="run only this check (repeatable); ids in the report"
    )
    parser.add_argument("--list", action="store_true", help="list the checks with their sections and exit")
