"""Answers that fit the book's framing (issue 10, item 1).

The socket door's 2-byte length prefix caps a message at 65 535 bytes of envelope JSON, and the
body inside it is Base64 (4 bytes for every 3). A backend that echoes ``goodsDetail`` with fields
added can answer a large basket with more than that, after the money moved. Such an answer must
still reach the POS, in the book's shape, so :func:`frame_reply` fits it:

1. the whole answer, when it fits (every ordinary answer);
2. otherwise the answer without its bulkiest fields: first those the receipt does not need
   (``goodsDetail`` and anything unknown), largest first, then, only if still too large, the
   receipt and money fields (``printDetail``, ``fundChannel``, ``memberDetail``...), largest first.
   The book's mandatory response fields (:data:`MANDATORY_FIELDS`) are never left out;
3. as a last resort (a hostile 60 KB ``returnDesc``), the mandatory fields cut short.

What was left out is named in :data:`OMITTED_FIELD`, what was cut short in :data:`TRUNCATED_FIELD`,
and :data:`DETAIL_FIELD` says where the whole answer can be read (``GET /v1/transactions/{traceNo}``:
the journal keeps it). ``returnCode`` is never changed: an approval stays ``"00"``.

:func:`frame_reply` never raises: a value that cannot be written as JSON at all (a lone surrogate,
NaN, an object) is left out, or, in a mandatory field, replaced by a readable stand-in and marked
as cut short.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import simplejson

from misbridge.ebuy.envelope import MAX_MESSAGE_LEN, Envelope, frame_message

__all__ = [
    "DETAIL_FIELD",
    "MANDATORY_FIELDS",
    "MAX_LISTED_NAMES",
    "OMITTED_FIELD",
    "RECEIPT_FIELDS",
    "TRUNCATED_FIELD",
    "frame_reply",
]

#: The response fields every action's table marks mandatory (book §10.1-§10.4), in its order.
MANDATORY_FIELDS: Final[tuple[str, ...]] = (
    "traceNo", "orderNo", "transDate", "returnCode", "returnDesc", "paidAmount",
)  # fmt: skip
#: Fields kept as long as possible after the mandatory ones: what prints on the receipt and what
#: tells where the money came from (book §10.2 response table, §8.2 fundChannel, §8.3 printDetail).
RECEIPT_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "originalTraceNo", "printDetail", "fundChannel", "memberDetail", "receiptAmount",
        "invoiceAmount", "exchangeRate", "currency", "discountCode", "discountNum", "tenderCode",
        "activityProductNo", "activityProductName", "needSameCard",
    }
)  # fmt: skip
#: Names of the fields left out of a fitted answer.
OMITTED_FIELD: Final = "misbridgeOmitted"
#: Names of the fields cut short (or, if they could not be written as JSON, replaced).
TRUNCATED_FIELD: Final = "misbridgeTruncated"
#: Where the whole answer can be read: ``/v1/transactions/{traceNo}`` on the HTTP door.
DETAIL_FIELD: Final = "misbridgeDetail"
#: A marker list names at most this many fields; a longer one ends with :data:`MORE_NAMES`.
MAX_LISTED_NAMES: Final = 32
#: The last entry of a marker list that had more names than :data:`MAX_LISTED_NAMES`.
MORE_NAMES: Final = "..."

_MARKERS: Final = frozenset({OMITTED_FIELD, TRUNCATED_FIELD, DETAIL_FIELD})
_DETAIL_PATH: Final = "/v1/transactions/"
#: A name in a marker list, or a traceNo in the detail path, longer than this is cut.
_MAX_NAME_CHARS: Final = 64
#: Envelope strings (action, deviceNo, shopNo, brand) are cut to this when they leave no room for
#: a body (the book's are a few characters; a refused 30 000-character action is echoed back).
_MAX_HEADER_CHARS: Final = 256
#: Body bytes reserved before the envelope's extra keys are dropped: room for the mandatory fields.
_BODY_RESERVE: Final = 2048
_ENVELOPE_KEYS: Final = ("action", "deviceNo", "shopNo", "brand")
#: A mandatory value longer than this is abnormal (the book's are a few dozen characters): when the
#: answer does not fit, it is cut to this before any receipt field is left out.
_SANE_VALUE_CHARS: Final = 256


def frame_reply(reply: Envelope) -> bytes:
    """The framed socket answer for ``reply``, always within the 2-byte length prefix.

    The answer as it is when it fits; otherwise fitted as the module docstring describes. Never
    raises, whatever ``reply`` holds.
    """
    try:
        return frame_message(_fit(reply))
    except Exception:  # noqa: BLE001 - the one promise of this function: the POS gets an answer
        return frame_message(_last_resort(reply))


# --- JSON pieces ----------------------------------------------------------------------------


class _Unencodable(ValueError):
    """A value that cannot be written as strict UTF-8 JSON."""


def _json(value: Any) -> str:
    """Compact JSON as :mod:`misbridge.ebuy.jsonio` writes it, but refusing NaN and Infinity.

    Raises:
        _Unencodable: not JSON-able (an object, NaN, an integer too long to print, nesting
            deeper than the interpreter allows, a lone surrogate).
    """
    try:
        text = simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")  # a lone surrogate only fails here
    except (TypeError, ValueError, RecursionError) as err:  # UnicodeError is a ValueError
        raise _Unencodable(str(err)) from err
    return str(text)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _base64_len(raw_len: int) -> int:
    return 4 * math.ceil(raw_len / 3)


def _clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so it can be UTF-8 encoded."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _short(text: str, limit: int) -> str:
    return _clean_text(text)[:limit]


def _stand_in(value: Any) -> str:
    """Readable text for a mandatory value that cannot be written as JSON as it is."""
    try:
        return _clean_text(value if isinstance(value, str) else str(value))
    except Exception:  # noqa: BLE001 - str() of a hostile object (huge int, deep nesting) may fail
        return ""


# --- the fitted answer ----------------------------------------------------------------------


@dataclass
class _Member:
    """One ``"name":value`` of the body, encoded once."""

    name: str
    text: str
    size: int

    @classmethod
    def of(cls, name: str, value: Any) -> _Member:
        text = f"{_json(name)}:{_json(value)}"
        return cls(name, text, _utf8_len(text))


def _fit(reply: Envelope) -> bytes:
    whole = _whole(reply)
    if whole is not None and len(whole) <= MAX_MESSAGE_LEN:
        return whole
    header = _header(reply)
    budget = 3 * ((MAX_MESSAGE_LEN - _utf8_len(_envelope_json(header, ""))) // 4)
    body = _Body.of(reply.body)
    body.shrink_to(budget)
    return _envelope_json(header, base64.b64encode(body.text().encode("utf-8")).decode("ascii")).encode("utf-8")


def _whole(reply: Envelope) -> bytes | None:
    """The envelope JSON of the answer as it is, or None when it cannot be written as JSON."""
    try:
        body = base64.b64encode(_json(reply.body).encode("utf-8")).decode("ascii")
        header = {**_header_fields(reply), **reply.extra}
        return _envelope_json(header, body).encode("utf-8")
    except (_Unencodable, TypeError, ValueError):
        return None


def _header_fields(reply: Envelope) -> dict[str, Any]:
    return dict(zip(_ENVELOPE_KEYS, (reply.action, reply.device_no, reply.shop_no, reply.brand), strict=True))


def _envelope_json(header: Mapping[str, Any], body_base64: str) -> str:
    """The envelope JSON, keys in the book's order and ``body`` fifth, extra keys after it."""
    fields = dict(header)
    fields.pop("body", None)  # an extra key named "body" must not replace the answer
    ordered = {key: fields.pop(key) for key in _ENVELOPE_KEYS}
    return _json({**ordered, "body": body_base64, **fields})


