"""Every /producer/audios action in every mode, through the real client over real HTTP.

Modes (CONTRACT §1.1): blocking ``audios.create``; ``audios.submit`` (``async: true``)
then ``tasks.wait``; ``audios.submit(callback_url=...)`` with the result POSTed to a local
receiver. The emulator is never reset here: one source song and one uploaded copy of it
serve every edit action of the module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from producer_client import (
    AsyncProducer,
    AudioItem,
    AudioParams,
    AudioResult,
    CoverParams,
    ExtendParams,
    GenerateParams,
    Producer,
    ReplaceSectionParams,
    StemsParams,
    SwapInstrumentalsParams,
    SwapVocalsParams,
    TaskOutcome,
    TaskRecord,
    UploadCoverParams,
    UploadExtendParams,
    UploadReplaceSectionParams,
    VariationParams,
)
from producer_emulator import EmulatorServer
from tests.contract.contract_support import (
    TOKEN,
    WAIT,
    CallbackReceiver,
    client,
    finished,
    make_song,
    receiver,
    server,
)

__all__ = ["client", "receiver", "server"]  # fixtures imported for pytest

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
LYRIC = "[Verse]\nContract lines under neon light\n[Chorus]\nSing it once and sing it right"
DEFAULT_MODEL = "FUZZ-2.0"


@dataclass(frozen=True)
class Sources:
    """Songs the edit actions work on: a generated one and its uploaded copy."""

    song: AudioItem
    uploaded_id: str


@pytest.fixture(scope="module")
def sources(server: EmulatorServer) -> Sources:
    """A custom-mode song with vocals, and the audio_id of uploading its audio_url."""
    with Producer(api_token=TOKEN, base_url=server.url) as producer:
        song = make_song(producer, custom=True, lyric=LYRIC, title="Source")
        assert song.audio_url is not None
        uploaded = producer.upload.create(audio_url=song.audio_url)
    assert uploaded.audio_id is not None
    return Sources(song=song, uploaded_id=uploaded.audio_id)


def _song_id(s: Sources) -> str:
    assert s.song.id is not None
    return s.song.id


CASES: dict[str, Callable[[Sources], AudioParams]] = {
    "generate_prompt": lambda s: GenerateParams(
        prompt="A song for Christmas", model="FUZZ-2.0 Pro"
    ),
    "generate_custom": lambda s: GenerateParams(custom=True, lyric=LYRIC, title="Custom"),
    "instrumental": lambda s: GenerateParams(prompt="calm piano at dawn", instrumental=True),
    "cover": lambda s: CoverParams(
        audio_id=_song_id(s), custom=True, lyric=LYRIC, title="Cover", cover_strength=0.8
    ),
    "upload_cover": lambda s: UploadCoverParams(audio_id=s.uploaded_id, prompt="smoky jazz"),
    "extend": lambda s: ExtendParams(
        audio_id=_song_id(s),
        continue_at=5,
        weirdness=0.3,
        sound_strength=0.3,
        lyrics_strength=0.6,
    ),
    "upload_extend": lambda s: UploadExtendParams(audio_id=s.uploaded_id, continue_at=5),
    "variation": lambda s: VariationParams(audio_id=_song_id(s)),
    "replace_section": lambda s: ReplaceSectionParams(
        audio_id=_song_id(s),
        replace_section_start=2,
        replace_section_end=6,
        custom=True,
        lyric=LYRIC,
    ),
    "upload_replace_section": lambda s: UploadReplaceSectionParams(
        audio_id=s.uploaded_id, replace_section_start=2, replace_section_end=6
    ),
    "swap_vocals": lambda s: SwapVocalsParams(audio_id=_song_id(s), lyric=LYRIC),
    "swap_instrumentals": lambda s: SwapInstrumentalsParams(
        audio_id=_song_id(s), prompt="Happy", weirdness=0.6
    ),
    "stems": lambda s: StemsParams(audio_id=_song_id(s)),
}
SAME_LENGTH = {
    "cover", "upload_cover", "variation", "replace_section", "upload_replace_section",
    "swap_vocals", "swap_instrumentals",
}  # fmt: skip


# -- what a result must look like ------------------------------------------------------


def check_result(case: str, result: AudioResult, params: AudioParams, s: Sources) -> None:
    """One successful item of the right shape for ``case`` (CONTRACT §3.3)."""
    assert result.success is True
    assert result.task_id is not None
    assert UUID.match(result.task_id)
    assert result.trace_id is not None
    assert UUID.match(result.trace_id)
    assert len(result.data) == 1
    item = result.data[0]
    assert (item.state, item.progress) == ("succeeded", "100%")
    if case == "stems":
        check_stems_item(item, s)
    else:
        check_song_item(item, params)
        check_action_specifics(case, item, s)


def check_stems_item(item: AudioItem, s: Sources) -> None:
    """Stems items carry a zip link and no song fields."""
    assert item.stems_url is not None
    assert item.stems_url.endswith(".zip")
    assert item.id is None
    assert item.audio_url is None
    assert (item.title, item.model, item.lyric) == (s.song.title, "", "")


def check_song_item(item: AudioItem, params: AudioParams) -> None:
    """Song items: ids, media links, string seed, numeric duration, the model used."""
    assert item.id is not None
    assert UUID.match(item.id)
    assert item.image_id == item.id
    assert item.audio_url is not None
    assert item.audio_url.endswith(f"/media/{item.id}.wav")
    assert item.image_url is not None
    assert item.image_url.endswith(".png")
    assert item.video_url is None
    assert item.topic is None
    assert item.seed is not None
    assert item.seed.isdigit()
    assert item.duration is not None
    assert item.duration > 0
    assert item.model == (getattr(params, "model", None) or DEFAULT_MODEL)
    assert item.__pydantic_extra__ == {}, "an item key the client does not model"


def check_action_specifics(case: str, item: AudioItem, s: Sources) -> None:
    """Titles, lyrics, sound and length per action."""
    expected: dict[str, dict[str, Any]] = {
        "generate_prompt": {"title": "Untitled", "sound": "A song for Christmas"},
        "generate_custom": {"title": "Custom", "sound": "", "lyric": LYRIC},
        "instrumental": {"lyric": "[Instrumental]", "sound": "calm piano at dawn"},
        "cover": {"title": "Cover", "lyric": LYRIC},
        "swap_vocals": {"lyric": LYRIC},
        "swap_instrumentals": {"title": "Source (Sound swap)", "sound": "Happy"},
        "variation": {"title": "Source", "lyric": LYRIC},
    }
    for key, value in expected.get(case, {}).items():
        assert getattr(item, key) == value, key
    assert item.duration is not None
    assert s.song.duration is not None
    if case in SAME_LENGTH:
        assert item.duration == pytest.approx(s.song.duration, abs=1e-6)
    if case.endswith("extend"):
        assert item.duration > 5


# -- the three modes -------------------------------------------------------------------


def blocking(client: Producer, params: AudioParams) -> tuple[AudioResult, TaskRecord]:
    """``create``: the reply is the result, and the task record holds the same result."""
    result = client.audios.create(params)
    assert result.task_id is not None
    record = client.tasks.retrieve(result.task_id)
    assert record is not None
    assert record.request == params.to_body()
    assert record.audio_result() == result
    return result, record


def polled(client: Producer, params: AudioParams) -> tuple[AudioResult, TaskRecord]:
    """``submit`` sends ``async: true``; ``wait`` returns the finished record."""
    submission = client.audios.submit(params)
    record = finished(client, submission.task_id)
    assert record.request == {**params.to_body(), "async": True}
    assert record.trace_id == submission.trace_id
    return record.audio_result(), record


def called_back(
    client: Producer, params: AudioParams, hook: CallbackReceiver
) -> tuple[AudioResult, TaskRecord]:
    """``submit(callback_url=...)``: the callback body is the polled record's response."""
    submission = client.audios.submit(params, callback_url=hook.url)
    body = hook.body_for(submission.task_id)
    record = finished(client, submission.task_id)
    assert record.request == {**params.to_body(), "callback_url": hook.url}
    assert body == record.response
    result = AudioResult.model_validate(body)
    assert result == record.audio_result()
    return result, record


