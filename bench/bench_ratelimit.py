"""Benchmark of the fleet-wide adaptive limiter against the emulator, with Celery's as baseline.

Run from the repository root::

    python -m bench.bench_ratelimit            # ~2.5 min
    python -m bench.bench_ratelimit --quick    # ~1.5 min

Self-contained: Redis from ``REDIS_URL`` (else an embedded server), the emulator
in this process, N worker processes sharing one API token. One continuous run:

1. **fidelity** -- our limit equals the emulator's (rate; our burst one under
   its burst, the documented headroom): achieved rate, busiest 1-s window, 429s;
2. **adaptation** -- the emulator halves its limit, unannounced: how soon 429s
   fall to <= 1 %, where the learned rate settles;
3. **recovery** -- the emulator restores its limit: how soon throughput is back;

then the **cost** of one admission (p50/p99; isolated and under the run's load)
and the **baseline**: N Celery worker instances with ``rate_limit`` at the same
nominal limit each, side by side with ours.

Time scale: the emulator's limits are wall-clock, so the bench runs at a
higher rate than production and divides the limiter's durations (recovery,
backoff, window) and the 60 s adaptation budget by ``--scale`` (default 5).
Figures print as a table and go to ``bench/results/ratelimit.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from bench import ratelimit_figures as fig
from bench.ratelimit_fleet import PATH, FleetResult, FleetSpec, run_fleet
from producer_emulator import EmulatorConfig, EmulatorServer
from workers.embedded_redis import url_or_embedded
from workers.ratelimit import Limiter, LimiterDefaults, Limits, RedisBackend, Tuning, token_id_for
from workers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 60.0
"""Production seconds allowed for 429s to fall to <= 1 % after the provider halves."""


@dataclass(frozen=True)
class Plan:
    """Durations (wall seconds) and sizes of one benchmark run."""

    rate: float = 20.0
    burst: int = 10
    processes: int = 8
    scale: float = 5.0
    fidelity_s: float = 20.0
    halved_s: float = 40.0
    restored_s: float = 30.0
    celery_s: float = 10.0

    @classmethod
    def quick(cls, **changes: Any) -> Plan:
        """A shorter run with the same shape."""
        return cls(fidelity_s=8, halved_s=20, restored_s=15, celery_s=6, **changes)


@dataclass
class Marks:
    """Wall times of the run's phase changes."""

    start: float = 0.0
    halved: float = 0.0
    restored: float = 0.0
    end: float = 0.0


def run_ours(
    plan: Plan, redis_url: str, emu: EmulatorServer, token: str
) -> tuple[FleetResult, Marks]:
    """Fidelity, then halve, then restore, in one run of the fleet."""
    marks = Marks()
    spec = FleetSpec(
        redis_url=redis_url,
        emulator_url=emu.url,
        api_token=token,
        token_id=token_id_for(token),
        limits=Limits(ceiling=plan.rate, burst=plan.burst - 1),
        tuning=Tuning().scaled(plan.scale),
        duration_s=plan.fidelity_s + plan.halved_s + plan.restored_s,
    )

    def schedule(elapsed: float) -> None:
        if not marks.halved and elapsed >= plan.fidelity_s:
            emu.configure(submit_rate_per_s=plan.rate / 2)
            marks.halved = time.time()
        if not marks.restored and elapsed >= plan.fidelity_s + plan.halved_s:
            emu.configure(submit_rate_per_s=plan.rate)
            marks.restored = time.time()

    result = run_fleet(spec, plan.processes, on_tick=schedule)
    marks.start, marks.end = result.start, result.start + spec.duration_s
    return result, marks


def isolated_latency(redis_url: str, calls: int = 3000) -> list[float]:
    """Admission latency of one caller on an idle bucket that always grants."""
    limiter = Limiter(
        RedisBackend(redis.Redis.from_url(redis_url)),
        defaults=LimiterDefaults(submit=Limits(ceiling=1e6, burst=1e6)),
    )
    tid = f"bench-latency-{uuid.uuid4().hex[:8]}"
    limiter.acquire(tid)
    durations = []
    for _ in range(calls):
        t0 = time.perf_counter()
        limiter.acquire(tid)
        durations.append(time.perf_counter() - t0)
    return durations


