"""Public lists (công khai): masking, what the list holds and leaves out, and the two files.

One small ledger pays the 2021-09 cycle in two communes; commune 20107 has payees through an
e-wallet, a bank and the post office, one paid to a proxy, one without a national id, and one
held (an expired proxy mandate) and cancelled at approval, so left off the list.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import (
    CycleNotFound,
    InvalidInput,
    Ledger,
    Money,
    NoPublicLines,
    Period,
    PublicList,
    Tally,
    mask_name,
    mask_national_id,
    public_list,
)
from sap_payments.cli import main
from sap_payments.public_list import CHANNEL_WORDS, PUBLIC_COLUMNS, write_public_csv

PERIOD = "2021-09"  # standard level 360,000 VND; the rows are paid through 2021-08
COMMUNE = "20107"

AREAS_CSV = """\
province_code,province_name,district_code,district_name,commune_code,commune_name
46,Tỉnh Thừa Thiên Huế,482,Huyện Phú Lộc,20107,Thị trấn Phú Lộc
46,Tỉnh Thừa Thiên Huế,482,Huyện Phú Lộc,20110,Thị trấn Lăng Cô
"""
BANK = {
    "channel": "bank",
    "provider": "vietinbank",
    "msisdn": "",
    "bank_bin": "970415",
    "account_number": "0123456789",
}
POSTAL = {"channel": "postal", "provider": "vnpost", "msisdn": "", "pay_point": "BD-PHULOC"}
PROXY = {
    "proxy_name": "Trần Thị Lan",
    "proxy_national_id": "046185004568",
    "proxy_relation": "con gái",
    "mandate_valid_until": "2030-12-31",
}
#: beneficiary id → roster columns; all in 20107 except B9
ROWS = {
    "B1": {"full_name": "Nguyễn Văn An"},  # e-wallet, 360,000
    "B2": {"full_name": "Lê Thị Bích Ngọc", "coefficient": "1.5", **BANK},  # 540,000
    "B3": {"full_name": "Hồ Thị Đào", "category": "disabled_severe", **POSTAL, **PROXY},
    "B4": {"full_name": "Lý A", "national_id": "", "msisdn": "0987654321"},  # no national id
    "B5": {"full_name": "Đặng Văn Em", **PROXY, "mandate_valid_until": "2021-08-31"},  # held
    "B6": {"full_name": "Lê Thị Bích Ngọc", "coefficient": "2"},  # same name as B2: by id
    "B9": {"full_name": "Phạm Văn Chín", "commune_code": "20110"},
}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    directory = tmp_path_factory.mktemp("public")
    opened = open_ledger(directory)
    try:
        areas = directory / "areas.csv"
        areas.write_text(AREAS_CSV, encoding="utf-8")
        opened.import_areas(areas)
        (directory / "rosters").mkdir()
        RosterLoader(directory / "rosters")(
            opened, *(roster_row(bid, **columns) for bid, columns in ROWS.items())
        )
        opened.prepare(PERIOD)
        opened.approve(PERIOD, by="Trưởng phòng")  # cancels B5's held instruction
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def public(ledger: Ledger) -> PublicList:
    return ledger.public_list(PERIOD, COMMUNE)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


#: what must never appear on a public list: names, ids, birth dates, phones, accounts, pay
#: points and proxies' names and ids of every beneficiary of the ledger
def secrets(ledger: Ledger) -> list[str]:
    found = ["0123456789", "BD-PHULOC", PROXY["proxy_name"], PROXY["proxy_national_id"]]
    for bid in ROWS:
        record = ledger.store.beneficiary(bid)
        assert record is not None
        found += [bid, record.full_name, record.birth_date or "", record.msisdn or ""]
        found.append(record.national_id or "")
    return [s for s in found if s]


def assert_masked(name: object) -> None:
    """Each word of a masked name is one letter then stars: no two letters in a row."""
    assert isinstance(name, str)
    assert re.fullmatch(r"[^\W\d_]\*+( [^\W\d_]\*+)*", name), name


# -- masking --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("Nguyễn Văn An", "N***** V** A*"),
        ("Lê Thị Bích Ngọc", "L* T** B*** N***"),
        ("Đặng Văn Em", "Đ*** V** E*"),
        ("Ưng  Ổi", "Ư** Ổ*"),  # runs of spaces collapse
        ("Hùng", "H***"),  # one word
        ("Lý A", "L* A*"),  # a one-letter word is masked too
        ("Y", "Y*"),
        ("", ""),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked
    if name:
        assert mask_name(name) != name


def test_mask_name_normalises_nfd_input() -> None:
    nfd = unicodedata.normalize("NFD", "Ệ Ổn Đức")
    assert nfd != unicodedata.normalize("NFC", nfd)
    assert mask_name(nfd) == "Ệ* Ổ* Đ**"
    assert unicodedata.is_normalized("NFC", mask_name(nfd))


@pytest.mark.parametrize(
    ("national_id", "masked"),
    [
        ("046012345678", "********5678"),
        ("123456789", "*****6789"),
        ("5678", "****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_national_id(national_id: str | None, masked: str) -> None:
    assert mask_national_id(national_id) == masked


# -- the list -------------------------------------------------------------------------------------
def test_the_lines(public: PublicList) -> None:
    assert (public.programme, public.period, public.commune_code, public.commune_name) == (
        "monthly-allowance",
        Period.parse(PERIOD),
        COMMUNE,
        "Thị trấn Phú Lộc",
    )
    rows = [
        (ln.number, ln.name, ln.national_id, ln.category, ln.amount, ln.channel, ln.proxy)
        for ln in public.lines
    ]
    b1, b2, b3, b6 = (roster_row(bid)["national_id"][-4:] for bid in ("B1", "B2", "B3", "B6"))
    # by full name (Hồ, Lê Thị Bích Ngọc ×2 by id, Lý, Nguyễn); B5 cancelled, B9 elsewhere
    assert rows == [
        (1, "H* T** Đ**", f"********{b3}", "disabled_severe", 720000, "postal", True),
        (2, "L* T** B*** N***", f"********{b2}", "elderly_80plus", 540000, "bank", False),
        (3, "L* T** B*** N***", f"********{b6}", "elderly_80plus", 720000, "ewallet", False),
        (4, "L* A*", "", "elderly_80plus", 360000, "ewallet", False),
        (5, "N***** V** A*", f"********{b1}", "elderly_80plus", 360000, "ewallet", False),
    ]


def test_totals_equal_the_communes_coverage(ledger: Ledger, public: PublicList) -> None:
    assert public.total == Tally(5, Money.vnd(2_700_000))
    (line,) = [
        ln
        for ln in ledger.coverage(PERIOD).lines
        if ln.level == "commune" and ln.commune_code == COMMUNE
    ]
    assert public.total == line.instructed


def test_cancelled_instructions_are_left_out(ledger: Ledger, public: PublicList) -> None:
    states = {r.beneficiary_id: r.state for r, _ in ledger.instructions(PERIOD)}
    assert states["B5"] == "CANCELLED"
    assert len(public.lines) == sum(
        1 for b in ("B1", "B2", "B3", "B4", "B6") if states[b] != "CANCELLED"
    )


def test_without_areas_the_commune_has_no_name(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path)
    try:
        (tmp_path / "r").mkdir()
        RosterLoader(tmp_path / "r")(ledger, roster_row("B1"))
        ledger.prepare(PERIOD)
        found = public_list(ledger.store, PERIOD, COMMUNE)
        assert found.commune_name is None
        assert [ln.name for ln in found.lines] == ["N***** V** A*"]  # a draft is listed too
    finally:
        ledger.close()


def test_errors(ledger: Ledger) -> None:
    with pytest.raises(NoPublicLines) as caught:
        ledger.public_list(PERIOD, "99999")
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.commune_code == "99999"
    assert "99999" in str(caught.value)
    with pytest.raises(CycleNotFound):
        ledger.public_list("2021-10", COMMUNE)


def test_the_csv_holds_nothing_private(ledger: Ledger, public: PublicList) -> None:
    out = io.StringIO()
    assert write_public_csv(out, public) == 5
    text = out.getvalue()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == PUBLIC_COLUMNS
    assert rows[1] == [
        "1",
        "H* T** Đ**",
        public.lines[0].national_id,
        "disabled_severe",
        "720000",
        "postal",
        "true",
    ]
    for secret in secrets(ledger):
        assert secret not in text, secret
    for row in rows[1:]:
        assert_masked(row[1])


# -- the command line and the files ---------------------------------------------------------------
def xlsx_cells(path: Path) -> list[list[object]]:
    workbook = openpyxl.load_workbook(path)
    assert len(workbook.worksheets) == 1
    return [list(row) for row in workbook.active.iter_rows(values_only=True)]


def test_cli_writes_both_files(ledger: Ledger, public: PublicList, tmp_path: Path) -> None:
    db = str(ledger.store.path)
    code, text = run(
        "--db",
        db,
        "report",
        "public",
        "--period",
        PERIOD,
        "--commune",
        COMMUNE,
        "-o",
        str(tmp_path),
    )
    assert code == 0
    csv_path = tmp_path / f"public-{COMMUNE}-{PERIOD}.csv"
    xlsx_path = tmp_path / f"public-{COMMUNE}-{PERIOD}.xlsx"
    assert sorted(tmp_path.iterdir()) == [csv_path, xlsx_path]  # no temporary files left
    assert str(csv_path) in text
    assert str(xlsx_path) in text
    out = io.StringIO()
    write_public_csv(out, public)
    assert csv_path.read_text(encoding="utf-8") == out.getvalue()

    cells = xlsx_cells(xlsx_path)
    assert "Thị trấn Phú Lộc" in str(cells[0][0])
    assert "09/2021" in str(cells[0][0])
    assert cells[1][:2] == ["STT", "Họ và tên"]
    assert cells[2] == [
        1,
        "H* T** Đ**",
        public.lines[0].national_id,
        "disabled_severe",
        720000,
        "Tiền mặt (bưu điện)",
        "Có",
    ]
    assert [row[5] for row in cells[2:-1]] == [CHANNEL_WORDS[ln.channel] for ln in public.lines]
    assert cells[-1][4] == 2_700_000
    assert cells[-1][1] == "Tổng cộng: 5 người"
    everything = " ".join(str(cell) for row in cells for cell in row if cell is not None)
    for secret in secrets(ledger):
        assert secret not in everything, secret
    for row in cells[2:-1]:
        assert_masked(row[1])


def test_the_xlsx_prints_on_a4_landscape(ledger: Ledger, tmp_path: Path) -> None:
    code, _ = run(
        "--db",
        str(ledger.store.path),
        "report",
        "public",
        "--period",
        PERIOD,
        "--commune",
        COMMUNE,
        "--programme",
        "monthly-allowance",
        "--output",
        str(tmp_path),
    )
    assert code == 0
    sheet = openpyxl.load_workbook(tmp_path / f"public-{COMMUNE}-{PERIOD}.xlsx").active
    assert sheet.print_title_rows.replace("$", "") == "2:2"
    assert sheet.page_setup.orientation == "landscape"
    assert str(sheet.page_setup.paperSize) == str(sheet.PAPERSIZE_A4)
    assert sheet.page_setup.fitToWidth == 1
    assert sheet.sheet_properties.pageSetUpPr.fitToPage is True
    assert sheet.column_dimensions["B"].width >= 20


def test_cli_defaults_to_the_current_directory(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _ = run(
        "--db", str(ledger.store.path), "report", "public", "--period", PERIOD, "--commune", "20110"
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"public-20110-{PERIOD}.csv",
        f"public-20110-{PERIOD}.xlsx",
    ]


def test_cli_errors(ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(ledger.store.path)
    code, _ = run(
        "--db",
        db,
        "report",
        "public",
        "--period",
        PERIOD,
        "--commune",
        "99999",
        "-o",
        str(tmp_path),
    )
    assert code == 1
    assert "no payments in commune 99999" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written
    code, _ = run("--db", db, "report", "public", "--period", "2021-10", "--commune", COMMUNE)
    assert code == 1
    assert "no cycle 2021-10" in capsys.readouterr().err
    code, _ = run("--db", db, "report", "public", "--period", PERIOD)
    assert code == 2
