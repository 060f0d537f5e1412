"""``qrcodeSale`` through the service: the code from the body or the pad, options on the pad or via the POS.

Scripted pad and backend, real journal: the code is never journaled; a timeout, a cancel or a pad
without the command ends it with nothing sent; options offered by the first round are chosen on
the pad or by the POS's second request, and the second round goes out under a traceNo misbridge
allocated (an ``option`` call), its answer the sale's under the POS traceNo; an unknown second
round is inquired and voided under that traceNo.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from loguru import logger

from misbridge.config.settings import OptionSettings, Settings
from misbridge.core.service import TransactionService
from misbridge.errors import BackendOutcomeUnknown, CustomerCancelled, DeviceRejected, DeviceTimeout
from misbridge.journal.store import Journal
from misbridge.telemetry.logs import REDACTED, scrub
from tests.unit.core.conftest import FAST_RESOLUTION
from tests.unit.core.fakes import APPROVED, ScriptedBackend, ScriptedPad, reply

QR = "qrcodeSale"
CODE = "280123121234567890"
_serial = iter(range(1, 1_000_000))
PRODUCTS = [
    {"activityProductNo": "HDCP00000000001234", "activityProductName": "大杯咖啡兑换"},
    {"activityProductNo": "HDCP00000000001236", "activityProductName": "小杯咖啡兑换"},
]
GOODS = {"goodsCategory": "001", "goodsId": "P1", "goodsName": "tea", "price": Decimal("40.80"), "quantity": 1}
OPTIONS: dict[str, Any] = {**reply("09", "choose an activity product"), "activityProductList": PRODUCTS}


def qr_body(**changes: Any) -> dict[str, Any]:
    """A qrcodeSale of 40.80 under a new traceNo, with the code unless ``qrcode=None``."""
    body: dict[str, Any] = {
        "traceNo": f"QS{next(_serial):010d}",
        "totalAmount": Decimal("40.80"),
        "undiscountAmount": 0,
        "qrcode": CODE,
        "goodsDetail": [GOODS],
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


async def events(journal: Journal, trace_no: str) -> list[str]:
    return [t.event for t in await journal.transitions(trace_no)]


async def assert_code_not_journaled(journal: Journal, trace_no: str) -> None:
    record = await journal.get(trace_no)
    assert record is not None
    stored = json.dumps([record.request, record.response], default=str)
    assert CODE not in stored


# --- the code ------------------------------------------------------------------------------------


async def test_a_code_in_the_body_is_submitted_without_the_pad(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(QR, APPROVED)
    body = qr_body()
    answer = await service.handle(QR, body)
    assert answer["returnCode"] == "00"
    assert backend.calls == [(QR, body)]
    assert pad.code_prompts == []
    assert await events(journal, body["traceNo"]) == ["intent", "submit", "approve"]


async def test_a_code_from_the_pad_is_sent_and_never_journaled(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(QR, APPROVED)
    body = qr_body(qrcode=None)
    answer = await service.handle(QR, body)
    assert answer["returnCode"] == "00"
    assert pad.code_prompts == [("Amount 40.80", 4080)], "the pad shows the amount"
    assert backend.calls == [(QR, {**body, "qrcode": CODE})]
    assert await events(journal, body["traceNo"]) == ["intent", "start_code", "code_read", "approve"]
    await assert_code_not_journaled(journal, body["traceNo"])


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (DeviceTimeout("no code"), "MB35"),
        (CustomerCancelled("cancel pressed"), "MB23"),
        (DeviceRejected("no scanner", device_code="10"), "MB26"),
    ],
    ids=["timeout", "cancel", "no-scanner"],
)
async def test_a_code_the_pad_does_not_read_ends_it_with_nothing_sent(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad,
    error: BaseException, code: str,
) -> None:  # fmt: skip
    pad.code_error = error
    body = qr_body(qrcode=None)
    answer = await service.handle(QR, body)
    assert answer["returnCode"] == code
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert (record.state, record.return_code) == ("aborted", code)
    assert backend.calls == []


async def test_no_pad_and_no_code_in_the_body_is_mb20(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    pad.is_connected = False
    answer = await service.handle(QR, qr_body(qrcode=None))
    assert answer["returnCode"] == "MB20"
    assert backend.calls == []


# --- options on the pad ----------------------------------------------------------------------------


async def test_options_are_chosen_on_the_pad_and_paid_by_a_second_round(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(QR, OPTIONS, {**APPROVED, "activityProductNo": PRODUCTS[1]["activityProductNo"]})
    pad.choice = 1
    body = qr_body(qrcode=None)
    answer = await service.handle(QR, body)
    trace_no = body["traceNo"]
    assert (answer["returnCode"], answer["traceNo"]) == ("00", trace_no), "the answer is under the POS traceNo"
    assert pad.offered == [["大杯咖啡兑换", "小杯咖啡兑换"]]
    first, second = (sent for _, sent in backend.calls)
    assert first == {**body, "qrcode": CODE}
    assert second == {**body, "qrcode": CODE, "traceNo": second["traceNo"], "activityProductNo": "HDCP00000000001236"}
    calls = await journal.calls(trace_no)
    assert [(c.trace_no, c.kind, c.state, c.return_code) for c in calls] == [
        (second["traceNo"], "option", "answered", "00")
    ]
    assert await events(journal, trace_no) == [
        "intent", "start_code", "code_read", "offer_options", "option_chosen", "approve",
    ]  # fmt: skip
    await assert_code_not_journaled(journal, trace_no)
    view = await service.transaction(trace_no)
    assert view is not None
    assert second["traceNo"] in json.dumps(view, default=str), "the transaction view shows the second round"


@pytest.mark.parametrize(("error", "code"), [(DeviceTimeout("no choice"), "MB37"), (CustomerCancelled("c"), "MB23")])
async def test_no_choice_on_the_pad_ends_it_with_nothing_moved(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad,
    error: BaseException, code: str,
) -> None:  # fmt: skip
    backend.will(QR, OPTIONS)
    pad.choice = error
    body = qr_body()
    assert (await service.handle(QR, body))["returnCode"] == code
    assert await events(journal, body["traceNo"]) == ["intent", "submit", "offer_options", "abort"]
    assert backend.actions() == [QR]


async def test_an_unknown_second_round_is_inquired_and_voided_by_voidqrcodesale_under_its_own_trace_no(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(QR, OPTIONS, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", reply("26", "in progress"))
    backend.will("voidQrcodeSale", APPROVED)
    body = qr_body()
    answer = await service.handle(QR, body)
    assert answer["returnCode"] == "MB32"
    second = backend.calls[1][1]["traceNo"]
    inquiries = [sent for action, sent in backend.calls if action == "inquiry"]
    assert inquiries
    assert {sent["originalTraceNo"] for sent in inquiries} == {second}
    await service.resolver.drain()
    voids = [sent for action, sent in backend.calls if action == "voidQrcodeSale"]
    assert [sent["originalTraceNo"] for sent in voids] == [second]
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert record.state == "voided"


# --- options via the POS ---------------------------------------------------------------------------


@pytest.fixture
def pos_settings() -> Settings:
    """Options go to the POS."""
    return Settings(resolution=FAST_RESOLUTION, options=OptionSettings(on="pos"))


@pytest_asyncio.fixture
async def pos_service(
    pos_settings: Settings, journal: Journal, pad: ScriptedPad, backend: ScriptedBackend
) -> TransactionService:
    """A service whose options go to the POS."""
    started = TransactionService(pos_settings, journal, pad, backend)
    await started.recover()
    return started


async def test_the_pos_gets_the_options_and_its_second_request_pays(
    pos_service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(QR, OPTIONS, APPROVED)
    body = qr_body(qrcode=None)
    offered = await pos_service.handle(QR, body)
    assert (offered["returnCode"], offered["activityProductList"]) == ("09", PRODUCTS)
    assert await pos_service.handle(QR, body) == offered, "a repeat of the first request: the same options"
    assert pad.offered == []
    chosen = {**body, "activityProductNo": PRODUCTS[0]["activityProductNo"]}
    answer = await pos_service.handle(QR, chosen)
    assert (answer["returnCode"], answer["traceNo"]) == ("00", body["traceNo"])
    second = backend.calls[1][1]
    assert second["qrcode"] == CODE, "the pad's code, kept in memory only"
    assert (second["activityProductNo"], second["traceNo"] != body["traceNo"]) == (
        PRODUCTS[0]["activityProductNo"],
        True,
    )
    assert len(pad.code_prompts) == 1, "the customer scans once"
    assert await pos_service.handle(QR, chosen) == answer  # a repeat of the second request: its answer
    assert backend.actions() == [QR, QR]
    await assert_code_not_journaled(journal, body["traceNo"])


async def test_a_product_not_offered_is_mb38_and_the_pos_may_choose_again(
    pos_service: TransactionService, backend: ScriptedBackend
) -> None:
    backend.will(QR, OPTIONS, APPROVED)
    body = qr_body()
    await pos_service.handle(QR, body)
    wrong = await pos_service.handle(QR, {**body, "activityProductNo": "NOPE"})
    assert wrong["returnCode"] == "MB38"
    right = await pos_service.handle(QR, {**body, "activityProductNo": PRODUCTS[1]["activityProductNo"]})
    assert right["returnCode"] == "00"
    assert backend.actions() == [QR, QR]


async def test_a_second_request_with_another_body_is_mb41(
    pos_service: TransactionService, backend: ScriptedBackend
) -> None:
    backend.will(QR, OPTIONS)
    body = qr_body()
    await pos_service.handle(QR, body)
    other = {**body, "totalAmount": Decimal("1.00"), "activityProductNo": PRODUCTS[0]["activityProductNo"]}
    assert (await pos_service.handle(QR, other))["returnCode"] == "MB41"
    assert backend.actions() == [QR]


async def test_a_choice_after_the_timeout_or_a_restart_is_mb37(
    pos_settings: Settings,
    journal: Journal,
    pad: ScriptedPad,
    backend: ScriptedBackend,
    pos_service: TransactionService,
) -> None:
    backend.will(QR, OPTIONS)
    body = qr_body()
    await pos_service.handle(QR, body)
    restarted = TransactionService(pos_settings, journal, pad, backend)
    await restarted.recover()  # a choosing sale moved nothing: aborted at start-up
    answer = await restarted.handle(QR, {**body, "activityProductNo": PRODUCTS[0]["activityProductNo"]})
    assert answer["returnCode"] == "MB37", "the answer the aborted sale stored: none was chosen"
    assert "restarted" in answer["returnDesc"]
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert record.state == "aborted"
    assert backend.actions() == [QR]


async def test_a_choice_after_the_pos_choice_timeout_is_mb37(
    journal: Journal, pad: ScriptedPad, backend: ScriptedBackend
) -> None:
    settings = Settings(resolution=FAST_RESOLUTION, options=OptionSettings(on="pos", pos_choice_timeout_s=0.01))
    service = TransactionService(settings, journal, pad, backend)
    await service.recover()
    backend.will(QR, OPTIONS)
    body = qr_body()
    await service.handle(QR, body)
    await asyncio.sleep(0.05)
    answer = await service.handle(QR, {**body, "activityProductNo": PRODUCTS[0]["activityProductNo"]})
    assert answer["returnCode"] == "MB37"
    assert await events(journal, body["traceNo"]) == ["intent", "submit", "offer_options", "abort"]
    assert backend.actions() == [QR]


async def test_a_new_qr_sale_aborts_an_options_sale_whose_pos_did_not_choose(
    journal: Journal, pad: ScriptedPad, backend: ScriptedBackend
) -> None:
    settings = Settings(resolution=FAST_RESOLUTION, options=OptionSettings(on="pos", pos_choice_timeout_s=0.01))
    service = TransactionService(settings, journal, pad, backend)
    await service.recover()
    backend.will(QR, OPTIONS, APPROVED)
    forgotten = qr_body()
    await service.handle(QR, forgotten)
    await asyncio.sleep(0.05)
    assert (await service.handle(QR, qr_body()))["returnCode"] == "00"
    record = await journal.get(forgotten["traceNo"])
    assert record is not None
    assert (record.state, record.return_code) == ("aborted", "MB37")


async def test_the_code_is_never_logged(
    service: TransactionService, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(f"{message} {message.record['extra']}"), level="DEBUG")
    try:
        backend.will(QR, OPTIONS, BackendOutcomeUnknown("read timeout"))
        backend.will("inquiry", reply("26", "in progress"))
        backend.will("voidQrcodeSale", APPROVED)
        await service.handle(QR, qr_body(qrcode=None))
        await service.resolver.drain()
    finally:
        logger.remove(sink)
    assert lines, "the sale logged its steps"
    assert not [line for line in lines if CODE in line]
    assert scrub({"qrcode": CODE}) == {"qrcode": REDACTED}, "a dict with a code is scrubbed before it is logged"


async def test_a_refund_of_an_options_sale_names_its_second_round(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(QR, OPTIONS, APPROVED)
    body = qr_body()
    assert (await service.handle(QR, body))["returnCode"] == "00"
    second = backend.calls[1][1]["traceNo"]
    backend.will("refundQrcodeSale", {**APPROVED, "originalTraceNo": second})  # a backend echoes what it got
    refund = {"traceNo": "QR-REFUND-1", "originalTraceNo": body["traceNo"], "refundAmount": Decimal("1.00")}
    answer = await service.handle("refundQrcodeSale", refund)
    assert (answer["returnCode"], answer["originalTraceNo"]) == ("00", body["traceNo"]), "the POS's name for it"
    assert backend.calls[-1] == ("refundQrcodeSale", {**refund, "originalTraceNo": second})
    record = await journal.get("QR-REFUND-1")
    assert record is not None
    assert record.request["originalTraceNo"] == body["traceNo"], "the journal keeps the POS's request"


async def test_a_void_of_an_options_sale_sent_again_is_answered_under_the_pos_name(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(QR, OPTIONS, APPROVED)
    body = qr_body()
    assert (await service.handle(QR, body))["returnCode"] == "00"
    second = backend.calls[1][1]["traceNo"]
    backend.will("voidQrcodeSale", BackendOutcomeUnknown("read timeout"), {**APPROVED, "originalTraceNo": second})
    backend.will("inquiry", reply("26", "in progress"))
    void = {"traceNo": "QR-VOID-9", "originalTraceNo": body["traceNo"]}
    assert (await service.handle("voidQrcodeSale", void))["returnCode"] == "MB36"
    reversal = await journal.reversal("QR-VOID-9")
    assert reversal is not None
    await service.resolver.attempt_void(reversal)  # the resend, naming the second round, is approved
    record = await journal.get("QR-VOID-9")
    assert record is not None
    assert record.response is not None
    assert (record.state, record.response["originalTraceNo"]) == ("approved", body["traceNo"])
    assert backend.calls[-1][1]["originalTraceNo"] == second


async def test_a_batch_upload_names_an_options_sale_as_the_backend_knows_it_and_answers_as_the_pos_does(
    service: TransactionService, backend: ScriptedBackend
) -> None:
    backend.will(QR, OPTIONS, APPROVED)
    body = qr_body()
    assert (await service.handle(QR, body))["returnCode"] == "00"
    second = backend.calls[1][1]["traceNo"]
    matched = [{"traceNo": second, "status": 1}, {"traceNo": "OTHER-1", "status": 4}]
    backend.will("batchUpload", {**APPROVED, "transRecord": matched})
    upload = {"traceNo": "QR-BATCH-1", "transCount": 2, "beginTime": "20261205000000", "endTime": "20261205235959",
              "transRecord": [{"traceNo": body["traceNo"], "paidAmount": Decimal("12.50"), "status": 0},
                              {"traceNo": "OTHER-1", "paidAmount": Decimal(1), "status": 0}]}  # fmt: skip
    answer = await service.handle("batchUpload", upload)
    sent = backend.calls[-1][1]["transRecord"]
    assert [record["traceNo"] for record in sent] == [second, "OTHER-1"]
    assert answer["transRecord"] == [{"traceNo": body["traceNo"], "status": 1}, {"traceNo": "OTHER-1", "status": 4}]


async def test_a_first_round_whose_offer_was_lost_is_found_by_inquiry_and_answered_mb37(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(QR, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", OPTIONS)  # the backend holds the first round as answered "choose"
    body = qr_body()
    answer = await service.handle(QR, body)
    assert answer["returnCode"] == "MB37", answer
    assert "activityProductList" not in answer, "nobody can choose any more"
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert (record.state, record.return_code) == ("declined", "MB37")
    assert await service.handle(QR, body) == answer, "a repeat gets the same"
