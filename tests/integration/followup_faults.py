"""Backend fault cases for the QR sale and for the POS's voids and refunds (docs/reliability.md, fault table).

The card sale's cases are in tests/integration/faults.py; these run on the same bench
(tests/integration/faultbench.py: the simulators as subprocesses, a daemon with the short
timers) and use its :class:`Fault`, :class:`FaultBench` and :class:`SimBackend`. A case names
its **subject**, the POS request the faults are about:

* ``qrcodeSale``: a QR sale of the book's example (the payment QR in the body);
* ``voidQrcodeSale``, ``refundQrcodeSale``: the POS voids, or refunds part of, a QR sale it made
  just before (approved);
* ``voidCardSale``, ``refundCardSale``: the same for a card sale, card and PIN on the pad.

Each fault is bound to the subject's traceNo (requests carrying it as ``traceNo`` or
``originalTraceNo``: the subject and the inquiries about it) or to the original's (a void sent
again by the reversal queue names the original, under a traceNo of its own).

:func:`check_follow` judges the end: the subject reached the backend once under its traceNo;
its money moved at most once (itself, or one of the void's resends); the journal ends in the
expected state and ``approved`` exactly when that money moved (``needs_manual`` only with the
money moved, for a person); the POS answer agrees; and for a void or refund the original's
ledger agrees (voided by it exactly when the void is approved; refunded by exactly its amount
when the refund is approved or needs_manual after moving, by nothing otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from misbridge.ebuy.examples import book_request
from tests.integration.faultbench import (
    Fault,
    FaultBench,
    FaultKind,
    LedgerEntry,
    fresh_trace_no,
    redemption_body,
)
from tests.integration.faults import MANY, EndState

Subject = Literal["qrcodeSale", "voidQrcodeSale", "refundQrcodeSale", "voidCardSale", "refundCardSale"]
Binding = Literal["subject", "original"]
#: What a refund case gives back of the 40.80 sale.
REFUND_AMOUNT = Decimal("10.80")
_SALE_OF = {"voidQrcodeSale": "qrcodeSale", "refundQrcodeSale": "qrcodeSale",
            "voidCardSale": "cardRedemption", "refundCardSale": "cardRedemption"}  # fmt: skip


@dataclass(frozen=True)
class FollowCase:
    """One row: the subject, its faults (each bound to the subject or the original) and the expected end.

    Attributes:
        resent: the void must have been sent again by the reversal queue (at least once).
    """

    id: str
    doc: str
    subject: Subject
    end: EndState
    pos_code: str
    faults: tuple[tuple[Fault, Binding], ...] = ()
    inquiry_codes: tuple[str, ...] = ()
    resent: bool = False


@dataclass(frozen=True)
class FollowOutcome:
    """The POS answer, the journal view and the ledger entries of one run."""

    trace_no: str
    answer: dict[str, Any]
    view: dict[str, Any]
    ledger: LedgerEntry | None
    #: Ledger entries of the voids the reversal queue sent (a POS void's resends, or the void of a QR sale).
    resends: dict[str, LedgerEntry | None]
    #: The original's ledger entry (follow-ups), read after the end.
    original: LedgerEntry | None

    @property
    def state(self) -> str:
        return str(self.view["state"])

    @property
    def pos_code(self) -> str:
        return str(self.answer.get("returnCode"))

    def calls(self, kind: str) -> list[dict[str, Any]]:
        """The journal's originated requests of ``kind`` about the subject."""
        return [call for call in self.view.get("backendCalls") or [] if call.get("kind") == kind]

    def describe(self) -> str:
        """One line for a failure message."""

        def shown(entry: LedgerEntry | None) -> str:
            return "absent" if entry is None else f"{entry.state}/applied={entry.applied}/x{entry.submissions}"

        events = [t.get("event") for t in self.view.get("transitions") or []]
        refunded = None if self.original is None else self.original.raw.get("refundedAmount")
        return (
            f"{self.trace_no}: journal={self.state} pos={self.pos_code} ledger={shown(self.ledger)} "
            f"resends={[shown(e) for e in self.resends.values()]} original={shown(self.original)} "
            f"refunded={refunded} events={events}"
        )


def _lost(action: FaultKind, where: str) -> tuple[Fault, Binding]:
    return Fault(action, f"drop-{where}-commit"), "subject"


_INQUIRIES_FAIL: tuple[Fault, Binding] = (Fault("inquiry", "http-500-after-commit", times=MANY), "subject")
#: A resend names the original (under a traceNo of its own): bound to the original's traceNo.
_RESENDS_FAIL_TWICE: tuple[Fault, Binding] = (Fault("void", "http-500-before-commit", times=2), "original")

