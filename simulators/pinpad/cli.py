"""``misbridge-sim pinpad``: run the virtual PIN pad on a pty until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import IO, Any

from simulators.cards import CARDS, DEFAULT_CARD
from simulators.crypto import TEST_KEY_SEED, TEST_MASTER_KEY_HEX, day_key
from simulators.pinpad.control import ControlServer
from simulators.pinpad.customer import Action, Customer
from simulators.pinpad.device import SERIAL_NO, SimulatedPinPad
from simulators.pinpad.faults import EVENTS, Faults, Scenario, load_scenario

#: Fault flag (argparse dest) -> Faults field.
_FAULT_FLAGS = {
    "nak": "nak",
    "withhold_ack": "withhold_ack",
    "bad_lrc": "bad_lrc",
    "garbage": "garbage",
    "duplicate": "duplicate",
    "silence": "silence_s",
    "slow_ms": "slow_ms",
    "unplug_after": "unplug_after",
    "cut_frame": "cut_frame",
    "nak_rate": "nak_rate",
    "bad_lrc_rate": "bad_lrc_rate",
    "fault_seed": "seed",
}
#: Pad option (argparse dest) -> (scenario [pad] key, built-in default).
_PAD_OPTIONS: dict[str, tuple[str, Any]] = {
    "card": ("card", DEFAULT_CARD),
    "pin": ("pin", None),
    "action": ("action", Action.PAY.value),
    "timeout_cap": ("timeout_cap", 60.0),
    "card_delay": ("card_delay", 0.0),
    "pin_delay": ("pin_delay", 0.0),
    "scanner": ("scanner", True),
    "legacy": ("legacy", False),
    "reset_on_open": ("reset_on_open", True),
    "session_start": ("session_start", True),
    "keys": ("keys", "provisioned"),
    "serial_no": ("serial_no", SERIAL_NO),
}
#: The terminal ``--keys signed-in`` plays: misbridge's default ``identity.device_no``.
SIGNED_IN_DEVICE_NO = "POS01"


def signed_in_key_hex(today: date | None = None) -> str:
    """The working key the backend simulator issues to POS01 signing in ``today`` (default: the local date).

    What the pad holds after misbridge, as POS01, signed in and loaded the key: for work on the pad
    without misbridge (the conformance kit's card and busy checks need a key in slot 1). The
    backend simulator still answers ``A0`` until POS01 has signed in there.
    """
    return day_key(TEST_KEY_SEED, SIGNED_IN_DEVICE_NO, today or date.today()).hex().upper()


#: ``--keys``: what the pad holds at start (docs/device-protocol.md §11), as (master key, working key).
#: A function: the signed-in working key is the day's, read when the pad starts.
KEY_STATES: dict[str, Callable[[], tuple[str, str]]] = {
    "signed-in": lambda: (TEST_MASTER_KEY_HEX, signed_in_key_hex()),
    "provisioned": lambda: (TEST_MASTER_KEY_HEX, ""),
    "unprovisioned": lambda: ("", ""),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the PIN-pad simulator options to ``parser``."""
    parser.add_argument(
        "--card",
        default=None,
        choices=sorted(CARDS),
        help=f"card the default customer presents (default: {DEFAULT_CARD})",
    )
    parser.add_argument(
        "--pin", default=None, help="PIN the default customer types, e.g. a wrong one (default: the card's PIN)"
    )
    parser.add_argument(
        "--action",
        default=None,
        choices=[a.value for a in Action],
        help="what the default customer does (default: pay)",
    )
    parser.add_argument(
        "--link",
        default=None,
        metavar="PATH",
        help="stable symlink to the pty slave, like a udev rule gives a real pad",
    )
    parser.add_argument(
        "--control", default=None, metavar="PATH", help="Unix socket accepting JSON-line customers for tests"
    )
    parser.add_argument(
        "--timeout-cap",
        type=float,
        default=None,
        metavar="S",
        help="longest wait before answering TIMEOUT (default: 60)",
    )
    parser.add_argument(
        "--card-delay", type=float, default=None, metavar="S", help="seconds the customer takes to present the card"
    )
    parser.add_argument(
        "--pin-delay", type=float, default=None, metavar="S", help="seconds the customer takes to type the PIN"
    )
    parser.add_argument(
        "--scenario",
        default=None,
        metavar="FILE",
        help="TOML scenario: [pad], [faults], [[customers]]; flags given here win",
    )
    parser.add_argument(
        "--trace",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="one line per frame (hex and decoded, PAN masked, encrypted fields elided) on stderr, or appended to FILE",
    )
    faults = parser.add_argument_group(
        "line faults (counts apply to the next N frames; rates to every frame, at random)"
    )
    faults.add_argument("--nak", type=int, default=None, metavar="N", help="NAK the next N host frames")
    faults.add_argument("--withhold-ack", type=int, default=None, metavar="N", help="send no ACK for N host frames")
    faults.add_argument("--bad-lrc", type=int, default=None, metavar="N", help="bad LRC on the next N frames sent")
    faults.add_argument("--garbage", type=int, default=None, metavar="N", help="garbage burst before N frames")
    faults.add_argument("--duplicate", type=int, default=None, metavar="N", help="send the next N frames twice")
    faults.add_argument(
        "--silence", type=float, default=None, metavar="S", help="send nothing for S seconds from the next command"
    )
    faults.add_argument("--slow-ms", type=float, default=None, metavar="MS", help="MS milliseconds per byte sent")
    faults.add_argument(
        "--unplug-after",
        default=None,
        choices=EVENTS,
        metavar="EVENT",
        help=f"unplug once this frame was acknowledged: {', '.join(EVENTS)}",
    )
    faults.add_argument(
        "--cut-frame", action="store_const", const=True, default=None, help="send half of the next frame, then unplug"
    )
    faults.add_argument(
        "--nak-rate", type=float, default=None, metavar="P", help="NAK each host frame with probability P (0 <= P < 1)"
    )
    faults.add_argument(
        "--bad-lrc-rate",
        type=float,
        default=None,
        metavar="P",
        help="bad LRC on each frame sent, resends included, with probability P (0 <= P < 1)",
    )
    faults.add_argument(
        "--fault-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the rate faults' random draws (default: 0; same seed, same faults)",
    )
    parser.add_argument(
        "--no-scanner",
        dest="scanner",
        action="store_const",
        const=False,
        default=None,
        help="a pad without a code scanner: READ_CODE is keyed in, scan-only answers RESULT 10",
    )
    parser.add_argument(
        "--legacy",
        action="store_const",
        const=True,
        default=None,
        help="a pad from before READ_CODE, CHOOSE and TRANS_TYPE (answers RESULT 07, shows a sale)",
    )
    parser.add_argument(
        "--keep-link-on-open",
        dest="reset_on_open",
        action="store_const",
        const=False,
        default=None,
        help="keep the link state when the host reopens the pty; only LINK_RESET resets it (a pad behind a bridge)",
    )
    parser.add_argument(
        "--no-session-start",
        dest="session_start",
        action="store_const",
        const=False,
        default=None,
        help="a mispos-v1 pad that does not know LINK_RESET (NAKs it, as SEQ 0)",
    )
    parser.add_argument(
        "--keys",
        default=None,
        choices=sorted(KEY_STATES),
        help="keys the pad holds at start: provisioned (the test master key, working-key slots empty: "
        "misbridge signs in and loads the day's key at start-up; the default), signed-in (also the "
        f"working key the backend simulator issues to {SIGNED_IN_DEVICE_NO} today, in slot 1: for the pad "
        "without misbridge), unprovisioned (transport key only: misbridge pad provision first)",
    )
    parser.add_argument(
        "--serial-no",
        default=None,
        help=f"SERIAL_NO in DEVICE_INFO (default {SERIAL_NO}; another one plays a replaced pad)",
    )
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="ask on the terminal for the card, the PIN, the code scanned or keyed, the option chosen",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="trace every message on stderr (masked PAN only; never tracks or PIN blocks)",
    )


