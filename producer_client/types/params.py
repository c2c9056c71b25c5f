"""Request parameters of ``POST /producer/audios``: one model per action.

Every model forbids unknown fields (a typo is named in the error), validates ranges
before anything is sent, and turns itself into the JSON body with :meth:`to_body`.
Invalid input raises :class:`~producer_client.ParamsValidationError`, whether the
model is built directly or through :func:`parse_audio_params`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from producer_client._exceptions import FieldError, ParamsValidationError

ModelName = Literal[
    "FUZZ-2.0 Pro",
    "FUZZ-2.0",
    "FUZZ-2.0 Raw",
    "FUZZ-1.1 Pro",
    "FUZZ-1.0 Pro",
    "FUZZ-1.0",
    "FUZZ-1.1",
    "FUZZ-0.8",
]
MODELS: tuple[str, ...] = get_args(ModelName)
"""Every model name the client accepts, in the order of :data:`ModelName`.

Derived from the ``Literal`` so the list is written once."""
MAX_PROMPT_CHARS = 200


class _FieldIssue(ValueError):
    """A cross-field rule broken; carries the field to blame in the error report."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _no_bool(value: Any) -> Any:
    # bool is an int in Python; `weirdness=True` is a mistake, not 1.0.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _compact_number(value: float) -> int | float:
    # Send 3 rather than 3.0 so bodies (and their fingerprints) match what users wrote.
    return int(value) if value.is_integer() else value


def _seed_text(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise ValueError("must be a string of digits")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Seed = Annotated[str, BeforeValidator(_seed_text)]
Prompt = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
NonBlank = Annotated[str, AfterValidator(_not_blank)]
_IS_NUMBER = BeforeValidator(_no_bool)
_AS_SENT = PlainSerializer(_compact_number)
Unit = Annotated[float, _IS_NUMBER, Field(ge=0.0, le=1.0, allow_inf_nan=False), _AS_SENT]
Strength = Annotated[float, _IS_NUMBER, Field(ge=0.2, le=1.0, allow_inf_nan=False), _AS_SENT]
Seconds = Annotated[float, _IS_NUMBER, Field(ge=0.0, allow_inf_nan=False), _AS_SENT]


class BaseAudioParams(BaseModel):
    """Base of every params model: unknown fields forbidden, errors as ParamsValidationError."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _params_error(exc, _action_of(type(self))) from None

    def to_body(self) -> dict[str, Any]:
        """The JSON body for ``/producer/audios`` (no ``async``/``callback_url``)."""
        fields = self.model_dump(mode="json", exclude_none=True)
        # CONTRACT §9 Q1: both specs require prompt and lyric; send "" when unused.
        return {"action": fields.pop("action"), "prompt": "", "lyric": "", **fields}


class _Styled(BaseAudioParams):
    model: ModelName | None = None
    title: str | None = None
    seed: Seed | None = None


class _Knobs(BaseAudioParams):
    weirdness: Unit | None = None
    lyrics_strength: Unit | None = None
    sound_strength: Strength | None = None


class _Source(BaseAudioParams):
    audio_id: NonBlank


class _Song(_Styled):
    prompt: Prompt = ""
    lyric: str = ""
    custom: bool = False

    @model_validator(mode="after")
    def _custom_needs_lyric(self) -> _Song:
        if self.custom and not self.lyric.strip():
            raise _FieldIssue("lyric", "must not be empty when custom is true")
        return self


class GenerateParams(_Knobs, _Song):
    """``generate``: a new song from ``prompt`` (custom false) or ``lyric`` (custom true)."""

    action: Literal["generate"] = "generate"
    instrumental: bool = False

    @model_validator(mode="after")
    def _prompt_mode_needs_prompt(self) -> GenerateParams:
        if not self.custom and not self.prompt.strip():
            raise _FieldIssue("prompt", "must not be empty in prompt mode (custom is false)")
        return self


class _CoverBase(_Source, _Knobs, _Song):
    instrumental: bool = False
    cover_strength: Strength | None = None


class CoverParams(_CoverBase):
    """``cover``: re-perform a song (``audio_id``) in a new style."""

    action: Literal["cover"] = "cover"


class UploadCoverParams(_CoverBase):
    """``upload_cover``: cover of an uploaded song (``audio_id`` from ``/producer/upload``)."""

    action: Literal["upload_cover"] = "upload_cover"


class _ExtendBase(_Source, _Knobs, _Song):
    continue_at: Seconds
    instrumental: bool = False


class ExtendParams(_ExtendBase):
    """``extend``: continue a song from ``continue_at`` seconds."""

    action: Literal["extend"] = "extend"


class UploadExtendParams(_ExtendBase):
    """``upload_extend``: continue an uploaded song from ``continue_at`` seconds."""

    action: Literal["upload_extend"] = "upload_extend"


class VariationParams(_Source, _Knobs, _Song):
    """``variation``: a variation of a song."""

    action: Literal["variation"] = "variation"
    instrumental: bool = False


class _ReplaceBase(_Source, _Knobs, _Song):
    replace_section_start: Seconds
    replace_section_end: Seconds

    @model_validator(mode="after")
    def _section_is_ordered(self) -> _ReplaceBase:
        if self.replace_section_start >= self.replace_section_end:
            raise _FieldIssue("replace_section_end", "must be greater than replace_section_start")
        return self


class ReplaceSectionParams(_ReplaceBase):
    """``replace_section``: regenerate the section between start and end seconds."""

    action: Literal["replace_section"] = "replace_section"


class UploadReplaceSectionParams(_ReplaceBase):
    """``upload_replace_section``: replace a section of an uploaded song."""

    action: Literal["upload_replace_section"] = "upload_replace_section"


class SwapVocalsParams(_Source, _Styled):
    """``swap_vocals``: new vocals singing ``lyric`` over the song's instrumental."""

    action: Literal["swap_vocals"] = "swap_vocals"
    lyric: NonBlank
    prompt: Prompt = ""
    custom: bool = True
    weirdness: Unit | None = None
    lyrics_strength: Unit | None = None


class SwapInstrumentalsParams(_Source, _Styled):
    """``swap_instrumentals``: a new instrumental in the style ``prompt`` under the vocals."""

    action: Literal["swap_instrumentals"] = "swap_instrumentals"
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS), AfterValidator(_not_blank)]
    weirdness: Unit | None = None
    sound_strength: Strength | None = None


