"""The simulated pad's whole-book prompts: READ_CODE (§5.1) and CHOOSE (§5.2), and what the
screen shows for a card or PIN step (§4 TRANS_TYPE, REFERENCE).

Each prompt takes the next scripted customer of its own queue (:class:`ScriptedCode`,
:class:`ScriptedChoice`: from the control channel, a scenario or a test), else asks the
technician in interactive mode, else behaves as a cooperative customer: shows the book's
example code, picks the first option.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from misbridge.link import (
    Choice,
    Choose,
    CodeData,
    CodeInput,
    CodeSource,
    Message,
    Progress,
    ProgressStage,
    ReadCode,
    Result,
    ResultCode,
    TransType,
)
from simulators.pinpad.customer import (
    DEFAULT_CODE,
    ChoiceAction,
    CodeAction,
    CodeSourceName,
    ScriptedChoice,
    ScriptedCode,
)

Send = Callable[[Message], None]
#: Waits as long as a customer who walks away makes the pad wait (TIMEOUT_S, capped).
Wait = Callable[[int], Awaitable[None]]
Ask = Callable[[str], Awaitable[str]]

_SOURCES: dict[str, CodeSource] = {
    CodeSourceName.QR: CodeSource.QR_CODE,
    CodeSourceName.BARCODE: CodeSource.BARCODE,
    CodeSourceName.KEYPAD: CodeSource.KEYPAD,
}
_TRANS_NAMES: dict[str, str] = {TransType.SALE: "SALE", TransType.VOID: "VOID", TransType.REFUND: "REFUND"}


def money(amount_minor: int) -> str:
    """``4080`` -> ``40.80``."""
    return f"{amount_minor // 100}.{amount_minor % 100:02d}"


def confirmation(trans_type: str, amount_minor: int, reference: str) -> str:
    """The screen line of a card or PIN step: ``REFUND 40.80 of 9900...``; a sale shows the amount only."""
    if trans_type == TransType.SALE and not reference:
        return money(amount_minor)
    line = f"{_TRANS_NAMES.get(trans_type, '?')} {money(amount_minor)}"
    return f"{line} of {reference}" if reference else line


class PromptSteps:
    """READ_CODE and CHOOSE of one pad.

    Args:
        send: sends a message to the host.
        wait: the wait of a customer who walks away (then the pad answers TIMEOUT).
        ask: interactive mode: asks the technician when no scripted customer is queued.
        scanner: whether the pad has a code scanner; without one, codes are keyed in.
    """

    def __init__(self, send: Send, wait: Wait, *, ask: Ask | None = None, scanner: bool = True) -> None:
        self._send = send
        self._wait = wait
        self._ask = ask
        self.scanner = scanner
        self.codes: collections.deque[ScriptedCode] = collections.deque()
        self.choices: collections.deque[ScriptedChoice] = collections.deque()

    def enqueue(self, script: ScriptedCode | ScriptedChoice) -> None:
        """Queue the customer of a later READ_CODE or CHOOSE (first in, first out)."""
        if isinstance(script, ScriptedCode):
            self.codes.append(script)
        else:
            self.choices.append(script)

    async def read_code(self, msg: ReadCode) -> None:
        """Scan or key in a code: CODE_DATA, or RESULT 01 / 02 / 10."""
        rid = msg.request_id
        if msg.code_input == CodeInput.SCAN_ONLY and not self.scanner:
            self._send(Result(rid, ResultCode.NO_SCANNER, "no scanner"))
            return
        self._send(Progress(rid, ProgressStage.WAITING_FOR_CODE))
        script = self.codes.popleft() if self.codes else await self._ask_code(msg)
        if script.action is CodeAction.NONE:
            await self._wait(msg.timeout_s)
            self._send(Result(rid, ResultCode.TIMEOUT, "no code"))
            return
        await asyncio.sleep(script.hesitate_s)
        if script.action is CodeAction.CANCEL:
            self._send(Result(rid, ResultCode.CUSTOMER_CANCEL, "cancelled"))
            return
        self._send(CodeData(rid, script.code, self._source(script, msg.code_input)))

    def _source(self, script: ScriptedCode, code_input: str) -> str:
        """Scanned as scripted, unless the pad or the command allows the keypad only (or scans only)."""
        if code_input == CodeInput.KEYPAD_ONLY or (code_input != CodeInput.SCAN_ONLY and not self.scanner):
            return CodeSource.KEYPAD
        if code_input == CodeInput.SCAN_ONLY and script.source == CodeSourceName.KEYPAD:
            return CodeSource.QR_CODE
        return _SOURCES[script.source]

    async def choose(self, msg: Choose) -> None:
        """Pick an option: CHOICE, or RESULT 01 / 02."""
        rid = msg.request_id
        self._send(Progress(rid, ProgressStage.WAITING_FOR_CHOICE))
        script = self.choices.popleft() if self.choices else await self._ask_choice(msg)
        if script.action is ChoiceAction.NONE or script.option > len(msg.options):
            await self._wait(msg.timeout_s)  # a key with no option is ignored, like no key at all
            self._send(Result(rid, ResultCode.TIMEOUT, "no choice"))
            return
        await asyncio.sleep(script.hesitate_s)
        if script.action is ChoiceAction.CANCEL:
            self._send(Result(rid, ResultCode.CUSTOMER_CANCEL, "cancelled"))
            return
        self._send(Choice(rid, script.option))

    async def _ask_code(self, msg: ReadCode) -> ScriptedCode:
        """Interactive mode: the technician types the code (or what the customer does)."""
        if self._ask is None:
            return ScriptedCode()
        amount = f" {money(msg.amount_minor)}" if msg.amount_minor else ""
        source = CodeSourceName.KEYPAD if msg.code_input == CodeInput.KEYPAD_ONLY else CodeSourceName.QR
        question = f"READ_CODE{amount} {msg.prompt}: code [{DEFAULT_CODE}] or cancel / none: "
        while True:
            answer = await self._ask(question)
            if answer in (CodeAction.CANCEL, CodeAction.NONE):
                return ScriptedCode(action=answer)
            try:
                return ScriptedCode(answer or DEFAULT_CODE, source)
            except ValueError as err:
                question = f"{err}; code: "

    async def _ask_choice(self, msg: Choose) -> ScriptedChoice:
        """Interactive mode: the technician presses a key (or says what the customer does)."""
        if self._ask is None:
            return ScriptedChoice()
        shown = "  ".join(f"{number}) {label}" for number, label in enumerate(msg.options, start=1))
        question = f"CHOOSE {msg.prompt}: {shown}; key [1] or cancel / none: "
        while True:
            answer = await self._ask(question)
            if answer in (ChoiceAction.CANCEL, ChoiceAction.NONE):
                return ScriptedChoice(action=answer)
            if not answer or (answer.isdigit() and 1 <= int(answer) <= len(msg.options)):
                return ScriptedChoice(int(answer or "1"))
            question = f"key 1..{len(msg.options)}: "