def build_pad(
    args: argparse.Namespace,
    trace: Callable[[str], None] | None = None,
    ask: Callable[[str], Awaitable[str]] | None = None,
) -> SimulatedPinPad:
    """A pad configured from the scenario file (if any) and the flags, flags winning.

    Raises:
        ValueError: an invalid ``--pin``, fault value or scenario file, or a ``--link`` in a missing folder.
    """
    scenario = load_scenario(args.scenario) if getattr(args, "scenario", None) else Scenario()
    pad_opts = {dest: scenario.pad.get(key, default) for dest, (key, default) in _PAD_OPTIONS.items()}
    pad_opts.update({dest: getattr(args, dest) for dest in _PAD_OPTIONS if getattr(args, dest, None) is not None})
    fault_values = scenario.faults.settings() | {
        field: getattr(args, dest) for dest, field in _FAULT_FLAGS.items() if getattr(args, dest, None) is not None
    }
    Customer(pad_opts["card"], pad_opts["pin"], pad_opts["action"])  # validates --pin and --action
    check_link_folder(args.link)
    if pad_opts["keys"] not in KEY_STATES:
        raise ValueError(f"keys must be one of {', '.join(sorted(KEY_STATES))}, not {pad_opts['keys']!r}")
    master_key_hex, working_key_hex = KEY_STATES[pad_opts["keys"]]()
    pad = SimulatedPinPad(
        default_card=pad_opts["card"],
        default_pin=pad_opts["pin"],
        default_action=pad_opts["action"],
        timeout_cap_s=float(pad_opts["timeout_cap"]),
        card_delay_s=float(pad_opts["card_delay"]),
        pin_delay_s=float(pad_opts["pin_delay"]),
        link=args.link,
        faults=Faults(**fault_values),
        trace=trace,
        ask=ask,
        scanner=bool(pad_opts["scanner"]),
        legacy=bool(pad_opts["legacy"]),
        reset_on_open=bool(pad_opts["reset_on_open"]),
        session_start=bool(pad_opts["session_start"]),
        master_key_hex=master_key_hex,
        working_key_hex=working_key_hex,
        serial_no=str(pad_opts["serial_no"]),
    )
    for customer in scenario.customers:
        pad.enqueue_customer(customer)
    for code in scenario.codes:
        pad.prompts.enqueue(code)
    for choice in scenario.choices:
        pad.prompts.enqueue(choice)
    return pad


