"""Crash scenarios of the QR sale and of the POS's voids and refunds (docs/reliability.md, "Crash points").

The plain card sale's scenarios are in tests/crash/scenarios.py; these drive the other paths
through the same daemon and socket door:

* **QR sale points** (``qr.*``, ``backend.qrcodeSale.after_write``): a ``qrcodeSale`` of the
  simulator's payment QR (approved) or of its always-declined code (``05``), or an options sale
  (the e-coupon ``HDCP00000000000009``: round 1 answers ``09`` with two products, the first is
  chosen, round 2 pays) crashing in its first or second round. In some runs the body has no
  ``qrcode`` and the pad reads it (``READ_CODE``: :attr:`Flow.pad_code` is scripted on the pad
  simulator's control socket). In some options runs the POS chooses (:attr:`Flow.options_on`:
  the daemons run with ``options.on = "pos"`` and the harness's POS sends the request again with
  the first ``activityProductNo`` offered; after a restart it repeats the last request it sent);
* **follow-up points** (``followup.*``, ``backend.voidQrcodeSale.after_write``,
  ``backend.refundQrcodeSale.after_write``): the crashing daemon first makes an approved QR sale
  (sometimes an options sale, whose void or refund names its second round), then the POS voids it
  or refunds part or all of it; for the outcome point the reply is sometimes lost and resolved by
  inquiry;
* ``void.resend.after_commit``: the POS's void (of a QR sale, or a ``voidCardSale`` of a card
  sale) loses its reply, every inquiry about it fails until the inquiry bound, so the reversal
  queue sends the void again; the crash comes right after that resend is confirmed;
* **card voids and refunds** (:func:`card_follow_up_flow`): an approved ``cardRedemption``, then
  the POS's ``voidCardSale`` or ``refundCardSale`` of it, card and PIN on the pad (the pad
  simulator's default customer, the same card every time). They run the card sale's code path, so
  they crash at :data:`CARD_SALE_POINTS` (the second pass: the original passed them first), at
  their writes (:data:`CARD_WRITES`; ``backend.refundCardSale.after_write`` is theirs alone) and at
  the void resend; tests/crash/scenarios.py draws them.

The run's traceNo is the QR sale's, or the void's or refund's; the original is the run's
traceNo with ``O`` in front of it instead of ``C``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

#: The payment QR of the book's example (approves while its 10 000.00 last), one always declined (05),
#: and the e-coupon with options (100.00; round 2 pays the chosen product).
PAY_CODE: Final = "280123121234567890"
DECLINED_CODE: Final = "280000000000000005"
OPTIONS_CODE: Final = "HDCP00000000000009"

QR_POINTS: Final = (
    "qr.submit.after_commit",
    "backend.qrcodeSale.after_write",
    "qr.after_reply",
    "qr.offer.after_commit",
    "qr.option.after_alloc",
    "qr.option.after_commit",
)
FOLLOW_UP_POINTS: Final = (
    "followup.after_intent",
    "followup.submit.after_commit",
    "backend.voidQrcodeSale.after_write",
    "backend.refundQrcodeSale.after_write",
    "followup.after_reply",
    "followup.outcome.after_commit",
)
RESEND_POINTS: Final = ("void.resend.after_commit",)
#: Points only a POS card refund reaches (its write to the backend); every run of them is a card refund.
CARD_REFUND_POINTS: Final = ("backend.refundCardSale.after_write",)
POINTS: Final = (*QR_POINTS, *FOLLOW_UP_POINTS, *RESEND_POINTS, *CARD_REFUND_POINTS)
#: The card sale's points a POS card void or refund passes too (card and PIN on the pad, then submit),
#: each after its original card sale passed it once: such runs crash at the second pass.
CARD_SALE_POINTS: Final = (
    "intake.before_intent",
    "intake.after_intent",
    "card.before_commit",
    "card.after_commit",
    "pin.before_commit",
    "submit.after_commit",
    "submit.after_reply",
    "outcome.after_commit",
    "pos.after_reply",
)
#: The backend writes of a POS card void and refund (a void's is shared with misbridge's own voids).
CARD_WRITES: Final = {"void": "backend.voidCardSale.after_write", "refund": "backend.refundCardSale.after_write"}
#: Points met only in an options sale (the offer and the second round).
_OPTIONS_ONLY: Final = ("qr.offer.after_commit", "qr.option.after_alloc", "qr.option.after_commit")
#: Inquiries scripted to fail when the void must go to the reversal queue.
FAILING_INQUIRIES: Final = 200


@dataclass(frozen=True)
class Request:
    """One POS request of a run: the action and the body sent on the socket door."""

    action: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Flow:
    """What a QR or follow-up run sends: the approved original first (follow-ups), then the request."""

    request: Request
    original: Request | None
    #: void or refund (follow-ups), sale (QR sales).
    kind: str
    #: The refund's amount (follow-ups that refund), for the checker's original rule.
    refund_amount: Decimal | None = None
    #: The code the customer shows the pad (READ_CODE): the QR sale's body then has no ``qrcode``.
    pad_code: str | None = None
    #: Who chooses an options sale's product: the customer on the pad, or the POS (``options.on``),
    #: which then sends the request again with the first ``activityProductNo`` offered.
    options_on: str = "pad"


def _amount(rng: random.Random, options: bool) -> Decimal:
    # Small amounts: every lane's codes last a soak (the options code holds 100.00).
    return Decimal(rng.randint(1, 10 if options else 999)) / 100


def _line(amount: Decimal) -> list[dict[str, Any]]:
    return [{"goodsCategory": "001", "goodsId": "P00001", "goodsName": "crash harness",
             "price": amount, "quantity": 1, "rebateCode": "000"}]  # fmt: skip


def qr_sale(trace_no: str, code: str, amount: Decimal, *, on_pad: bool = False) -> Request:
    """A one-line ``qrcodeSale`` with ``code`` in the body (``on_pad``: without it, the pad reads it)."""
    body: dict[str, Any] = {"traceNo": trace_no, "totalAmount": amount, "undiscountAmount": Decimal(0)}
    if not on_pad:
        body["qrcode"] = code
    return Request("qrcodeSale", {**body, "goodsDetail": _line(amount)})


def card_sale(trace_no: str, amount: Decimal) -> Request:
    """A one-line ``cardRedemption`` (the pad's default customer pays with the same card every time)."""
    body = {"traceNo": trace_no, "totalAmount": amount, "undiscountAmount": Decimal(0), "goodsDetail": _line(amount)}
    return Request("cardRedemption", body)


def qr_flow(point: str, trace_no: str, rng: random.Random) -> tuple[Flow, str, int]:
    """The QR sale of a ``qr.*`` point: (flow, variant, the pass that crashes).

    In some runs the code is read on the pad (the body has no ``qrcode``), and in some options
    runs the POS chooses (the daemons run with ``options.on = "pos"``).
    """
    options = point in _OPTIONS_ONLY or (point != "qr.submit.after_commit" and rng.random() < 0.4)
    on_pad = rng.random() < 0.35
    read = ", the code read on the pad" if on_pad else ""
    if options:
        nth = 1
        if point in ("backend.qrcodeSale.after_write", "qr.after_reply"):
            nth = rng.choice((1, 2))  # round 1 (the offer) or round 2 (the payment)
        chooser = "pos" if rng.random() < 0.5 else "pad"
        request = qr_sale(trace_no, OPTIONS_CODE, _amount(rng, True), on_pad=on_pad)
        flow = Flow(request, None, "sale", pad_code=OPTIONS_CODE if on_pad else None, options_on=chooser)
        rounds = 2 if nth == 2 or point.startswith("qr.option") else 1
        return flow, f"options sale, round {rounds}, the {chooser.upper()} chooses{read}", nth
    code = DECLINED_CODE if rng.random() < 0.25 else PAY_CODE
    variant = ("QR sale declined (05)" if code == DECLINED_CODE else "QR sale approved path") + read
    request = qr_sale(trace_no, code, _amount(rng, False), on_pad=on_pad)
    return Flow(request, None, "sale", pad_code=code if on_pad else None), variant, 1


def follow_up_flow(point: str, trace_no: str, rng: random.Random) -> tuple[Flow, str]:
    """The approved original and the POS's void or refund of a follow-up point."""
    if point == "backend.voidQrcodeSale.after_write" or point in RESEND_POINTS:
        kind = "void"
    elif point == "backend.refundQrcodeSale.after_write":
        kind = "refund"
    else:
        kind = rng.choice(("void", "refund"))
    options = rng.random() < 0.3
    amount = _amount(rng, options)
    original = qr_sale("O" + trace_no[1:], OPTIONS_CODE if options else PAY_CODE, amount)
    action = "voidQrcodeSale" if kind == "void" else "refundQrcodeSale"
    return _follow_up(action, kind, trace_no, original, rng, f"a{'n options' if options else ' QR'} sale")


def card_follow_up_flow(trace_no: str, rng: random.Random, kind: str | None = None) -> tuple[Flow, str]:
    """An approved card sale and the POS's ``voidCardSale`` or ``refundCardSale`` of it (card and PIN on the pad)."""
    kind = kind or rng.choice(("void", "refund"))
    amount = Decimal(rng.randint(100, 2_999)) / 100
    original = card_sale("O" + trace_no[1:], amount)
    action = "voidCardSale" if kind == "void" else "refundCardSale"
    return _follow_up(action, kind, trace_no, original, rng, "a card sale")


def _follow_up(
    action: str, kind: str, trace_no: str, original: Request, rng: random.Random, what: str
) -> tuple[Flow, str]:
    """The void or refund (``kind``) of ``original``: all of it, or (a refund) sometimes half."""
    amount = Decimal(str(original.body["totalAmount"]))
    body: dict[str, Any] = {"traceNo": trace_no, "originalTraceNo": original.body["traceNo"]}
    refund: Decimal | None = None
    if kind == "refund":
        refund = amount if rng.random() < 0.5 else max(Decimal("0.01"), (amount / 2).quantize(Decimal("0.01")))
        body["refundAmount"] = refund
    variant = f"{action} of {what}" + (f" ({refund} of {amount})" if refund is not None else "")
    return Flow(Request(action, body), original, kind, refund), variant


def lost_reply(kind: str, rng: random.Random) -> tuple[dict[str, Any], str]:
    """A fault that leaves the follow-up's outcome unknown (found by inquiry): the fault and its name."""
    name = rng.choice(("drop-after-commit", "drop-before-commit", "http-500-after-commit"))
    return {"action": kind, "fault": name}, f"{kind} {name}, resolved by inquiry"
