"""What the provider said about a finished task: the one seam between completion and collect.

The poller (a task record from ``retrieve_batch``, or a deadline passed) and the
callback receiver (the endpoint's final body) each build a :class:`ProviderOutcome`;
:func:`~workers.completion.resume.resume` sends it to ``collect`` through Celery as
JSON (:meth:`ProviderOutcome.to_json` / :meth:`ProviderOutcome.from_json`), and
:mod:`workers.operations.collect` reads it through its methods, never key by key.

The JSON keeps the field names of the dicts it replaces (``status``, ``source``,
``record``, ``response``, ``error``), with unset fields left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from producer_client import AudioResult, TaskRecord

OutcomeStatus = Literal["succeeded", "failed", "expired"]
"""``succeeded``/``failed``: the provider finished the task; ``expired``: we stopped waiting."""

OutcomeSource = Literal["poller", "callback"]
"""Who learnt the outcome first."""

RECORD_TIMINGS = ("created_at", "started_at", "finished_at", "elapsed")
"""The provider's task-record times that a step's result keeps (seconds)."""


class OutcomeError(BaseModel):
    """Why a task ended without a result, when we decided it (a passed deadline)."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class ProviderOutcome(BaseModel):
    """A finished (or abandoned) provider task, as the poller or a callback saw it.

    Exactly one of ``record`` (the poller's task record), ``response`` (a callback's
    body) or ``error`` (an ``expired`` outcome) is normally set.
    """

    model_config = ConfigDict(frozen=True)

    status: OutcomeStatus
    source: OutcomeSource
    record: dict[str, Any] | None = None
    """The provider's task record (``TaskRecord`` as JSON), when the poller fetched it."""
    response: dict[str, Any] | None = None
    """The endpoint's final result body, when a callback delivered it."""
    error: OutcomeError | None = None
    """Our own reason, for an ``expired`` outcome."""

    @classmethod
    def from_record(
        cls, status: str, record: Mapping[str, Any], *, source: OutcomeSource = "poller"
    ) -> ProviderOutcome:
        """The outcome of a finished task record (``status``: its outcome name).

        ``source`` says who learnt it first: the poller, or a callback that the
        receiver then confirmed by retrieving this record.
        """
        return cls.model_validate({"status": status, "record": dict(record), "source": source})

    @classmethod
    def from_callback(cls, body: Mapping[str, Any]) -> ProviderOutcome:
        """A callback body (the endpoint's final result): succeeded only on ``success: true``."""
        status: OutcomeStatus = "succeeded" if body.get("success") is True else "failed"
        return cls(status=status, response=dict(body), source="callback")

    @classmethod
    def expired(cls, api_task_id: str, waited_s: float) -> ProviderOutcome:
        """The poller gave up: the task was not finished by its deadline."""
        message = f"provider task {api_task_id} not finished after {waited_s}s"
        return cls(
            status="expired",
            error=OutcomeError(code="deadline_exceeded", message=message),
            source="poller",
        )

    def to_json(self) -> dict[str, Any]:
        """The outcome as JSON-ready data, for a Celery message."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProviderOutcome:
        """Rebuild an outcome from :meth:`to_json`'s data (raises ``ValidationError``)."""
        return cls.model_validate(dict(data))

    @property
    def succeeded(self) -> bool:
        """Whether the provider reports a result to collect."""
        return self.status == "succeeded"

    def failure(self) -> tuple[str, str]:
        """``(code, message)`` of an outcome that did not succeed, with safe defaults."""
        if self.status == "expired":
            err = self.error
            return (err.code, err.message) if err else ("deadline_exceeded", "expired")
        response = (self.record or {}).get("response") if self.record else self.response
        found = (response or {}).get("error")
        code, message = (
            (found.get("code"), found.get("message")) if isinstance(found, dict) else (None, found)
        )
        return (
            str(code or "provider_task_failed"),
            str(message or "the provider reported the task failed"),
        )

    def audio_result(self) -> AudioResult:
        """The songs of a succeeded ``/audios`` task, from the record or the callback body."""
        if self.record is not None:
            return TaskRecord.model_validate(self.record).audio_result()
        return AudioResult.model_validate(self.response or {})

    def record_timings(self) -> dict[str, float]:
        """The task record's numeric times (:data:`RECORD_TIMINGS`); none from a callback."""
        record = self.record or {}
        return {
            name: float(record[name])
            for name in RECORD_TIMINGS
            if isinstance(record.get(name), int | float)
        }


__all__ = ["RECORD_TIMINGS", "OutcomeError", "OutcomeSource", "OutcomeStatus", "ProviderOutcome"]
