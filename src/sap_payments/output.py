"""Writing records as a table, CSV or JSON, streamed so a million rows cost no memory.

The CLI and the reports use these; the JSON shapes are documented in ``docs/formats.md``.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["FORMATS", "write_csv", "write_json_document", "write_table"]

FORMATS = ("table", "csv", "json")

Cell = str | int | None


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
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
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
