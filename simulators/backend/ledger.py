"""What the backend simulator has seen and done: per-traceNo records and per-card balances.

Tests read it in-process (``sim.ledger``) or as JSON (``GET /_sim/ledger``,
``GET /_sim/ledger/{traceNo}``). Every submission is counted against its ``traceNo``, rejected
duplicates and faulted requests included, so a test can assert that a sale reached the backend
exactly once, and each record says whether its money is moved right now (``applied``).

With a file (:meth:`Ledger.open`) the whole ledger is rewritten atomically after every change
and read back at start, so a simulator stopped and started again on the same port keeps it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from misbridge.ebuy import jsonio
from simulators.cards import TestCard

#: The actions that move money: a sale (book §10.1 cardPayment, §10.2 cardRedemption).
SALE_ACTIONS = ("cardRedemption", "cardPayment")
#: The action that gives a sale's money back.
VOID_ACTION = "voidCardSale"
INQUIRY_ACTION = "inquiry"
#: Version of the ledger file's layout.
FILE_FORMAT = 1


class TraceState(StrEnum):
    """Where one traceNo stands."""

    # Seen but never decided: refused at the envelope (bad signature, format, unknown action),
    # or dropped / failed by a *-before-commit fault. The traceNo is still free.
    NOT_APPLIED = "not_applied"
    IN_PROGRESS = "in_progress"  # received and accepted, its handler has not decided yet
    APPROVED = "approved"
    DECLINED = "declined"
    VOIDED = "voided"  # an approved sale a later voidCardSale reversed


def kind_of(action: str) -> str:
    """``sale``, ``inquiry``, ``void`` or ``other`` for an e-Buy action name."""
    if action in SALE_ACTIONS:
        return "sale"
    if action == INQUIRY_ACTION:
        return "inquiry"
    if action == VOID_ACTION:
        return "void"
    return "other"


@dataclass
class Account:
    """A card's loyalty points and stored value, as the simulated bank holds them."""

    points: int
    balance: Decimal


@dataclass
class TraceRecord:
    """Everything the simulator knows about one traceNo.

    ``response`` is the body sent back the first time the traceNo was decided; inquiries
    are answered from it. ``points_delta`` / ``balance_delta`` are the effect on the card
    (negative = spent; a void records the positive restore). ``voided_by`` is the traceNo of
    the void that reversed this sale.
    """

    trace_no: str
    action: str
    submissions: int = 0
    state: TraceState = TraceState.NOT_APPLIED
    response: dict[str, Any] = field(default_factory=dict)
    card: str | None = None
    total_amount: Decimal | None = None
    undiscount_amount: Decimal | None = None
    fund_channel: list[dict[str, str]] = field(default_factory=list)
    points_delta: int = 0
    balance_delta: Decimal = Decimal(0)
    original_trace_no: str | None = None
    voided_by: str | None = None

    @property
    def used(self) -> bool:
        """True once accepted for processing (in progress or decided): the traceNo is taken for good."""
        return self.state is not TraceState.NOT_APPLIED

    @property
    def in_progress(self) -> bool:
        """True between acceptance and the handler's decision."""
        return self.state is TraceState.IN_PROGRESS

    @property
    def kind(self) -> str:
        """``sale``, ``inquiry``, ``void`` or ``other``."""
        return kind_of(self.action)

    @property
    def applied(self) -> bool:
        """Whether this traceNo's money movement is in effect now.

        A sale: approved and not voided (the charge is on the card). A void: approved (its
        restore was made). An inquiry, a decline, anything not decided: False.
        """
        return self.state is TraceState.APPROVED and self.kind in ("sale", "void")

    @property
    def return_code(self) -> str:
        """The returnCode first sent for it ("" when not decided)."""
        return str(self.response.get("returnCode", ""))

    def _common(self) -> dict[str, Any]:
        # What the ledger view and the ledger file both carry.
        return {
            "traceNo": self.trace_no,
            "action": self.action,
            "submissions": self.submissions,
            "state": self.state.value,
            "card": self.card,
            "totalAmount": self.total_amount,
            "undiscountAmount": self.undiscount_amount,
            "fundChannel": self.fund_channel,
            "pointsDelta": self.points_delta,
            "balanceDelta": self.balance_delta,
            "originalTraceNo": self.original_trace_no,
            "voidedBy": self.voided_by,
        }

    def to_json(self) -> dict[str, Any]:
        """The record as ``/_sim/ledger`` shows it (amounts as Decimal numbers)."""
        return {
            **self._common(),
            "kind": self.kind,
            "applied": self.applied,
            "returnCode": self.return_code,
            "returnDesc": self.response.get("returnDesc", ""),
        }

    def to_state(self) -> dict[str, Any]:
        """Everything needed to rebuild the record (the ledger file's form)."""
        return {**self._common(), "response": self.response}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TraceRecord:
        """The record :meth:`to_state` wrote.

        A record saved while in progress comes back ``not_applied``: the simulator stopped
        before its handler decided, and the money moves only when a handler decides.

        Raises:
            KeyError, ValueError, TypeError: the state is not one :meth:`to_state` wrote.
        """
        trace_state = TraceState(state["state"])
        if trace_state is TraceState.IN_PROGRESS:
            trace_state = TraceState.NOT_APPLIED
        return cls(
            trace_no=str(state["traceNo"]),
            action=str(state["action"]),
            submissions=int(state["submissions"]),
            state=trace_state,
            response=dict(state["response"]),
            card=state["card"],
            total_amount=_decimal_or_none(state["totalAmount"]),
            undiscount_amount=_decimal_or_none(state["undiscountAmount"]),
            fund_channel=list(state["fundChannel"]),
            points_delta=int(state["pointsDelta"]),
            balance_delta=Decimal(state["balanceDelta"]),
            original_trace_no=state["originalTraceNo"],
            voided_by=state["voidedBy"],
        )


