"""The simulated backend's QR codes, e-coupons and members (docs/backend.md, "Test codes").

None is a real code or member. Two come from the book: ``280123121234567890`` is the
§10.3 qrcodeSale example's code (an Alipay-style payment code: 18 digits starting 28) and
``HDCP00000000001235`` the §10.9 ecouponInquiry example's coupon (balance 40.8, product
``2016123101`` 中信365权益, as the book's response). ``M000001545`` is the member of every
book example (TONY, 30000 points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class Behaviour(StrEnum):
    """What a code does when a qrcodeSale presents it."""

    APPROVE = "approve"  # pays totalAmount from its balance (51 when the balance is short)
    DECLINE = "decline"  # always "05" do not honour
    EXPIRED = "expired"  # always "54" expired
    OPTIONS = "options"  # first round "09" + activityProductList; the second names activityProductNo


@dataclass(frozen=True)
class Product:
    """One activity product (book §8.10 activityProductList entry)."""

    no: str
    name: str

    def to_json(self) -> dict[str, str]:
        """The activityProductList entry: activityProductNo, activityProductName."""
        return {"activityProductNo": self.no, "activityProductName": self.name}


@dataclass(frozen=True)
class TestCode:
    """A QR payment code or e-coupon the simulated backend knows."""

    __test__ = False  # not a pytest test class

    code: str
    kind: str  # "wallet" (a payment QR) or "ecoupon"
    behaviour: Behaviour
    balance: Decimal
    products: tuple[Product, ...] = field(default=())

    @property
    def product(self) -> Product | None:
        """The code's single product (None for a wallet or a code with options)."""
        return self.products[0] if len(self.products) == 1 else None

    def choice(self, product_no: str) -> Product | None:
        """The product ``product_no`` among the code's, if it is one."""
        return next((product for product in self.products if product.no == product_no), None)


_CITIC_365 = Product("2016123101", "中信365权益")

#: The test QR codes and e-coupons by code.
CODES: dict[str, TestCode] = {
    code.code: code
    for code in (
        TestCode("280123121234567890", "wallet", Behaviour.APPROVE, Decimal("10000.00")),
        TestCode("134567890123456789", "wallet", Behaviour.APPROVE, Decimal("30.00")),
        TestCode("280000000000000005", "wallet", Behaviour.DECLINE, Decimal("10000.00")),
        TestCode("HDCP00000000001235", "ecoupon", Behaviour.APPROVE, Decimal("40.80"), (_CITIC_365,)),
        TestCode(
            "HDCP00000000000054",
            "ecoupon",
            Behaviour.EXPIRED,
            Decimal("50.00"),
            (Product("2016123102", "过期代金券"),),
        ),
        TestCode(
            "HDCP00000000000009",
            "ecoupon",
            Behaviour.OPTIONS,
            Decimal("100.00"),
            (Product("HDCP00000000001234", "大杯咖啡兑换"), Product("HDCP00000000001236", "小杯咖啡兑换")),
        ),
    )
}


@dataclass(frozen=True)
class Member:
    """A member whose points ``accumulating`` adds to."""

    member_id: str
    name: str
    points: int


#: The test members by memberId.
MEMBERS: dict[str, Member] = {
    member.member_id: member
    for member in (
        Member("M000001545", "TONY", 30_000),
        Member("M000000002", "LUCY", 0),
    )
}