@pytest.mark.parametrize("case", sorted(CASES))
def test_blocking_create(client: Producer, sources: Sources, case: str) -> None:
    params = CASES[case](sources)
    result, record = blocking(client, params)
    check_result(case, result, params, sources)
    assert record.outcome is TaskOutcome.SUCCEEDED
    assert record.type == "audios"
    assert record.finished_at is not None


@pytest.mark.parametrize("case", sorted(CASES))
def test_submit_and_wait(client: Producer, sources: Sources, case: str) -> None:
    params = CASES[case](sources)
    result, record = polled(client, params)
    check_result(case, result, params, sources)
    assert record.elapsed is not None
    assert record.elapsed >= 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_submit_with_callback(
    client: Producer, sources: Sources, receiver: CallbackReceiver, case: str
) -> None:
    params = CASES[case](sources)
    result, _ = called_back(client, params, receiver)
    check_result(case, result, params, sources)


# -- the async client ------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
async def test_async_client_submit_and_wait(
    server: EmulatorServer, sources: Sources, case: str
) -> None:
    params = CASES[case](sources)
    async with AsyncProducer(api_token=TOKEN, base_url=server.url) as aclient:
        submission = await aclient.audios.submit(params)
        record = await aclient.tasks.wait(submission.task_id, **WAIT)
    assert record.outcome is TaskOutcome.SUCCEEDED
    check_result(case, record.audio_result(), params, sources)


async def test_async_client_create_and_callback(
    server: EmulatorServer, sources: Sources, receiver: CallbackReceiver
) -> None:
    params = CASES["generate_custom"](sources)
    async with AsyncProducer(api_token=TOKEN, base_url=server.url) as aclient:
        created = await aclient.audios.create(params)
        submission = await aclient.audios.submit(params, callback_url=receiver.url)
        record = await aclient.tasks.wait(submission.task_id, **WAIT)
    check_result("generate_custom", created, params, sources)
    body = receiver.body_for(submission.task_id)
    assert AudioResult.model_validate(body) == record.audio_result()
    assert created.data[0].id != record.audio_result().data[0].id


def test_mapping_params_are_validated_and_sent_alike(client: Producer) -> None:
    """A plain mapping (a CSV row) goes through the same params model as a model does."""
    row = {"action": "generate", "prompt": "from a csv row", "seed": 42}
    result = client.audios.create(row)
    assert result.data[0].seed == "42"
    assert result.task_id is not None
    record = client.tasks.retrieve(result.task_id)
    assert record is not None
    assert record.request["seed"] == "42"
