"""A stop (SIGTERM, ``systemctl restart``, a package upgrade) never cuts a sale in flight.

The daemon is stopped while the simulated customer is still typing the PIN: the sale must end
approved *and its answer must reach the POS* on the connection that asked, before the doors
close. An idle kept-alive connection is closed at once, and a message that starts arriving
while the daemon stops gets an answer with a return code, never a silent close.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from misbridge.api.pos_client import envelope_for, read_framed, socket_request
from misbridge.app.simulated import simulated_daemon
from misbridge.ebuy.envelope import encode_envelope, frame_message, parse_envelope
from misbridge.ebuy.examples import card_redemption_request
from misbridge.journal.store import Journal
from tests.integration.conftest import new_trace_no

#: The simulated customer takes this long over the PIN: the stop lands inside it.
PIN_DELAY_S = 1.5


def _sale(trace_no: str) -> dict[str, Any]:
    body = card_redemption_request()
    body["traceNo"] = trace_no
    return body


async def test_a_sale_in_flight_is_answered_before_the_doors_close(tmp_path: Path) -> None:
    async with simulated_daemon(tmp_path, pinpad_args=("--pin-delay", str(PIN_DELAY_S))) as running:
        host, port = running.settings.api.host, running.daemon.socket_port
        idle_reader, idle_writer = await asyncio.open_connection(host, port)
        trace_no = new_trace_no()
        sale = asyncio.create_task(socket_request(host, port, envelope_for("cardRedemption", _sale(trace_no))))
        await asyncio.sleep(PIN_DELAY_S / 3)  # the card is read, the customer is at the PIN
        stopping = asyncio.create_task(running.daemon.stop())
        # The idle connection is closed at once, long before the sale ends.
        assert await asyncio.wait_for(idle_reader.read(1), PIN_DELAY_S) == b""
        idle_writer.close()
        assert not sale.done()
        answer = await asyncio.wait_for(sale, 30)
        assert answer.body["returnCode"] == "00", answer.body
        assert answer.body["traceNo"] == trace_no
        await asyncio.wait_for(stopping, 30)
    async with await Journal.open(tmp_path / "journal.db") as journal:
        row = await journal.get(trace_no)
    assert row is not None
    assert row.state == "approved"


async def test_a_message_arriving_during_the_stop_gets_a_return_code(tmp_path: Path) -> None:
    async with simulated_daemon(tmp_path, pinpad_args=("--pin-delay", str(PIN_DELAY_S))) as running:
        host, port = running.settings.api.host, running.daemon.socket_port
        sale = asyncio.create_task(socket_request(host, port, envelope_for("cardRedemption", _sale(new_trace_no()))))
        late_reader, late_writer = await asyncio.open_connection(host, port)
        await asyncio.sleep(PIN_DELAY_S / 3)
        message = frame_message(encode_envelope(envelope_for("cardRedemption", _sale(new_trace_no()))))
        late_writer.write(message[:1])  # the message has begun when the stop comes
        await late_writer.drain()
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(running.daemon.stop())
        await asyncio.sleep(0.1)
        late_writer.write(message[1:])
        await late_writer.drain()
        refused = parse_envelope(await asyncio.wait_for(read_framed(late_reader), 30))
        assert refused.body["returnCode"] not in ("", "00"), refused.body
        late_writer.close()
        assert (await asyncio.wait_for(sale, 30)).body["returnCode"] == "00"
        await asyncio.wait_for(stopping, 30)
