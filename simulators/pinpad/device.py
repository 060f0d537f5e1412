"""The virtual PIN pad: misbridge's own link code in the DEVICE role, served on a pty.

It answers the commands of docs/device-protocol.md §5 with scripted customers
(:class:`~simulators.pinpad.customer.Customer`), encrypting PAN, track 2 and the PIN block with
the test working key exactly as a real pad's secure module would.

Trace lines (one per message, logger ``simulators.pinpad.device``, DEBUG) show the masked PAN
only; tracks and PIN blocks are never printed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable

from misbridge.errors import MessageError
from misbridge.link import (
    ACK_TIMEOUT_S,
    INTER_BYTE_TIMEOUT_S,
    MAX_RETRANSMITS,
    Cancel,
    CardData,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    DisplayText,
    LinkFailed,
    LinkSession,
    LoadWorkingKey,
    Message,
    PayloadReceived,
    PinBlock,
    Progress,
    ProgressStage,
    ReadCard,
    ReadPin,
    Result,
    ResultCode,
    Role,
    StatusRequest,
    decode_message,
    encode_message,
)
from simulators.cards import DEFAULT_CARD, TestCard
from simulators.crypto import TEST_WORKING_KEY_HEX, encrypt_pin_block, encrypt_text
from simulators.pinpad.customer import Action, Customer
from simulators.pinpad.pty import PtyPort

_LOGGER = logging.getLogger(__name__)

MODEL = "MISBRIDGE-SIM"
FIRMWARE = "1.0.0"
SERIAL_NO = "SIM0001"
PROTOCOL_VERSION = 1
DEFAULT_KEY_INDEX = 1

#: Fields that may appear in a trace line; everything else (tracks, PIN block, keys) is left out.
_TRACE_FIELDS = ("amount_minor", "timeout_s", "masked_pan", "card_type", "stage", "digits_entered",
                 "code", "state", "key_index")


def _trace(direction: str, msg: Message) -> None:
    if _LOGGER.isEnabledFor(logging.DEBUG):
        fields = " ".join(f"{name}={getattr(msg, name)}" for name in _TRACE_FIELDS if hasattr(msg, name))
        _LOGGER.debug("%s %s id=%d %s", direction, type(msg).__name__, msg.request_id, fields)


class SimulatedPinPad:
    """A mispos-v1 PIN pad on a pseudo-terminal.

    Args:
        default_card: card presented when no customer was enqueued.
        default_pin: PIN typed by that default customer (None: the card's correct PIN).
        working_key_hex: the 3DES working key in slot 1 (the test key by default).
        timeout_cap_s: the pad waits min(TIMEOUT_S, this) before answering TIMEOUT.
        card_delay_s: time the customer takes to present the card.
        pin_delay_s: time the customer takes to type the whole PIN.
        link: path of a stable symlink to the pty slave (what a udev rule gives a real pad).
    """

    def __init__(
        self,
        *,
        default_card: str = DEFAULT_CARD,
        default_pin: str | None = None,
        working_key_hex: str = TEST_WORKING_KEY_HEX,
        timeout_cap_s: float = 60.0,
        card_delay_s: float = 0.0,
        pin_delay_s: float = 0.0,
        link: str | None = None,
    ) -> None:
        self._default = Customer(default_card, default_pin)
        self._keys = {DEFAULT_KEY_INDEX: bytes.fromhex(working_key_hex)}
        self._timeout_cap_s = timeout_cap_s
        self._card_delay_s = card_delay_s
        self._pin_delay_s = pin_delay_s
        self._customers: collections.deque[Customer] = collections.deque()
        self._port = PtyPort(self._bytes_received, on_open=self._host_opened, link=link)
        self._session = self._new_session()
        self._timer: asyncio.TimerHandle | None = None
        self._job: asyncio.Task[None] | None = None
        self._job_id = 0
        self._host_cancelled_id = 0
        self._customer = self._default
        self._card: TestCard | None = None
        self.displayed = ""

    # -- public ------------------------------------------------------------------------------

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
        return self._port.open()

    async def stop(self) -> None:
        """Stop serving and close the pty (the daemon sees an unplug)."""
        await self._end_job()
        self.unplug()

    def unplug(self) -> None:
        """Pull the cable: close the pty now; the daemon's next read fails."""
        self._cancel_timer()
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
        )

    def _host_opened(self) -> None:
        # A (re)opened port is a fresh link on both sides (§3 Reset); the card is forgotten.
        # The host that started the running command is gone (a daemon killed mid-READ_CARD or
        # mid-READ_PIN, then restarted): drop that command without a word on the new link.
        # Detaching it here also means its task, which ends a loop turn later, can neither
        # answer HOST_CANCELLED to a CANCEL the old host sent nor clear a newer job.
        _LOGGER.debug("host opened the port: new link session")
        job, self._job = self._job, None
        self._host_cancelled_id = 0
        if job is not None:
            job.cancel()
        self._cancel_timer()
        self._port.discard_output()  # bytes still queued for the old host are not for the new one
        self._session = self._new_session()
        self._card = None

    def _bytes_received(self, data: bytes) -> None:
        self._session.receive_data(data, self._now())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._session.handle_timeout(self._now())
        self._pump()

    def _pump(self) -> None:
        self._port.write(self._session.data_to_send())
        for event in self._session.events():
            if isinstance(event, PayloadReceived):
                self._payload_received(event.payload)
            elif isinstance(event, LinkFailed):
                _LOGGER.debug("link failed (%s); waiting for the host to reopen", event.reason)
        self._arm_timer()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        deadline = self._session.next_deadline()
        if deadline is not None and self._port.is_open:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _send(self, msg: Message) -> None:
        if not self._port.is_open or self._session.failed:
            return
        _trace("tx", msg)
        self._session.send(encode_message(msg), self._now())
        self._pump()

    # -- commands ----------------------------------------------------------------------------

    def _payload_received(self, payload: bytes) -> None:
        try:
            msg = decode_message(payload)
        except MessageError as err:
            _LOGGER.debug("rx invalid message: %s", err)
            return
        _trace("rx", msg)
        self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        rid = msg.request_id
        if isinstance(msg, DeviceInfoRequest):
            self._send(DeviceInfo(rid, MODEL, FIRMWARE, SERIAL_NO, PROTOCOL_VERSION))
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
            # Slot becomes usable; the key itself stays the test key (no master key to unwrap it).
            self._keys[msg.key_index] = self._keys[DEFAULT_KEY_INDEX]
            self._send(Result(rid, ResultCode.OK))
        elif isinstance(msg, ReadCard):
            self._start_job(rid, self._read_card(msg))
        elif isinstance(msg, ReadPin):
            if self._card is None:
                self._send(Result(rid, ResultCode.BAD_COMMAND, "no card read"))
            elif msg.key_index not in self._keys:
                self._send(Result(rid, ResultCode.NO_KEY, f"no key in slot {msg.key_index}"))
            else:
                self._start_job(rid, self._read_pin(msg, self._card))
        else:
            self._send(Result(rid, ResultCode.BAD_COMMAND, f"unexpected {type(msg).__name__}"))

    def _start_job(self, request_id: int, work: Awaitable[None]) -> None:
        self._job_id = request_id
        self._host_cancelled_id = 0
        self._job = asyncio.ensure_future(self._run_job(request_id, work))

    async def _run_job(self, request_id: int, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            if self._host_cancelled_id != request_id:
                raise
            self._send(Result(request_id, ResultCode.HOST_CANCELLED, "cancelled by host"))
        finally:
            if self._job is asyncio.current_task():
                self._job = None

    def _cancel_job(self) -> None:
        if self._job is not None:
            self._host_cancelled_id = self._job_id
            self._job.cancel()

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
        self._customer = self._customers.popleft() if self._customers else self._default
        self._send(Progress(rid, ProgressStage.WAITING_FOR_CARD))
        action = self._customer.action
        if action is Action.NO_CARD:
            await self._customer_waits(msg.timeout_s)
            self._send(Result(rid, ResultCode.TIMEOUT, "no card"))
            return
        await asyncio.sleep(self._card_delay_s)
        failures = {
            Action.CANCEL_CARD: (ResultCode.CUSTOMER_CANCEL, "cancelled"),
            Action.CARD_ERROR: (ResultCode.CARD_READ_ERROR, "card read error"),
        }
        if action in failures:
            code, text = failures[Action(action)]
            self._send(Result(rid, code, text))
            return
        self._card = card = self._customer.test_card
        key = self._keys[DEFAULT_KEY_INDEX]
        self._send(CardData(
            rid,
            card_type=card.card_type,
            masked_pan=card.masked_pan,
            enc_pan_hex=encrypt_text(card.pan, key),
            enc_track2_hex=encrypt_text(card.track2, key),
            expiry=card.expiry,
        ))

    async def _read_pin(self, msg: ReadPin, card: TestCard) -> None:
        rid = msg.request_id
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
        for typed in range(1, len(pin) + 1):
            await asyncio.sleep(self._pin_delay_s / len(pin))
            if action is Action.CANCEL_PIN and typed > len(pin) // 2:
                self._send(Result(rid, ResultCode.CUSTOMER_CANCEL, "cancelled"))
                return
            self._send(Progress(rid, ProgressStage.PIN_DIGIT_ENTERED, digits_entered=typed))
        block = encrypt_pin_block(pin, card.pan, self._keys[msg.key_index])
        self._send(PinBlock(rid, block, msg.key_index))

