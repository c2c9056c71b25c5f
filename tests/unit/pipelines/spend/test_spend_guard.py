"""SpendGuard over spend.lua, on fakeredis (Lua) and on a real Redis (``REDIS_URL`` or embedded).

Reserve/settle/release, idempotence, both caps, exact sums of float amounts, the runtime
global cap, and two batches hammered by many threads: ``spent + reserved <= cap`` after
every operation and in every snapshot, and the totals add up at the end.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis
from structlog.testing import capture_logs

from pipelines.constants import SPEND_GLOBAL_KEY
from pipelines.spend.guard import Paid, SpendDecision, SpendGuard, StepCharge
from pipelines.spend.prices import from_micro, to_micro

ClientFactory = Callable[..., redis.Redis]


@pytest.fixture(params=["fakeredis-lua", "redis"])
def new_client(request: pytest.FixtureRequest) -> Iterator[ClientFactory]:
    """Makes clients of one store: a shared fakeredis server, or the flushed test Redis."""
    made: list[redis.Redis] = []
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")

        def make(decode_responses: bool = False) -> redis.Redis:
            made.append(redis.Redis.from_url(url, decode_responses=decode_responses))
            return made[-1]
    else:
        server = fakeredis.FakeServer()

        def make(decode_responses: bool = False) -> redis.Redis:
            made.append(fakeredis.FakeRedis(server=server, decode_responses=decode_responses))
            return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def guard(new_client: ClientFactory) -> SpendGuard:
    return SpendGuard(new_client())


def reserve(
    guard: SpendGuard,
    key: str,
    amount: float,
    batch: str = "b1",
    *,
    batch_cap: float | None = None,
    global_cap: float | None = None,
) -> SpendDecision:
    return guard.reserve(batch, key, amount, batch_cap=batch_cap, global_cap=global_cap)


def test_reserve_settle_release(guard: SpendGuard) -> None:
    d = reserve(guard, "row-1", 0.23, batch_cap=1.0)
    assert (d.granted, d.reason, d.batch_reserved, d.batch_cap) == (True, None, 0.23, 1.0)
    reserve(guard, "row-2", 0.13)
    guard.settle("b1", "row-1", actual=0.13)
    guard.release("b1", "row-2")
    status = guard.status("b1")
    assert (status.spent, status.reserved, status.overrun, status.refused) == (0.13, 0, 0, None)
    g = guard.global_status()
    assert (g.spent, g.reserved, g.cap) == (0.13, 0, None)


def test_calls_are_idempotent(guard: SpendGuard) -> None:
    assert reserve(guard, "row", 0.5).granted
    again = reserve(guard, "row", 0.5)
    assert again.granted and again.batch_reserved == 0.5
    guard.settle("b1", "row", actual=0.3)
    guard.settle("b1", "row", actual=0.3)
    guard.release("b1", "row")  # a settled key stays settled
    assert reserve(guard, "row", 0.5).batch_reserved == 0  # settled: not held again
    assert (guard.status("b1").spent, guard.global_status().spent) == (0.3, 0.3)


def test_a_released_key_is_reserved_afresh_against_the_cap(guard: SpendGuard) -> None:
    reserve(guard, "row", 0.6, batch_cap=1.0)
    guard.release("b1", "row")
    guard.release("b1", "row")
    assert reserve(guard, "row", 0.6, batch_cap=1.0).batch_reserved == 0.6
    assert not reserve(guard, "other", 0.6, batch_cap=1.0).granted


def test_the_batch_cap_refuses_what_does_not_fit(guard: SpendGuard) -> None:
    assert reserve(guard, "a", 0.6, batch_cap=1.0).granted
    refused = reserve(guard, "b", 0.5, batch_cap=1.0)
    assert (refused.granted, refused.reason, refused.batch_reserved) == (False, "batch_cap", 0.6)
    assert guard.status("b1").refused == "batch_cap"
    assert reserve(guard, "c", 0.4, batch_cap=1.0).granted  # exactly up to the cap
    assert guard.status("b1").refused is None
    assert guard.status("b1").headroom == 0
    assert reserve(guard, "x", 0.4, batch="b2", batch_cap=1.0).granted  # other batch, own cap


def test_the_global_cap_spans_batches(guard: SpendGuard) -> None:
    assert reserve(guard, "a", 0.7, batch="b1", global_cap=1.0).granted
    refused = reserve(guard, "a", 0.7, batch="b2", global_cap=1.0)
    assert (refused.granted, refused.reason) == (False, "global_cap")
    assert (refused.global_reserved, refused.global_cap) == (0.7, 1.0)
    assert guard.status("b2").refused == "global_cap"
    guard.settle("b1", "a", actual=0.2)
    assert reserve(guard, "a", 0.7, batch="b2", global_cap=1.0).granted  # 0.2 + 0.7 <= 1


def test_the_batch_cap_is_checked_first(guard: SpendGuard) -> None:
    d = reserve(guard, "a", 5.0, batch_cap=1.0, global_cap=1.0)
    assert d.reason == "batch_cap"


def test_float_amounts_sum_exactly(guard: SpendGuard) -> None:
    assert reserve(guard, "a", 0.1, batch_cap=0.3).granted
    assert reserve(guard, "b", 0.2, batch_cap=0.3).granted  # 0.1 + 0.2 > 0.3 in floats
    assert not reserve(guard, "c", 0.000001, batch_cap=0.3).granted
    for i in range(10):
        assert reserve(guard, f"t{i}", 0.1, batch="b2", batch_cap=1.0).granted
    assert not reserve(guard, "t10", 0.000001, batch="b2", batch_cap=1.0).granted
    for i in range(10):
        guard.settle("b2", f"t{i}", actual=0.1)
    assert guard.status("b2").spent == 1.0


def test_a_zero_cost_row_fits_a_full_cap(guard: SpendGuard) -> None:
    reserve(guard, "a", 1.0, batch_cap=1.0)
    assert reserve(guard, "free", 0.0, batch_cap=1.0).granted


def test_the_runtime_global_cap_wins_over_the_default(guard: SpendGuard) -> None:
    assert guard.global_cap() is None
    guard.set_global_cap(0.5)
    assert guard.global_cap() == 0.5
    d = reserve(guard, "a", 0.6, global_cap=10.0)
    assert (d.granted, d.global_cap) == (False, 0.5)
    assert guard.global_status(default_cap=10.0).cap == 0.5
    guard.set_global_cap(None)
    assert guard.global_cap() is None
    assert guard.global_status(default_cap=10.0).cap == 10.0
    assert reserve(guard, "a", 0.6, global_cap=10.0).granted
    guard.set_global_cap(0.0)
    assert not reserve(guard, "b", 0.01, global_cap=None).granted


def test_settling_above_the_hold_is_recorded_and_flagged(guard: SpendGuard) -> None:
    reserve(guard, "a", 0.1, batch_cap=0.15)
    with capture_logs() as logs:
        guard.settle("b1", "a", actual=0.25)
    status = guard.status("b1")
    assert (status.spent, status.reserved, status.overrun) == (0.25, 0, 0.15)
    assert guard.global_status().overrun == 0.15
    assert [e["event"] for e in logs] == ["spend_overrun"]
    assert logs[0]["overrun"] == 0.15
    with capture_logs() as logs:
        guard.settle("b1", "never-reserved", actual=0.01)
    assert guard.status("b1").overrun == 0.16 and logs[0]["key"] == "never-reserved"


def test_forget_drops_the_batch_and_its_holds(guard: SpendGuard) -> None:
    reserve(guard, "a", 0.3)
    reserve(guard, "b", 0.2)
    guard.settle("b1", "a", actual=0.1)
    reserve(guard, "c", 0.4, batch="b2")
    guard.forget("b1")
    assert guard.status("b1").spent == 0 and guard.status("b1").reserved == 0
    g = guard.global_status()
    assert (g.spent, g.reserved) == (0.1, 0.4)  # the fleet keeps what was spent


def test_bad_amounts_are_refused(guard: SpendGuard) -> None:
    for bad in (-0.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and >= 0"):
            reserve(guard, "a", bad)
    with pytest.raises(ValueError, match="finite and >= 0"):
        reserve(guard, "a", 1.0, batch_cap=-1.0)


def test_keys_live_under_the_prefix(new_client: ClientFactory) -> None:
    client = new_client()
    guard = SpendGuard(client)
    reserve(guard, "a", 0.3)
    keys = sorted(k.decode() for k in client.scan_iter("producer:spend:*"))
    assert keys == ["producer:spend:batch:b1", "producer:spend:batch:b1:holds", SPEND_GLOBAL_KEY]
    assert client.hget("producer:spend:batch:b1:holds", "a") == b"h300000"


def test_string_replies_work_too(new_client: ClientFactory) -> None:
    guard = SpendGuard(new_client(decode_responses=True))
    assert reserve(guard, "a", 0.3, batch_cap=1.0).granted
    assert guard.status("b1").cap == 1.0


# --- concurrency ---------------------------------------------------------------

CAPS = {"b1": 2.5, "b2": 2.0}
GLOBAL_CAP = 3.2
AMOUNTS = (0.005, 0.01, 0.05, 0.08, 0.1, 0.13, 0.23, 0.3)


def fits(spent: float, reserved: float, cap: float | None) -> bool:
    """``spent + reserved <= cap``, compared in integer micro-units like the guard does."""
    return cap is None or to_micro(spent) + to_micro(reserved) <= to_micro(cap)


def decision_fits(d: SpendDecision) -> bool:
    return fits(d.batch_spent, d.batch_reserved, d.batch_cap) and fits(
        d.global_spent, d.global_reserved, d.global_cap
    )


def one_row(guard: SpendGuard, rng: random.Random, batch: str, key: str) -> tuple[int, bool]:
    """Reserve a random amount, then settle part of it or release it.

    Returns (micro-units settled, every check held).
    """
    amount = rng.choice(AMOUNTS) * rng.randint(1, 3)
    d = guard.reserve(batch, key, amount, batch_cap=CAPS[batch], global_cap=GLOBAL_CAP)
    ok = decision_fits(d)
    if not d.granted:
        return 0, ok
    if rng.random() < 0.25:
        guard.release(batch, key)
        return 0, ok
    actual = from_micro(rng.randint(0, to_micro(amount)))  # only what succeeded is billed
    guard.settle(batch, key, actual=actual)
    status = guard.status(batch)
    return to_micro(actual), ok and fits(status.spent, status.reserved, CAPS[batch])


def hammer(
    guard: SpendGuard,
    seed: int,
    rows: int,
    settled: dict[str, int],
    failures: list[str],
    lock: threading.Lock,
) -> None:
    """One thread: rows alternate between the two batches."""
    rng = random.Random(seed)
    mine = dict.fromkeys(CAPS, 0)
    for i in range(rows):
        batch = "b1" if i % 2 else "b2"
        micro, ok = one_row(guard, rng, batch, f"s{seed}-r{i}")
        mine[batch] += micro
        if not ok:
            failures.append(f"seed {seed} row {i}: a cap was exceeded")
    with lock:
        for batch, micro in mine.items():
            settled[batch] += micro


def watch(guard: SpendGuard, stop: threading.Event, failures: list[str]) -> None:
    """Snapshots while the threads run: every counter stays under its cap."""
    while not stop.is_set():
        for batch, cap in CAPS.items():
            s = guard.status(batch)
            if not fits(s.spent, s.reserved, cap):
                failures.append(f"snapshot {batch}: {s}")
        g = guard.global_status(default_cap=GLOBAL_CAP)
        if not fits(g.spent, g.reserved, GLOBAL_CAP):
            failures.append(f"snapshot global: {g}")


def test_two_batches_many_threads_never_exceed_a_cap(new_client: ClientFactory) -> None:
    threads_n, rows = 8, 120
    settled, lock = dict.fromkeys(CAPS, 0), threading.Lock()
    failures: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(SpendGuard(new_client()), stop, failures))
    workers = [
        threading.Thread(
            target=hammer, args=(SpendGuard(new_client()), seed, rows, settled, failures, lock)
        )
        for seed in range(threads_n)
    ]
    watcher.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    stop.set()
    watcher.join(timeout=30)
    assert failures == []
    check_totals(SpendGuard(new_client()), settled)


def check_totals(guard: SpendGuard, settled: dict[str, int]) -> None:
    """Every hold ended, spend equals what the callers settled, and the caps are reachable."""
    g = guard.global_status()
    per_batch = {b: guard.status(b) for b in CAPS}
    assert all(s.reserved == 0 and s.overrun == 0 for s in per_batch.values())
    assert {b: to_micro(s.spent) for b, s in per_batch.items()} == settled
    assert (to_micro(g.spent), g.reserved) == (sum(settled.values()), 0)
    assert to_micro(g.spent) <= to_micro(GLOBAL_CAP)
    # The guard refuses only what does not fit: the last micro-unit of headroom is grantable.
    room = to_micro(GLOBAL_CAP) - to_micro(g.spent)
    batch = max(CAPS, key=lambda b: to_micro(CAPS[b]) - to_micro(per_batch[b].spent))
    room = min(room, to_micro(CAPS[batch]) - to_micro(per_batch[batch].spent))
    assert guard.reserve(
        batch, "last", from_micro(room), batch_cap=CAPS[batch], global_cap=GLOBAL_CAP
    ).granted
    assert not guard.reserve(
        batch, "over", 0.000001, batch_cap=CAPS[batch], global_cap=GLOBAL_CAP
    ).granted


def test_settle_steps_counts_each_paid_step_once_and_holds_what_is_in_flight(
    guard: SpendGuard,
) -> None:
    """Issue 9 item 8: a step is counted once whichever admission of its row ends."""
    gen, ext = "row-1/step-generate", "row-1/step-extend"
    reserve(guard, "row-1/attempt-1", 0.13)
    # The first admission ends (abandoned) with generate paid and extend at the provider.
    guard.settle_steps(
        "b1",
        "row-1/attempt-1",
        [StepCharge(gen, Paid.YES, 0.08), StepCharge(ext, Paid.PENDING, 0.05)],
    )
    assert (guard.status("b1").spent, guard.status("b1").reserved) == (0.08, 0.05)
    assert guard.pending("b1") == [ext] and guard.pending_batches() == ["b1"]
    # A second admission of the row sees both paid: generate is not counted again, and
    # extend is counted at the price it was held at.
    reserve(guard, "row-1/attempt-2", 0.13)
    guard.settle_steps(
        "b1", "row-1/attempt-2", [StepCharge(gen, Paid.YES, 0.08), StepCharge(ext, Paid.YES, 0.0)]
    )
    final = guard.status("b1")
    assert (final.spent, final.reserved, final.overrun) == (0.13, 0.0, 0.0)
    assert guard.pending("b1") == [] and guard.pending_batches() == []
    assert guard.global_status().spent == 0.13


def test_a_held_step_that_fails_is_released(guard: SpendGuard) -> None:
    reserve(guard, "row-2/attempt-1", 0.08)
    guard.settle_steps("b1", "row-2/attempt-1", [StepCharge("s", Paid.PENDING, 0.08)])
    guard.settle_steps("b1", "", [StepCharge("s", Paid.NO, 0.08)])
    status = guard.status("b1")
    assert (status.spent, status.reserved) == (0.0, 0.0)
    assert guard.pending_batches() == []
    guard.forget("b1")
    assert guard.global_status().reserved == 0.0
