"""``producer-batch emulator``: run the local twin of the Producer API.

Every option maps onto one :class:`~producer_emulator.EmulatorConfig`
field; faults are given as ``--fault NAME=VALUE`` (any ``FaultConfig``
number, e.g. ``--fault api_error_500=0.05``) or as a whole JSON document
with ``--faults-json`` (which may carry ``rules``).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import ValidationError

from pipelines.cli._common import fail


def register(app: typer.Typer) -> None:
    """Add the ``emulator`` command to ``app``."""
    app.command("emulator")(emulator)


def emulator(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8787, help="Port to bind (0 picks a free one)."),
    token: list[str] = typer.Option(
        ["emulator-token"], "--token", help="Accepted bearer token (repeat for several)."
    ),
    time_scale: float = typer.Option(1.0, help="Multiplier on every wait (0.01: 100x faster)."),
    generation_s: float = typer.Option(40.0, help="Mean generation time, emulated seconds."),
    generation_jitter_s: float = typer.Option(10.0, help="Uniform +- spread of generation time."),
    submit_rate: float | None = typer.Option(
        None, help="Submit requests/s per token (unset: no cap)."
    ),
    submit_burst: int = typer.Option(10, help="Submit bucket size."),
    poll_rate: float | None = typer.Option(1.0, help="/tasks requests/s per token (0: no cap)."),
    poll_burst: int = typer.Option(3, help="Poll bucket size."),
    max_concurrency: int | None = typer.Option(
        5, help="Generations in flight per token (0: no cap)."
    ),
    retry_after: bool = typer.Option(
        False, help="Send Retry-After on 429 (the real API does not)."
    ),
    sample_rate: int = typer.Option(16000, help="Sample rate of served WAVs."),
    max_render_s: float | None = typer.Option(None, help="Cap on rendered audio length (s)."),
    seed: int | None = typer.Option(None, help="Seed for faults, jitter and songs."),
    fault: list[str] = typer.Option(
        [], "--fault", help="NAME=VALUE of a FaultConfig field, e.g. task_failure=0.1."
    ),
    faults_json: str | None = typer.Option(None, help="Whole FaultConfig as JSON (with rules)."),
) -> None:
    """Serve the Producer API emulator until interrupted (Ctrl-C)."""
    # Imported here so `producer-batch --help` does not load uvicorn and numpy.
    from producer_emulator import EmulatorConfig, serve
    from producer_emulator.config import config_problems

    faults = fault_settings(faults_json, fault)
    try:
        config = EmulatorConfig(
            tokens=token,
            time_scale=time_scale,
            generation_s=generation_s,
            generation_jitter_s=generation_jitter_s,
            submit_rate_per_s=submit_rate,
            submit_burst=submit_burst,
            poll_rate_per_s=poll_rate or None,
            poll_burst=poll_burst,
            max_concurrency=max_concurrency or None,
            send_retry_after=retry_after,
            sample_rate=sample_rate,
            max_render_s=max_render_s,
            seed=seed,
            faults=faults,
        )
    except ValidationError as exc:
        raise fail(f"invalid emulator settings: {config_problems(exc)}") from exc
    # Never the tokens themselves: compose runs this command and keeps its output in logs.
    count = len(config.tokens)
    typer.echo(f"Producer emulator on http://{host}:{port} ({count} token{'s' * (count != 1)})")
    serve(host=host, port=port, config=config)


def fault_settings(faults_json: str | None, pairs: list[str]) -> dict[str, Any]:
    """Merge ``--faults-json`` with ``--fault NAME=VALUE`` pairs (pairs win)."""
    settings: dict[str, Any] = {}
    if faults_json:
        try:
            parsed = json.loads(faults_json)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--faults-json") from exc
        if not isinstance(parsed, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--faults-json")
        settings = parsed
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--fault")
        try:
            settings[name.strip()] = json.loads(value)
        except ValueError as exc:
            raise typer.BadParameter(
                f"{name.strip()}: value {value!r} is not JSON", param_hint="--fault"
            ) from exc
    return settings
