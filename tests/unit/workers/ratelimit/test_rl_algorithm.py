"""The algorithm, deterministic: the memory twin and the Lua script on a controlled clock.

Every test runs twice (``limiter`` is parametrised): over ``MemoryBackend`` and
over ``token_bucket.lua`` on fakeredis whose ``TIME`` reads the same clock.
"""

from __future__ import annotations

import itertools

import pytest

from workers.ratelimit import EndpointClass, FakeClock, Limiter, Tuning

SUBMIT, POLL = EndpointClass.SUBMIT, EndpointClass.POLL


def grants(limiter: Limiter, n: int, endpoint: EndpointClass = SUBMIT, cost: float = 1.0) -> int:
    return sum(limiter.acquire("tok", endpoint, cost).granted for _ in range(n))


def test_a_full_bucket_grants_its_burst_then_says_how_long_to_wait(limiter: Limiter) -> None:
    assert grants(limiter, 5) == 5
    decision = limiter.acquire("tok")
    assert not decision.granted
    assert decision.reason == "rate"
    assert decision.wait_ms == 100  # one token at 10/s


def test_tokens_refill_at_the_rate_up_to_the_burst(limiter: Limiter, clock: FakeClock) -> None:
    grants(limiter, 5)
    clock.advance(0.25)
    assert grants(limiter, 5) == 2
    clock.advance(60)
    assert grants(limiter, 10) == 5


def test_the_wait_is_exact_when_honoured(limiter: Limiter, clock: FakeClock) -> None:
    grants(limiter, 5)
    wait = limiter.acquire("tok").wait_ms
    clock.advance((wait - 1) / 1000)
    assert not limiter.acquire("tok").granted
    clock.advance(0.001)
    assert limiter.acquire("tok").granted


def test_weighted_cost_spends_several_tokens(limiter: Limiter, clock: FakeClock) -> None:
    assert limiter.acquire("tok", cost=3).granted
    assert not limiter.acquire("tok", cost=3).granted
    assert limiter.acquire("tok", cost=2).granted
    decision = limiter.acquire("tok", cost=2.5)
    # Its tokens exist in 250 ms, but the waiter before it holds the slot at 100 ms:
    # it queues one interval of its own cost (250 ms) behind that slot.
    assert decision.wait_ms == 350
    clock.advance(0.35)
    assert limiter.acquire("tok", cost=2.5).granted


def test_waiters_are_given_slots_one_token_interval_apart(
    limiter: Limiter, clock: FakeClock
) -> None:
    limiter.set_limits("tok", ceiling=4, burst=1)
    assert limiter.acquire("tok").granted
    waits = [limiter.acquire("tok").wait_ms for _ in range(4)]
    assert waits == [250, 500, 750, 1000]
    for wait in waits:  # each comes back at its slot and finds its token there
        clock.advance(0.25)
        assert limiter.acquire("tok").granted, wait


def test_a_slot_beyond_the_requeue_cap_is_told_but_not_kept(limiter: Limiter) -> None:
    # Such a waiter comes back at the cap (30 s) and asks again: holding its slot
    # would push every later waiter back for a slot nobody uses.
    limiter.set_limits("tok", ceiling=1, burst=1)
    assert limiter.acquire("tok").granted
    waits = [limiter.acquire("tok").wait_ms for _ in range(32)]
    assert waits[:30] == [1000 * (i + 1) for i in range(30)]
    assert waits[30:] == [31_000, 31_000]


def test_a_cost_above_the_burst_takes_a_full_bucket(limiter: Limiter, clock: FakeClock) -> None:
    assert limiter.acquire("tok", cost=50).granted
    assert limiter.acquire("tok", cost=50).wait_ms == 500


def test_non_positive_cost_is_refused(limiter: Limiter) -> None:
    with pytest.raises(ValueError, match="cost"):
        limiter.acquire("tok", cost=0)


def test_tokens_and_endpoint_classes_have_separate_budgets(limiter: Limiter) -> None:
    assert grants(limiter, 10) == 5
    assert limiter.acquire("other").granted
    assert grants(limiter, 3, POLL) == 1


def test_polls_never_exceed_one_per_second_by_default(limiter: Limiter, clock: FakeClock) -> None:
    granted_at = []
    for step in range(1000):
        if limiter.acquire("tok", POLL).granted:
            granted_at.append(step * 0.01)
        clock.advance(0.01)
    gaps = [b - a for a, b in itertools.pairwise(granted_at)]
    assert len(granted_at) == 10
    assert min(gaps) >= 1.0 - 1e-9


def test_a_throttle_cuts_the_rate_pauses_and_empties_the_bucket(
    limiter: Limiter, clock: FakeClock
) -> None:
    epoch = limiter.acquire("tok").epoch
    pause = limiter.report_throttled("tok", epoch=epoch)
    assert pause == pytest.approx(Tuning().backoff_s)
    status = limiter.show("tok").submit
    assert status.rate == pytest.approx(10 * Tuning().decrease)
    assert status.throttles == 1
    assert status.tokens == 0
    decision = limiter.acquire("tok")
    assert not decision.granted
    assert decision.wait_ms == 1000 + 143  # the pause, then one token at 7/s
    clock.advance(1.143)
    assert limiter.acquire("tok").granted


def test_retry_after_from_the_provider_sets_the_pause(limiter: Limiter) -> None:
    assert limiter.report_throttled("tok", retry_after_s=7.5) == pytest.approx(7.5)
    assert limiter.show("tok").submit.paused_for_s == pytest.approx(7.5)


