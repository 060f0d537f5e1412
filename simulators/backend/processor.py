"""Envelope in, envelope out: the simulator's checks before and around the action handlers.

A request goes through two steps, so that faults can come between them
(simulators.backend.faults) and an inquiry can see a sale that is still being processed:

:meth:`Processor.receive`, at once when the request arrives:

1. the envelope is JSON with string ``action``, ``deviceNo``, ``shopNo``, ``brand``, ``body``
   (else "30");
2. the body's ``traceNo`` (if the body decodes) is counted in the ledger, whatever follows;
3. the signature verifies (when the simulator has a key; else "63");
4. the body decodes and the path names the envelope's action (else "30");
5. the action is one the simulator implements (else "12"); the body has a ``traceNo`` (else "30");
6. the traceNo was never used before (else "94"; the original is not applied again);
7. the record is marked ``in_progress``: the traceNo is taken from now on, booked under the
   envelope's ``deviceNo`` (the terminal ``summary`` and ``batchUpload`` count it for).

:meth:`Processor.commit`, after any scripted delay: the action's handler decides (or the
rejection of steps 1-6 is answered).

Every reply is a well-formed envelope signed with the simulator's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import ENVELOPE_FIELDS, Envelope, decode_body, envelope_dict
from misbridge.errors import RequestError
from simulators.backend.actions import HANDLERS, SimContext, decline_body
from simulators.backend.book import DOWNLOAD_KEY
from simulators.backend.codes import SimCode
from simulators.backend.records import TraceRecord, TraceState


@dataclass(frozen=True)
class SigningOptions:
    """The simulator's side of misbridge.ebuy.signing; ``key`` None turns signing off."""

    key: str | None
    include_body: bool = True
    truncate: int = 0

    def sign(self, fields: Mapping[str, object]) -> str | None:
        """The signature for ``fields``, or None when signing is off."""
        if self.key is None:
            return None
        return signing.sign(fields, self.key, include_body=self.include_body, truncate=self.truncate)

    def verify(self, fields: Mapping[str, object]) -> bool:
        """True when signing is off or ``fields`` carry a valid ``sign``."""
        if self.key is None:
            return True
        return signing.verify(fields, self.key, include_body=self.include_body, truncate=self.truncate)


@dataclass
class Intake:
    """One received request, between :meth:`Processor.receive` and :meth:`Processor.commit`.

    Attributes:
        path_action: the action named by the URL.
        envelope: the parsed envelope, None when it was not a valid one.
        body: the decoded body, None when it did not decode.
        trace_no: the body's traceNo ("" when absent).
        record: the traceNo's ledger record (None without a traceNo).
        rejection: the reply body when refused before any handler (63, 30, 12, 94), else None.
    """

    path_action: str
    envelope: dict[str, Any] | None
    body: dict[str, Any] | None
    trace_no: str
    record: TraceRecord | None
    rejection: dict[str, Any] | None

    @property
    def accepted(self) -> bool:
        """True when it passed every check: its record went in progress, for a handler (or a decline fault)."""
        return self.rejection is None and self.record is not None

    @property
    def original_trace_no(self) -> str:
        """The body's originalTraceNo ("" when absent): what an inquiry or void is about."""
        value = self.body.get("originalTraceNo") if self.body is not None else None
        return value if isinstance(value, str) else ""


