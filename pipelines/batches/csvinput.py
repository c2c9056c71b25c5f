"""Read a batch CSV as a stream of rows, with precise errors.

The file is UTF-8, with or without a byte-order mark; the first line names the
columns, and each column maps to a pipeline param by name (``{row.COLUMN}`` in the
pipeline). Lines are decoded one at a time, so a byte that is not UTF-8 is reported
with its line and column instead of stopping the whole read, and memory stays flat
however long the file is.

Two kinds of problems:

* :class:`CsvFormatError` — the file as a whole cannot be a batch: not readable,
  empty, a header only, UTF-16, a bad header (duplicate, empty, unknown or missing
  columns), or a CSV syntax error after which the parser's position is lost
  (an unbalanced quote, a field or a line over the size limit, CR-only line endings).
  Nothing is submitted.
* a :class:`~pipelines.specs.canvas.RowError` per bad record (wrong number of fields,
  undecodable bytes): that row is invalid, the others can still go
  (``--skip-invalid``).

Row numbers count data records from 1 (the header is row 0; blank lines are
skipped and not counted); a record may span several lines (a quoted lyric), so
messages name the line too.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pipelines.specs.canvas import RowError
from pipelines.specs.spec import PipelineSpec
from workers.storage import ArtifactStore

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# Larger than any param the API takes (a lyric is at most a few thousand characters) and
# than the 131,072-character default, so an over-long cell reaches the row validation and
# gets its precise message; larger still is a broken quote, reported as such.
MAX_FIELD_CHARS = 1_000_000
MAX_LINE_BYTES = 1 << 20
"""Longest physical line read (1 MiB): a file that is one endless line (``/dev/zero``)
is refused at this size instead of filling memory."""


class _LineTooLong(Exception):
    """A physical line over :data:`MAX_LINE_BYTES`; the reader names its row."""

    def __init__(self, line: int, cr_only: bool) -> None:
        super().__init__(line)
        self.line = line
        self.cr_only = cr_only


class CsvFormatError(ValueError):
    """The file cannot be read as a batch; ``errors`` says why (row 0 = the file)."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        super().__init__("; ".join(e.message for e in errors))


@dataclass(frozen=True)
class CsvRecord:
    """One data record: its row number, first line, and the cells by column."""

    row: int
    line: int
    values: dict[str, str]


def _file_error(message: str) -> CsvFormatError:
    return CsvFormatError([RowError(0, None, message)])


def open_lines(source: str, store: ArtifactStore | None = None) -> Iterator[bytes]:
    """The raw lines of ``source``: a local path, a ``file://`` URL or a URL in ``store``."""
    in_store = store is not None and source.startswith(store.url + "/")
    if in_store or ("://" in source and not source.startswith("file://")):
        yield from _capped_lines(io.BytesIO(_read_from_store(source, store)))
        return
    path = Path(source.removeprefix("file://"))
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise _file_error(f"cannot read {source}: {exc.strerror or exc}") from exc
    with handle:
        yield from _capped_lines(handle)


def _capped_lines(handle: BinaryIO) -> Iterator[bytes]:
    """Lines of ``handle``, none read past ``MAX_LINE_BYTES + 1`` bytes (the decoder refuses it)."""
    while line := handle.readline(MAX_LINE_BYTES + 1):
        yield line


def _read_from_store(source: str, store: ArtifactStore | None) -> bytes:
    if store is None or not source.startswith(store.url + "/"):
        where = store.url if store is not None else "no store configured"
        raise _file_error(f"cannot read {source}: not a local file nor in the store ({where})")
    try:
        return store.get_bytes(source[len(store.url) + 1 :])
    except KeyError:
        raise _file_error(f"cannot read {source}: no such object in the store") from None


@dataclass
class _Decoder:
    """Decodes lines for the csv module and remembers which ones were not UTF-8."""

    raw: Iterator[bytes]
    line: int = 0
    bad: dict[int, str] = field(default_factory=dict)
    # The last line read has no LF: at the parser's "new-line in unquoted field" error,
    # the file uses CR-only endings rather than holding one stray CR.
    no_lf: bool = False

    def __iter__(self) -> Iterator[str]:
        for data in self.raw:
            self.line += 1
            self.no_lf = not data.endswith(b"\n")
            if len(data) > MAX_LINE_BYTES:
                raise _LineTooLong(self.line, b"\r" in data and b"\n" not in data)
            if self.line == 1:
                data = self._first(data)
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.bad[self.line] = (
                    f"line {self.line} is not UTF-8 (byte "
                    f"0x{data[exc.start]:02x} at byte {exc.start + 1}); "
                    "save the file as UTF-8"
                )
                yield data.decode("utf-8", errors="replace")

    def _first(self, data: bytes) -> bytes:
        if data.startswith(UTF16_BOMS):
            raise _file_error("the file is UTF-16; save it as UTF-8 (with or without BOM)")
        return data.removeprefix(UTF8_BOM)


