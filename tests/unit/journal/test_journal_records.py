"""TransactionRecord, its timestamps and the request fingerprint."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from misbridge.ebuy import jsonio
from misbridge.journal import Journal, TransactionRecord, iso_utc, request_hash
from misbridge.journal.records import storable
from tests.seeding import seed_transaction


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


# --- no card data at rest, even past validation (issue 10, items 3 and 4) ------------------------

PAN = "4111111111111111"
SECRET = "SECRET-PIN-BLOCK-31337"


def _careless_request() -> dict[str, Any]:
    return {
        "traceNo": "T9", "totalAmount": Decimal("40.80"), "cardNo": PAN, "Password": SECRET,
        "goodsDetail": [{"goodsId": "6901234567892", "goodsName": f"牙膏 {PAN[:4]} {PAN[4:8]} {PAN[8:12]} {PAN[12:]}",
                         "price": 8, "quantity": 1, "cardInfo": {"track2": SECRET}}],
        "memberDetail": {"memberId": int(PAN), "pinBlock": SECRET},
    }  # fmt: skip


def test_new_stores_a_copy_without_card_data_and_fingerprints_the_original() -> None:
    request = _careless_request()
    record = TransactionRecord.new("T9", "cardRedemption", "received", request)
    stored = jsonio.dumps(record.request)
    assert PAN not in stored
    assert SECRET not in stored
    assert "1111 1111" not in stored
    assert "cardNo" not in record.request
    assert "cardInfo" not in record.request["goodsDetail"][0]
    assert record.request["memberDetail"] == {"memberId": "411111******1111"}
    assert record.request["goodsDetail"][0]["goodsId"] == "6901234567892"  # a barcode stays
    # Idempotency: the same request again hashes the same; the fingerprint is of what was sent.
    assert record.request_hash == request_hash(_careless_request()) != request_hash(record.request)
    assert request == _careless_request()  # the caller's dict is not touched


def test_a_clean_request_is_stored_as_it_came() -> None:
    request = {"traceNo": "2026050100000000", "totalAmount": Decimal("1.50"), "orderNo": "4111111111111103"}
    record = TransactionRecord.new("2026050100000000", "cardRedemption", "received", request)
    assert record.request == request
    assert record.request_hash == request_hash(request)


def test_storable_keeps_what_the_journal_must_replay() -> None:
    answer = {"traceNo": "T9", "orderNo": "4111111111111103", "transDate": "20260501123000", "returnCode": "00",
              "printDetail": {"cardNo64": "622562****8888"}, "memo": f"card {PAN}"}  # fmt: skip
    assert storable(answer) == {**answer, "memo": "card 411111******1111"}


def test_request_hash_of_a_deep_request_is_an_error_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = {"x": deep}
    with pytest.raises(ValueError, match="deeper than 32"):
        request_hash({"traceNo": "T1", "extension": deep})
    shallow: Any = 1
    for _ in range(31):
        shallow = [shallow]
    assert len(request_hash({"x": shallow})) == 64  # 32 levels: the body and 31 lists


async def test_the_journal_file_never_holds_the_card_data(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    async with await Journal.open(db) as journal:
        await journal.record_intent(TransactionRecord.new("T9", "cardRedemption", "received", _careless_request()))
        wal = db.with_name("journal.db-wal").read_bytes()
        again = await journal.get("T9")
    assert again is not None
    assert again.request_hash == request_hash(_careless_request())
    for blob in (wal, db.read_bytes()):
        assert PAN.encode() not in blob
        assert SECRET.encode() not in blob
        assert b"1111 1111" not in blob


async def test_responses_are_written_without_card_data(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    answer = {"traceNo": "T9", "orderNo": "4111111111111103", "returnCode": "00", "memo": f"card {PAN}",
              "cardInfo": {"track2": SECRET}}  # fmt: skip
    async with await Journal.open(db) as journal:
        await seed_transaction(journal, TransactionRecord.new("T9", "cardRedemption", "submitting", {"traceNo": "T9"}))
        await journal.record_transition("T9", "submitting", "approve", response=answer, return_code="00")
        call = await journal.allocate_call("T9", "inquiry")
        await journal.record_call_result(call, state="answered", return_code="00", response=answer)
        wal = db.with_name("journal.db-wal").read_bytes()
        stored = await journal.get("T9")
    assert stored is not None
    assert stored.response == {**storable(answer), "orderNo": "4111111111111103"}
    for blob in (wal, db.read_bytes()):
        assert PAN.encode() not in blob
        assert SECRET.encode() not in blob
