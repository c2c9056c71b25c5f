"""The beat wiring of schedules: fire-time stamps, the beat-start sync, pipelines.app."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from redbeat.schedulers import RedBeatConfig
from structlog.testing import capture_logs

import pipelines.schedule_tasks as schedule_tasks
from pipelines.app import app
from pipelines.schedule_tasks import FIRED_AT_HEADER, ScheduleStore, fired_at_of
from pipelines.schedules import FIRE_TASK, build_spec
from workers.settings import Settings, get_settings

NOW = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(redis_client: redis.Redis, redis_url: str) -> Iterator[ScheduleStore]:
    schedules = ScheduleStore(redis_client, Settings(redis_url=redis_url))
    yield schedules
    schedules.close()


def stamp(name: str = "tick") -> dict[str, str]:
    headers: dict[str, str] = {}
    schedule_tasks._stamp_fired_at(sender=FIRE_TASK, headers=headers, body=([name], {}, {}))
    return headers


def test_pipelines_app_registers_the_fire_task_and_redbeat() -> None:
    assert FIRE_TASK in app.tasks
    assert app.conf.beat_scheduler == "redbeat.RedBeatScheduler"
    assert app.conf.redbeat_lock_key == "producer:redbeat::lock"


def test_fire_messages_outside_beat_are_stamped_with_now() -> None:
    before = datetime.now(UTC)
    stamped = datetime.fromisoformat(stamp()[FIRED_AT_HEADER])
    assert before <= stamped <= datetime.now(UTC)
    other: dict[str, str] = {}
    schedule_tasks._stamp_fired_at(sender="producer.generate", headers=other, body=([], {}, {}))
    assert other == {}


def test_beat_stamps_its_fires_with_the_entry_last_run(
    store: ScheduleStore, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put(build_spec(name="tick", pipeline="generate", csv="/p.csv", every=10), now=NOW)
    monkeypatch.setitem(schedule_tasks._beat_process, "started", True)
    monkeypatch.setitem(app.conf, "redbeat_redis_url", redis_url)
    monkeypatch.setattr(app, "redbeat_conf", RedBeatConfig(app), raising=False)
    monkeypatch.setattr(app, "redbeat_redis", None, raising=False)
    # Beat saved last_run_at just before publishing: that is the fire's time, exactly.
    assert stamp("tick")[FIRED_AT_HEADER] == NOW.isoformat()
    # An entry that cannot be read falls back to the clock.
    assert datetime.fromisoformat(stamp("gone")[FIRED_AT_HEADER]) > NOW + timedelta(days=1)
    connection = app.redbeat_redis
    if connection is not None:
        connection.close()


def test_the_worker_reads_the_stamp_from_the_request() -> None:
    request = SimpleNamespace(**{FIRED_AT_HEADER: NOW.isoformat()})
    assert fired_at_of(request) == NOW
    assert fired_at_of(SimpleNamespace()) > NOW


def test_beat_start_syncs_the_schedules_file(
    store: ScheduleStore, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text('[schedules.nightly]\npipeline = "generate"\ncsv = "p.csv"\n'
                    'cron = "0 3 * * *"\n')
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PRODUCER_SCHEDULES_FILE", str(path))
    monkeypatch.setitem(schedule_tasks._beat_process, "started", False)
    get_settings.cache_clear()
    try:
        schedule_tasks._on_beat_start()
        assert schedule_tasks._beat_process["started"] is True
        spec = store.get("nightly")
        assert spec is not None and spec.csv == str(tmp_path / "p.csv")

        path.write_text('[schedules.nightly]\npipeline = "generate"\ncsv = "p.csv"\n')
        with capture_logs() as logs:
            schedule_tasks._on_beat_start()  # an invalid file is logged, not raised
        (event,) = [e for e in logs if e["event"] == "schedules_file_invalid"]
        assert "got neither" in event["error"]
        assert store.get("nightly") == spec
    finally:
        get_settings.cache_clear()
