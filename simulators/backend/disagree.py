"""Told disagreements: the backend's side of a traceNo as a test wants batchUpload to see it.

End of day (misbridge reconcile) uploads every record misbridge believes in and reads back a
match status per record (book §8.7). The simulator's ledger normally agrees with misbridge, so
only ``1`` (equal) comes back; a test that must see the other statuses tells the simulator to
disagree about one traceNo (``POST /_sim/disagree``, docs/backend.md):

=============  ======  =====================================================================
``as``         status  what batchUpload answers for that traceNo
=============  ======  =====================================================================
``amount``     2 or 3  the backend holds ``amount``: 2 when it is more than the uploaded
                       paidAmount, 3 when less (1 when equal)
``drop``       4       not in the backend
``failed``     5       failed
``reversed``   6       reversed (voided)
``rolled_back`` 7      rolled back
``refunded``   8       refunded
=============  ======  =====================================================================

A told disagreement wins over the ledger whatever the ledger holds, for every later upload,
until it is replaced (another ``POST`` for the traceNo) or cleared (``DELETE``). It changes only
batchUpload's answer: the ledger, the balances and ``summary`` stay as they were.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The book's paidAmount: up to 10 digits, at most 2 decimals, as a string ("12.34").
AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"


class Disagreement(StrEnum):
    """What the backend claims about a traceNo; each gives one batchUpload status (module text)."""

    AMOUNT = "amount"
    DROP = "drop"
    FAILED = "failed"
    REVERSED = "reversed"
    ROLLED_BACK = "rolled_back"
    REFUNDED = "refunded"


#: The fixed status of every disagreement but ``amount`` (which compares).
_STATUS: dict[Disagreement, int] = {
    Disagreement.DROP: 4,
    Disagreement.FAILED: 5,
    Disagreement.REVERSED: 6,
    Disagreement.ROLLED_BACK: 7,
    Disagreement.REFUNDED: 8,
}


class DisagreeRequest(BaseModel):
    """The body of ``POST /_sim/disagree``: ``{"traceNo", "as", "amount"}``.

    ``amount`` is given with ``as: amount``, and only then.
    """

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, frozen=True)

    trace_no: str = Field(alias="traceNo", min_length=1, max_length=64)
    as_: Disagreement = Field(alias="as")
    amount: str | None = Field(default=None, pattern=AMOUNT_PATTERN)

    @model_validator(mode="after")
    def _amount_only_with_amount(self) -> Self:
        if (self.as_ is Disagreement.AMOUNT) != (self.amount is not None):
            raise ValueError('"amount" is required with "as": "amount" and refused with any other "as"')
        return self

    def status(self, uploaded: Decimal) -> int:
        """The batchUpload status for a record of this traceNo uploaded with paidAmount ``uploaded``."""
        if self.amount is None:
            return _STATUS[self.as_]
        backend = Decimal(self.amount)
        if backend == uploaded:
            return 1
        return 2 if backend > uploaded else 3

    def to_json(self) -> dict[str, Any]:
        """The entry as ``GET /_sim/disagree`` lists it."""
        shown: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True)
        return shown


def parse_disagree_request(raw: bytes) -> DisagreeRequest:
    """The body of ``POST /_sim/disagree``.

    Raises:
        pydantic.ValidationError: (a ValueError) not JSON, an unknown key, an unknown ``as``, a
            badly formed amount, or ``amount`` missing with ``as: amount`` (or given with another).
    """
    return DisagreeRequest.model_validate_json(raw)


class Disagreements:
    """The told disagreements, one per traceNo (a new one replaces the old)."""

    def __init__(self) -> None:
        self._by_trace_no: dict[str, DisagreeRequest] = {}

    def tell(self, request: DisagreeRequest) -> None:
        """Disagree about ``request.trace_no`` from now on."""
        self._by_trace_no[request.trace_no] = request

    def about(self, trace_no: str) -> DisagreeRequest | None:
        """The disagreement told about ``trace_no``, if any."""
        return self._by_trace_no.get(trace_no)

    def listing(self) -> list[dict[str, Any]]:
        """Every told disagreement, in the order told."""
        return [request.to_json() for request in self._by_trace_no.values()]

    def clear(self) -> int:
        """Forget them all; how many there were."""
        count = len(self._by_trace_no)
        self._by_trace_no.clear()
        return count
