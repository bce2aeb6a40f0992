"""Reports written as a table, CSV or JSON: the cycle listing, the change report, coverage, its
trend over cycles and settlement.

The CLI prints them and the demo saves them; the shapes are documented in ``docs/formats.md``
and kept stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO, TypeVar

from sap_payments._result_detail import parse_result_detail
from sap_payments.changes import Change, ChangeReport
from sap_payments.coverage import (
    CoverageLine,
    CoverageReport,
    CoverageTrend,
    SettlementLine,
    SettlementReport,
    Share,
    Tally,
    TrendRow,
    area_fields,
)
from sap_payments.output import write_csv, write_json_document, write_table
from sap_payments.periods import Period
from sap_payments.roster import AREA_COLUMNS
from sap_payments.signing import CycleReview
from sap_payments.store import CycleRecord, InstructionRecord, LineRecord

__all__ = [
    "CHANGE_COLUMNS",
    "COVERAGE_COLUMNS",
    "SETTLEMENT_COLUMNS",
    "SHOW_COLUMNS",
    "TREND_AREA_COLUMNS",
    "coverage_row",
    "instruction_document",
    "review_document",
    "settlement_row",
    "write_change_report",
    "write_coverage_report",
    "write_coverage_trend",
    "write_cycle",
    "write_records",
    "write_settlement_report",
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


def instruction_document(
    record: InstructionRecord, lines: list[LineRecord], outcome: str | None = None
) -> dict[str, Any]:
    """One instruction as the JSON object ``cycle show --format json`` prints; ``outcome`` is
    the detail of the event that settled it (FAILED, RETURNED, UNCLAIMED): our reason and the
    provider's own code and words, see :meth:`~sap_payments.store.Store.result_details`."""
    reason, code, message = parse_result_detail(outcome)
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
        "reason": reason,
        "provider_code": code,
        "provider_message": message,
    }


def review_document(review: CycleReview | None) -> dict[str, Any] | None:
    """A cycle's review (digest, count, total) as the JSON reports print it, or None."""
    return None if review is None else review.to_json()


def write_cycle(
    out: TextIO,
    fmt: str,
    cycle: CycleRecord,
    instructions: Iterator[tuple[InstructionRecord, list[LineRecord]]],
    *,
    review: Callable[[], CycleReview | None] | None = None,
    outcomes: Mapping[str, str] | None = None,
) -> int:
    """``cycle show``: one record per instruction, with its lines. ``review``, asked once the
    instructions are written (see :func:`sap_payments.cycles.reviewing`): the JSON document
    ends with it. ``outcomes`` (:meth:`~sap_payments.store.Store.result_details`): why the
    instructions that ended FAILED, RETURNED or UNCLAIMED did — in JSON on each instruction
    (``reason``, ``provider_code``, ``provider_message``), in the table as lines after it (the
    CSV columns stay as they are)."""
    outcomes = outcomes or {}
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
            out,
            header,
            "instructions",
            (instruction_document(r, ls, outcomes.get(r.instruction_id)) for r, ls in instructions),
            footer=None if review is None else lambda: {"review": review_document(review())},
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
    count = write_records(out, fmt, SHOW_COLUMNS, rows, header=header, key="instructions")
    if fmt == "table" and outcomes:
        out.write("\nwhy not paid (our reason; the provider's code and words):\n")
        for ident, detail in sorted(outcomes.items()):
            reason, code, message = parse_result_detail(detail)
            said = " ".join(part for part in (code, f'"{message}"' if message else None) if part)
            out.write(f"  {ident}  {reason or '-'}  {said or '-'}\n")
    return count


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
        "review": review_document(report.review),
    }
    return write_records(
        out,
        fmt,
        CHANGE_COLUMNS,
        (change_row(c) for c in report.changes),
        header=header,
        key="changes",
    )


