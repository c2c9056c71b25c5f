"""Chaos: 200 generations while worker processes are SIGKILLed again and again.

Two real worker processes (``celery -A pipelines.app worker --pool threads -c 8``) serve
the queue; every 1-2 s one of them, chosen at random, is killed with SIGKILL and
started again. The broker's visibility timeout is short (8 s, with quick restore
sweeps: see ``workers/app.py``), so a dead worker's unacknowledged messages come back
within seconds and are run again by whichever worker is alive. The poller runs in this
process. Killing stops once every generation is done (or after a time budget); then the
test checks that each one was done exactly once: one paid submission per request at
the emulator, one ``done`` ledger entry per row, every artifact stored once with the
sha256 the result records, and Celery's result for every task.

Celery's Redis transport takes a message off the queue (BRPOP) before it records it
as unacknowledged, so a worker killed in between loses it for good: no redelivery, no
trace. The test acts as a careful caller does (the batch feeder must too): a row that
made no progress and whose message is nowhere in the broker is published again under
the same task id, which the ledger makes safe. Lost ``collect`` messages need no
caller: the poller puts back continuations whose collect never finished.

The same run is made with RabbitMQ as the broker (``PRODUCER_BROKER_URL``, a quorum
queue of the test's own, deleted afterwards; Redis still holds results, ledger and
continuations). RabbitMQ puts back every delivery of a killed worker's connection, so
there the fallback is switched off: every row must finish without any re-publish.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from pipelines.app import app, build_app
from producer_emulator import EmulatorServer, FaultConfig
from tests.e2e.invariants import check_fleet
from tests.e2e.rabbitmq import RabbitMQ, rabbitmq
from tests.integration.fleet import TOKEN, check_artifacts, fast_emulator_config
from workers.completion.wiring import poller_for
from workers.ledger import LedgerEntry, State
from workers.runtime import Services, build_services
from workers.settings import Settings
from workers.storage.urlguard import allow_entry_for
from workers.tasks.audios import generate

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
GENERATIONS = 200
BATCH = "chaos"
VISIBILITY_S = 8
WORKERS = 2
THREADS = 8
KILL_EVERY_S = (1.0, 2.0)
KILL_BUDGET_S = 60.0
"""Stop killing after this long even if generations are still running."""
FINISH_BUDGET_S = 150.0
"""The whole run (submit, kill, settle) must be done within this."""
SETTLE_S = 2.0
"""After the last ledger entry is done: time for the last results to be written."""
STALL_S = 2 * VISIBILITY_S
"""No row finished for this long: look for messages the broker lost."""
__all__ = ["rabbitmq"]  # the fixture, imported to be used here

QUEUE = "celery"
# kombu's Redis transport keeps unacked messages here and priorities in sub-lists.
UNACKED_KEY = "unacked"
PRIORITY_QUEUES = tuple(f"{QUEUE}\x06\x16{p}" for p in (3, 6, 9))


def worker_settings(
    redis_url: str, emulator_url: str, storage: Path, broker: RabbitMQ | None = None
) -> dict[str, str]:
    """The environment of a worker process (settings come from the environment)."""
    on_rabbitmq = (
        {"PRODUCER_BROKER_URL": broker.url, "PRODUCER_BROKER_QUEUE": broker.queue}
        if broker is not None
        else {}
    )
    return on_rabbitmq | {
        "REDIS_URL": redis_url,
        "PRODUCER_API_TOKEN": TOKEN,
        "PRODUCER_BASE_URL": emulator_url,
        # The emulator serves its songs from loopback: downloads may reach it, no more.
        "PRODUCER_DOWNLOAD_ALLOW_HOSTS": allow_entry_for(emulator_url),
        "PRODUCER_STORAGE_URL": f"file://{storage}",
        "PRODUCER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
        # 20/s spreads the 200 submissions over ~10 s of kills.
        "PRODUCER_SUBMIT_RATE_PER_S": "20",
        "PRODUCER_SUBMIT_BURST": "10",
        "PRODUCER_MAX_IN_FLIGHT": "1000",
        "PRODUCER_TASK_DEADLINE_S": "300",
        # Short enough that a POST in flight when its worker dies cannot outlive the
        # redelivery of its message (the redelivered step adopts or resubmits).
        "PRODUCER_HTTP_TIMEOUT_S": "5",
        "PRODUCER_LOG_LEVEL": "WARNING",
        "PRODUCER_LOG_JSON": "true",
    }


@dataclass
class WorkerProcess:
    """One ``celery worker`` subprocess that can be killed and started again."""

    name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0

    def start(self) -> None:
        """Start (or restart) the worker process."""
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "pipelines.app",
            "worker",
            "--pool",
            "threads",
            "-c",
            str(THREADS),
            "-n",
            f"{self.name}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """SIGKILL the process: no shutdown, no ack, nothing restored by the worker."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.kills += 1

    def stop(self) -> None:
        """Stop for good at the end (SIGKILL too: a warm shutdown would wait for tasks)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Run:
    """What the chaos run did, for the assertions and the printed figures."""

    task_ids: list[str] = field(default_factory=list)
    published: dict[str, dict[str, Any]] = field(default_factory=dict)
    kills: int = 0
    republished: int = 0
    submitted_s: float = 0.0
    all_done_s: float | None = None
    elapsed_s: float = 0.0


@contextmanager
def workers(env: dict[str, str], logs: Path) -> Iterator[list[WorkerProcess]]:
    """Start the worker processes; stop them whatever happens."""
    procs = [WorkerProcess(f"chaos{i}", env, logs / f"worker{i}.log") for i in range(WORKERS)]
    for proc in procs:
        proc.start()
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@contextmanager
def poller_thread(svc: Services, celery_app: Celery) -> Iterator[None]:
    """The central poller, in this process, publishing through ``celery_app``."""
    stop = threading.Event()
    thread = threading.Thread(
        target=poller_for(svc, celery_app).run,
        args=(stop,),
        kwargs={"idle_sleep_s": 0.05},
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def ping(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``celery -A pipelines.app inspect ping`` against the running workers."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "pipelines.app",
            "inspect",
            "ping",
            "--timeout",
            "3",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for_pongs(env: dict[str, str], expected: int, budget_s: float = 45.0) -> str:
    """Ping until ``expected`` workers answer; return the last output."""
    deadline = time.monotonic() + budget_s
    out = ""
    while time.monotonic() < deadline:
        out = ping(env).stdout
        if out.count("pong") >= expected:
            return out
    raise AssertionError(f"workers did not answer inspect ping: {out}")


def done_entries(svc: Services) -> list[LedgerEntry]:
    return [e for e in svc.ledger.scan(f"{BATCH}/") if e.state is State.DONE]


def submit_all(run: Run) -> None:
    """Publish the generations: distinct prompts and seeds, one ledger row each."""
    for row in range(GENERATIONS):
        params = {"prompt": f"chaos song number {row}", "seed": str(10_000 + row)}
        kwargs = {"params": params, "context": {"batch": BATCH, "row": row, "step": "generate"}}
        task_id = generate.apply_async(kwargs=kwargs).id
        run.task_ids.append(task_id)
        run.published[task_id] = kwargs


def broker_task_ids(client: redis.Redis) -> set[str]:
    """Ids of every task message in the broker: queued, or held (unacked) by a worker."""
    raws = [m for q in (QUEUE, *PRIORITY_QUEUES) for m in client.lrange(q, 0, -1)]
    held = [json.loads(v)[0] for v in client.hvals(UNACKED_KEY)]
    messages = [json.loads(m) for m in raws] + held
    return {str(m["headers"]["id"]) for m in messages}


def lost_rows(run: Run, svc: Services, client: redis.Redis) -> list[str]:
    """Task ids that never got past reserving and whose message the broker no longer has.

    Checked twice a second apart: a message a live worker just popped is in neither
    place for a moment. Rows already submitted are not the caller's business: their
    continuation (and the poller) finish them.
    """

    def suspects() -> set[str]:
        present = broker_task_ids(client)
        return {
            t
            for t, kwargs in run.published.items()
            if t not in present
            and not _progressed(svc, kwargs)
            and AsyncResult(t).state not in ("SUCCESS", "FAILURE")
        }

    first = suspects()
    time.sleep(1.0)
    return sorted(first & suspects())


def _progressed(svc: Services, kwargs: dict[str, Any]) -> bool:
    ctx = kwargs["context"]
    entry = svc.ledger.get(f"{ctx['batch']}/{ctx['row']}/{ctx['step']}")
    return entry is not None and entry.state is not State.RESERVED


def republish_lost(run: Run, svc: Services, client: redis.Redis) -> None:
    """Publish lost rows again, same task id and arguments (the ledger makes it safe)."""
    for task_id in lost_rows(run, svc, client):
        generate.apply_async(kwargs=run.published[task_id], task_id=task_id)
        run.republished += 1


@dataclass
class Progress:
    """Watches the ledger; when no row finished for :data:`STALL_S`, looks for lost rows."""

    run: Run
    svc: Services
    republish: bool = True
    """Whether lost rows are looked for and published again (Redis only)."""
    last_count: int = -1
    last_progress: float = field(default_factory=time.monotonic)

    def all_done(self) -> bool:
        """Whether every row is done; republishes lost rows after a stall."""
        count = len(done_entries(self.svc))
        if count == GENERATIONS:
            return True
        if count != self.last_count:
            self.last_count, self.last_progress = count, time.monotonic()
        elif self.republish and time.monotonic() - self.last_progress > STALL_S:
            republish_lost(self.run, self.svc, self.svc.redis)
            self.last_progress = time.monotonic()
        return False


def chaos(procs: list[WorkerProcess], progress: Progress, start: float) -> None:
    """Kill a random worker every 1-2 s until every row is done or the budget is spent."""
    rng = random.Random(20_260_101)
    while time.monotonic() - start < KILL_BUDGET_S:
        time.sleep(rng.uniform(*KILL_EVERY_S))
        if progress.all_done():
            return
        victim = rng.choice(procs)
        victim.kill()
        victim.start()
        progress.run.kills += 1


def settle(progress: Progress, start: float) -> None:
    """Wait (bounded) until every row is done and its result is written."""
    while time.monotonic() - start < FINISH_BUDGET_S:
        if progress.all_done():
            progress.run.all_done_s = time.monotonic() - start
            time.sleep(SETTLE_S)
            return
        time.sleep(0.5)


@contextmanager
def publishing_app(settings: Settings) -> Iterator[Celery]:
    """This process publishes (steps, collects) and reads results through an app for
    ``settings``, fresh for the run: the broker differs from run to run."""
    celery_app = build_app(settings)
    celery_app.set_current()
    celery_app.set_default()
    try:
        yield celery_app
    finally:
        app.set_current()
        app.set_default()
        celery_app.close()


@pytest.mark.slow
@pytest.mark.timeout(280)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_every_generation_is_done_exactly_once_under_sigkill(
    broker: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    mq: RabbitMQ | None = request.getfixturevalue("rabbitmq") if broker == "rabbitmq" else None
    storage, logs = tmp_path / "artifacts", tmp_path / "logs"
    storage.mkdir()
    logs.mkdir()
    emulator = fast_emulator_config(
        generation_s=60.0,
        generation_jitter_s=30.0,
        time_scale=0.05,
        song_low_s=8.0,
        song_high_s=16.0,
        # Every submission is answered ~0.4 s after its task was created: a worker killed
        # in that window leaves an orphan the redelivered step must adopt, not pay again.
        faults=FaultConfig(slow_probability=1.0, slow_response_s=8.0, endpoints=["audios"]),
    )
    run = Run()
    with EmulatorServer(emulator) as emu:
        settings = worker_settings(redis_url, emu.url, storage, mq)
        env = {**os.environ, **settings, "PYTHONPATH": str(ROOT)}
        here = Settings(
            api_token=TOKEN,
            base_url=emu.url,
            redis_url=redis_url,
            broker_url=mq.url if mq else None,
            broker_queue=mq.queue if mq else None,
            storage_url=f"file://{storage}",
            poll_rate_per_s=20.0,
            poll_batch_size=100,
            poll_first_after_s=0.5,
            poll_max_interval_s=1.0,
            task_deadline_s=300.0,
            # As the workers': the poller puts back lost collects after 2 x this.
            visibility_timeout_s=VISIBILITY_S,
        )
        svc = build_services(here)
        try:
            with publishing_app(here) as celery_app:
                with workers(env, logs) as procs, poller_thread(svc, celery_app):
                    pongs = wait_for_pongs(env, expected=WORKERS)
                    start = time.monotonic()
                    submit_all(run)
                    run.submitted_s = time.monotonic() - start
                    progress = Progress(run, svc, republish=mq is None)
                    chaos(procs, progress, start)
                    settle(progress, start)
                    run.elapsed_s = time.monotonic() - start
                counters = emu.counters()
                report(broker, run, svc, counters)
                check_exactly_once(run, svc, counters, storage, logs)
            if mq is not None:
                # No fallback ran, yet every row finished: RabbitMQ lost no step message.
                assert run.republished == 0
                assert mq.is_quorum_queue()
        finally:
            svc.close()
    assert "pong" in pongs


def report(broker: str, run: Run, svc: Services, counters: dict[str, Any]) -> None:
    """Print the figures of the run (``pytest -s`` shows them)."""
    entries = list(svc.ledger.scan(f"{BATCH}/"))
    print(
        f"\nchaos on {broker}: {GENERATIONS} generations, {run.kills} SIGKILLs, "
        f"{run.republished} lost messages published again, all done after "
        f"{run.all_done_s and round(run.all_done_s, 1)} s (published in "
        f"{run.submitted_s:.1f} s, run {run.elapsed_s:.1f} s); emulator: "
        f"{counters['submissions_total']} submissions, "
        f"{counters['submissions_duplicated']} duplicated; ledger: "
        f"{sum(e.state is State.DONE for e in entries)} done, "
        f"{sum(e.adopted for e in entries)} adopted orphans, "
        f"{sum(e.takeovers for e in entries)} takeovers"
    )


def check_exactly_once(
    run: Run, svc: Services, counters: dict[str, Any], storage: Path, logs: Path
) -> None:
    """The run's end state: everything done, nothing paid or stored twice."""
    entries = {e.key: e for e in svc.ledger.scan(f"{BATCH}/")}
    not_done = sorted(k for k, e in entries.items() if e.state is not State.DONE)
    assert len(entries) == GENERATIONS, _tails(logs)
    assert not not_done, _diagnose([entries[k] for k in not_done[:3]], run, svc, logs)
    assert run.kills >= 10
    by_fingerprint = counters["submissions_by_fingerprint"]
    assert counters["submissions_total"] == GENERATIONS
    assert len(by_fingerprint) == GENERATIONS
    assert set(by_fingerprint.values()) == {1}
    stored = {
        str(p.relative_to(storage))
        for p in storage.rglob("*")
        if p.is_file() and not p.relative_to(storage).parts[0].startswith(".")
    }
    recorded: set[str] = set()
    for entry in entries.values():
        assert entry.result is not None
        kinds = check_artifacts(storage, entry.result)
        assert set(kinds) == {"audio", "image", "metadata"}
        recorded |= {a["key"] for a in entry.result["artifacts"]}
    assert stored == recorded  # every artifact once, nothing else
    states = {AsyncResult(task_id).state for task_id in run.task_ids}
    assert states == {"SUCCESS"}
    # The standing chaos suite's invariants (ad-hoc steps: no batch rows or spend).
    check_fleet(
        svc.settings.redis_url or "", storage, counters, batch_ids=[], ledger_prefixes=[BATCH]
    )


