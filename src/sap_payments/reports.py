"""Reports written as a table, CSV or JSON: the cycle listing and the change report.

The CLI prints them and the demo saves them; the shapes are documented in ``docs/formats.md``
and kept stable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from sap_payments.changes import Change, ChangeReport
from sap_payments.output import write_csv, write_json_document, write_table
from sap_payments.periods import Period
from sap_payments.store import CycleRecord, InstructionRecord, LineRecord

__all__ = [
    "CHANGE_COLUMNS",
    "SHOW_COLUMNS",
    "instruction_document",
    "write_change_report",
    "write_cycle",
    "write_records",
]

SHOW_COLUMNS = (
    "instruction_id",
    "beneficiary_id",
    "payee",
    "channel",
    "provider",
    "amount",
    "state",
    "held_reason",
    "lines",
)
CHANGE_COLUMNS = ("kind", "beneficiary_id", "commune_code", "previous_amount", "amount", "reason")


def write_records(
    out: TextIO,
    fmt: str,
    columns: Sequence[str],
    rows: Iterator[Sequence[Any]],
    *,
    header: dict[str, Any],
    key: str,
    items: Iterator[dict[str, Any]] | None = None,
) -> int:
    """Write rows as ``fmt``; JSON gets ``items`` (default: each row as an object) under ``key``."""
    if fmt == "json":
        objects = (
            items if items is not None else (dict(zip(columns, row, strict=True)) for row in rows)
        )
        return write_json_document(out, header, key, objects)
    if fmt == "csv":
        return write_csv(out, columns, rows)
    return write_table(out, columns, rows)


def instruction_document(record: InstructionRecord, lines: list[LineRecord]) -> dict[str, Any]:
    """One instruction as the JSON object ``cycle show --format json`` prints."""
    return {
        "instruction_id": record.instruction_id,
        "beneficiary_id": record.beneficiary_id,
        "payee": record.payee_name,
        "payee_kind": record.payee_kind,
        "channel": record.channel,
        "provider": record.provider,
        "amount": record.amount,
        "currency": record.currency,
        "state": record.state,
        "held_reason": record.held_reason,
        "commune_code": record.commune_code,
        "lines": [
            {"kind": line.kind, "month": Period.text(line.month), "amount": line.amount}
            for line in lines
        ],
    }


def write_cycle(
    out: TextIO,
    fmt: str,
    cycle: CycleRecord,
    instructions: Iterator[tuple[InstructionRecord, list[LineRecord]]],
) -> int:
    """``cycle show``: one record per instruction, with its lines."""
    header = {
        "programme": cycle.programme,
        "period": Period.text(cycle.period),
        "state": cycle.state,
        "currency": cycle.currency,
        "count": cycle.instructions,
        "total": cycle.total,
    }
    if fmt == "json":
        return write_json_document(
            out, header, "instructions", (instruction_document(r, ls) for r, ls in instructions)
        )
    rows = (
        (
            r.instruction_id,
            r.beneficiary_id,
            r.payee_name,
            r.channel,
            r.provider,
            r.amount,
            r.state,
            r.held_reason,
            "; ".join(f"{ln.kind} {Period.text(ln.month)} {ln.amount}" for ln in ls),
        )
        for r, ls in instructions
    )
    return write_records(out, fmt, SHOW_COLUMNS, rows, header=header, key="instructions")


def change_row(change: Change) -> tuple[Any, ...]:
    return (
        change.kind,
        change.beneficiary_id,
        change.commune_code,
        change.previous_amount,
        change.amount,
        change.reason,
    )


def write_change_report(out: TextIO, fmt: str, report: ChangeReport) -> int:
    """``report changes``: added, removed, amount changed, payee changed and held, with why."""
    header = {
        "programme": report.programme,
        "period": str(report.period),
        "previous_period": str(report.previous_period) if report.previous_period else None,
        "currency": report.currency,
        "summary": report.summary(),
    }
    return write_records(
        out,
        fmt,
        CHANGE_COLUMNS,
        (change_row(c) for c in report.changes),
        header=header,
        key="changes",
    )
