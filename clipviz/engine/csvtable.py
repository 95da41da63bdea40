"""Read a CSV someone gave us: bytes in, a table of numbers or one-line problems out.

Both kinds of upload go through here: your own data for the Lab
(``clipviz.engine.data``) and a gradient-norm log of your own training run
(``clipviz.lessons.yourrun``). ``read_csv`` never raises on bad input; it returns
a ``CsvTable`` or a list of problems, each one plain sentence that says what is
wrong and, where it helps, on which line of the file, e.g.

    not UTF-8 text: byte 0xe9 at position 112 is not valid UTF-8 (save the file as CSV UTF-8)
    line 7 has 5 fields, but the header names 4 columns

Everything stays in memory. Nothing here writes a file or keeps a cache: the
table belongs to whoever called, in the app the one session that uploaded it.

How a file is read:

* UTF-8 text (a byte-order mark is allowed); the delimiter is the one of
  ``,`` ``;`` tab ``|`` that splits the first lines into the same number of
  fields, more than one (comma when none does).
* The first non-blank row names the columns, unless every one of its cells is
  a number: then the file has no header and the columns are named
  ``column 1``, ``column 2``, ... Blank or repeated names are made unique.
* Every cell is read as a float (``float()``: ``1e-3``, ``nan``, ``inf`` are
  numbers). Empty cells and text are kept as NaN and remembered, so a caller
  can say "column 'x' has text on line 17" only for the columns it uses.
"""

from __future__ import annotations

import csv
import io
import math
from array import array
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

DELIMITERS = (",", ";", "\t", "|")
SNIFF_LINES = 20  # the lines the delimiter is judged on
NUMBER, EMPTY, TEXT = 0, 1, 2  # what a cell held
FLOAT32_MAX = float(np.finfo(np.float32).max)


def size_text(n_bytes: int) -> str:
    """'5 MB' (MB = 2**20 bytes, as Streamlit counts its upload limit)."""
    mb = n_bytes / 2**20
    return f"{mb:.0f} MB" if mb >= 10 or mb == int(mb) else f"{mb:.1f} MB"


def _shown(cell: str, limit: int = 30) -> str:
    """A cell as a message quotes it: one line, at most ``limit`` characters."""
    text = " ".join(cell.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


@dataclass(frozen=True)
class Column:
    """One column: its numbers (NaN where a cell was empty or text) and what was odd in it."""

    name: str
    index: int  # position in the file, from 0
    values: np.ndarray  # float64, one per row
    kinds: np.ndarray  # uint8 per row: NUMBER, EMPTY or TEXT
    first_text: tuple[int, str] | None  # (line, cell) of the first cell that is not a number
    first_empty: int | None  # line of the first empty cell
    first_nan: int | None  # line of the first cell that reads as NaN
    first_inf: int | None  # line of the first infinite cell
    text: tuple[str, ...] | None = None  # every cell as written, for the columns asked for

    @property
    def empty(self) -> np.ndarray:
        """Rows whose cell was empty (a written 'nan' is a number, NaN)."""
        return self.kinds == EMPTY

    @property
    def numeric(self) -> bool:
        """Only numbers (or empty cells), and at least one number."""
        return self.first_text is None and bool(np.isfinite(self.values).any())

    def problem(self, *, allow_empty: bool = False, allow_nonfinite: bool = False) -> str | None:
        """The first reason this column cannot be used as numbers, in one line (None if none)."""
        if self.first_text is not None:
            line, cell = self.first_text
            return f"column {self.name!r} has a cell that is not a number on line {line}: {_shown(cell)}"
        if self.first_empty is not None and not allow_empty:
            return f"column {self.name!r} has an empty cell on line {self.first_empty}"
        if not allow_nonfinite:
            if self.first_nan is not None:
                return f"column {self.name!r} holds NaN on line {self.first_nan}"
            if self.first_inf is not None:
                return f"column {self.name!r} holds an infinite value on line {self.first_inf}"
        return None


@dataclass(frozen=True)
class CsvTable:
    """A CSV file read into numbers, column by column."""

    columns: tuple[Column, ...]
    lines: np.ndarray  # the file's line number of each row (int64), for messages
    delimiter: str
    has_header: bool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.numeric)

    @property
    def n_rows(self) -> int:
        return int(self.lines.size)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def nbytes(self) -> int:
        return self.lines.nbytes + sum(c.values.nbytes for c in self.columns)


