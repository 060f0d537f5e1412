"""In-process collaborators for core's unit tests: a scripted PIN pad and a scripted backend.

Both implement core's protocols (``PinPadDriver``, ``CardBackend``) and nothing more: no link,
no HTTP, no simulator process. The journal the tests use is a real one on ``tmp_path``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from misbridge.backend.client import BackendReply
from misbridge.device.base import (
    CardRead,
    CodeEntry,
    CodeOrigin,
    CodeRead,
    EncryptedPin,
    PadInfo,
    ProgressCallback,
    TransKind,
)

#: One scripted backend step: a reply body (its ``traceNo`` filled in from the request), or an error to raise.
Step = dict[str, Any] | BaseException

APPROVED: dict[str, Any] = {"returnCode": "00", "returnDesc": "approved", "orderNo": "ORD1", "paidAmount": 10}


def reply(code: str, desc: str = "") -> dict[str, Any]:
    """A backend reply body with ``code``."""
    return {"returnCode": code, "returnDesc": desc or f"answer {code}", "orderNo": ""}


class ScriptedPad:
    """A connected pad that reads one card and one PIN block, or fails as the test scripts.

    Attributes:
        card_error: raised by the next ``read_card`` (then cleared).
        release: ``read_card`` waits for it; clear it to keep a customer at the pad (a running sale).
        card_prompts: how many times a customer was asked for a card.
        card_asked: set once a customer was asked for a card.
        code_error: raised by the next ``read_code`` (then cleared); code: what it reads.
        code_prompts: the ``(prompt, amount_minor)`` of every ``read_code``.
        choice: the index ``choose`` answers, or an error it raises (then 0 again).
        offered: the option labels of every ``choose``.
        card: what ``read_card`` returns; pin_block: what ``read_pin`` returns.
        shown: every card and PIN screen, ``("card" | "pin", kind, reference, amount_minor)``.
    """

    def __init__(self, *, connected: bool = True) -> None:
        self.on_progress: ProgressCallback | None = None
        self.on_link_event: Callable[[object], None] | None = None
        self.is_connected = connected
        self.card_error: BaseException | None = None
        self.release = asyncio.Event()
        self.release.set()
        self.card_asked = asyncio.Event()
        self.card_prompts = 0
        self.code = "280123121234567890"
        self.code_error: BaseException | None = None
        self.code_prompts: list[tuple[str, int]] = []
        self.choice: int | BaseException = 0
        self.offered: list[list[str]] = []
        self.card = CardRead("00", "622588****1234", "AA" * 8, "BB" * 8, "2912")
        self.pin_block = "CC" * 8
        self.shown: list[tuple[str, TransKind, str, int]] = []
        self.master_key_kcv = ""
        self.working_key_kcv = ""
        self.key_error: BaseException | None = None
        self.keys_loaded: list[tuple[int, str, str]] = []

    @property
    def connected(self) -> bool:
        """Whether the link is up (the test decides)."""
        return self.is_connected

    @property
    def info(self) -> PadInfo | None:
        """A fixed identity while connected."""
        return self._info() if self.is_connected else None

    def _info(self) -> PadInfo:
        return PadInfo("FAKE", "0.1", "F001", 1, self.master_key_kcv, self.working_key_kcv)

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109 - the protocol's signature
        """Connected or not, at once."""
        return self.is_connected

    async def device_info(self) -> PadInfo:
        """The fixed identity, with the KCVs of the keys loaded."""
        return self._info()

    async def read_card(
        self,
        amount_minor: int,
        timeout_s: int,
        prompt: str = "",
        *,
        kind: TransKind = TransKind.SALE,
        reference: str = "",
    ) -> CardRead:
        """A card, once :attr:`release` is set; or :attr:`card_error`."""
        self.card_prompts += 1
        self.shown.append(("card", kind, reference, amount_minor))
        self.card_asked.set()
        await self.release.wait()
        if self.card_error is not None:
            err, self.card_error = self.card_error, None
            raise err
        return self.card

    async def read_pin(
        self,
        amount_minor: int,
        timeout_s: int,
        prompt: str = "",
        key_index: int = 1,
        *,
        kind: TransKind = TransKind.SALE,
        reference: str = "",
    ) -> EncryptedPin:
        """:attr:`pin_block`."""
        self.shown.append(("pin", kind, reference, amount_minor))
        return EncryptedPin(self.pin_block, key_index)

    async def read_code(
        self, prompt: str, timeout_s: int, amount_minor: int = 0, entry: CodeEntry = CodeEntry.ANY
    ) -> CodeRead:
        """:attr:`code`, scanned; or :attr:`code_error`."""
        self.code_prompts.append((prompt, amount_minor))
        if self.code_error is not None:
            err, self.code_error = self.code_error, None
            raise err
        return CodeRead(self.code, CodeOrigin.QR_CODE)

    async def choose(self, prompt: str, options: Sequence[str], timeout_s: int) -> int:
        """:attr:`choice` (an index, or an error raised once)."""
        self.offered.append(list(options))
        choice, self.choice = self.choice, 0
        if isinstance(choice, BaseException):
            raise choice
        return choice

    async def cancel(self) -> None:
        """Nothing runs on its own."""

    async def display_text(self, text: str, seconds: int = 0) -> None:
        """Shown nowhere."""

    async def status(self) -> str:
        """Always idle."""
        return "idle"

    async def load_working_key(self, key_index: int, enc_key_hex: str, kcv_hex: str) -> None:
        """Recorded in :attr:`keys_loaded`; slot 1's KCV becomes ``kcv_hex``; or :attr:`key_error` (once)."""
        if self.key_error is not None:
            err, self.key_error = self.key_error, None
            raise err
        self.keys_loaded.append((key_index, enc_key_hex, kcv_hex))
        if key_index == 1:
            self.working_key_kcv = kcv_hex

    async def load_master_key(self, enc_key_hex: str, kcv_hex: str) -> None:
        """The master KCV becomes ``kcv_hex``, the working key is dropped; or :attr:`key_error` (once)."""
        if self.key_error is not None:
            err, self.key_error = self.key_error, None
            raise err
        self.master_key_kcv, self.working_key_kcv = kcv_hex, ""


