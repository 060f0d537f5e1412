"""An approved sale whose answer is too large for the book's framing still reaches the socket POS
(issue 10, item 1).

The backend echoes ``goodsDetail`` with fields added (``activityNo``, ``memo``), so a basket of
235 realistic lines, a request of about 55 KB, comes back as an answer of more than 65 535 bytes.
Before the fix the socket door raised while framing it and closed the connection with no reply,
after the money had moved; repeats and inquiries got no reply either. Now the POS gets
returnCode "00" with the mandatory and receipt fields and a mark of what was left out, and
``GET /v1/transactions/{traceNo}`` has the whole answer.

Needs the socket door to send through ``misbridge.ebuy.fitting.frame_reply``: until that wiring
is on the branch the socket checks are expected to fail (strict xfail), and no longer once it is.
"""

from __future__ import annotations

import asyncio
import inspect
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from misbridge.api import socket_server
from misbridge.api.pos_client import envelope_for, read_framed
from misbridge.ebuy.envelope import MAX_MESSAGE_LEN, Envelope, encode_envelope, frame_message, parse_envelope
from misbridge.ebuy.fitting import DETAIL_FIELD, MANDATORY_FIELDS, OMITTED_FIELD, frame_reply
from tests.integration.faultbench import FaultBench, fresh_trace_no

pytestmark = pytest.mark.asyncio(loop_scope="module")

LINES = 235
#: The socket door frames its answers with frame_reply (wired by the door's owner).
DOOR_FITS_ANSWERS = "frame_reply" in inspect.getsource(socket_server)
needs_fitting_door = pytest.mark.xfail(
    not DOOR_FITS_ANSWERS, reason="the socket door's frame_reply wiring lands at merge", strict=True
)
_GOODS = (
    ("001", "牙膏 Colgate Total 12 清新薄荷 120g", Decimal("12.90")),
    ("101", "洗发水 Head & Shoulders 去屑 400ml", Decimal("45.50")),
    ("204", "纯牛奶 Mengniu Whole Milk 250ml x 12", Decimal("59.90")),
    ("310", "抽纸 Vinda 3-ply Tissue 120 sheets x 6", Decimal("23.80")),
    ("412", "矿泉水 Nongfu Spring 550ml", Decimal("2.00")),
)


def ean13(first_twelve: str) -> str:
    """A real EAN-13: the twelve digits and their check digit (goodsIds are barcodes, see pos-api.md)."""
    weighted = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first_twelve))
    return first_twelve + str(-weighted % 10)


def big_basket(trace_no: str) -> dict[str, Any]:
    """A cardRedemption of ``LINES`` goods lines as a supermarket POS sends them."""
    lines: list[dict[str, Any]] = []
    total = Decimal(0)
    for i in range(LINES):
        category, name, price = _GOODS[i % len(_GOODS)]
        lines.append({
            "goodsCategory": category, "goodsId": ean13(f"69{i:010d}"), "goodsName": name,
            "price": price, "quantity": 1 + i % 3, "rebateCode": "000",
            "goodsSpec": "1 unit", "memo": f"shelf {i % 40:02d}",
        })  # fmt: skip
        total += price * (1 + i % 3)
    return {
        "traceNo": trace_no, "totalAmount": total, "undiscountAmount": Decimal(0), "goodsDetail": lines,
        "memberDetail": {"memberId": "M000001545", "memberName": "TONY", "grade": "1", "status": "1"},
    }  # fmt: skip