def _diagnose(stuck: list[LedgerEntry], run: Run, svc: Services, logs: Path) -> str:
    """Everything known about rows that did not finish, for the failure message."""
    lines = []
    ids = {
        f"{k['context']['batch']}/{k['context']['row']}/generate": t
        for t, k in run.published.items()
    }
    for entry in stuck:
        task_id = ids.get(entry.key, "?")
        api = entry.api_task_id or ""
        r, token = svc.redis, svc.token_id
        where = {
            name: bool(r.exists(f"producer:inflight:{name}:{api}")) for name in ("task", "claimed")
        }
        where |= {
            name: r.zscore(f"producer:inflight:{name}:{token}", api) for name in ("due", "resumed")
        }
        lines.append(
            f"{entry}\n  celery state {AsyncResult(task_id).state}, "
            f"continuation keys {where}, now {time.time():.1f}"
        )
        for log in sorted(logs.glob("*.log")):
            lines += [
                f"  {log.name}: {line[:400]}"
                for line in log.read_text(errors="replace").splitlines()
                if task_id in line or (api and api in line)
            ]
    return "\n".join(lines)


def _tails(logs: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(logs.glob("*.log")))


def test_worker_process_answers_inspect_ping(redis_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PRODUCER_API_TOKEN": TOKEN,
        "PYTHONPATH": str(ROOT),
    }
    with workers(env, tmp_path) as procs:
        out = wait_for_pongs(env, expected=WORKERS)
        assert all(p.process is not None and p.process.poll() is None for p in procs)
    assert out.count("pong") == WORKERS
    for i in range(WORKERS):
        assert f"chaos{i}@" in out
