"""CSV batches: submit cost of 100k rows, and makespan against the limits' lower bound.

    python -m bench.bench_batches            # 100k-row submit; 1,000-row batch, naive 40 rows
    python -m bench.bench_batches --quick    # 20k-row submit; 100-row batch, naive 16 rows

Uses an embedded Redis (a fresh one per part; ``REDIS_URL`` is ignored so nothing of
yours is flushed) and the emulator in this process (fixed generation time, tiny media).

1. **submit**: seconds for ``submit_batch`` to read, validate and record an N-row CSV of
   ``generate-extend-stems`` rows, and the Redis memory it costs (``INFO memory``).
2. **makespan**: a ``generate-extend-stems`` batch (3 steps per row) through the real
   system: one worker process (``celery -A pipelines.app worker --pool threads``), the
   poller and the feeder (``producer-batch poller|feeder``), the limiter set to a submit
   rate R and an in-flight cap C, the emulator enforcing the same (polls: first near the
   end of a generation, then every 0.1 s, idle sleep 0.05 s: the service's 1 s / 0.5 s
   scaled like the 4 s generations). Lower bound from
   those limits, for S = rows x 3 steps of G seconds each:
   ``max(S * G / C, S / R, 3 * G)`` (every step holds a slot for G; submissions are
   paced at R; a row's steps run one after another). Ratio = makespan / bound.
   Beside it, the **naive** design: one Celery task per step blocking in the
   synchronous ``Producer.audios.create`` (then downloading its files), chained per
   row, prefork concurrency 8, all rows published at once. It runs fewer rows; its
   makespan for the full batch is extrapolated linearly (it is pool-bound: S * G / 8).

Prints figures and ratios and writes ``bench/results/batches.json``; not a pass/fail test.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from celery import Celery, chain

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producer_client import Producer, RateLimitError
from producer_emulator import EmulatorConfig, EmulatorServer
from workers.embedded_redis import EmbeddedRedis
from workers.storage.urlguard import allow_entry_for

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "batches.json"
TOKEN = "bench-batches-token"
PIPELINE = "generate-extend-stems"
STEPS = ("generate", "extend", "stems")
NAIVE_POOL = 8
NAIVE_QUEUE = "naive"
NAIVE_DONE_KEY = "bench:naive:rows-done"
HEADER = ["prompt", "title", "model", "instrumental", "seed", "weirdness", "extend_prompt"]


@dataclass(frozen=True)
class Plan:
    """Sizes, limits and times of one run."""

    submit_rows: int = 100_000
    rows: int = 1000
    naive_rows: int = 40
    generation_s: float = 40.0
    time_scale: float = 0.1
    submit_rate: float = 30.0
    max_in_flight: int = 50
    threads: int = 16

    @property
    def step_s(self) -> float:
        """Real seconds one generation takes."""
        return self.generation_s * self.time_scale

    @classmethod
    def quick(cls) -> Plan:
        return cls(submit_rows=20_000, rows=100, naive_rows=16, submit_rate=20.0, max_in_flight=20)


def write_csv(path: Path, rows: int) -> None:
    """``rows`` distinct, valid rows for the pipeline."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(1, rows + 1):
            writer.writerow(
                [
                    f"a lo-fi beat with rain, take {i}",
                    f"Take {i}",
                    "FUZZ-2.0",
                    "true",
                    str(i),
                    "0.3",
                    "the rain gets heavier",
                ]
            )


# --- 1. submit --------------------------------------------------------------------------


def bench_submit(plan: Plan, tmp: Path) -> dict[str, Any]:
    """Seconds and Redis bytes to validate and record ``plan.submit_rows`` rows."""
    from pipelines.batches.submit import submit_batch
    from pipelines.specs.loader import get_pipeline
    from pipelines.spend.prices import PriceTable

    source = tmp / "submit.csv"
    write_csv(source, plan.submit_rows)
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        before = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        report = submit_batch(
            client,
            source=str(source),
            pipeline=get_pipeline(PIPELINE),
            prices=PriceTable.load(None),
        )
        seconds = time.perf_counter() - started
        after = int(client.info("memory")["used_memory"])
        client.close()
    assert report.accepted == plan.submit_rows, report.refused
    return {
        "rows": plan.submit_rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(plan.submit_rows / seconds),
        "redis_bytes": after - before,
        "redis_bytes_per_row": round((after - before) / plan.submit_rows, 1),
    }


# --- 2. makespan: ours ------------------------------------------------------------------


