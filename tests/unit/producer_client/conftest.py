"""Fixtures for the client's unit tests (helpers live in ``pclient_support``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pclient_support import Harness, load_example

import producer_client._http as http_module


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest) -> Harness:
    """Each test using it runs once per client flavour."""
    return Harness(request.param)


@pytest.fixture(autouse=True)
def retry_delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records the delays the send loop would sleep, and sleeps none of them."""
    delays: list[float] = []
    real = http_module.retry_delay_s

    def record(attempt: int, retry_after_s: float | None) -> float:
        delays.append(real(attempt, retry_after_s))
        return 0.0

    monkeypatch.setattr(http_module, "retry_delay_s", record)
    return delays


@pytest.fixture
def example() -> Callable[[str], dict[str, Any]]:
    """``example("audios_stems.json")`` loads a documented payload file."""
    return load_example
