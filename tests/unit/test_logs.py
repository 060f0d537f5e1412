"""The log masking safety net: no full card number reaches a sink."""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import re
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from misbridge.ebuy.carddata import is_card_data_field
from misbridge.ebuy.pan import luhn_valid, mask_card_numbers
from misbridge.ebuy.redaction import scrub_suspect
from misbridge.telemetry import logs
from misbridge.telemetry.logs import (
    RATE_WINDOW_S,
    REDACTED,
    SENSITIVE_FIELDS,
    EdgeRateLimiter,
    configure_logging,
    journald_stderr,
    quiet_loop_exception_handler,
    scrub_text,
)

CANARY_PAN = "4111111111111111"


def test_luhn() -> None:
    assert luhn_valid(CANARY_PAN)
    assert not luhn_valid("4111111111111112")


def test_mask_only_luhn_valid_runs() -> None:
    text = f"pan {CANARY_PAN} trace 99000009100010101732123 order 171698602301"
    masked = mask_card_numbers(text)
    assert CANARY_PAN not in masked
    assert "411111******1111" in masked
    assert "99000009100010101732123" in masked  # 23 digits: not a card number length
    assert "171698602301" in masked


def test_messages_and_extras_are_masked_before_any_sink() -> None:
    sink = io.StringIO()
    configure_logging("DEBUG", stream=sink)
    try:
        logger.bind(card=CANARY_PAN).info("card {} read", CANARY_PAN)
    finally:
        configure_logging("WARNING")
    output = sink.getvalue()
    assert CANARY_PAN not in output
    assert output.count("411111******1111") == 2


# --- track data, card-data fields, exceptions, journald format --------------------------------

TRACK2 = "6225620000018888=28121018888000"
TRACK1 = "%B6225620000018888^ZHANG/SAN^2812101000000000000000000?"
PIN_BLOCK = "1A2B3C4D5E6F7081"
ENC_PAN = "9F8E7D6C5B4A39281706F5E4D3C2B1A0"


def _capture(level: str = "DEBUG", *, journald: bool = False) -> io.StringIO:
    sink = io.StringIO()
    configure_logging(level, stream=sink, journald=journald)
    return sink


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    configure_logging("WARNING")


def _assert_clean(output: str) -> None:
    for secret in (CANARY_PAN, TRACK2, TRACK1, PIN_BLOCK, ENC_PAN, "28121018888000", "ZHANG/SAN"):
        assert secret not in output, f"{secret!r} leaked into: {output}"


@pytest.mark.parametrize(
    "field", ["password", "track1", "track2", "track3", "icData", "cardNo", "pinBlock", "cardInfo", "CARDNO"]
)
def test_card_data_fields_bound_as_extras_are_redacted(field: str) -> None:
    sink = _capture()
    logger.bind(**{field: PIN_BLOCK}).info("submitting")
    assert f" {field}={REDACTED}" in sink.getvalue()
    _assert_clean(sink.getvalue())


def test_nested_card_data_in_an_extra_is_redacted_at_any_depth() -> None:
    sink = _capture()
    body = {"traceNo": "T1", "cardInfo": {"cardNo": ENC_PAN, "password": PIN_BLOCK, "track2": ENC_PAN},
            "items": [{"track2": TRACK2, "note": f"card {CANARY_PAN}"}]}  # fmt: skip
    logger.bind(request=body, outbound={"cardNo": ENC_PAN, "password": PIN_BLOCK}).info("outbound")
    output = sink.getvalue()
    _assert_clean(output)
    assert "T1" in output
    assert "411111******1111" in output


@pytest.mark.parametrize(
    "message",
    [
        f"cardNo={ENC_PAN} password={PIN_BLOCK}",
        f'{{"cardNo": "{ENC_PAN}", "password": "{PIN_BLOCK}", "track2": "{ENC_PAN}"}}',
        f"{{'cardNo': '{ENC_PAN}', 'icData': '{ENC_PAN}'}}",
        f"track2: {TRACK2}",
        f"swiped {TRACK2} then {TRACK1}",
        f"cardInfo={{'password': '{PIN_BLOCK}'}}",
    ],
)
def test_card_data_in_the_message_text_is_removed(message: str) -> None:
    sink = _capture()
    logger.info("pad said {}", message)
    _assert_clean(sink.getvalue())
    assert REDACTED in sink.getvalue()


def test_ordinary_fields_are_left_alone() -> None:
    assert scrub_text("state=reading_pin pin_timeout_s=60 cardType=00 cardNo64=622562****8888") == (
        "state=reading_pin pin_timeout_s=60 cardType=00 cardNo64=622562****8888"
    )
    assert scrub_text("traceNo=20261123150102000000000001 orderNo=261123000001") == (
        "traceNo=20261123150102000000000001 orderNo=261123000001"
    )


