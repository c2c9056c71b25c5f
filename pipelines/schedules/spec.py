"""Scheduled batches: what a schedule is, its file, and its times.

A :class:`ScheduleSpec` runs pipeline P on CSV C (a local path or a storage URL) on a
5-field cron expression (in a timezone) or an interval. Specs come from a TOML file
(:func:`load_schedules`, ``[schedules.<name>]`` tables) or from ``producer-batch
schedules add``; every error names the schedule and the field. Keeping them in Redis
beside their celery-redbeat entries is :mod:`pipelines.schedules.store`, the fire task
:mod:`pipelines.schedules.tasks`.

Timezones: redbeat stores a crontab without its zone and beat evaluates it in UTC.
A cron in another zone is therefore registered as a UTC *candidate* crontab
(:func:`beat_schedule`) that fires at every minute the local expression could mean
(any hour, any day), and the fire task runs the batch only when a local slot fell
since the last run (:func:`due_since`). Daylight-saving changes are thus followed
exactly; a wall time skipped by a spring-forward runs at the shifted instant.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import crontab, schedule
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.constants import REDBEAT_KEY_PREFIX, REDBEAT_LOCK_KEY
from workers.settings import DEFAULT_MAX_STEPS_PER_ROW, Settings

FIRE_TASK = "producer.schedule.fire"
# Key-safe: it becomes part of Redis keys and batch ids.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
_EVERY = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_EVERY_S = 366 * 86400
"""Longest interval: a year (a larger one overflows Celery's timedelta arithmetic)."""
# A cron slot further away than this is treated as "never" (e.g. Feb 29 on a Monday).
_CRON_HORIZON = timedelta(days=366 * 30)
# Storage URLs (the CSV is read from the configured artifact store) and file://.
_URL_SCHEMES = ("file", "s3", "memory")


class ScheduleConfigError(ValueError):
    """A schedule file or schedule is invalid; the message names schedule and field."""


def parse_every(value: int | float | str) -> int:
    """Seconds of an interval given as seconds or ``"90s"``, ``"15m"``, ``"1h"``, ``"1d"``.

    Bounded to 1 second .. :data:`MAX_EVERY_S`, so nothing downstream overflows.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        # int(float) raises on inf/NaN; compare as given so 1e300 never becomes a huge int.
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a number of seconds")
        if value > MAX_EVERY_S:
            raise ValueError(_too_long(value))
        seconds = int(value)
    else:
        match = _EVERY.match(str(value))
        if match is None:
            raise ValueError(
                f"{_shown(value)} is not an interval (e.g. 30, '90s', '15m', '1h', '1d')"
            )
        digits, unit = match.groups()
        # Huge digit strings are refused by length first (int() of them is costly).
        if len(digits.lstrip("0")) > 12 or int(digits) * _UNIT_S[unit] > MAX_EVERY_S:
            raise ValueError(_too_long(value))
        seconds = int(digits) * _UNIT_S[unit]
    if seconds < 1:
        raise ValueError("the interval must be at least 1 second")
    return seconds


def _too_long(value: object) -> str:
    return (
        f"{_shown(value)} is longer than the longest interval, {format_every(MAX_EVERY_S)} (a year)"
    )


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut short: a message must not echo a megabyte of input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_every(seconds: int) -> str:
    """``3600`` -> ``"1h"``: the largest unit that divides the interval."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


def parse_cron(expression: str) -> crontab:
    """A 5-field crontab (minute hour day-of-month month day-of-week) as Celery's crontab."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} has {len(fields)} fields, a crontab has 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    minute, hour, day_of_month, month, day_of_week = fields
    return crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month,
        day_of_week=day_of_week,
    )


class ScheduleSpec(BaseModel):
    """One scheduled batch: ``pipeline`` on ``csv`` at ``cron`` (in ``timezone``) or ``every``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Key-safe name, part of batch ids.")
    pipeline: str = Field(min_length=1, description="Pipeline name (pipelines/specs/spec.py).")
    csv: str = Field(min_length=1, description="CSV of rows: an absolute path or storage URL.")
    cron: str | None = Field(default=None, description="5-field crontab expression.")
    every: int | None = Field(default=None, description="Interval in seconds.")
    enabled: bool = True
    skip_invalid: bool = False
    # allow_inf_nan: NaN is "not a finite number", not "should be greater than 0".
    max_spend: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    timezone: str = "UTC"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if re.match(NAME_PATTERN, value) is None:
            raise ValueError(
                "use 1-48 letters, digits, '-' or '_', starting with a letter or "
                "digit (the name goes into Redis keys and batch ids)"
            )
        return value

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> int | None:
        return None if value is None else parse_every(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_cron(value)
        return " ".join(value.split())

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (use an IANA name)") from None
        return value

    @field_validator("csv")
    @classmethod
    def _csv(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else None
        if scheme is not None and scheme not in _URL_SCHEMES:
            raise ValueError(f"unsupported URL scheme {scheme!r} (use {', '.join(_URL_SCHEMES)})")
        if scheme is None and not value.startswith("/"):
            raise ValueError("a local CSV path must be absolute (resolve it first)")
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            given = "both" if self.cron is not None else "neither"
            raise ValueError(f"set exactly one of `cron` or `every` (got {given})")
        if self.every is not None and self.timezone != "UTC":
            raise ValueError("`timezone` applies to `cron` only; an interval needs none")
        if self.cron is not None and next_cron_time(self, datetime.now(UTC)) is None:
            raise ValueError(f"`cron` {self.cron!r} never fires")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's timezone."""
        return ZoneInfo(self.timezone)

    @property
    def when(self) -> str:
        """Human form of the trigger: ``cron 0 3 * * * (UTC)`` or ``every 1h``."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        assert self.every is not None
        return f"every {format_every(self.every)}"


def resolve_csv(csv: str, base: Path) -> str:
    """A storage URL unchanged; a local path made absolute against ``base``."""
    if "://" in csv:
        return csv
    return str((base / Path(csv).expanduser()).resolve())


def next_cron_time(spec: ScheduleSpec, after: datetime) -> datetime | None:
    """The first cron slot strictly after ``after`` (UTC), in the spec's zone's wall time."""
    assert spec.cron is not None
    cron, zone = parse_cron(spec.cron), spec.zone
    wall = after.astimezone(zone).replace(second=0, microsecond=0, tzinfo=None)
    wall += timedelta(minutes=1)
    limit = wall + _CRON_HORIZON
    while wall < limit:
        skip = _cron_skip(cron, wall)
        if skip is not None:
            wall = skip
            continue
        instant = wall.replace(tzinfo=zone).astimezone(UTC)
        if instant > after:  # a repeated wall time (DST fold) may lie before ``after``
            return instant
        wall += timedelta(minutes=1)
    return None


def _cron_skip(cron: crontab, wall: datetime) -> datetime | None:
    """None when ``wall`` matches; else the next wall time worth trying (skips whole units)."""
    if wall.month not in cron.month_of_year:
        first = wall.replace(day=1, hour=0, minute=0)
        return (first + timedelta(days=32)).replace(day=1)
    # Celery numbers weekdays 0 (Sunday) to 6; isoweekday() says 7 for Sunday.
    if wall.day not in cron.day_of_month or wall.isoweekday() % 7 not in cron.day_of_week:
        return wall.replace(hour=0, minute=0) + timedelta(days=1)
    if wall.hour not in cron.hour:
        return wall.replace(minute=0) + timedelta(hours=1)
    if wall.minute not in cron.minute:
        return wall + timedelta(minutes=1)
    return None


def due_since(spec: ScheduleSpec, since: datetime, fired_at: datetime) -> bool:
    """True when a cron slot of ``spec`` lies in ``(since, fired_at]``; intervals always."""
    if spec.cron is None:
        return True
    slot = next_cron_time(spec, since)
    return slot is not None and slot <= fired_at


def beat_schedule(spec: ScheduleSpec) -> crontab | schedule:
    """What redbeat stores: the interval, or the UTC (candidate) crontab of the cron."""
    if spec.every is not None:
        return schedule(run_every=timedelta(seconds=spec.every))
    assert spec.cron is not None
    cron = parse_cron(spec.cron)
    if spec.timezone == "UTC":
        return cron
    # Any hour and day may be a local slot; only the minute survives the zone's offsets.
    minutes = sorted({(m - offset) % 60 for m in cron.minute for offset in _offsets_min(spec.zone)})
    return crontab(minute=",".join(map(str, minutes)))


def _offsets_min(zone: ZoneInfo) -> set[int]:
    """UTC offsets (minutes) the zone uses over the next two years."""
    start = datetime.now(UTC)
    instants = (start + timedelta(days=7 * week) for week in range(105))
    offsets = (t.astimezone(zone).utcoffset() for t in instants)
    return {int(o.total_seconds() // 60) for o in offsets if o is not None}


def beat_config(settings: Settings) -> dict[str, Any]:
    """Celery configuration of celery beat with redbeat (the one place it is set).

    The lock: redbeat takes ``producer:redbeat::lock`` at beat start and renews it on
    every loop (at most ``beat_max_interval_s`` apart) for ``beat_lock_timeout_s``. A
    second beat blocks at start until the lock is free: released at once by a beat
    that stops cleanly, or expired ``beat_lock_timeout_s`` after one that died.
    """
    return {
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "beat_max_loop_interval": settings.beat_max_interval_s,
        "redbeat_redis_url": settings.redis_url,
        # Explicit, so redbeat does not borrow the broker's transport options.
        "redbeat_redis_options": {},
        "redbeat_key_prefix": REDBEAT_KEY_PREFIX,
        "redbeat_lock_key": REDBEAT_LOCK_KEY,
        "redbeat_lock_timeout": settings.beat_lock_timeout_s,
    }


def load_schedules(path: Path) -> list[ScheduleSpec]:
    """Read ``[schedules.<name>]`` tables from a TOML file; every error names its schedule."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScheduleConfigError(f"{path}: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ScheduleConfigError(
            f"{path}: invalid TOML: arrays or tables nest too deeply"
        ) from None
    extra = sorted(set(data) - {"schedules"})
    tables = data.get("schedules", {})
    if extra or not isinstance(tables, dict):
        raise ScheduleConfigError(f"{path}: expected only [schedules.<name>] tables")
    specs, errors = [], []
    for name, table in tables.items():
        try:
            specs.append(_spec_from_table(name, table, path.parent))
        except ScheduleConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ScheduleConfigError("\n".join(errors))
    return specs


def _spec_from_table(name: str, table: Any, base: Path) -> ScheduleSpec:
    if not isinstance(table, dict):
        raise ScheduleConfigError(f"schedule {name!r}: expected a table")
    values = dict(table)
    if isinstance(values.get("csv"), str):
        values["csv"] = resolve_csv(values["csv"], base)
    return build_spec(name=name, **values)


def build_spec(**values: Any) -> ScheduleSpec:
    """Validate ``values`` into a spec; errors become one :class:`ScheduleConfigError`."""
    try:
        return ScheduleSpec(**values)
    except ValidationError as exc:
        name = values.get("name")
        lines = [_error_line(name, err) for err in exc.errors()]
        raise ScheduleConfigError("\n".join(lines)) from None


def _error_line(name: object, error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"schedule {name!r}: {where}: {message}" if where else f"schedule {name!r}: {message}"


def validate_pipelines(
    specs: Iterable[ScheduleSpec],
    path: Path | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS_PER_ROW,
) -> None:
    """Check every spec names a known pipeline (the built-ins plus the user's file ``path``)."""
    from pipelines.specs.loader import load_pipelines
    from pipelines.specs.spec import PipelineSpecError, UnknownPipelineError

    try:
        known = load_pipelines(path, max_steps=max_steps)
    except PipelineSpecError as exc:
        raise ScheduleConfigError(f"pipelines: {exc}") from None
    errors = [
        f"schedule {spec.name!r}: pipeline: {UnknownPipelineError(spec.pipeline, sorted(known))}"
        for spec in specs
        if spec.pipeline not in known
    ]
    if errors:
        raise ScheduleConfigError("\n".join(errors))
