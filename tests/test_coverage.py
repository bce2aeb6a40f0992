"""Coverage and settlement reports (docs/formats.md, sections 4.5 and 4.6).

One small ledger pays the 2021-09 cycle in four communes — two in a district (three-tier), one
district-less commune in the same province and one in another province — through an e-wallet, a
bank and the post office, to beneficiaries and proxies, with one instruction held and one in
every end and open state. Every figure of every line is checked in the Python objects and in the
JSON, CSV and table outputs; the settlement invariant is checked on this ledger and as a property
over random end states; a closed cycle's settlement is shown not to move.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RosterLoader, drive, live_instruction, open_ledger, roster_row, settle
from sap_payments import (
    CoverageReport,
    CycleNotFound,
    Ledger,
    Money,
    Period,
    SettlementReport,
    Share,
    Tally,
    coverage_report,
    settlement_report,
)
from sap_payments.cli import main
from sap_payments.reports import (
    COVERAGE_COLUMNS,
    SETTLEMENT_COLUMNS,
    write_coverage_report,
    write_settlement_report,
)

PERIOD = "2021-09"  # standard level 360,000 VND; the roster rows are paid through 2021-08

AREAS_CSV = """\
province_code,province_name,district_code,district_name,commune_code,commune_name
46,Tỉnh Thừa Thiên Huế,482,Huyện Phú Lộc,20107,Thị trấn Phú Lộc
46,Tỉnh Thừa Thiên Huế,482,Huyện Phú Lộc,20110,Thị trấn Lăng Cô
46,Tỉnh Thừa Thiên Huế,,,19999,Phường Thuận Hóa
01,Thành phố Hà Nội,,,00004,Phường Ba Đình
"""
PROVINCE_NAMES = {"46": "Tỉnh Thừa Thiên Huế", "01": "Thành phố Hà Nội"}
DISTRICT_NAMES = {"482": "Huyện Phú Lộc"}
COMMUNE_NAMES = {
    "20107": "Thị trấn Phú Lộc",
    "20110": "Thị trấn Lăng Cô",
    "19999": "Phường Thuận Hóa",
    "00004": "Phường Ba Đình",
}

WHERE = {
    "20107": {"province_code": "46", "district_code": "482", "commune_code": "20107"},
    "20110": {"province_code": "46", "district_code": "482", "commune_code": "20110"},
    "19999": {"province_code": "46", "district_code": "", "commune_code": "19999"},
    "00004": {"province_code": "01", "district_code": "", "commune_code": "00004"},
}
HOW = {
    "ewallet": {"channel": "ewallet", "provider": "viettelpay"},
    "bank": {
        "channel": "bank",
        "provider": "vietinbank",
        "msisdn": "",
        "bank_bin": "970415",
        "account_number": "0123456789",
    },
    "postal": {"channel": "postal", "provider": "vnpost", "msisdn": "", "pay_point": "BD-LANGCO"},
}
PROXY = {
    "proxy_name": "Trần Thị Lan",
    "proxy_national_id": "046185004568",
    "proxy_relation": "con gái",
    "mandate_valid_until": "2030-12-31",
}
EXPIRED_PROXY = {**PROXY, "mandate_valid_until": "2021-08-31"}

#: beneficiary → (commune, channel, coefficient, proxy, extra columns, how the instruction ends)
ROSTER: Mapping[str, tuple[str, str, str, Mapping[str, str], Mapping[str, str], str | None]] = {
    "A1": ("20107", "ewallet", "1", {}, {}, "PAID"),  # 360,000
    "A2": ("20107", "bank", "1.5", {}, {}, "PAID"),  # 540,000
    "A3": ("20107", "postal", "2", PROXY, {}, "PAID"),  # 720,000, to a proxy
    "A4": ("20107", "ewallet", "1", {}, {}, "FAILED"),  # 360,000
    "A5": ("20107", "ewallet", "1", {}, {"status": "suspended"}, None),  # no instruction
    "B1": ("20110", "postal", "2.5", {}, {}, "UNCLAIMED"),  # 900,000
    "B2": ("20110", "ewallet", "1.5", EXPIRED_PROXY, {}, None),  # 540,000 held, cancelled
    "B3": (
        "20110",
        "postal",
        "1",
        {},
        {"status": "ceased", "last_period": "2021-06", "paid_through": "2021-06"},
        None,
    ),  # ceased before the period: not a beneficiary any more
    "B4": ("20110", "postal", "1", {}, {}, "ACCEPTED"),  # 360,000, open
    "C1": ("19999", "bank", "3", {}, {}, "RETURNED"),  # 1,080,000
    "C2": ("19999", "ewallet", "1", PROXY, {}, "PAID"),  # 360,000, to a proxy
    "C3": ("19999", "ewallet", "1", {}, {}, "UNKNOWN"),  # 360,000, open
    "C4": ("19999", "ewallet", "1", {}, {}, "SUBMITTED"),  # 360,000, open
    "D1": ("00004", "postal", "1", {}, {}, "READY"),  # 360,000, open (not sent)
    "D2": (
        "00004",
        "ewallet",
        "1",
        {},
        {"status": "ceased", "last_period": "2021-09"},
        "PAID",
    ),  # ceased with this month: still a beneficiary of it
}

#: how an approved (READY) instruction is driven to each state, through the transition gate
ROUTES: Mapping[str, tuple[str, ...]] = {
    "READY": (),
    "SUBMITTED": ("SUBMITTED",),
    "ACCEPTED": ("SUBMITTED", "ACCEPTED"),
    "UNKNOWN": ("SUBMITTED", "UNKNOWN"),
    "PAID": ("SUBMITTED", "ACCEPTED", "PAID"),
    "FAILED": ("SUBMITTED", "FAILED"),
    "RETURNED": ("SUBMITTED", "ACCEPTED", "PAID", "RETURNED"),
    "UNCLAIMED": ("SUBMITTED", "ACCEPTED", "UNCLAIMED"),
}
OPEN_STATES = ("READY", "SUBMITTED", "ACCEPTED", "UNKNOWN")


def rows() -> list[dict[str, str]]:
    return [
        roster_row(
            bid,
            **WHERE[commune],
            **HOW[channel],
            coefficient=coefficient,
            **proxy,
            **extra,
        )
        for bid, (commune, channel, coefficient, proxy, extra, _) in ROSTER.items()
    ]


def build(directory: Path, *, areas: bool = True) -> Ledger:
    """The ledger of the module docstring, the 2021-09 cycle approved and its results in."""
    directory.mkdir(parents=True, exist_ok=True)
    ledger = open_ledger(directory)
    if areas:
        path = directory / "areas.csv"
        path.write_text(AREAS_CSV, encoding="utf-8")
        ledger.import_areas(path)
    rosters = directory / "rosters"
    rosters.mkdir()
    RosterLoader(rosters)(ledger, *rows())
    ledger.prepare(PERIOD)
    ledger.approve(PERIOD, by="Trưởng phòng")
    for bid, (*_, outcome) in ROSTER.items():
        if outcome is not None:
            drive(ledger, live_instruction(ledger, PERIOD, bid).instruction_id, *ROUTES[outcome])
    return ledger


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    opened = build(tmp_path_factory.mktemp("coverage"))
    try:
        yield opened
    finally:
        opened.close()


# -- expected figures -----------------------------------------------------------------------------
Pair = tuple[int, int]
NONE: Pair = (0, 0)


def coverage_item(
    level: str,
    codes: tuple[str | None, str | None, str | None],
    communes: tuple[int, int],
    beneficiaries: int,
    instructed: Pair,
    paid: Pair,
    channels: tuple[Pair, Pair, Pair],
    proxy: Pair,
    electronic_share: tuple[str | None, int, int],
    proxy_share: tuple[str | None, int, int],
    held: Pair,
    unpaid: Pair,
    *,
    names: bool = True,
) -> dict[str, Any]:
    """One coverage line as the JSON object of docs/formats.md 4.5."""
    province, district, commune = codes
    item: dict[str, Any] = {
        "level": level,
        "province_code": province,
        "province_name": PROVINCE_NAMES[province] if names and province else None,
        "district_code": district,
        "district_name": DISTRICT_NAMES[district] if names and district else None,
        "commune_code": commune,
        "commune_name": COMMUNE_NAMES[commune] if names and commune else None,
        "communes": communes[0],
        "communes_electronic": communes[1],
        "beneficiaries": beneficiaries,
    }
    for name, pair in (
        ("instructed", instructed),
        ("paid", paid),
        ("paid_ewallet", channels[0]),
        ("paid_bank", channels[1]),
        ("paid_postal", channels[2]),
        ("paid_proxy", proxy),
    ):
        item[f"{name}_count"], item[f"{name}_amount"] = pair
    for name, share in (("electronic", electronic_share), ("proxy", proxy_share)):
        item[f"{name}_share"], item[f"{name}_numerator"], item[f"{name}_denominator"] = share
    item["held_count"], item["held_amount"] = held
    item["unpaid_count"], item["unpaid_amount"] = unpaid
    assert list(item) == list(COVERAGE_COLUMNS)
    return item


def expected_coverage(*, names: bool = True) -> list[dict[str, Any]]:
    c = coverage_item
    kw = {"names": names}
    return [
        c("province", ("01", None, None), (1, 1), 2, (2, 720_000), (1, 360_000),
          ((1, 360_000), NONE, NONE), NONE, ("100.0", 1, 1), ("0.0", 0, 1),
          NONE, (1, 360_000), **kw),
        c("commune", ("01", None, "00004"), (1, 1), 2, (2, 720_000), (1, 360_000),
          ((1, 360_000), NONE, NONE), NONE, ("100.0", 1, 1), ("0.0", 0, 1),
          NONE, (1, 360_000), **kw),
        c("province", ("46", None, None), (3, 2), 12, (10, 5_400_000), (4, 1_980_000),
          ((2, 720_000), (1, 540_000), (1, 720_000)), (2, 1_080_000),
          ("75.0", 3, 4), ("50.0", 2, 4), (1, 540_000), (6, 3_420_000), **kw),
        c("commune", ("46", None, "19999"), (1, 1), 4, (4, 2_160_000), (1, 360_000),
          ((1, 360_000), NONE, NONE), (1, 360_000), ("100.0", 1, 1), ("100.0", 1, 1),
          NONE, (3, 1_800_000), **kw),
        c("district", ("46", "482", None), (2, 1), 8, (6, 3_240_000), (3, 1_620_000),
          ((1, 360_000), (1, 540_000), (1, 720_000)), (1, 720_000),
          ("66.7", 2, 3), ("33.3", 1, 3), (1, 540_000), (3, 1_620_000), **kw),
        c("commune", ("46", "482", "20107"), (1, 1), 5, (4, 1_980_000), (3, 1_620_000),
          ((1, 360_000), (1, 540_000), (1, 720_000)), (1, 720_000),
          ("66.7", 2, 3), ("33.3", 1, 3), NONE, (1, 360_000), **kw),
        c("commune", ("46", "482", "20110"), (1, 0), 3, (2, 1_260_000), NONE,
          (NONE, NONE, NONE), NONE, (None, 0, 0), (None, 0, 0),
          (1, 540_000), (2, 1_260_000), **kw),
        c("total", (None, None, None), (4, 3), 14, (12, 6_120_000), (5, 2_340_000),
          ((3, 1_080_000), (1, 540_000), (1, 720_000)), (2, 1_080_000),
          ("80.0", 4, 5), ("40.0", 2, 5), (1, 540_000), (7, 3_780_000), **kw),
    ]  # fmt: skip


def settlement_item(
    level: str,
    provider: str | None,
    codes: tuple[str | None, str | None, str | None],
    instructed: Pair,
    paid: Pair = NONE,
    failed: Pair = NONE,
    returned: Pair = NONE,
    unclaimed: Pair = NONE,
    open_: Pair = NONE,
    *,
    balance: int,
) -> dict[str, Any]:
    """One settlement line as the JSON object of docs/formats.md 4.6."""
    province, district, commune = codes
    item: dict[str, Any] = {
        "level": level,
        "provider": provider,
        "province_code": province,
        "province_name": PROVINCE_NAMES[province] if province else None,
        "district_code": district,
        "district_name": DISTRICT_NAMES[district] if district else None,
        "commune_code": commune,
        "commune_name": COMMUNE_NAMES[commune] if commune else None,
    }
    for name, pair in (
        ("instructed", instructed),
        ("paid", paid),
        ("failed", failed),
        ("returned", returned),
        ("unclaimed", unclaimed),
        ("open", open_),
    ):
        item[f"{name}_count"], item[f"{name}_amount"] = pair
    item["balance"] = balance
    assert list(item) == list(SETTLEMENT_COLUMNS)
    return item


def expected_settlement() -> list[dict[str, Any]]:
    s = settlement_item
    return [
        s("provider", "vietinbank", (None, None, None), (2, 1_620_000), paid=(1, 540_000),
          returned=(1, 1_080_000), balance=1_080_000),
        s("province", "vietinbank", ("46", None, None), (2, 1_620_000), paid=(1, 540_000),
          returned=(1, 1_080_000), balance=1_080_000),
        s("commune", "vietinbank", ("46", None, "19999"), (1, 1_080_000),
          returned=(1, 1_080_000), balance=1_080_000),
        s("commune", "vietinbank", ("46", "482", "20107"), (1, 540_000), paid=(1, 540_000),
          balance=0),
        s("provider", "viettelpay", (None, None, None), (6, 2_160_000), paid=(3, 1_080_000),
          failed=(1, 360_000), open_=(2, 720_000), balance=360_000),
        s("province", "viettelpay", ("01", None, None), (1, 360_000), paid=(1, 360_000),
          balance=0),
        s("commune", "viettelpay", ("01", None, "00004"), (1, 360_000), paid=(1, 360_000),
          balance=0),
        s("province", "viettelpay", ("46", None, None), (5, 1_800_000), paid=(2, 720_000),
          failed=(1, 360_000), open_=(2, 720_000), balance=360_000),
        s("commune", "viettelpay", ("46", None, "19999"), (3, 1_080_000), paid=(1, 360_000),
          open_=(2, 720_000), balance=0),
        s("commune", "viettelpay", ("46", "482", "20107"), (2, 720_000), paid=(1, 360_000),
          failed=(1, 360_000), balance=360_000),
        s("provider", "vnpost", (None, None, None), (4, 2_340_000), paid=(1, 720_000),
          unclaimed=(1, 900_000), open_=(2, 720_000), balance=900_000),
        s("province", "vnpost", ("01", None, None), (1, 360_000), open_=(1, 360_000),
          balance=0),
        s("commune", "vnpost", ("01", None, "00004"), (1, 360_000), open_=(1, 360_000),
          balance=0),
        s("province", "vnpost", ("46", None, None), (3, 1_980_000), paid=(1, 720_000),
          unclaimed=(1, 900_000), open_=(1, 360_000), balance=900_000),
        s("commune", "vnpost", ("46", "482", "20107"), (1, 720_000), paid=(1, 720_000),
          balance=0),
        s("commune", "vnpost", ("46", "482", "20110"), (2, 1_260_000),
          unclaimed=(1, 900_000), open_=(1, 360_000), balance=900_000),
        s("total", None, (None, None, None), (12, 6_120_000), paid=(5, 2_340_000),
          failed=(1, 360_000), returned=(1, 1_080_000), unclaimed=(1, 900_000),
          open_=(4, 1_440_000), balance=2_340_000),
    ]  # fmt: skip


def as_csv_row(item: Mapping[str, Any]) -> dict[str, str]:
    return {key: "" if value is None else str(value) for key, value in item.items()}


def render(write: Any, fmt: str, report: Any) -> str:
    out = io.StringIO()
    write(out, fmt, report)
    return out.getvalue()


def percent(share: str | None) -> list[str]:
    """A share's table cell split into words: none for a blank cell (nothing paid)."""
    return [] if share is None else [f"{share}%"]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def vnd(amount: int) -> Money:
    return Money.vnd(amount)


