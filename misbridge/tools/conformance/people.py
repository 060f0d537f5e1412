"""Who stands at the pad during a run: nobody, a person at the terminal, or the simulator's script.

Some checks need a customer (present a card, type a PIN, scan a code, press a key) or a technician
(pull the cable and plug it back). :class:`Nobody` cannot do any of it, so those checks are
reported "needs a person at the pad"; :class:`AtTheTerminal` (``--customer``, ``CUSTOMER=1``)
prints what to do and the pad's replies tell the kit when it is done; :class:`SimulatorScript`
(``--sim-control PATH``) queues the simulated customer on ``misbridge-sim pinpad``'s control socket
(JSON lines, simulators/pinpad/control.py) before each step, so a run on the simulator leaves
nothing out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from enum import StrEnum
from typing import Protocol, TextIO


class Act(StrEnum):
    """What a check asks of the person at the pad, before the command that needs it."""

    PAY = "present a test card, then type its PIN and press Enter"
    CANCEL_CARD = "press Cancel when the pad asks for a card (do not present one)"
    REMOVE_CARD = "insert the IC test card, and pull it out when the pad asks for the PIN"
    CARD_ERROR = "present a card the reader cannot read"
    STAY_AWAY = "do not touch the pad until asked"
    CODE = "scan a QR code, or key in 280123121234567890 and press Enter"
    CHOOSE_2 = "press key 2 to choose the second option"
    UNPLUG = "unplug the pad (pull its USB or serial cable)"
    REPLUG = "plug the pad back in"


class Person(Protocol):
    """The kit's hands at the pad."""

    #: For the report: ``nobody``, ``a person at the terminal`` or ``the simulator's control socket``.
    name: str

    def can(self, act: Act) -> bool:
        """Whether this person can do ``act``."""
        ...

    async def do(self, act: Act) -> None:
        """Do ``act`` (or tell the person to); returns once it is under way."""
        ...


class Nobody:
    """No one at the pad: only :attr:`Act.STAY_AWAY` is possible."""

    name = "nobody (add --customer, CUSTOMER=1, for the card, PIN and cable checks)"

    def can(self, act: Act) -> bool:
        return act is Act.STAY_AWAY

    async def do(self, act: Act) -> None:
        return None


class AtTheTerminal:
    """A person at the pad reads the instructions on ``out``; unprovokable acts are left out."""

    name = "a person at the pad (--customer)"

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out

    def can(self, act: Act) -> bool:
        # A card the reader fails on cannot be had on demand.
        return act is not Act.CARD_ERROR

    async def do(self, act: Act) -> None:
        print(f"\n>>> AT THE PAD: {act.value}", file=self._out, flush=True)


#: The JSON line that makes the simulated customer do each act.
_SCRIPTS: dict[Act, dict[str, object]] = {
    Act.PAY: {"action": "pay"},
    Act.CANCEL_CARD: {"action": "cancel-card"},
    Act.REMOVE_CARD: {"action": "remove-card"},
    Act.CARD_ERROR: {"action": "card-error"},
    Act.STAY_AWAY: {"action": "no-card"},
    Act.CODE: {"step": "code", "code": "280123121234567890", "source": "qr"},
    Act.CHOOSE_2: {"step": "choice", "option": 2},
    Act.UNPLUG: {"step": "unplug", "replug_after_s": 1.0},
}


class SimulatorScript:
    """Scripts ``misbridge-sim pinpad`` through its control socket at ``path``."""

    name = "the simulator's control socket (scripted customers)"

    def __init__(self, path: str) -> None:
        self._path = path

    def can(self, act: Act) -> bool:
        return True

    async def do(self, act: Act) -> None:
        """Queue the act; ``REPLUG`` is part of ``UNPLUG`` (the simulator plugs back in after 1 s).

        Raises:
            OSError: no simulator listens at the path.
            ValueError: the simulator refused the line.
        """
        if act is Act.REPLUG:
            return
        reader, writer = await asyncio.open_unix_connection(self._path)
        try:
            writer.write(json.dumps(_SCRIPTS[act]).encode() + b"\n")
            await writer.drain()
            answer = json.loads(await reader.readline() or b'{"ok": false, "error": "no answer"}')
            if not answer.get("ok"):
                raise ValueError(f"the simulator refused {act.name}: {answer.get('error')}")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
