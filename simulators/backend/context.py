"""What every action handler shares: :class:`SimContext`, the decline body and small parsers.

A handler gets the decoded request body and the traceNo's ledger record (already counted,
already checked to be unused, and marked in progress), decides, records the outcome and
returns the response body. Handlers never await: a decision is one step, so the ledger never
shows half of one. Parsers raise :class:`~simulators.backend.codes.Declined`; each handler
turns it into a decline with :func:`declined`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from simulators.backend.codes import SUCCESS_DESC, Declined, SimCode
from simulators.backend.disagree import Disagreements
from simulators.backend.keydesk import KeyDesk
from simulators.backend.ledger import Ledger
from simulators.backend.records import TraceRecord, TraceState
from simulators.cards import TestCard
from simulators.crypto import decrypt_pin, decrypt_text

CURRENCY = "CNY"
_MAX_DECIMALS = 2


@dataclass
class SimContext:
    """What handlers share: the ledger (which also numbers orders), the cards, the keys, the clock,
    and the disagreements a test told batchUpload (simulators.backend.disagree).

    ``terminal`` is the deviceNo of the request being decided: the processor sets it just before
    the handler runs (handlers never await, so no other request sees it).
    """

    ledger: Ledger
    cards: Mapping[str, TestCard]
    keys: KeyDesk
    clock: Callable[[], datetime] = datetime.now
    terminal: str = ""
    disagreements: Disagreements = field(default_factory=Disagreements)

    def card_by_pan(self, pan: str) -> TestCard | None:
        """The test card with this PAN, if the simulated bank knows it."""
        return next((card for card in self.cards.values() if card.pan == pan), None)

    def trans_date(self) -> str:
        """Local time as yyyyMMddHHmmss."""
        return self.clock().strftime("%Y%m%d%H%M%S")

    def next_order_no(self, trans_date: str) -> str:
        """A 12-digit orderNo, unique within this simulator: yyMMdd + a 6-digit sequence."""
        return f"{trans_date[2:8]}{self.ledger.next_order_serial() % 1_000_000:06d}"


Handler = Callable[[SimContext, TraceRecord, dict[str, Any]], dict[str, Any]]


def decline_body(trace_no: str, trans_date: str, code: SimCode | str, desc: str) -> dict[str, Any]:
    """A decline in the book's field order: traceNo, orderNo "", transDate, returnCode, returnDesc, paidAmount 0."""
    return {
        "traceNo": trace_no,
        "orderNo": "",
        "transDate": trans_date,
        "returnCode": str(code),
        "returnDesc": desc,
        "paidAmount": 0,
    }


def declined(record: TraceRecord, trans_date: str, declined_: Declined) -> dict[str, Any]:
    """Record ``record`` as declined with the exception's code and return the decline body."""
    response = decline_body(record.trace_no, trans_date, declined_.code, declined_.desc)
    record.state, record.response = TraceState.DECLINED, response
    return response


def approved(record: TraceRecord, response: dict[str, Any]) -> dict[str, Any]:
    """Record ``record`` as approved with ``response`` and return it."""
    record.state, record.response = TraceState.APPROVED, response
    return response


def success_head(ctx: SimContext, record: TraceRecord, trans_date: str) -> dict[str, Any]:
    """The first fields of every approval: traceNo, orderNo, transDate, returnCode "00", returnDesc."""
    return {
        "traceNo": record.trace_no,
        "orderNo": ctx.next_order_no(trans_date),
        "transDate": trans_date,
        "returnCode": SimCode.APPROVED.value,
        "returnDesc": SUCCESS_DESC,
    }


def format_error(what: str) -> Declined:
    """A "30" decline naming what is wrong."""
    return Declined(SimCode.FORMAT_ERROR, f"format error: {what}")


def amount(body: Mapping[str, Any], name: str, *, default: Decimal | None = None) -> Decimal:
    """``body[name]`` as a non-negative Decimal with at most 2 decimals (``default`` when absent).

    Raises:
        Declined: "30" when it is missing (without a default), not a number, or badly formed.
    """
    value = body.get(name)
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise format_error(f"{name} must be a number")
    result = Decimal(value)
    exponent = result.as_tuple().exponent
    if not result.is_finite() or result < 0 or (isinstance(exponent, int) and exponent < -_MAX_DECIMALS):
        raise format_error(f"{name} must be a non-negative amount with at most 2 decimals")
    return result


