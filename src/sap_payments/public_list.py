"""Public lists (công khai): who in a commune is paid what this month, as the commune posts it.

A commune posts the list of its payments for the public to check. The list names each payee
only partly and shows nothing else about them that could be misused:

* the name masked word by word: each word keeps its first letter and every other letter becomes
  ``*`` (``Nguyễn Văn An`` → ``N***** V** A*``); a one-letter word still gets one ``*``, so a
  masked name never equals the name;
* the national id masked to its last 4 digits (``********5678``); empty when there is none;
* the category code, the amount in đồng, the channel, and whether a proxy is paid (not who).

Neither the beneficiary id nor the birth date, phone, account, pay point or address appear. Lines
are numbered instead of showing the beneficiary id: the id is the ledger's key, which links the
person to every other record about them, and a posted list needs only a number to point at.

>>> mask_name("Nguyễn Văn An")
'N***** V** A*'
>>> mask_national_id("046012345678")
'********5678'

The CSV and XLSX layouts are documented in ``docs/formats.md`` (section 4.7).
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import attrs

from sap_payments._files import atomic_file
from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.coverage import Tally
from sap_payments.cycles import require_cycle
from sap_payments.errors import InvalidInput, StoreError
from sap_payments.instructions import InstructionState
from sap_payments.money import Money
from sap_payments.output import csv_row, sheet_row
from sap_payments.periods import Period
from sap_payments.store import Store

__all__ = [
    "CHANNEL_WORDS",
    "PUBLIC_COLUMNS",
    "NoPublicLines",
    "PublicLine",
    "PublicList",
    "mask_name",
    "mask_national_id",
    "public_list",
    "write_public_csv",
    "write_public_files",
    "write_public_xlsx",
]

#: The channels as the XLSX shows them to the public, in Vietnamese.
CHANNEL_WORDS: Final = {
    "ewallet": "Ví điện tử",
    "bank": "Tài khoản ngân hàng",
    "postal": "Tiền mặt (bưu điện)",
}
#: The CSV columns, one row per line.
PUBLIC_COLUMNS: Final = ("line", "name", "national_id", "category", "amount", "channel", "proxy")
#: The XLSX header row (the CSV columns, in Vietnamese).
_XLSX_HEADER: Final = (
    "STT",
    "Họ và tên",
    "Số CCCD",
    "Đối tượng",
    "Số tiền (đồng)",
    "Hình thức nhận",
    "Nhận thay",
)
_XLSX_WIDTHS: Final = (6, 28, 16, 18, 16, 22, 10)


class NoPublicLines(InvalidInput, LookupError):
    """The commune has no payment in the cycle (an unknown or mistyped commune code, usually)."""

    def __init__(self, programme: str, period: str, commune_code: str) -> None:
        super().__init__(
            f"no payments in commune {commune_code} for {period} ({programme}): "
            "check the commune code"
        )
        self.programme = programme
        self.period = period
        self.commune_code = commune_code


def _mask_word(word: str) -> str:
    # the first letter with its combining marks (when NFC leaves any), then one * a character
    first = 1
    while first < len(word) and unicodedata.combining(word[first]):
        first += 1
    return word[:first] + "*" * max(1, len(word) - first)


def mask_name(name: str) -> str:
    """The name with each word's first letter kept and the rest masked (NFC first).

    >>> mask_name("Lý A")
    'L* A*'
    """
    return " ".join(_mask_word(word) for word in unicodedata.normalize("NFC", name).split())


def mask_national_id(national_id: str | None) -> str:
    """Every character but the last 4 as ``*``; all masked when 4 or fewer; "" when none."""
    if not national_id:
        return ""
    if len(national_id) <= 4:
        return "*" * len(national_id)
    return "*" * (len(national_id) - 4) + national_id[-4:]


@attrs.frozen
class PublicLine:
    """One payment on the list: ``number`` counts from 1 in list order."""

    number: int
    name: str
    national_id: str
    category: str
    amount: int
    channel: str
    proxy: bool


@attrs.frozen
class PublicList:
    """The public list of one commune in one cycle; ``commune_name`` is None when the areas
    file was not imported. ``total`` is the count and amount of the lines."""

    programme: str
    period: Period
    commune_code: str
    commune_name: str | None
    currency: str
    lines: tuple[PublicLine, ...]
    total: Tally


def public_list(
    store: Store, period: Period | str, commune_code: str, *, programme: str = DEFAULT_PROGRAMME
) -> PublicList:
    """The public list of ``commune_code`` in the cycle of ``period``.

    One line per instruction of the commune that is not CANCELLED (drafts and held ones
    included: the list is usually posted before payment), ordered by the beneficiary's full name
    (NFC, case-folded) then beneficiary id. Names and national ids come from the beneficiary's
    record as it is now.

    Raises:
        CycleNotFound: the cycle has not been prepared.
        NoPublicLines: the commune has no such instruction in the cycle.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    cycle = require_cycle(store, programme, period)
    found: list[tuple[tuple[str, str], PublicLine]] = []
    for record, _ in store.cycle_instructions(programme, period.ordinal):
        if record.commune_code != commune_code or record.state == InstructionState.CANCELLED:
            continue
        person = store.beneficiary(record.beneficiary_id)
        if person is None:
            raise StoreError(
                f"instruction {record.instruction_id} names beneficiary "
                f"{record.beneficiary_id}, who is not in the ledger"
            )
        name = unicodedata.normalize("NFC", person.full_name)
        line = PublicLine(
            0,
            mask_name(name),
            mask_national_id(person.national_id),
            person.category,
            record.amount,
            record.channel,
            record.payee_kind == "proxy",
        )
        found.append(((name.casefold(), record.beneficiary_id), line))
    if not found:
        raise NoPublicLines(programme, str(period), commune_code)
    found.sort(key=lambda item: item[0])
    lines = tuple(attrs.evolve(line, number=n) for n, (_, line) in enumerate(found, 1))
    commune_name = next(
        (area.commune_name for area in store.areas() if area.commune_code == commune_code), None
    )
    total = Tally(len(lines), Money(sum(line.amount for line in lines), cycle.currency))
    return PublicList(programme, period, commune_code, commune_name, cycle.currency, lines, total)


