"""A whole cycle through the bank channel's real file formats: the `iso20022-bank` plugin
writes pain.001 files, the bank simulator answers with pain.002 and camt.054, and the ledger
imports them exactly once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import RosterLoader, roster_row
from sap_payments import Config, InvalidRoster, Ledger
from sap_payments.testing.bank import BankSimulator

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "standards" / "iso20022"

TOML = """
[providers.vietinbank]
plugin = "iso20022-bank"
channel = "bank"
outbox = "{outbox}"
debtor_name = "Sở LĐ-TB&XH tỉnh Thừa Thiên Huế"
debtor_account = "102010001234567"
debtor_bank_bin = "970415"
max_batch = 4
"""


def validate(path: Path, schema: str) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"the ISO 20022 schemas are not here ({SHARED}); CI has them")
    etree = pytest.importorskip("lxml.etree")
    xsd = etree.XMLSchema(etree.parse(str(SHARED / schema)))
    document = etree.parse(str(path))
    assert xsd.validate(document), xsd.error_log


def bank_ledger(tmp_path: Path, n: int = 6) -> Ledger:
    config = tmp_path / "sap-payments.toml"
    config.write_text(TOML.format(outbox=(tmp_path / "outbox").as_posix()), encoding="utf-8")
    ledger = Ledger.open(tmp_path / "l.db", config=Config.load(config), durable=False)
    ledger.store.set_ledger_id("0123456789abcdef")  # the simulator's draws follow the ids
    rows = [
        roster_row(
            f"B{k}",
            full_name="Trần Thị Đào",
            channel="bank",
            provider="vietinbank",
            msisdn="",
            bank_bin="970415" if k % 2 else "970436",
            account_number=f"1020100{k:05d}",
        )
        for k in range(n)
    ]
    RosterLoader(tmp_path)(ledger, *rows)
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    return ledger


def states(ledger: Ledger) -> dict[str, str]:
    return {r.beneficiary_id: r.state for r, _ in ledger.instructions("2021-09")}


def test_a_cycle_through_bank_files(tmp_path: Path) -> None:
    with bank_ledger(tmp_path) as ledger:
        ledger.dispatch("2021-09")
        outbox = tmp_path / "outbox"
        files = sorted(outbox.glob("pain.001.*.xml"))
        assert len(files) == 2  # six transfers, four a file
        assert set(states(ledger).values()) == {"ACCEPTED"}
        for path in files:
            validate(path, "pain.001.001.09.xsd")
            manifest = json.loads(path.with_name(path.stem + ".manifest.json").read_text())
            assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            text = path.read_text(encoding="utf-8")
            assert "046" not in text.replace("0046", "")  # no national id leaves the agency
            assert "1940-01-01" not in text  # no birth date
        assert (
            sum(
                json.loads(p.with_name(p.stem + ".manifest.json").read_text())["control_sum"]
                for p in files
            )
            == 6 * 360_000
        )

        ledger.dispatch("2021-09")  # nothing left to send: no new file
        assert sorted(outbox.glob("pain.001.*.xml")) == files

        bank = BankSimulator(
            outbox, tmp_path / "inbox", seed=3, reject_per_mille=300, return_per_mille=300
        )
        answers = bank.process()
        assert len(answers) == 4  # a pain.002 and a camt.054 per file
        for path in answers:
            validate(
                path, "pain.002.001.10.xsd" if "pain.002" in path.name else "camt.054.001.08.xsd"
            )
        for path in answers:
            ledger.import_report(path, provider="vietinbank")
        final = states(ledger)
        assert set(final.values()) <= {"PAID", "FAILED", "RETURNED"}
        assert "PAID" in final.values()
        assert "FAILED" in final.values() or "RETURNED" in final.values()
        again = [ledger.import_report(path, provider="vietinbank") for path in answers]
        assert all(a.already_imported for a in again)
        assert bank.process() == []  # every file answered already
        ledger.close_cycle("2021-09")


def test_a_rejected_file_fails_every_payment_in_it(tmp_path: Path) -> None:
    with bank_ledger(tmp_path, n=3) as ledger:
        ledger.dispatch("2021-09")
        bank = BankSimulator(tmp_path / "outbox", tmp_path / "inbox", reject_file_per_mille=1000)
        for path in bank.process():
            ledger.import_report(path, provider="vietinbank")
        assert set(states(ledger).values()) == {"FAILED"}


def test_an_unknown_bank_is_refused_at_import(tmp_path: Path) -> None:
    config = tmp_path / "sap-payments.toml"
    config.write_text(TOML.format(outbox=(tmp_path / "outbox").as_posix()), encoding="utf-8")
    with Ledger.open(tmp_path / "l.db", config=Config.load(config), durable=False) as ledger:
        with pytest.raises(InvalidRoster) as caught:
            RosterLoader(tmp_path)(
                ledger,
                roster_row(
                    "B1",
                    channel="bank",
                    provider="vietinbank",
                    msisdn="",
                    bank_bin="999999",
                    account_number="123456789",
                ),
            )
        assert [(p.line, p.column) for p in caught.value.problems] == [(2, "bank_bin")]
        assert "NAPAS" in caught.value.problems[0].reason


def test_a_notification_s_other_entries_are_not_ours_and_are_left_alone(tmp_path: Path) -> None:
    with bank_ledger(tmp_path, n=2) as ledger:
        ledger.dispatch("2021-09")
        bank = BankSimulator(
            tmp_path / "outbox", tmp_path / "inbox", reject_per_mille=0, return_per_mille=0
        )
        notice = next(p for p in bank.process() if p.name.startswith("camt.054"))
        foreign = (
            '<Ntry><Amt Ccy="VND">15000</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>'
            "<BkTxCd/><NtryDtls><TxDtls><Refs><EndToEndId>BANK-FEE-2021-09</EndToEndId></Refs>"
            '<Amt Ccy="VND">15000</Amt><CdtDbtInd>DBIT</CdtDbtInd></TxDtls></NtryDtls></Ntry>'
        )
        text = notice.read_text(encoding="utf-8").replace("</Ntfctn>", foreign + "</Ntfctn>")
        notice.write_text(text, encoding="utf-8")
        validate(notice, "camt.054.001.08.xsd")
        done = ledger.import_report(notice, provider="vietinbank")
        assert (done.results, done.applied) == (2, 2)  # the bank fee is not one of ours
        assert set(states(ledger).values()) == {"PAID"}
