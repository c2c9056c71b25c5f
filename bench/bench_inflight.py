"""In-flight capacity of one worker process: our non-blocking steps against a blocking task.

    python -m bench.bench_inflight            # 2,500 generations of 120 s (x0.5: 60 s real)
    python -m bench.bench_inflight --quick    # 300 generations of 120 s (x0.1: 12 s real)

Uses ``REDIS_URL`` (its database is FLUSHED) or an embedded server. The emulator runs
in this process with no submit limit and no concurrency cap, and enforces the
provider's 1 poll/s per token. Two runs, one after the other:

* **ours**: ONE worker process (``celery -A pipelines.app worker --pool threads -c 8``)
  gets N ``producer.generate`` tasks; each submits in async mode, saves its
  continuation and ends, so the pool is free again at once. The central poller (a
  thread here, default settings: 1 poll/s, 50 ids per poll) finishes them. Measured:
  peak generations in flight at the emulator, the worker's peak RSS (``VmHWM``), task
  messages held in the broker (queued, unacked, unacked with an ETA), and the poll rate
  seen by the emulator (sliding 1 s windows; the provider answers 429 above 1/s).
* **naive**: a task that blocks in the synchronous ``Producer.audios.create`` on a
  prefork worker with concurrency 8: in flight = pool size.

Prints a table with ratios; figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producer_client import Producer
from producer_emulator import EmulatorConfig, EmulatorServer
from workers.embedded_redis import EmbeddedRedis
from workers.logging import configure_logging
from workers.storage.urlguard import allow_entry_for

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-inflight-token"
NAIVE_TASK = "bench.naive_generate"
NAIVE_QUEUE = "naive"
POOL = 8
SAMPLE_EVERY_S = 0.5


@dataclass(frozen=True)
class Plan:
    """Sizes and times of one run."""

    generations: int = 2500
    time_scale: float = 0.5
    generation_s: float = 120.0
    naive_tasks: int = 100
    naive_observe_s: float = 20.0
    tail_s: float = 20.0
    """After the last submission: keep watching (completions, polls) this long."""

    @property
    def generation_real_s(self) -> float:
        return self.generation_s * self.time_scale

    @classmethod
    def quick(cls) -> Plan:
        return cls(generations=300, time_scale=0.1, naive_tasks=40, naive_observe_s=8.0, tail_s=8.0)


@dataclass
class Sample:
    """The highest values seen while a run was watched."""

    in_flight: int = 0
    rss_hwm_kb: int = 0
    queued: int = 0
    unacked: int = 0
    eta: int = 0
    at_peak_s: float = 0.0


@dataclass
class Figures:
    """What one design achieved."""

    name: str
    peak: Sample = field(default_factory=Sample)
    baseline_rss_kb: int = 0
    submissions: int = 0
    completed: int = 0
    polls: int = 0
    poll_max_per_s: int = 0
    poll_429: int = 0
    poll_min_gap_s: float = 0.0
    duration_s: float = 0.0


# --- the naive design: one blocking call per task --------------------------------------

naive_app = Celery("naive")
naive_app.conf.update(
    broker_url=os.environ.get("REDIS_URL"),
    result_backend=None,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=NAIVE_QUEUE,
    accept_content=["json"],
)


@naive_app.task(name=NAIVE_TASK)
def naive_generate(prompt: str) -> str:
    """Submit synchronously and hold the worker slot until the song is done."""
    timeout_s = float(os.environ.get("BENCH_TIMEOUT_S", "600"))
    with Producer(
        api_token=TOKEN,
        base_url=os.environ["PRODUCER_BASE_URL"],
        timeout_s=timeout_s,
        max_retries=0,
    ) as client:
        result = client.audios.create({"action": "generate", "prompt": prompt}, timeout_s=timeout_s)
    return str(result.task_id)


# --- plumbing -----------------------------------------------------------------------------


def status_kb(pid: int, field_name: str) -> int:
    """A ``/proc/<pid>/status`` figure in kB (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_hwm_kb(pid: int) -> int:
    """Peak RSS of a process plus its direct children (prefork pool processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    return sum(status_kb(p, "VmHWM") for p in [pid, *kids])


def broker_messages(client: redis.Redis, queue: str) -> tuple[int, int, int]:
    """``(queued, unacked, unacked with an ETA)`` task messages in the broker."""
    held = client.hvals("unacked")
    eta = sum(1 for raw in held if json.loads(raw)[0]["headers"].get("eta"))
    return int(client.llen(queue)), len(held), eta


def poll_windows(requests: list[dict[str, Any]]) -> tuple[int, int, int, float]:
    """``(polls, most in any sliding 1 s window, 429 answers, smallest gap s)`` of polls."""
    times = sorted(r["t"] for r in requests if r["path"] == "/producer/tasks")
    gap = min((b - a for a, b in itertools.pairwise(times)), default=0.0)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        most = max(most, hi - lo + 1)
    rejected = sum(1 for r in requests if r["path"] == "/producer/tasks" and r["status"] == 429)
    return len(times), most, rejected, gap


@contextmanager
def redis_url() -> Iterator[str]:
    """``REDIS_URL`` when set, else an embedded server for the run."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@contextmanager
def worker(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a worker process for the block; kill it (and its pool) after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


def wait_ready(app: Celery, name: str, budget_s: float = 60.0) -> None:
    """Until the worker answers a ping."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if any(name in str(r) for r in replies):
            return
    raise RuntimeError(f"worker {name} did not start")


def emulator_config(plan: Plan) -> EmulatorConfig:
    """No submit limit or concurrency cap; the provider's 1 poll/s (default burst); tiny songs."""
    return EmulatorConfig(
        tokens=[TOKEN],
        generation_s=plan.generation_s,
        generation_jitter_s=0.0,
        time_scale=plan.time_scale,
        submit_rate_per_s=None,
        max_concurrency=None,
        poll_rate_per_s=1.0,
        preview_fraction=None,
        sample_rate=8000,
        song_low_s=2.0,
        song_high_s=4.0,
        seed=1,
        request_log_size=500_000,
    )


def worker_env(url: str, emu_url: str, storage: Path, plan: Plan) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": url,
        "PRODUCER_API_TOKEN": TOKEN,
        "PRODUCER_BASE_URL": emu_url,
        "PRODUCER_DOWNLOAD_ALLOW_HOSTS": allow_entry_for(emu_url),
        "PRODUCER_STORAGE_URL": f"file://{storage}",
        "PRODUCER_SUBMIT_RATE_PER_S": "1000",
        "PRODUCER_SUBMIT_BURST": "200",
        "PRODUCER_MAX_IN_FLIGHT": "100000",
        "PRODUCER_LOG_LEVEL": "WARNING",
        "PRODUCER_LOG_JSON": "true",
        "BENCH_TIMEOUT_S": str(plan.generation_real_s + 60),
    }


class Watcher:
    """Samples the emulator, the worker and the broker every half second."""

    def __init__(self, emu: EmulatorServer, client: redis.Redis, pid: int, queue: str) -> None:
        self.emu, self.client, self.pid, self.queue = emu, client, pid, queue
        self.peak = Sample()
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def sample(self) -> None:
        counters = self.emu.counters(fingerprints=False)
        queued, unacked, eta = broker_messages(self.client, self.queue)
        p = self.peak
        if counters["in_flight"] > p.in_flight:
            p.in_flight, p.at_peak_s = counters["in_flight"], time.monotonic() - self.start
        p.rss_hwm_kb = max(p.rss_hwm_kb, tree_hwm_kb(self.pid))
        p.queued, p.unacked, p.eta = max(p.queued, queued), max(p.unacked, unacked), max(p.eta, eta)


# --- the two runs --------------------------------------------------------------------------


def run_ours(plan: Plan, url: str, emu: EmulatorServer, tmp: Path) -> Figures:
    """N generations through one threads worker and the central poller."""
    from pipelines.app import app
    from workers.completion.wiring import poller_for
    from workers.runtime import build_services
    from workers.settings import Settings
    from workers.tasks.audios import generate

    env = worker_env(url, emu.url, tmp / "store", plan)
    app.conf.update(broker_url=url, result_backend=url)
    svc = build_services(
        Settings(
            api_token=TOKEN, base_url=emu.url, redis_url=url, storage_url=f"file://{tmp / 'store'}"
        )
    )
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
        str(POOL),
        "-n",
        "ours@%h",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "WARNING",
    ]
    figures = Figures("ours: async submit + continuation, threads -c 8")
    stop = threading.Event()
    with ExitStack() as stack:
        proc = stack.enter_context(worker(command, env, tmp / "ours.log"))
        wait_ready(app, "ours@")
        figures.baseline_rss_kb = status_kb(proc.pid, "VmRSS")
        poller = threading.Thread(target=poller_for(svc, app).run, args=(stop,), daemon=True)
        poller.start()
        stack.callback(poller.join, 10)
        stack.callback(stop.set)
        watcher = stack.enter_context(Watcher(emu, svc.redis, proc.pid, "celery"))
        for i in range(plan.generations):
            generate.apply_async(kwargs={"params": {"prompt": f"in flight {i}", "seed": str(i)}})
        submitted_at = _wait_submitted(emu, plan.generations, plan.generation_real_s + 120)
        time.sleep(max(0.0, plan.generation_real_s - submitted_at) + plan.tail_s)
        watcher.sample()
        figures.peak, figures.duration_s = watcher.peak, time.monotonic() - watcher.start
        figures.completed = sum(1 for _ in svc.ledger.scan("task/") if _.state.value == "done")
    _finish(figures, emu, watcher.start)
    svc.close()
    return figures


