"""``misbridge demo --scenario day``: a day at the till, every action of the book, both front doors.

The POS sends each of the book's twelve actions (§10, §11) in the order a store meets them,
alternating the e-Buy socket door and the HTTP door: card sales of both kinds, an inquiry, a
void, a refund in two parts and a cent more (refused before the pad), a QR sale refunded in
part, an e-coupon with options then its void, an e-coupon inquiry, points, the summary and a
batch upload. Each request is one line: the door, the action, what was answered and whether
that is what the book's rules make of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TextIO

import httpx

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.daemon import Daemon
from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import book_request
from misbridge.ebuy.requests import BOOK_ACTIONS

Door = Literal["socket", "http"]
#: The simulator's e-coupon that offers two products (docs/backend.md, "Test codes").
OPTIONS_CODE = "HDCP00000000000009"
#: The head every answer of the book carries (§6.1).
HEAD = ("traceNo", "orderNo", "transDate", "returnCode", "returnDesc")


@dataclass
class Till:
    """The POS of the day: where it sends, the traceNos it draws, and what it was answered."""

    out: TextIO
    daemon: Daemon
    http: httpx.AsyncClient
    numbers: Iterator[int]
    seen: dict[str, bool]

    def trace_no(self) -> str:
        """A new traceNo in the book's 23-digit shape."""
        return f"990000091000101017{next(self.numbers):05d}"

    async def send(self, door: Door, action: str, body: dict[str, Any], *, expect: str = "00") -> dict[str, Any]:
        """Send ``body`` through ``door``, print a line, and note whether the answer is as expected."""
        if door == "socket":
            answer = await socket_request(
                self.daemon.settings.api.host, self.daemon.socket_port, envelope_for(action, body)
            )
            reply = answer.body
        else:
            response = await self.http.post(f"/v1/{action}", content=jsonio.dumps(body))
            reply = jsonio.loads(response.content)
        code = str(reply.get("returnCode"))
        as_expected = code == expect and all(name in reply for name in HEAD) and reply["traceNo"] == body["traceNo"]
        self.seen[action] = self.seen.get(action, True) and as_expected
        mark = "ok" if as_expected else f"NOT as expected (wanted {expect})"
        self.out.write(f"{door:<6}  {action:<16}  {code:<4} {_detail(reply):<44}  {mark}\n")
        return dict(reply)


def _detail(reply: dict[str, Any]) -> str:
    if reply.get("returnCode") != "00":
        desc = str(reply.get("returnDesc", ""))
        return desc if len(desc) <= 44 else desc[:43] + "…"
    for name in ("paidAmount", "canPayAmount", "volume"):
        if name in reply:
            return f"{name} {reply[name]}"
    if isinstance(reply.get("fundChannel"), list):  # a void or a refund: what went back
        back = sum(Decimal(str(channel.get("channelAmount", 0))) for channel in reply["fundChannel"])
        return f"given back {back}"
    if isinstance(reply.get("transRecord"), list):
        return f"{len(reply['transRecord'])} records, each with its match status"
    if isinstance(reply.get("memberDetail"), dict):
        return f"points {reply['memberDetail'].get('pointBalance', '')}"
    return str(reply.get("returnDesc", ""))


def _with(action: str, till: Till, **changes: Any) -> dict[str, Any]:
    return {**book_request(action), "traceNo": till.trace_no(), **changes}


async def _card_sales(till: Till) -> None:
    redemption = _with("cardRedemption", till)
    await till.send("socket", "cardRedemption", redemption)
    payment = _with("cardPayment", till)
    await till.send("http", "cardPayment", payment)
    await till.send("socket", "inquiry", {"traceNo": till.trace_no(), "originalTraceNo": redemption["traceNo"]})
    void = {"traceNo": till.trace_no(), "originalTraceNo": payment["traceNo"], "acquirer": payment["acquirer"]}
    await till.send("http", "voidCardSale", void)
    total = Decimal(str(redemption["totalAmount"]))
    for door, amount, expect in (("socket", Decimal("10.80"), "00"), ("http", total - Decimal("10.80"), "00"),
                                 ("socket", Decimal("0.01"), "MB47")):  # fmt: skip
        body = {"traceNo": till.trace_no(), "originalTraceNo": redemption["traceNo"], "refundAmount": amount}
        await till.send(door, "refundCardSale", body, expect=expect)  # type: ignore[arg-type]


async def _qr_sales(till: Till) -> None:
    sale = _with("qrcodeSale", till)
    await till.send("http", "qrcodeSale", sale)
    part = {"traceNo": till.trace_no(), "originalTraceNo": sale["traceNo"], "refundAmount": Decimal("5.00")}
    await till.send("socket", "refundQrcodeSale", part)
    line = {"goodsCategory": "001", "goodsId": "P00009", "goodsName": "coffee", "price": Decimal("12.50"),
            "quantity": 1, "rebateCode": "000"}  # fmt: skip
    options = _with("qrcodeSale", till, qrcode=OPTIONS_CODE, totalAmount=Decimal("12.50"), undiscountAmount=0,
                    goodsDetail=[line])  # fmt: skip
    options.pop("memberDetail", None)
    await till.send("http", "qrcodeSale", options)
    await till.send("socket", "voidQrcodeSale", {"traceNo": till.trace_no(), "originalTraceNo": options["traceNo"]})


async def _pass_through(till: Till) -> None:
    doors: tuple[Door, ...] = ("http", "socket", "http", "socket")
    for door, action in zip(doors, ("ecouponInquiry", "accumulating", "summary", "batchUpload"), strict=True):
        await till.send(door, action, _with(action, till))


async def day_scenario(out: TextIO, daemon: Daemon) -> bool:
    """Every action of the book through both doors; True when every answer was as the rules say."""
    base = f"http://{daemon.settings.api.host}:{daemon.http_port}"
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        till = Till(out, daemon, http, itertools.count(1), {})
        out.write("customer: presents the card and enters the PIN on the pad for each card sale, void and refund\n\n")
        out.write("door    action            code detail                                        check\n")
        for part in (_card_sales, _qr_sales, _pass_through):
            await part(till)
    good = sorted(action for action, ok in till.seen.items() if ok)
    out.write(f"\n{len(good)} of the book's {len(BOOK_ACTIONS)} actions answered as the book's rules say\n")
    return set(good) == set(BOOK_ACTIONS)
