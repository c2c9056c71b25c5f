"""Chaos: Redis restarts (SIGTERM, then SIGKILL; AOF on) while the whole fleet is busy.

The fleet runs as an operator runs it: two ``celery -A pipelines.app worker`` processes
(threads and prefork pools), ``producer-batch feeder`` and ``producer-batch poller``,
against a ``valkey-server`` started here with ``--appendonly yes``, and the emulator
(processes from :mod:`tests.e2e.fleet_procs`). A batch is submitted with
``producer-batch submit``; while its steps are in flight, Redis is stopped with
SIGTERM and started again on the same port and data directory, then the same with
SIGKILL. No process may exit, the batch must finish by itself, and the end state must
pass the standing chaos suite's invariants (:func:`tests.e2e.invariants.check_fleet`).

Before the fix in ``workers/broker.py`` the busy workers died at the first restart with
``Unrecoverable error: AttributeError("'NoneType' object has no attribute
'hostname'")``.
"""

from __future__ import annotations

import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from producer_emulator import EmulatorServer
from tests.e2e.fleet_procs import ProcFleet, RedisServer, cli, fleet_env, service_commands
from tests.e2e.invariants import check_fleet, settled_counters
from tests.integration.fleet import fast_emulator_config

pytestmark = pytest.mark.chaos

ROWS = 30
PIPELINE = "generate-extend-stems"
VISIBILITY_S = 10
DOWN_S = 1.0
"""How long Redis stays down at each restart."""
BUSY_S = 4.0
"""Time after each restart for the fleet to reconnect and work again."""
FINISH_BUDGET_S = 150.0
SETTINGS = {
    "VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
    # Slow enough that steps wait for tokens through both restarts: a worker then
    # holds unacknowledged (countdown) messages, the case that killed it.
    "SUBMIT_RATE_PER_S": "5",
    "SUBMIT_BURST": "5",
    "MAX_IN_FLIGHT": "200",
    "POLL_RATE_PER_S": "50",
    "POLL_FIRST_AFTER_S": "0.2",
    "POLL_MAX_INTERVAL_S": "0.5",
    "HTTP_TIMEOUT_S": "5",
    "MAX_TRANSIENT_RETRIES": "8",
}


def wait_finished(env: dict[str, str], batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + FINISH_BUDGET_S
    status = cli(env, "status", batch_id)
    while time.monotonic() < deadline:
        status = cli(env, "status", batch_id)
        counts = status["counts"]
        if counts["pending"] == 0 and counts["running"] == 0:
            return status
        time.sleep(1.0)
    raise AssertionError(f"the batch did not finish: {status['counts']}")


@pytest.mark.slow
@pytest.mark.timeout(280)
def test_the_fleet_rides_out_redis_restarts(tmp_path: Path) -> None:
    storage, logs, data = tmp_path / "store", tmp_path / "logs", tmp_path / "redis"
    for folder in (storage, logs, data):
        folder.mkdir()
    emulator = fast_emulator_config(generation_s=40.0, generation_jitter_s=20.0, time_scale=0.1)
    server = RedisServer(data, logs / "redis.log")
    with ExitStack() as stack:
        server.start()
        stack.callback(lambda: server.stop(signal.SIGKILL))
        emu = stack.enter_context(EmulatorServer(emulator))
        env = fleet_env(server.url, emu.url, storage, settings=SETTINGS)
        fleet = stack.enter_context(ProcFleet(env, logs, service_commands()))
        csv = tmp_path / "rows.csv"
        csv.write_text("prompt,seed\n" + "".join(f"song {i},{i}\n" for i in range(ROWS)))
        batch_id = cli(env, "submit", str(csv), "--pipeline", PIPELINE)["batch_id"]
        time.sleep(BUSY_S)  # steps submitted, collecting and waiting
        for sig in (signal.SIGTERM, signal.SIGKILL):
            server.stop(sig)
            time.sleep(DOWN_S)
            server.start()
            time.sleep(BUSY_S)
            fleet.assert_alive(f"after a Redis restart by {sig.name}")
        status = wait_finished(env, batch_id)
        fleet.assert_alive("at the end")
        counters = settled_counters(emu.counters, server.url, storage, budget_s=15.0)
        check_fleet(server.url, storage, counters, status_of=lambda b: cli(env, "status", b))
    assert status["counts"]["done"] == ROWS, status["counts"]
    assert counters["submissions_duplicated"] == 0
    assert counters["submissions_total"] == ROWS * 3  # generate, extend, stems
