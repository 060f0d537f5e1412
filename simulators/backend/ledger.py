"""What the backend simulator has seen and done: per-traceNo records and per-card balances.

Tests read it in-process (``sim.ledger``) or as JSON (``GET /_sim/ledger``). Every submission
is counted against its ``traceNo``, rejected duplicates included, so a test can assert that a
sale reached the backend exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from simulators.cards import TestCard


class TraceState(StrEnum):
    """Where one traceNo stands."""

    REJECTED = "rejected"  # only submissions that were never processed (bad signature, format, action)
    APPROVED = "approved"
    DECLINED = "declined"
    VOIDED = "voided"  # an approved sale a later voidCardSale reversed


@dataclass
class Account:
    """A card's loyalty points and stored value, as the simulated bank holds them."""

    points: int
    balance: Decimal


@dataclass
class TraceRecord:
    """Everything the simulator knows about one traceNo.

    ``response`` is the body sent back the first time the traceNo was processed; inquiries
    are answered from it. ``points_delta`` / ``balance_delta`` are the effect on the card
    (negative = spent; a void records the positive restore).
    """

    trace_no: str
    action: str
    submissions: int = 0
    state: TraceState = TraceState.REJECTED
    response: dict[str, Any] = field(default_factory=dict)
    card: str | None = None
    total_amount: Decimal | None = None
    undiscount_amount: Decimal | None = None
    fund_channel: list[dict[str, str]] = field(default_factory=list)
    points_delta: int = 0
    balance_delta: Decimal = Decimal(0)
    original_trace_no: str | None = None

    @property
    def processed(self) -> bool:
        """True once an action handler decided it: the traceNo is used for good."""
        return self.state is not TraceState.REJECTED

    @property
    def return_code(self) -> str:
        """The returnCode first sent for it ("" when never processed)."""
        return str(self.response.get("returnCode", ""))

    def to_json(self) -> dict[str, Any]:
        """The record as the ``/_sim/ledger`` JSON shows it (amounts as Decimal numbers)."""
        return {
            "action": self.action,
            "submissions": self.submissions,
            "state": self.state.value,
            "returnCode": self.return_code,
            "returnDesc": self.response.get("returnDesc", ""),
            "card": self.card,
            "totalAmount": self.total_amount,
            "undiscountAmount": self.undiscount_amount,
            "fundChannel": self.fund_channel,
            "pointsDelta": self.points_delta,
            "balanceDelta": self.balance_delta,
            "originalTraceNo": self.original_trace_no,
        }


class Ledger:
    """Per-simulator balances (copies of the test cards' values) and traceNo records.

    Args:
        cards: the test cards by name; their points and balances are copied, never changed.
    """

    def __init__(self, cards: Mapping[str, TestCard]) -> None:
        self._accounts = {name: Account(card.points, card.balance) for name, card in cards.items()}
        self._records: dict[str, TraceRecord] = {}

    def count_submission(self, trace_no: str, action: str) -> TraceRecord:
        """Count one arriving request for ``trace_no`` and return its record (created if new)."""
        record = self._records.setdefault(trace_no, TraceRecord(trace_no, action))
        record.submissions += 1
        return record

    def get(self, trace_no: str) -> TraceRecord | None:
        """The record of ``trace_no``, or None if it never arrived."""
        return self._records.get(trace_no)

    def submissions(self, trace_no: str) -> int:
        """How many requests carried ``trace_no`` (0 if none)."""
        record = self._records.get(trace_no)
        return record.submissions if record else 0

    def account(self, card_name: str) -> Account:
        """The live account of a test card.

        Raises:
            KeyError: no such card.
        """
        return self._accounts[card_name]

    def points(self, card_name: str) -> int:
        """Current loyalty points of a test card."""
        return self._accounts[card_name].points

    def balance(self, card_name: str) -> Decimal:
        """Current stored value of a test card."""
        return self._accounts[card_name].balance

    def apply(self, card_name: str, *, points_delta: int, balance_delta: Decimal) -> Account:
        """Add the deltas to a card's account and return it."""
        account = self._accounts[card_name]
        account.points += points_delta
        account.balance += balance_delta
        return account

    def snapshot(self) -> dict[str, Any]:
        """``{"transactions": {traceNo: record}, "balances": {card: {points, balance}}}``."""
        return {
            "transactions": {trace_no: record.to_json() for trace_no, record in self._records.items()},
            "balances": {
                name: {"points": account.points, "balance": account.balance}
                for name, account in self._accounts.items()
            },
        }