def read_csv(
    data: bytes,
    *,
    max_bytes: int,
    max_rows: int,
    max_columns: int,
    max_cells: int | None = None,
    keep_text: Collection[str] = (),
) -> CsvTable | list[str]:
    """Read CSV ``data`` into a ``CsvTable``, or say in one line each what is wrong with it.

    The limits are checked as the file is read, so an oversized file costs no
    more than its first ``max_rows`` rows. A file needs at least one column
    that holds only numbers. The columns named in ``keep_text`` (any case)
    also keep their cells as written (``Column.text``), e.g. a column naming
    the run of each row.
    """
    size = len(data)
    if size > max_bytes:
        return [f"the file is {size_text(size)}, above the limit of {size_text(max_bytes)}"]
    raw = bytes(data)
    if not raw.strip():
        return ["the file is empty"]
    if raw[:4] == b"PK\x03\x04":
        return [
            "not a CSV: this is a zip archive, perhaps an .xlsx spreadsheet "
            "(save it as CSV, comma-separated, UTF-8)"
        ]
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return ["not UTF-8 text: the file is UTF-16 (save it as CSV UTF-8)"]
    if b"\x00" in raw:
        return ["not a CSV: the file holds binary data, not text"]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return [
            f"not UTF-8 text: byte 0x{raw[error.start]:02x} at position {error.start:,} is "
            "not valid UTF-8 (save the file as CSV UTF-8)"
        ]
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        return _read_rows(reader, delimiter, max_rows, max_columns, max_cells, keep_text)
    except csv.Error as error:
        return [f"not a CSV: line {reader.line_num}: {error}"]


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into equal rows of more than one field."""
    head = "\n".join(line for line in text.splitlines()[: SNIFF_LINES * 2] if line.strip())
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        try:
            rows = list(csv.reader(io.StringIO(head), delimiter=delimiter))[:SNIFF_LINES]
        except csv.Error:
            continue
        counts = {len(r) for r in rows if r}
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = delimiter, fields
    return best


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _unique_names(cells: list[str]) -> list[str]:
    names: list[str] = []
    for i, cell in enumerate(cells):
        name = " ".join(cell.split()) or f"column {i + 1}"
        base, k = name, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    return names


def _read_rows(
    reader, delimiter, max_rows, max_columns, max_cells, keep_text
) -> CsvTable | list[str]:
    header: list[str] | None = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = row
            break
    if header is None:
        return ["the file is empty"]
    n_cols = len(header)
    if n_cols > max_columns:
        return [f"the file has {n_cols:,} columns, above the limit of {max_columns:,}"]
    if max_cells is not None:
        max_rows = min(max_rows, max(1, max_cells // n_cols))
    has_header = not all(_is_number(c.strip()) for c in header)
    names = _unique_names(header) if has_header else [f"column {i + 1}" for i in range(n_cols)]

    values = array("d")
    kinds = bytearray()
    lines = array("q")
    number_row = bytes(n_cols)  # every cell a number
    first_text: dict[int, tuple[int, str]] = {}  # column -> (line, cell): text is not kept
    wanted = {name.lower() for name in keep_text}
    kept: dict[int, list[str]] = {j: [] for j, n in enumerate(names) if n.lower() in wanted}

    def add(row: list[str], line: int) -> None:
        try:  # the common case, a row of numbers, at C speed
            values.extend(list(map(float, row)))
            kinds.extend(number_row)
        except ValueError:
            for j, cell in enumerate(row):
                stripped = cell.strip()
                try:
                    values.append(float(stripped))
                    kinds.append(NUMBER)
                except ValueError:
                    values.append(math.nan)
                    kinds.append(TEXT if stripped else EMPTY)
                    if stripped and j not in first_text:
                        first_text[j] = (line, stripped)
        lines.append(line)
        for j, cells in kept.items():
            cells.append(row[j].strip())

    if not has_header:
        add(header, reader.line_num)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank lines are not rows
        if len(row) != n_cols:
            return [
                f"line {reader.line_num} has {len(row)} field{'s' if len(row) != 1 else ''}, "
                f"but the {'header names' if has_header else 'first row has'} {n_cols} "
                f"column{'s' if n_cols != 1 else ''}"
            ]
        if len(lines) >= max_rows:
            return [f"the file has more than {max_rows:,} rows of data, the limit"]
        add(row, reader.line_num)

    n_rows = len(lines)
    grid = np.frombuffer(values, dtype=np.float64).reshape(n_rows, n_cols)
    kind = np.frombuffer(kinds, dtype=np.uint8).reshape(n_rows, n_cols)
    row_lines = np.frombuffer(lines, dtype=np.int64).copy()
    columns = []
    for j, name in enumerate(names):
        col_values, col_kind = grid[:, j].copy(), kind[:, j]
        numbers = col_kind == NUMBER

        def first_line(mask: np.ndarray) -> int | None:
            hits = np.flatnonzero(mask)
            return int(row_lines[hits[0]]) if hits.size else None

        columns.append(
            Column(
                name=name,
                index=j,
                values=col_values,
                kinds=col_kind.copy(),
                first_text=first_text.get(j),
                first_empty=first_line(col_kind == EMPTY),
                first_nan=first_line(numbers & np.isnan(col_values)),
                first_inf=first_line(numbers & np.isinf(col_values)),
                text=tuple(kept[j]) if j in kept else None,
            )
        )
    table = CsvTable(tuple(columns), row_lines, delimiter, has_header)
    if table.n_rows == 0:
        return ["the file has a header but no rows of data"]
    if not table.numeric_names:
        return [f"no column holds numbers only (the columns: {_names_text(table.names)})"]
    return table


def _names_text(names: tuple[str, ...], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
