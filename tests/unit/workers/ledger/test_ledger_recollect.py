"""``reset_failed`` reopens a step whose paid result failed to collect, once."""

from __future__ import annotations

import fakeredis

from producer_client import request_fingerprint
from workers.ledger import Claim, Ledger, State

KEY = "b/1/generate"
FP = request_fingerprint({"action": "generate", "prompt": "x"})


def _paid_and_failed(ledger: Ledger, *, recollect: bool) -> None:
    ledger.reserve(KEY, fingerprint=FP, owner="t1")
    ledger.begin_submit(KEY, owner="t1")
    ledger.mark_submitted(KEY, api_task_id="api-1", owner="t1")
    ledger.mark_failed(KEY, code="artifact_refused", message="HTTP 404", recollect=recollect)


def test_a_failed_collect_is_reopened_once_then_forgotten() -> None:
    ledger = Ledger(fakeredis.FakeRedis())
    _paid_and_failed(ledger, recollect=True)
    assert ledger.reset_failed(KEY)
    entry = ledger.get(KEY)
    assert entry is not None and entry.state is State.SUBMITTED
    assert (entry.api_task_id, entry.error_code, entry.finished_at) == ("api-1", None, None)
    assert ledger.reserve(KEY, fingerprint=FP, owner="t2")[0] is Claim.SUBMITTED  # no new POST

    ledger.mark_failed(KEY, code="artifact_refused", message="HTTP 404", recollect=True)
    assert ledger.reset_failed(KEY)  # the re-collect failed too: pay for a new attempt
    assert ledger.get(KEY) is None


def test_a_provider_failure_is_forgotten_at_once() -> None:
    ledger = Ledger(fakeredis.FakeRedis())
    _paid_and_failed(ledger, recollect=False)
    assert ledger.reset_failed(KEY)
    assert ledger.get(KEY) is None
