"""A test session whose tests all pass ends with exit 0, whatever results they left behind.

Issue 9 item 12: results sent but never awaited stay subscribed to their task's channel.
Left in a reference cycle, they were finalised by pytest's last garbage collection,
after the session's embedded Redis had stopped: ``AsyncResult.__del__`` retried the dead
server for ~20 s, raised, and pytest failed the run (``PytestUnraisableExceptionWarning``).
The session fixture now releases them while the server still answers
(``tests/conftest.py`` ``release_results``). Checked with a session of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTEST = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")

INNER_TEST = """
import gc

from workers.app import create_app
from workers.settings import Settings


def test_results_left_in_a_cycle(redis_url: str) -> None:
    app = create_app(Settings(redis_url=redis_url), include=())
    cycle: list[object] = [app.send_task("nobody.runs.this") for _ in range(3)]
    cycle.append(cycle)  # freed only by the cycle collector
    gc.disable()  # as when no collection happens to run before the session ends
"""


def test_results_left_behind_do_not_fail_a_passing_session(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the embedded server
    env["PYTHONPATH"] = str(ROOT)
    started = time.monotonic()
    inner = subprocess.run(
        [*PYTEST, "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = inner.stdout + inner.stderr
    assert inner.returncode == 0, output[-3000:]
    assert "1 passed" in output and "Unraisable" not in output
    assert time.monotonic() - started < 15
