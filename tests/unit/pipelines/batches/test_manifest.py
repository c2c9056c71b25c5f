"""The manifest and errors file built from the ledger, written locally and into the store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import redis

from pipelines.batches.manifest import MANIFEST_CSV_FIELDS, build_manifest, write_manifest
from pipelines.batches.state import BatchState
from pipelines.batches.submit import submit_batch
from pipelines.specs.loader import get_pipeline
from pipelines.spend.prices import PriceTable
from workers.ledger import Ledger, step_key
from workers.storage import ArtifactStore

PRICES = PriceTable.load()  # the built-in table (no prices file in tests)

SECRET = "sk-not-in-the-manifest"


def result(row: int, step: str) -> dict[str, object]:
    key = f"b/{row}/{step}/a{row}.wav"
    return {
        "action": step,
        "step_key": f"b/{row}/{step}",
        "api_task_id": f"t-{row}-{step}",
        "audio_id": f"a{row}",
        "title": "T",
        "duration": 61.5,
        "seed": "7",
        "model": "FUZZ-2.0",
        "params": {"prompt": "p", "callback_url": f"https://x/?token={SECRET}"},
        "items": [{"audio_url": f"https://cdn/?sig={SECRET}"}],
        "artifacts": [
            {
                "kind": "audio",
                "key": key,
                "url": f"file:///r/{key}",
                "sha256": "ab" * 32,
                "size": 10,
                "content_type": "audio/wav",
                "source_url": "https://cdn",
            }
        ],
        "timings": {"submitted_at": 1.0, "collected_at": 2.0},
    }


def make_batch(client: redis.Redis, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("prompt\nsong one\nsong two\nsong three\n", encoding="utf-8")
    assert (
        submit_batch(
            client,
            prices=PRICES,
            source=str(path),
            pipeline=get_pipeline("generate-extend-stems"),
            batch_id="b",
        ).accepted
        == 3
    )
    ledger = Ledger(client)
    for row, steps in ((1, ("generate", "extend", "stems")), (2, ("generate",))):
        for step in steps:
            ledger.reserve(step_key("b", row, step), fingerprint=step, owner="o")
            ledger.mark_done(step_key("b", row, step), result=result(row, step))
    ledger.reserve(step_key("b", 2, "extend"), fingerprint="e", owner="o")
    ledger.mark_failed(step_key("b", 2, "extend"), code="api_error", message="Generation failed.")
    state = BatchState(client)
    state.finish("b", 1)
    state.finish(
        "b", 2, failure={"step": "extend", "code": "api_error", "message": "Generation failed."}
    )


def test_manifest_lines_errors_and_partial_batches(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    make_batch(redis_client, tmp_path)
    manifest = build_manifest(redis_client, "b")
    assert not manifest.final  # row 3 is still pending
    assert [(line["row"], line["step"]) for line in manifest.lines] == [
        (1, "generate"),
        (1, "extend"),
        (1, "stems"),
        (2, "generate"),
    ]
    first = manifest.lines[0]
    assert first["api_task_id"] == "t-1-generate" and first["artifacts"][0]["sha256"] == "ab" * 32
    assert manifest.errors == [
        {"row": 2, "step": "extend", "code": "api_error", "message": "Generation failed."}
    ]
    store = ArtifactStore.from_url("memory://")
    written = write_manifest(manifest, tmp_path / "out", store)
    assert set(written) == {"manifest.jsonl", "manifest.csv", "errors.csv"}  # not stored yet
    text = (tmp_path / "out" / "manifest.jsonl").read_text()
    assert SECRET not in text and SECRET not in (tmp_path / "out" / "manifest.csv").read_text()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "manifest.csv").read_text())))
    assert tuple(rows[0]) == MANIFEST_CSV_FIELDS and rows[0]["storage_keys"].endswith(".wav")
    assert json.loads(text.splitlines()[3])["row"] == 2


def test_an_ended_batch_is_written_into_the_store_once_per_round(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    make_batch(redis_client, tmp_path)
    BatchState(redis_client).finish("b", 3)
    store = ArtifactStore.from_url("memory://")
    manifest = build_manifest(redis_client, "b")
    assert manifest.final
    written = write_manifest(manifest, None, store)
    assert store.list("b") == ["b/errors.csv", "b/manifest.csv", "b/manifest.jsonl"]
    assert written["store:manifest.jsonl"] == store.url_for("b/manifest.jsonl")
    assert write_manifest(build_manifest(redis_client, "b"), None, store)  # same bytes: no-op
    redis_client.hincrby("producer:batch:{b}", "round", 1)
    write_manifest(build_manifest(redis_client, "b"), None, store)
    assert "b/manifest.r1.jsonl" in store.list("b")
