"""Fault injection: the injector on its own, then every fault over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from emulator_fixtures import (
    CallbackReceiver,
    api,
    client_for,
    emu,
    error_of,
    fast_config,
    generate,
    retrieve,
    server,
    submit_async,
    wait_finished,
)

from producer_emulator import EmulatorServer, FaultConfig, FaultRule
from producer_emulator.faults.injector import FaultInjector, FaultPlan

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest

AUDIOS = "/producer/audios"


def rule(fault: str, **extra: Any) -> dict[str, Any]:
    return {"when": {"title": "boom"}, "fault": fault, **extra}


# -- the injector ---------------------------------------------------------------------


def plan_for(
    injector: FaultInjector, config: FaultConfig, body: dict[str, Any], path: str = AUDIOS
) -> FaultPlan:
    endpoint = path.removeprefix("/producer/")
    return injector.plan(config, path=path, endpoint=endpoint, body=body)


def test_rules_match_all_when_keys_and_respect_path_and_times() -> None:
    config = FaultConfig(
        rules=[
            FaultRule(when={"title": "boom", "action": "generate"}, fault="task_failure"),
            FaultRule(when={"id": "t1"}, fault="api_error_500", path="/producer/tasks", times=1),
        ]
    )
    injector = FaultInjector(seed=1)
    assert (
        plan_for(injector, config, {"title": "boom", "action": "generate"}).task == "task_failure"
    )
    assert plan_for(injector, config, {"title": "boom"}).task is None
    assert plan_for(injector, config, {"id": "t1"}).http is None  # wrong path
    assert plan_for(injector, config, {"id": "t1"}, "/producer/tasks").http == "api_error_500"
    assert plan_for(injector, config, {"id": "t1"}, "/producer/tasks").http is None  # times=1


def test_random_draws_are_reproducible_from_the_seed() -> None:
    config = FaultConfig(api_error_500=0.3, task_failure=0.3, callback_drop=0.5)
    runs = []
    for _ in range(2):
        injector = FaultInjector(seed=99)
        runs.append([plan_for(injector, config, {}) for _ in range(50)])
    assert runs[0] == runs[1]
    assert 5 < sum(p.http == "api_error_500" for p in runs[0]) < 30


def test_task_faults_only_for_audios_and_http_faults_only_on_listed_endpoints() -> None:
    config = FaultConfig(api_error_500=1.0, task_failure=1.0, endpoints=["audios"])
    injector = FaultInjector(seed=None)
    on_tasks = plan_for(injector, config, {}, "/producer/tasks")
    assert (on_tasks.http, on_tasks.task) == (None, None)
    on_audios = plan_for(injector, config, {})
    assert (on_audios.http, on_audios.task) == ("api_error_500", "task_failure")


# -- HTTP faults --------------------------------------------------------------------------


def test_api_error_500_creates_nothing(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"rules": [rule("api_error_500")]})
    reply = api.post(AUDIOS, json={"action": "generate", "title": "boom"})
    assert reply.status_code == 500
    assert reply.json()["success"] is False
    assert reply.json()["error"] == {"code": "api_error", "message": "Internal server error."}
    counters = emu.counters()
    assert (counters["tasks_total"], counters["submissions_total"]) == (0, 0)
    assert counters["errors_by_code"] == {"api_error": 1}


def test_random_500_on_polls_too(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"api_error_500": 1.0})
    assert api.post("/producer/tasks", json={"id": "x"}).status_code == 500
    emu.configure(faults={"endpoints": ["audios"]})
    assert api.post("/producer/tasks", json={"id": "x"}).status_code == 200


def test_timeout_504_after_a_delay_and_the_task_goes_on(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    emu.configure(faults={"rules": [rule("timeout_504")], "timeout_delay_s": 50.0})
    started = time.monotonic()
    reply = api.post(AUDIOS, json={"action": "generate", "title": "boom"})
    assert time.monotonic() - started >= 0.1  # 50 s x 0.002
    assert reply.status_code == 504
    assert reply.json()["error"]["code"] == "timeout"
    assert "success" not in reply.json()
    [record] = api.post("/producer/tasks", json={"action": "retrieve_batch"}).json()["items"]
    assert wait_finished(api, record["id"])["response"]["success"] is True
    assert emu.counters()["submissions_total"] == 1


def test_timeout_504_can_create_nothing(emu: EmulatorServer, api: httpx.Client) -> None:
    faults = {"rules": [rule("timeout_504")], "timeout_delay_s": 1.0, "timeout_creates_task": False}
    emu.configure(faults=faults)
    reply = api.post(AUDIOS, json={"action": "generate", "title": "boom", "async": True})
    assert reply.status_code == 504
    assert emu.counters()["tasks_total"] == 0


def test_malformed_body_is_200_with_broken_json_and_the_task_exists(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    emu.configure(faults={"rules": [rule("malformed_body")]})
    reply = api.post(AUDIOS, json={"action": "generate", "title": "boom", "async": True})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        reply.json()
    assert emu.counters()["tasks_total"] == 1


def test_slow_response(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"rules": [rule("slow_response")], "slow_response_s": 100.0})
    started = time.monotonic()
    reply = api.post("/producer/lyrics", json={"prompt": "x", "title": "boom"})
    assert reply.status_code == 200
    assert time.monotonic() - started >= 0.2  # 100 s x 0.002


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("too_many_requests_429", 429, "too_many_requests"),
        ("forbidden_403", 403, "forbidden"),
        ("used_up_403", 403, "used_up"),
    ],
)
def test_rule_only_errors(
    emu: EmulatorServer, api: httpx.Client, fault: str, status: int, code: str
) -> None:
    emu.configure(faults={"rules": [rule(fault)]})
    reply = api.post(AUDIOS, json={"action": "generate", "title": "boom"})
    assert error_of(reply)[:2] == (status, code)
    assert "success" not in reply.json()
    assert emu.counters()["tasks_total"] == 0


def test_rule_with_times_fails_once_then_succeeds(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"rules": [rule("api_error_500", times=1)]})
    body = {"action": "generate", "title": "boom", "async": True}
    assert api.post(AUDIOS, json=body).status_code == 500
    assert api.post(AUDIOS, json=body).status_code == 200


def test_same_seed_same_fault_sequence() -> None:
    statuses = []
    for _ in range(2):
        config = fast_config(seed=5, faults=FaultConfig(api_error_500=0.5))
        with EmulatorServer(config) as emu, client_for(emu, "test-token") as client:
            statuses.append(
                [client.post("/producer/tasks", json={"id": "x"}).status_code for _ in range(20)]
            )
    assert statuses[0] == statuses[1]
    assert set(statuses[0]) == {200, 500}


# -- task faults ----------------------------------------------------------------------------


def test_task_failure_structured_error(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"rules": [rule("task_failure")]})
    task_id = submit_async(api, action="generate", title="boom")
    record = wait_finished(api, task_id)
    response = record["response"]
    assert response["success"] is False
    assert response["error"] == {"code": "api_error", "message": "Generation failed."}
    assert response["data"] == []
    assert emu.counters()["tasks_failed"] == 1


def test_task_failure_string_error(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"rules": [rule("task_failure_string")]}, response_success_key=False)
    record = wait_finished(api, submit_async(api, action="generate", title="boom"))
    assert record["response"]["success"] is False  # kept even without the success key
    assert record["response"]["error"] == "Generation failed."


def test_task_failure_partial_keeps_a_playable_item(api: httpx.Client, emu: EmulatorServer) -> None:
    emu.configure(faults={"rules": [rule("task_failure_partial")]})
    record = wait_finished(api, submit_async(api, action="generate", title="boom"))
    response = record["response"]
    assert response["success"] is False
    [item] = response["data"]
    assert item["state"] == "succeeded"
    assert httpx.get(item["audio_url"]).status_code == 200
    reply = api.post(AUDIOS, json={"action": "variation", "audio_id": item["id"]})
    assert reply.status_code == 200


def test_failed_song_is_gone_and_sync_mode_answers_500(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    emu.configure(faults={"rules": [rule("task_failure")]})
    task_id = submit_async(api, action="generate", title="boom")
    preview_id = None
    while preview_id is None:
        preview_id = retrieve(api, task_id).get("response", {}).get("data", [{}])[0].get("id")
    wait_finished(api, task_id)
    reply = api.post(AUDIOS, json={"action": "cover", "audio_id": preview_id})
    assert error_of(reply)[2] == f"audio_id {preview_id} is not found."
    sync = api.post(AUDIOS, json={"action": "generate", "title": "boom"})
    assert sync.status_code == 500
    assert sync.json()["success"] is False
    assert sync.json()["task_id"]


def test_failure_is_delivered_to_the_callback(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"rules": [rule("task_failure")]})
    with CallbackReceiver() as hook:
        api.post(AUDIOS, json={"action": "generate", "title": "boom", "callback_url": hook.url})
        [body] = hook.wait_for(1)
    assert body["success"] is False
    assert body["error"]["code"] == "api_error"
    assert {"task_id", "trace_id"} <= set(body)


# -- callback faults -------------------------------------------------------------------------


def test_callback_drop(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"rules": [rule("callback_drop")]})
    with CallbackReceiver() as hook:
        task_id = api.post(
            AUDIOS, json={"action": "generate", "title": "boom", "callback_url": hook.url}
        ).json()["task_id"]
        wait_finished(api, task_id)
        time.sleep(0.1)
        assert hook.bodies == []
    counters = emu.counters()
    assert (counters["callbacks_dropped"], counters["callbacks_sent"]) == (1, 0)


def test_callback_duplicate_and_delay(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(faults={"rules": [rule("callback_duplicate")], "callback_delay_s": 50.0})
    with CallbackReceiver() as hook:
        task_id = api.post(
            AUDIOS, json={"action": "generate", "title": "boom", "callback_url": hook.url}
        ).json()["task_id"]
        finished = time.monotonic()
        wait_finished(api, task_id)
        first, second = hook.wait_for(2)
        assert time.monotonic() - finished >= 0.2  # two deliveries, 0.1 s delay each
    assert first == second
    # The emulator counts a delivery once its POST has returned, which can trail the
    # receiver seeing the body: wait for the count instead of reading it once.
    deadline = time.monotonic() + 5.0
    while (counters := emu.counters())["callbacks_sent"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (counters["callbacks_duplicated"], counters["callbacks_sent"]) == (1, 2)


def test_generate_still_works_with_no_faults(api: httpx.Client) -> None:
    assert generate(api, title="boom")["state"] == "succeeded"
