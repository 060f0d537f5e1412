"""``misbridge demo --lanes N``: N lanes, each with its own simulated PIN pad, selling at the same time.

Every lane's POS sends the book's §10.2 card redemption at once over the e-Buy socket door, its
envelope naming the lane's ``deviceNo`` (book §6.1), which is how the daemon puts it on the
lane's pad. Each lane prints its receipt and how long its sale took; the demo ends well when
every lane's sale was approved.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TextIO

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.daemon import Daemon
from misbridge.app.demo import demo_settings, format_receipt
from misbridge.app.simulated import bench_workdir, lane_device_no, lane_name, simulated_daemon
from misbridge.ebuy.examples import card_redemption_request

__all__ = ["run_lanes_demo"]


async def run_lanes_demo(out: TextIO, *, lanes: int, card: str | None = None) -> int:
    """Run ``lanes`` concurrent sales, one per lane; 0 when every one was approved."""
    with bench_workdir("misbridge-demo-") as work:
        workdir = work.path
        settings = lambda sims: demo_settings(sims, workdir)  # noqa: E731 - the wiring needs the running sims
        async with simulated_daemon(workdir, settings, card=card, lanes=lanes) as bench:
            daemon = bench.daemon
            out.write(f"scenario            {lanes} lanes, one card sale on each at the same time\n")
            for number, pad in enumerate(bench.sims.pads, start=1):
                out.write(
                    f"{lane_name(number):<20}deviceNo {lane_device_no(number)}, PIN pad simulator {pad.device_path}\n"
                )
            out.write(f"backend simulator   {bench.sims.backend_url}\n")
            out.write(f"misbridge           socket {daemon.settings.api.host}:{daemon.socket_port}\n\n")
            sales = await asyncio.gather(*(_sell(daemon, number) for number in range(1, lanes + 1)))
        for number, (request, response, seconds) in enumerate(sales, start=1):
            out.write(f"{lane_name(number)} (deviceNo {lane_device_no(number)}): {response.get('returnCode')} "
                      f"{response.get('returnDesc', '')} in {seconds:.2f} s\n")  # fmt: skip
            out.write(format_receipt(request, response))
        approved = sum(1 for _, response, _ in sales if response.get("returnCode") == "00")
        ended_well = approved == lanes
        out.write(f"\n{approved} of {lanes} lanes approved: {'as expected' if ended_well else 'NOT as expected'}\n")
        if not ended_well:
            work.keep = True
            out.write(f"kept for a look: {workdir} (simulators.log, journal.db)\n")
    return 0 if ended_well else 1


async def _sell(daemon: Daemon, number: int) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Lane ``number``'s POS: the §10.2 sale under a traceNo of its own, its envelope naming its deviceNo."""
    request = card_redemption_request()
    request["traceNo"] = f"{request['traceNo']}L{number:02d}"
    envelope = envelope_for("cardRedemption", request, device_no=lane_device_no(number))
    started = time.monotonic()
    answer = await socket_request(daemon.settings.api.host, daemon.socket_port, envelope)
    return request, answer.body, time.monotonic() - started
