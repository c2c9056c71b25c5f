"""The ledger's transitions, leases and orphan adoption, on fakeredis and a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from producer_client import request_fingerprint
from workers.constants import LEDGER_CLAIM_PREFIX, LEDGER_DONE_TTL_S, LEDGER_PREFIX
from workers.ledger import (
    Claim,
    ClaimConflictError,
    FingerprintMismatchError,
    LeaseLostError,
    Ledger,
    LedgerStateError,
    ProviderTask,
    State,
    step_key,
)

FP = request_fingerprint({"action": "generate", "prompt": "lofi rain", "async": True})
OTHER_FP = request_fingerprint({"action": "generate", "prompt": "metal"})
KEY = step_key("batch-1", 3, "generate")


@pytest.fixture(params=["fakeredis", "redis"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        fake = fakeredis.FakeRedis()
        yield fake
        fake.close()
    else:
        yield request.getfixturevalue("redis_client")


@pytest.fixture
def ledger(client: redis.Redis) -> Ledger:
    return Ledger(client)


def crashed_mid_post(ledger: Ledger, key: str, owner: str = "celery-1") -> float:
    """Reserve and begin a submission, then 'crash'; return when the POST could start."""
    assert ledger.reserve(key, fingerprint=FP, owner=owner)[0] is Claim.NEW
    started = ledger.begin_submit(key, owner=owner).post_started_at
    assert started is not None
    return started


def test_step_key_is_batch_row_step() -> None:
    assert KEY == "batch-1/3/generate"


def test_reserve_new_then_same_owner_resumes_and_others_are_busy(ledger: Ledger) -> None:
    claim, entry = ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    assert claim is Claim.NEW
    assert (entry.state, entry.owner, entry.fingerprint) == (State.RESERVED, "celery-1", FP)
    assert entry.lease_until > entry.reserved_at
    claim, entry = ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    assert claim is Claim.RESUME_RESERVED
    assert not entry.needs_adoption
    assert ledger.reserve(KEY, fingerprint=FP, owner="celery-2")[0] is Claim.BUSY


def test_same_key_with_other_params_is_refused(ledger: Ledger) -> None:
    ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    with pytest.raises(FingerprintMismatchError):
        ledger.reserve(KEY, fingerprint=OTHER_FP, owner="celery-1")


def test_begin_submit_is_fenced_and_marks_the_crash_window(ledger: Ledger) -> None:
    with pytest.raises(LedgerStateError):
        ledger.begin_submit(KEY, owner="celery-1")
    ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    with pytest.raises(LeaseLostError):
        ledger.begin_submit(KEY, owner="celery-2")
    entry = ledger.begin_submit(KEY, owner="celery-1")
    assert entry.needs_adoption
    claim, entry = ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    assert claim is Claim.RESUME_RESERVED
    assert entry.needs_adoption


def test_mark_submitted_records_the_task_once(ledger: Ledger) -> None:
    ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    entry = ledger.mark_submitted(KEY, api_task_id="t-1", owner="celery-1")
    assert (entry.state, entry.api_task_id, entry.adopted) == (State.SUBMITTED, "t-1", False)
    assert entry.submitted_at is not None
    assert ledger.mark_submitted(KEY, api_task_id="t-1") == entry  # a retried write
    with pytest.raises(LedgerStateError):
        ledger.mark_submitted(KEY, api_task_id="t-2")
    assert ledger.claimed_by("t-1") == KEY
    claim, found = ledger.reserve(KEY, fingerprint=FP, owner="celery-9")
    assert (claim, found.api_task_id) == (Claim.SUBMITTED, "t-1")


def test_mark_submitted_on_a_missing_key_or_recorded_task_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerStateError):
        ledger.mark_submitted(KEY, api_task_id="t-1")
    ledger.reserve("a", fingerprint=FP, owner="o")
    ledger.reserve("b", fingerprint=FP, owner="o")
    ledger.mark_submitted("a", api_task_id="t-1")
    with pytest.raises(ClaimConflictError):
        ledger.mark_submitted("b", api_task_id="t-1")


def test_done_keeps_the_result_and_expires(ledger: Ledger, client: redis.Redis) -> None:
    ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    ledger.mark_submitted(KEY, api_task_id="t-1")
    entry = ledger.mark_done(KEY, result={"audio": "b/3/gen/a.mp3", "n": 1})
    assert (entry.state, entry.result) == (State.DONE, {"audio": "b/3/gen/a.mp3", "n": 1})
    assert ledger.mark_failed(KEY, code="late", message="ignored").state is State.DONE
    claim, found = ledger.reserve(KEY, fingerprint=FP, owner="celery-2")
    assert (claim, found.result) == (Claim.DONE, entry.result)
    assert 0 < client.ttl(LEDGER_PREFIX + KEY) <= LEDGER_DONE_TTL_S
    assert 0 < client.ttl(LEDGER_CLAIM_PREFIX + "t-1") <= LEDGER_DONE_TTL_S


def test_a_reservation_may_finish_directly(ledger: Ledger) -> None:
    ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    assert ledger.mark_done(KEY, result={"lyrics": "la"}).state is State.DONE
    with pytest.raises(LedgerStateError):
        ledger.mark_done("nope", result={})


def test_failed_then_reset_for_a_retry(ledger: Ledger) -> None:
    ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    entry = ledger.mark_failed(KEY, code="moderation", message="rejected")
    assert (entry.state, entry.error_code, entry.error_message) == (
        State.FAILED,
        "moderation",
        "rejected",
    )
    assert ledger.reserve(KEY, fingerprint=FP, owner="celery-2")[0] is Claim.FAILED
    assert ledger.reset_failed(KEY)
    assert not ledger.reset_failed(KEY)
    assert ledger.reserve(KEY, fingerprint=FP, owner="celery-2")[0] is Claim.NEW


def test_reset_failed_leaves_other_states_alone(ledger: Ledger) -> None:
    ledger.reserve(KEY, fingerprint=FP, owner="celery-1")
    ledger.mark_done(KEY, result={})
    assert not ledger.reset_failed(KEY)
    assert ledger.get(KEY) is not None


def test_stale_reservation_is_taken_over_and_the_old_owner_fenced(ledger: Ledger) -> None:
    ledger.reserve(KEY, fingerprint=FP, owner="celery-1", reservation_ttl_s=0.05)
    ledger.begin_submit(KEY, owner="celery-1", reservation_ttl_s=0.05)
    time.sleep(0.1)
    claim, entry = ledger.reserve(KEY, fingerprint=FP, owner="celery-2")
    assert claim is Claim.RESUME_RESERVED
    assert (entry.owner, entry.previous_owner, entry.takeovers) == ("celery-2", "celery-1", 1)
    assert entry.needs_adoption  # the old owner may have posted
    with pytest.raises(LeaseLostError):
        ledger.begin_submit(KEY, owner="celery-1")
    with pytest.raises(LeaseLostError):
        ledger.mark_submitted(KEY, api_task_id="t-old", owner="celery-1")


def test_concurrent_reserve_gives_exactly_one_new(ledger: Ledger) -> None:
    claims: list[Claim] = []
    barrier = threading.Barrier(16)

    def worker(n: int) -> None:
        barrier.wait()
        claims.append(ledger.reserve(KEY, fingerprint=FP, owner=f"celery-{n}")[0])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert claims.count(Claim.NEW) == 1
    assert claims.count(Claim.BUSY) == 15


def test_adoption_picks_the_matching_recent_unclaimed_task(ledger: Ledger) -> None:
    started = crashed_mid_post(ledger, KEY)
    recent = [
        ProviderTask("older", FP, started - 600),  # same params, an earlier run
        ("other-params", OTHER_FP, started + 1),
        ("ours", FP, started + 0.5),
        ("later-twin", FP, started + 5),
    ]
    entry = ledger.adopt_orphan(KEY, recent, owner="celery-1")
    assert entry is not None
    assert (entry.state, entry.api_task_id, entry.adopted) == (State.SUBMITTED, "ours", True)
    assert ledger.claimed_by("ours") == KEY


def test_adoption_tolerates_provider_clock_slack(ledger: Ledger) -> None:
    started = crashed_mid_post(ledger, KEY)
    entry = ledger.adopt_orphan(KEY, [("ours", FP, started - 3)], owner="celery-1")
    assert entry is not None
    assert entry.api_task_id == "ours"


def test_nothing_to_adopt_means_resubmit_is_safe(ledger: Ledger) -> None:
    started = crashed_mid_post(ledger, KEY)
    assert ledger.adopt_orphan(KEY, [("x", OTHER_FP, started + 1)], owner="celery-1") is None
    entry = ledger.get(KEY)
    assert entry is not None
    assert entry.state is State.RESERVED
    assert ledger.mark_submitted(KEY, api_task_id="fresh", owner="celery-1").api_task_id == "fresh"


def test_rows_with_identical_params_adopt_different_tasks(ledger: Ledger) -> None:
    keys = [step_key("b", row, "generate") for row in range(3)]
    started = min(crashed_mid_post(ledger, key, owner=f"c-{n}") for n, key in enumerate(keys))
    recent = [("t-a", FP, started + 1), ("t-b", FP, started + 2)]
    adopted = [ledger.adopt_orphan(key, recent, owner=f"c-{n}") for n, key in enumerate(keys)]
    assert adopted[2] is None  # only two orphans exist: the third row never posted
    assert {e.api_task_id for e in adopted if e is not None} == {"t-a", "t-b"}


def test_adoption_skips_a_task_recorded_by_a_healthy_row(ledger: Ledger) -> None:
    started = crashed_mid_post(ledger, "crashed")
    ledger.reserve("healthy", fingerprint=FP, owner="c-2")
    ledger.mark_submitted("healthy", api_task_id="t-healthy")
    recent = [("t-healthy", FP, started + 1), ("t-orphan", FP, started + 2)]
    entry = ledger.adopt_orphan("crashed", recent, owner="celery-1")
    assert entry is not None
    assert entry.api_task_id == "t-orphan"


def test_adoption_is_fenced_and_needs_a_reservation(ledger: Ledger) -> None:
    started = crashed_mid_post(ledger, KEY)
    with pytest.raises(LeaseLostError):
        ledger.adopt_orphan(KEY, [("t", FP, started + 1)], owner="intruder")
    with pytest.raises(LedgerStateError):
        ledger.adopt_orphan("missing", [], owner="celery-1")


def test_scan_lists_a_batch_and_escapes_glob_characters(ledger: Ledger) -> None:
    for key in ("b[1]/0/gen", "b[1]/1/gen", "b1/0/gen", "other/0/gen"):
        ledger.reserve(key, fingerprint=FP, owner="o")
    assert sorted(e.key for e in ledger.scan("b[1]/")) == ["b[1]/0/gen", "b[1]/1/gen"]
    assert len(list(ledger.scan())) == 4


def test_get_many_answers_every_key_in_order_in_one_round_trip(
    ledger: Ledger, client: redis.Redis
) -> None:
    keys = [step_key("b", row, "gen") for row in (1, 2, 3, 4)]
    ledger.reserve(keys[0], fingerprint=FP, owner="o")
    ledger.reserve(keys[1], fingerprint=FP, owner="o")
    ledger.mark_submitted(keys[1], api_task_id="task-2")
    ledger.mark_done(keys[1], result={"audio_id": "a2"})
    ledger.reserve(keys[3], fingerprint=FP, owner="o")
    ledger.mark_failed(keys[3], code="provider_task_failed", message="no")
    round_trips = 0
    execute = redis.client.Pipeline.execute

    def counted(pipe: redis.client.Pipeline, *args: object, **kwargs: object) -> list[object]:
        nonlocal round_trips
        round_trips += 1
        return execute(pipe, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.client.Pipeline, "execute", counted)
        entries = ledger.get_many(keys)
    assert round_trips == 1
    assert [e.key if e else None for e in entries] == [keys[0], keys[1], None, keys[3]]
    reserved, done, _, failed = entries
    assert reserved is not None and reserved.state is State.RESERVED
    assert done is not None and done.state is State.DONE
    assert (done.api_task_id, done.result) == ("task-2", {"audio_id": "a2"})
    assert done.submitted_at is not None and done.finished_at is not None
    assert failed is not None and failed.state is State.FAILED
    assert (failed.error_code, failed.error_message) == ("provider_task_failed", "no")
    assert entries == [ledger.get(k) for k in keys]
    assert ledger.get_many([]) == []
