"""The bank channel against answers that do not match what was sent (issue #12): every such
file is refused whole, named, and nothing of it applied; what the plugin must remember to read
the bank's answers is kept in the ledger, not in its outbox; a batch written again is the same
file; the bank's own codes and words are kept beside ours; a return for a closed account moves
the beneficiary to the mandate's next address.

The bank's files here are written by hand from the ISO 20022 structure (not by our simulator),
and real banks' samples from ``../shared/standards/iso20022/samples`` are used where they help.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RosterLoader, roster_row
from sap_payments import Config, Ledger, Period
from sap_payments.cli import main
from sap_payments.dispatch import payment_of
from sap_payments.iso20022.plugin import BankFileProvider, bank_files
from sap_payments.plugins import open_provider
from sap_payments.providers import ProviderError, ReportRefused, ResultKind
from sap_payments.testing.bank import BankSimulator
from sap_payments.testing.conformance import GARBAGE, check_provider

SAMPLES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "standards" / "iso20022" / "samples"
)
P = "2021-09"
PROGRAMME = "monthly-allowance"

TOML = """
[providers.vietinbank]
plugin = "iso20022-bank"
channel = "bank"
outbox = "{outbox}"
debtor_name = "Sở LĐ-TB&XH tỉnh Thừa Thiên Huế"
debtor_account = "102010001234567"
debtor_bank_bin = "970415"
max_batch = 4

[providers.vnpost]
plugin = "sandbox-postal"
channel = "postal"

