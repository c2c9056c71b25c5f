"""CSV batches: validate every row, then record the batch in Redis for the feeder.

:func:`submit_batch` reads the CSV as a stream (:mod:`pipelines.batches.csvinput`), checks
every row against the pipeline (:func:`~pipelines.specs.canvas.validate_row`) and only then
writes: the batch record, the rows and their states, in pipelined chunks. Nothing is
published to the broker: the feeder (:mod:`pipelines.batches.feeder`) turns rows into canvases
as capacity allows, so a 100,000-row batch is 100,000 hash fields, not 100,000 messages.

* A batch with an invalid row is refused whole unless ``skip_invalid``: then the valid
  rows go and the report lists the rejected ones. Nothing of a refused batch is written.
* Rows keep their CSV numbers (1 = the first data row) in the ledger keys
  (``batch/row/step``), storage keys and the manifest, rejected rows included.
* Duplicate rows are allowed (each is its own row, paid once) with a warning.
* Submitting again under an existing id with the same pipeline and the same accepted
  rows *resumes* the batch: done rows stay done, running and cancelled rows run again
  (the ledger makes steps already paid for free), failed rows wait for ``retry-failed``.
  Another pipeline or other rows under an existing id are refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis

from pipelines.batches.csvinput import CsvBatchReader, CsvFormatError, CsvRecord, open_lines
from pipelines.batches.settle import settle_rows
from pipelines.batches.state import FINAL_STATUSES, BatchState, part_key, record_key
from pipelines.constants import BATCH_ACTIVE_KEY, BATCH_INDEX_KEY, BATCH_STAGING_TTL_S
from pipelines.specs.canvas import RowError, build_row_canvas, step_plan, validate_row
from pipelines.specs.spec import PipelineSpec
from pipelines.spend.prices import PriceTable
from workers.storage import ArtifactStore

__all__ = [
    "BATCH_ID_PATTERN",
    "BatchIdError",
    "RejectedRow",
    "SubmitReport",
    "check_csv",
    "new_batch_id",
    "new_round",
    "resume_batch",
    "submit_batch",
    "validate_batch_id",
]

BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+@,-]{0,99}$")
"""Ids are one safe path component (ledger keys, storage keys, Redis keys, URLs)."""

_WRITE_CHUNK_ROWS = 5000


class BatchIdError(ValueError):
    """The batch id is malformed, or already used by another pipeline or other rows."""


@dataclass(frozen=True)
class RejectedRow:
    """A row left out of the batch: its number, first line, cells and problems."""

    row: int
    line: int | None
    cells: dict[str, str]
    errors: list[RowError]


@dataclass
class SubmitReport:
    """What a submission did. ``refused`` says why nothing was written (None: it was)."""

    batch_id: str
    accepted: int
    rejected: int
    errors: list[RowError]
    resumed: bool
    pipeline: str = ""
    status: str = "queued"
    refused: str | None = None
    warnings: list[RowError] = field(default_factory=list)
    rejected_rows: list[RejectedRow] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def new_batch_id(now: datetime | None = None) -> str:
    """A fresh id, short and sortable by creation time: ``b-20261124-153012-3fa9c1``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"b-{stamp}-{secrets.token_hex(3)}"


