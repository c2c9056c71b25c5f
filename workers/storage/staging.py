"""Crash leftovers in staging: what a killed download leaves, and sweeping it away.

A download streams into ``.staging/<uuid>`` before its create-only rename (see
:mod:`workers.storage.store`). A worker killed mid-download leaves that partial
upload behind; on a local store obstore names it ``.staging/<uuid>#<n>`` and hides
it from listings. :class:`StagingSweeper` deletes such leftovers once at worker start
and then periodically, only when older than an age no running download can reach
(the task time limit plus a margin), so a download in progress is never swept.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Protocol

import structlog

__all__ = ["StagingSweeper", "sweep_local_dir"]

log = structlog.get_logger(__name__)


class _Sweepable(Protocol):
    def sweep_staging(self, *, older_than_s: float) -> int: ...


def sweep_local_dir(staging: Path, cutoff: float) -> int:
    """Delete the files in ``staging`` last modified before ``cutoff`` (epoch s); return count.

    Read from the file system itself: obstore's LocalStore writes an upload to
    ``<path>#<n>`` and its listings hide such names, so they are seen only here.
    """
    try:
        entries = list(os.scandir(staging))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):  # a concurrent sweep took it first
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
    return removed


class StagingSweeper:
    """Sweep a store's staging now and every ``every_s`` seconds, in a daemon thread."""

    def __init__(self, store: _Sweepable, *, older_than_s: float, every_s: float) -> None:
        self._store = store
        self._older_than_s = older_than_s
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="staging-sweeper", daemon=True)

    def start(self) -> StagingSweeper:
        """Start sweeping (the first sweep runs at once)."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sweeping and wait for a sweep in progress."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def sweep_once(self) -> int:
        """One sweep; a failure is logged, never raised (the next sweep tries again)."""
        try:
            removed = self._store.sweep_staging(older_than_s=self._older_than_s)
        except Exception as exc:  # a store outage must not stop the worker
            log.warning("staging_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            return 0
        if removed:
            log.info("staging_swept", removed=removed, older_than_s=self._older_than_s)
        return removed

    def _run(self) -> None:
        while True:
            self.sweep_once()
            if self._stop.wait(self._every_s):
                return