def emulator_config(plan: Plan) -> EmulatorConfig:
    """Fixed generation time, the plan's limits, tiny media (the bench is about scheduling).

    The emulator's submit bucket is 20 % above ours: two buckets on two clocks would
    otherwise disagree now and then, and a 429 makes our limiter slow down on purpose.
    """
    return EmulatorConfig(
        tokens=[TOKEN],
        generation_s=plan.generation_s,
        generation_jitter_s=0.0,
        time_scale=plan.time_scale,
        submit_rate_per_s=1.2 * plan.submit_rate,
        submit_burst=5,
        max_concurrency=plan.max_in_flight,
        poll_rate_per_s=None,
        preview_fraction=None,
        sample_rate=8000,
        song_low_s=20.0,
        song_high_s=30.0,
        max_render_s=1.0,
        seed=3,
        request_log_size=500_000,
    )


def system_env(url: str, emu_url: str, storage: Path, plan: Plan) -> dict[str, str]:
    """Settings of every process of the system (time-scaled polling, the plan's limits)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": url,
        "PRODUCER_API_TOKEN": TOKEN,
        "PRODUCER_BASE_URL": emu_url,
        "PRODUCER_DOWNLOAD_ALLOW_HOSTS": allow_entry_for(emu_url),
        "PRODUCER_STORAGE_URL": f"file://{storage}",
        "PRODUCER_SUBMIT_RATE_PER_S": str(plan.submit_rate),
        "PRODUCER_SUBMIT_BURST": "1",
        "PRODUCER_MAX_IN_FLIGHT": str(plan.max_in_flight),
        # First poll near the end of a generation, then every 0.1 s (a 1 s poll cadence
        # at the provider, scaled like the generation time).
        "PRODUCER_POLL_FIRST_AFTER_S": str(0.9 * plan.step_s),
        "PRODUCER_POLL_MAX_INTERVAL_S": "0.1",
        "PRODUCER_POLL_RATE_PER_S": "50",
        "PRODUCER_LOG_LEVEL": "WARNING",
        "PRODUCER_LOG_JSON": "true",
    }


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    """Run a process (and its children) for the block; kill its group after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


def wait_for_worker(app: Celery, name: str, budget_s: float = 60.0) -> None:
    """Until a worker whose name contains ``name`` answers a ping."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        if any(name in str(reply) for reply in app.control.ping(timeout=1.0) or []):
            return
    raise RuntimeError(f"worker {name} did not start")


def run_ours(plan: Plan, emu: EmulatorServer, tmp: Path) -> dict[str, Any]:
    """The batch through worker, poller and feeder processes; makespan from the record."""
    from pipelines.app import app
    from pipelines.batches.state import BatchState
    from pipelines.batches.submit import submit_batch
    from pipelines.specs.loader import get_pipeline
    from pipelines.spend.prices import PriceTable

    source = tmp / "batch.csv"
    write_csv(source, plan.rows)
    with EmbeddedRedis() as server, ExitStack() as stack:
        env = system_env(server.url, emu.url, tmp / "store", plan)
        app.conf.update(broker_url=server.url, result_backend=server.url)
        py = sys.executable
        stack.enter_context(
            process(
                [
                    py,
                    "-m",
                    "celery",
                    "-A",
                    "pipelines.app",
                    "worker",
                    "--pool",
                    "threads",
                    "-c",
                    str(plan.threads),
                    "-n",
                    "ours@%h",
                    "--without-mingle",
                    "--without-gossip",
                    "-l",
                    "WARNING",
                ],
                env,
                tmp / "worker.log",
            )
        )
        wait_for_worker(app, "ours@")
        stack.enter_context(
            process([py, "-m", "bench.bench_batches", "--poller"], env, tmp / "poller.log")
        )
        stack.enter_context(process([py, "-m", "pipelines", "feeder"], env, tmp / "feeder.log"))
        time.sleep(3.0)  # the services are up (imports take ~2 s) before the clock starts
        client = redis.Redis.from_url(server.url)
        report = submit_batch(
            client,
            source=str(source),
            pipeline=get_pipeline(PIPELINE),
            batch_id="bench",
            prices=PriceTable.load(None),
        )
        record = _wait_finished(BatchState(client), "bench", plan)
        phases = step_phases(client, plan.rows)
        client.close()
    counters = emu.counters(fingerprints=False)
    makespan = float(record["finished_at"]) - float(record["created_at"])
    return {
        "rows": report.accepted,
        "done": int(record["done"]),
        "failed": int(record["failed"]),
        "makespan_s": round(makespan, 1),
        "submissions": counters["submissions_total"],
        "max_in_flight_seen": counters["max_in_flight_seen"],
        "rejected_429": counters["rejected_429"],
        "step_phases_s": phases,
    }


def step_phases(client: redis.Redis, rows: int) -> dict[str, float]:
    """Mean seconds per step: waiting to submit, at the provider, until collected, between steps.

    From the ledger (Redis clock) and the provider's record (emulator clock, same host).
    """
    from workers.ledger import Ledger, step_key

    ledger = Ledger(client)
    sums = {"queue_and_limits": 0.0, "provider": 0.0, "poll_and_collect": 0.0}
    count = 0
    for row in range(1, rows + 1):
        previous_done: float | None = None
        for step in STEPS:
            entry = ledger.get(step_key("bench", row, step))
            if entry is None or entry.result is None or entry.finished_at is None:
                continue
            timings = entry.result.get("timings") or {}
            created, finished = timings.get("created_at"), timings.get("finished_at")
            if previous_done is not None:
                sums["queue_and_limits"] += (entry.submitted_at or 0.0) - previous_done
            if created is not None and finished is not None:
                sums["provider"] += finished - created
                sums["poll_and_collect"] += entry.finished_at - finished
            previous_done = entry.finished_at
            count += 1
    return {name: round(total / max(count, 1), 3) for name, total in sums.items()}


def _wait_finished(state: Any, batch_id: str, plan: Plan) -> dict[str, str]:
    budget = 10 * lower_bound_s(plan, plan.rows) + 120
    deadline = time.monotonic() + budget
    while (record := state.record(batch_id) or {}).get("status") not in ("finished",):
        if time.monotonic() > deadline:
            raise RuntimeError(f"batch not finished after {budget:.0f} s: {record}")
        time.sleep(0.2)
    return dict(record)


def lower_bound_s(plan: Plan, rows: int) -> float:
    """The makespan no scheduler can beat under the plan's limits (module docstring)."""
    steps = rows * len(STEPS)
    return max(
        steps * plan.step_s / plan.max_in_flight, steps / plan.submit_rate, len(STEPS) * plan.step_s
    )