# -- shares ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("numerator", "denominator", "percent"),
    [
        (2053, 4716, "43.5"),  # Hương Thủy, 2021
        (8364, 8364, "100.0"),  # Phú Lộc, 2021
        (0, 7, "0.0"),
        (1, 3, "33.3"),
        (2, 3, "66.7"),
        (1, 8, "12.5"),
        (1, 16, "6.3"),  # 6.25: half up, not to even
        (5, 16, "31.3"),  # 31.25
        (3, 16, "18.8"),  # 18.75
        (1, 2000, "0.1"),  # 0.05 rounds up
        (1, 2001, "0.0"),  # just under 0.05
        (1999, 2000, "100.0"),  # 99.95 rounds up to 100.0
        (0, 0, None),  # nothing paid: no share
    ],
)
def test_share_percent_is_exact_and_rounds_half_up(
    numerator: int, denominator: int, percent: str | None
) -> None:
    share = Share(numerator, denominator)
    assert share.percent == percent


@given(st.integers(0, 10**12).flatmap(lambda d: st.tuples(st.integers(0, d), st.just(d))))
def test_share_percent_matches_exact_fractions(pair: tuple[int, int]) -> None:
    numerator, denominator = pair
    percent = Share(numerator, denominator).percent
    if denominator == 0:
        assert percent is None
        return
    exact = Fraction(1000 * numerator, denominator)  # tenths of a percent
    tenths = int(exact) + (1 if exact - int(exact) >= Fraction(1, 2) else 0)
    assert percent == f"{tenths // 10}.{tenths % 10}"


