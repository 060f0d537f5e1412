"""The one exception tree of misbridge, and the return codes the POS sees.

Every error misbridge raises derives from :class:`MisbridgeError`.  Foreign errors
(``serial.SerialException``, ``httpx.*``, ``sqlite3.*``) are translated at the edge
that meets them and never travel further.  Each error carries the e-Buy style
``returnCode`` that the POS receives (see ``docs/return-codes.md``) and an HTTP
status hint for the HTTP front door.

Tree::

    MisbridgeError
    ├── ConfigError
    │   └── PortUnavailable          a door's port is held by another program, or not permitted
    ├── RequestError                 the POS sent something invalid (never prompts the customer)
    ├── LinkError                    PIN-pad wire protocol (misbridge.link)
    │   ├── FramingError
    │   ├── MessageError
    │   └── LinkFailedError          retransmits exhausted
    ├── DeviceError                  the PIN pad as a device
    │   ├── DeviceNotConnected
    │   │   └── PadInUse             another program holds the pad's port (most likely the service)
    │   ├── DeviceTimeout            (also TimeoutError)
    │   ├── CustomerCancelled
    │   ├── CardReadError
    │   ├── DeviceRejected
    │   └── DeviceBadReply           the pad answered something misbridge cannot use
    ├── BackendError                 the e-Buy backend
    │   ├── BackendNotSent           provably never reached the backend: safe to retry
    │   ├── BackendOutcomeUnknown    may have been processed: never re-submit
    │   └── KeyExchangeError         DownloadKey / sign-in refused, or its keys unusable
    ├── JournalError
    └── InvalidTransition
"""

from __future__ import annotations

from enum import Enum