def check_link_folder(link: str | None) -> None:
    """Refuse a ``--link`` whose folder does not exist, saying how to fix it.

    Checked before the pty is made: the symlink is created inside that folder, and a technician
    who typed ``--link /run/misbridge/pad`` on a fresh machine should read what to do, not a traceback.

    Raises:
        ValueError: the folder is missing, or is not a folder.
    """
    if link is None:
        return
    folder = Path(link).parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(
            f"--link {link}: the folder {folder} {what}; create it first (mkdir -p {folder}) "
            "or give a path in an existing folder (e.g. /tmp/mispos-sim)"
        )


def _trace_sink(target: str | None) -> tuple[Callable[[str], None] | None, IO[str] | None]:
    if target is None:
        return None, None
    if target == "-":
        return lambda line: print(line, file=sys.stderr, flush=True), None
    stream = open(target, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed by run()
    return lambda line: print(line, file=stream), stream


async def _terminal_asker() -> Callable[[str], Awaitable[str]]:
    """Questions on stdout, answers from stdin, read without blocking the event loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def ask(question: str) -> str:
        print(question, end="", flush=True)
        return (await reader.readline()).decode("utf-8", "replace").strip()

    return ask


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
        trace, trace_file = _trace_sink(getattr(args, "trace", None))
    except OSError as err:
        print(f"misbridge-sim pinpad: cannot open the trace file: {err}", file=sys.stderr)
        return 2
    ask = await _terminal_asker() if getattr(args, "interactive", False) else None
    try:
        pad = build_pad(args, trace, ask)
    except ValueError as err:
        print(f"misbridge-sim pinpad: {err}", file=sys.stderr)
        if trace_file is not None:
            trace_file.close()
        return 2
    if getattr(args, "verbose", False):
        logging.basicConfig(
            level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    control = ControlServer(pad, args.control) if args.control else None
    try:
        try:
            await pad.start()
        except OSError as err:  # the folder checked above vanished, or is not writable
            print(
                f"misbridge-sim pinpad: cannot make the link {args.link}: {err.strerror or err}; "
                "give a new file name in a folder you may write to (e.g. /tmp/mispos-sim)",
                file=sys.stderr,
            )
            return 2
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
        if pad.faults.injected:
            # One line for whoever measures under faults (bench/faults.py reads it from the log).
            print(f"misbridge-sim pinpad: faults injected: {pad.faults.summary()}", file=sys.stderr, flush=True)
        if trace_file is not None:
            trace_file.close()
    return 0
