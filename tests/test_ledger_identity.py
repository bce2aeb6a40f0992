"""Every ledger has a random id, and every id and file that leaves it carries it: a report, an
answer or a confirmation made for another ledger (built from the same roster) is refused with
an error naming both ledgers, and nothing of it is applied."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import RosterLoader, roster_row
from sap_payments import Config, ForeignLedger, Ledger, Period, instruction_id
from sap_payments.beneficiaries import Channel
from sap_payments.cli import main
from sap_payments.config import DEFAULT_PROGRAMME, ProviderConfig
from sap_payments.gsma import GsmaProvider, correlation_id
from sap_payments.gsma._wire import DEFAULT_NAMESPACE
from sap_payments.gsma.callbacks import CallbackHandler
from sap_payments.iso20022.plugin import BankFileProvider, ledger_of_message
from sap_payments.plugins import open_provider
from sap_payments.providers import Capabilities, ResultKind
from sap_payments.sqlite_store import SQLiteStore
from sap_payments.testing import sandbox
from sap_payments.testing.bank import BankSimulator
from sap_payments.testing.conformance import default_payment
from sap_payments.testing.gsma_server import Exchange, GsmaSandboxServer, gsma_server
from sap_payments.testing.post_office import PostOfficeSimulator

P = "2021-09"
LEDGER_ID = re.compile(r"[0-9a-f]{16}")

BANK = """
[providers.vietinbank]
plugin = "iso20022-bank"
channel = "bank"
outbox = "{outbox}"
debtor_name = "Sở LĐ-TB&XH tỉnh Thừa Thiên Huế"
debtor_account = "102010001234567"
debtor_bank_bin = "970415"
max_batch = 4
"""

POSTAL = """
[providers.vnpost]
plugin = "postal-cash"
channel = "postal"
outbox = "{outbox}"
secret = "{secret}"
window_days = 10
"""


def _bank_rows(n: int) -> list[dict[str, str]]:
    return [
        roster_row(
            f"B{k}",
            channel="bank",
            provider="vietinbank",
            msisdn="",
            bank_bin="970415" if k % 2 else "970436",
            account_number=f"1020100{k:05d}",
        )
        for k in range(n)
    ]


def _ledger(directory: Path, toml: str, rows: list[dict[str, str]], **fields: str) -> Ledger:
    """A ledger in ``directory`` whose providers write into ``directory/outbox``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "sap-payments.toml"
    config.write_text(
        toml.format(outbox=(directory / "outbox").as_posix(), **fields), encoding="utf-8"
    )
    ledger = Ledger.open(directory / "l.db", config=Config.load(config), durable=False)
    RosterLoader(directory)(ledger, *rows)
    return ledger


def _dispatched(ledger: Ledger) -> Ledger:
    ledger.prepare(P)
    ledger.approve(P, by="checker")
    ledger.dispatch(P)
    return ledger


def _states(ledger: Ledger) -> dict[str, str]:
    return {r.beneficiary_id: r.state for r, _ in ledger.instructions(P)}


# -- the id --------------------------------------------------------------------------------------
def test_every_ledger_has_its_own_id_for_good(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "a.db", durable=False) as a:
        first = a.ledger_id
        assert LEDGER_ID.fullmatch(first)
        assert a.store.ledger_id == first
    with Ledger.open(tmp_path / "b.db", durable=False) as b:
        assert LEDGER_ID.fullmatch(b.ledger_id)
        assert b.ledger_id != first
    with Ledger.open(tmp_path / "a.db", durable=False) as again:
        assert again.ledger_id == first  # kept across openings


def test_a_ledger_made_before_ids_gets_one_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path, durable=False).close()
    db = sqlite3.connect(path)  # as schema version 6 left it: no ledger_identity, no leases
    db.executescript("DROP TABLE ledger_identity; DROP TABLE leases; DROP TABLE plugin_state; DROP TABLE review_items; DROP INDEX instructions_returned; PRAGMA user_version = 6;")
    db.close()
    with SQLiteStore(path, durable=False) as store:
        assert LEDGER_ID.fullmatch(store.ledger_id)


