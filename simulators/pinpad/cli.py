"""``misbridge-sim pinpad``: run the virtual PIN pad on a pty until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from simulators.cards import CARDS, DEFAULT_CARD
from simulators.pinpad.control import ControlServer
from simulators.pinpad.customer import Customer
from simulators.pinpad.device import SimulatedPinPad


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the PIN-pad simulator options to ``parser``."""
    parser.add_argument("--card", default=DEFAULT_CARD, choices=sorted(CARDS),
                        help=f"card the default customer presents (default: {DEFAULT_CARD})")
    parser.add_argument("--pin", default=None, help="PIN the default customer types (default: the card's PIN)")
    parser.add_argument("--link", default=None, metavar="PATH",
                        help="stable symlink to the pty slave, like a udev rule gives a real pad")
    parser.add_argument("--control", default=None, metavar="PATH",
                        help="Unix socket accepting JSON-line customers for tests")
    parser.add_argument("--timeout-cap", type=float, default=60.0, metavar="S",
                        help="longest wait before answering TIMEOUT (default: 60)")
    parser.add_argument("--card-delay", type=float, default=0.0, metavar="S",
                        help="seconds the customer takes to present the card")
    parser.add_argument("--pin-delay", type=float, default=0.0, metavar="S",
                        help="seconds the customer takes to type the PIN")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="trace every message on stderr (masked PAN only; never tracks or PIN blocks)")


def build_pad(args: argparse.Namespace) -> SimulatedPinPad:
    """A pad configured from parsed arguments.

    Raises:
        ValueError: ``--pin`` is not 4..12 digits.
    """
    Customer(args.card, args.pin)  # validates --pin
    return SimulatedPinPad(
        default_card=args.card,
        default_pin=args.pin,
        timeout_cap_s=args.timeout_cap,
        card_delay_s=args.card_delay,
        pin_delay_s=args.pin_delay,
        link=args.link,
    )


def banner(pad: SimulatedPinPad, control: str | None) -> str:
    """The single line printed at start-up."""
    extras = [f"link {pad.link_path}"] if pad.link_path else []
    if control:
        extras.append(f"control {control}")
    suffix = f" ({', '.join(extras)})" if extras else ""
    return f"PIN pad simulator on {pad.slave_path}{suffix}"


async def run(args: argparse.Namespace) -> int:
    """Serve the simulator until cancelled, SIGINT or SIGTERM; returns the exit status."""
    try:
        pad = build_pad(args)
    except ValueError as err:
        print(f"misbridge-sim pinpad: {err}", file=sys.stderr)
        return 2
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    control = ControlServer(pad, args.control) if args.control else None
    try:
        await pad.start()
        if control is not None:
            await control.start()
        print(banner(pad, args.control), flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if control is not None:
            await control.stop()
        with contextlib.suppress(OSError):
            await pad.stop()
    return 0
