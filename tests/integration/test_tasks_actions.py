"""Every Producer action through a real Celery worker, against the emulator over HTTP.

One fleet (emulator, Redis, threads worker, poller) serves the whole module. Each case
runs one canvas — a single step, or a chain from the step that makes its source song —
and checks every step's :class:`~workers.operations.results.StepResult`: ids, stored
artifacts whose sha256 and size match the bytes on disk, the metadata JSON, the song
facts (duration, seed, model), a ``done`` ledger entry, and exactly one paid
submission at the emulator for each step.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import chain
from celery.canvas import Signature
from celery.result import AsyncResult

from producer_client import request_fingerprint
from tests.integration.fleet import Fleet, check_artifacts, fleet
from workers.ledger import State
from workers.operations.actions import AUDIOS_ACTIONS, KNOWN_ACTIONS, QUICK_ACTIONS
from workers.operations.params import audio_params
from workers.operations.quick import quick_body
from workers.tasks.audios import TASKS
from workers.tasks.media import lyrics, upload, videos, wav

STEP_TIMEOUT_S = 60

# Steps whose result describes a song (duration, seed, model, audio + cover image).
SONG_ACTIONS = frozenset(TASKS) - {"stems"}


@pytest.fixture(scope="module")
def actions_fleet(
    redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """One fleet for the module: every case is independent (own prompts and seeds)."""
    with fleet(redis_server_url, tmp_path_factory.mktemp("artifacts"), concurrency=4) as f:
        yield f


def run_chain(*steps: Signature) -> list[dict[str, Any]]:
    """Run ``steps`` as one chain and return every step's result, first step first."""
    last = chain(*steps).apply_async() if len(steps) > 1 else steps[0].apply_async()
    results = [last.get(timeout=STEP_TIMEOUT_S)]
    node: AsyncResult | None = last.parent
    while node is not None:
        results.append(node.get(timeout=5))
        node = node.parent
    return results[::-1]


def generate_first(params: dict[str, Any]) -> Signature:
    """The ``generate`` step that makes a chain's source song."""
    return TASKS["generate"].s(params={"prompt": "source song", **params})


@dataclass(frozen=True)
class Case:
    """One action under test: how to build its canvas from the fleet."""

    name: str
    build: Callable[[Fleet], list[Signature]]


def _single(action: str, params: dict[str, Any]) -> Callable[[Fleet], list[Signature]]:
    return lambda _: [TASKS[action].s(params=params)]


def _after_generate(
    action: str, params: dict[str, Any], seed: str
) -> Callable[[Fleet], list[Signature]]:
    def build(_: Fleet) -> list[Signature]:
        step = TASKS[action] if action in TASKS else {"wav": wav, "videos": videos}[action]
        return [generate_first({"seed": seed}), step.s(params=params)]

    return build


def _after_upload(
    action: str, params: dict[str, Any], seed: str
) -> Callable[[Fleet], list[Signature]]:
    # upload needs an http(s) URL of a WAV: a song the emulator made and serves.
    def build(_: Fleet) -> list[Signature]:
        source = run_chain(generate_first({"seed": seed}))[0]
        url = source["items"][0]["audio_url"]
        return [upload.s(params={"audio_url": url}), TASKS[action].s(params=params)]

    return build


