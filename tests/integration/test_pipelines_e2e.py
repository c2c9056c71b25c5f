"""Pipelines end to end: a row's canvas through a real Celery worker and the emulator.

One fleet serves the module; every test uses its own batch id, so ledger keys
(``batch/row/step``) never collide. Each row's canvas is built by
:func:`pipelines.specs.canvas.build_row_canvas` exactly as the feeder will, applied, and
waited for; then every step's result is read back from the ledger and checked: every
step ran once (one paid call per step copy at the emulator), step references got the
referenced step's value, and ``outputs`` carries the history of the row.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import chain
from celery.backends.asynchronous import AsyncBackendMixin

from pipelines.specs.canvas import build_row_canvas, calls_per_row, validate_row
from pipelines.specs.loader import load_pipelines
from pipelines.specs.refs import StepRef
from pipelines.specs.spec import PipelineSpec
from tests.integration.fleet import Fleet, check_artifacts, fleet
from workers.ledger import State, step_key
from workers.tasks.audios import generate, stems
from workers.tasks.media import lyrics

TIMEOUT_S = 60
_batches = itertools.count(1)

ROW = {
    "prompt": "A warm lo-fi hip hop beat with vinyl crackle and soft rain",
    "title": "Rainy Window",
    "model": "FUZZ-2.0",
    "instrumental": "true",
    "seed": "1001",
    "weirdness": "0.3",
    "extend_prompt": "the rain gets heavier and a piano joins",
    "lyric": "[Verse]\nwindow light and falling rain",
    "instrumental_prompt": "surf rock",
    "cover_prompt": "as a jazz ballad",
    "variation_weirdness": "0.6",
    "style": "folk",
    "continue_at": "4.5",
}


@pytest.fixture(scope="module")
def pipelines_fleet(
    redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """One fleet for the module (rows are told apart by their batch ids)."""
    with fleet(redis_server_url, tmp_path_factory.mktemp("artifacts"), concurrency=4) as f:
        yield f
        _drop_result_waiters()


def _drop_result_waiters() -> None:
    """Release every result a backend of this process still waits on, while Redis is up.

    A worker thread that applies a chord registers the header's results as waiters in
    its own (thread-local) result backend, and nothing there ever waits for them, so
    they live until interpreter exit; their ``__del__`` (an unsubscribe) then fails
    once the session's embedded Redis has stopped.
    """
    backends = [o for o in gc.get_objects() if isinstance(o, AsyncBackendMixin)]
    for backend in backends:
        for mapping in backend._pending_results:
            for waiters in list(mapping.values()):
                for result in list(waiters.values()):
                    backend.remove_pending_result(result)
    gc.collect()


@pytest.fixture(scope="module")
def song_url(pipelines_fleet: Fleet) -> str:
    """The URL of a WAV the emulator serves: what the upload pipelines take as audio_url."""
    made = generate.s(params={"prompt": "source song", "seed": "77"}).apply_async()
    return str(made.get(timeout=TIMEOUT_S)["items"][0]["audio_url"])


def run_row(f: Fleet, spec: PipelineSpec, row: dict[str, str]) -> tuple[Any, str]:
    """Validate, build and run one row; return its final result and batch id."""
    assert validate_row(spec, row, row=2) == []
    batch = f"pipe-{spec.name}-{next(_batches)}"
    before = f.counters["submissions_total"]
    final = build_row_canvas(spec, row, batch_id=batch, row=2).apply_async().get(timeout=TIMEOUT_S)
    # Exactly one paid call per step copy, no more.
    assert f.counters["submissions_total"] - before == sum(calls_per_row(spec).values())
    return final, batch


def step_results(f: Fleet, spec: PipelineSpec, batch: str) -> dict[str, dict[str, Any]]:
    """Every step copy's recorded result, by its step name (``NAME`` or ``NAME#N``)."""
    results: dict[str, dict[str, Any]] = {}
    for step in spec.steps:
        for name in step.copy_names():
            entry = f.services.ledger.get(step_key(batch, 2, name))
            assert entry is not None and entry.state is State.DONE, (name, entry)
            assert entry.result is not None
            results[name] = entry.result
    return results


def check_row(f: Fleet, spec: PipelineSpec, batch: str) -> dict[str, dict[str, Any]]:
    """References resolved to the referenced step's values; outputs hold the history."""
    results = step_results(f, spec, batch)
    for index, step in enumerate(spec.steps):
        earlier = [n for s in spec.steps[:index] for n in s.copy_names()]
        for name in step.copy_names():
            result = results[name]
            check_artifacts(f.storage_dir, result)
            assert result["context"] == {"batch": batch, "row": 2, "step": name}
            assert set(result["outputs"]) == {*earlier, name}
            assert result["outputs"][name]["audio_id"] == result["audio_id"]
            for param, ref in step.templates():
                if isinstance(ref, StepRef):
                    source = results.get(ref.target) or results[f"{ref.target}#1"]
                    assert (
                        result["params"][param]
                        == source["outputs"][source["context"]["step"]][ref.field]
                    )
    return results


