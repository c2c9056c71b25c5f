"""Real celery beat processes (redbeat) and a real worker fire a 2 s schedule.

Each beat is ``python -m celery -A pipelines.app beat --max-interval 1`` in a
subprocess (no ``--scheduler``: the entry point carries the redbeat configuration);
the worker runs in this process (threads pool) and executes ``producer.schedule.fire``,
which submits a real batch with ``submit_batch`` (a one-row CSV; no feeder runs, so
nothing reaches the API). Fires are counted from the schedule's run history, whose
``fired_at`` is beat's own time for the fire (the entry's ``last_run_at``).

1. a schedule fires and each fire is a batch with its id and status;
2. a beat stopped and replaced keeps the cadence: the new beat reads the last run
   from Redis and fires when due, not at once (no burst of catch-up fires);
3. two beats at once: one holds the lock, fires are not doubled; when the holder is
   SIGKILLed the other takes over once the lock expires.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from pipelines.app import app
from pipelines.batches.state import BatchState
from pipelines.constants import REDBEAT_LOCK_KEY
from pipelines.schedules.spec import FIRE_TASK, build_spec
from pipelines.schedules.store import RunRecord, ScheduleStore
from pipelines.schedules.tasks import batch_id_for
from workers.runtime import build_services, set_services
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EVERY_S = 2
LOCK_TIMEOUT_S = 3
_START_TIMEOUT_S = 20.0

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        api_token="beat-test-token",
        storage_url=f"file://{tmp_path / 'results'}",
    )


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> Iterator[ScheduleStore]:
    schedules = ScheduleStore(redis_client, settings)
    yield schedules
    schedules.close()


def put_schedule(store: ScheduleStore, tmp_path: Path, every_s: int) -> str:
    csv = tmp_path / "prompts.csv"
    csv.write_text("prompt\nrain on a tin roof\n")
    store.put(build_spec(name="tick", pipeline="generate", csv=str(csv), every=every_s))
    return "tick"


@pytest.fixture
def schedule(store: ScheduleStore, tmp_path: Path) -> str:
    return put_schedule(store, tmp_path, EVERY_S)


@pytest.fixture
def worker(settings: Settings, redis_url: str) -> Iterator[None]:
    services = build_services(settings)
    set_services(services)
    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    try:
        with start_worker(
            app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"
        ):
            yield
    finally:
        set_services(None)
        services.close()


@contextmanager
def beat(redis_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One beat process; killed (SIGKILL) on exit unless it already stopped."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
        "PRODUCER_BEAT_LOCK_TIMEOUT_S": str(LOCK_TIMEOUT_S),
        "PRODUCER_LOG_JSON": "false",
    }
    env.pop("PRODUCER_SCHEDULES_FILE", None)
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "pipelines.app",
        "beat",
        "--max-interval",
        "1",
        "-l",
        "INFO",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def fires(store: ScheduleStore, name: str) -> list[RunRecord]:
    """Every fire the worker handled, oldest first."""
    return list(reversed(store.runs(name)))


def holds_lock(redis_client: redis.Redis) -> bool:
    return bool(redis_client.exists(REDBEAT_LOCK_KEY))


def _tails(logs: list[Path]) -> str:
    """The end of each beat's log, for a failure message."""
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]) for log in logs
    )


def gaps_s(runs: list[RunRecord]) -> list[float]:
    return [(b.fired_at - a.fired_at).total_seconds() for a, b in itertools.pairwise(runs)]


@pytest.mark.usefixtures("worker")
def test_a_schedule_fires_batches(
    store: ScheduleStore, schedule: str, redis_url: str, tmp_path: Path
) -> None:
    with beat(redis_url, tmp_path / "beat.log"):
        wait_for(lambda: len(fires(store, schedule)) >= 2, _START_TIMEOUT_S, "two fires")
    entry = store.entry(schedule)
    assert entry is not None
    # Each fire names beat's own time for it: the entry's last_run_at.
    wait_for(
        lambda: fires(store, schedule)[-1].fired_at == entry.last_run_at,
        5,
        "the last fire to be handled",
    )
    runs = fires(store, schedule)
    spec = store.get(schedule)
    assert spec is not None
    for run in runs:
        assert run.origin == "beat" and run.status == "submitted", run
        assert run.batch_id == batch_id_for(spec, run.fired_at)
        assert_batch_recorded(store.redis, run.batch_id)
    assert len({run.batch_id for run in runs}) == len(runs)
    assert all(gap >= EVERY_S - 0.001 for gap in gaps_s(runs)), gaps_s(runs)