class Ledger:
    """Per-simulator balances (copies of the test cards' values) and traceNo records.

    Args:
        cards: the test cards by name; their points and balances are copied, never changed.
        path: file to keep the ledger in (see :meth:`open`); None keeps it in memory only.
    """

    def __init__(self, cards: Mapping[str, TestCard], path: Path | None = None) -> None:
        self._accounts = {name: Account(card.points, card.balance) for name, card in cards.items()}
        self._records: dict[str, TraceRecord] = {}
        self._order_serial = 0
        self.path = path

    @classmethod
    def open(cls, cards: Mapping[str, TestCard], path: Path) -> Ledger:
        """A ledger kept in ``path``: loaded from it if it exists, rewritten after every change.

        Cards the file does not know start with their test values. The file is written once
        at once, so a path that cannot be written fails here rather than at the first request.

        Raises:
            OSError: the file cannot be read or written.
            ValueError: the file is not a ledger this simulator wrote.
        """
        ledger = cls(cards, path)
        if path.exists():
            ledger._load(path.read_bytes())
        ledger.save()
        return ledger

    def count_submission(self, trace_no: str, action: str) -> TraceRecord:
        """Count one arriving request for ``trace_no`` and return its record (created if new)."""
        record = self._records.setdefault(trace_no, TraceRecord(trace_no, action))
        record.submissions += 1
        return record

    def bar(self, trace_no: str) -> None:
        """Take ``trace_no`` for good without applying anything.

        Called when an inquiry or a void about ``trace_no`` was answered "not found": from
        then on a late-arriving original with that traceNo is refused as a duplicate (94), so
        "not found" stays true. misbridge relies on this (docs/reliability.md, assumptions).
        """
        record = self._records.setdefault(trace_no, TraceRecord(trace_no, "cardRedemption"))
        if not record.used:
            record.state = TraceState.DECLINED
            record.response = {"traceNo": trace_no, "returnCode": "25", "returnDesc": "not found; traceNo barred"}

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

    def next_order_serial(self) -> int:
        """1, 2, 3...: numbers the orderNos; kept in the file so a restart does not repeat them."""
        self._order_serial += 1
        return self._order_serial

    def snapshot(self) -> dict[str, Any]:
        """``{"transactions": {traceNo: record}, "balances": {card: {points, balance}}}``."""
        return {
            "transactions": {trace_no: record.to_json() for trace_no, record in self._records.items()},
            "balances": {
                name: {"points": account.points, "balance": account.balance}
                for name, account in self._accounts.items()
            },
        }

    def save(self) -> None:
        """Rewrite the ledger file, if there is one: a temporary file renamed over it.

        The rename is atomic, so a reader (or a restart after ``kill -9``) sees the old
        ledger or the new one, never half of one. There is no fsync: the file survives the
        simulator's death, not the machine's.
        """
        if self.path is None:
            return
        state = {
            "format": FILE_FORMAT,
            "orderSerial": self._order_serial,
            "balances": {
                name: {"points": account.points, "balance": account.balance}
                for name, account in self._accounts.items()
            },
            "records": [record.to_state() for record in self._records.values()],
        }
        data = jsonio.dumps(state).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, data: bytes) -> None:
        try:
            state = jsonio.loads(data)
            if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
                raise ValueError(f"not a format-{FILE_FORMAT} simulator ledger")
            self._order_serial = int(state["orderSerial"])
            for name, saved in state["balances"].items():
                if name in self._accounts:
                    self._accounts[name] = Account(int(saved["points"]), Decimal(saved["balance"]))
            records = [TraceRecord.from_state(saved) for saved in state["records"]]
        except (jsonio.JSONDecodeError, UnicodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"ledger file {self.path} cannot be read: {err}") from err
        self._records = {record.trace_no: record for record in records}


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)
