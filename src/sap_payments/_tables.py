"""Reading the tables clerks make: CSV files as Excel saves them, and XLSX workbooks.

Every import reads its file here — the roster, the areas file, a provider's enrolment results,
the post office's confirmations — so a problem of the file gets the same message whatever the
file is for, and the message says what to do in Excel. What is accepted, and why, is in
``docs/formats.md`` (section 1.10, "Files as clerks make them").

* A CSV file is UTF-8 (a byte-order mark is dropped) or UTF-16 with a byte-order mark (Excel's
  "Unicode Text"). Any other encoding is refused with a guess at what the file is (Windows-1258,
  Latin-1, UTF-16 without a byte-order mark) and how to save it. The separator is a comma, or a
  semicolon or tab when the header line names the expected columns that way.
* An XLSX workbook is read to its last row, whatever its stored dimension says; a formula cell
  with no saved value (it would read as empty) is refused, naming the cell.
* The header is the first row that names an expected column, within the first
  :data:`HEADER_SEARCH` rows; rows above it that name none (a title, a date) are skipped. A
  workbook whose first sheet holds no header is refused, naming the sheet that holds one.
* Blank rows — empty, or holding only spaces — are skipped, and still counted in line numbers.

Only the header is examined for the encoding and the separator, so the rows of a large file
cost what :mod:`csv` costs.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Generator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

import attrs

from sap_payments.errors import InvalidRoster, RowProblem

__all__ = [
    "EMPTY",
    "HEADER_SEARCH",
    "SAVE_AS_UTF8",
    "Table",
    "TableProblem",
    "cell_text",
    "csv_rows",
    "open_table",
    "text_lines",
]

#: The header is looked for in this many rows at the top of the file (or of a sheet).
HEADER_SEARCH: Final = 10
#: What to do about a CSV file in another encoding or with another separator.
SAVE_AS_UTF8: Final = "in Excel, save it as 'CSV UTF-8 (Comma delimited)'"
#: The reason given for a file with nothing in it.
EMPTY: Final = "the file is empty"
#: Problems of one kind kept for the message (and counted beyond).
_MAX_PROBLEMS: Final = 10_000

_XLSX_SUFFIXES: Final = frozenset({".xlsx", ".xlsm"})
_ZIP: Final = b"PK\x03\x04"
_OLE: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an Excel 97–2003 .xls workbook
_UTF16_BOMS: Final = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SEPARATORS: Final = {",": "','", ";": "';'", "\t": "tab"}
#: Letters and tone marks that Windows-1258 has and Windows-1252 has not: Vietnamese.
_VIETNAMESE: Final = frozenset("ĂăĐđƠơƯư\u0300\u0301\u0303\u0309\u0323")
_UNCLOSED: Final = (
    'a quoted field opens on this line and its closing quote (") is missing, so the rest of '
    "the file was read as one field: close the quote, or remove it"
)
_UNCLOSED_LONG: Final = (
    "a quoted field opens on this line and runs on for more than 128 KiB: its closing quote "
    '(") is missing; close the quote, or remove it'
)
_FORMULA_TAG: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s/>]")
_CELL_REF: Final = re.compile(r"([A-Z]{1,3})(\d+)")

Rows = Generator[tuple[int, list[str]], None, None]


@attrs.frozen(eq=False)
class Table:
    """An open table: its header and its rows, read as they are iterated.

    ``header`` holds the header cells, spaces around them removed; ``rows`` yields (line,
    cells) for every row that is not blank, with the line (CSV) or row (XLSX) number the clerk
    sees; ``line`` is the header's. ``sheet`` is the worksheet read (XLSX). A UTF-8 CSV file
    also gives its ``delimiter`` and ``data_offset``, the byte offset of the line after the
    header, so that a large file can be read in slices.
    """

    header: list[str]
    rows: Rows
    line: int = 1
    sheet: str | None = None
    delimiter: str = ","
    data_offset: int | None = None

    def close(self) -> None:
        """Close the file without reading the rows."""
        self.rows.close()


class TableProblem(ValueError):
    """A problem of the file at one line, raised from inside an iterator over its lines."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def _refuse(path: Path, line: int, reason: str) -> InvalidRoster:
    return InvalidRoster(str(path), [RowProblem(line, "(file)", reason)])


