"""The post office's confirmation file: which codes were paid (when, to whom) and which not.

One row per payout line (format in ``docs/postal.md``): the instruction id and the collection
code, the amount and pay point as the post office paid them, the outcome (``paid`` or
``unclaimed``), and for a payment the date and who collected it — the beneficiary, or an
authorised proxy, named, with the authorisation reference (the last 4 digits, or all, of the
proxy's identity document as shown at the counter).

Each row is checked against the ledger. A row that fails a check goes to the review list with
its row number, instruction id, code and reason (never a name): a malformed row or code, an
unknown instruction, a wrong code, an amount or pay point that differs, a code used twice (in
the file, or an instruction confirmed before with other details), a payment after the window
closed or outside the list's payment window, a proxy collection without a valid mandate, a
row with more fields than the header, and every row of a code that appears twice in the file
when the first of them was rejected (so a second row cannot slip in what the first could not).
The other rows are applied through :func:`sap_payments.dispatch.apply_results` — every move
through the transition table, each an event — and the import is recorded, so the same file
again is a no-op. A row repeating exactly what an earlier file confirmed is counted as repeated,
not rejected: a post office may send a corrected file again in whole.

Amounts are read as clerks type them: ``360000``, or grouped by thousands the Vietnamese way
(``360.000``, ``360 000``, ``360,000``), with or without the currency (``360.000 đ``,
``360.000đ``, ``360.000 VND``) — unambiguous for VND, which has no minor unit, when every group
after the first has exactly three digits; anything else (``360.5``, ``3,60,000``) is refused.

A beneficiary whose cash goes uncollected month after month is flagged for re-verification
whichever way each month was recorded: an ``unclaimed`` row here, or the window close
(:func:`sap_payments.postal.window.flag_unclaimed`).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

import attrs

from sap_payments._files import atomic_file
from sap_payments._tables import EMPTY, open_table
from sap_payments.beneficiaries import CashPickup, parse_address
from sap_payments.collection_codes import InvalidCollectionCode, normalise_code, verify_code
from sap_payments.dispatch import apply_results
from sap_payments.errors import ForeignLedger, InvalidInput, InvalidRoster
from sap_payments.instructions import InstructionState
from sap_payments.money import MINOR_UNITS, Money
from sap_payments.output import csv_row, unescape_formula
from sap_payments.periods import Period
from sap_payments.postal.plugin import PostalCashProvider
from sap_payments.postal.window import flag_unclaimed
from sap_payments.providers import Result, ResultKind
from sap_payments.store import EventRecord, ImportSummary, InstructionRecord, Store

__all__ = [
    "CONFIRMATION_COLUMNS",
    "IMPORT_KIND",
    "REVIEW_COLUMNS",
    "ConfirmationImport",
    "InvalidConfirmations",
    "ReviewLine",
    "collection_reference",
    "import_confirmations",
    "parse_collection_reference",
    "write_review_csv",
]

S = InstructionState

#: The columns of a confirmation file (CSV or the first sheet of an XLSX).
CONFIRMATION_COLUMNS: Final = (
    "instruction_id",
    "code",
    "amount",
    "pay_point",
    "outcome",
    "collected_on",
    "collected_by",
    "proxy_name",
    "authorisation",
    "ledger",
)
#: Columns a file may leave out (the proxy's when no proxy collected anything; the ledger id,
#: copied from the payout list, is checked when given).
_OPTIONAL: Final = frozenset({"proxy_name", "authorisation", "ledger"})
#: The columns of the review list.
REVIEW_COLUMNS: Final = ("row", "instruction_id", "code", "reason", "detail")
#: The ``imports.kind`` of a confirmation file.
IMPORT_KIND: Final = "postal-confirmations"

#: Reason codes of the review list, with what each means for the clerk.
REASONS: Final = {
    "malformed_row": "a field cannot be read",
    "malformed_code": "not a well-formed collection code",
    "unknown_instruction": "no instruction of this provider has this id",
    "wrong_code": "the code is not the one issued for this instruction",
    "amount_differs": "the amount differs from the instruction's",
    "pay_point_differs": "the pay point differs from the instruction's",
    "code_used_twice": "this code was already confirmed, or is on another row of the file",
    "window_closed": "paid after the window closed (the instruction is UNCLAIMED)",
    "outside_window": "collected_on is outside the payout window of the list",
    "not_payable": "the instruction cannot be paid in its state",
    "proxy_without_mandate": "collected by a proxy, but the beneficiary has no proxy",
    "proxy_mandate_expired": "collected by a proxy after the proxy's mandate expired",
    "authorisation_mismatch": "the authorisation reference does not match the mandate",
    "proxy_name_mismatch": "the proxy named is not the mandate's proxy",
}


class InvalidConfirmations(InvalidInput):
    """A confirmation file that cannot be read at all (not CSV/XLSX, columns missing).
    Nothing from it was applied."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}; nothing was applied")
        self.source = source


