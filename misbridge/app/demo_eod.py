"""``misbridge demo --scenario end-of-day``: a small day at the till, one planted disagreement, the reconciliation.

Three card sales go through the e-Buy socket door; then the backend simulator is told to
remember one of them with another amount (``/_sim/disagree``, docs/backend.md), as if e-Buy had
charged the customer more than the till. ``misbridge reconcile`` then runs for today's
business day as it would at the cut-off (docs/operations.md, "End of day"): it uploads the
day, asks for the summary and prints the report, in which the planted sale is the one
mismatch, explained.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TextIO

import httpx

from misbridge.app.daemon import Daemon
from misbridge.app.demo_book import ask, sale_request
from misbridge.app.reconcile import run_reconcile
from misbridge.core.endofday import business_day, business_day_at
from misbridge.core.reconcile import EXIT_MISMATCHED

#: How much more the backend says it charged for the planted sale.
PLANTED_EXTRA = Decimal("1.00")


async def end_of_day_scenario(out: TextIO, daemon: Daemon) -> bool:
    """Three approved sales, one planted disagreement, then the report: True when it names that one sale."""
    approved = []
    for suffix in ("EOD1", "EOD2", "EOD3"):
        body = sale_request(suffix)
        if (await ask(out, daemon, "cardRedemption", body))["returnCode"] == "00":
            approved.append(body)
    if len(approved) != 3:
        out.write("not every sale of the day was approved: nothing to reconcile\n")
        return False
    planted = approved[1]
    charged = Decimal(str(planted["totalAmount"])) + PLANTED_EXTRA
    await _plant(daemon, planted["traceNo"], charged)
    out.write(
        f"\nbackend simulator   told to remember {planted['traceNo']} as {charged:.2f} "
        f"(the till took {Decimal(str(planted['totalAmount'])):.2f})\n"
    )
    settings = daemon.settings
    now = datetime.now(UTC)
    day = business_day_at(now, settings.reconcile.cut_off_time(), settings.reconcile.zone())
    closing = business_day(settings.reconcile, day).end + timedelta(seconds=1)
    out.write(f"misbridge reconcile --date {day:%Y-%m-%d}   (as at the cut-off, {closing:%Y-%m-%d %H:%M %Z})\n\n")
    status = await run_reconcile(settings, out, day=day, now=closing)
    out.write(f"\nexit status {status} (3: mismatches found)\n")
    return status == EXIT_MISMATCHED


async def _plant(daemon: Daemon, trace_no: str, amount: Decimal) -> None:
    base = daemon.settings.backend.url.split("/ebuyweb-posp")[0]
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        told = {"traceNo": trace_no, "as": "amount", "amount": f"{amount:.2f}"}
        (await client.post("/_sim/disagree", json=told)).raise_for_status()
