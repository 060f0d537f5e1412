"""A card sale's trips to the journal thread (issue 18): the intent's hop also reads, voids still go first.

A scripted pad and backend, a real journal. The reads a new sale made before its intent (is the
traceNo a repeat? is a void due?) are now in the intent's own hop, so an approved sale is five
hops: the intent and its four moves, each one transaction.
"""

from __future__ import annotations

from typing import Any

from misbridge.core.service import TransactionService
from misbridge.ebuy.examples import card_redemption_request
from misbridge.journal import TransactionRecord
from misbridge.journal.store import Journal
from tests.journal_hops import journal_hops
from tests.seeding import seed_transaction
from tests.unit.core.fakes import APPROVED, ScriptedBackend

SALE = "cardRedemption"


def sale(trace_no: str) -> dict[str, Any]:
    body = card_redemption_request()
    body["traceNo"] = trace_no
    return body


async def test_an_approved_sale_is_five_journal_hops(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(SALE, APPROVED)
    with journal_hops(journal) as hops:
        answer = await service.handle(SALE, sale("H0001"))
    assert answer["returnCode"] == "00"
    # The intent (with the repeat and due-void reads), then start_card, card_read, pin_entered, approve.
    assert hops == ["_open_intent", *["_compare_and_set"] * 4]


async def test_a_repeat_is_answered_from_the_intents_hop_alone(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(SALE, APPROVED)
    first = await service.handle(SALE, sale("H0002"))
    with journal_hops(journal) as hops:
        again = await service.handle(SALE, sale("H0002"))
    assert again == first
    assert hops == ["_open_intent"]
    assert backend.actions() == [SALE]  # never sent twice


async def test_a_due_void_is_sent_before_the_sales_intent(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    old = TransactionRecord.new("OLD0001", SALE, "unknown", {"traceNo": "OLD0001", "totalAmount": "1.00"})
    await seed_transaction(journal, old)
    await journal.enqueue_reversal("OLD0001", from_state="unknown", event="give_up")
    backend.will("voidCardSale", {"returnCode": "00"})
    backend.will(SALE, APPROVED)
    with journal_hops(journal) as hops:
        answer = await service.handle(SALE, sale("H0003"))
    assert answer["returnCode"] == "00"
    assert backend.actions() == ["voidCardSale", SALE]
    old_after = await journal.get("OLD0001")
    assert old_after is not None
    assert old_after.state == "voided"
    # The intake's hop found the void due and wrote nothing; the intent came after the void.
    assert hops[0] == "_open_intent"
    assert hops.index("_insert_intent") > hops.index("_open_intent")
