"""A journal with every kind of row, old and new, built through the real Journal API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=200)
RECENT = NOW - timedelta(days=3)
RETENTION_DAYS = 90

#: traceNo -> (what it is, whether a 90-day purge at NOW deletes it)
ROWS: dict[str, tuple[str, bool]] = {
    "OLD-APPROVED": ("approved 200 days ago", True),
    "OLD-DECLINED": ("declined 200 days ago", True),
    "OLD-ABORTED": ("aborted 200 days ago", True),
    "OLD-VOIDED": ("unknown, inquired, voided 200 days ago (calls + done reversal)", True),
    "OLD-NEEDS-MANUAL": ("void escalated to a person 200 days ago: never purged", False),
    "OLD-VOIDING": ("void still pending after 200 days: never purged", False),
    "OLD-SUBMITTING": ("interrupted while submitting 200 days ago: never purged", False),
    "OLD-INQUIRING": ("inquiring since 200 days ago: never purged", False),
    "NEW-APPROVED": ("approved 3 days ago", False),
    "NEW-VOIDED": ("voided 3 days ago", False),
}


def request(trace_no: str) -> dict[str, Any]:
    """A POS request body as the journal stores it (no card data)."""
    return {
        "traceNo": trace_no, "totalAmount": Decimal("40.8"), "undiscountAmount": 0,
        "goodsDetail": [{"goodsCategory": "001", "goodsId": "P00001", "goodsName": "牙膏", "price": 8, "quantity": 2}],
    }  # fmt: skip


def approval(trace_no: str) -> dict[str, Any]:
    return {"traceNo": trace_no, "orderNo": "260601000001", "transDate": "20260601120000", "returnCode": "00",
            "returnDesc": "approved", "paidAmount": Decimal("40.8")}  # fmt: skip


@dataclass
class Clock:
    now: datetime = OLD

    def __call__(self) -> datetime:
        return self.now


async def _sale(journal: Journal, clock: Clock, trace_no: str, final: str) -> None:
    await journal.record_intent(TransactionRecord.new(trace_no, "cardRedemption", "received", request(trace_no),
                                                      now=clock.now))  # fmt: skip
    await journal.record_transition(trace_no, "received", "start_card")
    await journal.record_transition(trace_no, "reading_card", "card_read",
                                    masked_pan="622562******8888", card_type="00")  # fmt: skip
    await journal.record_transition(trace_no, "reading_pin", "pin_entered")
    if final == "approved":
        await journal.record_transition(trace_no, "submitting", "approve", response=approval(trace_no),
                                        return_code="00")  # fmt: skip
    elif final == "declined":
        await journal.record_transition(trace_no, "submitting", "decline", return_code="55")
    elif final != "submitting":
        await journal.record_transition(trace_no, "submitting", "outcome_unknown")


async def _voided(journal: Journal, trace_no: str, *, complete: bool, escalate: bool = False) -> None:
    call = await journal.allocate_call(trace_no, "inquiry")
    await journal.record_call_result(call, state="unknown")
    await journal.enqueue_reversal(trace_no, from_state="unknown", event="give_up")
    void = await journal.allocate_call(trace_no, "void")
    if complete:
        await journal.record_call_result(void, state="answered", return_code="00", response={"returnCode": "00"})
        await journal.complete_reversal(trace_no, return_code="MB32")
    elif escalate:
        await journal.record_call_result(void, state="unknown")
        await journal.escalate_reversal(trace_no, detail="void unconfirmed for 24 h")


async def build_journal(path: Path) -> None:
    """Write :data:`ROWS` into a new journal at ``path``."""
    clock = Clock()
    async with await Journal.open(path, clock=clock) as journal:
        await _sale(journal, clock, "OLD-APPROVED", "approved")
        await _sale(journal, clock, "OLD-DECLINED", "declined")
        await journal.record_intent(TransactionRecord.new("OLD-ABORTED", "cardRedemption", "received",
                                                          request("OLD-ABORTED"), now=clock.now))  # fmt: skip
        await journal.record_transition("OLD-ABORTED", "received", "abort", return_code="MB23")
        await _sale(journal, clock, "OLD-VOIDED", "unknown")
        await _voided(journal, "OLD-VOIDED", complete=True)
        await _sale(journal, clock, "OLD-NEEDS-MANUAL", "unknown")
        await _voided(journal, "OLD-NEEDS-MANUAL", complete=False, escalate=True)
        await _sale(journal, clock, "OLD-VOIDING", "unknown")
        await _voided(journal, "OLD-VOIDING", complete=False)
        await _sale(journal, clock, "OLD-SUBMITTING", "submitting")
        await _sale(journal, clock, "OLD-INQUIRING", "unknown")
        await journal.record_transition("OLD-INQUIRING", "unknown", "inquire")
        clock.now = RECENT
        await _sale(journal, clock, "NEW-APPROVED", "approved")
        await _sale(journal, clock, "NEW-VOIDED", "unknown")
        await _voided(journal, "NEW-VOIDED", complete=True)
