"""Burned traceNos (issue 10, item 7).

A POS ``inquiry`` about an original misbridge does not know is forwarded to the backend, which
(rightly) bars that traceNo: a later sale with it is refused as a duplicate ("94"). Before the fix
the inquiry went out unjournaled, so any local program could burn the POS's predictable future
traceNos and make a real sale fail after the customer had typed the PIN. Now:

* every forwarded inquiry is journaled (``pos_inquiries``) before it leaves;
* a sale whose traceNo the backend saw in a forwarded inquiry (as ``originalTraceNo`` or as the
  inquiry's own traceNo) is refused with MB42 before the customer is prompted;
* at most ``api.unknown_inquiries_per_minute`` (10) such inquiries are forwarded a minute; more get
  MB43 and are not forwarded.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from simulators.cards import CARDS
from tests.integration.faultbench import FaultBench, fresh_trace_no, redemption_body

pytestmark = pytest.mark.asyncio(loop_scope="module")

PER_MINUTE = 10  # api.unknown_inquiries_per_minute, default


def _printed_pan(answer: dict[str, Any]) -> str:
    return str(answer["printDetail"]["cardNo64"])


def _book_mask(card: str) -> str:
    pan = CARDS[card].pan
    return pan[:6] + "****" + pan[-4:]


async def _assert_pad_not_prompted(bench: FaultBench, waiting_card: str) -> None:
    """The customer scripted before the refusal is still waiting: the next sale gets that card."""
    answer = await bench.send("cardRedemption", redemption_body())
    assert answer["returnCode"] == "00", answer
    assert _printed_pan(answer) == _book_mask(waiting_card), "the pad was prompted for the refused sale"


async def test_a_sale_with_a_trace_no_burned_by_an_inquiry_is_refused_before_the_pin(fault_bench: FaultBench) -> None:
    bench = fault_bench
    await bench.backend.clear_faults()
    future_sale, inquiry_no = fresh_trace_no(), fresh_trace_no()
    burned = await bench.send("inquiry", {"traceNo": inquiry_no, "originalTraceNo": future_sale})
    assert burned["returnCode"] == "25", burned  # the backend: not found (and it bars future_sale)

    await bench.customer("prepaid")
    for door in ("socket", "http"):
        answer = await bench.send("cardRedemption", redemption_body(future_sale), door)
        assert answer["returnCode"] == "MB42", answer
        assert answer["traceNo"] == future_sale
        assert "inquiry" in answer["returnDesc"], answer
    view = await bench.view(future_sale)
    assert view is not None, "the forwarded inquiry that barred it is shown"
    assert (view["action"], view["state"]) == ("", ""), "a refused sale is not journaled"
    assert [i["traceNo"] for i in view["posInquiries"]] == [inquiry_no]
    entry = await bench.backend.entry(future_sale)
    assert entry is not None
    assert entry.submissions == 0, "the refused sale reached the backend"
    await _assert_pad_not_prompted(bench, "prepaid")


async def test_an_inquiry_using_a_sales_trace_no_is_not_forwarded(fault_bench: FaultBench) -> None:
    # The backend would see the sale's traceNo a second time (and bar it, were the sale still to come).
    bench = fault_bench
    await bench.backend.clear_faults()
    await bench.customer("prepaid")
    sale = await bench.send("cardRedemption", redemption_body())
    assert sale["returnCode"] == "00", sale
    unknown = fresh_trace_no()
    answer = await bench.send("inquiry", {"traceNo": sale["traceNo"], "originalTraceNo": unknown})
    assert answer["returnCode"] == "MB41", answer
    assert await bench.backend.entry(unknown) is None, "the inquiry reached the backend"


async def test_a_forwarded_inquiry_answer_carries_the_books_whole_head(fault_bench: FaultBench) -> None:
    # The backend's "not found" answer has neither orderNo nor transDate (book: mandatory in every
    # response); misbridge fills them in on both doors, and keeps what the backend did send.
    bench = fault_bench
    await bench.backend.clear_faults()
    original = fresh_trace_no()
    await bench.send("inquiry", {"traceNo": fresh_trace_no(), "originalTraceNo": original})
    for door in ("socket", "http"):  # asked again: the backend answers from its barred record
        inquiry_no = fresh_trace_no()
        answer = await bench.send("inquiry", {"traceNo": inquiry_no, "originalTraceNo": original}, door)
        assert answer["returnCode"] == "25", answer
        assert answer["traceNo"] == inquiry_no
        assert answer["orderNo"] == ""
        assert re.fullmatch(r"[0-9]{14}", answer["transDate"]), answer
        assert answer["paidAmount"] == 0


async def test_the_inquirys_own_trace_no_cannot_start_a_sale_either(fault_bench: FaultBench) -> None:
    bench = fault_bench
    inquiry_no = fresh_trace_no()
    await bench.send("inquiry", {"traceNo": inquiry_no, "originalTraceNo": fresh_trace_no()})
    await bench.customer("member")
    answer = await bench.send("cardRedemption", redemption_body(inquiry_no))
    assert answer["returnCode"] == "MB42", answer
    await _assert_pad_not_prompted(bench, "member")


async def test_forwarded_inquiries_are_journaled_with_their_result(fault_bench: FaultBench) -> None:
    bench = fault_bench
    original, inquiry_no = fresh_trace_no(), fresh_trace_no()
    answer = await bench.send("inquiry", {"traceNo": inquiry_no, "originalTraceNo": original}, "http")
    journal = bench.daemon.service.journal
    [row] = await journal.pos_inquiries(original)
    assert (row.trace_no, row.original_trace_no, row.state, row.return_code) == (inquiry_no, original, "answered", "25")
    assert row.response == answer
    assert await journal.pos_inquiries(inquiry_no) == [row]


async def test_unknown_original_inquiries_beyond_the_rate_are_refused_and_not_forwarded(
    fault_bench: FaultBench,
) -> None:
    bench = fault_bench
    await bench.restart()  # a new service: nothing forwarded in the last minute
    forwarded = []
    for _ in range(PER_MINUTE):
        inquiry_no = fresh_trace_no()
        answer = await bench.send("inquiry", {"traceNo": inquiry_no, "originalTraceNo": fresh_trace_no()})
        assert answer["returnCode"] == "25", answer
        forwarded.append(inquiry_no)

    refused_no, refused_original = fresh_trace_no(), fresh_trace_no()
    for door in ("socket", "http"):
        answer = await bench.send("inquiry", {"traceNo": refused_no, "originalTraceNo": refused_original}, door)
        assert answer["returnCode"] == "MB43", answer
        assert answer["traceNo"] == refused_no
    assert await bench.backend.entry(refused_no) is None, "the refused inquiry was forwarded"
    assert await bench.backend.entry(refused_original) is None, "the refused inquiry burned its original"
    assert await bench.daemon.service.journal.pos_inquiries(refused_original) == []
    for inquiry_no in forwarded:
        assert await bench.backend.entry(inquiry_no) is not None

    # The limit is about unknown originals only: a sale misbridge holds is still answered.
    await bench.customer("privilege")
    sale = redemption_body()
    approved = await bench.send("cardRedemption", sale)
    assert approved["returnCode"] == "00", approved
    known = await bench.send("inquiry", {"traceNo": fresh_trace_no(), "originalTraceNo": sale["traceNo"]})
    assert (known["returnCode"], known["orderNo"]) == ("00", approved["orderNo"])
    # and a sale with the refused (never forwarded) original's traceNo is not barred
    await bench.customer("privilege")
    late = await bench.send("cardRedemption", redemption_body(refused_original))
    assert late["returnCode"] == "00", late