def validate_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` if it is a safe id, else raise :class:`BatchIdError`."""
    if not BATCH_ID_PATTERN.fullmatch(batch_id) or ".." in batch_id:
        raise BatchIdError(
            f"invalid batch id {batch_id!r}: use 1-100 letters, digits and "
            "'_.=+@,-', starting with a letter or digit (e.g. b-20261124-01)"
        )
    return batch_id


@dataclass
class _Collected:
    """Rows accepted so far (encoded cells), problems, duplicates and the digest."""

    cells: dict[int, bytes] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    first: dict[str, str] | None = None
    seen: dict[bytes, int] = field(default_factory=dict)

    def add(self, record: CsvRecord | RowError, spec: PipelineSpec) -> None:
        if isinstance(record, RowError):
            self._reject(record.row, None, {}, [record])
            return
        problems = validate_row(spec, record.values, row=record.row)
        if problems:
            self._reject(record.row, record.line, record.values, problems)
            return
        encoded = json.dumps(list(record.values.values()), ensure_ascii=False).encode()
        self.cells[record.row] = encoded
        self.first = self.first or record.values
        fingerprint = hashlib.blake2b(encoded, digest_size=16).digest()
        earlier = self.seen.setdefault(fingerprint, record.row)
        if earlier != record.row:
            self.warnings.append(
                RowError(
                    record.row,
                    None,
                    f"same cells as row {earlier} (allowed: each row is generated and paid for)",
                )
            )

    def _reject(
        self, row: int, line: int | None, cells: dict[str, str], problems: list[RowError]
    ) -> None:
        self.errors.extend(problems)
        self.rejected.append(RejectedRow(row, line, cells, problems))

    def digest(self, spec: PipelineSpec, columns: list[str]) -> str:
        h = hashlib.sha256(spec.model_dump_json().encode())
        h.update(json.dumps(columns).encode())
        for row, cells in self.cells.items():
            h.update(b"%d:" % row + cells + b"\n")
        return h.hexdigest()


def submit_batch(
    redis_client: redis.Redis,
    *,
    source: str,
    pipeline: PipelineSpec,
    prices: PriceTable,
    batch_id: str | None = None,
    skip_invalid: bool = False,
    max_spend: float | None = None,
    store: ArtifactStore | None = None,
    origin: str = "cli",
) -> SubmitReport:
    """Validate ``source`` (a path, or a URL in ``store``) for ``pipeline`` and queue it.

    ``prices`` gives the row cost recorded for spend reservations (and settles what a
    resume ends).

    Bad input never raises: the report's ``refused`` says why nothing was written and
    ``errors`` lists every problem (row 0 = the file itself). Raises
    :class:`BatchIdError` for a malformed id or one used by another pipeline or CSV.
    """
    report, collected = check_csv(
        source, pipeline, batch_id=batch_id, skip_invalid=skip_invalid, store=store
    )
    if report.refused is None:
        _write_or_resume(
            BatchState(redis_client),
            report,
            collected,
            pipeline,
            prices,
            source=source,
            max_spend=max_spend,
            origin=origin,
        )
    return report


def check_csv(
    source: str,
    pipeline: PipelineSpec,
    *,
    batch_id: str | None = None,
    skip_invalid: bool = False,
    store: ArtifactStore | None = None,
) -> tuple[SubmitReport, _Collected]:
    """Read and validate every row of ``source``, writing nothing (also ``--dry-run``)."""
    batch_id = validate_batch_id(batch_id) if batch_id else new_batch_id()
    report = SubmitReport(batch_id, 0, 0, [], False, pipeline=pipeline.name)
    collected = _Collected()
    try:
        reader = CsvBatchReader(open_lines(source, store), pipeline)
        for record in reader:
            collected.add(record, pipeline)
    except CsvFormatError as exc:
        report.errors, report.refused = exc.errors, "the file cannot be read as a batch"
        return report, collected
    _fill_report(report, collected, reader.columns, skip_invalid=skip_invalid)
    return report, collected


def _fill_report(
    report: SubmitReport, collected: _Collected, columns: list[str], *, skip_invalid: bool
) -> None:
    report.columns = columns
    report.errors, report.warnings = collected.errors, collected.warnings
    report.rejected_rows, report.rejected = collected.rejected, len(collected.rejected)
    if not collected.cells:
        report.refused = "no valid rows"
    elif collected.rejected and not skip_invalid:
        report.refused = (
            f"{report.rejected} invalid row(s); fix them or pass "
            "--skip-invalid to submit the valid rows only"
        )
    # Accepted means "would be (or was) queued": what a dry run reports too.
    report.accepted = 0 if report.refused else len(collected.cells)


def _write_or_resume(
    state: BatchState,
    report: SubmitReport,
    collected: _Collected,
    spec: PipelineSpec,
    prices: PriceTable,
    *,
    source: str,
    max_spend: float | None,
    origin: str,
) -> None:
    digest = collected.digest(spec, report.columns)
    existing = state.record(report.batch_id)
    if existing is None:
        _write(
            state,
            report.batch_id,
            collected,
            spec,
            report.columns,
            prices,
            digest=digest,
            source=source,
            max_spend=max_spend,
            origin=origin,
        )
        return
    if existing.get("digest") != digest:
        what = (
            "pipeline " + existing.get("pipeline", "?")
            if existing.get("pipeline") != spec.name
            else "other rows"
        )
        raise BatchIdError(
            f"batch {report.batch_id} already exists with {what}; use another "
            "--batch-id, or the same CSV and pipeline to resume it"
        )
    report.resumed = True
    report.status = resume_batch(state, report.batch_id, prices=prices, max_spend=max_spend)


def resume_batch(
    state: BatchState, batch_id: str, *, prices: PriceTable, max_spend: float | None = None
) -> str:
    """Run again what is not done in ``batch_id``; returns its status afterwards.

    Rows that were running are ended first; their spend is settled at ``prices``.
    """
    if max_spend is not None:
        state.redis.hset(record_key(batch_id), "max_spend", repr(max_spend))
    before = (state.record(batch_id) or {}).get("status")
    status, ended = state.resume(batch_id)
    new_round(state, batch_id, before, status)
    if ended:
        settle_rows(state.redis, batch_id, ended, prices)
    return status


def new_round(state: BatchState, batch_id: str, before: str | None, after: str) -> None:
    """Count a new round when an ended batch runs again (its manifest gets a new name)."""
    if before in FINAL_STATUSES and after not in FINAL_STATUSES:
        state.redis.hincrby(record_key(batch_id), "round", 1)


def _write(
    state: BatchState,
    batch_id: str,
    collected: _Collected,
    spec: PipelineSpec,
    columns: list[str],
    prices: PriceTable,
    *,
    digest: str,
    source: str,
    max_spend: float | None,
    origin: str,
) -> None:
    """Rows first (under a TTL), then the record in one transaction that keeps them."""
    client = state.redis
    rows_key, state_key = part_key(batch_id, "rows"), part_key(batch_id, "state")
    client.delete(rows_key, state_key)  # leftovers of a submit that died half-way
    for chunk in _chunks(collected.cells):
        pipe = client.pipeline(transaction=False)
        pipe.hset(rows_key, mapping=chunk)  # type: ignore[arg-type]
        pipe.expire(rows_key, BATCH_STAGING_TTL_S)
        pipe.execute()
    last = max(collected.cells)
    states = bytearray(b"x" * (last + 1))
    for row in collected.cells:
        states[row] = ord("p")
    fields = _record_fields(batch_id, collected, spec, columns, prices, digest, source, origin)
    if max_spend is not None:
        fields["max_spend"] = repr(max_spend)
    pipe = client.pipeline(transaction=True)
    pipe.set(state_key, bytes(states))
    pipe.hset(record_key(batch_id), mapping=dict(fields))  # type: ignore[arg-type]
    pipe.persist(rows_key)
    pipe.zadd(BATCH_INDEX_KEY, {batch_id: float(fields["created_at"])})
    pipe.rpush(BATCH_ACTIVE_KEY, batch_id)
    pipe.execute()


def _chunks(cells: dict[int, bytes]) -> Iterator[dict[str, bytes]]:
    batch: dict[str, bytes] = {}
    for row, encoded in cells.items():
        batch[str(row)] = encoded
        if len(batch) >= _WRITE_CHUNK_ROWS:
            yield batch
            batch = {}
    if batch:
        yield batch


def _record_fields(
    batch_id: str,
    collected: _Collected,
    spec: PipelineSpec,
    columns: list[str],
    prices: PriceTable,
    digest: str,
    source: str,
    origin: str,
) -> dict[str, str]:
    first_row = min(collected.cells)
    assert collected.first is not None  # there is an accepted row
    plan = step_plan(build_row_canvas(spec, collected.first, batch_id=batch_id, row=first_row))
    return {
        "id": batch_id,
        "pipeline": spec.name,
        "spec": spec.model_dump_json(),
        "plan": json.dumps(plan),
        "columns": json.dumps(columns),
        "source": source,
        "origin": origin,
        "digest": digest,
        "created_at": f"{time.time():.6f}",
        "status": "queued",
        "rows_total": str(len(collected.cells)),
        "rejected": str(len(collected.rejected)),
        "max_row": str(max(collected.cells)),
        "row_cost": repr(prices.row_cost(spec)),
        "currency": prices.currency,
        "cursor": "0",
        "admissions": "0",
        "pending": str(len(collected.cells)),
        "running": "0",
        "done": "0",
        "failed": "0",
        "cancelled": "0",
    }