@attrs.frozen
class ReviewLine:
    """A rejected row: its number in the file (the header is row 1), the instruction id and
    code as given, the reason code (see ``docs/postal.md``) and a few words. No names."""

    row: int
    instruction_id: str
    code: str
    reason: str
    detail: str


@attrs.frozen
class ConfirmationImport:
    """What importing one confirmation file did."""

    source: str
    sha256: str
    rows: int
    applied: int  # rows whose result moved an instruction (PAID or UNCLAIMED)
    repeated: int  # rows an earlier file already confirmed, the same way
    review: tuple[ReviewLine, ...]
    already_imported: bool

    @property
    def rejected(self) -> int:
        return len(self.review)


@attrs.frozen
class _Row:
    row: int
    cells: dict[str, str]
    problem: str | None = None  # why the row cannot be read as a whole (its cells are kept)


def collection_reference(collected_on: dt.date, collected_by: str, key_id: str) -> str:
    """What the ledger keeps as the provider reference of a cash payment: no personal data.

    >>> collection_reference(dt.date(2021, 9, 14), "proxy", "postal-1")
    'postal;2021-09-14;proxy;postal-1'
    """
    return f"postal;{collected_on.isoformat()};{collected_by};{key_id}"


def parse_collection_reference(reference: str | None) -> tuple[dt.date, str] | None:
    """(date, "beneficiary" | "proxy") of a reference made by :func:`collection_reference`."""
    if not reference or not reference.startswith("postal;"):
        return None
    parts = reference.split(";")
    if len(parts) < 3:
        return None
    try:
        return dt.date.fromisoformat(parts[1]), parts[2]
    except ValueError:
        return None


_UNCLAIMED_REFERENCE: Final = "postal;unclaimed"


# -- reading -------------------------------------------------------------------------------------
def _text(value: str) -> str:
    return unescape_formula(unicodedata.normalize("NFC", value).strip())


def read_confirmations(path: Path) -> list[_Row]:
    """The rows of a confirmation file, cells by column name; blank rows skipped. The file is
    read as every import reads its file (``docs/formats.md``, 1.10): CSV or XLSX, a title
    above the header skipped, a semicolon CSV accepted, a text that came back with the ``'``
    our lists put before ``=``, ``+``, ``-``, ``@`` read without it.

    A row with more fields than the header (a stray separator in a name, a cell typed beside
    the table) is kept with its problem: it goes to the review list as ``malformed_row``, as
    the roster refuses that shape, rather than being read with a field shifted or dropped.

    Raises:
        InvalidConfirmations: the file cannot be read, a required column is missing, or it
            holds no row below its header.
    """
    source = str(path)
    try:
        table = open_table(path, columns=CONFIRMATION_COLUMNS)
        header = [cell.lower() for cell in table.header]
        missing = [c for c in CONFIRMATION_COLUMNS if c not in header and c not in _OPTIONAL]
        if missing:
            table.close()
            raise InvalidConfirmations(
                source,
                f"row {table.line}: the header lacks column {missing[0]} (expected "
                f"{', '.join(CONFIRMATION_COLUMNS)})",
            )
        width = len(header)
        rows = [
            _Row(
                number,
                {
                    column: _text(cells[index]) if index < len(cells) else ""
                    for index, column in enumerate(header)
                    if column in CONFIRMATION_COLUMNS
                },
                f"has {len(cells)} fields, the header {width}"
                if len(cells) > width and any(cell.strip() for cell in cells[width:])
                else None,
            )
            for number, cells in table.rows
        ]
        if not rows:
            raise InvalidConfirmations(
                source, f"row {table.line + 1}: the file has no rows below its header"
            )
        return rows
    except InvalidRoster as exc:  # from the file reader: the file cannot be read
        reasons = (
            "empty: no header row"
            if p.reason == EMPTY
            else f"row {p.line}: {p.reason}"
            if p.column == "(file)"
            else f"row {p.line}, column {p.column}: {p.reason}"
            for p in exc.problems[:5]
        )
        raise InvalidConfirmations(source, "; ".join(reasons)) from None


# -- checking ------------------------------------------------------------------------------------
class _Reject(InvalidInput):
    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or REASONS[reason]


