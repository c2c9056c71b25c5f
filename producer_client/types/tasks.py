"""Task records from ``POST /producer/tasks`` and the completion rule (CONTRACT §4.3)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from producer_client._exceptions import TaskFailedError
from producer_client.types.responses import AudioResult, ErrorInfo, Number, _Tolerant

DONE_ITEM_STATES = frozenset({"succeeded", "complete"})
"""Item states that, with a media URL, mean the item is final."""


class TaskOutcome(StrEnum):
    """Where a task stands: still running, finished with success, or finished without."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TaskRecord(_Tolerant):
    """One task as returned by ``tasks.retrieve`` / ``tasks.retrieve_batch``.

    ``response`` is the submitting endpoint's result body, kept as a plain dict because
    it may belong to any endpoint; :meth:`audio_result` reads it as an audios result.
    """

    id: str
    type: str | None = None
    trace_id: str | None = None
    request: dict[str, Any] = {}
    created_at: Number = None
    started_at: Number = None
    finished_at: Number = None
    elapsed: Number = None
    response: dict[str, Any] | None = None
    mongo_id: str | None = Field(default=None, alias="_id")
    user_id: str | None = None
    actor_user_id: str | None = None
    api_id: str | None = None
    application_id: str | None = None
    credential_id: str | None = None
    authorization_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _tolerate_drift(cls, body: Any) -> Any:
        if not isinstance(body, dict):
            return body
        body = {**body, "request": body.get("request") or {}}
        # One doc version names the elapsed time "duration".
        if "elapsed" not in body and "duration" in body:
            body["elapsed"] = body["duration"]
        return body

    @property
    def outcome(self) -> TaskOutcome:
        """CONTRACT §4.3's recommended rule.

        Done when ``finished_at`` is set or ``response.success`` is a boolean. Succeeded
        when ``success`` is true, or when it is missing (§9 Q4), there is no ``error``
        and the data show a result: for songs (``type`` "audios" or unknown) every item
        in a done state with an ``audio_url``/``stems_url``; for the quick endpoints
        (upload, lyrics, wav, videos), whose data carry no item state, any data at all.
        A preview ``audio_url`` on a task that is not done never counts.
        ``success: false`` with playable items (Nexior's "partial" case) is FAILED here;
        the items stay readable via :meth:`audio_result`, so a caller may still collect
        them deliberately.
        """
        response = self.response or {}
        success = response.get("success")
        if self.finished_at is None and not isinstance(success, bool):
            return TaskOutcome.PENDING
        if success is True:
            return TaskOutcome.SUCCEEDED
        if success is None and self._result_without_flag(response):
            return TaskOutcome.SUCCEEDED
        return TaskOutcome.FAILED

    def _result_without_flag(self, response: dict[str, Any]) -> bool:
        """Whether a finished response without ``success`` holds a result."""
        if response.get("error"):
            return False
        if self.type in (None, "audios"):
            return _all_items_final(self.audio_result())
        return bool(response.get("data"))

    @property
    def error_message(self) -> str | None:
        """Why the task failed (None unless it did): error message, error string, or a default."""
        if self.outcome is not TaskOutcome.FAILED:
            return None
        error = self.audio_result().error
        return _message_of(error) or "Task failed"

    def audio_result(self) -> AudioResult:
        """``response`` read as an audios result (empty when there is none yet)."""
        return AudioResult.model_validate(self.response or {})

    def raise_for_failure(self) -> TaskRecord:
        """Return ``self`` unless the task failed; then raise :class:`TaskFailedError`."""
        if self.outcome is TaskOutcome.FAILED:
            raise TaskFailedError(self)
        return self


def _all_items_final(result: AudioResult) -> bool:
    items = result.data
    return bool(items) and all(
        (item.state or "").lower() in DONE_ITEM_STATES and bool(item.audio_url or item.stems_url)
        for item in items
    )


def _message_of(error: ErrorInfo | None) -> str | None:
    if error is None:
        return None
    return error.message or error.code


class TaskBatch(_Tolerant):
    """The reply of ``retrieve_batch``: matching records and how many matched."""

    items: list[TaskRecord] = []
    count: int = 0

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, body: Any) -> Any:
        if not isinstance(body, dict):
            return body
        items = body.get("items") or []
        count = body.get("count")
        return {**body, "items": items, "count": len(items) if count is None else count}
