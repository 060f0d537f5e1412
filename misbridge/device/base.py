"""What misbridge needs from a PIN pad, independent of the pad's wire protocol.

:class:`PinPadDriver` is the contract the transaction flow uses; ``mispos-v1``
(:mod:`misbridge.device.mispos`, docs/device-protocol.md) is the first implementation. Another pad
family is one new module plus one :data:`DRIVERS` entry, chosen by ``device.protocol``
(docs/device-protocol.md §8). Errors are the typed ones of :mod:`misbridge.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from misbridge.config.settings import DeviceSettings
from misbridge.errors import ConfigError


class ProgressStep(StrEnum):
    """Progress of a card or PIN step, as passed to the progress callback (a ``str``)."""

    WAITING_CARD = "waiting_card"
    CARD_READ = "card_read"
    WAITING_PIN = "waiting_pin"
    PIN_DIGIT = "pin_digit"
    PIN_COMPLETE = "pin_complete"
    WAITING_CODE = "waiting_code"
    WAITING_CHOICE = "waiting_choice"


class TransKind(StrEnum):
    """What the customer confirms with card and PIN: shown on the pad with the amount."""

    SALE = "sale"
    VOID = "void"
    REFUND = "refund"


class CodeEntry(StrEnum):
    """How the customer may give a code: scanned or keyed (``ANY``), or only one of them."""

    ANY = "any"
    SCAN = "scan"
    KEYPAD = "keypad"


class CodeOrigin(StrEnum):
    """How the code was given: keyed in, or scanned as a 1-D bar code or a QR code."""

    KEYPAD = "keypad"
    BARCODE = "barcode"
    QR_CODE = "qr_code"


#: Progress callback: ``(stage, digits_entered)``; stage is a :class:`ProgressStep` value.
ProgressCallback = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class PadInfo:
    """Identity of the connected pad, as reported by DEVICE_INFO.

    ``master_key_kcv`` and ``working_key_kcv`` are the 6-hex KCVs of the pad's master key and of
    its card-data working key (slot 1) as the pad reported them; "" when the slot is empty (a pad
    not provisioned, not signed in) or the pad does not report them (docs/device-protocol.md §11).
    """

    model: str
    firmware: str
    serial_no: str
    protocol: int
    master_key_kcv: str = ""
    working_key_kcv: str = ""


@dataclass(frozen=True, slots=True)
class CardRead:
    """A card as read and encrypted by the pad; only ``masked_pan`` is clear.

    The encrypted fields are opaque hex for the backend and are kept out of ``repr`` so that a
    logged object never carries them.
    """

    card_type: str
    masked_pan: str
    enc_pan_hex: str = field(repr=False)
    enc_track2_hex: str = field(repr=False)
    expiry: str = field(repr=False)
    enc_track1_hex: str = field(default="", repr=False)
    enc_track3_hex: str = field(default="", repr=False)
    card_sn: str = ""
    enc_ic_data_hex: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class EncryptedPin:
    """The pad's encrypted ISO 9564 PIN block (opaque hex) and the key slot it used."""

    pin_block_hex: str = field(repr=False)
    key_index: int


@dataclass(frozen=True, slots=True)
class CodeRead:
    """A QR or bar code read by the pad's scanner or keyed in: printable ASCII, at most 512 characters.

    The text may be a bearer payment code, so it stays out of ``repr``.
    """

    text: str = field(repr=False)
    origin: CodeOrigin