def open_table(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    months: Collection[str] = (),
) -> Table:
    """Open a CSV or XLSX file: its header, and its rows as an iterator.

    A file is read as XLSX when its name ends in ``.xlsx`` or ``.xlsm``, or when it is a ZIP
    archive whatever its name; as CSV otherwise.

    Args:
        path: the file.
        columns: the column names the header may hold. When given, the header is the first
            row (within :data:`HEADER_SEARCH`) naming one of them, case aside, and the CSV
            separator may be a semicolon or a tab; when not, the header is the first line.
        months: columns holding a month (``YYYY-MM``): an XLSX date cell there is read as its
            month.

    Raises:
        InvalidRoster: the file cannot be read (raised by the row iterator for a problem
            further into the file); the problem is on column ``(file)``.
    """
    source = Path(path)
    with source.open("rb") as probe:
        magic = probe.read(len(_OLE))
    if source.suffix.lower() in _XLSX_SUFFIXES or magic.startswith(_ZIP):
        return _read_xlsx(source, columns, months)
    if magic == _OLE:
        raise _refuse(
            source,
            1,
            "an Excel 97-2003 workbook (.xls), which cannot be read: in Excel, save it as "
            "'Excel Workbook (*.xlsx)' or as 'CSV UTF-8 (Comma delimited)'",
        )
    return _read_csv(source, columns)


def _expected(columns: Sequence[str]) -> str:
    shown = ", ".join(columns[:3])
    return f"{shown}, …" if len(columns) > 3 else shown


def _names_a_column(cells: Sequence[str], wanted: Collection[str]) -> bool:
    return any(cell.strip().lower() in wanted for cell in cells)


# -- CSV ----------------------------------------------------------------------------------------
def _not_utf8(raw: bytes) -> str:
    """Why a line is not UTF-8, with a guess at what it is and what to do."""
    if b"\x00" in raw:
        guess = "it looks like UTF-16 text without a byte-order mark"
    elif any(ch in _VIETNAMESE for ch in raw.decode("cp1258", errors="replace")):
        guess = (
            "it looks like Windows-1258 (Vietnamese ANSI) text, what Excel's plain "
            "'CSV (Comma delimited)' writes"
        )
    else:
        guess = "it looks like Windows-1252 (Latin-1) text"
    return f"not UTF-8 text ({guess}); {SAVE_AS_UTF8}"


def text_lines(handle: BinaryIO, first_line: int, limit: int | None = None) -> Iterator[str]:
    """Decode a binary file line by line, so a bad byte is blamed on the line that holds it.

    Stops after ``limit`` bytes when given (a slice of the file, ending at a line end).

    Raises:
        TableProblem: a line is not UTF-8.
    """
    line = first_line
    remaining = limit
    for raw in handle:
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TableProblem(line, _not_utf8(raw)) from None
        line += 1
        if remaining is not None:
            remaining -= len(raw)
            if remaining <= 0:
                return


def _utf16_lines(stream: IO[str], first_line: int) -> Iterator[str]:
    line = first_line
    while True:
        try:
            text = stream.readline()
        except UnicodeDecodeError as exc:
            raise TableProblem(
                line, f"not UTF-16 text although it starts as UTF-16 ({exc.reason}); {SAVE_AS_UTF8}"
            ) from None
        if not text:
            return
        yield text
        line += 1


def _lines(handle: BinaryIO) -> tuple[Iterator[str], str]:
    """The file's lines as text, and its encoding (UTF-16 when it starts with its BOM)."""
    utf16 = handle.read(2) in _UTF16_BOMS
    handle.seek(0)
    if utf16:
        return _utf16_lines(io.TextIOWrapper(handle, encoding="utf-16", newline=""), 1), "utf-16"
    return text_lines(handle, 1), "utf-8"


def _split(text: str, delimiter: str) -> list[str]:
    return next(csv.reader([text], delimiter=delimiter), [])


def _header_cells(text: str, columns: Sequence[str] | None) -> tuple[list[str], str] | None:
    """The line's cells and separator if it is the header (always, without ``columns``)."""
    if columns is None:
        return _split(text, ","), ","
    wanted = {column.lower() for column in columns}
    for delimiter in _SEPARATORS:
        if delimiter == "," or delimiter in text:
            cells = _split(text, delimiter)
            if _names_a_column(cells, wanted):
                return cells, delimiter
    return None


def _read_csv(path: Path, columns: Sequence[str] | None) -> Table:
    handle = path.open("rb")
    try:
        return _csv_table(path, handle, columns)
    except BaseException:
        handle.close()
        raise


