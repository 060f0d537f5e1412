"""Logging setup: loguru, one line per event, structured extras, card data masked or removed.

Code never logs card data on purpose; the patcher here is the safety net (R16). Before a record
reaches any sink, in the message, in every bound extra field and in the text of an exception:

* any run of 13 to 19 digits that passes the Luhn check is rewritten to first 6 / last 4;
* track data is removed: track 2 (``PAN=YYMM...``) and track 1 (``%B PAN ^ NAME ^ ...``);
* the value of a card-data field is removed wherever it appears as ``name=value``,
  ``name: value`` or ``"name": "value"`` (``password``, ``track1``-``track3``, ``icData``,
  ``cardNo``, ``cardInfo``, ``pinBlock``, ``cvv``...), and a bound extra with such a name, or a
  dict/list extra holding one at any depth, has that value replaced by ``[redacted]``.

``diagnose`` and ``backtrace`` are off on every sink: loguru's variable dumps in tracebacks
could print card data. Exceptions are formatted here (plain traceback, masked) rather than by
loguru.

Two line formats:

* a terminal or file: ``2026-01-02 03:04:05.678 INFO    misbridge.core.service: message traceNo=... state=...``
* the systemd journal (``$JOURNAL_STREAM`` names our stderr): ``<6>misbridge.core.service: message
  traceNo=...`` -- journald reads the ``<N>`` syslog priority (``SyslogLevelPrefix=yes``, the
  default) and adds its own timestamp; newlines inside a record are written as ``\\n`` so every
  event stays one journal entry.

Only a terminal gets tracebacks and multi-line messages as several lines; a file, a pipe or the
journal gets one line per event.

What the edge of the daemon logs cannot flood the log (issue 10):

* a record bound with ``_rate=<key>`` (the doors bind ``(door, code, uid)``) is rate-limited per
  key: the first line in full, then at most one line per :data:`RATE_WINDOW_S` saying how many
  like it were left out (:class:`EdgeRateLimiter`);
* records of the standard ``logging`` module (uvicorn, asyncio, httpx...) are routed into loguru,
  through the same scrubber, rate-limited per (logger, message template);
* such edge records never carry the traceback of an expected socket error (a reset, a broken
  pipe, out of file descriptors): one line names the error instead;
* :func:`quiet_loop_exception_handler` replaces asyncio's handler, which writes a traceback for
  every failed ``accept()`` when descriptors run out.

Text that cannot be written as UTF-8 (a lone surrogate from a hostile request) is escaped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO

from loguru import logger

from misbridge.ebuy.redaction import REDACTED, SENSITIVE_FIELDS, scrub_text

if TYPE_CHECKING:
    from loguru import Record

__all__ = [
    "RATE_LIMIT_EXTRA", "RATE_WINDOW_S", "REDACTED", "SENSITIVE_FIELDS", "EdgeRateLimiter", "configure_logging",
    "journald_stderr", "quiet_loop_exception_handler", "scrub", "scrub_text",
]  # fmt: skip

#: syslog priorities journald understands in a ``<N>`` prefix (sd-daemon(3)).
_PRIORITY: Final = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
_NEEDS_QUOTES = re.compile(r"[\s\"'=]")
#: The extra that rate-limits a record (the doors bind ``_rate=(door, code, uid)``).
RATE_LIMIT_EXTRA: Final = "_rate"
#: At most one line per rate-limit key in this many seconds.
RATE_WINDOW_S: Final = 10.0
#: Keys the limiter remembers; the least recently logged is forgotten first.
_RATE_KEYS_MAX = 4096
#: Socket errors that are the peer's or the machine's doing at the edge, not a misbridge bug.
_EDGE_ERRNOS = frozenset({
    errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNRESET, errno.EPIPE,
    errno.ECONNABORTED, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
})  # fmt: skip
#: The errnos of an accept() that ran out of descriptors or memory (asyncio retries after 1 s).
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_INTERNAL = ("_fields", "_exc", "_exc1", "_prio", "_msg1", RATE_LIMIT_EXTRA, "_drop")
# loguru appends "\n{exception}" to a string format; the patcher has already moved the
# (masked) exception text into the extras, so that renders as nothing.
_TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {name}: {message}{extra[_fields]}{extra[_exc]}"
_ONE_LINE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {name}: {extra[_msg1]}{extra[_fields]}{extra[_exc1]}"
_JOURNAL_FORMAT = "<{extra[_prio]}>{name}: {extra[_msg1]}{extra[_fields]}{extra[_exc1]}"


class EdgeRateLimiter:
    """At most one line per key and window: the first in full, later ones as a count.

    Args:
        window_s: the shortest time between two lines of one key.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, window_s: float = RATE_WINDOW_S, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        # key -> [time of the last line written, lines left out since]
        self._state: OrderedDict[Hashable, list[float]] = OrderedDict()

    def admit(self, key: Hashable) -> int | None:
        """None: leave this line out. Else write it; the number is how many were left out before it."""
        now = self._clock()
        state = self._state.get(key)
        if state is not None and now - state[0] < self._window_s:
            state[1] += 1
            return None
        left_out = 0 if state is None else int(state[1])
        self._state[key] = [now, 0]
        self._state.move_to_end(key)
        if len(self._state) > _RATE_KEYS_MAX:
            self._state.popitem(last=False)
        return left_out


_limiter = EdgeRateLimiter()


def scrub(value: Any, *, key: str = "") -> Any:
    """A copy of ``value`` safe to log: card-data fields redacted at any depth, text scrubbed."""
    if key and key.lower() in SENSITIVE_FIELDS:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: scrub(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(item) for item in value]
    if isinstance(value, bool | float) or value is None:
        return value
    return scrub_text(str(value))