COVERAGE_COLUMNS = (
    "level",
    *AREA_COLUMNS,
    "communes",
    "communes_electronic",
    "beneficiaries",
    "instructed_count",
    "instructed_amount",
    "paid_count",
    "paid_amount",
    "paid_ewallet_count",
    "paid_ewallet_amount",
    "paid_bank_count",
    "paid_bank_amount",
    "paid_postal_count",
    "paid_postal_amount",
    "paid_proxy_count",
    "paid_proxy_amount",
    "electronic_share",
    "electronic_numerator",
    "electronic_denominator",
    "proxy_share",
    "proxy_numerator",
    "proxy_denominator",
    "held_count",
    "held_amount",
    "unpaid_count",
    "unpaid_amount",
)
#: The ``--format table`` view of coverage (for people; not a contract).
COVERAGE_TABLE_COLUMNS = (
    "area",
    "communes",
    "electronic_communes",
    "beneficiaries",
    "instructed",
    "instructed_amount",
    "paid",
    "paid_amount",
    "ewallet",
    "bank",
    "postal",
    "electronic_%",
    "proxy",
    "proxy_%",
    "held",
    "unpaid",
    "unpaid_amount",
)
SETTLEMENT_COLUMNS = (
    "level",
    "provider",
    *AREA_COLUMNS,
    "instructed_count",
    "instructed_amount",
    "paid_count",
    "paid_amount",
    "failed_count",
    "failed_amount",
    "returned_count",
    "returned_amount",
    "unclaimed_count",
    "unclaimed_amount",
    "open_count",
    "open_amount",
    "balance",
)
#: The ``--format table`` view of settlement (for people; not a contract).
SETTLEMENT_TABLE_COLUMNS = (
    "line",
    "instructed",
    "instructed_amount",
    "paid",
    "paid_amount",
    "failed",
    "failed_amount",
    "returned",
    "returned_amount",
    "unclaimed",
    "unclaimed_amount",
    "open",
    "open_amount",
    "balance",
)


def _label(depth: int, code: str | None, name: str | None) -> str:
    """A table's first cell: the code and name (the code alone when no name is known),
    indented two spaces a level."""
    return "  " * depth + (f"{code} {name}" if name else code or "")


def _coverage_label(line: CoverageLine | TrendRow) -> str:
    if line.level == "province":
        return _label(0, line.province_code, line.province_name)
    if line.level == "district":
        return _label(1, line.district_code, line.district_name)
    if line.level == "commune":
        return _label(1 if line.district_code is None else 2, line.commune_code, line.commune_name)
    return "total"


def _settlement_label(line: SettlementLine) -> str:
    if line.level == "province":
        return _label(1, line.province_code, line.province_name)
    if line.level == "commune":
        return _label(2, line.commune_code, line.commune_name)
    return line.provider or "total"


def _tallies(*tallies: Tally) -> tuple[int, ...]:
    """(count, amount in minor units) of each tally, flattened: how the columns come in pairs."""
    return tuple(value for t in tallies for value in (t.count, t.amount.minor))


def coverage_row(line: CoverageLine) -> tuple[Any, ...]:
    """One line of the coverage report as the values of :data:`COVERAGE_COLUMNS`."""
    electronic, proxy = line.electronic_share, line.proxy_share
    return (
        line.level,
        *area_fields(line),
        line.communes,
        line.communes_electronic,
        line.beneficiaries,
        *_tallies(
            line.instructed,
            line.paid,
            line.paid_ewallet,
            line.paid_bank,
            line.paid_postal,
            line.paid_proxy,
        ),
        electronic.percent,
        electronic.numerator,
        electronic.denominator,
        proxy.percent,
        proxy.numerator,
        proxy.denominator,
        *_tallies(line.held, line.unpaid),
    )


def _coverage_table_row(line: CoverageLine) -> tuple[Any, ...]:
    electronic, proxy = line.electronic_share.percent, line.proxy_share.percent
    return (
        _coverage_label(line),
        line.communes,
        line.communes_electronic,
        line.beneficiaries,
        line.instructed.count,
        line.instructed.amount.minor,
        line.paid.count,
        line.paid.amount.minor,
        line.paid_ewallet.count,
        line.paid_bank.count,
        line.paid_postal.count,
        None if electronic is None else f"{electronic}%",
        line.paid_proxy.count,
        None if proxy is None else f"{proxy}%",
        line.held.count,
        line.unpaid.count,
        line.unpaid.amount.minor,
    )


L = TypeVar("L")