class ReturnCode(Enum):
    """misbridge's own returnCodes (the book only defines "00" = success).

    The value is ``(code, http_status, meaning)``.  Codes start with ``MB`` so they can
    never collide with a backend's numeric codes.
    """

    NOT_JSON = ("MB01", 400, "request is not valid JSON, or breaks misbridge's JSON limits")
    BAD_LENGTH_PREFIX = ("MB02", 400, "length prefix does not match the bytes that followed")
    BAD_ENVELOPE = ("MB03", 400, "envelope field missing or of the wrong type")
    BAD_BODY_ENCODING = ("MB04", 400, "body is not Base64 of UTF-8 JSON")
    UNKNOWN_ACTION = ("MB05", 404, "unknown action")
    UNSUPPORTED_ACTION = ("MB06", 501, "e-Buy action that misbridge validates but does not carry out yet")
    REQUEST_TIMEOUT = ("MB07", 408, "the request did not arrive completely within the request deadline")
    REQUEST_TOO_LARGE = ("MB08", 413, "request larger than the book's 65 535-byte message")
    NO_SUCH_PATH = ("MB09", 404, "no such path on the HTTP door")
    MISSING_FIELD = ("MB10", 422, "mandatory field missing")
    BAD_FIELD = ("MB11", 422, "field has the wrong type or format")
    BAD_AMOUNT = ("MB12", 422, "amount is negative, not a number, has more than 2 decimals, or a total is 0")
    UNDISCOUNT_OVER_TOTAL = ("MB13", 422, "undiscountAmount is greater than totalAmount")
    EMPTY_GOODS = ("MB14", 422, "goodsDetail is empty")
    BAD_TRACE_NO = ("MB15", 422, "traceNo is empty, too long or has invalid characters")
    CARD_DATA_REFUSED = ("MB16", 422, "the POS sent card or PIN data; those come only from the PIN pad")
    BATCH_COUNT_MISMATCH = ("MB17", 422, "batchUpload transCount is not the number of transRecord entries")
    BATCH_WINDOW = ("MB18", 422, "batchUpload beginTime is after endTime, or the two are more than 7 days apart")
    UNKNOWN_LANE = ("MB19", 404, "no lane with this name or deviceNo; nothing was asked, no money moved")
    DEVICE_NOT_CONNECTED = ("MB20", 503, "PIN pad not connected")
    CARD_TIMEOUT = ("MB21", 408, "no card presented before the card timeout")
    PIN_TIMEOUT = ("MB22", 408, "no PIN entered before the PIN timeout")
    CUSTOMER_CANCELLED = ("MB23", 409, "customer cancelled on the PIN pad")
    CARD_READ_ERROR = ("MB24", 422, "the PIN pad could not read the card")
    DEVICE_BUSY = ("MB25", 409, "PIN pad busy with another transaction")
    DEVICE_ERROR = ("MB26", 502, "PIN pad reported an error")
    CARD_REMOVED = ("MB27", 409, "card removed before the transaction finished")
    INTERRUPTED = ("MB28", 503, "interrupted by a misbridge restart before anything was sent; no money moved")
    POS_GONE = ("MB29", 408, "the POS closed its connection before the customer was prompted; no money moved")
    BACKEND_NOT_SENT = ("MB30", 503, "e-Buy backend unreachable; nothing was sent, no money moved")
    BACKEND_UNKNOWN = ("MB31", 504, "e-Buy backend outcome unknown; misbridge is resolving it")
    VOIDED = ("MB32", 502, "outcome could not be confirmed, so misbridge voids it; the customer is not charged")
    NOT_PROCESSED = ("MB33", 502, "the backend has no record of the transaction; no money moved")
    NEEDS_MANUAL = ("MB34", 502, "the void was not confirmed within the expiry; reconcile by hand")
    CODE_TIMEOUT = ("MB35", 408, "no QR code scanned or keyed in before the code timeout")
    VOID_RESENDING = ("MB36", 504, "void outcome unknown; misbridge sends it again until the backend confirms it")
    CHOICE_TIMEOUT = ("MB37", 408, "no option chosen before the choice timeout; nothing moved")
    OPTION_NOT_OFFERED = ("MB38", 422, "activityProductNo is not one of the options offered")
    CARD_NOT_ORIGINAL = ("MB39", 409, "the card read is not the card the original sale was paid with; nothing sent")
    DEVICE_BAD_REPLY = ("MB40", 502, "the PIN pad answered something misbridge cannot use")
    TRACE_NO_CONFLICT = ("MB41", 409, "traceNo already used with a different request")
    TRACE_NO_BARRED = ("MB42", 409, "the backend already saw this traceNo in an inquiry; a sale with it would fail")
    UNKNOWN_ORIGINAL_REFUSED = ("MB43", 429, "too many inquiries about transactions misbridge does not know")
    TRANSACTION_NOT_FOUND = ("MB44", 404, "no transaction with this traceNo in the journal")
    ORIGINAL_VOIDED = ("MB45", 409, "the original is voided, or a void of it is under way")
    ORIGINAL_REFUNDED = ("MB46", 409, "the original was (partly) refunded, or a refund of it is under way; no void")
    REFUND_OVER_REST = ("MB47", 422, "refundAmount is more than what is left of the original")
    ORIGINAL_NOT_QR_SALE = ("MB48", 409, "the original in the journal is not an approved QR code sale")
    ORIGINAL_NOT_CARD_SALE = ("MB49", 409, "the original in the journal is not an approved card sale")
    KEYS_NOT_READY = ("MB50", 503, "not signed in, or the PIN pad holds no valid working key; nothing was asked")
    BACKEND_DOWN = ("MB51", 503, "e-Buy backend known to be unreachable; nothing was asked, no money moved")
    METHOD_NOT_ALLOWED = ("MB70", 405, "method not allowed on this path")
    HOST_REFUSED = ("MB71", 421, "the Host header does not name this service")
    ORIGIN_REFUSED = ("MB72", 403, "requests from web pages are refused")
    TOKEN_REFUSED = ("MB73", 401, "missing or wrong bearer token")
    CALLER_NOT_ALLOWED = ("MB74", 403, "the calling local user is not on the allow-list")
    CALLER_UNIDENTIFIED = ("MB75", 403, "the calling local user could not be identified")
    TOO_MANY_CONNECTIONS = ("MB76", 503, "too many open connections; retry in a moment")
    TOO_MANY_STREAMS = ("MB77", 503, "too many progress streams open; retry in a moment")
    SHUTTING_DOWN = ("MB91", 503, "misbridge is shutting down")
    RECOVERING = ("MB92", 503, "misbridge is finishing interrupted transactions; retry shortly")
    INTERNAL = ("MB99", 500, "internal error")

    @property
    def code(self) -> str:
        """The returnCode string sent to the POS."""
        return self.value[0]

    @property
    def http_status(self) -> int:
        """HTTP status used by the HTTP front door for this code."""
        return self.value[1]

    @property
    def meaning(self) -> str:
        """One-line meaning, as listed in docs/return-codes.md."""
        return self.value[2]


class MisbridgeError(Exception):
    """Root of every misbridge exception.

    Args:
        message: a human-readable sentence; becomes ``returnDesc`` for the POS.
        return_code: overrides the class default when one class covers several codes.
    """

    default_code: ReturnCode = ReturnCode.INTERNAL

    def __init__(self, message: str, *, return_code: ReturnCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.return_code = return_code or self.default_code

    @property
    def http_status(self) -> int:
        """HTTP status hint for the HTTP front door."""
        return self.return_code.http_status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.return_code.code}: {self.message!r})"


class ConfigError(MisbridgeError):
    """The configuration is invalid or inconsistent."""


class PortUnavailable(ConfigError):
    """A configured door cannot listen: its port is held by another program, or binding it is not permitted.

    Only the bind shows it, so it is raised at start-up, never by ``misbridge check-config``. It is
    a configuration error (``misbridge serve`` exits 2) because restarting does not free the port:
    a person must stop the holder or change the setting.

    Args:
        setting: the setting that names the port or path (``api.socket_port``, ``lanes[1].socket_port``).
    """

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class RequestError(MisbridgeError):
    """The POS request is invalid; it is refused before the customer is prompted.

    Args:
        field: dotted path of the offending field (``goodsDetail[0].price``), if any.
    """

    default_code = ReturnCode.BAD_FIELD

    def __init__(self, message: str, *, return_code: ReturnCode | None = None, field: str = "") -> None:
        super().__init__(message, return_code=return_code)
        self.field = field


