"""A provider that names internal addresses or drip-feeds its files cannot hold or fool a worker.

A real Celery worker, the real emulator behind :class:`RewritingProvider`, which
rewrites the media URLs of every task record. Internal addresses (loopback in any
spelling, a redirect to one, credentials in the URL) are refused before a byte is
asked for; a drip-fed body ends at the download deadline or the throughput floor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from tests.integration.fleet import fleet
from tests.integration.malicious import (
    Internal,
    hostile_cdn,
    internal_service,
    rewriting_provider,
)
from workers.storage import DownloadError
from workers.storage.deadline import DownloadBudget, artifact_lock
from workers.storage.urlguard import allow_entry_for
from workers.tasks.audios import generate

# Generous for a loaded machine; an unbounded drip-fed download would take 2,000 s.
FAILS_WITHIN_S = 30


@contextmanager
def provider_fleet(
    redis_url: str, tmp_path: Path, rewrite: Callable[[str], str], **settings: Any
) -> Iterator[None]:
    """A fleet whose API replies go through a URL-rewriting proxy."""
    with (
        rewriting_provider(rewrite) as (proxy, proxy_url),
        fleet(redis_url, tmp_path, base_url=proxy_url, max_transient_retries=0, **settings) as f,
    ):
        proxy.target = f.emulator.url
        yield


def run_and_fail(prompt: str) -> tuple[str, float]:
    """Run one generation that must fail; return its error text and how long it took."""
    started = time.monotonic()
    pending = generate.delay(params={"prompt": prompt, "seed": "1"})
    with pytest.raises(Exception) as failed:  # the step's error, as Celery rebuilds it
        pending.get(timeout=FAILS_WITHIN_S)
    return str(failed.value), time.monotonic() - started


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture
def internal() -> Iterator[tuple[Internal, str]]:
    with internal_service() as served:
        yield served


CASES: dict[str, tuple[Callable[[str, str], str], str]] = {
    # name: ((internal URL, allowed CDN URL) -> what the provider names, words in the error)
    "loopback": (lambda url, _cdn: f"{url}/song.mp3", "loopback"),
    "decimal": (lambda url, _: f"http://2130706433:{_port(url)}/song.mp3", "loopback"),
    "ipv4-mapped": (lambda url, _: f"http://[::ffff:127.0.0.1]:{_port(url)}/s.mp3", "loopback"),
    "redirect": (lambda _url, cdn: f"{cdn}/redirect/song.mp3", "loopback"),
    # On the allowed CDN, so that the credentials are what is refused.
    "userinfo": (
        lambda _url, cdn: cdn.replace("http://", "http://user:secret@") + "/redirect/s.mp3",
        "credentials",
    ),
}


def test_internal_addresses_are_never_fetched(
    redis_url: str, tmp_path: Path, internal: tuple[Internal, str]
) -> None:
    handler, internal_url = internal
    errors: dict[str, str] = {}
    current = {"url": ""}
    with (
        hostile_cdn(redirect_to=f"{internal_url}/song.mp3") as cdn,
        # One fleet for all cases; the CDN is allowed by name (it is on loopback too).
        provider_fleet(
            redis_url,
            tmp_path,
            lambda _url: current["url"],
            download_allow_hosts=[allow_entry_for(cdn)],
        ),
    ):
        for case, (make_url, _) in CASES.items():
            current["url"] = make_url(internal_url, cdn)
            errors[case], _took = run_and_fail(f"fetch {case}")
    for case, (_, expected) in CASES.items():
        assert "refusing" in errors[case] and expected in errors[case], (case, errors[case])
        assert "secret" not in errors[case]
    assert handler.hits == 0
    assert handler.authorizations == []


def test_drip_fed_body_ends_at_the_download_deadline(redis_url: str, tmp_path: Path) -> None:
    with (
        hostile_cdn(redirect_to="http://unused.invalid/", drip_interval_s=0.2) as cdn,
        provider_fleet(
            redis_url,
            tmp_path,
            lambda _url: f"{cdn}/drip/song.mp3",
            download_allow_hosts=[allow_entry_for(cdn)],
            download_deadline_s=1.5,
            download_min_bytes_per_s=0,
        ),
    ):
        error, took_s = run_and_fail("one byte at a time")
    assert "deadline" in error, error
    assert took_s < 1.5 + 12  # the deadline, plus submit, poll and a loaded machine's time


def test_drip_fed_body_ends_at_the_throughput_floor(redis_url: str, tmp_path: Path) -> None:
    with (
        hostile_cdn(redirect_to="http://unused.invalid/", drip_interval_s=0.05) as cdn,
        provider_fleet(
            redis_url,
            tmp_path,
            lambda _url: f"{cdn}/drip/song.mp3",
            download_allow_hosts=[allow_entry_for(cdn)],
            download_min_bytes_per_s=1000,
            download_throughput_window_s=0.5,
        ),
    ):
        error, took_s = run_and_fail("a trickle")
    assert "too slow" in error, error
    assert took_s < 0.5 + 12


def test_one_download_of_an_artifact_at_a_time(redis_client: redis.Redis) -> None:
    budget = DownloadBudget.starting_now(3.0)
    with artifact_lock(redis_client, "b/1/generate/a.wav", budget):
        ttl = redis_client.pttl("producer:download-lock:b/1/generate/a.wav")
        with (
            pytest.raises(DownloadError, match="being downloaded") as second,
            artifact_lock(redis_client, "b/1/generate/a.wav", budget, wait_s=0.1),
        ):
            pass
        with artifact_lock(redis_client, "b/1/generate/other.wav", budget):
            pass  # another artifact is not held up
    assert second.value.retryable
    assert 0 < ttl <= (3.0 + 30.0) * 1000  # the holder's deadline plus the commit margin
    with artifact_lock(redis_client, "b/1/generate/a.wav", budget):
        pass  # released on exit
