"""``collect`` through a real worker: unique keys per artifact kind, nothing left of a
failed step, unsafe item ids as a bad provider reply (issue 9, items 7 and 15).

Each test publishes ``producer.collect`` as the poller would, with a provider reply
written here (callback-shaped) whose URLs point at the emulator's CDN, for a step
whose ledger entry is ``submitted``, whose in-flight slot is held and whose
continuation is claimed: the state a real collect starts from.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from pipelines.app import app
from tests.integration.fleet import Fleet, fleet
from workers.completion.continuations import Continuation
from workers.completion.outcome import ProviderOutcome
from workers.completion.resume import resume
from workers.constants import INFLIGHT_PREFIX
from workers.ledger import State
from workers.operations.submit import request_fingerprint
from workers.tasks.audios import generate

BATCH = "keys"


@pytest.fixture
def song_fleet(redis_url: str, tmp_path: Path) -> Iterator[tuple[Fleet, str]]:
    """A fleet and the id of one finished song at its emulator."""
    with fleet(redis_url, tmp_path / "artifacts") as f:
        done = generate.apply_async(kwargs={"params": {"prompt": "a song"}}).get(timeout=30)
        yield f, str(done["audio_id"])


def collect(f: Fleet, row: int, items: list[dict[str, Any]]) -> tuple[AsyncResult, str]:
    """Run ``collect`` for a paid step of row ``row`` whose provider reply holds ``items``."""
    svc = f.services
    key, api_task_id, task_id = f"{BATCH}/{row}/generate", f"api-{uuid.uuid4()}", str(uuid.uuid4())
    svc.ledger.reserve(key, fingerprint=request_fingerprint({"row": row}), owner=task_id)
    svc.ledger.begin_submit(key, owner=task_id)
    svc.ledger.mark_submitted(key, api_task_id=api_task_id, owner=task_id)
    assert svc.limiter.lease(svc.token_id, key, 600).granted
    now = time.time()
    cont = Continuation(
        celery_task_id=task_id,
        api_task_id=api_task_id,
        token_id=svc.token_id,
        step_key=key,
        action="generate",
        submitted_at=now,
        deadline_at=now + 60,
        context={"params": {}, "context": {"batch": BATCH, "row": row, "step": "generate"}},
    )
    svc.continuations.save(cont, first_poll_at=now + 3600)
    claimed = svc.continuations.claim(api_task_id, svc.token_id)
    assert claimed is not None
    body = {"success": True, "task_id": api_task_id, "data": items}
    resume(app, claimed, ProviderOutcome.from_callback(body))
    return AsyncResult(task_id, app=app), key


def assert_step_released(f: Fleet, key: str) -> None:
    assert f.services.limiter.show(f.services.token_id).in_flight == 0
    assert list(f.redis.scan_iter(match=f"{INFLIGHT_PREFIX}claimed:*")) == []
    assert f.redis.zcard(f"{INFLIGHT_PREFIX}resumed:{f.services.token_id}") == 0


def stored_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not str(p.relative_to(root)).startswith(".")
    )


def test_an_audio_url_ending_in_png_does_not_take_the_covers_key(
    song_fleet: tuple[Fleet, str],
) -> None:
    f, song = song_fleet
    media = f"{f.emulator.url}/media/{song}"
    result, _ = collect(
        f, 1, [{"id": song, "audio_url": f"{media}.png", "image_url": media + ".png"}]
    )
    step = result.get(timeout=30)
    keys = [a["key"] for a in step["artifacts"]]
    assert len(keys) == len(set(keys)) == 3  # audio, image, metadata
    by_kind = {a["kind"]: a["key"] for a in step["artifacts"]}
    assert by_kind["audio"] != by_kind["image"]
    assert all((f.storage_dir / k).is_file() for k in keys)


def test_a_step_failing_on_its_second_file_leaves_no_object_behind(
    song_fleet: tuple[Fleet, str],
) -> None:
    f, song = song_fleet
    before = stored_files(f.storage_dir)
    missing = f"{f.emulator.url}/media/{uuid.uuid4()}.png"
    item = {"id": song, "audio_url": f"{f.emulator.url}/media/{song}.wav", "image_url": missing}
    result, key = collect(f, 2, [item])
    with pytest.raises(Exception, match="HTTP 404"):
        result.get(timeout=30)
    entry = f.services.ledger.get(key)
    assert entry is not None and entry.state is State.FAILED
    assert entry.error_code == "artifact_refused"
    assert stored_files(f.storage_dir) == before  # the audio stored first was removed
    assert_step_released(f, key)


@pytest.mark.parametrize("item_id", ["../../etc/passwd", "a/b", ".hidden"])
def test_an_unsafe_item_id_is_a_bad_provider_reply_logged_as_expected(
    song_fleet: tuple[Fleet, str], item_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    f, song = song_fleet
    item = {"id": item_id, "audio_url": f"{f.emulator.url}/media/{song}.wav"}
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        result, key = collect(f, 3, [item])
        with pytest.raises(Exception, match="bad_provider_reply"):
            result.get(timeout=30)
        time.sleep(0.2)  # the worker logs the task's end right after storing its result
    entry = f.services.ledger.get(key)
    assert entry is not None and entry.state is State.FAILED
    assert entry.error_code == "bad_provider_reply"
    assert_step_released(f, key)
    trace = [r for r in caplog.records if r.name == "celery.app.trace"]
    assert not [r for r in trace if r.levelno >= logging.ERROR or r.exc_info]
    assert [r for r in trace if "raised expected" in r.getMessage()]


def test_a_download_that_keeps_breaking_ends_the_step_when_retries_run_out(
    redis_url: str, tmp_path: Path
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    host = f"127.0.0.1:{closed.getsockname()[1]}"
    try:
        with fleet(
            redis_url, tmp_path / "artifacts", max_transient_retries=0, download_allow_hosts=[host]
        ) as f:
            result, key = collect(f, 4, [{"id": "song", "audio_url": f"http://{host}/song.wav"}])
            with pytest.raises(Exception, match="gave up after 0 retries"):
                result.get(timeout=30)
            entry = f.services.ledger.get(key)
            assert entry is not None and entry.state is State.FAILED
            assert entry.error_code == "artifact_download"
            assert_step_released(f, key)
    finally:
        closed.close()


def test_a_wrong_content_type_ends_the_step_like_a_404(song_fleet: tuple[Fleet, str]) -> None:
    f, song = song_fleet
    f.emulator.configure(
        faults={"rules": [{"when": {"audio_id": song}, "fault": "media_wrong_type"}]}
    )
    result, key = collect(f, 5, [{"id": song, "audio_url": f"{f.emulator.url}/media/{song}.wav"}])
    with pytest.raises(Exception, match="artifact_refused"):
        result.get(timeout=30)
    entry = f.services.ledger.get(key)
    assert entry is not None and entry.state is State.FAILED
    assert "text/html" in (entry.error_message or "")
    assert_step_released(f, key)
