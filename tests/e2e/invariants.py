"""The end-of-run invariants of the standing chaos suite, in one checker.

:func:`check_fleet` reads Redis, the emulator's counters and the store after a run
and collects every violation before failing, so one failure message lists them all:

1. every row of every batch is terminal (done or failed), a failed row with a reason;
2. provider submissions (emulator counters) = steps the ledger recorded a provider
   task for, fingerprint by fingerprint (so distinct requests = distinct
   fingerprints), and 0 duplicate submissions;
3. paid steps in the ledger (:attr:`LedgerEntry.paid`) = submissions whose provider
   task did not end failed (the provider bills successful calls only);
4. every ledger entry terminal, every failed one with a code and message;
5. every artifact of every done step stored once with its recorded sha256 and size,
   and nothing else stored (no leftover of a failed step);
6. staging (``.staging/``) empty after a sweep;
7. the limiter's in-flight count back to 0; no continuation waiting or left claimed;
8. ``producer-batch status`` spend = price table x paid steps, nothing reserved.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from pipelines.batches.state import BatchState
from pipelines.batches.status import batch_status
from pipelines.spend.prices import PriceTable
from tests.integration.fleet import TOKEN
from workers.constants import INFLIGHT_PREFIX
from workers.ledger import LedgerEntry, State
from workers.ratelimit.limiter import token_id_for
from workers.runtime import build_services
from workers.settings import Settings

_SPEND_TOLERANCE = 1e-6


@dataclass
class FleetReport:
    """What the checker saw: figures for the printed report, and the violations."""

    rows_done: int = 0
    rows_failed: int = 0
    rows_stuck: int = 0
    submissions: int = 0
    duplicates: int = 0
    paid_steps: int = 0
    provider_failed: int = 0
    artifacts: int = 0
    spent: float = 0.0
    violations: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """The figures as plain data (for ``--json`` and printed reports)."""
        return {k: v for k, v in self.__dict__.items() if k != "violations"}


def check_fleet(
    redis_url: str,
    storage: Path,
    counters: dict[str, Any],
    *,
    batch_ids: Iterable[str] | None = None,
    ledger_prefixes: Iterable[str] = (),
    status_of: Callable[[str], dict[str, Any] | None] | None = None,
    raise_on_violation: bool = True,
) -> FleetReport:
    """Check the invariants after a run; raise one AssertionError listing every violation.

    ``counters`` is the emulator's ``GET /_emulator/counters`` (with fingerprints);
    ``batch_ids`` default to every batch in Redis. ``ledger_prefixes`` add steps run
    outside any batch (ad-hoc ``generate.apply_async`` calls): their ledger entries and
    artifacts are checked, they have no rows or spend. ``status_of`` gives a batch's
    status as ``producer-batch status ID --json`` prints it (default: the same function
    in-process).
    """
    client = redis.Redis.from_url(redis_url)
    report = FleetReport()
    try:
        state = BatchState(client)
        batches = list(batch_ids) if batch_ids is not None else state.batch_ids(limit=10_000)
        prefixes = [f"{b}/" for b in batches] + [f"{p.rstrip('/')}/" for p in ledger_prefixes]
        entries = _ledger_entries(redis_url, storage, prefixes)
        _check_rows(state, batches, report)
        _check_ledger(entries, counters, report)
        _check_artifacts(entries, storage, report)
        _check_staging_and_slots(redis_url, storage, client, report)
        status = status_of or (lambda batch_id: batch_status(client, batch_id))
        _check_spend(status, batches, entries, report)
    finally:
        client.close()
    if report.violations and raise_on_violation:
        listed = "\n".join(f"  - {v}" for v in report.violations)
        raise AssertionError(f"{len(report.violations)} invariant violations:\n{listed}")
    return report


def settled_counters(
    counters_of: Callable[[], dict[str, Any]], redis_url: str, storage: Path, budget_s: float
) -> dict[str, Any]:
    """The emulator's counters once the invariants hold (or ``budget_s`` is spent).

    A batch ends when its last row is recorded; the last collect's bookkeeping
    (continuation finished, slot released) may trail it by a moment.
    """
    deadline = time.monotonic() + budget_s
    while True:
        counters = counters_of()
        report = check_fleet(redis_url, storage, counters, raise_on_violation=False)
        if not report.violations or time.monotonic() > deadline:
            return counters
        time.sleep(1.0)


def _ledger_entries(redis_url: str, storage: Path, prefixes: list[str]) -> list[LedgerEntry]:
    svc = build_services(_settings(redis_url, storage))
    try:
        return [e for prefix in prefixes for e in svc.ledger.scan(prefix)]
    finally:
        svc.close()


def _settings(redis_url: str, storage: Path) -> Settings:
    return Settings(api_token=TOKEN, redis_url=redis_url, storage_url=f"file://{storage}")


def _check_rows(state: BatchState, batches: list[str], report: FleetReport) -> None:
    for batch_id in batches:
        record = state.record(batch_id) or {}
        states = state.states(batch_id)
        errors = state.errors(batch_id)
        for row in range(1, len(states)):
            letter = chr(states[row])
            if letter == "d":
                report.rows_done += 1
            elif letter == "f":
                report.rows_failed += 1
                reason = errors.get(row, {})
                if not any(str(v).strip() for v in reason.values()):
                    report.violations.append(f"{batch_id} row {row}: failed without a reason")
            else:
                report.rows_stuck += 1
                report.violations.append(f"{batch_id} row {row}: not terminal (state {letter!r})")
        if record.get("status") not in ("finished", "cancelled"):
            report.violations.append(f"{batch_id}: batch status {record.get('status')!r}")


def _check_ledger(
    entries: list[LedgerEntry], counters: dict[str, Any], report: FleetReport
) -> None:
    by_fingerprint = Counter(counters.get("submissions_by_fingerprint", {}))
    report.submissions = int(counters["submissions_total"])
    report.provider_failed = int(counters.get("tasks_failed", 0))
    # Two batches may legitimately send the same request (a schedule's fixed CSV):
    # the ledger's own fingerprints say how many submissions each one should have.
    expected = Counter(e.fingerprint for e in entries if e.api_task_id is not None)
    report.paid_steps = sum(e.paid for e in entries)
    extra = by_fingerprint - expected
    report.duplicates = sum(extra.values())
    if extra:
        report.violations.append(
            f"{report.duplicates} duplicate submissions (more than the ledger's steps), "
            f"e.g. {sorted(extra)[:3]}"
        )
    if report.submissions != sum(by_fingerprint.values()) or by_fingerprint != expected:
        missing = expected - by_fingerprint
        report.violations.append(
            f"provider submissions {report.submissions} ({len(by_fingerprint)} distinct "
            f"fingerprints) != ledger steps with a provider task {expected.total()} "
            f"({len(expected)} distinct); unknown to the provider: {sorted(missing)[:3]}"
        )
    if report.paid_steps != report.submissions - report.provider_failed:
        report.violations.append(
            f"paid steps in the ledger {report.paid_steps} != submissions {report.submissions} "
            f"- provider tasks failed {report.provider_failed}"
        )
    for entry in entries:
        if entry.state not in (State.DONE, State.FAILED):
            report.violations.append(f"ledger {entry.key}: not terminal ({entry.state})")
        elif entry.state is State.FAILED and not (entry.error_code and entry.error_message):
            report.violations.append(f"ledger {entry.key}: failed without code and message")


def _check_artifacts(entries: list[LedgerEntry], storage: Path, report: FleetReport) -> None:
    recorded: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.state is not State.DONE or entry.result is None:
            continue
        for artifact in entry.result.get("artifacts", []):
            key = artifact["key"]
            if key in recorded:
                report.violations.append(f"artifact {key} recorded by two steps")
            recorded[key] = artifact
    stored = {
        str(p.relative_to(storage)): p
        for p in storage.rglob("*")
        if p.is_file() and not p.relative_to(storage).parts[0].startswith(".")
    }
    report.artifacts = len(stored)
    for key, artifact in recorded.items():
        path = stored.get(key)
        if path is None:
            report.violations.append(f"artifact {key}: recorded, not stored")
            continue
        data = path.read_bytes()
        if len(data) != artifact["size"] or hashlib.sha256(data).hexdigest() != artifact["sha256"]:
            report.violations.append(f"artifact {key}: size or sha256 differs from the record")
    extra = sorted(set(stored) - set(recorded))
    if extra:
        report.violations.append(f"{len(extra)} stored objects no done step records: {extra[:5]}")


def _check_staging_and_slots(
    redis_url: str, storage: Path, client: redis.Redis, report: FleetReport
) -> None:
    svc = build_services(_settings(redis_url, storage))
    try:
        svc.store.sweep_staging(older_than_s=0)
        left = [p for p in (storage / ".staging").rglob("*") if p.is_file()]
        if left:
            report.violations.append(f"staging not empty after a sweep: {len(left)} files")
        token_id = token_id_for(TOKEN)
        in_flight = svc.limiter.show(token_id).in_flight
        if in_flight:
            report.violations.append(f"limiter in-flight {in_flight}, not 0")
    finally:
        svc.close()
    for kind in ("task", "claimed"):
        keys = list(client.scan_iter(match=f"{INFLIGHT_PREFIX}{kind}:*", count=1000))
        if keys:
            report.violations.append(f"{len(keys)} continuations left {kind}")
    for kind in ("due", "resumed"):
        for key in client.scan_iter(match=f"{INFLIGHT_PREFIX}{kind}:*", count=1000):
            if n := client.zcard(key):
                report.violations.append(f"{n} continuations left in {kind!s} ({key!r})")


def _check_spend(
    status_of: Callable[[str], dict[str, Any] | None],
    batches: list[str],
    entries: list[LedgerEntry],
    report: FleetReport,
) -> None:
    prices = PriceTable.load()
    by_batch: dict[str, float] = {}
    for entry in entries:
        if entry.paid:
            batch, _, step = entry.key.rsplit("/", 2)
            by_batch[batch] = by_batch.get(batch, 0.0) + prices.call_cost(step)
    for batch_id in batches:
        spend = (status_of(batch_id) or {}).get("spend") or {}
        spent, expected = float(spend.get("spent", 0.0)), by_batch.get(batch_id, 0.0)
        report.spent += spent
        if abs(spent - expected) > _SPEND_TOLERANCE:
            report.violations.append(
                f"{batch_id}: status spend {spent:.4f} != price table x paid steps {expected:.4f}"
            )
        if abs(float(spend.get("reserved", 0.0))) > _SPEND_TOLERANCE:
            report.violations.append(f"{batch_id}: spend still reserved {spend.get('reserved')}")