def run_celery(plan: Plan, redis_url: str, emu: EmulatorServer, token: str) -> tuple[float, float]:
    """N Celery workers with ``rate_limit`` = our limit each; returns the measured window."""
    queue = f"bench-ratelimit-{uuid.uuid4().hex[:8]}"
    env = {
        "BENCH_BROKER_URL": redis_url,
        "BENCH_QUEUE": queue,
        "BENCH_TOKEN": token,
        "BENCH_EMULATOR_URL": emu.url,
        "BENCH_RATE_LIMIT": f"{plan.rate:g}/s",
    }
    os.environ.update(env)
    from bench import ratelimit_celery as rc  # reads BENCH_* at import

    rc.celery_app.conf.broker_url = redis_url
    backlog = int(plan.processes * plan.rate * (plan.celery_s + 20))
    rc.publish(rc.celery_app, backlog, queue)
    workers = rc.start_workers(plan.processes, env, ROOT)
    try:
        rc.wait_ready(rc.celery_app, plan.processes)
        t0 = time.time() + 1.0  # let every worker reach its pace
        time.sleep(1.0 + plan.celery_s)
    finally:
        rc.stop_workers(workers, rc.celery_app, queue)
    return t0, t0 + plan.celery_s


def side(items: list[fig.Arrival], t0: float, t1: float) -> dict[str, float]:
    """Attempts/s, accepted/s, 429 share and busiest 1-s window over [t0, t1)."""
    window = fig.between(items, t0, t1)
    return {
        "attempts_per_s": fig.attempt_rate(items, t0, t1),
        "ok_per_s": fig.ok_rate(items, t0, t1),
        "throttled_share": fig.throttled_fraction(items, t0, t1),
        "max_1s_window": fig.max_window(window),
    }


def figures(
    plan: Plan,
    ours: FleetResult,
    marks: Marks,
    log: list[dict[str, Any]],
    isolated: list[float],
    celery_window: tuple[float, float],
) -> dict[str, Any]:
    """Every number the report prints, as plain data."""
    items = fig.arrivals(log, PATH)
    first = fig.between(items, marks.start, marks.halved)
    half, budget = plan.rate / 2, BUDGET_S / plan.scale
    after = marks.halved + budget
    settle = fig.settle_time(items, marks.halved, marks.restored)
    recovery = fig.recovery_time(items, marks.restored, marks.end, plan.rate)
    return {
        "plan": asdict(plan),
        "fidelity": {
            "achieved_per_s": fig.ok_rate(items, marks.start + 2, marks.halved),
            "max_1s_window": fig.max_window(first),
            "throttled": sum(a.status == 429 for a in first),
        },
        "adaptation": {
            "settle_s": settle,
            "settle_scaled_s": settle * plan.scale,
            "throttled_share_after_budget": fig.throttled_fraction(items, after, marks.restored),
            "learned_rate_after_budget": fig.mean_sample(ours.samples, after, marks.restored),
            "ok_per_s_after_budget": fig.ok_rate(items, after, marks.restored),
            "new_limit": half,
        },
        "recovery": {
            "time_to_90pct_s": recovery,
            "ok_per_s_last_5s": fig.ok_rate(items, marks.end - 5, marks.end),
            "learned_rate_end": fig.mean_sample(ours.samples, marks.end - 2, marks.end),
        },
        "cost_ms": {
            "isolated_p50": fig.percentile_ms(isolated, 50),
            "isolated_p99": fig.percentile_ms(isolated, 99),
            "under_load_p50": fig.percentile_ms(ours.acquire_s, 50),
            "under_load_p99": fig.percentile_ms(ours.acquire_s, 99),
        },
        "baseline": {
            "ours": side(items, marks.start + 2, marks.halved),
            "celery_rate_limit": side(items, *celery_window),
        },
        "totals": {"attempts": ours.attempts, "ok": ours.ok, "throttled": ours.throttled},
        "marks": {k: v - marks.start for k, v in asdict(marks).items()},
        "series": fig.series(items, ours.samples, marks.start, marks.end),
    }


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


Row = tuple[str, str, str]


def _fidelity_rows(fid: dict[str, Any], rate: float, burst: int) -> list[Row]:
    achieved = fid["achieved_per_s"]
    return [
        ("fidelity: achieved rate", f"{achieved:.2f}/s = {_pct(achieved / rate)}", ">= 97 %"),
        ("fidelity: busiest 1-s window", str(fid["max_1s_window"]), f"<= {rate + burst:g}"),
        ("fidelity: server 429s", str(fid["throttled"]), "0"),
    ]


