"""POS lanes in one journal (schema v8, issue 16): which lane a row belongs to, and the filter on it.

One daemon may serve several POS lanes, each with its own PIN pad, ``deviceNo`` and ``shopNo``,
and one journal file. The rows a lane creates in ``transactions``, ``pos_queries``,
``key_calls`` and ``pos_inquiries`` carry its name in their ``lane`` column; a reversal belongs
to its transaction's lane, a backend call to its original's. ``NULL`` is the **default lane**:
every row written before version 8, and every row of a one-lane configuration, so a one-lane
journal writes exactly what it wrote before lanes existed. A named lane's rows hold its name,
never ``""`` (a ``CHECK`` refuses it).

:class:`LaneFilter` is "the rows of one lane" (``lane IS ?``: ``NULL`` for the default lane);
``None`` where a filter is taken means every lane. The tools spell the default lane
:data:`DEFAULT_LANE_NAME`, which no named lane may be called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_LANE_NAME", "LaneFilter", "check_lane_name", "lane_clause"]

DEFAULT_LANE_NAME: Final = "default"
"""How the tools name the default lane (``--lane default``: the rows whose ``lane`` is ``NULL``)."""

#: A lane name: short, printable, no spaces, so it reads well in a table and a log line.
_LANE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def check_lane_name(name: str) -> str:
    """``name`` if it can name a lane: 1 to 32 of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit.

    Raises:
        ValueError: it cannot; the message names the rule.
    """
    if not _LANE_NAME.fullmatch(name):
        raise ValueError(
            f"lane name {name!r}: use 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class LaneFilter:
    """The rows of one lane: those whose ``lane`` column holds :attr:`value` (``None``: the default lane).

    Build one with :meth:`default`, :meth:`named` or :meth:`parse` (the tools' ``--lane``).
    """

    value: str | None

    @classmethod
    def default(cls) -> LaneFilter:
        """The default lane's rows (``lane IS NULL``)."""
        return cls(None)

    @classmethod
    def named(cls, name: str) -> LaneFilter:
        """The rows of the lane called ``name``.

        Raises:
            ValueError: ``name`` cannot name a lane (:func:`check_lane_name`), or it is
                :data:`DEFAULT_LANE_NAME`, which means the default lane's ``NULL``.
        """
        if check_lane_name(name) == DEFAULT_LANE_NAME:
            raise ValueError(f"lane name {name!r} is the default lane's: a named lane needs another name")
        return cls(name)

    @classmethod
    def parse(cls, text: str) -> LaneFilter:
        """``--lane``: :data:`DEFAULT_LANE_NAME` for the default lane, else a lane's name.

        Raises:
            ValueError: ``text`` cannot name a lane.
        """
        return cls.default() if text == DEFAULT_LANE_NAME else cls.named(text)

    @property
    def label(self) -> str:
        """The lane as the tools print it: its name, or :data:`DEFAULT_LANE_NAME`."""
        return DEFAULT_LANE_NAME if self.value is None else self.value


def lane_clause(lanes: LaneFilter | None, column: str = "lane") -> tuple[str, tuple[str | None, ...]]:
    """``" AND <column> IS ?"`` and its parameter for ``lanes``; nothing for ``None`` (every lane).

    ``IS`` (not ``=``) so that the default lane's ``NULL`` matches; SQLite uses an index for it
    as for ``=``. ``column`` is a literal of the caller (it is pasted into the SQL).
    """
    if lanes is None:
        return "", ()
    return f" AND {column} IS ?", (lanes.value,)
