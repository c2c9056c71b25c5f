"""The gateway: auth, unknown paths, bodies, error envelopes, request log."""

from __future__ import annotations

import time

import httpx
import pytest
from emulator_fixtures import TOKEN, api, client_for, emu, error_of, server

from producer_emulator import EmulatorServer

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest

ENDPOINTS = ["audios", "tasks", "upload", "lyrics", "wav", "videos"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_missing_token_is_400_no_token_without_success(emu: EmulatorServer, endpoint: str) -> None:
    with client_for(emu, None) as anonymous:
        reply = anonymous.post(f"/producer/{endpoint}", json={})
    assert error_of(reply) == (400, "no_token", "No token specified for the request.")
    body = reply.json()
    assert "success" not in body
    assert len(body["trace_id"]) == 36


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unknown_token_is_401_invalid_token(emu: EmulatorServer, endpoint: str) -> None:
    with client_for(emu, "nope") as stranger:
        reply = stranger.post(f"/producer/{endpoint}", json={})
    assert error_of(reply) == (401, "invalid_token", "The specified token is invalid or wrong.")
    assert "success" not in reply.json()


def test_non_bearer_scheme_counts_as_no_token(emu: EmulatorServer) -> None:
    reply = httpx.post(
        f"{emu.url}/producer/tasks", json={"id": "x"}, headers={"authorization": f"Basic {TOKEN}"}
    )
    assert error_of(reply)[1] == "no_token"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/producer/songs"), ("POST", "/suno/audios"), ("GET", "/producer/audios")],
)
def test_unknown_api_is_404_no_api(api: httpx.Client, method: str, path: str) -> None:
    reply = api.request(method, path, json={})
    assert error_of(reply) == (
        404,
        "no_api",
        "API does not exist, please make sure url is correct.",
    )
    assert "success" not in reply.json()


def test_unknown_path_is_404_even_without_token(emu: EmulatorServer) -> None:
    with client_for(emu, None) as anonymous:
        assert error_of(anonymous.post("/producer/nothing", json={}))[1] == "no_api"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b'"text"'])
def test_body_that_is_not_a_json_object_is_400(api: httpx.Client, raw: bytes) -> None:
    reply = api.post("/producer/audios", content=raw, headers={"content-type": "application/json"})
    status, code, _ = error_of(reply)
    assert (status, code) == (400, "bad_request")
    assert "success" not in reply.json()


def test_trace_ids_differ_per_request(api: httpx.Client) -> None:
    first = api.post("/producer/tasks", json={"id": "a"})
    second = api.post("/producer/tasks", json={})
    assert error_of(second)[1] == "bad_request"
    assert first.status_code == 200
    assert second.json()["trace_id"] != api.post("/producer/tasks", json={}).json()["trace_id"]


def test_request_log_records_path_status_and_token_hash(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    start = time.time()
    api.post("/producer/tasks", json={"id": "x"})
    with client_for(emu, None) as anonymous:
        anonymous.post("/producer/tasks", json={"id": "x"})
    entries = emu.requests(since=start)
    assert [(e["path"], e["status"]) for e in entries] == [
        ("/producer/tasks", 200),
        ("/producer/tasks", 400),
    ]
    assert entries[0]["token_hash"] is not None
    assert TOKEN not in entries[0]["token_hash"]
    assert entries[1]["token_hash"] is None
    assert all(e["t"] >= start for e in entries)
    assert emu.requests(since=time.time() + 60) == []


def test_admin_endpoints_need_no_token(emu: EmulatorServer) -> None:
    assert httpx.get(f"{emu.url}/_emulator/counters").status_code == 200
    assert httpx.get(f"{emu.url}/_emulator/config").json()["tokens"] == [TOKEN, "other-token"]
    assert httpx.get(f"{emu.url}/_emulator/requests", params={"since": "x"}).status_code == 400
