"""Schedule specs: validation, the TOML file, cron times in a timezone, batch ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.schedules import crontab, schedule

from pipelines.schedules.spec import (
    ScheduleConfigError,
    ScheduleSpec,
    beat_schedule,
    build_spec,
    due_since,
    format_every,
    load_schedules,
    next_cron_time,
    parse_every,
    validate_pipelines,
)
from pipelines.schedules.tasks import batch_id_for

ROOT = Path(__file__).resolve().parents[4]


def spec(**values: Any) -> ScheduleSpec:
    base: dict[str, Any] = {"name": "nightly", "pipeline": "generate", "csv": "/data/p.csv"}
    return build_spec(**{**base, **values})


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (30, 30),
        ("30", 30),
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        (" 2 d ", 172800),
    ],
)
def test_every_accepts_seconds_and_units(given: int | str, seconds: int) -> None:
    assert parse_every(given) == seconds
    assert spec(every=given).every == seconds


@pytest.mark.parametrize(
    ("seconds", "text"), [(45, "45s"), (900, "15m"), (7200, "2h"), (86400, "1d"), (90, "90s")]
)
def test_format_every_uses_the_largest_whole_unit(seconds: int, text: str) -> None:
    assert format_every(seconds) == text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"cron": "0 3 * * *", "every": "1h"}, "exactly one of `cron` or `every` (got both)"),
        ({}, "exactly one of `cron` or `every` (got neither)"),
        ({"cron": "0 3 * *"}, "cron: '0 3 * *' has 4 fields"),
        ({"cron": "61 3 * * *"}, "cron: Invalid end range"),
        ({"cron": "0 0 30 2 *"}, "cron: Invalid crontab: day_of_month '30' never occurs"),
        ({"every": "2x"}, "every: '2x' is not an interval"),
        ({"every": 0}, "every: the interval must be at least 1 second"),
        ({"every": "1h", "timezone": "Europe/Paris"}, "`timezone` applies to `cron` only"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone: unknown timezone"),
        ({"cron": "0 3 * * *", "csv": "relative.csv"}, "csv: a local CSV path must be absolute"),
        ({"cron": "0 3 * * *", "csv": "ftp://host/p.csv"}, "csv: unsupported URL scheme 'ftp'"),
        ({"cron": "0 3 * * *", "max_spend": 0}, "max_spend: Input should be greater than 0"),
        ({"cron": "0 3 * * *", "crn": "x"}, "crn: Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_name_the_schedule_and_the_field(
    values: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ScheduleConfigError) as caught:
        spec(**values)
    assert str(caught.value).startswith("schedule 'nightly': ")
    assert expected in str(caught.value)


@pytest.mark.parametrize("name", ["has space", "a:b", "-dash", "x" * 49, ""])
def test_names_must_be_key_safe(name: str) -> None:
    with pytest.raises(ScheduleConfigError, match=f"schedule '{name}': name: use 1-48 letters"):
        spec(name=name, every=60)


def test_cron_is_normalised_and_described() -> None:
    assert spec(cron=" 0  3 * * mon-fri").cron == "0 3 * * mon-fri"
    assert spec(cron="0 3 * * *", timezone="Europe/Paris").when == "cron 0 3 * * * (Europe/Paris)"
    assert spec(every="15m").when == "every 15m"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return path


def test_load_reads_tables_and_resolves_local_csv_against_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[schedules.nightly]
pipeline = "generate"
csv = "prompts/nightly.csv"
cron = "0 3 * * *"
timezone = "Europe/Paris"
max_spend = 12.5

[schedules.often]
pipeline = "generate-cover"
csv = "s3://bucket/p.csv"
every = "15m"
skip_invalid = true
enabled = false
""",
    )
    nightly, often = load_schedules(path)
    assert nightly.csv == str(tmp_path / "prompts" / "nightly.csv")
    assert (nightly.cron, nightly.timezone, nightly.max_spend) == (
        "0 3 * * *",
        "Europe/Paris",
        12.5,
    )
    assert (often.csv, often.every, often.skip_invalid, often.enabled) == (
        "s3://bucket/p.csv",
        900,
        True,
        False,
    )


def test_load_reports_every_bad_schedule_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[schedules.a]
pipeline = "generate"
csv = "/p.csv"
cron = "0 3 * * *"
every = "1h"

[schedules.b]
pipeline = "generate"
csv = "/p.csv"
cron = "0 25 * * *"

