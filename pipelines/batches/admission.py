"""What the admit script answers, decoded once: a row to run now, or why there is none.

``batch_admit.lua`` replies ``{1, row, attempt, cells, admitted_at}`` or a bare code;
:func:`decode_admit` turns the reply into an :class:`Admission` or a
:class:`NotAdmitted` member, so no caller compares the script's numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["Admission", "NotAdmitted", "decode_admit"]


class NotAdmitted(Enum):
    """Why no row of a batch was admitted (values: the script's reply codes)."""

    NOTHING_LEFT = 0
    """Nothing (more) to feed from this batch: it left the active rotation."""
    WINDOW_FULL = -1
    """The window is full (another feeder took the last place)."""
    NOT_NOW = 2
    """Not now: the batch is paused, or the scan budget ran out in a run of finished rows."""


@dataclass(frozen=True)
class Admission:
    """A row the feeder may run now."""

    batch_id: str
    row: int
    attempt: int
    cells: list[str]
    admitted_at: float

    @property
    def spend_key(self) -> str:
        """The spend hold of this attempt (a retried row reserves afresh)."""
        return f"row-{self.row}/attempt-{self.attempt}"


_ADMITTED = 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_admit(batch_id: str, reply: Sequence[Any]) -> Admission | NotAdmitted:
    """Decode ``batch_admit.lua``'s reply for ``batch_id``."""
    code = int(reply[0])
    if code != _ADMITTED:
        return NotAdmitted(code)
    _, row, attempt, cells, stamp = reply
    return Admission(
        batch_id, int(row), int(attempt), json.loads(_text(cells)), float(_text(stamp))
    )
