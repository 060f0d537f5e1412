"""The scenarios of ``misbridge demo``, one line each: what ``--help`` lists and what the demo prints first;
and the test cards ``--card`` accepts.

Kept apart from :mod:`misbridge.app.demo` so that building the command line imports nothing heavy.
"""

from __future__ import annotations

from typing import Final

#: Scenario name -> what it shows, in the order ``--help`` lists them.
DEMO_SCENARIOS: Final[dict[str, str]] = {
    "approve": "a normal card redemption (the default)",
    "lost-reply": "the backend approves but its reply is lost: misbridge inquires and the POS gets the approval",
    "lost-reply-void": "the reply is lost and inquiries fail too: misbridge voids the sale, nobody is charged",
    "void": "a card redemption, then the POS voids it: card and PIN again, the whole amount given back",
    "refund": "a card redemption refunded in two parts, then a third refund above the rest refused",
    "qrcode": "a QR code sale: the code in the POS's request, paid from the code's balance",
    "options": "a QR sale of an e-coupon with options: the customer chooses one on the pad, then it is paid",
    "day": "a day at the till: every action of the book once or more, alternating the socket and HTTP doors",
    "end-of-day": "three card sales, the backend told to remember one with another amount, then misbridge reconcile",
}

#: The PIN-pad simulator's test cards (``simulators/cards.py``), which ``--card`` names. misbridge
#: never imports the simulators, so the names are repeated here, where an unknown one is refused
#: before any simulator starts; tests/unit/test_demo_list.py keeps the two lists equal.
DEMO_CARDS: Final[tuple[str, ...]] = (
    "points",
    "points-cash",
    "privilege",
    "privilege-cash",
    "prepaid",
    "member",
    "unknown",
)
#: The card the simulated customer presents when ``--card`` is not given (the simulator's default).
DEFAULT_DEMO_CARD: Final = "points-cash"


def scenario_list() -> str:
    """What ``misbridge demo --help`` ends with: every scenario on a line of its own."""
    width = max(map(len, DEMO_SCENARIOS))
    return "scenarios:\n" + "\n".join(f"  {name:<{width}}  {line}" for name, line in DEMO_SCENARIOS.items())
