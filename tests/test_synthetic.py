"""Tests for sap_payments.synthetic: every generated row obeys roster format v1, and the roster
as a whole has the shape of the Phú Lộc pilot (channel mix, proxies, take-over)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
import tracemalloc
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path

import attrs
import openpyxl
import pytest

from sap_payments.synthetic import (
    AREA_COLUMNS,
    CATEGORY_PER_MILLE,
    PHU_LOC_AREAS,
    ROSTER_COLUMNS,
    AreaRow,
    RosterSpec,
    roster_rows,
    write_areas_csv,
    write_roster_csv,
    write_roster_xlsx,
)

COL = {name: k for k, name in enumerate(ROSTER_COLUMNS)}

CATEGORIES = {
    "elderly_80plus",
    "disabled_severe",
    "disabled_heavy",
    "disabled_severe_child_elderly",
    "disabled_heavy_child_elderly",
    "orphan_under4",
    "orphan_4plus",
}
COMMUNES = {
    "20107", "20110", "20113", "20116", "20122", "20125", "20128", "20131", "20134",
    "20137", "20140", "20143", "20146", "20149", "20152", "20155", "20158",
}  # fmt: skip
FAMILY_NAMES = {
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
    "Ngô", "Dương", "Lý", "Trương", "Đoàn", "Tôn", "Hà", "Cao", "Lương", "Mai",
}  # fmt: skip
PROVIDER_OF = {"ewallet": "viettelpay", "bank": "vietinbank", "postal": "vnpost"}
BANK_BINS = {"970415", "970405", "970418", "970436"}
RELATIONS = {"con", "vợ", "chồng", "cháu", "người giám hộ", "cán bộ xã"}
COEFFICIENTS = {"1.0", "1.5", "2.0", "2.5", "3.0"}

ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
NATIONAL_ID = re.compile(r"\d{12}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
MSISDN = re.compile(r"0[39]\d{8}|\+849\d{8}")
ACCOUNT = re.compile(r"[A-Za-z0-9]{6,19}")
NAME = re.compile(r"[^\W\d_]+( [^\W\d_]+)+")


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _month(text: str) -> int:
    return int(text[:4]) * 12 + int(text[5:7]) - 1


def _date(text: str) -> dt.date | None:
    if not DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def row_problems(row: Sequence[str], takeover: str = "2021-09") -> list[str]:
    """Everything wrong with one row under roster format v1 (an empty list if nothing is)."""
    if len(row) != len(ROSTER_COLUMNS):
        return [f"{len(row)} fields"]
    f = dict(zip(ROSTER_COLUMNS, row, strict=True))
    problems: list[str] = []

    def check(ok: object, what: str) -> None:
        if not ok:
            problems.append(f"{what}: {f}")

    reference = dt.date.fromisoformat(takeover + "-01")
    t = _month(takeover)
    check(all(isinstance(v, str) for v in row), "non-string field")
    check(ID.fullmatch(f["beneficiary_id"]), "beneficiary_id")
    name = f["full_name"]
    check(unicodedata.is_normalized("NFC", name) and NAME.fullmatch(name), "full_name")
    check(name.split(" ")[0] in FAMILY_NAMES, "family name")
    check(f["sex"] in {"M", "F"}, "sex")
    born = _date(f["birth_date"])
    if born is None:
        return [*problems, f"birth_date: {f}"]
    age = _age(born, reference)
    check(born < reference, "born after the take-over")
    nid = f["national_id"]
    if nid:
        check(NATIONAL_ID.fullmatch(nid), "national_id")
        century = 2 if born.year >= 2000 else 0
        check(nid[3] == str(century + (f["sex"] == "F")), "national_id sex/century digit")
        check(nid[4:6] == f"{born.year % 100:02d}", "national_id year of birth")
    else:
        check(age < 16, "national_id empty for an adult")
    check(f["province_code"] == "46" and f["district_code"] == "482", "province/district")
    check(f["commune_code"] in COMMUNES, "commune_code")

    category = f["category"]
    check(category in CATEGORIES, "category")
    age_ok = {
        "elderly_80plus": 80 <= age <= 101,
        "disabled_severe": 16 <= age < 60,
        "disabled_heavy": 16 <= age < 60,
        "disabled_severe_child_elderly": age < 16 or age >= 60,
        "disabled_heavy_child_elderly": age < 16 or age >= 60,
        "orphan_under4": age < 4,
        "orphan_4plus": 4 <= age < 16,
    }.get(category, False)
    check(age_ok, f"age {age} for {category}")
    check(f["coefficient"] == "" or f["coefficient"] in COEFFICIENTS, "coefficient")

    first = f["first_period"]
    check(PERIOD.fullmatch(first), "first_period")
    if PERIOD.fullmatch(first):
        m = _month(first)
        check(t - 80 <= m <= t, "first_period outside 80 months before the take-over")
        check(m > born.year * 12 + born.month - 1, "first_period not after birth")
        if category == "elderly_80plus":
            check(m >= (born.year + 80) * 12 + born.month - 1, "first_period before 80")
        paid = f["paid_through"]
        check(paid in {"", _period(t - 1)}, "paid_through")
        check(not paid or m <= t - 1, "paid_through before first_period")
        last = f["last_period"]
        if f["status"] == "ceased":
            check(last in {_period(t - 1), _period(t)} and _month(last) >= m, "last_period")
        else:
            check(last == "", "last_period without ceased")
    check(f["status"] in {"active", "suspended", "ceased"}, "status")

    channel = f["channel"]
    check(PROVIDER_OF.get(channel) == f["provider"], "channel/provider")
    msisdn, bank_bin, account = f["msisdn"], f["bank_bin"], f["account_number"]
    check(msisdn == "" or MSISDN.fullmatch(msisdn), "msisdn")
    check(bool(bank_bin) == bool(account), "bank_bin without account_number or back")
    check(bank_bin == "" or bank_bin in BANK_BINS, "bank_bin")
    check(account == "" or ACCOUNT.fullmatch(account), "account_number")
    check(f["pay_point"] in {"", f"BD-{f['commune_code']}"}, "pay_point")
    if channel == "ewallet":
        check(msisdn, "ewallet without msisdn")
    elif channel == "bank":
        check(bank_bin and account, "bank without account")
    elif channel == "postal":
        check(f["pay_point"], "postal without pay_point")
    check(f["home_delivery"] in {"", "1"}, "home_delivery")
    check(f["home_delivery"] == "" or channel == "postal", "home_delivery off postal")

    proxy = [f[c] for c in ("proxy_name", "proxy_national_id", "proxy_relation")]
    proxy.append(f["mandate_valid_until"])
    check(all(proxy) or not any(proxy), "proxy columns partly filled")
    if all(proxy):
        pname, pid, relation, until = proxy
        check(unicodedata.is_normalized("NFC", pname) and NAME.fullmatch(pname), "proxy_name")
        check(NATIONAL_ID.fullmatch(pid), "proxy_national_id")
        check(pid != nid, "proxy_national_id is the beneficiary's")
        check(relation in RELATIONS and unicodedata.is_normalized("NFC", relation), "relation")
        valid_until = _date(until)
        check(valid_until and valid_until > dt.date(2021, 1, 1), "mandate_valid_until")
    return problems


def _period(ordinal: int) -> str:
    return f"{ordinal // 12:04d}-{ordinal % 12 + 1:02d}"


@pytest.fixture(scope="module")
def default_rows() -> list[tuple[str, ...]]:
    return list(roster_rows(RosterSpec()))


# --- the validator itself can fail ------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "bad"),
    [
        ("beneficiary_id", "PL 1"),
        ("full_name", unicodedata.normalize("NFD", "Nguyễn Thị Hà")),
        ("national_id", "04619012345"),
        ("birth_date", "2021-02-30"),
        ("sex", "X"),
        ("commune_code", "20119"),
        ("category", "elderly"),
        ("coefficient", "1.50000001"),
        ("first_period", "2021-13"),
        ("paid_through", "2021-07"),
        ("last_period", "2021-08"),
        ("channel", "cash"),
        ("msisdn", "+84 98 123 4567"),
        ("bank_bin", "123"),
        ("pay_point", "BD-00000"),
        ("proxy_name", "Trần Văn Bình"),
        ("home_delivery", "yes"),
    ],
)
def test_validator_rejects_a_broken_field(
    default_rows: list[tuple[str, ...]], column: str, bad: str
) -> None:
    row = list(next(r for r in default_rows if r[COL["channel"]] == "ewallet" and not r[20]))
    assert row_problems(row) == []
    row[COL[column]] = bad
    assert row_problems(row) != []


# --- shape and validity --------------------------------------------------------------------------


def test_default_spec_is_the_phu_loc_pilot(default_rows: list[tuple[str, ...]]) -> None:
    assert len(default_rows) == 8364
    assert len(ROSTER_COLUMNS) == 25
    assert ROSTER_COLUMNS[0] == "beneficiary_id"
    assert ROSTER_COLUMNS[-1] == "home_delivery"
    assert default_rows[0][0] == "PL-000001"
    assert default_rows[-1][0] == "PL-008364"


def test_every_row_is_valid(default_rows: list[tuple[str, ...]]) -> None:
    problems = [p for row in default_rows for p in row_problems(row)]
    assert problems == []


def test_ids_are_unique_and_proxies_are_not_beneficiaries(
    default_rows: list[tuple[str, ...]],
) -> None:
    ids = [r[COL["beneficiary_id"]] for r in default_rows]
    assert len(set(ids)) == len(ids)
    nids = [r[COL["national_id"]] for r in default_rows if r[COL["national_id"]]]
    assert len(set(nids)) == len(nids)
    assert len(nids) > 0.97 * len(default_rows)
    assert all(n.startswith("046") for n in nids)  # born in Thừa Thiên Huế
    proxy_ids = [r[COL["proxy_national_id"]] for r in default_rows if r[COL["proxy_national_id"]]]
    assert len(set(proxy_ids)) == len(proxy_ids)
    assert set(proxy_ids).isdisjoint(nids)
    msisdns = [r[COL["msisdn"]][-7:] for r in default_rows if r[COL["msisdn"]]]
    assert len(set(msisdns)) == len(msisdns)


def test_names_are_vietnamese_and_nfc(default_rows: list[tuple[str, ...]]) -> None:
    names = [r[COL["full_name"]] for r in default_rows]
    assert all(unicodedata.is_normalized("NFC", n) for n in names)
    assert len(set(names)) > 2000
    women = [n for r, n in zip(default_rows, names, strict=True) if r[COL["sex"]] == "F"]
    men = [n for r, n in zip(default_rows, names, strict=True) if r[COL["sex"]] == "M"]
    assert sum(" Thị " in n for n in women) > 0.6 * len(women)
    assert sum(" Thị " in n for n in men) == 0
    assert sum(n.startswith("Nguyễn ") for n in names) > 0.25 * len(names)


@pytest.mark.parametrize("seed", [2021, 7, 123456])
def test_mix_follows_the_spec(seed: int) -> None:
    rows = list(roster_rows(RosterSpec(seed=seed)))
    n = len(rows)
    channels = Counter(r[COL["channel"]] for r in rows)
    assert abs(channels["ewallet"] / n - 0.930) < 0.015
    assert abs(channels["bank"] / n - 0.040) < 0.010
    assert abs(channels["postal"] / n - 0.030) < 0.010
    categories = Counter(r[COL["category"]] for r in rows)
    for category, per_mille in CATEGORY_PER_MILLE:
        assert abs(categories[category] / n - per_mille / 1000) < 0.02, category
    proxies = sum(1 for r in rows if r[COL["proxy_name"]])
    assert 413 - 70 <= proxies <= 413 + 70  # 49 per mille of 8,364, about 3 standard deviations
    intl = sum(1 for r in rows if r[COL["msisdn"]].startswith("+84"))
    with_msisdn = sum(1 for r in rows if r[COL["msisdn"]])
    assert abs(intl / with_msisdn - 0.20) < 0.03
    ewallet = [r for r in rows if r[COL["channel"]] == "ewallet"]
    with_cash_fallback = sum(1 for r in ewallet if r[COL["pay_point"]])
    assert abs(with_cash_fallback / len(ewallet) - 0.30) < 0.03
    postal = [r for r in rows if r[COL["channel"]] == "postal"]
    home = sum(1 for r in postal if r[COL["home_delivery"]] == "1")
    assert 0.08 < home / len(postal) < 0.32
    communes = Counter(r[COL["commune_code"]] for r in rows)
    assert set(communes) == {a.commune_code for a in PHU_LOC_AREAS}
    assert max(communes.values()) > 2 * min(communes.values())  # unequal sizes


def test_takeover_model(default_rows: list[tuple[str, ...]]) -> None:
    n = len(default_rows)
    existing = [r for r in default_rows if r[COL["paid_through"]] == "2021-08"]
    backdated = [
        r
        for r in default_rows
        if not r[COL["paid_through"]] and "2021-06" <= r[COL["first_period"]] <= "2021-08"
    ]
    new = [r for r in default_rows if r[COL["first_period"]] == "2021-09"]
    assert 0.93 < len(existing) / n < 0.97
    assert all("2015-01" <= r[COL["first_period"]] <= "2021-08" for r in existing)
    assert 0.02 < len(backdated) / n < 0.045
    assert 0.005 < len(new) / n < 0.03
    assert len(existing) + len(backdated) + len(new) == n
    status = Counter(r[COL["status"]] for r in default_rows)
    assert 0 < status["ceased"] < 0.01 * n
    assert 0 < status["suspended"] < 0.015 * n
    overrides = sum(1 for r in default_rows if r[COL["coefficient"]])
    assert 0 < overrides < 0.015 * n


def test_young_children_have_guardians(default_rows: list[tuple[str, ...]]) -> None:
    reference = dt.date(2021, 9, 1)
    young = [
        r for r in default_rows if _age(dt.date.fromisoformat(r[COL["birth_date"]]), reference) < 6
    ]
    assert len(young) > 150
    guarded = [r for r in young if r[COL["proxy_relation"]] in {"người giám hộ", "cán bộ xã"}]
    assert len(guarded) > 0.9 * len(young)
    assert any(not r[COL["national_id"]] for r in young)  # a few without a personal id yet
    spouses = [r for r in default_rows if r[COL["proxy_relation"]] in {"vợ", "chồng"}]
    for r in spouses:  # a wife for a man, a husband for a woman
        assert (r[COL["sex"]] == "M") == (r[COL["proxy_relation"]] == "vợ")
    expired = [r for r in default_rows if "" < r[COL["mandate_valid_until"]] < "2021-09-01"]
    assert expired
    until = Counter(r[COL["mandate_valid_until"]] for r in default_rows if r[COL["proxy_name"]])
    assert until.most_common(1)[0][0] == "2022-12-31"
    assert until["2022-12-31"] > 0.7 * sum(until.values())


# --- the spec ------------------------------------------------------------------------------------


def test_same_spec_same_rows_other_seed_other_rows() -> None:
    spec = RosterSpec(n=2000)
    assert list(roster_rows(spec)) == list(roster_rows(RosterSpec(n=2000)))
    other = list(roster_rows(attrs.evolve(spec, seed=2022)))
    same = sum(a == b for a, b in zip(roster_rows(spec), other, strict=True))
    assert same == 0
    # a longer roster starts with the shorter one
    assert list(roster_rows(RosterSpec(n=3000)))[:2000] == list(roster_rows(spec))


@pytest.mark.parametrize(
    "spec",
    [
        RosterSpec(n=3000, takeover="2024-07", seed=5),
        RosterSpec(n=3000, ewallet_share=0, bank_share=500, postal_share=500),
        RosterSpec(n=3000, proxy_per_mille=300, guardian_per_mille=1000),
        RosterSpec(n=100, proxy_per_mille=1000),
    ],
)
def test_other_specs_give_valid_rows(spec: RosterSpec) -> None:
    rows = list(roster_rows(spec))
    assert len(rows) == spec.n
    assert [p for row in rows for p in row_problems(row, spec.takeover)] == []
    proxies = sum(1 for r in rows if r[COL["proxy_name"]])
    assert abs(proxies / spec.n - spec.proxy_per_mille / 1000) < 0.04
    channels = Counter(r[COL["channel"]] for r in rows)
    assert abs(channels["ewallet"] / spec.n - spec.ewallet_share / 1000) < 0.03
    assert abs(channels["postal"] / spec.n - spec.postal_share / 1000) < 0.03


def test_no_proxies_when_none_are_asked_for() -> None:
    rows = roster_rows(RosterSpec(n=3000, proxy_per_mille=0))
    assert not any(r[COL["proxy_name"]] for r in rows)


def test_prefix_and_areas() -> None:
    areas = (AreaRow("46", "Tỉnh Thừa Thiên Huế", "474", "Thành phố Huế", "19753", "Phường X"),)
    rows = list(roster_rows(RosterSpec(n=5, id_prefix="HT.2021", areas=areas)))
    assert [r[0] for r in rows] == [f"HT.2021-{k:06d}" for k in range(1, 6)]
    assert {(r[COL["district_code"]], r[COL["commune_code"]]) for r in rows} == {("474", "19753")}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1},
        {"n": 10**8},
        {"id_prefix": "P L"},
        {"id_prefix": ""},
        {"ewallet_share": 900},
        {"proxy_per_mille": 1001},
        {"proxy_per_mille": 4.9},
        {"takeover": "2021-9"},
        {"areas": ()},
    ],
)
def test_bad_spec_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        RosterSpec(**kwargs)  # type: ignore[arg-type]


def test_rows_stream() -> None:
    rows = roster_rows(RosterSpec(n=5_000_000))
    assert isinstance(rows, Iterator)
    first = list(islice(rows, 3))
    assert [r[0] for r in first] == ["PL-000001", "PL-000002", "PL-000003"]
    # Memory stays flat however many rows go through (a list of 10,000 rows would hold ~4.5 MB).
    list(roster_rows(RosterSpec(n=10)))  # build the cached tables first
    tracemalloc.start()
    try:
        count = sum(1 for _ in roster_rows(RosterSpec(n=10_000)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 10_000
    assert peak < 1_500_000


def test_area_rows_are_nfc() -> None:
    area = AreaRow("46", unicodedata.normalize("NFD", "Tỉnh Thừa Thiên Huế"), "482", "H", "1", "X")
    assert area.province_name == "Tỉnh Thừa Thiên Huế"
    assert unicodedata.is_normalized("NFC", area.province_name)
    assert len(PHU_LOC_AREAS) == 17
    assert {a.commune_code for a in PHU_LOC_AREAS} == COMMUNES
    assert {(a.province_name, a.district_name) for a in PHU_LOC_AREAS} == {
        ("Tỉnh Thừa Thiên Huế", "Huyện Phú Lộc")
    }


# --- files ---------------------------------------------------------------------------------------


def test_csv_round_trip_and_bytes_are_deterministic(tmp_path: Path) -> None:
    spec = RosterSpec(n=1500)
    path = tmp_path / "roster.csv"
    assert write_roster_csv(path, roster_rows(spec)) == 1500
    assert [p.name for p in tmp_path.iterdir()] == ["roster.csv"]  # no temp file left behind
    data = path.read_bytes()
    assert data.startswith(b"beneficiary_id,full_name,national_id,")  # no BOM
    assert data.count(b"\r\n") == 1501
    with path.open(encoding="utf-8", newline="") as fh:
        read = list(csv.reader(fh))
    assert tuple(read[0]) == ROSTER_COLUMNS
    assert [tuple(r) for r in read[1:]] == list(roster_rows(spec))
    assert any(r[COL["msisdn"]].startswith("0") for r in read[1:])  # leading zeros kept

    again = tmp_path / "again.csv"
    write_roster_csv(again, roster_rows(spec))
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_csv_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text("old\n")
    assert write_roster_csv(path, roster_rows(RosterSpec(n=3))) == 3
    assert path.read_text(encoding="utf-8").startswith("beneficiary_id,")
    assert write_roster_csv(path, []) == 0
    assert path.read_bytes() == (",".join(ROSTER_COLUMNS) + "\r\n").encode()


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text("old\n")

    def broken(n: int) -> Iterator[tuple[str, ...]]:
        yield from roster_rows(RosterSpec(n=n))
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_roster_csv(path, broken(9000))  # more than one chunk was written
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["roster.csv"]

    with pytest.raises(RuntimeError, match="source failed"):
        write_roster_xlsx(tmp_path / "roster.xlsx", broken(500))
    assert [p.name for p in tmp_path.iterdir()] == ["roster.csv"]


def test_xlsx_round_trip_keeps_leading_zeros(tmp_path: Path) -> None:
    spec = RosterSpec(n=400, seed=3)
    path = tmp_path / "roster.xlsx"
    assert write_roster_xlsx(path, roster_rows(spec)) == 400
    assert [p.name for p in tmp_path.iterdir()] == ["roster.xlsx"]
    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        read = list(workbook.active.iter_rows(values_only=True))
    finally:
        workbook.close()
    assert read[0] == ROSTER_COLUMNS
    assert all(isinstance(v, str) for row in read for v in row if v is not None)
    # empty fields come back as empty cells
    assert [tuple("" if v is None else v for v in row) for row in read[1:]] == list(
        roster_rows(spec)
    )
    assert any(str(row[COL["msisdn"]]).startswith("0") for row in read[1:])


def test_areas_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "areas.csv"
    assert write_areas_csv(path, PHU_LOC_AREAS) == 17
    with path.open(encoding="utf-8", newline="") as fh:
        read = list(csv.reader(fh))
    assert tuple(read[0]) == AREA_COLUMNS
    assert [AreaRow(*r) for r in read[1:]] == list(PHU_LOC_AREAS)
    first = ["46", "Tỉnh Thừa Thiên Huế", "482", "Huyện Phú Lộc", "20107", "Thị trấn Phú Lộc"]
    assert read[1] == first


@pytest.mark.slow
def test_national_ids_stay_unique_past_a_million_rows() -> None:
    seen: set[str] = set()
    count = 0
    for row in roster_rows(RosterSpec(n=1_000_100)):
        for nid in (row[COL["national_id"]], row[COL["proxy_national_id"]]):
            if nid:
                assert nid not in seen
                seen.add(nid)
        count += 1
    assert count == 1_000_100
    assert any(n.startswith("045") for n in seen)  # the second block of serials
