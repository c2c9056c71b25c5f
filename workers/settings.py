"""Settings read from the environment, once, at the edge.

Every variable has the ``PRODUCER_`` prefix except ``REDIS_URL``, which is the
name the rest of the Redis ecosystem uses. Build one :class:`Settings` with
:func:`get_settings` and pass it (or the values it holds) down; nothing below
this module reads ``os.environ``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_BASE_URL = "https://api.acedata.cloud"

# Margin between the hard task time limit and the broker's visibility timeout.
_TIME_LIMIT_MARGIN_S = 300
# With a short visibility timeout the margin would leave nothing: use this share of it.
_SHORT_TIME_LIMIT_SHARE = 0.8
# The share of the task time limit a collect's downloads may use by default: the rest is
# for the provider record, the metadata and the ledger.
_DOWNLOAD_SHARE_OF_TIME_LIMIT = 0.8


def task_time_limit_s(visibility_timeout_s: int) -> float:
    """Hard time limit of a task body: always positive and below the visibility timeout.

    The same as ``workers.app.time_limit_s`` (the Celery config), which this module
    cannot import (the app imports the settings); a test holds the two equal.
    """
    return max(
        visibility_timeout_s - _TIME_LIMIT_MARGIN_S, visibility_timeout_s * _SHORT_TIME_LIMIT_SHARE
    )


# An amount with an optional unit: "25", "25 USD", "$25", "250 credits" (spend caps).
SPEND_CAP_PATTERN = r"^\s*\$?\s*\d+(\.\d+)?\s*(usd|USD|credits?|CREDITS?)?\s*$"

DEFAULT_MAX_STEPS_PER_ROW = 20
"""Most paid calls one row of a pipeline may make (each repeated copy counted)."""


class Settings(BaseSettings):
    """All runtime configuration of workers, poller, receiver and CLI."""

    model_config = SettingsConfigDict(env_prefix="PRODUCER_", extra="ignore", populate_by_name=True)

    api_token: SecretStr | None = Field(
        default=None, description="Bearer token for the Producer API; unset means use the emulator."
    )
    base_url: str = Field(default=DEFAULT_BASE_URL, description="Producer API base URL.")
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "PRODUCER_REDIS_URL"),
        description="Redis for broker, results, ledger, limiter; unset: an embedded server.",
    )
    broker_url: str | None = Field(
        default=None, description="Optional separate Celery broker (e.g. amqp:// RabbitMQ)."
    )
    broker_queue: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description=(
            "Celery task queue name; unset: 'producer' on RabbitMQ (a quorum queue with a "
            "topic exchange of the same name), Celery's 'celery' list on Redis."
        ),
    )
    storage_url: str = Field(
        default="file://./producer-results",
        description="Where artifacts go: file://DIR, s3://BUCKET/PREFIX or memory://.",
    )
    s3_endpoint: str | None = Field(
        default=None, description="Endpoint of an S3-compatible store (MinIO, R2 ...)."
    )
    s3_copy_if_not_exists: str = Field(
        default="multipart",
        description=(
            "How the S3 store does create-only commits: 'multipart' (AWS S3, MinIO, moto) or "
            "'header:<NAME>:<VALUE>' (e.g. R2: 'header:cf-copy-destination-if-none-match:*')."
        ),
    )
    public_base_url: str | None = Field(
        default=None,
        description="Public URL of the callback receiver; unset means completion by polling only.",
    )
    callback_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key signing callback URLs; required with PRODUCER_PUBLIC_BASE_URL.",
    )
    submit_rate_per_s: float = Field(
        default=1.0, gt=0, description="Ceiling of submissions/s per token."
    )
    submit_burst: float = Field(
        default=5.0, ge=1, description="Token-bucket burst for submissions."
    )
    poll_rate_per_s: float = Field(
        default=1.0, gt=0, description="Polls/s per token (provider: <= 1)."
    )
    max_in_flight: int = Field(default=5, ge=1, description="Generations in flight per token.")
    task_deadline_s: float = Field(
        default=1800.0, gt=0, description="Give up on a provider task after this many seconds."
    )
    max_artifact_bytes: int = Field(
        default=1024 * 1024 * 1024, gt=0, description="Refuse artifacts larger than this."
    )
    http_timeout_s: float = Field(default=60.0, gt=0, description="Per-request HTTP timeout.")
    download_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated hosts (`host` or `host:port`) that artifact downloads may reach "
            "even though they resolve to a loopback, private or other internal address; "
            "everything else internal is refused. `run` and `demo` add their own emulator."
        ),
    )
    download_deadline_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Longest time all the downloads of one collect may take together; unset: 80 % "
            "of the task time limit (which follows the visibility timeout)."
        ),
    )
    download_min_bytes_per_s: float = Field(
        default=16 * 1024,
        ge=0,
        description="Drop a download slower than this over a throughput window; 0: no floor.",
    )
    download_throughput_window_s: float = Field(
        default=30.0, gt=0, description="Window over which the download throughput floor is judged."
    )
    visibility_timeout_s: int = Field(
        default=1800,
        ge=5,
        description=(
            "Redis broker visibility timeout: an unacknowledged message is redelivered after "
            "this long. Must exceed the longest task body (a collect streaming a large artifact); "
            "values under 600 are for tests that kill workers and want their messages back soon."
        ),
    )
    result_expires_s: int = Field(
        default=86400, gt=0, description="How long Celery task results are kept in Redis."
    )
    poll_first_after_s: float = Field(
        default=10.0, gt=0, description="First poll of a submitted task after this many seconds."
    )
    poll_max_interval_s: float = Field(
        default=30.0, gt=0, description="Longest gap between two polls of one running task."
    )
    poll_batch_size: int = Field(
        default=50, ge=1, le=500, description="Task ids asked about in one retrieve_batch call."
    )
    max_transient_retries: int = Field(
        default=8,
        ge=0,
        description="Retries of a step after 5xx/504/network errors before failing.",
    )
    schedules_file: str | None = Field(
        default=None,
        description=(
            "TOML file of scheduled batches; `producer-batch schedules sync` and every beat "
            "start make Redis match it."
        ),
    )
    beat_max_interval_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Longest sleep of celery beat between two looks at the schedule in Redis: a "
            "schedule added from the CLI is seen within this long."
        ),
    )
    beat_lock_timeout_s: int = Field(
        default=30,
        ge=2,
        description=(
            "Life of the one-active-beat lock unless its holder renews it (every loop): a "
            "standby beat takes over this long after the active one dies. Keep it several "
            "times beat_max_interval_s, or a slow loop loses the lock."
        ),
    )
    pipelines_file: Path | None = Field(
        default=None,
        description=(
            "TOML file of your own pipelines, added to (or overriding) the built-ins "
            "(pipelines/specs/pipelines.toml); the CLI's --pipelines wins over it."
        ),
    )
    max_steps_per_row: int = Field(
        default=DEFAULT_MAX_STEPS_PER_ROW,
        ge=1,
        description=(
            "Most paid calls one row of a pipeline may make (steps, each repeated copy "
            "counted); a pipeline over it is refused when its file is read."
        ),
    )
    prices_file: Path | None = Field(
        default=None,
        description=(
            "TOML file overriding the built-in price table (pipelines/spend/prices.toml): "
            "currency, usd_per_credit and [prices] per action."
        ),
    )
    global_spend_cap: str | None = Field(
        default=None,
        pattern=SPEND_CAP_PATTERN,
        description=(
            "Default cap on the fleet's total spend, e.g. '25 USD' or '250 credits' (a bare "
            "number is in the price table's currency); unset: no global cap. "
            "Changeable at runtime (SpendGuard.set_global_cap)."
        ),
    )
    log_json: bool | None = Field(
        default=None, description="JSON logs; default: JSON unless stderr is a terminal."
    )
    log_level: str = Field(default="INFO", description="Log level.")

    @field_validator("download_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        # The environment gives "a.example,127.0.0.1:8080"; code may pass a list.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def effective_download_deadline_s(self) -> float:
        """The collect's download deadline: the setting, or its default from the time limit."""
        if self.download_deadline_s is not None:
            return self.download_deadline_s
        return task_time_limit_s(self.visibility_timeout_s) * _DOWNLOAD_SHARE_OF_TIME_LIMIT


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment once."""
    return Settings()
