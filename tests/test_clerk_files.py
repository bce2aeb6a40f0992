"""Files as clerks make them (docs/formats.md, 1.10): what Excel and its users really produce,
read by every import (roster, areas, enrolment results, post-office confirmations) the same way.

The files are made the way an outsider would: workbooks written with openpyxl and then edited
inside the zip (a stale dimension, a saved formula value), real Windows-1258 and UTF-16 bytes,
semicolon CSV with CRLF line ends and a decimal comma as Vietnamese Excel saves it.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from conftest import open_ledger, roster_row, write_roster
from sap_payments import Config, Ledger
from sap_payments.enrolment import InvalidEnrolmentResults
from sap_payments.errors import InvalidInput, InvalidRoster
from sap_payments.postal.confirmations import CONFIRMATION_COLUMNS, InvalidConfirmations
from sap_payments.roster import AREA_COLUMNS, ROSTER_COLUMNS, import_areas, import_roster
from sap_payments.rules import RuleSet
from sap_payments.sqlite_store import SQLiteStore

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
ROSTER = EXAMPLES / "roster.csv"
AREAS = EXAMPLES / "areas.csv"
PROGRAMME = "monthly-allowance"
PROVIDERS = {"viettelpay": "ewallet", "vietinbank": "bank", "vnpost": "postal"}
RULES = RuleSet.vietnam_default()
COL = {name: k for k, name in enumerate(ROSTER_COLUMNS)}
SAVE_AS = "save it as 'CSV UTF-8 (Comma delimited)'"


# -- helpers --------------------------------------------------------------------------------------
def example() -> tuple[list[str], list[list[str]]]:
    with ROSTER.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def csv_bytes(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    bom: bytes = b"",
) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")  # as Excel saves
    writer.writerow(header)
    writer.writerows(rows)
    return bom + buffer.getvalue().encode(encoding)


def workbook(*sheets: tuple[str, Sequence[Sequence[Any]]]) -> openpyxl.Workbook:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    return book


def roster_xlsx(path: Path, rows: Sequence[Sequence[Any]] | None = None) -> Path:
    header, example_rows = example()
    workbook(("Sheet", [header, *(example_rows if rows is None else rows)])).save(path)
    return path


def edit_sheet_xml(path: Path, edit: Callable[[str], str], member: str = "") -> None:
    """Rewrite a worksheet's XML inside the workbook, as another program might have left it."""
    member = member or "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts[member] = edit(parts[member].decode("utf-8")).encode("utf-8")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


def to_cp1258(text: str) -> bytes:
    """``text`` as Windows-1258 bytes, as Excel's "CSV (Comma delimited)" writes Vietnamese:
    the code page has ê, ơ, ư, ă, đ but not every toned letter, so a tone is a combining mark
    after its letter (ễ → ê + U+0303). Python's cp1258 codec does no such decomposing."""
    out = bytearray()
    for char in unicodedata.normalize("NFC", text):
        try:
            out += char.encode("cp1258")
            continue
        except UnicodeEncodeError:
            pass
        base, *marks = unicodedata.normalize("NFD", char)
        for k, mark in enumerate(marks):  # the letter the code page has, then the other mark
            rest = "".join(marks[:k] + marks[k + 1 :])
            try:
                out += (unicodedata.normalize("NFC", base + mark) + rest).encode("cp1258")
                break
            except UnicodeEncodeError:
                continue
        else:
            out += (base + "".join(marks)).encode("cp1258")
    return bytes(out)


def do_import(store: SQLiteStore, path: Path) -> Any:
    return import_roster(store, path, rules=RULES, programme=PROGRAMME, providers=PROVIDERS)


def problems(excinfo: pytest.ExceptionInfo[InvalidRoster]) -> list[tuple[int, str]]:
    return [(p.line, p.column) for p in excinfo.value.problems]


def reasons(excinfo: pytest.ExceptionInfo[InvalidRoster]) -> str:
    return "\n".join(p.reason for p in excinfo.value.problems)


def imported(store: SQLiteStore) -> list[Any]:
    return list(store.beneficiaries(PROGRAMME))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "ledger.db", durable=False)
    yield db
    db.close()


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[list[Any]]:
    """The example roster's records, as its CSV UTF-8 file imports them."""
    db = SQLiteStore(tmp_path / "reference.db", durable=False)
    do_import(db, ROSTER)
    yield imported(db)
    db.close()


