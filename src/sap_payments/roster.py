"""Roster import: the agency's beneficiary export, format v1, as CSV or XLSX.

The file is read as a stream, every row is checked, and the rows go into a staging table; only
when the whole file is clean are they merged into the ledger, in the same transaction. A single
bad row means nothing is applied, and :class:`~sap_payments.errors.InvalidRoster` lists every
problem with its line, column and reason. The format is documented in ``docs/formats.md``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

import attrs

from sap_payments._tables import Table, TableProblem, csv_rows, open_table, text_lines
from sap_payments._workers import count_progress, worker_pool
from sap_payments.crypto import Keyring
from sap_payments.errors import InvalidRoster, RowProblem
from sap_payments.iso20022.napas import NAPAS_BANKS
from sap_payments.output import unescape_formula
from sap_payments.rules import RuleSet, canonical_coefficient
from sap_payments.sqlite_store import SQLiteStore, write_staging
from sap_payments.store import (
    AreaRecord,
    BeneficiaryRecord,
    EventRecord,
    ImportSummary,
    Store,
)

__all__ = [
    "AREA_COLUMNS",
    "ROSTER_COLUMNS",
    "ImportResult",
    "header_positions",
    "import_areas",
    "import_roster",
    "read_table",
]

ROSTER_COLUMNS: Final = (
    "beneficiary_id",
    "full_name",
    "national_id",
    "birth_date",
    "sex",
    "province_code",
    "district_code",
    "commune_code",
    "category",
    "coefficient",
    "first_period",
    "last_period",
    "paid_through",
    "status",
    "channel",
    "provider",
    "msisdn",
    "bank_bin",
    "account_number",
    "pay_point",
    "proxy_name",
    "proxy_national_id",
    "proxy_relation",
    "mandate_valid_until",
    "home_delivery",
)
AREA_COLUMNS: Final = (
    "province_code",
    "province_name",
    "district_code",
    "district_name",
    "commune_code",
    "commune_name",
)

#: At most this many problems are kept (and counted beyond); a file of a million bad rows must
#: not exhaust memory just to say so.
MAX_PROBLEMS: Final = 10_000

_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CODE = re.compile(r"[A-Za-z0-9]{1,12}")
_PAY_POINT = re.compile(r"[A-Za-z0-9._-]{1,32}")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_NATIONAL_ID = re.compile(r"\d{12}")
_PERIOD = re.compile(r"(\d{4})-(\d{2})")
_BIN = re.compile(r"\d{6}")
_ACCOUNT = re.compile(r"[A-Za-z0-9]{6,19}")
_MSISDN = re.compile(r"(?:\+84|84|0)([35789]\d{8})")
_MSISDN_NOISE = re.compile(r"[\s.()-]")
_LOST_ZERO_MSISDN = re.compile(r"[35789]\d{8}")  # 09xxxxxxxx as an Excel number cell
_SCIENTIFIC = re.compile(r"\d(?:[.,]\d+)?[Ee]\+?\d+")  # 4.61E+10: a number cell saved as CSV
_COEFFICIENT = re.compile(r"\d{1,2}(?:[.,]\d{1,4})?")
#: Planes no Unicode version has assigned anything in yet (4–13), and the private-use planes
#: 15–16 (their last two code points are non-characters): refused without looking.
_FAR_PLANES: Final = ((0x40000, 0xDFFFF), (0xF0000, 0x10FFFF))
#: What a payment channel cannot carry in a name or any other text (general categories).
_UNCARRIABLE_CATEGORIES: Final = {
    "Cc": "a control character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "a non-character or unassigned code point",
}


@functools.cache
def _uncarriable() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Two character classes: the code points a payment channel cannot carry — controls (C0
    and C1, e.g. U+0085), surrogates, private use, non-characters (U+FFFE, U+FDD0…) and code
    points this Python's Unicode tables leave unassigned — and a quick one that matches those
    of them in the Basic Multilingual Plane and *every* character beyond it.

    The quick class is a bitmap to the regular-expression engine: a row is checked by one
    search over its joined cells (about 2 µs), not by a Python loop over its characters; only a
    row it matches (a bad one, or one with a rare character beyond U+FFFF) is looked at cell by
    cell with the exact class. Built once a process from :mod:`unicodedata` (about 0.1 s:
    planes 0–3 and 14 are looked up, the others are refused whole).
    """
    category = unicodedata.category
    ranges: list[tuple[int, int]] = []
    for first, last in ((0, 0x3FFFF), (0xE0000, 0xEFFFF)):
        start = None
        for point in range(first, last + 1):
            if category(chr(point)) in _UNCARRIABLE_CATEGORIES:
                if start is None:
                    start = point
            elif start is not None:
                ranges.append((start, point - 1))
                start = None
        if start is not None:
            ranges.append((start, last))
    ranges.extend(_FAR_PLANES)

    def members(spans: Iterable[tuple[int, int]]) -> str:
        return "".join(
            f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in spans
        )

    basic = [(lo, min(hi, 0xFFFF)) for lo, hi in ranges if lo <= 0xFFFF]
    quick = re.compile(f"[{members(basic)}\\U00010000-\\U0010ffff]")
    return quick, re.compile(f"[{members(ranges)}]")