def _write_lines(
    out: TextIO,
    fmt: str,
    header: dict[str, Any],
    lines: Sequence[L],
    full: tuple[Sequence[str], Callable[[L], tuple[Any, ...]]],
    table: tuple[Sequence[str], Callable[[L], tuple[Any, ...]]],
) -> int:
    """A report's lines: every column in CSV and JSON, a narrower view for people as a table."""
    columns, make = table if fmt == "table" else full
    return write_records(
        out, fmt, columns, (make(line) for line in lines), header=header, key="lines"
    )


def write_coverage_report(out: TextIO, fmt: str, report: CoverageReport) -> int:
    """``report coverage``: per province, district, commune and in total (docs/formats.md 4.5)."""
    header = {
        "programme": report.programme,
        "period": str(report.period),
        "state": report.state,
        "currency": report.currency,
    }
    return _write_lines(
        out,
        fmt,
        header,
        report.lines,
        (COVERAGE_COLUMNS, coverage_row),
        (COVERAGE_TABLE_COLUMNS, _coverage_table_row),
    )


#: The leading CSV columns of ``report coverage --trend``; a column per period and
#: ``meets_target`` follow.
TREND_AREA_COLUMNS = ("level", *AREA_COLUMNS)


def _share_document(share: Share | None) -> dict[str, Any] | None:
    if share is None:
        return None
    return {
        "percent": share.percent,
        "numerator": share.numerator,
        "denominator": share.denominator,
    }


def write_coverage_trend(out: TextIO, fmt: str, trend: CoverageTrend) -> int:
    """``report coverage --trend``: each area's electronic share per period, against the target,
    and the communes not switched (docs/formats.md 4.5.1)."""
    periods = [str(period) for period in trend.periods]
    if fmt == "json":
        header = {
            "programme": trend.programme,
            "target_percent": trend.target_percent,
            "periods": periods,
        }
        items = (
            {
                "level": row.level,
                **dict(zip(TREND_AREA_COLUMNS[1:], area_fields(row), strict=True)),
                "shares": {
                    period: _share_document(share)
                    for period, share in zip(periods, row.shares, strict=True)
                },
                "meets_target": row.meets_target,
            }
            for row in trend.rows
        )

        def footer() -> dict[str, Any]:
            return {
                "not_switched": [
                    {"commune_code": row.commune_code, "commune_name": row.commune_name}
                    for row in trend.not_switched
                ]
            }

        return write_json_document(out, header, "rows", items, footer=footer)
    if fmt == "csv":
        return write_csv(
            out,
            (*TREND_AREA_COLUMNS, *periods, "meets_target"),
            (
                (
                    row.level,
                    *area_fields(row),
                    *(None if share is None else share.percent for share in row.shares),
                    "true" if row.meets_target else "false",
                )
                for row in trend.rows
            ),
        )
    count = write_table(
        out,
        ("area", *periods, "target"),
        (
            (
                _coverage_label(row),
                *(None if share is None else f"{share.percent}%" for share in row.shares),
                "met" if row.meets_target else "below",
            )
            for row in trend.rows
        ),
    )
    communes = ", ".join(
        _label(0, row.commune_code, row.commune_name) for row in trend.not_switched
    )
    out.write(
        f"target {trend.target_percent}%; communes not switched in {periods[-1]}: "
        f"{communes or 'none'}\n"
    )
    return count


def settlement_row(line: SettlementLine) -> tuple[Any, ...]:
    """One line of the settlement report as the values of :data:`SETTLEMENT_COLUMNS`."""
    return (
        line.level,
        line.provider,
        *area_fields(line),
        *_tallies(
            line.instructed, line.paid, line.failed, line.returned, line.unclaimed, line.open
        ),
        line.balance.minor,
    )


def _settlement_table_row(line: SettlementLine) -> tuple[Any, ...]:
    return (
        _settlement_label(line),
        *settlement_row(line)[8:],
    )


def write_settlement_report(out: TextIO, fmt: str, report: SettlementReport) -> int:
    """``report settlement``: per provider, province and commune, and in total (4.6)."""
    header = {
        "programme": report.programme,
        "period": str(report.period),
        "state": report.state,
        "frozen": report.frozen,
        "currency": report.currency,
    }
    return _write_lines(
        out,
        fmt,
        header,
        report.lines,
        (SETTLEMENT_COLUMNS, settlement_row),
        (SETTLEMENT_TABLE_COLUMNS, _settlement_table_row),
    )
