"""The simulator's action handlers, one per action of the book's §12 table.

The handlers live by family: card sales in simulators.backend.cardsale, QR codes and
e-coupons in simulators.backend.qrcodes, inquiry / voids / refunds in
simulators.backend.reversals, points in simulators.backend.members, and the management API in
simulators.backend.management. What they share (:class:`SimContext`, :func:`decline_body`)
is in simulators.backend.context.
"""

from __future__ import annotations

from simulators.backend import book
from simulators.backend.cardsale import card_redemption
from simulators.backend.context import CURRENCY, Handler, SimContext, decline_body
from simulators.backend.management import batch_upload, summary
from simulators.backend.members import accumulating
from simulators.backend.qrcodes import ecoupon_inquiry, qrcode_sale
from simulators.backend.reversals import inquiry, refund_sale, void_sale
from simulators.backend.signin import download_key, sign_in

__all__ = ["CURRENCY", "HANDLERS", "Handler", "SimContext", "decline_body"]

#: The actions the simulator implements: every action of the book.
HANDLERS: dict[str, Handler] = {
    book.CARD_REDEMPTION: card_redemption,
    book.CARD_PAYMENT: card_redemption,
    book.QRCODE_SALE: qrcode_sale,
    book.ACCUMULATING: accumulating,
    book.INQUIRY: inquiry,
    book.VOID_CARD_SALE: void_sale,
    book.VOID_QRCODE_SALE: void_sale,
    book.REFUND_CARD_SALE: refund_sale,
    book.REFUND_QRCODE_SALE: refund_sale,
    book.ECOUPON_INQUIRY: ecoupon_inquiry,
    book.SUMMARY: summary,
    book.BATCH_UPLOAD: batch_upload,
    book.DOWNLOAD_KEY: download_key,
    book.SIGN_IN: sign_in,
}
