"""What was added since round one (issue 18): a void, a refund, a QR sale and the start-up sign-in.

One run, the daemon (``python -m misbridge serve``) a real subprocess wired to both simulators
(zero customer delay), as ``bench/redemptions.py`` runs line 1; each action is a line with its
p50/p99, the ratio to its floor and the daemon's CPU per operation:

* **void** (``voidCardSale``) and **refund** (``refundCardSale``, 10.80 of the 40.80 sale): the
  sales they follow are made first (not timed, their CPU not counted), then each follow-up goes
  through the socket door (the pad reads the same card and PIN again), interleaved with its
  **floor**: the same signed follow-up straight to the backend simulator with misbridge's own
  ``BackendClient`` (of a sale made straight there, cardInfo under the day's working key, as line
  1's floor is built, with ``bench/redemptions.py``'s helpers) + the wire time of the link bytes
  one void or refund exchanges (counted at an in-process pad as ``bench/wire.py`` counts a
  sale's, 115200 baud 8N1; added to the bridge figure too, as line 1 does) + its journal commits
  x one fsync p50 on the same disk;
* **QR sale** (``qrcodeSale``, the book's §10.3 code in the request, no pad): the same, without
  a wire time. Its amount is 1.00, not the book's 40.80, so the test code's balance (10 000.00)
  lasts for thousands of sales;
* **sign-in at start-up**: ``--starts`` fresh daemons (a fresh journal each, so each signs in):
  spawn to ``/health`` 200 (polled every 5 ms), which needs the day's working key signed in for
  and in the pad; the daemon's CPU from spawn to ready; and the sign-in call inside it (its
  ``key_calls`` row, allocated to answered) against the floor of a direct sign-in of the same
  terminal + the one commit inside that interval.

CPU is the daemon's utime + stime over the timed operations only (``/proc/<pid>/stat``).

Run alone: ``python -m bench.actions [--count 200] [--starts 10] [--quick] [--json PATH]``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from loguru import logger
from pydantic import SecretStr

from bench.common import (
    Row,
    Sims,
    bench_args,
    cpu_seconds,
    daemon,
    daemon_config,
    emit,
    fsync_times,
    ms,
    percentile,
    simulators,
    verdict,
)
from bench.redemptions import card_info, journal_commits, signed_in_key

# counting_bench: the pad bench/wire.py counts a sale's bytes on, so a void's are counted the same way.
from bench.wire import counting_bench, new_trace_no, wire_seconds
from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.backend.client import BackendClient
from misbridge.backend.keys import sign_in
from misbridge.config.settings import BackendSettings, IdentitySettings, KeySettings
from misbridge.ebuy.examples import book_request, card_redemption_request

WARMUP = 5
#: What each refund gives back of the 40.80 sale: a partial refund, as a cashier's most common one.
REFUND_AMOUNT = Decimal("10.80")
#: The QR sale's amount: small, so the book's code (balance 10 000.00) pays every sale of a run.
QR_AMOUNT = Decimal("1.00")
#: Voids and refunds whose link bytes are counted (the count is the same every time; a few average out the ACKs).
LINK_SAMPLES = 3
#: ``--quick``: a check that every line runs, in seconds; not a figure.
QUICK_COUNT, QUICK_STARTS, QUICK_LINK_SAMPLES = 3, 1, 1
FOLLOW_UPS = ("voidCardSale", "refundCardSale")


@dataclass
class Timed:
    """One action's bridge and floor latencies, the daemon's CPU over the bridge ones, its commits and link bytes."""

    bridge_s: list[float] = field(default_factory=list)
    direct_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    commits: int = 0
    link_bytes: int = 0


@dataclass
class Starts:
    """Each start: spawn to ready, the daemon's CPU by then, its sign-in call; and the direct sign-ins."""

    ready_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    sign_in_s: list[float] = field(default_factory=list)
    direct_s: list[float] = field(default_factory=list)


@dataclass
class Measured:
    """What one run measured."""

    count: int
    fsync_s: list[float] = field(default_factory=list)
    actions: dict[str, Timed] = field(default_factory=dict)
    starts: Starts = field(default_factory=Starts)


# -- requests ----------------------------------------------------------------------------------


def sale_body() -> dict[str, Any]:
    """The §10.2 card redemption under a fresh traceNo."""
    return {**card_redemption_request(), "traceNo": new_trace_no()}


def follow_up_body(action: str, original: str) -> dict[str, Any]:
    """A void or a refund of the sale ``original`` under a fresh traceNo, as the POS sends it."""
    body: dict[str, Any] = {"traceNo": new_trace_no(), "originalTraceNo": original}
    if action == "refundCardSale":
        body["refundAmount"] = REFUND_AMOUNT
    return body