class Processor:
    """Turns one request (path action + raw bytes) into one reply envelope (a dict to serialise).

    Every step is synchronous on purpose: a step never awaits, so concurrent requests never
    interleave inside the ledger. Only the time between :meth:`receive` and :meth:`commit`
    may be long (a scripted delay); the record is ``in_progress`` meanwhile.
    """

    def __init__(self, ctx: SimContext, options: SigningOptions) -> None:
        self.ctx = ctx
        self.options = options
        # DownloadKey is signed with the rootKey (book §7.2), both ways; everything else with the shared key.
        self._root_options = SigningOptions(ctx.keys.root_key_hex, options.include_body, options.truncate)

    def options_for(self, action: str) -> SigningOptions:
        """The signing of ``action``: the rootKey for DownloadKey (when signing is on), else the shared key."""
        return self._root_options if action == DOWNLOAD_KEY and self.options.key is not None else self.options

    def handle(self, path_action: str, raw: bytes) -> dict[str, Any]:
        """Receive and decide one request at once; returns the signed reply envelope."""
        return self.commit(self.receive(path_action, raw))

    def receive(self, path_action: str, raw: bytes) -> Intake:
        """Parse and check a request, count it, and mark its record in progress if it is accepted."""
        envelope = _parse(raw)
        if envelope is None:
            detail = "envelope must be JSON with string action, deviceNo, shopNo, brand and body"
            return Intake(path_action, None, None, "", None, self._reject("", SimCode.FORMAT_ERROR, detail))
        body = _decode(envelope)
        trace_no = body.get("traceNo") if body is not None else None
        trace_no = trace_no if isinstance(trace_no, str) else ""
        record = self.ctx.ledger.count_submission(trace_no, envelope["action"]) if trace_no else None
        rejection = self._check(path_action, envelope, body, trace_no, record)
        intake = Intake(path_action, envelope, body, trace_no, record, rejection)
        if record is not None and not record.used and intake.original_trace_no:
            record.original_trace_no = intake.original_trace_no  # what a void or inquiry targets, even if faulted
        if rejection is None and record is not None:
            record.action, record.state = envelope["action"], TraceState.IN_PROGRESS
            record.device_no = envelope["deviceNo"]  # the terminal it is booked under (summary, batchUpload)
        return intake

    def commit(self, intake: Intake) -> dict[str, Any]:
        """Let the action's handler decide an accepted request (or answer its rejection)."""
        if intake.rejection is not None:
            return self.reply(intake, intake.rejection)
        record, envelope, body = intake.record, intake.envelope, intake.body
        if record is None or envelope is None or body is None or not record.in_progress:
            raise RuntimeError(f"traceNo {intake.trace_no!r} is not in progress: declined or abandoned already")
        self.ctx.terminal = envelope["deviceNo"]  # the handler runs at once and never awaits
        return self.reply(intake, HANDLERS[envelope["action"]](self.ctx, record, body))

    def abandon(self, intake: Intake) -> None:
        """Give an accepted request up without deciding it: its record is ``not_applied`` again."""
        if intake.accepted and intake.record is not None and intake.record.in_progress:
            intake.record.state = TraceState.NOT_APPLIED

    def decline(self, intake: Intake, code: str, desc: str) -> dict[str, Any]:
        """Answer ``code`` without running the handler; an accepted request is recorded as declined."""
        reply_body = decline_body(intake.trace_no, self.ctx.trans_date(), code, desc)
        if intake.accepted and intake.record is not None and intake.record.in_progress:
            intake.record.state, intake.record.response = TraceState.DECLINED, reply_body
        return self.reply(intake, reply_body)

    def reply(self, intake: Intake, reply_body: dict[str, Any]) -> dict[str, Any]:
        """The signed reply envelope carrying ``reply_body``, echoing the request's envelope fields."""
        envelope = intake.envelope
        if envelope is None:
            return self._reply(Envelope(intake.path_action, "", "", "", reply_body))
        return self._reply(
            Envelope(envelope["action"], envelope["deviceNo"], envelope["shopNo"], envelope["brand"], reply_body)
        )

    def sign_envelope(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Add (or replace) ``sign`` on a reply envelope, when signing is on."""
        fields.pop(signing.SIGN_FIELD, None)
        signature = self.options_for(str(fields.get("action", ""))).sign(fields)
        if signature is not None:
            fields[signing.SIGN_FIELD] = signature
        return fields

    def _check(
        self,
        path_action: str,
        envelope: Mapping[str, Any],
        body: dict[str, Any] | None,
        trace_no: str,
        record: TraceRecord | None,
    ) -> dict[str, Any] | None:
        action = envelope["action"]
        if not self.options_for(action).verify(envelope):
            return self._reject(trace_no, SimCode.BAD_SIGNATURE, "")
        if body is None:
            return self._reject(trace_no, SimCode.FORMAT_ERROR, "body is not Base64 of UTF-8 JSON")
        if action != path_action:
            return self._reject(trace_no, SimCode.FORMAT_ERROR, f"path action {path_action!r} != envelope action")
        if action not in HANDLERS:
            return self._reject(trace_no, SimCode.UNSUPPORTED_ACTION, "")
        if record is None:
            return self._reject(trace_no, SimCode.FORMAT_ERROR, "traceNo is required")
        if record.used:
            return self._reject(trace_no, SimCode.DUPLICATE_TRACE_NO, "")
        return None

    def _reject(self, trace_no: str, code: SimCode, detail: str) -> dict[str, Any]:
        desc = _REJECT_DESC[code] + (f": {detail}" if detail else "")
        return decline_body(trace_no, self.ctx.trans_date(), code, desc)

    def _reply(self, envelope: Envelope) -> dict[str, Any]:
        return self.sign_envelope(envelope_dict(envelope))


_REJECT_DESC = {
    SimCode.FORMAT_ERROR: "format error",
    SimCode.BAD_SIGNATURE: "signature verification failed",
    SimCode.UNSUPPORTED_ACTION: "unsupported action",
    SimCode.DUPLICATE_TRACE_NO: "duplicate traceNo",
}


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = jsonio.loads(raw)
    except (jsonio.JSONDecodeError, UnicodeError):
        return None
    if not isinstance(value, dict) or not all(isinstance(value.get(name), str) for name in ENVELOPE_FIELDS):
        return None
    return value


def _decode(envelope: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return decode_body(envelope["body"])
    except RequestError:
        return None
