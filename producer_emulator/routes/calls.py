"""What every endpoint handler receives, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from producer_emulator.faults.injector import FaultPlan
from producer_emulator.jobs.callbacks import CallbackSender
from producer_emulator.jobs.generation import Runner
from producer_emulator.state import EmulatorState

Reply = tuple[int, dict[str, Any]]
"""HTTP status and JSON body of a handled request."""


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated, rate-limited, parsed request to a ``/producer/...`` endpoint."""

    state: EmulatorState
    runner: Runner
    callbacks: CallbackSender
    endpoint: str
    token: str
    trace_id: str
    body: dict[str, Any]
    base_url: str
    plan: FaultPlan

    @property
    def reply_is_faulted(self) -> bool:
        """True when the reply will be replaced by a fault, so nothing should wait for work."""
        return self.plan.http is not None
