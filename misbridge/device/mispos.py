"""The ``mispos-v1`` PIN-pad driver (docs/device-protocol.md).

:class:`MisPosV1Driver` keeps one :class:`~misbridge.device.link_driver.LinkDriver` open through a
supervisor task: open the transport by URL, start the session (LINK_RESET, §3.1), confirm the
pad with DEVICE_INFO, ping it with STATUS while idle, and on any failure close and reopen with
backoff (0.5 s doubling to 5 s). Commands apply the host timers of §7 and turn result codes into
the errors of §6; a reply misbridge cannot use ends a customer step at once (§6.1).

Encrypted PAN, tracks, IC data and PIN blocks are never logged; the masked PAN may be.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence

from loguru import logger

from misbridge.config.settings import DeviceSettings
from misbridge.device.base import (
    CardRead,
    CodeEntry,
    CodeRead,
    EncryptedPin,
    PadInfo,
    ProgressCallback,
    ProgressStep,
    TransKind,
    register_driver,
)
from misbridge.device.link_driver import LinkDriver
from misbridge.device.mispos_results import (
    CODE_INPUTS,
    TRANS_TYPES,
    Step,
    card_read,
    check_protocol_version,
    code_read,
    expect,
    expect_ok,
    pad_info,
)
from misbridge.errors import (
    ConfigError,
    DeviceBadReply,
    DeviceError,
    DeviceNotConnected,
    DeviceTimeout,
    MessageError,
    MisbridgeError,
)
from misbridge.link import (
    ACK_TIMEOUT_S,
    INTER_BYTE_TIMEOUT_S,
    MAX_RETRANSMITS,
    AckTimer,
    Cancel,
    CardData,
    Choice,
    Choose,
    CodeData,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    DisplayText,
    LinkSession,
    LoadMasterKey,
    LoadWorkingKey,
    Message,
    PinBlock,
    Progress,
    ProgressStage,
    ReadCard,
    ReadCode,
    ReadPin,
    Result,
    Role,
    StatusRequest,
)
from misbridge.transport.base import ByteTransport, url_scheme
from misbridge.transport.registry import TRANSPORTS, open_transport

#: Opens the transport for a URL at a baud rate (``open_transport`` unless a test injects one).
Opener = Callable[[str, int], Awaitable[ByteTransport]]

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 5.0
#: Idle keep-alive STATUS period (§5: STATUS "also the idle keep-alive ping").
KEEPALIVE_S = 10.0

_PROGRESS_STEPS: dict[str, ProgressStep] = {
    ProgressStage.WAITING_FOR_CARD: ProgressStep.WAITING_CARD,
    ProgressStage.CARD_READ: ProgressStep.CARD_READ,
    ProgressStage.WAITING_FOR_PIN: ProgressStep.WAITING_PIN,
    ProgressStage.PIN_DIGIT_ENTERED: ProgressStep.PIN_DIGIT,
    ProgressStage.PIN_COMPLETE: ProgressStep.PIN_COMPLETE,
    ProgressStage.WAITING_FOR_CODE: ProgressStep.WAITING_CODE,
    ProgressStage.WAITING_FOR_CHOICE: ProgressStep.WAITING_CHOICE,
}


def host_session(settings: DeviceSettings) -> LinkSession:
    """The host's link session for a pad: the ACK timer from ``baudrate`` and ``ack_timeout_min_s`` (§12)."""
    return LinkSession(
        Role.HOST,
        ack_timeout=ACK_TIMEOUT_S,
        max_retransmits=MAX_RETRANSMITS,
        inter_byte_timeout=INTER_BYTE_TIMEOUT_S,
        ack_timer=AckTimer(baudrate=settings.baudrate, floor=settings.ack_timeout_min_s),
    )


