"""One way to load Lua: every script is a file in the ``scripts/`` folder of its package.

A package that runs Lua keeps each script in ``<package>/scripts/<name>.lua``; the
file starts with a header comment naming its ``KEYS``, its ``ARGV`` (with units, e.g.
``ARGV[2] now_ms``) and what it returns. :func:`register_scripts` finds them all by
glob (dramatiq's ``_SCRIPTS`` idea) and registers each under its file stem::

    scripts = register_scripts(client, "workers.ledger")
    scripts["reserve"](keys=[...], args=[...])

A file whose stem starts with ``_`` is a *prelude* (shared ``local`` definitions):
it is never registered on its own; ``prelude="_now"`` puts it in front of every other
script of the package. Files are read with :mod:`importlib.resources`, so this works
from an installed wheel (``pyproject.toml`` ships ``scripts/*.lua`` as package data).
Registering computes the SHA only; redis-py loads a script on first use and again
after a ``SCRIPT FLUSH``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.resources import files

import redis
from redis.commands.core import Script

SCRIPTS_DIR = "scripts"
"""The folder, inside a package, that holds its ``.lua`` files."""

PRELUDE_MARK = "_"
"""A script whose stem starts with this is a prelude, not a script of its own."""

__all__ = ["SCRIPTS_DIR", "register_scripts", "script_names", "script_text"]


@cache
def _sources(package: str) -> Mapping[str, str]:
    # Read once per process: the files are part of the installed package.
    folder = files(package).joinpath(SCRIPTS_DIR)
    entries = list(folder.iterdir()) if folder.is_dir() else []
    found = {
        entry.name.removesuffix(".lua"): entry.read_text(encoding="utf-8")
        for entry in entries
        if entry.is_file() and entry.name.endswith(".lua")
    }
    if not found:
        raise FileNotFoundError(f"no {SCRIPTS_DIR}/*.lua in package {package!r}")
    return found


def script_names(package: str, *, include_preludes: bool = False) -> list[str]:
    """The stems of ``package``'s scripts, sorted (preludes only when asked)."""
    names = _sources(package)
    return sorted(n for n in names if include_preludes or not n.startswith(PRELUDE_MARK))


def script_text(package: str, name: str, *, prelude: str | None = None) -> str:
    """The source of script ``name`` of ``package`` (with ``prelude`` in front, if given).

    Raises ``KeyError`` naming the known scripts when there is no such file.
    """
    sources = _sources(package)
    if name not in sources or (prelude is not None and prelude not in sources):
        known = ", ".join(sorted(sources))
        raise KeyError(f"no script {name!r} (prelude {prelude!r}) in {package}; known: {known}")
    return sources[name] if prelude is None else sources[prelude] + "\n" + sources[name]


def register_scripts(
    client: redis.Redis, package: str, *, prelude: str | None = None
) -> Mapping[str, Script]:
    """Register every script of ``package`` on ``client``, keyed by file stem."""
    return {
        name: client.register_script(script_text(package, name, prelude=prelude))
        for name in script_names(package)
    }