CASES = [
    Case("generate_prompt", _single("generate", {"prompt": "lo-fi rain", "seed": "101"})),
    Case(
        "generate_custom_lyric",
        _single(
            "generate",
            {
                "custom": True,
                "lyric": "[Verse]\nstreetlights hum",
                "title": "Hum",
                "seed": "102",
                "model": "FUZZ-2.0 Pro",
            },
        ),
    ),
    Case(
        "generate_instrumental",
        _single("generate", {"prompt": "ambient drone", "instrumental": True, "seed": "103"}),
    ),
    Case("cover", _after_generate("cover", {"prompt": "as a jazz ballad"}, "104")),
    Case("extend", _after_generate("extend", {"prompt": "and a bridge"}, "105")),
    Case("variation", _after_generate("variation", {}, "106")),
    Case(
        "replace_section",
        _after_generate(
            "replace_section",
            {"replace_section_start": 2.0, "replace_section_end": 6.5, "prompt": "a drum break"},
            "107",
        ),
    ),
    Case("swap_vocals", _after_generate("swap_vocals", {"lyric": "[Verse]\nnew words"}, "108")),
    Case(
        "swap_instrumentals", _after_generate("swap_instrumentals", {"prompt": "surf rock"}, "109")
    ),
    Case("stems", _after_generate("stems", {}, "110")),
    Case("wav", _after_generate("wav", {}, "111")),
    Case("videos", _after_generate("videos", {}, "112")),
    Case("lyrics", lambda _: [lyrics.s(params={"prompt": "a song about tides"})]),
    Case("upload_cover", _after_upload("upload_cover", {"prompt": "bossa nova"}, "113")),
    Case("upload_extend", _after_upload("upload_extend", {"continue_at": 5.0}, "114")),
    Case(
        "upload_replace_section",
        _after_upload(
            "upload_replace_section",
            {"replace_section_start": 1.0, "replace_section_end": 3.0},
            "115",
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_action_through_a_worker(actions_fleet: Fleet, case: Case) -> None:
    results = run_chain(*case.build(actions_fleet))
    counters = actions_fleet.counters
    for result in results:
        check_step(actions_fleet, result, counters)
    if len(results) == 2 and "audio_id" in results[1]["params"]:
        assert results[1]["params"]["audio_id"] == results[0]["audio_id"]


def check_step(f: Fleet, result: dict[str, Any], counters: dict[str, Any]) -> None:
    """Everything one step result must hold, for any action."""
    action = result["action"]
    assert result["step_key"]
    assert result["api_task_id"]
    entry = f.services.ledger.get(result["step_key"])
    assert entry is not None
    assert entry.state is State.DONE
    assert entry.api_task_id == result["api_task_id"]
    assert entry.result == result
    assert counters["submissions_by_fingerprint"][_fingerprint(action, result["params"])] == 1
    artifacts = check_artifacts(f.storage_dir, result)
    CHECKS.get(action, _check_song)(f, result, artifacts)


def _fingerprint(action: str, params: dict[str, Any]) -> str:
    # The emulator counts quick endpoints as "<endpoint>:<fingerprint>".
    if action in QUICK_ACTIONS:
        return f"{action}:{request_fingerprint(quick_body(action, params))}"
    return request_fingerprint(audio_params(action, params).to_body())


def _check_song(f: Fleet, result: dict[str, Any], artifacts: dict[str, dict[str, Any]]) -> None:
    assert set(artifacts) == {"audio", "image", "metadata"}
    assert result["audio_id"]
    assert result["title"]
    assert result["seed"]
    assert result["model"]
    assert result["duration"] > 0
    item = result["items"][0]
    assert item["id"] == result["audio_id"]
    assert item["seed"] == result["seed"]
    assert artifacts["audio"]["item_id"] == result["audio_id"]
    assert artifacts["audio"]["content_type"].startswith("audio/")
    assert artifacts["image"]["content_type"] == "image/png"
    assert _wav_seconds(f.storage_dir / artifacts["audio"]["key"]) == pytest.approx(
        result["duration"], abs=0.01
    )
    if "model" in result["params"]:
        assert result["model"] == result["params"]["model"]


def _check_stems(f: Fleet, result: dict[str, Any], artifacts: dict[str, dict[str, Any]]) -> None:
    assert set(artifacts) == {"stems", "metadata"}
    assert artifacts["stems"]["content_type"] == "application/zip"
    assert artifacts["stems"]["key"].endswith(".zip")


def _check_upload(f: Fleet, result: dict[str, Any], artifacts: dict[str, dict[str, Any]]) -> None:
    # An upload stores nothing: it only registers the URL's audio under a new id.
    assert artifacts == {}
    assert result["audio_id"]
    assert result["audio_id"] == result["extra"]["audio_id"]


def _check_lyrics(f: Fleet, result: dict[str, Any], artifacts: dict[str, dict[str, Any]]) -> None:
    assert set(artifacts) == {"lyrics"}
    assert result["extra"]["lyrics"]
    assert result["title"]


def _check_export(kind: str, content_type: str) -> Callable[..., None]:
    def check(f: Fleet, result: dict[str, Any], artifacts: dict[str, dict[str, Any]]) -> None:
        assert set(artifacts) == {kind}
        assert artifacts[kind]["content_type"] == content_type
        assert artifacts[kind]["key"].split("/")[-1].startswith(result["params"]["audio_id"])

    return check


CHECKS: dict[str, Callable[[Fleet, dict[str, Any], dict[str, dict[str, Any]]], None]] = {
    "stems": _check_stems,
    "upload": _check_upload,
    "lyrics": _check_lyrics,
    "wav": _check_export("wav", "audio/wav"),
    "videos": _check_export("video", "video/mp4"),
}


def _wav_seconds(path: Path) -> float:
    with wave.open(io.BytesIO(path.read_bytes())) as w:
        return float(w.getnframes() / w.getframerate())


def test_every_action_has_a_case() -> None:
    covered = {"generate", "upload", "lyrics", "wav", "videos"} | {
        c.name for c in CASES if c.name in TASKS
    }
    assert set(TASKS) | set(QUICK_ACTIONS) <= covered


def test_every_catalogue_action_is_a_registered_task() -> None:
    # One producer.<action> task per catalogue entry (was an import-time assert in media.py).
    assert set(TASKS) == set(AUDIOS_ACTIONS)
    quick_tasks = {t.name for t in (upload, lyrics, wav, videos)}
    assert quick_tasks == {f"producer.{a}" for a in QUICK_ACTIONS}
    assert set(KNOWN_ACTIONS) == set(AUDIOS_ACTIONS) | set(QUICK_ACTIONS)