@pytest.mark.parametrize(("numerator", "denominator"), [(2, 1), (-1, 3), (1, -1)])
def test_share_refuses_impossible_fractions(numerator: int, denominator: int) -> None:
    with pytest.raises(ValueError, match=r"share|whole number"):
        Share(numerator, denominator)


def test_tally_adds_and_subtracts_money() -> None:
    assert Tally(2, vnd(720_000)) - Tally(1, vnd(360_000)) == Tally(1, vnd(360_000))
    assert Tally(1, vnd(1)) + Tally.zero("VND") == Tally(1, vnd(1))


# -- coverage -------------------------------------------------------------------------------------
def test_coverage_objects(ledger: Ledger) -> None:
    report = ledger.coverage(PERIOD)
    assert isinstance(report, CoverageReport)
    assert (report.programme, report.period, report.state, report.currency) == (
        "monthly-allowance",
        Period.parse(PERIOD),
        "approved",
        "VND",
    )
    assert report == coverage_report(ledger.store, PERIOD)
    expected = expected_coverage()
    assert len(report.lines) == len(expected)
    for line, item in zip(report.lines, expected, strict=True):
        assert line.level == item["level"]
        assert (line.province_code, line.district_code, line.commune_code) == (
            item["province_code"],
            item["district_code"],
            item["commune_code"],
        )
        assert (line.province_name, line.district_name, line.commune_name) == (
            item["province_name"],
            item["district_name"],
            item["commune_name"],
        )
        assert (line.communes, line.communes_electronic, line.beneficiaries) == (
            item["communes"],
            item["communes_electronic"],
            item["beneficiaries"],
        )
        for name in ("instructed", "paid", "paid_ewallet", "paid_bank", "paid_postal"):
            tally = getattr(line, name)
            assert tally == Tally(item[f"{name}_count"], vnd(item[f"{name}_amount"])), name
            assert type(tally.amount.minor) is int
        for channel in ("ewallet", "bank", "postal"):
            assert line.paid_by(channel) == getattr(line, f"paid_{channel}")
        assert line.paid_proxy == Tally(item["paid_proxy_count"], vnd(item["paid_proxy_amount"]))
        assert line.held == Tally(item["held_count"], vnd(item["held_amount"]))
        assert line.unpaid == Tally(item["unpaid_count"], vnd(item["unpaid_amount"]))
        assert line.electronic_share == Share(
            item["electronic_numerator"], item["electronic_denominator"]
        )
        assert line.electronic_share.percent == item["electronic_share"]
        assert line.proxy_share == Share(item["proxy_numerator"], item["proxy_denominator"])
        assert line.proxy_share.percent == item["proxy_share"]
    assert report.total == report.lines[-1]
    assert report.total.level == "total"


