"""Suite-wide options: the opt-in hardware run against a real PIN pad."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--device-url`` turns on the ``hardware`` tests (tests/hardware/)."""
    group = parser.getgroup("misbridge hardware")
    group.addoption(
        "--device-url",
        default=None,
        metavar="URL",
        help="a real PIN pad (e.g. /dev/mispos or usb://VID:PID) for the tests marked hardware",
    )
    group.addoption("--device-baud", type=int, default=115200, metavar="N", help="its baud rate (default 115200)")
    group.addoption(
        "--device-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="how long to wait for the pad to answer (default 10 s)",
    )
    group.addoption(
        "--device-customer",
        action="store_true",
        help="a person is at the pad: run the card and PIN tests (they prompt on the pad)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the hardware tests, with the reason, unless ``--device-url`` names a pad."""
    if config.getoption("--device-url"):
        return
    skip = pytest.mark.skip(reason="needs a real PIN pad: make test-hardware DEVICE_URL=/dev/mispos")
    for item in items:
        if item.get_closest_marker("hardware") is not None:
            item.add_marker(skip)
