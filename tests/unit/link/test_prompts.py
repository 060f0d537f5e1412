"""The whole-book prompts (§5.1 READ_CODE, §5.2 CHOOSE) and the confirmation fields of READ_CARD/READ_PIN."""

from __future__ import annotations

from typing import Any

import pytest

from misbridge.errors import MessageError
from misbridge.link import (
    Choice,
    Choose,
    CodeData,
    Message,
    MessageType,
    ReadCard,
    ReadCode,
    ReadPin,
    Tag,
    TransType,
    decode_message,
    decode_tlvs,
    encode_message,
    encode_tlvs,
    request_id_of,
)
from misbridge.link.constants import MAX_CODE_LEN, MAX_OPTION_LEN, MAX_OPTIONS

RID = (Tag.REQUEST_ID, b"7")
TIMEOUT = (Tag.TIMEOUT_S, b"30")


def payload(mtype: int, *tlvs: tuple[int, bytes]) -> bytes:
    return bytes([mtype]) + encode_tlvs(tlvs)


def tags_of(msg: Message) -> list[int]:
    return list(decode_tlvs(encode_message(msg)[1:]))


def test_a_sale_sends_no_confirmation_fields_so_an_old_pad_sees_the_old_message() -> None:
    assert tags_of(ReadCard(1, 100, 60)) == [Tag.REQUEST_ID, Tag.AMOUNT, Tag.TIMEOUT_S]
    assert tags_of(ReadCard(1, 100, 60, trans_type=TransType.REFUND, reference="T1")) == [
        Tag.REQUEST_ID, Tag.AMOUNT, Tag.TIMEOUT_S, Tag.TRANS_TYPE, Tag.REFERENCE,
    ]  # fmt: skip


def test_an_absent_trans_type_means_sale() -> None:
    msg = decode_message(payload(MessageType.READ_CARD, RID, (Tag.AMOUNT, b"1"), TIMEOUT))
    assert isinstance(msg, ReadCard)
    assert (msg.trans_type, msg.reference) == (TransType.SALE, "")


def test_options_travel_on_consecutive_tags() -> None:
    data = encode_message(Choose(7, 30, ("A", "B", "C")))
    assert decode_tlvs(data[1:]) == {
        Tag.REQUEST_ID: b"7", Tag.TIMEOUT_S: b"30", Tag.OPTION_1: b"A", Tag.OPTION_2: b"B", Tag.OPTION_3: b"C",
    }  # fmt: skip


def test_read_code_on_the_wire() -> None:
    assert tags_of(ReadCode(1, 60)) == [Tag.REQUEST_ID, Tag.TIMEOUT_S]
    assert decode_tlvs(encode_message(ReadCode(1, 60, "Scan", 4080, "02"))[1:]) == {
        Tag.REQUEST_ID: b"1", Tag.TIMEOUT_S: b"60", Tag.PROMPT: b"Scan", Tag.AMOUNT: b"4080", Tag.CODE_INPUT: b"02",
    }  # fmt: skip


def test_the_code_stays_out_of_repr() -> None:
    assert "280123121234567890" not in repr(CodeData(1, "280123121234567890", "02"))