class LinkError(MisbridgeError):
    """The PIN-pad link protocol failed."""

    default_code = ReturnCode.DEVICE_ERROR


class FramingError(LinkError):
    """Bytes on the line do not form a valid frame (bad LRC, ETX, BCD length...)."""


class MessageError(LinkError):
    """A well-framed payload is not a valid PIN-pad message (bad type, TLV or field)."""


class LinkFailedError(LinkError):
    """A frame was not acknowledged after the maximum number of retransmits."""

    default_code = ReturnCode.DEVICE_NOT_CONNECTED


class DeviceError(MisbridgeError):
    """The PIN pad failed or refused a command."""

    default_code = ReturnCode.DEVICE_ERROR


class DeviceNotConnected(DeviceError):
    """No PIN pad link is up (unplugged, never opened, or the link failed)."""

    default_code = ReturnCode.DEVICE_NOT_CONNECTED


class PadInUse(DeviceNotConnected):
    """Another program holds the pad's port locked, most likely the misbridge service.

    Raised by the transport that meets the lock refusal, so every tool that opens the pad itself
    (``misbridge probe --try``, ``pad provision``, ``conformance``) says the same sentence.

    Args:
        url: the port that could not be opened.
    """

    def __init__(self, url: str) -> None:
        super().__init__(
            f"the PIN pad at {url} is in use by another program (its port is locked), most likely the misbridge "
            "service: stop it first (systemctl stop misbridge), or ask the running service with `misbridge status`"
        )
        self.url = url


class DeviceTimeout(DeviceError, TimeoutError):
    """The PIN pad did not answer in time, or the customer did not act in time."""

    default_code = ReturnCode.CARD_TIMEOUT


class CustomerCancelled(DeviceError):
    """The customer pressed Cancel on the PIN pad."""

    default_code = ReturnCode.CUSTOMER_CANCELLED


class CardReadError(DeviceError):
    """The PIN pad could not read the card."""

    default_code = ReturnCode.CARD_READ_ERROR


class DeviceRejected(DeviceError):
    """The PIN pad answered a command with a non-OK result code.

    Args:
        device_code: the pad's two-character result code (docs/device-protocol.md).
    """

    def __init__(self, message: str, *, device_code: str, return_code: ReturnCode | None = None) -> None:
        super().__init__(message, return_code=return_code)
        self.device_code = device_code


class DeviceBadReply(DeviceError):
    """The PIN pad sent a reply misbridge cannot use: broken TLVs, a field missing or out of range,
    an unknown message type, a type that does not answer the command, or a REQUEST_ID no command
    waits for (docs/device-protocol.md §6.1). The step ends at once; the link stays up."""

    default_code = ReturnCode.DEVICE_BAD_REPLY


class StreamRefused(MisbridgeError):
    """A progress stream cannot be opened: too many are open, no such lane, or misbridge is stopping."""

    default_code = ReturnCode.TOO_MANY_STREAMS


class BackendError(MisbridgeError):
    """The e-Buy backend call failed."""

    default_code = ReturnCode.BACKEND_UNKNOWN


class BackendNotSent(BackendError):
    """The request provably never reached the backend (connect refused/timeout, pool timeout)."""

    default_code = ReturnCode.BACKEND_NOT_SENT


class ReconcileFailed(BackendError):
    """The end of day stopped: the backend was not reached, gave no usable answer, or refused a request.

    The requests made are journaled with their result; ``misbridge reconcile`` exits 1 and a
    re-run makes new requests under new traceNos.
    """


class BackendOutcomeUnknown(BackendError):
    """The request may have been processed: read timeout, reset, bad reply, bad signature...

    Such a transaction is never re-submitted; it is resolved by inquiry and, if needed, void.
    """

    default_code = ReturnCode.BACKEND_UNKNOWN


class KeyExchangeError(BackendError):
    """DownloadKey or sign-in gave no usable key: declined, a key field missing or malformed, or
    the pad refused the key (its KCV differs). Card sales wait for the next sign-in.

    Args:
        backend_code: the backend's returnCode when it declined ("" otherwise).
    """

    default_code = ReturnCode.KEYS_NOT_READY

    def __init__(self, message: str, *, backend_code: str = "", return_code: ReturnCode | None = None) -> None:
        super().__init__(message, return_code=return_code)
        self.backend_code = backend_code


class JournalError(MisbridgeError):
    """The SQLite journal could not be read or written."""


class InvalidTransition(MisbridgeError):
    """An event was sent to the transaction state machine in a state that does not accept it."""
