"""The book's action names (§12) and the kinds the simulator groups them in.

The kinds follow misbridge's state machine (misbridge/core/machine.py): ``sale`` (the three
sales and ``accumulating``), ``void``, ``refund``, ``inquiry`` (Trans Inquiry), ``query``
(``ecouponInquiry``, ``summary``) and ``upload`` (``batchUpload``); ``other`` for anything else.
"""

from __future__ import annotations

from typing import Final

CARD_REDEMPTION: Final = "cardRedemption"
CARD_PAYMENT: Final = "cardPayment"
QRCODE_SALE: Final = "qrcodeSale"
ACCUMULATING: Final = "accumulating"
INQUIRY: Final = "inquiry"
VOID_CARD_SALE: Final = "voidCardSale"
VOID_QRCODE_SALE: Final = "voidQrcodeSale"
REFUND_CARD_SALE: Final = "refundCardSale"
REFUND_QRCODE_SALE: Final = "refundQrcodeSale"
ECOUPON_INQUIRY: Final = "ecouponInquiry"
SUMMARY: Final = "summary"
BATCH_UPLOAD: Final = "batchUpload"

#: Sales paid by card (book §10.1, §10.2): voided by voidCardSale, refunded by refundCardSale.
CARD_SALES: Final = (CARD_REDEMPTION, CARD_PAYMENT)
#: Sales that move money (card and QR): what voids and refunds undo, what summary counts.
MONEY_SALES: Final = (*CARD_SALES, QRCODE_SALE)
#: Every action of kind ``sale`` (accumulating moves points, not money).
SALE_ACTIONS: Final = (*MONEY_SALES, ACCUMULATING)
VOID_ACTIONS: Final = (VOID_CARD_SALE, VOID_QRCODE_SALE)
REFUND_ACTIONS: Final = (REFUND_CARD_SALE, REFUND_QRCODE_SALE)
QUERY_ACTIONS: Final = (ECOUPON_INQUIRY, SUMMARY)

#: Every action of the book's §12 table.
BOOK_ACTIONS: Final = (*SALE_ACTIONS, INQUIRY, *VOID_ACTIONS, *REFUND_ACTIONS, *QUERY_ACTIONS, BATCH_UPLOAD)

#: The key actions (docs/backend.md, "Keys and sign-in"): DownloadKey is the book's name (§7.2), signIn
#: misbridge's choice for the daily sign-in the Chinese history lists (§11.3).
DOWNLOAD_KEY: Final = "DownloadKey"
SIGN_IN: Final = "signIn"
KEY_ACTIONS: Final = (DOWNLOAD_KEY, SIGN_IN)

#: The kinds, in the order docs/backend.md lists them.
KINDS: Final = ("sale", "inquiry", "void", "refund", "query", "upload")


def kind_of(action: str) -> str:
    """``sale``, ``inquiry``, ``void``, ``refund``, ``query``, ``upload`` or ``other`` for an action name."""
    if action in SALE_ACTIONS:
        return "sale"
    if action == INQUIRY:
        return "inquiry"
    if action in VOID_ACTIONS:
        return "void"
    if action in REFUND_ACTIONS:
        return "refund"
    if action in QUERY_ACTIONS:
        return "query"
    if action == BATCH_UPLOAD:
        return "upload"
    return "other"


def is_card_family(action: str) -> bool:
    """True for a card sale or a card void/refund; False for the QR ones."""
    return action in (*CARD_SALES, VOID_CARD_SALE, REFUND_CARD_SALE)