class CsvBatchReader:
    """Streams the records of a batch CSV for a pipeline; checks the header first.

    Construction reads and checks the header (raising :class:`CsvFormatError`);
    iterating yields a :class:`CsvRecord` per data record, or a ``RowError`` for a
    record that is malformed on its own.
    """

    def __init__(self, lines: Iterable[bytes], spec: PipelineSpec) -> None:
        csv.field_size_limit(MAX_FIELD_CHARS)
        self._decoder = _Decoder(iter(lines))
        self._reader = csv.reader(iter(self._decoder), strict=True)
        self._row = 0
        self.columns: list[str] = []  # empty while the header is read
        self.columns = self._header(spec)

    def _next(self) -> list[str] | None:
        """The next non-blank record, or None at the end; CSV syntax errors are fatal."""
        while True:
            start = self._reader.line_num + 1
            try:
                record = next(self._reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                at, cr_only = self._reader.line_num, self._decoder.no_lf
                raise _file_error(_syntax_message(exc, start, at, cr_only)) from None
            except _LineTooLong as exc:
                row = self._row + 1 if self.columns else 0
                raise _file_error(_long_line_message(exc, row)) from None
            if any(cell.strip() for cell in record):
                self._start = start
                return record

    def _header(self, spec: PipelineSpec) -> list[str]:
        header = self._next()
        if header is None:
            raise _file_error(
                "the file is empty: the first line must name the columns, e.g. "
                + ",".join(_pipeline_columns(spec))
            )
        if self._decoder.bad:
            raise _file_error(next(iter(self._decoder.bad.values())))
        columns = [name.strip() for name in header]
        problems = header_problems(columns, spec)
        if problems:
            raise CsvFormatError([RowError(0, column, message) for column, message in problems])
        return columns

    def __iter__(self) -> Iterator[CsvRecord | RowError]:
        while (record := self._next()) is not None:
            self._row += 1
            yield self._check(record)
        if self._row == 0:
            raise _file_error("the file has a header but no rows")

    def _check(self, record: list[str]) -> CsvRecord | RowError:
        start, end = self._start, self._reader.line_num
        bad = [message for line, message in self._decoder.bad.items() if start <= line <= end]
        for line in [line for line in self._decoder.bad if line <= end]:
            del self._decoder.bad[line]
        if bad:
            return RowError(self._row, None, bad[0])
        if len(record) != len(self.columns):
            return RowError(self._row, None, _width_message(start, len(record), len(self.columns)))
        return CsvRecord(self._row, start, dict(zip(self.columns, record, strict=True)))


def header_problems(columns: list[str], spec: PipelineSpec) -> list[tuple[str | None, str]]:
    """``(column, message)`` for every header problem: empty, duplicate, unknown, missing."""
    required, optional = spec.columns()
    known = ", ".join(_pipeline_columns(spec))
    problems: list[tuple[str | None, str]] = []
    seen: set[str] = set()
    for index, name in enumerate(columns, start=1):
        if not name:
            problems.append((None, f"column {index} of the header has no name"))
        elif name in seen:
            problems.append((name, f"column {name!r} appears twice in the header"))
        elif name not in required | optional:
            problems.append(
                (name, f"unknown column {name!r}: pipeline {spec.name!r} reads only {known}")
            )
        seen.add(name)
    missing = sorted(required - seen)
    if missing:
        problems.append(
            (
                None,
                f"missing required column(s) {', '.join(missing)}: pipeline "
                f"{spec.name!r} needs them (it reads {known})",
            )
        )
    return problems


def _pipeline_columns(spec: PipelineSpec) -> list[str]:
    required, optional = spec.columns()
    return sorted(required) + sorted(optional)


_CR_ONLY = (
    "the file uses CR line endings (a carriage return without a line feed, "
    "old Mac style); save it with LF or CRLF line endings"
)


def _syntax_message(exc: csv.Error, start: int, at: int, cr_only: bool = False) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return (
            f"unbalanced quote: the quoted field that starts on line {start} never closes "
            f"(the file ended at line {at})"
        )
    if "field larger than field limit" in text:
        # A well-quoted field may be that long too: say what is known, the size.
        return f"line {start}: a field is over the limit of {MAX_FIELD_CHARS:,} characters"
    if "new-line character seen in unquoted field" in text:
        # Lines are split at LF only, so CR-only endings reach the parser as one line.
        if cr_only:
            return f"line {at}: {_CR_ONLY}"
        return (
            f"line {at}: a carriage return (CR) in an unquoted field; quote the field or remove it"
        )
    return f"line {at}: not valid CSV ({text}); quote fields that hold commas, quotes or newlines"


def _long_line_message(exc: _LineTooLong, row: int) -> str:
    if exc.cr_only:
        return f"line {exc.line}: {_CR_ONLY}"
    where = "the header" if row == 0 else f"row {row}"
    return f"line {exc.line} ({where}) is over the limit of {MAX_LINE_BYTES:,} bytes (1 MiB) a line"


def _width_message(line: int, got: int, want: int) -> str:
    more = "an unquoted comma in a field?" if got > want else "a missing comma or field?"
    return f"line {line}: {got} fields but the header has {want} columns ({more})"
