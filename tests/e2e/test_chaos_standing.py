"""The standing chaos suite: the whole fleet as processes, broken on purpose, then checked.

Each test runs :func:`tests.e2e.chaos_run.run_chaos` (own Redis with AOF, emulator,
two workers — threads and prefork pools — feeder, poller, and here the callback
receiver and beat) on a small batch of ``generate-extend-stems`` rows, and ends with
:func:`tests.e2e.invariants.check_fleet`: every row terminal with a reason, provider
submissions = distinct fingerprints = ledger steps with a provider task, 0 duplicates,
paid steps = successful provider tasks, every artifact stored once with its sha256,
staging empty, limiter in-flight 0, no continuation left, status spend = prices x
paid steps. Durations are scaled down (emulator ``time_scale``, a 6 s visibility
timeout) so the marker stays within minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from producer_emulator import FaultConfig
from tests.e2e.chaos_run import ChaosPlan, run_chaos
from tests.integration.fleet import fast_emulator_config

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

ROWS = 24
VISIBILITY_S = 6
FAST = {
    "VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
    "SUBMIT_RATE_PER_S": "20",
    "SUBMIT_BURST": "10",
    "MAX_IN_FLIGHT": "200",
    "POLL_RATE_PER_S": "50",
    "POLL_FIRST_AFTER_S": "0.2",
    "POLL_MAX_INTERVAL_S": "0.5",
    "HTTP_TIMEOUT_S": "3",
    "TASK_DEADLINE_S": "120",
    "MAX_TRANSIENT_RETRIES": "8",
}
EVERY_KIND = ("worker-threads", "worker-prefork", "feeder", "poller", "receiver", "beat")


@pytest.mark.timeout(240)
def test_sigkill_of_every_process_kind_in_turn(tmp_path: Path) -> None:
    """Workers (both pools), feeder, poller, receiver and beat, each SIGKILLed twice."""
    plan = ChaosPlan(
        rows=ROWS,
        emulator=fast_emulator_config(generation_s=40.0, generation_jitter_s=20.0, time_scale=0.05),
        settings=FAST,
        kill_order=EVERY_KIND,
        kill_rounds=2,
        kill_every_s=1.2,
        callbacks=True,
        beat_every_s=2,
    )
    result = run_chaos(plan, tmp_path)
    print(f"\nchaos sigkill: {result.figures()}")
    assert all(result.kills[name] == 2 for name in EVERY_KIND), result.kills
    assert result.report.rows_done >= ROWS  # no faults here: every row is done
    assert result.report.rows_failed == 0
    assert len(result.batches) >= 2  # the schedule fired through the beat kills


@pytest.mark.timeout(240)
def test_fault_mix_with_kills(tmp_path: Path) -> None:
    """5xx, 504, malformed bodies, task failures, 429s, lost and doubled callbacks, slow replies."""
    faults = FaultConfig(
        api_error_500=0.05,
        timeout_504=0.03,
        timeout_delay_s=20.0,
        malformed_body=0.03,
        task_failure=0.05,
        slow_probability=0.1,
        slow_response_s=20.0,
        callback_drop=0.3,
        callback_duplicate=0.3,
    )
    plan = ChaosPlan(
        rows=ROWS,
        emulator=fast_emulator_config(
            generation_s=40.0,
            generation_jitter_s=20.0,
            time_scale=0.05,
            faults=faults,
            # The provider's own limit: real 429s the limiter must learn from.
            submit_rate_per_s=8.0,
        ),
        settings=FAST,
        kill_order=("worker-threads", "poller", "worker-prefork", "receiver"),
        kill_every_s=2.0,
        callbacks=True,
    )
    try:
        result = run_chaos(plan, tmp_path)
    except AssertionError as exc:
        # Known open defect (issue 9, docs/reliability.md "Standing chaos suite"): once in a
        # while a row's whole spend hold (one row's estimate) stays reserved after the batch
        # ends under this fault mix with kills. Only that violation, alone, is tolerated,
        # and visibly (xfail); any other violation fails the test.
        text = str(exc)
        if text.startswith("1 invariant violations:") and "spend still reserved" in text:
            pytest.xfail(f"known open defect: a spend hold left reserved: {text[:300]}")
        raise
    print(f"\nchaos fault mix: {result.figures()}")
    emulator = result.counters
    assert result.report.rows_done + result.report.rows_failed == ROWS
    assert result.report.rows_done > 0
    # The faults really happened.
    assert sum(emulator["errors_by_code"].values()) > 0, emulator["errors_by_code"]
    assert emulator["callbacks_dropped"] + emulator["callbacks_duplicated"] > 0
