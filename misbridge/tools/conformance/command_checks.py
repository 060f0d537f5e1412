"""Checks of the commands on the raw line (docs/device-protocol.md §5, §5.3, §5.4, §6, §11).

Malformed commands, the busy rules, CANCEL's reply order, the step timeout and the result codes a
customer causes: things misbridge's driver never sends or hides behind its errors, so the kit
sends them itself and reads every RESULT code as it came.
"""

from __future__ import annotations

from misbridge.link import (
    ACK_TIMEOUT_S,
    Cancel,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    DisplayText,
    LoadMasterKey,
    LoadWorkingKey,
    Message,
    MessageType,
    Progress,
    ReadCard,
    ReadPin,
    Result,
    ResultCode,
    StatusRequest,
    Tag,
    encode_message,
    encode_tlvs,
)
from misbridge.tools.conformance.base import Check, Failed, Run, Skipped, check, expect
from misbridge.tools.conformance.line import RawHost, describe
from misbridge.tools.conformance.link_checks import fresh, seen
from misbridge.tools.conformance.people import Act
from misbridge.tools.conformance.vectors import TEST_MASTER_KEY, VECTOR_ENC_KEY, VECTOR_KCV

COMMAND_CHECKS: list[Check] = []
#: How a report names the commands busy-rules sends (§5's names).
_NAMES: dict[type[Message], str] = {
    DisplayText: "DISPLAY_TEXT",
    ReadCard: "READ_CARD",
    ReadPin: "READ_PIN",
    LoadWorkingKey: "LOAD_WORKING_KEY",
    LoadMasterKey: "LOAD_MASTER_KEY",
}

#: The customer's time at the pad in the checks that need one.
CUSTOMER_S = 60


def _payload(kind: int, *tlvs: tuple[int, bytes]) -> bytes:
    return bytes([kind]) + encode_tlvs(list(tlvs))


def _rid(value: bytes) -> tuple[int, bytes]:
    return (Tag.REQUEST_ID, value)


async def result_of(host: RawHost, command: Message | bytes, request_id: int, *, timeout: float = 3.0) -> Result:  # noqa: ASYNC109
    """Send ``command`` and return its RESULT; anything else is :class:`Failed` (the pad is left idle)."""
    exchange = await host.request(command, request_id, timeout=timeout, bounded=timeout <= 3.0)
    if not isinstance(exchange.reply, Result):
        await _tidy(host)
        raise Failed("a RESULT", describe(exchange.reply))
    return exchange.reply


async def _tidy(host: RawHost) -> None:
    """Leave the pad idle after a check that went wrong (a step it should not have started)."""
    await host.request(Cancel(9000), 9000)


def expect_code(result: Result, code: str, request_id: int, why: str, note: str = "") -> None:
    """:class:`Failed` unless ``result`` is RESULT ``code`` for ``request_id``; ``why`` says what was sent."""
    expect(
        result.code == code and result.request_id == request_id,
        f"RESULT {code} with REQUEST_ID {request_id} ({why})",
        f"RESULT {result.code} with REQUEST_ID {result.request_id}" + (f" '{result.text}'" if result.text else ""),
        note,
    )


@check(COMMAND_CHECKS, "bad-command-unknown-type", "an unknown TYPE is answered RESULT 07 with its REQUEST_ID", "5.4")
async def unknown_type(run: Run) -> str:
    host = await fresh(run)
    expect_code(await result_of(host, _payload(0x0A, _rid(b"15")), 15), "07", 15, "unknown TYPE 0x0A")
    return "TYPE 0x0A, REQUEST_ID 15: RESULT 07 REQUEST_ID 15"


@check(
    COMMAND_CHECKS,
    "bad-command-request-id",
    "a command without a usable REQUEST_ID: RESULT 07 with REQUEST_ID 0",
    "5.4",
)
async def unusable_request_id(run: Run) -> str:
    host = await fresh(run)
    cases = {
        "missing": _payload(MessageType.STATUS),
        "0": _payload(MessageType.STATUS, _rid(b"0")),
        "10000": _payload(MessageType.STATUS, _rid(b"10000")),
        "not digits": _payload(MessageType.STATUS, _rid(b"1A")),
        # LENGTH 5 with one byte after it: TLVs too broken to find an id.
        "broken TLV": bytes([MessageType.STATUS, 0x9F, 0x22, 0x00, 0x05, 0x31]),
    }
    for what, payload in cases.items():
        expect_code(await result_of(host, payload, 0), "07", 0, f"REQUEST_ID {what}")
    return f"{len(cases)} cases ({', '.join(cases)}): each RESULT 07 REQUEST_ID 0"