#: What may follow a VND amount (compared case aside): the currency, as clerks write it.
_DONG: Final = ("vnđ", "vnd", "đồng", "đ", "₫")
#: Thousands grouped by one separator (a dot, a comma, a space — plain, no-break or narrow),
#: every group after the first of exactly three digits: ``360.000``, ``1 360 000``.
_GROUPED: Final = re.compile(r"[0-9]{1,3}([., \u00a0\u202f])[0-9]{3}(?:\1[0-9]{3})*")
#: More digits than this is no payment (and would make a huge number).
_MAX_DIGITS: Final = 18


def _amount(text: str, currency: str) -> int:
    """The amount of a row in whole minor units, as a clerk types it.

    Digits alone are read in any currency. A currency without a minor unit (VND) may be
    grouped by thousands with dots, commas or spaces, and followed by ``đ``, ``₫``, ``đồng``,
    ``VND`` or ``VNĐ``: unambiguous, since every group after the first must have three digits
    (``360.000``, never ``360.5`` or ``3,60,000``).

    >>> _amount("360.000 đ", "VND"), _amount("1,360,000", "VND"), _amount("360000", "VND")
    (360000, 1360000, 360000)
    """
    value = text.strip()
    folded = value.casefold()
    unit = next((u for u in _DONG if folded.endswith(u)), None)
    if unit is not None:
        if currency != "VND":
            raise _Reject("malformed_row", f"amount: in đồng, the instruction is in {currency}")
        value = value[: len(value) - len(unit)].rstrip()
    if value.isascii() and value.isdigit():
        digits = value
    elif MINOR_UNITS.get(currency) == 0 and _GROUPED.fullmatch(value):
        digits = re.sub("[^0-9]", "", value)
    else:
        raise _Reject(
            "malformed_row", "amount: whole đồng, digits or grouped by thousands (360.000)"
        )
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise _Reject("malformed_row", f"amount: more than {_MAX_DIGITS} digits")
    return int(digits)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _Reject("malformed_row", "collected_on: a date as YYYY-MM-DD") from None