class MisPosV1Driver:
    """:class:`~misbridge.device.base.PinPadDriver` for mispos-v1 pads.

    Args:
        settings: URL, baud rate and the §7 timers.
        opener: opens the transport (tests inject an in-memory one).
        session_factory: builds the host LinkSession (tests shorten the link timers); default
            :func:`host_session` of ``settings``.
        backoff_initial_s, backoff_max_s: reconnect delays, doubling from the first to the cap.
        keepalive_s: idle STATUS ping period; None disables it.

    Raises:
        ConfigError: no transport handles the scheme of ``settings.url``.
    """

    def __init__(
        self,
        settings: DeviceSettings,
        *,
        opener: Opener | None = None,
        session_factory: Callable[[], LinkSession] | None = None,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        keepalive_s: float | None = KEEPALIVE_S,
    ) -> None:
        if opener is None and url_scheme(settings.url) not in TRANSPORTS:
            known = ", ".join(sorted(TRANSPORTS))
            raise ConfigError(f"device.url {settings.url!r}: no transport for it (known schemes: {known})")
        self.on_progress: ProgressCallback | None = None
        self.on_link_event: Callable[[object], None] | None = None
        self._settings = settings
        self._opener: Opener = opener or _open_by_url
        self._session_factory = session_factory or functools.partial(host_session, settings)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._keepalive_s = keepalive_s
        self._link: LinkDriver | None = None
        self._info: PadInfo | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._logged_state = ""
        self._stopping = False
        self._steps_running = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the link is up and the pad answered DEVICE_INFO."""
        return self._link is not None and self._link.up

    @property
    def info(self) -> PadInfo | None:
        """The pad's identity from the last successful connection."""
        return self._info

    async def start(self) -> None:
        """Start the supervisor (connect, keep alive, reconnect); returns at once."""
        self._stopping = False
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name="pinpad-supervisor")
            self._supervisor.add_done_callback(_report_crash)

    async def stop(self) -> None:
        """Stop the supervisor and background work, close the link; pending commands fail."""
        self._stopping = True
        tasks = [t for t in (self._supervisor, *self._background) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._supervisor = None
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()
        self._connected.clear()

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109 - the protocol's API
        """Wait up to ``timeout`` seconds for a confirmed connection; True when connected."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        return self.connected

    async def _supervise(self) -> None:
        delay = self._backoff[0]
        while True:
            try:
                link = await self._connect()
            except MisbridgeError as err:  # DeviceError mostly; a ConfigError is retried too
                self._log_state("down", f"PIN pad not available at {self._settings.url}: {err.message}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            await self._serve(link)
            await asyncio.sleep(delay)

    def _link_event(self, event: object) -> None:
        if self.on_link_event is not None:
            self.on_link_event(event)

    async def _connect(self) -> LinkDriver:
        transport = await self._opener(self._settings.url, self._settings.baudrate)
        link = LinkDriver(
            transport,
            self._session_factory(),
            on_progress=self._progress_received,
            on_down=self._link_down,
            on_event=self._link_event,
            name=self._settings.url,
        )
        link.start()
        try:
            info = await self._identify(link)
            check_protocol_version(info)
        except BaseException:
            await link.aclose()
            raise
        self._link, self._info = link, info
        self._connected.set()
        self._log_state(
            "up", f"PIN pad connected at {self._settings.url}: {info.model} {info.firmware} ({info.serial_no})"
        )
        return link

    async def _identify(self, link: LinkDriver) -> PadInfo:
        """DEVICE_INFO on a new link; asked twice of a pad that did not answer LINK_RESET (§3.1).

        A v1 pad that kept its last delivered SEQ across our reopen drops our first frame as a
        duplicate (and acknowledges it); the second DEVICE_INFO has the next SEQ, never a duplicate.
        """
        timeout = self._settings.command_timeout_s
        # The session start has its own timers (up to 4 s for a v1 pad); DEVICE_INFO gets its own.
        await link.wait_started()
        try:
            reply = await link.request(DeviceInfoRequest(link.next_request_id()), timeout=timeout)
        except DeviceTimeout:
            if link.session_confirmed is not False:
                raise
            logger.info("PIN pad at {}: no answer to DEVICE_INFO; asking again with the next SEQ", self._settings.url)
            reply = await link.request(DeviceInfoRequest(link.next_request_id()), timeout=timeout)
        return pad_info(expect(reply, DeviceInfo, Step.COMMAND))

    async def _serve(self, link: LinkDriver) -> None:
        """Keep ``link`` alive until it goes down, then close it."""
        try:
            while not await link.wait_down(self._keepalive_s):
                await self._ping(link)
        finally:
            self._link = None
            self._connected.clear()
            await link.aclose()

    async def _ping(self, link: LinkDriver) -> None:
        if link.busy:
            return
        try:
            await link.request(StatusRequest(link.next_request_id()), timeout=self._settings.command_timeout_s)
        except DeviceTimeout:
            logger.warning("PIN pad at {} stopped answering; reopening", self._settings.url)
            await link.aclose()
        except DeviceNotConnected:
            pass  # _link_down already logged it
        except DeviceBadReply:
            pass  # the link logged what was wrong; the pad answers, so the link stays (§6.1)

    def _link_down(self, error: DeviceNotConnected) -> None:
        self._connected.clear()
        if self._stopping:
            self._log_state("stopped", f"PIN pad link to {self._settings.url} closed")
            return
        if self._link is None:
            return  # a connection attempt failed; the supervisor logs why
        self._log_state("down", f"PIN pad disconnected: {error.message}")

    def _log_state(self, state: str, text: str) -> None:
        # Once per change: a pad left unplugged for an hour is one line, not 720.
        if state != self._logged_state:
            self._logged_state = state
            logger.log("WARNING" if state == "down" else "INFO", "{}", text)
        else:
            logger.debug("{}", text)

    def _progress_received(self, msg: Progress) -> None:
        step = _PROGRESS_STEPS.get(msg.stage)
        if step is not None and self.on_progress is not None:
            self.on_progress(step.value, msg.digits_entered)

    # -- commands ----------------------------------------------------------------------------

    def _require_link(self) -> LinkDriver:
        link = self._link
        if link is None or not link.up:
            raise DeviceNotConnected(f"PIN pad not connected at {self._settings.url}")
        return link

    async def _command(self, build: Callable[[int], Message]) -> Message:
        link = self._require_link()
        return await link.request(build(link.next_request_id()), timeout=self._settings.command_timeout_s)

    async def device_info(self) -> PadInfo:
        """Ask the pad for its identity (DEVICE_INFO)."""
        reply = await self._command(DeviceInfoRequest)
        self._info = pad_info(expect(reply, DeviceInfo, Step.COMMAND))
        return self._info

    async def status(self) -> str:
        """``"idle"`` or ``"busy"``; busy without asking while our card or PIN step runs (§5)."""
        self._require_link()
        if self._steps_running:
            return "busy"
        reply = expect(await self._command(StatusRequest), DeviceStatus, Step.COMMAND)
        return "busy" if reply.state == DeviceState.BUSY else "idle"

    async def display_text(self, text: str, seconds: int = 0) -> None:
        """Show ``text`` on the pad for ``seconds`` (0: until the next command)."""
        reply = await self._command(lambda rid: DisplayText(rid, text, display_seconds=seconds))
        expect_ok(reply, Step.COMMAND)

    async def load_working_key(self, key_index: int, enc_key_hex: str, kcv_hex: str) -> None:
        """Load a working key, encrypted under the pad's master key, into ``key_index``."""
        reply = await self._command(lambda rid: LoadWorkingKey(rid, key_index, enc_key_hex, kcv_hex))
        expect_ok(reply, Step.COMMAND)

    async def load_master_key(self, enc_key_hex: str, kcv_hex: str) -> None:
        """Load a master key, encrypted under the pad's transport key (LOAD_MASTER_KEY, §11)."""
        reply = await self._command(lambda rid: LoadMasterKey(rid, enc_key_hex, kcv_hex))
        expect_ok(reply, Step.COMMAND)

    async def cancel(self) -> None:
        """Send CANCEL; the running card or PIN step then ends with its error. No-op without a link."""
        link = self._link
        if link is not None and link.up:
            await self._send_cancel(link)

    async def read_card(
        self,
        amount_minor: int,
        timeout_s: int,
        prompt: str = "",
        *,
        kind: TransKind = TransKind.SALE,
        reference: str = "",
    ) -> CardRead:
        """READ_CARD with the §7 host timer; see :class:`~misbridge.device.base.PinPadDriver`."""
        link = self._require_link()
        msg = _built(
            lambda: ReadCard(
                link.next_request_id(),
                amount_minor,
                timeout_s,
                prompt,
                trans_type=TRANS_TYPES[kind],
                reference=reference,
            )
        )
        card = expect(await self._customer_step(link, msg, timeout_s, Step.CARD), CardData, Step.CARD)
        logger.debug("card read: {} (type {})", card.masked_pan, card.card_type)  # the step logs it at INFO
        return card_read(card)

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
        """READ_PIN with the §7 host timer; see :class:`~misbridge.device.base.PinPadDriver`."""
        link = self._require_link()
        msg = _built(
            lambda: ReadPin(
                link.next_request_id(),
                amount_minor,
                timeout_s,
                prompt,
                key_index=key_index,
                trans_type=TRANS_TYPES[kind],
                reference=reference,
            )
        )
        block = expect(await self._customer_step(link, msg, timeout_s, Step.PIN), PinBlock, Step.PIN)
        logger.debug("PIN entered (key index {})", block.key_index)
        return EncryptedPin(block.pin_block_hex, block.key_index)

    async def read_code(
        self, prompt: str, timeout_s: int, amount_minor: int = 0, entry: CodeEntry = CodeEntry.ANY
    ) -> CodeRead:
        """READ_CODE (§5.1) with the §7 host timer; the code itself is never logged."""
        link = self._require_link()
        msg = _built(lambda: ReadCode(link.next_request_id(), timeout_s, prompt, amount_minor, CODE_INPUTS[entry]))
        reply = expect(await self._customer_step(link, msg, timeout_s, Step.CODE), CodeData, Step.CODE)
        code = code_read(reply)
        logger.debug("code read: {} characters ({})", len(code.text), code.origin)
        return code

    async def choose(self, prompt: str, options: Sequence[str], timeout_s: int) -> int:
        """CHOOSE (§5.2) with the §7 host timer; the 0-based index of the option picked."""
        if isinstance(options, str):
            raise TypeError("options is a sequence of labels, not one string")
        link = self._require_link()
        msg = _built(lambda: Choose(link.next_request_id(), timeout_s, tuple(options), prompt))
        choice = expect(await self._customer_step(link, msg, timeout_s, Step.CHOICE), Choice, Step.CHOICE)
        if choice.index > len(options):
            what = f"the PIN pad chose option {choice.index} of {len(options)}"
            logger.warning("{}; the step ends (the PIN pad answered something misbridge cannot use)", what)
            raise DeviceBadReply(what)
        logger.debug("option {} of {} chosen", choice.index, len(options))
        return choice.index - 1

    async def _customer_step(self, link: LinkDriver, msg: Message, timeout_s: int, step: Step) -> Message:
        """Wait TIMEOUT_S + grace for the reply; on expiry, a bad reply or cancellation, CANCEL the pad."""
        self._steps_running += 1
        try:
            reply = await link.request(
                msg, timeout=timeout_s + self._settings.reply_grace_s, timeout_code=step.timeout_code
            )
            return _usable(reply, msg)
        except DeviceBadReply:
            # §6.1: the step ends now; the pad may still be prompting, so it is told to stop.
            await self._send_cancel(link)
            raise
        except DeviceTimeout as err:
            await self._send_cancel(link)
            raise DeviceTimeout(
                f"PIN pad did not end the step within {timeout_s} s + {self._settings.reply_grace_s:g} s grace;"
                " step cancelled",
                return_code=step.timeout_code,
            ) from err
        except asyncio.CancelledError:
            # Our caller gave up: do not leave the customer looking at a prompt.
            self._spawn(self._send_cancel(link))
            raise
        finally:
            self._steps_running -= 1

    async def _send_cancel(self, link: LinkDriver) -> None:
        try:
            reply = await link.request(Cancel(link.next_request_id()), timeout=self._settings.command_timeout_s)
            expect_ok(reply, Step.COMMAND)
        except DeviceError as err:
            logger.warning("CANCEL to the PIN pad failed: {}", err.message)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _report_crash(task: asyncio.Task[None]) -> None:
    # A bug must not end reconnection silently (the exception would surface only at GC time).
    if not task.cancelled() and task.exception() is not None:
        logger.opt(exception=task.exception()).error("PIN pad supervisor crashed; the pad will not reconnect")


async def _open_by_url(url: str, baudrate: int) -> ByteTransport:
    return await open_transport(url, baudrate=baudrate)


#: §5: what may answer each customer step (RESULT always may).
_ANSWERS: dict[type[Message], type[Message]] = {
    ReadCard: CardData,
    ReadPin: PinBlock,
    ReadCode: CodeData,
    Choose: Choice,
}


def _usable(reply: Message, command: Message) -> Message:
    """``reply`` if it may answer ``command`` (§5), else DeviceBadReply (§6.1)."""
    expected = _ANSWERS.get(type(command))
    if expected is None or isinstance(reply, expected | Result):
        return reply
    what = f"the PIN pad answered {type(command).__name__} with {type(reply).__name__}"
    logger.warning("{}; the step ends (the PIN pad answered something misbridge cannot use)", what)
    raise DeviceBadReply(what)


def _built(build: Callable[[], Message]) -> Message:
    """The message ``build`` makes; a value it refuses (a label too long...) is a ValueError."""
    try:
        return build()
    except MessageError as err:
        raise ValueError(err.message) from None


register_driver("mispos-v1", MisPosV1Driver)
