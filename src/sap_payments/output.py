"""Writing records as a table, CSV or JSON, streamed so a million rows cost no memory.

The CLI and the reports use these; the JSON shapes are documented in ``docs/formats.md``.

Every CSV and XLSX file sap_payments writes — reports, payout lists, public lists, review
lists — passes its text through :func:`escape_formula` (:func:`csv_row`, :func:`sheet_row`), so
a name such as ``=HYPERLINK(…)`` reaches a spreadsheet as text, never as a formula.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TextIO

__all__ = [
    "FORMATS",
    "FORMULA_TRIGGERS",
    "csv_row",
    "escape_formula",
    "sheet_row",
    "unescape_formula",
    "write_csv",
    "write_json_document",
    "write_table",
]

FORMATS = ("table", "csv", "json")

Cell = str | int | None

#: A text starting with one of these is read as a formula by a spreadsheet (OWASP, "CSV
#: Injection"): ``=``, ``+``, ``-``, ``@``, tab and carriage return.
FORMULA_TRIGGERS: Final = frozenset("=+-@\t\r")


def escape_formula(text: str) -> str:
    """``text`` as a spreadsheet cell that is never a formula: OWASP's advice against CSV
    injection, a ``'`` put before a leading ``=``, ``+``, ``-``, ``@``, tab or carriage return.

    >>> escape_formula("=SUM(A1:A9)")
    "'=SUM(A1:A9)"
    >>> escape_formula("Nguyễn Văn An")
    'Nguyễn Văn An'
    """
    return "'" + text if text[:1] in FORMULA_TRIGGERS else text


def unescape_formula(text: str) -> str:
    """The text :func:`escape_formula` was given: a ``'`` before a leading trigger dropped.
    Imports read names through it, so a name written to a list and read back is the same.

    >>> unescape_formula("'=1+2")
    '=1+2'
    >>> unescape_formula("'Tí")
    "'Tí"
    """
    return text[1:] if text[:1] == "'" and text[1:2] in FORMULA_TRIGGERS else text


def csv_row(row: Iterable[object]) -> list[object]:
    """A row for :func:`csv.writer`: ``None`` as an empty field, text escaped
    (:func:`escape_formula`), numbers as they are (a negative amount stays a number)."""
    return [
        ("'" + cell if cell[:1] in FORMULA_TRIGGERS else cell)
        if isinstance(cell, str)
        else ("" if cell is None else cell)
        for cell in row
    ]


def sheet_row(sheet: Any, row: Iterable[object]) -> list[object]:
    """A row for an openpyxl worksheet's ``append``: text as escaped text cells
    (:func:`escape_formula`), stored as strings so that openpyxl never takes one for a formula
    or an error value (``#N/A``); numbers, dates and ``None`` as they are."""
    from openpyxl.cell import Cell  # imported here: only XLSX writers pay for it

    cells: list[object] = []
    for value in row:
        if isinstance(value, str):
            cell = Cell(sheet, value=escape_formula(value))
            cell.data_type = "s"
            cells.append(cell)
        else:
            cells.append(value)
    return cells


def _width(text: str) -> int:
    """Display width: combining marks take no column (Vietnamese text has many)."""
    return sum(1 for ch in text if not unicodedata.combining(ch))


def write_table(
    out: TextIO, columns: Sequence[str], rows: Iterable[Sequence[Cell]], *, sample: int = 200
) -> int:
    """An aligned text table; widths are set from the first ``sample`` rows."""
    iterator = iter(rows)
    head: list[list[str]] = []
    for row in iterator:
        head.append(["" if cell is None else _format(cell) for cell in row])
        if len(head) >= sample:
            break
    widths = [_width(c) for c in columns]
    for row in head:
        widths = [max(w, _width(cell)) for w, cell in zip(widths, row, strict=True)]

    def emit(cells: Sequence[str]) -> None:
        parts = []
        for cell, width, right in zip(cells, widths, numeric, strict=True):
            pad = " " * max(0, width - _width(cell))
            parts.append(pad + cell if right else cell + pad)
        out.write("  ".join(parts).rstrip() + "\n")

    numeric = [bool(head) and all(_is_number(r[i]) for r in head) for i in range(len(columns))]
    emit(list(columns))
    emit(["-" * w for w in widths])
    count = 0
    for row in head:
        emit(row)
        count += 1
    for raw in iterator:
        emit(["" if cell is None else _format(cell) for cell in raw])
        count += 1
    return count


def _is_number(text: str) -> bool:
    return text == "" or text.replace(",", "").lstrip("-").isdigit()


def _format(cell: str | int) -> str:
    if isinstance(cell, int) and not isinstance(cell, bool):
        return f"{cell:,}"
    return str(cell)


def write_csv(out: TextIO, columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> int:
    """A header row and the rows as CSV, every text escaped (:func:`csv_row`)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_row(columns))
    count = 0
    for row in rows:
        writer.writerow(csv_row(row))
        count += 1
    return count


def write_json_document(
    out: TextIO,
    header: Mapping[str, Any],
    list_key: str,
    items: Iterable[Mapping[str, Any]],
    *,
    footer: Callable[[], Mapping[str, Any]] | None = None,
) -> int:
    """``{**header, list_key: [items…], **footer()}`` written item by item."""
    out.write("{")
    for key, value in header.items():
        out.write(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}, ")
    out.write(f"{json.dumps(list_key)}: [")
    count = 0
    for item in items:
        out.write(",\n  " if count else "\n  ")
        out.write(json.dumps(item, ensure_ascii=False))
        count += 1
    out.write("\n]" if count else "]")
    if footer is not None:
        for key, value in footer().items():
            out.write(f", {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    out.write("}\n")
    return count