def test_exceptions_are_masked_and_stay_without_variable_dumps() -> None:
    sink = _capture()
    secret_local = f"local {CANARY_PAN}"
    try:
        raise ValueError(f"bad card {CANARY_PAN} track {TRACK2}")
    except ValueError:
        logger.exception("failed")
    output = sink.getvalue()
    _assert_clean(output)
    assert secret_local not in output  # diagnose=False: no local variables
    assert "ValueError: bad card 411111******1111 track [redacted]" in output


def test_one_line_per_event_with_structured_fields() -> None:
    sink = _capture("INFO")
    logger.bind(traceNo="T9", state="approved", action="cardRedemption", duration_ms=1234, detail="two words").info(
        "transaction finished"
    )
    lines = sink.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        'transaction finished traceNo=T9 state=approved action=cardRedemption duration_ms=1234 detail="two words"'
    )
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO    tests\.unit\.test_logs: ", lines[0])


def test_journald_format_has_a_priority_prefix_no_colour_and_one_line_per_event() -> None:
    sink = _capture(journald=True)
    logger.bind(traceNo="T9").info("ready")
    logger.warning("two\nlines")
    logger.error("bad")
    logger.debug("detail")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("crashed")
    lines = sink.getvalue().splitlines()
    assert lines[0] == "<6>tests.unit.test_logs: ready traceNo=T9"
    assert lines[1] == "<4>tests.unit.test_logs: two\\nlines"
    assert lines[2] == "<3>tests.unit.test_logs: bad"
    assert lines[3] == "<7>tests.unit.test_logs: detail"
    assert lines[4].startswith("<3>tests.unit.test_logs: crashed\\nTraceback (most recent call last):")
    assert lines[4].endswith("RuntimeError: boom")
    assert len(lines) == 5
    assert "\x1b[" not in sink.getvalue()


def test_journal_stream_is_detected_only_when_it_names_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert not journald_stderr()
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert not journald_stderr()
    stat = os.fstat(sys.stderr.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    assert journald_stderr()
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    assert not journald_stderr()


def test_every_sink_has_diagnose_off() -> None:
    _capture()
    handlers = logger._core.handlers  # type: ignore[attr-defined]
    assert handlers
    assert all(not h._exception_formatter._diagnose for h in handlers.values())


def _ignorecase_twins(name: str) -> str:
    dotted_i = "\u0130" if len(name) % 2 else "\u0131"
    return name.replace("s", "\u017f").replace("i", dotted_i).replace("k", "\u212a")


# Pieces a log text is built from: digits (card numbers, tracks), separators the patterns look
# for, and the card-data field names in any case.
_PIECES = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=20),
    # the shortest forms: a 13-digit card number, a track 2 with a 12-digit PAN
    st.sampled_from(
        [
            CANARY_PAN,
            "4222222222222",
            "123456789012=2512",
            f"{CANARY_PAN}=2512101",
            f"%B{CANARY_PAN}^DOE/J^2512101?",
            "=",
            ": ",
            '"',
            "'",
            " ",
            ",",
            "{",
            "}",
            "^",
            "%B",
            "D",
        ]
    ),
    st.sampled_from(sorted(SENSITIVE_FIELDS)).map(lambda name: name.upper() if len(name) % 2 else name),
    # letters re.IGNORECASE matches to ASCII ones: "paſsword", "PİN" and "cardınfo" are field names to it
    st.sampled_from(sorted(SENSITIVE_FIELDS)).map(_ignorecase_twins),
    st.text(max_size=8),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_the_quick_pre_check_never_skips_what_the_full_scrub_would_change(text: str) -> None:
    assert scrub_text(text) == scrub_suspect(text)


@pytest.mark.parametrize("text", ["pa\u017fsword=1234", "P\u0130N=1234", "card\u0131nfo: x", "\u212aey=1 pin=0000"])
def test_field_names_spelt_with_ignorecase_twins_are_still_scrubbed(text: str) -> None:
    assert REDACTED in scrub_text(text)


# --- the edge of the daemon cannot flood the log (issue 10, items 2, 3 and 5) ------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_writes_the_first_line_then_one_count_per_window() -> None:
    clock = _Clock()
    limiter = EdgeRateLimiter(10.0, clock=clock)
    assert limiter.admit(("socket", "MB74", 1000)) == 0
    assert [limiter.admit(("socket", "MB74", 1000)) for _ in range(50)] == [None] * 50
    assert limiter.admit(("socket", "MB74", 1001)) == 0  # another uid is another key
    clock.now += 10.0
    assert limiter.admit(("socket", "MB74", 1000)) == 50
    assert limiter.admit(("socket", "MB74", 1000)) is None


