"""Helpers for the whole-book simulator tests: a simulator in-process, signed envelopes, card data.

:func:`running` signs in as the terminal first (the simulator accepts card data only under the
working key it issued, ``tests/keys.py``); :meth:`SimClient.card_info` and
:meth:`SimClient.card_sale` encrypt with that key, as the pad misbridge signed in would.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx

from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import decode_body, encode_body
from simulators.backend import TEST_SIGNING_KEY, BackendSimulator
from simulators.cards import CARDS
from simulators.crypto import encrypt_pin_block, encrypt_text
from tests.keys import issued_key_of, sign_in_trace_no

PATH = "/ebuyweb-posp/api"
_SERIAL = itertools.count(1)


def fresh_trace_no() -> str:
    """A traceNo never used before in this test run (yyyyMMdd + a 16-digit sequence)."""
    return f"20250101{next(_SERIAL):016d}"


def qr_sale(trace_no: str, qrcode: str = "280123121234567890", total: str = "40.8", **extra: Any) -> dict[str, Any]:
    """A qrcodeSale body."""
    return {
        "traceNo": trace_no,
        "totalAmount": Decimal(total),
        "undiscountAmount": 0,
        "qrcode": qrcode,
        "goodsDetail": [],
        **extra,
    }


class SimClient:
    """Posts signed envelopes to an in-process simulator and returns the decoded reply body."""

    def __init__(self, sim: BackendSimulator, http: httpx.AsyncClient) -> None:
        self.sim = sim
        self.http = http
        #: The working key of the last :meth:`sign_in`; None before it.
        self.key: bytes | None = None

    async def sign_in(self) -> bytes:
        """``signIn`` as the terminal POS01: its working key of the simulator's day, kept for card data."""
        self.key = issued_key_of(await self.call("signIn", {"traceNo": sign_in_trace_no()}))
        return self.key

    def card_info(self, card_name: str = "points-cash", *, pin: str | None = None) -> dict[str, Any]:
        """The cardInfo misbridge sends for a test card: PAN and PIN block under the signed-in key."""
        assert self.key is not None, "sign in first: the simulator has no key for a terminal that did not"
        card = CARDS[card_name]
        return {
            "cardNo": encrypt_text(card.pan, self.key),
            "password": encrypt_pin_block(pin or card.pin, card.pan, self.key),
            "valid": card.expiry,
            "cardType": card.card_type,
        }

    def card_sale(
        self, trace_no: str, card_name: str = "points-cash", total: str = "40.8", **extra: Any
    ) -> dict[str, Any]:
        """A card sale body (cardRedemption, or cardPayment with ``acquirer=``)."""
        return {
            "traceNo": trace_no,
            "totalAmount": Decimal(total),
            "undiscountAmount": 0,
            "goodsDetail": [],
            "cardInfo": self.card_info(card_name),
            **extra,
        }

    async def call(self, action: str, body: dict[str, Any], *, device_no: str = "POS01") -> dict[str, Any]:
        """POST ``body`` as ``action`` from ``device_no``; the reply is checked to be signed and to echo the action."""
        fields: dict[str, Any] = {
            "action": action,
            "deviceNo": device_no,
            "shopNo": "CN123456",
            "brand": "663",
            "body": encode_body(body),
        }
        fields["sign"] = signing.sign(fields, TEST_SIGNING_KEY)
        response = await self.http.post(f"{PATH}/{action}", content=jsonio.dumps(fields).encode())
        assert response.status_code == 200, response.text
        reply = jsonio.loads(response.content)
        assert signing.verify(reply, TEST_SIGNING_KEY), "every simulator reply is signed"
        assert reply["action"] == action
        decoded: dict[str, Any] = decode_body(reply["body"])
        return decoded

    async def entry(self, trace_no: str) -> dict[str, Any]:
        """``GET /_sim/ledger/{traceNo}``."""
        response = await self.http.get(f"/_sim/ledger/{trace_no}")
        assert response.status_code == 200, response.text
        entry: dict[str, Any] = jsonio.loads(response.content)
        return entry

    async def ledger(self) -> dict[str, Any]:
        """``GET /_sim/ledger``."""
        whole: dict[str, Any] = jsonio.loads((await self.http.get("/_sim/ledger")).content)
        return whole


@asynccontextmanager
async def running(sim: BackendSimulator | None = None, *, signed_in: bool = True) -> AsyncIterator[SimClient]:
    """A :class:`SimClient` on ``sim`` (a fresh simulator by default), in-process over ASGI.

    Args:
        signed_in: sign in first (the signIn takes a traceNo of its own in the ledger).
    """
    sim = sim or BackendSimulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://sim") as http:
        client = SimClient(sim, http)
        if signed_in:
            await client.sign_in()
        yield client