def _folded(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


@attrs.define
class _References:
    """Provider references of instructions, read a cycle at a time (only when needed)."""

    store: Store
    cycles: dict[tuple[str, int], dict[str, tuple[str | None, str | None]]] = attrs.field(
        factory=dict
    )

    def of(self, record: InstructionRecord) -> str | None:
        key = (record.programme, record.period)
        if key not in self.cycles:
            self.cycles[key] = self.store.outcomes(*key)
        found = self.cycles[key].get(record.instruction_id)
        return None if found is None else found[1]


@attrs.define
class _Checker:
    store: Store
    provider: PostalCashProvider
    records: dict[str, InstructionRecord]
    references: _References
    #: the last day of each listed instruction's payment window (the provider's register)
    closes: dict[str, dt.date] = attrs.field(factory=dict)
    seen: set[str] = attrs.field(factory=set)

    def same_code(self, row: _Row) -> tuple[str, str] | None:
        """(instruction id, code) of a row that names a known instruction of this provider
        with a well-formed code: what makes two rows "the same code"; None otherwise."""
        ident = row.cells.get("instruction_id", "")
        record = self.records.get(ident)
        if record is None or record.provider != self.provider.name:
            return None
        try:
            return ident, normalise_code(row.cells.get("code", ""))
        except InvalidCollectionCode:
            return None

    def check(self, row: _Row) -> Result | None:
        """The row's result, or None for a repeat of what the ledger already has.

        Raises:
            _Reject: the row goes to the review list.
        """
        if row.problem is not None:
            raise _Reject("malformed_row", row.problem)
        cells = row.cells
        ident = cells.get("instruction_id", "")
        if not ident:
            raise _Reject("malformed_row", "instruction_id: empty")
        try:
            normalise_code(cells.get("code", ""))
        except InvalidCollectionCode as exc:
            raise _Reject("malformed_code", exc.reason) from None
        outcome = cells.get("outcome", "").lower()
        if outcome not in ("paid", "unclaimed"):
            raise _Reject("malformed_row", "outcome: paid or unclaimed")
        record = self.records.get(ident)
        if record is None or record.provider != self.provider.name:
            raise _Reject("unknown_instruction")
        amount = _amount(cells.get("amount", ""), record.currency)
        address = parse_address(record.address)
        point = address.pay_point if isinstance(address, CashPickup) else ""
        given_point = cells.get("pay_point", "")
        code = cells["code"]
        keys = self.provider.keys
        as_given = amount > 0 and verify_code(code, ident, amount, given_point, keys) is not None
        as_issued = verify_code(code, ident, record.amount, point, keys)
        if amount != record.amount:
            if as_given or as_issued is not None:
                raise _Reject("amount_differs", f"{amount} given, {record.amount} issued")
            raise _Reject("wrong_code")
        if given_point != point:
            raise _Reject("pay_point_differs" if as_issued is not None else "wrong_code")
        if as_issued is None:
            raise _Reject("wrong_code")
        if ident in self.seen:
            raise _Reject("code_used_twice", "a second row for this code in the file")
        if outcome == "unclaimed":
            return self._unclaimed(record)
        return self._paid(row, record, as_issued.key_id)

    def _unclaimed(self, record: InstructionRecord) -> Result | None:
        state = S(record.state)
        if state is S.UNCLAIMED:
            self.seen.add(record.instruction_id)
            return None
        if state is S.PAID:
            raise _Reject("code_used_twice", "reported unclaimed, but confirmed paid before")
        if state not in (S.SUBMITTED, S.ACCEPTED, S.UNKNOWN):
            raise _Reject("not_payable", f"the instruction is {state}")
        self.seen.add(record.instruction_id)
        return Result(record.instruction_id, ResultKind.UNCLAIMED, None, _UNCLAIMED_REFERENCE)

    def _paid(self, row: _Row, record: InstructionRecord, key_id: str) -> Result | None:
        cells = row.cells
        on = _date(cells.get("collected_on", ""))
        by = cells.get("collected_by", "").lower()
        if by not in ("beneficiary", "proxy"):
            raise _Reject("malformed_row", "collected_by: beneficiary or proxy")
        reference = collection_reference(on, by, key_id)
        state = S(record.state)
        if state is S.PAID:
            previous = parse_collection_reference(self.references.of(record))
            if previous == (on, by):
                self.seen.add(record.instruction_id)
                return None
            raise _Reject("code_used_twice", "the instruction was confirmed paid before")
        if state is S.UNCLAIMED:
            raise _Reject("window_closed")
        if state not in (S.SUBMITTED, S.ACCEPTED, S.UNKNOWN):
            raise _Reject("not_payable", f"the instruction is {state}")
        first, last = self._window(record)
        if not first <= on <= last:
            raise _Reject(
                "outside_window",
                f"collected {on.isoformat()}; the window is {first.isoformat()} to "
                f"{last.isoformat()}",
            )
        if by == "proxy":
            self._mandate(row, record, on)
        self.seen.add(record.instruction_id)
        return Result(
            record.instruction_id,
            ResultKind.PAID,
            provider_reference=reference,
            amount=Money(record.amount, record.currency),
        )

    def _window(self, record: InstructionRecord) -> tuple[dt.date, dt.date]:
        """The days cash of ``record`` can have been collected on: from the list's first day
        (or the benefit month's first day, when earlier: a past month replayed) to the list's
        last (today, when the provider's register does not know the instruction)."""
        month = Period(record.period).first_day
        closes = self.closes.get(record.instruction_id)
        if closes is None:
            return month, max(month, self.provider.today())
        opens = closes - dt.timedelta(days=self.provider.settings.window_days)
        return min(month, opens), closes

    def _mandate(self, row: _Row, record: InstructionRecord, on: dt.date) -> None:
        """A proxy collection needs a proxy on the mandate, valid on the day, the same person
        (name), and the authorisation reference of the mandate."""
        person = self.store.beneficiary(record.beneficiary_id)
        if person is None or not person.proxy_name:
            raise _Reject("proxy_without_mandate")
        if person.mandate_valid_until and dt.date.fromisoformat(person.mandate_valid_until) < on:
            raise _Reject("proxy_mandate_expired", f"valid until {person.mandate_valid_until}")
        named = row.cells.get("proxy_name", "")
        if not named or _folded(named) != _folded(person.proxy_name):
            raise _Reject("proxy_name_mismatch")
        given = "".join(row.cells.get("authorisation", "").split())
        held = person.proxy_national_id
        if not held:
            raise _Reject("authorisation_mismatch", "no proxy identity on file to check against")
        if not given or not (given == held or (len(given) == 4 and held.endswith(given))):
            raise _Reject("authorisation_mismatch")


def import_confirmations(
    store: Store, provider: PostalCashProvider, path: Path
) -> ConfirmationImport:
    """Check a confirmation file against the ledger and apply the rows that pass, once.

    Raises:
        InvalidConfirmations: the file cannot be read at all (nothing applied).
        ForeignLedger: a row's ``ledger`` names another ledger: the file answers another
            ledger's payout lists (nothing applied).
    """
    source = str(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if store.find_import(IMPORT_KIND, digest) is not None:
        return ConfirmationImport(source, digest, 0, 0, 0, (), already_imported=True)
    rows = read_confirmations(path)
    ours = store.ledger_id
    for row in rows:
        theirs = row.cells.get("ledger", "").strip().lower()
        if theirs and theirs != ours:
            raise ForeignLedger(theirs, ours, source=source)
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with store.transaction():
        wanted = sorted({row.cells.get("instruction_id", "") for row in rows} - {""})
        records = {r.instruction_id: r for r in store.instructions_by_id(wanted)}
        checker = _Checker(
            store, provider, records, _References(store), provider.window_closes(wanted)
        )
        results: list[Result] = []
        review: list[ReviewLine] = []
        repeated = 0
        # The first row of each code: its number, and its place in the review list if rejected.
        firsts: dict[tuple[str, str], tuple[int, int | None]] = {}

        def reject(row: _Row, reason: str, detail: str) -> None:
            review.append(
                ReviewLine(
                    row.row,
                    row.cells.get("instruction_id", ""),
                    row.cells.get("code", "")[:40],
                    reason,
                    detail,
                )
            )

        for row in rows:
            code = checker.same_code(row)
            first = firsts.get(code) if code is not None else None
            if first is not None and first[1] is not None:
                # The first row of this code was rejected: a second one must not slip in
                # what it could not. Both go to review, the first keeping its own reason.
                earlier = review[first[1]]
                if earlier.reason != "code_used_twice":
                    review[first[1]] = attrs.evolve(
                        earlier,
                        reason="code_used_twice",
                        detail=f"row {row.row} has the same code; this row: {earlier.reason}: "
                        f"{earlier.detail}",
                    )
                reject(row, "code_used_twice", f"row {first[0]} has the same code, rejected")
                continue
            try:
                result = checker.check(row)
            except _Reject as rejected:
                reject(row, rejected.reason, rejected.detail)
                if code is not None and first is None:
                    firsts[code] = (row.row, len(review) - 1)
                continue
            if code is not None and first is None:
                firsts[code] = (row.row, None)
            if result is None:
                repeated += 1
            else:
                results.append(result)
        import_id = store.add_import(IMPORT_KIND, source, digest, at)
        outcome = apply_results(store, results, provider=provider.name)
        _flag(
            store, provider, at, [records[r.key] for r in results if r.kind is ResultKind.UNCLAIMED]
        )
        store.finish_import(import_id, len(rows), ImportSummary(outcome.applied, repeated, 0))
        store.append_events(_events(at, provider.name, source, digest, review, records))
        store.append_events(
            [
                EventRecord(
                    at,
                    "confirmations.imported",
                    None,
                    None,
                    None,
                    None,
                    f"{provider.name}: {source}, {len(rows)} rows, {outcome.applied} applied, "
                    f"{repeated} repeated, {len(review)} to review; sha256 {digest}",
                )
            ]
        )
    return ConfirmationImport(
        source, digest, len(rows), outcome.applied, repeated, tuple(review), already_imported=False
    )


def _flag(
    store: Store, provider: PostalCashProvider, at: str, unclaimed: Iterable[InstructionRecord]
) -> None:
    """Flag for re-verification those the file made UNCLAIMED the last of their months in a
    row (the window close flags those it moves: each month counts however it was recorded)."""
    cycles: dict[tuple[str, int], set[str]] = {}
    for record in unclaimed:
        cycles.setdefault((record.programme, record.period), set()).add(record.beneficiary_id)
    for (programme, ordinal), beneficiaries in sorted(cycles.items()):
        flag_unclaimed(
            store, programme, Period(ordinal), beneficiaries, provider.reverify_after, at
        )


def _events(
    at: str,
    provider: str,
    source: str,
    digest: str,
    review: Iterable[ReviewLine],
    records: dict[str, InstructionRecord],
) -> Iterator[EventRecord]:
    for line in review:
        yield EventRecord(
            at,
            "confirmation.rejected",
            line.instruction_id if line.instruction_id in records else None,
            None,
            None,
            None,
            f"{provider}: {source} row {line.row}: {line.reason}",
        )


def write_review_csv(path: Path, review: Sequence[ReviewLine]) -> int:
    """The review list as CSV (:data:`REVIEW_COLUMNS`), written atomically; returns the rows."""
    with atomic_file(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REVIEW_COLUMNS)
        for line in review:
            writer.writerow(
                csv_row((line.row, line.instruction_id, line.code, line.reason, line.detail))
            )
    return len(review)
