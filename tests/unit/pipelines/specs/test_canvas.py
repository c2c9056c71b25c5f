"""The canvas builder: row validation, the canvas of a row, and calls per row."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from celery import chord, group
from celery.canvas import Signature, _chain

from pipelines.specs.canvas import (
    RowError,
    assign_task_ids,
    build_row_canvas,
    calls_per_row,
    step_plan,
    validate_row,
)
from pipelines.specs.loader import get_pipeline
from pipelines.specs.spec import PipelineSpec
from workers.ledger import step_key

EXAMPLES_CSV = Path(__file__).resolve().parents[4] / "examples" / "prompts.csv"
ROW = {
    "prompt": "lo-fi rain",
    "title": "Rainy Window",
    "model": "FUZZ-2.0",
    "instrumental": "true",
    "seed": "1001",
    "weirdness": "0.3",
    "extend_prompt": "a piano joins",
}


@pytest.fixture(autouse=True)
def _no_user_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRODUCER_PIPELINES_FILE", raising=False)


def steps_of(canvas: Signature) -> list[Signature]:
    """The step signatures of a canvas in run order (a chord: header, then body)."""
    if isinstance(canvas, chord):
        return [*steps_of(group(canvas.tasks)), *steps_of(canvas.body)]
    if isinstance(canvas, _chain | group):
        return [s for part in canvas.tasks for s in steps_of(part)]
    return [canvas]


def only(errors: list[RowError]) -> RowError:
    assert len(errors) == 1, errors
    return errors[0]


# -- validate_row -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["generate", "generate-extend-stems", "generate-cover", "variation", "generate-variations"],
)
def test_every_example_row_is_valid(name: str) -> None:
    pipeline = get_pipeline(name)
    with EXAMPLES_CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for line, row in enumerate(rows, start=2):
        assert validate_row(pipeline, row, row=line) == []


def test_missing_required_column() -> None:
    error = only(validate_row(get_pipeline("swap-vocals"), ROW, row=7))
    assert error.row == 7
    assert error.column == "lyric"
    assert error.message.startswith("missing column 'lyric' (step 'swap', param 'lyric')")


def test_missing_optional_column_is_fine() -> None:
    assert validate_row(get_pipeline("generate"), {"prompt": "lo-fi rain"}, row=2) == []


def test_empty_cell_a_step_needs() -> None:
    error = only(validate_row(get_pipeline("generate"), {**ROW, "prompt": "  "}, row=3))
    assert error == RowError(
        3,
        "prompt",
        "column 'prompt' is empty but step 'generate', "
        "param 'prompt' needs a value: must not be empty in prompt mode "
        "(custom is false)",
    )
    error = only(validate_row(get_pipeline("swap-vocals"), {**ROW, "lyric": ""}, row=3))
    assert error.column == "lyric"
    assert "is empty but step 'swap', param 'lyric' needs a value" in error.message


def test_empty_optional_cells_mean_not_given() -> None:
    row = {**ROW, "title": "", "model": "", "seed": "", "weirdness": "", "instrumental": ""}
    assert validate_row(get_pipeline("generate-extend-stems"), row, row=2) == []


@pytest.mark.parametrize(
    ("column", "value", "text"),
    [
        ("weirdness", "2", "less than or equal to 1"),
        ("weirdness", "-0.1", "greater than or equal to 0"),
        ("weirdness", "lots", "valid number"),
        ("model", "FUZZ-9", "input should be 'FUZZ-2.0 Pro'"),
        ("instrumental", "maybe", "valid boolean"),
        ("seed", "12a", "must be a string of digits"),
        ("prompt", "x" * 201, "at most 200 characters"),
    ],
)
def test_a_bad_cell_names_its_column(column: str, value: str, text: str) -> None:
    error = only(validate_row(get_pipeline("generate"), {**ROW, column: value}, row=4))
    assert error.row == 4
    assert error.column == column
    assert error.message.startswith(f"column '{column}' (step 'generate', param '{column}'): ")
    assert text in error.message


@pytest.mark.parametrize("value", ["true", "false", "True", "1", "0", "yes", "no"])
def test_bool_cells(value: str) -> None:
    assert validate_row(get_pipeline("generate"), {**ROW, "instrumental": value}, row=2) == []


@pytest.mark.parametrize("value", ["0", "0.5", "1", "1.0", ".25"])
def test_number_cells(value: str) -> None:
    assert validate_row(get_pipeline("generate"), {**ROW, "weirdness": value}, row=2) == []


def test_long_lyric_is_fine_but_a_long_prompt_is_not() -> None:
    pipeline = get_pipeline("swap-vocals")
    lyric = ("[Verse]\n" + "la " * 20_000)[:50_000]
    assert len(lyric) == 50_000
    assert validate_row(pipeline, {**ROW, "lyric": lyric}, row=2) == []
    error = only(validate_row(pipeline, {**ROW, "lyric": lyric, "prompt": "p" * 50_000}, row=2))
    assert error.column == "prompt"
    assert "at most 200 characters" in error.message


def test_a_cell_used_by_two_steps_is_reported_once() -> None:
    # model feeds both generate and extend.
    error = only(
        validate_row(get_pipeline("generate-extend-stems"), {**ROW, "model": "FUZZ-9"}, row=2)
    )
    assert error.column == "model"


def test_errors_of_several_columns_are_all_reported() -> None:
    errors = validate_row(
        get_pipeline("upload-extend"), {"audio_url": "ftp://x/a.wav", "continue_at": "-1"}, row=9
    )
    assert [(e.row, e.column) for e in errors] == [(9, "audio_url"), (9, "continue_at")]
    assert "must be an http(s) URL" in errors[0].message
    assert "greater than or equal to 0" in errors[1].message


def test_an_error_not_caused_by_one_column() -> None:
    pipeline = PipelineSpec(
        name="p",
        steps=[
            {
                "name": "gen",
                "action": "generate",
                "params": {"prompt": "x", "custom": "{row.custom}"},
            }
        ],
    )
    error = only(validate_row(pipeline, {"custom": "true"}, row=2))
    assert error.column is None
    assert error.message == ("step 'gen', param 'lyric': must not be empty when custom is true")


def test_bad_data_never_raises() -> None:
    pipeline = get_pipeline("generate-extend-stems")
    odd: dict[str, Any] = {"prompt": None, "weirdness": ["x"], "model": 3}
    errors = validate_row(pipeline, odd, row=2)
    assert {e.column for e in errors} == {"prompt", "weirdness", "model"}


# -- build_row_canvas ---------------------------------------------------------------------


def test_canvas_of_a_chain() -> None:
    canvas = build_row_canvas(get_pipeline("generate-extend-stems"), ROW, batch_id="b1", row=2)
    assert isinstance(canvas, _chain)
    steps = steps_of(canvas)
    assert [s.task for s in steps] == ["producer.generate", "producer.extend", "producer.stems"]
    assert [s.args for s in steps] == [(), (), ()]
    generate, extend, stems = (s.kwargs for s in steps)
    assert generate == {
        "params": {
            "prompt": "lo-fi rain",
            "title": "Rainy Window",
            "model": "FUZZ-2.0",
            "instrumental": True,
            "seed": "1001",
            "weirdness": 0.3,
        },
        "context": {"batch": "b1", "row": 2, "step": "generate"},
    }
    assert extend["params"] == {
        "audio_id": {"$ref": "steps.generate.audio_id"},
        "continue_at": {"$ref": "steps.generate.duration"},
        "prompt": "a piano joins",
        "model": "FUZZ-2.0",
        "instrumental": True,
    }
    assert stems == {
        "params": {"audio_id": {"$ref": "steps.extend.audio_id"}},
        "context": {"batch": "b1", "row": 2, "step": "stems"},
    }
    assert all("key" not in s.kwargs and not s.options.get("link") for s in steps)


def test_empty_and_missing_optional_cells_are_left_out() -> None:
    canvas = build_row_canvas(
        get_pipeline("generate"), {"prompt": "x", "seed": ""}, batch_id="b", row=5
    )
    (step,) = steps_of(canvas)
    assert step.task == "producer.generate"
    assert step.kwargs["params"] == {"prompt": "x"}


def test_literals_stay_as_written() -> None:
    canvas = build_row_canvas(get_pipeline("lyrics-song"), {"prompt": "tides"}, batch_id="b", row=2)
    words, song = steps_of(canvas)
    assert words.task == "producer.lyrics" and words.kwargs["params"] == {"prompt": "tides"}
    assert song.kwargs["params"] == {"custom": True, "lyric": {"$ref": "steps.lyrics.lyric"}}


def test_an_invalid_row_keeps_its_cells_as_text() -> None:
    canvas = build_row_canvas(
        get_pipeline("generate"), {**ROW, "weirdness": "2"}, batch_id="b", row=2
    )
    (step,) = steps_of(canvas)
    assert step.kwargs["params"]["weirdness"] == "2"
    assert step.kwargs["params"]["instrumental"] == "true"


def test_repeated_step_is_a_group_that_makes_a_chord() -> None:
    canvas = build_row_canvas(get_pipeline("generate-variations"), ROW, batch_id="b", row=3)
    assert isinstance(canvas, _chain)
    first, fan = canvas.tasks
    assert first.task == "producer.generate"
    assert isinstance(fan, chord)
    assert [s.task for s in fan.tasks] == ["producer.variation"] * 2
    assert fan.body.task == "producer.stems"
    assert fan.body.kwargs["params"] == {"audio_id": {"$ref": "steps.variation#1.audio_id"}}
    contexts = [s.kwargs["context"] for s in steps_of(canvas)]
    assert [c["step"] for c in contexts] == ["generate", "variation#1", "variation#2", "stems"]
    keys = [step_key(c["batch"], c["row"], c["step"]) for c in contexts]
    assert len(set(keys)) == 4
    assert fan.tasks[0].kwargs["params"] == fan.tasks[1].kwargs["params"]


def test_a_repeated_last_step_ends_the_chain_with_a_group() -> None:
    pipeline = PipelineSpec(
        name="p",
        steps=[
            {"name": "gen", "action": "generate", "params": {"prompt": "{row.prompt}"}},
            {"name": "var", "action": "variation", "repeat": 3},
        ],
    )
    canvas = build_row_canvas(pipeline, {"prompt": "x"}, batch_id="b", row=2)
    assert isinstance(canvas.tasks[-1], group)
    assert [s.kwargs["context"]["step"] for s in steps_of(canvas)] == [
        "gen",
        "var#1",
        "var#2",
        "var#3",
    ]


def test_the_canvas_serializes_for_the_broker() -> None:
    canvas = build_row_canvas(get_pipeline("generate-variations"), ROW, batch_id="b", row=2)
    rebuilt = Signature.from_dict(canvas)  # what the feeder's message carries
    assert [s.kwargs for s in steps_of(rebuilt)] == [s.kwargs for s in steps_of(canvas)]


# -- calls_per_row ------------------------------------------------------------------------


def test_calls_per_row() -> None:
    assert calls_per_row(get_pipeline("generate")) == {"generate": 1}
    assert calls_per_row(get_pipeline("generate-variations")) == {
        "generate": 1,
        "variation": 2,
        "stems": 1,
    }
    assert calls_per_row(get_pipeline("upload-extend")) == {"upload": 1, "upload_extend": 1}
    assert calls_per_row(
        PipelineSpec(
            name="p",
            steps=[
                {"name": "a", "action": "generate", "params": {"prompt": "x"}, "repeat": 3},
                {"name": "b", "action": "generate", "params": {"prompt": "y"}},
            ],
        )
    ) == {"generate": 4}


def test_the_plan_and_task_ids_of_a_pipeline_with_copies() -> None:
    from pipelines.specs.canvas import build_row_canvas

    spec = get_pipeline("generate-variations")
    canvas = build_row_canvas(spec, {"prompt": "p"}, batch_id="v", row=3)
    assert step_plan(canvas) == [
        ("generate", "generate"),
        ("variation#1", "variation"),
        ("variation#2", "variation"),
        ("stems", "stems"),
    ]
    assign_task_ids(canvas, "v", 3, 7)
    ids: list[str] = []

    def walk(sig: object) -> None:
        tasks = getattr(sig, "tasks", None)
        body = getattr(sig, "body", None)
        if isinstance(sig, list | tuple) or tasks is not None:
            for task in sig if isinstance(sig, list | tuple) else tasks:
                walk(task)
            if body is not None:
                walk(body)
        else:
            ids.append(sig.options["task_id"])  # type: ignore[attr-defined]

    walk(canvas)
    assert ids == ["v:3:generate:7", "v:3:variation#1:7", "v:3:variation#2:7", "v:3:stems:7"]