@runtime_checkable
class PinPadDriver(Protocol):
    """A PIN pad as the transaction flow sees it.

    Every command raises :class:`~misbridge.errors.DeviceNotConnected` at once when the pad is
    not connected (the customer is never prompted on a dead link), and the other
    :class:`~misbridge.errors.DeviceError` subclasses for what the pad reports.
    """

    #: Called with ``(stage, digits_entered)`` for each progress report during card and PIN steps.
    on_progress: ProgressCallback | None
    #: Called with each link diagnostic event (NAKs, retransmits, resyncs) for the metrics.
    on_link_event: Callable[[object], None] | None

    @property
    def connected(self) -> bool:
        """True while the link is up and the pad answered DEVICE_INFO."""
        ...

    @property
    def info(self) -> PadInfo | None:
        """The pad's identity from the last successful connection, else None."""
        ...

    async def start(self) -> None:
        """Start connecting in the background (and reconnecting after failures); returns at once."""
        ...

    async def stop(self) -> None:
        """Stop reconnecting, fail pending commands with DeviceNotConnected and close the port."""
        ...

    # The timeout is the API (bool result, not an exception), hence no asyncio.timeout() here.
    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the pad to be connected; True when it is."""
        ...

    async def device_info(self) -> PadInfo:
        """Ask the pad for its identity.

        Raises:
            DeviceNotConnected: no link. DeviceTimeout: no reply in the command timeout.
        """
        ...

    async def read_card(
        self,
        amount_minor: int,
        timeout_s: int,
        prompt: str = "",
        *,
        kind: TransKind = TransKind.SALE,
        reference: str = "",
    ) -> CardRead:
        """Ask the customer for a card; ``timeout_s`` is the customer's time.

        ``kind`` and ``reference`` (the original transaction, at most 40 characters) say what is
        confirmed: the pad shows them with the amount. A pad that predates them shows a sale.

        Raises:
            DeviceNotConnected: no link (raised before anything is shown to the customer).
            DeviceTimeout: no card in time (return code CARD_TIMEOUT).
            CustomerCancelled: the customer pressed Cancel.
            CardReadError: the card could not be read.
            DeviceRejected: any other refusal (busy, no key, bad command, hardware).
        """
        ...

    async def read_pin(
        self,
        amount_minor: int,
        timeout_s: int,
        prompt: str = "",
        key_index: int = 1,
        *,
        kind: TransKind = TransKind.SALE,
        reference: str = "",
    ) -> EncryptedPin:
        """Ask the customer for the PIN of the card read last; returns the encrypted block.

        ``kind`` and ``reference`` as for :meth:`read_card`.

        Raises:
            DeviceNotConnected, DeviceTimeout (PIN_TIMEOUT), CustomerCancelled,
            DeviceRejected (CARD_REMOVED, busy, no key, no card read first...).
        """
        ...

    async def read_code(
        self, prompt: str, timeout_s: int, amount_minor: int = 0, entry: CodeEntry = CodeEntry.ANY
    ) -> CodeRead:
        """Ask the customer to scan a QR / bar code or key it in (``amount_minor`` 0: no amount shown).

        Raises:
            DeviceNotConnected: no link. DeviceTimeout: no code in time (return code CARD_TIMEOUT).
            CustomerCancelled: the customer pressed Cancel.
            DeviceRejected: the pad has no scanner and ``entry`` is SCAN (device code ``10``),
                does not know the command (``07``), or refuses otherwise.
        """
        ...

    async def choose(self, prompt: str, options: Sequence[str], timeout_s: int) -> int:
        """Let the customer pick one of 1..9 ``options`` (labels of 1..32 characters); the 0-based index.

        Raises:
            ValueError: no option, more than nine, or a label that is empty or too long.
            DeviceNotConnected, DeviceTimeout (CARD_TIMEOUT), CustomerCancelled,
            DeviceRejected (the pad does not know the command, or chose an option not offered).
        """
        ...

    async def cancel(self) -> None:
        """Cancel the running customer step (card, PIN, code, choice), if any; it then raises its error."""
        ...

    async def display_text(self, text: str, seconds: int = 0) -> None:
        """Show ``text`` on the pad (0 seconds: until the next command)."""
        ...

    async def status(self) -> str:
        """The pad's state: ``"idle"`` or ``"busy"``."""
        ...

    async def load_working_key(self, key_index: int, enc_key_hex: str, kcv_hex: str) -> None:
        """Load a working key (encrypted under the pad's master key) into ``key_index``.

        ``kcv_hex`` is the 6-hex KCV the backend gave for the key; the pad loads the key only if
        its own KCV of the unwrapped key equals it, else the slot keeps its previous key.

        Raises:
            DeviceNotConnected, DeviceTimeout (no answer in the command timeout),
            DeviceRejected: device code ``11`` the KCV does not match, ``06`` the pad has no
            master key (not provisioned), ``07`` a slot or key length the pad cannot take,
            ``05`` a customer step is running.
        """
        ...

    async def load_master_key(self, enc_key_hex: str, kcv_hex: str) -> None:
        """Replace the pad's master key with one encrypted under its transport key (provisioning).

        Every working key is dropped with the old master key: sign in and load them again.

        Raises:
            DeviceNotConnected, DeviceTimeout,
            DeviceRejected: ``11`` the KCV does not match (wrong transport key, or a corrupted
            ciphertext; the old master key stays), ``06`` the pad has no transport key, ``07``
            the command is unknown to the pad or the key not 32 hex, ``05`` busy.
        """
        ...


#: ``device.protocol`` -> driver factory. Filled by the driver modules when imported.
DRIVERS: dict[str, Callable[[DeviceSettings], PinPadDriver]] = {}


def register_driver(name: str, factory: Callable[[DeviceSettings], PinPadDriver]) -> None:
    """Make ``factory`` available as ``device.protocol = name``."""
    DRIVERS[name] = factory


def create_driver(settings: DeviceSettings) -> PinPadDriver:
    """Build the driver named by ``settings.protocol``.

    Raises:
        ConfigError: no driver has that name; the message lists the known ones.
    """
    factory = DRIVERS.get(settings.protocol)
    if factory is None:
        known = ", ".join(sorted(DRIVERS)) or "none"
        raise ConfigError(f"unknown device.protocol {settings.protocol!r} (known: {known})")
    return factory(settings)
