"""One traceNo as the backend simulator knows it: :class:`TraceState` and :class:`TraceRecord`.

The record is what ``GET /_sim/ledger/{traceNo}`` shows (:meth:`TraceRecord.to_json`) and what
the ledger file keeps (:meth:`TraceRecord.to_state`). Fields added after the file's first
layout are read with defaults, so an older ledger file still loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from simulators.backend.book import kind_of


class TraceState(StrEnum):
    """Where one traceNo stands."""

    # Seen but never decided: refused at the envelope (bad signature, format, unknown action),
    # or dropped / failed by a *-before-commit fault. The traceNo is still free.
    NOT_APPLIED = "not_applied"
    IN_PROGRESS = "in_progress"  # received and accepted, its handler has not decided yet
    APPROVED = "approved"
    DECLINED = "declined"
    VOIDED = "voided"  # an approved sale a later void reversed


@dataclass
class TraceRecord:
    """Everything the simulator knows about one traceNo.

    ``response`` is the body sent back the first time the traceNo was decided; inquiries
    are answered from it. ``points_delta`` / ``balance_delta`` are the effect on the card, the
    QR code or the member (negative = spent; a void or refund records the positive restore).
    ``voided_by`` is the traceNo of the void that reversed this sale, ``refunded_by`` the
    refunds of it and ``refunded_amount`` their sum. ``qrcode`` / ``member_id`` / ``acquirer``
    say what a QR sale, an accumulation or a cardPayment was made with. ``summarized`` is set
    once a ``summary`` has counted it. ``device_no`` is the envelope's deviceNo of the request
    that was accepted under this traceNo: the terminal the backend books it under (None for a
    record never accepted, or read from a ledger file written before it was kept).
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
    refunded_amount: Decimal = Decimal(0)
    refunded_by: list[str] = field(default_factory=list)
    qrcode: str | None = None
    member_id: str | None = None
    acquirer: str | None = None
    summarized: bool = False
    device_no: str | None = None

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
        """``sale``, ``inquiry``, ``void``, ``refund``, ``query``, ``upload`` or ``other``."""
        return kind_of(self.action)

    @property
    def applied(self) -> bool:
        """Whether this traceNo's money (or points) movement is in effect now.

        A sale (or accumulation): approved and not voided (a refund leaves it applied and shows
        in ``refundedAmount``). A void or refund: approved (its restore was made). An inquiry,
        a query, an upload, a decline, anything not decided: False.
        """
        return self.state is TraceState.APPROVED and self.kind in ("sale", "void", "refund")

    @property
    def return_code(self) -> str:
        """The returnCode first sent for it ("" when not decided)."""
        return str(self.response.get("returnCode", ""))

    @property
    def trans_date(self) -> str:
        """The transDate of its decision ("" when not decided)."""
        return str(self.response.get("transDate", ""))

    @property
    def refundable(self) -> Decimal:
        """What is left to refund of an approved sale: totalAmount - refundedAmount."""
        return (self.total_amount or Decimal(0)) - self.refunded_amount

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
            "refundedAmount": self.refunded_amount,
            "refundedBy": self.refunded_by,
            "qrcode": self.qrcode,
            "memberId": self.member_id,
            "acquirer": self.acquirer,
            "summarized": self.summarized,
            "deviceNo": self.device_no,
        }

    def to_json(self) -> dict[str, Any]:
        """The record as ``/_sim/ledger`` shows it (amounts as Decimal numbers)."""
        return {
            **self._common(),
            "kind": self.kind,
            "applied": self.applied,
            "returnCode": self.return_code,
            "returnDesc": self.response.get("returnDesc", ""),
            "transDate": self.trans_date,
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
            refunded_amount=Decimal(state.get("refundedAmount", 0)),
            refunded_by=[str(no) for no in state.get("refundedBy", [])],
            qrcode=state.get("qrcode"),
            member_id=state.get("memberId"),
            acquirer=state.get("acquirer"),
            summarized=bool(state.get("summarized", False)),
            device_no=state.get("deviceNo"),
        )


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)
