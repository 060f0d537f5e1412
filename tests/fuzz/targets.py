"""The three fuzz targets: bytes in, and nothing out but what each decoder documents.

Each check takes one fuzz input and drives a decoder the way misbridge's own code drives it.
It catches only the errors that decoder promises (its documented error family); anything else
escapes and is a finding, and so is a broken promise about the results (:class:`BrokenPromise`).

1. :func:`link_decoder`: the PIN-pad line. Arbitrary bytes, cut into arbitrary chunks that arrive
   at arbitrary times, go into a :class:`~misbridge.link.LinkSession` (with and without a frame of
   its own in flight) and a bare :class:`~misbridge.link.FrameDecoder`; every delivered payload,
   and the raw bytes themselves, go through :func:`~misbridge.link.decode_message` (the TLV and
   message layer). Allowed: link events and decoded items; ``MessageError`` from message decoding.
   Nothing at all may escape the session or the frame decoder (both promise never to raise on line
   data, and the device layer's read task does not catch there).
2. :func:`envelope_decoder`: the socket door. Arbitrary bytes are read as the door reads its stream
   (2-byte prefix, that many bytes, :func:`~misbridge.ebuy.envelope.parse_envelope`, next message
   unless the stream can no longer be trusted). Allowed: an Envelope or a ``RequestError``. The
   answer the door sends back (the envelope echoed, a refusal or stand-in approval as body) must go
   through :func:`~misbridge.ebuy.fitting.frame_reply` and fit the 2-byte prefix.
3. :func:`request_validation`: arbitrary JSON-ish bytes through :func:`misbridge.ebuy.jsonio.loads`
   (allowed: its decode errors), then :func:`~misbridge.ebuy.requests.parse_request` (allowed:
   a model or ``RequestError``). An accepted body must hash
   (:func:`~misbridge.journal.records.request_hash`); a refusal must encode as the HTTP door's
   JSON answer.

Targets 2 and 3 read a mode bit first: the rest of the input is either the bytes themselves or
choices that write JSON text with a structure (:mod:`tests.fuzz.jsonish`), so that the fuzzer gets
past the JSON parser into envelope and model validation.

Every check is deterministic: the same bytes give the same run (chunking and timing come from a
PRNG seeded by the input's own first bytes).
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from misbridge.ebuy import jsonio
from misbridge.ebuy.envelope import (
    ENVELOPE_FIELDS,
    LENGTH_PREFIX_LEN,
    MAX_MESSAGE_LEN,
    Envelope,
    frame_message,
    parse_envelope,
    read_length_prefix,
)
from misbridge.ebuy.fitting import frame_reply
from misbridge.ebuy.requests import BOOK_ACTIONS, REQUEST_MODELS, error_response, parse_request, trans_date
from misbridge.errors import MessageError, RequestError, ReturnCode
from misbridge.journal.records import request_hash
from misbridge.link import (
    ACK_TIMEOUT_S,
    INTER_BYTE_TIMEOUT_S,
    MAX_FRAME_LEN,
    MAX_RETRANSMITS,
    AckControl,
    BadFrame,
    DataFrame,
    Decoded,
    Discarded,
    DuplicateSuppressed,
    FrameDecoder,
    FrameRejected,
    GarbageDiscarded,
    LinkFailed,
    LinkSession,
    NakControl,
    PayloadAcked,
    PayloadReceived,
    Retransmitted,
    Role,
    StatusRequest,
    decode_message,
    encode_message,
)
from tests.fuzz import jsonish

__all__ = [
    "JSON_DECODE_ERRORS",
    "TARGETS",
    "BrokenPromise",
    "Target",
    "envelope_decoder",
    "link_decoder",
    "request_validation",
]


class BrokenPromise(Exception):
    """A decoder returned something its documentation rules out (a finding, like a stray exception)."""


#: What :func:`misbridge.ebuy.jsonio.loads` may raise on bad input and both doors turn into MB01:
#: simplejson's decode error, UTF-8 decoding of raw bytes, and misbridge's own refusal (the JSON
#: limits of issue 10 may raise RequestError from inside the parser).
JSON_DECODE_ERRORS: Final = (jsonio.JSONDecodeError, UnicodeDecodeError, RequestError)


# --- 1. the PIN-pad link -----------------------------------------------------------------------

#: The link input starts with this many bytes that choose chunking, timing and a frame in flight.
LINK_HEADER_LEN: Final = 2
_LINK_EVENTS: Final = (
    PayloadReceived, PayloadAcked, LinkFailed, FrameRejected, DuplicateSuppressed, Retransmitted, GarbageDiscarded,
)  # fmt: skip
_DECODED: Final = (DataFrame, AckControl, NakControl, BadFrame, Discarded)
# Gaps between chunks: back to back, within a frame, past the inter-byte and the ACK timeout.
_GAPS_S: Final = (0.0, 0.001, 0.01, INTER_BYTE_TIMEOUT_S, ACK_TIMEOUT_S + 0.001)
_OWN_FRAME: Final = encode_message(StatusRequest(1))


def link_decoder(data: bytes) -> None:
    """Feed ``data`` to a link session and a frame decoder; decode every payload they deliver."""
    header, line = data[:LINK_HEADER_LEN], data[LINK_HEADER_LEN:]
    plan = random.Random(int.from_bytes(header, "big"))
    _decode_payload(line)
    session = LinkSession(Role.HOST)
    decoder = FrameDecoder()
    now = 0.0
    if header and header[0] & 1:
        # With a frame in flight, ACK, NAK and the ACK timer all have something to act on.
        session.send(_OWN_FRAME, now)
    for chunk, gap in _chunks(line, plan):
        now = _run_timers(session, now + gap)
        session.receive_data(chunk, now)
        _check_decoded(decoder.feed(chunk, now), decoder)
        _check_events(session)
    for _ in range(MAX_RETRANSMITS + 2):
        deadline = session.next_deadline()
        if deadline is None:
            break
        session.handle_timeout(deadline)
        _check_events(session)
    _check_decoded(decoder.check_timeout(now + INTER_BYTE_TIMEOUT_S), decoder)
    if decoder.buffered:
        raise BrokenPromise(f"FrameDecoder still holds {decoder.buffered} bytes after its timeout")


def _chunks(line: bytes, plan: random.Random) -> Iterator[tuple[bytes, float]]:
    pos = 0
    while pos < len(line):
        size = plan.choice((1, 1, 2, 3, plan.randint(1, 64), len(line)))
        yield line[pos : pos + size], plan.choice(_GAPS_S)
        pos += size


def _run_timers(session: LinkSession, now: float) -> float:
    # As the device layer's loop timer does: every deadline before the next bytes fires first.
    for _ in range(MAX_RETRANSMITS + 2):
        deadline = session.next_deadline()
        if deadline is None or deadline > now:
            break
        session.handle_timeout(deadline)
        _check_events(session)
    return now


def _check_decoded(items: list[Decoded], decoder: FrameDecoder) -> None:
    for item in items:
        if not isinstance(item, _DECODED):
            raise BrokenPromise(f"FrameDecoder returned {type(item).__name__}")
    if decoder.buffered > MAX_FRAME_LEN:
        raise BrokenPromise(f"FrameDecoder holds {decoder.buffered} bytes > MAX_FRAME_LEN")


def _check_events(session: LinkSession) -> None:
    for event in session.events():
        if not isinstance(event, _LINK_EVENTS):
            raise BrokenPromise(f"LinkSession reported {type(event).__name__}")
        if isinstance(event, PayloadReceived):
            _decode_payload(event.payload)


def _decode_payload(payload: bytes) -> None:
    try:
        message = decode_message(payload)
    except MessageError:
        return
    try:
        encoded = encode_message(message)
    except MessageError:
        return  # documented: a message decoded from an over-long payload does not fit a frame
    if decode_message(encoded) != message:
        raise BrokenPromise(f"{type(message).__name__} does not survive encode_message/decode_message")


# --- 2. the socket door's envelope -------------------------------------------------------------

#: Refusals after which the door closes: the next message boundary is unknown.
_STREAM_BROKEN: Final = (ReturnCode.BAD_LENGTH_PREFIX, ReturnCode.NOT_JSON)
_DOOR_IDENTITY: Final = ("POS01", "CN123456", "663")


def envelope_decoder(data: bytes) -> None:
    """Read ``data`` as the socket door reads one connection, and frame every answer.

    The first byte is the mode: even, the rest is the byte stream as it is; odd, the rest are
    choices that write a few framed envelopes (see :func:`_written_stream`).
    """
    stream = _written_stream(jsonish.Choices(data[1:])) if data and data[0] & 1 else data[1:]
    pos = 0
    while len(stream) - pos >= LENGTH_PREFIX_LEN:
        expected = read_length_prefix(stream[pos : pos + LENGTH_PREFIX_LEN])
        payload = stream[pos + LENGTH_PREFIX_LEN : pos + LENGTH_PREFIX_LEN + expected]
        if len(payload) < expected:
            return  # the door answers MB02 from fixed text: nothing of the input is decoded
        pos += LENGTH_PREFIX_LEN + expected
        try:
            envelope = parse_envelope(payload)
        except RequestError as err:
            _frame_answer(Envelope("", *_DOOR_IDENTITY, error_response("", err, err.return_code)))
            if err.return_code in _STREAM_BROKEN:
                return
            continue
        _check_envelope(envelope)
        echo = (envelope.action, envelope.device_no, envelope.shop_no, envelope.brand)
        _frame_answer(Envelope(*echo, _service_answer(envelope.action, envelope.body)))


def _written_stream(choices: jsonish.Choices) -> bytes:
    """One to three envelopes written from ``choices``, each behind its true length prefix."""
    stream = b""
    for _ in range(1 + choices.below(3)):
        message = jsonish.render(_written_envelope(choices)).encode("ascii")[:MAX_MESSAGE_LEN]
        stream += frame_message(message)
    return stream


def _written_envelope(choices: jsonish.Choices) -> jsonish.Node:
    # Zeros write the book's envelope; other choices drop a field, or give it any value.
    fields: list[tuple[str, jsonish.Node]] = []
    for name, usual in zip(ENVELOPE_FIELDS, _USUAL_ENVELOPE, strict=True):
        kind = choices.below(8)
        if kind == _MISSING:
            continue
        if kind == _ANY_VALUE:
            fields.append((f'"{name}"', jsonish.write_value(choices, 1)))
        elif kind == _ANY_STRING and name != "body":
            fields.append((f'"{name}"', jsonish.write_string(choices)))
        else:
            fields.append((f'"{name}"', usual(choices)))
    if choices.below(4) == 1:
        fields.append(('"sign"', jsonish.write_string(choices)))
    if choices.below(8) == 1 and fields:
        fields.append(fields[choices.below(len(fields))])  # a key twice
    return fields


def _written_body(choices: jsonish.Choices) -> jsonish.Node:
    text = jsonish.render(jsonish.write_body(choices)).encode("ascii")
    return '"' + base64.b64encode(text).decode("ascii") + '"'


def _fixed(text: str) -> Callable[[jsonish.Choices], jsonish.Node]:
    return lambda _: text


def _written_action(choices: jsonish.Choices) -> jsonish.Node:
    return f'"{choices.pick((*_HANDLED, *BOOK_ACTIONS))}"'


_MISSING, _ANY_VALUE, _ANY_STRING = 5, 6, 7
_USUAL_ENVELOPE: Final = (_written_action, _fixed('"POS01"'), _fixed('"CN123456"'), _fixed('"663"'), _written_body)


def _check_envelope(envelope: Envelope) -> None:
    texts = (envelope.action, envelope.device_no, envelope.shop_no, envelope.brand)
    if not all(isinstance(text, str) for text in texts) or not isinstance(envelope.body, dict):
        raise BrokenPromise("parse_envelope returned an envelope with a field of the wrong type")


def _service_answer(action: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The body the service answers before any device or backend: a refusal or a stand-in approval."""
    trace_no = body.get("traceNo") if isinstance(body.get("traceNo"), str) else ""
    assert isinstance(trace_no, str)
    try:
        request = parse_request(action, body)
    except RequestError as err:
        return error_response(trace_no, err, err.return_code)
    return {
        "traceNo": request.traceNo,
        "orderNo": "",
        "transDate": trans_date(),
        "returnCode": "00",
        "returnDesc": "",
        "paidAmount": 0,
    }