def _header(reply: Envelope) -> dict[str, Any]:
    """The envelope fields to send with a fitted body: extra keys only if they leave room."""
    fields = {key: _stand_in(value) for key, value in _header_fields(reply).items()}
    room = MAX_MESSAGE_LEN - _base64_len(_BODY_RESERVE)
    try:
        with_extra = {**fields, **{key: value for key, value in reply.extra.items() if key not in fields}}
        if _utf8_len(_envelope_json(with_extra, "")) <= room:
            return with_extra
    except (_Unencodable, TypeError, ValueError):
        pass  # an extra key that cannot be written: send the book's four only
    if _utf8_len(_envelope_json(fields, "")) > room:
        fields = {key: _short(value, _MAX_HEADER_CHARS) for key, value in fields.items()}
    return fields


class _Body:
    """A body being fitted: its members in the original order, and what was left out or cut."""

    def __init__(self, members: list[_Member], omitted: list[str], truncated: list[str], detail: str | None) -> None:
        self._members = dict(enumerate(members))  # position -> member: O(1) removal, order kept
        self._members_size = sum(m.size for m in members)
        self.omitted = omitted
        self.truncated = truncated
        self.detail = detail

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> _Body:
        """Encode each member of ``body`` once; one that cannot be written is left out (or stood in for)."""
        members: list[_Member] = []
        omitted: list[str] = []
        truncated: list[str] = []
        seen: set[str] = set()
        for key, value in body.items():
            name = key if isinstance(key, str) else _stand_in(key)
            if name in _MARKERS or name in seen:
                continue  # misbridge's own names are replaced by this answer's markers
            seen.add(name)
            try:
                members.append(_Member.of(name, value))
            except _Unencodable:
                if name in MANDATORY_FIELDS:
                    members.append(_Member.of(name, _stand_in(value)))
                    truncated.append(name)
                else:
                    omitted.append(name)
        return cls(members, omitted, truncated, _detail_path(body))

    def text(self) -> str:
        """The body JSON: the kept members, then the markers."""
        return "{" + ",".join([m.text for m in self._members.values()] + [m.text for m in self._markers()]) + "}"

    def size(self) -> int:
        """The UTF-8 length of :meth:`text`, without building it."""
        markers = self._markers()
        parts = len(self._members) + len(markers)
        return 2 + self._members_size + sum(m.size for m in markers) + max(parts - 1, 0)

    def shrink_to(self, budget: int) -> None:
        """Leave out, then cut short, until the body JSON is at most ``budget`` bytes.

        Order: fields the receipt does not need (largest first); mandatory values longer than a
        sane field (a hostile ``returnDesc``) cut to :data:`_SANE_VALUE_CHARS`; receipt fields
        (largest first); finally the mandatory values cut to whatever fits.

        Raises:
            ValueError: even the bare markers do not fit (cannot happen with the framing's budget).
        """
        self.omitted.append("")  # reserve the omitted list's room from the start (removed below)
        self._drop(budget, receipt=False)
        if self.size() > budget:
            self._cut_insane()
        self._drop(budget, receipt=True)
        self.omitted.remove("")
        for _ in range(len(self._members) + 2):
            if self.size() <= budget:
                return
            self._cut_largest(budget)
        raise ValueError(f"a body of {self.size()} bytes cannot be fitted into {budget}")

    def _drop(self, budget: int, *, receipt: bool) -> None:
        droppable = [
            (position, member)
            for position, member in self._members.items()
            if member.name not in MANDATORY_FIELDS and (member.name in RECEIPT_FIELDS) == receipt
        ]
        for position, member in sorted(droppable, key=lambda item: -item[1].size):
            if self.size() <= budget:
                return
            del self._members[position]
            self._members_size -= member.size
            self.omitted.append(member.name)

    def _replace(self, position: int, member: _Member) -> None:
        self._members_size += member.size - self._members[position].size
        self._members[position] = member
        if member.name not in self.truncated:
            self.truncated.append(member.name)

    def _cut_insane(self) -> None:
        for position, member in list(self._members.items()):
            if member.name not in MANDATORY_FIELDS:
                continue
            value = _value_text(member)
            if len(value) > _SANE_VALUE_CHARS:
                self._replace(position, _Member.of(member.name, value[:_SANE_VALUE_CHARS]))

    def _markers(self) -> list[_Member]:
        markers: list[_Member] = []
        if self.omitted:
            markers.append(_Member.of(OMITTED_FIELD, _listed(self.omitted)))
        if self.truncated:
            markers.append(_Member.of(TRUNCATED_FIELD, _listed(self.truncated)))
        if (self.omitted or self.truncated) and self.detail is not None:
            markers.append(_Member.of(DETAIL_FIELD, self.detail))
        return markers

    def _cut_largest(self, budget: int) -> None:
        """Cut the largest member's value (as text) to the longest prefix that fits ``budget``."""
        position, largest = max(self._members.items(), key=lambda item: item[1].size, default=(-1, None))
        if largest is None or largest.size <= _Member.of(largest.name, "").size:
            # Nothing left to cut: only the markers can shrink. The pointer goes, then the lists.
            self.detail, self.truncated, self.omitted = None, self.truncated[:1], self.omitted[:1]
            if self.size() > budget:
                self.truncated, self.omitted = [], []
            return
        value = _value_text(largest)
        low, high = 0, len(value)  # the longest prefix that fits: binary search
        while low < high:
            middle = (low + high + 1) // 2
            self._replace(position, _Member.of(largest.name, value[:middle]))
            if self.size() <= budget:
                low = middle
            else:
                high = middle - 1
        self._replace(position, _Member.of(largest.name, value[:low]))


