"""docker-compose.yml and the Dockerfile, checked by what can run here (no Docker engine).

Every service must name a command this project really has, every variable it sets
must be a setting the project reads, and every path the Dockerfile copies must exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pipelines.cli import _mount, app
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _cli_commands() -> set[str]:
    _mount()
    names = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}
    return names | {g.name for g in app.registered_groups if g.name}


def test_every_service_runs_a_real_command() -> None:
    commands = _cli_commands()
    for name, service in _compose()["services"].items():
        if "image" in service and "build" not in service:
            continue  # third-party image (redis)
        entry = service.get("entrypoint") or ["producer-batch"]
        command = service["command"]
        if entry == ["celery"]:
            # pipelines.app is the one entry point (workers.app refuses to start).
            assert command[:2] == ["-A", "pipelines.app"], name
            assert command[2] in {"worker", "beat"}, name
            if command[2] == "beat":
                # The entry point carries the scheduler: no --scheduler flag to forget.
                assert "--scheduler" not in command, name
        else:
            assert command[0] in commands, f"{name}: unknown command {command[0]}"


def test_the_entry_point_carries_the_redbeat_scheduler() -> None:
    from pipelines.app import app as celery_app

    assert celery_app.conf.beat_scheduler == "redbeat.RedBeatScheduler"


def test_compose_environment_names_real_settings() -> None:
    env = _compose()["x-producer-env"]
    fields = {f"PRODUCER_{n.upper()}" for n in Settings.model_fields} | {"REDIS_URL"}
    assert set(env) <= fields, set(env) - fields


def test_services_share_one_image_and_dockerfile_paths_exist() -> None:
    compose = _compose()
    build = compose["x-producer"]["build"]
    dockerfile = ROOT / build["dockerfile"]
    assert dockerfile.is_file()
    for src in re.findall(r"^COPY (\S+)", dockerfile.read_text(), flags=re.M):
        assert (ROOT / src).exists(), src
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', dockerfile.read_text(), flags=re.M)
    assert entry is not None and entry.group(1) == "producer-batch"
