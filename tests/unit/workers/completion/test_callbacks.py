"""The callback receiver over HTTP semantics (httpx ASGI transport, no server)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis

from workers.completion.callbacks import callback_url, create_receiver_app, sign
from workers.completion.continuations import Continuation, ContinuationStore
from workers.completion.outcome import ProviderOutcome

SECRET = b"s3cret-key"


def _cont(cb: str) -> Continuation:
    now = time.time()
    return Continuation(
        celery_task_id="c1",
        api_task_id="api-1",
        token_id="tok",
        step_key="k",
        action="generate",
        submitted_at=now,
        deadline_at=now + 60,
        callback_id=cb,
    )


def _record(success: bool, title: str = "the real song") -> dict[str, Any]:
    data = [{"id": "a", "title": title, "state": "succeeded", "audio_url": "https://cdn/a.mp3"}]
    response: dict[str, Any] = {"success": success, "task_id": "api-1", "data": data}
    if not success:
        response = {"success": False, "task_id": "api-1", "error": {"code": "x", "message": "boom"}}
    return {"id": "api-1", "finished_at": 1.0, "response": response}


#: What the fake provider says about each api task id (what ``confirm`` returns).
Provider = dict[str, ProviderOutcome | None]


@pytest.fixture
def provider() -> Provider:
    return {"api-1": ProviderOutcome.from_record("succeeded", _record(True), source="callback")}


@pytest.fixture
def setup(
    redis_client: redis.Redis, provider: Provider
) -> tuple[ContinuationStore, list[tuple[Continuation, ProviderOutcome]], httpx.AsyncClient]:
    store = ContinuationStore(redis_client)
    resumed: list[tuple[Continuation, ProviderOutcome]] = []

    def confirm(api_task_id: str) -> ProviderOutcome | None:
        return provider[api_task_id]

    app = create_receiver_app(
        store, lambda c, o: resumed.append((c, o)), SECRET, confirm, max_body_bytes=4096
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")
    return store, resumed, client


def _path(cb: str, secret: bytes = SECRET) -> str:
    return httpx.URL(callback_url("http://receiver", secret, cb)).path


BODY = {"success": True, "task_id": "api-1", "trace_id": "t", "data": [{"id": "a"}]}


async def test_valid_callback_resumes_once_and_duplicates_are_harmless(setup: Any) -> None:
    store, resumed, client = setup
    store.save(_cont("cb1"), first_poll_at=time.time() + 60)
    first = await client.post(_path("cb1"), json=BODY)
    again = await client.post(_path("cb1"), json=BODY)
    assert first.status_code == 200
    assert again.status_code == 409
    assert len(resumed) == 1
    assert resumed[0][1].status == "succeeded"
    assert store.in_flight("tok") == 0


async def test_forged_signature_is_rejected(setup: Any) -> None:
    store, resumed, client = setup
    store.save(_cont("cb1"), first_poll_at=time.time())
    forged = await client.post(_path("cb1", secret=b"wrong"), json=BODY)
    assert forged.status_code == 403
    assert resumed == [] and store.in_flight("tok") == 1


async def test_wrong_task_id_in_body_is_rejected(setup: Any) -> None:
    store, resumed, client = setup
    store.save(_cont("cb1"), first_poll_at=time.time())
    bad = await client.post(_path("cb1"), json={**BODY, "task_id": "someone-else"})
    assert bad.status_code == 403 and resumed == []


async def test_unknown_but_signed_callback_is_accepted_as_noop(setup: Any) -> None:
    _, resumed, client = setup
    early = await client.post(_path("never-saved"), json=BODY)
    assert early.status_code == 202 and resumed == []


async def test_the_provider_record_is_resumed_not_the_body(setup: Any) -> None:
    store, resumed, client = setup
    store.save(_cont("cb1"), first_poll_at=time.time())
    forged = {**BODY, "data": [{"id": "a", "title": "forged", "audio_url": "http://10.0.0.1/x"}]}
    assert (await client.post(_path("cb1"), json=forged)).status_code == 200
    outcome = resumed[0][1]
    assert outcome.response is None and outcome.source == "callback"
    assert outcome.audio_result().data[0].title == "the real song"


async def test_provider_failure_resumes_as_failed_whatever_the_body(
    setup: Any, provider: Provider
) -> None:
    store, resumed, client = setup
    provider["api-1"] = ProviderOutcome.from_record("failed", _record(False))
    store.save(_cont("cb1"), first_poll_at=time.time())
    assert (await client.post(_path("cb1"), json=BODY)).status_code == 200
    assert resumed[0][1].status == "failed"


async def test_callback_for_a_task_still_running_is_left_to_the_poller(
    setup: Any, provider: Provider
) -> None:
    store, resumed, client = setup
    provider["api-1"] = None
    store.save(_cont("cb1"), first_poll_at=time.time())
    reply = await client.post(_path("cb1"), json=BODY)
    assert reply.status_code == 202 and resumed == []
    assert store.in_flight("tok") == 1  # still waiting, not claimed


async def test_oversized_and_deep_bodies_are_refused(setup: Any) -> None:
    store, _, client = setup
    store.save(_cont("cb1"), first_poll_at=time.time())
    big = await client.post(_path("cb1"), content=b"{" + b" " * 5000 + b"}")
    deep = await client.post(_path("cb1"), content=b"[" * 1000 + b"]" * 1000)
    brackets_in_strings = await client.post(_path("cb1"), json={**BODY, "x": "[[[[" * 100})
    assert (big.status_code, deep.status_code) == (413, 400)
    assert brackets_in_strings.status_code == 200


def test_signature_is_stable_and_secret_dependent() -> None:
    assert sign(SECRET, "x") == sign(SECRET, "x")
    assert sign(SECRET, "x") != sign(b"other", "x")
    assert len(sign(SECRET, "x")) == 32
