"""Ctrl-C typed in a real terminal stops ``producer-batch run`` quietly and quickly.

Issue 9 item 11: in a terminal, ^C goes to the whole foreground process group. The
embedded Redis server sat in that group, died first, and the worker, poller and
feeder printed ~540 lines with 20-40 Redis tracebacks over up to 33 s. The server now
runs in its own session (still dying with its parent), so the run stops its stack in
order. Driven through a pty: the terminal's own ^C, not a signal sent by hand.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "prompts.csv"
STOP_WITHIN_S = 8.0


def _take_terminal() -> None:
    # In the child, after setsid: make the pty (its stdin) the controlling terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (walking /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _read(master: int, until: float) -> bytes:
    out = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: every process holding it exited
                break
            if not chunk:
                break
            out += chunk
    return out


def test_ctrl_c_in_a_terminal_stops_everything_quietly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "REDIS_URL"))}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm")
    master, slave = pty.openpty()
    args = [sys.executable, "-m", "pipelines", "run", str(EXAMPLES), "-p", "generate-extend-stems"]
    proc = subprocess.Popen(
        [*args, "--time-scale", "0.5"],
        cwd=tmp_path,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,  # a session of its own, with the pty as its terminal
        preexec_fn=_take_terminal,
    )
    os.close(slave)
    try:
        output = b""
        deadline = time.monotonic() + 60
        while not list((tmp_path / "producer-results").glob("*/*/generate/*.wav")):
            assert proc.poll() is None and time.monotonic() < deadline, output[-3000:]
            output += _read(master, time.monotonic() + 0.1)
        children = _descendants(proc.pid)
        os.write(master, b"\x03")  # the terminal's ^C: SIGINT to the foreground group
        pressed = time.monotonic()
        output += _read(master, pressed + STOP_WITHIN_S + 2)
        code = proc.wait(timeout=STOP_WITHIN_S + 5)
        took = time.monotonic() - pressed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    text = output.decode(errors="replace")
    assert code == 130, text[-3000:]
    assert took < STOP_WITHIN_S, (took, text[-3000:])
    assert "Traceback" not in text and "Error" not in text, text[-5000:]
    time.sleep(0.5)
    assert [pid for pid in children if _alive(pid)] == []
