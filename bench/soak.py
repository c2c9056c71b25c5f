"""Soak: 1,000 rows x 3 steps through the whole fleet as processes, with faults and kills.

    python -m bench.soak            # 1,000 rows of generate -> extend -> stems (<= 15 min)
    python -m bench.soak --quick    # 100 rows (about 2 minutes)
    python -m bench.soak --json     # print the figures as JSON

The fleet runs as an operator runs it, each part a process: Redis (``valkey-server``,
AOF on), the emulator (in this process), two workers (``celery -A pipelines.app
worker``, threads and prefork pools), ``producer-batch feeder``, ``poller`` and
``receiver`` (callbacks on). The emulator injects the fault mix of the standing chaos
suite (5xx, 504, malformed bodies, task failures, slow replies, dropped and doubled
callbacks) and enforces a submit rate a little above the limiter's, whose bursts
meet real 429s. Every ``--kill-every`` seconds one process, in turn, is SIGKILLed and
started again, until the batch has ended. Durations are scaled down (emulator
``time_scale``, a 10 s visibility timeout).

Prints rows done / failed / lost (never ended, pending) / stuck (running), duplicate
submissions, recovery time after the last kill, peak RSS of each process and wall
time, then the invariant checker's verdict (:func:`tests.e2e.invariants.check_fleet`).
The full run writes ``bench/results/soak.json``. Exit status 1 if an invariant broke.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producer_emulator import FaultConfig
from tests.e2e.chaos_run import ChaosPlan, ChaosResult, run_chaos
from tests.integration.fleet import fast_emulator_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "soak.json"
KILL_ORDER = ("worker-threads", "feeder", "worker-prefork", "poller", "receiver")


@dataclass(frozen=True)
class Size:
    """How big a soak is."""

    rows: int
    kill_every_s: float
    finish_budget_s: float

    @classmethod
    def full(cls) -> Size:
        """1,000 rows, a kill every 20 s; ~14 min on 2 idle cores (budget 25 min when shared)."""
        return cls(rows=1000, kill_every_s=20.0, finish_budget_s=1500.0)

    @classmethod
    def quick(cls) -> Size:
        """100 rows, a kill every 8 s."""
        return cls(rows=100, kill_every_s=8.0, finish_budget_s=240.0)


def plan_for(size: Size) -> ChaosPlan:
    """The fleet, faults and kills of a soak of ``size``."""
    faults = FaultConfig(
        api_error_500=0.02,
        timeout_504=0.01,
        timeout_delay_s=20.0,
        malformed_body=0.01,
        task_failure=0.02,
        slow_probability=0.05,
        slow_response_s=20.0,
        callback_drop=0.2,
        callback_duplicate=0.2,
    )
    emulator = fast_emulator_config(
        generation_s=40.0,
        generation_jitter_s=20.0,
        time_scale=0.02,
        # Short songs: the soak measures the fleet, not WAV rendering and hashing.
        song_low_s=4.0,
        song_high_s=8.0,
        faults=faults,
        submit_rate_per_s=12.0,
    )
    settings = {
        "VISIBILITY_TIMEOUT_S": "10",
        "SUBMIT_RATE_PER_S": "10",
        "SUBMIT_BURST": "20",
        "MAX_IN_FLIGHT": "300",
        "POLL_RATE_PER_S": "50",
        "POLL_FIRST_AFTER_S": "0.5",
        "POLL_MAX_INTERVAL_S": "1.0",
        "HTTP_TIMEOUT_S": "5",
        "TASK_DEADLINE_S": "300",
        "MAX_TRANSIENT_RETRIES": "8",
    }
    return ChaosPlan(
        rows=size.rows,
        emulator=emulator,
        settings=settings,
        kill_order=KILL_ORDER,
        kill_rounds=1000,  # bounded by the batch's end (stop_kills_when_done)
        kill_every_s=size.kill_every_s,
        stop_kills_when_done=True,
        callbacks=True,
        concurrency=6,
        finish_budget_s=size.finish_budget_s,
        settle_budget_s=30.0,
    )


def figures_of(size: Size, result: ChaosResult) -> dict[str, Any]:
    """The soak's figures: rows, duplicates, recovery, RSS, wall time, invariants."""
    report = result.report
    return {
        "rows": size.rows,
        "steps_per_row": 3,
        "rows_done": report.rows_done,
        "rows_failed": report.rows_failed,
        "rows_lost": result.not_terminal.get("p", 0),
        "rows_stuck": report.rows_stuck - result.not_terminal.get("p", 0),
        "duplicate_submissions": report.duplicates,
        "invariants_hold": not report.violations,
        **result.figures(),
    }


def print_figures(figures: dict[str, Any]) -> None:
    """The figures for a reader."""
    inv = figures["invariants"]
    print(
        f"soak: {figures['rows']} rows x 3 steps in {figures['wall_s']} s wall "
        f"(batch ended {figures['finished_s']} s after start)\n"
        f"  rows done {figures['rows_done']}, failed {figures['rows_failed']}, "
        f"lost {figures['rows_lost']}, stuck {figures['rows_stuck']}\n"
        f"  submissions {inv['submissions']}, duplicates {figures['duplicate_submissions']}, "
        f"paid steps {inv['paid_steps']}, provider tasks failed {inv['provider_failed']}, "
        f"artifacts {inv['artifacts']}, spent {inv['spent']:.2f} USD\n"
        f"  kills {figures['kills']}; last kill at {figures['last_kill_s']} s, "
        f"recovery {figures['recovery_s']} s\n"
        f"  peak RSS MiB {figures['peak_rss_mib']}\n"
        f"  emulator errors {figures['emulator']['errors_by_code']}, 429s "
        f"{figures['emulator']['rejected_429']}, callbacks dropped "
        f"{figures['emulator']['callbacks_dropped']} / doubled "
        f"{figures['emulator']['callbacks_duplicated']}\n"
        f"  invariants: {'hold' if figures['invariants_hold'] else 'BROKEN'}"
    )
    for violation in figures["violations"]:
        print(f"    - {violation}")


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print (or ``--json``) the figures; write the results of a full run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 rows, about 2 minutes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    size = Size.quick() if args.quick else Size.full()
    # SIGTERM unwinds like Ctrl-C, so the fleet processes (own sessions) are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as name:
        result = run_chaos(plan_for(size), Path(name), check=False)
    figures = figures_of(size, result)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_figures(figures)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if figures["invariants_hold"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
