"""What fault injection may be told: the fault names, rules and probabilities.

An :class:`~producer_emulator.config.EmulatorConfig` carries one :class:`FaultConfig`;
:mod:`producer_emulator.faults.injector` draws a plan from it per request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FaultName = Literal[
    "api_error_500",
    "timeout_504",
    "malformed_body",
    "slow_response",
    "task_failure",
    "task_failure_string",
    "task_failure_partial",
    "callback_drop",
    "callback_duplicate",
    "too_many_requests_429",
    "forbidden_403",
    "used_up_403",
    "token_mismatched_400",
    "token_mismatched_401",
    "api_not_implemented_400",
    "disabled_400",
    "token_expired_401",
    "media_not_found_404",
    "media_wrong_type",
]
"""Every fault a rule may name (the probabilities in :class:`FaultConfig` cover most)."""

Probability = float


class FaultRule(BaseModel):
    """A deterministic fault: fire ``fault`` on requests whose body matches ``when``.

    ``when`` maps body keys to the exact value they must hold, e.g.
    ``{"title": "boom"}``. ``path`` narrows the rule to one endpoint
    (``"/producer/audios"``); ``times`` makes it fire only for the first
    ``times`` matching requests (``None``: every time), which is how a test
    says "fail once, then succeed".

    ``media_not_found_404`` and ``media_wrong_type`` act on the CDN side: on a
    ``GET /media/...`` of a song whose ``title`` and ``audio_id`` match ``when``,
    the file answers 404, or ``text/html`` instead of its type (``path`` is then
    ``"/media"``, or ``None``).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    when: dict[str, Any] = Field(default_factory=dict)
    fault: FaultName
    path: str | None = None
    times: int | None = Field(default=None, ge=1)


class FaultConfig(BaseModel):
    """Random and rule-based failures, drawn from a RNG seeded by ``EmulatorConfig.seed``.

    Probabilities are in 0..1 and are drawn per request (HTTP faults) or per
    task (task and callback faults).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    api_error_500: Probability = Field(
        0.0,
        ge=0,
        le=1,
        description="500 api_error; nothing created.",
    )
    timeout_504: Probability = Field(0.0, ge=0, le=1, description="504 timeout after a delay.")
    timeout_delay_s: float = Field(30.0, ge=0, description="Wait before the 504 (time-scaled).")
    timeout_creates_task: bool = Field(
        True, description="A 504 submission still creates and runs its task (the upstream goes on)."
    )
    malformed_body: Probability = Field(
        0.0, ge=0, le=1, description="200 with a truncated JSON body; the task is created."
    )
    slow_probability: Probability = Field(0.0, ge=0, le=1, description="Chance of a slow reply.")
    slow_response_s: float = Field(0.0, ge=0, description="Extra delay of a slow reply (scaled).")
    task_failure: Probability = Field(
        0.0, ge=0, le=1, description="Task ends with success:false, error object, data []."
    )
    task_failure_string: Probability = Field(
        0.0, ge=0, le=1, description="Task ends with success:false and a bare string error."
    )
    task_failure_partial: Probability = Field(
        0.0, ge=0, le=1, description="Task ends with success:false but a playable item in data."
    )
    callback_drop: Probability = Field(0.0, ge=0, le=1, description="Never deliver the callback.")
    callback_duplicate: Probability = Field(0.0, ge=0, le=1, description="Deliver it twice.")
    callback_delay_s: float = Field(0.0, ge=0, description="Wait before each delivery (scaled).")
    endpoints: list[str] | None = Field(
        None,
        description="Endpoints ('audios', 'tasks' ...) random HTTP faults hit; None = all.",
    )
    rules: list[FaultRule] = Field(default_factory=list)
