"""``ArtifactStore.sweep_staging`` on a local store sees obstore's hidden partial uploads."""

from __future__ import annotations

import os
import time
from pathlib import Path

from workers.storage import ArtifactStore
from workers.storage.staging import StagingSweeper


def _aged(path: Path, age_s: float) -> Path:
    path.write_bytes(b"partial")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_old_partial_uploads_are_swept_and_young_ones_kept(tmp_path: Path) -> None:
    store = ArtifactStore.from_url(f"file://{tmp_path}")
    staging = tmp_path / ".staging"
    staging.mkdir()
    old_partial = _aged(staging / "0123abcd#4", 7200)  # obstore hides '#N' from listings
    old_whole = _aged(staging / "4567cdef", 7200)
    young = _aged(staging / "89abcdef#1", 10)
    assert store.sweep_staging(older_than_s=3600) == 2
    assert not old_partial.exists() and not old_whole.exists() and young.exists()


def test_the_sweeper_sweeps_at_once_and_a_failing_store_does_not_stop_it(tmp_path: Path) -> None:
    class Broken:
        def sweep_staging(self, *, older_than_s: float) -> int:
            raise OSError("store down")

    assert StagingSweeper(Broken(), older_than_s=1, every_s=60).sweep_once() == 0
    store = ArtifactStore.from_url(f"file://{tmp_path}")
    (tmp_path / ".staging").mkdir()
    leftover = _aged(tmp_path / ".staging" / "x#1", 100)
    sweeper = StagingSweeper(store, older_than_s=50, every_s=60).start()
    deadline = time.monotonic() + 5
    while leftover.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    sweeper.stop()
    assert not leftover.exists()
