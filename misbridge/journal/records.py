"""Value objects the journal stores and returns, and the request fingerprint.

Requests and responses are dicts whose values may hold :class:`decimal.Decimal` amounts; they
are stored as JSON written by :mod:`misbridge.ebuy.jsonio`, so ``1000.00`` reads back as
``Decimal("1000.00")``.

No card data at rest, even if a request got past validation with some: :meth:`TransactionRecord.new`
keeps the :func:`storable` copy of the request (card-data fields dropped, card numbers masked to
first 6 / last 4) while its fingerprint is that of the request as received, so a repeat of the
same request is still recognised. :func:`storable` is also the form in which the journal
writes a response.

Timestamps are timezone-aware :class:`~datetime.datetime` values here and ISO-8601 UTC text
in the database (:func:`iso_utc`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from misbridge.ebuy import carddata, jsonio

__all__ = [
    "CallKind",
    "CallRecord",
    "CallState",
    "KeyCallKind",
    "KeyCallRecord",
    "PosInquiryRecord",
    "PosQueryRecord",
    "ReversalRecord",
    "ReversalState",
    "TransactionRecord",
    "TransitionRecord",
    "iso_utc",
    "request_hash",
    "storable",
    "utc_now",
]

CallKind = Literal["inquiry", "void", "option"]
"""A request misbridge originates to the backend."""

CallState = Literal["sent", "answered", "unknown"]
"""Where an originated request stands: ``sent`` (committed before the first byte), then
``answered`` or ``unknown`` (no usable reply: it may or may not have been processed)."""

KeyCallKind = Literal["downloadKey", "signIn", "batchUpload", "summary"]
"""A request without an original misbridge originates: ``DownloadKey`` (the master key), the daily
sign-in (the working key), or the end of day's ``batchUpload`` and ``summary`` (schema v7)."""

ReversalState = Literal["pending", "done", "needs_manual"]
"""Where a reversal queue entry stands; ``done`` is final."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the journal's default clock)."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """``moment`` as the journal's timestamp text: ISO-8601 in UTC with microseconds.

    The fixed width makes text order equal time order.

    Raises:
        ValueError: ``moment`` is naive (no timezone).
    """
    _require_aware("timestamp", moment)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _require_aware(name: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"journal {name} must be timezone-aware, got {moment!r}")


def _require_one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"journal {name} must be one of {allowed!r}, got {value!r}")


def storable(body: Mapping[str, Any]) -> dict[str, Any]:
    """The copy of a request or response body the journal may hold: no card data.

    Card-data fields are dropped at any depth and card numbers masked to first 6 / last 4
    (:func:`misbridge.ebuy.carddata.storable`); traceNo, originalTraceNo, orderNo and GTIN
    goodsIds stay as they are. A body without card data comes back equal.
    """
    copy: dict[str, Any] = carddata.storable(body)
    return copy


def _sorted_keys(value: Any, depth: int = 1) -> Any:
    # The doors refuse JSON nested deeper than MAX_DEPTH and validation refuses such a body,
    # so this never gets near the recursion limit; the check keeps it so for any caller.
    if depth > carddata.MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        raise ValueError(f"request nests deeper than {carddata.MAX_DEPTH} levels; it cannot be fingerprinted")
    if isinstance(value, Mapping):
        return {key: _sorted_keys(value[key], depth + 1) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted_keys(item, depth + 1) for item in value]
    return value


def request_hash(request: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``request``: keys sorted at every level, compact.

    Equal requests give equal hashes whatever their key order.  Numbers keep the digits they
    were given, as on the wire: ``Decimal("1.50")`` and ``Decimal("1.5")`` hash differently.

    Raises:
        ValueError: ``request`` nests deeper than :data:`misbridge.ebuy.carddata.MAX_DEPTH`.
    """
    canonical = jsonio.dumps(_sorted_keys(request))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TransactionRecord:
    """One row of ``transactions``: a transaction's request, current state and result.

    Build a new one with :meth:`new`; the journal returns them from ``get`` and
    ``list_by_states``.  ``request_hash`` is the SHA-256 hex fingerprint of the canonical
    request (:func:`request_hash`), kept to recognise a repeated ``trace_no``. ``lane`` is the
    POS lane the transaction belongs to (schema v8, :mod:`misbridge.journal.lanes`): ``None``
    for the default lane. It is read back from the row; ``record_intent`` writes the journal
    view's lane, so a new record leaves it ``None``.

    Raises:
        ValueError: a timestamp is naive.
    """

    trace_no: str
    action: str
    state: str
    request: dict[str, Any]
    request_hash: str
    created_at: datetime
    updated_at: datetime
    masked_pan: str | None = None
    card_type: str | None = None
    response: dict[str, Any] | None = None
    return_code: str | None = None
    lane: str | None = None

    def __post_init__(self) -> None:
        _require_aware("created_at", self.created_at)
        _require_aware("updated_at", self.updated_at)

    @classmethod
    def new(
        cls, trace_no: str, action: str, state: str, request: dict[str, Any], *, now: datetime | None = None
    ) -> TransactionRecord:
        """A record for ``Journal.record_intent``: hash computed, both timestamps ``now``.

        The record keeps the :func:`storable` copy of ``request`` and the :func:`request_hash`
        of ``request`` itself.  ``now`` defaults to the current time.  The timestamps are
        truncated to microseconds in UTC, as stored, so the record equals what the journal
        reads back.

        Raises:
            ValueError: ``now`` is naive, or ``request`` nests too deep to fingerprint.
        """
        stamp = datetime.fromisoformat(iso_utc(utc_now() if now is None else now))
        return cls(trace_no, action, state, storable(request), request_hash(request), stamp, stamp)


