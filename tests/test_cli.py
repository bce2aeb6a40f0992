"""The ``sap-payments`` command line, end to end: the documented outputs (docs/formats.md,
section 4) and exit statuses (section 5)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sap_payments import cli
from sap_payments.cli import main
from sap_payments.ledger import Ledger
from sap_payments.reports import CHANGE_COLUMNS, SHOW_COLUMNS

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
ROSTER = EXAMPLES / "roster.csv"
AREAS = EXAMPLES / "areas.csv"
CONFIG = EXAMPLES / "sap-payments.toml"
PERIOD = "2021-09"

CYCLE_KEYS = [
    "programme",
    "period",
    "state",
    "currency",
    "count",
    "total",
    "instructions",
    "review",
]
INSTRUCTION_KEYS = [
    "instruction_id",
    "beneficiary_id",
    "payee",
    "payee_kind",
    "channel",
    "provider",
    "amount",
    "currency",
    "state",
    "held_reason",
    "commune_code",
    "lines",
    # why a FAILED, RETURNED or UNCLAIMED instruction ended so (null otherwise): our reason, the
    # provider's own code and words
    "reason",
    "provider_code",
    "provider_message",
]
CHANGES_KEYS = [
    "programme",
    "period",
    "previous_period",
    "currency",
    "summary",
    "review",
    "changes",
]
CHANGE_KEYS = ["kind", "beneficiary_id", "commune_code", "previous_amount", "amount", "reason"]
SUMMARY_KEYS = ["added", "removed", "amount_changed", "payee_changed", "held"]

# What the example roster pays in 2021-09 (standard level 360,000 from 2021-07, 270,000 before).
EXPECTED_AMOUNTS = {
    "PL-0001": 360_000,  # elderly_80plus 1.0
    "PL-0002": 540_000,  # disabled_heavy 1.5, bank
    "PL-0003": 1_080_000,  # elderly_no_carer 3.0, postal, home delivery
    "PL-0004": 900_000,  # 2.5, proxy with a valid mandate
    "PL-0005": 540_000,  # proxy whose mandate ended 2021-08-31: held
    "PL-0006": 270_000 + 3 * 360_000,  # back-dated to 2021-06, nothing paid before
    "PL-0009": 900_000,  # coefficient override 2,5
    "PL-0010": 720_000,  # 2.0, several addresses
    "PL-0011": 540_000,  # 1.5, +84 number
    "PL-0012": 900_000,  # 2.5, child without national id
}
PREPARED_TOTAL = sum(EXPECTED_AMOUNTS.values())
APPROVED_TOTAL = PREPARED_TOTAL - EXPECTED_AMOUNTS["PL-0005"]


@pytest.fixture
def ledger_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """--db and --config for a fresh ledger; the working directory holds nothing else."""
    monkeypatch.chdir(tmp_path)
    return ["--db", str(tmp_path / "ledger.db"), "--config", str(CONFIG)]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def ok(*argv: str) -> str:
    code, text = run(*argv)
    assert code == 0, text
    return text


@pytest.fixture
def prepared(ledger_args: list[str]) -> list[str]:
    ok(*ledger_args, "import", "areas", str(AREAS))
    ok(*ledger_args, "import", "roster", str(ROSTER))
    ok(*ledger_args, "cycle", "prepare", "--period", PERIOD)
    return ledger_args


@pytest.fixture
def approved(prepared: list[str]) -> list[str]:
    ok(*prepared, "cycle", "approve", "--period", PERIOD, "--by", "Chị Hà")
    return prepared


def show_json(args: list[str], period: str = PERIOD) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        ok(*args, "cycle", "show", "--period", period, "--format", "json")
    )
    return document


# -- the happy path -------------------------------------------------------------------------------
def test_import_prepare_approve(ledger_args: list[str]) -> None:
    text = ok(*ledger_args, "import", "areas", str(AREAS))
    assert text == f"imported 3 areas from {AREAS}\n"
    text = ok(*ledger_args, "import", "roster", str(ROSTER))
    assert text == f"imported 12 rows from {ROSTER}: 12 added, 0 changed, 0 unchanged\n"
    text = ok(*ledger_args, "import", "roster", str(ROSTER))
    assert text.endswith("0 added, 0 changed, 12 unchanged\n")

    text = ok(*ledger_args, "cycle", "prepare", "--period", PERIOD)
    assert f"prepared: 10 instructions, total {PREPARED_TOTAL:,} VND" in text
    assert "1 held" in text
    assert re.search(r"viettelpay\s+7\s+5,310,000 VND", text)
    assert re.search(r"vietinbank\s+1\s+540,000 VND", text)
    assert re.search(r"vnpost\s+2\s+1,980,000 VND", text)

    text = ok(*ledger_args, "cycle", "approve", "--period", PERIOD, "--by", "Chị Hà")
    assert f"approved by Chị Hà: 9 instructions ready, total {APPROVED_TOTAL:,} VND" in text
    assert "1 held instructions cancelled" in text

    with Ledger.open(ledger_args[1]) as ledger:
        cycle = ledger.cycle(PERIOD)
    assert (cycle.state, cycle.approved_by, cycle.total) == ("approved", "Chị Hà", APPROVED_TOTAL)


def test_cycle_show_json_prepared(prepared: list[str]) -> None:
    document = show_json(prepared)
    assert list(document) == CYCLE_KEYS
    assert document["state"] == "prepared"
    assert (document["count"], document["total"]) == (10, PREPARED_TOTAL)
    states = {i["beneficiary_id"]: i["state"] for i in document["instructions"]}
    assert states["PL-0005"] == "HELD"
    assert {s for k, s in states.items() if k != "PL-0005"} == {"CREATED"}


def test_cycle_show_json_approved(approved: list[str]) -> None:
    document = show_json(approved)
    assert list(document) == CYCLE_KEYS
    assert document["programme"] == "monthly-allowance"
    assert document["period"] == PERIOD
    assert document["state"] == "approved"
    assert document["currency"] == "VND"
    assert (document["count"], document["total"]) == (9, APPROVED_TOTAL)

    items = document["instructions"]
    assert [i["beneficiary_id"] for i in items] == sorted(EXPECTED_AMOUNTS)
    by_id = {i["beneficiary_id"]: i for i in items}
    for item in items:
        assert list(item) == INSTRUCTION_KEYS
        assert re.fullmatch(r"202109-[0-9A-F]{20}", item["instruction_id"])
        assert type(item["amount"]) is int
        assert item["amount"] == EXPECTED_AMOUNTS[item["beneficiary_id"]]
        assert item["currency"] == "VND"
        assert item["payee_kind"] in {"beneficiary", "proxy"}
        assert item["channel"] in {"ewallet", "bank", "postal"}
        assert item["lines"], item
        for line in item["lines"]:
            assert list(line) == ["kind", "month", "amount"]
            assert re.fullmatch(r"\d{4}-\d{2}", line["month"])
            assert type(line["amount"]) is int
            assert line["kind"] in {"regular", "arrears"}
        assert sum(line["amount"] for line in item["lines"]) == item["amount"]
    # the control total leaves out what approval cancelled
    assert sum(i["amount"] for i in items if i["state"] != "CANCELLED") == document["total"]
    assert sum(i["state"] != "CANCELLED" for i in items) == document["count"]

    assert by_id["PL-0006"]["lines"] == [
        {"kind": "arrears", "month": "2021-06", "amount": 270_000},
        {"kind": "arrears", "month": "2021-07", "amount": 360_000},
        {"kind": "arrears", "month": "2021-08", "amount": 360_000},
        {"kind": "regular", "month": "2021-09", "amount": 360_000},
    ]
    held = by_id["PL-0005"]
    assert (held["state"], held["held_reason"]) == ("CANCELLED", "mandate expired")
    assert all(i["held_reason"] is None for k, i in by_id.items() if k != "PL-0005")
    assert {i["state"] for k, i in by_id.items() if k != "PL-0005"} == {"READY"}
    proxy = by_id["PL-0004"]
    assert (proxy["payee_kind"], proxy["payee"]) == ("proxy", "Phạm Thị Lan")
    assert (by_id["PL-0001"]["payee_kind"], by_id["PL-0001"]["payee"]) == (
        "beneficiary",
        "Nguyễn Thị Hoa",
    )
    assert (by_id["PL-0002"]["channel"], by_id["PL-0002"]["provider"]) == ("bank", "vietinbank")
    assert (by_id["PL-0003"]["channel"], by_id["PL-0003"]["provider"]) == ("postal", "vnpost")
    assert by_id["PL-0010"]["channel"] == "ewallet"  # the first address, not a fallback
    assert by_id["PL-0003"]["commune_code"] == "20110"
    # suspended and ceased beneficiaries get no instruction
    assert "PL-0007" not in by_id
    assert "PL-0008" not in by_id


def test_cycle_show_csv(approved: list[str]) -> None:
    text = ok(*approved, "cycle", "show", "--period", PERIOD, "--format", "csv")
    assert text.splitlines()[0] == ",".join(SHOW_COLUMNS)
    assert list(SHOW_COLUMNS) == [
        "instruction_id",
        "beneficiary_id",
        "payee",
        "channel",
        "provider",
        "amount",
        "state",
        "held_reason",
        "lines",
    ]
    rows = list(csv.DictReader(io.StringIO(text)))
    by_id = {r["beneficiary_id"]: r for r in rows}
    assert len(rows) == 10
    assert {k: int(r["amount"]) for k, r in by_id.items()} == EXPECTED_AMOUNTS
    assert by_id["PL-0006"]["lines"] == (
        "arrears 2021-06 270000; arrears 2021-07 360000; arrears 2021-08 360000; "
        "regular 2021-09 360000"
    )
    assert by_id["PL-0001"]["lines"] == "regular 2021-09 360000"
    assert by_id["PL-0001"]["held_reason"] == ""
    assert (by_id["PL-0005"]["state"], by_id["PL-0005"]["held_reason"]) == (
        "CANCELLED",
        "mandate expired",
    )
    assert by_id["PL-0004"]["payee"] == "Phạm Thị Lan"


def test_cycle_show_table(approved: list[str]) -> None:
    text = ok(*approved, "cycle", "show", "--period", PERIOD)
    lines = text.splitlines()
    assert lines[0].split() == list(SHOW_COLUMNS)
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + 10 + 2  # and the approval's digest, after a blank line
    assert lines[-1].startswith("approved: manifest sha256 ")
    row = next(line for line in lines if "PL-0006" in line)
    assert "1,350,000" in row
    assert "READY" in row


def test_report_changes_first_cycle(approved: list[str]) -> None:
    document = json.loads(
        ok(*approved, "report", "changes", "--period", PERIOD, "--format", "json")
    )
    assert list(document) == CHANGES_KEYS
    assert document["period"] == PERIOD
    assert document["previous_period"] is None
    assert document["currency"] == "VND"
    assert document["summary"] == {
        "added": 9,
        "removed": 0,
        "amount_changed": 0,
        "payee_changed": 0,
        "held": 1,
    }
    assert list(document["summary"]) == SUMMARY_KEYS
    changes = {c["beneficiary_id"]: c for c in document["changes"]}
    for change in document["changes"]:
        assert list(change) == CHANGE_KEYS
    assert changes["PL-0005"]["kind"] == "held"
    assert changes["PL-0005"]["amount"] == 540_000
    assert "mandate expired" in changes["PL-0005"]["reason"]
    assert changes["PL-0006"] == {
        "kind": "added",
        "beneficiary_id": "PL-0006",
        "commune_code": "20113",
        "previous_amount": None,
        "amount": 1_350_000,
        "reason": "first cycle in this ledger; arrears for 2021-06, 2021-07, 2021-08",
    }


def second_roster(path: Path) -> Path:
    with ROSTER.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_id = {r["beneficiary_id"]: r for r in rows}
    by_id["PL-0001"]["coefficient"] = "1,5"  # amount_changed
    by_id["PL-0002"]["status"] = "suspended"  # removed
    by_id["PL-0003"].update(
        channel="bank", provider="vietinbank", bank_bin="970415", account_number="5550001112"
    )  # payee_changed: channel
    by_id["PL-0004"]["msisdn"] = "0987000111"  # payee_changed: new address
    by_id["PL-0005"]["mandate_valid_until"] = "2022-12-31"  # back in payment with arrears
    rows.append(
        {
            **by_id["PL-0001"],
            "beneficiary_id": "PL-0013",
            "national_id": "046150001313",
            "coefficient": "",
            "first_period": "2021-10",
            "paid_through": "",
        }
    )
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_report_changes_against_the_previous_cycle(approved: list[str], tmp_path: Path) -> None:
    text = ok(*approved, "import", "roster", str(second_roster(tmp_path / "v2.csv")))
    assert text.endswith("1 added, 5 changed, 7 unchanged\n")
    ok(*approved, "cycle", "prepare", "--period", "2021-10")
    document = json.loads(
        ok(*approved, "report", "changes", "--period", "2021-10", "--format", "json")
    )
    assert list(document) == CHANGES_KEYS
    assert (document["period"], document["previous_period"]) == ("2021-10", "2021-09")
    assert document["summary"] == {
        "added": 2,
        "removed": 1,
        "amount_changed": 2,
        "payee_changed": 2,
        "held": 0,
    }
    kinds = [(c["beneficiary_id"], c["kind"]) for c in document["changes"]]
    assert kinds == [
        ("PL-0001", "amount_changed"),
        ("PL-0002", "removed"),
        ("PL-0003", "payee_changed"),
        ("PL-0004", "payee_changed"),
        ("PL-0005", "added"),
        ("PL-0006", "amount_changed"),
        ("PL-0013", "added"),
    ]
    changes = {(c["beneficiary_id"], c["kind"]): c for c in document["changes"]}
    amount = changes["PL-0001", "amount_changed"]
    assert (amount["previous_amount"], amount["amount"]) == (360_000, 540_000)
    removed = changes["PL-0002", "removed"]
    assert (removed["previous_amount"], removed["amount"]) == (540_000, None)
    assert "suspended" in removed["reason"]
    assert "channel postal → bank" in changes["PL-0003", "payee_changed"]["reason"]
    back = changes["PL-0005", "added"]
    assert back["amount"] == 2 * 540_000  # 2021-09 comes back as arrears
    assert "arrears for 2021-09" in back["reason"]
    assert changes["PL-0013", "added"]["reason"] == "new beneficiary from 2021-10"

    rows = list(
        csv.DictReader(
            io.StringIO(
                ok(*approved, "report", "changes", "--period", "2021-10", "--format", "csv")
            )
        )
    )
    assert [(r["beneficiary_id"], r["kind"]) for r in rows] == kinds
    assert rows[1]["amount"] == ""  # removed: no amount
    assert rows[1]["previous_amount"] == "540000"


def test_report_changes_csv_and_table(approved: list[str]) -> None:
    text = ok(*approved, "report", "changes", "--period", PERIOD, "--format", "csv")
    assert text.splitlines()[0] == ",".join(CHANGE_COLUMNS)
    assert list(CHANGE_COLUMNS) == CHANGE_KEYS
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 10
    assert {r["kind"] for r in rows} == {"added", "held"}
    first = rows[0]
    assert (first["beneficiary_id"], first["previous_amount"], first["amount"]) == (
        "PL-0001",
        "",
        "360000",
    )
    table = ok(*approved, "report", "changes", "--period", PERIOD)
    assert table.splitlines()[0].split() == CHANGE_KEYS
    assert "1,350,000" in table


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_rules_show(ledger_args: list[str], fmt: str) -> None:
    text = ok(*ledger_args, "rules", "show", "--format", fmt)
    if fmt == "json":
        document = json.loads(text)
        assert list(document) == ["name", "currency", "fingerprint", "rules"]
        assert document["currency"] == "VND"
        assert re.fullmatch(r"[0-9a-f]{64}", document["fingerprint"])
        rules = document["rules"]
        assert all(list(r) == ["kind", "code", "value", "description", "basis"] for r in rules)
        levels = [(r["code"], r["value"]) for r in rules if r["kind"] == "level"]
        assert levels == [("2014-01-01", 270_000), ("2021-07-01", 360_000), ("2024-07-01", 500_000)]
        categories = {r["code"]: r["value"] for r in rules if r["kind"] == "category"}
        assert categories["disabled_heavy"] == "1.5"
        assert categories["orphan_under4"] == "2.5"
        assert list(categories) == sorted(categories)
        assert [r["kind"] for r in rules].index("category") == 3  # levels first
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == ["kind", "code", "value", "description", "basis"]
        assert rows[2][:3] == ["level", "2021-07-01", "360000"]
        assert ["category", "elderly_80plus", "1.0"] in [r[:3] for r in rows]
    else:
        assert text.splitlines()[0].split()[:3] == ["kind", "code", "value"]
        assert "360,000" in text


def test_output_file(approved: list[str], tmp_path: Path) -> None:
    target = tmp_path / "out" / "cycle.json"
    target.parent.mkdir()
    code, text = run(
        *approved, "cycle", "show", "--period", PERIOD, "--format", "json", "--output", str(target)
    )
    assert (code, text) == (0, "")
    assert json.loads(target.read_text(encoding="utf-8")) == show_json(approved)
    report = tmp_path / "changes.csv"
    code, text = run(
        *approved, "report", "changes", "--period", PERIOD, "--format", "csv", "-o", str(report)
    )
    assert (code, text) == (0, "")
    assert report.read_text(encoding="utf-8").startswith(",".join(CHANGE_COLUMNS) + "\n")


def test_default_config_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --config the CLI reads ./sap-payments.toml: the providers are then checked."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(CONFIG, tmp_path / "sap-payments.toml")
    bad = tmp_path / "r.csv"
    bad.write_text(
        ROSTER.read_text(encoding="utf-8").replace(",viettelpay,0912345678", ",momo,0912345678"),
        encoding="utf-8",
    )
    code, _ = run("import", "roster", str(bad))
    assert code == 1
    assert "line 2, column provider: provider 'momo' is not configured" in capsys.readouterr().err
    ok("import", "roster", str(ROSTER))
    with Ledger.open(tmp_path / "sap-payments.db") as ledger:  # the default --db
        assert len(list(ledger.store.beneficiaries("monthly-allowance"))) == 12


# -- errors ---------------------------------------------------------------------------------------
def bad_roster(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    text = ROSTER.read_text(encoding="utf-8")
    path.write_text(text.replace(",1975-11-02,M,", ",1975-11-02,X,"), encoding="utf-8")
    return path


def test_bad_roster_exits_1_with_the_cause(
    ledger_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run(*ledger_args, "import", "roster", str(bad_roster(tmp_path)))
    err = capsys.readouterr().err
    assert code == 1
    assert text == ""
    lines = err.splitlines()
    assert lines[0] == f"error: {tmp_path / 'bad.csv'}: 1 problem; nothing was imported"
    assert lines[1:] == ["  line 3, column sex: must be M or F"]
    assert "Traceback" not in err
    with Ledger.open(ledger_args[1]) as ledger:
        assert list(ledger.store.beneficiaries("monthly-allowance")) == []


def test_debug_shows_the_traceback(
    ledger_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(*ledger_args, "--debug", "import", "roster", str(bad_roster(tmp_path)))
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "InvalidRoster" in err
    assert "error: " in err


def test_missing_file_exits_1(
    ledger_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(*ledger_args, "import", "roster", str(tmp_path / "nowhere.csv"))
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ")
    assert "nowhere.csv" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("period", ["2021-9", "09-2021", "2021-13", "next"])
def test_bad_period_is_a_usage_error(
    ledger_args: list[str], period: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(*ledger_args, "cycle", "prepare", "--period", period)
    err = capsys.readouterr().err
    assert code == 2
    assert "YYYY-MM" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [[], ["cycle"], ["cycle", "launch"], ["cycle", "approve", "--period", PERIOD], ["--bogus"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*argv)[0] == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--help")[0] == 0
    assert "usage:" in capsys.readouterr().out


def test_approve_twice_exits_1(approved: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code, text = run(*approved, "cycle", "approve", "--period", PERIOD, "--by", "Anh Nam")
    err = capsys.readouterr().err
    assert (code, text) == (1, "")
    assert err == "error: cycle 2021-09 (monthly-allowance): is already approved\n"
    with Ledger.open(approved[1]) as ledger:
        assert ledger.cycle(PERIOD).approved_by == "Chị Hà"


def test_approve_needs_a_name(prepared: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(*prepared, "cycle", "approve", "--period", PERIOD, "--by", "  ")
    assert code == 1
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize(
    "command", [["cycle", "show"], ["report", "changes"], ["cycle", "approve", "--by", "x"]]
)
def test_unknown_cycle_exits_1(
    prepared: list[str], command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code, text = run(*prepared, *command, "--period", "2021-10")
    err = capsys.readouterr().err
    assert (code, text) == (1, "")
    assert err.startswith("error: no cycle 2021-10 for programme monthly-allowance")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_bad_config_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "bad.toml"
    config.write_text('[providers.momo]\nplugin = "x"\n', encoding="utf-8")
    code, _ = run("--config", str(config), "rules", "show")
    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        f'error: {config}: providers.momo: needs channel = "ewallet", "bank" or "postal"\n'
    )


def test_internal_error_exits_70(
    ledger_args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("something unforeseen")

    monkeypatch.setitem(cli._COMMANDS, "rules", broken)
    code, _ = run(*ledger_args, "rules", "show")
    err = capsys.readouterr().err
    assert code == 70
    assert err == "internal error: RuntimeError; run again with --debug and report it\n"
    code, _ = run(*ledger_args, "--debug", "rules", "show")
    assert code == 70
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_exits_130(
    ledger_args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, "rules", interrupted)
    assert run(*ledger_args, "rules", "show")[0] == 130
    assert "interrupted" in capsys.readouterr().err


# -- the installed console script -----------------------------------------------------------------
def console_script() -> str:
    found = shutil.which("sap-payments", path=str(Path(sys.executable).parent))
    found = found or shutil.which("sap-payments")
    if found is None:  # pragma: no cover - the package is installed in the test environment
        pytest.fail("the sap-payments console script is not installed")
    return found


def test_console_script_end_to_end(tmp_path: Path) -> None:
    script = console_script()
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    base = [script, "--db", str(tmp_path / "l.db"), "--config", str(CONFIG)]

    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *argv],
            capture_output=True,
            text=True,
            encoding="utf-8",
            cwd=tmp_path,
            env=env,
            timeout=60,
            check=False,
        )

    for argv in (
        ("import", "areas", str(AREAS)),
        ("import", "roster", str(ROSTER)),
        ("cycle", "prepare", "--period", PERIOD),
        ("cycle", "approve", "--period", PERIOD, "--by", "Trưởng phòng BTXH"),
    ):
        done = call(*argv)
        assert done.returncode == 0, done.stderr
        # the first command creates the ledger and its keyring, and says so (docs/security.md)
        created = argv[:2] == ("import", "areas") and (tmp_path / "l.db.keyring").is_file()
        assert done.stderr == "" or (created and done.stderr.startswith("generated a keyring"))
    done = call("cycle", "show", "--period", PERIOD, "--format", "json")
    assert done.returncode == 0
    document = json.loads(done.stdout)
    assert (document["state"], document["count"], document["total"]) == (
        "approved",
        9,
        APPROVED_TOTAL,
    )

    failed = call("import", "roster", str(bad_roster(tmp_path)))
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith("error: ")
    assert "line 3, column sex" in failed.stderr
    assert "Traceback" not in failed.stderr

    usage = call("cycle", "show", "--period", "Sept")
    assert usage.returncode == 2
