"""The README's first command on a machine with nothing configured: a real song on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path


def test_demo_writes_a_playable_song_extension_and_stems(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "REDIS_URL"))}
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "demo", "--out", str(out), "--time-scale", "0.02"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    songs = sorted(out.glob("adhoc/*/generate/*.wav"))
    extended = sorted(out.glob("adhoc/*/extend/*.wav"))
    assert len(songs) == 1 and len(extended) == 1
    meta = json.loads(next(out.glob("adhoc/*/generate/*.json")).read_text())
    with wave.open(str(songs[0])) as w:
        assert abs(w.getnframes() / w.getframerate() - meta["duration"]) < 0.01
    with wave.open(str(extended[0])) as w:
        assert w.getnframes() / w.getframerate() > meta["duration"]
    assert len(list(out.glob("adhoc/*/stems/*.zip"))) == 1
    assert "Stored under" in proc.stdout