[fallback_pay_points]
"20107" = "BD-20107"
"""

SETTINGS = {
    "debtor_name": "Sở LĐ-TB&XH tỉnh Thừa Thiên Huế",
    "debtor_account": "102010001234567",
    "debtor_bank_bin": "970415",
}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "sap-payments.toml"
    path.write_text(TOML.format(outbox=(tmp_path / "outbox").as_posix()), encoding="utf-8")
    return path


def _open(tmp_path: Path) -> Ledger:
    return Ledger.open(tmp_path / "l.db", config=Config.load(_config(tmp_path)), durable=False)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """Three beneficiaries paid by the bank (one pain.001 of three transfers), dispatched."""
    opened = _open(tmp_path)
    opened.store.set_ledger_id("0123456789abcdef")
    rows = [
        roster_row(
            f"B{k}",
            channel="bank",
            provider="vietinbank",
            msisdn="",
            bank_bin="970415",
            account_number=f"1020100{k:05d}",
        )
        for k in range(3)
    ]
    RosterLoader(tmp_path)(opened, *rows)
    opened.prepare(P)
    opened.approve(P, by="checker")
    opened.dispatch(P)
    with opened:
        yield opened


def _ids(ledger: Ledger, period: str = P) -> dict[str, str]:
    return {r.beneficiary_id: r.instruction_id for r, _ in ledger.instructions(period)}


def _states(ledger: Ledger) -> dict[str, str]:
    return {r.beneficiary_id: r.state for r, _ in ledger.instructions(P)}


def _pain001(tmp_path: Path) -> Path:
    (path,) = sorted((tmp_path / "outbox").glob("pain.001.*.xml"))
    return path


def _message_id(tmp_path: Path) -> str:
    return _pain001(tmp_path).stem.split("-", 1)[1]


# -- the bank's files, by hand ----------------------------------------------------------------
def pain002(message_id: str, group: str, *transactions: tuple[str, str, str, str]) -> bytes:
    """A pain.002.001.10 answering ``message_id``: group status ``group`` (with AC04 when
    RJCT), then (EndToEndId, TxSts, reason code, AddtlInf) per transaction."""
    body = "".join(
        f"<TxInfAndSts><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId><TxSts>{status}</TxSts>"
        + (f"<StsRsnInf><Rsn><Cd>{code}</Cd></Rsn><AddtlInf>{words}</AddtlInf></StsRsnInf>")
        + "</TxInfAndSts>"
        for e2e, status, code, words in transactions
    )
    reason = "<StsRsnInf><Rsn><Cd>AC04</Cd></Rsn></StsRsnInf>" if group == "RJCT" else ""
    block = (
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>{message_id}</OrgnlPmtInfId>{body}</OrgnlPmtInfAndSts>"
        if transactions
        else ""
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt>'
        "<GrpHdr><MsgId>BANK-STS-1</MsgId><CreDtTm>2021-09-07T09:00:00+07:00</CreDtTm></GrpHdr>"
        f"<OrgnlGrpInfAndSts><OrgnlMsgId>{message_id}</OrgnlMsgId>"
        f"<OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId><GrpSts>{group}</GrpSts>{reason}"
        f"</OrgnlGrpInfAndSts>{block}</CstmrPmtStsRpt></Document>\n"
    ).encode()


def camt054(*entries: tuple[str, int, str, str | None]) -> bytes:
    """A camt.054.001.08: per (EndToEndId, amount, DBIT or CRDT, return reason) one booked
    entry of one detail."""
    body = "".join(
        f'<Ntry><Amt Ccy="VND">{amount}</Amt><CdtDbtInd>{side}</CdtDbtInd>'
        "<Sts><Cd>BOOK</Cd></Sts><BkTxCd/><NtryDtls><TxDtls>"
        f'<Refs><EndToEndId>{e2e}</EndToEndId></Refs><Amt Ccy="VND">{amount}</Amt>'
        + (f"<RtrInf><Rsn><Cd>{why}</Cd></Rsn></RtrInf>" if why else "")
        + "</TxDtls></NtryDtls></Ntry>"
        for e2e, amount, side, why in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">'
        "<BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>BANK-NTF-1</MsgId>"
        "<CreDtTm>2021-09-07T09:00:00+07:00</CreDtTm></GrpHdr><Ntfctn><Id>N1</Id>"
        "<CreDtTm>2021-09-07T09:00:00+07:00</CreDtTm>"
        "<Acct><Id><Othr><Id>102010001234567</Id></Othr></Id></Acct>"
        f"{body}</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>\n"
    ).encode()


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "inbox" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _imported(ledger: Ledger, path: Path) -> bool:
    return (
        ledger.store.find_import("report", hashlib.sha256(path.read_bytes()).hexdigest())
        is not None
    )


# -- what the plugin remembers is the ledger's ---------------------------------------------------
def test_a_lost_outbox_loses_nothing_the_answers_need(ledger: Ledger, tmp_path: Path) -> None:
    """The outbox folder moved or lost after dispatch: the bank's camt.054 still settles every
    payment (it was imported as "0 results" and the payments stayed ACCEPTED for ever)."""
    ids = _ids(ledger)
    shutil.move(tmp_path / "outbox", tmp_path / "outbox-moved")
    ledger.close()
    with _open(tmp_path) as reopened:  # a new run: the plugin opened afresh
        notice = _file(
            tmp_path, "camt.054.xml", camt054(*((ids[b], 360_000, "DBIT", None) for b in ids))
        )
        done = reopened.import_report(notice, provider="vietinbank")
        assert (done.results, done.applied) == (3, 3)
        assert set(_states(reopened).values()) == {"PAID"}


def test_an_old_register_in_the_outbox_is_read_into_the_ledger_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    """A ledger whose plugin kept its register in the outbox (register.db): the first open
    reads it into the ledger, so a group reject still fails every payment of the file."""
    message_id = _message_id(tmp_path)
    ids = _ids(ledger)
    ledger.close()
    db = sqlite3.connect(tmp_path / "l.db")  # as an older version left it: nothing in the ledger
    db.execute("DELETE FROM plugin_state")
    db.commit()
    db.close()
    register = sqlite3.connect(tmp_path / "outbox" / "register.db")
    register.execute(
        "CREATE TABLE sent (key TEXT PRIMARY KEY, message_id TEXT NOT NULL, "
        "amount INTEGER NOT NULL, currency TEXT NOT NULL)"
    )
    register.executemany(
        "INSERT INTO sent VALUES (?, ?, 360000, 'VND')", [(k, message_id) for k in ids.values()]
    )
    register.commit()
    register.close()
    with _open(tmp_path) as reopened:
        rejected = _file(tmp_path, "pain.002.xml", pain002(message_id, "RJCT"))
        done = reopened.import_report(rejected, provider="vietinbank")
        assert (done.results, done.applied) == (3, 3)
        assert set(_states(reopened).values()) == {"FAILED"}
    assert not (tmp_path / "outbox" / "register.db").exists()
    assert (tmp_path / "outbox" / "register.db.migrated").is_file()


# -- answers that match nothing we sent ------------------------------------------------------------
def test_a_notification_holding_nothing_of_ours_is_refused_not_imported(
    ledger: Ledger, tmp_path: Path
) -> None:
    fees = _file(tmp_path, "camt.054-fees.xml", camt054(("BANK-FEE-2021-09", 15_000, "DBIT", None)))
    with pytest.raises(ReportRefused) as refused:
        ledger.import_report(fees, provider="vietinbank")
    assert str(fees) in str(refused.value)
    assert "none of them ours" in str(refused.value)
    assert not _imported(ledger, fees)  # not recorded: it was not applied
    assert set(_states(ledger).values()) == {"ACCEPTED"}


@pytest.mark.parametrize("what", ["a group reject of a message", "a transaction"])
def test_an_answer_naming_what_we_never_sent_is_refused_whole(
    ledger: Ledger, tmp_path: Path, what: str
) -> None:
    """A group reject naming a message we never sent, and a status naming a transaction we
    never sent, are treated alike: refused whole, named, nothing applied, not recorded."""
    ids = _ids(ledger)
    ours = _message_id(tmp_path)
    if what == "a transaction":  # ours, and one transaction that is not
        data = pain002(
            ours,
            "PART",
            (ids["B0"], "ACSC", "", ""),
            ("202109-00000000000000000000", "ACSC", "", ""),
        )
        named = "202109-00000000000000000000"
    else:  # a message of this ledger's shape that was never written
        named = "SAP-0123456789abcdef-00000000000000"
        data = pain002(named, "RJCT")
    path = _file(tmp_path, "pain.002.xml", data)
    with pytest.raises(ReportRefused) as refused:
        ledger.import_report(path, provider="vietinbank")
    message = str(refused.value)
    assert str(path) in message
    assert named in message
    assert "never sent" in message
    assert not _imported(ledger, path)
    assert set(_states(ledger).values()) == {"ACCEPTED"}


def test_a_transaction_answered_under_another_message_is_refused(
    ledger: Ledger, tmp_path: Path
) -> None:
    ids = _ids(ledger)
    provider = ledger.provider_instances()["vietinbank"]
    assert isinstance(provider, BankFileProvider)
    # a second file, for a payment of another cycle's shape, so that two messages exist
    other = provider.state.get_json("message", _message_id(tmp_path))
    provider.state.put_json("message", "SAP-0123456789abcdef-FFFFFFFFFFFFFF", {**other, "keys": []})
    data = pain002("SAP-0123456789abcdef-FFFFFFFFFFFFFF", "ACCP", (ids["B1"], "RJCT", "AC01", "x"))
    path = _file(tmp_path, "pain.002.xml", data)
    with pytest.raises(ReportRefused, match="was sent in message"):
        ledger.import_report(path, provider="vietinbank")


@pytest.mark.parametrize(
    "data", [*GARBAGE, b"<?xml version='1.0'?>\n<Document><CstmrCdtTrfInitn/></Document>"]
)
def test_every_parse_failure_is_a_provider_error_with_its_place(
    tmp_path: Path, data: bytes
) -> None:
    provider = bank_files("vietinbank", {**SETTINGS, "outbox": str(tmp_path)})
    with pytest.raises(ProviderError) as refused:
        provider.parse_report(data)
    assert isinstance(refused.value, ReportRefused)
    assert "<bytes>" not in str(refused.value)
    if data.strip():  # an empty file has no line to name
        assert refused.value.line is not None, str(refused.value)


def test_a_refusal_names_the_file_on_the_command_line(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _file(tmp_path, "pain.002-broken.xml", b"<?xml version='1.0'?>\n<Document>\n<Cstmr")
    ledger.close()
    code = main(
        [
            "--db",
            str(tmp_path / "l.db"),
            "--config",
            str(_config(tmp_path)),
            "import",
            "reports",
            str(broken),
            "--provider",
            "vietinbank",
        ]
    )
    error = capsys.readouterr().err
    assert code == 1
    assert re.search(rf"error: .*{re.escape(str(broken))}, line 3", error), error
    assert "<bytes>" not in error


@pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"the real banks' samples are not here ({SAMPLES})"
)
@pytest.mark.parametrize(
    "sample",
    [
        "pain.002.001.10_hbci4java_vop-rcvc.xml",  # a German bank answering someone else's file
        "camt.054.001.08_genkgo_v8.xml",  # Swiss account notifications: none of it ours
        "camt.054.001.08_postfinance_v2019.xml",
    ],
)
def test_real_banks_answers_to_other_files_are_refused(
    ledger: Ledger, tmp_path: Path, sample: str
) -> None:
    with pytest.raises(ReportRefused) as refused:
        ledger.import_report(SAMPLES / sample, provider="vietinbank")
    assert str(SAMPLES / sample) in str(refused.value)
    assert not _imported(ledger, SAMPLES / sample)


# -- the same batch, the same bytes --------------------------------------------------------------
def test_a_batch_written_again_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CreDtTm is the time the ledger committed the batch, not the wall clock: a batch whose
    file was written but whose state never reached the ledger (a crash in between) is written
    again, byte for byte."""
    monkeypatch.setattr("sap_payments.dispatch._now", lambda: "2021-09-06T01:02:03+00:00")
    ledger = _open(tmp_path)
    RosterLoader(tmp_path)(
        ledger,
        *(
            roster_row(
                f"B{k}",
                channel="bank",
                provider="vietinbank",
                msisdn="",
                bank_bin="970415",
                account_number=f"1020100{k:05d}",
            )
            for k in range(3)
        ),
    )
    ledger.prepare(P)
    ledger.approve(P, by="checker")
    ledger.dispatch(P)
    with ledger:
        path = _pain001(tmp_path)
        first = path.read_bytes()
        (batch,) = ledger.store.batches(PROGRAMME, Period.parse(P).ordinal)
        assert batch.created_at == "2021-09-06T01:02:03+00:00"
        assert b"<CreDtTm>2021-09-06T01:02:03+00:00</CreDtTm>" in first
        # the crash: the file is there, the plugin's state is not
        db = sqlite3.connect(tmp_path / "l.db")
        db.execute("DELETE FROM plugin_state")
        db.commit()
        db.close()
        path.unlink()
        provider = open_provider(
            ledger.config.providers["vietinbank"], ledger_id=ledger.ledger_id, store=ledger.store
        )
        records = ledger.store.instructions_by_id(sorted(_ids(ledger).values()))
        payments = [
            payment_of(r, f"{PROGRAMME} {P}", batch_created_at=batch.created_at) for r in records
        ]
        assert {r.kind for r in provider.submit(payments)} == {ResultKind.PENDING}
        assert path.read_bytes() == first