# --- 2. makespan: naive -----------------------------------------------------------------

naive_app = Celery("bench-naive")
naive_app.conf.update(
    broker_url=os.environ.get("REDIS_URL"),
    result_backend=None,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=NAIVE_QUEUE,
    accept_content=["json"],
)


@naive_app.task(
    name="bench.naive_step",
    autoretry_for=(RateLimitError,),
    max_retries=None,
    retry_backoff=0.5,
    retry_backoff_max=5,
    retry_jitter=True,
)
def naive_step(prev: dict[str, Any] | None, action: str, row: int, last: bool) -> dict[str, Any]:
    """One step held in a worker slot for the whole generation, then its files fetched.

    Like a typical simple design it retries a 429 with a short backoff.
    """
    params: dict[str, Any] = {"action": action}
    if action == "generate":
        params.update(prompt=f"a lo-fi beat with rain, take {row}", seed=str(row))
    else:
        assert prev is not None
        params["audio_id"] = prev["audio_id"]
        if action == "extend":
            params["continue_at"] = prev["duration"]
    timeout = float(os.environ.get("BENCH_TIMEOUT_S", "600"))
    with Producer(
        api_token=TOKEN, base_url=os.environ["PRODUCER_BASE_URL"], timeout_s=timeout, max_retries=0
    ) as client:
        item = client.audios.create(params, timeout_s=timeout).data[0]
    out = Path(os.environ["BENCH_STORE"]) / str(row) / action
    out.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=60) as http:
        for url in (item.audio_url, item.image_url, item.stems_url):
            if url:
                (out / url.rsplit("/", 1)[-1]).write_bytes(http.get(url).content)
    if last:
        redis.Redis.from_url(os.environ["REDIS_URL"]).incr(NAIVE_DONE_KEY)
    return {"audio_id": item.id, "duration": item.duration}


