"""The client against each answer the emulator can give to an open question (CONTRACT §9).

The client must work whichever way the real API turns out: strict required keys (Q1),
either default model (Q5), finished responses with or without ``success`` (Q4), either
immediate async reply (Q6), and failure callbacks (§6).
"""

from __future__ import annotations

from producer_client import (
    AudioResult,
    GenerateParams,
    Producer,
    StemsParams,
    TaskOutcome,
)
from producer_emulator import EmulatorServer
from tests.contract.contract_support import (
    WAIT,
    CallbackReceiver,
    client,
    emu,
    finished,
    make_song,
    receiver,
    server,
)

__all__ = ["client", "emu", "receiver", "server"]  # fixtures imported for pytest


def test_strict_required_keys_are_always_sent(emu: EmulatorServer, client: Producer) -> None:
    """Q1: the client always sends ``prompt`` and ``lyric``, so strict mode never bites."""
    emu.configure(strict_required=True)
    song = make_song(client)
    assert song.id is not None
    stems = client.audios.create(StemsParams(audio_id=song.id))
    assert stems.success is True


def test_default_model_is_the_servers_choice(emu: EmulatorServer, client: Producer) -> None:
    """Q5: without ``model`` the client sends none; the item says what the server used."""
    emu.configure(default_model="FUZZ-2.0 Pro")
    params = GenerateParams(prompt="which model")
    assert "model" not in params.to_body()
    assert make_song(client).model == "FUZZ-2.0 Pro"


def test_immediate_reply_with_success(emu: EmulatorServer, client: Producer) -> None:
    """Q6: ``{success: true, task_id, trace_id}`` parses like ``{task_id, trace_id}``."""
    emu.configure(async_reply_success=True)
    submission = client.audios.submit(GenerateParams(prompt="q6"))
    assert submission.success is True
    assert finished(client, submission.task_id).id == submission.task_id


def test_callback_keeps_success_when_polls_do_not(
    emu: EmulatorServer, client: Producer, receiver: CallbackReceiver
) -> None:
    """Q4: the callback carries ``success``/``trace_id``; the polled response may not."""
    emu.configure(response_success_key=False)
    submission = client.audios.submit(GenerateParams(prompt="q4"), callback_url=receiver.url)
    body = receiver.body_for(submission.task_id)
    record = finished(client, submission.task_id)
    assert record.response is not None
    assert body == {**record.response, "success": True, "trace_id": record.trace_id}
    assert AudioResult.model_validate(body).data == record.audio_result().data


def test_failure_callback(
    emu: EmulatorServer, client: Producer, receiver: CallbackReceiver
) -> None:
    """§6: a failed task's callback is ``{success: false, task_id, trace_id, error}``."""
    emu.configure(faults={"rules": [{"when": {"title": "doomed"}, "fault": "task_failure"}]})
    params = GenerateParams(prompt="q", title="doomed")
    submission = client.audios.submit(params, callback_url=receiver.url)
    result = AudioResult.model_validate(receiver.body_for(submission.task_id))
    record = client.tasks.wait(submission.task_id, **WAIT)
    assert record.outcome is TaskOutcome.FAILED
    assert result.success is False
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("api_error", "Generation failed.")
    assert result == record.audio_result()


def test_quick_endpoint_records_without_success_key_succeed(
    emu: EmulatorServer, client: Producer
) -> None:
    """Q4 for upload/lyrics/wav/videos records: their data carry no item ``state``."""
    emu.configure(response_success_key=False)
    song = make_song(client)
    assert song.id is not None
    assert song.audio_url is not None
    task_ids = [
        client.upload.create(audio_url=song.audio_url).task_id,
        client.lyrics.create(prompt="q4").task_id,
        client.wav.create(audio_id=song.id).task_id,
        client.videos.create(audio_id=song.id).task_id,
    ]
    batch = client.tasks.retrieve_batch([t for t in task_ids if t is not None])
    assert [r.type for r in batch.items] == ["upload", "lyrics", "wav", "videos"]
    for record in batch.items:
        assert record.response is not None
        assert "success" not in record.response
        assert record.outcome is TaskOutcome.SUCCEEDED, record.type
