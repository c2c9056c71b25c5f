"""Params models: ranges, required fields, cross-field rules, bodies and error messages."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer_client import (
    ACTIONS,
    MODELS,
    CoverParams,
    ExtendParams,
    GenerateParams,
    ParamsValidationError,
    ReplaceSectionParams,
    StemsParams,
    SwapInstrumentalsParams,
    SwapVocalsParams,
    UploadCoverParams,
    UploadExtendParams,
    UploadReplaceSectionParams,
    VariationParams,
    params_model_for,
    parse_audio_params,
)

AUDIO_ID = "38d3b9e2-0dfb-4338-b2a7-15e45656ed32"

# The smallest valid field set per action; each test adds or breaks one thing.
MINIMAL: dict[str, dict[str, Any]] = {
    "generate": {"prompt": "A song for Christmas"},
    "cover": {"audio_id": AUDIO_ID},
    "upload_cover": {"audio_id": AUDIO_ID},
    "extend": {"audio_id": AUDIO_ID, "continue_at": 3},
    "upload_extend": {"audio_id": AUDIO_ID, "continue_at": 3},
    "variation": {"audio_id": AUDIO_ID},
    "replace_section": {
        "audio_id": AUDIO_ID,
        "replace_section_start": 10,
        "replace_section_end": 20,
    },
    "upload_replace_section": {
        "audio_id": AUDIO_ID,
        "replace_section_start": 10,
        "replace_section_end": 20,
    },
    "swap_vocals": {"audio_id": AUDIO_ID, "lyric": "[Verse]\nla la"},
    "swap_instrumentals": {"audio_id": AUDIO_ID, "prompt": "Happy"},
    "stems": {"audio_id": AUDIO_ID},
}

# (field, low, high) per action, for the range properties.
RANGES = {
    "weirdness": (0.0, 1.0),
    "lyrics_strength": (0.0, 1.0),
    "sound_strength": (0.2, 1.0),
    "cover_strength": (0.2, 1.0),
}
RANGED_FIELDS = [
    (action, field)
    for action in ACTIONS
    for field in RANGES
    if field in params_model_for(action).model_fields
]
WITH_TEXT = [a for a in ACTIONS if "prompt" in params_model_for(a).model_fields]
WITH_MODEL = [a for a in ACTIONS if "model" in params_model_for(a).model_fields]
WITH_AUDIO_ID = [a for a in ACTIONS if "audio_id" in params_model_for(a).model_fields]


def build(action: str, **changes: Any) -> Any:
    return parse_audio_params({"action": action, **MINIMAL[action], **changes})


def invalid_fields(action: str, **changes: Any) -> list[str]:
    with pytest.raises(ParamsValidationError) as info:
        build(action, **changes)
    return [error.field for error in info.value.errors]


def test_actions_cover_every_model() -> None:
    assert set(ACTIONS) == set(MINIMAL)
    classes = {
        GenerateParams,
        CoverParams,
        UploadCoverParams,
        ExtendParams,
        UploadExtendParams,
        VariationParams,
        ReplaceSectionParams,
        UploadReplaceSectionParams,
        SwapVocalsParams,
        SwapInstrumentalsParams,
        StemsParams,
    }
    assert {params_model_for(a) for a in ACTIONS} == classes


@pytest.mark.parametrize("action", ACTIONS)
def test_minimal_params_build_a_body_with_prompt_and_lyric(action: str) -> None:
    body = build(action).to_body()
    assert body["action"] == action
    assert isinstance(body["prompt"], str)
    assert isinstance(body["lyric"], str)
    assert None not in body.values()


@pytest.mark.parametrize(("action", "field"), RANGED_FIELDS)
@given(data=st.data())
def test_ranges_accept_inside(action: str, field: str, data: st.DataObject) -> None:
    low, high = RANGES[field]
    value = data.draw(st.floats(min_value=low, max_value=high, allow_nan=False))
    assert build(action, **{field: value}).to_body()[field] == value


@pytest.mark.parametrize(("action", "field"), RANGED_FIELDS)
@given(data=st.data())
def test_ranges_reject_outside(action: str, field: str, data: st.DataObject) -> None:
    low, high = RANGES[field]
    below = st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False)
    above = st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False)
    value = data.draw(below | above | st.sampled_from([float("nan"), float("inf")]))
    assert invalid_fields(action, **{field: value}) == [field]


@pytest.mark.parametrize(("action", "field"), RANGED_FIELDS)
def test_ranges_reject_booleans(action: str, field: str) -> None:
    assert invalid_fields(action, **{field: True}) == [field]


@pytest.mark.parametrize("action", WITH_TEXT)
@given(prompt=st.text(min_size=1, max_size=200).filter(str.strip))
def test_prompt_up_to_200_chars(action: str, prompt: str) -> None:
    assert build(action, prompt=prompt).to_body()["prompt"] == prompt


@pytest.mark.parametrize("action", WITH_TEXT)
@given(prompt=st.text(min_size=201, max_size=400))
def test_prompt_over_200_chars_rejected(action: str, prompt: str) -> None:
    assert "prompt" in invalid_fields(action, prompt=prompt)


@pytest.mark.parametrize("action", WITH_MODEL)
@given(model=st.sampled_from(MODELS))
def test_every_fuzz_model_accepted(action: str, model: str) -> None:
    assert build(action, model=model).to_body()["model"] == model


@pytest.mark.parametrize("action", WITH_MODEL)
@given(model=st.text(max_size=20).filter(lambda m: m not in MODELS))
def test_unknown_models_rejected(action: str, model: str) -> None:
    assert invalid_fields(action, model=model) == ["model"]


@given(seed=st.integers(min_value=0, max_value=2**40))
def test_int_seed_becomes_digit_string(seed: int) -> None:
    assert build("generate", seed=seed).to_body()["seed"] == str(seed)


@given(seed=st.text(min_size=1, max_size=12).filter(lambda s: not (s.isascii() and s.isdigit())))
def test_non_digit_seed_rejected(seed: str) -> None:
    assert invalid_fields("generate", seed=seed) == ["seed"]


def test_negative_and_boolean_seed_rejected() -> None:
    assert invalid_fields("generate", seed=-3) == ["seed"]
    assert invalid_fields("generate", seed=True) == ["seed"]


@given(
    start=st.floats(min_value=0, max_value=600, allow_nan=False),
    length=st.floats(min_value=0.001, max_value=300, allow_nan=False),
)
def test_replace_section_ordered_accepted(start: float, length: float) -> None:
    end = start + length
    if end <= start:  # float rounding at large magnitudes
        return
    body = build("replace_section", replace_section_start=start, replace_section_end=end)
    assert body.to_body()["replace_section_end"] == end


@pytest.mark.parametrize("action", ["replace_section", "upload_replace_section"])
@given(
    start=st.floats(min_value=0, max_value=600, allow_nan=False),
    back=st.floats(min_value=0, max_value=600, allow_nan=False),
)
def test_replace_section_unordered_rejected(action: str, start: float, back: float) -> None:
    end = max(start - back, 0.0)
    fields = invalid_fields(action, replace_section_start=start, replace_section_end=end)
    assert fields == ["replace_section_end"]


@pytest.mark.parametrize("action", ["replace_section", "upload_replace_section"])
def test_replace_section_negative_start_rejected(action: str) -> None:
    assert invalid_fields(action, replace_section_start=-1) == ["replace_section_start"]


@pytest.mark.parametrize("action", ["extend", "upload_extend"])
@given(continue_at=st.floats(max_value=0, exclude_max=True, allow_nan=False))
def test_continue_at_must_not_be_negative(action: str, continue_at: float) -> None:
    assert invalid_fields(action, continue_at=continue_at) == ["continue_at"]


@pytest.mark.parametrize(
    ("action", "field"),
    [(a, "audio_id") for a in WITH_AUDIO_ID]
    + [("extend", "continue_at"), ("upload_extend", "continue_at")]
    + [("swap_vocals", "lyric"), ("swap_instrumentals", "prompt")]
    + [
        (a, f)
        for a in ("replace_section", "upload_replace_section")
        for f in ("replace_section_start", "replace_section_end")
    ],
)
def test_required_fields(action: str, field: str) -> None:
    data = {k: v for k, v in MINIMAL[action].items() if k != field}
    with pytest.raises(ParamsValidationError) as info:
        parse_audio_params({"action": action, **data})
    assert [e.field for e in info.value.errors] == [field]
    assert str(info.value) == f"{action}: {field}: field required"


def test_stems_message_names_action_and_field() -> None:
    with pytest.raises(ParamsValidationError, match=r"^stems: audio_id: field required$"):
        StemsParams()  # type: ignore[call-arg]


def test_generate_prompt_mode_needs_prompt() -> None:
    assert invalid_fields("generate", prompt="   ") == ["prompt"]


def test_custom_mode_needs_lyric() -> None:
    assert invalid_fields("generate", custom=True) == ["lyric"]
    assert invalid_fields("cover", custom=True, lyric="") == ["lyric"]
    body = build("generate", custom=True, lyric="[Verse]\nhi", prompt="").to_body()
    assert body == {
        "action": "generate",
        "prompt": "",
        "lyric": "[Verse]\nhi",
        "custom": True,
        "instrumental": False,
    }


def test_swap_vocals_defaults_custom_and_needs_non_blank_lyric() -> None:
    assert build("swap_vocals").to_body()["custom"] is True
    assert invalid_fields("swap_vocals", lyric="  ") == ["lyric"]


def test_swap_instrumentals_needs_non_blank_prompt() -> None:
    assert invalid_fields("swap_instrumentals", prompt=" ") == ["prompt"]


def test_typo_is_named_and_all_errors_reported() -> None:
    with pytest.raises(ParamsValidationError) as info:
        GenerateParams(prompt="x", weirdnes=0.3, model="FUZZ-9")  # type: ignore[call-arg]
    fields = sorted(e.field for e in info.value.errors)
    assert fields == ["model", "weirdnes"]
    assert "generate: weirdnes:" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_stems_rejects_unrelated_fields() -> None:
    assert invalid_fields("stems", prompt="x") == ["prompt"]


def test_unknown_or_missing_action() -> None:
    with pytest.raises(ParamsValidationError, match="unknown action 'remix'"):
        parse_audio_params({"action": "remix"})
    with pytest.raises(ParamsValidationError, match=r"^action: field required$"):
        parse_audio_params({"prompt": "x"})
    with pytest.raises(ParamsValidationError):
        params_model_for("nope")


def test_numbers_keep_their_written_form() -> None:
    body = build("extend", continue_at=3, weirdness=0.3, sound_strength="0.5").to_body()
    assert body["continue_at"] == 3
    assert isinstance(body["continue_at"], int)
    assert body["weirdness"] == 0.3
    assert body["sound_strength"] == 0.5


def test_body_never_contains_none() -> None:
    body = GenerateParams(prompt="hi", title=None, model=None).to_body()
    assert body == {
        "action": "generate",
        "prompt": "hi",
        "lyric": "",
        "custom": False,
        "instrumental": False,
    }


def test_params_are_frozen_and_parse_accepts_models_fields() -> None:
    params = GenerateParams(prompt="hi")
    with pytest.raises(ValueError, match="frozen"):
        params.prompt = "other"  # type: ignore[misc]
    assert parse_audio_params(params.to_body()) == params
