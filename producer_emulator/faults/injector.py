"""Fault injection: decide, per request, which failures to act out.

A :class:`FaultPlan` is drawn once when a request arrives, from the rules
first (deterministic: a rule whose ``when`` matches the body always fires)
and then from the probabilities of :class:`FaultConfig`, using one
``random.Random`` seeded from the config so a run can be replayed.

What each fault does is decided by the code acting on the plan:

* HTTP faults (``api_error_500``, ``timeout_504``, ``malformed_body``, the
  rule-only ``too_many_requests_429``/``forbidden_403``/``used_up_403``)
  replace the reply. ``api_error_500`` and the rule-only ones happen before
  anything is created; ``timeout_504`` (by default) and ``malformed_body``
  happen after the task was created, as when a reply is lost on the way back.
* Task faults end a generation with ``success: false``.
* Callback faults drop or duplicate the delivery.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from producer_emulator.faults.rules import FaultConfig, FaultRule

HTTP_BEFORE = (
    "api_error_500",
    "too_many_requests_429",
    "forbidden_403",
    "used_up_403",
    "token_mismatched_400",
    "token_mismatched_401",
    "api_not_implemented_400",
    "disabled_400",
    "token_expired_401",
)
HTTP_AFTER = ("timeout_504", "malformed_body")
MEDIA_FAULTS = ("media_not_found_404", "media_wrong_type")
TASK_FAULTS = ("task_failure", "task_failure_string", "task_failure_partial")
# Random draws only ever pick these; the rest are rule-only.
_RANDOM_HTTP = ("api_error_500", "timeout_504", "malformed_body")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The failures chosen for one request (``None``/``False``: behave normally)."""

    http: str | None = None
    slow: bool = False
    task: str | None = None
    callback_drop: bool = False
    callback_duplicate: bool = False

    @property
    def fails_before_work(self) -> bool:
        """True when the reply is an error and nothing may be created."""
        return self.http in HTTP_BEFORE


NO_FAULTS = FaultPlan()


class FaultInjector:
    """Draws :class:`FaultPlan` objects from a seeded RNG and the configured rules."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)
        self._fired: dict[int, int] = {}

    def reseed(self, seed: int | None) -> None:
        """Restart the RNG and the rules' ``times`` counters."""
        self._rng = random.Random(seed)
        self._fired.clear()

    def forget_rule_counts(self) -> None:
        """Rules changed: their ``times`` counters start again."""
        self._fired.clear()

    def plan(
        self, config: FaultConfig, *, path: str, endpoint: str, body: dict[str, Any]
    ) -> FaultPlan:
        """Choose the faults for one request to ``path`` (endpoint ``audios``, ``tasks`` ...)."""
        forced = self._matching_rules(config.rules, path, body)
        random_http = config.endpoints is None or endpoint in config.endpoints
        return FaultPlan(
            http=_first(forced, HTTP_BEFORE + HTTP_AFTER) or self._draw_http(config, random_http),
            slow="slow_response" in forced or (random_http and self._hit(config.slow_probability)),
            task=_first(forced, TASK_FAULTS) or self._draw_task(config, endpoint),
            callback_drop="callback_drop" in forced or self._hit(config.callback_drop),
            callback_duplicate="callback_duplicate" in forced
            or self._hit(config.callback_duplicate),
        )

    def media_fault(self, config: FaultConfig, song: dict[str, Any]) -> str | None:
        """The CDN fault a rule forces on a ``GET /media/...`` of ``song`` (title, audio_id)."""
        return _first(self._matching_rules(config.rules, "/media", song, media=True), MEDIA_FAULTS)

    def _matching_rules(
        self, rules: list[FaultRule], path: str, body: dict[str, Any], *, media: bool = False
    ) -> set[str]:
        fired: set[str] = set()
        for index, rule in enumerate(rules):
            # A media rule counts its ``times`` on media requests only, and the others never there.
            if (rule.fault in MEDIA_FAULTS) != media or not _matches(rule, path, body):
                continue
            count = self._fired.get(index, 0)
            if rule.times is not None and count >= rule.times:
                continue
            self._fired[index] = count + 1
            fired.add(rule.fault)
        return fired

    def _hit(self, probability: float) -> bool:
        # Skip the draw at 0 so enabling one fault does not shift the others' sequence.
        return probability > 0 and self._rng.random() < probability

    def _draw_http(self, config: FaultConfig, enabled: bool) -> str | None:
        if not enabled:
            return None
        for name in _RANDOM_HTTP:
            if self._hit(float(getattr(config, name))):
                return name
        return None

    def _draw_task(self, config: FaultConfig, endpoint: str) -> str | None:
        if endpoint != "audios":
            return None
        for name in TASK_FAULTS:
            if self._hit(float(getattr(config, name))):
                return name
        return None


def _matches(rule: FaultRule, path: str, body: dict[str, Any]) -> bool:
    if rule.path is not None and rule.path != path:
        return False
    return all(key in body and body[key] == value for key, value in rule.when.items())


def _first(fired: set[str], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in fired), None)
