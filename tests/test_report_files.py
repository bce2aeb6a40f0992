"""Provider report files applied exactly once, all or nothing (`import reports`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from conftest import RosterLoader, roster_row
from sap_payments import Config, Ledger
from sap_payments.cli import main
from sap_payments.dispatch import InvalidReport

TOML = """
[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"
state = "{state}"
late_per_mille = 0
fail_per_mille = 0
"""


def setup(tmp_path: Path) -> Ledger:
    config = tmp_path / "sap-payments.toml"
    config.write_text(TOML.format(state=tmp_path / "books.db"), encoding="utf-8")
    ledger = Ledger.open(tmp_path / "l.db", config=Config.load(config), durable=False)
    RosterLoader(tmp_path)(ledger, *(roster_row(f"B{k}", msisdn=f"091234567{k}") for k in range(3)))
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    ledger.dispatch("2021-09")
    return ledger


def report_file(tmp_path: Path, ledger: Ledger, name: str = "report-1.json") -> Path:
    sandbox = ledger.provider_instances()["viettelpay"]
    documents = sandbox.reports()  # type: ignore[attr-defined]
    assert documents, "the sandbox queued no report"
    path = tmp_path / name
    path.write_bytes(documents[0])
    return path


def states(ledger: Ledger) -> list[str]:
    return sorted(r.state for r, _ in ledger.instructions("2021-09"))


def test_a_report_applies_once(tmp_path: Path) -> None:
    with setup(tmp_path) as ledger:
        path = report_file(tmp_path, ledger)
        first = ledger.import_report(path, provider="viettelpay")
        assert (first.results, first.applied, first.already_imported) == (3, 3, False)
        assert states(ledger) == ["PAID", "PAID", "PAID"]
        events = len(list(ledger.store.events()))
        again = ledger.import_report(path, provider="viettelpay")
        assert again.already_imported
        assert len(list(ledger.store.events())) == events  # nothing at all happened


def test_a_report_naming_unknown_instructions_or_wrong_amounts_is_refused_whole(
    tmp_path: Path,
) -> None:
    with setup(tmp_path) as ledger:
        path = report_file(tmp_path, ledger)
        document = json.loads(path.read_bytes())
        document["results"][0]["key"] = "202109-NOTOURS"
        document["results"][1]["amount"] = 1
        document["results"][1]["currency"] = "VND"
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(document), encoding="utf-8")
        with pytest.raises(InvalidReport) as caught:
            ledger.import_report(bad, provider="viettelpay")
        reasons = dict(caught.value.problems)
        assert "no instruction of provider viettelpay" in reasons["202109-NOTOURS"]
        assert "amount_mismatch" in next(r for k, r in reasons.items() if k != "202109-NOTOURS")
        assert states(ledger) == ["ACCEPTED", "ACCEPTED", "ACCEPTED"]  # nothing applied
        assert ledger.store.query("SELECT count(*) FROM imports WHERE kind = 'report'") == [(0,)]


def test_the_command_line_takes_an_inbox_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with setup(tmp_path) as ledger:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        report_file(inbox, ledger)
    out = io.StringIO()
    args = ["--db", str(tmp_path / "l.db"), "--config", str(tmp_path / "sap-payments.toml")]
    assert main([*args, "import", "reports", str(inbox), "--provider", "viettelpay"], out=out) == 0
    assert "3 results, 3 applied" in out.getvalue()
    out = io.StringIO()
    assert main([*args, "import", "reports", str(inbox), "--provider", "viettelpay"], out=out) == 0
    assert "imported before" in out.getvalue()
    (inbox / "garbage.json").write_text("{not json", encoding="utf-8")
    code = main(
        [*args, "import", "reports", str(inbox / "garbage.json"), "--provider", "viettelpay"],
        out=io.StringIO(),
    )
    assert code == 1
    assert "malformed report" in capsys.readouterr().err
