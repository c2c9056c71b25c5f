"""submit_batch against a real Redis: what is written, what a refusal leaves (nothing),
row numbers with --skip-invalid, resume by id, conflicting ids, 100k rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import redis

from pipelines.batches.state import BatchState, part_key, record_key
from pipelines.batches.submit import BatchIdError, submit_batch, validate_batch_id
from pipelines.constants import BATCH_ACTIVE_KEY, BATCH_INDEX_KEY
from pipelines.specs.loader import get_pipeline
from pipelines.spend.prices import PriceTable
from workers.storage import ArtifactStore

PRICES = PriceTable.load()  # the built-in table (no prices file in tests)

HEADER = "prompt,title,model,instrumental,seed,weirdness,extend_prompt\n"
GES = get_pipeline("generate-extend-stems")


def row(i: int, model: str = "FUZZ-2.0") -> str:
    return f"song number {i},Title {i},{model},true,{i},0.3,more\n"


def write(tmp_path: Path, rows: list[str], name: str = "rows.csv") -> str:
    path = tmp_path / name
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return str(path)


def keys(client: redis.Redis) -> set[str]:
    return {k.decode() for k in client.keys("*")}


def test_submit_writes_the_record_rows_and_states_and_publishes_nothing(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    report = submit_batch(
        redis_client,
        prices=PRICES,
        source=write(tmp_path, [row(1), row(2)]),
        pipeline=GES,
        batch_id="b-test-1",
        max_spend=1.5,
    )
    assert (report.batch_id, report.accepted, report.rejected, report.resumed) == (
        "b-test-1",
        2,
        0,
        False,
    )
    record = BatchState(redis_client).record("b-test-1")
    assert record is not None
    assert {k: record[k] for k in ("status", "pipeline", "rows_total", "pending", "max_spend")} == {
        "status": "queued",
        "pipeline": GES.name,
        "rows_total": "2",
        "pending": "2",
        "max_spend": "1.5",
    }
    assert json.loads(record["plan"]) == [
        ["generate", "generate"],
        ["extend", "extend"],
        ["stems", "stems"],
    ]
    assert redis_client.get(part_key("b-test-1", "state")) == b"xpp"
    assert json.loads(redis_client.hget(part_key("b-test-1", "rows"), "2") or b"")[0] == (
        "song number 2"
    )
    assert redis_client.ttl(part_key("b-test-1", "rows")) == -1  # made permanent
    # Only the batch's own keys: no broker queue, no ledger, no spend hold.
    assert keys(redis_client) == {
        record_key("b-test-1"),
        part_key("b-test-1", "rows"),
        part_key("b-test-1", "state"),
        BATCH_INDEX_KEY,
        BATCH_ACTIVE_KEY,
    }


@pytest.mark.parametrize("rows", [[row(1), row(2, model="FUZZ-9")], []])
def test_a_refused_batch_writes_nothing(
    redis_client: redis.Redis, tmp_path: Path, rows: list[str]
) -> None:
    report = submit_batch(redis_client, prices=PRICES, source=write(tmp_path, rows), pipeline=GES)
    assert report.refused is not None and report.accepted == 0
    assert keys(redis_client) == set()


def test_skip_invalid_keeps_the_file_row_numbers(redis_client: redis.Redis, tmp_path: Path) -> None:
    source = write(tmp_path, [row(1), row(2, model="FUZZ-9"), row(3)])
    report = submit_batch(
        redis_client,
        prices=PRICES,
        source=source,
        pipeline=GES,
        batch_id="b-skip",
        skip_invalid=True,
    )
    assert (report.accepted, report.rejected, [r.row for r in report.rejected_rows]) == (2, 1, [2])
    assert redis_client.get(part_key("b-skip", "state")) == b"xpxp"
    assert redis_client.hexists(part_key("b-skip", "rows"), "2") is False


def test_same_id_and_csv_resumes_other_csv_or_pipeline_is_refused(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    source = write(tmp_path, [row(1), row(2)])
    submit_batch(redis_client, prices=PRICES, source=source, pipeline=GES, batch_id="b-again")
    state = BatchState(redis_client)
    state.finish("b-again", 1)  # as if row 1 had run (it is pending: counters still move)
    again = submit_batch(
        redis_client, prices=PRICES, source=source, pipeline=GES, batch_id="b-again"
    )
    assert (again.resumed, again.accepted, again.status) == (True, 2, "queued")
    assert state.states("b-again") == b"xdp"
    other = write(tmp_path, [row(1), row(3)], "other.csv")
    with pytest.raises(BatchIdError, match="already exists with other rows"):
        submit_batch(redis_client, prices=PRICES, source=other, pipeline=GES, batch_id="b-again")
    plain = tmp_path / "plain.csv"
    plain.write_text("prompt\nsong number 1\n", encoding="utf-8")
    with pytest.raises(BatchIdError, match="already exists with pipeline generate-extend-stems"):
        submit_batch(
            redis_client,
            prices=PRICES,
            source=str(plain),
            pipeline=get_pipeline("generate"),
            batch_id="b-again",
        )


def test_a_finished_batch_resubmitted_stays_finished(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    source = write(tmp_path, [row(1)])
    submit_batch(redis_client, prices=PRICES, source=source, pipeline=GES, batch_id="b-done")
    state = BatchState(redis_client)
    assert state.finish("b-done", 1) == (True, None)
    again = submit_batch(
        redis_client, prices=PRICES, source=source, pipeline=GES, batch_id="b-done"
    )
    assert (again.resumed, again.status) == (True, "finished")
    assert state.active() == []


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a..b", "x" * 101, "a b", "_active"])
def test_batch_ids_are_validated(bad: str) -> None:
    with pytest.raises(BatchIdError):
        validate_batch_id(bad)


def test_a_csv_in_the_store_can_be_submitted(redis_client: redis.Redis) -> None:
    store = ArtifactStore.from_url("memory://")
    store.put_bytes("inputs/rows.csv", (HEADER + row(1)).encode(), content_type="text/csv")
    report = submit_batch(
        redis_client,
        prices=PRICES,
        source=f"{store.url}/inputs/rows.csv",
        pipeline=GES,
        store=store,
    )
    assert (report.refused, report.accepted) == (None, 1)


def test_100k_rows_are_validated_and_written(redis_client: redis.Redis, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER.strip().split(","))
        for i in range(1, 100_001):
            writer.writerow(
                [
                    f"a lo-fi beat number {i}",
                    f"T{i}",
                    "FUZZ-2.0",
                    "true",
                    str(i),
                    "0.3",
                    "more rain",
                ]
            )
    report = submit_batch(
        redis_client, prices=PRICES, source=str(path), pipeline=GES, batch_id="b-big"
    )
    assert (report.refused, report.accepted) == (None, 100_000)
    assert redis_client.hlen(part_key("b-big", "rows")) == 100_000
    assert redis_client.strlen(part_key("b-big", "state")) == 100_001
    assert not any(k.startswith(("celery", "_kombu")) for k in keys(redis_client))
