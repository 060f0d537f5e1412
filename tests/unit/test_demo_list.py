"""``misbridge demo --help`` lists every scenario, one line each, and the demo runs each of them."""

from __future__ import annotations

import argparse

from misbridge.app import cli
from misbridge.app.demo import RUNS, SALE_FAULTS
from misbridge.app.demo_book import BOOK_RUNS
from misbridge.app.demo_list import DEFAULT_DEMO_CARD, DEMO_CARDS, DEMO_SCENARIOS
from simulators.cards import CARDS, DEFAULT_CARD


def _demo_help() -> str:
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    demo: argparse.ArgumentParser = commands.choices["demo"]
    return demo.format_help()


def test_every_scenario_is_listed_in_help_with_its_line() -> None:
    text = _demo_help()
    for name, line in DEMO_SCENARIOS.items():
        assert any(row.split() == [name, *line.split()] for row in text.splitlines()), name


def test_every_listed_scenario_is_run_by_the_demo_and_no_other() -> None:
    assert set(DEMO_SCENARIOS) == set(SALE_FAULTS) | set(RUNS)
    assert not set(SALE_FAULTS) & set(RUNS)
    assert set(BOOK_RUNS) | {"end-of-day"} == set(RUNS)
    assert {"void", "refund", "qrcode", "options"} <= set(BOOK_RUNS)


def test_the_scenario_option_takes_exactly_the_listed_names() -> None:
    args = cli._parser().parse_args(["demo", "--scenario", "options"])
    assert args.scenario == "options"


def test_the_card_option_takes_exactly_the_simulators_cards() -> None:
    # misbridge never imports the simulators, so it repeats their card names: the two must not drift.
    assert sorted(DEMO_CARDS) == sorted(CARDS)
    assert DEFAULT_DEMO_CARD == DEFAULT_CARD
    assert cli._parser().parse_args(["demo", "--card", "prepaid"]).card == "prepaid"
