"""The feeder: admits batch rows to the workers as capacity allows, fairly across batches.

``feed_once`` admits rows while the number of admitted-but-unfinished rows of every
batch (the *window*) is below its size, which follows the limiter's in-flight cap
(:data:`~pipelines.constants.BATCH_WINDOW_PER_SLOT` rows per slot, or a runtime
override). Each admission takes the next batch of the shared rotation
(``LMOVE`` on the active list), so batches running at the same time get turns in
round-robin whichever feeder (the ``feeder`` service, a worker finishing a row, the
``run`` command) asks. Per row:

1. ``scripts/batch_admit.lua`` atomically picks the row (requeued rows first, then the cursor),
   marks it running and puts it in the window: no two feeders admit a row twice;
2. the row's estimated cost is reserved (:class:`~pipelines.spend.guard.SpendGuard`); a
   refusal gives the row back and pauses the batch (``paused``, reason ``batch_cap`` or
   ``global_cap``), retried every :data:`~pipelines.constants.BATCH_PAUSE_RETRY_S`;
3. the row's canvas is built and published with ``producer.batch.row_done`` at its end
   and ``producer.batch.row_failed`` as its errback (:mod:`pipelines.batches.tasks`);
   they record the row once (``scripts/batch_finish.lua``), settle its spend
   (:mod:`pipelines.batches.settle`) and feed again at once.

Task ids are deterministic (``<batch>:<row>:<step>:<attempt>``), so ``cancel --abandon``
can revoke the steps a row has not reached without storing anything. A row admitted
again (``resume`` after a crash, an abandoned row run again) never pays a step twice
(the ledger); while an earlier canvas of it still has a step at the provider, the row
*waits* (state ``w``, :data:`~pipelines.constants.BATCH_DEFER_S`) instead of starting a
canvas that would pause on the earlier one's continuation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import redis
import structlog
from celery import Celery
from celery.canvas import Signature

from pipelines.batches.admission import Admission, NotAdmitted
from pipelines.batches.ledger_reads import ledger_entries, row_step_keys
from pipelines.batches.settle import settle_all_pending, settle_ended_row, settle_rows
from pipelines.batches.stale import requeue_stale
from pipelines.batches.state import BatchInfo, BatchState, record_key
from pipelines.constants import BATCH_DEFER_S, BATCH_PAUSE_RETRY_S, BATCH_WINDOW_PER_SLOT
from pipelines.specs.canvas import assign_task_ids, build_row_canvas, finish_row_canvas, task_id
from pipelines.spend.guard import SpendGuard
from pipelines.spend.prices import PriceTable
from workers.completion.continuations import ContinuationStore
from workers.ledger import State
from workers.ratelimit import Limiter

__all__ = ["ROW_DONE_TASK", "ROW_FAILED_TASK", "Feeder"]

log = structlog.get_logger(__name__)

ROW_DONE_TASK = "producer.batch.row_done"
ROW_FAILED_TASK = "producer.batch.row_failed"

_MAX_PER_CALL = 500  # one feed_once never holds its caller longer than this many rows


class Feeder:
    """Admits rows of every active batch; safe to run in any number of processes."""

    def __init__(
        self,
        client: redis.Redis,
        app: Celery,
        *,
        limiter: Limiter,
        token_id: str,
        prices: PriceTable,
        global_cap: float | None = None,
        window: int | None = None,
        pause_retry_s: float = BATCH_PAUSE_RETRY_S,
    ) -> None:
        self.state = BatchState(client)
        self.app = app
        self.limiter = limiter
        self.token_id = token_id
        self.prices = prices
        self.guard = SpendGuard(client)
        self.continuations = ContinuationStore(client)
        self.global_cap = global_cap
        self.fixed_window = window
        self.pause_retry_s = pause_retry_s
        self._info: dict[str, BatchInfo] = {}
        self._lock = threading.Lock()

    def window(self) -> int:
        """Rows that may be admitted and unfinished at once, over all batches."""
        if self.fixed_window is not None:
            return self.fixed_window
        override = self.state.window_override()
        if override is not None:
            return override
        slots = self.limiter.show(self.token_id).max_in_flight
        return max(1, round(slots * BATCH_WINDOW_PER_SLOT))

    def feed_once(self) -> int:
        """Admit rows round-robin while the window has room; returns how many went out."""
        window = self.window()
        admitted, idle = 0, 0
        while admitted < _MAX_PER_CALL and self.state.in_window() < window:
            turns = self.state.active_count()
            if idle >= turns:
                break
            batch_id = self.state.rotate()
            if batch_id is None:
                break
            outcome = self.state.admit(batch_id, window)
            if outcome is NotAdmitted.WINDOW_FULL:  # raced another feeder: keep the turn
                self.state.unrotate()
                break
            if isinstance(outcome, Admission) and self._start(outcome):
                admitted, idle = admitted + 1, 0
            else:
                idle += 1
        return admitted

    def info(self, batch_id: str) -> BatchInfo | None:
        """The cached :class:`BatchInfo` of a batch (None if it does not exist)."""
        with self._lock:
            cached = self._info.get(batch_id)
        if cached is not None:
            return cached
        record = self.state.record(batch_id)
        if record is None:
            return None
        info = BatchInfo.from_record(record)
        with self._lock:
            self._info[batch_id] = info
        return info

    def _start(self, adm: Admission) -> bool:
        info = self.info(adm.batch_id)
        if info is None:
            return False
        if self._older_copy_in_flight(adm, info):
            held = self.state.defer(adm.batch_id, adm.row, BATCH_DEFER_S)
            if held is not None:
                settle_rows(self.state.redis, adm.batch_id, [held], self.prices)
            return False
        cap = self.state.redis.hget(record_key(adm.batch_id), "max_spend")
        decision = self.guard.reserve(
            adm.batch_id,
            adm.spend_key,
            info.row_cost,
            batch_cap=None if cap is None else float(cap),
            global_cap=self.global_cap,
        )
        if not decision.granted:
            self.state.unadmit(
                adm.batch_id, adm.row, decision.reason or "spend_cap", self.pause_retry_s
            )
            log.info("batch_paused", batch_id=adm.batch_id, reason=decision.reason)
            return False
        try:
            canvas = self._canvas(adm, info)
        except Exception as exc:
            # A row this pipeline cannot turn into a canvas would fail every time: fail it.
            log.exception("row_canvas_failed", batch_id=adm.batch_id, row=adm.row)
            self.guard.release(adm.batch_id, adm.spend_key)
            self.state.finish(
                adm.batch_id,
                adm.row,
                failure={
                    "step": "-",
                    "code": "canvas_error",
                    "message": f"{type(exc).__name__}: {exc}",
                },
            )
            return False
        try:
            canvas.apply_async()
        except Exception:
            # The broker refused the message: give the row back, retry after a pause.
            log.exception("row_publish_failed", batch_id=adm.batch_id, row=adm.row)
            self.state.unadmit(adm.batch_id, adm.row, "publish_failed", self.pause_retry_s)
            self.guard.release(adm.batch_id, adm.spend_key)
            return False
        return True

    def _older_copy_in_flight(self, adm: Admission, info: BatchInfo) -> bool:
        """Whether an earlier canvas of this row waits at the provider right now.

        A new canvas would pause on that step's saved continuation, which resumes the
        *earlier* canvas (possibly cancelled with --abandon, its next steps revoked) and
        never the new one. So the row waits until the step has landed in the ledger.
        """
        entries = ledger_entries(self.state.redis, row_step_keys(adm.batch_id, adm.row, info.plan))
        current = next((e for e in entries if e is None or e.state is not State.DONE), None)
        if current is None or current.state is not State.SUBMITTED:
            return False
        return current.api_task_id is not None and self.continuations.pending(current.api_task_id)

    def _canvas(self, adm: Admission, info: BatchInfo) -> Signature:
        """The row's canvas, ending in ``row_done``, with ``row_failed`` as its errback."""
        values = dict(zip(info.columns, adm.cells, strict=True))
        canvas = build_row_canvas(info.spec, values, batch_id=adm.batch_id, row=adm.row)
        assign_task_ids(canvas, adm.batch_id, adm.row, adm.attempt)
        where = {"batch_id": adm.batch_id, "row": adm.row, "attempt": adm.attempt}
        done = self.app.signature(ROW_DONE_TASK, kwargs=where).set(
            task_id=task_id(adm.batch_id, adm.row, "row_done", adm.attempt)
        )
        return finish_row_canvas(
            canvas, done=done, failed=self.app.signature(ROW_FAILED_TASK, kwargs=where)
        )

    def run(
        self,
        stop: threading.Event,
        *,
        idle_sleep_s: float = 0.5,
        stale_after_s: float | None = None,
    ) -> None:
        """Feed until ``stop`` is set (the ``feeder`` service, the ``run`` command).

        With ``stale_after_s``, rows that stopped moving that long are admitted again
        (:mod:`pipelines.batches.stale`), checked every quarter of it.
        """
        next_reap = time.monotonic()
        while not stop.is_set():
            try:
                if stale_after_s is not None and time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + stale_after_s / 4
                    if requeued := requeue_stale(self, stale_after_s):
                        log.warning("batch_rows_requeued", rows=requeued)
                # Steps held while at the provider (their row ended first) are counted
                # once they land: the caps see every paid step within a round.
                settle_all_pending(self.state.redis)
                admitted = self.feed_once()
            except Exception:  # keep feeding: the next round retries (Redis down, a bug)
                log.exception("feed_round_failed")
                admitted = 0
            if not admitted:
                stop.wait(idle_sleep_s)

    def row_ended(self, batch_id: str, row: int, failure: Mapping[str, str] | None = None) -> bool:
        """Record a row's end once, settle its spend, feed the next; False if already known."""
        recorded, held = self.state.finish(batch_id, row, failure=failure)
        settle_ended_row(self.state.redis, batch_id, row, held, self.prices)
        if recorded:
            self.feed_once()
        return recorded
