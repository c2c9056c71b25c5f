"""ScheduleStore against real Redis: redbeat entries kept in step, sync, runs, fire."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from celery import Celery
from celery.schedules import crontab, schedule
from redbeat import RedBeatSchedulerEntry

from pipelines.batches.submit import BatchIdError, SubmitReport
from pipelines.constants import REDBEAT_LOCK_KEY
from pipelines.schedules.spec import FIRE_TASK, ScheduleSpec, beat_config, build_spec
from pipelines.schedules.store import ScheduleStore
from pipelines.schedules.tasks import fire_schedule
from pipelines.specs.canvas import RowError
from workers.settings import Settings

NOW = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


def spec(name: str = "nightly", **values: Any) -> ScheduleSpec:
    base: dict[str, Any] = {"pipeline": "generate", "csv": "/data/p.csv", "cron": "0 3 * * *"}
    base.update(values)
    if "every" in values:
        base.pop("cron")
    return build_spec(name=name, **base)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url)


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> Iterator[ScheduleStore]:
    schedules = ScheduleStore(redis_client, settings)
    yield schedules
    schedules.close()


@pytest.fixture
def foreign_app(settings: Settings) -> Iterator[Celery]:
    """Another component's beat app sharing our redbeat configuration."""
    app = Celery("foreign", set_as_current=False)
    app.conf.update(beat_config(settings))
    yield app
    app.close()


def test_beat_config_puts_redbeat_under_our_prefix(settings: Settings) -> None:
    conf = beat_config(settings)
    assert conf["redbeat_redis_url"] == settings.redis_url
    assert conf["redbeat_key_prefix"] == "producer:redbeat:"
    assert conf["redbeat_lock_key"] == REDBEAT_LOCK_KEY == "producer:redbeat::lock"
    assert conf["redbeat_lock_timeout"] == settings.beat_lock_timeout_s == 30
    assert conf["beat_max_loop_interval"] == settings.beat_max_interval_s == 5.0
    assert conf["beat_scheduler"] == "redbeat.RedBeatScheduler"


def test_put_creates_a_redbeat_entry_counting_from_now(
    store: ScheduleStore, redis_client: redis.Redis
) -> None:
    now = datetime.now(UTC)
    assert store.put(spec(), now=now) == "created"
    entry = store.entry("nightly")
    assert entry is not None
    assert (entry.name, entry.task, entry.args) == ("schedule:nightly", FIRE_TASK, ["nightly"])
    assert entry.key == "producer:redbeat:schedule:nightly"
    assert isinstance(entry.schedule, crontab)
    assert entry.last_run_at == now  # not "never run", which redbeat fires at once
    # Due at the next 03:00 UTC, not at once.
    score = redis_client.zscore("producer:redbeat::schedule", entry.key)
    next_3am = (now + timedelta(hours=21)).replace(hour=3, minute=0, second=0, microsecond=0)
    assert store.next_run(spec(), now) == next_3am
    assert score is not None and abs(score - next_3am.timestamp()) <= 1  # redbeat rounds
    assert store.get("nightly") == spec()
    state = store.state("nightly")
    assert state is not None and state.armed_at == now and state.last_run is None


def test_put_updates_the_trigger_and_keeps_the_last_run(store: ScheduleStore) -> None:
    store.put(spec(), now=NOW)
    assert store.put(spec(), now=NOW + timedelta(days=1)) == "unchanged"
    later = NOW + timedelta(days=2)
    assert store.put(spec(every="1h"), now=later) == "updated"
    entry = store.entry("nightly")
    assert entry is not None and isinstance(entry.schedule, schedule)
    assert entry.schedule.run_every == timedelta(hours=1)
    assert entry.options == {"expires": 3600}
    assert entry.last_run_at == NOW
    assert store.put(spec(every="1h", csv="/data/other.csv"), now=later) == "updated"
    assert store.get("nightly") == spec(every="1h", csv="/data/other.csv")
    state = store.state("nightly")
    assert state is not None and state.armed_at == NOW


def test_disabled_schedules_have_no_entry_and_restart_from_now(store: ScheduleStore) -> None:
    store.put(spec(every=60), now=NOW)
    store.put(spec(every=60, enabled=False), now=NOW)
    assert store.entry("nightly") is None
    assert store.next_run(spec(every=60, enabled=False)) is None
    back = datetime.now(UTC)
    store.put(spec(every=60), now=back)
    entry = store.entry("nightly")
    assert entry is not None and entry.last_run_at == back
    assert store.next_run(spec(every=60)) == back + timedelta(seconds=60)


def test_remove_deletes_spec_entry_and_runs(
    store: ScheduleStore, redis_client: redis.Redis
) -> None:
    store.put(spec(), now=NOW)
    assert store.remove("nightly") is True
    assert store.remove("nightly") is False
    assert store.get("nightly") is None and store.entry("nightly") is None
    assert redis_client.zcard("producer:redbeat::schedule") == 0
    assert not list(redis_client.scan_iter("producer:schedule*"))


