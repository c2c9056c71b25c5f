"""/producer/tasks through the client: records, batches, listings, and the completion rule.

``TaskRecord.outcome`` implements CONTRACT §4.3; here it meets the emulator's in-progress
records (preview ``audio_url``, no ``finished_at``), its three task-failure shapes and its
finished records without a ``success`` key (§9 Q4).
"""

from __future__ import annotations

import uuid

import pytest

from producer_client import (
    AsyncProducer,
    GenerateParams,
    InternalServerError,
    Producer,
    TaskFailedError,
    TaskOutcome,
    TaskRecord,
    WaitTimeoutError,
)
from producer_emulator import EmulatorServer
from tests.contract.contract_support import (
    OTHER_TOKEN,
    TOKEN,
    WAIT,
    client,
    decode_wav,
    emu,
    fetch,
    finished,
    raises,
    server,
    statuses,
)

__all__ = ["client", "emu", "server"]  # fixtures imported for pytest

AUDIOS_API_ID = "01d96900-9f8c-41d7-814c-95c7a885ba61"
SLOW_SCALE = 0.0125
"""A 40 s generation then takes 0.5 s: long enough to see it in progress."""


def submit(client: Producer, **params: object) -> str:
    """An async generate; its task id."""
    settings: dict[str, object] = {"prompt": "a task test", **params}
    return client.audios.submit(GenerateParams(**settings)).task_id


def fail_titles(emu: EmulatorServer) -> None:
    """Songs titled after a task fault end with that fault."""
    names = ("task_failure", "task_failure_string", "task_failure_partial")
    rules = [{"when": {"title": name}, "fault": name} for name in names]
    emu.configure(faults={"rules": rules})


# -- single records --------------------------------------------------------------------


def test_finished_record_has_every_documented_key(emu: EmulatorServer, client: Producer) -> None:
    record = finished(client, submit(client, title="Keys"))
    assert record.type == "audios"
    assert record.api_id == AUDIOS_API_ID
    assert record.mongo_id is not None
    assert record.trace_id is not None
    assert record.request["title"] == "Keys"
    assert record.created_at is not None
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.created_at <= record.started_at <= record.finished_at
    assert record.elapsed == pytest.approx(record.finished_at - record.started_at, abs=0.002)
    assert record.error_message is None
    assert record.raise_for_failure() is record
    assert record.__pydantic_extra__ == {}, "a record key the client does not model"


def test_unknown_id_is_none(emu: EmulatorServer, client: Producer) -> None:
    assert client.tasks.retrieve(str(uuid.uuid4())) is None
    assert statuses(emu, "/producer/tasks") == [200]


def test_another_tokens_task_is_unknown(emu: EmulatorServer, client: Producer) -> None:
    task_id = submit(client)
    with Producer(api_token=OTHER_TOKEN, base_url=emu.url) as other:
        assert other.tasks.retrieve(task_id) is None
        assert other.tasks.retrieve_batch().count == 0


def test_wait_within_the_default_poll_limits(emu: EmulatorServer, client: Producer) -> None:
    """The emulator's default limits (1 poll/s, burst 3; 5 in flight) and a 1 s interval."""
    emu.configure(poll_rate_per_s=1.0, poll_burst=3, max_concurrency=5)
    record = client.tasks.wait(submit(client), interval_s=1.0, timeout_s=10.0)
    assert record.outcome is TaskOutcome.SUCCEEDED
    assert 429 not in statuses(emu, "/producer/tasks")


# -- batches and listings --------------------------------------------------------------


def test_retrieve_batch_by_ids_keeps_the_order_asked(emu: EmulatorServer, client: Producer) -> None:
    ids = [submit(client, title=f"Batch {n}") for n in range(3)]
    asked = [ids[2], str(uuid.uuid4()), ids[0], ids[1]]
    batch = client.tasks.retrieve_batch(asked)
    assert [record.id for record in batch.items] == [ids[2], ids[0], ids[1]]
    assert batch.count == 3


def test_retrieve_batch_lists_recent_tasks_with_filters(
    emu: EmulatorServer, client: Producer
) -> None:
    ids = [submit(client, title=f"List {n}") for n in range(3)]
    lyrics_id = client.lyrics.create(prompt="a listing test").task_id
    everything = client.tasks.retrieve_batch()
    assert [r.id for r in everything.items] == [lyrics_id, *reversed(ids)]
    audios = client.tasks.retrieve_batch(type="audios")
    assert (audios.count, [r.id for r in audios.items]) == (3, ids[::-1])
    page = client.tasks.retrieve_batch(type="audios", limit=2, offset=1)
    assert (page.count, [r.id for r in page.items]) == (3, [ids[1], ids[0]])
    assert client.tasks.retrieve_batch(type="lyrics").count == 1


def test_retrieve_batch_filters_by_creation_time(emu: EmulatorServer, client: Producer) -> None:
    ids = [submit(client, title=f"Time {n}") for n in range(3)]
    created = {r.id: r.created_at or 0.0 for r in client.tasks.retrieve_batch(ids).items}
    middle = created[ids[1]]
    newer = client.tasks.retrieve_batch(created_at_min=middle)
    older = client.tasks.retrieve_batch(created_at_max=middle)
    assert {r.id for r in newer.items} == {i for i, t in created.items() if t >= middle}
    assert {r.id for r in older.items} == {i for i, t in created.items() if t <= middle}
    assert ids[1] in {r.id for r in newer.items} & {r.id for r in older.items}


