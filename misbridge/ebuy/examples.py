"""The book's published examples, for the demo and the tests.

The §10.2 request and the §6.1 message are byte for byte; the other request examples of §10 and
§11 (:data:`BOOK_REQUEST_TEXTS`) keep the book's keys and values, compacted.
"""

from __future__ import annotations

from typing import Any

from misbridge.ebuy import jsonio

#: §10.2 Card Redemption "Request body example", exactly as published.
CARD_REDEMPTION_REQUEST_TEXT = """{
    "traceNo": "99000009100010101732123",
    "totalAmount": 40.8,
    "undiscountAmount": 0,
    "goodsDetail": [
        {
            "goodsCategory": "001",
            "goodsId": "P00001",
            "goodsName": "牙膏",
            "price": 8,
            "quantity": 2,
            "rebateCode": "000"
        },
        {
            "goodsCategory": "101",
            "goodsId": "P00002",
            "goodsName": "洗发水",
            "price": 24.8,
            "quantity": 1,
            "rebateCode": "000"
        }
    ],
    "memberDetail": {
        "memberId": "M000001545",
        "memberName": "TONY",
        "grade": "1",
        "status": "1",
        "balance": 1000.00,
        "pointBalance": 30000
    }
}"""

#: §6.1 Message Structure example: the 2-byte prefix and the envelope JSON, byte for byte.
MESSAGE_STRUCTURE_EXAMPLE = (
    b"\x00\xe7"
    b'{"action":"inquiry","deviceNo":"POS01","shopNo":"CN123456","brand":"663","body":'
    b'"ewogICAgICAgICAidHJhY2VObyI6ICI5OTAwMDAwOTEwMDAxMDEwMTczMjEyMyIsCiAgICAgICAgICJvcmlnaW5hbFRyYWNl'
    b'Tm8iOiAiOTkwMDAwMDkxMDAwMTAxMDE3MzIxMjQiCiAgICAgfQ=="}'
)


def card_redemption_request() -> dict[str, Any]:
    """A fresh copy of the §10.2 request body (amounts as exact Decimals)."""
    body: dict[str, Any] = jsonio.loads(CARD_REDEMPTION_REQUEST_TEXT)
    return body


_TRACE = '"traceNo": "99000009100010101732123"'
_ORIGINAL = '"originalTraceNo": "99000009100010101732124"'
_RECORD = '{"traceNo": "99000009100010101732123", "paidAmount": %s, "status": 0}'
#: The request body example of every action of the book but the card sales (their own are the §10.2
#: one, with ``acquirer`` for §10.1 and ``qrcode`` for §10.3, as the book says).
BOOK_REQUEST_TEXTS = {
    "inquiry": f"{{{_TRACE}, {_ORIGINAL}}}",
    "voidCardSale": f'{{{_TRACE}, {_ORIGINAL}, "acquirer": "citicCashpay"}}',
    "voidQrcodeSale": f"{{{_TRACE}, {_ORIGINAL}}}",
    "refundCardSale": f'{{{_TRACE}, {_ORIGINAL}, "refundAmount": 40.8, "acquirer": "citicCashpay"}}',
    "refundQrcodeSale": f'{{{_TRACE}, {_ORIGINAL}, "refundAmount": 40.8}}',
    "ecouponInquiry": f'{{{_TRACE}, "qrcode": "HDCP00000000001235"}}',
    "summary": f"{{{_TRACE}}}",
    "batchUpload": (
        f'{{{_TRACE}, "transCount": 3, "beginTime": "20161231102201", "endTime": "20161231102230", "transRecord": ['
        + ", ".join(_RECORD % amount for amount in ("100.00", "200.00", "300.00"))
        + "]}"
    ),
}
#: What §10.1, §10.3 and §10.10 add to the §10.2 example.
_SALE_EXTRAS: dict[str, dict[str, Any]] = {
    "cardRedemption": {},
    "cardPayment": {"acquirer": "citicCashpay"},
    "qrcodeSale": {"qrcode": "280123121234567890"},
    "accumulating": {"activityNo": "2016121901", "points": 100},
}


def book_request(action: str) -> dict[str, Any]:
    """A fresh copy of the book's request body example of ``action`` (amounts as exact Decimals).

    Raises:
        KeyError: ``action`` is not an action of the book.
    """
    if action in _SALE_EXTRAS:
        return {**card_redemption_request(), **_SALE_EXTRAS[action]}
    body: dict[str, Any] = jsonio.loads(BOOK_REQUEST_TEXTS[action])
    return body