def run_naive(plan: Plan, emu: EmulatorServer, tmp: Path) -> dict[str, Any]:
    """``plan.naive_rows`` chains of blocking steps on a prefork pool of 8."""
    emu.reset(keep_config=True)
    with EmbeddedRedis() as server:
        env = {
            **system_env(server.url, emu.url, tmp / "naive", plan),
            "BENCH_STORE": str(tmp / "naive"),
            "BENCH_TIMEOUT_S": "600",
        }
        naive_app.conf.update(broker_url=server.url)
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.bench_batches:naive_app",
            "worker",
            "--pool",
            "prefork",
            "-c",
            str(NAIVE_POOL),
            "-Q",
            NAIVE_QUEUE,
            "-n",
            "naive@%h",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
        ]
        client = redis.Redis.from_url(server.url)
        with process(command, env, tmp / "naive.log"):
            wait_for_worker(naive_app, "naive@")
            started = time.monotonic()
            for row in range(1, plan.naive_rows + 1):
                chain(
                    *(
                        naive_step.s(None, action, row, action == STEPS[-1])
                        if i == 0
                        else naive_step.s(action, row, action == STEPS[-1])
                        for i, action in enumerate(STEPS)
                    )
                ).apply_async()
            deadline = started + 20 * lower_bound_s(plan, plan.naive_rows) + 120
            while int(client.get(NAIVE_DONE_KEY) or 0) < plan.naive_rows:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"naive run unfinished; see {tmp / 'naive.log'}")
                time.sleep(0.1)
            makespan = time.monotonic() - started
        client.close()
    return {
        "rows": plan.naive_rows,
        "makespan_s": round(makespan, 1),
        "extrapolated_makespan_s": round(makespan * plan.rows / plan.naive_rows, 1),
        "submissions": emu.counters(fingerprints=False)["submissions_total"],
    }


# --- report -------------------------------------------------------------------------------


def report(
    plan: Plan, submit: dict[str, Any], ours: dict[str, Any], naive: dict[str, Any]
) -> dict[str, Any]:
    """Print the figures; return them with the plan and the ratios."""
    bound = lower_bound_s(plan, plan.rows)
    ratio = ours["makespan_s"] / bound
    naive_ratio = naive["extrapolated_makespan_s"] / bound
    print(
        f"\nsubmit: {submit['rows']:,} rows validated and recorded in {submit['seconds']} s "
        f"({submit['rows_per_s']:,} rows/s); Redis +{submit['redis_bytes'] / 1e6:.1f} MB "
        f"({submit['redis_bytes_per_row']} B/row)"
    )
    print(
        f"\nmakespan of {plan.rows} rows x {len(STEPS)} steps of {plan.step_s:g} s; limits "
        f"{plan.submit_rate:g} submits/s, {plan.max_in_flight} in flight"
    )
    print(f"  lower bound max(S*G/C, S/R, 3G) = {bound:.1f} s")
    print(
        f"  ours : {ours['makespan_s']:.1f} s  ratio {ratio:.3f}  ({ours['done']} done, "
        f"{ours['failed']} failed, {ours['submissions']} submissions, "
        f"max {ours['max_in_flight_seen']} in flight at the emulator, "
        f"429s {ours['rejected_429']})"
    )
    print(
        f"  ours, mean per step: {ours['step_phases_s']} (queue_and_limits: from the "
        "previous step's end to this one's submission)"
    )
    print(
        f"  naive: {naive['makespan_s']:.1f} s for {naive['rows']} rows -> "
        f"{naive['extrapolated_makespan_s']:.1f} s extrapolated to {plan.rows} rows, "
        f"ratio {naive_ratio:.2f}"
    )
    print(f"  ours is {naive['extrapolated_makespan_s'] / ours['makespan_s']:.1f}x faster")
    return {
        "plan": asdict(plan),
        "submit": submit,
        "lower_bound_s": round(bound, 1),
        "ours": {**ours, "ratio": round(ratio, 3)},
        "naive": {**naive, "ratio": round(naive_ratio, 2)},
    }


def poller_main() -> None:
    """``producer-batch poller`` with its idle sleep scaled like the generation time.

    The service sleeps 0.5 s when no task is due; against 40-180 s generations that is
    noise, against the bench's 4 s it would be 6 % of every step.
    """
    import threading

    from pipelines.app import app
    from workers.completion.wiring import poller_for
    from workers.runtime import build_services
    from workers.settings import get_settings

    poller_for(build_services(get_settings()), app).run(threading.Event(), idle_sleep_s=0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 3 minutes")
    parser.add_argument("--poller", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.poller:
        poller_main()
        return 0
    plan = Plan.quick() if args.quick else Plan()
    with tempfile.TemporaryDirectory(prefix="bench-batches-") as name:
        tmp = Path(name)
        submit = bench_submit(plan, tmp)
        print(f"submit done: {submit}", flush=True)
        with EmulatorServer(emulator_config(plan)) as emu:
            ours = run_ours(plan, emu, tmp)
            print(f"ours done: {ours}", flush=True)
            naive = run_naive(plan, emu, tmp)
    figures = report(plan, submit, ours, naive)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
