"""RabbitMQ as the broker: a batch of generate -> extend -> stems chains through the fleet.

The fleet runs as an operator runs it (two ``celery -A pipelines.app worker`` processes,
threads and prefork pools, ``producer-batch feeder`` and ``poller``) with
``PRODUCER_BROKER_URL`` naming the machine's RabbitMQ and Redis kept for results,
ledger, limiter and continuations. The submit rate is low, so steps wait for capacity:
they re-queue themselves with a countdown, which on a quorum queue goes through Celery's
native delayed delivery. Every row must finish, each step paid once, and the task queue
must be a quorum queue.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import pytest

from producer_emulator import EmulatorServer
from tests.e2e.fleet_procs import ProcFleet, cli, fleet_env, service_commands
from tests.e2e.rabbitmq import RabbitMQ, rabbitmq
from tests.e2e.test_chaos_redis_restart import PIPELINE, wait_finished
from tests.integration.fleet import fast_emulator_config

__all__ = ["rabbitmq"]  # the fixture, imported to be used here

ROWS = 8


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_chains_finish_on_rabbitmq_with_countdown_waits(
    redis_url: str, rabbitmq: RabbitMQ, tmp_path: Path
) -> None:
    storage, logs = tmp_path / "store", tmp_path / "logs"
    for folder in (storage, logs):
        folder.mkdir()
    emulator = fast_emulator_config(generation_s=20.0, generation_jitter_s=10.0, time_scale=0.05)
    with ExitStack() as stack:
        emu = stack.enter_context(EmulatorServer(emulator))
        env = fleet_env(
            redis_url,
            emu.url,
            storage,
            settings={
                "BROKER_URL": rabbitmq.url,
                "BROKER_QUEUE": rabbitmq.queue,
                # 2/s for 24 submissions: most steps wait for a token, re-queued with a
                # countdown (the step_waiting lines below).
                "SUBMIT_RATE_PER_S": "2",
                "SUBMIT_BURST": "2",
                "LOG_LEVEL": "INFO",
            },
        )
        fleet = stack.enter_context(ProcFleet(env, logs, service_commands()))
        csv = tmp_path / "rows.csv"
        csv.write_text("prompt,seed\n" + "".join(f"song {i},{i}\n" for i in range(ROWS)))
        batch_id = cli(env, "submit", str(csv), "--pipeline", PIPELINE)["batch_id"]
        status = wait_finished(env, batch_id)
        fleet.assert_alive("at the end")
        counters = emu.counters(fingerprints=False)
    assert status["counts"]["done"] == ROWS, status["counts"]
    assert counters["submissions_duplicated"] == 0
    assert counters["submissions_total"] == ROWS * 3  # generate, extend, stems
    waits = [
        line
        for name in ("worker-threads", "worker-prefork")
        for line in (logs / f"{name}.log").read_text(errors="replace").splitlines()
        if '"step_waiting"' in line
    ]
    assert waits, "no step waited for capacity: the countdown path was not exercised"
    assert all(json.loads(line)["countdown_s"] > 0 for line in waits)
    assert rabbitmq.is_quorum_queue()