def _frame_answer(reply: Envelope) -> None:
    framed = frame_reply(reply)
    announced = read_length_prefix(framed[:LENGTH_PREFIX_LEN])
    if announced != len(framed) - LENGTH_PREFIX_LEN or announced > MAX_MESSAGE_LEN:
        raise BrokenPromise(f"frame_reply announced {announced} bytes for {len(framed) - LENGTH_PREFIX_LEN}")


# --- 3. request validation ---------------------------------------------------------------------

_HANDLED: Final = tuple(REQUEST_MODELS)
#: First input byte below this picks a handled action, below the next a book action misbridge
#: does not handle; from there on the action is the input's first line (any text, any length).
_HANDLED_BELOW: Final = 128
_BOOK_BELOW: Final = 192


def request_validation(data: bytes) -> None:
    """Decode ``data`` as a request body and validate it; hash it if accepted."""
    action, text = _split_action(data)
    try:
        body = jsonio.loads(text)
    except JSON_DECODE_ERRORS:
        return
    if not isinstance(body, dict):
        return  # both doors refuse a body that is not an object before validation (MB01 / MB04)
    try:
        parse_request(action, body)
    except RequestError as err:
        trace_no = body.get("traceNo") if isinstance(body.get("traceNo"), str) else ""
        # The HTTP door's answer: the refusal must still reach the POS as JSON bytes.
        jsonio.dumps(error_response(str(trace_no), err, err.return_code)).encode("utf-8")
        return
    request_hash(body)


