"""Where pipelines come from: the built-ins beside this module, plus a user's file.

The built-ins live in ``pipelines/specs/pipelines.toml``; a user file (the CLI's
``--pipelines``, else ``PRODUCER_PIPELINES_FILE`` read by the caller from
:class:`workers.settings.Settings`) adds pipelines or replaces built-ins of the same name.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pipelines.specs.spec import PipelineSpec, PipelineSpecError, UnknownPipelineError, where
from workers.settings import DEFAULT_MAX_STEPS_PER_ROW

BUILTIN_FILE = Path(__file__).with_name("pipelines.toml")
"""The built-in pipelines, shipped with the package."""


def load_pipelines(
    path: Path | None = None, *, max_steps: int = DEFAULT_MAX_STEPS_PER_ROW
) -> dict[str, PipelineSpec]:
    """The built-in pipelines, plus (and overridden by) the user's file.

    ``path`` is the user's file (None: the built-ins only; the edge passes
    ``Settings.pipelines_file`` when no file was given), ``max_steps`` the edge's
    ``Settings.max_steps_per_row``. Raises :class:`PipelineSpecError` naming the file,
    pipeline, step and field of every problem.
    """
    specs = read_pipelines_file(BUILTIN_FILE, max_steps=max_steps)
    if path is not None:
        specs.update(read_pipelines_file(Path(path), max_steps=max_steps))
    return specs


def get_pipeline(
    name: str, path: Path | None = None, *, max_steps: int = DEFAULT_MAX_STEPS_PER_ROW
) -> PipelineSpec:
    """The pipeline called ``name``; :class:`UnknownPipelineError` lists the known ones."""
    specs = load_pipelines(path, max_steps=max_steps)
    try:
        return specs[name]
    except KeyError:
        raise UnknownPipelineError(name, sorted(specs)) from None


def read_pipelines_file(
    path: Path, *, max_steps: int = DEFAULT_MAX_STEPS_PER_ROW
) -> dict[str, PipelineSpec]:
    """Parse and validate one pipelines file (``[pipelines.NAME]`` tables).

    A pipeline whose row makes more than ``max_steps`` paid calls is refused.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PipelineSpecError([f"{path}: cannot read the pipelines file: {exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PipelineSpecError([f"{path}: invalid TOML: {exc}"]) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise PipelineSpecError(
            [f"{path}: invalid TOML: arrays or tables nest too deeply"]
        ) from None
    return _parse_tables(path, data, max_steps)


def _parse_tables(path: Path, data: dict[str, Any], max_steps: int) -> dict[str, PipelineSpec]:
    extra = sorted(set(data) - {"pipelines"})
    tables = data.get("pipelines")
    if extra or not isinstance(tables, dict):
        raise PipelineSpecError(
            [
                f"{path}: a pipelines file holds only [pipelines.NAME] tables"
                + (f" (unexpected: {', '.join(extra)})" if extra else "")
            ]
        )
    specs: dict[str, PipelineSpec] = {}
    problems: list[str] = []
    for name, table in tables.items():
        try:
            specs[name] = _parse_table(name, table, max_steps)
        except PipelineSpecError as exc:
            problems.extend(f"{line} (in {path})" for line in exc.problems)
    if problems:
        raise PipelineSpecError(problems)
    return specs


def _parse_table(name: str, table: Any, max_steps: int) -> PipelineSpec:
    if not isinstance(table, dict):
        raise PipelineSpecError([f"pipeline {name!r}: must be a table ([pipelines.{name}])"])
    if "name" in table:
        raise PipelineSpecError(
            [
                f"{where(name, None, 'field', 'name')}: the table's key is "
                "the pipeline's name; do not set name"
            ]
        )
    steps = table.get("steps")
    # Counted before validation too, so a 5,000-step table is not checked step by step.
    if isinstance(steps, list) and len(steps) > max_steps:
        raise PipelineSpecError([_too_many_steps(name, len(steps), max_steps)])
    spec = PipelineSpec(name=name, **table)
    calls = sum(step.repeat for step in spec.steps)
    if calls > max_steps:
        raise PipelineSpecError([_too_many_steps(name, calls, max_steps)])
    return spec


def _too_many_steps(name: str, calls: int, max_steps: int) -> str:
    return (
        f"pipeline {name!r}: {calls} steps per row (each repeated copy counted) is over "
        f"the limit of {max_steps} (PRODUCER_MAX_STEPS_PER_ROW)"
    )