# -- XLSX -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stale", ["A1:Y8", "A1:H8"])  # 7 of 12 rows; and 8 of 25 columns too
def test_a_stale_dimension_does_not_hide_rows(
    store: SQLiteStore, tmp_path: Path, reference: list[Any], stale: str
) -> None:
    path = roster_xlsx(tmp_path / "roster.xlsx")
    dimension = f'<dimension ref="{stale}"'
    edit_sheet_xml(path, lambda xml: re.sub(r'<dimension ref="[^"]*"', dimension, xml))
    assert dimension in zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml").decode()
    result = do_import(store, path)
    assert (result.rows, result.added) == (12, 12)  # not 7: every row up to the last one
    assert imported(store) == reference


def test_a_formula_without_a_saved_value_is_refused_naming_the_cell(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example()
    values: list[list[Any]] = [list(row) for row in rows]
    values[1][COL["coefficient"]] = "=1+0.5"  # openpyxl saves the formula, not its value
    path = tmp_path / "formula.xlsx"
    workbook(("Danh sách", [header, *values])).save(path)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(3, "coefficient")]
    reason = reasons(excinfo)
    assert "cell J3 of sheet 'Danh sách'" in reason
    assert "formula with no saved value" in reason
    assert imported(store) == []


def test_a_formula_with_a_saved_value_is_read_as_that_value(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example()
    values: list[list[Any]] = [list(row) for row in rows]
    values[1][COL["coefficient"]] = "=1+0.5"
    path = tmp_path / "computed.xlsx"
    workbook(("Sheet", [header, *values])).save(path)
    # what Excel writes: the formula and the value it computed
    edit_sheet_xml(path, lambda xml: xml.replace("<f>1+0.5</f><v></v>", "<f>1+0.5</f><v>1.5</v>"))
    do_import(store, path)
    assert store.beneficiary(rows[1][COL["beneficiary_id"]]).coefficient == "1.5"


def test_a_date_cell_in_a_month_column_is_read_as_its_month(
    store: SQLiteStore, tmp_path: Path, reference: list[Any]
) -> None:
    header, rows = example()
    values: list[list[Any]] = [list(row) for row in rows]
    for row in values:  # Excel turns a typed 2021-07 into the date 2021-07-01
        for column in ("first_period", "last_period", "paid_through"):
            if row[COL[column]]:
                year, month = map(int, row[COL[column]].split("-"))
                row[COL[column]] = dt.datetime(year, month, 1)  # noqa: DTZ001 - a sheet date
    path = tmp_path / "months.xlsx"
    workbook(("Sheet", [header, *values])).save(path)
    do_import(store, path)
    assert imported(store) == reference


def test_a_title_above_the_header_is_skipped_and_rows_keep_their_numbers(
    store: SQLiteStore, tmp_path: Path, reference: list[Any]
) -> None:
    header, rows = example()
    title = [["DANH SÁCH ĐỐI TƯỢNG HƯỞNG TRỢ CẤP XÃ HỘI"], ["Tháng 9/2021"], []]
    path = tmp_path / "titled.xlsx"
    workbook(("Sheet", [*title, header, *rows])).save(path)
    assert do_import(store, path).added == 12
    assert imported(store) == reference
    bad = [list(row) for row in rows]
    bad[2][COL["sex"]] = "X"
    workbook(("Sheet", [*title, header, *bad])).save(path)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(7, "sex")]  # title 1–3, header 4, the third row is row 7


def test_an_instructions_sheet_first_names_where_the_header_is(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example()
    path = tmp_path / "two-sheets.xlsx"
    workbook(
        ("Hướng dẫn", [["Nhập mỗi đối tượng một dòng ở sheet Danh sách"], ["Không xoá tiêu đề"]]),
        ("Danh sách", [header, *rows]),
    ).save(path)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(1, "(file)")]
    reason = reasons(excinfo)
    assert "sheet 'Hướng dẫn', row 1: expected the header (beneficiary_id, full_name," in reason
    assert "the header is on row 1 of sheet 'Danh sách'" in reason
    assert imported(store) == []


def test_a_row_of_spaces_is_blank_in_a_workbook(
    store: SQLiteStore, tmp_path: Path, reference: list[Any]
) -> None:
    header, rows = example()
    spaces = [" ", "  ", *[""] * (len(header) - 2)]
    path = roster_xlsx(tmp_path / "spaces.xlsx", [*rows[:3], spaces, *rows[3:]])
    assert do_import(store, path).rows == 12
    assert imported(store) == reference


