"""Data files of pipelines (pipelines.toml, prices.toml, Lua scripts) ship with `pip install .`.

They live in subpackages and ``scripts/`` folders that are not packages, so the
package-data globs of pyproject.toml must reach every one of them.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _shipped(path: Path, globs: list[str]) -> bool:
    package = path.parent
    while not (package / "__init__.py").exists():
        package = package.parent
    relative = path.relative_to(package).as_posix()
    return any(
        fnmatch.fnmatch(relative, pattern) and relative.count("/") == pattern.count("/")
        for pattern in globs
    )


def test_every_data_file_of_pipelines_matches_the_package_data_globs() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["*"]
    files = [p for ext in ("*.lua", "*.toml") for p in (ROOT / "pipelines").rglob(ext)]
    assert {p.name for p in files} >= {
        "pipelines.toml",
        "prices.toml",
        "spend.lua",
        "batch_admit.lua",
        "_batch_common.lua",
    }
    missing = [str(p.relative_to(ROOT)) for p in files if not _shipped(p, globs)]
    assert missing == []
