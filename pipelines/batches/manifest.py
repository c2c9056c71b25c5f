"""A batch's output manifest and errors file, from the ledger's step results.

One manifest line per finished step of every done or failed row (JSONL, and the same
as CSV): row, step, action, api task id, audio id, title, model, seed, song
duration, the stored artifacts (keys, sha256, sizes) and timings. ``errors.csv`` has
one line per failed row: row, step, code, message. Both are written to a local folder
and, once the batch has ended, into the store beside the artifacts
(``<batch-id>/manifest.jsonl`` ...; after a ``retry-failed`` or resume round N,
``<batch-id>/manifest.rN.jsonl`` ..., because stored objects are create-only).

Text cells of the two CSV files that a spreadsheet would run as a formula (starting
with ``= + - @``, tab or CR) are written with a leading single quote (:func:`csv_safe`);
the JSONL keeps every value as recorded.

What is left out on purpose: request params and provider URLs of the items (only our
own storage keys go in), and of course no token or secret.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from pipelines.batches.ledger_reads import ledger_entries, row_step_keys
from pipelines.batches.state import FINAL_STATUSES, BatchInfo, BatchState
from workers.ledger import State
from workers.storage import ArtifactStore

MANIFEST_CSV_FIELDS = (
    "row",
    "step",
    "action",
    "api_task_id",
    "audio_id",
    "title",
    "model",
    "seed",
    "duration_s",
    "elapsed_s",
    "submitted_at",
    "finished_at",
    "artifact_kinds",
    "storage_keys",
    "sha256",
    "sizes",
)
ERROR_FIELDS = ("row", "step", "code", "message")
_CHUNK_ROWS = 500
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """``value`` for a CSV cell a spreadsheet will not run: a text cell starting like a
    formula gets a leading single quote (OWASP CSV-injection guidance); numbers and
    other text are unchanged. The JSONL keeps raw values.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


@dataclass
class Manifest:
    """The manifest lines and error lines of one batch."""

    batch_id: str
    status: str
    lines: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    round: int = 0

    @property
    def final(self) -> bool:
        """Whether the batch has ended (its manifest will not change this round)."""
        return self.status in FINAL_STATUSES


def build_manifest(client: redis.Redis, batch_id: str) -> Manifest:
    """Read the batch's finished steps from the ledger; KeyError if the batch is unknown."""
    state = BatchState(client)
    record = state.record(batch_id)
    if record is None:
        raise KeyError(batch_id)
    plan = BatchInfo.from_record(record).plan
    rows = sorted(state.rows_in(batch_id, "d") + state.rows_in(batch_id, "f"))
    lines = [line for chunk in _chunks(rows) for line in _lines(client, batch_id, chunk, plan)]
    errors = [
        {"row": row, **{k: failure.get(k, "") for k in ERROR_FIELDS[1:]}}
        for row, failure in sorted(state.errors(batch_id).items())
    ]
    return Manifest(
        batch_id, record.get("status", "?"), lines, errors, int(record.get("round", "0"))
    )


def _chunks(rows: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(rows), _CHUNK_ROWS):
        yield rows[start : start + _CHUNK_ROWS]


def _lines(
    client: redis.Redis, batch_id: str, rows: list[int], plan: list[tuple[str, str]]
) -> Iterator[dict[str, Any]]:
    keys = [key for row in rows for key in row_step_keys(batch_id, row, plan)]
    entries = iter(ledger_entries(client, keys))
    for row in rows:
        for step, action in plan:
            entry = next(entries)
            if entry is not None and entry.state is State.DONE and entry.result is not None:
                yield manifest_line(
                    row, step, action, entry.result, entry.submitted_at, entry.finished_at
                )


def manifest_line(
    row: int,
    step: str,
    action: str,
    result: dict[str, Any],
    submitted_at: float | None,
    finished_at: float | None,
) -> dict[str, Any]:
    """One step's manifest entry from its recorded result."""
    artifacts = [
        {k: a.get(k) for k in ("kind", "key", "url", "sha256", "size", "content_type")}
        for a in result.get("artifacts") or []
    ]
    timings = dict(result.get("timings") or {})
    elapsed = (finished_at - submitted_at) if finished_at and submitted_at else None
    return {
        "row": row,
        "step": step,
        "action": action,
        "api_task_id": result.get("api_task_id"),
        "audio_id": result.get("audio_id"),
        "title": result.get("title"),
        "model": result.get("model"),
        "seed": result.get("seed"),
        "duration_s": result.get("duration"),
        "elapsed_s": None if elapsed is None else round(elapsed, 3),
        "submitted_at": submitted_at,
        "finished_at": finished_at,
        "artifacts": artifacts,
        "timings": timings,
    }


def to_jsonl(manifest: Manifest) -> bytes:
    """The manifest as JSON lines (one step per line)."""
    return "".join(
        json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in manifest.lines
    ).encode()


def to_csv(manifest: Manifest) -> bytes:
    """The manifest as CSV (artifact fields joined by spaces)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MANIFEST_CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for line in manifest.lines:
        flat = {
            **line,
            **{
                "artifact_kinds": " ".join(str(a["kind"]) for a in line["artifacts"]),
                "storage_keys": " ".join(str(a["key"]) for a in line["artifacts"]),
                "sha256": " ".join(str(a["sha256"]) for a in line["artifacts"]),
                "sizes": " ".join(str(a["size"]) for a in line["artifacts"]),
            },
        }
        writer.writerow(
            {k: "" if flat.get(k) is None else csv_safe(flat[k]) for k in MANIFEST_CSV_FIELDS}
        )
    return out.getvalue().encode()


def errors_csv(manifest: Manifest) -> bytes:
    """The errors file: row, step, code, message."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ERROR_FIELDS)
    writer.writeheader()
    writer.writerows({k: csv_safe(v) for k, v in error.items()} for error in manifest.errors)
    return out.getvalue().encode()


def file_names(manifest: Manifest) -> dict[str, str]:
    """Local file name -> name in the store (``manifest.rN.jsonl`` after round N)."""
    suffix = f".r{manifest.round}" if manifest.round else ""
    return {
        name: name.replace(".", f"{suffix}.", 1)
        for name in ("manifest.jsonl", "manifest.csv", "errors.csv")
    }


def write_manifest(
    manifest: Manifest, out_dir: Path | None, store: ArtifactStore | None = None
) -> dict[str, str]:
    """Write the three files under ``out_dir`` and, if the batch ended, into ``store``.

    Returns where each file went: ``{name: local path, "store:" + name: store URL}``.
    Local files are replaced; stored ones are create-only (an empty manifest, every
    row failed, is not stored: the store refuses empty objects).
    """
    contents = {
        "manifest.jsonl": to_jsonl(manifest),
        "manifest.csv": to_csv(manifest),
        "errors.csv": errors_csv(manifest),
    }
    written: dict[str, str] = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            (out_dir / name).write_bytes(data)
            written[name] = str(out_dir / name)
    if store is not None and manifest.final:
        for name, stored_name in file_names(manifest).items():
            if not contents[name]:
                continue
            key = f"{manifest.batch_id}/{stored_name}"
            kind = "application/x-ndjson" if name.endswith(".jsonl") else "text/csv"
            store.put_bytes(key, contents[name], content_type=kind)
            written[f"store:{name}"] = store.url_for(key)
    return written
