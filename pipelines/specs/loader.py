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

BUILTIN_FILE = Path(__file__).with_name("pipelines.toml")
"""The built-in pipelines, shipped with the package."""


def load_pipelines(path: Path | None = None) -> dict[str, PipelineSpec]:
    """The built-in pipelines, plus (and overridden by) the user's file.

    ``path`` is the user's file (None: the built-ins only; the edge passes
    ``Settings.pipelines_file`` when no file was given). Raises
    :class:`PipelineSpecError` naming the file, pipeline, step and field of every problem.
    """
    specs = read_pipelines_file(BUILTIN_FILE)
    if path is not None:
        specs.update(read_pipelines_file(Path(path)))
    return specs


def get_pipeline(name: str, path: Path | None = None) -> PipelineSpec:
    """The pipeline called ``name``; :class:`UnknownPipelineError` lists the known ones."""
    specs = load_pipelines(path)
    try:
        return specs[name]
    except KeyError:
        raise UnknownPipelineError(name, sorted(specs)) from None


def read_pipelines_file(path: Path) -> dict[str, PipelineSpec]:
    """Parse and validate one pipelines file (``[pipelines.NAME]`` tables)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PipelineSpecError([f"{path}: cannot read the pipelines file: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineSpecError([f"{path}: invalid TOML: {exc}"]) from None
    return _parse_tables(path, data)


def _parse_tables(path: Path, data: dict[str, Any]) -> dict[str, PipelineSpec]:
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
            specs[name] = _parse_table(name, table)
        except PipelineSpecError as exc:
            problems.extend(f"{line} (in {path})" for line in exc.problems)
    if problems:
        raise PipelineSpecError(problems)
    return specs


def _parse_table(name: str, table: Any) -> PipelineSpec:
    if not isinstance(table, dict):
        raise PipelineSpecError([f"pipeline {name!r}: must be a table ([pipelines.{name}])"])
    if "name" in table:
        raise PipelineSpecError(
            [
                f"{where(name, None, 'field', 'name')}: the table's key is "
                "the pipeline's name; do not set name"
            ]
        )
    return PipelineSpec(name=name, **table)
