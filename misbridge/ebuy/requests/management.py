"""The request models of the book's management actions (§11): ``summary`` and ``batchUpload``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from misbridge.ebuy.requests.fields import (
    MAX_BATCH_RECORDS,
    BookTime,
    Price,
    RecordCount,
    RecordStatus,
    TraceNo,
    book_time,
)
from misbridge.ebuy.requests.models import Lenient, Traced

#: Longest span from beginTime to endTime (book §11.2: "Only support the transactions within 7 Days").
MAX_BATCH_WINDOW: Final = timedelta(days=7)


class SummaryRequest(Traced):
    """``summary`` request body (book §11.1): the traceNo alone."""


class TransRecord(Lenient):
    """One transaction of an upload (book §8.7).

    The older book's table types paidAmount and status as strings; the 4.0 examples send JSON
    numbers (``100.00``, ``0``), and so must the POS: an amount is a Price, a status 0 to 9.
    """

    traceNo: TraceNo
    paidAmount: Price
    status: RecordStatus


class BatchUploadRequest(Traced):
    """``batchUpload`` request body (book §11.2)."""

    transCount: RecordCount
    beginTime: BookTime
    endTime: BookTime
    transRecord: Annotated[list[TransRecord], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]

    @model_validator(mode="after")
    def _count_matches_records(self) -> BatchUploadRequest:
        if self.transCount != len(self.transRecord):
            raise PydanticCustomError(
                "batch_count",
                "transCount ({count}) is not the number of transRecord entries ({records})",
                {"count": self.transCount, "records": len(self.transRecord), "field": "transCount"},
            )
        return self

    @model_validator(mode="after")
    def _window_within_seven_days(self) -> BatchUploadRequest:
        begin, end = book_time(self.beginTime), book_time(self.endTime)
        if begin > end:
            raise PydanticCustomError(
                "batch_window", "beginTime ({b}) is after endTime ({e})",
                {"b": self.beginTime, "e": self.endTime, "field": "beginTime"},
            )  # fmt: skip
        if end - begin > MAX_BATCH_WINDOW:
            raise PydanticCustomError(
                "batch_window", "beginTime ({b}) to endTime ({e}) spans more than 7 days",
                {"b": self.beginTime, "e": self.endTime, "field": "endTime"},
            )  # fmt: skip
        return self
