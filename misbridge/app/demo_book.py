"""``misbridge demo`` scenarios beyond one card sale: a void, refunds, a QR sale and options.

Each scenario sends what a cashier POS would through the e-Buy socket door of a daemon wired
to both simulators (:mod:`misbridge.app.demo` starts them) and prints, for a person, what the
POS asked, what the customer did on the pad, what it was answered and the journal's trail.
Each returns True when it ended as it should.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TextIO

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.daemon import Daemon
from misbridge.app.demo_day import day_scenario
from misbridge.ebuy.examples import book_request, card_redemption_request

#: The simulator's e-coupon that offers two products (docs/backend.md, "Test codes").
OPTIONS_CODE = "HDCP00000000000009"

Scenario = Callable[[TextIO, Daemon], Awaitable[bool]]


async def ask(out: TextIO, daemon: Daemon, action: str, body: dict[str, Any], note: str = "") -> dict[str, Any]:
    """Send one request through the socket door and print the question and the answer in a line each."""
    out.write(f"POS -> misbridge    {action} traceNo {body['traceNo']}{'  ' + note if note else ''}\n")
    answer = await socket_request(daemon.settings.api.host, daemon.socket_port, envelope_for(action, body))
    reply = answer.body
    shown = ", ".join(f"{name} {reply[name]}" for name in ("paidAmount", "activityProductNo") if name in reply)
    if reply.get("returnCode") != "00":
        shown = ""
    elif action.startswith(("void", "refund")) and isinstance(reply.get("fundChannel"), list):
        shown = "given back: " + ", ".join(
            f"{channel.get('channelName') or channel.get('channelNo')} {channel.get('channelAmount')}"
            for channel in reply["fundChannel"]
            if isinstance(channel, dict)
        )
    out.write(
        f"misbridge -> POS    {reply.get('returnCode')} {reply.get('returnDesc', '')}"
        f"{'  (' + shown + ')' if shown else ''}\n"
    )
    return reply


async def trail(out: TextIO, daemon: Daemon, trace_no: str) -> None:
    """The journal's transitions of ``trace_no`` and the requests misbridge originated for it."""
    view = await daemon.service.transaction(trace_no)
    if view is None:
        return
    steps = " -> ".join(str(step["to"]) for step in view["transitions"])
    out.write(f"                    journal: {steps}\n")
    for call in view["backendCalls"]:
        out.write(f"                    sent as {call['kind']} traceNo {call['traceNo']}: {call['state']}\n")


def sale_request(suffix: str) -> dict[str, Any]:
    """The book's cardRedemption example under a traceNo ending in ``suffix``."""
    body = card_redemption_request()
    body["traceNo"] = f"{body['traceNo'][:-2]}{suffix}"
    return body


async def void_scenario(out: TextIO, daemon: Daemon) -> bool:
    """A card redemption, then its void (the customer presents the same card and PIN again)."""
    sale = sale_request("01")
    if (await ask(out, daemon, "cardRedemption", sale, f"totalAmount {sale['totalAmount']}"))["returnCode"] != "00":
        return False
    out.write("customer            presents the same card again and enters the PIN: the pad shows VOID\n")
    void = {"traceNo": sale_request("02")["traceNo"], "originalTraceNo": sale["traceNo"]}
    answer = await ask(out, daemon, "voidCardSale", void, f"originalTraceNo {sale['traceNo']}")
    await trail(out, daemon, void["traceNo"])
    return bool(answer["returnCode"] == "00")


async def refund_scenario(out: TextIO, daemon: Daemon) -> bool:
    """A card redemption refunded 10.80 then the rest; one cent more is refused before the pad."""
    sale = sale_request("11")
    total = Decimal(str(sale["totalAmount"]))
    if (await ask(out, daemon, "cardRedemption", sale, f"totalAmount {total}"))["returnCode"] != "00":
        return False
    codes = []
    for number, amount in enumerate((Decimal("10.80"), total - Decimal("10.80"), Decimal("0.01")), start=12):
        trace_no = sale_request(str(number))["traceNo"]
        body = {"traceNo": trace_no, "originalTraceNo": sale["traceNo"], "refundAmount": amount}
        if amount != Decimal("0.01"):
            out.write("customer            presents the card and enters the PIN: the pad shows REFUND\n")
        codes.append((await ask(out, daemon, "refundCardSale", body, f"refundAmount {amount}"))["returnCode"])
    out.write("                    the third is above what is left (MB47): nobody was asked for a card\n")
    return codes == ["00", "00", "MB47"]


async def qrcode_scenario(out: TextIO, daemon: Daemon) -> bool:
    """The book's qrcodeSale example: the code is in the request, no pad step."""
    body = book_request("qrcodeSale")
    answer = await ask(out, daemon, "qrcodeSale", body, f"totalAmount {body['totalAmount']}, code in the request")
    await trail(out, daemon, body["traceNo"])
    return bool(answer["returnCode"] == "00")


async def options_scenario(out: TextIO, daemon: Daemon) -> bool:
    """An e-coupon with options: round 1 offers them, the customer picks on the pad, round 2 pays."""
    body = {**book_request("qrcodeSale"), "qrcode": OPTIONS_CODE, "totalAmount": Decimal("12.50"),
            "undiscountAmount": 0, "goodsDetail": [{"goodsCategory": "001", "goodsId": "P00009",
            "goodsName": "coffee", "price": Decimal("12.50"), "quantity": 1, "rebateCode": "000"}]}  # fmt: skip
    body.pop("memberDetail", None)
    out.write("backend             answers the first round with two products to choose from (09)\n")
    out.write("customer            picks the first one on the pad\n")
    answer = await ask(out, daemon, "qrcodeSale", body, "totalAmount 12.50, an e-coupon with options")
    await trail(out, daemon, body["traceNo"])
    return bool(answer["returnCode"] == "00")


BOOK_RUNS: dict[str, Scenario] = {
    "void": void_scenario,
    "refund": refund_scenario,
    "qrcode": qrcode_scenario,
    "options": options_scenario,
    "day": day_scenario,
}
