"""The malformed-input corpus: every bad CSV gets a precise error (or a correct run).

``check_csv`` reads and validates without writing anything; what a refusal leaves in
Redis (nothing) is checked in ``test_batches_submit.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.batches.submit import SubmitReport, check_csv
from pipelines.specs.loader import get_pipeline
from pipelines.specs.spec import PipelineSpec

HEADER = "prompt,title,model,instrumental,seed,weirdness,extend_prompt\n"
GOOD = "a warm lo-fi beat,Rainy,FUZZ-2.0,true,1001,0.3,more rain\n"
GES = get_pipeline("generate-extend-stems")

# A pipeline whose row cells reach section times and strengths (no built-in does both).
REPLACE = PipelineSpec(
    name="gen-replace",
    steps=[
        {"name": "generate", "action": "generate", "params": {"prompt": "{row.prompt}"}},
        {
            "name": "replace",
            "action": "replace_section",
            "params": {
                "prompt": "{row.prompt}",
                "replace_section_start": "{row.start}",
                "replace_section_end": "{row.end}",
                "sound_strength": "{row.sound_strength?}",
            },
        },
    ],
)


def check(
    tmp_path: Path, data: bytes | str, spec: PipelineSpec = GES, **kwargs: bool
) -> SubmitReport:
    path = tmp_path / "rows.csv"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return check_csv(str(path), spec, **kwargs)[0]


def messages(report: SubmitReport) -> list[str]:
    return [e.message for e in report.errors]


def test_a_good_file_is_accepted(tmp_path: Path) -> None:
    report = check(tmp_path, HEADER + GOOD + GOOD.replace("1001", "1002"))
    assert (report.refused, report.accepted, report.errors) == (None, 2, [])


@pytest.mark.parametrize("data", ["", "\n\n  \n"])
def test_an_empty_file_names_the_expected_header(tmp_path: Path, data: str) -> None:
    report = check(tmp_path, data)
    assert report.refused is not None and report.accepted == 0
    assert messages(report) == [
        "the file is empty: the first line must name the columns, "
        "e.g. prompt,extend_prompt,instrumental,model,seed,title,"
        "weirdness"
    ]


def test_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    report = check(tmp_path, HEADER + "\n")
    assert messages(report) == ["the file has a header but no rows"]


def test_a_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    report = check(tmp_path, b"\xef\xbb\xbf" + (HEADER + GOOD).encode())
    assert (report.refused, report.accepted, report.columns[0]) == (None, 1, "prompt")


def test_crlf_blank_lines_and_multi_line_quoted_cells_are_fine(tmp_path: Path) -> None:
    data = HEADER + '\r\n"a beat\nwith two lines",T,FUZZ-2.0,true,1,0.3,x\r\n\r\n' + GOOD
    report = check(tmp_path, data.replace("\n", "\r\n").replace("\r\r", "\r"))
    assert (report.refused, report.accepted) == (None, 2)


def test_a_latin1_row_is_rejected_with_its_line_and_byte(tmp_path: Path) -> None:
    data = (HEADER + GOOD).encode() + "caf\u00e9 jazz,T,FUZZ-2.0,true,2,0.3,x\n".encode("latin-1")
    report = check(tmp_path, data)
    assert report.refused is not None
    assert [(e.row, e.message) for e in report.errors] == [
        (2, "line 3 is not UTF-8 (byte 0xe9 at byte 4); save the file as UTF-8")
    ]
    skipped = check(tmp_path, data, skip_invalid=True)
    assert (skipped.refused, skipped.accepted, skipped.rejected) == (None, 1, 1)


def test_a_latin1_header_or_utf16_file_is_refused_whole(tmp_path: Path) -> None:
    assert "line 1 is not UTF-8" in messages(check(tmp_path, b"pr\xe9mpt\n" + GOOD.encode()))[0]
    utf16 = (HEADER + GOOD).encode("utf-16")
    assert messages(check(tmp_path, utf16)) == [
        "the file is UTF-16; save it as UTF-8 (with or without BOM)"
    ]


def test_missing_and_unknown_columns_are_named(tmp_path: Path) -> None:
    report = check(tmp_path, "title,promt\nT,x\n")
    assert [(e.column, e.message) for e in report.errors] == [
        (
            "promt",
            "unknown column 'promt': pipeline 'generate-extend-stems' reads only "
            "prompt, extend_prompt, instrumental, model, seed, title, weirdness",
        ),
        (
            None,
            "missing required column(s) prompt: pipeline 'generate-extend-stems' needs "
            "them (it reads prompt, extend_prompt, instrumental, model, seed, title, "
            "weirdness)",
        ),
    ]


def test_duplicate_and_empty_header_names(tmp_path: Path) -> None:
    report = check(tmp_path, "prompt,title,title,\nx,a,b,c\n")
    assert messages(report) == [
        "column 'title' appears twice in the header",
        "column 4 of the header has no name",
    ]


def test_an_unbalanced_quote_names_the_line_it_opens_on(tmp_path: Path) -> None:
    report = check(tmp_path, HEADER + GOOD + '"no end,T,FUZZ-2.0,true,1,0.3,x\n' + GOOD)
    assert messages(report) == [
        "unbalanced quote: the quoted field that starts on line 3 "
        "never closes (the file ended at line 4)"
    ]
    assert report.accepted == 0 and report.refused is not None


def test_text_after_a_closing_quote_is_a_syntax_error(tmp_path: Path) -> None:
    report = check(tmp_path, HEADER + '"a"b,T,FUZZ-2.0,true,1,0.3,x\n')
    assert messages(report)[0].startswith("line 2: not valid CSV (',' expected after '\"')")


def test_a_row_with_too_many_or_too_few_fields(tmp_path: Path) -> None:
    report = check(tmp_path, HEADER + "a, b,T,FUZZ-2.0,true,1,0.3,x\nx,T\n", skip_invalid=True)
    assert [(e.row, e.message) for e in report.errors] == [
        (1, "line 2: 8 fields but the header has 7 columns (an unquoted comma in a field?)"),
        (2, "line 3: 2 fields but the header has 7 columns (a missing comma or field?)"),
    ]
    assert report.refused == "no valid rows"


def test_bad_values_name_row_column_and_rule(tmp_path: Path) -> None:
    rows = (
        "a,T,FUZZ-9,true,1,0.3,x\n"  # unknown model
        "a,T,FUZZ-2.0,maybe,1,0.3,x\n"  # not a boolean
        "a,T,FUZZ-2.0,true,1,1.5,x\n"  # weirdness out of range
        ",T,FUZZ-2.0,true,1,0.3,x\n" + GOOD  # empty required prompt
    )
    report = check(tmp_path, HEADER + rows, skip_invalid=True)
    found = {(e.row, e.column) for e in report.errors}
    assert found == {(1, "model"), (2, "instrumental"), (3, "weirdness"), (4, "prompt")}
    assert "FUZZ-2.0" in next(e.message for e in report.errors if e.column == "model")
    assert (report.refused, report.accepted, report.rejected) == (None, 1, 4)
    assert [r.row for r in report.rejected_rows] == [1, 2, 3, 4]


def test_section_times_and_strengths(tmp_path: Path) -> None:
    rows = (
        "a,10,20,0.5\n"  # fine
        "a,-1,20,\n"  # negative start
        "a,30,20,\n"  # swapped
        "a,10,20,0.1\n"
    )  # strength below 0.2
    report = check(tmp_path, "prompt,start,end,sound_strength\n" + rows, REPLACE, skip_invalid=True)
    by_row = {e.row: (e.column, e.message) for e in report.errors}
    assert by_row[2][0] == "start" and "greater than or equal to 0" in by_row[2][1]
    assert by_row[3][0] is None or by_row[3][0] == "end"
    assert "must be greater than replace_section_start" in by_row[3][1]
    assert by_row[4][0] == "sound_strength" and "0.2" in by_row[4][1]
    assert report.accepted == 1


def test_long_cells(tmp_path: Path) -> None:
    lyric = "la " * 16_666 + "la"  # 50,000 characters
    swap = get_pipeline("swap-vocals")
    ok = check(tmp_path, f'prompt,lyric\na beat,"{lyric}"\n', swap)
    assert (ok.refused, ok.accepted) == (None, 1)
    long_prompt = check(tmp_path, HEADER + "x" * 50_000 + ",T,FUZZ-2.0,true,1,0.3,x\n")
    assert [e.column for e in long_prompt.errors] == ["prompt"]
    assert "200" in long_prompt.errors[0].message


def test_duplicate_rows_are_accepted_with_a_warning(tmp_path: Path) -> None:
    report = check(tmp_path, HEADER + GOOD + GOOD + GOOD)
    assert (report.refused, report.accepted) == (None, 3)
    assert [(w.row, w.message.split(" (")[0]) for w in report.warnings] == [
        (2, "same cells as row 1"),
        (3, "same cells as row 1"),
    ]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    report = check_csv(str(tmp_path / "nope.csv"), GES)[0]
    assert messages(report)[0].startswith(f"cannot read {tmp_path / 'nope.csv'}:")
