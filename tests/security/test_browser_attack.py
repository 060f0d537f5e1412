"""R17: a web page in a real browser cannot start a transaction through either front door.

A headless Chromium (Debian's ``chromium`` package) opens a page served from another local
origin, ``http://127.0.0.2:<port>``, that throws everything a page can at misbridge's two
doors on 127.0.0.1: ``fetch()`` POSTs with ``text/plain`` and ``application/json``, with and
without ``mode: 'no-cors'``, a no-cors GET, an HTML form POST (``enctype=text/plain`` shaped
into JSON) and ``navigator.sendBeacon``. The page reports what the browser saw to its own
server; then the journal must hold **0 transactions** and the backend simulator **0
submissions**, while the daemon's log shows the requests did arrive and were refused.

Run by ``make test-browser`` (which installs chromium); skipped when chromium is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from misbridge.app.daemon import Daemon
from misbridge.app.simulated import simulated_daemon
from misbridge.host.asgi import AsgiServer
from misbridge.telemetry.logs import configure_logging

CHROMIUM = os.environ.get("MISBRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)
#: Set by `make test-browser`: a missing browser fails the run instead of skipping the test.
REQUIRE_CHROMIUM = os.environ.get("MISBRIDGE_REQUIRE_CHROMIUM") == "1"
ATTACKER_HOST = "127.0.0.2"
REPORT_TIMEOUT_S = 60.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not HAVE_CHROMIUM and not REQUIRE_CHROMIUM,
        reason=f"chromium not installed ({CHROMIUM}); `make test-browser` installs Debian's chromium package",
    ),
]

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--no-default-browser-check",
)  # fmt: skip

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>innocent page</title></head>
<body><pre id="out">running</pre>
<script>
const DOORS = {http: "http://127.0.0.1:%(http_port)d", socket: "http://127.0.0.1:%(socket_port)d"};
const sale = (traceNo) => JSON.stringify({traceNo, totalAmount: 1, undiscountAmount: 0, goodsDetail: [
  {goodsCategory: "001", goodsId: "P1", goodsName: "x", price: 1, quantity: 1}]});
const results = {};
const limit = () => { const c = new AbortController(); setTimeout(() => c.abort(), 5000); return c.signal; };
async function attempt(name, run) {
  try { const r = await run(); results[name] = "answered: status " + r.status + " type " + r.type; }
  catch (e) { results[name] = "failed: " + e.name; }
}
function formPost(name, url, traceNo) {
  return new Promise((resolve) => {
    const frame = document.createElement("iframe");
    frame.name = "sink-" + name;
    document.body.appendChild(frame);
    const form = document.createElement("form");
    form.method = "POST"; form.action = url; form.enctype = "text/plain"; form.target = frame.name;
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = '{"traceNo":"' + traceNo + '","totalAmount":1,"undiscountAmount":0,"pad":"';
    field.value = '"}';
    form.appendChild(field);
    document.body.appendChild(form);
    frame.onload = () => resolve("submitted, frame loaded");
    setTimeout(() => resolve("submitted"), 4000);
    form.submit();
  }).then((r) => { results[name] = r; });
}
(async () => {
  let n = 0;
  for (const [door, base] of Object.entries(DOORS)) {
    const url = base + "/v1/cardRedemption";
    const next = () => "BROWSER" + door.toUpperCase() + (++n);
    await attempt(door + " fetch text/plain", () => fetch(url, {method: "POST", body: sale(next()),
      headers: {"Content-Type": "text/plain"}, signal: limit()}));
    await attempt(door + " fetch text/plain no-cors", () => fetch(url, {method: "POST", mode: "no-cors",
      body: sale(next()), headers: {"Content-Type": "text/plain"}, signal: limit()}));
    await attempt(door + " fetch json", () => fetch(url, {method: "POST", body: sale(next()),
      headers: {"Content-Type": "application/json"}, signal: limit()}));
    await attempt(door + " fetch json no-cors", () => fetch(url, {method: "POST", mode: "no-cors",
      body: sale(next()), headers: {"Content-Type": "application/json"}, signal: limit()}));
    await attempt(door + " fetch GET no-cors", () => fetch(base + "/v1/transactions/X", {mode: "no-cors",
      signal: limit()}));
    results[door + " sendBeacon text"] = String(navigator.sendBeacon(url, sale(next())));
    try {
      results[door + " sendBeacon json"] = String(navigator.sendBeacon(url,
        new Blob([sale(next())], {type: "application/json"})));
    } catch (e) { results[door + " sendBeacon json"] = "failed: " + e.name; }
    await formPost(door + " form POST", url, next());
  }
  await new Promise((resolve) => setTimeout(resolve, 2000));  // let the beacons go out
  document.getElementById("out").textContent = JSON.stringify(results);
  await fetch("/report", {method: "POST", body: JSON.stringify(results)});
})();
</script></body></html>
"""


