"""``report enrolment``: how far the account-opening campaigns have got, commune by commune.

For each month — a month in which attempts were recorded or a cycle was prepared — and for the
records as they stand now (period ``current``), one line per commune and provider:

* the campaign figures, as of the end of the month: ``targeted`` (targets of the provider's
  campaigns created by then), and by each target's latest outcome by then ``opened``,
  ``already_had``, ``pending``, ``refused``, ``failed`` (targets not tried yet are in none of
  them); ``switched``: targets whose mandate update was applied to a cycle of that month or
  earlier;
* the account figures: ``beneficiaries`` of the commune and those of them paid into an account
  (e-wallet or bank) through this provider, ``with_account``, and their share. For a month with
  a cycle these come from that cycle's instructions (each beneficiary's last one), for
  ``current`` from the beneficiaries' records now (their first address); a month without a
  cycle has none.

A commune with beneficiaries but neither a campaign nor anyone paid into an account gets a line
with no provider (it has not switched). A ``total`` line per period adds every commune up.
Shares are exact (:class:`~sap_payments.coverage.Share`), their percentage computed in integers.
The columns are documented in ``docs/enrolment.md``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final, TextIO

import attrs

from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.coverage import Share
from sap_payments.output import write_json_document
from sap_payments.periods import Period
from sap_payments.reports import write_records
from sap_payments.roster import AREA_COLUMNS
from sap_payments.store import AreaRecord, Store

__all__ = [
    "ENROLMENT_COLUMNS",
    "EnrolmentLine",
    "EnrolmentReport",
    "enrolment_report",
    "write_enrolment_report",
]

CURRENT: Final = "current"
_OUTCOMES: Final = ("opened", "already_had", "pending", "refused", "failed")
_ELECTRONIC: Final = frozenset({"ewallet", "bank"})

ENROLMENT_COLUMNS: Final = (
    "period",
    "level",
    *AREA_COLUMNS,
    "provider",
    "targeted",
    *_OUTCOMES,
    "switched",
    "beneficiaries",
    "with_account",
    "account_percent",
)
_TABLE_COLUMNS: Final = (
    "period",
    "commune_code",
    "commune_name",
    "provider",
    "targeted",
    *_OUTCOMES,
    "switched",
    "beneficiaries",
    "with_account",
    "account_percent",
)


@attrs.frozen
class EnrolmentLine:
    """One commune and provider in one period (``level`` ``commune``), or every commune and
    provider (``total``: codes and provider None)."""

    period: str
    level: str
    province_code: str | None
    province_name: str | None
    district_code: str | None
    district_name: str | None
    commune_code: str | None
    commune_name: str | None
    provider: str | None
    targeted: int
    opened: int
    already_had: int
    pending: int
    refused: int
    failed: int
    switched: int
    beneficiaries: int | None  # None: no cycle that month
    with_account: int | None

    @property
    def account_share(self) -> Share | None:
        """Beneficiaries paid into an account through this provider, of the commune's."""
        if self.beneficiaries is None or self.with_account is None:
            return None
        return Share(self.with_account, self.beneficiaries)


@attrs.frozen
class EnrolmentReport:
    programme: str
    periods: tuple[str, ...]
    lines: tuple[EnrolmentLine, ...]

    def line(self, period: str, commune: str | None, provider: str | None) -> EnrolmentLine:
        """The line of a period, commune and provider (commune None: the period's total).

        Raises:
            LookupError: no such line.
        """
        for line in self.lines:
            if (line.period, line.commune_code, line.provider) == (period, commune, provider):
                return line
        raise LookupError(f"no line for {period}, commune {commune}, provider {provider}")


_Area = tuple[str, str, str]  # province, district, commune
_Figures = dict[str, int]


def _month(at: str) -> int:
    return Period.containing(dt.date.fromisoformat(at[:10])).ordinal


