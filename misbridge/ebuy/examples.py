"""The book's published examples, verbatim, for the demo and the tests."""

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