class Attacker:
    """The other origin: serves the page and receives the browser's report."""

    def __init__(self, http_port: int, socket_port: int) -> None:
        self.page = PAGE % {"http_port": http_port, "socket_port": socket_port}
        self.report: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self.app = Starlette(routes=[Route("/", self._page), Route("/report", self._report, methods=["POST"])])

    async def _page(self, _: Request) -> Response:
        return HTMLResponse(self.page)

    async def _report(self, request: Request) -> Response:
        if not self.report.done():
            self.report.set_result(json.loads(await request.body()))
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def chromium(url: str, profile: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """Headless Chromium on ``url`` in its own process group, killed (the group) on exit."""
    with (profile.parent / "chromium.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            CHROMIUM, *FLAGS, f"--user-data-dir={profile}", url,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def test_a_web_page_cannot_start_a_transaction(tmp_path: Path) -> None:
    assert HAVE_CHROMIUM, f"chromium not found at {CHROMIUM} (MISBRIDGE_REQUIRE_CHROMIUM=1)"
    logs = io.StringIO()
    configure_logging("INFO", stream=logs)
    try:
        async with simulated_daemon(
            tmp_path,
            pinpad_args=("--timeout-cap", "0.3"),
            device={"card_timeout_s": 5, "pin_timeout_s": 5},
            api={"socket_read_timeout_s": 0.5},
        ) as running:
            report = await _attack(running.daemon, tmp_path)
            journaled = await running.daemon.service.journal.count()
            ledger = await _ledger(running.sims.backend_url)
    finally:
        configure_logging("WARNING")
    log = logs.getvalue()
    # The browser made every attempt (the page reported back) ...
    assert len(report) == 16, report
    # ... they reached the doors and were refused ...
    assert log.count("HTTP request refused") >= 6, log
    # (the socket door's edge lines are rate-limited per door, code and user: the first in full,
    # the rest summed up later, so one line stands for the five attempts)
    assert log.count("an HTTP request arrived on the e-Buy socket door") >= 1, log
    assert all(not v.startswith("answered: status 200") for v in report.values()), report
    # ... and nothing happened.
    assert journaled == 0, report
    # The backend saw only misbridge's own start-up sign-in: no request of the page's.
    seen = {entry["action"] for entry in ledger.get("transactions", {}).values()}
    assert seen <= {"signIn"}, ledger


async def _attack(daemon: Daemon, tmp_path: Path) -> dict[str, str]:
    attacker = Attacker(daemon.http_port, daemon.socket_port)
    server = AsgiServer(attacker.app, ATTACKER_HOST, 0)
    port = await server.start()
    try:
        async with chromium(f"http://{ATTACKER_HOST}:{port}/", tmp_path / "profile") as browser:
            exited = asyncio.ensure_future(browser.wait())
            waiting: list[asyncio.Future[Any]] = [attacker.report, exited]
            await asyncio.wait(waiting, timeout=REPORT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if not attacker.report.done():
                log = (tmp_path / "chromium.log").read_text(encoding="utf-8", errors="replace")[-3000:]
                pytest.fail(f"the page never reported (browser exited: {browser.returncode}); chromium log:\n{log}")
            return attacker.report.result()
    finally:
        await server.stop()


async def _ledger(backend_url: str) -> dict[str, Any]:
    base = backend_url.split("/ebuyweb-posp")[0]
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{base}/_sim/ledger")
    result: dict[str, Any] = reply.json()
    return result