def _encodable(text: str) -> str:
    """``text`` with anything UTF-8 cannot hold (lone surrogates) written as escapes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _field(key: str, value: Any) -> str:
    text = _encodable(str(value))
    if not text or _NEEDS_QUOTES.search(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return f" {key}={text}"


def is_edge_os_error(exc: BaseException | None) -> bool:
    """True for a socket error caused by the peer or the machine (reset, broken pipe, no descriptors)."""
    return isinstance(exc, ConnectionError) or (isinstance(exc, OSError) and exc.errno in _EDGE_ERRNOS)


def _rate_limited_out(record: Record) -> bool:
    """Apply the rate limit of a record bound with ``_rate``; True when it is to be left out."""
    extra: dict[str, Any] = record["extra"]
    key = extra.get(RATE_LIMIT_EXTRA)
    if not key:
        return False
    left_out = _limiter.admit(key)
    if left_out is None:
        extra["_drop"] = True
        return True
    if left_out:
        record["message"] += f" [{left_out} more like this in the last {RATE_WINDOW_S:g}+ s left out]"
    exc = record["exception"]
    if exc is not None and is_edge_os_error(exc.value):
        # An expected edge error: its name and text, never its traceback.
        record["message"] += f" ({type(exc.value).__name__}: {exc.value})"
        record["exception"] = None
    return False


def _patch(record: Record) -> None:
    if _rate_limited_out(record):
        return
    record["message"] = scrub_text(_encodable(record["message"]))
    extra: dict[str, Any] = record["extra"]
    fields = {key: scrub(value, key=key) for key, value in extra.items() if key not in _INTERNAL}
    extra.update(fields)
    extra["_fields"] = "".join(_field(key, value) for key, value in fields.items())
    extra["_prio"] = _PRIORITY.get(record["level"].name, 6)
    extra["_msg1"] = _one_line(record["message"])
    extra["_exc"] = extra["_exc1"] = ""
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        text = scrub_text(_encodable("".join(traceback.format_exception(exc.type, exc.value, exc.traceback))))
        extra["_exc"] = "\n" + text.rstrip("\n")
        extra["_exc1"] = _one_line(extra["_exc"])
        record["exception"] = None  # loguru must not print the unmasked original


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def journald_stderr() -> bool:
    """True when stderr is connected to the systemd journal (``$JOURNAL_STREAM`` is its dev:inode)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        stat = os.fstat(sys.stderr.fileno())
        return bool(value) and (int(device), int(inode)) == (stat.st_dev, stat.st_ino)
    except (OSError, ValueError, AttributeError):
        return False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _not_dropped(record: Record) -> bool:
    return not record["extra"].get("_drop")


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None, journald: bool | None = None) -> None:
    """Send logs to ``stream`` (stderr by default, which journald captures under systemd).

    Also routes the standard ``logging`` module's records (WARNING and up, or ``level`` if
    higher) into the same sink, and starts the edge rate limits afresh.

    Args:
        level: the lowest level written.
        stream: where to write; stderr by default.
        journald: use the journal format (``<N>`` priority prefix, no timestamp); by default
            when writing to stderr and stderr is the journal (:func:`journald_stderr`).
    """
    global _limiter
    _limiter = EdgeRateLimiter()
    logger.remove()
    logger.configure(patcher=_patch, extra={key: "" for key in _INTERNAL})
    target = stream or sys.stderr
    use_journal = journald if journald is not None else stream is None and journald_stderr()
    line_format = _JOURNAL_FORMAT if use_journal else _TEXT_FORMAT if _is_terminal(target) else _ONE_LINE_FORMAT
    logger.add(
        target,
        level=level,
        format=line_format,
        filter=_not_dropped,
        colorize=False,
        diagnose=False,
        backtrace=False,
    )
    _route_stdlib_logging(max(logging.WARNING, logger.level(level).no))


class _IntoLoguru(logging.Handler):
    """Hands each standard-library record to loguru: scrubbed, one line, rate-limited per template."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        exc_info = record.exc_info if record.exc_info and record.exc_info[0] is not None else None
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        key = ("logging", record.name, str(record.msg)[:120])

        def origin(loguru_record: Record) -> None:
            loguru_record["name"] = record.name
            loguru_record["function"] = record.funcName
            loguru_record["line"] = record.lineno

        logger.patch(origin).bind(**{RATE_LIMIT_EXTRA: key}).opt(exception=exc_info).log(level, message)


def _route_stdlib_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _IntoLoguru)]:
        root.removeHandler(handler)
    root.addHandler(_IntoLoguru())
    root.setLevel(level)


def quiet_loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's exception handler, without tracebacks for what the edge of a server expects.

    An ``accept()`` out of descriptors (asyncio stops accepting on that socket for 1 s by
    itself) and peer resets are one rate-limited line each; anything else is one error line
    with its scrubbed traceback, rate-limited per message.
    """
    exc = context.get("exception")
    message = str(context.get("message") or "unhandled exception in the event loop")
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
        logger.bind(**{RATE_LIMIT_EXTRA: ("loop", "out-of-resources")}).warning(
            "{} ({}): accepting paused for 1 s; the connection caps should prevent this", message,
            errno.errorcode.get(exc.errno or 0, "?"),
        )  # fmt: skip
        return
    if is_edge_os_error(exc):
        logger.bind(**{RATE_LIMIT_EXTRA: ("loop", message[:120])}).info("{} ({})", message, type(exc).__name__)
        return
    logger.bind(**{RATE_LIMIT_EXTRA: ("loop", message[:120])}).opt(exception=exc).error("event loop: {}", message)
