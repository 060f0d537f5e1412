"""The e-Buy backend simulator as a Starlette app, and :class:`BackendSimulator` that serves it.

Routes (docs/backend.md, "The backend simulator"):

* ``POST {prefix}/{action}``: the e-Buy envelope in, the e-Buy envelope out (simulators.backend.processor),
  unless a scripted fault says otherwise (simulators.backend.faults);
* ``GET /_sim/ledger``: the whole ledger as JSON; ``GET /_sim/ledger/{traceNo}``: one record (404
  if never seen) (simulators.backend.ledger);
* ``GET | POST | DELETE /_sim/faults``: list, append to, clear the fault script;
* ``GET | POST /_sim/clock``: the simulator's time, and moving it (simulators.backend.clock);
* ``GET | POST | DELETE /_sim/disagree``: list, tell, forget what batchUpload should answer
  against the ledger (simulators.backend.disagree).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import decode_body, encode_body
from misbridge.host.asgi import AsgiServer
from simulators.backend.actions import SimContext
from simulators.backend.clock import SimClock, parse_clock_request
from simulators.backend.disagree import Disagreements, parse_disagree_request
from simulators.backend.drop import ConnectionKeeper, DropConnection
from simulators.backend.faults import Fault, FaultAction, FaultScript, ScriptedFault, parse_fault_requests
from simulators.backend.keydesk import KeyDesk
from simulators.backend.ledger import Ledger
from simulators.backend.processor import Intake, Processor, SigningOptions
from simulators.cards import CARDS

#: The simulator's default signing key (a published test fixture, never a real key).
TEST_SIGNING_KEY = "misbridge-test-signing-key"
#: The path the book's Chinese qrcodeSale page shows: ``.../ebuyweb-posp/api/qrcodeSale``.
DEFAULT_PREFIX = "/ebuyweb-posp/api"
JSON_MEDIA_TYPE = "application/json"
#: What ``non-json-after-commit`` answers: a proxy's error page.
HTML_ERROR_PAGE = b"<html><body>502 Bad Gateway</body></html>"


class BackendSimulator:
    """An in-process e-Buy backend: signed envelopes, every action of the book, a ledger, scripted faults.

    Args:
        signing_key: key for verifying requests and signing replies; None turns signing off.
        include_body: sign the body too (must match the client's setting).
        truncate: keep only the first N hex characters of signatures (0 = all).
        prefix: URL path before ``/{action}``.
        keys: the simulated HSM (rootKey, mwTmk, per-day working keys, who signed in when):
            simulators.backend.keydesk.
        clock: source of local time for transDate and the key of the day (tests may fix it);
            ``POST /_sim/clock`` moves it by an offset (:attr:`clock`).
        ledger_file: keep the ledger in this JSON file (read at start if present, rewritten
            atomically after every change); None keeps it in memory.

    Attributes:
        app: the ASGI application (usable in-process with ``httpx.ASGITransport``).
        ledger: balances and per-traceNo records.
        faults: the fault script (see simulators.backend.faults).
        clock: the simulator's time: ``clock`` plus the offset a test set.
        disagreements: what batchUpload answers against the ledger, as a test told it
            (``POST /_sim/disagree``; simulators.backend.disagree).

    Raises:
        OSError: the ledger file exists but cannot be read.
        ValueError: the ledger file is not a simulator ledger.
    """

    def __init__(
        self,
        *,
        signing_key: str | None = TEST_SIGNING_KEY,
        include_body: bool = True,
        truncate: int = 0,
        prefix: str = DEFAULT_PREFIX,
        keys: KeyDesk | None = None,
        clock: Callable[[], datetime] = datetime.now,
        ledger_file: Path | None = None,
    ) -> None:
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.ledger = Ledger.open(CARDS, ledger_file) if ledger_file is not None else Ledger(CARDS)
        self.faults = FaultScript()
        self.keys = keys if keys is not None else KeyDesk()
        self.clock = SimClock(clock)
        self.disagreements = Disagreements()
        ctx = SimContext(self.ledger, CARDS, self.keys, self.clock, disagreements=self.disagreements)
        self.processor = Processor(ctx, SigningOptions(signing_key, include_body, truncate))
        self.app = ConnectionKeeper(
            Starlette(
                routes=[
                    Route("/_sim/ledger", self._ledger_endpoint, methods=["GET"]),
                    Route("/_sim/ledger/{trace_no}", self._ledger_entry_endpoint, methods=["GET"]),
                    Route("/_sim/faults", self._faults_endpoint, methods=["GET", "POST", "DELETE"]),
                    Route("/_sim/clock", self._clock_endpoint, methods=["GET", "POST"]),
                    Route("/_sim/disagree", self._disagree_endpoint, methods=["GET", "POST", "DELETE"]),
                    Route(f"{self.prefix}/{{action}}", self._action_endpoint, methods=["POST"]),
                ]
            )
        )
        self._server: AsgiServer | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The base URL while started (``http://127.0.0.1:43121/ebuyweb-posp/api``), else ""."""
        return self._url

    @property
    def port(self) -> int:
        """The bound port while started, else 0."""
        return self._server.port if self._server is not None else 0

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, tls_cert: Path | None = None, tls_key: Path | None = None
    ) -> str:
        """Listen on ``host:port`` (0 = a free port) and return the base URL for BackendSettings.url.

        With ``tls_cert`` and ``tls_key`` (PEM) it serves https, as the e-Buy backend does in the
        field; the URL then starts with ``https://``.

        The socket has SO_REUSEADDR, so a simulator stopped a moment ago can be started again on
        the same port at once.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError("BackendSimulator already started")
        server = AsgiServer(self.app, host, port, graceful_shutdown_s=1, tls_cert=tls_cert, tls_key=tls_key)
        bound = await server.start()
        self._server = server
        shown_host = f"[{host}]" if ":" in host else host
        scheme = "http" if tls_cert is None else "https"
        self._url = f"{scheme}://{shown_host}:{bound}{self.prefix}"
        return self._url

    async def stop(self) -> None:
        """Stop serving (held replies get up to 1 s, then are cancelled). Safe to call twice.

        A request cancelled while it waited in ``delay-before-commit`` is left ``not_applied``.
        """
        server, self._server = self._server, None
        self._url = ""
        if server is not None:
            await server.stop()

    # --- e-Buy actions ------------------------------------------------------------------------

    async def _action_endpoint(self, request: Request) -> Response:
        path_action = str(request.path_params["action"])
        intake = self.processor.receive(path_action, await request.body())
        scripted = self.faults.take(
            FaultAction.of(path_action), (intake.trace_no, intake.original_trace_no), name=path_action
        )
        self.ledger.save()
        if scripted is None:
            return _json(self._commit(intake))
        return await self._faulty(intake, scripted)

    def _commit(self, intake: Intake) -> dict[str, Any]:
        reply = self.processor.commit(intake)
        self.ledger.save()
        return reply

    def _abandon(self, intake: Intake) -> None:
        self.processor.abandon(intake)
        self.ledger.save()

    async def _faulty(self, intake: Intake, scripted: ScriptedFault) -> Response:
        fault = scripted.fault
        if not fault.commits:
            return self._without_commit(intake, scripted)
        if fault is Fault.DELAY_BEFORE_COMMIT:
            try:
                await asyncio.sleep(scripted.delay_s)
            except asyncio.CancelledError:  # the simulator is stopping: nothing was applied
                self._abandon(intake)
                raise
        reply = self._commit(intake)
        if fault is Fault.DELAY_AFTER_COMMIT:
            await asyncio.sleep(scripted.delay_s)
        elif fault is Fault.DROP_AFTER_COMMIT:
            return DropConnection(reset=scripted.reset)
        elif fault is Fault.HTTP_500_AFTER_COMMIT:
            return _http_500()
        elif fault is Fault.NON_JSON_AFTER_COMMIT:
            return Response(HTML_ERROR_PAGE, media_type="text/html")
        elif fault is Fault.BAD_SIGN_AFTER_COMMIT:
            reply[signing.SIGN_FIELD] = "0" * len(str(reply.get(signing.SIGN_FIELD, "0" * 32)))
        elif fault is Fault.MISSING_SIGN_AFTER_COMMIT:
            reply.pop(signing.SIGN_FIELD, None)
        elif fault is Fault.WRONG_TRACE_AFTER_COMMIT:
            body = decode_body(reply["body"])
            body["traceNo"] = f"{body.get('traceNo', '')}X"
            reply["body"] = encode_body(body)
            self.processor.sign_envelope(reply)
        return _json(reply)

    def _without_commit(self, intake: Intake, scripted: ScriptedFault) -> Response:
        if scripted.fault is Fault.DECLINE:
            code = scripted.code or ""
            reply = self.processor.decline(intake, code, scripted.desc or f"declined ({code}, scripted fault)")
            self.ledger.save()
            return _json(reply)
        self._abandon(intake)
        if scripted.fault is Fault.DROP_BEFORE_COMMIT:
            return DropConnection(reset=scripted.reset)
        return _http_500()

    # --- test endpoints -----------------------------------------------------------------------

    async def _ledger_endpoint(self, request: Request) -> Response:
        return _json(self.ledger.snapshot())

    async def _ledger_entry_endpoint(self, request: Request) -> Response:
        trace_no = str(request.path_params["trace_no"])
        record = self.ledger.get(trace_no)
        if record is None:
            return _json({"error": f"traceNo {trace_no!r} was never seen"}, status_code=404)
        return _json(self.ledger.entry(record))

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            return _json({"cleared": self.faults.clear(), "pending": []})
        if request.method == "POST":
            try:
                requests = parse_fault_requests(await request.body())
            except ValidationError as err:
                return _json({"error": str(err)}, status_code=400)
            for fault_request in requests:
                self.faults.append(fault_request.scripted())
        return _json({"pending": self.faults.pending()})

    async def _clock_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.clock.offset = timedelta(seconds=parse_clock_request(await request.body()).offset_s)
            except ValidationError as err:
                return _json({"error": str(err)}, status_code=400)
        return _json(self.clock.view())

    async def _disagree_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            return _json({"cleared": self.disagreements.clear(), "told": []})
        if request.method == "POST":
            try:
                self.disagreements.tell(parse_disagree_request(await request.body()))
            except ValidationError as err:
                return _json({"error": str(err)}, status_code=400)
        return _json({"told": self.disagreements.listing()})


def _json(value: Any, *, status_code: int = 200) -> Response:
    return Response(jsonio.dumps(value).encode("utf-8"), status_code=status_code, media_type=JSON_MEDIA_TYPE)


def _http_500() -> Response:
    return Response(b'{"error":"internal server error"}', status_code=500, media_type=JSON_MEDIA_TYPE)
