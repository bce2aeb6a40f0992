"""Roster format v1 (docs/formats.md, section 1): what is accepted, how it is stored, and that a
bad file is refused whole, with every problem named by line and column."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from sap_payments.cycles import mandate_addresses
from sap_payments.errors import InvalidRoster
from sap_payments.ledger import Ledger
from sap_payments.periods import Period
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


# -- helpers ------------------------------------------------------------------------------------
def example_rows() -> tuple[list[str], list[list[str]]]:
    with ROSTER.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def as_dicts() -> list[dict[str, str]]:
    header, rows = example_rows()
    return [dict(zip(header, row, strict=True)) for row in rows]


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    header = list(ROSTER_COLUMNS)
    path.write_text(
        csv_text(header, [[row.get(c, "") for c in header] for row in rows]), encoding="utf-8"
    )
    return path


def write_xlsx(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for r, values in enumerate([header, *rows], start=1):
        for c, value in enumerate(values, start=1):
            cell = sheet.cell(row=r, column=c, value=value)
            cell.number_format = "@"  # Text: how the docs tell clerks to format the sheet
    workbook.save(path)
    return path


def modified(changes: Mapping[int, Mapping[str, str]]) -> list[dict[str, str]]:
    """The example rows with some fields changed: {row index: {column: value}}."""
    rows = as_dicts()
    for index, fields in changes.items():
        rows[index].update(fields)
    return rows


def do_import(
    store: SQLiteStore,
    path: Path,
    *,
    providers: Mapping[str, str] | None = PROVIDERS,
    programme: str = PROGRAMME,
) -> Any:
    return import_roster(store, path, rules=RULES, programme=programme, providers=providers)


def snapshot(store: SQLiteStore) -> tuple[Any, ...]:
    """Everything an import may change, to show that a failed one changed nothing."""
    return (
        list(store.beneficiaries(PROGRAMME)),
        store.query("SELECT count(*) FROM beneficiaries"),
        store.query("SELECT import_id, rows, added, changed, unchanged FROM imports"),
        store.query("SELECT beneficiary_id, version FROM beneficiaries ORDER BY beneficiary_id"),
        store.query("SELECT count(*) FROM beneficiary_history"),
        list(store.events()),
    )


def problems_of(excinfo: pytest.ExceptionInfo[InvalidRoster]) -> list[tuple[int, str]]:
    return [(p.line, p.column) for p in excinfo.value.problems]


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    db = SQLiteStore(tmp_path / "ledger.db", durable=False)
    yield db
    db.close()


@pytest.fixture
def loaded(store: SQLiteStore) -> SQLiteStore:
    """A ledger holding the example areas and roster."""
    import_areas(store, AREAS)
    do_import(store, ROSTER)
    return store


# -- the example roster ---------------------------------------------------------------------------
def test_example_roster_imports_cleanly(store: SQLiteStore) -> None:
    import_areas(store, AREAS)
    result = do_import(store, ROSTER)
    assert (result.rows, result.added, result.changed, result.unchanged) == (12, 12, 0, 0)
    assert len(result.sha256) == 64
    stored = {b.beneficiary_id: b for b in store.beneficiaries(PROGRAMME)}
    assert sorted(stored) == [f"PL-{n:04d}" for n in range(1, 13)]


def test_example_files_hold_the_documented_columns() -> None:
    header, rows = example_rows()
    assert header == list(ROSTER_COLUMNS)
    assert 10 <= len(rows) <= 14
    with AREAS.open(encoding="utf-8", newline="") as handle:
        area_rows = list(csv.reader(handle))
    assert area_rows[0] == list(AREA_COLUMNS)
    communes = {row[AREA_COLUMNS.index("commune_code")] for row in area_rows[1:]}
    assert {row[COL["commune_code"]] for row in rows} <= communes
    assert {"20107", "20110", "20113"} <= communes


def test_example_roster_is_stored_as_documented(loaded: SQLiteStore) -> None:
    get = loaded.beneficiary
    plain = get("PL-0001")
    assert plain.msisdn == "+84912345678"  # 0912345678 → E.164
    assert plain.national_id == "046138001234"  # leading zero kept
    assert plain.first_period == Period.parse("2021-07").ordinal
    assert plain.paid_through == Period.parse("2021-08").ordinal
    assert plain.last_period is None
    assert (plain.status, plain.channel, plain.provider, plain.sex) == (
        "active",
        "ewallet",
        "viettelpay",
        "F",
    )
    assert plain.full_name == "Nguyễn Thị Hoa"
    assert plain.coefficient is None  # the category's applies

    bank = get("PL-0002")
    assert (bank.bank_bin, bank.account_number) == ("970415", "0123456789")

    postal = get("PL-0003")
    assert (postal.channel, postal.pay_point, postal.home_delivery) == ("postal", "BD-LANGCO", 1)

    proxy = get("PL-0004")
    assert (proxy.proxy_name, proxy.proxy_relation) == ("Phạm Thị Lan", "con gái")
    assert proxy.proxy_national_id == "046185004568"
    assert proxy.mandate_valid_until == "2022-12-31"

    assert get("PL-0005").mandate_valid_until == "2021-08-31"
    backdated = get("PL-0006")
    assert backdated.first_period == Period.parse("2021-06").ordinal
    assert backdated.paid_through is None
    assert get("PL-0007").status == "suspended"
    ceased = get("PL-0008")
    assert (ceased.status, ceased.last_period) == ("ceased", Period.parse("2021-06").ordinal)
    assert get("PL-0009").coefficient == "2.5"  # "2,5" in the file
    assert get("PL-0011").msisdn == "+84905123456"  # +84 form kept as E.164
    child = get("PL-0012")
    assert child.national_id is None
    assert child.birth_date == "2020-08-18"


def test_fallback_addresses_are_kept_in_documented_order(loaded: SQLiteStore) -> None:
    record = loaded.beneficiary("PL-0010")
    assert record.channel == "ewallet"
    assert (record.msisdn, record.bank_bin, record.account_number, record.pay_point) == (
        "+84966777888",
        "970415",
        "1020304050",
        "BD-VINHMY",
    )
    assert mandate_addresses(record) == [
        ("ewallet", "ewallet:+84966777888"),
        ("bank", "bank:970415:1020304050"),
        ("postal", "postal:BD-VINHMY"),
    ]
    # channel picks the first address; the others follow in the order ewallet, bank, postal
    postal_first = record._replace(channel="postal")
    assert [c for c, _ in mandate_addresses(postal_first)] == ["postal", "ewallet", "bank"]


def test_decomposed_names_are_stored_nfc(store: SQLiteStore, tmp_path: Path) -> None:
    rows = as_dicts()
    for row in rows:
        for column in ("full_name", "proxy_name", "proxy_relation"):
            row[column] = unicodedata.normalize("NFD", row[column])
    assert rows[0]["full_name"] != "Nguyễn Thị Hoa"  # the input really is decomposed
    do_import(store, write_csv(tmp_path / "nfd.csv", rows))
    assert store.beneficiary("PL-0001").full_name == "Nguyễn Thị Hoa"
    assert store.beneficiary("PL-0004").proxy_name == "Phạm Thị Lan"
    assert store.beneficiary("PL-0004").proxy_relation == "con gái"
    # the precomposed file is then the same roster: nothing changes
    again = do_import(store, ROSTER)
    assert (again.changed, again.unchanged) == (0, 12)


@pytest.mark.parametrize(
    ("column", "text", "stored"),
    [
        ("msisdn", "0912 345 678", "+84912345678"),
        ("msisdn", "84912345678", "+84912345678"),
        ("msisdn", "(091) 234-5678", "+84912345678"),
        ("msisdn", "0355.123.456", "+84355123456"),
        ("coefficient", "1,25", "1.25"),
        ("coefficient", "2.50", "2.5"),
        ("status", "Active", "active"),
        ("channel", "EWallet", "ewallet"),
        ("sex", "nữ", "F"),
        ("sex", "Nam", "M"),
        ("sex", "f", "F"),
    ],
)
def test_accepted_forms_are_normalised(
    store: SQLiteStore, tmp_path: Path, column: str, text: str, stored: str
) -> None:
    do_import(store, write_csv(tmp_path / "r.csv", modified({0: {column: text}})))
    assert getattr(store.beneficiary("PL-0001"), column) == stored


@pytest.mark.parametrize("text", ["1", "true", "Yes", "y", "x", "có"])
def test_home_delivery_true_forms(store: SQLiteStore, tmp_path: Path, text: str) -> None:
    do_import(store, write_csv(tmp_path / "r.csv", modified({2: {"home_delivery": text}})))
    assert store.beneficiary("PL-0003").home_delivery == 1


@pytest.mark.parametrize("text", ["", "0", "false", "No", "n", "không"])
def test_home_delivery_false_forms(store: SQLiteStore, tmp_path: Path, text: str) -> None:
    do_import(store, write_csv(tmp_path / "r.csv", modified({2: {"home_delivery": text}})))
    assert store.beneficiary("PL-0003").home_delivery == 0


def test_unknown_category_is_accepted_with_a_coefficient(
    store: SQLiteStore, tmp_path: Path
) -> None:
    rows = modified({0: {"category": "provincial_extra", "coefficient": "1,2"}})
    do_import(store, write_csv(tmp_path / "r.csv", rows))
    record = store.beneficiary("PL-0001")
    assert (record.category, record.coefficient) == ("provincial_extra", "1.2")


def test_bom_is_tolerated(store: SQLiteStore, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ROSTER.read_bytes())
    assert do_import(store, path).added == 12


def test_column_order_is_free(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    path = tmp_path / "reversed.csv"
    path.write_text(csv_text(header[::-1], [row[::-1] for row in rows]), encoding="utf-8")
    do_import(store, path)
    reference = SQLiteStore(tmp_path / "reference.db", durable=False)
    do_import(reference, ROSTER)
    assert list(store.beneficiaries(PROGRAMME)) == list(reference.beneficiaries(PROGRAMME))
    reference.close()


def test_blank_rows_are_skipped_but_counted_in_line_numbers(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example_rows()
    rows[3][COL["sex"]] = "X"  # file line 5 without the blank rows
    text = csv_text(header, rows[:2]) + "\n" + ",,,,\n" + csv_text([], rows[2:]).lstrip("\n")
    path = tmp_path / "blank.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems_of(excinfo) == [(7, "sex")]


# -- XLSX -----------------------------------------------------------------------------------------
def test_xlsx_imports_identically(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    result = do_import(store, write_xlsx(tmp_path / "roster.xlsx", header, rows))
    assert (result.rows, result.added) == (12, 12)
    reference = SQLiteStore(tmp_path / "reference.db", durable=False)
    do_import(reference, ROSTER)
    assert list(store.beneficiaries(PROGRAMME)) == list(reference.beneficiaries(PROGRAMME))
    reference.close()
    # importing the CSV over the XLSX import changes nothing
    assert do_import(store, ROSTER).unchanged == 12


def test_xlsx_line_numbers_are_spreadsheet_rows(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    rows[4][COL["msisdn"]] = "12345"
    with_blank = [*rows[:2], [""] * len(header), *rows[2:]]
    path = write_xlsx(tmp_path / "bad.xlsx", header, with_blank)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems_of(excinfo) == [(7, "msisdn")]  # header 1, rows 2–3, blank 4, row 5 → 7


def test_xlsx_number_cells_lose_leading_zeros_and_are_refused(
    store: SQLiteStore, tmp_path: Path
) -> None:
    header, rows = example_rows()
    values: list[list[Any]] = [list(row) for row in rows]
    values[0][COL["national_id"]] = 46138001234  # what Excel makes of 046138001234
    values[0][COL["msisdn"]] = 912345678
    path = write_xlsx(tmp_path / "numbers.xlsx", header, values)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems_of(excinfo) == [(2, "national_id"), (2, "msisdn")]


def test_xlsx_date_cells_are_read_as_iso_dates(store: SQLiteStore, tmp_path: Path) -> None:
    import datetime as dt

    header, rows = example_rows()
    values: list[list[Any]] = [list(row) for row in rows]
    values[0][COL["birth_date"]] = dt.datetime(1938, 3, 15)  # noqa: DTZ001 - a spreadsheet date
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append([*header, None, None])  # trailing empty header cells are allowed in XLSX
    for row in values:
        sheet.append(row)
    path = tmp_path / "dates.xlsx"
    workbook.save(path)
    do_import(store, path)
    assert store.beneficiary("PL-0001").birth_date == "1938-03-15"


def test_unreadable_xlsx_is_a_file_problem(store: SQLiteStore, tmp_path: Path) -> None:
    path = tmp_path / "roster.xlsx"
    path.write_text("not a workbook", encoding="utf-8")
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    assert problems_of(excinfo) == [(1, "(file)")]


# -- every validation rule: reported at its line and column, nothing applied ----------------------
# (row index in the example roster, fields to set, expected column, words of the reason)
BAD_VALUES = [
    pytest.param(
        0, {"beneficiary_id": "PL 0001"}, "beneficiary_id", "letters, digits", id="id-space"
    ),
    pytest.param(0, {"beneficiary_id": ""}, "beneficiary_id", "required", id="id-empty"),
    pytest.param(0, {"beneficiary_id": "X" * 65}, "beneficiary_id", "1–64", id="id-long"),
    pytest.param(0, {"full_name": ""}, "full_name", "required", id="name-empty"),
    pytest.param(0, {"full_name": "Nguyễn\tHoa"}, "full_name", "control", id="name-tab"),
    pytest.param(0, {"full_name": "A" * 201}, "full_name", "200", id="name-long"),
    pytest.param(0, {"national_id": "04613800123"}, "national_id", "12 digits", id="nid-11"),
    pytest.param(0, {"national_id": "0461380012345"}, "national_id", "12 digits", id="nid-13"),
    pytest.param(0, {"national_id": "04613800123A"}, "national_id", "12 digits", id="nid-letter"),
    pytest.param(0, {"birth_date": ""}, "birth_date", "required", id="birth-empty"),
    pytest.param(0, {"birth_date": "15/03/1938"}, "birth_date", "YYYY-MM-DD", id="birth-dmy"),
    pytest.param(0, {"birth_date": "1938-02-30"}, "birth_date", "YYYY-MM-DD", id="birth-no-day"),
    pytest.param(0, {"birth_date": "2999-01-01"}, "birth_date", "future", id="birth-future"),
    pytest.param(0, {"sex": "X"}, "sex", "M or F", id="sex"),
    pytest.param(0, {"sex": ""}, "sex", "M or F", id="sex-empty"),
    pytest.param(0, {"province_code": ""}, "province_code", "required", id="province-empty"),
    pytest.param(0, {"province_code": "4-6"}, "province_code", "letters and digits", id="province"),
    pytest.param(
        0, {"district_code": "48 2"}, "district_code", "letters and digits", id="district"
    ),
    pytest.param(0, {"commune_code": ""}, "commune_code", "required", id="commune-empty"),
    pytest.param(
        0, {"commune_code": "2010700000000"}, "commune_code", "letters", id="commune-long"
    ),
    pytest.param(0, {"category": ""}, "category", "required", id="category-empty"),
    pytest.param(0, {"category": "elderly_90plus"}, "category", "unknown category", id="category"),
    pytest.param(0, {"coefficient": "abc"}, "coefficient", "decimal", id="coef-text"),
    pytest.param(0, {"coefficient": "1.23456"}, "coefficient", "decimal", id="coef-5-places"),
    pytest.param(0, {"coefficient": "1,5,0"}, "coefficient", "decimal", id="coef-two-commas"),
    pytest.param(0, {"coefficient": "-1"}, "coefficient", "decimal", id="coef-negative"),
    pytest.param(0, {"coefficient": "0"}, "coefficient", "more than 0", id="coef-zero"),
    pytest.param(0, {"coefficient": "20,5"}, "coefficient", "at most 20", id="coef-over-20"),
    pytest.param(0, {"first_period": ""}, "first_period", "required", id="first-empty"),
    pytest.param(0, {"first_period": "2021-13"}, "first_period", "YYYY-MM", id="first-month-13"),
    pytest.param(0, {"first_period": "2021/07"}, "first_period", "YYYY-MM", id="first-slash"),
    pytest.param(0, {"first_period": "07-2021"}, "first_period", "YYYY-MM", id="first-mm-yyyy"),
    pytest.param(0, {"first_period": "2021-7"}, "first_period", "YYYY-MM", id="first-one-digit"),
    pytest.param(0, {"last_period": "2021-00"}, "last_period", "YYYY-MM", id="last-month-0"),
    pytest.param(
        0, {"last_period": "2021-06"}, "last_period", "before first_period", id="last-before"
    ),
    pytest.param(0, {"paid_through": "2021-8"}, "paid_through", "YYYY-MM", id="paid-through"),
    pytest.param(0, {"status": "dead"}, "status", "active, suspended or ceased", id="status"),
    pytest.param(
        0,
        {"status": "ceased"},
        "last_period",
        "required when status is ceased",
        id="ceased-no-last",
    ),
    pytest.param(0, {"channel": "cash"}, "channel", "ewallet, bank or postal", id="channel"),
    pytest.param(0, {"provider": ""}, "provider", "required", id="provider-empty"),
    pytest.param(
        0, {"provider": "ViettelPay"}, "provider", "not a provider name", id="provider-case"
    ),
    pytest.param(0, {"provider": "momo"}, "provider", "not configured", id="provider-unknown"),
    pytest.param(
        0,
        {"provider": "vnpost"},
        "provider",
        "pays through postal, not ewallet",
        id="provider-channel",
    ),
    pytest.param(
        1,
        {"provider": "viettelpay"},
        "provider",
        "pays through ewallet, not bank",
        id="provider-channel-bank",
    ),
    pytest.param(
        0, {"msisdn": ""}, "msisdn", "required when channel is ewallet", id="msisdn-empty"
    ),
    pytest.param(0, {"msisdn": "0212345678"}, "msisdn", "Vietnamese mobile", id="msisdn-landline"),
    pytest.param(0, {"msisdn": "091234567"}, "msisdn", "Vietnamese mobile", id="msisdn-short"),
    pytest.param(0, {"msisdn": "+85512345678"}, "msisdn", "Vietnamese mobile", id="msisdn-foreign"),
    pytest.param(
        1,
        {"bank_bin": "", "account_number": ""},
        "bank_bin",
        "required when channel is bank",
        id="bank-missing",
    ),
    pytest.param(1, {"bank_bin": "97041"}, "bank_bin", "6-digit", id="bin-5"),
    pytest.param(1, {"bank_bin": ""}, "bank_bin", "6-digit", id="bin-without-account"),
    pytest.param(
        0, {"account_number": "123456789"}, "bank_bin", "6-digit", id="account-without-bin"
    ),
    pytest.param(1, {"account_number": "12345"}, "account_number", "6–19", id="account-short"),
    pytest.param(1, {"account_number": "0123-456789"}, "account_number", "6–19", id="account-dash"),
    pytest.param(1, {"account_number": "1" * 20}, "account_number", "6–19", id="account-long"),
    pytest.param(
        2,
        {"pay_point": "", "home_delivery": ""},
        "pay_point",
        "required when channel is postal",
        id="pay-point-missing",
    ),
    pytest.param(2, {"pay_point": "BĐ LĂNG CÔ"}, "pay_point", "1–32", id="pay-point-chars"),
    pytest.param(2, {"home_delivery": "maybe"}, "home_delivery", "1 or 0", id="home-delivery"),
    pytest.param(
        0, {"home_delivery": "1"}, "home_delivery", "needs a pay_point", id="home-no-pay-point"
    ),
    pytest.param(
        0,
        {"proxy_relation": "con"},
        "proxy_name",
        "required when other proxy columns",
        id="proxy-relation-alone",
    ),
    pytest.param(
        0,
        {"mandate_valid_until": "2022-12-31"},
        "proxy_name",
        "required when other proxy columns",
        id="mandate-alone",
    ),
    pytest.param(
        3,
        {"proxy_relation": ""},
        "proxy_relation",
        "required when proxy_name",
        id="proxy-no-relation",
    ),
    pytest.param(3, {"proxy_relation": "r" * 65}, "proxy_relation", "64", id="proxy-relation-long"),
    pytest.param(
        3, {"proxy_name": "Phạm\x07Lan"}, "proxy_name", "control", id="proxy-name-control"
    ),
    pytest.param(3, {"proxy_national_id": "123"}, "proxy_national_id", "12 digits", id="proxy-nid"),
    pytest.param(
        3,
        {"mandate_valid_until": "31/12/2022"},
        "mandate_valid_until",
        "YYYY-MM-DD",
        id="mandate-date",
    ),
]


@pytest.mark.parametrize(("index", "fields", "column", "words"), BAD_VALUES)
def test_bad_value_is_reported_and_nothing_applied(
    loaded: SQLiteStore,
    tmp_path: Path,
    index: int,
    fields: dict[str, str],
    column: str,
    words: str,
) -> None:
    before = snapshot(loaded)
    rows = modified({index: fields})
    # The rest of the file would change the ledger if any of it were applied.
    rows[5]["full_name"] = "Võ Thị Lài Mới"
    rows.append({**as_dicts()[0], "beneficiary_id": "PL-0099", "national_id": "046199009999"})
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(loaded, path)
    assert problems_of(excinfo) == [(index + 2, column)]
    assert words in excinfo.value.problems[0].reason
    assert isinstance(excinfo.value, ValueError)
    assert "nothing was imported" in str(excinfo.value)
    assert snapshot(loaded) == before


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("msisdn", "0212345678"),
        ("national_id", "04613800123"),
        ("full_name", "Nguyễn\tThị Hoa"),
        ("account_number", "0123-456789"),
    ],
)
def test_messages_do_not_repeat_personal_data(
    store: SQLiteStore, tmp_path: Path, column: str, value: str
) -> None:
    index = 1 if column == "account_number" else 0
    path = write_csv(tmp_path / "bad.csv", modified({index: {column: value}}))
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    message = str(excinfo.value) + repr(excinfo.value.problems)
    assert value not in message
    assert value.split("\t")[0] not in message


def test_many_bad_rows_are_all_listed(loaded: SQLiteStore, tmp_path: Path) -> None:
    before = snapshot(loaded)
    rows = modified(
        {
            0: {"sex": "X"},
            2: {"pay_point": "", "home_delivery": ""},
            4: {"first_period": "2021-13", "msisdn": "123", "status": "dead"},
            8: {"coefficient": "zero"},
            11: {"birth_date": "18/08/2020"},
        }
    )
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(loaded, path)
    assert problems_of(excinfo) == [
        (2, "sex"),
        (4, "pay_point"),
        (6, "first_period"),
        (6, "status"),
        (6, "msisdn"),
        (10, "coefficient"),
        (13, "birth_date"),
    ]
    message = str(excinfo.value)
    assert message.startswith(f"{path}: 7 problems; nothing was imported")
    assert "line 13, column birth_date" in message
    assert snapshot(loaded) == before


def test_message_lists_twenty_and_counts_the_rest(store: SQLiteStore, tmp_path: Path) -> None:
    rows = []
    for k in range(25):
        row = as_dicts()[0]
        row.update(beneficiary_id=f"B-{k}", national_id="", sex="?")
        rows.append(row)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, write_csv(tmp_path / "bad.csv", rows))
    assert len(excinfo.value.problems) == 25
    message = str(excinfo.value)
    assert message.count("\n  line ") == 20
    assert message.rstrip().endswith("… and 5 more")


def test_message_counts_every_problem_past_the_cap(store: SQLiteStore, tmp_path: Path) -> None:
    base = as_dicts()[0]
    rows = [
        {**base, "beneficiary_id": f"B-{k}", "national_id": "", "sex": "?"} for k in range(10_001)
    ]
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, write_csv(tmp_path / "bad.csv", rows))
    assert getattr(excinfo.value, "total", None) == 10_001
    assert str(excinfo.value).startswith(f"{tmp_path / 'bad.csv'}: 10001 problems")


# -- duplicates and the ledger --------------------------------------------------------------------
def test_duplicate_beneficiary_id_in_file(loaded: SQLiteStore, tmp_path: Path) -> None:
    before = snapshot(loaded)
    rows = as_dicts()
    rows.append({**rows[2], "national_id": "046199009999"})  # PL-0003 again, line 14
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(loaded, write_csv(tmp_path / "dup.csv", rows))
    assert problems_of(excinfo) == [(14, "beneficiary_id")]
    assert excinfo.value.problems[0].reason == "duplicate of line 4"
    assert snapshot(loaded) == before


def test_duplicate_national_id_in_file(store: SQLiteStore, tmp_path: Path) -> None:
    rows = as_dicts()
    nid = rows[1]["national_id"]
    rows[6]["national_id"] = nid
    rows[9]["national_id"] = nid
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, write_csv(tmp_path / "dup.csv", rows))
    assert problems_of(excinfo) == [(8, "national_id"), (11, "national_id")]
    assert [p.reason for p in excinfo.value.problems] == ["duplicate of line 3"] * 2
    assert nid not in str(excinfo.value)
    assert store.query("SELECT count(*) FROM beneficiaries") == [(0,)]
    assert store.query("SELECT count(*) FROM imports") == [(0,)]


def test_national_id_of_another_beneficiary_in_the_ledger(
    loaded: SQLiteStore, tmp_path: Path
) -> None:
    before = snapshot(loaded)
    newcomer = {**as_dicts()[0], "beneficiary_id": "PL-0100"}  # PL-0001's national id
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(loaded, write_csv(tmp_path / "new.csv", [newcomer]))
    assert problems_of(excinfo) == [(2, "national_id")]
    assert excinfo.value.problems[0].reason == "national id already belongs to beneficiary PL-0001"
    assert snapshot(loaded) == before


def test_national_ids_swapped_between_two_rows(loaded: SQLiteStore, tmp_path: Path) -> None:
    rows = as_dicts()
    first, second = rows[0]["national_id"], rows[1]["national_id"]
    rows[0]["national_id"], rows[1]["national_id"] = second, first
    result = do_import(loaded, write_csv(tmp_path / "swap.csv", rows))
    assert (result.changed, result.unchanged) == (2, 10)
    assert loaded.beneficiary("PL-0001").national_id == second
    assert loaded.beneficiary("PL-0002").national_id == first


def test_other_programme_conflict(loaded: SQLiteStore, tmp_path: Path) -> None:
    before = snapshot(loaded)
    rows = as_dicts()[:3]
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(loaded, write_csv(tmp_path / "other.csv", rows), programme="social-pension")
    assert problems_of(excinfo) == [
        (2, "beneficiary_id"),
        (3, "beneficiary_id"),
        (4, "beneficiary_id"),
    ]
    assert {p.reason for p in excinfo.value.problems} == {
        "beneficiary is enrolled in programme monthly-allowance"
    }
    assert snapshot(loaded) == before
    assert list(loaded.beneficiaries("social-pension")) == []


def test_field_problems_and_duplicates_are_listed_together(
    store: SQLiteStore, tmp_path: Path
) -> None:
    rows = as_dicts()
    rows[3]["beneficiary_id"] = "PL-0001"  # line 5 duplicates line 2
    rows[8]["sex"] = "X"  # line 10
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, write_csv(tmp_path / "both.csv", rows))
    assert problems_of(excinfo) == [(5, "beneficiary_id"), (10, "sex")]


# -- header and file problems ---------------------------------------------------------------------
def header_problems(store: SQLiteStore, path: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    return [(p.line, p.column, p.reason) for p in excinfo.value.problems]


def test_unknown_column(loaded: SQLiteStore, tmp_path: Path) -> None:
    before = snapshot(loaded)
    header, rows = example_rows()
    path = tmp_path / "h.csv"
    path.write_text(csv_text([*header, "note"], [[*r, ""] for r in rows]), encoding="utf-8")
    assert header_problems(loaded, path) == [(1, "note", "unknown column")]
    assert snapshot(loaded) == before


def test_missing_column(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    k = COL["msisdn"]
    path = tmp_path / "h.csv"
    path.write_text(
        csv_text(header[:k] + header[k + 1 :], [r[:k] + r[k + 1 :] for r in rows]),
        encoding="utf-8",
    )
    assert header_problems(store, path) == [(1, "msisdn", "column missing from the header")]


def test_duplicate_column(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    path = tmp_path / "h.csv"
    path.write_text(csv_text([*header, "full_name"], [[*r, r[1]] for r in rows]), encoding="utf-8")
    assert header_problems(store, path) == [(1, "full_name", "column appears twice in the header")]


def test_column_names_are_exact(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    header[0] = "Beneficiary_ID"
    path = tmp_path / "h.csv"
    path.write_text(csv_text(header, rows), encoding="utf-8")
    assert header_problems(store, path) == [
        (1, "Beneficiary_ID", "unknown column"),
        (1, "beneficiary_id", "column missing from the header"),
    ]


def test_empty_header_cell_is_named_by_position(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    path = tmp_path / "h.csv"
    path.write_text(csv_text([*header, ""], [[*r, ""] for r in rows]), encoding="utf-8")
    assert header_problems(store, path) == [(1, "#26", "unknown column")]


def test_row_with_too_many_fields(loaded: SQLiteStore, tmp_path: Path) -> None:
    before = snapshot(loaded)
    header, rows = example_rows()
    rows[2] = [*rows[2], "", "surplus"]
    path = tmp_path / "wide.csv"
    path.write_text(csv_text(header, rows), encoding="utf-8")
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(loaded, path)
    assert [(p.line, p.column, p.reason) for p in excinfo.value.problems] == [
        (4, "(row)", "has 27 fields, the header 25")
    ]
    assert snapshot(loaded) == before


def test_extra_empty_fields_are_ignored(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    rows[2] = [*rows[2], "", ""]
    path = tmp_path / "trailing.csv"
    path.write_text(csv_text(header, rows), encoding="utf-8")
    assert do_import(store, path).added == 12


def test_row_with_too_few_fields(store: SQLiteStore, tmp_path: Path) -> None:
    header, rows = example_rows()
    rows[1] = rows[1][:2]
    path = tmp_path / "short.csv"
    path.write_text(csv_text(header, rows), encoding="utf-8")
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, path)
    columns = {column for line, column in problems_of(excinfo) if line == 3}
    assert {"birth_date", "sex", "province_code", "first_period", "channel"} <= columns
    assert {line for line, _ in problems_of(excinfo)} == {3}


def test_multiline_field_is_reported_on_the_line_the_row_ends(
    store: SQLiteStore, tmp_path: Path
) -> None:
    rows = modified({3: {"proxy_name": "Phạm\nThị Lan"}})  # a quoted line break: lines 5–6
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, write_csv(tmp_path / "multiline.csv", rows))
    assert problems_of(excinfo) == [(6, "proxy_name")]


def test_empty_file(store: SQLiteStore, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert header_problems(store, path) == [(1, "(file)", "the file is empty")]


def test_header_without_rows(store: SQLiteStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "header.csv", [])
    assert header_problems(store, path) == [(2, "(file)", "the roster has no rows")]
    assert store.query("SELECT count(*) FROM imports") == [(0,)]


def test_not_utf8(loaded: SQLiteStore, tmp_path: Path) -> None:
    before = snapshot(loaded)
    path = tmp_path / "latin1.csv"
    path.write_bytes(ROSTER.read_text(encoding="utf-8").encode("cp1258", errors="replace"))
    problems = header_problems(loaded, path)
    assert len(problems) == 1
    assert problems[0][1] == "(file)"
    assert problems[0][2].startswith("not UTF-8 text")
    assert snapshot(loaded) == before


def test_not_utf8_names_the_line(store: SQLiteStore, tmp_path: Path) -> None:
    text = ROSTER.read_text(encoding="utf-8")
    data = text.encode("utf-8").replace("Lê Thị Mận".encode(), b"L\xea Th\xec M\xe2n")
    path = tmp_path / "mixed.csv"
    path.write_bytes(data)
    problems = header_problems(store, path)
    assert [(line, column) for line, column, _ in problems] == [(4, "(file)")]


def test_decomposed_sex_word_is_accepted(store: SQLiteStore, tmp_path: Path) -> None:
    rows = modified({0: {"sex": unicodedata.normalize("NFD", "Nữ")}})
    do_import(store, write_csv(tmp_path / "nfd.csv", rows))
    assert store.beneficiary("PL-0001").sex == "F"


# -- importing again ------------------------------------------------------------------------------
def test_reimport_unchanged(loaded: SQLiteStore) -> None:
    versions = loaded.query("SELECT beneficiary_id, version FROM beneficiaries")
    records = list(loaded.beneficiaries(PROGRAMME))
    result = do_import(loaded, ROSTER)
    assert (result.rows, result.added, result.changed, result.unchanged) == (12, 0, 0, 12)
    assert loaded.query("SELECT beneficiary_id, version FROM beneficiaries") == versions
    assert list(loaded.beneficiaries(PROGRAMME)) == records
    assert all(loaded.beneficiary_history(b.beneficiary_id) == [] for b in records)
    assert loaded.query("SELECT count(*) FROM beneficiary_history") == [(0,)]
    # the import itself is recorded
    assert loaded.query(
        "SELECT rows, added, changed, unchanged FROM imports ORDER BY import_id"
    ) == [
        (12, 12, 0, 0),
        (12, 0, 0, 12),
    ]


def test_reimport_in_another_row_order_is_unchanged(loaded: SQLiteStore, tmp_path: Path) -> None:
    rows = as_dicts()[::-1]
    result = do_import(loaded, write_csv(tmp_path / "reordered.csv", rows))
    assert (result.changed, result.unchanged) == (0, 12)


def test_reimport_changed_row_keeps_history(loaded: SQLiteStore, tmp_path: Path) -> None:
    old = loaded.beneficiary("PL-0002")
    rows = modified({1: {"status": "suspended", "account_number": "9876543210"}})
    result = do_import(loaded, write_csv(tmp_path / "v2.csv", rows))
    assert (result.added, result.changed, result.unchanged) == (0, 1, 11)
    new = loaded.beneficiary("PL-0002")
    assert (new.status, new.account_number) == ("suspended", "9876543210")
    assert loaded.query("SELECT version FROM beneficiaries WHERE beneficiary_id = 'PL-0002'") == [
        (2,)
    ]
    assert loaded.beneficiary_history("PL-0002") == [(1, old)]
    assert loaded.beneficiary_history("PL-0001") == []
    # a third version keeps both earlier ones, oldest first
    rows = modified({1: {"status": "active", "account_number": "9876543210"}})
    do_import(loaded, write_csv(tmp_path / "v3.csv", rows))
    history = loaded.beneficiary_history("PL-0002")
    assert [version for version, _ in history] == [1, 2]
    assert history[1][1] == new


def test_rows_absent_from_a_later_file_are_left_alone(loaded: SQLiteStore, tmp_path: Path) -> None:
    records = {b.beneficiary_id: b for b in loaded.beneficiaries(PROGRAMME)}
    rows = modified({0: {"coefficient": "1,5"}})[:1]
    result = do_import(loaded, write_csv(tmp_path / "one.csv", rows))
    assert (result.rows, result.changed) == (1, 1)
    after = {b.beneficiary_id: b for b in loaded.beneficiaries(PROGRAMME)}
    assert sorted(after) == sorted(records)
    assert after["PL-0001"].coefficient == "1.5"
    assert all(after[k] == records[k] for k in records if k != "PL-0001")


# -- areas ----------------------------------------------------------------------------------------
def test_areas_import(store: SQLiteStore, tmp_path: Path) -> None:
    assert import_areas(store, AREAS) == 3
    areas = {a.commune_code: a for a in store.areas()}
    assert sorted(areas) == ["20107", "20110", "20113"]
    assert areas["20110"].commune_name == "Thị trấn Lăng Cô"
    assert (areas["20113"].province_code, areas["20113"].district_code) == ("46", "482")
    # names typed decomposed are stored NFC; a commune listed again is updated
    path = tmp_path / "areas.csv"
    path.write_text(
        csv_text(
            AREA_COLUMNS,
            [
                [
                    "46",
                    "Tỉnh Thừa Thiên Huế",
                    "482",
                    "Huyện Phú Lộc",
                    "20113",
                    unicodedata.normalize("NFD", "Xã Vinh Mỹ (mới)"),
                ]
            ],
        ),
        encoding="utf-8",
    )
    import_areas(store, path)
    areas = {a.commune_code: a for a in store.areas()}
    assert areas["20113"].commune_name == "Xã Vinh Mỹ (mới)"
    assert len(areas) == 3


def test_areas_file_problems_apply_nothing(store: SQLiteStore, tmp_path: Path) -> None:
    path = tmp_path / "areas.csv"
    path.write_text(
        csv_text(
            AREA_COLUMNS,
            [
                ["46", "Tỉnh Thừa Thiên Huế", "482", "Huyện Phú Lộc", "20107", "Thị trấn Phú Lộc"],
                ["46", "Tỉnh Thừa Thiên Huế", "482", "Huyện Phú Lộc", "20107", "Again"],
                ["46", "", "482", "", "20110", "Thị trấn Lăng Cô"],
                ["", "Tỉnh", "", "", "201-13", "Xã"],
            ],
        ),
        encoding="utf-8",
    )
    with pytest.raises(InvalidRoster) as excinfo:
        import_areas(store, path)
    assert problems_of(excinfo) == [
        (3, "commune_code"),
        (4, "province_name"),
        (4, "district_name"),
        (5, "province_code"),
        (5, "commune_code"),
    ]
    assert excinfo.value.problems[0].reason == "duplicate of line 2"
    assert list(store.areas()) == []


def test_areas_header_is_checked(store: SQLiteStore, tmp_path: Path) -> None:
    path = tmp_path / "areas.csv"
    path.write_text(
        "province_code,province_name,commune_code,commune_name,ward\n", encoding="utf-8"
    )
    with pytest.raises(InvalidRoster) as excinfo:
        import_areas(store, path)
    assert sorted(problems_of(excinfo)) == [
        (1, "district_code"),
        (1, "district_name"),
        (1, "ward"),
    ]


@pytest.mark.parametrize(
    ("fields", "column", "reason"),
    [
        ({"commune_code": "99999"}, "commune_code", "unknown commune 99999"),
        (
            {"district_code": "483"},
            "district_code",
            "commune 20107 lies in province 46, district 482",
        ),
        (
            {"province_code": "48"},
            "district_code",
            "commune 20107 lies in province 46, district 482",
        ),
        ({"district_code": ""}, "district_code", "commune 20107 lies in province 46, district 482"),
    ],
)
def test_roster_rows_must_name_known_communes(
    store: SQLiteStore, tmp_path: Path, fields: dict[str, str], column: str, reason: str
) -> None:
    import_areas(store, AREAS)
    with pytest.raises(InvalidRoster) as excinfo:
        do_import(store, write_csv(tmp_path / "r.csv", modified({0: fields})))
    assert [(p.line, p.column, p.reason) for p in excinfo.value.problems] == [(2, column, reason)]
    assert store.query("SELECT count(*) FROM beneficiaries") == [(0,)]


def test_without_areas_any_commune_is_accepted(store: SQLiteStore, tmp_path: Path) -> None:
    do_import(store, write_csv(tmp_path / "r.csv", modified({0: {"commune_code": "99999"}})))
    assert store.beneficiary("PL-0001").commune_code == "99999"


# -- providers ------------------------------------------------------------------------------------
def test_without_configured_providers_any_name_is_accepted(
    store: SQLiteStore, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "r.csv", modified({0: {"provider": "momo"}}))
    do_import(store, path, providers=None)
    assert store.beneficiary("PL-0001").provider == "momo"


def test_configured_providers_come_from_the_config_file(tmp_path: Path) -> None:
    from sap_payments.config import Config

    config = Config.load(EXAMPLES / "sap-payments.toml")
    with Ledger.open(tmp_path / "l.db", config=config, durable=False) as ledger:
        path = write_csv(tmp_path / "r.csv", modified({1: {"provider": "vnpost"}}))
        with pytest.raises(InvalidRoster) as excinfo:
            ledger.import_roster(path)
        assert [(p.line, p.column, p.reason) for p in excinfo.value.problems] == [
            (3, "provider", "provider 'vnpost' pays through postal, not bank")
        ]
        assert ledger.import_roster(ROSTER).added == 12


# -- the mandate's validity -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("valid_until", "held"),
    [("2021-08-31", True), ("2021-09-01", False), ("2021-09-30", False), ("", False)],
)
def test_mandate_validity_holds_a_later_month(tmp_path: Path, valid_until: str, held: bool) -> None:
    rows = modified({3: {"mandate_valid_until": valid_until}})
    with Ledger.open(tmp_path / "l.db", durable=False) as ledger:
        ledger.import_roster(write_csv(tmp_path / "r.csv", rows))
        ledger.prepare("2021-09")
        by_id = {r.beneficiary_id: r for r, _ in ledger.instructions("2021-09")}
    instruction = by_id["PL-0004"]
    assert instruction.payee_kind == "proxy"
    assert instruction.payee_name == "Phạm Thị Lan"
    assert (instruction.state, instruction.held_reason) == (
        ("HELD", "mandate expired") if held else ("CREATED", None)
    )


# -- a large file read by several workers gives the same result -----------------------------------
@pytest.fixture(scope="module")
def large_roster(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]]]:
    from sap_payments.roster import PARALLEL_MIN_BYTES
    from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv

    rows = [list(row) for row in roster_rows(RosterSpec(n=60_000, seed=5))]
    path = tmp_path_factory.mktemp("large") / "roster.csv"
    write_roster_csv(path, rows)
    assert path.stat().st_size >= PARALLEL_MIN_BYTES  # large enough for the parallel reader
    return path, rows


def import_with(path: Path, workers: int, db: Path) -> tuple[Any, list[Any]]:
    with SQLiteStore(db, durable=False) as ledger:
        try:
            result: Any = import_roster(
                ledger, path, rules=RULES, programme=PROGRAMME, providers=None, workers=workers
            )
        except InvalidRoster as error:
            result = [(p.line, p.column, p.reason) for p in error.problems]
        return result, list(ledger.beneficiaries(PROGRAMME))


def test_parallel_import_matches_one_process(
    large_roster: tuple[Path, list[list[str]]], tmp_path: Path
) -> None:
    path, rows = large_roster
    one, one_records = import_with(path, 1, tmp_path / "one.db")
    three, three_records = import_with(path, 3, tmp_path / "three.db")
    assert (one.rows, one.added) == (60_000, 60_000)
    assert (three.rows, three.added, three.sha256) == (one.rows, one.added, one.sha256)
    assert three_records == one_records

    bad = [list(row) for row in rows]
    bad[10][COL["sex"]] = "X"  # line 12
    bad[30_000][COL["full_name"]] = "Tên\ncó hai dòng"  # a quoted line break: lines 30002–3
    bad[40_000][COL["msisdn"]] = "123"  # line 40003
    bad[59_999][COL["status"]] = "gone"  # the last line, 60002
    bad_path = tmp_path / "bad.csv"
    bad_path.write_text(csv_text(ROSTER_COLUMNS, bad), encoding="utf-8")
    expected = [(12, "sex"), (30_003, "full_name"), (40_003, "msisdn"), (60_002, "status")]
    for workers in (1, 3):
        problems, records = import_with(bad_path, workers, tmp_path / f"bad{workers}.db")
        assert [(line, column) for line, column, _ in problems] == expected, workers
        assert records == []