# -- in progress -----------------------------------------------------------------------


def test_in_progress_record_with_preview_is_pending(emu: EmulatorServer, client: Producer) -> None:
    emu.configure(time_scale=SLOW_SCALE, preview_fraction=0.0)
    task_id = submit(client)
    record = client.tasks.retrieve(task_id)
    assert record is not None
    assert record.finished_at is None
    assert record.elapsed is None
    preview = record.audio_result().data[0]
    assert preview.audio_url is not None
    assert "/media/preview/" in preview.audio_url
    assert preview.state == "processing"
    assert preview.progress is not None
    assert preview.progress.endswith("%")
    assert record.outcome is TaskOutcome.PENDING
    assert decode_wav(fetch(preview.audio_url).content).seconds == pytest.approx(2.0)
    done = finished(client, task_id)
    assert done.audio_result().data[0].audio_url != preview.audio_url


def test_queued_record_without_response_is_pending(emu: EmulatorServer, client: Producer) -> None:
    emu.configure(time_scale=SLOW_SCALE, preview_fraction=None)
    record = client.tasks.retrieve(submit(client))
    assert record is not None
    assert record.response is None
    assert record.outcome is TaskOutcome.PENDING
    assert record.error_message is None


def test_wait_gives_up_with_the_last_record(emu: EmulatorServer, client: Producer) -> None:
    emu.configure(time_scale=SLOW_SCALE)
    task_id = submit(client)
    error = raises(
        WaitTimeoutError, lambda: client.tasks.wait(task_id, interval_s=0.01, timeout_s=0.05)
    )
    assert error.task_id == task_id
    assert error.last is not None
    assert error.last.outcome is TaskOutcome.PENDING


# -- task-level failures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "message", "playable"),
    [
        ("task_failure", "Generation failed.", False),
        ("task_failure_string", "Generation failed.", False),
        ("task_failure_partial", "Generation partially failed.", True),
    ],
)
def test_task_failure_is_failed_with_the_provider_message(
    emu: EmulatorServer, client: Producer, fault: str, message: str, playable: bool
) -> None:
    fail_titles(emu)
    record = client.tasks.wait(submit(client, title=fault), **WAIT)
    assert record.outcome is TaskOutcome.FAILED
    assert record.finished_at is not None
    assert record.error_message == message
    error = raises(TaskFailedError, record.raise_for_failure)
    assert str(error) == f"task {record.id} failed: {message}"
    items = record.audio_result().data
    assert bool(items) is playable
    if playable:
        assert items[0].audio_url is not None
        decode_wav(fetch(items[0].audio_url).content)


def test_string_error_is_kept_as_a_string(emu: EmulatorServer, client: Producer) -> None:
    fail_titles(emu)
    record = client.tasks.wait(submit(client, title="task_failure_string"), **WAIT)
    assert record.response is not None
    assert record.response["error"] == "Generation failed."
    error = record.audio_result().error
    assert error is not None
    assert (error.code, error.message) == (None, "Generation failed.")


def test_blocking_create_of_a_failing_task_raises_once(
    emu: EmulatorServer, client: Producer
) -> None:
    """The sync reply of a failed generation is a 500; a paid POST is not sent again."""
    fail_titles(emu)
    error = raises(
        InternalServerError,
        lambda: client.audios.create(GenerateParams(prompt="x", title="task_failure")),
    )
    assert (error.status_code, error.code, error.message) == (
        500,
        "api_error",
        "Generation failed.",
    )
    assert statuses(emu, "/producer/audios") == [500]
    assert emu.counters()["tasks_failed"] == 1


# -- finished records without success (CONTRACT §9 Q4) ---------------------------------


def test_response_without_success_key_still_succeeds(emu: EmulatorServer, client: Producer) -> None:
    emu.configure(response_success_key=False)
    record = finished(client, submit(client))
    assert record.response is not None
    assert "success" not in record.response
    assert "trace_id" not in record.response
    assert record.audio_result().data[0].state == "succeeded"


def test_failure_without_success_key_still_fails(emu: EmulatorServer, client: Producer) -> None:
    emu.configure(response_success_key=False)
    fail_titles(emu)
    record = client.tasks.wait(submit(client, title="task_failure"), **WAIT)
    assert record.outcome is TaskOutcome.FAILED


# -- the async client ------------------------------------------------------------------


async def test_async_client_tasks(emu: EmulatorServer, client: Producer) -> None:
    ids = [submit(client, title=f"Async {n}") for n in range(2)]
    async with AsyncProducer(api_token=TOKEN, base_url=emu.url) as aclient:
        waited = await aclient.tasks.wait(ids[0], **WAIT)
        single = await aclient.tasks.retrieve(ids[0])
        batch = await aclient.tasks.retrieve_batch(ids)
        listed = await aclient.tasks.retrieve_batch(type="audios", limit=1)
        unknown = await aclient.tasks.retrieve(str(uuid.uuid4()))
    assert waited.outcome is TaskOutcome.SUCCEEDED
    assert isinstance(single, TaskRecord)
    assert single.response == waited.response
    assert [r.id for r in batch.items] == ids
    assert (listed.count, [r.id for r in listed.items]) == (2, [ids[1]])
    assert unknown is None
