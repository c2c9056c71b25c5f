"""The request fingerprint: one stable hash of what a submission asks for.

Used by the workers' ledger to adopt an orphaned submission (a POST the
provider accepted but whose task id we never recorded) and by the emulator to
count submissions per request, so tests can prove nothing was paid twice.
Transport details that do not change what is generated (``async``,
``callback_url``) are left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

_TRANSPORT_KEYS = frozenset({"async", "callback_url"})


def request_fingerprint(body: Mapping[str, Any]) -> str:
    """Return the hex sha256 of the canonical JSON of ``body`` minus transport keys."""
    kept = {k: v for k, v in body.items() if k not in _TRANSPORT_KEYS}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
