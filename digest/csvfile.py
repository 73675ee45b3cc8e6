"""Reading and writing CSV files that people edit by hand and tools export: bounded, line-exact, safe.

Reading (`read_rows`) never lets one bad row take others with it:

- A row is at most `MAX_ROW_CHARS` characters. A longer one (a 1 MB cell) is one error naming its
  line, and reading goes on; memory stays bounded however long a line is.
- A quoted cell may span lines (a note with line breaks), but an unbalanced quote must not swallow
  the subscribers after it. The `csv` module, given `a@x.com,"Ann` and more rows, returns one row
  whose last cell holds the rest of the file, silently. Here, a cell that runs on into a line that
  looks like another row (its email column holds an address), or to the end of the file, makes
  its first line an error; the lines after it are read again as rows of their own.
- Bytes that are not UTF-8 make their row an error, not the file.

Writing: `neutralise` a cell a spreadsheet would run as a formula (OWASP's CSV injection advice:
a leading `=`, `+`, `-`, `@`, tab or carriage return gets a `'` in front); `read_rows` undoes
exactly that, so an exported list reads back as the same list.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from digest.models import Problem

#: The longest row we read (cells and separators). Subscriber rows are a few hundred characters;
#: a longer one is a mistake or an attack. Under the csv module's own field limit (128 KiB), so
#: that limit never fires first with its "internal error".
MAX_ROW_CHARS = 65_536
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_EMAILISH = re.compile(r"^[^\s@,;\"<>]+@[^\s@,;\"<>]+\.[^\s@,;\"<>]+$")
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def neutralise(cell: str) -> str:
    """A cell as a spreadsheet will show it, never run it: `=HYPERLINK(...)` becomes `'=HYPERLINK(...)`."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def unneutralise(cell: str) -> str:
    """The inverse of `neutralise`, applied to every cell read."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in _FORMULA_START and cell[1:2] else cell


def writer(out: TextIO) -> _NeutralWriter:
    return _NeutralWriter(out)


class _NeutralWriter:
    """csv.writer whose every cell is neutralised."""

    def __init__(self, out: TextIO):
        self._writer = csv.writer(out, lineterminator="\n")
        # csv quotes a cell holding a character of the line terminator ("\n") but not a lone "\r",
        # which readers take for a line break: a row holding one is written fully quoted.
        self._quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row: list[str]) -> None:
        cells = [neutralise(cell) for cell in row]
        (self._quoted if any("\r" in c for c in cells) else self._writer).writerow(cells)


class _RowTooLong(Exception):
    pass


class _RunsOn(Exception):
    """A quoted cell ran on into a line that looks like the next row (0: to the end of the file;
    -1: a row read again tried to run on at all)."""

    def __init__(self, line: int):
        self.line = line


class _Lines:
    """The physical lines of a file for csv.reader: numbered, bounded, and with push-back, so the
    lines a broken row took can be read again as rows of their own."""

    def __init__(self, f: TextIO):
        self._f = f
        self._read = 0  # lines read from the file so far
        self._pending: deque[tuple[int, str]] = deque()
        self.email_column: int | None = None
        self.delimiter = ","
        self.taken: list[tuple[int, str]] = []  # the lines of the row being read
        self.refused: tuple[int, str] = (0, "")  # the line a _RunsOn stopped at
        self.size = 0
        self.ran_to_end = False  # the file ended inside a quoted cell
        # A row read again (given back by a broken one) must end on its own line: were it allowed
        # to run on too, a file of lines that each open a quote would be read over and over.
        self.single = False

    def start_row(self) -> None:
        self.taken = []
        self.size = 0
        self.ran_to_end = False
        self.single = bool(self._pending)

    def give_back(self, lines: list[tuple[int, str]]) -> None:
        self._pending.extendleft(reversed([t for t in lines if t[1]]))

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.taken and self.single:
            raise _RunsOn(-1)
        if self._pending:
            number, line = self._pending.popleft()
        else:
            line = self._f.readline(MAX_ROW_CHARS + 1)
            if not line:
                if self.taken:  # csv asked for more: a quoted cell is still open
                    self.ran_to_end = True
                raise StopIteration
            self._read += 1
            number = self._read
            if len(line) > MAX_ROW_CHARS:
                self._skip_rest(line)
                self.taken.append((number, ""))  # counted, not kept
                raise _RowTooLong
        if self.taken and self._looks_like_a_row(line):
            self.refused = (number, line)
            raise _RunsOn(number)
        self.taken.append((number, line))
        self.size += len(line)
        if self.size > MAX_ROW_CHARS:
            raise _RowTooLong
        return line

    def _skip_rest(self, line: str) -> None:
        # Read the rest of an over-long line in bounded pieces, keeping none of it.
        while line and not line.endswith(("\n", "\r")):
            line = self._f.readline(MAX_ROW_CHARS)

    def _looks_like_a_row(self, line: str) -> bool:
        if self.email_column is None:
            return False
        cells = line.rstrip("\r\n").split(self.delimiter)
        if len(cells) <= self.email_column:
            return False
        return bool(_EMAILISH.match(cells[self.email_column].strip().strip('"')))


@dataclass(frozen=True)
class Header:
    names: tuple[str, ...]  #: as written (stripped; lower-cased when read with `normalise`)
    line: int


Row = dict[str, "str | None"]


def read_rows(
    path: Path, *, normalise: bool = True, email_columns: tuple[str, ...] = ("email",)
) -> Iterator[tuple[int, Header | Row | Problem]]:
    """(line, item) for a CSV file: first its `Header`, then each row as a dict keyed by the header
    (lower-cased when `normalise`), or a `Problem` for a row that cannot be read. A row with fewer
    cells than the header has None for the missing ones; blank rows are skipped. `email_columns`:
    the header names of the address column, used to tell a run-on quoted cell from a real one."""
    source = str(path)
    try:
        f = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        yield 0, Problem(source, f"cannot read: {exc.strerror or exc}")
        return
    with f:
        lines = _Lines(f)
        reader = csv.reader(lines)
        header: list[str] | None = None
        while True:
            lines.start_row()
            try:
                cells = next(reader, None)
                if cells is not None and lines.ran_to_end:
                    raise _RunsOn(0)
            except (_RowTooLong, _RunsOn, csv.Error) as exc:
                yield _unreadable(source, exc, lines)
                reader = csv.reader(lines, delimiter=lines.delimiter)  # a fresh parser: the old one stopped mid-row
                continue
            if cells is None:
                if header is None:
                    yield 1, Problem(source, "empty file", line=1)
                return
            line = lines.taken[0][0]
            if header is None:
                first = "".join(cells)
                if "\x00" in first or first.startswith(("\udcff\udcfe", "\udcfe\udcff")):
                    message = 'the file is UTF-16, not UTF-8 (Excel\'s "Unicode Text"): save it as "CSV UTF-8"'
                    yield line, Problem(source, message, line=line)
                    return
                delimiter = _delimiter(cells)
                if delimiter != ",":
                    # Excel saves "CSV" with semicolons where the decimal mark is a comma, and
                    # "Text" with tabs: the header, one cell as read with commas, says which
                    cells = next(csv.reader(["".join(text for _, text in lines.taken)], delimiter=delimiter))
                    lines.delimiter = delimiter
                    reader = csv.reader(lines, delimiter=delimiter)
                header = [(c.strip().lower() if normalise else c.strip()) for c in cells]
                wanted = {e.lower() for e in email_columns}
                lines.email_column = next((i for i, h in enumerate(header) if h.lower() in wanted), None)
                yield line, Header(tuple(header), line)
                continue
            joined = "".join(cells)  # one look at the whole row, not one per cell
            if not joined.strip():
                continue
            if len(cells) > len(header):  # a shifted row would file data under the wrong columns
                yield line, Problem(source, "more cells than header columns", line=line)
                continue
            if not joined.isascii() and _NOT_UTF8.search(joined):
                yield line, Problem(source, "not valid UTF-8", line=line)
                continue
            row: Row = dict(zip(header, map(unneutralise, cells) if "'" in joined else cells, strict=False))
            for name in header[len(cells) :]:
                row[name] = None
            yield line, row


def _delimiter(header: list[str]) -> str:
    """`;` or a tab when the header, read with commas, is one cell holding more of them than of
    anything else (a one-column list, `email`, stays comma-separated)."""
    if len(header) != 1:
        return ","
    counts = {d: header[0].count(d) for d in (";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _unreadable(source: str, exc: Exception, lines: _Lines) -> tuple[int, Problem]:
    """The error for a row that could not be read; the lines it took after its first are given
    back, to be read again as rows of their own (nothing is swallowed)."""
    first = lines.taken[0][0] if lines.taken else 0
    rest = lines.taken[1:]
    if isinstance(exc, _RowTooLong):
        last = lines.taken[-1][0] if lines.taken else first
        span = f"line {first}" if last == first else f"lines {first}-{last}"
        message = f"row longer than {MAX_ROW_CHARS:,} characters ({span}); skipped"
    elif isinstance(exc, _RunsOn):
        if exc.line > 0:
            where = f"runs on into line {exc.line}, which looks like another row"
            rest = [*rest, lines.refused]
        elif exc.line == 0:
            where = "is never closed (it runs to the end of the file)"
        else:
            where = "does not close on it"
        message = f"unbalanced quote: a quoted cell that opens on this line {where}; this row is skipped"
    else:
        message = f"not readable as CSV: {exc}"
    lines.give_back(rest)
    return first, Problem(source, message, line=first)