def _split_action(data: bytes) -> tuple[str, bytes]:
    """The action (picked by the first byte, or the first line) and the body's JSON bytes."""
    if not data:
        return _HANDLED[0], b""
    selector, rest = data[0], data[1:]
    if selector < _HANDLED_BELOW:
        action = _HANDLED[selector % len(_HANDLED)]
    elif selector < _BOOK_BELOW:
        action = BOOK_ACTIONS[selector % len(BOOK_ACTIONS)]
    else:
        raw_action, _, rest = rest.partition(b"\n")
        # As the HTTP door's path: any text, bad UTF-8 replaced.  (An action from the socket
        # door's JSON can hold lone surrogates: the envelope target writes those.)
        action = raw_action.decode("utf-8", errors="replace")
    return action, _json_bytes(rest)


def _json_bytes(data: bytes) -> bytes:
    """``data`` after its mode byte: as JSON bytes (even) or as choices that write JSON (odd)."""
    if not data or not data[0] & 1:
        return data[1:]
    return jsonish.render(jsonish.write_body(jsonish.Choices(data[1:]))).encode("ascii")


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One fuzz target: its check and the longest input worth generating for it."""

    name: str
    check: Callable[[bytes], None]
    max_len: int


TARGETS: Final[Mapping[str, Target]] = {
    target.name: target
    for target in (
        # A few frames' worth of line: longer inputs only repeat what shorter ones reach.
        Target("link", link_decoder, 4 * MAX_FRAME_LEN),
        # The book's largest message and its prefix, and a second prefix behind it.
        Target("envelope", envelope_decoder, LENGTH_PREFIX_LEN + MAX_MESSAGE_LEN + LENGTH_PREFIX_LEN),
        # The same 65 535 bytes on the HTTP door, plus the action selector.
        Target("request", request_validation, 1 + MAX_MESSAGE_LEN),
    )
}
