"""What core needs from the e-Buy backend, as protocols (``BackendClient`` fits both).

Core depends on these shapes only, so it can be driven by a scripted backend in tests and
imports no backend module itself.
"""

from __future__ import annotations

from collections.abc import Mapping
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
