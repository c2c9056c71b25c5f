"""The facade: leases on a controlled clock, decisions, ids, defaults, status."""

from __future__ import annotations

import json

import pytest

from workers.ratelimit import (
    Decision,
    EndpointClass,
    FakeClock,
    Limiter,
    LimiterDefaults,
    endpoint_class_for,
    token_id_for,
    tuning_for,
)
from workers.settings import Settings


def test_in_flight_cap_with_leases(limiter: Limiter, clock: FakeClock) -> None:
    assert all(limiter.lease("tok", f"step-{i}").granted for i in range(3))
    denied = limiter.lease("tok", "step-3")
    assert (denied.granted, denied.reason, denied.wait_ms) == (False, "in_flight", 60_000)
    assert limiter.lease("tok", "step-0").granted  # a redelivered step keeps its slot
    assert limiter.release("tok", "step-1")
    assert limiter.lease("tok", "step-3").granted


def test_a_dead_workers_lease_expires_and_renewal_keeps_a_live_one(
    limiter: Limiter, clock: FakeClock
) -> None:
    limiter.lease("tok", "dead")
    limiter.lease("tok", "alive")
    clock.advance(45)
    assert limiter.renew("tok", "alive")
    clock.advance(30)  # "dead" is 75 s old: past its 60 s ttl
    status = limiter.show("tok")
    assert status.in_flight == 1
    assert not limiter.renew("tok", "dead")
    assert not limiter.release("tok", "dead")
    clock.advance(31)
    assert limiter.show("tok").in_flight == 0


def test_the_cap_changes_at_runtime(limiter: Limiter) -> None:
    limiter.set_max_in_flight("tok", 1)
    assert limiter.lease("tok", "a").granted
    assert not limiter.lease("tok", "b").granted
    status = limiter.show("tok")
    assert (status.max_in_flight, status.max_in_flight_overridden) == (1, True)
    with pytest.raises(ValueError, match="at least 1"):
        limiter.set_max_in_flight("tok", 0)


def test_status_is_plain_data(limiter: Limiter) -> None:
    limiter.acquire("tok")
    data = limiter.show("tok").to_dict()
    assert json.loads(json.dumps(data))["submit"]["ceiling"] == 10
    assert data["poll"]["endpoint"] == "poll"


def test_token_ids_are_short_stable_hashes() -> None:
    tid = token_id_for("sk-secret")
    assert tid == token_id_for("sk-secret") != token_id_for("sk-other")
    assert len(tid) == 16
    assert "secret" not in tid


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/producer/tasks", EndpointClass.POLL),
        ("/producer/tasks/", EndpointClass.POLL),
        ("/producer/audios", EndpointClass.SUBMIT),
        ("/producer/upload", EndpointClass.SUBMIT),
        ("/producer/lyrics", EndpointClass.SUBMIT),
        ("/producer/wav", EndpointClass.SUBMIT),
        ("/producer/videos", EndpointClass.SUBMIT),
    ],
)
def test_paths_map_to_budgets(path: str, endpoint: EndpointClass) -> None:
    assert endpoint_class_for(path) is endpoint


def test_countdown_is_the_wait_spread_and_capped() -> None:
    decision = Decision(granted=False, wait_ms=400)
    assert decision.countdown_s(rng=lambda: 0.0) == pytest.approx(0.4)
    assert decision.countdown_s(rng=lambda: 1.0) == pytest.approx(0.48)
    assert Decision(False, 120_000).countdown_s() == 30.0


def test_defaults_come_from_settings() -> None:
    settings = Settings(submit_rate_per_s=2.5, submit_burst=4, poll_rate_per_s=0.5, max_in_flight=7)
    defaults = LimiterDefaults.from_settings(settings)
    assert (defaults.submit.ceiling, defaults.submit.burst) == (2.5, 4)
    assert (defaults.poll.ceiling, defaults.poll.burst) == (0.5, 1.0)
    assert defaults.max_in_flight == 7


def test_a_wait_for_a_token_is_its_own_slot_so_not_spread() -> None:
    decision = Decision(granted=False, wait_ms=400, reason="rate")
    assert decision.countdown_s(rng=lambda: 1.0) == pytest.approx(0.4)


def test_the_queue_horizon_is_the_workers_requeue_cap() -> None:
    # Countdowns are capped at 30 s and at half the visibility timeout (tasks/base.py).
    assert tuning_for(Settings(visibility_timeout_s=8)).queue_horizon_s == 4.0
    assert tuning_for(Settings(visibility_timeout_s=1800)).queue_horizon_s == 30.0
