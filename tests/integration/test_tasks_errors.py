"""The error table of ``workers/operations/errors.py``, acted out through a real worker.

Each test injects one failure at the emulator (a fault rule, a setting) and checks what
the step did about it: fail for good with the provider's code and message recorded in
the ledger and no retry; retry and then succeed with exactly one paid submission; adopt
the task a timed-out POST created; wait out a 429 and learn a lower rate; give up at
the deadline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from producer_client import request_fingerprint
from producer_emulator import FaultConfig, FaultRule
from tests.integration.fleet import Fleet, check_artifacts, fast_emulator_config, fleet
from workers.completion.continuations import Continuation
from workers.completion.outcome import ProviderOutcome
from workers.ledger import LedgerEntry, State
from workers.operations.params import audio_params
from workers.operations.submit import submitting
from workers.ratelimit import EndpointClass
from workers.tasks.audios import collect, extend, generate

RESULT_TIMEOUT_S = 45


def rule(fault: str, prompt: str, times: int | None = None) -> FaultConfig:
    """Faults that fire ``fault`` on ``/producer/audios`` requests with ``prompt``."""
    when = {"prompt": prompt}
    return FaultConfig(
        rules=[FaultRule(when=when, fault=fault, path="/producer/audios", times=times)]
    )


def generate_params(prompt: str, seed: str = "1") -> dict[str, Any]:
    return {"prompt": prompt, "seed": seed}


def fingerprint(action: str, params: dict[str, Any]) -> str:
    return request_fingerprint(audio_params(action, params).to_body())


def failure_of(pending: AsyncResult) -> BaseException:
    """Wait for the task to fail and return the exception Celery recorded."""
    with pytest.raises(Exception) as caught:
        pending.get(timeout=RESULT_TIMEOUT_S)
    assert pending.state == "FAILURE"
    return caught.value


def ledger_entry(f: Fleet, pending: AsyncResult) -> LedgerEntry:
    entry = f.services.ledger.get(f"task/{pending.id}")
    assert entry is not None
    return entry


def audios_posts(f: Fleet) -> int:
    """How many ``POST /producer/audios`` the emulator answered, whatever the status."""
    return sum(1 for r in f.emulator.requests() if r["path"] == "/producer/audios")


@pytest.mark.parametrize(
    ("fault", "code"), [("forbidden_403", "forbidden"), ("used_up_403", "used_up")]
)
def test_permanent_provider_error_fails_once_and_is_recorded(
    redis_url: str, tmp_path: Path, fault: str, code: str
) -> None:
    emulator = fast_emulator_config(faults=rule(fault, "refused"))
    with fleet(redis_url, tmp_path, emulator=emulator) as f:
        pending = generate.delay(params=generate_params("refused"))
        error = failure_of(pending)
        entry = ledger_entry(f, pending)
        posts, counters = audios_posts(f), f.counters
    assert code in str(error)
    assert entry.state is State.FAILED
    assert entry.error_code == code
    assert entry.error_message
    assert entry.error_message in str(error)
    assert posts == 1  # no retry
    assert counters["submissions_total"] == 0


def test_invalid_params_fail_before_anything_is_sent(redis_url: str, tmp_path: Path) -> None:
    with fleet(redis_url, tmp_path) as f:
        pending = generate.delay(params={"prompt": "too weird", "weirdness": 5})
        error = failure_of(pending)
        entry = ledger_entry(f, pending)
        posts = audios_posts(f)
    assert "invalid_params" in str(error)
    assert "weirdness" in str(error)
    assert entry.state is State.FAILED
    assert entry.error_code == "invalid_params"
    assert entry.error_message is not None
    assert "weirdness" in entry.error_message
    assert posts == 0


def test_params_the_provider_rejects_fail_with_its_message(redis_url: str, tmp_path: Path) -> None:
    # The client cannot know the song's length: the provider answers 400 bad_request.
    with fleet(redis_url, tmp_path) as f:
        source = generate.delay(params=generate_params("short song")).get(timeout=RESULT_TIMEOUT_S)
        pending = extend.delay(params={"audio_id": source["audio_id"], "continue_at": 9999})
        error = failure_of(pending)
        entry = ledger_entry(f, pending)
        posts = audios_posts(f)
    assert entry.state is State.FAILED
    assert entry.error_code == "bad_request"
    assert entry.error_message == "continue_at is beyond the end of the song."
    assert "beyond the end" in str(error)
    assert posts == 2  # the generate and one extend: no retry


def test_server_error_is_retried_then_paid_once(redis_url: str, tmp_path: Path) -> None:
    # A 500 at the emulator creates nothing, so the retry must submit (adopting nothing).
    emulator = fast_emulator_config(faults=rule("api_error_500", "flaky", times=1))
    with fleet(redis_url, tmp_path, emulator=emulator) as f:
        pending = generate.delay(params=generate_params("flaky"))
        result = pending.get(timeout=RESULT_TIMEOUT_S)
        entry = ledger_entry(f, pending)
        posts, counters = audios_posts(f), f.counters
    check_artifacts(tmp_path, result)
    assert posts == 2
    assert counters["errors_by_code"]["api_error"] == 1
    assert counters["submissions_total"] == 1
    assert counters["submissions_by_fingerprint"] == {
        fingerprint("generate", generate_params("flaky")): 1
    }
    assert entry.state is State.DONE
    assert entry.adopted is False


def test_gateway_timeout_that_created_a_task_is_adopted(redis_url: str, tmp_path: Path) -> None:
    faults = rule("timeout_504", "slow gateway", times=1)
    faults.timeout_delay_s, faults.timeout_creates_task = 20.0, True
    emulator = fast_emulator_config(faults=faults)
    with fleet(redis_url, tmp_path, emulator=emulator) as f:
        pending = generate.delay(params=generate_params("slow gateway"))
        result = pending.get(timeout=RESULT_TIMEOUT_S)
        entry = ledger_entry(f, pending)
        posts, counters = audios_posts(f), f.counters
    check_artifacts(tmp_path, result)
    assert counters["errors_by_code"]["timeout"] == 1
    assert posts == 1  # the retry listed the provider's tasks instead of posting again
    assert counters["submissions_by_fingerprint"] == {
        fingerprint("generate", generate_params("slow gateway")): 1
    }
    assert entry.state is State.DONE
    assert entry.adopted is True
    assert entry.api_task_id == result["api_task_id"]


@pytest.mark.parametrize("fault", ["task_failure", "task_failure_string"])
def test_provider_task_failure_fails_with_the_providers_message(
    redis_url: str, tmp_path: Path, fault: str
) -> None:
    emulator = fast_emulator_config(faults=rule(fault, "doomed"))
    with fleet(redis_url, tmp_path, emulator=emulator) as f:
        pending = generate.delay(params=generate_params("doomed"))
        error = failure_of(pending)
        entry = ledger_entry(f, pending)
        posts = audios_posts(f)
    assert entry.state is State.FAILED
    assert entry.error_message == "Generation failed."
    assert entry.error_code == ("api_error" if fault == "task_failure" else "provider_task_failed")
    assert "Generation failed." in str(error)
    assert posts == 1


def test_task_that_never_finishes_fails_at_the_deadline(redis_url: str, tmp_path: Path) -> None:
    emulator = fast_emulator_config(generation_s=1_000_000.0, generation_jitter_s=0.0)
    with fleet(redis_url, tmp_path, emulator=emulator, task_deadline_s=1.0) as f:
        pending = generate.delay(params=generate_params("forever"))
        error = failure_of(pending)
        entry = ledger_entry(f, pending)
        in_flight = f.services.limiter.show(f.services.token_id).in_flight
    assert entry.state is State.FAILED
    assert entry.error_code == "deadline_exceeded"
    assert "deadline_exceeded" in str(error)
    assert in_flight == 0  # the slot came back


def test_provider_rate_limit_requeues_and_lowers_the_shared_rate(
    redis_url: str, tmp_path: Path
) -> None:
    # The emulator allows 4/s (burst 2); our limiter starts at 50/s and must learn.
    emulator = fast_emulator_config(submit_rate_per_s=4.0, submit_burst=2)
    with fleet(
        redis_url, tmp_path, emulator=emulator, submit_rate_per_s=50.0, submit_burst=10.0
    ) as f:
        pending = [generate.delay(params=generate_params(f"busy {i}", str(i))) for i in range(12)]
        results = [p.get(timeout=RESULT_TIMEOUT_S) for p in pending]
        counters = f.counters
        status = f.services.limiter.show(f.services.token_id)
    submit = status.bucket(EndpointClass.SUBMIT)
    assert counters["rejected_429"]["submit"] > 0
    assert counters["submissions_total"] == 12
    assert all(n == 1 for n in counters["submissions_by_fingerprint"].values())
    assert submit.throttles > 0
    assert submit.rate < 50.0
    for result in results:
        check_artifacts(tmp_path, result)


def test_malformed_reply_to_an_accepted_post_is_adopted(redis_url: str, tmp_path: Path) -> None:
    # The emulator creates the task, then answers 200 with half a JSON body.
    emulator = fast_emulator_config(faults=rule("malformed_body", "garbled", times=1))
    with fleet(redis_url, tmp_path, emulator=emulator) as f:
        pending = generate.delay(params=generate_params("garbled"))
        result = pending.get(timeout=RESULT_TIMEOUT_S)
        entry = ledger_entry(f, pending)
        counters = f.counters
    check_artifacts(tmp_path, result)
    assert counters["errors_by_code"]["malformed_body"] == 1
    assert counters["submissions_total"] == 1
    assert entry.adopted is True


def test_collect_redelivered_after_storing_returns_the_same_result(
    redis_url: str, tmp_path: Path
) -> None:
    # A worker dies after the files and the metadata JSON were written but before the
    # ledger said done: the redelivered collect must finish, not fail on a conflict.
    with fleet(redis_url, tmp_path) as f:
        pending = generate.delay(params=generate_params("collect me twice"))
        first = pending.get(timeout=RESULT_TIMEOUT_S)
        record = f.services.client.tasks.retrieve(first["api_task_id"])
        assert record is not None
        f.redis.hset(f"producer:ledger:{first['step_key']}", "state", "submitted")
        pending.forget()  # so .get() below waits for the redelivered collect
        cont = Continuation(
            celery_task_id=pending.id,
            api_task_id=first["api_task_id"],
            token_id=f.services.token_id,
            step_key=first["step_key"],
            action="generate",
            submitted_at=0.0,
            deadline_at=0.0,
            context={"params": first["params"]},
        )
        outcome = ProviderOutcome.from_record("succeeded", record.model_dump(mode="json"))
        again = collect.apply_async(
            args=[outcome.to_json(), cont.model_dump(mode="json")], task_id=pending.id
        ).get(timeout=RESULT_TIMEOUT_S)
        entry = ledger_entry(f, pending)
    assert again == first
    assert entry.state is State.DONE
    check_artifacts(tmp_path, again)


def test_two_deliveries_of_one_task_at_once_pay_once(redis_url: str, tmp_path: Path) -> None:
    # Both deliveries carry the same task id, so both own the ledger reservation: the
    # second one adopts what the first posted, or waits for its submit lock.
    faults = FaultConfig(slow_probability=1.0, slow_response_s=50.0, endpoints=["audios"])
    with fleet(redis_url, tmp_path, emulator=fast_emulator_config(faults=faults)) as f:
        kwargs = {"params": generate_params("delivered twice")}
        first = generate.apply_async(kwargs=kwargs)
        generate.apply_async(kwargs=kwargs, task_id=first.id)
        result = first.get(timeout=RESULT_TIMEOUT_S)
        counters = f.counters
    check_artifacts(tmp_path, result)
    assert counters["submissions_total"] == 1


def test_delivery_finding_the_submit_lock_held_waits_without_posting(
    redis_url: str, tmp_path: Path
) -> None:
    task_id = "held-lock-task"
    with fleet(redis_url, tmp_path) as f:
        with submitting(f.services, f"task/{task_id}") as held:
            assert held
            pending = generate.apply_async(
                kwargs={"params": generate_params("locked")}, task_id=task_id
            )
            time.sleep(1.5)
            entry_while_held = ledger_entry(f, pending)
            posts_while_held = audios_posts(f)
        result = pending.get(timeout=RESULT_TIMEOUT_S)
        counters = f.counters
    assert entry_while_held.state is State.RESERVED
    assert entry_while_held.post_started_at is None
    assert posts_while_held == 0
    assert counters["submissions_total"] == 1
    check_artifacts(tmp_path, result)


def test_lost_collect_is_put_back_by_the_poller(redis_url: str, tmp_path: Path) -> None:
    # The continuation is claimed and its collect never runs (as when the worker that
    # took the message is SIGKILLed): the poller finds the stale claim and resumes it.
    emulator = fast_emulator_config(generation_s=100.0, generation_jitter_s=0.0)
    with fleet(redis_url, tmp_path, emulator=emulator, visibility_timeout_s=5) as f:
        pending = generate.delay(params=generate_params("collect lost"))
        store, token = f.services.continuations, f.services.token_id
        claimed = None
        for _ in range(500):
            ids = store.due(token, now=float("inf"), limit=1)
            claimed = store.claim(ids[0], token) if ids else None
            if claimed is not None:
                break
            time.sleep(0.01)
        assert claimed is not None
        started = time.monotonic()
        result = pending.get(timeout=RESULT_TIMEOUT_S)
        waited = time.monotonic() - started
        counters = f.counters
        leftovers = store.stale_claims(token, claimed_before=float("inf"), limit=10)
    check_artifacts(tmp_path, result)
    assert waited >= 5  # put back only after 2 x visibility timeout (10 s) from the claim
    assert counters["submissions_total"] == 1
    assert leftovers == []


def test_polls_refused_by_the_provider_lower_the_shared_poll_rate(
    redis_url: str, tmp_path: Path
) -> None:
    # The fleet polls at up to 50/s; this provider allows 1 poll/s.
    emulator = fast_emulator_config(poll_rate_per_s=1.0, poll_burst=1)
    with fleet(redis_url, tmp_path, emulator=emulator) as f:
        pending = [generate.delay(params=generate_params(f"polled {i}", str(i))) for i in range(3)]
        results = [p.get(timeout=RESULT_TIMEOUT_S) for p in pending]
        counters = f.counters
        poll = f.services.limiter.show(f.services.token_id).bucket(EndpointClass.POLL)
    assert counters["rejected_429"]["poll"] > 0
    assert poll.throttles > 0
    assert poll.rate < 50.0
    for result in results:
        check_artifacts(tmp_path, result)