def _uncarriable_reason(char: str) -> str:
    what = _UNCARRIABLE_CATEGORIES.get(unicodedata.category(char), "a character")
    return f"holds U+{ord(char):04X} ({what}), which no payment channel can carry"


_TRUE: Final = frozenset({"1", "true", "yes", "y", "x", "có"})
_FALSE: Final = frozenset({"", "0", "false", "no", "n", "không"})
_CHANNELS: Final = frozenset({"ewallet", "bank", "postal"})
_STATUSES: Final = frozenset({"active", "suspended", "ceased"})
_SEXES: Final = {"m": "M", "f": "F", "nam": "M", "nữ": "F"}


@attrs.frozen
class ImportResult:
    """What an import did."""

    source: str
    sha256: str
    rows: int
    added: int
    changed: int
    unchanged: int
    import_id: int


# -- reading files --------------------------------------------------------------------------
#: The roster's month columns: an XLSX date cell there is read as its month.
_MONTH_COLUMNS: Final = ("first_period", "last_period", "paid_through")


def read_table(path: str | os.PathLike[str]) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Open a CSV (UTF-8) or XLSX file: its header (line 1) and an iterator of (line, cells).

    Blank rows are skipped. Line numbers are what the clerk sees: the CSV line (header = 1) or
    the spreadsheet row. The imports use :func:`sap_payments._tables.open_table`, which also
    finds a header below a title and reads semicolon-separated files (``docs/formats.md``).
    """
    table = open_table(path)
    return table.header, table.rows


def _sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def header_positions(
    source: str,
    header: Sequence[str],
    known: Sequence[str],
    *,
    required: Sequence[str] | None = None,
    error: type[InvalidRoster] = InvalidRoster,
    line: int = 1,
) -> dict[str, int]:
    """Column → position in a file's header (on ``line``). Every problem is named — a column
    twice, an unknown one, a ``required`` one missing (default: every ``known`` one) — and
    raised together as ``error``."""
    problems = []
    seen: dict[str, int] = {}
    for position, name in enumerate(header):
        if name in seen:
            problems.append(RowProblem(line, name, "column appears twice in the header"))
        elif name not in known:
            problems.append(RowProblem(line, name or f"#{position + 1}", "unknown column"))
        seen.setdefault(name, position)
    problems.extend(
        RowProblem(line, name, "column missing from the header")
        for name in (known if required is None else required)
        if name not in seen
    )
    if problems:
        raise error(source, problems)
    return seen


def _check_header(source: str, table: Table, expected: Sequence[str]) -> list[int]:
    """Positions of the expected columns in the file's header; raise on a bad header (the
    file closed)."""
    try:
        seen = header_positions(source, table.header, expected, line=table.line)
    except InvalidRoster:
        table.close()
        raise
    return [seen[name] for name in expected]


# -- checking rows ---------------------------------------------------------------------------
class _Problems:
    def __init__(self) -> None:
        self.kept: list[RowProblem] = []
        self.count = 0
        #: (line, columns) whose other problems are not reported: a cell with a character no
        #: channel can carry is reported for that alone
        self.muted: tuple[int, frozenset[str]] = (0, frozenset())

    def add(self, line: int, column: str, reason: str) -> None:
        if line == self.muted[0] and column in self.muted[1]:
            return
        self.count += 1
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(RowProblem(line, column, reason))

    def raise_if_any(self, source: str) -> None:
        if self.count:
            raise InvalidRoster(source, sorted(self.kept, key=lambda p: p.line), total=self.count)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _national_id_problem(text: str) -> str:
    """Why a national id is not 12 digits, and what Excel may have done to it."""
    if len(text) == 11 and text.isascii() and text.isdigit() and text[0] != "0":
        return (
            "must be 12 digits; 11 digits looks like a number that lost its leading zero: "
            "format the column as Text and type the ids again"
        )
    if _SCIENTIFIC.fullmatch(text):
        return (
            "must be 12 digits; a number in scientific notation has lost its digits: format "
            "the column as Text and type the ids again"
        )
    return "must be 12 digits"


def _msisdn_problem(text: str) -> str:
    reason = "not a Vietnamese mobile number (09xxxxxxxx or +849xxxxxxxx)"
    if _LOST_ZERO_MSISDN.fullmatch(text):
        return (
            f"{reason}; 9 digits looks like a number that lost its leading zero: format the "
            "column as Text and type the numbers again"
        )
    return reason


def _period(text: str) -> int | None:
    match = _PERIOD.fullmatch(text)
    if match is None:
        return None
    month = int(match[2])
    if not 1 <= month <= 12:
        return None
    return int(match[1]) * 12 + month - 1


def _date(text: str) -> dt.date | None:
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


class _RowChecker:
    """Turns one roster row into a BeneficiaryRecord, or reports its problems.

    A roster repeats a few values in most columns (communes, categories, periods, providers), so
    values already found good are remembered and not checked again: a set lookup instead of a
    regular expression keeps the import at hundreds of thousands of rows a second.
    """

    def __init__(
        self, rules: RuleSet, providers: Mapping[str, str] | None, problems: _Problems
    ) -> None:
        self.categories = frozenset(rules.categories)
        self.providers = providers
        self.problems = problems
        self.today = dt.date.today().isoformat()  # noqa: DTZ011 - local date is what clerks mean
        self._coefficients: dict[str, str] = {}
        self._periods: dict[str, int] = {}
        self._codes: set[str] = set()
        self._pay_points: set[str] = set()
        self._provider_ok: set[tuple[str, str]] = set()
        self._suspect = _uncarriable()[0].search

    def coefficient(self, line: int, text: str) -> str | None:
        cached = self._coefficients.get(text)
        if cached is not None:
            return cached
        if _COEFFICIENT.fullmatch(text) is None:
            self.problems.add(line, "coefficient", "not a decimal number such as 1.5")
            return None
        value = Decimal(text.replace(",", "."))
        if not Decimal(0) < value <= Decimal(20):
            self.problems.add(line, "coefficient", "must be more than 0 and at most 20")
            return None
        normal = canonical_coefficient(value)
        self._coefficients[text] = normal
        return normal

    def period(self, line: int, column: str, text: str) -> int | None:
        ordinal = self._periods.get(text)
        if ordinal is None:
            ordinal = _period(text)
            if ordinal is None:
                reason = "not a month (YYYY-MM)" if text else "required, as YYYY-MM"
                self.problems.add(line, column, reason)
                return None
            self._periods[text] = ordinal
        return ordinal

    def code(self, line: int, column: str, text: str, *, required: bool = True) -> None:
        if text in self._codes or (not text and not required):
            return
        if _CODE.fullmatch(text):
            self._codes.add(text)
        else:
            reason = "must be a code of letters and digits" if text else "required"
            self.problems.add(line, column, reason)

    def provider(self, line: int, provider: str, channel: str) -> None:
        if (provider, channel) in self._provider_ok:
            return
        if not _PROVIDER.fullmatch(provider):
            reason = (
                "not a provider name (lower-case letters, digits, - _ .)"
                if provider
                else "required: the name of a configured provider"
            )
            self.problems.add(line, "provider", reason)
            return
        if self.providers is not None:
            configured = self.providers.get(provider)
            if configured is None:
                self.problems.add(line, "provider", f"provider {provider!r} is not configured")
                return
            if configured != channel:
                if channel in _CHANNELS:
                    self.problems.add(
                        line,
                        "provider",
                        f"provider {provider!r} pays through {configured}, not {channel}",
                    )
                return
        self._provider_ok.add((provider, channel))

    def uncarriable(self, line: int, cells: Sequence[str]) -> None:
        """Report every cell holding a character no channel can carry (one problem a cell)
        and mute the row's other problems in those cells."""
        search = _uncarriable()[1].search
        columns = []
        for column, cell in zip(ROSTER_COLUMNS, cells, strict=False):
            found = search(cell)
            if found is not None:
                self.problems.add(line, column, _uncarriable_reason(found[0]))
                columns.append(column)
        self.problems.muted = (line, frozenset(columns))

    def check(self, line: int, cells: Sequence[str]) -> BeneficiaryRecord | None:
        problems = self.problems
        add = problems.add
        before = problems.count
        cells = [cell.strip() for cell in cells]
        if self._suspect(" ".join(cells)) is not None:  # one quick search a row (all cells)
            self.uncarriable(line, cells)
        (
            beneficiary_id,
            full_name,
            national_id,
            birth_date,
            sex,
            province_code,
            district_code,
            commune_code,
            category,
            coefficient,
            first_period,
            last_period,
            paid_through,
            status,
            channel,
            provider,
            msisdn,
            bank_bin,
            account_number,
            pay_point,
            proxy_name,
            proxy_national_id,
            proxy_relation,
            mandate_valid_until,
            home_delivery,
        ) = cells

        if not _ID.fullmatch(beneficiary_id):
            reason = (
                "must be 1–64 letters, digits, '.', '_' or '-'" if beneficiary_id else "required"
            )
            add(line, "beneficiary_id", reason)
        if not full_name:
            add(line, "full_name", "required")
        else:
            full_name = _nfc(unescape_formula(full_name))
            if len(full_name) > 200:  # a control character: reported for the whole row above
                add(line, "full_name", "longer than 200 characters")
        if national_id and not _NATIONAL_ID.fullmatch(national_id):
            add(line, "national_id", _national_id_problem(national_id))
        if _date(birth_date) is None:
            reason = "not a date (YYYY-MM-DD)" if birth_date else "required, as YYYY-MM-DD"
            add(line, "birth_date", reason)
        elif birth_date > self.today:
            add(line, "birth_date", "lies in the future")
        sex_code = _SEXES.get(sex) or _SEXES.get(_nfc(sex).lower())
        if sex_code is None:
            add(line, "sex", "must be M or F")
        self.code(line, "province_code", province_code)
        self.code(line, "district_code", district_code, required=False)
        self.code(line, "commune_code", commune_code)
        coefficient_text = self.coefficient(line, coefficient) if coefficient else None
        if category not in self.categories:
            if not category:
                add(line, "category", "required")
            elif not coefficient:
                add(line, "category", f"unknown category {category!r} (and no coefficient given)")
        first = self.period(line, "first_period", first_period)
        last = self.period(line, "last_period", last_period) if last_period else None
        if last is not None and first is not None and last < first:
            add(line, "last_period", "is before first_period")
        through = self.period(line, "paid_through", paid_through) if paid_through else None
        if status not in _STATUSES:
            status = status.lower()
            if status not in _STATUSES:
                add(line, "status", "must be active, suspended or ceased")
        if status == "ceased" and not last_period:
            add(line, "last_period", "required when status is ceased")
        if channel not in _CHANNELS:
            channel = channel.lower()
            if channel not in _CHANNELS:
                add(line, "channel", "must be ewallet, bank or postal")
        self.provider(line, provider, channel)

        wallet = None
        if msisdn:
            match = _MSISDN.fullmatch(msisdn) or _MSISDN.fullmatch(_MSISDN_NOISE.sub("", msisdn))
            if match is None:
                add(line, "msisdn", _msisdn_problem(msisdn))
            else:
                wallet = "+84" + match[1]
        elif channel == "ewallet":
            add(line, "msisdn", "required when channel is ewallet")
        if bank_bin or account_number:
            if not _BIN.fullmatch(bank_bin):
                add(line, "bank_bin", "must be the bank's 6-digit NAPAS BIN")
            elif bank_bin not in NAPAS_BANKS:
                add(line, "bank_bin", f"{bank_bin} is not the BIN of a NAPAS member bank")
            if not _ACCOUNT.fullmatch(account_number):
                add(line, "account_number", "must be 6–19 letters or digits")
        elif channel == "bank":
            add(line, "bank_bin", "bank_bin and account_number are required when channel is bank")
        if pay_point:
            if pay_point not in self._pay_points:
                if _PAY_POINT.fullmatch(pay_point):
                    self._pay_points.add(pay_point)
                else:
                    add(line, "pay_point", "must be 1–32 letters, digits, '.', '_' or '-'")
        elif channel == "postal":
            add(line, "pay_point", "required when channel is postal")
        home = 0
        if home_delivery:
            delivery = _nfc(home_delivery).lower()
            if delivery in _TRUE:
                home = 1
                if not pay_point:
                    add(line, "home_delivery", "needs a pay_point to deliver from")
            elif delivery not in _FALSE:
                add(line, "home_delivery", "must be 1 or 0 (or empty)")

        if proxy_name:
            proxy_name = _nfc(unescape_formula(proxy_name))
            proxy_relation = _nfc(proxy_relation)
            if len(proxy_name) > 200:
                add(line, "proxy_name", "longer than 200 characters")
            if not proxy_relation:
                add(line, "proxy_relation", "required when proxy_name is given")
            elif len(proxy_relation) > 64:
                add(line, "proxy_relation", "longer than 64 characters")
            if proxy_national_id and not _NATIONAL_ID.fullmatch(proxy_national_id):
                add(line, "proxy_national_id", _national_id_problem(proxy_national_id))
            if mandate_valid_until and _date(mandate_valid_until) is None:
                add(line, "mandate_valid_until", "not a date (YYYY-MM-DD)")
        elif proxy_national_id or proxy_relation or mandate_valid_until:
            add(line, "proxy_name", "required when other proxy columns are filled")

        if problems.count != before:
            return None
        return BeneficiaryRecord(
            beneficiary_id,
            national_id or None,
            province_code,
            district_code,
            commune_code,
            category,
            coefficient_text,
            first,  # type: ignore[arg-type]  # checked above
            last,
            through,
            status,
            channel,
            provider,
            full_name,
            birth_date,
            sex_code,  # type: ignore[arg-type]  # checked above
            wallet,
            bank_bin or None,
            account_number or None,
            pay_point or None,
            proxy_name or None,
            proxy_national_id or None,
            proxy_relation or None,
            mandate_valid_until or None,
            home,
        )