class ScriptedBackend:
    """Answers each action from its script, in order; the last step of an action repeats.

    Attributes:
        calls: every ``(action, body)`` submitted, in order.
    """

    def __init__(self) -> None:
        self._script: defaultdict[str, deque[Step]] = defaultdict(deque)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.signed_with: list[SecretStr | None] = []
        self.down = False
        self.probe_answers = True
        self.probes = 0

    # -- reachability, as BackendClient records it ----------------------------------------

    @property
    def known_down(self) -> bool:
        """What the test set: the last call could not connect."""
        return self.down

    def last_ok_age_s(self) -> float | None:
        """0 while up (it just answered), None while down."""
        return None if self.down else 0.0

    async def probe(self, timeout_s: float = 1.0) -> bool:
        """Counted; answers :attr:`probe_answers` (and clears :attr:`down` when it does)."""
        self.probes += 1
        if self.probe_answers:
            self.down = False
        return self.probe_answers

    def will(self, action: str, *steps: Step) -> None:
        """Append ``steps`` to what ``action`` answers."""
        self._script[action].extend(steps)

    def actions(self) -> list[str]:
        """The actions submitted, in order."""
        return [action for action, _ in self.calls]

    async def submit(
        self, action: str, body: Mapping[str, Any], *, signing_key: SecretStr | None = None
    ) -> BackendReply:
        """The next scripted step for ``action`` (the key it was signed with recorded)."""
        self.calls.append((action, dict(body)))
        self.signed_with.append(signing_key)
        queue = self._script[action]
        if not queue:
            raise AssertionError(f"the test scripted no answer for {action}")
        step = queue.popleft() if len(queue) > 1 else queue[0]
        await asyncio.sleep(0)
        if isinstance(step, BaseException):
            raise step
        return BackendReply(action, {"traceNo": body["traceNo"], **step}, {})
