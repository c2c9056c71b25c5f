"""Pipeline specs: the TOML format, the built-ins, user files and every validation error."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from pipelines.specs.loader import BUILTIN_FILE, get_pipeline, load_pipelines, read_pipelines_file
from pipelines.specs.spec import (
    MAX_REPEAT,
    PipelineSpec,
    PipelineSpecError,
    StepSpec,
    UnknownPipelineError,
)
from workers.settings import Settings

EXAMPLES_CSV = Path(__file__).resolve().parents[4] / "examples" / "prompts.csv"
REQUIRED_BUILTINS = {
    "generate",
    "generate-extend-stems",
    "generate-cover",
    "swap-vocals",
    "swap-instrumentals",
    "variation",
    "upload-cover",
    "upload-extend",
}


@pytest.fixture(autouse=True)
def _no_user_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRODUCER_PIPELINES_FILE", raising=False)


def spec(*steps: dict[str, Any], name: str = "p") -> PipelineSpec:
    """Build a pipeline from plain step dicts."""
    return PipelineSpec(name=name, steps=list(steps))


def gen(name: str = "gen", **params: Any) -> dict[str, Any]:
    """A valid generate step."""
    return {"name": name, "action": "generate", "params": {"prompt": "{row.prompt}", **params}}


def problem_of(*steps: dict[str, Any]) -> str:
    """The message PipelineSpec raises for ``steps``."""
    with pytest.raises(PipelineSpecError) as info:
        spec(*steps)
    return str(info.value)


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the TOML format ---------------------------------------------------------------------

TWO_PIPELINES = """
[pipelines.one]
description = "one step"

[[pipelines.one.steps]]
name = "gen"
action = "generate"
params = { prompt = "{row.prompt}", seed = "{row.seed?}", weirdness = 0.5, instrumental = true }

[pipelines.two]

[[pipelines.two.steps]]
name = "up"
action = "upload"
params = { audio_url = "{row.audio_url}" }

[[pipelines.two.steps]]
name = "cover"
action = "upload_cover"
repeat = 3
[pipelines.two.steps.params]
audio_id = "{steps.up.audio_id}"
prompt = "as a {row.genre} song"
"""


def test_toml_file_parses_into_specs(tmp_path: Path) -> None:
    specs = read_pipelines_file(
        write(tmp_path, TWO_PIPELINES.replace("as a {row.genre} song", "as a jazz song"))
    )
    one, two = specs["one"], specs["two"]
    assert one.name == "one" and one.description == "one step"
    assert one.steps == [
        StepSpec(
            name="gen",
            action="generate",
            params={
                "prompt": "{row.prompt}",
                "seed": "{row.seed?}",
                "weirdness": 0.5,
                "instrumental": True,
            },
        )
    ]
    assert two.description == ""
    assert [(s.name, s.action, s.repeat) for s in two.steps] == [
        ("up", "upload", 1),
        ("cover", "upload_cover", 3),
    ]
    assert two.steps[1].copy_names() == ["cover#1", "cover#2", "cover#3"]
    assert one.columns() == (frozenset({"prompt"}), frozenset({"seed"}))
    assert two.columns() == (frozenset({"audio_url"}), frozenset())


def test_a_template_inside_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineSpecError) as info:
        read_pipelines_file(write(tmp_path, TWO_PIPELINES))
    message = str(info.value)
    assert "pipeline 'two', step 'cover', param 'prompt': bad template" in message
    assert str(tmp_path / "mine.toml") in message


def test_columns_required_wins_over_optional() -> None:
    pipeline = spec(
        gen(title="{row.title?}", seed="{row.seed?}"),
        {"name": "cov", "action": "cover", "params": {"title": "{row.title}"}},
    )
    assert pipeline.columns() == (frozenset({"prompt", "title"}), frozenset({"seed"}))


# -- the built-ins -----------------------------------------------------------------------


def test_every_builtin_validates_and_the_required_ones_exist() -> None:
    builtins = read_pipelines_file(BUILTIN_FILE)
    assert set(builtins) >= REQUIRED_BUILTINS
    assert load_pipelines() == builtins
    for name, pipeline in builtins.items():
        assert pipeline.name == name
        assert pipeline.description
        assert pipeline == PipelineSpec(**pipeline.model_dump())  # round-trips


def test_builtins_read_the_example_csv_columns() -> None:
    with EXAMPLES_CSV.open(newline="") as f:
        header = set(next(csv.reader(f)))
    builtins = load_pipelines()
    for name in (
        "generate",
        "generate-extend-stems",
        "generate-cover",
        "variation",
        "generate-variations",
    ):
        required, _ = builtins[name].columns()
        assert required <= header, name
    _, optional = builtins["generate-extend-stems"].columns()
    assert header - {"prompt"} <= optional


def test_builtin_references_follow_the_song() -> None:
    extend = get_pipeline("generate-extend-stems").steps[1]
    assert extend.params["audio_id"] == "{steps.generate.audio_id}"
    assert extend.params["continue_at"] == "{steps.generate.duration}"
    assert get_pipeline("upload-cover").steps[1].params["audio_id"] == "{steps.upload.audio_id}"
    assert get_pipeline("generate-variations").steps[1].repeat == 2


# -- user files --------------------------------------------------------------------------

USER = """
[pipelines.generate]
description = "my generate: always instrumental"

