"""Stream a large HTTP body into a file:// store and watch memory and throughput.

    python -m bench.bench_streaming            # 500 MB
    python -m bench.bench_streaming --quick    # 32 MB
    python bench/bench_streaming.py --size-mb 200

A child process serves a generated body on a loopback port (one 1 MiB block repeated:
never the whole body in RAM). This process streams it through
``ArtifactStore.store_from_url`` into a temporary ``file://`` store while a thread samples
``VmRSS`` from ``/proc/self/status``; then it times a plain ``shutil.copyfile`` of a
same-size file and a download that discards the bytes, for the ratios. Goal: peak RSS
growth <= 64 MB whatever the size. Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.storage import ArtifactStore

MIB = 1024 * 1024
BLOCK = hashlib.sha256(b"producer").digest() * (MIB // 32)  # 1 MiB, deterministic
RSS_GOAL_MB = 64


def _serve(size: int, conn: Connection) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # "/warm" serves 1 MiB for the warm-up; everything else the full body.
            length = MIB if self.path == "/warm" else size
            self.send_response(200)
            self.send_header("content-type", "audio/mpeg")
            self.send_header("content-length", str(length))
            self.end_headers()
            full, rest = divmod(length, MIB)
            for _ in range(full):
                self.wfile.write(BLOCK)
            self.wfile.write(BLOCK[:rest])

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    conn.send(server.server_address[1])
    server.serve_forever()


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Sample this process's resident set every few ms and keep the peak."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s = every_s
        self.baseline = _rss_bytes()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MIB


def _timed(action: Callable[[], Any]) -> tuple[Any, float, float]:
    with RssSampler() as rss:
        start = time.perf_counter()
        value = action()
        elapsed = time.perf_counter() - start
    return value, elapsed, rss.growth_mb


def _expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    full, rest = divmod(size, MIB)
    for _ in range(full):
        digest.update(BLOCK)
    digest.update(BLOCK[:rest])
    return digest.hexdigest()


def _download_only(http: httpx.Client, url: str) -> int:
    total = 0
    with http.stream("GET", url) as response:
        for chunk in response.iter_bytes(MIB):
            total += len(chunk)
    return total


def _plain_copy(workdir: Path, size: int) -> float:
    source, target = workdir / "copy-src.bin", workdir / "copy-dst.bin"
    with open(source, "wb") as out:
        for _ in range(size // MIB):
            out.write(BLOCK)
        out.write(BLOCK[: size % MIB])
    start = time.perf_counter()
    shutil.copyfile(source, target)
    elapsed = time.perf_counter() - start
    source.unlink()
    target.unlink()
    return elapsed


def run(size_mb: int) -> dict[str, float]:
    """Run the benchmark for a ``size_mb`` body and return its figures."""
    size = size_mb * MIB
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(size, child), daemon=True)
    server.start()
    port = parent.recv()
    url = f"http://127.0.0.1:{port}/song.mp3"
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp,
            httpx.Client(timeout=120) as http,
        ):
            store = ArtifactStore.from_url(f"file://{tmp}/store", max_bytes=size + 1)
            # Warm up obstore's runtime and httpx's pool so the baseline includes them.
            warm = f"http://127.0.0.1:{port}/warm"
            store.store_from_url(warm, "warm.mp3", http_client=http)
            _download_only(http, warm)
            stored, stream_s, stream_mb = _timed(
                lambda: store.store_from_url(url, "b/0/generate/song.mp3", http_client=http)
            )
            _, http_s, http_mb = _timed(lambda: _download_only(http, url))
            copy_s = _plain_copy(Path(tmp), size)
            if stored.size != size or stored.sha256 != _expected_sha256(size):
                raise SystemExit("stored object does not match the served body")
    finally:
        server.terminate()
        server.join()
    return {
        "size_mb": size_mb,
        "stream_s": stream_s,
        "stream_rss_mb": stream_mb,
        "http_only_s": http_s,
        "http_only_rss_mb": http_mb,
        "copy_s": copy_s,
    }


def _report(f: dict[str, float]) -> None:
    size = f["size_mb"]
    print(f"body: {size:.0f} MB served on loopback, streamed into file:// (sha256 verified)")
    print(
        f"  store_from_url : {f['stream_s']:6.2f} s  {size / f['stream_s']:7.1f} MB/s  "
        f"peak RSS growth {f['stream_rss_mb']:5.1f} MB (goal <= {RSS_GOAL_MB})"
    )
    print(
        f"  download only  : {f['http_only_s']:6.2f} s  {size / f['http_only_s']:7.1f} MB/s  "
        f"peak RSS growth {f['http_only_rss_mb']:5.1f} MB"
    )
    print(f"  shutil.copyfile: {f['copy_s']:6.2f} s  {size / f['copy_s']:7.1f} MB/s")
    print(f"  ratio store_from_url / download only = {f['stream_s'] / f['http_only_s']:.2f}x")
    print(f"  ratio store_from_url / copyfile      = {f['stream_s'] / f['copy_s']:.2f}x")
    verdict = "OK" if f["stream_rss_mb"] <= RSS_GOAL_MB else "ABOVE GOAL"
    print(f"  memory: {verdict}")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="body size (default 500)")
    parser.add_argument("--quick", action="store_true", help="32 MB instead")
    args = parser.parse_args(argv)
    print(f"pid {os.getpid()}, python {sys.version.split()[0]}")
    _report(run(32 if args.quick else args.size_mb))


if __name__ == "__main__":
    main()
