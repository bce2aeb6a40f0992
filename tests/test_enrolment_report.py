"""``report enrolment`` on a small hand-checked roster, and the ``campaign`` commands end to end."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from conftest import RosterLoader, open_ledger
from sap_payments import Ledger
from sap_payments.cli import main
from sap_payments.config import Config
from sap_payments.enrolment_report import (
    ENROLMENT_COLUMNS,
    EnrolmentReport,
    enrolment_report,
    write_enrolment_report,
)
from sap_payments.periods import Period
from test_enrolment import ROSTER, TOML, settle, write_results

SEPT, OCT = "2021-09-20T08:00:00+00:00", "2021-10-05T08:00:00+00:00"


@pytest.fixture
def report(tmp_path: Path) -> EnrolmentReport:
    """Commune 20107: B1–B4 cash, B5 on a wallet (B7 ceased); commune 20109: B6 cash.

    September: cycle paid; campaign c1 on 20107; the provider's file says B1 opened, B2 refused,
    B3 pending. October: a run opens B3 and B4; the switch from October; cycle paid.
    """
    with open_ledger(tmp_path) as ledger:
        ledger.config = Config.loads(TOML)
        RosterLoader(tmp_path)(ledger, *ROSTER)
        settle(ledger, "2021-09")
        ledger.create_campaign("c1", provider="viettelpay", communes=["20107"], at=SEPT)
        results = write_results(
            tmp_path / "results.csv",
            [
                {"beneficiary_id": "B1", "outcome": "opened", "msisdn": "0912000001"},
                {"beneficiary_id": "B2", "outcome": "refused", "reason": "declined"},
                {"beneficiary_id": "B3", "outcome": "pending"},
            ],
            ("beneficiary_id", "outcome", "reason", "msisdn"),
        )
        ledger.import_enrolment_results("c1", results, at=SEPT)
        ledger.run_campaign("c1", at=OCT)
        assert ledger.schedule_campaign("c1", "2021-10") == 3
        settle(ledger, "2021-10")
        return ledger.enrolment_report()


def figures(report: EnrolmentReport, period: str, commune: str | None, provider: str | None):  # type: ignore[no-untyped-def]
    line = report.line(period, commune, provider)
    share = line.account_share
    return (
        line.targeted,
        line.opened,
        line.already_had,
        line.pending,
        line.refused,
        line.failed,
        line.switched,
        line.beneficiaries,
        line.with_account,
        None if share is None else share.percent,
    )


def test_the_report_figures_by_hand(report: EnrolmentReport) -> None:
    assert report.periods == ("2021-09", "2021-10", "current")
    # September: 4 targeted, B1 opened, B2 refused, B3 pending, B4 not tried; only B5 of the
    # commune's 5 is paid into an account
    assert figures(report, "2021-09", "20107", "viettelpay") == (4, 1, 0, 1, 1, 0, 0, 5, 1, "20.0")
    assert figures(report, "2021-09", "20109", None) == (0, 0, 0, 0, 0, 0, 0, 1, 0, "0.0")
    assert figures(report, "2021-09", None, None) == (4, 1, 0, 1, 1, 0, 0, 6, 1, "16.7")
    # October: B3, B4 opened; B1, B3, B4 switched: 4 of 5 paid into a wallet
    assert figures(report, "2021-10", "20107", "viettelpay") == (4, 3, 0, 0, 1, 0, 3, 5, 4, "80.0")
    assert figures(report, "2021-10", None, None) == (4, 3, 0, 0, 1, 0, 3, 6, 4, "66.7")
    # now, from the records
    assert figures(report, "current", "20107", "viettelpay") == (4, 3, 0, 0, 1, 0, 3, 5, 4, "80.0")
    assert figures(report, "current", "20109", None)[-3:] == (1, 0, "0.0")
    line = report.line("current", "20107", "viettelpay")
    assert (line.level, line.province_code, line.district_code) == ("commune", "46", "482")
    with pytest.raises(LookupError):
        report.line("2021-11", None, None)


def test_a_month_without_a_cycle_has_no_account_figures(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        ledger.config = Config.loads(TOML)
        RosterLoader(tmp_path)(ledger, *ROSTER)
        ledger.create_campaign("c1", provider="viettelpay", communes=["20107"], at=SEPT)
        ledger.run_campaign("c1", at=SEPT)
        report = enrolment_report(ledger.store, periods=[Period.parse("2021-09")])
    assert report.periods == ("2021-09",)
    assert figures(report, "2021-09", "20107", "viettelpay") == (
        4,
        4,
        0,
        0,
        0,
        0,
        0,
        None,
        None,
        None,
    )


def test_the_report_as_csv_json_and_table(report: EnrolmentReport) -> None:
    text = io.StringIO()
    write_enrolment_report(text, "csv", report)
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    assert tuple(rows[0]) == ENROLMENT_COLUMNS
    october = next(r for r in rows if r["period"] == "2021-10" and r["commune_code"] == "20107")
    assert (october["opened"], october["switched"], october["account_percent"]) == (
        "3",
        "3",
        "80.0",
    )
    text = io.StringIO()
    write_enrolment_report(text, "json", report)
    document = json.loads(text.getvalue())
    assert document["periods"] == ["2021-09", "2021-10", "current"]
    assert document["lines"][-1]["level"] == "total"
    assert document["lines"][-1]["with_account"] == 4
    text = io.StringIO()
    write_enrolment_report(text, "table", report)
    assert "80.0" in text.getvalue()
    assert "total" in text.getvalue()


def run(directory: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(
        ["--db", str(directory / "l.db"), "--config", str(directory / "c.toml"), *argv], out=out
    )
    return code, out.getvalue()


def test_the_campaign_commands_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.toml").write_text(TOML, encoding="utf-8")
    with Ledger.open(
        tmp_path / "l.db", config=Config.load(tmp_path / "c.toml"), durable=False
    ) as ledger:
        RosterLoader(tmp_path)(ledger, *ROSTER)
    code, text = run(
        tmp_path, "campaign", "create", "--name", "phu-loc-1", "--commune", "20107",
        "--channel", "postal", "--provider", "viettelpay", "--by", "clerk",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "4 beneficiaries on postal in 1 communes" in text
    results = write_results(
        tmp_path / "r.csv",
        [{"beneficiary_id": "B4", "outcome": "refused", "reason": "declined"}],
        ("beneficiary_id", "outcome", "reason"),
    )
    code, text = run(tmp_path, "campaign", "import", "phu-loc-1", str(results))
    assert (code, text) == (0, "r.csv: 1 results — 1 refused\n")
    code, text = run(tmp_path, "campaign", "import", "phu-loc-1", str(results))
    assert (code, text) == (0, "r.csv: imported before; nothing to do\n")
    code, text = run(tmp_path, "campaign", "run", "phu-loc-1", "--by", "clerk")
    assert (code, text) == (0, "campaign phu-loc-1: 3 attempts — 3 opened\n")
    code, text = run(tmp_path, "campaign", "apply", "phu-loc-1", "--from-period", "2021-10")
    assert code == 0
    assert "3 beneficiaries switch" in text
    code, text = run(tmp_path, "campaign", "show", "phu-loc-1")
    assert code == 0
    assert "postal → ewallet with viettelpay; 4 targeted — 1 refused, 3 scheduled" in text
    code, text = run(tmp_path, "campaign", "show", "phu-loc-1", "--format", "json")
    assert json.loads(text)["states"] == {"refused": 1, "scheduled": 3}
    code, text = run(tmp_path, "cycle", "prepare", "--period", "2021-10")
    assert code == 0
    code, text = run(tmp_path, "report", "enrolment", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    current = next(r for r in rows if r["period"] == "current" and r["commune_code"] == "20107")
    assert (current["switched"], current["with_account"], current["beneficiaries"]) == (
        "3",
        "4",
        "5",
    )
    code, text = run(tmp_path, "report", "enrolment", "--period", "2021-10", "--format", "json")
    assert code == 0
    assert json.loads(text)["periods"] == ["2021-10"]
    # errors: one line on stderr, no traceback
    capsys.readouterr()
    code, _ = run(tmp_path, "campaign", "show", "nope")
    assert code == 1
    assert "campaign nope: no such campaign" in capsys.readouterr().err
    bad = write_results(
        tmp_path / "bad.csv",
        [{"beneficiary_id": "B9", "outcome": "opened"}],
        ("beneficiary_id", "outcome"),
    )
    code, _ = run(tmp_path, "campaign", "import", "phu-loc-1", str(bad))
    assert code == 1
    assert "line 2, column beneficiary_id: not a target" in capsys.readouterr().err
