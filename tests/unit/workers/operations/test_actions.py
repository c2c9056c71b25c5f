"""The action catalogue agrees with the client, the params models and the results."""

from __future__ import annotations

import pytest

from producer_client import ACTIONS, params_model_for
from workers.operations.actions import (
    AUDIOS_ACTIONS,
    CATALOGUE,
    CONTINUES_AT_END,
    KNOWN_ACTIONS,
    NEEDS_AUDIO_ID,
    OUTPUT_FIELDS,
    QUICK_ACTIONS,
    ActionKind,
    UnknownActionError,
    action,
    quick_action,
)
from workers.operations.params import complete_params
from workers.operations.quick import quick_body
from workers.operations.results import StepResult, with_outputs


def test_audios_actions_are_the_clients_in_its_order() -> None:
    assert AUDIOS_ACTIONS == ACTIONS
    assert (*AUDIOS_ACTIONS, *QUICK_ACTIONS) == KNOWN_ACTIONS
    assert QUICK_ACTIONS == ("upload", "lyrics", "wav", "videos")


@pytest.mark.parametrize("name", KNOWN_ACTIONS)
def test_each_entry_is_consistent(name: str) -> None:
    entry = action(name)
    assert entry.name == name
    assert entry.outputs <= set(OUTPUT_FIELDS)
    assert "api_task_id" in entry.outputs
    if entry.kind is ActionKind.AUDIOS:
        fields = set(params_model_for(name).model_fields)
        assert entry.outputs == set(OUTPUT_FIELDS)  # a song has every summary field
        assert entry.input_field is None and entry.reply_model is None
        assert entry.endpoint == "/producer/audios"
    else:
        assert entry.input_field is not None and entry.reply_model is not None
        fields = {entry.input_field}
        assert entry.endpoint == f"/producer/{name}"
        assert quick_body(name, {entry.input_field: "x"}) == {entry.input_field: "x"}
    # Every action with an audio_id param takes the previous step's when not given.
    assert entry.needs_audio_id == ("audio_id" in fields)
    if entry.continues_at_end:
        assert "continue_at" in fields and entry.needs_audio_id


def test_derived_sets_follow_the_table() -> None:
    assert {a.name for a in CATALOGUE.values() if a.needs_audio_id} == NEEDS_AUDIO_ID
    assert {"extend", "upload_extend"} == CONTINUES_AT_END
    assert "generate" not in NEEDS_AUDIO_ID and "lyrics" not in NEEDS_AUDIO_ID
    assert action("lyrics").outputs == {"title", "api_task_id", "lyric"}


def test_params_take_the_previous_audio_id_exactly_for_the_catalogues_actions() -> None:
    prev = {"action": "generate", "audio_id": "a1", "duration": 42.0}
    for name in KNOWN_ACTIONS:
        filled = complete_params(name, {}, prev)
        assert (filled.get("audio_id") == "a1") == (name in NEEDS_AUDIO_ID)
        assert ("continue_at" in filled) == (name in CONTINUES_AT_END)


def test_a_step_summary_has_exactly_the_output_fields() -> None:
    step = with_outputs(StepResult(action="generate", step_key="b/1/gen", audio_id="a1"), {})
    assert tuple(step.outputs["generate"]) == OUTPUT_FIELDS


def test_unknown_names_are_refused_with_the_known_list() -> None:
    with pytest.raises(UnknownActionError, match="known actions: generate"):
        action("remix")
    with pytest.raises(KeyError):
        quick_action("generate")