def test_the_longest_code_and_the_most_options_fit_in_a_frame() -> None:
    longest = CodeData(1, "~" * MAX_CODE_LEN, "02")
    assert decode_message(encode_message(longest)) == longest
    widest = tuple("选" * MAX_OPTION_LEN for _ in range(MAX_OPTIONS))  # 3 UTF-8 bytes a character
    msg = Choose(9999, 999, widest)
    assert decode_message(encode_message(msg)) == msg


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (ReadCard, {"trans_type": "1"}, "2 characters"),
        (ReadCard, {"reference": "x" * 41}, "at most 40 characters"),
        (ReadPin, {"trans_type": "X1"}, "ASCII digits"),
    ],
)
def test_invalid_confirmation_fields(cls: type[ReadCard | ReadPin], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(MessageError, match=match):
        cls(request_id=1, amount_minor=1, timeout_s=1, **kwargs)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ReadCode(1, 0), "timeout_s"),
        (lambda: ReadCode(1, 1, code_input="0"), "2 characters"),
        (lambda: ReadCode(1, 1, amount_minor=-1), "amount_minor"),
        (lambda: CodeData(1, "", "00"), "must not be empty"),
        (lambda: CodeData(1, "x" * (MAX_CODE_LEN + 1), "00"), "at most 512 characters"),
        (lambda: CodeData(1, "abc\n", "00"), "printable ASCII"),
        (lambda: CodeData(1, "é", "00"), "printable ASCII"),
        (lambda: CodeData(1, "abc", ""), "must not be empty"),
        (lambda: Choose(1, 30, ()), r"1\.\.9 values, got 0"),
        (lambda: Choose(1, 30, tuple("ABCDEFGHIJ")), r"1\.\.9 values, got 10"),
        (lambda: Choose(1, 30, ("A", "")), "item 2 must not be empty"),
        (lambda: Choose(1, 30, ("A", "x" * (MAX_OPTION_LEN + 1))), "item 2 must be at most 32 characters"),
        (lambda: Choose(1, 30, ["A", "B"]), "must be a tuple"),  # type: ignore[arg-type]
        (lambda: Choose(1, 30, ("A", 2)), "item 2 must be a str"),  # type: ignore[arg-type]
        (lambda: Choice(1, 0), r"1\.\.9"),
        (lambda: Choice(1, 10), r"1\.\.9"),
    ],
)
def test_invalid_prompts_cannot_be_built(build: Any, match: str) -> None:
    with pytest.raises(MessageError, match=match):
        build()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (payload(MessageType.CHOOSE, RID, TIMEOUT), "without mandatory OPTION_1"),
        (payload(MessageType.CHOOSE, RID, TIMEOUT, (Tag.OPTION_1, b"A"), (Tag.OPTION_3, b"C")), "OPTION_2 missing"),
        (payload(MessageType.CHOOSE, RID, TIMEOUT, (Tag.OPTION_1, b"")), "item 1 must not be empty"),
        (payload(MessageType.CHOOSE, RID, TIMEOUT, (Tag.OPTION_2, b"B")), "OPTION_1 missing"),
        (payload(MessageType.CHOOSE, RID, TIMEOUT, (Tag.OPTION_1, b"\xff")), "OPTION_1 is not utf-8"),
        (payload(MessageType.CODE_DATA, RID, (Tag.CODE_SOURCE, b"00")), "without mandatory CODE_TEXT"),
        (payload(MessageType.CODE_DATA, RID, (Tag.CODE_TEXT, b"x" * 513), (Tag.CODE_SOURCE, b"00")), "longer than 512"),
        (payload(MessageType.CODE_DATA, RID, (Tag.CODE_TEXT, b"\x01"), (Tag.CODE_SOURCE, b"00")), "printable"),
        (payload(MessageType.CODE_DATA, RID, (Tag.CODE_TEXT, "码".encode()), (Tag.CODE_SOURCE, b"00")), "not ascii"),
        (payload(MessageType.CHOICE, RID, (Tag.CHOICE_INDEX, b"0")), r"1\.\.9"),
        (payload(MessageType.READ_CODE, RID), "without mandatory TIMEOUT_S"),
    ],
)
def test_decode_rejects(data: bytes, match: str) -> None:
    with pytest.raises(MessageError, match=match):
        decode_message(data)


def test_a_tenth_option_tag_is_an_unknown_tag_and_skipped() -> None:
    data = payload(MessageType.CHOOSE, RID, TIMEOUT, (Tag.OPTION_1, b"A"), (Tag.OPTION_9 + 1, b"J"))
    assert decode_message(data) == Choose(7, 30, ("A",))


@pytest.mark.parametrize(
    ("data", "request_id"),
    [
        (payload(0x0A, RID), 7),  # a command from a newer host: answer it with RESULT 07
        (payload(MessageType.CHOOSE, RID, TIMEOUT), 7),  # a known command missing a field
        (payload(0x0A, (Tag.REQUEST_ID, b"0")), None),
        (payload(0x0A, (Tag.REQUEST_ID, b"x")), None),
        (payload(0x0A), None),
        (bytes([0x0A, 0x9F]), None),  # TLVs broken
    ],
)
def test_request_id_of_a_refused_payload(data: bytes, request_id: int | None) -> None:
    assert request_id_of(data) == request_id
