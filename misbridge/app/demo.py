"""``misbridge demo``: a scenario end to end on the simulators, printed for a person.

Starts the PIN-pad and backend simulators as subprocesses, the daemon in-process on free
ports, and sends what a cashier POS would through the e-Buy socket front door. The card sale
scenarios send the book's §10.2 request (with backend faults for the lost-reply ones) and print
the response and the receipt built from printDetail; ``void``, ``refund``, ``qrcode`` and
``options`` run the book's other sales and follow-ups (:mod:`misbridge.app.demo_book`). Every
scenario is listed, one line each, in :mod:`misbridge.app.demo_list`.
"""

from __future__ import annotations

import asyncio
import unicodedata
from io import StringIO
from pathlib import Path
from typing import Any, TextIO

import httpx

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.daemon import Daemon
from misbridge.app.demo_book import BOOK_RUNS
from misbridge.app.demo_eod import end_of_day_scenario
from misbridge.app.demo_list import DEMO_SCENARIOS
from misbridge.app.simulated import Simulators, bench_workdir, simulated_daemon, simulated_settings
from misbridge.config.settings import Settings
from misbridge.ebuy import jsonio
from misbridge.ebuy.envelope import encode_envelope, frame_message
from misbridge.ebuy.examples import card_redemption_request
from misbridge.errors import ReturnCode

RULE = "-" * 46
#: The scenarios that run their own requests (every one but the card sale ones of SALE_FAULTS).
RUNS = {**BOOK_RUNS, "end-of-day": end_of_day_scenario}


#: Card sale scenario name -> backend faults scripted before the request.
SALE_FAULTS: dict[str, list[dict[str, Any]]] = {
    "approve": [],
    "lost-reply": [{"action": "sale", "fault": "drop-after-commit"}],
    "lost-reply-void": [{"action": "sale", "fault": "drop-after-commit"},
                        {"action": "inquiry", "fault": "http-500-after-commit", "times": 1000}],
}  # fmt: skip


def demo_settings(sims: Simulators, workdir: Path) -> Settings:
    """Settings that wire the daemon to the running simulators on free loopback ports."""
    return simulated_settings(
        sims,
        workdir / "journal.db",
        backend={"read_timeout_s": 5.0},
        resolution={"inquiry_interval_s": 0.5, "inquiry_bound_s": 3.0, "reversal_backoff_initial_s": 0.5},
    )


RECEIPT_WIDTH = 42


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: Chinese characters are two columns wide."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _line(out: TextIO, left: str, right: str = "") -> None:
    gap = max(1, RECEIPT_WIDTH - display_width(left) - display_width(right))
    out.write(f"  {left}{' ' * gap if right else ''}{right}\n")


def format_receipt(request: dict[str, Any], response: dict[str, Any]) -> str:
    """A till receipt from the request's goods and the response's printDetail and fundChannel."""
    out = StringIO()
    detail = response.get("printDetail") or {}
    out.write(f"{RULE}\n  e-Buy card redemption\n{RULE}\n")
    _line(out, f"Trace {response.get('traceNo', '')}")
    _line(out, f"Order {response.get('orderNo', '')}", str(response.get("transDate", "")))
    _line(out, f"Card {detail.get('cardNo64', '')}", str(detail.get("bank", "")))
    for goods in request.get("goodsDetail", []):
        _line(out, f"{goods['goodsName']} x{goods['quantity']}", f"{goods['price'] * goods['quantity']:.2f}")
    _line(out, "Total", f"{request['totalAmount']:.2f}")
    for channel in response.get("fundChannel", []):
        _line(out, f"  {channel.get('channelName', channel.get('channelNo'))}", str(channel.get("channelAmount")))
    if detail.get("pointSale"):
        _line(out, "Points redeemed", str(detail["pointSale"]))
    verdict = "APPROVED" if response.get("returnCode") == "00" else "NOT APPROVED"
    _line(out, f"{verdict} ({response.get('returnCode')} {response.get('returnDesc', '')})")
    out.write(f"{RULE}\n")
    return out.getvalue()


async def run_demo(out: TextIO, *, card: str | None = None, scenario: str = "approve") -> int:
    """Run the demo; returns 0 when the scenario ended as it should (approved, voided, refunded...).

    The simulators' log and the journal stay on disk when it did not (the last line says where).
    """
    with bench_workdir("misbridge-demo-") as work:
        ended_well = await _run_scenario(out, work.path, card=card, scenario=scenario)
        out.write(f"{'as expected' if ended_well else 'NOT as expected'}\n")
        if not ended_well:
            work.keep = True
            out.write(f"kept for a look: {work.path} (simulators.log, journal.db)\n")
    return 0 if ended_well else 1