# -- the bank's own words, and a closed account ----------------------------------------------------
def test_the_banks_code_and_words_are_kept_beside_our_reason(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _ids(ledger)
    data = pain002(
        _message_id(tmp_path),
        "PART",
        (ids["B0"], "RJCT", "AC01", "So tai khoan 102010000000 khong dung"),
        (ids["B1"], "ACSC", "", ""),
    )
    ledger.import_report(_file(tmp_path, "pain.002.xml", data), provider="vietinbank")
    simulator = BankSimulator(tmp_path / "outbox", tmp_path / "inbox")
    ledger.import_report(simulator.return_payments([ids["B1"]], "AC04"), provider="vietinbank")
    details = {e.to_state: e.detail for _, e in ledger.store.events(ids["B0"])}
    assert details["FAILED"] == (
        'unknown_account; code "AC01"; message "So tai khoan ***000 khong dung"'
    )  # an account number the bank quotes is masked
    returned = [e.detail for _, e in ledger.store.events(ids["B1"]) if e.to_state == "RETURNED"]
    assert returned == ['closed_account; code "AC04"; message "Account closed"']
    ledger.close()
    argv = [
        "--db",
        str(tmp_path / "l.db"),
        "--config",
        str(_config(tmp_path)),
        "cycle",
        "show",
        "--period",
        P,
    ]
    assert main([*argv, "--format", "json"]) == 0
    shown = {i["beneficiary_id"]: i for i in json.loads(capsys.readouterr().out)["instructions"]}
    assert (shown["B0"]["reason"], shown["B0"]["provider_code"]) == ("unknown_account", "AC01")
    assert (shown["B1"]["reason"], shown["B1"]["provider_code"]) == ("closed_account", "AC04")
    assert shown["B1"]["provider_message"] == "Account closed"
    assert shown["B2"]["reason"] is None
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert f'{ids["B1"]}  closed_account  AC04 "Account closed"' in table


def test_a_return_for_a_closed_account_moves_to_the_next_address(
    ledger: Ledger, tmp_path: Path
) -> None:
    """camt.054 brings B0's payment back, AC04 (closed account): October pays B0 — September
    as arrears — in cash at the commune's pay point, as after a FAILED dead account."""
    ids = _ids(ledger)
    paid = _file(
        tmp_path, "camt.054-paid.xml", camt054(*((ids[b], 360_000, "DBIT", None) for b in ids))
    )
    ledger.import_report(paid, provider="vietinbank")
    back = _file(tmp_path, "camt.054-back.xml", camt054((ids["B0"], 360_000, "CRDT", "AC04")))
    ledger.import_report(back, provider="vietinbank")
    assert _states(ledger) == {"B0": "RETURNED", "B1": "PAID", "B2": "PAID"}
    ledger.close_cycle(P)
    ledger.prepare("2021-10")
    october = {r.beneficiary_id: r for r, _ in ledger.instructions("2021-10")}
    assert (october["B0"].channel, october["B0"].address, october["B0"].provider) == (
        "postal",
        "postal:BD-20107",
        "vnpost",
    )
    assert october["B0"].amount == 2 * 360_000
    assert october["B1"].address == "bank:970415:102010000001"


# -- the conformance kit, with its own keys ------------------------------------------------------
def test_the_plugin_passes_the_conformance_kit_with_its_default_keys(tmp_path: Path) -> None:
    """The kit's keys (``conf-<hex>-<check>-<n>``, longer than an EndToEndId may be) are sent
    under derived EndToEndIds and mapped back."""
    check_provider(bank_files, {**SETTINGS, "outbox": str(tmp_path / "outbox")})