[[pipelines.generate.steps]]
name = "song"
action = "generate"
params = { prompt = "{row.prompt}", instrumental = true }

[pipelines.mine]

[[pipelines.mine.steps]]
name = "song"
action = "generate"
params = { prompt = "{row.prompt}" }

[[pipelines.mine.steps]]
name = "export"
action = "wav"
"""


def test_user_file_overrides_and_extends_builtins(tmp_path: Path) -> None:
    specs = load_pipelines(write(tmp_path, USER))
    assert specs["generate"].description == "my generate: always instrumental"
    assert specs["generate"].steps[0].params["instrumental"] is True
    assert [s.action for s in specs["mine"].steps] == ["generate", "wav"]
    assert set(specs) >= REQUIRED_BUILTINS | {"mine"}
    assert specs["swap-vocals"] == load_pipelines()["swap-vocals"]


def test_user_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment is read once at the edge (Settings) and the path passed down.
    monkeypatch.setenv("PRODUCER_PIPELINES_FILE", str(write(tmp_path, USER)))
    path = Settings().pipelines_file
    assert "mine" in load_pipelines(path)
    assert get_pipeline("mine", path).steps[1].name == "export"
    assert "mine" not in load_pipelines()  # nothing below the edge reads the environment
    other = write(tmp_path, USER.replace("pipelines.mine", "pipelines.other"), "other.toml")
    assert set(load_pipelines(other)) - set(load_pipelines(BUILTIN_FILE)) == {"other"}


def test_unknown_pipeline_lists_the_known_ones() -> None:
    with pytest.raises(KeyError) as info:
        get_pipeline("generat")
    assert isinstance(info.value, UnknownPipelineError)
    message = str(info.value)
    assert message.startswith("unknown pipeline 'generat'; known pipelines: ")
    assert "generate-extend-stems" in message and "upload-cover" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pipelines.x\n", "invalid TOML"),
        ("title = 'x'\n", "holds only [pipelines.NAME] tables (unexpected: title)"),
        ("pipelines = 3\n", "holds only [pipelines.NAME] tables"),
        ("[pipelines]\nx = 3\n", "pipeline 'x': must be a table"),
        ("[pipelines.x]\nname = 'y'\nsteps = []\n", "pipeline 'x', field 'name': the table's key"),
        ("[pipelines.x]\n", "pipeline 'x', field 'steps': field required"),
        ("[pipelines.x]\nsteps = []\n", "pipeline 'x', field 'steps': list should have at least 1"),
        ("[pipelines.x]\nsteps = []\nowner = 'me'\n", "field 'owner': extra inputs"),
    ],
)
def test_bad_files_name_the_problem_and_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PipelineSpecError) as info:
        load_pipelines(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_missing_user_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineSpecError, match="cannot read the pipelines file"):
        load_pipelines(tmp_path / "nope.toml")


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    text = """
[pipelines.a]
[[pipelines.a.steps]]
name = "s"
action = "generat"

