"""Envelope in, envelope out: the simulator's checks before and around the action handlers.

Order of checks for one POST ``{prefix}/{action}``:

1. the envelope is JSON with string ``action``, ``deviceNo``, ``shopNo``, ``brand``, ``body``
   (else "30");
2. the body's ``traceNo`` (if the body decodes) is counted in the ledger, whatever follows;
3. the signature verifies (when the simulator has a key; else "63");
4. the body decodes and the path names the envelope's action (else "30");
5. the action is one the simulator implements (else "12"); the body has a ``traceNo`` (else "30");
6. the traceNo was never processed before (else "94"; the original is not applied again);
7. the action's handler decides.

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
from simulators.backend.codes import SimCode


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


class Processor:
    """Turns one request (path action + raw bytes) into one reply envelope (a dict to serialise).

    Synchronous on purpose: a request is decided without awaiting, so concurrent requests
    never interleave inside the ledger.
    """

    def __init__(self, ctx: SimContext, options: SigningOptions) -> None:
        self.ctx = ctx
        self.options = options

    def handle(self, path_action: str, raw: bytes) -> dict[str, Any]:
        """Decide one request and return the signed reply envelope."""
        envelope = _parse(raw)
        if envelope is None:
            detail = "envelope must be JSON with string action, deviceNo, shopNo, brand and body"
            return self._reply(Envelope(path_action, "", "", "", self._reject("", SimCode.FORMAT_ERROR, detail)))
        body = _decode(envelope)
        trace_no = body.get("traceNo") if body is not None else None
        trace_no = trace_no if isinstance(trace_no, str) else ""
        action = envelope["action"]
        reply_body = self._decide(path_action, envelope, body, trace_no)
        return self._reply(
            Envelope(action, envelope["deviceNo"], envelope["shopNo"], envelope["brand"], reply_body)
        )

    def sign_envelope(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Add (or replace) ``sign`` on a reply envelope, when signing is on."""
        fields.pop(signing.SIGN_FIELD, None)
        signature = self.options.sign(fields)
        if signature is not None:
            fields[signing.SIGN_FIELD] = signature
        return fields

    def _decide(
        self, path_action: str, envelope: Mapping[str, Any], body: dict[str, Any] | None, trace_no: str
    ) -> dict[str, Any]:
        action = envelope["action"]
        record = self.ctx.ledger.count_submission(trace_no, action) if trace_no else None
        if not self.options.verify(envelope):
            return self._reject(trace_no, SimCode.BAD_SIGNATURE, "")
        if body is None:
            return self._reject(trace_no, SimCode.FORMAT_ERROR, "body is not Base64 of UTF-8 JSON")
        if action != path_action:
            return self._reject(trace_no, SimCode.FORMAT_ERROR, f"path action {path_action!r} != envelope action")
        handler = HANDLERS.get(action)
        if handler is None:
            return self._reject(trace_no, SimCode.UNSUPPORTED_ACTION, "")
        if record is None:
            return self._reject(trace_no, SimCode.FORMAT_ERROR, "traceNo is required")
        if record.processed:
            return self._reject(trace_no, SimCode.DUPLICATE_TRACE_NO, "")
        record.action = action
        return handler(self.ctx, record, body)

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