def test_coverage_rolls_up_communes_to_districts_provinces_and_the_total(ledger: Ledger) -> None:
    report = ledger.coverage(PERIOD)
    communes = [line for line in report.lines if line.level == "commune"]
    for level, inside in (
        ("district", lambda up, c: c.district_code == up.district_code),
        ("province", lambda up, c: c.province_code == up.province_code),
        ("total", lambda _up, _c: True),
    ):
        for up in (line for line in report.lines if line.level == level):
            members = [c for c in communes if inside(up, c)]
            assert members
            for name in ("instructed", "paid", "paid_ewallet", "paid_proxy", "held", "unpaid"):
                total = Tally.zero("VND")
                for member in members:
                    total += getattr(member, name)
                assert getattr(up, name) == total, (level, name)
            assert up.beneficiaries == sum(c.beneficiaries for c in members)
            assert up.communes == len(members)
    # the district-less commune rolls straight into its province
    district_less = [c for c in communes if c.district_code is None]
    assert [c.commune_code for c in district_less] == ["00004", "19999"]


def test_coverage_json(ledger: Ledger) -> None:
    text = render(write_coverage_report, "json", ledger.coverage(PERIOD))
    document = json.loads(text)
    assert list(document) == ["programme", "period", "state", "currency", "lines"]
    assert document["programme"] == "monthly-allowance"
    assert document["period"] == PERIOD
    assert document["state"] == "approved"
    assert document["currency"] == "VND"
    assert document["lines"] == expected_coverage()
    for item in document["lines"]:
        assert list(item) == list(COVERAGE_COLUMNS)
        for key, value in item.items():
            if key.endswith(("_amount", "_count", "_numerator", "_denominator")):
                assert type(value) is int, key
    assert text.endswith("]}\n")
    assert "Tỉnh Thừa Thiên Huế" in text  # not escaped