FOLLOW_TABLE: tuple[FollowCase, ...] = (
    FollowCase("qr-sale-reply-lost", "QR sale applied, reply lost -> inquiry 00 -> approved", "qrcodeSale",
               "approved", "00", (_lost("sale", "after"),), ("00",)),
    FollowCase("qr-sale-dropped-before-commit", "QR sale never applied -> inquiry 25 -> declined MB33",
               "qrcodeSale", "declined", "MB33", (_lost("sale", "before"),), ("25",)),
    FollowCase("qr-sale-inquiries-fail", "QR sale reply lost, inquiries fail -> voidQrcodeSale -> voided MB32",
               "qrcodeSale", "voided", "MB32", (_lost("sale", "after"), _INQUIRIES_FAIL)),
    FollowCase("qr-void-reply-lost", "QR void applied, reply lost -> inquiry 00 -> approved, the sale voided",
               "voidQrcodeSale", "approved", "00", (_lost("void", "after"),), ("00",)),
    FollowCase("qr-void-dropped-before-commit", "QR void never applied -> inquiry 25 -> declined MB33, sale kept",
               "voidQrcodeSale", "declined", "MB33", (_lost("void", "before"),), ("25",)),
    FollowCase("qr-void-unknown-resent", "QR void reply lost, inquiries fail -> MB36, sent again -> 22 -> approved",
               "voidQrcodeSale", "approved", "MB36", (_lost("void", "after"), _INQUIRIES_FAIL), resent=True),
    FollowCase("qr-void-unknown-resend-fails", "as qr-void-unknown-resent, never applied, the first 2 resends "
               "fail -> 00 -> approved", "voidQrcodeSale", "approved", "MB36",
               (_lost("void", "before"), _INQUIRIES_FAIL, _RESENDS_FAIL_TWICE),
               resent=True),
    FollowCase("qr-refund-reply-lost", "QR refund applied, reply lost -> inquiry 00 -> approved, refunded once",
               "refundQrcodeSale", "approved", "00", (_lost("refund", "after"),), ("00",)),
    FollowCase("qr-refund-dropped-before-commit", "QR refund never applied -> inquiry 25 -> declined MB33",
               "refundQrcodeSale", "declined", "MB33", (_lost("refund", "before"),), ("25",)),
    FollowCase("qr-refund-unknown", "QR refund reply lost, inquiries fail -> needs_manual MB34, never sent twice",
               "refundQrcodeSale", "needs_manual", "MB34", (_lost("refund", "after"), _INQUIRIES_FAIL)),
    FollowCase("card-void-reply-lost", "card void applied, reply lost -> inquiry 00 -> approved, the sale voided",
               "voidCardSale", "approved", "00", (_lost("void", "after"),), ("00",)),
    FollowCase("card-void-unknown-resent", "card void never applied, inquiries fail -> MB36, sent again without "
               "cardInfo -> 00 -> approved", "voidCardSale", "approved", "MB36",
               (_lost("void", "before"), _INQUIRIES_FAIL), resent=True),
    FollowCase("card-refund-dropped-before-commit", "card refund never applied -> inquiry 25 -> declined MB33",
               "refundCardSale", "declined", "MB33", (_lost("refund", "before"),), ("25",)),
    FollowCase("card-refund-unknown", "card refund reply lost, inquiries fail -> needs_manual MB34, never resent",
               "refundCardSale", "needs_manual", "MB34", (_lost("refund", "after"), _INQUIRIES_FAIL)),
)  # fmt: skip


#: A QR sale's amount: above the refund, and small, so a soak's sales that keep their money
#: (refunds give back only part) do not empty the payment QR's 10 000.00.
QR_SALE_AMOUNT = Decimal("12.00")


def sale_body(action: str, trace_no: str) -> dict[str, Any]:
    """The book's QR sale with one 12.00 line, or its card redemption (40.80), under ``trace_no``."""
    if action == "qrcodeSale":
        goods = {"goodsCategory": "001", "goodsId": "P00001", "goodsName": "toothpaste", "price": QR_SALE_AMOUNT,
                 "quantity": 1, "rebateCode": "000"}  # fmt: skip
        return {**book_request("qrcodeSale"), "traceNo": trace_no, "totalAmount": QR_SALE_AMOUNT,
                "undiscountAmount": 0, "goodsDetail": [goods]}  # fmt: skip
    return redemption_body(trace_no)