def _csv_table(path: Path, handle: BinaryIO, columns: Sequence[str] | None) -> Table:
    source = str(path)
    lines, encoding = _lines(handle)
    found: tuple[list[str], str] | None = None
    first: tuple[int, str] | None = None  # the first line that is not blank
    number = 0
    try:
        for text in lines:
            number += 1
            if number == 1:
                text = text.removeprefix("\ufeff")  # the UTF-8 byte-order mark
            if "\x00" in text:
                raise TableProblem(number, _not_utf8(text.encode("utf-8")))
            if text.strip():
                found = _header_cells(text, columns)
                if found is not None:
                    break
                first = first or (number, text)
            if number >= (1 if columns is None else HEADER_SEARCH):
                break
    except TableProblem as exc:
        raise _refuse(path, exc.line, exc.reason) from None
    if found is None or not any(cell.strip() for cell in found[0]):
        if first is None or columns is None:
            raise _refuse(path, 1, EMPTY)
        line, text = first
        hint = ""
        for delimiter in (";", "\t"):
            if delimiter in text and "," not in text:
                hint = f"; the file is separated by {_SEPARATORS[delimiter]}: {SAVE_AS_UTF8}"
        raise _refuse(
            path,
            line,
            f"expected the header ({_expected(columns)}) on line {line}; none of the first "
            f"{HEADER_SEARCH} lines names these columns{hint}",
        )
    header, delimiter = found
    offset = handle.tell() if encoding == "utf-8" else None

    def rows() -> Rows:
        with handle:
            try:
                yield from csv_rows(lines, number + 1, delimiter, path)
            except TableProblem as exc:
                raise InvalidRoster(source, [RowProblem(exc.line, "(file)", exc.reason)]) from None

    return Table(
        [cell.strip() for cell in header],
        rows(),
        number,
        delimiter=delimiter,
        data_offset=offset,
    )


def csv_rows(lines: Iterator[str], first_line: int, delimiter: str, path: Path) -> Rows:
    """(line, cells) of the CSV records in ``lines`` (of the file ``path``), the first on
    ``first_line``; blank records (empty, or only spaces) left out. The line of a record is the
    line it ends on.

    Raises:
        TableProblem: a line that is not text, broken CSV, or a quote never closed (blamed on
            the line the quoted field opens).
    """
    reader = csv.reader(lines, delimiter=delimiter)
    before = first_line - 1
    start = end = before
    try:
        for cells in reader:
            start, end = end + 1, before + reader.line_num
            if cells and (cells[0].strip() or any(cell.strip() for cell in cells)):
                yield end, cells
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):  # a quote left open swallows lines
            raise TableProblem(end + 1, _UNCLOSED_LONG) from None
        raise TableProblem(before + reader.line_num, f"broken CSV: {exc}") from None
    # A quote never closed swallows the rest of the input into the last record.
    if end > start and _unclosed(path, start, end, delimiter):
        raise TableProblem(start, _UNCLOSED)


