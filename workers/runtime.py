"""The services a worker process uses, built once from settings.

Tasks never build clients themselves: they ask :func:`get_services`, which
builds the Producer client, limiter, ledger, artifact store and continuation
store on first use *in this process* (a prefork child builds its own after the
fork, so no socket is shared across processes). Tests and the local run install
their own with :func:`set_services`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import httpx
import redis

from producer_client import Producer
from workers.completion.continuations import ContinuationStore
from workers.ledger import Ledger
from workers.ratelimit import Limiter, LimiterDefaults, RedisBackend, token_id_for, tuning_for
from workers.settings import Settings, get_settings
from workers.storage import ArtifactStore
from workers.storage.urlguard import guarded_client


class ConfigurationError(RuntimeError):
    """The settings do not allow a worker to run (the message says which variable)."""


@dataclass
class Services:
    """Everything a step needs, for one API token."""

    settings: Settings
    redis: redis.Redis
    client: Producer
    limiter: Limiter
    ledger: Ledger
    store: ArtifactStore
    continuations: ContinuationStore
    downloads: httpx.Client
    token_id: str
    callback_secret: bytes | None

    def close(self) -> None:
        """Close network clients (the Redis pool closes with the client)."""
        self.client.close()
        self.downloads.close()
        self.redis.close()


def build_services(settings: Settings) -> Services:
    """Build the services for ``settings``; raises :class:`ConfigurationError` if incomplete."""
    if not settings.redis_url:
        raise ConfigurationError("REDIS_URL is not set: workers keep their state in Redis")
    if settings.api_token is None:
        raise ConfigurationError("PRODUCER_API_TOKEN is not set: the workers cannot call the API")
    if settings.public_base_url and settings.callback_secret is None:
        raise ConfigurationError(
            "PRODUCER_PUBLIC_BASE_URL is set but PRODUCER_CALLBACK_SECRET is not: every worker "
            "and the receiver must share the secret that signs callback URLs"
        )
    client = redis.Redis.from_url(settings.redis_url)
    token = settings.api_token.get_secret_value()
    secret = settings.callback_secret
    return Services(
        settings=settings,
        redis=client,
        # No client-side retries: every 429 must reach the shared limiter, and the
        # workers decide retries with the ledger's knowledge of what was paid.
        client=Producer(
            api_token=token,
            base_url=settings.base_url,
            timeout_s=settings.http_timeout_s,
            max_retries=0,
        ),
        limiter=Limiter(
            RedisBackend(client),
            defaults=LimiterDefaults.from_settings(settings),
            tuning=tuning_for(settings),
        ),
        ledger=Ledger(client),
        store=ArtifactStore.from_settings(settings),
        continuations=ContinuationStore(client),
        # Artifact URLs come from outside: only public addresses, or hosts allowed by name.
        downloads=guarded_client(
            timeout_s=settings.http_timeout_s, allow_hosts=settings.download_allow_hosts
        ),
        token_id=token_id_for(token),
        callback_secret=None if secret is None else secret.get_secret_value().encode(),
    )


_lock = threading.Lock()
_current: tuple[int, Services] | None = None


def get_services() -> Services:
    """The services of this process, built from the environment on first use."""
    global _current
    with _lock:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), build_services(get_settings()))
        return _current[1]


def set_services(services: Services | None) -> None:
    """Install ``services`` for this process (tests, the local run); None forgets them."""
    global _current
    with _lock:
        _current = None if services is None else (os.getpid(), services)
