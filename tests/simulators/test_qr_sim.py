"""qrcodeSale, voidQrcodeSale and refundQrcodeSale end to end in one process: TransactionService,
the real BackendClient, the backend simulator on a localhost socket, a real journal and the
scripted pad (it reads the simulator's test codes and chooses an option).

The simulator keeps each code's balance and each sale's refunds, and answers ``94`` to a traceNo
it has seen: what it answers shows what misbridge sent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from misbridge.config.settings import ResolutionSettings
from misbridge.core.service import TransactionService
from misbridge.ebuy.examples import book_request
from simulators.backend import BackendSimulator, Fault, FaultAction
from tests.simulators.conftest import book_trace_no
from tests.unit.core.fakes import ScriptedPad

RESOLUTION = ResolutionSettings(
    inquiry_interval_s=0.01, inquiry_bound_s=0.3, drain_before_sale_s=1.0, reversal_backoff_initial_s=0.01
)
OPTIONS_CODE = "HDCP00000000000009"



def sale(**changes: Any) -> dict[str, Any]:
    """The book's qrcodeSale example (40.80) under a new traceNo."""
    body = {**book_request("qrcodeSale"), "traceNo": book_trace_no(), **changes}
    return {key: value for key, value in body.items() if value is not None}


@pytest.fixture
def resolution() -> ResolutionSettings:
    return RESOLUTION


async def test_a_qr_sale_is_refunded_in_parts_up_to_the_rest_then_not_voided(service: TransactionService) -> None:
    body = sale()
    assert (await service.handle("qrcodeSale", body))["returnCode"] == "00"
    original = body["traceNo"]
    for amount in ("10.80", "30.00"):
        refund = {"traceNo": book_trace_no(), "originalTraceNo": original, "refundAmount": Decimal(amount)}
        assert (await service.handle("refundQrcodeSale", refund))["returnCode"] == "00", amount
    over = {"traceNo": book_trace_no(), "originalTraceNo": original, "refundAmount": Decimal("0.01")}
    assert (await service.handle("refundQrcodeSale", over))["returnCode"] == "MB47"
    void = {"traceNo": book_trace_no(), "originalTraceNo": original}
    assert (await service.handle("voidQrcodeSale", void))["returnCode"] == "MB46"


async def test_an_options_sale_chosen_on_the_pad_is_paid_then_voided(
    service: TransactionService, pad: ScriptedPad
) -> None:
    pad.code, pad.choice = OPTIONS_CODE, 1
    body = sale(qrcode=None, memberDetail=None)
    answer = await service.handle("qrcodeSale", body)
    assert (answer["returnCode"], answer["traceNo"]) == ("00", body["traceNo"]), answer
    assert answer["activityProductNo"] == "HDCP00000000001236"
    view = await service.transaction(body["traceNo"])
    assert view is not None
    assert [t["event"] for t in view["transitions"]][-3:] == ["offer_options", "option_chosen", "approve"]
    void = {"traceNo": book_trace_no(), "originalTraceNo": body["traceNo"]}
    assert (await service.handle("voidQrcodeSale", void))["returnCode"] == "00"  # it named the second round
    again = {"traceNo": book_trace_no(), "originalTraceNo": body["traceNo"]}
    assert (await service.handle("voidQrcodeSale", again))["returnCode"] == "MB45"


async def test_a_void_whose_reply_was_lost_is_found_by_inquiry(
    service: TransactionService, sim: BackendSimulator
) -> None:
    body = sale()
    assert (await service.handle("qrcodeSale", body))["returnCode"] == "00"
    sim.faults.add(Fault.DROP_AFTER_COMMIT, action=FaultAction.VOID)
    void = {"traceNo": book_trace_no(), "originalTraceNo": body["traceNo"]}
    answer = await service.handle("voidQrcodeSale", void)
    assert answer["returnCode"] == "00", answer
    view = await service.transaction(void["traceNo"])
    assert view is not None
    assert [t["event"] for t in view["transitions"]] == [
        "intent", "submit", "outcome_unknown", "inquire", "inquiry_approved"
    ]  # fmt: skip


async def test_a_refund_that_never_arrived_is_declined_by_inquiry_and_not_sent_again(
    service: TransactionService, sim: BackendSimulator
) -> None:
    body = sale()
    assert (await service.handle("qrcodeSale", body))["returnCode"] == "00"
    sim.faults.add(Fault.DROP_BEFORE_COMMIT, action=FaultAction.REFUND)
    refund = {"traceNo": book_trace_no(), "originalTraceNo": body["traceNo"], "refundAmount": Decimal("40.80")}
    assert (await service.handle("refundQrcodeSale", refund))["returnCode"] == "MB33"
    whole = {"traceNo": book_trace_no(), "originalTraceNo": body["traceNo"], "refundAmount": Decimal("40.80")}
    assert (await service.handle("refundQrcodeSale", whole))["returnCode"] == "00", "the first moved nothing"
