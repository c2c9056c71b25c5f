"""POST /producer/tasks: records while running and when done, batches, listings."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from emulator_fixtures import (
    OTHER_TOKEN,
    api,
    client_for,
    emu,
    error_of,
    generate,
    retrieve,
    server,
    submit_async,
    wait_finished,
)

from producer_emulator import EmulatorServer

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest

AUDIOS_API_ID = "01d96900-9f8c-41d7-814c-95c7a885ba61"


def tasks(api: httpx.Client, **body: object) -> dict[str, Any]:
    reply = api.post("/producer/tasks", json=body)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def test_unknown_id_is_200_empty_object(api: httpx.Client) -> None:
    assert retrieve(api, "00000000-0000-4000-8000-000000000000") == {}


def test_action_defaults_to_retrieve(api: httpx.Client) -> None:
    task_id = submit_async(api, action="generate", prompt="x")
    assert tasks(api, id=task_id)["id"] == task_id


def test_missing_id_and_bad_action_are_400(api: httpx.Client) -> None:
    assert error_of(api.post("/producer/tasks", json={})) == (400, "bad_request", "id is required.")
    reply = api.post("/producer/tasks", json={"action": "delete", "id": "x"})
    assert error_of(reply) == (400, "bad_request", "action is invalid.")
    reply = api.post("/producer/tasks", json={"action": "retrieve_batch", "ids": "x"})
    assert error_of(reply)[2] == "ids must be a list of strings."


def test_running_record_then_finished_record(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(generation_s=100.0)  # 0.2 s: room to see both phases
    body = {"action": "generate", "prompt": "x", "async": True}
    task_id = api.post("/producer/audios", json=body).json()["task_id"]
    early = retrieve(api, task_id)
    for key in ("finished_at", "elapsed", "response"):
        assert key not in early
    assert early["type"] == "audios"
    assert early["api_id"] == AUDIOS_API_ID
    assert early["request"] == body
    assert early["started_at"] >= early["created_at"]
    for key in ("_id", "user_id", "application_id", "credential_id", "trace_id"):
        assert isinstance(early[key], str)

    preview = _wait_for_preview(api, task_id)
    assert "finished_at" not in preview
    response = preview["response"]
    assert "success" not in response
    [item] = response["data"]
    assert item["state"] == "processing"
    assert item["progress"].endswith("%")
    assert item["progress"] != "100%"
    assert "/media/preview/" in item["audio_url"]  # a preview URL, not the final file

    done = wait_finished(api, task_id)
    assert done["elapsed"] == pytest.approx(done["finished_at"] - done["started_at"], abs=0.002)
    assert done["response"]["success"] is True
    [final] = done["response"]["data"]
    assert final["state"] == "succeeded"
    assert final["id"] == item["id"]
    assert "/media/preview/" not in final["audio_url"]


def _wait_for_preview(api: httpx.Client, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = retrieve(api, task_id)
        if "response" in record:
            return record
        time.sleep(0.005)
    raise AssertionError("no intermediate response")


def test_preview_can_be_switched_off(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(preview_fraction=None, generation_s=100.0)
    task_id = submit_async(api, action="generate", prompt="x")
    seen_response_while_running = False
    while "finished_at" not in (record := retrieve(api, task_id)):
        seen_response_while_running |= "response" in record
    assert not seen_response_while_running


def test_finished_response_without_success_key(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(response_success_key=False)
    task_id = submit_async(api, action="generate", prompt="x")
    response = wait_finished(api, task_id)["response"]
    assert set(response) == {"task_id", "data"}  # the newest tasks doc's shape
    assert response["data"][0]["state"] == "succeeded"


def test_retrieve_batch_by_ids_keeps_order_and_skips_unknown(api: httpx.Client) -> None:
    first = submit_async(api, action="generate", prompt="a")
    second = submit_async(api, action="generate", prompt="b")
    result = tasks(api, action="retrieve_batch", ids=[second, "unknown", first])
    assert [r["id"] for r in result["items"]] == [second, first]
    assert result["count"] == 2
    assert tasks(api, action="retrieve_batch", ids=[]) == {"items": [], "count": 0}


def test_retrieve_batch_without_ids_lists_this_tokens_tasks(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    ids = [submit_async(api, action="generate", prompt=str(i)) for i in range(5)]
    lyrics = api.post("/producer/lyrics", json={"prompt": "winter"}).json()["task_id"]
    listing = tasks(api, action="retrieve_batch")
    assert [r["id"] for r in listing["items"]] == [lyrics, *reversed(ids)]
    assert listing["count"] == 6

    page = tasks(api, action="retrieve_batch", type="audios", limit=2, offset=1)
    assert [r["id"] for r in page["items"]] == [ids[3], ids[2]]
    assert page["count"] == 5

    created = [retrieve(api, task_id)["created_at"] for task_id in ids]
    window = tasks(
        api, action="retrieve_batch", created_at_min=created[1], created_at_max=created[3]
    )
    assert {r["id"] for r in window["items"]} == set(ids[1:4])

    with client_for(emu, OTHER_TOKEN) as other:
        assert tasks(other, action="retrieve_batch") == {"items": [], "count": 0}
        assert retrieve(other, ids[0]) == {}


def test_limit_is_capped_at_100(api: httpx.Client) -> None:
    reply = api.post("/producer/tasks", json={"action": "retrieve_batch", "limit": 10_000})
    assert reply.status_code == 200
    assert (
        error_of(api.post("/producer/tasks", json={"action": "retrieve_batch", "limit": 0}))[0]
        == 400
    )


def test_quick_endpoints_are_recorded_as_finished_tasks(api: httpx.Client) -> None:
    song = generate(api)
    wav = api.post("/producer/wav", json={"audio_id": song["id"]}).json()
    record = retrieve(api, wav["task_id"])
    assert record["type"] == "wav"
    assert record["api_id"] == "e7cad274-9c48-494c-b7e3-fc1556eea827"
    assert record["response"] == wav
    assert record["finished_at"] >= record["started_at"]


def test_polls_are_counted(emu: EmulatorServer, api: httpx.Client) -> None:
    for _ in range(3):
        retrieve(api, "x")
    assert emu.counters()["polls"] == 3
