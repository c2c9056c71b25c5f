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


@pytest.fixture
def setup(
    redis_client: redis.Redis,
) -> tuple[ContinuationStore, list[tuple[Continuation, ProviderOutcome]], httpx.AsyncClient]:
    store = ContinuationStore(redis_client)
    resumed: list[tuple[Continuation, ProviderOutcome]] = []
    app = create_receiver_app(store, lambda c, o: resumed.append((c, o)), SECRET)
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


async def test_failure_body_resumes_as_failed(setup: Any) -> None:
    store, resumed, client = setup
    store.save(_cont("cb1"), first_poll_at=time.time())
    body = {"success": False, "task_id": "api-1", "error": {"code": "api_error", "message": "boom"}}
    assert (await client.post(_path("cb1"), json=body)).status_code == 200
    assert resumed[0][1].status == "failed"


def test_signature_is_stable_and_secret_dependent() -> None:
    assert sign(SECRET, "x") == sign(SECRET, "x")
    assert sign(SECRET, "x") != sign(b"other", "x")
    assert len(sign(SECRET, "x")) == 32
