"""``sap-payments demo``: the Phú Lộc pilot on a synthetic roster, through the CLI."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from sap_payments.cli import main
from sap_payments.config import Config
from sap_payments.demo import APPROVER, DEMO_CONFIG, PERIOD, PERIODS
from sap_payments.ledger import Ledger

FILES = (
    "roster.csv",
    "areas.csv",
    "sap-payments.toml",
    "sap-payments.db",
    "changes-2021-09.csv",
    "changes-2021-09.json",
    "roster-2021-10.csv",
    "roster-2021-11.csv",
    *(
        f"{kind}-{period}.{fmt}"
        for kind in ("changes", "coverage", "settlement")
        for period in ("2021-09", "2021-10", "2021-11")
        for fmt in ("csv", "json")
    ),
)


def run_demo(directory: Path, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["demo", "--dir", str(directory), "--quiet", *extra], out=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("demo") / "phu-loc"  # created by the demo
    code, text = run_demo(directory)
    assert code == 0, text
    return directory, text


def test_demo_writes_its_files(demo: tuple[Path, str]) -> None:
    directory, _ = demo
    for name in FILES:
        assert (directory / name).is_file(), name
        assert (directory / name).stat().st_size > 0, name
    assert (directory / "sap-payments.toml").read_text(encoding="utf-8") == DEMO_CONFIG
    config = Config.load(directory / "sap-payments.toml")
    assert {name: p.channel.value for name, p in config.providers.items()} == {
        "viettelpay": "ewallet",
        "vietinbank": "bank",
        "vnpost": "postal",
    }


def test_demo_output_names_the_pilot(demo: tuple[Path, str]) -> None:
    directory, text = demo
    assert "8,364 beneficiaries" in text
    assert "17 communes" in text
    assert "Imported: 8,364 beneficiaries" in text
    assert f"Cycle {PERIOD} prepared:" in text
    assert f"Approved by {APPROVER}" in text
    assert "Thị trấn Lăng Cô" in text
    assert str(directory) in text


def test_demo_roster_and_areas(demo: tuple[Path, str]) -> None:
    directory, _ = demo
    with (directory / "roster.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8_364
    with (directory / "areas.csv").open(encoding="utf-8", newline="") as handle:
        areas = list(csv.DictReader(handle))
    assert len(areas) == 17
    assert {a["district_code"] for a in areas} == {"482"}
    assert {r["commune_code"] for r in rows} <= {a["commune_code"] for a in areas}


def test_demo_runs_three_cycles_to_the_end(demo: tuple[Path, str]) -> None:
    directory, text = demo
    with Ledger.open(
        directory / "sap-payments.db", config=Config.load(directory / "sap-payments.toml")
    ) as ledger:
        cycle = ledger.cycle(PERIOD)
        assert (cycle.state, cycle.approved_by) == ("closed", APPROVER)
        assert [c.state for c in ledger.store.cycles("monthly-allowance")] == ["closed"] * 3
        for period in PERIODS:
            states = Counter(r.state for r, _ in ledger.instructions(period))
            assert set(states) <= {"PAID", "FAILED", "RETURNED", "UNCLAIMED", "CANCELLED"}
            assert states["PAID"] > 8_000
        # wallets that failed for good in September are paid as cash in October, with arrears
        september = {r.beneficiary_id: r for r, _ in ledger.instructions("2021-09")}
        october = {r.beneficiary_id: r for r, _ in ledger.instructions("2021-10")}
        october_months = {
            r.beneficiary_id: {line.month for line in lines}
            for r, lines in ledger.instructions("2021-10")
        }
        september_month = september[next(iter(september))].period
        dead = [
            b
            for b, r in september.items()
            if r.state == "FAILED" and r.channel == "ewallet" and b in october
        ]
        assert len(dead) > 50
        assert all(october[b].channel == "postal" for b in dead)
        assert all(september_month in october_months[b] for b in dead)  # September as arrears
        # cash not collected in September is paid again in October
        unclaimed = [b for b, r in september.items() if r.state == "UNCLAIMED"]
        assert unclaimed
        assert all(september_month in october_months[b] for b in unclaimed if b in october)
        # some died (ceased), some joined
        beneficiaries = list(ledger.store.beneficiaries("monthly-allowance"))
        assert len(beneficiaries) == 8_364 + 2 * 25
        assert sum(b.status == "ceased" for b in beneficiaries) > 20
        assert len(list(ledger.store.areas())) == 17
    assert f"Coverage {PERIODS[-1]}" in text
    assert "% electronic" in text


def test_demo_change_report_files_agree(demo: tuple[Path, str]) -> None:
    directory, _ = demo
    document = json.loads((directory / "changes-2021-09.json").read_text(encoding="utf-8"))
    assert list(document) == [
        "programme",
        "period",
        "previous_period",
        "currency",
        "summary",
        "review",
        "changes",
    ]
    assert document["review"]["count"] == document["summary"]["added"]
    assert (document["period"], document["previous_period"]) == (PERIOD, None)
    with (directory / "changes-2021-09.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(document["changes"]) == sum(document["summary"].values())
    assert [r["beneficiary_id"] for r in rows] == [c["beneficiary_id"] for c in document["changes"]]
    assert document["summary"]["added"] > 8_000
    with Ledger.open(directory / "sap-payments.db") as ledger:
        cycle = ledger.cycle(PERIOD)
    assert document["summary"]["added"] == cycle.instructions
    assert sum(c["amount"] for c in document["changes"] if c["kind"] == "added") == cycle.total


def test_demo_runs_twice_and_replaces_the_ledger(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    assert run_demo(directory)[0] == 0
    code, text = run_demo(directory)
    assert code == 0, text
    assert "Imported: 8,364 beneficiaries" in text  # added again: a fresh ledger
    with Ledger.open(directory / "sap-payments.db") as ledger:
        rosters = ledger.store.query("SELECT count(*) FROM imports WHERE kind = 'roster'")
        assert rosters == [(len(PERIODS),)]
        assert [c.state for c in ledger.store.cycles("monthly-allowance")] == ["closed"] * 3


def test_same_seed_same_roster_bytes(tmp_path: Path) -> None:
    assert run_demo(tmp_path / "a", "--seed", "7")[0] == 0
    assert run_demo(tmp_path / "b", "--seed", "7")[0] == 0
    assert run_demo(tmp_path / "c", "--seed", "8")[0] == 0
    first = (tmp_path / "a" / "roster.csv").read_bytes()
    assert first == (tmp_path / "b" / "roster.csv").read_bytes()
    assert first != (tmp_path / "c" / "roster.csv").read_bytes()
    assert (tmp_path / "a" / "areas.csv").read_bytes() == (
        tmp_path / "c" / "areas.csv"
    ).read_bytes()


def test_demo_can_route_the_bank_through_iso20022_files(tmp_path: Path) -> None:
    directory = tmp_path / "bank"
    code, text = run_demo(directory, "--bank", "iso20022")
    assert code == 0, text
    files = sorted((directory / "bank-outbox").glob("pain.001.001.09-*.xml"))
    answers = sorted((directory / "bank-inbox").glob("*.xml"))
    assert len(files) >= 3  # at least one payment file a month
    assert len(answers) == 2 * len(files)  # a pain.002 and a camt.054 for each
    config = (directory / "sap-payments.toml").read_text(encoding="utf-8")
    assert 'plugin = "iso20022-bank"' in config
    with Ledger.open(directory / "sap-payments.db") as ledger:
        assert [c.state for c in ledger.store.cycles("monthly-allowance")] == ["closed"] * 3
        bank = [r for r, _ in ledger.instructions(PERIOD) if r.provider == "vietinbank"]
        assert bank
        assert {r.state for r in bank} <= {"PAID", "FAILED", "RETURNED", "CANCELLED"}
        assert "PAID" in {r.state for r in bank}
        imported = ledger.store.query("SELECT count(*) FROM imports WHERE kind = 'report'")
        assert imported == [(len(answers),)]


def test_demo_campaign_moves_a_commune_from_cash_to_wallets(demo: tuple[Path, str]) -> None:
    directory, text = demo
    assert "Account-opening campaign in " in text
    with Ledger.open(
        directory / "sap-payments.db", config=Config.load(directory / "sap-payments.toml")
    ) as ledger:
        [campaign] = ledger.store.campaigns()
        [commune] = json.loads(campaign.communes)
        switched = {
            u.beneficiary_id
            for u in ledger.store.mandate_updates("monthly-allowance", ("applied",))
        }
        assert len(switched) >= 10  # 10 with the demo's ledger id (seed 2021)
        assert ledger.campaign(campaign.name).states.get("applied") == len(switched)
        # from October on, paid into their new wallets (not in September)
        september = {r.beneficiary_id: r.channel for r, _ in ledger.instructions(PERIODS[0])}
        october = {r.beneficiary_id: r.channel for r, _ in ledger.instructions(PERIODS[1])}
        assert {september[b] for b in switched} == {"postal"}
        assert sum(october[b] == "ewallet" for b in switched) >= len(switched) - 2
        shares = [
            next(x for x in ledger.coverage(p).lines if x.commune_code == commune).electronic_share
            for p in PERIODS
        ]
        assert (shares[1].tenths or 0) > (shares[0].tenths or 0)
    assert f"Campaign commune {commune}: electronic share" in text