[pipelines.b]
[[pipelines.b.steps]]
name = "s"
action = "generate"
params = { prompt = "x", weirdness = 2 }
"""
    with pytest.raises(PipelineSpecError) as info:
        load_pipelines(write(tmp_path, text))
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("pipeline 'a', step 's', field 'action'")
    assert info.value.problems[1].startswith("pipeline 'b', step 's', param 'weirdness'")


# -- validation errors name pipeline, step and field --------------------------------------


def test_unknown_action() -> None:
    message = problem_of({"name": "gen", "action": "generat", "params": {"prompt": "x"}})
    assert message.startswith(
        "pipeline 'p', step 'gen', field 'action': unknown action "
        "'generat'; expected one of: generate, cover"
    )
    assert "upload, lyrics, wav, videos" in message


def test_reference_to_an_unknown_step() -> None:
    message = problem_of(
        gen(),
        {"name": "extend", "action": "extend", "params": {"continue_at": "{steps.gne.duration}"}},
    )
    assert message == (
        "pipeline 'p', step 'extend', param 'continue_at': unknown step 'gne' "
        "in {steps.gne.duration}"
    )


def test_reference_to_a_later_step_or_itself() -> None:
    later = problem_of(
        gen(title="{steps.cov.title}"), {"name": "cov", "action": "cover", "params": {}}
    )
    assert later.startswith(
        "pipeline 'p', step 'gen', param 'title': step 'cov' runs after this step"
    )
    itself = problem_of(
        gen(), {"name": "cov", "action": "cover", "params": {"title": "{steps.cov.title}"}}
    )
    assert itself.startswith("pipeline 'p', step 'cov', param 'title': step 'cov' refers to itself")


def test_reference_to_an_unknown_field() -> None:
    message = problem_of(
        gen(), {"name": "st", "action": "stems", "params": {"audio_id": "{steps.gen.colour}"}}
    )
    assert message.startswith(
        "pipeline 'p', step 'st', param 'audio_id': unknown field "
        "'colour' in {steps.gen.colour}; a step's outputs are: audio_id"
    )


@pytest.mark.parametrize(
    "template",
    [
        "{row.prompt",
        "{row.}",
        "{steps.gen}",
        "{step.gen.audio_id}",
        "{rows.prompt}",
        "as a {row.genre} song",
        "{steps.gen#0.audio_id}",
        "{row.a b}",
        "{steps..audio_id}",
    ],
)
def test_bad_template(template: str) -> None:
    message = problem_of(gen(), {"name": "cov", "action": "cover", "params": {"title": template}})
    assert message.startswith("pipeline 'p', step 'cov', param 'title': bad template ")


def test_reference_to_a_copy_a_step_does_not_have() -> None:
    stems = {"name": "st", "action": "stems", "params": {"audio_id": "{steps.gen#3.audio_id}"}}
    message = problem_of({**gen(), "repeat": 2}, stems)
    assert message.startswith(
        "pipeline 'p', step 'st', param 'audio_id': step 'gen' runs 2 time(s), there is no copy #3"
    )


@pytest.mark.parametrize(
    ("action", "params", "field"),
    [
        ("upload", {"audio_url": "{row.url}"}, "duration"),
        ("lyrics", {"prompt": "{row.prompt}"}, "audio_id"),
        ("videos", {}, "title"),
    ],
)
def test_reference_to_an_output_the_action_never_has(
    action: str, params: dict[str, Any], field: str
) -> None:
    before = [gen()] if action == "videos" else []  # videos exports an earlier song
    source = {"name": "src", "action": action, "params": params}
    message = problem_of(
        *before,
        source,
        {
            "name": "last",
            "action": "generate",
            "params": {"prompt": "x", "title": f"{{steps.src.{field}}}"},
        },
    )
    assert message.startswith(
        f"pipeline 'p', step 'last', param 'title': step 'src' ({action}) has no output '{field}'"
    )


def test_pipeline_name() -> None:
    with pytest.raises(PipelineSpecError, match="pipeline 'a b', field 'name': a pipeline name"):
        spec(gen(), name="a b")


def test_reference_of_the_wrong_kind_for_the_param() -> None:
    message = problem_of(
        gen(), {"name": "ext", "action": "extend", "params": {"continue_at": "{steps.gen.title}"}}
    )
    assert message.startswith(
        "pipeline 'p', step 'ext', param 'continue_at': input should be a valid number"
    )


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"weirdness": 2}, "weirdness", "less than or equal to 1"),
        ({"weirdness": True}, "weirdness", "must be a number, not a boolean"),
        ({"model": "FUZZ-9"}, "model", "input should be 'FUZZ-2.0 Pro'"),
        ({"seed": "abc"}, "seed", "must be a string of digits"),
        ({"promtp": "x"}, "promtp", "extra inputs are not permitted"),
        ({"bogus": "{row.bogus}"}, "bogus", "unknown field"),
        ({"prompt": "x" * 201}, "prompt", "at most 200 characters"),
    ],
)
def test_invalid_literal_param(params: dict[str, Any], field: str, text: str) -> None:
    message = problem_of({"name": "gen", "action": "generate", "params": {"prompt": "x", **params}})
    assert message.startswith(f"pipeline 'p', step 'gen', param '{field}': ")
    assert text in message


def test_params_the_row_gives_are_checked_per_row_only() -> None:
    pipeline = spec(
        {
            "name": "gen",
            "action": "generate",
            "params": {"prompt": "{row.prompt}", "weirdness": "{row.w}", "custom": "{row.custom?}"},
        }
    )
    assert pipeline.columns() == (frozenset({"prompt", "w"}), frozenset({"custom"}))


def test_a_required_param_nobody_gives() -> None:
    message = problem_of(gen(), {"name": "swap", "action": "swap_vocals"})
    assert message.startswith("pipeline 'p', step 'swap', param 'lyric': field required")
    first = problem_of({"name": "st", "action": "stems"})
    assert first.startswith("pipeline 'p', step 'st', param 'audio_id': field required")


def test_implicit_values_follow_what_the_previous_step_makes() -> None:
    # generate -> extend: audio_id and continue_at come from the song.
    spec(gen(), {"name": "ext", "action": "extend"})
    # upload has no duration: upload_extend must be told where to continue.
    upload = {"name": "up", "action": "upload", "params": {"audio_url": "{row.url}"}}
    message = problem_of(upload, {"name": "ext", "action": "upload_extend"})
    assert message.startswith("pipeline 'p', step 'ext', param 'continue_at': field required")
    # lyrics make no song: stems after them has no audio to split.
    words = {"name": "words", "action": "lyrics", "params": {"prompt": "{row.prompt}"}}
    message = problem_of(words, {"name": "st", "action": "stems"})
    assert message.startswith("pipeline 'p', step 'st', param 'audio_id': field required")


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({}, "audio_url", "field required"),
        ({"audio_url": "ftp://example.com/a.wav"}, "audio_url", "must be an http(s) URL"),
        ({"audio_url": "  "}, "audio_url", "must be a non-empty string"),
        ({"audio_url": "https://example.com/a.wav", "x": 1}, "x", "extra inputs"),
    ],
)
def test_quick_action_params(params: dict[str, Any], field: str, text: str) -> None:
    message = problem_of({"name": "up", "action": "upload", "params": params})
    assert message.startswith(f"pipeline 'p', step 'up', param '{field}': {text}")


@pytest.mark.parametrize(
    ("step", "field", "text"),
    [
        ({**gen(), "repeat": 0}, "repeat", "greater than or equal to 1"),
        ({**gen(), "repeat": MAX_REPEAT + 1}, "repeat", f"less than or equal to {MAX_REPEAT}"),
        ({**gen(), "repet": 2}, "repet", "extra inputs are not permitted"),
        ({"name": "gen", "params": {}}, "action", "field required"),
        ({**gen(), "name": "a b"}, "name", "only letters, digits"),
        ({**gen(), "name": "a#1"}, "name", "only letters, digits"),
    ],
)
def test_step_fields(step: dict[str, Any], field: str, text: str) -> None:
    message = problem_of(step)
    assert message.startswith(f"pipeline 'p', step '{step.get('name')}', field '{field}': ")
    assert text in message


def test_duplicate_step_names() -> None:
    message = problem_of(gen(), {"name": "gen", "action": "stems"})
    assert message == "pipeline 'p', step 'gen', field 'name': duplicate step name 'gen'"


def test_unnamed_step_is_named_by_its_position() -> None:
    message = problem_of(gen(), {"action": "stems"})
    assert message.startswith("pipeline 'p', step '#2', field 'name': field required")


def test_spec_error_is_a_value_error_listing_problems() -> None:
    with pytest.raises(ValueError) as info:
        spec({"name": "a", "action": "nope"}, {"name": "b", "action": "nope2"})
    assert isinstance(info.value, PipelineSpecError)
    assert len(info.value.problems) == 2
    assert str(info.value) == "\n".join(info.value.problems)