def _unclosed(path: Path, start: int, end: int, delimiter: str) -> bool:
    """Whether lines ``start``–``end`` hold a record whose quoted field is never closed."""
    with path.open("rb") as handle:
        lines, _ = _lines(handle)
        record = list(itertools.islice(lines, start - 1, end))
    try:
        for _ in csv.reader(record, delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


# -- XLSX ---------------------------------------------------------------------------------------
def cell_text(value: object) -> str:
    """A spreadsheet cell as the text a clerk typed (dates as ISO, whole numbers without .0)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Formatting only: the text then goes through the same checks as a CSV cell.
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _read_xlsx(path: Path, columns: Sequence[str] | None, months: Collection[str]) -> Table:
    import openpyxl  # only XLSX readers pay for it

    # Opened here, not by name: openpyxl refuses a workbook whose name does not end in .xlsx.
    handle = path.open("rb")
    try:
        try:
            workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds on a broken file
            raise _refuse(path, 1, f"not a readable XLSX workbook: {exc}") from None
        try:
            return _xlsx_table(path, handle, workbook, columns, months)
        except BaseException:
            workbook.close()
            raise
    except BaseException:
        handle.close()
        raise


def _find_header(
    sheet: Any, columns: Sequence[str] | None
) -> tuple[list[str] | None, int, Iterator[tuple[int, tuple[Any, ...]]], int | None]:
    """(header, its row, the rows after it, the first row not blank) of a sheet; the header is
    None when none of the first rows names a column."""
    sheet.reset_dimensions()  # the stored dimension may be stale: read to the last row
    rows = enumerate(sheet.iter_rows(values_only=True), start=1)
    first: int | None = None
    for number, values in rows:
        cells = [cell_text(value).strip() for value in values]
        if columns is None:
            return cells, number, rows, number
        if any(cells):
            first = first or number
            if _names_a_column(cells, {column.lower() for column in columns}):
                return cells, number, rows, first
        if number >= HEADER_SEARCH:
            break
    return None, 0, rows, first


def _xlsx_table(
    path: Path,
    handle: BinaryIO,
    workbook: Any,
    columns: Sequence[str] | None,
    months: Collection[str],
) -> Table:
    sheets = workbook.worksheets
    if not sheets:
        raise _refuse(path, 1, "the workbook has no worksheet")
    sheet = sheets[0]
    header, line, iterator, first = _find_header(sheet, columns)
    if header is None:
        if columns is None:
            raise _refuse(path, 1, "the first sheet is empty")
        where = f"sheet '{sheet.title}'"
        reason = (
            f"{where} is empty"
            if first is None
            else f"{where}, row {first}: expected the header ({_expected(columns)}); none of "
            f"the first {HEADER_SEARCH} rows names these columns"
        )
        for other in sheets[1:]:
            found, row, _, _ = _find_header(other, columns)
            if found is not None:
                reason += (
                    f"; the header is on row {row} of sheet '{other.title}': move that sheet "
                    "to the front, or delete the sheets before it"
                )
                break
        raise _refuse(path, first or 1, reason)
    while header and not header[-1]:
        header.pop()
    problems = _uncomputed_formulas(workbook, sheet, line, header)
    if problems:
        raise InvalidRoster(str(path), problems[:_MAX_PROBLEMS], total=len(problems))
    month_positions = [k for k, name in enumerate(header) if name in months]

    def rows() -> Rows:
        try:
            for number, values in iterator:
                cells = [cell_text(value) for value in values]
                for k in month_positions:
                    value = values[k] if k < len(values) else None
                    if isinstance(value, dt.date):  # a datetime too
                        cells[k] = f"{value.year:04d}-{value.month:02d}"
                if any(cells) and any(cell.strip() for cell in cells):
                    yield number, cells
        finally:
            workbook.close()
            handle.close()

    return Table(header, rows(), line, sheet=sheet.title)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2].rpartition(":")[2]


def _uncomputed_formulas(
    workbook: Any, sheet: Any, header_row: int, header: Sequence[str]
) -> list[RowProblem]:
    """Formula cells below the header with no saved value: read as empty, they would be taken
    for an empty cell (a coefficient ``=1+0.5`` for no coefficient)."""
    # openpyxl's read-only workbook keeps its archive open and knows each sheet's part name.
    archive, member = workbook._archive, sheet._worksheet_path
    with archive.open(member) as stream:
        tail = b""
        while chunk := stream.read(1 << 20):
            if _FORMULA_TAG.search(tail + chunk):
                break
            tail = chunk[-16:]
        else:
            return []  # no formula at all: the usual case, and one pass over the bytes
    problems: list[RowProblem] = []
    with archive.open(member) as stream:
        row, column, parent = 0, 0, None
        # The same part openpyxl has just parsed with the same parser.
        for event, element in ET.iterparse(stream, events=("start", "end")):  # noqa: S314
            name = _local(element.tag)
            if event == "start":
                if name == "sheetData":
                    parent = element
                elif name == "row":
                    row, column = int(element.get("r") or row + 1), 0
                continue
            if name == "row" and parent is not None:
                parent.clear()  # rows are done with: keep memory flat
            elif name == "c":
                ref = _CELL_REF.fullmatch(element.get("r") or "")
                if ref is not None:
                    row, column = int(ref[2]), _column_index(ref[1])
                else:
                    column += 1
                within = row > header_row and 0 < column <= len(header)
                if within and _without_value(element):
                    problems.append(_formula_problem(sheet.title, row, column, header))
    return problems


def _without_value(cell: ET.Element) -> bool:
    children = {_local(child.tag): child for child in cell}
    if "f" not in children:
        return False
    value = children.get("v")
    if value is not None and value.text:
        return False
    return cell.get("t") != "str"  # a formula whose saved value is the empty text


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index


def _column_letters(index: int) -> str:
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _formula_problem(title: str, row: int, column: int, header: Sequence[str]) -> RowProblem:
    return RowProblem(
        row,
        header[column - 1] or f"#{column}",
        f"cell {_column_letters(column)}{row} of sheet '{title}' holds a formula with no saved "
        "value, which would be read as empty: open the file in Excel and save it again (Excel "
        "saves the values), or copy the column and paste it as values",
    )
