"""Checks of the link layer (docs/device-protocol.md §2, §3, §3.1, §12), the kit as a raw host.

Each check starts its own session with LINK_RESET (§3.1), which also ends a NAK hold-off and drops
whatever a previous check left in flight, so checks do not depend on each other.
"""

from __future__ import annotations

import itertools
import secrets

from misbridge.link import (
    ACK_TIMEOUT_S,
    INTER_BYTE_TIMEOUT_S,
    MAX_RETRANSMITS,
    NAK_BYTES,
    SEQ_MAX,
    AckControl,
    DataFrame,
    DeviceStatus,
    StatusRequest,
    encode_frame,
    encode_link_reset,
    encode_message,
    encode_tlvs,
)
from misbridge.link.constants import ACK_TURNAROUND_S, NAK_HOLDOFF_S, SESSION_REPLY_MAX_S
from misbridge.tools.conformance.base import Check, Failed, Run, check, expect
from misbridge.tools.conformance.line import RawHost, Rx, describe, is_nak

LINK_CHECKS: list[Check] = []

#: Slack for the operating system and USB on top of a bound of the document.
SLACK_S = 0.1


async def fresh(run: Run) -> RawHost:
    """A new session for the next check.

    Without a LINK_RESET_REPLY (a pad without session start, whose link may have failed) the kit
    does what a host does then: it reopens the port (§3 Reset) and carries on from SEQ 1.
    """
    host = run.raw
    host.answer = _ack
    if await host.start_session() is None:
        await host.aclose()
        run.host = reopened = await RawHost.open(run.url, run.baudrate)
        reopened.turnarounds, reopened.reply_delays = host.turnarounds, host.reply_delays
        reopened.reply_before_ack = host.reply_before_ack
        host = reopened
    return host


def _ack(frame: DataFrame) -> bytes:
    return bytes([0x06, frame.seq])


def seen(items: list[Rx]) -> str:
    """What the pad sent, for a report: ``ACK 3, NAK, frame SEQ 2 RESULT ...``."""
    out = []
    for rx in items:
        item = rx.item
        if isinstance(item, AckControl):
            out.append(f"ACK {item.seq}")
        elif is_nak(rx):
            out.append("NAK")
        elif isinstance(item, DataFrame):
            out.append(f"frame SEQ {item.seq} {describe(rx.message) if item.seq else 'LINK_RESET_REPLY'}")
        else:
            out.append(type(item).__name__)
    return ", ".join(out) or "nothing"


async def status_ok(host: RawHost, request_id: int = 1) -> DeviceStatus:
    """STATUS answered by STATUS_REPLY, else :class:`Failed`."""
    exchange = await host.request(StatusRequest(request_id), request_id, bounded=True)
    reply = exchange.reply
    if not isinstance(reply, DeviceStatus) or reply.request_id != request_id:
        raise Failed(f"STATUS_REPLY with REQUEST_ID {request_id}", describe(reply))
    return reply


@check(LINK_CHECKS, "session-start", "LINK_RESET is answered with its nonce, in time, without ACK", "3.1")
async def session_start(run: Run) -> str:
    host = run.raw
    nonce = secrets.token_bytes(4)
    since = host.mark()
    sent = await host.write(encode_link_reset(nonce))
    reply = await host.wait(lambda rx: rx.frame is not None and rx.frame.seq == 0, 2 * ACK_TIMEOUT_S, since)
    items = host.received[since:]
    expect(
        reply is not None and reply.frame is not None and reply.frame.data[1:2] == b"\x80",
        f"LINK_RESET_REPLY with nonce {nonce.hex().upper()} within {SESSION_REPLY_MAX_S} s",
        seen(items) + " (a pad without session start NAKs SEQ 0)",
    )
    assert reply is not None
    assert reply.frame is not None
    expect(
        reply.frame.data == encode_link_reset(nonce, reply=True)[3:-2],
        f"the nonce {nonce.hex().upper()} echoed unchanged",
        seen([reply]),
    )
    delay = reply.at - sent
    expect(delay <= SESSION_REPLY_MAX_S + SLACK_S, f"the reply within {SESSION_REPLY_MAX_S} s", f"{delay:.3f} s")
    acks = [rx for rx in items if isinstance(rx.item, AckControl)]
    expect(not acks, "no ACK for a LINK_RESET (the reply is the acknowledgement)", seen(acks))
    host.next_seq = 1
    since = host.mark()
    await status_ok(host)
    frames = [rx.frame.seq for rx in host.received[since:] if rx.frame is not None]
    expect(frames[:1] == [1], "the pad's first frame of the session with SEQ 1", f"SEQ {frames[:1]}")
    return f"reply after {delay * 1000:.0f} ms; the next frames SEQ 1 both ways"