@pytest.mark.usefixtures("worker")
def test_fired_at_is_when_the_fire_was_published(store: ScheduleStore, schedule: str) -> None:
    published = datetime.now(UTC)
    # Held back 1.5 s: the run must still carry the publish time (beat's clock).
    result = app.send_task(FIRE_TASK, args=[schedule], countdown=1.5)
    assert result.get(timeout=15)["status"] == "submitted"
    (run,) = fires(store, schedule)
    assert published <= run.fired_at <= published + timedelta(seconds=0.5)
    assert datetime.now(UTC) - run.fired_at >= timedelta(seconds=1.5)


def assert_batch_recorded(client: redis.Redis, batch_id: str) -> None:
    """The fire submitted a real batch: its record is in Redis with a status."""
    record = BatchState(client).record(batch_id)
    assert record is not None, batch_id
    assert (record["status"], record["rows_total"]) == ("queued", "1")


@pytest.mark.usefixtures("worker")
def test_a_restarted_beat_keeps_the_cadence(
    store: ScheduleStore, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Longer than a beat's start-up (~1.5 s), so "fired on start" and "fired when
    # due" cannot be confused.
    every_s = 4
    schedule = put_schedule(store, tmp_path, every_s)
    with beat(redis_url, tmp_path / "first.log") as first:
        wait_for(lambda: len(fires(store, schedule)) >= 1, _START_TIMEOUT_S + every_s, "a fire")
        first.send_signal(signal.SIGTERM)  # right after a fire; a clean stop frees the lock
        first.wait(timeout=10)
    before = fires(store, schedule)
    assert not holds_lock(redis_client)
    with beat(redis_url, tmp_path / "second.log"):
        wait_for(
            lambda: len(fires(store, schedule)) >= len(before) + 2,
            _START_TIMEOUT_S + every_s,
            "two fires from the new beat",
        )
    runs = fires(store, schedule)
    resumed_after = (runs[len(before)].fired_at - before[-1].fired_at).total_seconds()
    # The new beat read last_run_at from Redis: it fired when due, not on start.
    assert every_s - 0.5 <= resumed_after <= every_s + 2.5, resumed_after
    assert all(gap >= every_s - 0.001 for gap in gaps_s(runs)), gaps_s(runs)
    assert len({run.batch_id for run in runs}) == len(runs)


@pytest.mark.usefixtures("worker")
def test_two_beats_do_not_double_fire_and_one_takes_over(
    store: ScheduleStore,
    schedule: str,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with ExitStack() as stack:
        procs = [stack.enter_context(beat(redis_url, log)) for log in logs]
        wait_for(lambda: len(fires(store, schedule)) >= 1, _START_TIMEOUT_S, "a first fire")
        window_start = datetime.now(UTC)
        time.sleep(5 * EVERY_S)
        window = [
            r
            for r in fires(store, schedule)
            if window_start <= r.fired_at < window_start + timedelta(seconds=5 * EVERY_S)
        ]
        assert abs(len(window) - 5) <= 1, ([r.fired_at for r in window], _tails(logs))
        holders = [i for i, log in enumerate(logs) if "Acquired lock" in log.read_text()]
        assert len(holders) == 1, holders

        # SIGKILL the holder: no clean release, the lock expires after LOCK_TIMEOUT_S.
        killed_at = datetime.now(UTC)
        procs[holders[0]].kill()
        standby = logs[1 - holders[0]]
        wait_for(
            lambda: "Acquired lock" in standby.read_text(),
            LOCK_TIMEOUT_S + 5,
            "the standby beat to take the lock",
        )
        count = len(fires(store, schedule))
        wait_for(
            lambda: len(fires(store, schedule)) >= count + 2,
            4 * EVERY_S + 2,
            "fires from the standby",
        )
    runs = fires(store, schedule)
    after = [r for r in runs if r.fired_at > killed_at]
    assert after and (after[0].fired_at - killed_at).total_seconds() <= LOCK_TIMEOUT_S + 2.5
    assert all(gap >= EVERY_S - 0.001 for gap in gaps_s(runs)), gaps_s(runs)
    assert len({run.batch_id for run in runs}) == len(runs)
