"""``cycle reconcile`` names every provider it could not ask, and exits 1 (#12): refused
credentials used to be swallowed ("0 queried, 2 still open", exit 0)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from conftest import RosterLoader, open_ledger, roster_row, write_roster
from sap_payments import Ledger
from sap_payments.beneficiaries import Channel, FinancialAddress
from sap_payments.cli import main
from sap_payments.dispatch import dispatch, reconcile
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    ProviderError,
    Result,
    ResultKind,
)

P = "2021-09"


class Wallet:
    """Accepts (PENDING) what it is sent; ``status`` answers PAID, or raises ``failure``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.capabilities = Capabilities(channels=frozenset({Channel.EWALLET}), max_batch=2)
        self.failure: BaseException | None = None
        self.asked: list[str] = []

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        return [Result(p.key, ResultKind.PENDING) for p in payments]

    def status(self, keys: Sequence[str]) -> list[Result]:
        self.asked.extend(keys)
        if self.failure is not None:
            raise self.failure
        return [Result(key, ResultKind.PAID) for key in keys]

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=True)

    def parse_report(self, data: bytes) -> list[Result]:
        return []

    def close(self) -> None:
        pass


def accepted(tmp_path: Path) -> tuple[Ledger, dict[str, Wallet]]:
    """Three instructions of wallet-a (two batches), two of wallet-b: all ACCEPTED."""
    ledger = open_ledger(tmp_path)
    rows = [
        roster_row(f"B{k}", msisdn=f"09123456{k:02d}", provider="wallet-a" if k < 3 else "wallet-b")
        for k in range(5)
    ]
    RosterLoader(tmp_path)(ledger, *rows)
    ledger.prepare(P)
    ledger.approve(P, by="checker")
    wallets = {name: Wallet(name) for name in ("wallet-a", "wallet-b")}
    dispatch(ledger.store, P, providers=dict(wallets))
    assert {r.state for r, _ in ledger.instructions(P)} == {"ACCEPTED"}
    return ledger, wallets


def states(ledger: Ledger) -> dict[str, str]:
    return {r.beneficiary_id: r.state for r, _ in ledger.instructions(P)}


def test_refused_credentials_are_reported_and_the_other_providers_still_asked(
    tmp_path: Path,
) -> None:
    ledger, wallets = accepted(tmp_path)
    with ledger:
        wallets["wallet-a"].failure = ProviderError(
            "wallet-a", "credentials refused (401)", provider_code="401"
        )
        done = reconcile(ledger.store, P, providers=dict(wallets))
        assert done.errors == (
            "provider wallet-a: credentials refused (401) (3 open instructions not queried)",
        )
        assert len(wallets["wallet-a"].asked) == 2  # one refused call, not one per batch
        assert (done.queried, done.applied, done.open) == (2, 2, 3)
        assert states(ledger) == {
            "B0": "ACCEPTED",
            "B1": "ACCEPTED",
            "B2": "ACCEPTED",
            "B3": "PAID",
            "B4": "PAID",
        }


def test_a_plugin_bug_in_status_and_a_missing_provider_are_errors_too(tmp_path: Path) -> None:
    ledger, wallets = accepted(tmp_path)
    with ledger:
        wallets["wallet-b"].failure = KeyError("transactionStatus")
        done = reconcile(ledger.store, P, providers={"wallet-b": wallets["wallet-b"]})
        assert done.errors == (
            "provider wallet-a is not configured: 3 open instructions could not be queried",
            "provider wallet-b: the plugin failed in status (KeyError); 2 open instructions "
            "not queried",
        )
        assert done.open == 5


def test_reconcile_on_the_command_line_exits_1_with_one_line_per_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    ledger, wallets = accepted(tmp_path)
    ledger.close()
    wallets["wallet-a"].failure = ProviderError("wallet-a", "credentials refused (401)")
    wallets["wallet-b"].failure = ProviderError("wallet-b", "no answer in time")
    monkeypatch.setattr(Ledger, "provider_instances", lambda self: dict(wallets))
    out = io.StringIO()
    code = main(["--db", str(tmp_path / "l.db"), "cycle", "reconcile", "--period", P], out=out)
    assert code == 1
    assert out.getvalue() == (
        "cycle 2021-09: 0 queried, 0 results applied, 0 stale results ignored; 5 still open\n"
    )
    assert capsys.readouterr().err.splitlines() == [
        "error: provider wallet-a: credentials refused (401) (3 open instructions not queried)",
        "error: provider wallet-b: no answer in time (2 open instructions not queried)",
    ]
    wallets["wallet-a"].failure = wallets["wallet-b"].failure = None  # fixed: exit 0
    out = io.StringIO()
    code = main(["--db", str(tmp_path / "l.db"), "cycle", "reconcile", "--period", P], out=out)
    assert code == 0
    assert out.getvalue().endswith("; 0 still open\n")


def test_refused_credentials_of_the_gsma_sandbox_are_reported(tmp_path: Path) -> None:
    from sap_payments.gsma import GsmaProvider
    from sap_payments.testing.gsma_server import Faults, gsma_server

    roster = write_roster(tmp_path / "roster.csv", [roster_row("B0", msisdn="0912345670")])
    with (
        gsma_server(api_key="right", faults=Faults(pending_polls=1000, poll_limit=1)) as server,
        Ledger.open(tmp_path / "ledger.db", durable=False) as ledger,
    ):
        settings = {"base_url": server.base_url, "poll_interval": 0, "backoff": 0.001}
        ledger.import_roster(roster)
        ledger.prepare(P)
        ledger.approve(P, by="checker")
        with GsmaProvider("viettelpay", {**settings, "api_key": "right"}) as good:
            dispatch(ledger.store, P, providers={"viettelpay": good})
        assert set(states(ledger).values()) <= {"ACCEPTED", "UNKNOWN"}
        with GsmaProvider("viettelpay", {**settings, "api_key": "wrong"}) as refused:
            done = reconcile(ledger.store, P, providers={"viettelpay": refused})
        [error] = done.errors
        assert error.startswith("provider viettelpay: ")
        assert (done.queried, done.open) == (0, 1)
