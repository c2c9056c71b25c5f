"""Token buckets, the in-flight cap, Retry-After, counters, runtime config, time scale."""

from __future__ import annotations

import time

import httpx
import pytest
from emulator_fixtures import (
    OTHER_TOKEN,
    api,
    client_for,
    emu,
    error_of,
    retrieve,
    server,
    submit_async,
    wait_finished,
)

from producer_client import request_fingerprint
from producer_emulator import EmulatorConfig, EmulatorServer

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest

RATE_LIMITED = (429, "too_many_requests", "You have exceeded the rate limit.")


def test_defaults_follow_the_contract() -> None:
    config = EmulatorConfig()
    assert config.tokens == ["emulator-token"]
    assert (config.poll_rate_per_s, config.poll_burst) == (1.0, 3)
    assert config.max_concurrency == 5
    assert config.submit_rate_per_s is None
    assert config.send_retry_after is False
    assert config.response_success_key is True
    assert config.strict_required is False


def test_submit_bucket_gives_429_without_retry_after(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    emu.configure(submit_rate_per_s=1.0, submit_burst=2)
    for _ in range(2):
        assert api.post("/producer/lyrics", json={"prompt": "x"}).status_code == 200
    reply = api.post("/producer/lyrics", json={"prompt": "x"})
    assert error_of(reply) == RATE_LIMITED
    assert "success" not in reply.json()
    assert "retry-after" not in reply.headers
    counters = emu.counters()
    assert counters["rejected_429"] == {"submit": 1, "poll": 0, "concurrency": 0}
    assert counters["errors_by_code"]["too_many_requests"] == 1
    assert counters["submissions_total"] == 2


def test_submit_bucket_is_shared_by_the_submit_endpoints(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    emu.configure(submit_rate_per_s=0.5, submit_burst=1)
    assert api.post("/producer/lyrics", json={"prompt": "x"}).status_code == 200
    assert error_of(api.post("/producer/audios", json={"action": "generate"})) == RATE_LIMITED
    assert retrieve(api, "x") == {}  # polls use their own bucket


def test_retry_after_when_enabled(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(submit_rate_per_s=0.5, submit_burst=1, send_retry_after=True)
    api.post("/producer/lyrics", json={"prompt": "x"})
    reply = api.post("/producer/lyrics", json={"prompt": "x"})
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "2"


def test_poll_bucket_per_token_refills_in_real_time(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(poll_rate_per_s=20.0, poll_burst=3, time_scale=100.0)  # scale must not matter
    for _ in range(3):
        assert api.post("/producer/tasks", json={"id": "x"}).status_code == 200
    assert error_of(api.post("/producer/tasks", json={"id": "x"})) == RATE_LIMITED
    with client_for(emu, OTHER_TOKEN) as other:
        assert other.post("/producer/tasks", json={"id": "x"}).status_code == 200
    time.sleep(0.06)
    assert api.post("/producer/tasks", json={"id": "x"}).status_code == 200
    counters = emu.counters()
    assert counters["rejected_429"]["poll"] == 1
    assert counters["polls"] == 5


def test_default_poll_limit_is_one_per_second_with_burst_3(emu: EmulatorServer) -> None:
    emu.configure(poll_rate_per_s=1.0, poll_burst=3)
    with client_for(emu, OTHER_TOKEN) as client:
        statuses = [client.post("/producer/tasks", json={"id": "x"}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


def test_concurrency_cap_per_token(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(max_concurrency=2, generation_s=150.0, send_retry_after=True)
    first = submit_async(api, action="generate", prompt="1")
    submit_async(api, action="generate", prompt="2")
    reply = api.post("/producer/audios", json={"action": "generate", "async": True})
    assert error_of(reply) == RATE_LIMITED
    assert reply.headers["retry-after"] == "1"
    with client_for(emu, OTHER_TOKEN) as other:
        assert other.post("/producer/audios", json={"action": "generate", "async": True}).is_success
    counters = emu.counters()
    assert counters["rejected_429"]["concurrency"] == 1
    assert counters["in_flight"] == 3
    assert counters["max_in_flight_seen"] == 3
    assert sorted(counters["in_flight_by_token"].values()) == [1, 2]
    assert counters["submissions_total"] == 3
    wait_finished(api, first)
    time.sleep(0.05)
    assert api.post("/producer/audios", json={"action": "generate", "async": True}).is_success


def test_sync_generations_count_against_the_cap(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(max_concurrency=1, generation_s=100.0)
    submit_async(api, action="generate")
    assert error_of(api.post("/producer/audios", json={"action": "generate"})) == RATE_LIMITED


def test_fingerprint_counts_ignore_transport_keys(emu: EmulatorServer, api: httpx.Client) -> None:
    body = {"action": "generate", "prompt": "same", "lyric": ""}
    api.post("/producer/audios", json=body)
    submit_async(api, **body)
    counters = emu.counters()
    assert counters["submissions_by_fingerprint"] == {request_fingerprint(body): 2}
    assert counters["submissions_duplicated"] == 1
    assert "submissions_by_fingerprint" not in emu.counters(fingerprints=False)
    assert counters["submissions_by_endpoint"] == {"audios": 2}
    assert counters["tasks_total"] == 2


def test_time_scale_is_honoured_and_changes_at_runtime(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    emu.configure(time_scale=0.001)
    started = time.monotonic()
    api.post("/producer/audios", json={"action": "generate"})
    fast = time.monotonic() - started
    emu.configure(time_scale=0.008)
    started = time.monotonic()
    api.post("/producer/audios", json={"action": "generate"})
    slow = time.monotonic() - started
    assert 0.04 <= fast < 0.3
    assert slow >= 0.32  # 40 s x 0.008
    assert slow > fast


def test_invalid_runtime_config_is_refused_and_leaves_config_unchanged(
    emu: EmulatorServer,
) -> None:
    with pytest.raises(ValueError, match="400"):
        emu.configure(time_scale=-1)
    with pytest.raises(ValueError, match="400"):
        emu.configure(faults={"api_error_500": 2})
    with pytest.raises(ValueError, match="400"):
        emu.configure(no_such_field=1)
    assert httpx.get(f"{emu.url}/_emulator/config").json()["time_scale"] == 0.002


def test_reset_restores_initial_config_unless_kept(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(max_concurrency=7)
    submit_async(api, action="generate")
    emu.reset(keep_config=True)
    assert emu.counters()["tasks_total"] == 0
    assert httpx.get(f"{emu.url}/_emulator/config").json()["max_concurrency"] == 7
    emu.reset()
    assert httpx.get(f"{emu.url}/_emulator/config").json()["max_concurrency"] is None
    assert emu.counters()["in_flight"] == 0


def test_configure_merges_faults_key_by_key(emu: EmulatorServer) -> None:
    emu.configure(faults={"api_error_500": 0.25})
    config = emu.configure(faults={"slow_response_s": 3})
    assert config["faults"]["api_error_500"] == 0.25
    assert config["faults"]["slow_response_s"] == 3