def test_replies_from_an_older_epoch_do_not_cut_the_rate_again(limiter: Limiter) -> None:
    epochs = [limiter.acquire("tok").epoch for _ in range(4)]
    for epoch in epochs:
        limiter.report_throttled("tok", epoch=epoch)
    status = limiter.show("tok").submit
    assert status.throttles == 1
    assert status.rate == pytest.approx(7.0)


def test_a_stale_reply_with_retry_after_still_extends_the_pause(limiter: Limiter) -> None:
    limiter.report_throttled("tok", epoch=0)
    assert limiter.report_throttled("tok", epoch=0, retry_after_s=5) == pytest.approx(5)
    assert limiter.show("tok").submit.throttles == 1


def test_without_an_epoch_throttles_during_the_pause_count_once(limiter: Limiter) -> None:
    for _ in range(5):
        limiter.report_throttled("tok")
    assert limiter.show("tok").submit.throttles == 1


def test_consecutive_throttles_double_the_backoff(limiter: Limiter, clock: FakeClock) -> None:
    pauses = []
    for _ in range(7):
        epoch = limiter.show("tok").submit.throttles
        pauses.append(limiter.report_throttled("tok", epoch=epoch))
        clock.advance(pauses[-1])
    assert pauses == pytest.approx([1, 2, 4, 8, 16, 16, 16])
    limiter.report_success("tok")
    assert limiter.report_throttled("tok", epoch=7) == pytest.approx(1)


def test_the_rate_never_falls_below_its_floor(limiter: Limiter, clock: FakeClock) -> None:
    for epoch in range(40):
        limiter.report_throttled("tok", epoch=epoch, retry_after_s=0)
    assert limiter.show("tok").submit.rate == pytest.approx(10 * Tuning().min_rate_fraction)


def drive(limiter: Limiter, clock: FakeClock, seconds: float, step: float = 0.05) -> float:
    """Successes at the learned rate for ``seconds``; returns the final rate."""
    rate = limiter.show("tok").submit.rate
    for _ in range(round(seconds / step)):
        clock.advance(step)
        rate = limiter.report_success("tok")
    return rate


def test_successes_raise_the_rate_additively_back_to_the_ceiling(
    limiter: Limiter, clock: FakeClock
) -> None:
    limiter.report_throttled("tok", epoch=0, retry_after_s=0)
    # Far from w_max the climb is ceiling / recovery_s per second: 10/60 per s.
    assert drive(limiter, clock, 6.0) == pytest.approx(7.0 + 1.0, rel=0.02)
    assert drive(limiter, clock, 600.0) == 10.0
    assert limiter.show("tok").submit.rate == 10.0


def test_the_climb_slows_near_the_rate_last_refused(limiter: Limiter, clock: FakeClock) -> None:
    drive(limiter, clock, 20.0, step=0.1)  # 10 successes/s accepted: w_max will be ~10
    limiter.report_throttled("tok", epoch=0, retry_after_s=0)
    status = limiter.show("tok").submit
    assert status.w_max == pytest.approx(10.0, rel=0.15)
    start = drive(limiter, clock, 12.0, step=0.1)  # fast part: 7 -> ~9
    slow = drive(limiter, clock, 6.0, step=0.1) - start
    assert slow == pytest.approx(6.0 * 10 / 60 / Tuning().probe_slowdown, rel=0.05)


def test_sparse_successes_earn_little(limiter: Limiter, clock: FakeClock) -> None:
    limiter.report_throttled("tok", epoch=0, retry_after_s=0)
    clock.advance(3600)
    # One success an hour later is credited 2 / rate seconds, not an hour.
    rate = limiter.report_success("tok")
    assert rate == pytest.approx(7.0 + (10 / 60) * (2 / 7.0))


def test_a_lowered_ceiling_applies_at_once_and_resets_the_learned_rate(
    limiter: Limiter, clock: FakeClock
) -> None:
    limiter.report_throttled("tok", epoch=0, retry_after_s=0)
    limiter.set_limits("tok", ceiling=4, burst=2)
    status = limiter.show("tok").submit
    assert (status.ceiling, status.rate, status.burst) == (4, 4, 2)
    assert set(status.overrides) == {"ceiling", "burst"}
    clock.advance(10)
    assert grants(limiter, 5) == 2
    # Three waiters were given the slots at 250, 500 and 750 ms: the next is fourth.
    assert limiter.acquire("tok").wait_ms == 1000


def test_the_learned_rate_can_be_set_below_the_ceiling(limiter: Limiter) -> None:
    limiter.set_limits("tok", rate=2)
    status = limiter.show("tok").submit
    assert (status.ceiling, status.rate) == (10, 2)
    limiter.set_limits("tok", rate=50)
    assert limiter.show("tok").submit.rate == 10  # never above the ceiling


def test_reset_returns_to_the_settings(limiter: Limiter) -> None:
    limiter.set_limits("tok", ceiling=2, burst=1)
    limiter.set_limits("tok", POLL, ceiling=0.5)
    limiter.set_max_in_flight("tok", 9)
    limiter.report_throttled("tok", epoch=0)
    limiter.reset("tok")
    status = limiter.show("tok")
    assert (status.submit.ceiling, status.submit.rate, status.submit.burst) == (10, 10, 5)
    assert status.submit.paused_for_s == 0
    assert status.poll.ceiling == 1
    assert status.max_in_flight == 3
    assert status.submit.overrides == ()
    assert status.submit.tokens == 5  # the pause is gone too
    assert limiter.acquire("tok").granted


@pytest.mark.parametrize("bad", [{"ceiling": 0}, {"burst": -1}, {"rate": 0}])
def test_limits_must_be_positive(limiter: Limiter, bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        limiter.set_limits("tok", **bad)
