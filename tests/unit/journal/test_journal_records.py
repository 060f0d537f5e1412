"""TransactionRecord, its timestamps and the request fingerprint."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from misbridge.journal import TransactionRecord, iso_utc, request_hash


def test_new_stamps_both_timestamps_in_utc_and_hashes_the_request() -> None:
    local = datetime(2026, 5, 1, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    request = {"traceNo": "T1", "totalAmount": Decimal("40.80")}
    record = TransactionRecord.new("T1", "cardRedemption", "received", request, now=local)
    assert record.created_at == record.updated_at == local
    assert record.created_at.tzinfo is UTC
    assert record.request_hash == request_hash(request)
    assert (record.masked_pan, record.card_type, record.response, record.return_code) == (None, None, None, None)


def test_new_defaults_to_now() -> None:
    before = datetime.now(UTC)
    record = TransactionRecord.new("T1", "cardRedemption", "received", {})
    assert before <= record.created_at <= datetime.now(UTC)


def test_naive_times_are_refused() -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        iso_utc(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        TransactionRecord.new("T1", "a", "received", {}, now=naive)
    with pytest.raises(ValueError, match="updated_at"):
        TransactionRecord("T1", "a", "received", {}, "ff", datetime.now(UTC), naive)


def test_iso_utc_is_fixed_width_utc() -> None:
    assert iso_utc(datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))) == "2026-01-01T00:00:00.000000+00:00"


def test_request_hash_is_canonical() -> None:
    a = {"traceNo": "T1", "goods": [{"name": "苹果", "price": Decimal("1.50")}], "total": Decimal("1.50")}
    b = {"total": Decimal("1.50"), "goods": [{"price": Decimal("1.50"), "name": "苹果"}], "traceNo": "T1"}
    assert request_hash(a) == request_hash(b)
    canonical = '{"goods":[{"name":"苹果","price":1.50}],"total":1.50,"traceNo":"T1"}'
    assert request_hash(a) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert request_hash({**a, "total": Decimal("1.5")}) != request_hash(a)  # digits as given
    assert request_hash({**a, "traceNo": "T2"}) != request_hash(a)