def test_an_id_that_lost_its_leading_zero_in_a_number_cell_says_so(
    store: SQLiteStore, tmp_path: Path
) -> None:
    _, rows = example()
    values: list[list[Any]] = [list(row) for row in rows]
    values[0][COL["national_id"]] = 46138001234  # what Excel makes of 046138001234
    path = roster_xlsx(tmp_path / "numbers.xlsx", values)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    [problem] = excinfo.value.problems
    assert (problem.line, problem.column) == (2, "national_id")
    assert "looks like a number that lost its leading zero" in problem.reason
    assert "format the column as Text" in problem.reason


# -- CSV ------------------------------------------------------------------------------------------
def test_a_semicolon_csv_as_vietnamese_excel_saves_it_is_read(
    store: SQLiteStore, tmp_path: Path, reference: list[Any]
) -> None:
    header, rows = example()
    path = tmp_path / "semicolon.csv"
    path.write_bytes(csv_bytes(header, rows, delimiter=";", bom=codecs.BOM_UTF8))
    assert path.read_bytes().splitlines()[0].count(b";") == len(header) - 1
    assert do_import(store, path).added == 12
    assert imported(store) == reference


def test_a_semicolon_csv_with_decimal_commas_and_a_bad_row_names_it(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example()
    rows[0][COL["coefficient"]] = "1,5"  # the decimal comma of a Vietnamese Excel
    rows[4][COL["sex"]] = "X"
    path = tmp_path / "semicolon.csv"
    path.write_bytes(csv_bytes(header, rows, delimiter=";"))
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(6, "sex")]
    rows[4][COL["sex"]] = "M"
    path.write_bytes(csv_bytes(header, rows, delimiter=";"))
    do_import(store, path)
    assert store.beneficiary(rows[0][COL["beneficiary_id"]]).coefficient == "1.5"


def test_windows_1258_is_named_with_what_to_do(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example()
    path = tmp_path / "ansi.csv"
    text = csv_bytes(header, rows).decode("utf-8")
    path.write_bytes(to_cp1258(text))
    assert "Nguyễn".encode() not in path.read_bytes()
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(2, "(file)")]  # the first line with a Vietnamese letter
    reason = reasons(excinfo)
    assert reason.startswith("not UTF-8 text")
    assert "Windows-1258" in reason
    assert SAVE_AS in reason
    assert imported(store) == []


def test_latin_1_is_named(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example()
    ascii_rows = [[unicodedata.normalize("NFD", c).encode("ascii", "ignore").decode() for c in r]
                  for r in rows]  # fmt: skip
    ascii_rows[3][COL["full_name"]] = "José Müller"
    path = tmp_path / "latin1.csv"
    path.write_bytes(csv_bytes(header, ascii_rows, encoding="latin-1"))
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(5, "(file)")]
    assert "Windows-1252 (Latin-1)" in reasons(excinfo)
    assert SAVE_AS in reasons(excinfo)


def test_utf_16_with_a_bom_is_read_as_excel_unicode_text(
    store: SQLiteStore, tmp_path: Path, reference: list[Any]
) -> None:
    header, rows = example()
    path = tmp_path / "unicode.txt"  # Excel's "Unicode Text": UTF-16 LE with a BOM, tabs
    path.write_bytes(csv_bytes(header, rows, delimiter="\t", encoding="utf-16"))
    assert path.read_bytes().startswith(codecs.BOM_UTF16_LE)
    assert do_import(store, path).added == 12
    assert imported(store) == reference


def test_utf_16_without_a_bom_is_named(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example()
    path = tmp_path / "no-bom.csv"
    path.write_bytes(csv_bytes(header, rows, encoding="utf-16-le"))
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(1, "(file)")]
    assert "UTF-16 text without a byte-order mark" in reasons(excinfo)
    assert SAVE_AS in reasons(excinfo)


def test_a_line_of_spaces_is_blank(
    store: SQLiteStore, tmp_path: Path, reference: list[Any]
) -> None:
    header, rows = example()
    path = tmp_path / "spaces.csv"
    data = csv_bytes(header, rows).decode()
    lines = data.split("\r\n")
    lines.insert(4, "   ")  # line 5
    lines.insert(6, " , ,\t,")  # line 7
    path.write_text("\r\n".join(lines), encoding="utf-8")
    assert do_import(store, path).rows == 12
    assert imported(store) == reference