def _rows(public: PublicList) -> Iterator[tuple[Any, ...]]:
    for line in public.lines:
        yield (
            line.number,
            line.name,
            line.national_id,
            line.category,
            line.amount,
            line.channel,
            "true" if line.proxy else "false",
        )


def write_public_csv(out: IO[str], public: PublicList) -> int:
    """The lines as CSV (:data:`PUBLIC_COLUMNS`); returns how many."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PUBLIC_COLUMNS)
    count = 0
    for row in _rows(public):
        writer.writerow(csv_row(row))
        count += 1
    return count


def _title(public: PublicList) -> str:
    commune = public.commune_name or f"xã {public.commune_code}"
    month = f"{public.period.month:02d}/{public.period.year}"
    return f"Danh sách chi trả trợ cấp xã hội — {commune} — tháng {month} — {public.programme}"


def write_public_xlsx(path: Path, public: PublicList) -> None:
    """A printable XLSX, written atomically: a title row, the header row (repeated on every
    printed page), the lines and a total row; A4 landscape, fitted to the page width."""
    import openpyxl  # imported here: only XLSX writers pay for it
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "cong-khai"
    bold = Font(bold=True)
    sheet.append(sheet_row(sheet, [_title(public)]))
    sheet.append(list(_XLSX_HEADER))
    for line in public.lines:
        sheet.append(
            sheet_row(
                sheet,
                [
                    line.number,
                    line.name,
                    line.national_id,
                    line.category,
                    line.amount,
                    CHANNEL_WORDS.get(line.channel, line.channel),
                    "Có" if line.proxy else "",
                ],
            )
        )
    total = ["", f"Tổng cộng: {public.total.count} người", "", "", public.total.amount.minor]
    sheet.append(sheet_row(sheet, total))
    last = sheet.max_row
    for cell in (sheet["A1"], *sheet[2], *sheet[last]):
        cell.font = bold
    for row in sheet.iter_rows(min_row=3, min_col=5, max_col=5):
        row[0].number_format = "#,##0"
    for index, width in enumerate(_XLSX_WIDTHS, 1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.print_title_rows = "2:2"
    sheet.page_setup.orientation = sheet.ORIENTATION_LANDSCAPE
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    with atomic_file(path, "wb") as handle:
        workbook.save(handle)


def write_public_files(public: PublicList, directory: Path) -> tuple[Path, Path]:
    """Write ``public-<commune>-<period>.csv`` and ``.xlsx`` into ``directory``, each
    atomically; return their paths."""
    stem = f"public-{public.commune_code}-{public.period}"
    csv_path, xlsx_path = directory / f"{stem}.csv", directory / f"{stem}.xlsx"
    with atomic_file(csv_path, "w") as handle:
        write_public_csv(handle, public)
    write_public_xlsx(xlsx_path, public)
    return csv_path, xlsx_path