@check(LINK_CHECKS, "session-repeat", "a repeated LINK_RESET (reply lost) is answered again", "3.1")
async def session_repeat(run: Run) -> str:
    host = await fresh(run)
    nonce = secrets.token_bytes(4)
    since = host.mark()
    await host.write(encode_link_reset(nonce))
    await host.wait(lambda rx: rx.frame is not None and rx.frame.seq == 0, ACK_TIMEOUT_S, since)
    await host.write(encode_link_reset(nonce))
    items = await host.quiet(ACK_TIMEOUT_S, since)
    replies = [rx for rx in items if rx.frame is not None and rx.frame.seq == 0]
    expect(len(replies) == 2, "two LINK_RESET_REPLY, one per LINK_RESET", seen(items))
    host.next_seq = 1
    await status_ok(host)
    return "both answered; the session works"


@check(LINK_CHECKS, "session-forgets-seq", "LINK_RESET forgets the last delivered SEQ (no lock-out)", "3.1")
async def session_forgets_seq(run: Run) -> str:
    host = await fresh(run)
    await status_ok(host, 11)  # SEQ 1 delivered: the pad's last delivered SEQ is 1
    expect(await host.start_session() is not None, "LINK_RESET_REPLY", "nothing")
    since = host.mark()
    exchange = await host.request(StatusRequest(12), 12)  # SEQ 1 again, in the new session
    expect(
        isinstance(exchange.reply, DeviceStatus),
        "the new session's SEQ 1 delivered and answered",
        f"{describe(exchange.reply)} (dropped as a duplicate of the old session's SEQ 1?)",
    )
    frames = [rx.frame.seq for rx in host.received[since:] if rx.frame is not None]
    expect(frames[:1] == [1], "the pad's reply with SEQ 1 (its SEQ restarts)", f"SEQ {frames[:1]}")
    return "SEQ 1 after a reset is a new frame"


@check(LINK_CHECKS, "session-invalid-ignored", "a SEQ 0 frame that is no valid LINK_RESET is ignored", "3.1")
async def session_invalid_ignored(run: Run) -> str:
    host = await fresh(run)
    # A lowercase nonce is not 8 uppercase hex characters: neither ACK nor NAK nor reply.
    bogus = encode_frame(bytes([0, 0]) + encode_tlvs([(0x9F44, b"abcdef01")]))
    since = host.mark()
    await host.write(bogus)
    items = await host.quiet(ACK_TIMEOUT_S, since)
    expect(not items, "nothing (neither ACK, NAK nor LINK_RESET_REPLY)", seen(items))
    await status_ok(host)
    return "ignored; the session goes on"


async def _bad_frame_naked(run: Run, bad: bytes, what: str) -> str:
    host = await fresh(run)
    since = host.mark()
    sent = await host.write(bad)
    nak = await host.wait(is_nak, ACK_TURNAROUND_S + INTER_BYTE_TIMEOUT_S + 1, since)
    expect(nak is not None, f"NAK for {what}", seen(host.received[since:]))
    assert nak is not None
    delay = nak.at - sent
    host.turnarounds.append((f"NAK of {what}", delay))
    frames = [rx for rx in host.received[since:] if rx.frame is not None]
    expect(not frames, f"no answer to {what}", seen(frames))
    await status_ok(host)
    return f"NAK after {delay * 1000:.0f} ms, then the next good frame answered"


def _status_frame(seq: int = 1, request_id: int = 1) -> bytes:
    return encode_frame(bytes([seq]) + encode_message(StatusRequest(request_id)))


@check(LINK_CHECKS, "bad-lrc-naked", "a frame from the host with a bad LRC is NAKed, not delivered", "3 rule 4")
async def bad_lrc(run: Run) -> str:
    frame = _status_frame()
    return await _bad_frame_naked(run, frame[:-1] + bytes([frame[-1] ^ 0xFF]), "a bad LRC")


@check(LINK_CHECKS, "bad-len-naked", "a frame whose LEN is not BCD is NAKed", "3 rule 2")
async def bad_len(run: Run) -> str:
    return await _bad_frame_naked(run, bytes([0x02, 0x1A, 0x00, 0x01, 0x06, 0x03, 0x1C]), "a LEN that is not BCD")


@check(LINK_CHECKS, "no-etx-naked", "a frame without ETX after DATA is NAKed", "3 rule 3")
async def no_etx(run: Run) -> str:
    frame = bytearray(_status_frame())
    frame[-2] = 0x04
    frame[-1] = 0
    for byte in frame[1:-1]:
        frame[-1] ^= byte
    return await _bad_frame_naked(run, bytes(frame), "DATA not followed by ETX")


