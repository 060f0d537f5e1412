"""What core needs from the e-Buy backend (``BackendClient`` fits) and, for a QR sale, the pad, as protocols.

Core depends on these shapes only, so it can be driven by a scripted backend in tests and
imports no backend module itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class BackendReplyLike(Protocol):
    """What core reads from a definite backend reply."""

    @property
    def body(self) -> dict[str, Any]: ...

    @property
    def return_code(self) -> str: ...


class Backend(Protocol):
    """The one backend call inquiry and voids need (``BackendClient.submit``).

    Raises ``BackendNotSent`` when the request provably never left, ``BackendOutcomeUnknown``
    when it may have been processed.
    """

    async def submit(self, action: str, body: Mapping[str, Any]) -> BackendReplyLike: ...


class CardReply(BackendReplyLike, Protocol):
    """A definite reply to a card action."""

    @property
    def approved(self) -> bool: ...


class CardBackend(Protocol):
    """The backend as the service uses it: card actions, and the inquiries and voids of :class:`Backend`."""

    async def submit(self, action: str, body: Mapping[str, Any]) -> CardReply: ...


class CodePad(Protocol):
    """The PIN pad as a QR sale uses it (``PinPadDriver`` fits): is it there, read a code, offer a choice."""

    @property
    def connected(self) -> bool: ...

    async def read_code(self, prompt: str, timeout_s: int, amount_minor: int = 0) -> CodeReadLike: ...

    async def choose(self, prompt: str, options: Sequence[str], timeout_s: int) -> int: ...


class CodeReadLike(Protocol):
    """What a QR sale reads from a code the pad returned (``CodeRead``)."""

    @property
    def text(self) -> str: ...
