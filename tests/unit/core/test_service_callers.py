"""TransactionService and the callers it cannot see (issue 10, items 2 and 6).

* A POS that hung up (``caller_gone`` set) before its customer was prompted does not see its sale
  run later: the sale ends journaled with MB29 and the pad is never prompted, also when the POS
  goes while the sale waits for due voids (``drain_before_sale``). Once the customer has been
  prompted the sale runs to its end as before.
* ``/health`` (no token) and MB25 show counts, never the running traceNo.

Runs on a real bench: both simulators as subprocesses, the daemon in-process, a real journal file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from misbridge.app.simulated import daemon_for, launched_simulators
from misbridge.ebuy import jsonio
from misbridge.journal.records import TransactionRecord
from simulators.cards import CARDS
from tests.integration.faultbench import Fault, FaultBench, fault_settings, fresh_trace_no, redemption_body
from tests.seeding import seed_transaction

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Long enough that a sale waiting for due voids is still waiting when the test hangs up.
DRAIN_BEFORE_SALE_S = 10.0
#: Each seeded void is held this long by the backend (below the bench's 0.4 s read timeout).
VOID_HOLD_S = 0.35
SEEDED_VOIDS = 8


class _Bench(FaultBench):
    """The fault bench with a long drain-before-sale budget."""

    async def start(self, backend_url: str | None = None) -> None:
        settings = fault_settings(self.sims, self.workdir, backend_url=backend_url)
        resolution = settings.resolution.model_copy(update={"drain_before_sale_s": DRAIN_BEFORE_SALE_S})
        settings = settings.model_copy(update={"resolution": resolution})
        daemon = daemon_for(settings)
        await daemon.start()
        self._daemon = daemon
        self._http = httpx.AsyncClient(base_url=f"http://{settings.api.host}:{daemon.http_port}", timeout=30)
        await self.wait_ready()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bench(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[_Bench]:
    workdir: Path = tmp_path_factory.mktemp("callers")
    async with launched_simulators(workdir, pinpad_args=("--timeout-cap", "0.3")) as sims:
        started = _Bench(sims, workdir)
        await started.start()
        try:
            yield started
        finally:
            await started.stop()


async def _customer(bench: FaultBench, card: str, *, hesitate_s: float = 0.0) -> None:
    order = {"card": card, "action": "pay", "hesitate_s": hesitate_s}
    reader, writer = await asyncio.open_unix_connection(str(bench.sims.control_path))
    try:
        writer.write(jsonio.dumps(order).encode() + b"\n")
        await writer.drain()
        assert jsonio.loads(await reader.readline()).get("ok")
    finally:
        writer.close()
        await writer.wait_closed()


def _book_mask(card: str) -> str:
    pan = CARDS[card].pan
    return pan[:6] + "****" + pan[-4:]


async def _assert_pad_not_prompted(bench: FaultBench, waiting_card: str) -> None:
    """The customer scripted before is still waiting: the next sale gets that card."""
    answer = await bench.send("cardRedemption", redemption_body())
    assert answer["returnCode"] == "00", answer
    assert answer["printDetail"]["cardNo64"] == _book_mask(waiting_card), "the pad was prompted"


def _events(view: dict[str, Any]) -> list[str]:
    return [str(t["event"]) for t in view["transitions"]]


async def _assert_ended_pos_gone(bench: FaultBench, trace_no: str, answer: dict[str, Any]) -> None:
    assert answer["returnCode"] == "MB29", answer
    assert answer["traceNo"] == trace_no
    view = await bench.view(trace_no)
    assert view is not None, "the MB29 is journaled"
    assert (view["state"], view["returnCode"], view["response"]) == ("aborted", "MB29", answer)
    assert "start_card" not in _events(view), _events(view)
    assert await bench.backend.entry(trace_no) is None, "the sale reached the backend"


# --- item 2: a POS that gave up -------------------------------------------------------------------


async def test_a_sale_whose_pos_is_already_gone_ends_with_mb29_and_prompts_nobody(bench: _Bench) -> None:
    await _customer(bench, "prepaid")
    body = redemption_body()
    gone = asyncio.Event()
    gone.set()
    answer = await bench.daemon.service.handle("cardRedemption", body, caller_gone=gone)
    await _assert_ended_pos_gone(bench, body["traceNo"], answer)
    repeat = await bench.send("cardRedemption", body)
    assert repeat == answer, "a later repeat gets the journaled MB29, the sale does not run"
    await _assert_pad_not_prompted(bench, "prepaid")


async def _seed_due_voids(bench: FaultBench, count: int) -> list[str]:
    """``count`` transactions whose void is due now; the backend holds each void VOID_HOLD_S."""
    journal = bench.daemon.service.journal
    originals = []
    for _ in range(count):
        trace_no = fresh_trace_no()
        await bench.backend.add_faults([Fault("void", "delay-before-commit", delay_s=VOID_HOLD_S)], trace_no)
        record = TransactionRecord.new(trace_no, "cardRedemption", "unknown", redemption_body(trace_no))
        await seed_transaction(journal, record)
        await journal.enqueue_reversal(trace_no, from_state="unknown", event="give_up", detail="seeded")
        originals.append(trace_no)
    return originals


async def _void_in_flight(bench: FaultBench, originals: list[str]) -> None:
    journal = bench.daemon.service.journal
    async with asyncio.timeout(5):
        while True:
            for trace_no in originals:
                if any(c.kind == "void" and c.state == "sent" for c in await journal.calls(trace_no)):
                    return
            await asyncio.sleep(0.01)


async def test_a_pos_that_hangs_up_while_the_sale_waits_for_voids_is_not_kept_waiting(bench: _Bench) -> None:
    """The sale waits for due voids (up to 10 s here); the POS hangs up: MB29 at once, pad untouched."""
    await bench.backend.clear_faults()
    await _customer(bench, "member")
    originals = await _seed_due_voids(bench, SEEDED_VOIDS)
    body = redemption_body()
    gone = asyncio.Event()
    sale = asyncio.create_task(bench.daemon.service.handle("cardRedemption", body, caller_gone=gone))
    await _void_in_flight(bench, originals)
    assert not sale.done(), "the sale did not wait for the due voids"
    loop = asyncio.get_running_loop()
    hung_up_at = loop.time()
    gone.set()
    answer = await asyncio.wait_for(sale, DRAIN_BEFORE_SALE_S)
    waited = loop.time() - hung_up_at
    # The voids alone take SEEDED_VOIDS x 0.35 s = 2.8 s; the answer must not wait for them.
    assert waited < SEEDED_VOIDS * VOID_HOLD_S / 2, f"the sale waited {waited:.2f} s after the POS hung up"
    await _assert_ended_pos_gone(bench, body["traceNo"], answer)

    async with asyncio.timeout(15):  # the voids were not cut short: every one completes
        while await bench.daemon.service.journal.pending_reversals():  # noqa: ASYNC110 - polling another process's work
            await asyncio.sleep(0.05)
    for trace_no in originals:
        assert (await bench.view(trace_no) or {})["state"] == "voided"
    await _assert_pad_not_prompted(bench, "member")


async def test_a_repeat_that_is_still_there_keeps_the_sale_going(bench: _Bench) -> None:
    """The first connection hangs up but the same request is waiting on another: the sale runs."""
    await bench.backend.clear_faults()
    await _customer(bench, "privilege", hesitate_s=0.5)
    body = redemption_body()
    first_gone, repeat_gone = asyncio.Event(), asyncio.Event()
    service = bench.daemon.service
    first = asyncio.create_task(service.handle("cardRedemption", body, caller_gone=first_gone))
    await asyncio.sleep(0)
    repeat = asyncio.create_task(service.handle("cardRedemption", body, caller_gone=repeat_gone))
    await asyncio.sleep(0)
    first_gone.set()
    answers = await asyncio.gather(first, repeat)
    assert [a["returnCode"] for a in answers] == ["00", "00"], answers


async def test_once_the_customer_is_prompted_the_sale_runs_to_its_end(bench: _Bench) -> None:
    """Money safety: a POS hanging up after the prompt does not stop a sale that may move money."""
    await bench.backend.clear_faults()
    await _customer(bench, "privilege-cash", hesitate_s=0.5)
    body = redemption_body()
    gone = asyncio.Event()
    sale = asyncio.create_task(bench.daemon.service.handle("cardRedemption", body, caller_gone=gone))
    async with asyncio.timeout(5):
        while "start_card" not in _events(await bench.view(body["traceNo"]) or {"transitions": []}):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    gone.set()
    answer = await sale
    assert answer["returnCode"] == "00", answer
    view = await bench.view(body["traceNo"])
    assert view is not None
    assert view["state"] == "approved"


# --- item 6: counts, not traceNos, for anyone ------------------------------------------------------


async def test_health_and_mb25_show_a_count_never_the_running_trace_no(bench: _Bench) -> None:
    await bench.backend.clear_faults()
    await _customer(bench, "points", hesitate_s=1.5)
    running = redemption_body()
    trace_no = running["traceNo"]
    sale = asyncio.create_task(bench.send("cardRedemption", running, "http"))
    async with asyncio.timeout(5):
        while await bench.view(trace_no) is None:  # noqa: ASYNC110 - polling the HTTP door
            await asyncio.sleep(0.01)

    health = await bench.http.get("/health")  # no token needed: anyone can read it
    busy = await bench.send("cardRedemption", redemption_body(), "socket")
    assert not sale.done(), "the sale ended before the checks ran"
    assert health.json()["inFlight"] == 1
    assert trace_no not in health.text
    assert busy["returnCode"] == "MB25", busy
    assert trace_no not in jsonio.dumps(busy)
    assert (await sale)["returnCode"] == "00"
    assert (await bench.http.get("/health")).json()["inFlight"] == 0