@check(LINK_CHECKS, "short-data-naked", "a frame with DATA shorter than SEQ and TYPE is NAKed", "3 rule 3")
async def short_data(run: Run) -> str:
    body = bytes([0x00, 0x01, 0x01, 0x03])
    lrc = 0
    for byte in body:
        lrc ^= byte
    return await _bad_frame_naked(run, bytes([0x02]) + body + bytes([lrc]), "DATA of 1 byte")


@check(LINK_CHECKS, "inter-byte-timeout", "a frame cut short is NAKed after the inter-byte timeout", "3 rule 5")
async def inter_byte(run: Run) -> str:
    host = await fresh(run)
    frame = _status_frame()
    since = host.mark()
    cut = await host.write(frame[:5])
    nak = await host.wait(is_nak, INTER_BYTE_TIMEOUT_S + ACK_TURNAROUND_S + 1, since)
    expect(nak is not None, f"NAK {INTER_BYTE_TIMEOUT_S} s after the last byte", seen(host.received[since:]))
    assert nak is not None
    delay = nak.at - cut
    low, high = INTER_BYTE_TIMEOUT_S - SLACK_S, INTER_BYTE_TIMEOUT_S + ACK_TURNAROUND_S + SLACK_S
    expect(low <= delay <= high, f"the NAK {low:.1f}..{high:.1f} s after the last byte", f"{delay:.3f} s")
    await status_ok(host)
    return f"NAK {delay * 1000:.0f} ms after the last byte, then the whole frame answered"


@check(
    LINK_CHECKS, "garbage-resync", "garbage with 02, 06 and 15 before a frame: the frame is still found", "3 rules 1, 4"
)
async def garbage_resync(run: Run) -> str:
    host = await fresh(run)
    # 15: a NAK with nothing in flight (ignored); 06 00: ACK 0 (garbage); 02 99 99: a frame whose
    # LEN 9999 is too long (bad: one NAK, then resync); the STATUS frame right behind must be found.
    garbage = bytes([0x55, 0xAA, 0x15, 0x06, 0x00, 0x33, 0x02, 0x99, 0x99, 0x44])
    seq = host.take_seq()
    since = host.mark()
    await host.write(garbage + _status_frame(seq, 21))
    reply = await host.wait(lambda rx: isinstance(rx.message, DeviceStatus), 2 * ACK_TIMEOUT_S, since)
    items = await host.quiet(0.3, since)
    expect(reply is not None, "the STATUS after the garbage answered", seen(items))
    acks = [rx for rx in items if rx.item == AckControl(seq)]
    naks = [rx for rx in items if is_nak(rx)]
    frames = [rx for rx in items if rx.frame is not None]
    expect(len(acks) == 1, f"one ACK {seq}", seen(items))
    expect(len(naks) <= 1, "at most one NAK (for the bad frame; NAK hold-off)", seen(items))
    expect(len(frames) == 1, "one frame, the STATUS_REPLY (the NAK in the garbage resends nothing)", seen(items))
    return f"found after the garbage; {len(naks)} NAK"


@check(
    LINK_CHECKS,
    "duplicate-suppressed",
    "a frame sent again with the same SEQ is ACKed, not delivered twice",
    "3 rule 6",
)
async def duplicate(run: Run) -> str:
    host = await fresh(run)
    seq = host.next_seq
    await status_ok(host, 31)
    since = host.mark()
    sent = await host.write(_status_frame(seq, 31))
    items = await host.quiet(ACK_TIMEOUT_S + 0.2, since)
    acks = [rx for rx in items if rx.item == AckControl(seq)]
    expect(len(acks) == 1, f"ACK {seq} again for the copy", seen(items))
    frames = [rx for rx in items if rx.frame is not None]
    expect(not frames, "no second reply (duplicate suppression)", seen(items))
    host.turnarounds.append(("ACK of a duplicate", acks[0].at - sent))
    await status_ok(host, 32)
    return "the copy was acknowledged and not answered"


@check(
    LINK_CHECKS, "nak-retransmit", "a NAK from the host makes the pad resend its frame, same SEQ", "3 sending rule 4"
)
async def nak_retransmit(run: Run) -> str:
    host = await fresh(run)
    answered: list[int] = []

    def nak_first(frame: DataFrame) -> bytes:
        answered.append(frame.seq)
        return NAK_BYTES if len(answered) == 1 else _ack(frame)

    host.answer = nak_first
    since = host.mark()
    await status_ok(host, 41)
    items = await host.quiet(ACK_TIMEOUT_S + 0.2, since)
    frames = [rx for rx in items if rx.frame is not None]
    expect(len(frames) == 2, "the reply twice: sent, NAKed, resent", seen(items))
    expect(frames[0].item == frames[1].item, "the same bytes again (same SEQ)", seen(frames))
    delay = frames[1].at - frames[0].at
    expect(delay <= ACK_TIMEOUT_S, f"the resend on the NAK, before the {ACK_TIMEOUT_S} s ACK timer", f"{delay:.3f} s")
    return f"resent {delay * 1000:.0f} ms after the NAK"