@check(COMMAND_CHECKS, "bad-command-missing-field", "a mandatory field missing: RESULT 07 with the REQUEST_ID", "5.4")
async def missing_field(run: Run) -> str:
    host = await fresh(run)
    expect_code(
        await result_of(host, _payload(MessageType.DISPLAY_TEXT, _rid(b"61")), 61),
        "07",
        61,
        "DISPLAY_TEXT without PROMPT",
    )
    return "DISPLAY_TEXT without PROMPT: RESULT 07"


@check(COMMAND_CHECKS, "bad-command-trans-type", "READ_CARD with an unknown TRANS_TYPE is refused with 07", "5.3")
async def unknown_trans_type(run: Run) -> str:
    host = await fresh(run)
    payload = _payload(
        MessageType.READ_CARD, _rid(b"62"), (Tag.AMOUNT, b"1"), (Tag.TIMEOUT_S, b"30"), (Tag.TRANS_TYPE, b"09")
    )
    expect_code(await result_of(host, payload, 62), "07", 62, "TRANS_TYPE 09")
    return "TRANS_TYPE 09: RESULT 07 at once"


@check(COMMAND_CHECKS, "read-pin-without-card", "READ_PIN with no card read held ends at once with 07", "5")
async def pin_without_card(run: Run) -> str:
    host = await fresh(run)  # a new session forgets any card read (§3.1)
    expect_code(await result_of(host, ReadPin(63, 1, 30), 63), "07", 63, "no card read in this session")
    return "RESULT 07 at once"


@check(
    COMMAND_CHECKS,
    "load-key-wrong-size",
    "LOAD_WORKING_KEY with a triple-length key is refused with 07",
    "11",
    keys=True,
)
async def key_wrong_size(run: Run) -> str:
    host = await fresh(run)
    result = await result_of(host, LoadWorkingKey(64, 2, VECTOR_ENC_KEY + "0" * 16, VECTOR_KCV), 64)
    if result.code == ResultCode.NO_KEY:  # §11 lists both; which a pad checks first is its own
        raise Skipped("the pad holds no master key (RESULT 06): inject the test master key of §11")
    expect_code(result, "07", 64, "48 hex characters")
    return "48 hex characters: RESULT 07"


@check(COMMAND_CHECKS, "cancel-idle", "CANCEL with no step running gets RESULT 00 alone", "5 CANCEL")
async def cancel_idle(run: Run) -> str:
    host = await fresh(run)
    since = host.mark()
    expect_code(await result_of(host, Cancel(65), 65), "00", 65, "nothing to cancel")
    items = await host.quiet(0.5, since)
    others = [rx for rx in items if isinstance(rx.message, Result) and rx.message.request_id != 65]
    expect(not others, "no other RESULT", seen(others))
    return "RESULT 00, nothing else"


async def _start_read_card(run: Run, host: RawHost, request_id: int, timeout_s: int = 30) -> None:
    await run.person.do(Act.STAY_AWAY)
    since = host.mark()
    await host.send(encode_message(ReadCard(request_id, 1, timeout_s, "conformance kit: no card please")))
    stage = await host.wait(
        lambda rx: isinstance(rx.message, Progress) and rx.message.request_id == request_id, 2, since
    )
    items = host.received[since:]
    if stage is None or any(isinstance(rx.message, Result) and rx.message.request_id == request_id for rx in items):
        raise Failed("READ_CARD accepted: PROGRESS 01 within 1 s (§12)", seen(items))


@check(
    COMMAND_CHECKS,
    "busy-rules",
    "while a step runs: STATUS, DEVICE_INFO, CANCEL answered, the rest 05",
    "5 A busy pad",
    acts=(Act.STAY_AWAY,),
)
async def busy_rules(run: Run) -> str:
    host = await fresh(run)
    await _start_read_card(run, host, 70)
    status = (await host.request(StatusRequest(71), 71, bounded=True)).reply
    expect(
        isinstance(status, DeviceStatus) and status.state == DeviceState.BUSY,
        "STATUS_REPLY 01 (busy)",
        describe(status),
    )
    info = (await host.request(DeviceInfoRequest(72), 72, bounded=True)).reply
    expect(isinstance(info, DeviceInfo), "DEVICE_INFO_REPLY while busy", describe(info))
    refused: list[Message] = [DisplayText(73, "busy?"), ReadCard(75, 1, 30), ReadPin(76, 1, 30)]
    if run.test_keys:  # without them the kit sends no key: a pad that took one anyway would keep it
        refused += [
            LoadWorkingKey(74, 2, VECTOR_ENC_KEY, VECTOR_KCV),
            LoadMasterKey(79, TEST_MASTER_KEY.enc_hex, TEST_MASTER_KEY.kcv),
        ]
    for msg in refused:
        expect_code(
            await result_of(host, msg, msg.request_id), "05", msg.request_id, f"{type(msg).__name__} while busy"
        )
    expect_code(await result_of(host, Cancel(77), 77), "00", 77, "CANCEL while busy")
    status = (await host.request(StatusRequest(78), 78)).reply
    expect(
        isinstance(status, DeviceStatus) and status.state == DeviceState.IDLE,
        "STATUS_REPLY 00 after CANCEL",
        describe(status),
    )
    names = ", ".join(_NAMES[type(msg)] for msg in refused)
    return f"STATUS 01, DEVICE_INFO answered; {names}: 05; idle after CANCEL"