async def run_follow(bench: FaultBench, case: FollowCase) -> FollowOutcome:
    """Make the original (follow-ups), script the faults, send the subject, wait for its end."""
    trace_no = fresh_trace_no()
    original_no: str | None = None
    if case.subject == "qrcodeSale":
        body = sale_body("qrcodeSale", trace_no)
    else:
        original_no = fresh_trace_no()
        made = await bench.send(_SALE_OF[case.subject], sale_body(_SALE_OF[case.subject], original_no))
        assert made["returnCode"] == "00", made
        body = {"traceNo": trace_no, "originalTraceNo": original_no}
        if case.subject.startswith("refund"):
            body["refundAmount"] = REFUND_AMOUNT
    await bench.backend.clear_faults()
    for fault, binding in case.faults:
        await bench.backend.add_faults((fault,), trace_no if binding == "subject" else original_no)
    try:
        answer = await bench.send(case.subject, body)
        view = await bench.settle(trace_no)
    finally:
        await bench.backend.clear_faults()
    resends = {str(c["traceNo"]): await bench.backend.entry(str(c["traceNo"])) for c in _kind(view, "void")}
    original = await bench.backend.entry(original_no) if original_no else None
    return FollowOutcome(trace_no, answer, view, await bench.backend.entry(trace_no), resends, original)


def _kind(view: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [call for call in view.get("backendCalls") or [] if call.get("kind") == kind]


def check_follow(case: FollowCase, outcome: FollowOutcome) -> list[str]:
    """Every way ``outcome`` breaks the rules of the module text (empty: all good)."""
    problems: list[str] = []
    ledger, state = outcome.ledger, outcome.state
    if ledger is None or ledger.submissions != 1:
        seen = 0 if ledger is None else ledger.submissions
        problems.append(f"the subject reached the backend {seen} times, not once")
    # A POS void's resends move its money; the voids of a QR sale are misbridge's own reversal of it.
    own_voids = case.subject.startswith("void")
    movers = [ledger, *(outcome.resends.values() if own_voids else ())]
    applied = sum(1 for entry in movers if entry is not None and entry.applied)
    if applied > 1:
        problems.append(f"applied {applied} times")
    if state != case.end:
        problems.append(f"journal ended {state}, expected {case.end}")
    if state == "needs_manual":
        if not applied:
            problems.append("needs_manual but nothing moved: nothing to settle by hand")
    elif (state == "approved") != bool(applied):
        problems.append(f"journal {state} but applied {applied} time(s)")
    if outcome.pos_code != case.pos_code:
        problems.append(f"POS answered {outcome.pos_code}, expected {case.pos_code}")
    if outcome.answer.get("traceNo") != outcome.trace_no:
        problems.append(f"POS answer carries traceNo {outcome.answer.get('traceNo')!r}")
    if state == "approved" and outcome.view.get("returnCode") not in ("00", "22"):
        problems.append(f"approved with stored returnCode {outcome.view.get('returnCode')}")
    return problems + _trail_problems(case, outcome) + _original_problems(case, outcome, bool(applied))


def _trail_problems(case: FollowCase, outcome: FollowOutcome) -> list[str]:
    """The inquiries' answers the case expects, and the voids the reversal queue sent."""
    codes = {call.get("returnCode") for call in _kind(outcome.view, "inquiry")}
    problems = [
        f"no inquiry answered {code} (saw {sorted(map(str, codes))})"
        for code in case.inquiry_codes
        if code not in codes
    ]
    if case.resent and not outcome.resends:
        problems.append("the void was not sent again")
    if case.subject.startswith("refund") and outcome.resends:
        problems.append(f"{len(outcome.resends)} void(s) sent for a {case.subject}")
    if case.subject == "qrcodeSale" and outcome.state == "voided":
        voiders = [entry for entry in outcome.resends.values() if entry is not None and entry.applied]
        sale = outcome.ledger
        if len(voiders) != 1 or sale is None or sale.state != "voided":
            problems.append(f"voided, but {len(voiders)} void(s) applied and the sale is {sale and sale.state}")
    return problems


def _original_problems(case: FollowCase, outcome: FollowOutcome, moved: bool) -> list[str]:
    entry = outcome.original
    if case.subject == "qrcodeSale":
        return []
    if entry is None:
        return ["the original is not in the ledger"]
    if case.subject.startswith("void"):
        if moved != (entry.state == "voided"):
            return [f"void {outcome.state}, the original's ledger state is {entry.state}"]
        return []
    refunded = Decimal(str(entry.raw.get("refundedAmount") or 0))
    expected = REFUND_AMOUNT if moved else Decimal(0)
    if refunded != expected or not entry.applied:
        return [
            f"refund {outcome.state}: the original has {refunded} refunded (applied={entry.applied}), "
            f"expected {expected}"
        ]
    return []