def _wait_submitted(emu: EmulatorServer, n: int, budget_s: float) -> float:
    """Seconds until the emulator accepted ``n`` submissions (or the budget ran out)."""
    start = time.monotonic()
    while time.monotonic() - start < budget_s:
        if emu.counters(fingerprints=False)["submissions_total"] >= n:
            break
        time.sleep(0.25)
    return time.monotonic() - start


def run_naive(plan: Plan, url: str, emu: EmulatorServer, tmp: Path) -> Figures:
    """Blocking tasks on a prefork worker with concurrency 8."""
    emu.reset(keep_config=True)
    env = worker_env(url, emu.url, tmp / "store", plan)
    naive_app.conf.update(broker_url=url)
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.bench_inflight:naive_app",
        "worker",
        "--pool",
        "prefork",
        "-c",
        str(POOL),
        "-Q",
        NAIVE_QUEUE,
        "-n",
        "naive@%h",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "WARNING",
    ]
    figures = Figures("naive: blocking audios.create, prefork -c 8")
    client = redis.Redis.from_url(url)
    with worker(command, {**env, "REDIS_URL": url}, tmp / "naive.log") as proc:
        wait_ready(naive_app, "naive@")
        figures.baseline_rss_kb = tree_hwm_kb(proc.pid)
        with Watcher(emu, client, proc.pid, NAIVE_QUEUE) as watcher:
            for i in range(plan.naive_tasks):
                naive_generate.apply_async(args=[f"blocking {i}"], queue=NAIVE_QUEUE)
            time.sleep(plan.naive_observe_s)
            watcher.sample()
        figures.peak, figures.duration_s = watcher.peak, time.monotonic() - watcher.start
    _finish(figures, emu, watcher.start)
    client.close()
    return figures