async def _run_scenario(out: TextIO, workdir: Path, *, card: str | None, scenario: str) -> bool:
    """Run ``scenario`` on simulators started in ``workdir``; True when it ended as it should."""
    async with simulated_daemon(workdir, lambda sims: demo_settings(sims, workdir), card=card) as bench:
        out.write(f"scenario            {scenario}: {DEMO_SCENARIOS[scenario]}\n")
        out.write(f"PIN pad simulator   {bench.sims.device_path}\n")
        out.write(f"backend simulator   {bench.sims.backend_url}\n")
        await _print_keys(out, bench.daemon)
        if scenario in RUNS:
            host = bench.daemon.settings.api.host
            out.write(
                f"misbridge           socket {host}:{bench.daemon.socket_port}, "
                f"http http://{host}:{bench.daemon.http_port}\n\n"
            )
            ended_well = await RUNS[scenario](out, bench.daemon)
            out.write("\n")
            return ended_well
        await _script_backend_faults(bench.sims.backend_url, SALE_FAULTS[scenario])
        response = await _redeem(out, bench.daemon)
        await _print_trail(out, bench.daemon, response["traceNo"], expect_void=scenario == "lost-reply-void")
    expected = ReturnCode.VOIDED.code if scenario == "lost-reply-void" else "00"
    return bool(response.get("returnCode") == expected)


async def _print_keys(out: TextIO, daemon: Daemon) -> None:
    """The start-up sign-in and key load, as the journal and the pad report them (check values only)."""
    keys = daemon.service.keys
    calls = await daemon.service.journal.key_calls(limit=1)
    info = daemon.service.pinpad.info
    if keys is None or not calls or info is None:
        out.write("keys                NOT signed in\n")
        return
    status = keys.status
    out.write(f"sign-in             signIn traceNo {calls[0].trace_no}: returnCode {calls[0].return_code}, "
              f"working key KCV {status.working_key_kcv}\n")  # fmt: skip
    loaded = "loaded" if status.pad_key_ok else "NOT loaded"
    out.write(f"key load            {loaded} into PIN pad {info.serial_no} slot {daemon.settings.device.key_index}: "
              f"the pad reports KCV {info.working_key_kcv or '(none)'}\n")  # fmt: skip


async def _script_backend_faults(backend_url: str, faults: list[dict[str, Any]]) -> None:
    base = backend_url.split("/ebuyweb-posp")[0]
    async with httpx.AsyncClient(base_url=base) as client:
        for fault in faults:
            (await client.post("/_sim/faults", json=fault)).raise_for_status()


async def _print_trail(out: TextIO, daemon: Daemon, trace_no: str, *, expect_void: bool) -> None:
    view = await daemon.service.transaction(trace_no)
    for _ in range(100):  # a queued void is sent by the reversal worker shortly after
        if view is None or not expect_void or view["state"] == "voided":
            break
        await asyncio.sleep(0.1)
        view = await daemon.service.transaction(trace_no)
    if view is None:
        return
    out.write(f"journal trail of {trace_no} (docs/state-machine.md):\n")
    for step in view["transitions"]:
        detail = f"  ({step['detail']})" if step["detail"] else ""
        out.write(f"  {step['at'][11:23]}  {step['event']:<17} -> {step['to']}{detail}\n")
    for call in view["backendCalls"]:
        out.write(
            f"  originated {call['kind']:<8} traceNo {call['traceNo']}: {call['state']}, "
            f"returnCode {call['returnCode']}\n"
        )
    out.write("\n")


async def _redeem(out: TextIO, daemon: Daemon) -> dict[str, Any]:
    host = daemon.settings.api.host
    out.write(f"misbridge           socket {host}:{daemon.socket_port}, HTTP {host}:{daemon.http_port}\n\n")
    request = card_redemption_request()
    envelope = envelope_for("cardRedemption", request)
    frame = frame_message(encode_envelope(envelope))
    out.write(f"POS -> misbridge    cardRedemption traceNo {request['traceNo']} totalAmount {request['totalAmount']}\n")
    out.write(f"                    frame 0x{frame[0]:02X} 0x{frame[1]:02X} + {len(frame) - 2} bytes of JSON\n")
    out.write("customer            swipes the card and enters the PIN on the simulated pad\n\n")
    answer = await socket_request(host, daemon.socket_port, envelope)
    response = answer.body
    out.write("misbridge -> POS    response body:\n")
    out.write("\n".join("  " + line for line in jsonio.pretty(response).splitlines()) + "\n\n")
    if response.get("returnCode") == "00":
        out.write(format_receipt(request, response))
    out.flush()
    return response