def test_coverage_csv(ledger: Ledger) -> None:
    text = render(write_coverage_report, "csv", ledger.coverage(PERIOD))
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == list(COVERAGE_COLUMNS)
    assert list(reader) == [as_csv_row(item) for item in expected_coverage()]
    assert text.splitlines()[-1].startswith("total,,,,,,,4,3,14,12,6120000,5,2340000,")


def test_coverage_table(ledger: Ledger) -> None:
    text = render(write_coverage_report, "table", ledger.coverage(PERIOD))
    lines = text.splitlines()
    assert lines[0].split() == [
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
    ]
    assert set(lines[1]) == {"-", " "}
    body = lines[2:]
    labels = [
        "01 Thành phố Hà Nội",
        "  00004 Phường Ba Đình",
        "46 Tỉnh Thừa Thiên Huế",
        "  19999 Phường Thuận Hóa",
        "  482 Huyện Phú Lộc",
        "    20107 Thị trấn Phú Lộc",
        "    20110 Thị trấn Lăng Cô",
        "total",
    ]
    assert len(body) == len(labels)
    for row, label, item in zip(body, labels, expected_coverage(), strict=True):
        assert row.startswith(label + " ")
        cells = row[len(label) :].split()
        assert cells == [
            f"{item['communes']:,}",
            f"{item['communes_electronic']:,}",
            f"{item['beneficiaries']:,}",
            f"{item['instructed_count']:,}",
            f"{item['instructed_amount']:,}",
            f"{item['paid_count']:,}",
            f"{item['paid_amount']:,}",
            f"{item['paid_ewallet_count']:,}",
            f"{item['paid_bank_count']:,}",
            f"{item['paid_postal_count']:,}",
            *percent(item["electronic_share"]),
            f"{item['paid_proxy_count']:,}",
            *percent(item["proxy_share"]),
            f"{item['held_count']:,}",
            f"{item['unpaid_count']:,}",
            f"{item['unpaid_amount']:,}",
        ]
    assert "6,120,000" in body[-1]


def test_coverage_without_areas_gives_codes_only(tmp_path: Path) -> None:
    with build(tmp_path, areas=False) as ledger:
        report = ledger.coverage(PERIOD)
        document = json.loads(render(write_coverage_report, "json", report))
        table = render(write_coverage_report, "table", report)
    assert document["lines"] == expected_coverage(names=False)
    labels = [row.split()[0] for row in table.splitlines()[2:]]
    assert labels == ["01", "00004", "46", "19999", "482", "20107", "20110", "total"]