def qr_body() -> dict[str, Any]:
    """The §10.3 QR sale (the code in the request) for :data:`QR_AMOUNT`, under a fresh traceNo."""
    return {**book_request("qrcodeSale"), "traceNo": new_trace_no(), "totalAmount": QR_AMOUNT}


def _approved(answer: dict[str, Any], what: str) -> None:
    if answer.get("returnCode") != "00":
        # returnCode and returnDesc only: the rest of an answer may hold card data.
        raise RuntimeError(f"{what} not approved: {answer.get('returnCode')} {answer.get('returnDesc', '')}")


async def through_bridge(socket_port: int, action: str, body: dict[str, Any]) -> float:
    """One request through the socket door (a new connection, as a POS sends it): seconds to the answer."""
    started = time.perf_counter()
    answer = await socket_request("127.0.0.1", socket_port, envelope_for(action, body))
    elapsed = time.perf_counter() - started
    _approved(answer.body, f"bridge {action}")
    return elapsed


async def direct(client: BackendClient, action: str, body: dict[str, Any], info: dict[str, str] | None) -> float:
    """The same request signed straight to the backend (with the pad's cardInfo when given): seconds."""
    outbound = body if info is None else {**body, "cardInfo": info}
    started = time.perf_counter()
    reply = await client.submit(action, outbound)
    elapsed = time.perf_counter() - started
    if not reply.approved:
        raise RuntimeError(f"direct {action} not approved: {reply.return_code}")
    return elapsed


# -- link bytes --------------------------------------------------------------------------------


async def count_follow_up_bytes(samples: int = LINK_SAMPLES) -> dict[str, int]:
    """Average link bytes (both ways) per void and per refund, counted at an in-process pad.

    As :func:`bench.wire.count_link_bytes` counts a sale's: the sale each follows is not counted.
    """
    totals = dict.fromkeys(FOLLOW_UPS, 0)
    async with counting_bench("misbridge-bench-actions-wire-") as (counts, socket_port):
        for _ in range(samples):
            for action in FOLLOW_UPS:
                sale = sale_body()
                await through_bridge(socket_port, "cardRedemption", sale)
                await asyncio.sleep(0.05)  # the final ACK of the sale's last frame
                before = counts.total
                await through_bridge(socket_port, action, follow_up_body(action, sale["traceNo"]))
                await asyncio.sleep(0.05)
                totals[action] += counts.total - before
    return {action: round(total / samples) for action, total in totals.items()}


# -- phases ------------------------------------------------------------------------------------


async def follow_up_phase(
    pid: int, socket_port: int, client: BackendClient, info: dict[str, str], action: str, count: int
) -> Timed:
    """``count`` sales each way first, then their voids or refunds, bridge and floor interleaved."""
    bridge_sales, direct_sales = [sale_body() for _ in range(count)], [sale_body() for _ in range(count)]
    for bridge_sale, direct_sale in zip(bridge_sales, direct_sales, strict=True):
        await through_bridge(socket_port, "cardRedemption", bridge_sale)
        await direct(client, "cardRedemption", direct_sale, info)
    result = Timed()
    before = cpu_seconds(pid)
    for bridge_sale, direct_sale in zip(bridge_sales, direct_sales, strict=True):
        result.bridge_s.append(
            await through_bridge(socket_port, action, follow_up_body(action, bridge_sale["traceNo"]))
        )
        result.direct_s.append(await direct(client, action, follow_up_body(action, direct_sale["traceNo"]), info))
    result.cpu_s = cpu_seconds(pid) - before
    return result


async def qr_phase(pid: int, socket_port: int, client: BackendClient, count: int) -> Timed:
    """``count`` QR sales through the door, each followed by the same sale straight to the backend."""
    result = Timed()
    before = cpu_seconds(pid)
    for _ in range(count):
        result.bridge_s.append(await through_bridge(socket_port, "qrcodeSale", qr_body()))
        result.direct_s.append(await direct(client, "qrcodeSale", qr_body(), None))
    result.cpu_s = cpu_seconds(pid) - before
    return result


async def last_commits(http_port: int, socket_port: int, action: str, body: dict[str, Any]) -> int:
    """The journal commits of one more ``action`` (not timed): as line 1 reads them."""
    await through_bridge(socket_port, action, body)
    return await journal_commits(http_port, body["traceNo"])


