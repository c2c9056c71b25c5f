"""The download budget: deadline, throughput floor, and its default from the time limit."""

from __future__ import annotations

import pytest

from workers.app import time_limit_s
from workers.settings import Settings, task_time_limit_s
from workers.storage import DownloadError
from workers.storage.deadline import DownloadBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("visibility", [5, 20, 600, 1800, 7200])
def test_default_deadline_follows_the_celery_time_limit(visibility: int) -> None:
    assert task_time_limit_s(visibility) == time_limit_s(visibility)
    settings = Settings(visibility_timeout_s=visibility)
    assert settings.effective_download_deadline_s == pytest.approx(0.8 * time_limit_s(visibility))
    assert Settings(download_deadline_s=7.0).effective_download_deadline_s == 7.0


def test_deadline_is_checked_on_every_read() -> None:
    clock = Clock()
    meter = DownloadBudget.starting_now(2.0, clock=clock).meter("http://cdn.example/a?sig=x")
    meter.check(1)
    clock.now += 2.0
    with pytest.raises(DownloadError, match="deadline") as late:
        meter.check(1)
    assert late.value.retryable and "sig=x" not in str(late.value)


def test_throughput_floor_is_judged_per_window() -> None:
    clock = Clock()
    budget = DownloadBudget.starting_now(60.0, min_bytes_per_s=100, window_s=1.0, clock=clock)
    meter = budget.meter("http://cdn.example/a")
    clock.now += 1.0
    meter.check(150)  # 150 B/s over the first window: fine, a new window starts
    clock.now += 0.5
    meter.check(10)  # the window is not over yet: not judged
    clock.now += 0.5
    with pytest.raises(DownloadError, match="too slow"):
        meter.check(10)  # 20 B over 1 s
