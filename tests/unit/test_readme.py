"""The README stays true: every setting and every CLI command is documented there."""

from __future__ import annotations

from pathlib import Path

from pipelines.cli import _mount, app
from workers.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        env = "REDIS_URL" if name == "redis_url" else f"PRODUCER_{name.upper()}"
        assert f"| `{env}` |" in README, env


def test_every_command_is_documented() -> None:
    _mount()
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    names += [g.name or "" for g in app.registered_groups]
    for name in names:
        assert f"producer-batch {name}" in README, name


def test_quickstart_opens_with_two_commands() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("## ", 1)[0]
    blocks = quickstart.split("```bash")[1:]
    assert len(blocks) == 2
    assert "producer-batch run examples/prompts.csv" in blocks[0]
    assert "scripts/test" in blocks[1]