async def warm_up(socket_port: int, client: BackendClient, info: dict[str, str]) -> None:
    """A few of each action both ways, so first-call costs (imports, pools) are not measured."""
    for _ in range(WARMUP):
        for action in FOLLOW_UPS:  # a sale each: a refunded sale cannot be voided, nor a voided one refunded
            bridge_sale, direct_sale = sale_body(), sale_body()
            await through_bridge(socket_port, "cardRedemption", bridge_sale)
            await direct(client, "cardRedemption", direct_sale, info)
            await through_bridge(socket_port, action, follow_up_body(action, bridge_sale["traceNo"]))
            await direct(client, action, follow_up_body(action, direct_sale["traceNo"]), info)
        await through_bridge(socket_port, "qrcodeSale", qr_body())
        await direct(client, "qrcodeSale", qr_body(), None)


def sign_in_seconds(journal: Path) -> float:
    """The start-up sign-in's ``key_calls`` row: allocated to answered, in seconds.

    Raises:
        RuntimeError: no answered sign-in in the journal (the daemon was ready without one).
    """
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT created_at, updated_at FROM key_calls WHERE kind = 'signIn' AND return_code = '00'"
            " ORDER BY rowid LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        raise RuntimeError(f"no answered sign-in in {journal}")
    return (datetime.fromisoformat(row[1]) - datetime.fromisoformat(row[0])).total_seconds()


