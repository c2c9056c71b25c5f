"""The README's main command on a machine with nothing configured, and Ctrl-C during it.

``producer-batch run examples/prompts.csv --pipeline generate-extend-stems`` in a
subprocess with no REDIS_URL and no token: embedded Redis, emulator, worker, poller,
feeder; every row's audio, cover, stems and the manifest under
``producer-results/<batch-id>/``; exit 0. Interrupted, it exits 130 and leaves no
process of its own behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "prompts.csv"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "REDIS_URL"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run_args(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines",
        "run",
        str(EXAMPLES),
        "--pipeline",
        "generate-extend-stems",
        *extra,
    ]


def test_the_readme_command_runs_the_example_batch(tmp_path: Path) -> None:
    proc = subprocess.run(
        _run_args("--time-scale", "0.02"),
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (batch_dir,) = [
        d for d in (tmp_path / "producer-results").iterdir() if not d.name.startswith(".")
    ]  # .sidecar/, .staging/: the store's own
    rows = len(EXAMPLES.read_text(encoding="utf-8").splitlines()) - 1
    lines = [json.loads(line) for line in (batch_dir / "manifest.jsonl").open()]
    assert sorted((line["row"], line["step"]) for line in lines) == sorted(
        (row, step) for row in range(1, rows + 1) for step in ("generate", "extend", "stems")
    )
    for artifact in (a for line in lines for a in line["artifacts"]):
        data = (tmp_path / "producer-results" / artifact["key"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    assert len(list(batch_dir.glob("*/generate/*.wav"))) == rows
    assert len(list(batch_dir.glob("*/generate/*.png"))) == rows
    assert len(list(batch_dir.glob("*/stems/*.zip"))) == rows
    assert (batch_dir / "manifest.csv").exists() and (batch_dir / "errors.csv").exists()
    assert f"{rows} / 0 / 0" in proc.stdout  # the summary: done / failed / cancelled


def test_ctrl_c_stops_everything_it_started(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _run_args("--time-scale", "0.2"),
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "producer-results").glob("*/*/generate/*.wav")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # no process of its group is left
        os.killpg(proc.pid, 0)