# -- importing -------------------------------------------------------------------------------
def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def import_roster(
    store: Store,
    path: str | os.PathLike[str],
    *,
    rules: RuleSet,
    programme: str,
    providers: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> ImportResult:
    """Import a roster file into the ledger, all of it or nothing.

    Args:
        store: the ledger.
        path: a ``.csv`` (UTF-8) or ``.xlsx`` file in roster format v1.
        rules: the rule set the categories are checked against.
        programme: the programme the roster's decisions belong to.
        providers: configured provider name → channel; ``None`` accepts any provider name.
        progress: called now and then with the number of rows read so far.
        workers: processes that read and check a large CSV file in parallel (each takes a
            slice of the file); 1 reads it in this process.

    Raises:
        InvalidRoster: the file or some rows are invalid; nothing was applied.
    """
    source = str(path)
    digest = _sha256(path)
    table = open_table(path, columns=ROSTER_COLUMNS, months=_MONTH_COLUMNS)
    header, rows = table.header, table.rows
    positions = _check_header(source, table, ROSTER_COLUMNS)
    slices = _slices(Path(path), workers, table) if workers > 1 else None
    if slices is not None and isinstance(store, SQLiteStore):
        table.close()
        return _import_parallel(
            store,
            Path(path),
            slices,
            positions,
            len(header),
            rules,
            programme,
            providers,
            progress,
            digest,
        )
    problems = _Problems()
    checker = _RowChecker(rules, providers, problems)
    counter = _Counter(progress)
    with store.transaction():
        at = _now()
        import_id = store.add_import("roster", source, digest, at)
        added = store.upsert_roster(
            programme, import_id, counter.wrap(_checked_rows(rows, checker, positions, len(header)))
        )
        summary = _finish(store, source, digest, at, import_id, counter.count, added, problems)
    counter.final()
    return ImportResult(source, digest, counter.count, *summary, import_id)


class _Counter:
    """Counts rows as they stream past and reports progress every 10,000."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress = progress
        self.count = 0

    def wrap(
        self, rows: Iterator[tuple[int, BeneficiaryRecord | None]]
    ) -> Iterator[tuple[int, BeneficiaryRecord]]:
        progress = self.progress
        for line, record in rows:
            self.count += 1
            if progress is not None and not self.count % 10_000:
                progress(self.count)
            if record is not None:
                yield line, record

    def final(self) -> None:
        if self.progress is not None:
            self.progress(self.count)


def _checked_rows(
    rows: Iterable[tuple[int, list[str]]],
    checker: _RowChecker,
    positions: list[int],
    width: int,
) -> Iterator[tuple[int, BeneficiaryRecord | None]]:
    """(line, record) for every row; record is None when the row has problems (recorded)."""
    identity = positions == list(range(len(ROSTER_COLUMNS)))
    check = checker.check
    for line, cells in rows:
        if len(cells) != width:
            if len(cells) > width and any(cells[width:]):
                checker.problems.add(line, "(row)", f"has {len(cells)} fields, the header {width}")
                yield line, None
                continue
            cells = (cells + [""] * width)[:width]
        yield line, check(line, cells if identity else [cells[p] for p in positions])


def _finish(
    store: Store,
    source: str,
    digest: str,
    at: str,
    import_id: int,
    count: int,
    added: int,
    problems: _Problems,
) -> ImportSummary:
    """The checks only the ledger can make, then the import's record and event.

    Runs even when rows had problems (those rows were left out), so one error lists every
    problem of the file; raising then rolls the whole import back.
    """
    if count == 0 and not problems.count:
        raise InvalidRoster(source, [RowProblem(2, "(file)", "the roster has no rows")])
    for line, column, reason in store.roster_problems(import_id):
        problems.add(line, column, reason)
    problems.raise_if_any(source)
    changed = store.changed_in(import_id)
    summary = ImportSummary(added, changed, count - added - changed)
    store.finish_import(import_id, count, summary)
    store.append_events(
        [
            EventRecord(
                at,
                "roster.imported",
                None,
                None,
                None,
                None,
                f"import {import_id}: {count} rows, {summary.added} added, "
                f"{summary.changed} changed, {summary.unchanged} unchanged; sha256 {digest}",
            )
        ]
    )
    return summary


# -- parallel import of large CSV files -------------------------------------------------------
#: Below this size a file is read in-process: starting workers would cost more than it saves.
PARALLEL_MIN_BYTES: Final = 8 << 20


@attrs.frozen
class _Slice:
    start: int  # byte offset of the slice's first line
    end: int  # byte offset just past its last line
    first_line: int  # the line number of its first line
    delimiter: str = ","


def _slices(path: Path, workers: int, table: Table) -> list[_Slice] | None:
    """Cut a UTF-8 CSV file after its header into ``workers`` slices at line ends outside
    quoted fields.

    A quoted field may hold a newline, but quotes inside one are doubled, so a line end is
    outside every field exactly when the quotes before it are even in number.
    """
    if table.data_offset is None:  # XLSX, or a CSV file in UTF-16
        return None
    size = path.stat().st_size
    if size < PARALLEL_MIN_BYTES:
        return None
    with path.open("rb") as handle:
        start = position = table.data_offset
        handle.seek(start)
        boundaries, first_lines = [start], [table.line + 1]
        quotes, line = 0, table.line + 1
        for k in range(1, workers):
            target = start + (size - start) * k // workers
            if target <= position:
                continue
            chunk = handle.read(target - position)
            position += len(chunk)
            quotes += chunk.count(b'"')
            line += chunk.count(b"\n")
            while position < size:  # finish the line; go on while inside a quoted field
                tail = handle.readline()
                position += len(tail)
                quotes += tail.count(b'"')
                line += tail.count(b"\n")
                if quotes % 2 == 0:
                    break
            if position >= size:
                break
            boundaries.append(position)
            first_lines.append(line)
    boundaries.append(size)
    slices = [
        _Slice(begin, end, first, table.delimiter)
        for begin, end, first in zip(boundaries, boundaries[1:], first_lines, strict=False)
        if end > begin
    ]
    return slices if len(slices) > 1 else None


@attrs.frozen
class _SliceResult:
    count: int
    problems: tuple[RowProblem, ...]
    problem_count: int


def _check_slice(
    path: Path,
    piece: _Slice,
    positions: list[int],
    width: int,
    rules: RuleSet,
    providers: Mapping[str, str] | None,
    staging: Path,
    keyring: Keyring,
) -> _SliceResult:
    """In a worker: read and check one slice, and write its good rows to a staging file."""
    problems = _Problems()
    checker = _RowChecker(rules, providers, problems)
    count = 0

    def rows() -> Iterator[tuple[int, list[str]]]:
        nonlocal count
        with path.open("rb") as handle:
            handle.seek(piece.start)
            lines = text_lines(handle, piece.first_line, piece.end - piece.start)
            try:
                for line, cells in csv_rows(lines, piece.first_line, piece.delimiter, path):
                    count += 1
                    if not count % 10_000:
                        count_progress(10_000)
                    yield line, cells
            except TableProblem as exc:
                problems.add(exc.line, "(file)", exc.reason)

    write_staging(
        staging, _Counter(None).wrap(_checked_rows(rows(), checker, positions, width)), keyring
    )
    return _SliceResult(count, tuple(problems.kept), problems.count)


def _import_parallel(
    store: SQLiteStore,
    path: Path,
    slices: list[_Slice],
    positions: list[int],
    width: int,
    rules: RuleSet,
    programme: str,
    providers: Mapping[str, str] | None,
    progress: Callable[[int], None] | None,
    digest: str,
) -> ImportResult:
    source = str(path)
    names = store.scratch(len(slices))
    stagings = store.scratch_paths[: len(slices)]
    with worker_pool(len(slices)) as pool:
        results = pool.run(
            [
                (
                    _check_slice,
                    (path, piece, positions, width, rules, providers, out, store.keyring),
                )
                for piece, out in zip(slices, stagings, strict=True)
            ],
            progress,
        )
    problems = _Problems()
    for result in results:
        for problem in result.problems:
            problems.add(problem.line, problem.column, problem.reason)
        problems.count += result.problem_count - len(result.problems)
    count = sum(result.count for result in results)
    with store.transaction():
        at = _now()
        import_id = store.add_import("roster", source, digest, at)
        added = store.upsert_staged(programme, import_id, names)
        summary = _finish(store, source, digest, at, import_id, count, added, problems)
    if progress is not None:
        progress(count)
    return ImportResult(source, digest, count, *summary, import_id)


def import_areas(store: Store, path: str | os.PathLike[str]) -> int:
    """Import area names (``AREA_COLUMNS``): the communes, districts and provinces reports name.

    Raises:
        InvalidRoster: a row is invalid; nothing was applied.
    """
    source = str(path)
    table = open_table(path, columns=AREA_COLUMNS)
    header, rows = table.header, table.rows
    positions = _check_header(source, table, AREA_COLUMNS)
    problems = _Problems()
    records: list[AreaRecord] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        if len(cells) > len(header) and any(cells[len(header) :]):
            problems.add(line, "(row)", f"has {len(cells)} fields, the header {len(header)}")
            continue
        cells = (cells + [""] * len(header))[: len(header)]
        values = [unicodedata.normalize("NFC", cells[p].strip()) for p in positions]
        record = AreaRecord(*values)
        for column in ("province_code", "commune_code"):
            if not _CODE.fullmatch(getattr(record, column)):
                problems.add(line, column, "required: a code of letters and digits")
        if record.district_code and not _CODE.fullmatch(record.district_code):
            problems.add(line, "district_code", "must be a code of letters and digits, or empty")
        for column in ("province_name", "commune_name"):
            if not getattr(record, column):
                problems.add(line, column, "required")
        if record.district_code and not record.district_name:
            problems.add(line, "district_name", "required when district_code is given")
        if record.commune_code in seen:
            problems.add(line, "commune_code", f"duplicate of line {seen[record.commune_code]}")
        seen.setdefault(record.commune_code, line)
        records.append(record)
    problems.raise_if_any(source)
    with store.transaction():
        return store.upsert_areas(records)
