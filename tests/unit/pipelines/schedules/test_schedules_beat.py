"""The beat hooks of schedules: fire-time stamps, the beat-start sync, pipelines.app."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from redbeat.schedulers import RedBeatConfig
from structlog.testing import capture_logs

from pipelines.app import app
from pipelines.constants import FIRED_AT_HEADER
from pipelines.schedules.beat import BeatHooks, current_hooks, install_beat_hooks
from pipelines.schedules.spec import FIRE_TASK, build_spec
from pipelines.schedules.store import ScheduleStore
from pipelines.schedules.tasks import fired_at_of
from workers.settings import Settings, get_settings

NOW = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(redis_client: redis.Redis, redis_url: str) -> Iterator[ScheduleStore]:
    schedules = ScheduleStore(redis_client, Settings(redis_url=redis_url))
    yield schedules
    schedules.close()


@pytest.fixture
def hooks() -> BeatHooks:
    return BeatHooks(app, get_settings())


def stamp(hooks: BeatHooks, name: str = "tick") -> dict[str, str]:
    headers: dict[str, str] = {}
    hooks.stamp_fired_at(sender=FIRE_TASK, headers=headers, body=([name], {}, {}))
    return headers


def test_pipelines_app_registers_the_fire_task_and_redbeat() -> None:
    assert FIRE_TASK in app.tasks
    assert app.conf.beat_scheduler == "redbeat.RedBeatScheduler"
    assert app.conf.redbeat_lock_key == "producer:redbeat::lock"


def test_building_the_app_installs_its_hooks_once() -> None:
    hooks = current_hooks()
    assert hooks is not None
    from celery import signals

    uids = [key[0] for key, _ in signals.before_task_publish.receivers]
    assert uids.count("producer.schedules.stamp_fired_at") == 1
    again = install_beat_hooks(app, get_settings())
    assert current_hooks() is again
    assert [key[0] for key, _ in signals.before_task_publish.receivers] == uids


def test_fire_messages_outside_beat_are_stamped_with_now(hooks: BeatHooks) -> None:
    before = datetime.now(UTC)
    stamped = datetime.fromisoformat(stamp(hooks)[FIRED_AT_HEADER])
    assert before <= stamped <= datetime.now(UTC)
    other: dict[str, str] = {}
    hooks.stamp_fired_at(sender="producer.generate", headers=other, body=([], {}, {}))
    assert other == {}


def test_beat_stamps_its_fires_with_the_entry_last_run(
    store: ScheduleStore, hooks: BeatHooks, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put(build_spec(name="tick", pipeline="generate", csv="/p.csv", every=10), now=NOW)
    hooks.started = True
    monkeypatch.setitem(app.conf, "redbeat_redis_url", redis_url)
    monkeypatch.setattr(app, "redbeat_conf", RedBeatConfig(app), raising=False)
    monkeypatch.setattr(app, "redbeat_redis", None, raising=False)
    # Beat saved last_run_at just before publishing: that is the fire's time, exactly.
    assert stamp(hooks, "tick")[FIRED_AT_HEADER] == NOW.isoformat()
    # An entry that cannot be read falls back to the clock.
    assert datetime.fromisoformat(stamp(hooks, "gone")[FIRED_AT_HEADER]) > NOW + timedelta(days=1)
    connection = app.redbeat_redis
    if connection is not None:
        connection.close()


def test_the_worker_reads_the_stamp_from_the_request() -> None:
    request = SimpleNamespace(**{FIRED_AT_HEADER: NOW.isoformat()})
    assert fired_at_of(request) == NOW
    assert fired_at_of(SimpleNamespace()) > NOW


def test_beat_start_syncs_the_schedules_file(
    store: ScheduleStore, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(
        '[schedules.nightly]\npipeline = "generate"\ncsv = "p.csv"\ncron = "0 3 * * *"\n'
    )
    # The hooks read the settings the entry point was built with, not the environment.
    hooks = BeatHooks(app, Settings(redis_url=redis_url, schedules_file=str(path)))
    hooks.on_beat_start()
    assert hooks.started is True
    spec = store.get("nightly")
    assert spec is not None and spec.csv == str(tmp_path / "p.csv")

    path.write_text('[schedules.nightly]\npipeline = "generate"\ncsv = "p.csv"\n')
    with capture_logs() as logs:
        hooks.on_beat_start()  # an invalid file is logged, not raised
    (event,) = [e for e in logs if e["event"] == "schedules_file_invalid"]
    assert "got neither" in event["error"]
    assert store.get("nightly") == spec
