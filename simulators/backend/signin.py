"""DownloadKey and signIn: the keys of the simulated store (simulators.backend.keydesk, docs/backend.md).

Both are recorded in the ledger like any request (kind ``other``): their traceNo is used up,
they move no money and summary does not count them.
"""

from __future__ import annotations

from typing import Any

from simulators.backend.context import SimContext, approved, success_head
from simulators.backend.records import TraceRecord


def download_key(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """mwTmk under the rootKey (the request was verified with the rootKey, and so is the reply signed)."""
    return approved(record, success_head(ctx, record, ctx.trans_date()) | ctx.keys.download())


def sign_in(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Today's pinKey for the requesting terminal, under mwTmk; the terminal is signed in from now."""
    today = ctx.clock().date()
    return approved(record, success_head(ctx, record, ctx.trans_date()) | ctx.keys.sign_in(ctx.terminal, today))