def test_instruction_ids_differ_between_ledgers_of_one_roster(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        with _ledger(tmp_path / name, BANK, _bank_rows(3)) as ledger:
            ledger.prepare(P)
            made = {r.beneficiary_id: r.instruction_id for r, _ in ledger.instructions(P)}
            assert made == {
                bid: instruction_id(
                    DEFAULT_PROGRAMME, Period.parse(P), bid, 1, ledger_id=ledger.ledger_id
                )
                for bid in ("B0", "B1", "B2")
            }
            assert all(re.fullmatch(r"202109-[0-9A-F]{20}", iid) for iid in made.values())
            ids.append(made)
    assert not set(ids[0].values()) & set(ids[1].values())


# -- bank files ----------------------------------------------------------------------------------
def test_bank_answers_for_another_ledger_are_refused_and_applied_to_their_own(
    tmp_path: Path,
) -> None:
    """Two ledgers from the same roster and month, each dispatched to the bank: the bank's
    answers to A's files, imported into B, are refused naming both ledgers and move nothing;
    imported into A they apply."""
    with (
        _dispatched(_ledger(tmp_path / "a", BANK, _bank_rows(6))) as a,
        _dispatched(_ledger(tmp_path / "b", BANK, _bank_rows(6))) as b,
    ):
        files = sorted((tmp_path / "a" / "outbox").glob("pain.001.*.xml"))
        assert len(files) == 2
        for path in files:  # MsgId and PmtInfId carry A's id; so does the manifest
            text = path.read_text(encoding="utf-8")
            (message_id,) = set(re.findall(r"<MsgId>([^<]+)</MsgId>", text))
            assert ledger_of_message(message_id) == a.ledger_id
            assert len(message_id) <= 35
            assert f"<PmtInfId>{message_id}</PmtInfId>" in text
            manifest = json.loads(path.with_name(path.stem + ".manifest.json").read_text())
            assert manifest["ledger_id"] == a.ledger_id
        answers = BankSimulator(
            tmp_path / "a" / "outbox",
            tmp_path / "inbox",
            seed=3,
            reject_per_mille=300,
            return_per_mille=300,
        ).process()
        assert len(answers) == 4
        assert {p.name[:8] for p in answers} == {"pain.002", "camt.054"}
        before = _states(b)
        events = sum(1 for _ in b.store.events())
        for path in answers:  # pain.002 and camt.054 alike
            with pytest.raises(ForeignLedger) as refused:
                b.import_report(path, provider="vietinbank")
            message = str(refused.value)
            assert "\n" not in message
            assert f"made for ledger {a.ledger_id}, not this ledger ({b.ledger_id})" in message
            assert path.name in message
            assert "nothing was applied" in message
            assert (refused.value.theirs, refused.value.ours) == (a.ledger_id, b.ledger_id)
        assert _states(b) == before == dict.fromkeys(before, "ACCEPTED")
        assert sum(1 for _ in b.store.events()) == events
        for path in answers:
            done = a.import_report(path, provider="vietinbank")
            assert not done.already_imported
        assert set(_states(a).values()) <= {"PAID", "FAILED", "RETURNED"}  # all answered


def test_import_reports_on_the_command_line_says_which_ledgers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        _dispatched(_ledger(tmp_path / "a", BANK, _bank_rows(2))) as a,
        _dispatched(_ledger(tmp_path / "b", BANK, _bank_rows(2))) as b,
    ):
        ours, theirs = b.ledger_id, a.ledger_id
    BankSimulator(tmp_path / "a" / "outbox", tmp_path / "inbox").process()
    code = main(
        [
            "import",
            "reports",
            str(tmp_path / "inbox"),
            "--provider",
            "vietinbank",
            "--db",
            str(tmp_path / "b" / "l.db"),
            "--config",
            str(tmp_path / "b" / "sap-payments.toml"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"made for ledger {theirs}, not this ledger ({ours})" in err
    assert len(err.strip().splitlines()) == 1


# -- plugins learn the id ------------------------------------------------------------------------
class _Strict:
    """A third-party plugin that refuses any setting it does not know (and knows nothing of
    ledgers): it must keep opening."""

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        if set(settings) - {"seed"}:
            raise ValueError(f"unknown settings {sorted(settings)}")
        self.name = name
        self.capabilities = Capabilities(channels=frozenset({Channel.EWALLET}))

    def submit(self, payments: object) -> list[object]:
        return []

    def status(self, keys: object) -> list[object]:
        return []

    def validate(self, address: object, payee_name: object = None) -> object:
        return None

    def parse_report(self, data: bytes) -> list[object]:
        return []

    def close(self) -> None:
        pass


def test_only_plugins_declaring_ledger_identity_are_told_and_settings_stay_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sap_payments.plugins.load_plugin", lambda name: _Strict)
    strict = open_provider(
        ProviderConfig("p", "strict", Channel.EWALLET, {"seed": 1}), ledger_id="0123456789abcdef"
    )
    assert strict.name == "p"
    monkeypatch.undo()
    bank = open_provider(
        ProviderConfig(
            "vietinbank",
            "iso20022-bank",
            Channel.BANK,
            {
                "outbox": str(tmp_path),
                "debtor_name": "Sở",
                "debtor_account": "102010001234567",
                "debtor_bank_bin": "970415",
            },
        ),
        ledger_id="0123456789abcdef",
    )
    assert isinstance(bank, BankFileProvider)
    assert bank.ledger_id == "0123456789abcdef"
    bank.close()
    sandboxed = sandbox.ewallet("s", {})  # no ledger_identity: works as before
    assert not sandboxed.capabilities.ledger_identity


# -- mobile money --------------------------------------------------------------------------------
@pytest.fixture
def server() -> Iterator[GsmaSandboxServer]:
    with gsma_server(record=True) as running:
        yield running


def _gsma(server: GsmaSandboxServer, ledger_id: str | None) -> GsmaProvider:
    provider = GsmaProvider("wallet", {"base_url": server.base_url, "poll_interval": 0})
    if ledger_id is not None:
        provider.bind_ledger(ledger_id)
    return provider


def _posted(server: GsmaSandboxServer) -> Exchange:
    """The one POST the server saw (it records an exchange just after answering it)."""
    for _ in range(500):
        posts = [e for e in server.exchanges if e.method == "POST"]
        if posts:
            (post,) = posts
            return post
        time.sleep(0.01)
    raise AssertionError("the server recorded no POST")


def test_gsma_correlation_ids_and_answers_belong_to_one_ledger(server: GsmaSandboxServer) -> None:
    ours, theirs = "0123456789abcdef", "fedcba9876543210"
    payment = default_payment("K1", Channel.EWALLET)
    with _gsma(server, ours) as provider, _gsma(server, theirs) as other:
        assert provider.submit([payment])[0].kind is ResultKind.PAID
        sent = _posted(server)
        namespace = uuid.uuid5(DEFAULT_NAMESPACE, f"ledger:{ours}")
        assert sent.request_headers["x-correlationid"] == correlation_id("K1", namespace)
        assert sent.request_headers["x-correlationid"] != correlation_id("K1")
        body = json.loads(sent.request_body)
        assert body["metadata"] == [{"key": "sapLedger", "value": ours}]
        # another ledger's provider does not find the payment under its own ids
        assert other.status(["K1"])[0].kind is ResultKind.NOT_FOUND
        answer = {
            "requestingOrganisationTransactionReference": "K1",
            "transactionStatus": "completed",
            "amount": "360000",
            "currency": "VND",
            "metadata": [{"key": "sapLedger", "value": theirs}],
        }
        with pytest.raises(ForeignLedger, match=f"ledger {theirs}, not this ledger \\({ours}\\)"):
            provider.parse_report(json.dumps(answer).encode())
        assert other.parse_report(json.dumps(answer).encode())[0].kind is ResultKind.PAID
        callback = CallbackHandler(provider)({}, json.dumps(answer).encode())
        assert callback.status == 400
        assert f"made for ledger {theirs}" in callback.detail
        assert CallbackHandler(other)({}, json.dumps(answer).encode()).status == 204


def test_gsma_payments_sent_before_the_ledger_had_an_id_are_still_found(
    server: GsmaSandboxServer,
) -> None:
    """A status query after the upgrade must not answer NOT_FOUND (and so let the payment go
    again) for a payment sent under the unbound namespace."""
    payment = default_payment("OLD-1", Channel.EWALLET)
    with _gsma(server, None) as before:
        assert before.submit([payment])[0].kind is ResultKind.PAID
    with _gsma(server, "0123456789abcdef") as after:
        assert after.status(["OLD-1"])[0].kind is ResultKind.PAID
        assert after.status(["NEVER"])[0].kind is ResultKind.NOT_FOUND
    assert server.paid("OLD-1") == 1


# -- cash at the post office ---------------------------------------------------------------------
def _cash_rows(n: int) -> list[dict[str, str]]:
    return [
        roster_row(f"C{k}", channel="postal", provider="vnpost", msisdn="", pay_point="BD-20107")
        for k in range(n)
    ]


def test_confirmations_for_another_ledgers_lists_are_refused(tmp_path: Path) -> None:
    secret = "5e" * 32
    with (
        _dispatched(_ledger(tmp_path / "a", POSTAL, _cash_rows(3), secret=secret)) as a,
        _dispatched(_ledger(tmp_path / "b", POSTAL, _cash_rows(3), secret=secret)) as b,
    ):
        outbox = tmp_path / "a" / "outbox"
        (manifest_path,) = outbox.glob("payout-*.manifest.json")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        assert manifest["ledger_id"] == a.ledger_id
        for path in outbox.glob("payout-*.csv"):
            with path.open(encoding="utf-8", newline="") as handle:
                assert {row["ledger"] for row in csv.DictReader(handle)} == {a.ledger_id}
        (answer,) = PostOfficeSimulator(outbox, tmp_path / "inbox", unclaimed_per_mille=0).process()
        before = _states(b)
        with pytest.raises(ForeignLedger) as refused:
            b.import_confirmations(answer, provider="vnpost")
        assert f"made for ledger {a.ledger_id}, not this ledger ({b.ledger_id})" in str(
            refused.value
        )
        assert _states(b) == before
        done = a.import_confirmations(answer, provider="vnpost")
        assert (done.applied, done.rejected) == (3, 0)
        assert set(_states(a).values()) == {"PAID"}