async def socket_answer(bench: FaultBench, action: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The decoded answer body from the socket door, or None if it closed without one."""
    daemon = bench.daemon
    reader, writer = await asyncio.open_connection(daemon.settings.api.host, daemon.socket_port)
    try:
        writer.write(frame_message(encode_envelope(envelope_for(action, body))))
        await writer.drain()
        try:
            raw = await asyncio.wait_for(read_framed(reader), 30)
        except asyncio.IncompleteReadError:
            return None
        envelope = parse_envelope(raw)
        assert envelope.action == action
        return envelope.body
    finally:
        writer.close()
        await writer.wait_closed()


def assert_fitted_approval(answer: dict[str, Any] | None, stored: dict[str, Any], detail_trace_no: str) -> None:
    assert answer is not None, "the socket door closed without an answer"
    assert answer["returnCode"] == "00", answer
    for name in MANDATORY_FIELDS:
        assert name in answer, name
    assert answer[OMITTED_FIELD] == ["goodsDetail"]
    assert answer[DETAIL_FIELD] == f"/v1/transactions/{detail_trace_no}"
    assert answer["printDetail"] == stored["printDetail"]
    assert answer["fundChannel"] == stored["fundChannel"]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def approved(fault_bench: FaultBench) -> tuple[str, dict[str, Any]]:
    """One large basket approved through the HTTP door (no framing there): (traceNo, its answer)."""
    bench = fault_bench
    trace_no = fresh_trace_no()
    await bench.backend.clear_faults()
    await bench.customer("privilege-cash")
    answer = await bench.send("cardRedemption", big_basket(trace_no), "http")
    assert answer["returnCode"] == "00", answer
    return trace_no, answer


async def test_the_basket_is_a_legal_request_whose_answer_is_too_large_for_the_framing(
    approved: tuple[str, dict[str, Any]],
) -> None:
    """About 55 KB in, more than 65 535 bytes out: the backend echoed every line with fields added."""
    trace_no, answer = approved
    request_size = len(encode_envelope(envelope_for("cardRedemption", big_basket(trace_no))))
    assert 50_000 < request_size <= MAX_MESSAGE_LEN, request_size
    assert len(answer["goodsDetail"]) == LINES
    assert all({"activityNo", "memo"} <= set(line) for line in answer["goodsDetail"])
    reply = Envelope("cardRedemption", "POS01", "CN123456", "663", answer)
    assert len(encode_envelope(reply)) > MAX_MESSAGE_LEN, "the answer would have fitted anyway"
    fitted = parse_envelope(frame_reply(reply)[2:]).body
    assert_fitted_approval(fitted, answer, trace_no)


@needs_fitting_door
async def test_the_socket_pos_gets_the_approval_of_a_large_basket(fault_bench: FaultBench) -> None:
    bench = fault_bench
    trace_no = fresh_trace_no()
    await bench.customer("privilege-cash")
    answer = await socket_answer(bench, "cardRedemption", big_basket(trace_no))

    view = await bench.view(trace_no)
    assert view is not None
    assert view["state"] == "approved", view["state"]
    stored = view["response"]
    assert_fitted_approval(answer, stored, trace_no)
    assert len(stored["goodsDetail"]) == LINES, "the journal keeps the whole answer"
    assert all({"activityNo", "memo"} <= set(line) for line in stored["goodsDetail"])
    entry = await bench.backend.entry(trace_no)
    assert entry is not None
    assert entry.submissions == 1


@needs_fitting_door
async def test_a_repeat_and_an_inquiry_on_the_socket_get_answers_too(
    fault_bench: FaultBench, approved: tuple[str, dict[str, Any]]
) -> None:
    """The approved sale (its full answer journaled): the repeat and the POS's inquiry fit too."""
    bench = fault_bench
    sale_trace_no, stored = approved
    repeat = await socket_answer(bench, "cardRedemption", big_basket(sale_trace_no))
    assert_fitted_approval(repeat, stored, sale_trace_no)
    assert repeat is not None
    assert repeat["orderNo"] == stored["orderNo"]

    inquiry_no = fresh_trace_no()
    inquiry = await socket_answer(bench, "inquiry", {"traceNo": inquiry_no, "originalTraceNo": sale_trace_no})
    assert_fitted_approval(inquiry, stored, sale_trace_no)
    assert inquiry is not None
    assert (inquiry["traceNo"], inquiry["originalTraceNo"]) == (inquiry_no, sale_trace_no)

    entry = await bench.backend.entry(sale_trace_no)
    assert entry is not None
    assert entry.submissions == 1, "a repeat or the inquiry reached the backend as a sale"


async def test_the_http_door_and_the_transaction_view_give_the_whole_answer(
    fault_bench: FaultBench, approved: tuple[str, dict[str, Any]]
) -> None:
    bench = fault_bench
    trace_no, answer = approved
    view = await bench.view(trace_no)
    assert view is not None
    assert view["response"] == answer
    assert len(view["response"]["goodsDetail"]) == LINES
    repeat = await bench.send("cardRedemption", big_basket(trace_no), "http")
    assert repeat == answer
    assert OMITTED_FIELD not in repeat
