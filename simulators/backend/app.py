"""The e-Buy backend simulator as a Starlette app, and :class:`BackendSimulator` that serves it.

Routes:

* ``POST {prefix}/{action}``: the e-Buy envelope in, the e-Buy envelope out (simulators.backend.processor);
* ``GET /_sim/ledger``: the ledger as JSON (simulators.backend.ledger).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from misbridge.asgi import AsgiServer
from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import decode_body, encode_body
from simulators.backend.actions import SimContext
from simulators.backend.faults import Fault, FaultScript, ScriptedFault
from simulators.backend.ledger import Ledger
from simulators.backend.processor import Processor, SigningOptions
from simulators.cards import CARDS
from simulators.crypto import TEST_WORKING_KEY_HEX

#: The simulator's default signing key (a published test fixture, never a real key).
TEST_SIGNING_KEY = "misbridge-test-signing-key"
#: The path the book's Chinese qrcodeSale page shows: ``.../ebuyweb-posp/api/qrcodeSale``.
DEFAULT_PREFIX = "/ebuyweb-posp/api"
JSON_MEDIA_TYPE = "application/json"


class BackendSimulator:
    """An in-process e-Buy backend: signed envelopes, three actions, a ledger, scripted faults.

    Args:
        signing_key: key for verifying requests and signing replies; None turns signing off.
        include_body: sign the body too (must match the client's setting).
        truncate: keep only the first N hex characters of signatures (0 = all).
        prefix: URL path before ``/{action}``.
        working_key_hex: the 3DES working key the "pad" encrypted cardInfo with.
        clock: source of local time for transDate (tests may fix it).

    Attributes:
        app: the Starlette application (usable in-process with ``httpx.ASGITransport``).
        ledger: balances and per-traceNo records.
        faults: reply faults to inject (see simulators.backend.faults).
    """

    def __init__(
        self,
        *,
        signing_key: str | None = TEST_SIGNING_KEY,
        include_body: bool = True,
        truncate: int = 0,
        prefix: str = DEFAULT_PREFIX,
        working_key_hex: str = TEST_WORKING_KEY_HEX,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.ledger = Ledger(CARDS)
        self.faults = FaultScript()
        ctx = SimContext(self.ledger, CARDS, bytes.fromhex(working_key_hex), clock)
        self.processor = Processor(ctx, SigningOptions(signing_key, include_body, truncate))
        self.app = Starlette(
            routes=[
                Route(f"{self.prefix}/{{action}}", self._action_endpoint, methods=["POST"]),
                Route("/_sim/ledger", self._ledger_endpoint, methods=["GET"]),
            ]
        )
        self._server: AsgiServer | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The base URL while started (``http://127.0.0.1:43121/ebuyweb-posp/api``), else ""."""
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = a free port) and return the base URL for BackendSettings.url.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError("BackendSimulator already started")
        self._server = AsgiServer(self.app, host, port, graceful_shutdown_s=1)
        bound = await self._server.start()
        shown_host = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown_host}:{bound}{self.prefix}"
        return self._url

    async def stop(self) -> None:
        """Stop serving (held replies get up to 1 s, then are cancelled). Safe to call twice."""
        server, self._server = self._server, None
        self._url = ""
        if server is not None:
            await server.stop()

    async def _action_endpoint(self, request: Request) -> Response:
        action = str(request.path_params["action"])
        reply = self.processor.handle(action, await request.body())
        scripted = self.faults.take(action)
        if scripted is None:
            return _json(reply)
        return await self._faulty(reply, scripted)

    async def _ledger_endpoint(self, request: Request) -> Response:
        return _json(self.ledger.snapshot())

    async def _faulty(self, reply: dict[str, Any], scripted: ScriptedFault) -> Response:
        fault = scripted.fault
        if fault is Fault.DELAY:
            await asyncio.sleep(scripted.delay_s)
        elif fault is Fault.HTTP_500:
            return Response(b'{"error":"internal server error"}', status_code=500, media_type=JSON_MEDIA_TYPE)
        elif fault is Fault.NOT_JSON:
            return Response(b"<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        elif fault is Fault.BAD_SIGN:
            reply[signing.SIGN_FIELD] = "0" * len(str(reply.get(signing.SIGN_FIELD, "0" * 32)))
        elif fault is Fault.NO_SIGN:
            reply.pop(signing.SIGN_FIELD, None)
        elif fault is Fault.WRONG_TRACE:
            body = decode_body(reply["body"])
            body["traceNo"] = f"{body.get('traceNo', '')}X"
            reply["body"] = encode_body(body)
            self.processor.sign_envelope(reply)
        return _json(reply)


def _json(value: Any) -> Response:
    return Response(jsonio.dumps(value).encode("utf-8"), media_type=JSON_MEDIA_TYPE)
