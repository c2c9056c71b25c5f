"""``producer-batch limits ...``: read and change the fleet's rate limits at runtime.

Limits live in Redis (``REDIS_URL``), so a change here reaches every worker on
its next admission; nothing restarts. The token is named by its id (a sha256
prefix of ``PRODUCER_API_TOKEN``, or ``--token-id``); the token itself is never
printed.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.cli._common import fail, redis_client, settings
from workers.ratelimit import (
    BucketStatus,
    EndpointClass,
    Limiter,
    LimiterDefaults,
    LimitStatus,
    RedisBackend,
    token_id_for,
)
from workers.settings import Settings

limits_app = typer.Typer(
    name="limits",
    help="Show and change the shared rate limits (per API token) at runtime.",
    no_args_is_help=True,
)

TokenIdOption = Annotated[
    str | None,
    typer.Option("--token-id", help="Token id to act on (default: from PRODUCER_API_TOKEN)."),
]


def register(app: typer.Typer) -> None:
    """Add the ``limits`` command family to ``app``."""
    app.add_typer(limits_app, name="limits")


def _resolve_token_id(config: Settings, token_id: str | None) -> str:
    if token_id:
        return token_id
    if config.api_token is None:
        raise fail("set PRODUCER_API_TOKEN or pass --token-id")
    return token_id_for(config.api_token.get_secret_value())


def _limiter(config: Settings) -> Limiter:
    client = redis_client(config, "REDIS_URL is not set: limits live in the fleet's Redis")
    return Limiter(RedisBackend(client), defaults=LimiterDefaults.from_settings(config))


HEADERS = ("class", "ceiling", "rate", "burst", "tokens", "paused", "429s", "ok/s", "runtime")
"""Columns: ceiling = configured max, rate = learned, 429s = rate cuts, ok/s = accepted,
runtime = fields set with ``limits set``."""


def _bucket_row(status: BucketStatus) -> list[str]:
    paused = f"{status.paused_for_s:.1f}s" if status.paused_for_s > 0 else "-"
    return [
        status.endpoint.value,
        f"{status.ceiling:g}",
        f"{status.rate:.3g}",
        f"{status.burst:g}",
        f"{status.tokens:.2f}",
        paused,
        str(status.throttles),
        f"{status.accepted_per_s:.3g}",
        " ".join(name for name in status.overrides if name != "max_in_flight") or "-",
    ]


def _print_status(status: LimitStatus, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(status.to_dict(), default=str, indent=2))
        return
    table = Table(title=f"limits of token {status.token_id} (rates per second)")
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "class" else "right", overflow="fold")
    for endpoint in EndpointClass:
        table.add_row(*_bucket_row(status.bucket(endpoint)))
    console = Console()
    console.print(table)
    source = "set at runtime" if status.max_in_flight_overridden else "from settings"
    console.print(f"in flight: {status.in_flight} / {status.max_in_flight} ({source})")


@limits_app.command("show")
def show(
    token_id: TokenIdOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Current rate (learned), ceiling, burst, tokens, pause and in-flight count."""
    config = settings()
    tid = _resolve_token_id(config, token_id)
    _print_status(_limiter(config).show(tid), as_json)


@limits_app.command("set")
def set_limits(
    token_id: TokenIdOption = None,
    submit_rate: Annotated[float | None, typer.Option(help="Submission ceiling, calls/s.")] = None,
    burst: Annotated[float | None, typer.Option(help="Submission burst, calls.")] = None,
    rate: Annotated[float | None, typer.Option(help="Learned submission rate, calls/s.")] = None,
    poll_rate: Annotated[float | None, typer.Option(help="Poll ceiling, polls/s.")] = None,
    poll_burst: Annotated[float | None, typer.Option(help="Poll burst, polls.")] = None,
    max_in_flight: Annotated[
        int | None, typer.Option(min=1, help="Generations in flight per token.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Change limits for every worker at once; prints the limits in force afterwards."""
    config = settings()
    tid = _resolve_token_id(config, token_id)
    limiter = _limiter(config)
    if any(v is not None and v <= 0 for v in (submit_rate, burst, rate, poll_rate, poll_burst)):
        raise fail("rates and bursts must be positive")
    if submit_rate is not None or burst is not None or rate is not None:
        limiter.set_limits(tid, EndpointClass.SUBMIT, ceiling=submit_rate, burst=burst, rate=rate)
    if poll_rate is not None or poll_burst is not None:
        limiter.set_limits(tid, EndpointClass.POLL, ceiling=poll_rate, burst=poll_burst)
    if max_in_flight is not None:
        limiter.set_max_in_flight(tid, max_in_flight)
    _print_status(limiter.show(tid), as_json)


@limits_app.command("reset")
def reset(token_id: TokenIdOption = None) -> None:
    """Forget runtime changes and the learned rate: the settings apply again."""
    config = settings()
    tid = _resolve_token_id(config, token_id)
    limiter = _limiter(config)
    limiter.reset(tid)
    _print_status(limiter.show(tid), as_json=False)