def test_sync_creates_updates_removes_and_leaves_foreign_entries(
    store: ScheduleStore, foreign_app: Celery, redis_client: redis.Redis
) -> None:
    foreign = RedBeatSchedulerEntry(
        name="cleanup", task="other.cleanup", schedule=schedule(run_every=60), app=foreign_app
    )
    foreign.save()
    redis_client.set("producer:schedule-notes", "not ours either")
    store.put(spec("keep"), now=NOW)
    store.put(spec("change"), now=NOW)
    store.put(spec("drop"), now=NOW)
    # An entry of ours whose spec is gone (e.g. a crash between two writes).
    orphan = RedBeatSchedulerEntry(
        name="schedule:orphan",
        task=FIRE_TASK,
        args=["orphan"],
        schedule=schedule(run_every=60),
        app=foreign_app,
    )
    orphan.save()

    report = store.sync([spec("keep"), spec("change", every="1h"), spec("new")], now=NOW)

    assert (report.created, report.updated, report.unchanged, report.removed) == (
        ["new"],
        ["change"],
        ["keep"],
        ["drop", "orphan"],
    )
    assert [s.name for s in store.specs()] == ["change", "keep", "new"]
    assert store.owned_entry_names() == {"change", "keep", "new"}
    assert RedBeatSchedulerEntry.from_key(foreign.key, app=foreign_app).task == "other.cleanup"
    assert redis_client.get("producer:schedule-notes") == b"not ours either"
    again = store.sync([spec("keep"), spec("change", every="1h"), spec("new")], now=NOW)
    assert again.unchanged == ["change", "keep", "new"] and not again.removed


def test_next_run_of_a_cron_is_in_its_timezone(store: ScheduleStore) -> None:
    paris = spec(timezone="Europe/Paris")
    store.put(paris, now=NOW)
    assert store.next_run(paris, NOW) == datetime(2025, 7, 2, 1, tzinfo=UTC)  # 03:00 CEST


@dataclass
class StubSubmitter:
    """Stands in for submit_batch: remembers batch ids, resumes a known one."""

    seen: list[str] = field(default_factory=list)
    fail: Exception | None = None

    def __call__(self, spec: ScheduleSpec, batch_id: str) -> SubmitReport:
        if self.fail is not None:
            raise self.fail
        resumed = batch_id in self.seen
        self.seen.append(batch_id)
        return SubmitReport(batch_id, accepted=2, rejected=0, errors=[], resumed=resumed)


def test_fire_submits_a_batch_named_by_the_slot_and_records_it(store: ScheduleStore) -> None:
    store.put(spec(every=10), now=NOW)
    submit = StubSubmitter()
    fired = NOW + timedelta(seconds=10.2)
    run = fire_schedule(store, "nightly", fired_at=fired, submit=submit)
    assert run is not None
    assert (run.batch_id, run.status, run.accepted, run.origin) == (
        "s-nightly-20250701120010",
        "submitted",
        2,
        "beat",
    )
    duplicate = fire_schedule(
        store, "nightly", fired_at=fired + timedelta(seconds=0.3), submit=submit
    )
    assert duplicate is not None and duplicate.status == "resumed"
    assert submit.seen == ["s-nightly-20250701120010"] * 2
    state = store.state("nightly")
    assert state is not None and state.last_run == duplicate
    assert store.runs("nightly") == [duplicate, run]


def test_an_exception_is_one_failed_run(store: ScheduleStore) -> None:
    store.put(spec(every=10), now=NOW)
    submit = StubSubmitter(fail=BatchIdError("batch id used by another pipeline"))
    run = fire_schedule(store, "nightly", fired_at=NOW, submit=submit)
    assert run is not None and run.status == "failed"
    assert run.errors == ["BatchIdError: batch id used by another pipeline"]
    assert store.runs("nightly") == [run]


def test_a_refused_csv_is_one_failed_run_with_the_report(store: ScheduleStore) -> None:
    store.put(spec(every=10), now=NOW)

    def refuse(spec: ScheduleSpec, batch_id: str) -> SubmitReport:
        errors = [RowError(row, "prompt", "field required") for row in range(1, 31)]
        return SubmitReport(
            batch_id,
            accepted=0,
            rejected=30,
            errors=errors,
            resumed=False,
            refused="30 invalid row(s); fix them or pass --skip-invalid",
        )

    run = fire_schedule(store, "nightly", fired_at=NOW, submit=refuse)
    assert run is not None and (run.status, run.rejected, len(run.errors)) == ("failed", 30, 21)
    assert run.errors[:2] == [
        "30 invalid row(s); fix them or pass --skip-invalid",
        "row 1, prompt: field required",
    ]


def test_cron_fires_run_only_when_a_local_slot_fell(store: ScheduleStore) -> None:
    paris = spec(timezone="Europe/Paris")
    store.put(paris, now=NOW)  # 14:00 CEST
    submit = StubSubmitter()
    # The UTC candidate crontab fires hourly; only the one after 03:00 Paris runs.
    early = datetime(2025, 7, 2, 0, 0, 1, tzinfo=UTC)
    on_time = datetime(2025, 7, 2, 1, 0, 1, tzinfo=UTC)
    assert fire_schedule(store, "nightly", fired_at=early, submit=submit) is None
    run = fire_schedule(store, "nightly", fired_at=on_time, submit=submit)
    assert run is not None and run.batch_id == "s-nightly-202507020100"
    # A second fire for the same slot (a duplicate) finds it already run.
    assert fire_schedule(store, "nightly", fired_at=on_time, submit=submit) is None
    assert submit.seen == ["s-nightly-202507020100"]


def test_run_now_ignores_the_slot_and_missing_schedules_fire_nothing(
    store: ScheduleStore,
) -> None:
    store.put(spec(), now=NOW)
    submit = StubSubmitter()
    run = fire_schedule(store, "nightly", fired_at=NOW, submit=submit, origin="run-now")
    assert run is not None and run.origin == "run-now"
    assert fire_schedule(store, "gone", fired_at=NOW, submit=submit) is None
    store.put(spec(every=10, enabled=False), now=NOW)
    assert fire_schedule(store, "nightly", fired_at=NOW, submit=submit) is None