def enrolment_report(
    store: Store,
    *,
    programme: str = DEFAULT_PROGRAMME,
    periods: Sequence[Period] | None = None,
) -> EnrolmentReport:
    """The enrolment report (see the module docs); ``periods`` limits it to those months (and
    leaves out ``current``)."""
    campaigns = {c.name: c for c in store.campaigns() if c.programme == programme}
    targets = [t for t in store.campaign_targets() if t.campaign in campaigns]
    attempts = [a for a in store.enrolment_attempts() if a.campaign in campaigns]
    updates = {
        (u.campaign, u.beneficiary_id): u
        for u in store.mandate_updates(programme, ("applied", "superseded"))
        if u.applied_period is not None
    }
    cycles = {c.period for c in store.cycles(programme) if c.state != "discarded"}
    if periods is not None:
        months: list[int | None] = [*sorted({p.ordinal for p in periods})]
    else:
        seen = {_month(a.at) for a in attempts} | cycles
        months = [*sorted(seen), None]
    areas = {a.commune_code: a for a in store.areas()}

    lines: list[EnrolmentLine] = []
    for month in months:
        end = None if month is None else Period(month).next().first_day.isoformat()
        figures: dict[tuple[_Area, str], _Figures] = defaultdict(lambda: defaultdict(int))
        latest: dict[tuple[str, str], str] = {}
        for attempt in attempts:
            if end is None or attempt.at < end:
                latest[(attempt.campaign, attempt.beneficiary_id)] = attempt.outcome
        for target in targets:
            campaign = campaigns[target.campaign]
            if end is not None and campaign.created_at >= end:
                continue
            key = (target.province_code, target.district_code, target.commune_code)
            cell = figures[(key, campaign.provider)]
            cell["targeted"] += 1
            outcome = latest.get((target.campaign, target.beneficiary_id))
            if outcome is not None:
                cell[outcome] += 1
            update = updates.get((target.campaign, target.beneficiary_id))
            if update is not None and (month is None or (update.applied_period or 0) <= month):
                cell["switched"] += 1
        beneficiaries: dict[_Area, int] | None = defaultdict(int)
        assert beneficiaries is not None
        if month is None:
            for p, d, c, channel, provider, count in store.channels_by_area(programme):
                beneficiaries[(p, d, c)] += count
                if channel in _ELECTRONIC:
                    figures[((p, d, c), provider)]["with_account"] += count
        elif month in cycles:
            last: dict[str, tuple[_Area, str, str]] = {}
            for record, _ in store.cycle_instructions(programme, month):
                last[record.beneficiary_id] = (
                    (record.province_code, record.district_code, record.commune_code),
                    record.channel,
                    record.provider,
                )
            for area, channel, provider in last.values():
                beneficiaries[area] += 1
                if channel in _ELECTRONIC:
                    figures[(area, provider)]["with_account"] += 1
        else:
            beneficiaries = None
        period = CURRENT if month is None else Period.text(month)
        lines.extend(_lines(period, figures, beneficiaries, areas))
    return EnrolmentReport(
        programme,
        tuple(CURRENT if m is None else Period.text(m) for m in months),
        tuple(lines),
    )


def _lines(
    period: str,
    figures: dict[tuple[_Area, str], _Figures],
    beneficiaries: dict[_Area, int] | None,
    areas: dict[str, AreaRecord],
) -> list[EnrolmentLine]:
    lines = []
    total: _Figures = defaultdict(int)
    # a commune with neither a campaign nor an account still gets a line: not switched yet
    listed = {area for area, _ in figures}
    for area in beneficiaries or {}:
        if area not in listed:
            figures[(area, "")] = defaultdict(int)
    for (area, provider), cell in sorted(figures.items()):
        for name, value in cell.items():
            total[name] += value
        known = areas.get(area[2])
        lines.append(
            EnrolmentLine(
                period,
                "commune",
                area[0],
                known.province_name if known else None,
                area[1] or None,
                (known.district_name or None) if known else None,
                area[2],
                known.commune_name if known else None,
                provider or None,
                **_counts(cell),
                beneficiaries=None if beneficiaries is None else beneficiaries.get(area, 0),
                with_account=None if beneficiaries is None else cell.get("with_account", 0),
            )
        )
    everyone = None if beneficiaries is None else sum(beneficiaries.values())
    lines.append(
        EnrolmentLine(
            period,
            "total",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            **_counts(total),
            beneficiaries=everyone,
            with_account=None if everyone is None else total.get("with_account", 0),
        )
    )
    return lines


def _counts(cell: _Figures) -> dict[str, int]:
    return {name: cell.get(name, 0) for name in ("targeted", *_OUTCOMES, "switched")}


def _row(line: EnrolmentLine) -> tuple[Any, ...]:
    share = line.account_share
    return (
        line.period,
        line.level,
        line.province_code,
        line.province_name,
        line.district_code,
        line.district_name,
        line.commune_code,
        line.commune_name,
        line.provider,
        line.targeted,
        line.opened,
        line.already_had,
        line.pending,
        line.refused,
        line.failed,
        line.switched,
        line.beneficiaries,
        line.with_account,
        None if share is None else share.percent,
    )


def write_enrolment_report(out: TextIO, fmt: str, report: EnrolmentReport) -> int:
    """``report enrolment`` as a table, CSV or JSON (the columns in ``docs/enrolment.md``)."""
    if fmt == "json":
        return write_json_document(
            out,
            {"programme": report.programme, "periods": list(report.periods)},
            "lines",
            (dict(zip(ENROLMENT_COLUMNS, _row(line), strict=True)) for line in report.lines),
        )
    if fmt != "table":
        return write_records(
            out, fmt, ENROLMENT_COLUMNS, map(_row, report.lines), header={}, key="lines"
        )
    positions = [ENROLMENT_COLUMNS.index(c) for c in _TABLE_COLUMNS]

    def table_row(line: EnrolmentLine) -> tuple[Any, ...]:
        row = _row(line)
        cells = tuple(row[i] for i in positions)
        return cells if line.level != "total" else (cells[0], "total", *cells[2:])

    return write_records(
        out, fmt, _TABLE_COLUMNS, map(table_row, report.lines), header={}, key="lines"
    )
