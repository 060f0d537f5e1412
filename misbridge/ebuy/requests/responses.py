"""The book's response shape for answers misbridge makes or completes, and amount conversions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from misbridge.errors import RequestError, ReturnCode

#: The book's one defined return code: success (§9).
SUCCESS_CODE: Final = "00"


def amount_minor_units(amount: Decimal) -> int:
    """Dollars (yuan) to minor units (fen) for the PIN pad's display: 40.8 -> 4080."""
    return int((amount * 100).to_integral_value())


def trans_date(now: datetime | None = None) -> str:
    """A transDate in the book's format, yyyyMMddHHmmss, local time."""
    return (now or datetime.now().astimezone()).strftime("%Y%m%d%H%M%S")


def error_response(trace_no: str, error: RequestError | Exception, code: ReturnCode) -> dict[str, Any]:
    """An e-Buy shaped response for a request misbridge itself refused or could not finish."""
    return {
        "traceNo": trace_no,
        "orderNo": "",
        "transDate": trans_date(),
        "returnCode": code.code,
        "returnDesc": str(error),
        "paidAmount": 0,
    }


def complete_book_head(answer: Mapping[str, Any], trace_no: str, *, at: datetime | None = None) -> dict[str, Any]:
    """``answer`` (a backend's response passed on to the POS) with the book's mandatory head filled in.

    The book marks traceNo, orderNo, transDate, returnCode, returnDesc and paidAmount mandatory
    in every response, but a backend leaves some out (a "not found" inquiry answer has no
    order). A missing traceNo is the request's, orderNo and returnDesc are empty, transDate is
    ``at`` (default now), and paidAmount is 0 for anything but an approval; nothing the backend
    sent is changed, and an approval without paidAmount stays without one (misbridge cannot know
    the amount).
    """
    completed = dict(answer)
    completed.setdefault("traceNo", trace_no)
    completed.setdefault("orderNo", "")
    if "transDate" not in completed:
        completed["transDate"] = trans_date(None if at is None else at.astimezone())
    completed.setdefault("returnDesc", "")
    if completed.get("returnCode") != SUCCESS_CODE:
        completed.setdefault("paidAmount", 0)
    return completed
