"""How the simulated bank splits a Card Redemption into fund channels, one rule per usage.

All arithmetic is Decimal. Channel codes and names follow the book's §10.2 example
("001" 用户实付现金, "002" 用户积分支付) and continue its numbering for the other usages.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from simulators.backend.codes import Declined, SimCode
from simulators.backend.ledger import Account
from simulators.cards import Usage

#: 1000 loyalty points buy one yuan.
POINTS_PER_YUAN = 1000
#: Points may pay at most this much of a points + cash transaction.
POINTS_CASH_CAP = Decimal("20.00")
#: Share of the discountable amount a privilege + cash card's privilege covers.
PRIVILEGE_CASH_SHARE = Decimal("0.5")
CENT = Decimal("0.01")
ZERO = Decimal(0)


@dataclass(frozen=True)
class Channel:
    """One fundChannel entry."""

    code: str
    name: str
    amount: Decimal

    def to_json(self) -> dict[str, str]:
        """The book's shape: amounts as strings without trailing zeros ("20.8", "20")."""
        return {"channelNo": self.code, "channelName": self.name, "channelAmount": plain(self.amount)}


def cash(amount: Decimal) -> Channel:
    """Cash the customer pays at the till."""
    return Channel("001", "用户实付现金", amount)


def points(amount: Decimal) -> Channel:
    """Paid with bank loyalty points."""
    return Channel("002", "用户积分支付", amount)


def privilege(amount: Decimal) -> Channel:
    """Covered by a bank privilege (权益)."""
    return Channel("003", "银行权益抵扣", amount)


def prepaid(amount: Decimal) -> Channel:
    """Paid from a prepaid card's stored value."""
    return Channel("004", "预付卡支付", amount)


def member(amount: Decimal) -> Channel:
    """Paid from a member card's balance."""
    return Channel("005", "会员卡支付", amount)


def qr_payment(amount: Decimal) -> Channel:
    """Paid from a QR payment code's wallet."""
    return Channel("006", "二维码支付", amount)


def ecoupon(amount: Decimal) -> Channel:
    """Paid from an e-coupon's balance."""
    return Channel("007", "电子券抵扣", amount)


#: Channels whose money a void or refund gives back to the card's points ...
POINTS_CHANNELS = frozenset({"002"})
#: ... to the card's stored value ...
BALANCE_CHANNELS = frozenset({"004", "005"})
#: ... or to the QR code's / e-coupon's balance. Cash (001) and privilege (003) go back at the till.
CODE_CHANNELS = frozenset({"006", "007"})


def refund_portions(fund_channel: list[dict[str, str]], before: Decimal, refund: Decimal) -> list[Channel]:
    """What a refund of ``refund`` gives back per channel, ``before`` having been refunded already.

    Refunds go back channel by channel in the fundChannel's order (cash first, then points,
    stored value, code balance): channel i has given back ``clamp(refunded - earlier, 0, amount_i)``
    after ``refunded`` in all, so refunds that add up to the total give everything back, exactly.
    """
    portions: list[Channel] = []
    earlier = ZERO
    for entry in fund_channel:
        size = Decimal(entry["channelAmount"])
        given = _clamp(before + refund - earlier, size) - _clamp(before - earlier, size)
        portions.append(Channel(entry["channelNo"], entry["channelName"], given))
        earlier += size
    return [portion for portion in portions if portion.amount != 0]


def _clamp(value: Decimal, size: Decimal) -> Decimal:
    return min(max(value, ZERO), size)


@dataclass(frozen=True)
class Settlement:
    """The outcome of an approved redemption: channels and what the card gave."""

    channels: tuple[Channel, ...]
    points_used: int = 0
    balance_used: Decimal = ZERO

    def fund_channel(self) -> list[dict[str, str]]:
        """fundChannel JSON, zero-amount channels left out."""
        return [channel.to_json() for channel in self.channels if channel.amount != 0]


def plain(amount: Decimal) -> str:
    """A Decimal as plain text without trailing zeros: 20.80 -> "20.8", 20.00 -> "20"."""
    text = format(amount.normalize(), "f")
    return "0" if text in ("-0", "") else text


def settle(usage: Usage, account: Account, total: Decimal, undiscount: Decimal) -> Settlement:
    """Split ``total`` for a card of ``usage`` holding ``account``.

    Raises:
        Declined: "51" when points or stored value do not cover what the usage needs.
    """
    discountable = total - undiscount
    if usage is Usage.POINTS:
        return _all_points(account, total)
    if usage is Usage.POINTS_CASH:
        return _points_and_cash(account, total, discountable)
    if usage is Usage.PRIVILEGE:
        return Settlement((cash(undiscount), privilege(discountable)))
    if usage is Usage.PRIVILEGE_CASH:
        covered = (discountable * PRIVILEGE_CASH_SHARE).quantize(CENT, rounding=ROUND_DOWN)
        return Settlement((cash(total - covered), privilege(covered)))
    if usage is Usage.PREPAID:
        return Settlement((prepaid(total),), balance_used=_stored_value(account, total))
    return Settlement((member(total),), balance_used=_stored_value(account, total))


def _all_points(account: Account, total: Decimal) -> Settlement:
    needed = int(total * POINTS_PER_YUAN)
    if account.points < needed:
        raise Declined(SimCode.INSUFFICIENT_FUNDS, f"insufficient points: {account.points} available, {needed} needed")
    return Settlement((points(total),), points_used=needed)


def _points_and_cash(account: Account, total: Decimal, discountable: Decimal) -> Settlement:
    affordable = (Decimal(account.points) / POINTS_PER_YUAN).quantize(CENT, rounding=ROUND_DOWN)
    by_points = min(discountable, POINTS_CASH_CAP, affordable)
    return Settlement((cash(total - by_points), points(by_points)), points_used=int(by_points * POINTS_PER_YUAN))


def _stored_value(account: Account, total: Decimal) -> Decimal:
    if account.balance < total:
        raise Declined(
            SimCode.INSUFFICIENT_FUNDS,
            f"insufficient balance: {account.balance} available, {total} needed",
        )
    return total