def _adaptation_rows(ada: dict[str, Any], rec: dict[str, Any], rate: float) -> list[Row]:
    new = ada["new_limit"]
    settle = f"{ada['settle_s']:.1f} s (scaled {ada['settle_scaled_s']:.0f} s)"
    back = rec["time_to_90pct_s"]
    return [
        ("halved: 429s <= 1 % after", settle, f"<= {BUDGET_S:g} s scaled"),
        ("halved: 429 share after budget", _pct(ada["throttled_share_after_budget"]), "<= 1 %"),
        (
            "halved: learned rate / new limit",
            _pct(ada["learned_rate_after_budget"] / new),
            "90-110 %",
        ),
        ("halved: accepted / new limit", _pct(ada["ok_per_s_after_budget"] / new), ""),
        (
            "restored: time to 90 % of limit",
            "never" if back is None else f"{back:.1f} s",
            "recovers",
        ),
        ("restored: accepted, last 5 s", _pct(rec["ok_per_s_last_5s"] / rate), ""),
    ]


def _cost_rows(cost: dict[str, float]) -> list[Row]:
    return [
        (
            "cost: admission p50 / p99 (isolated)",
            f"{cost['isolated_p50']:.3f} / {cost['isolated_p99']:.3f} ms",
            "p99 < 2 ms",
        ),
        (
            "cost: admission p50 / p99 (under load)",
            f"{cost['under_load_p50']:.3f} / {cost['under_load_p99']:.3f} ms",
            "",
        ),
    ]


def report(f: dict[str, Any]) -> None:
    """Print the figures as tables with their goals."""
    plan = f["plan"]
    rate, burst = plan["rate"], plan["burst"]
    table = Table(
        title=f"fleet-wide limiter: {plan['processes']} processes, one token, limit "
        f"{rate:g}/s burst {burst} (ours {burst - 1}), scale {plan['scale']:g}"
    )
    for name in ("figure", "measured", "goal"):
        table.add_column(name)
    rows = (
        _fidelity_rows(f["fidelity"], rate, burst)
        + _adaptation_rows(f["adaptation"], f["recovery"], rate)
        + _cost_rows(f["cost_ms"])
    )
    for row in rows:
        table.add_row(*row)
    console = Console(width=120)
    console.print(table)
    console.print(_baseline_table(f, rate, burst, plan["processes"]))


def _baseline_table(f: dict[str, Any], rate: float, burst: int, n: int) -> Table:
    table = Table(title=f"side by side, same nominal limit {rate:g}/s, {n} workers")
    for name in ("", "ours (shared bucket)", "Celery rate_limit (per worker)"):
        table.add_column(name)
    ours, celery = f["baseline"]["ours"], f["baseline"]["celery_rate_limit"]
    for key, label in (("attempts_per_s", "attempts/s"), ("ok_per_s", "accepted/s")):
        table.add_row(label, f"{ours[key]:.1f}", f"{celery[key]:.1f}")
    table.add_row("429 share", _pct(ours["throttled_share"]), _pct(celery["throttled_share"]))
    table.add_row(
        f"busiest 1-s window (limit+burst {rate + burst:g})",
        str(ours["max_1s_window"]),
        str(celery["max_1s_window"]),
    )
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (~1.5 min)")
    parser.add_argument("--scale", type=float, default=5.0, help="time scale of the tuning")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ratelimit.json")
    args = parser.parse_args(argv)
    plan = Plan.quick(scale=args.scale) if args.quick else Plan(scale=args.scale)
    ours_token, celery_token = f"bench-{uuid.uuid4().hex[:8]}", f"celery-{uuid.uuid4().hex[:8]}"
    config = EmulatorConfig(
        tokens=[ours_token, celery_token],
        submit_rate_per_s=plan.rate,
        submit_burst=plan.burst,
        max_concurrency=None,
        time_scale=0.01,
    )
    redis_url, server = url_or_embedded(Settings().redis_url)
    try:
        with EmulatorServer(config) as emu:
            ours, marks = run_ours(plan, redis_url, emu, ours_token)
            isolated = isolated_latency(redis_url)
            emu.configure(submit_rate_per_s=plan.rate)
            celery_window = run_celery(plan, redis_url, emu, celery_token)
            log = emu.requests(since=marks.start - 1)
    finally:
        if server is not None:
            server.stop()
    result = figures(plan, ours, marks, log, isolated, celery_window)
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