def test_an_unclosed_quote_is_blamed_on_the_line_it_opens(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example()
    for row in rows:  # no other quote in the file: "2,5" becomes 2.5
        row[COL["coefficient"]] = row[COL["coefficient"]].replace(",", ".")
    lines = csv_bytes(header, rows).decode().split("\r\n")
    assert '"' not in "".join(lines)
    k = next(k for k, line in enumerate(lines) if "Lê Thị Mận" in line)
    lines[k] = lines[k].replace("Lê Thị Mận", '"Lê Thị Mận')  # a quote never closed
    path = tmp_path / "quote.csv"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(k + 1, "(file)")]  # not the last line, where the row ends
    assert "closing quote" in reasons(excinfo)
    assert imported(store) == []


def test_an_unclosed_quote_in_a_long_file_is_blamed_on_the_line_it_opens(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example()
    for row in rows:  # no other quote in the file: "2,5" becomes 2.5
        row[COL["coefficient"]] = row[COL["coefficient"]].replace(",", ".")
    many = [[f"X-{k}", *rows[0][1:]] for k in range(2_000)]  # ~400 KB after the quote
    lines = csv_bytes(header, [*rows, *many]).decode().split("\r\n")
    k = next(k for k, line in enumerate(lines) if "Lê Thị Mận" in line)
    lines[k] = lines[k].replace("Lê Thị Mận", '"Lê Thị Mận')
    path = tmp_path / "long.csv"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(k + 1, "(file)")]
    assert "closing quote" in reasons(excinfo)


