"""PIN-pad messages (§4, §5, §6): every message round-trips and rejects bad input."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from misbridge.errors import MessageError
from misbridge.link import (
    MAX_PAYLOAD_LEN,
    Cancel,
    CardData,
    CardType,
    Choice,
    Choose,
    CodeData,
    CodeSource,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    DisplayText,
    LoadMasterKey,
    LoadWorkingKey,
    Message,
    MessageType,
    PinBlock,
    Progress,
    ProgressStage,
    ReadCard,
    ReadCode,
    ReadPin,
    Result,
    ResultCode,
    StatusRequest,
    Tag,
    TransType,
    decode_message,
    decode_tlvs,
    encode_message,
    encode_tlvs,
)
from misbridge.link.constants import MAX_PROMPT_LEN, NO_REQUEST_ID
from misbridge.link.messages import MESSAGE_SPECS

ENC_PAN = "0123456789ABCDEF0123456789ABCDEF"
ENC_TRACK2 = "FEDCBA9876543210FEDCBA9876543210"
PIN_BLOCK = "1A2B3C4D5E6F7A8B"
WORKING_KEY = "00112233445566778899AABBCCDDEEFF"

SAMPLES: list[Message] = [
    DeviceInfoRequest(1),
    ReadCard(2, 4080, 60),
    ReadCard(9999, 0, 999, "请刷卡 ¥40.80"),
    ReadPin(3, 4080, 60),
    ReadPin(4, 1, 1, "Enter PIN", key_index=99, pin_min_len=6, pin_max_len=6),
    Cancel(5),
    DisplayText(6, "Thank you"),
    DisplayText(6, "", display_seconds=5),
    StatusRequest(7),
    LoadWorkingKey(8, 1, WORKING_KEY, "A1B2C3"),
    DeviceInfo(9, "MIS-1", "1.0.3", "SN0001", 1),
    CardData(10, CardType.MAGNETIC_STRIPE, "622562******8888", ENC_PAN, ENC_TRACK2, "2512"),
    CardData(
        11,
        CardType.IC,
        "6225620000008888"[:6] + "******" + "8888",
        ENC_PAN,
        ENC_TRACK2,
        "3001",
        enc_track1_hex="AA" * 8,
        enc_track3_hex="BB" * 8,
        card_sn="001",
        enc_ic_data_hex="CC" * 64,
    ),
    PinBlock(12, PIN_BLOCK, 1),
    Progress(13, ProgressStage.WAITING_FOR_CARD),
    Progress(13, ProgressStage.PIN_DIGIT_ENTERED, digits_entered=4),
    DeviceStatus(14, DeviceState.BUSY),
    Result(15, ResultCode.OK),
    Result(16, ResultCode.HOST_CANCELLED, "cancelled by host"),
    ReadCard(17, 4080, 60, "撤销", trans_type=TransType.VOID, reference="99000009100010101732124"),
    ReadPin(18, 4080, 60, trans_type=TransType.REFUND, reference="171698602301"),
    ReadCode(19, 60),
    ReadCode(20, 999, "扫码付款", amount_minor=4080, code_input="01"),
    CodeData(21, "280123121234567890", CodeSource.QR_CODE),
    Choose(22, 30, ("活动一", "Option 2"), "Choose"),
    Choice(23, 2),
    LoadMasterKey(12, "E51D9047310F731798CF74AF483931B3", "712C8C"),
    DeviceInfo(13, "MIS-1", "1.0.3", "SN0001", 1, master_key_kcv="8D0A74", working_key_kcv="08D7B4"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=repr)
def test_round_trip(msg: Message) -> None:
    payload = encode_message(msg)
    assert payload[0] == msg.TYPE
    assert decode_message(payload) == msg
    assert encode_message(decode_message(payload)) == payload


def test_samples_cover_every_message_type() -> None:
    assert {m.TYPE for m in SAMPLES} == set(MessageType)


def test_table_describes_every_field_of_every_message_once() -> None:
    assert set(MESSAGE_SPECS) == set(MessageType)
    for mtype, spec in MESSAGE_SPECS.items():
        assert spec.type is mtype
        assert [f.attr for f in spec.fields] == [f.name for f in dataclasses.fields(spec.cls)]
        assert len({f.tag for f in spec.fields}) == len(spec.fields)
        assert all(f.attr in spec.defaults for f in spec.fields if f.optional)


def test_every_message_has_request_id_first() -> None:
    assert all(spec.fields[0].tag is Tag.REQUEST_ID for spec in MESSAGE_SPECS.values())


def tags_of(msg: Message) -> list[int]:
    return list(decode_tlvs(encode_message(msg)[1:]))


def test_optional_fields_at_their_default_are_omitted() -> None:
    assert tags_of(ReadCard(1, 100, 60)) == [Tag.REQUEST_ID, Tag.AMOUNT, Tag.TIMEOUT_S]
    assert tags_of(ReadPin(1, 100, 60)) == [Tag.REQUEST_ID, Tag.AMOUNT, Tag.TIMEOUT_S]
    assert tags_of(ReadPin(1, 100, 60, key_index=2)) == [
        Tag.REQUEST_ID,
        Tag.AMOUNT,
        Tag.TIMEOUT_S,
        Tag.KEY_INDEX,
    ]
    assert tags_of(Result(1, "00")) == [Tag.REQUEST_ID, Tag.RESULT_CODE]
    assert Tag.DISPLAY_SECONDS not in tags_of(DisplayText(1, "hi"))


def test_mandatory_empty_text_is_still_sent() -> None:
    assert tags_of(DisplayText(1, "")) == [Tag.REQUEST_ID, Tag.PROMPT]


def test_values_on_the_wire() -> None:
    payload = encode_message(ReadCard(7, 4080, 60, "刷卡"))
    assert decode_tlvs(payload[1:]) == {
        Tag.REQUEST_ID: b"7",
        Tag.AMOUNT: b"4080",
        Tag.TIMEOUT_S: b"60",
        Tag.PROMPT: "刷卡".encode(),
    }


def test_enums_from_the_document() -> None:
    assert [c.value for c in ResultCode] == [f"{i:02d}" for i in range(12)]
    assert [s.value for s in ProgressStage] == ["01", "02", "03", "04", "05", "06", "07"]
    assert (DeviceState.IDLE, DeviceState.BUSY) == ("00", "01")
    assert (CardType.MAGNETIC_STRIPE, CardType.IC, CardType.NFC_IC) == ("00", "01", "02")
    assert (MessageType.DEVICE_INFO, MessageType.LOAD_WORKING_KEY, MessageType.LOAD_MASTER_KEY) == (0x01, 0x07, 0x0B)
    assert (Tag.ENC_MASTER_KEY, Tag.MASTER_KEY_KCV, Tag.WORKING_KEY_KCV) == (0x9F54, 0x9F55, 0x9F56)
    assert (MessageType.DEVICE_INFO_REPLY, MessageType.RESULT) == (0x81, 0x8F)
    assert (Tag.AMOUNT, Tag.DISPLAY_SECONDS) == (0x9F01, 0x9F53)
    assert (MessageType.READ_CODE, MessageType.CHOOSE, MessageType.CODE_DATA, MessageType.CHOICE) == (
        0x08, 0x09, 0x86, 0x87,
    )  # fmt: skip
    assert (TransType.SALE, TransType.VOID, TransType.REFUND) == ("00", "01", "02")


# --- secrets stay out of repr and errors -----------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "secrets"),
    [
        (SAMPLES[12], [ENC_PAN, ENC_TRACK2, "AA" * 8, "BB" * 8, "CC" * 64]),
        (PinBlock(1, PIN_BLOCK, 1), [PIN_BLOCK]),
        (LoadWorkingKey(1, 1, WORKING_KEY, "A1B2C3"), [WORKING_KEY]),
        (LoadMasterKey(1, WORKING_KEY, "A1B2C3"), [WORKING_KEY]),
    ],
)
def test_repr_never_shows_encrypted_data(msg: Message, secrets: list[str]) -> None:
    assert all(secret not in repr(msg) and secret not in str(msg) for secret in secrets)


def test_masked_pan_is_shown() -> None:
    assert "622562******8888" in repr(SAMPLES[11])


def test_validation_errors_do_not_quote_encrypted_values() -> None:
    with pytest.raises(MessageError) as info:
        PinBlock(1, "not-hex-secret!!", 1)
    assert "not-hex-secret" not in str(info.value)


# --- construction (and so encoding) rejects invalid messages ---------------------------------

CARD: dict[str, Any] = {
    "request_id": 1,
    "card_type": "00",
    "masked_pan": "622562******8888",
    "enc_pan_hex": ENC_PAN,
    "enc_track2_hex": ENC_TRACK2,
    "expiry": "2512",
}

KEY: dict[str, Any] = {
    "request_id": 1,
    "key_index": 1,
    "enc_working_key_hex": WORKING_KEY,
    "key_check_value_hex": "A1B2C3",
}
INFO: dict[str, Any] = {"request_id": 1, "model": "m", "firmware": "f", "serial_no": "s", "protocol_version": 1}


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (StatusRequest, {"request_id": 0}, "1..9999"),
        (StatusRequest, {"request_id": 10000}, "1..9999"),
        (StatusRequest, {"request_id": True}, "must be an int"),
        (StatusRequest, {"request_id": "7"}, "must be an int"),
        (ReadCard, {"request_id": 1, "amount_minor": -1, "timeout_s": 60}, "amount_minor"),
        (ReadCard, {"request_id": 1, "amount_minor": 10**12, "timeout_s": 60}, "amount_minor"),
        (ReadCard, {"request_id": 1, "amount_minor": 1, "timeout_s": 0}, "timeout_s"),
        (ReadCard, {"request_id": 1, "amount_minor": 1, "timeout_s": 1000}, "timeout_s"),
        (ReadCard, {"request_id": 1, "amount_minor": 1, "timeout_s": 1, "prompt": "\ud800"}, "UTF-8"),
        (ReadCard, {"request_id": 1, "amount_minor": 1, "timeout_s": 1, "prompt": None}, "must be a str"),
        (ReadPin, {"request_id": 1, "amount_minor": 1, "timeout_s": 1, "key_index": 0}, "key_index"),
        (ReadPin, {"request_id": 1, "amount_minor": 1, "timeout_s": 1, "key_index": 100}, "key_index"),
        (ReadPin, {"request_id": 1, "amount_minor": 1, "timeout_s": 1, "pin_min_len": 3}, "pin_min_len"),
        (ReadPin, {"request_id": 1, "amount_minor": 1, "timeout_s": 1, "pin_max_len": 13}, "pin_max_len"),
        (
            ReadPin,
            {"request_id": 1, "amount_minor": 1, "timeout_s": 1, "pin_min_len": 8, "pin_max_len": 6},
            "pin_min_len 8 > pin_max_len 6",
        ),
        (DisplayText, {"request_id": 1, "prompt": "x", "display_seconds": 1000}, "display_seconds"),
        (LoadWorkingKey, {**KEY, "enc_working_key_hex": ""}, "empty"),
        (LoadWorkingKey, {**KEY, "enc_working_key_hex": "ab"}, "uppercase hex"),
        (LoadWorkingKey, {**KEY, "enc_working_key_hex": "ABC"}, "whole bytes"),
        (LoadWorkingKey, {**KEY, "key_check_value_hex": "A1B2"}, "6 characters"),
        (LoadWorkingKey, {**KEY, "key_index": 0}, "key_index"),
        (PinBlock, {"request_id": 1, "pin_block_hex": "AB" * 9, "key_index": 1}, "16 characters"),
        (DeviceInfo, {**INFO, "protocol_version": 0}, "protocol_version"),
        (DeviceInfo, {**INFO, "model": b"m"}, "must be a str"),
        (CardData, {**CARD, "masked_pan": "6225620000008888"}, "never a full PAN"),
        (CardData, {**CARD, "masked_pan": "62256******8888"}, "never a full PAN"),
        (CardData, {**CARD, "masked_pan": ""}, "empty"),
        (CardData, {**CARD, "card_type": "0"}, "2 characters"),
        (CardData, {**CARD, "card_type": "AB"}, "ASCII digits"),
        (CardData, {**CARD, "card_type": 1}, "must be a str"),
        (CardData, {**CARD, "card_type": "٠١"}, "ASCII digits"),
        (CardData, {**CARD, "expiry": "2513"}, "month"),
        (CardData, {**CARD, "expiry": "2500"}, "month"),
        (CardData, {**CARD, "expiry": "251"}, "4 characters"),
        (CardData, {**CARD, "enc_pan_hex": ""}, "empty"),
        (CardData, {**CARD, "enc_track1_hex": "xyz"}, "uppercase hex"),
        (CardData, {**CARD, "card_sn": "0a1"}, "ASCII digits"),
        (Progress, {"request_id": 1, "stage": "04", "digits_entered": 13}, "digits_entered"),
        (Progress, {"request_id": 1, "stage": "4"}, "2 characters"),
        (DeviceStatus, {"request_id": 1, "state": ""}, "empty"),
        (Result, {"request_id": 1, "code": "100"}, "2 characters"),
    ],
)
def test_invalid_message_cannot_be_built(cls: type[Message], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(MessageError, match=match):
        cls(**kwargs)


def test_message_too_big_for_a_frame() -> None:
    msg = Result(1, ResultCode.OK, "x" * MAX_PAYLOAD_LEN)
    with pytest.raises(MessageError, match="a frame holds"):
        encode_message(msg)


def test_largest_message_that_fits() -> None:
    overhead = len(encode_message(Result(1, ResultCode.OK, "x"))) - 1
    msg = Result(1, ResultCode.OK, "x" * (MAX_PAYLOAD_LEN - overhead))
    assert len(encode_message(msg)) == MAX_PAYLOAD_LEN


# --- decoding rejects invalid payloads -------------------------------------------------------


def payload(mtype: int, *tlvs: tuple[int, bytes]) -> bytes:
    return bytes([mtype]) + encode_tlvs(tlvs)


RID = (Tag.REQUEST_ID, b"7")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "no TYPE"),
        (payload(0x00, RID), "unknown message type 0x00"),
        (payload(0x0A, RID), "unknown message type 0x0A"),
        (payload(0x80, RID), "unknown message type 0x80"),
        (payload(MessageType.STATUS), "without mandatory REQUEST_ID"),
        (payload(MessageType.READ_CARD, RID, (Tag.AMOUNT, b"1")), "without mandatory TIMEOUT_S"),
        (payload(MessageType.STATUS, (Tag.REQUEST_ID, b"7a")), "not decimal digits"),
        (payload(MessageType.STATUS, (Tag.REQUEST_ID, b"")), "not decimal digits"),
        (payload(MessageType.STATUS, (Tag.REQUEST_ID, b"-7")), "not decimal digits"),
        (payload(MessageType.STATUS, (Tag.REQUEST_ID, "７".encode())), "not ascii"),
        (payload(MessageType.STATUS, (Tag.REQUEST_ID, b"10000")), "1..9999"),
        (payload(MessageType.STATUS, (Tag.REQUEST_ID, b"9" * 5000)), "5000 digits"),
        (payload(MessageType.RESULT, RID, (Tag.RESULT_CODE, b"00"), (Tag.RESULT_TEXT, b"\xff")), "not utf-8"),
        (payload(MessageType.RESULT, RID, (Tag.RESULT_CODE, "０".encode())), "not ascii"),
        (payload(MessageType.PIN_BLOCK, RID, (Tag.PIN_BLOCK, b"1a2b3c4d5e6f7a8b"), (Tag.KEY_INDEX, b"1")), "hex"),
        (payload(MessageType.STATUS, RID) + encode_tlvs([RID]), "repeated"),
        (bytes([MessageType.STATUS]) + b"\x9f\x22\x00", "truncated"),
    ],
)
def test_decode_rejects(data: bytes, match: str) -> None:
    with pytest.raises(MessageError, match=match):
        decode_message(data)


def test_decode_skips_unknown_tags() -> None:
    data = payload(MessageType.STATUS, (0x1234, b"future"), RID, (Tag.AMOUNT, b"1"))
    assert decode_message(data) == StatusRequest(7)


def test_decode_accepts_leading_zeros() -> None:
    assert decode_message(payload(MessageType.STATUS, (Tag.REQUEST_ID, b"0007"))) == StatusRequest(7)


def test_decoded_optional_fields_take_their_defaults() -> None:
    msg = decode_message(payload(MessageType.READ_PIN, RID, (Tag.AMOUNT, b"1"), (Tag.TIMEOUT_S, b"5")))
    assert msg == ReadPin(7, 1, 5, prompt="", key_index=1, pin_min_len=4, pin_max_len=12)


def test_prompts_are_at_most_max_prompt_len_characters() -> None:
    assert DisplayText(1, "字" * MAX_PROMPT_LEN).prompt
    with pytest.raises(MessageError, match="at most 64"):
        DisplayText(1, "x" * (MAX_PROMPT_LEN + 1))
    with pytest.raises(MessageError, match="at most 64"):
        ReadCard(1, 100, 60, "x" * (MAX_PROMPT_LEN + 1))


def test_a_bad_command_without_a_usable_request_id_is_answered_with_no_request_id() -> None:
    msg = Result(NO_REQUEST_ID, ResultCode.BAD_COMMAND, "no REQUEST_ID")
    assert decode_message(encode_message(msg)) == msg
    with pytest.raises(MessageError, match="only answers a BAD_COMMAND"):
        Result(NO_REQUEST_ID, ResultCode.OK)
    with pytest.raises(MessageError):
        ReadCard(NO_REQUEST_ID, 100, 60)


def test_load_master_key_worked_example_of_section_11() -> None:
    # docs/device-protocol.md §11: the transport-key vector of the key-management guide.
    msg = LoadMasterKey(17, "E51D9047310F731798CF74AF483931B3", "712C8C")
    assert encode_message(msg).hex(" ").upper() == (
        "0B 9F 22 00 02 31 37 9F 54 00 32 45 35 31 44 39 30 34 37 33 31 30 46 37 33 31 37 39 38 43 46 37 34 "
        "41 46 34 38 33 39 33 31 42 33 9F 52 00 06 37 31 32 43 38 43"
    )
    assert decode_message(encode_message(msg)) == msg


def test_device_info_without_the_key_tags_is_a_pad_of_before_them() -> None:
    old = encode_message(DeviceInfo(1, "MIS-1", "1.0", "SN1", 1))
    assert decode_message(old) == DeviceInfo(1, "MIS-1", "1.0", "SN1", 1, "", "")
    with pytest.raises(MessageError, match="6 characters"):
        DeviceInfo(1, "MIS-1", "1.0", "SN1", 1, master_key_kcv="8D0A74B8")
