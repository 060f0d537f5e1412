"""Hooks for the schemathesis run over the HTTP door (loaded by the CLI through ``SCHEMATHESIS_HOOKS``).

The hooks touch only positive (schema-valid) requests, so that they really reach the PIN pad
and the backend instead of stopping at a refusal that JSON Schema cannot predict:

* ``undiscountAmount <= totalAmount`` relates two fields, which JSON Schema cannot say; a sale
  that breaks it would be refused with MB13 and counted as a valid request rejected. The hook
  swaps the two amounts.
* schemathesis draws the same few traceNos again and again ("0", "00"...), and a traceNo already
  used for another request is MB41 before anything runs. The hook gives each positive request a
  new one (every action journals its traceNo now, queries and uploads included).
* a card number anywhere in a request is MB16 (docs/pos-api.md, "Card numbers in text"), a rule
  of the Luhn check digit that JSON Schema cannot say; about one random 13-19 digit number in
  ten passes it. The hook replaces such a value, in any positive request, by one that does not.
  The document refuses card-data field names at the top level of a request; the hook renames
  the ones schemathesis invents inside extra fields (``enctrack3`` two levels down).
* the other rules relating two fields: ``undiscountAmount <= totalAmount`` also for ``qrcodeSale``
  and ``accumulating``; a ``batchUpload``'s ``transCount`` is the number of its records (MB17), its
  ``beginTime`` is not after its ``endTime`` and at most 7 days before it, and both are real dates
  (the document's pattern lets 20160230 through) (MB18, MB11). The hook sets the count and, when the
  times break a rule, the book's example times.

misbridge carries out every action of the book, so no answer may be a 5xx (there used to be a
501 MB06 for the actions only validated). A void or refund of an original the journal does not
hold goes to the pad (the simulated customer answers at once) and the backend, which judges it.

Every answer is appended to ``$MISBRIDGE_SCHEMATHESIS_STATUSES`` as one ``METHOD path status
returnCode mode`` line, so the test counts the answers, and the 5xx among them, itself.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import schemathesis
from schemathesis import GenerationMode

from misbridge.ebuy import jsonio
from misbridge.ebuy.carddata import holds_card_number, is_card_data_field

Case = schemathesis.Case[Any]

#: Environment variable naming the file the answer statuses are appended to.
STATUS_FILE_VARIABLE = "MISBRIDGE_SCHEMATHESIS_STATUSES"
_SALE_PATHS = ("/v1/cardRedemption", "/v1/cardPayment")
#: Paths whose body relates undiscountAmount to totalAmount.
_TOTAL_PATHS = (*_SALE_PATHS, "/v1/qrcodeSale", "/v1/accumulating")
#: The book's example upload window (§11.2).
_BOOK_WINDOW = ("20161231102201", "20161231102230")


def _amount(value: Any) -> Decimal | None:
    """``value`` as a Decimal when it is a JSON number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return Decimal(str(value))


def _is_positive(case: Case) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode is GenerationMode.POSITIVE


def _without_card_numbers(value: Any) -> Any:
    """``value`` with every string, number or key that holds a card number replaced (any depth)."""
    if isinstance(value, dict):
        return {
            _without_card_numbers(key if not is_card_data_field(key) else f"x-{key}"): _without_card_numbers(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_card_numbers(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        # The door reads the number as JSON text parsed back (1.2e+16 is 12000000000000000 to it).
        return 0 if holds_card_number(str(jsonio.loads(json.dumps(value)))) else value
    # A traceNo-shaped stand-in: it also passes where a traceNo is expected (transRecord[].traceNo).
    return "not-a-card-number" if holds_card_number(str(value)) else value


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    """Make a positive request one the door runs: no card numbers, a new traceNo, and for a sale
    undiscountAmount not above totalAmount."""
    if _is_positive(case) and isinstance(case.body, dict | list):
        case.body = _without_card_numbers(case.body)
    body = case.body
    if not (_is_positive(case) and isinstance(body, dict)):
        return
    if "traceNo" in body:  # every action journals its traceNo: a reused one is a repeat or MB41
        body["traceNo"] = "S" + uuid.uuid4().hex[:20]
    path = _action_path(case.path)
    if path in _TOTAL_PATHS:
        total, undiscount = _amount(body.get("totalAmount")), _amount(body.get("undiscountAmount"))
        if total is not None and undiscount is not None and undiscount > total:
            body["totalAmount"], body["undiscountAmount"] = body["undiscountAmount"], body["totalAmount"]
    if path == "/v1/batchUpload":
        _fit_batch(body)


def _action_path(path: str) -> str:
    """``/v1/{action}`` for an action's path, also on a lane (``/v1/lanes/{lane}/{action}``)."""
    prefix = "/v1/lanes/{lane}/"
    return "/v1/" + path.removeprefix(prefix) if path.startswith(prefix) else path


def _book_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S") if isinstance(value, str) and len(value) == 14 else None
    except ValueError:
        return None


def _fit_batch(body: dict[str, Any]) -> None:
    """A batchUpload's count and window as the rules JSON Schema cannot say want them."""
    if isinstance(body.get("transRecord"), list) and "transCount" in body:
        body["transCount"] = len(body["transRecord"])
    begin, end = _book_time(body.get("beginTime")), _book_time(body.get("endTime"))
    if begin is None or end is None or not timedelta(0) <= end - begin <= timedelta(days=7):
        body["beginTime"], body["endTime"] = _BOOK_WINDOW


def _return_code(response: schemathesis.Response) -> str:
    try:
        answer = json.loads(response.content)
    except ValueError:
        return "-"
    code = answer.get("returnCode") if isinstance(answer, dict) else None
    return code if isinstance(code, str) and code.isprintable() and " " not in code else "-"


@schemathesis.hook
def after_call(context: schemathesis.HookContext, case: Case, response: schemathesis.Response) -> None:
    """Note the answer's status and returnCode for the test's own count."""
    path = os.environ.get(STATUS_FILE_VARIABLE)
    if not path:
        return
    mode = "positive" if _is_positive(case) else "negative"
    with open(path, "a", encoding="utf-8") as statuses:
        statuses.write(f"{case.method} {case.path} {response.status_code} {_return_code(response)} {mode}\n")
