"""The virtual PIN pad: misbridge's own link code in the DEVICE role, served on a pty.

The session runs on the daemon's own :class:`~misbridge.device.pump.LinkPump`, over a
:class:`~simulators.pinpad.line.FaultyLine` (the injected faults and the trace) around the pty
(:class:`~simulators.pinpad.pty.PtyPort`), or around any byte transport given to :meth:`serve`.

It answers the commands of docs/device-protocol.md §5 with scripted customers
(:class:`~simulators.pinpad.customer.Customer`; codes and choices in
:class:`~simulators.pinpad.prompts.PromptSteps`), encrypting PAN, track 2 and the PIN block with
the working key in its slot exactly as a real pad's secure module would. It starts as a pad fresh
from provisioning, with the test master key and no working key: LOAD_WORKING_KEY really unwraps
the key misbridge got at sign-in under the master key and checks its KCV (docs/device-protocol.md
§11), and until then READ_CARD answers 06.

Trace lines (one per message, logger ``simulators.pinpad.device``, DEBUG) show the masked PAN
only; tracks and PIN blocks are never printed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from misbridge.device.pump import LinkPump
from misbridge.errors import DeviceNotConnected, MessageError
from misbridge.link import (
    ACK_TIMEOUT_S,
    INTER_BYTE_TIMEOUT_S,
    MAX_RETRANSMITS,
    Cancel,
    CardData,
    Choose,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    DisplayText,
    LinkEvent,
    LinkFailed,
    LinkSession,
    LoadMasterKey,
    LoadWorkingKey,
    Message,
    PayloadAcked,
    PayloadReceived,
    PinBlock,
    Progress,
    ProgressStage,
    ReadCard,
    ReadCode,
    ReadPin,
    Result,
    ResultCode,
    Role,
    SessionReset,
    StatusRequest,
    TransType,
    decode_message,
    encode_message,
    request_id_of,
)
from misbridge.link.constants import CARD_KEY_INDEX, MASTER_KEY_HEX_LEN, NO_REQUEST_ID, WORKING_KEY_HEX_LEN
from misbridge.transport.base import ByteTransport
from simulators.cards import CARDS, DEFAULT_CARD, TestCard
from simulators.crypto import (
    TEST_MASTER_KEY_HEX,
    TEST_ROOT_KEY_HEX,
    encrypt_pin_block,
    encrypt_text,
    key_check_value,
    unwrap_key,
)
from simulators.pinpad.customer import Action, Customer, check_pin
from simulators.pinpad.faults import TRACE_FIELDS, Faults, event_of
from simulators.pinpad.line import FaultyLine
from simulators.pinpad.prompts import PromptSteps, confirmation
from simulators.pinpad.pty import PtyPort

_LOGGER = logging.getLogger(__name__)

MODEL = "MISBRIDGE-SIM"
FIRMWARE = "1.0.0"
SERIAL_NO = "SIM0001"
PROTOCOL_VERSION = 1
DEFAULT_KEY_INDEX = 1
#: Working-key slots 1..KEY_SLOTS (§11: at least 2, so a new key can be loaded beside the one in use).
KEY_SLOTS = 10


def _trace(direction: str, msg: Message) -> None:
    if _LOGGER.isEnabledFor(logging.DEBUG):
        fields = " ".join(f"{name}={getattr(msg, name)}" for name in TRACE_FIELDS if hasattr(msg, name))
        _LOGGER.debug("%s %s id=%d %s", direction, type(msg).__name__, msg.request_id, fields)


def _key_or_none(key_hex: str, length: int = WORKING_KEY_HEX_LEN) -> bytes | None:
    """The key of ``key_hex`` ("" for none).

    Raises:
        ValueError: not ``length`` hex characters.
    """
    if not key_hex:
        return None
    if len(key_hex) != length:
        raise ValueError(f"a key is {length} hex characters")
    return bytes.fromhex(key_hex)


class SimulatedPinPad:
    """A mispos-v1 PIN pad on a pseudo-terminal.

    Args:
        default_card: card presented when no customer was enqueued.
        default_pin: PIN typed by that default customer (None: the card's correct PIN).
        default_action: what that default customer does (an :class:`Action` value).
        working_key_hex: the 3DES working key preloaded in slot 1, as a pad signed in holds it
            (empty, the default: no working key until the host signs in and loads one with
            LOAD_WORKING_KEY, as a pad fresh from provisioning).
        master_key_hex: the master key injected at provisioning, under which LOAD_WORKING_KEY is
            unwrapped (§11; empty: a pad not provisioned, which answers LOAD_WORKING_KEY NO_KEY).
        transport_key_hex: the transport key (the store's e-Buy ``rootKey``) injected off-line at a
            key-injection facility, under which LOAD_MASTER_KEY is unwrapped (§11; empty: a pad
            that cannot be provisioned over the protocol, which answers LOAD_MASTER_KEY NO_KEY).
        serial_no: the SERIAL_NO of DEVICE_INFO (another one plays a replaced pad).
        timeout_cap_s: the pad waits min(TIMEOUT_S, this) before answering TIMEOUT.
        card_delay_s: time the customer takes to present the card.
        pin_delay_s: time the customer takes to type the whole PIN.
        link: path of a stable symlink to the pty slave (what a udev rule gives a real pad).
        faults: line faults to inject (:class:`~simulators.pinpad.faults.Faults`); also ``pad.faults``.
        trace: receives one readable line per unit on the line (hex and decoded, secrets elided).
        ask: interactive mode: asks the technician for the card, PIN, code or option.
        scanner: whether the pad has a code scanner (without one READ_CODE is keyed in).
        legacy: play a pad from before READ_CODE, CHOOSE and TRANS_TYPE: it answers the two
            commands RESULT 07 and shows every card step as a sale.
        reset_on_open: start a fresh link when the host opens the pty (the simulator's DTR,
            docs/device-protocol.md §3.1); False plays a pad that keeps its link state across
            the host's reopen and relies on LINK_RESET alone (a pad behind a TCP bridge).
        session_start: answer LINK_RESET (§3.1); False plays a v1 pad that NAKs it.
    """

    def __init__(
        self,
        *,
        default_card: str = DEFAULT_CARD,
        default_pin: str | None = None,
        default_action: str = Action.PAY,
        working_key_hex: str = "",
        master_key_hex: str = TEST_MASTER_KEY_HEX,
        transport_key_hex: str = TEST_ROOT_KEY_HEX,
        serial_no: str = SERIAL_NO,
        timeout_cap_s: float = 60.0,
        card_delay_s: float = 0.0,
        pin_delay_s: float = 0.0,
        link: str | None = None,
        faults: Faults | None = None,
        trace: Callable[[str], None] | None = None,
        ask: Callable[[str], Awaitable[str]] | None = None,
        scanner: bool = True,
        legacy: bool = False,
        reset_on_open: bool = True,
        session_start: bool = True,
    ) -> None:
        self._line = FaultyLine(faults or Faults(), trace=trace, on_cut=self.unplug)
        #: Interactive mode: asked for the card and the PIN when no scripted customer is queued.
        self._ask = ask
        self._asked_customer = False
        self._unplug_on_ack: int | None = None
        #: Commands received and dispatched, by message class name (each exactly once per command).
        self.commands: collections.Counter[str] = collections.Counter()
        self._default = Customer(default_card, default_pin, default_action)
        self._keys = {DEFAULT_KEY_INDEX: bytes.fromhex(working_key_hex)} if working_key_hex else {}
        self._master_key = bytes.fromhex(master_key_hex) if master_key_hex else None
        self._transport_key = bytes.fromhex(transport_key_hex) if transport_key_hex else None
        self.serial_no = serial_no
        self._timeout_cap_s = timeout_cap_s
        self._card_delay_s = card_delay_s
        self._pin_delay_s = pin_delay_s
        self._customers: collections.deque[Customer] = collections.deque()
        self._session_start = session_start
        self._port = PtyPort(on_open=self._host_opened if reset_on_open else None, link=link)
        self._pump: LinkPump | None = None
        self._job: asyncio.Task[None] | None = None
        self._job_id = 0
        self._customer = self._default
        self._card: TestCard | None = None
        self._legacy = legacy
        #: READ_CODE and CHOOSE, with their own queues of scripted customers.
        self.prompts = PromptSteps(self._send, self._customer_waits, ask=ask, scanner=scanner)
        #: What the screen shows: the last DISPLAY_TEXT, or the confirmation line of a card / PIN step.
        self.displayed = ""

    # -- public ------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The line faults still to inject; assign a new :class:`Faults` to re-arm them."""
        return self._line.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._line.faults = faults

    @property
    def slave_path(self) -> str:
        """The pty slave the daemon opens (``/dev/pts/N``); empty before :meth:`start`."""
        return self._port.slave_path

    @property
    def link_path(self) -> str | None:
        """The stable symlink to the slave, if one was requested."""
        return self._port.link_path

    def enqueue_customer(self, customer: Customer) -> None:
        """Queue the next customer (first in, first out); each READ_CARD takes one."""
        self._customers.append(customer)

    @property
    def queued_customers(self) -> int:
        """Customers still waiting in the queue."""
        return len(self._customers)

    async def start(self) -> str:
        """Open the pty and serve; returns the slave path."""
        path = self._port.open()
        self.serve(self._port)
        return path

    def serve(self, transport: ByteTransport) -> None:
        """Start a fresh link (new DEVICE session) over ``transport``, e.g. a memory pipe's end.

        :meth:`start` serves the pty this way, and again each time the host reopens it.
        """
        self._stop_link()
        self._line.attach(transport)
        self._pump = LinkPump(
            self._new_session(), self._line, on_event=self._link_event, on_failure=self._line_lost, name="simulated pad"
        )
        self._pump.start()

    async def stop(self) -> None:
        """Stop serving and close the pty (the daemon sees an unplug)."""
        await self._end_job()
        pump = self._pump
        self.unplug()
        if pump is not None:
            await pump.aclose()

    def unplug(self) -> None:
        """Pull the cable: close the pty now; the daemon's next read fails."""
        self._stop_link()
        self._unplug_on_ack = None
        if self._job is not None:
            self._job.cancel()
        self._port.close()

    # -- link plumbing -----------------------------------------------------------------------

    def _new_session(self) -> LinkSession:
        return LinkSession(
            Role.DEVICE,
            ack_timeout=ACK_TIMEOUT_S,
            max_retransmits=MAX_RETRANSMITS,
            inter_byte_timeout=INTER_BYTE_TIMEOUT_S,
            session_start=self._session_start,
        )

    def _host_opened(self) -> None:
        # The pty's DTR: a (re)opened port is a fresh link on both sides; LINK_RESET (§3.1) then
        # resets the new session once more, which changes nothing.
        _LOGGER.debug("host opened the port: new link session")
        self._forget_host()
        self._port.discard_output()  # bytes still queued for the old host are not for the new one
        self.serve(self._port)

    def _forget_host(self) -> None:
        # A new session (§3.1): the card is forgotten. The host that started the running command
        # is gone (a daemon killed mid-READ_CARD or mid-READ_PIN, then restarted): drop that
        # command without a word on the new link. Detaching it here also means its task, which
        # ends a loop turn later, can neither answer HOST_CANCELLED to a CANCEL the old host
        # sent nor clear a newer job.
        job, self._job = self._job, None
        if job is not None:
            job.cancel()
        self._unplug_on_ack = None
        self._card = None

    def _stop_link(self) -> None:
        if self._pump is not None:
            self._pump.stop()
        self._line.stop_drip()

    def _line_lost(self, error: DeviceNotConnected) -> None:
        _LOGGER.debug("line lost (%s); waiting for the host to reopen", error.message)

    def _link_event(self, event: LinkEvent) -> None:
        if isinstance(event, PayloadReceived):
            self._payload_received(event.payload)
        elif isinstance(event, PayloadAcked) and event.seq == self._unplug_on_ack:
            _LOGGER.debug("unplugging after the host acknowledged frame %d", event.seq)
            asyncio.get_running_loop().call_soon(self.unplug)
        elif isinstance(event, SessionReset):
            _LOGGER.debug("LINK_RESET: new session (%d unacknowledged frames dropped)", event.dropped)
            self._forget_host()
        elif isinstance(event, LinkFailed):
            _LOGGER.debug("link failed (%s); waiting for the host's LINK_RESET", event.reason)

    def _send(self, msg: Message) -> None:
        pump = self._pump
        if pump is None or not pump.running or pump.session.failed:
            return
        _trace("tx", msg)
        seq = pump.send(encode_message(msg))
        if self.faults.unplug_after is not None and self.faults.unplug_after == event_of(msg):
            self.faults.unplug_after = None
            self._unplug_on_ack = seq

    # -- commands ----------------------------------------------------------------------------

    def _payload_received(self, payload: bytes) -> None:
        try:
            msg = decode_message(payload)
        except MessageError as err:
            _LOGGER.debug("rx invalid message: %s", err)
            # §5.4: an unknown type, a missing or invalid field is BAD_COMMAND, with the command's
            # REQUEST_ID when it has a valid one, else NO_REQUEST_ID.
            rid = request_id_of(payload)
            self._send(Result(NO_REQUEST_ID if rid is None else rid, ResultCode.BAD_COMMAND, str(err)[:100]))
            return
        _trace("rx", msg)
        self.commands[type(msg).__name__] += 1
        if self.faults.silence_s > 0:
            self._line.silence(self.faults.silence_s)
            self.faults.silence_s = 0.0
        if self.faults.unplug_after == "command":
            self.faults.unplug_after = None
            asyncio.get_running_loop().call_soon(self.unplug)
            return
        self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        rid = msg.request_id
        if isinstance(msg, DeviceInfoRequest):
            self._send(DeviceInfo(rid, MODEL, FIRMWARE, self.serial_no, PROTOCOL_VERSION, *self.key_check_values()))
        elif isinstance(msg, StatusRequest):
            state = DeviceState.IDLE if self._job is None else DeviceState.BUSY
            self._send(DeviceStatus(rid, state))
        elif isinstance(msg, Cancel):
            self._cancel_job()
            self._send(Result(rid, ResultCode.OK))
        elif self._job is not None:
            self._send(Result(rid, ResultCode.BUSY, "busy"))
        else:
            self._dispatch_idle(msg)

    def _dispatch_idle(self, msg: Message) -> None:
        rid = msg.request_id
        if isinstance(msg, DisplayText):
            self.displayed = msg.prompt
            self._send(Result(rid, ResultCode.OK))
        elif isinstance(msg, LoadWorkingKey):
            code, text = self._load_working_key(msg)
            self._send(Result(rid, code, text))
        elif isinstance(msg, LoadMasterKey) and not self._legacy:
            code, text = self._load_master_key(msg)
            self._send(Result(rid, code, text))
        elif isinstance(msg, ReadCard | ReadPin) and not self._shows(msg.trans_type, msg.amount_minor, msg.reference):
            self._send(Result(rid, ResultCode.BAD_COMMAND, f"unknown TRANS_TYPE {msg.trans_type}"))
        elif isinstance(msg, ReadCard) and CARD_KEY_INDEX not in self._keys:
            self._send(Result(rid, ResultCode.NO_KEY, f"no key in slot {CARD_KEY_INDEX}"))
        elif isinstance(msg, ReadCard):
            self._start_job(rid, self._read_card(msg))
        elif isinstance(msg, ReadCode) and not self._legacy:
            self._start_job(rid, self.prompts.read_code(msg))
        elif isinstance(msg, Choose) and not self._legacy:
            self._start_job(rid, self.prompts.choose(msg))
        elif isinstance(msg, ReadPin):
            if self._card is None:
                self._send(Result(rid, ResultCode.BAD_COMMAND, "no card read"))
            elif msg.key_index not in self._keys:
                self._send(Result(rid, ResultCode.NO_KEY, f"no key in slot {msg.key_index}"))
            else:
                self._start_job(rid, self._read_pin(msg, self._card))
        else:
            self._send(Result(rid, ResultCode.BAD_COMMAND, f"unexpected {type(msg).__name__}"))

    def _load_working_key(self, msg: LoadWorkingKey) -> tuple[ResultCode, str]:
        """§11: unwrap under the master key, check the KCV, store; on any failure the slot keeps its key."""
        if self._master_key is None:
            return ResultCode.NO_KEY, "no master key: pad not provisioned"
        if not 1 <= msg.key_index <= KEY_SLOTS:
            return ResultCode.BAD_COMMAND, f"no key slot {msg.key_index} (slots 1..{KEY_SLOTS})"
        if len(msg.enc_working_key_hex) != WORKING_KEY_HEX_LEN:
            return ResultCode.BAD_COMMAND, "a working key is 16 bytes (32 hex characters)"
        key = unwrap_key(msg.enc_working_key_hex, self._master_key)
        if key_check_value(key) != msg.key_check_value_hex:
            return ResultCode.KEY_CHECK_FAILED, f"key check value does not match; slot {msg.key_index} unchanged"
        self._keys[msg.key_index] = key
        self._card = None  # §11: a PIN is never bound to a card read under another key
        _LOGGER.debug("working key loaded into slot %d (KCV %s)", msg.key_index, msg.key_check_value_hex)
        return ResultCode.OK, ""

    def _load_master_key(self, msg: LoadMasterKey) -> tuple[ResultCode, str]:
        """§11: unwrap under the transport key, check the KCV, replace the master key, drop every working key."""
        if self._transport_key is None:
            return ResultCode.NO_KEY, "no transport key: the pad cannot be provisioned over the line"
        if len(msg.enc_master_key_hex) != MASTER_KEY_HEX_LEN:
            return ResultCode.BAD_COMMAND, "a master key is 16 bytes (32 hex characters)"
        key = unwrap_key(msg.enc_master_key_hex, self._transport_key)
        if key_check_value(key) != msg.key_check_value_hex:
            return ResultCode.KEY_CHECK_FAILED, "key check value does not match; master key unchanged"
        self._master_key = key
        self._keys.clear()  # they were wrapped under the old master key
        self._card = None
        _LOGGER.debug("master key loaded (KCV %s)", msg.key_check_value_hex)
        return ResultCode.OK, ""

    def replace_keys(self, master_key_hex: str, working_key_hex: str) -> None:
        """Put these keys in the pad, as a key-injection tool would ("" for none): what a test
        starts from (a pad with a stale key, a pad from another store, an unprovisioned one).

        ``working_key_hex`` goes into slot 1; every other slot is emptied (its key was wrapped
        under the master key being replaced), and a card read before is forgotten (§11). The
        transport key stays.

        Raises:
            ValueError: a key that is not 32 hex characters.
        """
        master, working = _key_or_none(master_key_hex, MASTER_KEY_HEX_LEN), _key_or_none(working_key_hex)
        self._master_key = master
        self._keys = {CARD_KEY_INDEX: working} if working is not None else {}
        self._card = None

    def key_check_values(self) -> tuple[str, str]:
        """The KCVs DEVICE_INFO reports: the master key's and slot 1's ("" for an empty slot)."""
        master = key_check_value(self._master_key) if self._master_key is not None else ""
        working = self._keys.get(CARD_KEY_INDEX)
        return master, key_check_value(working) if working is not None else ""

    def _shows(self, trans_type: str, amount_minor: int, reference: str) -> bool:
        """Put a card or PIN step's confirmation line on the screen; False for an unknown TRANS_TYPE."""
        if self._legacy:  # an older pad skips the tags it does not know (§4) and shows a sale
            trans_type, reference = TransType.SALE, ""
        elif trans_type not in set(TransType):
            return False
        self.displayed = confirmation(trans_type, amount_minor, reference)
        return True

    def _start_job(self, request_id: int, work: Coroutine[Any, Any, None]) -> None:
        self._job_id = request_id
        self._job = asyncio.ensure_future(self._run_job(request_id, work))
        # An unplug can cancel the job before it ran: close the step so it is not left unawaited.
        self._job.add_done_callback(lambda _task: work.close())

    async def _run_job(self, request_id: int, work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            if self._job is asyncio.current_task():
                self._job = None

    def _cancel_job(self) -> None:
        """End the running step with RESULT 08 now, so it precedes CANCEL's own RESULT 00 (§5)."""
        job, self._job = self._job, None
        if job is not None:
            job.cancel()  # the step sends nothing more: its awaits raise from here on
            self._send(Result(self._job_id, ResultCode.HOST_CANCELLED, "cancelled by host"))

    async def _end_job(self) -> None:
        job = self._job
        if job is not None:
            job.cancel()
            await asyncio.wait([job])

    async def _customer_waits(self, timeout_s: int) -> None:
        await asyncio.sleep(min(float(timeout_s), self._timeout_cap_s))

    async def _read_card(self, msg: ReadCard) -> None:
        rid = msg.request_id
        self._card = None
        self._send(Progress(rid, ProgressStage.WAITING_FOR_CARD))
        self._asked_customer = not self._customers and self._ask is not None
        if self._customers:
            self._customer = self._customers.popleft()
        elif self._ask is not None:
            self._customer = await self._ask_for_card(msg)
        else:
            self._customer = self._default
        action = self._customer.action
        if action is Action.NO_CARD:
            await self._customer_waits(msg.timeout_s)
            self._send(Result(rid, ResultCode.TIMEOUT, "no card"))
            return
        await asyncio.sleep(self._card_delay_s + self._customer.hesitate_s)
        failures = {
            Action.CANCEL_CARD: (ResultCode.CUSTOMER_CANCEL, "cancelled"),
            Action.CARD_ERROR: (ResultCode.CARD_READ_ERROR, "card read error"),
        }
        if action in failures:
            code, text = failures[Action(action)]
            self._send(Result(rid, code, text))
            return
        self._card = card = self._customer.test_card
        key = self._keys[CARD_KEY_INDEX]
        self._send(Progress(rid, ProgressStage.CARD_READ))
        self._send(
            CardData(
                rid,
                card_type=card.card_type,
                masked_pan=card.masked_pan,
                enc_pan_hex=encrypt_text(card.pan, key),
                enc_track2_hex=encrypt_text(card.track2, key),
                expiry=card.expiry,
            )
        )

    async def _ask_for_card(self, msg: ReadCard) -> Customer:
        """Interactive mode: the technician names the card (or what the customer does)."""
        prompt = (
            f"READ_CARD {self.displayed}: card [{self._default.card}] ({' '.join(sorted(CARDS))}) "
            f"or cancel / none / error: "
        )
        while True:
            answer = await self._ask(prompt) if self._ask else ""
            special = {"cancel": Action.CANCEL_CARD, "none": Action.NO_CARD, "error": Action.CARD_ERROR}
            if answer in special:
                return Customer(self._default.card, action=special[answer])
            if not answer or answer in CARDS:
                return Customer(answer or self._default.card)
            prompt = f"unknown card {answer!r}; card: "

    async def _ask_for_pin(self, card: TestCard) -> str | None:
        """Interactive mode: the PIN the technician types (Enter: the card's), None for cancel.

        Asked again until it is 4 to 12 digits: a PIN block cannot hold anything else, and a
        step that died on it would leave the sale waiting for its timeout with the pad busy.
        """
        question = f"PIN for {card.masked_pan} (Enter: the right PIN {card.pin}; or digits, 'cancel'): "
        while self._ask is not None:
            answer = await self._ask(question)
            if answer == "cancel":
                return None
            if not answer:
                return card.pin
            try:
                check_pin(answer)
            except ValueError as refused:
                question = f"{refused}: PIN again (Enter: the right PIN {card.pin}; or 'cancel'): "
                continue
            return answer
        return card.pin

    async def _read_pin(self, msg: ReadPin, card: TestCard) -> None:
        rid = msg.request_id
        self._card = None  # §5: one READ_PIN per card read, whatever its outcome
        action = self._customer.action
        self._send(Progress(rid, ProgressStage.WAITING_FOR_PIN))
        if action is Action.NO_PIN:
            await self._customer_waits(msg.timeout_s)
            self._send(Result(rid, ResultCode.TIMEOUT, "no PIN"))
            return
        if action is Action.REMOVE_CARD:
            self._card = None
            self._send(Result(rid, ResultCode.CARD_REMOVED, "card removed"))
            return
        pin = self._customer.typed_pin
        if self._asked_customer and self._ask is not None:
            asked = await self._ask_for_pin(card)
            if asked is None:
                self._send(Result(rid, ResultCode.CUSTOMER_CANCEL, "cancelled"))
                return
            pin = asked
        for typed in range(1, len(pin) + 1):
            await asyncio.sleep(self._pin_delay_s / len(pin))
            if action is Action.CANCEL_PIN and typed > len(pin) // 2:
                self._send(Result(rid, ResultCode.CUSTOMER_CANCEL, "cancelled"))
                return
            self._send(Progress(rid, ProgressStage.PIN_DIGIT_ENTERED, digits_entered=typed))
        block = encrypt_pin_block(pin, card.pan, self._keys[msg.key_index])
        self._send(Progress(rid, ProgressStage.PIN_COMPLETE))
        self._send(PinBlock(rid, block, msg.key_index))
