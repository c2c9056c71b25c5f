"""The references a canvas carries, as the worker resolves them at run time.

``build_row_canvas`` leaves ``{"$ref": "steps.NAME.FIELD"}`` markers in the params;
``workers.operations.params.complete_params`` fills them in from the ``outputs`` of
the previous result (or of a chord's list of results). These tests drive the two
together, without a worker: the end-to-end runs are in
``tests/integration/test_pipelines_e2e.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery import chord, group
from celery.canvas import Signature, _chain

from pipelines.specs.canvas import build_row_canvas
from pipelines.specs.loader import get_pipeline
from pipelines.specs.spec import PipelineSpec
from workers.operations.errors import StepFailed
from workers.operations.params import complete_params, resolve_refs
from workers.operations.results import (
    PRIOR_OUTPUTS_KEY,
    StepResult,
    carry_outputs,
    prior_outputs,
    split_context,
    storage_step,
    with_outputs,
)


def result(
    step: str,
    audio_id: str,
    *,
    duration: float = 30.0,
    prior: dict[str, dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A step result as a worker returns it, with its outputs."""
    made = StepResult(
        action=fields.pop("action", "generate"),
        step_key=f"b/2/{step}",
        audio_id=audio_id,
        duration=duration,
        context={"step": step},
        **fields,
    )
    return with_outputs(made, prior or {}).model_dump(mode="json")


def steps_of(canvas: Signature) -> list[Signature]:
    """The step signatures of a canvas in run order."""
    if isinstance(canvas, chord):
        return [*steps_of(group(canvas.tasks)), *steps_of(canvas.body)]
    if isinstance(canvas, _chain | group):
        return [s for part in canvas.tasks for s in steps_of(part)]
    return [canvas]


def params_of(spec: PipelineSpec, step: str) -> dict[str, Any]:
    """The params the canvas gives the step (or step copy) called ``step``."""
    canvas = build_row_canvas(spec, {"prompt": "x"}, batch_id="b", row=2)
    found = [s for s in steps_of(canvas) if s.kwargs["context"]["step"] == step]
    return dict(found[0].kwargs["params"])


def test_extend_takes_the_generated_songs_id_and_duration() -> None:
    spec = get_pipeline("generate-extend-stems")
    song = result("generate", "song-1", duration=42.5)
    params = complete_params("extend", params_of(spec, "extend"), song)
    assert params["audio_id"] == "song-1"
    assert params["continue_at"] == 42.5


def test_explicit_references_win_over_the_previous_steps_defaults() -> None:
    spec = PipelineSpec(
        name="p",
        steps=[
            {"name": "first", "action": "generate", "params": {"prompt": "{row.prompt}"}},
            {"name": "second", "action": "variation"},
            {
                "name": "third",
                "action": "extend",
                "params": {
                    "audio_id": "{steps.first.audio_id}",
                    "continue_at": "{steps.first.duration}",
                },
            },
        ],
    )
    first = result("first", "song-1", duration=10.0)
    second = result("second", "song-2", duration=99.0, prior=first["outputs"])
    params = complete_params("extend", params_of(spec, "third"), second)
    assert params == {"audio_id": "song-1", "continue_at": 10.0}
    # Without references the previous step's song is continued from its end.
    assert complete_params("extend", {}, second) == {"audio_id": "song-2", "continue_at": 99.0}


def test_a_chord_passes_a_list_and_its_outputs_merge() -> None:
    song = result("generate", "song-1")
    copies = [
        result(f"variation#{i}", f"var-{i}", prior=song["outputs"], action="variation")
        for i in (1, 2)
    ]
    assert set(prior_outputs(copies)) == {"generate", "variation#1", "variation#2"}
    refs = {
        "a": {"$ref": "steps.variation.audio_id"},
        "b": {"$ref": "steps.variation#2.audio_id"},
        "c": {"$ref": "steps.generate.audio_id"},
    }
    assert resolve_refs("stems", refs, copies) == {"a": "var-1", "b": "var-2", "c": "song-1"}
    # The implicit audio id after a chord is the first copy's.
    assert complete_params("stems", {}, copies) == {"audio_id": "var-1"}
    spec = get_pipeline("generate-variations")
    assert complete_params("stems", params_of(spec, "stems"), copies) == {"audio_id": "var-1"}


def test_a_reference_to_a_step_not_in_the_chain_fails_the_step() -> None:
    with pytest.raises(StepFailed) as info:
        complete_params(
            "stems", {"audio_id": {"$ref": "steps.nope.audio_id"}}, result("generate", "song-1")
        )
    assert info.value.code == "invalid_params"
    assert "no earlier step 'nope'" in info.value.message
    assert "generate" in info.value.message


def test_a_reference_to_a_missing_output_fails_the_step() -> None:
    words = result("words", "", action="lyrics", title="Tides")
    for audio_id in ("", None):
        words["outputs"]["words"]["audio_id"] = audio_id
        with pytest.raises(StepFailed) as info:
            complete_params("stems", {"audio_id": {"$ref": "steps.words.audio_id"}}, words)
        assert info.value.code == "invalid_params"
        assert "step words has no output audio_id" in info.value.message


@pytest.mark.parametrize("ref", ["steps.a", "outputs.a.audio_id", "steps.a.b.c"])
def test_a_malformed_reference_fails_the_step(ref: str) -> None:
    with pytest.raises(StepFailed, match="bad reference"):
        complete_params("stems", {"audio_id": {"$ref": ref}}, result("a", "song-1"))


def test_a_reference_without_any_previous_result_fails_the_step() -> None:
    with pytest.raises(StepFailed, match="no earlier step 'gen'"):
        complete_params("stems", {"audio_id": {"$ref": "steps.gen.audio_id"}}, None)


def test_params_without_references_are_unchanged() -> None:
    assert complete_params("generate", {"prompt": "x"}, None) == {"prompt": "x"}
    assert complete_params("stems", {"audio_id": "given"}, result("g", "song-1")) == {
        "audio_id": "given"
    }


def test_outputs_accumulate_along_the_chain() -> None:
    first = result("first", "song-1", title="One", seed="7", model="FUZZ-2.0")
    assert first["outputs"] == {
        "first": {
            "audio_id": "song-1",
            "duration": 30.0,
            "title": "One",
            "seed": "7",
            "model": "FUZZ-2.0",
            "api_task_id": None,
            "lyric": None,
        }
    }
    second = result("second", "song-2", prior=prior_outputs(first))
    assert list(second["outputs"]) == ["first", "second"]
    unnamed = with_outputs(StepResult(action="stems", step_key="k"), {})
    assert list(unnamed.outputs) == ["stems"]  # ad hoc chains: the action names the step


def test_outputs_travel_in_the_context_and_leave_it_again() -> None:
    first = result("first", "song-1")
    carried = carry_outputs({"batch": "b", "row": 2, "step": "second"}, first)
    assert carried[PRIOR_OUTPUTS_KEY] == first["outputs"]
    clean, prior = split_context(carried)
    assert clean == {"batch": "b", "row": 2, "step": "second"}
    assert prior == first["outputs"]
    assert carry_outputs(None, None) == {}


def test_copies_are_stored_under_safe_names() -> None:
    assert storage_step("variation#2") == "variation.2"
    assert storage_step("generate") == "generate"


def test_every_output_field_has_a_placeholder_the_params_models_accept() -> None:
    from pipelines.specs.refs import PLACEHOLDERS
    from workers.operations.actions import OUTPUT_FIELDS

    assert set(PLACEHOLDERS) == set(OUTPUT_FIELDS)
