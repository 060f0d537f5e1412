"""voidCardSale and refundCardSale end to end in one process: TransactionService, the real
BackendClient, the backend simulator on a localhost socket, a real journal and the scripted pad
presenting the simulator's test cards (PAN and PIN block encrypted with the working key the
simulator issued at the sign-in each test makes first: this service runs without the daemon's key
keeper, which would sign in at start-up).

The simulator decrypts each cardInfo, keeps each card's points and balance and each sale's
refunds, and answers ``57`` to a void or refund with another card: what it answers and what the
ledger holds show what misbridge sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from misbridge.backend import BackendClient
from misbridge.config.settings import BackendSettings, IdentitySettings, ResolutionSettings
from misbridge.core.service import TransactionService
from misbridge.device.base import CardRead
from misbridge.ebuy.examples import book_request
from simulators.backend import TEST_SIGNING_KEY, BackendSimulator, Fault, FaultAction
from simulators.cards import CARDS
from simulators.crypto import encrypt_pin_block, encrypt_text
from tests.keys import sign_in
from tests.simulators.conftest import book_trace_no
from tests.unit.core.fakes import ScriptedPad

RESOLUTION = ResolutionSettings(
    inquiry_interval_s=0.01, inquiry_bound_s=0.3, drain_before_sale_s=1.0, reversal_backoff_initial_s=0.01
)


@pytest.fixture(name="key")
async def signed_in_key(sim: BackendSimulator) -> AsyncIterator[bytes]:
    """POS01 (the service's deviceNo) signed in: the working key the pad encrypts with."""
    client = BackendClient(BackendSettings(url=sim.url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    try:
        yield await sign_in(client)
    finally:
        await client.aclose()


def present(pad: ScriptedPad, name: str, key: bytes) -> None:
    """The customer presents the test card ``name`` and types its PIN; the pad encrypts with ``key``."""
    card = CARDS[name]
    pad.card = CardRead(
        card.card_type, card.masked_pan, encrypt_text(card.pan, key), encrypt_text(card.track2, key), card.expiry
    )
    pad.pin_block = encrypt_pin_block(card.pin, card.pan, key)


def sale(action: str) -> dict[str, Any]:
    """The book's example of ``action`` (40.80) under a new traceNo."""
    return {**book_request(action), "traceNo": book_trace_no()}


def refund(original: str, amount: str) -> dict[str, Any]:
    return {"traceNo": book_trace_no(), "originalTraceNo": original, "refundAmount": Decimal(amount)}


@pytest.fixture
def resolution() -> ResolutionSettings:
    return RESOLUTION


async def test_a_card_sale_is_refunded_in_parts_with_its_card_then_not_voided(
    service: TransactionService, pad: ScriptedPad, sim: BackendSimulator, key: bytes
) -> None:
    present(pad, "points-cash", key)
    points = sim.ledger.points("points-cash")
    body = sale("cardRedemption")
    assert (await service.handle("cardRedemption", body))["returnCode"] == "00"
    original = body["traceNo"]
    present(pad, "prepaid", key)
    assert (await service.handle("refundCardSale", refund(original, "10.80")))["returnCode"] == "MB39"
    present(pad, "points-cash", key)
    for amount in ("10.80", "30.00"):
        assert (await service.handle("refundCardSale", refund(original, amount)))["returnCode"] == "00", amount
    assert sim.ledger.points("points-cash") == points, "every point given back"
    assert (await service.handle("refundCardSale", refund(original, "0.01")))["returnCode"] == "MB47"
    void = {"traceNo": book_trace_no(), "originalTraceNo": original}
    assert (await service.handle("voidCardSale", void))["returnCode"] == "MB46"


async def test_a_card_payment_void_needs_its_acquirer_and_gives_the_balance_back(
    service: TransactionService, pad: ScriptedPad, sim: BackendSimulator, key: bytes
) -> None:
    present(pad, "prepaid", key)
    balance = sim.ledger.balance("prepaid")
    body = sale("cardPayment")
    assert (await service.handle("cardPayment", body))["returnCode"] == "00"
    assert sim.ledger.balance("prepaid") < balance
    void = {"traceNo": book_trace_no(), "originalTraceNo": body["traceNo"]}
    assert (await service.handle("voidCardSale", void))["returnCode"] == "MB10"
    void = {**void, "acquirer": body["acquirer"]}
    assert (await service.handle("voidCardSale", void))["returnCode"] == "00"
    assert sim.ledger.balance("prepaid") == balance
    again = {**void, "traceNo": book_trace_no()}
    assert (await service.handle("voidCardSale", again))["returnCode"] == "MB45"


async def test_a_card_void_never_answered_is_sent_again_as_a_system_void_and_confirmed(
    service: TransactionService, pad: ScriptedPad, sim: BackendSimulator, key: bytes
) -> None:
    present(pad, "prepaid", key)
    balance = sim.ledger.balance("prepaid")
    body = sale("cardPayment")
    assert (await service.handle("cardPayment", body))["returnCode"] == "00"
    sim.faults.add(Fault.DROP_BEFORE_COMMIT, action=FaultAction.VOID)
    sim.faults.add(Fault.DROP_BEFORE_COMMIT, action=FaultAction.INQUIRY, times=1000)
    void = {"traceNo": book_trace_no(), "originalTraceNo": body["traceNo"], "acquirer": body["acquirer"]}
    assert (await service.handle("voidCardSale", void))["returnCode"] == "MB36"
    sim.faults.clear()
    await service.resolver.drain()  # the void again, without cardInfo: the simulator's system void
    view = await service.transaction(void["traceNo"])
    assert view is not None
    assert (view["state"], view["transitions"][-1]["event"]) == ("approved", "void_confirmed")
    assert sim.ledger.balance("prepaid") == balance


async def test_a_card_void_whose_reply_was_lost_is_found_by_inquiry(
    service: TransactionService, pad: ScriptedPad, sim: BackendSimulator, key: bytes
) -> None:
    present(pad, "points", key)
    body = sale("cardRedemption")
    assert (await service.handle("cardRedemption", body))["returnCode"] == "00"
    sim.faults.add(Fault.DROP_AFTER_COMMIT, action=FaultAction.VOID)
    void = {"traceNo": book_trace_no(), "originalTraceNo": body["traceNo"]}
    answer = await service.handle("voidCardSale", void)
    assert answer["returnCode"] == "00", answer
    view = await service.transaction(void["traceNo"])
    assert view is not None
    assert [t["event"] for t in view["transitions"]] == [
        "intent", "start_card", "card_read", "pin_entered", "outcome_unknown", "inquire", "inquiry_approved"
    ]  # fmt: skip