def test_lines_bound_with_a_rate_key_are_limited_and_summarised(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = _capture("INFO")
    clock = _Clock()
    monkeypatch.setattr(logs, "_limiter", EdgeRateLimiter(RATE_WINDOW_S, clock=clock))
    for _ in range(1000):
        logger.bind(_rate=("http", "MB76", 0)).warning("http door refused a connection")
    clock.now += RATE_WINDOW_S
    logger.bind(_rate=("http", "MB76", 0)).warning("http door refused a connection")
    lines = sink.getvalue().splitlines()
    assert len(lines) == 2
    assert "999 more like this" in lines[1]
    assert "_rate" not in sink.getvalue()


def test_stdlib_logging_goes_through_the_scrubber_as_one_line() -> None:
    sink = _capture("INFO")
    try:
        raise ValueError(f"request body had card {CANARY_PAN}")
    except ValueError:
        logging.getLogger("tests.stdlib.server").error("Exception in ASGI application\n", exc_info=True)
    output = sink.getvalue()
    assert CANARY_PAN not in output
    assert "411111******1111" in output
    assert len(output.splitlines()) == 1
    assert " tests.stdlib.server: Exception in ASGI application" in output


def test_stdlib_floods_are_rate_limited_per_template() -> None:
    sink = _capture("INFO")
    for port in range(500):
        logging.getLogger("tests.stdlib.server").warning("Invalid HTTP request received from %s.", port)
    assert len(sink.getvalue().splitlines()) == 1


def test_expected_socket_errors_at_the_edge_have_no_traceback() -> None:
    sink = _capture("INFO")
    try:
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    except ConnectionResetError:
        logging.getLogger("tests.stdlib.loop").error("Fatal read error on socket transport", exc_info=True)
    output = sink.getvalue()
    assert "Traceback" not in output
    assert "ConnectionResetError" in output
    assert len(output.splitlines()) == 1


def test_the_loop_handler_turns_an_accept_flood_out_of_descriptors_into_one_line() -> None:
    sink = _capture("INFO")
    loop = asyncio.new_event_loop()
    try:
        for _ in range(200):
            error = OSError(errno.EMFILE, "Too many open files")
            context = {"message": "socket.accept() out of system resource", "exception": error}
            quiet_loop_exception_handler(loop, context)
    finally:
        loop.close()
    lines = sink.getvalue().splitlines()
    assert len(lines) == 1
    assert "EMFILE" in lines[0]
    assert "Traceback" not in lines[0]


def test_an_unexpected_loop_error_is_one_scrubbed_line() -> None:
    sink = _capture("INFO")
    loop = asyncio.new_event_loop()
    try:
        try:
            raise RuntimeError(f"bug with {CANARY_PAN}")
        except RuntimeError as err:
            quiet_loop_exception_handler(loop, {"message": "Task exception was never retrieved", "exception": err})
    finally:
        loop.close()
    output = sink.getvalue()
    assert len(output.splitlines()) == 1
    assert CANARY_PAN not in output
    assert "RuntimeError" in output


def test_a_lone_surrogate_is_escaped_not_a_logging_error(capsys: pytest.CaptureFixture[str]) -> None:
    sink = _capture("INFO")
    logger.bind(action="\udfff").warning("unknown action {}", "\udfff")
    assert "\\udfff" in sink.getvalue()
    assert "Logging error" not in capsys.readouterr().err


def test_a_file_or_pipe_gets_tracebacks_on_one_line() -> None:
    sink = _capture("INFO")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("crashed")
    lines = sink.getvalue().splitlines()
    assert len(lines) == 1
    assert "crashed\\nTraceback (most recent call last):" in lines[0]


@pytest.mark.parametrize("name", ["cvc2", "expiry", "securityCode", "cardNumber", "enc_pan_hex"])
def test_every_name_a_request_is_refused_for_is_redacted_in_logs_too(name: str) -> None:
    # One list for both: before, cvc2/expiry/securityCode/cardNumber were refused but logged.
    assert is_card_data_field(name)
    assert logs.scrub({name: "4929"}) == {name: logs.REDACTED}
    assert "4929" not in logs.scrub_text(f"{name}=4929")


def test_the_doors_rate_limit_key_is_the_one_the_logs_limit_on() -> None:
    # misbridge.api.guard may not import misbridge.telemetry.logs, so it spells the key out itself.
    from misbridge.api import guard

    assert guard.RATE_LIMIT_EXTRA == logs.RATE_LIMIT_EXTRA