def text(body: Mapping[str, Any], name: str, *, required: bool = False, max_len: int = 256) -> str | None:
    """``body[name]`` as a string of at most ``max_len`` characters (None when absent and optional).

    Raises:
        Declined: "30" when it is required and missing, not a string, empty or too long.
    """
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise format_error(f"{name} must be a string of 1 to {max_len} characters")
    return value


def member_of(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request's memberDetail, if any.

    Raises:
        Declined: "30" when it is not an object.
    """
    member = body.get("memberDetail")
    if member is not None and not isinstance(member, dict):
        raise format_error("memberDetail must be an object")
    return member


def goods_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's goodsDetail ([] when absent).

    Raises:
        Declined: "30" when it is not a list of objects.
    """
    goods = body.get("goodsDetail", [])
    if not isinstance(goods, list) or not all(isinstance(item, dict) for item in goods):
        raise format_error("goodsDetail must be a list of objects")
    return goods


def identify_card(ctx: SimContext, card_info: Any, record: TraceRecord | None = None) -> TestCard:
    """Decrypt ``cardInfo``'s PAN and PIN block; the test card they name, the PIN checked.

    ``record`` (when given) gets the card's name as soon as the PAN is known, before the PIN check.

    Raises:
        Declined: "30" cardInfo missing or not whole hex blocks, "A0" the terminal never signed in or must
            sign in again, "14" unknown card, "55" wrong PIN, or card data under another key than the
            terminal's working key (as a real HSM's PIN translation fails).
    """
    if not isinstance(card_info, dict):
        raise format_error("cardInfo is required")
    card_no, password = card_info.get("cardNo"), card_info.get("password")
    if not isinstance(card_no, str) or not isinstance(password, str):
        raise format_error("cardInfo.cardNo and cardInfo.password are required")
    if not _whole_blocks(card_no):
        raise format_error("cardInfo.cardNo is not hex of whole 8-byte blocks")
    key = ctx.keys.working_key(ctx.terminal, ctx.clock().date())
    try:
        pan = decrypt_text(card_no, key)
    except ValueError as err:
        raise Declined(SimCode.INCORRECT_PIN, "incorrect PIN") from err
    if not pan.isdigit():
        raise Declined(SimCode.INCORRECT_PIN, "incorrect PIN")
    card = ctx.card_by_pan(pan)
    if card is None or card.usage is None:
        raise Declined(SimCode.UNKNOWN_CARD, "unknown card")
    if record is not None:
        record.card = card.name
    try:
        pin = decrypt_pin(password, pan, key)
    except ValueError as err:
        raise Declined(SimCode.INCORRECT_PIN, "incorrect PIN") from err
    if not hmac.compare_digest(pin.encode(), card.pin.encode()):
        raise Declined(SimCode.INCORRECT_PIN, "incorrect PIN")
    return card


def original_of(ctx: SimContext, record: TraceRecord, body: Mapping[str, Any]) -> TraceRecord:
    """The decided record ``originalTraceNo`` names.

    An unknown original's traceNo is barred (:meth:`Ledger.bar`): "not found" must stay true.

    Raises:
        Declined: "30" no originalTraceNo, "25" not found (or the request itself), "26" in progress.
    """
    original_no = body.get("originalTraceNo")
    if not isinstance(original_no, str) or not original_no:
        raise format_error("originalTraceNo is required")
    record.original_trace_no = original_no
    original = ctx.ledger.get(original_no)
    if original is None or not original.used or original is record:
        if original is not record:
            ctx.ledger.bar(original_no)  # "not found" must stay true: a late original is refused
        raise Declined(SimCode.ORIGINAL_NOT_FOUND, "original transaction not found")
    if original.in_progress:
        raise Declined(SimCode.ORIGINAL_IN_PROGRESS, "original transaction in progress")
    return original


def _whole_blocks(hex_text: str) -> bool:
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        return False
    return bool(raw) and len(raw) % 8 == 0