@check(
    COMMAND_CHECKS,
    "cancel-order",
    "CANCEL: the step's RESULT 08 first, then CANCEL's RESULT 00",
    "5 CANCEL",
    acts=(Act.STAY_AWAY,),
)
async def cancel_order(run: Run) -> str:
    host = await fresh(run)
    await _start_read_card(run, host, 80)
    since = host.mark()
    await host.request(Cancel(81), 81, bounded=True)
    items = await host.quiet(0.3, since)
    results = [rx.message for rx in items if isinstance(rx.message, Result)]
    got = ", ".join(f"RESULT {r.code} REQUEST_ID {r.request_id}" for r in results) or "no RESULT"
    expect(
        [(r.code, r.request_id) for r in results] == [("08", 80), ("00", 81)],
        "RESULT 08 REQUEST_ID 80 (the READ_CARD), then RESULT 00 REQUEST_ID 81 (the CANCEL)",
        got,
    )
    return got


@check(
    COMMAND_CHECKS,
    "step-timeout",
    "a step nobody answers ends with RESULT 02 at TIMEOUT_S",
    "5 Step timeout; 6",
    acts=(Act.STAY_AWAY,),
)
async def step_timeout(run: Run) -> str:
    host = await fresh(run)
    timeout_s = 2
    await run.person.do(Act.STAY_AWAY)
    exchange = await host.request(
        ReadCard(85, 1, timeout_s, "conformance kit: no card please"), 85, timeout=timeout_s + 3
    )
    reply = exchange.reply
    if not isinstance(reply, Result):
        await _tidy(host)
    expect(isinstance(reply, Result) and reply.code == "02", f"RESULT 02 after {timeout_s} s", describe(reply))
    assert exchange.reply_at is not None
    assert exchange.ack_at is not None
    took = exchange.reply_at - exchange.ack_at
    expect(timeout_s - 0.5 <= took <= timeout_s + ACK_TIMEOUT_S, f"RESULT 02 at {timeout_s} s", f"after {took:.2f} s")
    return f"RESULT 02 after {took:.2f} s"


async def _customer_result(run: Run, act: Act, *, pin: bool = False) -> Result:
    host = await fresh(run)
    await run.person.do(act)
    exchange = await host.request(ReadCard(90, 1, CUSTOMER_S, "conformance kit"), 90, timeout=CUSTOMER_S + 5)
    reply = exchange.reply
    if pin and not isinstance(reply, Result):
        exchange = await host.request(ReadPin(91, 1, CUSTOMER_S, "conformance kit"), 91, timeout=CUSTOMER_S + 5)
        reply = exchange.reply
    if not isinstance(reply, Result):
        await _tidy(host)
        raise Failed("a RESULT", describe(reply))
    return reply


@check(
    COMMAND_CHECKS,
    "result-01-customer-cancel",
    "Cancel pressed at the card prompt: RESULT 01",
    "6; 10",
    acts=(Act.CANCEL_CARD,),
    limit_s=CUSTOMER_S + 15,
)
async def customer_cancel(run: Run) -> str:
    expect_code(await _customer_result(run, Act.CANCEL_CARD), "01", 90, "the customer pressed Cancel")
    return "RESULT 01"


@check(
    COMMAND_CHECKS,
    "result-03-card-read-error",
    "a card the reader cannot read: RESULT 03",
    "6",
    acts=(Act.CARD_ERROR,),
    limit_s=CUSTOMER_S + 15,
)
async def card_read_error(run: Run) -> str:
    expect_code(await _customer_result(run, Act.CARD_ERROR), "03", 90, "unreadable card")
    return "RESULT 03"


@check(
    COMMAND_CHECKS,
    "result-04-card-removed",
    "the card pulled out at the PIN prompt: RESULT 04",
    "6",
    acts=(Act.REMOVE_CARD,),
    limit_s=2 * CUSTOMER_S + 15,
)
async def card_removed(run: Run) -> str:
    result = await _customer_result(run, Act.REMOVE_CARD, pin=True)
    expect_code(result, "04", 91, "card removed during READ_PIN")
    return "RESULT 04"