@dataclass(frozen=True)
class TransitionRecord:
    """One row of ``transitions``: the audit trail of a transaction's state changes.

    The first row of every transaction is ``("", <initial state>, "intent")``.
    """

    id: int
    trace_no: str
    from_state: str
    to_state: str
    event: str
    at: datetime
    detail: str = ""


@dataclass(frozen=True)
class CallRecord:
    """One row of ``backend_calls``: a request misbridge originated about ``original_trace_no``.

    ``trace_no`` is the request's own, never-repeated traceNo (``Journal.allocate_call``);
    ``return_code`` and ``response`` are set with the result (``Journal.record_call_result``).

    Raises:
        ValueError: a timestamp is naive, or ``kind``/``state`` is not a known value.
    """

    trace_no: str
    original_trace_no: str
    kind: CallKind
    state: CallState
    return_code: str | None
    response: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        _require_one_of("call kind", self.kind, get_args(CallKind))
        _require_one_of("call state", self.state, get_args(CallState))
        _require_aware("created_at", self.created_at)
        _require_aware("updated_at", self.updated_at)


@dataclass(frozen=True)
class KeyCallRecord:
    """One row of ``key_calls``: a key request misbridge originated (``downloadKey`` or ``signIn``).

    ``trace_no`` is the request's own, never-repeated traceNo (``Journal.allocate_key_call``);
    ``state`` is ``sent`` until its one result (``Journal.record_key_call_result``). The row
    holds no key material: the wrapped key goes to the pad and nowhere else. ``key_kcv`` is the
    check value (6 hex) of the key an answered sign-in issued: after a restart it tells whether
    the pad still holds today's key, without a new sign-in.

    Raises:
        ValueError: a timestamp is naive, or ``kind``/``state`` is not a known value.
    """

    trace_no: str
    kind: KeyCallKind
    state: CallState
    return_code: str | None
    created_at: datetime
    updated_at: datetime
    key_kcv: str | None = None
    lane: str | None = None  # the lane that sent it (schema v8); None: the default lane

    def __post_init__(self) -> None:
        _require_one_of("key request kind", self.kind, get_args(KeyCallKind))
        _require_one_of("key request state", self.state, get_args(CallState))
        _require_aware("created_at", self.created_at)
        _require_aware("updated_at", self.updated_at)


@dataclass(frozen=True)
class PosInquiryRecord:
    """One row of ``pos_inquiries``: a POS ``inquiry`` misbridge forwarded (its original was not journaled).

    ``state`` follows the ``query`` kind's machine: ``sent`` (committed before the request left),
    then ``answered`` (``return_code`` and ``response`` hold the reply) or ``unknown`` (no usable
    reply).
    """

    id: int
    trace_no: str
    original_trace_no: str
    state: str
    return_code: str | None
    response: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    request_hash: str | None = None  # the request's fingerprint; None on rows from schema version 3
    lane: str | None = None  # the lane that forwarded it (schema v8); None: the default lane


@dataclass(frozen=True)
class PosQueryRecord:
    """One row of ``pos_queries``: an ``ecouponInquiry``, ``summary`` or ``batchUpload`` the POS sent.

    ``state`` follows the kind's machine (query or upload): ``sent`` (committed before the
    request left), then ``answered`` (``response`` is the answer the POS got) or ``unknown``
    (``response`` is the MB30/MB31 answer the POS got).  ``request`` is the :func:`storable`
    copy, ``request_hash`` the fingerprint of the request as received.
    """

    trace_no: str
    action: str
    state: str
    request: dict[str, Any]
    request_hash: str
    return_code: str | None
    response: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    lane: str | None = None  # the lane whose POS sent it (schema v8); None: the default lane


@dataclass(frozen=True)
class ReversalRecord:
    """One row of ``reversals``: the durable void queue entry of ``original_trace_no``.

    ``attempts`` counts the void attempts recorded so far (failed ones and the one that
    completed); ``next_attempt_at`` is when the entry is next due; ``last_error`` is the
    reason the latest failed attempt gave (``""`` before any).

    Raises:
        ValueError: a timestamp is naive, or ``state`` is not a known value.
    """

    original_trace_no: str
    state: ReversalState
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    last_error: str = ""

    def __post_init__(self) -> None:
        _require_one_of("reversal state", self.state, get_args(ReversalState))
        _require_aware("next_attempt_at", self.next_attempt_at)
        _require_aware("created_at", self.created_at)
        _require_aware("updated_at", self.updated_at)
