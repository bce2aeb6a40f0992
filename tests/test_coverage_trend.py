"""The coverage trend: electronic share per area cycle by cycle (docs/formats.md 4.5.1).

Two communes of one district, three cycles. Phú Lộc (20107) moves from the post office to an
e-wallet, one beneficiary a month; Lăng Cô (20110) stays on cash, one payment fails in 2021-10
and none is made in 2021-11 (one fails again, one is still with the provider).

=========  ==================  ==================  ==================
area       2021-09             2021-10             2021-11
=========  ==================  ==================  ==================
20107      0/2 (both postal)   1/2 (P1 e-wallet)   2/2 (P2 too)
20110      0/2                 0/1 (L2 failed)     none paid
district   0/4                 1/3                 2/2
=========  ==================  ==================  ==================
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RosterLoader, live_instruction, open_ledger, roster_row, settle
from sap_payments import (
    CoverageTrend,
    CycleNotFound,
    Ledger,
    NoCycles,
    Period,
    Share,
    coverage_trend,
)
from sap_payments.cli import main
from sap_payments.reports import TREND_AREA_COLUMNS, write_coverage_trend

AREAS_CSV = """\
province_code,province_name,district_code,district_name,commune_code,commune_name
46,Tỉnh Thừa Thiên Huế,482,Huyện Phú Lộc,20107,Thị trấn Phú Lộc
46,Tỉnh Thừa Thiên Huế,482,Huyện Phú Lộc,20110,Thị trấn Lăng Cô
"""
PERIODS = ("2021-09", "2021-10", "2021-11")
POSTAL = {"channel": "postal", "provider": "vnpost", "msisdn": "", "pay_point": "BD-PHULOC"}
EWALLET = {"channel": "ewallet", "provider": "viettelpay", "msisdn": "0912345678"}
PHU_LOC = {"province_code": "46", "district_code": "482", "commune_code": "20107"}
LANG_CO = {"province_code": "46", "district_code": "482", "commune_code": "20110"}

#: period → beneficiary → how its instruction ends (None: left READY with the provider)
OUTCOMES: dict[str, dict[str, str | None]] = {
    "2021-09": {"P1": "PAID", "P2": "PAID", "L1": "PAID", "L2": "PAID"},
    "2021-10": {"P1": "PAID", "P2": "PAID", "L1": "PAID", "L2": "FAILED"},
    "2021-11": {"P1": "PAID", "P2": "PAID", "L1": None, "L2": "FAILED"},
}


def build(directory: Path) -> Ledger:
    ledger = open_ledger(directory)
    (directory / "areas.csv").write_text(AREAS_CSV, encoding="utf-8")
    ledger.import_areas(directory / "areas.csv")
    rosters = directory / "rosters"
    rosters.mkdir()
    load = RosterLoader(rosters)
    p1, p2 = (roster_row(bid, **PHU_LOC, **POSTAL) for bid in ("P1", "P2"))
    l1, l2 = (roster_row(bid, **LANG_CO, **POSTAL) for bid in ("L1", "L2"))
    load(ledger, p1, p2, l1, l2)
    for period in PERIODS:
        if period == "2021-10":  # P1 switches to an e-wallet
            load(ledger, {**p1, **EWALLET}, p2, l1, l2)
        if period == "2021-11":  # and P2 too
            load(ledger, {**p1, **EWALLET}, {**p2, **EWALLET}, l1, l2)
        ledger.prepare(period)
        ledger.approve(period, by="Trưởng phòng")
        for bid, outcome in OUTCOMES[period].items():
            if outcome is not None:
                settle(ledger, live_instruction(ledger, period, bid).instruction_id, outcome)
    return ledger


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    opened = build(tmp_path_factory.mktemp("trend"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def db(ledger: Ledger) -> str:
    return str(ledger.store.path)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


S = Share


#: (level, province, district, commune) → shares per period, meets 80%, switched
EXPECTED = {
    ("province", "46", None, None): ((S(0, 4), S(1, 3), S(2, 2)), True, False),
    ("district", "46", "482", None): ((S(0, 4), S(1, 3), S(2, 2)), True, False),
    ("commune", "46", "482", "20107"): ((S(0, 2), S(1, 2), S(2, 2)), True, True),
    ("commune", "46", "482", "20110"): ((S(0, 2), S(0, 1), None), False, False),
    ("total", None, None, None): ((S(0, 4), S(1, 3), S(2, 2)), True, False),
}


def test_trend_objects(ledger: Ledger) -> None:
    trend = ledger.coverage_trend()
    assert isinstance(trend, CoverageTrend)
    assert trend.programme == "monthly-allowance"
    assert [str(p) for p in trend.periods] == list(PERIODS)
    assert (trend.target, trend.target_percent) == (Share(80, 100), 80)
    got = {
        (r.level, r.province_code, r.district_code, r.commune_code): (
            r.shares,
            r.meets_target,
            r.switched,
        )
        for r in trend.rows
    }
    assert got == EXPECTED
    assert list(got) == list(EXPECTED)  # tree order, the total last
    assert [r.latest for r in trend.rows] == [S(2, 2), S(2, 2), S(2, 2), None, S(2, 2)]
    assert [(r.commune_code, r.commune_name) for r in trend.not_switched] == [
        ("20110", "Thị trấn Lăng Cô")
    ]
    assert trend.rows[0].province_name == "Tỉnh Thừa Thiên Huế"
    assert trend.rows[1].district_name == "Huyện Phú Lộc"


def test_trend_over_chosen_periods_and_targets(ledger: Ledger) -> None:
    two = [Period.parse("2021-10"), Period.parse("2021-09")]  # sorted by the report
    trend = coverage_trend(ledger.store, periods=two, target_percent=50)
    assert [str(p) for p in trend.periods] == ["2021-09", "2021-10"]
    by_code = {r.commune_code or r.level: r for r in trend.rows}
    # 1/2 meets 50% exactly; 1/3 of the district does not
    assert (by_code["20107"].latest, by_code["20107"].meets_target) == (S(1, 2), True)
    assert (by_code["district"].latest, by_code["district"].meets_target) == (S(1, 3), False)
    assert by_code["20107"].switched is True
    # Lăng Cô paid once in 2021-10, by post: 0/1, not switched
    assert (by_code["20110"].latest, by_code["20110"].switched) == (S(0, 1), False)
    # exact, not rounded: 1/3 is above 33% and below 34%
    assert coverage_trend(ledger.store, periods=two, target_percent=33).rows[1].meets_target
    assert not coverage_trend(ledger.store, periods=two, target_percent=34).rows[1].meets_target
    # 100% is met only by all payments electronic; 0% by any payment at all
    full = ledger.coverage_trend(target_percent=100)
    assert [r.meets_target for r in full.rows] == [True, True, True, False, True]
    zero = ledger.coverage_trend(target_percent=0)
    assert [r.meets_target for r in zero.rows] == [True, True, True, False, True]


def test_trend_errors(ledger: Ledger, tmp_path: Path) -> None:
    for bad in (-1, 101):
        with pytest.raises(ValueError, match="0–100"):
            ledger.coverage_trend(target_percent=bad)
    with pytest.raises(CycleNotFound, match="2021-12"):
        ledger.coverage_trend([Period.parse("2021-12")])
    with pytest.raises(NoCycles, match="social-pension"):
        ledger.coverage_trend(programme="social-pension")
    with open_ledger(tmp_path) as empty, pytest.raises(NoCycles, match="no cycles"):
        empty.coverage_trend()


def test_cli_trend_json(db: str, ledger: Ledger) -> None:
    code, text = run("--db", db, "report", "coverage", "--trend", "--format", "json")
    assert code == 0
    document = json.loads(text)
    assert list(document) == ["programme", "target_percent", "periods", "rows", "not_switched"]
    assert document["target_percent"] == 80
    assert document["periods"] == list(PERIODS)
    assert document["not_switched"] == [
        {"commune_code": "20110", "commune_name": "Thị trấn Lăng Cô"}
    ]
    rows = document["rows"]
    assert rows[3] == {
        "level": "commune",
        "province_code": "46",
        "province_name": "Tỉnh Thừa Thiên Huế",
        "district_code": "482",
        "district_name": "Huyện Phú Lộc",
        "commune_code": "20110",
        "commune_name": "Thị trấn Lăng Cô",
        "shares": {
            "2021-09": {"percent": "0.0", "numerator": 0, "denominator": 2},
            "2021-10": {"percent": "0.0", "numerator": 0, "denominator": 1},
            "2021-11": None,
        },
        "meets_target": False,
    }
    assert rows[1]["shares"]["2021-10"] == {"percent": "33.3", "numerator": 1, "denominator": 3}
    assert [r["meets_target"] for r in rows] == [True, True, True, False, True]
    out = io.StringIO()
    write_coverage_trend(out, "json", ledger.coverage_trend())
    assert out.getvalue() == text


def test_cli_trend_csv(db: str) -> None:
    code, text = run("--db", db, "report", "coverage", "--trend", "--format", "csv")
    assert code == 0
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == [*TREND_AREA_COLUMNS, *PERIODS, "meets_target"]
    rows = list(reader)
    assert [(r["level"], r["commune_code"]) for r in rows] == [
        ("province", ""),
        ("district", ""),
        ("commune", "20107"),
        ("commune", "20110"),
        ("total", ""),
    ]
    assert [r["2021-09"] for r in rows] == ["0.0"] * 5
    assert [r["2021-10"] for r in rows] == ["33.3", "33.3", "50.0", "0.0", "33.3"]
    assert [r["2021-11"] for r in rows] == ["100.0", "100.0", "100.0", "", "100.0"]
    assert [r["meets_target"] for r in rows] == ["true", "true", "true", "false", "true"]
    assert rows[3]["commune_name"] == "Thị trấn Lăng Cô"


def test_cli_trend_table_with_a_target(db: str) -> None:
    code, text = run("--db", db, "report", "coverage", "--trend", "--target", "100")
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == ["area", *PERIODS, "target"]
    body = [line.split() for line in lines[2:-1]]
    assert body == [
        ["46", "Tỉnh", "Thừa", "Thiên", "Huế", "0.0%", "33.3%", "100.0%", "met"],
        ["482", "Huyện", "Phú", "Lộc", "0.0%", "33.3%", "100.0%", "met"],
        ["20107", "Thị", "trấn", "Phú", "Lộc", "0.0%", "50.0%", "100.0%", "met"],
        ["20110", "Thị", "trấn", "Lăng", "Cô", "0.0%", "0.0%", "below"],
        ["total", "0.0%", "33.3%", "100.0%", "met"],
    ]
    assert lines[-1] == ("target 100%; communes not switched in 2021-11: 20110 Thị trấn Lăng Cô")


def test_cli_trend_errors(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    open_ledger(tmp_path).close()
    empty = str(tmp_path / "l.db")
    code, text = run("--db", empty, "report", "coverage", "--trend")
    assert (code, text) == (1, "")
    assert "no cycles for programme monthly-allowance" in capsys.readouterr().err
    for target in ("101", "-1", "80.5", "x"):
        code, _ = run("--db", db, "report", "coverage", "--trend", "--target", target)
        assert code == 2, target
        assert "0 to 100" in capsys.readouterr().err
    # without --trend, --period stays required; the two do not go together
    code, _ = run("--db", db, "report", "coverage")
    assert code == 2
    assert "one of the arguments --period --trend is required" in capsys.readouterr().err
    code, _ = run("--db", db, "report", "coverage", "--trend", "--period", "2021-09")
    assert code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    code, _ = run("--db", db, "report", "coverage", "--period", "2021-09", "--target", "90")
    assert code == 1
    assert "--target applies to --trend only" in capsys.readouterr().err
    # and the one-cycle report is unchanged
    code, text = run("--db", db, "report", "coverage", "--period", "2021-09", "--format", "csv")
    assert code == 0
    assert text.splitlines()[0].startswith("level,province_code")


def test_the_documented_examples_are_real_output(db: str) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "formats.md").read_text("utf-8")
    section = text[text.index("### 4.5.1 `report coverage --trend") :]
    section = section[: section.index("### 4.6")]
    blocks = [block.split("\n", 1)[1] for block in section.split("```")[1::2]]
    _, real = run("--db", db, "report", "coverage", "--trend", "--format", "json")
    document, lines = json.loads(real), blocks[0].splitlines()
    header = json.loads(lines[0] + "]}")
    assert header == {k: document[k] for k in ("programme", "target_percent", "periods")} | {
        "rows": []
    }
    for line in lines[1:-1]:
        assert json.loads(line.rstrip(",")) in document["rows"]
    assert json.loads("{" + lines[-1].removeprefix("],")) == {
        "not_switched": document["not_switched"]
    }
    _, real_csv = run("--db", db, "report", "coverage", "--trend", "--format", "csv")
    documented_csv = blocks[1].splitlines()
    assert documented_csv[0] == real_csv.splitlines()[0]
    assert set(documented_csv[1:]) <= set(real_csv.splitlines()[1:])