class StemsParams(_Source):
    """``stems``: split a song into stems (a zip at ``stems_url``)."""

    action: Literal["stems"] = "stems"


AudioParams = Annotated[
    GenerateParams
    | CoverParams
    | UploadCoverParams
    | ExtendParams
    | UploadExtendParams
    | VariationParams
    | ReplaceSectionParams
    | UploadReplaceSectionParams
    | SwapVocalsParams
    | SwapInstrumentalsParams
    | StemsParams,
    Field(discriminator="action"),
]
"""Any ``/producer/audios`` params model, discriminated by ``action``."""

_BY_ACTION: dict[str, type[BaseAudioParams]] = {
    _cls.model_fields["action"].default: _cls
    for _cls in (
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
    )
}
ACTIONS: tuple[str, ...] = tuple(_BY_ACTION)
"""Every ``action`` this client can send to ``/producer/audios``."""


def params_model_for(action: str) -> type[BaseAudioParams]:
    """The params model of ``action``; raises ParamsValidationError for an unknown one."""
    try:
        return _BY_ACTION[action]
    except (KeyError, TypeError):
        expected = ", ".join(ACTIONS)
        message = f"unknown action {action!r}; expected one of: {expected}"
        raise ParamsValidationError([FieldError("action", message)]) from None


def parse_audio_params(data: Mapping[str, Any]) -> AudioParams:
    """Validate a plain mapping (a CSV row, a pipeline step) into its params model."""
    if not isinstance(data, Mapping):
        raise ParamsValidationError([FieldError("params", "must be a mapping")])
    if "action" not in data:
        raise ParamsValidationError([FieldError("action", "field required")])
    model = params_model_for(data["action"])
    # The models' __init__ (also used by pydantic's own validation) reports errors.
    return model(**{str(key): value for key, value in data.items()})  # type: ignore[return-value]


def _action_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("action")
    return None if field is None else str(field.default)


def _params_error(exc: ValidationError, action: str | None) -> ParamsValidationError:
    return ParamsValidationError([_field_error(e) for e in exc.errors()], action=action)


def _field_error(error: Any) -> FieldError:
    issue = error.get("ctx", {}).get("error")
    if isinstance(issue, _FieldIssue):
        return FieldError(issue.field, issue.message)
    field = ".".join(str(part) for part in error["loc"]) or "params"
    return FieldError(field, _tidy(error["msg"]))


def _tidy(message: str) -> str:
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]
