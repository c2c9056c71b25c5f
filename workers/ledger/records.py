"""What the ledger stores: an entry's state, its typed record, and the step key scheme."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class State(StrEnum):
    """The state of a ledger entry."""

    RESERVED = "reserved"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"


class Claim(StrEnum):
    """What :meth:`Ledger.reserve` found: what the caller may do next."""

    NEW = "new"
    RESUME_RESERVED = "resume_reserved"
    BUSY = "busy"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"


def _opt_float(value: str | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class LedgerEntry:
    """One step's record, as stored (times are Redis epoch seconds)."""

    key: str
    state: State
    fingerprint: str
    owner: str
    reserved_at: float
    lease_until: float
    post_started_at: float | None = None
    api_task_id: str | None = None
    submitted_at: float | None = None
    adopted: bool = False
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    finished_at: float | None = None
    takeovers: int = 0
    previous_owner: str | None = None
    recollect: bool = False
    """Failed while collecting a result the provider finished: the step was paid."""

    @property
    def paid(self) -> bool:
        """Whether the provider charged for this step: done, or failed after it finished."""
        return self.state is State.DONE or (self.state is State.FAILED and self.recollect)

    @property
    def needs_adoption(self) -> bool:
        """Whether a POST may have reached the provider without being recorded."""
        return self.state is State.RESERVED and self.post_started_at is not None

    @classmethod
    def from_flat(cls, key: str, flat: list[Any]) -> LedgerEntry:
        """Build from an ``HGETALL`` reply given as a flat field/value list."""
        return cls.from_mapping(key, dict(zip(flat[::2], flat[1::2], strict=True)))

    @classmethod
    def from_mapping(cls, key: str, raw: Mapping[Any, Any]) -> LedgerEntry:
        """Build from an ``HGETALL`` mapping (bytes or str)."""
        f = {as_text(k): as_text(v) for k, v in raw.items()}
        result = f.get("result")
        return cls(
            key=key,
            state=State(f["state"]),
            fingerprint=f["fingerprint"],
            owner=f["owner"],
            reserved_at=float(f["reserved_at"]),
            lease_until=float(f["lease_until"]),
            post_started_at=_opt_float(f.get("post_started_at")),
            api_task_id=f.get("api_task_id"),
            submitted_at=_opt_float(f.get("submitted_at")),
            adopted=f.get("adopted") == "1",
            result=None if result is None else json.loads(result),
            error_code=f.get("error_code"),
            error_message=f.get("error_message"),
            finished_at=_opt_float(f.get("finished_at")),
            takeovers=int(f.get("takeovers", 0)),
            previous_owner=f.get("previous_owner"),
            recollect=f.get("recollect") == "1",
        )


class ProviderTask(NamedTuple):
    """One of the provider's recent tasks, as needed to adopt an orphan."""

    api_task_id: str
    fingerprint: str
    created_at: float


def step_key(batch: str, row: int | str, step: str) -> str:
    """Return the derived idempotency key of a pipeline step: ``batch/row/step``."""
    return f"{batch}/{row}/{step}"


def as_text(value: Any) -> str:
    """A Redis reply value as ``str`` (clients may answer bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)
