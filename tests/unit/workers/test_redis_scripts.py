"""The one Lua loader: every script is found, has its header, and compiles."""

from __future__ import annotations

import re
from pathlib import Path

import fakeredis
import pytest

import pipelines
import workers
from workers._redis import register_scripts, script_names, script_text

# Every package that runs Lua, with its prelude.
PACKAGES = {
    "workers.ledger": "_now",
    "workers.ratelimit": None,
    "workers.completion": None,
    "workers.operations": None,
    "pipelines.batches": "_batch_common",
    "pipelines.spend": None,
}
ROOTS = (Path(workers.__file__).parent, Path(pipelines.__file__).parent)


def _header(text: str) -> str:
    """The leading comment block of a script."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def test_every_lua_file_lives_in_a_scripts_folder_of_a_loaded_package() -> None:
    found = sorted(path for root in ROOTS for path in root.rglob("*.lua"))
    assert found, "no Lua scripts found"
    for path in found:
        assert path.parent.name == "scripts", f"{path} is not in a scripts/ folder"
        package = ".".join(path.parent.parent.relative_to(ROOTS[0].parent).parts)
        assert package in PACKAGES, f"{path}: package {package} is not listed here"
        assert path.stem in script_names(package, include_preludes=True)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_script_has_a_header_naming_keys_argv_and_the_reply(package: str) -> None:
    for name in script_names(package, include_preludes=True):
        header = _header(script_text(package, name))
        assert re.search(r"^-- KEYS\[1(\]|\.\.)", header, re.M), f"{package}/{name}: no KEYS"
        assert re.search(r"^-- ARGV", header, re.M), f"{package}/{name}: no ARGV"
        assert re.search(r"^-- Returns", header, re.M), f"{package}/{name}: no Returns"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_register_scripts_loads_every_script_under_its_stem(package: str) -> None:
    client = fakeredis.FakeRedis()
    prelude = PACKAGES[package]
    scripts = register_scripts(client, package, prelude=prelude)
    assert sorted(scripts) == script_names(package)
    assert not any(name.startswith("_") for name in scripts)
    for name, script in scripts.items():
        assert script.script == script_text(package, name, prelude=prelude)
        assert client.script_load(script.script) == script.sha  # compiles


def test_an_unknown_script_or_package_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="reserve"):
        script_text("workers.ledger", "nope")
    with pytest.raises(FileNotFoundError, match=r"workers\.tasks"):
        script_names("workers.tasks")