def test_a_closed_multiline_field_on_the_last_row_is_not_a_broken_quote(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example()
    rows[-1][COL["full_name"]] = "Phạm\nThị Lan"  # a quoted line break, closed
    path = tmp_path / "multiline.csv"
    path.write_bytes(csv_bytes(header, rows))
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert [c for _, c in problems(excinfo)] == ["full_name"]  # a control character, not a quote


@pytest.mark.parametrize("column", ["national_id", "proxy_national_id"])
def test_a_csv_id_that_lost_its_leading_zero_says_so(
    store: SQLiteStore, tmp_path: Path, column: str
) -> None:
    header, rows = example()
    index = next(k for k, row in enumerate(rows) if row[COL[column]])
    rows[index][COL[column]] = rows[index][COL[column]].lstrip("0")
    path = tmp_path / "ids.csv"
    path.write_bytes(csv_bytes(header, rows))
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    [problem] = excinfo.value.problems
    assert (problem.line, problem.column) == (index + 2, column)
    assert "looks like a number that lost its leading zero: format the column as Text" in str(
        problem
    )


def test_a_title_line_above_a_csv_header_is_skipped(
    store: SQLiteStore, tmp_path: Path, reference: list[Any]
) -> None:
    header, rows = example()
    path = tmp_path / "titled.csv"
    title = "DANH SÁCH ĐỐI TƯỢNG" + "," * (len(header) - 1) + "\r\n"
    path.write_bytes(title.encode("utf-8") + csv_bytes(header, rows))
    assert do_import(store, path).added == 12
    assert imported(store) == reference


def test_a_file_without_the_header_says_where_it_was_expected(
    store: SQLiteStore, tmp_path: Path
) -> None:
    _, rows = example()
    path = tmp_path / "no-header.csv"
    path.write_bytes(csv_bytes(rows[0], rows[1:]))  # the header line deleted
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems(excinfo) == [(1, "(file)")]
    message = str(excinfo.value)
    assert "expected the header (beneficiary_id, full_name, national_id, …) on line 1" in message
    assert rows[0][COL["full_name"]] not in message  # never a person's data
    assert rows[0][COL["national_id"]] not in message


# -- every import reads its file the same way -----------------------------------------------------
TOML = """
[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"

[providers.vnpost]
plugin = "postal-cash"
channel = "postal"
outbox = "{outbox}"
secret = "{secret}"
"""


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(tmp_path)
    opened.config = Config.loads(
        TOML.format(outbox=(tmp_path / "outbox").as_posix(), secret="5e" * 32)
    )
    cash = {"channel": "postal", "provider": "vnpost", "msisdn": "", "pay_point": "BD-20107"}
    opened.import_roster(write_roster(tmp_path / "roster.csv", [roster_row("B1", **cash)]))
    opened.create_campaign("c1", provider="viettelpay", communes=["20107"])
    try:
        yield opened
    finally:
        opened.close()


ENROLMENT = (("beneficiary_id", "outcome", "reason"), ("B1", "refused", "không muốn"))
CONFIRMATION = (
    CONFIRMATION_COLUMNS[:8],
    ("X1", "12345678901", "360000", "BD-20107", "paid", "2021-09-14", "proxy", "Trần Thị Bình"),
)
AREA = (AREA_COLUMNS, ("46", "Tỉnh Thừa Thiên Huế", "482", "Huyện Phú Lộc", "20107", "Phú Lộc"))


def import_enrolment(ledger: Ledger, path: Path) -> object:
    return ledger.import_enrolment_results("c1", path)


def import_confirmation(ledger: Ledger, path: Path) -> object:
    return ledger.import_confirmations(path, provider="vnpost")


def import_area(ledger: Ledger, path: Path) -> object:
    return import_areas(ledger.store, path)


READERS = [
    pytest.param(import_area, AREA, InvalidRoster, id="areas"),
    pytest.param(import_enrolment, ENROLMENT, InvalidEnrolmentResults, id="enrolment"),
    pytest.param(import_confirmation, CONFIRMATION, InvalidConfirmations, id="confirmations"),
]


@pytest.mark.parametrize(("do", "table", "error"), READERS)
def test_every_import_names_windows_1258(
    ledger: Ledger,
    tmp_path: Path,
    do: Callable[[Ledger, Path], object],
    table: tuple[Sequence[str], Sequence[str]],
    error: type[InvalidInput],
) -> None:
    header, row = table
    path = tmp_path / "ansi.csv"
    path.write_bytes(to_cp1258(csv_bytes(header, [row]).decode()))
    with pytest.raises(error) as excinfo:
        do(ledger, path)
    assert "Windows-1258" in str(excinfo.value)
    assert SAVE_AS in str(excinfo.value)


@pytest.mark.parametrize(("do", "table", "error"), READERS)
def test_every_import_reads_a_semicolon_file_below_a_title(
    ledger: Ledger,
    tmp_path: Path,
    do: Callable[[Ledger, Path], object],
    table: tuple[Sequence[str], Sequence[str]],
    error: type[InvalidInput],
) -> None:
    header, row = table
    path = tmp_path / "semicolon.csv"
    title = "Danh sách;;\r\n\r\n".encode()
    path.write_bytes(codecs.BOM_UTF8 + title + csv_bytes(header, [row], delimiter=";"))
    do(ledger, path)  # read and applied (a confirmation of an unknown id goes to review)


@pytest.mark.parametrize(("do", "table", "error"), READERS)
def test_every_import_refuses_a_formula_without_a_value(
    ledger: Ledger,
    tmp_path: Path,
    do: Callable[[Ledger, Path], object],
    table: tuple[Sequence[str], Sequence[str]],
    error: type[InvalidInput],
) -> None:
    header, row = table
    path = tmp_path / "formula.xlsx"
    workbook(("Sheet", [header, [*row[:-1], '=""&"x"']])).save(path)
    with pytest.raises(error) as excinfo:
        do(ledger, path)
    column = chr(ord("A") + len(header) - 1)
    assert f"cell {column}2 of sheet 'Sheet' holds a formula with no saved value" in str(
        excinfo.value
    )


def test_a_large_file_read_in_slices_reads_the_same(
    store: SQLiteStore,
    tmp_path: Path,
    reference: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sap_payments import roster as roster_module

    monkeypatch.setattr(roster_module, "PARALLEL_MIN_BYTES", 1)  # slice even a small file
    header, rows = example()
    for row in rows:
        row[COL["coefficient"]] = row[COL["coefficient"]].replace(".", ",")
    title = "DANH SÁCH ĐỐI TƯỢNG;;\r\n".encode()
    path = tmp_path / "sliced.csv"
    path.write_bytes(codecs.BOM_UTF8 + title + csv_bytes(header, rows, delimiter=";"))

    def sliced() -> Any:
        return import_roster(
            store, path, rules=RULES, programme=PROGRAMME, providers=PROVIDERS, workers=3
        )

    assert sliced().added == 12
    assert imported(store) == reference
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    k = next(k for k, line in enumerate(lines) if "Lê Thị Mận" in line)
    lines[k] = lines[k].replace("Lê Thị Mận", '"Lê Thị Mận')
    path.write_text("\r\n".join(lines).replace('"2,5"', "2.5"), encoding="utf-8")
    with pytest.raises(InvalidRoster) as excinfo:
        sliced()
    assert problems(excinfo) == [(k + 1, "(file)")]
