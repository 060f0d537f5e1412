"""simulators.backend.settlement: each usage's split, in Decimal, in the book's format."""

from __future__ import annotations

from decimal import Decimal

import pytest

from simulators.backend.codes import Declined, SimCode
from simulators.backend.ledger import Account
from simulators.backend.settlement import plain, settle
from simulators.cards import Usage

D = Decimal


def channels(usage: Usage, account: Account, total: str, undiscount: str = "0") -> list[dict[str, str]]:
    return settle(usage, account, D(total), D(undiscount)).fund_channel()


def test_points_cash_is_the_book_example() -> None:
    settlement = settle(Usage.POINTS_CASH, Account(30_000, D(0)), D("40.8"), D(0))
    assert settlement.fund_channel() == [
        {"channelNo": "001", "channelName": "用户实付现金", "channelAmount": "20.8"},
        {"channelNo": "002", "channelName": "用户积分支付", "channelAmount": "20"},
    ]
    assert settlement.points_used == 20_000


def test_points_cash_limited_by_points_and_discountable_amount() -> None:
    few = settle(Usage.POINTS_CASH, Account(5_555, D(0)), D("40.8"), D(0))
    assert few.points_used == 5_550
    assert few.fund_channel()[0]["channelAmount"] == "35.25"
    small = settle(Usage.POINTS_CASH, Account(30_000, D(0)), D("40.8"), D("35.80"))
    assert small.points_used == 5_000
    assert [c["channelAmount"] for c in small.fund_channel()] == ["35.8", "5"]


def test_points_cash_without_points_is_all_cash() -> None:
    assert channels(Usage.POINTS_CASH, Account(0, D(0)), "12.34") == [
        {"channelNo": "001", "channelName": "用户实付现金", "channelAmount": "12.34"}
    ]


def test_points_pay_everything() -> None:
    settlement = settle(Usage.POINTS, Account(500_000, D(0)), D("40.8"), D("10"))
    assert settlement.fund_channel() == [{"channelNo": "002", "channelName": "用户积分支付", "channelAmount": "40.8"}]
    assert settlement.points_used == 40_800


def test_points_not_enough() -> None:
    with pytest.raises(Declined) as raised:
        settle(Usage.POINTS, Account(30_000, D(0)), D("40.8"), D(0))
    assert raised.value.code is SimCode.INSUFFICIENT_FUNDS
    assert raised.value.desc == "insufficient points: 30000 available, 40800 needed"


def test_privilege_covers_the_discountable_amount() -> None:
    assert channels(Usage.PRIVILEGE, Account(0, D(0)), "40.8", "10.8") == [
        {"channelNo": "001", "channelName": "用户实付现金", "channelAmount": "10.8"},
        {"channelNo": "003", "channelName": "银行权益抵扣", "channelAmount": "30"},
    ]
    assert channels(Usage.PRIVILEGE, Account(0, D(0)), "40.8") == [
        {"channelNo": "003", "channelName": "银行权益抵扣", "channelAmount": "40.8"}
    ]


def test_privilege_cash_covers_half_rounded_down_to_the_cent() -> None:
    assert [c["channelAmount"] for c in channels(Usage.PRIVILEGE_CASH, Account(0, D(0)), "40.8")] == ["20.4", "20.4"]
    assert [c["channelAmount"] for c in channels(Usage.PRIVILEGE_CASH, Account(0, D(0)), "0.03")] == ["0.02", "0.01"]


@pytest.mark.parametrize(("usage", "code"), [(Usage.PREPAID, "004"), (Usage.MEMBER, "005")])
def test_stored_value(usage: Usage, code: str) -> None:
    settlement = settle(usage, Account(0, D("500.00")), D("40.8"), D(0))
    assert settlement.balance_used == D("40.8")
    assert [c["channelNo"] for c in settlement.fund_channel()] == [code]
    with pytest.raises(Declined, match=r"insufficient balance: 500.00 available, 500.01 needed"):
        settle(usage, Account(0, D("500.00")), D("500.01"), D(0))


@pytest.mark.parametrize(
    ("amount", "text"), [("20.80", "20.8"), ("20.00", "20"), ("0", "0"), ("0.00", "0"), ("100", "100"), ("0.10", "0.1")]
)
def test_plain(amount: str, text: str) -> None:
    assert plain(D(amount)) == text
