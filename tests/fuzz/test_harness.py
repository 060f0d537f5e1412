"""The fuzz harness itself: it must let through exactly the errors each decoder documents.

A harness that swallowed too much would report 0 findings forever, so each check is shown to
pass a foreign exception through and to swallow only its decoder's documented family.  The
foreign exceptions are injected by replacing the decoder the check calls: the real decoders do
not raise them on these inputs, which is the point of the fuzzing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from misbridge.ebuy.requests import parse_request
from misbridge.errors import FramingError, MessageError, RequestError
from misbridge.link import DataFrame, FrameDecoder, LinkSession, decode_message
from misbridge.link.messages import MESSAGE_SPECS
from tests.fuzz import jsonish, targets
from tests.fuzz.driver import FindingRecorder
from tests.fuzz.seeds import dictionary, seeds, write_dictionary


@pytest.mark.parametrize("target", list(targets.TARGETS))
def test_every_seed_runs_through_its_check_without_a_finding(target: str) -> None:
    for seed in seeds(target):
        targets.TARGETS[target].check(seed)


def test_the_link_seeds_hold_a_good_frame_of_every_message_type() -> None:
    decoded = set()
    for seed in seeds("link"):
        for item in FrameDecoder().feed(seed[targets.LINK_HEADER_LEN :], 0.0):
            if isinstance(item, DataFrame):
                decoded.add(type(decode_message(item.payload)))
    assert decoded == {spec.cls for spec in MESSAGE_SPECS.values()}


def test_written_bodies_start_from_the_books_example_and_never_fail_to_write() -> None:
    zeros = jsonio.loads(jsonish.render(jsonish.write_body(jsonish.Choices(bytes(8)))))
    assert zeros == card_redemption_request()
    parse_request("cardRedemption", zeros)
    rng = random.Random(10)
    for _ in range(500):
        data = rng.randbytes(rng.randrange(64))
        text = jsonish.render(jsonish.write_body(jsonish.Choices(data)))
        assert text == jsonish.render(jsonish.write_body(jsonish.Choices(data)))
        text.encode("ascii")


def _raise(err: Exception) -> Callable[..., None]:
    """A stand-in for any decoder: whatever it is given, it raises ``err``."""

    def decoder(*_: object, **__: object) -> None:
        raise err

    return decoder


@pytest.mark.parametrize(
    ("target", "decoder", "documented"),
    [
        ("link", "decode_message", MessageError("bad TLV")),
        ("envelope", "parse_envelope", RequestError("not JSON")),
        ("request", "parse_request", RequestError("bad field")),
    ],
)
def test_a_check_swallows_only_its_decoders_documented_errors(
    target: str, decoder: str, documented: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = seeds(target)[1]
    monkeypatch.setattr(targets, decoder, _raise(documented))
    targets.TARGETS[target].check(seed)
    for foreign in (ValueError("x"), KeyError("x"), TypeError("x"), RecursionError("x"), FramingError("x")):
        monkeypatch.setattr(targets, decoder, _raise(foreign))
        with pytest.raises(type(foreign)):
            targets.TARGETS[target].check(seed)


def test_the_link_session_may_raise_nothing_not_even_a_link_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LinkSession, "receive_data", _raise(FramingError("stray")))
    with pytest.raises(FramingError):
        targets.link_decoder(seeds("link")[0])


def test_a_refusal_that_cannot_be_written_back_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "frame_reply", _raise(ValueError("too long")))
    with pytest.raises(ValueError, match="too long"):
        targets.envelope_decoder(seeds("envelope")[1])


def test_the_recorder_keeps_one_finding_per_place_with_its_shortest_input(tmp_path: Path) -> None:
    recorder = FindingRecorder(tmp_path, "request")

    def fail(data: bytes) -> None:
        try:
            jsonio.loads(data)
        except ValueError as err:
            recorder.record(data, err)

    fail(b"1" * 5000)
    fail(b"1" * 4400)  # same place, shorter: kept instead
    fail(b"1" * 4800)
    fail(b"{")  # JSONDecodeError: another finding
    index = (tmp_path / "findings.json").read_text(encoding="utf-8")
    findings = jsonio.loads(index)
    seen = [(f["error"], f["size"], f["count"]) for f in findings]
    assert seen == [("JSONLimitError", 4400, 3), ("JSONDecodeError", 1, 1)]
    assert (tmp_path / findings[0]["reproducer"]).read_bytes() == b"1" * 4400


@pytest.mark.parametrize("target", list(targets.TARGETS))
def test_the_dictionary_is_in_libfuzzers_format(target: str, tmp_path: Path) -> None:
    path = tmp_path / "dictionary.txt"
    write_dictionary(target, path)
    lines = path.read_text(encoding="ascii").splitlines()
    assert len(lines) == len(dictionary(target))
    assert all(line.startswith('"') and line.endswith('"') for line in lines)
