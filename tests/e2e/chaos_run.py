"""One chaos run of the whole fleet as processes, from CSV to the invariant check.

:func:`run_chaos` starts its own Redis (AOF on), the emulator (in this process, with
the plan's faults), the fleet processes of :mod:`tests.e2e.fleet_procs`, submits a
batch with ``producer-batch submit``, SIGKILLs and restarts the processes the plan
names in turn, waits until every batch has ended, and returns the figures with the
:func:`tests.e2e.invariants.check_fleet` report. Used by the standing chaos tests and
by ``bench/soak.py``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from pipelines.batches.state import BatchState
from pipelines.batches.status import batch_status
from producer_emulator import EmulatorConfig, EmulatorServer
from tests.e2e.fleet_procs import (
    PRODUCER_BATCH,
    ROOT,
    ProcFleet,
    RedisServer,
    cli,
    fleet_env,
    free_port,
    service_commands,
    write_csv,
)
from tests.e2e.invariants import FleetReport, check_fleet, settled_counters

SCHEDULE = "chaos-tick"


@dataclass
class ChaosPlan:
    """What to run and what to break."""

    rows: int
    emulator: EmulatorConfig
    pipeline: str = "generate-extend-stems"
    settings: dict[str, str] = field(default_factory=dict)
    """Extra ``PRODUCER_*`` settings of every process (key without the prefix)."""
    kill_order: tuple[str, ...] = ()
    """Process names SIGKILLed (and restarted) in turn, ``kill_rounds`` times."""
    kill_rounds: int = 1
    kill_every_s: float = 1.5
    stop_kills_when_done: bool = False
    """Stop killing once every batch ended (the soak: kills span the run, not beyond)."""
    callbacks: bool = False
    beat_every_s: int | None = None
    """A schedule firing every this many seconds (a 1-row batch each) while kills run."""
    concurrency: int = 4
    finish_budget_s: float = 120.0
    settle_budget_s: float = 20.0


@dataclass
class ChaosResult:
    """The figures of a run."""

    batch_id: str = ""
    kills: dict[str, int] = field(default_factory=dict)
    submitted_s: float = 0.0
    last_kill_s: float = 0.0
    finished_s: float | None = None
    wall_s: float = 0.0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    batches: list[str] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    report: FleetReport = field(default_factory=FleetReport)
    not_terminal: dict[str, int] = field(default_factory=dict)

    @property
    def recovery_s(self) -> float | None:
        """From the last kill to the end of the last batch."""
        return None if self.finished_s is None else max(0.0, self.finished_s - self.last_kill_s)

    def figures(self) -> dict[str, Any]:
        """Everything as plain data (for ``--json`` and printed reports)."""
        counters = {k: v for k, v in self.counters.items() if k != "submissions_by_fingerprint"}
        return {
            "batch_id": self.batch_id,
            "batches": len(self.batches),
            "kills": self.kills,
            "submitted_s": round(self.submitted_s, 1),
            "last_kill_s": round(self.last_kill_s, 1),
            "finished_s": None if self.finished_s is None else round(self.finished_s, 1),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 1),
            "wall_s": round(self.wall_s, 1),
            "peak_rss_mib": self.peak_rss_mib,
            "not_terminal_rows_by_state": self.not_terminal,
            "invariants": self.report.figures(),
            "violations": self.report.violations,
            "emulator": counters,
        }


def run_chaos(plan: ChaosPlan, workdir: Path, *, check: bool = True) -> ChaosResult:
    """Run ``plan`` in ``workdir``; with ``check``, fail on any invariant violation."""
    storage, logs, data = workdir / "store", workdir / "logs", workdir / "redis"
    for folder in (storage, logs, data):
        folder.mkdir(parents=True, exist_ok=True)
    result = ChaosResult()
    start = time.monotonic()
    with ExitStack() as stack:
        server = RedisServer(data, logs / "redis.log")
        server.start()
        stack.callback(server.stop, signal.SIGKILL)
        emu = stack.enter_context(EmulatorServer(plan.emulator))
        port = free_port() if plan.callbacks else None
        env = fleet_env(server.url, emu.url, storage, receiver_port=port, settings=plan.settings)
        beat_dir = workdir if plan.beat_every_s is not None else None
        if plan.beat_every_s is not None:
            _add_schedule(env, workdir, plan.beat_every_s)
        commands = service_commands(
            receiver_port=port, beat_dir=beat_dir, concurrency=plan.concurrency
        )
        fleet = stack.enter_context(ProcFleet(env, logs, commands))
        csv = write_csv(workdir / "rows.csv", plan.rows)
        result.batch_id = cli(env, "submit", str(csv), "--pipeline", plan.pipeline)["batch_id"]
        result.submitted_s = time.monotonic() - start
        with _sampling(fleet):
            _kill_in_turn(plan, fleet, result, start, server.url)
            if plan.beat_every_s is not None:
                _run_cli(env, "schedules", "remove", SCHEDULE)
            result.finished_s = _wait_finished(server.url, plan.finish_budget_s, start)
            fleet.assert_alive("at the end")
            counters = settled_counters(emu.counters, server.url, storage, plan.settle_budget_s)
        result.counters = counters
        result.kills = {name: proc.kills for name, proc in fleet.procs.items()}
        result.peak_rss_mib = {
            name: round(proc.peak_rss_kib / 1024, 1) for name, proc in fleet.procs.items()
        }
        with redis.Redis.from_url(server.url) as r:
            result.batches = BatchState(r).batch_ids(limit=10_000)
        result.not_terminal = _not_terminal(server.url, result.batches)

        client = stack.enter_context(redis.Redis.from_url(server.url))

        def status_of(batch_id: str) -> dict[str, Any] | None:
            # The main batch's spend as the operator reads it (the CLI); the scheduled
            # ones through the same function in-process (a subprocess each is slow).
            if batch_id == result.batch_id:
                return cli(env, "status", batch_id)
            return batch_status(client, batch_id)

        result.report = check_fleet(
            server.url,
            storage,
            counters,
            batch_ids=result.batches,
            status_of=status_of,
            raise_on_violation=False,
        )
        result.wall_s = time.monotonic() - start
        if check and result.report.violations:
            listed = "\n".join(f"  - {v}" for v in result.report.violations)
            raise AssertionError(
                f"{len(result.report.violations)} invariant violations:\n{listed}\n"
                f"figures: {result.figures()}\n{fleet.tails()}"
            )
    return result


def _add_schedule(env: dict[str, str], workdir: Path, every_s: int) -> None:
    csv = write_csv(workdir / "tick.csv", 1, tag="scheduled")
    _run_cli(
        env, "schedules", "add", SCHEDULE, "--pipeline", "generate", "--csv", str(csv),
        "--every", f"{every_s}s",
    )  # fmt: skip


def _run_cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [*PRODUCER_BATCH, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"producer-batch {' '.join(args)}: {done.stderr[-2000:]}"


@contextmanager
def _sampling(fleet: ProcFleet) -> Iterator[None]:
    """Sample the processes' RSS every half second in a thread."""
    import threading

    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            fleet.sample_rss()

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _kill_in_turn(
    plan: ChaosPlan, fleet: ProcFleet, result: ChaosResult, start: float, redis_url: str
) -> None:
    """Kill and restart the named processes in turn; stop early once every batch ended."""
    for _ in range(plan.kill_rounds):
        for name in plan.kill_order:
            time.sleep(plan.kill_every_s)
            if plan.stop_kills_when_done and _all_finished(redis_url):
                return
            fleet.assert_alive(f"before killing {name}")
            fleet.procs[name].restart()
            result.last_kill_s = time.monotonic() - start


def _all_finished(redis_url: str) -> bool:
    with redis.Redis.from_url(redis_url) as client:
        state = BatchState(client)
        ids = state.batch_ids(limit=10_000)
        records = [state.record(b) or {} for b in ids]
    return bool(ids) and all(r.get("status") in ("finished", "cancelled") for r in records)


def _wait_finished(redis_url: str, budget_s: float, start: float) -> float | None:
    """Seconds from ``start`` until every batch has ended (None: not within the budget)."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        if _all_finished(redis_url):
            return time.monotonic() - start
        time.sleep(0.5)
    return None


def _not_terminal(redis_url: str, batches: list[str]) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    state = BatchState(client)
    found: dict[str, int] = {}
    for batch_id in batches:
        for byte in state.states(batch_id)[1:]:
            letter = chr(byte)
            if letter not in "df":
                found[letter] = found.get(letter, 0) + 1
    client.close()
    return found