async def check_keys(http_port: int) -> None:
    """``/health`` says signed in with the key in the pad (200 already means it; this makes sure)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
        health = (await http.get("/health")).json()
    if not (health.get("backend", {}).get("signed_in") and health.get("pad", {}).get("key_ok")):
        raise RuntimeError(f"ready without keys: {health.get('reasons')}")


async def starts_phase(workdir: Path, sims: Sims, client: BackendClient, starts: int) -> Starts:
    """``starts`` fresh daemons one after the other, each followed by one direct sign-in."""
    result = Starts()
    for i in range(starts):
        name = f"start{i}"
        config, socket_port, http_port = daemon_config(
            workdir, sims.device_path, sims.backend_url, sims.key_file, name=name
        )
        async with daemon(config, socket_port, http_port, workdir / f"{name}.log") as proc:
            result.cpu_s.append(cpu_seconds(proc.pid))
            result.ready_s.append(proc.ready_s)
            await check_keys(http_port)
        result.sign_in_s.append(sign_in_seconds(workdir / f"{name}-journal.db"))
        started = time.perf_counter()
        await sign_in(client, KeySettings(), new_trace_no())
        result.direct_s.append(time.perf_counter() - started)
    return result


async def measure(count: int, starts: int, link_samples: int = LINK_SAMPLES) -> Measured:
    """Run everything: the link counts, then the three actions on one daemon, then the starts."""
    logger.disable("misbridge")  # the BackendClient used for the floor logs each call
    result = Measured(count)
    link = await count_follow_up_bytes(link_samples)
    with tempfile.TemporaryDirectory(prefix="misbridge-bench-actions-") as tmp:
        workdir = Path(tmp)
        result.fsync_s = fsync_times(workdir)
        async with simulators(workdir) as sims:
            config, socket_port, http_port = daemon_config(workdir, sims.device_path, sims.backend_url, sims.key_file)
            key = SecretStr(sims.key_file.read_text(encoding="utf-8").strip())
            client = BackendClient(BackendSettings(url=sims.backend_url), IdentitySettings(), key)
            info = card_info(await signed_in_key(client))
            try:
                async with daemon(config, socket_port, http_port, workdir / "daemon.log") as proc:
                    await warm_up(socket_port, client, info)
                    for action in FOLLOW_UPS:
                        timed = await follow_up_phase(proc.pid, socket_port, client, info, action, count)
                        sale = sale_body()
                        await through_bridge(socket_port, "cardRedemption", sale)
                        timed.commits = await last_commits(
                            http_port, socket_port, action, follow_up_body(action, sale["traceNo"])
                        )
                        timed.link_bytes = link[action]
                        result.actions[action] = timed
                    qr = await qr_phase(proc.pid, socket_port, client, count)
                    qr.commits = await last_commits(http_port, socket_port, "qrcodeSale", qr_body())
                    result.actions["qrcodeSale"] = qr
                result.starts = await starts_phase(workdir, sims, client, starts)
            finally:
                await client.aclose()
    return result


# -- the table ---------------------------------------------------------------------------------

#: Line name and the word for one operation of each action.
LINES: dict[str, tuple[str, str]] = {
    "voidCardSale": ("9a. void (voidCardSale) vs floor", "void"),
    "refundCardSale": ("9b. refund (refundCardSale) vs floor", "refund"),
    "qrcodeSale": ("9c. QR sale (qrcodeSale) vs floor", "QR sale"),
}


def _p50_p99(values: list[float]) -> str:
    return f"p50 {ms(percentile(values, 50))}, p99 {ms(percentile(values, 99))}"


def action_row(action: str, timed: Timed, fsync_p50: float, count: int) -> Row:
    """One action's line: bridge and floor at p50 and p99, the ratios, the daemon's CPU per operation."""
    name, word = LINES[action]
    wire = wire_seconds(timed.link_bytes)
    bridged = [value + wire for value in timed.bridge_s]
    floor = [value + wire + timed.commits * fsync_p50 for value in timed.direct_s]
    p50, p99 = (percentile(bridged, 50), percentile(floor, 50)), (percentile(bridged, 99), percentile(floor, 99))
    cpu_ms = timed.cpu_s / len(timed.bridge_s) * 1000
    wire_note = (
        f"+ link wire {ms(wire)} ({timed.link_bytes} B at 115200 baud 8N1, counted at the pad, added to both sides) "
        if timed.link_bytes
        else "(no pad: no wire time) "
    )
    return Row(
        name,
        "(report)",
        f"p50 {ms(p50[0])} vs {ms(p50[1])}, p99 {ms(p99[0])} vs {ms(p99[1])}; CPU {cpu_ms:.2f} ms/{word}",
        verdict(None, f"p50 {p50[0] / p50[1]:.2f}x, p99 {p99[0] / p99[1]:.2f}x"),
        f"{count} {word}s. bridge on the pty {_p50_p99(timed.bridge_s)}; floor = direct backend RTT "
        f"{_p50_p99(timed.direct_s)} {wire_note}+ {timed.commits} journal commits x fsync p50 {ms(fsync_p50)}; "
        f"CPU = daemon user+sys over the {count} bridge {word}s only",
    )


def start_rows(starts: Starts, fsync_p50: float) -> list[Row]:
    """Spawn to signed in and ready, its CPU; the sign-in call in it against a direct sign-in."""
    cpu_ms = sum(starts.cpu_s) / len(starts.cpu_s) * 1000
    floor = [value + fsync_p50 for value in starts.direct_s]
    p50 = percentile(starts.sign_in_s, 50), percentile(floor, 50)
    p99 = percentile(starts.sign_in_s, 99), percentile(floor, 99)
    n = len(starts.ready_s)
    return [
        Row(
            "9d. spawn to signed in, key in the pad",
            "(report)",
            f"{_p50_p99(starts.ready_s)}; CPU {cpu_ms:.0f} ms/start",
            verdict(None),
            f"{n} starts of python -m misbridge serve, a fresh journal each: to /health 200 with signed_in and the "
            "pad's key_ok (includes interpreter start and imports, line 4c); CPU = daemon user+sys from spawn to "
            f"ready, mean of {n}" + (" (p99 of so few starts is their max)" if n < 100 else ""),
        ),
        Row(
            "9e. the start-up sign-in call vs floor",
            "(report)",
            f"p50 {ms(p50[0])} vs {ms(p50[1])}, p99 {ms(p99[0])} vs {ms(p99[1])}",
            verdict(None, f"p50 {p50[0] / p50[1]:.2f}x, p99 {p99[0] / p99[1]:.2f}x"),
            "in the daemon: its key_calls row, allocated to answered (the allocation's commit, the signed call, "
            f"taken while the rest of start-up runs); floor = a direct sign-in of the same terminal "
            f"({_p50_p99(starts.direct_s)}, one after each start) + 1 commit x fsync p50",
        ),
    ]


def rows(m: Measured) -> list[Row]:
    """The table lines for one run."""
    fsync_p50 = percentile(m.fsync_s, 50)
    return [action_row(action, m.actions[action], fsync_p50, m.count) for action in LINES] + start_rows(
        m.starts, fsync_p50
    )


def main() -> None:
    """Measure and print."""
    parser = bench_args(__doc__ or "")
    parser.add_argument("--count", type=int, default=200, help="voids, refunds and QR sales each (default 200)")
    parser.add_argument("--starts", type=int, default=10, help="daemon starts for the sign-in lines (default 10)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_COUNT} of each action, {QUICK_STARTS} start (overrides the two above): a check, not a figure",
    )
    args = parser.parse_args()
    if args.count < 1 or args.starts < 1:
        parser.error("--count and --starts must be 1 or more")
    if args.quick:
        measured = asyncio.run(measure(QUICK_COUNT, QUICK_STARTS, QUICK_LINK_SAMPLES))
    else:
        measured = asyncio.run(measure(args.count, args.starts))
    emit(rows(measured), args.json)


if __name__ == "__main__":
    main()
