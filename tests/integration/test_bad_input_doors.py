"""Bad input at the real doors: every rule of the book's fields, and the journal's rules on originals.

A daemon wired to both simulators (tests/integration/conftest.py) gets, through one socket
connection kept open and through HTTP, every bad body of the request tables
(tests/unit/ebuy/test_book_requests.py): each must be answered with its code and a description
naming its field, in the book's shape, on the same connection; nothing may reach the backend
and no transaction may be journaled. Then the rules that need the journal, checked before the
customer is asked for anything (none of them is journaled: the pad is asked only after the
intent is): a second void, a void after a refund, a refund above the rest, and a
follow-up of the wrong family.
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Any

import pytest

from misbridge.api.pos_client import envelope_for, read_framed
from misbridge.ebuy import jsonio
from misbridge.ebuy.envelope import encode_envelope, frame_message, parse_envelope
from misbridge.ebuy.requests import TRACE_NO_PATTERN
from misbridge.errors import ReturnCode
from tests.integration.conftest import Bench, new_trace_no
from tests.integration.test_whole_day import fresh
from tests.unit.ebuy.test_book_requests import BAD_INPUTS

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Connection:
    """One socket-door connection a careless POS keeps open for many requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        self.writer.write(frame_message(encode_envelope(envelope_for(action, body))))
        await self.writer.drain()
        answer = parse_envelope(await asyncio.wait_for(read_framed(self.reader), 20))
        assert answer.action == action
        return answer.body


def _named(field: str, description: str) -> bool:
    return field.split("[")[0].split(".")[-1] in description


def _traced(body: dict[str, Any], field: str, trace_no: str) -> dict[str, Any]:
    """``body`` under a fresh traceNo, unless the traceNo is what is wrong with it."""
    return {**body, "traceNo": trace_no} if "traceNo" in body and field != "traceNo" else body


async def test_every_bad_body_gets_its_code_on_both_doors_and_nothing_moves(bench: Bench) -> None:
    before = set((await bench.ledger())["transactions"])
    reader, writer = await asyncio.open_connection(bench.host, bench.daemon.socket_port)
    connection = Connection(reader, writer)
    refused: list[str] = []
    try:
        for action, body, code, field in BAD_INPUTS:
            trace_no = new_trace_no()
            sent = _traced(body, field, trace_no)
            by_socket = await connection.ask(action, sent)
            assert (by_socket["returnCode"], _named(field, by_socket["returnDesc"])) == (code.code, True), (
                action, field, by_socket)  # fmt: skip
            http_body = _traced(body, field, new_trace_no())
            reply = await bench.http.post(f"/v1/{action}", content=jsonio.dumps(http_body),
                                          headers={"content-type": "application/json"})  # fmt: skip
            by_http = reply.json()
            assert (reply.status_code, by_http["returnCode"]) == (code.http_status, code.code), (action, by_http)
            assert _named(field, by_http["returnDesc"]), (action, field, by_http)
            refused += [str(sent.get("traceNo", "")), str(http_body.get("traceNo", ""))]
        # The same connection still carries a good request after all of them.
        query = fresh("ecouponInquiry")
        assert (await connection.ask("ecouponInquiry", query))["returnCode"] == "00"
    finally:
        writer.close()
        await writer.wait_closed()
    assert set((await bench.ledger())["transactions"]) - before == {query["traceNo"]}
    for trace_no in {no for no in refused if re.fullmatch(TRACE_NO_PATTERN, no)}:  # a malformed one: no lookup
        assert (await bench.http.get(f"/v1/transactions/{trace_no}")).status_code == 404, trace_no


async def _approved_card_sale(bench: Bench) -> dict[str, Any]:
    await bench.customer("points-cash")
    sale = fresh("cardRedemption")
    reply = await bench.http.post("/v1/cardRedemption", content=jsonio.dumps(sale),
                                  headers={"content-type": "application/json"})  # fmt: skip
    assert reply.json()["returnCode"] == "00", reply.json()
    return sale


async def _ask(bench: Bench, action: str, body: dict[str, Any]) -> str:
    reply = await bench.http.post(f"/v1/{action}", content=jsonio.dumps(body),
                                  headers={"content-type": "application/json"})  # fmt: skip
    return str(reply.json()["returnCode"])


async def test_the_journal_refuses_follow_ups_before_the_pad(bench: Bench) -> None:
    sale = await _approved_card_sale(bench)
    original = sale["traceNo"]
    await bench.customer("points-cash")
    part = {"traceNo": new_trace_no(), "originalTraceNo": original, "refundAmount": Decimal("0.80")}
    assert await _ask(bench, "refundCardSale", part) == "00"
    void = {"traceNo": new_trace_no(), "originalTraceNo": original}
    assert await _ask(bench, "voidCardSale", void) == ReturnCode.ORIGINAL_REFUNDED.code
    over = {"traceNo": new_trace_no(), "originalTraceNo": original, "refundAmount": Decimal("40.01")}
    assert await _ask(bench, "refundCardSale", over) == ReturnCode.REFUND_OVER_REST.code
    wrong_family = {"traceNo": new_trace_no(), "originalTraceNo": original, "refundAmount": Decimal("1")}
    assert await _ask(bench, "refundQrcodeSale", wrong_family) == ReturnCode.ORIGINAL_NOT_QR_SALE.code
    qr = fresh("qrcodeSale")
    assert await _ask(bench, "qrcodeSale", qr) == "00"
    assert await _ask(bench, "voidCardSale", {"traceNo": new_trace_no(), "originalTraceNo": qr["traceNo"]}) == (
        ReturnCode.ORIGINAL_NOT_CARD_SALE.code)  # fmt: skip
    assert await _ask(bench, "voidQrcodeSale", {"traceNo": new_trace_no(), "originalTraceNo": qr["traceNo"]}) == "00"
    again = {"traceNo": new_trace_no(), "originalTraceNo": qr["traceNo"]}
    assert await _ask(bench, "voidQrcodeSale", again) == ReturnCode.ORIGINAL_VOIDED.code
    ledger = (await bench.ledger())["transactions"]
    assert Decimal(str(ledger[original]["refundedAmount"])) == Decimal("0.80")
    for refused in (void, over, wrong_family, again):
        assert refused["traceNo"] not in ledger
        # Not journaled: refused before the intent, and the pad is asked only after it.
        assert (await bench.http.get(f"/v1/transactions/{refused['traceNo']}")).status_code == 404