def _finish(figures: Figures, emu: EmulatorServer, started_mono: float) -> None:
    counters = emu.counters(fingerprints=False)
    figures.submissions = counters["submissions_total"]
    since = time.time() - (time.monotonic() - started_mono)
    polls = poll_windows(emu.requests(since))
    figures.polls, figures.poll_max_per_s, figures.poll_429, figures.poll_min_gap_s = polls


# --- report --------------------------------------------------------------------------------


def report(plan: Plan, ours: Figures, naive: Figures) -> None:
    """Print the table and the ratios."""
    mb = 1024.0
    print(
        f"\nin-flight capacity: {plan.generations} generations of {plan.generation_s:g} s "
        f"(x{plan.time_scale:g} = {plan.generation_real_s:g} s real), one worker process\n"
    )
    head = f"{'design':<48}{'peak in flight':>15}{'RSS peak MB':>12}{'RSS idle MB':>12}"
    print(head + f"{'queued':>8}{'unacked':>8}{'ETA':>6}{'polls':>7}{'max/1s':>7}{'429':>5}")
    for f in (ours, naive):
        p = f.peak
        print(
            f"{f.name:<48}{p.in_flight:>15}{p.rss_hwm_kb / mb:>12.1f}"
            f"{f.baseline_rss_kb / mb:>12.1f}{p.queued:>8}{p.unacked:>8}{p.eta:>6}"
            f"{f.polls:>7}{f.poll_max_per_s:>7}{f.poll_429:>5}"
        )
    ratio = ours.peak.in_flight / max(1, naive.peak.in_flight)
    per_task = (ours.peak.rss_hwm_kb - ours.baseline_rss_kb) / max(1, ours.peak.in_flight)
    print(
        f"\nin flight, ours / naive: {ratio:.0f}x  "
        f"(peak reached {ours.peak.at_peak_s:.0f} s after the first publish)"
    )
    print(
        f"ours: {ours.submissions} submissions, {ours.completed} collected in "
        f"{ours.duration_s:.0f} s; RSS growth {per_task:.1f} kB per generation in flight; "
        f"poll rate {ours.polls / max(ours.duration_s, 1):.2f}/s mean, at most "
        f"{ours.poll_max_per_s} in any 1 s (smallest gap {ours.poll_min_gap_s:.3f} s as "
        f"received), {ours.poll_429} polls refused"
    )
    print(
        f"naive: {naive.submissions} submissions in {naive.duration_s:.0f} s, "
        f"{plan.naive_tasks - naive.peak.in_flight} of {plan.naive_tasks} tasks queued "
        f"behind the blocked pool"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 generations, 12 s each")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    configure_logging(json=False, level="WARNING")  # the poller's rounds would drown the table
    with ExitStack() as stack:
        url = stack.enter_context(redis_url())
        redis.Redis.from_url(url).flushdb()
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-inflight-")))
        emu = stack.enter_context(EmulatorServer(emulator_config(plan)))
        ours = run_ours(plan, url, emu, tmp)
        redis.Redis.from_url(url).flushdb()
        naive = run_naive(plan, url, emu, tmp)
        redis.Redis.from_url(url).flushdb()
    report(plan, ours, naive)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