def test_coverage_before_approval_counts_drafts_and_holds(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        RosterLoader(tmp_path)(ledger, *rows())
        ledger.prepare(PERIOD)
        report = ledger.coverage(PERIOD)
        settlement = ledger.settlement(PERIOD)
    # nothing is advanced to a provider before approval: the settlement is empty
    assert [line.level for line in settlement.lines] == ["total"]
    assert settlement.total.instructed == Tally.zero("VND")
    assert (settlement.state, settlement.frozen) == ("prepared", False)
    total = report.total
    assert report.state == "prepared"
    # every instruction is a draft (CREATED) but B2's, which is HELD: all instructed, none paid
    assert total.beneficiaries == 14
    assert total.instructed == Tally(13, vnd(6_120_000 + 540_000))
    assert total.held == Tally(1, vnd(540_000))
    assert total.paid == Tally.zero("VND")
    assert total.unpaid == total.instructed
    assert total.electronic_share == Share(0, 0)
    assert total.electronic_share.percent is None
    assert total.communes_electronic == 0


def test_coverage_takes_each_beneficiarys_latest_instruction(tmp_path: Path) -> None:
    """A draft cancelled on re-preparing (no longer due) and a new one later: only the new one
    counts, and the held reason of the cancelled draft does not make it 'held'."""
    load = RosterLoader(tmp_path)
    with open_ledger(tmp_path) as ledger:
        row = roster_row("X1", **WHERE["20107"], **EXPIRED_PROXY)
        load(ledger, row)
        ledger.prepare(PERIOD)  # X1 held: the proxy's mandate expired
        load(ledger, {**row, "status": "suspended"})
        ledger.prepare(PERIOD)  # no longer due: the held draft is cancelled
        load(ledger, {**row, "status": "active", "mandate_valid_until": "2030-12-31"})
        ledger.prepare(PERIOD)  # due again: a second instruction, seq 2
        states = [(r.seq, r.state, r.held_reason) for r, _ in ledger.instructions(PERIOD)]
        ledger.approve(PERIOD, by="Trưởng phòng")
        settle(ledger, live_instruction(ledger, PERIOD, "X1").instruction_id, "PAID")
        total = ledger.coverage(PERIOD).total
    assert states == [(1, "CANCELLED", "mandate expired"), (2, "CREATED", None)]
    assert total.instructed == total.paid == total.paid_proxy == Tally(1, vnd(360_000))
    assert total.held == Tally.zero("VND")
    assert total.proxy_share.percent == "100.0"


def test_reports_need_a_prepared_cycle(ledger: Ledger) -> None:
    with pytest.raises(CycleNotFound, match="2021-10"):
        ledger.coverage("2021-10")
    with pytest.raises(CycleNotFound, match="2021-10"):
        ledger.settlement("2021-10")
    with pytest.raises(CycleNotFound):
        ledger.coverage(PERIOD, programme="social-pension")


# -- settlement -----------------------------------------------------------------------------------
def test_settlement_objects(ledger: Ledger) -> None:
    report = ledger.settlement(PERIOD)
    assert isinstance(report, SettlementReport)
    assert report == settlement_report(ledger.store, PERIOD)
    assert (report.programme, report.period, report.state, report.frozen, report.currency) == (
        "monthly-allowance",
        Period.parse(PERIOD),
        "approved",
        False,
        "VND",
    )
    expected = expected_settlement()
    assert len(report.lines) == len(expected)
    for line, item in zip(report.lines, expected, strict=True):
        assert (line.level, line.provider) == (item["level"], item["provider"])
        assert (line.province_code, line.district_code, line.commune_code) == (
            item["province_code"],
            item["district_code"],
            item["commune_code"],
        )
        assert (line.province_name, line.district_name, line.commune_name) == (
            item["province_name"],
            item["district_name"],
            item["commune_name"],
        )
        for name in ("instructed", "paid", "failed", "returned", "unclaimed", "open"):
            tally = getattr(line, name)
            assert tally == Tally(item[f"{name}_count"], vnd(item[f"{name}_amount"])), name
        assert line.balance == vnd(item["balance"])
    assert report.total == report.lines[-1]


def assert_invariant(report: SettlementReport) -> None:
    """instructed = paid + failed + returned + unclaimed + open, to the đồng, on every line;
    the balance is failed + returned + unclaimed; the total line sums the provider lines."""
    for line in report.lines:
        ends = line.paid + line.failed + line.returned + line.unclaimed + line.open
        assert line.instructed == ends, line
        assert line.balance == line.failed.amount + line.returned.amount + line.unclaimed.amount
    providers = [line for line in report.lines if line.level == "provider"]
    for name in ("instructed", "paid", "failed", "returned", "unclaimed", "open"):
        total = Tally.zero(report.currency)
        for line in providers:
            total += getattr(line, name)
        assert getattr(report.total, name) == total


def ledger_figures(ledger: Ledger) -> dict[str, tuple[int, int]]:
    """state → (count, amount) of the cycle's instructions, straight from the database."""
    return {
        str(state): (int(count), int(amount))
        for state, count, amount in ledger.store.query(
            "SELECT state, count(*), sum(amount) FROM instructions WHERE period = ? GROUP BY state",
            (Period.parse(PERIOD).ordinal,),
        )
    }


def test_settlement_invariant_and_the_ledger_agree(ledger: Ledger) -> None:
    report = ledger.settlement(PERIOD)
    assert_invariant(report)
    figures = ledger_figures(ledger)
    assert figures["CANCELLED"] == (1, 540_000)  # B2, held at approval: never advanced
    advanced = [pair for state, pair in figures.items() if state != "CANCELLED"]
    total = report.total
    assert total.instructed == Tally(sum(n for n, _ in advanced), vnd(sum(a for _, a in advanced)))
    assert total.open == Tally(
        sum(figures[s][0] for s in OPEN_STATES), vnd(sum(figures[s][1] for s in OPEN_STATES))
    )
    # the two reports see the same instructed and paid money
    coverage = ledger.coverage(PERIOD).total
    assert (coverage.instructed, coverage.paid) == (total.instructed, total.paid)


def test_settlement_json(ledger: Ledger) -> None:
    text = render(write_settlement_report, "json", ledger.settlement(PERIOD))
    document = json.loads(text)
    assert list(document) == ["programme", "period", "state", "frozen", "currency", "lines"]
    assert document["programme"] == "monthly-allowance"
    assert document["period"] == PERIOD
    assert document["state"] == "approved"
    assert document["frozen"] is False
    assert document["currency"] == "VND"
    assert document["lines"] == expected_settlement()
    for item in document["lines"]:
        assert list(item) == list(SETTLEMENT_COLUMNS)


def test_settlement_csv(ledger: Ledger) -> None:
    text = render(write_settlement_report, "csv", ledger.settlement(PERIOD))
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == list(SETTLEMENT_COLUMNS)
    assert list(reader) == [as_csv_row(item) for item in expected_settlement()]


def test_settlement_table(ledger: Ledger) -> None:
    text = render(write_settlement_report, "table", ledger.settlement(PERIOD))
    lines = text.splitlines()
    assert lines[0].split() == [
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
    ]
    labels = [
        "vietinbank",
        "  46 Tỉnh Thừa Thiên Huế",
        "    19999 Phường Thuận Hóa",
        "    20107 Thị trấn Phú Lộc",
        "viettelpay",
        "  01 Thành phố Hà Nội",
        "    00004 Phường Ba Đình",
        "  46 Tỉnh Thừa Thiên Huế",
        "    19999 Phường Thuận Hóa",
        "    20107 Thị trấn Phú Lộc",
        "vnpost",
        "  01 Thành phố Hà Nội",
        "    00004 Phường Ba Đình",
        "  46 Tỉnh Thừa Thiên Huế",
        "    20107 Thị trấn Phú Lộc",
        "    20110 Thị trấn Lăng Cô",
        "total",
    ]
    body = lines[2:]
    assert len(body) == len(labels)
    for row, label, item in zip(body, labels, expected_settlement(), strict=True):
        assert row.startswith(label + " ")
        assert row[len(label) :].split() == [
            f"{item[key]:,}"
            for key in SETTLEMENT_COLUMNS[SETTLEMENT_COLUMNS.index("instructed_count") :]
        ]


# -- closing freezes the settlement ---------------------------------------------------------------
TO_PAID = {
    "READY": ("SUBMITTED", "ACCEPTED", "PAID"),
    "SUBMITTED": ("ACCEPTED", "PAID"),
    "ACCEPTED": ("PAID",),
    "UNKNOWN": ("PAID",),
}


def test_a_closed_cycles_settlement_never_changes(tmp_path: Path) -> None:
    ledger = build(tmp_path / "l")
    try:
        for bid, (*_, outcome) in ROSTER.items():
            if outcome in TO_PAID:  # settle everything open, so the cycle may close
                record = live_instruction(ledger, PERIOD, bid)
                drive(ledger, record.instruction_id, *TO_PAID[outcome])
        before = ledger.settlement(PERIOD)
        assert before.total.open == Tally.zero("VND")
        ledger.close_cycle(PERIOD)
        closed = ledger.settlement(PERIOD)
        assert closed.frozen
        assert closed.state == "closed"
        assert closed.lines == before.lines
        assert_invariant(closed)
        coverage_before = ledger.coverage(PERIOD)
        closed_json = render(write_settlement_report, "json", closed)
        db_path = ledger.store.path
        victim = live_instruction(ledger, PERIOD, "A1").instruction_id
    finally:
        ledger.close()

    # Someone changes a state behind the ledger's back, outside every gate.
    with sqlite3.connect(db_path) as db:
        changed = db.execute(
            "UPDATE instructions SET state = 'FAILED' WHERE instruction_id = ?", (victim,)
        ).rowcount
    assert changed == 1

    with Ledger.open(db_path, durable=False) as reopened:
        after = reopened.settlement(PERIOD)
        coverage_after = reopened.coverage(PERIOD)
    assert after == closed
    assert render(write_settlement_report, "json", after) == closed_json
    # the change is real: the live coverage report sees it (it is not frozen)
    assert coverage_after.total.paid == coverage_before.total.paid - Tally(1, vnd(360_000))


# -- the settlement invariant as a property -------------------------------------------------------
END_STATES = tuple(ROUTES)
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(WHERE)),
            st.sampled_from(sorted(HOW)),
            st.sampled_from(["1", "1.5", "2.5", "3"]),
            st.booleans(),  # paid to a proxy
            st.sampled_from(END_STATES),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_settlement_invariant_over_random_end_states(
    plan: list[tuple[str, str, str, bool, str]],
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        ledger = open_ledger(directory)
        try:
            RosterLoader(directory)(
                ledger,
                *(
                    roster_row(
                        f"R{n}",
                        **WHERE[commune],
                        **HOW[channel],
                        coefficient=coefficient,
                        **(PROXY if proxy else {}),
                    )
                    for n, (commune, channel, coefficient, proxy, _) in enumerate(plan)
                ),
            )
            ledger.prepare(PERIOD)
            ledger.approve(PERIOD, by="checker")
            for n, (*_, state) in enumerate(plan):
                drive(
                    ledger, live_instruction(ledger, PERIOD, f"R{n}").instruction_id, *ROUTES[state]
                )
            report = ledger.settlement(PERIOD)
            coverage = ledger.coverage(PERIOD)
        finally:
            ledger.close()

    assert_invariant(report)
    amounts = [360_000 * {"1": 2, "1.5": 3, "2.5": 5, "3": 6}[c] // 2 for _, _, c, _, _ in plan]
    total = report.total

    def tally(states: set[str]) -> Tally:
        chosen = [a for a, (*_, s) in zip(amounts, plan, strict=True) if s in states]
        return Tally(len(chosen), vnd(sum(chosen)))

    assert total.instructed == tally(set(END_STATES))
    assert total.paid == tally({"PAID"})
    assert total.failed == tally({"FAILED"})
    assert total.returned == tally({"RETURNED"})
    assert total.unclaimed == tally({"UNCLAIMED"})
    assert total.open == tally(set(OPEN_STATES))
    assert total.balance == (tally({"FAILED", "RETURNED", "UNCLAIMED"})).amount
    # coverage agrees with settlement on what was instructed and paid
    assert coverage.total.instructed == total.instructed
    assert coverage.total.paid == total.paid
    assert coverage.total.unpaid == total.instructed - total.paid
    paid_electronic = sum(
        1 for _, channel, _, _, state in plan if state == "PAID" and channel != "postal"
    )
    assert coverage.total.electronic_share == Share(paid_electronic, total.paid.count)


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def db(ledger: Ledger) -> str:
    return str(ledger.store.path)


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_cli_report_coverage(db: str, ledger: Ledger, fmt: str) -> None:
    code, text = run("--db", db, "report", "coverage", "--period", PERIOD, "--format", fmt)
    assert code == 0
    assert text == render(write_coverage_report, fmt, ledger.coverage(PERIOD))
    if fmt == "json":
        assert json.loads(text)["lines"] == expected_coverage()


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_cli_report_settlement(db: str, ledger: Ledger, fmt: str) -> None:
    code, text = run("report", "settlement", "--period", PERIOD, "--format", fmt, "--db", db)
    assert code == 0
    assert text == render(write_settlement_report, fmt, ledger.settlement(PERIOD))
    if fmt == "csv":
        assert list(csv.DictReader(io.StringIO(text))) == [
            as_csv_row(item) for item in expected_settlement()
        ]


def test_cli_reports_to_a_file_and_by_programme(db: str, tmp_path: Path) -> None:
    target = tmp_path / "coverage.csv"
    code, text = run(
        "--db",
        db,
        "report",
        "coverage",
        "--period",
        PERIOD,
        "--programme",
        "monthly-allowance",
        "--format",
        "csv",
        "--output",
        str(target),
    )
    assert (code, text) == (0, "")
    with target.open(encoding="utf-8", newline="") as handle:
        assert list(csv.DictReader(handle)) == [as_csv_row(i) for i in expected_coverage()]
    code, text = run("--db", db, "report", "settlement", "--period", PERIOD, "-o", str(target))
    assert (code, text) == (0, "")
    assert target.read_text(encoding="utf-8").splitlines()[0].split()[0] == "line"


def test_cli_report_errors(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run("--db", db, "report", "settlement", "--period", "2021-10")
    assert code == 1
    assert "no cycle 2021-10" in capsys.readouterr().err
    code, _ = run("--db", db, "report", "coverage", "--period", "2021-10", "--programme", "x")
    assert code == 1
    code, _ = run("--db", db, "report", "coverage", "--period", "2021-9")
    assert code == 2
    code, _ = run("--db", db, "report", "coverage", "--period", PERIOD, "--format", "xml")
    assert code == 2


# -- the documented examples ----------------------------------------------------------------------
FORMATS = Path(__file__).resolve().parent.parent / "docs" / "formats.md"


def documented(heading: str, after: str) -> list[str]:
    """The lines of the first fenced block after ``after`` in the section ``heading``."""
    text = FORMATS.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    section = section[section.index(after) :]
    block = section[section.index("```") :]
    block = block[block.index("\n") + 1 :]
    return block[: block.index("```")].splitlines()


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("### 4.5 `report coverage", expected_coverage),
        ("### 4.6 `report settlement", expected_settlement),
    ],
)
def test_the_documented_examples_are_real_output(heading: str, expected: Any) -> None:
    items = expected()
    lines = documented(heading, "JSON")
    header = json.loads(lines[0] + "]}")
    assert header["period"] == PERIOD
    for line in lines[1:-1]:
        assert json.loads(line.rstrip(",")) in items
    csv_lines = documented(heading, "CSV columns (`")
    rows = list(csv.DictReader(io.StringIO("\n".join(csv_lines))))
    assert rows
    assert all(row in [as_csv_row(item) for item in items] for row in rows)