@pytest.mark.parametrize("name", sorted(load_pipelines()))
def test_builtin_pipeline_runs_one_row(pipelines_fleet: Fleet, song_url: str, name: str) -> None:
    spec = load_pipelines()[name]
    final, batch = run_row(pipelines_fleet, spec, {**ROW, "audio_url": song_url})
    results = check_row(pipelines_fleet, spec, batch)
    last = spec.steps[-1]
    expected = [results[n] for n in last.copy_names()]
    assert final == (expected[0] if last.repeat == 1 else expected)


def test_extend_continues_generated_song_from_its_end(pipelines_fleet: Fleet) -> None:
    spec = load_pipelines()["generate-extend-stems"]
    _, batch = run_row(pipelines_fleet, spec, ROW)
    results = step_results(pipelines_fleet, spec, batch)
    song, extended = results["generate"], results["extend"]
    assert extended["params"]["audio_id"] == song["audio_id"]
    assert extended["params"]["continue_at"] == pytest.approx(song["duration"])
    assert extended["params"]["prompt"] == ROW["extend_prompt"]
    assert results["stems"]["params"]["audio_id"] == extended["audio_id"]
    # Row cells arrive typed: "true" -> True, "0.3" -> 0.3.
    assert song["params"]["instrumental"] is True
    assert song["params"]["weirdness"] == 0.3


USER_FILE = """
[pipelines.skip-a-step]
description = "stems of the FIRST song, after a variation of it"

[[pipelines.skip-a-step.steps]]
name = "first"
action = "generate"
params = { prompt = "{row.prompt}", seed = "{row.seed?}" }

[[pipelines.skip-a-step.steps]]
name = "second"
action = "variation"

[[pipelines.skip-a-step.steps]]
name = "third"
action = "stems"
params = { audio_id = "{steps.first.audio_id}" }

[pipelines.fan-out]
description = "two songs side by side, stems of the second, then two variations of it"

[[pipelines.fan-out.steps]]
name = "songs"
action = "generate"
repeat = 2
params = { prompt = "{row.prompt}" }

[[pipelines.fan-out.steps]]
name = "stems"
action = "stems"
params = { audio_id = "{steps.songs#2.audio_id}" }

[[pipelines.fan-out.steps]]
name = "again"
action = "variation"
repeat = 2
params = { audio_id = "{steps.songs#2.audio_id}", title = "{steps.songs.title}" }
"""


@pytest.fixture
def user_pipelines(tmp_path: Path) -> dict[str, PipelineSpec]:
    """The built-ins plus the pipelines of a user's TOML file."""
    path = tmp_path / "mine.toml"
    path.write_text(USER_FILE)
    return load_pipelines(path)


def test_user_pipeline_refers_across_two_steps(
    pipelines_fleet: Fleet, user_pipelines: dict[str, PipelineSpec]
) -> None:
    spec = user_pipelines["skip-a-step"]
    final, batch = run_row(pipelines_fleet, spec, {"prompt": "tape hiss waltz", "seed": "5"})
    results = check_row(pipelines_fleet, spec, batch)
    first, second = results["first"], results["second"]
    assert second["params"]["audio_id"] == first["audio_id"]  # the implicit default
    assert final["params"]["audio_id"] == first["audio_id"] != second["audio_id"]
    assert set(final["outputs"]) == {"first", "second", "third"}


def test_repeated_steps_run_as_chords(
    pipelines_fleet: Fleet, user_pipelines: dict[str, PipelineSpec]
) -> None:
    spec = user_pipelines["fan-out"]
    final, batch = run_row(pipelines_fleet, spec, {"prompt": "two takes of a sea shanty"})
    results = check_row(pipelines_fleet, spec, batch)
    songs = [results["songs#1"], results["songs#2"]]
    assert songs[0]["audio_id"] != songs[1]["audio_id"]
    assert songs[0]["step_key"] != songs[1]["step_key"]
    # After the chord, stems got the list of both songs; the reference picked the second.
    assert results["stems"]["params"]["audio_id"] == songs[1]["audio_id"]
    assert {"songs#1", "songs#2"} <= set(results["stems"]["outputs"])
    # The last step is repeated: the row's result is the list of its copies' results.
    assert isinstance(final, list) and len(final) == 2
    assert [r["context"]["step"] for r in final] == ["again#1", "again#2"]
    for copy in final:
        assert copy["params"]["audio_id"] == songs[1]["audio_id"]
        assert copy["params"]["title"] == songs[0]["title"]  # bare NAME: the first copy


def test_a_failed_reference_fails_the_step_clearly(pipelines_fleet: Fleet) -> None:
    # A lyrics step has no audio id: referring to it fails the next step, naming why.
    ctx = {"batch": f"pipe-bad-ref-{next(_batches)}", "row": 2}
    result = chain(
        lyrics.s(params={"prompt": "tides"}, context={**ctx, "step": "words"}),
        stems.s(
            params={"audio_id": {"$ref": "steps.words.audio_id"}}, context={**ctx, "step": "split"}
        ),
    ).apply_async()
    with pytest.raises(Exception, match="step words has no output audio_id"):
        result.get(timeout=TIMEOUT_S)
