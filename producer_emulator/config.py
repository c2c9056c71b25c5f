"""Settings of the emulator: limits, timing, media and fault injection.

The fault part (:class:`FaultConfig`, :class:`FaultRule`) lives in
:mod:`producer_emulator.faults.rules`, next to the code that acts on it.

One :class:`EmulatorConfig` is built at the edge (tests, the CLI) and handed to
:func:`~producer_emulator.create_app`. It can be changed while the
server runs through ``POST /_emulator/config`` (see :func:`merge_config`).

Time model: ``time_scale`` multiplies every *wait* the emulator makes
(generation time, the 504 delay, slow responses, callback delays), so
``time_scale=0.01`` turns a 120 s generation into 1.2 s of wall clock.
Rate limits, ``Retry-After`` and every timestamp in a response are real
wall-clock seconds, because clients measure them with real clocks. Song
durations (``duration``, WAV length) are emulated seconds and do not scale.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from producer_emulator.faults.rules import FaultConfig


class EmulatorConfig(BaseModel):
    """Everything the emulator can be told; every field has a faithful default."""

    # NaN and infinity are never settings: an infinite wait passes ``ge=0`` and never ends.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tokens: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["emulator-token"],
        min_length=1,
        description="Accepted bearer tokens (at least one, none empty).",
    )
    generation_s: float = Field(40.0, ge=0, description="Mean generation time (emulated s).")
    generation_jitter_s: float = Field(10.0, ge=0, description="Uniform +- spread around the mean.")
    time_scale: float = Field(1.0, gt=0, description="Multiplier applied to every wait.")
    preview_fraction: float | None = Field(
        0.5,
        ge=0,
        le=1,
        description="Fraction of a generation after which polls show an intermediate response "
        "with a preview audio_url (None: no intermediate response).",
    )
    sample_rate: int = Field(16000, ge=8000, le=192000, description="Sample rate of served WAVs.")
    max_render_s: float | None = Field(None, gt=0, description="Cap on rendered audio length.")
    preview_render_s: float = Field(20.0, gt=0, description="Length of the preview WAV.")
    song_low_s: float = Field(120.0, gt=0, description="Shortest generated song (emulated s).")
    song_high_s: float = Field(240.0, gt=0, description="Longest generated song (emulated s).")
    submit_rate_per_s: float | None = Field(
        None, gt=0, description="Token bucket rate per token for audios/upload/lyrics/wav/videos."
    )
    submit_burst: int = Field(10, ge=1, description="Bucket size of the submit class.")
    poll_rate_per_s: float | None = Field(1.0, gt=0, description="Token bucket rate for /tasks.")
    poll_burst: int = Field(3, ge=1, description="Bucket size of the poll class.")
    max_concurrency: int | None = Field(
        5, ge=1, description="Generations in flight per token (None: unlimited)."
    )
    send_retry_after: bool = Field(False, description="Add Retry-After (seconds) to 429 replies.")
    response_success_key: bool = Field(
        True, description="Finished task records' response carries success/trace_id (CONTRACT Q4)."
    )
    async_reply_success: bool = Field(
        False,
        description="Immediate async/callback reply is {success:true, task_id, trace_id} "
        "instead of the guide's {task_id, trace_id} (CONTRACT Q6).",
    )
    strict_required: bool = Field(False, description="Missing prompt/lyric -> 400 bad_request.")
    default_model: str = Field("FUZZ-2.0", description="Model used when the request names none.")
    callback_timeout_s: float = Field(10.0, gt=0, description="Receiver timeout (real s).")
    upload_max_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Largest fetchable upload.")
    max_tasks: int = Field(500_000, ge=1, description="Finished tasks beyond this are forgotten.")
    request_log_size: int = Field(200_000, ge=1, description="Ring buffer of /_emulator/requests.")
    faults: FaultConfig = Field(
        default_factory=FaultConfig, description="Random and rule-based fault injection."
    )
    seed: int | None = Field(None, description="Seed of the fault/jitter/song RNGs.")

    @model_validator(mode="after")
    def _song_range(self) -> EmulatorConfig:
        if self.song_low_s > self.song_high_s:
            raise ValueError("song_low_s must not exceed song_high_s")
        return self

    def scaled(self, seconds: float) -> float:
        """Real seconds to wait for ``seconds`` of emulated time."""
        return seconds * self.time_scale


def merge_config(current: EmulatorConfig, changes: dict[str, Any]) -> EmulatorConfig:
    """Return ``current`` with ``changes`` applied; ``faults`` is merged key by key.

    Raises ``pydantic.ValidationError`` when the result is invalid, so a bad
    admin call leaves the running configuration untouched.
    """
    data = current.model_dump()
    fault_changes = changes.get("faults")
    data.update({k: v for k, v in changes.items() if k != "faults"})
    if isinstance(fault_changes, dict):
        data["faults"] = {**data["faults"], **fault_changes}
    elif fault_changes is not None:
        data["faults"] = fault_changes
    return EmulatorConfig.model_validate(data)


def config_problems(exc: ValidationError) -> str:
    """One readable line for an invalid configuration, each problem named by its field.

    e.g. ``faults.nosuch: Extra inputs are not permitted; faults.task_failure: Input
    should be less than or equal to 1``: what the CLI prints before exiting 2.
    """
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )
