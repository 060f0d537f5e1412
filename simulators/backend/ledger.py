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
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from misbridge.ebuy import jsonio
from simulators.backend.book import CARD_REDEMPTION, INQUIRY, SALE_ACTIONS, VOID_CARD_SALE, kind_of
from simulators.backend.records import TraceRecord, TraceState
from simulators.backend.testcodes import CODES, MEMBERS, Member, TestCode
from simulators.cards import TestCard

__all__ = [
    "FILE_FORMAT",
    "INQUIRY_ACTION",
    "SALE_ACTIONS",
    "VOID_ACTION",
    "Account",
    "Ledger",
    "TraceRecord",
    "TraceState",
    "kind_of",
]

#: The void misbridge sends as its reversal (book §10.5).
VOID_ACTION = VOID_CARD_SALE
INQUIRY_ACTION = INQUIRY

#: Version of the ledger file's layout (later fields are optional, so older files still load).
FILE_FORMAT = 1


@dataclass
class Account:
    """A card's loyalty points and stored value, as the simulated bank holds them."""

    points: int
    balance: Decimal


class Ledger:
    """Per-simulator balances (copies of the test values) and traceNo records.

    Args:
        cards: the test cards by name; their points and balances are copied, never changed.
        path: file to keep the ledger in (see :meth:`open`); None keeps it in memory only.
        codes: the QR codes / e-coupons by code (their balances are copied).
        members: the members by memberId (their points are copied).

    Attributes:
        summary_since: the endDate of each terminal's last ``summary`` (yyyyMMddHHmmss), by deviceNo;
            a terminal that never asked has none.
    """

    def __init__(
        self,
        cards: Mapping[str, TestCard],
        path: Path | None = None,
        *,
        codes: Mapping[str, TestCode] = CODES,
        members: Mapping[str, Member] = MEMBERS,
    ) -> None:
        self._accounts = {name: Account(card.points, card.balance) for name, card in cards.items()}
        self._codes = {code: test_code.balance for code, test_code in codes.items()}
        self._members = {member_id: member.points for member_id, member in members.items()}
        self._records: dict[str, TraceRecord] = {}
        self._order_serial = 0
        self.summary_since: dict[str, str] = {}
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
        record = self._records.setdefault(trace_no, TraceRecord(trace_no, CARD_REDEMPTION))
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

    def code_balance(self, code: str) -> Decimal:
        """Current balance of a test QR code or e-coupon.

        Raises:
            KeyError: no such code.
        """
        return self._codes[code]

    def apply_code(self, code: str, delta: Decimal) -> Decimal:
        """Add ``delta`` to a code's balance and return the new balance."""
        self._codes[code] += delta
        return self._codes[code]

    def member_points(self, member_id: str) -> int:
        """Current points of a test member.

        Raises:
            KeyError: no such member.
        """
        return self._members[member_id]

    def apply_member(self, member_id: str, delta: int) -> int:
        """Add ``delta`` points to a member and return the new balance."""
        self._members[member_id] += delta
        return self._members[member_id]

    def records(self) -> list[TraceRecord]:
        """Every record, in the order the traceNos first arrived."""
        return list(self._records.values())

    def holder(self, record: TraceRecord) -> dict[str, Any]:
        """The current balance of what ``record`` moved money or points of (card, code, member); {} if none."""
        if record.card is not None and record.card in self._accounts:
            account = self._accounts[record.card]
            return {"card": record.card, "points": account.points, "balance": account.balance}
        if record.qrcode is not None and record.qrcode in self._codes:
            return {"qrcode": record.qrcode, "balance": self._codes[record.qrcode]}
        if record.member_id is not None and record.member_id in self._members:
            return {"memberId": record.member_id, "pointBalance": self._members[record.member_id]}
        return {}

    def next_order_serial(self) -> int:
        """1, 2, 3...: numbers the orderNos; kept in the file so a restart does not repeat them."""
        self._order_serial += 1
        return self._order_serial

    def entry(self, record: TraceRecord) -> dict[str, Any]:
        """``record`` as the ledger endpoints show it: its fields and ``holder`` (see :meth:`holder`)."""
        return {**record.to_json(), "holder": self.holder(record)}

    def snapshot(self) -> dict[str, Any]:
        """The whole ledger as JSON.

        ``{"transactions": {traceNo: entry}, "balances": {card: {points, balance}},
        "codes": {code: {balance}}, "members": {memberId: {pointBalance}}}``.
        """
        return {
            "transactions": {trace_no: self.entry(record) for trace_no, record in self._records.items()},
            **self._balances(),
        }

    def _balances(self) -> dict[str, Any]:
        return {
            "balances": {
                name: {"points": account.points, "balance": account.balance} for name, account in self._accounts.items()
            },
            "codes": {code: {"balance": balance} for code, balance in self._codes.items()},
            "members": {member_id: {"pointBalance": points} for member_id, points in self._members.items()},
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
            "summarySince": self.summary_since,
            **self._balances(),
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
            self._load_holders(state)
            records = [TraceRecord.from_state(saved) for saved in state["records"]]
        except (jsonio.JSONDecodeError, UnicodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"ledger file {self.path} cannot be read: {err}") from err
        self._records = {record.trace_no: record for record in records}

    def _load_holders(self, state: Mapping[str, Any]) -> None:
        # Codes, members and the summary marks came later: a file without them keeps the test values.
        # A file from before the marks were kept per terminal holds one string: no terminal's mark.
        marks = state.get("summarySince", {})
        self.summary_since = {str(device): str(at) for device, at in marks.items()} if isinstance(marks, dict) else {}
        for code, saved in state.get("codes", {}).items():
            if code in self._codes:
                self._codes[code] = Decimal(saved["balance"])
        for member_id, saved in state.get("members", {}).items():
            if member_id in self._members:
                self._members[member_id] = int(saved["pointBalance"])
