"""Which functions a journal sends to its thread: each one is a hop (tests of the intake's single hop)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from misbridge.journal.store import Journal


@contextmanager
def journal_hops(journal: Journal) -> Iterator[list[str]]:
    """The names of the functions sent to the journal thread meanwhile (the real executor runs them)."""
    executor = journal._executor
    submit = executor.submit
    sent: list[str] = []

    def counted(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(getattr(fn, "func", fn), "__name__", repr(fn)))
        return submit(fn, *args, **kwargs)

    executor.submit = counted  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        executor.submit = submit  # type: ignore[method-assign]