@check(
    LINK_CHECKS,
    "ack-timeout-retransmit",
    "no ACK: the pad resends every 1 s, four sends, then stops; LINK_RESET revives it",
    "3 sending rules 2, 5; 3.1",
    limit_s=20,
)
async def ack_timeout(run: Run) -> str:
    host = await fresh(run)
    host.answer = lambda frame: b""
    since = host.mark()
    await host.send(encode_message(StatusRequest(51)))
    sends = MAX_RETRANSMITS + 1
    items = await host.quiet(sends * ACK_TIMEOUT_S + 2 * NAK_HOLDOFF_S, since)
    frames = [rx for rx in items if rx.frame is not None]
    expect(len(frames) == sends, f"the reply sent {sends} times in all, then the link failed", seen(frames))
    gaps = [b.at - a.at for a, b in itertools.pairwise(frames)]
    low, high = ACK_TIMEOUT_S - SLACK_S, ACK_TIMEOUT_S + ACK_TURNAROUND_S + SLACK_S
    expect(
        all(low <= g <= high for g in gaps), f"resends {ACK_TIMEOUT_S} s apart", ", ".join(f"{g:.2f} s" for g in gaps)
    )
    expect(len({rx.item for rx in frames}) == 1, "the same bytes each time", seen(frames))
    host.answer = _ack
    expect(await host.start_session() is not None, "LINK_RESET_REPLY from a pad whose link failed", "nothing")
    await status_ok(host, 52)
    return f"{sends} sends, {', '.join(f'{g:.2f}' for g in gaps)} s apart; revived by LINK_RESET"


@check(LINK_CHECKS, "seq-wrap", "SEQ goes 255 -> 1 both ways, never 0", "2")
async def seq_wrap(run: Run) -> str:
    host = await fresh(run)
    since = host.mark()
    for n in range(SEQ_MAX + 1):
        await status_ok(host, 100 + n)
    pad_seqs = [rx.frame.seq for rx in host.received[since:] if rx.frame is not None]
    want = [*range(1, SEQ_MAX + 1), 1]
    expect(pad_seqs == want, "the pad's frames SEQ 1..255, then 1", f"... {pad_seqs[-3:]} ({len(pad_seqs)} frames)")
    return f"{SEQ_MAX + 1} commands: the kit's SEQ 255 -> 1 delivered, the pad's 255 -> 1"


@check(LINK_CHECKS, "request-id-wrap", "REQUEST_ID 9999 then 1 echoed", "4 REQUEST_ID; 5")
async def request_id_wrap(run: Run) -> str:
    host = await fresh(run)
    for rid in (9998, 9999, 1):
        await status_ok(host, rid)
    return "9998, 9999, 1 each echoed"


@check(LINK_CHECKS, "timing-turnaround", "every ACK within 0.2 s of the frame's last byte", "12")
async def turnaround(run: Run) -> str:
    samples = run.raw.turnarounds
    expect(bool(samples), "ACK turnarounds measured by the checks before", "none")
    worst = max(samples, key=lambda s: s[1])
    expect(
        worst[1] <= ACK_TURNAROUND_S + SLACK_S / 2,
        f"every ACK within {ACK_TURNAROUND_S} s",
        f"{worst[1] * 1000:.0f} ms for {worst[0]}",
    )
    mean = sum(t for _, t in samples) / len(samples)
    return f"{len(samples)} ACKs: worst {worst[1] * 1000:.1f} ms, mean {mean * 1000:.1f} ms"


@check(LINK_CHECKS, "timing-reply", "ACK before the reply; short commands answered within 1 s of the ACK", "12")
async def reply_timing(run: Run) -> str:
    host = run.raw
    expect(not host.reply_before_ack, "every ACK before its reply", f"reply first for {host.reply_before_ack[:3]}")
    expect(bool(host.reply_delays), "reply delays measured by the checks before", "none")
    worst = max(host.reply_delays, key=lambda s: s[1])
    expect(worst[1] <= 1.0 + SLACK_S, "each reply within 1 s of its ACK", f"{worst[1]:.3f} s for {worst[0]}")
    return f"{len(host.reply_delays)} replies: worst {worst[1] * 1000:.1f} ms after the ACK"