[schedules.ok]
pipeline = "generate"
csv = "/p.csv"
every = 60
""",
    )
    with pytest.raises(ScheduleConfigError) as caught:
        load_schedules(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == "schedule 'a': set exactly one of `cron` or `every` (got both)"
    assert lines[1].startswith("schedule 'b': cron: Invalid end range")
    assert len(lines) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[schedules.a", "schedules.toml: "),
        ("[other]\nx = 1", "expected only [schedules.<name>] tables"),
        ("schedules = 3", "expected only [schedules.<name>] tables"),
        ("[schedules]\na = 3", "schedule 'a': expected a table"),
    ],
)
def test_load_refuses_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ScheduleConfigError, match=expected.replace("[", r"\[")):
        load_schedules(write(tmp_path, text))


def test_unknown_pipeline_is_named_with_the_known_ones() -> None:
    validate_pipelines([spec(every=60)])
    with pytest.raises(ScheduleConfigError) as caught:
        validate_pipelines([spec(every=60, pipeline="nope")])
    message = str(caught.value)
    assert message.startswith("schedule 'nightly': pipeline: unknown pipeline 'nope'")
    assert "generate-extend-stems" in message


def test_the_shipped_example_is_valid() -> None:
    specs = load_schedules(ROOT / "examples" / "schedules.toml")
    validate_pipelines(specs)
    assert specs[0].csv == str(ROOT / "examples" / "prompts.csv")
    assert Path(specs[0].csv).is_file()


def test_next_cron_time_follows_wall_time_across_daylight_saving() -> None:
    paris = spec(cron="30 3 * * *", timezone="Europe/Paris")
    before_dst = datetime(2025, 3, 29, 12, tzinfo=UTC)
    first = next_cron_time(paris, before_dst)
    second = next_cron_time(paris, first or before_dst)
    assert first == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert second == datetime(2025, 3, 31, 1, 30, tzinfo=UTC)
    winter = next_cron_time(paris, datetime(2025, 12, 1, tzinfo=UTC))
    assert winter == datetime(2025, 12, 1, 2, 30, tzinfo=UTC)  # 03:30 CET


def test_next_cron_time_honours_weekdays_months_and_strictly_after() -> None:
    weekly = spec(cron="0 9 * 6 mon")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert next_cron_time(weekly, start) == datetime(2025, 6, 2, 9, tzinfo=UTC)
    assert next_cron_time(weekly, datetime(2025, 6, 2, 9, tzinfo=UTC)) == datetime(
        2025, 6, 9, 9, tzinfo=UTC
    )


def test_due_since_is_true_only_when_a_slot_fell_in_between() -> None:
    paris = spec(cron="0 3 * * *", timezone="Europe/Paris")
    slot = datetime(2025, 7, 1, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert due_since(paris, slot - timedelta(hours=20), slot + timedelta(seconds=1))
    assert not due_since(paris, slot - timedelta(hours=20), slot - timedelta(hours=1))
    assert not due_since(paris, slot, slot + timedelta(hours=1))  # already ran
    assert due_since(spec(every=60), slot, slot)


def test_beat_schedule_is_native_in_utc_and_a_candidate_elsewhere() -> None:
    native = beat_schedule(spec(cron="15 3 * * 1"))
    assert isinstance(native, crontab)
    assert (native.minute, native.hour, native.day_of_week) == ({15}, {3}, {1})
    paris = beat_schedule(spec(cron="15 3 * * 1", timezone="Europe/Paris"))
    assert isinstance(paris, crontab)
    assert (paris.minute, len(paris.hour), len(paris.day_of_week)) == ({15}, 24, 7)
    # India is UTC+05:30: local minute 15 is minute 45 of some UTC hour.
    kolkata = beat_schedule(spec(cron="15 3 * * *", timezone="Asia/Kolkata"))
    assert isinstance(kolkata, crontab)
    assert kolkata.minute == {45}
    interval = beat_schedule(spec(every="2h"))
    assert isinstance(interval, schedule)
    assert interval.run_every == timedelta(hours=2)


def test_batch_ids_name_the_schedule_and_the_slot() -> None:
    fired = datetime(2025, 7, 1, 3, 0, 41, tzinfo=UTC)
    assert batch_id_for(spec(cron="0 3 * * *"), fired) == "s-nightly-202507010300"
    assert batch_id_for(spec(every=10), fired) == "s-nightly-20250701030040"
    # Two fires of one slot share an id; the next slot gets a new one.
    assert batch_id_for(spec(every=10), fired + timedelta(seconds=0.5)) == (
        "s-nightly-20250701030040"
    )
    assert batch_id_for(spec(every=10), fired + timedelta(seconds=10)) == (
        "s-nightly-20250701030050"
    )
