"""The central poller: the always-on safety net that finishes every in-flight task.

One poller serves one API token. Each round it takes the in-flight tasks whose
poll time has come (oldest first, up to ``batch_size``), asks the provider about
all of them in **one** ``retrieve_batch`` call — within the limiter's poll budget,
so the request rate stays at or under the provider's 1/s however many songs are
in flight — and then:

* a finished task (CONTRACT §4.3 rule, implemented by the client) is claimed and
  resumed (:mod:`workers.completion.resume`);
* a running task is polled again later, backing off from ``first_poll_after_s``
  up to ``max_interval_s``;
* a task past its deadline is claimed and resumed as ``expired``, which makes the
  step fail with a clear message instead of waiting forever;
* a continuation claimed more than ``reclaim_after_s`` ago whose ``collect`` never
  reported back (its message was lost with a killed worker) is put back to be polled
  and resumed again; ``collect`` is idempotent, so a merely slow one costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from workers.completion.continuations import Continuation, ContinuationStore
from workers.completion.outcome import ProviderOutcome

log = structlog.get_logger(__name__)

ResumeFn = Callable[[Continuation, ProviderOutcome], None]


class RecordLike(Protocol):
    """What the poller needs of a provider task record (``producer_client.TaskRecord``)."""

    id: str

    @property
    def outcome(self) -> Any: ...

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


FetchFn = Callable[[Sequence[str]], Sequence[RecordLike]]
"""Ask the provider about several task ids (``client.tasks.retrieve_batch(ids).items``)."""

BudgetFn = Callable[[], float]
"""Take one poll from the shared budget: 0 when granted, else seconds to wait."""


@dataclass
class PollReport:
    """What one round did, for logs, tests and the status display."""

    polled: int = 0
    finished: int = 0
    expired: int = 0
    still_running: int = 0
    waited_s: float = 0.0
    reclaimed: int = 0
    resumed: list[str] = field(default_factory=list)


@dataclass
class Poller:
    """Polls one token's in-flight tasks with ``retrieve_batch`` and resumes finished ones."""

    store: ContinuationStore
    token_id: str
    fetch: FetchFn
    take_poll_budget: BudgetFn
    resume: ResumeFn
    batch_size: int = 100
    first_poll_after_s: float = 10.0
    max_interval_s: float = 30.0
    reclaim_after_s: float | None = None
    """Put back continuations claimed this long ago and not finished (None: never)."""
    clock: Callable[[], float] = time.time
    _next_reclaim_at: float = field(default=0.0, init=False, repr=False)

    def poll_once(self) -> PollReport:
        """Run one round: at most one ``retrieve_batch`` request."""
        report = PollReport()
        self._reclaim_lost(report)
        ids = self.store.due(self.token_id, now=self.clock(), limit=self.batch_size)
        if not ids:
            return report
        wait_s = self.take_poll_budget()
        if wait_s > 0:
            report.waited_s = wait_s
            return report
        records = {r.id: r for r in self.fetch(ids)}
        report.polled = len(ids)
        self._settle(ids, records, report)
        return report

    def _settle(self, ids: list[str], records: dict[str, RecordLike], report: PollReport) -> None:
        now = self.clock()
        later: dict[str, float] = {}
        for cont in self.store.load_many(ids):
            if cont is None:
                continue  # claimed meanwhile by a callback
            record = records.get(cont.api_task_id)
            if record is not None and _outcome_name(record) != "pending":
                outcome = ProviderOutcome.from_record(
                    _outcome_name(record), record.model_dump(mode="json")
                )
                self._finish(cont, outcome, report)
            elif now >= cont.deadline_at:
                waited_s = round(now - cont.submitted_at, 1)
                self._finish(cont, ProviderOutcome.expired(cont.api_task_id, waited_s), report)
                report.expired += 1
            else:
                later[cont.api_task_id] = now + self._next_interval(cont, now)
                report.still_running += 1
        self.store.reschedule(self.token_id, later)

    def _reclaim_lost(self, report: PollReport) -> None:
        # Checked a few times per reclaim period, not every round: it is a safety net.
        now = self.clock()
        if self.reclaim_after_s is None or now < self._next_reclaim_at:
            return
        self._next_reclaim_at = now + min(self.reclaim_after_s / 4, 30.0)
        stale = self.store.stale_claims(
            self.token_id, claimed_before=now - self.reclaim_after_s, limit=self.batch_size
        )
        for api_task_id in stale:
            if self.store.unclaim(api_task_id, self.token_id, poll_at=now):
                report.reclaimed += 1
                log.warning(
                    "continuation_reclaimed",
                    api_task_id=api_task_id,
                    reason="collect did not finish",
                )

    def _finish(self, cont: Continuation, outcome: ProviderOutcome, report: PollReport) -> None:
        claimed = self.store.claim(cont.api_task_id, self.token_id, at=self.clock())
        if claimed is None:
            return  # a callback won the race
        try:
            self.resume(claimed, outcome)
        except Exception:
            # The claim took the continuation out of Redis: put it back, or a failed
            # publish (broker down) would leave the step waiting forever.
            self.store.save(claimed, first_poll_at=self.clock() + self.first_poll_after_s)
            raise
        report.finished += 1
        report.resumed.append(claimed.api_task_id)

    def _next_interval(self, cont: Continuation, now: float) -> float:
        # Back off with the task's age: young tasks are rarely done, old ones soon.
        age = max(0.0, now - cont.submitted_at)
        return min(self.max_interval_s, max(self.first_poll_after_s, age / 4))

    def run(self, stop: threading.Event, *, idle_sleep_s: float = 0.5) -> None:
        """Poll until ``stop`` is set; never faster than the shared poll budget allows."""
        while not stop.is_set():
            try:
                report = self.poll_once()
            except Exception:  # keep the safety net up; the next round retries
                log.exception("poll_round_failed", token_id=self.token_id)
                stop.wait(idle_sleep_s)
                continue
            if report.polled:
                log.info("poll_round", **_report_fields(report))
            pause = report.waited_s if report.waited_s else (0.0 if report.polled else idle_sleep_s)
            stop.wait(min(max(pause, 0.0), 5.0))


def _outcome_name(record: RecordLike) -> str:
    value = record.outcome
    return str(getattr(value, "value", value)).lower()


def _report_fields(report: PollReport) -> dict[str, Any]:
    return {
        "polled": report.polled,
        "finished": report.finished,
        "expired": report.expired,
        "still_running": report.still_running,
    }
