"""The scripted test cards: one per usage of e-Buy Card Redemption.

Every PAN is Luhn-valid so the pad and backend treat it like a real card; none is a real
account. PINs are the ones a technician types on the simulated pad.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from misbridge.ebuy.pan import mask_pan


class Usage(StrEnum):
    """The six usages listed on the book's Card Redemption page."""

    POINTS = "points"  # Bank loyalty point redemption
    POINTS_CASH = "points-cash"  # Bank loyalty point redemption + cash payment
    PRIVILEGE = "privilege"  # Bank privilege verification
    PRIVILEGE_CASH = "privilege-cash"  # Bank privilege verification + cash payment
    PREPAID = "prepaid"  # Prepay card payment
    MEMBER = "member"  # Member card payment


@dataclass(frozen=True)
class TestCard:
    """A card the simulators know: what the pad reads and what the backend's ledger holds."""

    __test__ = False  # not a pytest test class

    name: str
    usage: Usage | None
    pan: str
    pin: str
    expiry: str  # YYMM
    bank: str
    card_type: str = "00"  # cardInfo cardType: 00 magnetic stripe
    points: int = 0  # loyalty points (1000 points = 1 yuan)
    balance: Decimal = Decimal("0")  # prepaid / member stored value
    member_id: str = ""

    @property
    def track2(self) -> str:
        """Track 2 equivalent data: PAN '=' YYMM service code discretionary data."""
        return f"{self.pan}={self.expiry}101{self.pan[-4:]}0000"

    @property
    def masked_pan(self) -> str:
        """First 6 and last 4 digits, the rest '*' (PCI DSS 3.4.1)."""
        return mask_pan(self.pan)


CARDS: dict[str, TestCard] = {
    card.name: card
    for card in (
        TestCard("points", Usage.POINTS, "6225620000000019", "111111", "2812", "中信银行", points=500_000),
        TestCard("points-cash", Usage.POINTS_CASH, "6225620000018888", "123456", "2812", "中信银行", points=30_000),
        TestCard("privilege", Usage.PRIVILEGE, "6222020000000031", "222222", "2906", "工商银行"),
        TestCard("privilege-cash", Usage.PRIVILEGE_CASH, "6222020000000049", "333333", "2906", "工商银行"),
        TestCard(
            "prepaid",
            Usage.PREPAID,
            "9100010000000058",
            "444444",
            "3001",
            "e-Buy 预付卡",
            balance=Decimal("500.00"),
        ),
        TestCard(
            "member",
            Usage.MEMBER,
            "9200010000000065",
            "555555",
            "3001",
            "会员卡",
            balance=Decimal("1000.00"),
            member_id="M000001545",
        ),
        # Read fine by the pad, unknown to the backend: the "unknown card" decline.
        TestCard("unknown", None, "6200000000000005", "999999", "2812", "未知银行"),
    )
}

#: The card the simulated customer presents when nothing else was scripted.
DEFAULT_CARD = "points-cash"
