"""``misbridge-sim customer SOCKET JSON...``: script the simulated pad's next customers from a shell.

Each JSON argument is one line of the pad's control channel (simulators/pinpad/control.py:
``{"card": "prepaid", "pin": "000000"}``, ``{"step": "code", ...}``, ``{"step": "unplug",
"replug_after_s": 2}``, ...); the pad's answer to each is printed. No netcat needed.
Exit status: 0 every line accepted, 1 one refused, 2 the socket cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

from simulators.pinpad.control import MAX_LINE

#: How long the pad may take to answer one line.
REPLY_TIMEOUT_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``customer`` subcommand's arguments."""
    parser.add_argument("socket", type=Path, help="the pad's control socket (printed at start-up, --control PATH)")
    parser.add_argument("lines", nargs="+", metavar="JSON", help='one control line each, e.g. \'{"card": "prepaid"}\'')


def run(args: argparse.Namespace) -> int:
    """Send each line, print each answer; the exit status as the module says."""
    for line in args.lines:
        try:
            json.loads(line)
        except ValueError as err:
            print(f"misbridge-sim customer: not JSON: {line!r} ({err})", file=sys.stderr)
            return 1
    try:
        replies = _exchange(args.socket, args.lines)
    except OSError as err:
        print(
            f"misbridge-sim customer: cannot reach the pad's control socket {args.socket}: {err.strerror or err} "
            "(is the simulator running? it prints the socket at start-up)",
            file=sys.stderr,
        )
        return 2
    for reply in replies:
        print(reply)
    return 0 if all(json.loads(reply).get("ok") for reply in replies) else 1


def _exchange(path: Path, lines: list[str]) -> list[str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REPLY_TIMEOUT_S)
        sock.connect(str(path))
        answers = sock.makefile("rb")
        replies = []
        for line in lines:
            sock.sendall(line.encode() + b"\n")
            replies.append(answers.readline(MAX_LINE).decode().strip())
        return replies