def _value_text(member: _Member) -> str:
    """A member's value as text to cut: a string as it is, anything else as its JSON."""
    value_json = member.text[len(_json(member.name)) + 1 :]
    value = simplejson.loads(value_json)
    return value if isinstance(value, str) else value_json


def _listed(names: list[str]) -> list[str]:
    shown = [_short(name, _MAX_NAME_CHARS) for name in names]
    if len(shown) > MAX_LISTED_NAMES:
        return [*shown[: MAX_LISTED_NAMES - 1], MORE_NAMES]
    return shown


def _detail_path(body: Mapping[str, Any]) -> str | None:
    """``/v1/transactions/{traceNo}`` of the transaction the journal keeps the whole answer under.

    An inquiry's answer is kept under the original (``originalTraceNo``), a sale's under its own.
    """
    for name in ("originalTraceNo", "traceNo"):
        trace_no = body.get(name)
        if isinstance(trace_no, str) and 0 < len(trace_no) <= _MAX_NAME_CHARS:
            return _DETAIL_PATH + _clean_text(trace_no)
    return None


def _last_resort(reply: Envelope) -> bytes:
    """An envelope built from constants and short texts only: cannot fail to fit.

    Reached only if fitting itself failed (a defect): the returnCode is kept if it is a short
    string, so an approval is still reported as one.
    """
    try:
        code = reply.body.get("returnCode")
        action = reply.action
    except Exception:  # noqa: BLE001 - not even an envelope: answer with the codes' shape anyway
        code = action = ""
    body = {
        "traceNo": "",
        "orderNo": "",
        "transDate": "",
        "returnCode": _stand_in(code)[:16] if isinstance(code, str) else "",
        "returnDesc": "",
        "paidAmount": 0,
        TRUNCATED_FIELD: list(MANDATORY_FIELDS),
    }
    fields = {"action": _stand_in(action)[:64], "deviceNo": "", "shopNo": "", "brand": ""}
    encoded = base64.b64encode(simplejson.dumps(body).encode("ascii")).decode("ascii")
    return simplejson.dumps({**fields, "body": encoded}).encode("ascii")
