"""The mismatch rule (#12): an answer naming another amount, currency or account than the
instruction's is never applied — the instruction goes UNKNOWN with a review item — and only an
operator's decision moves it on.

The provider here is an outsider's: a small class written from the ``Provider`` protocol alone
(not from our sandbox), paying what it is sent but echoing whatever amount and account the test
makes it claim. The last test goes through the real GSMA adapter and the loopback sandbox
server, with a hostile network in between rewriting the amounts the server answers.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RosterLoader, open_ledger, roster_row, write_roster
from sap_payments import CycleStateError, Ledger, ReviewNotFound, ReviewRefused
from sap_payments.beneficiaries import BankAccount, Channel, FinancialAddress, WalletAddress
from sap_payments.cli import main
from sap_payments.dispatch import InvalidReport, apply_results, dispatch, import_report, reconcile
from sap_payments.money import Money
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    Result,
    ResultKind,
)

P = "2021-09"
PROGRAMME = "monthly-allowance"
MSISDN = {f"B{k}": f"091234567{k}" for k in range(3)}  # as the roster has them (local form)


class Echoing:
    """A provider that pays what it is sent and answers with what the test makes it claim."""

    def __init__(self, name: str = "viettelpay") -> None:
        self.name = name
        self.capabilities = Capabilities(channels=frozenset({Channel.EWALLET}), max_batch=10)
        self.kind: dict[str, ResultKind] = {}  # key → what it answers (default PAID)
        self.amount: dict[str, Money] = {}  # key → the amount it claims (default: the sent one)
        self.address: dict[str, FinancialAddress] = {}  # key → the account it claims
        self.echo_account = False  # name the account paid into (the one sent) in every answer
        self.books: dict[str, Payment] = {}
        self.submitted: list[str] = []
        self.asked: list[str] = []

    def _answer(self, payment: Payment) -> Result:
        sent = payment.address
        assert isinstance(sent, WalletAddress)
        claimed: dict[str, Any] = {}  # only when it names one (older Results had no field)
        if payment.key in self.address:
            claimed["address"] = self.address[payment.key]
        elif self.echo_account:  # echoes the number it paid into, as 09…, as many do
            claimed["address"] = WalletAddress("0" + sent.msisdn.removeprefix("+84"))
        return Result(
            payment.key,
            self.kind.get(payment.key, ResultKind.PAID),
            provider_reference=f"EC-{payment.key[-6:]}",
            amount=self.amount.get(payment.key, payment.amount),
            **claimed,
        )

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        for payment in payments:
            self.submitted.append(payment.key)
            self.books.setdefault(payment.key, payment)
        return [self._answer(self.books[p.key]) for p in payments]

    def status(self, keys: Sequence[str]) -> list[Result]:
        self.asked.extend(keys)
        return [
            self._answer(self.books[key])
            if key in self.books
            else Result(key, ResultKind.NOT_FOUND)
            for key in keys
        ]

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=True)

    def parse_report(self, data: bytes) -> list[Result]:
        return [self._answer(self.books[key]) for key in json.loads(data)]

    def close(self) -> None:
        pass


def approved(tmp_path: Path, n: int = 3) -> Ledger:
    ledger = open_ledger(tmp_path)
    RosterLoader(tmp_path)(ledger, *(roster_row(f"B{k}", msisdn=MSISDN[f"B{k}"]) for k in range(n)))
    ledger.prepare(P)
    ledger.approve(P, by="checker")
    return ledger


def ids(ledger: Ledger) -> dict[str, str]:
    return {r.beneficiary_id: r.instruction_id for r, _ in ledger.instructions(P)}


def states(ledger: Ledger) -> dict[str, str]:
    return {r.beneficiary_id: r.state for r, _ in ledger.instructions(P)}


def amount_of(ledger: Ledger) -> int:
    return next(r.amount for r, _ in ledger.instructions(P))


def kinds_of_events(ledger: Ledger, key: str) -> list[str]:
    return [event.kind for _, event in ledger.store.events(key)]


def test_a_provider_confirming_another_amount_is_not_paid_but_held_for_review(
    tmp_path: Path,
) -> None:
    with approved(tmp_path) as ledger:
        key = ids(ledger)
        provider = Echoing()
        provider.amount[key["B0"]] = Money(1000, "VND")  # "1000" for a 360,000 VND instruction
        provider.kind[key["B2"]] = ResultKind.PENDING
        done = dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert states(ledger) == {"B0": "UNKNOWN", "B1": "PAID", "B2": "ACCEPTED"}
        assert (done.sent, done.paid, done.pending, done.review, done.unknown) == (3, 1, 1, 1, 0)

        [item] = ledger.review_items(P)
        assert (item.instruction_id, item.provider, item.kind) == (
            key["B0"],
            "viettelpay",
            "amount_mismatch",
        )
        assert "1,000 VND" in item.detail
        assert f"{amount_of(ledger):,} VND" in item.detail
        assert item.resolved_at is None
        assert kinds_of_events(ledger, key["B0"])[-2:] == ["instruction.unknown", "review.raised"]
        moved = [e for _, e in ledger.store.events(key["B0"]) if e.kind == "instruction.unknown"]
        assert moved[0].from_state == "SUBMITTED"
        assert f"review item {item.item_id}" in (moved[0].detail or "")

        with pytest.raises(CycleStateError, match="review"):
            ledger.close_cycle(P)
        assert ledger.verify_audit().ok  # ACCEPTED/SUBMITTED → UNKNOWN are in the one table


def test_another_currency_is_its_own_kind_of_mismatch(tmp_path: Path) -> None:
    with approved(tmp_path, 1) as ledger:
        key = ids(ledger)["B0"]
        provider = Echoing()
        provider.amount[key] = Money(
            amount_of(ledger), "USD"
        )  # the same digits, not the same money
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert states(ledger) == {"B0": "UNKNOWN"}
        assert [i.kind for i in ledger.review_items(P)] == ["currency_mismatch"]


def test_a_provider_confirming_another_account_is_held_and_names_no_number(
    tmp_path: Path,
) -> None:
    with approved(tmp_path) as ledger:
        key = ids(ledger)
        provider = Echoing()
        provider.address[key["B1"]] = WalletAddress("0987654321")
        provider.address[key["B2"]] = BankAccount("970415", "102010001234567")  # not even a wallet
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert states(ledger) == {"B0": "PAID", "B1": "UNKNOWN", "B2": "UNKNOWN"}
        items = ledger.review_items(P)
        assert [(i.instruction_id, i.kind) for i in items] == [
            (key["B1"], "address_mismatch"),
            (key["B2"], "address_mismatch"),
        ]
        text = " ".join(i.detail for i in items) + " ".join(
            e.detail or "" for _, e in ledger.store.events()
        )
        for number in ("987654321", "102010001234567", "912345671", "912345672"):
            assert number not in text  # fingerprints only
        assert re.search(
            r"account [0-9a-f]{12}…, which differs from the instruction's [0-9a-f]{12}…", text
        )


def test_an_answer_that_matches_in_another_spelling_is_applied(tmp_path: Path) -> None:
    with approved(tmp_path) as ledger:
        provider = Echoing()  # echoes every MSISDN as 09… and the amount sent: a match
        provider.echo_account = True
        done = dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert set(states(ledger).values()) == {"PAID"}
        assert (done.paid, done.review) == (3, 0)
        assert ledger.review_items(P) == []
        ledger.close_cycle(P)


def test_a_status_answer_with_another_amount_moves_an_accepted_instruction_to_unknown(
    tmp_path: Path,
) -> None:
    with approved(tmp_path, 2) as ledger:
        key = ids(ledger)
        provider = Echoing()
        provider.kind = dict.fromkeys(key.values(), ResultKind.PENDING)
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert set(states(ledger).values()) == {"ACCEPTED"}
        provider.kind = {}  # now paid …
        provider.amount[key["B1"]] = Money(amount_of(ledger) * 10, "VND")  # … ten times over
        done = reconcile(ledger.store, P, providers={"viettelpay": provider})
        assert (done.queried, done.applied, done.held, done.errors) == (2, 1, 1, ())
        assert states(ledger) == {"B0": "PAID", "B1": "UNKNOWN"}
        moved = [e for _, e in ledger.store.events(key["B1"]) if e.kind == "instruction.unknown"]
        assert [(e.from_state, e.to_state) for e in moved] == [("ACCEPTED", "UNKNOWN")]


def test_while_a_review_is_open_no_answer_overrules_it(tmp_path: Path) -> None:
    with approved(tmp_path, 2) as ledger:
        key = ids(ledger)
        provider = Echoing()
        provider.amount[key["B0"]] = Money(1000, "VND")
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        provider.amount.clear()  # the provider now answers what was sent …
        provider.asked.clear()
        done = reconcile(ledger.store, P, providers={"viettelpay": provider})
        assert key["B0"] not in provider.asked  # … but it is not even asked
        assert (done.queried, done.under_review, done.open) == (0, 1, 1)
        # a callback or a report saying so is held, not applied; a matching one too
        for kind in (ResultKind.PAID, ResultKind.FAILED):
            outcome = apply_results(
                ledger.store,
                [Result(key["B0"], kind, amount=Money(amount_of(ledger), "VND"))],
                provider="viettelpay",
            )
            assert (outcome.applied, outcome.held) == (0, (key["B0"],))
        assert states(ledger)["B0"] == "UNKNOWN"
        assert kinds_of_events(ledger, key["B0"])[-2:] == ["result.held", "result.held"]
        assert len(ledger.review_items(P)) == 1  # held answers raise no new item


def test_resolving_as_paid_records_who_and_why_and_lets_the_cycle_close(tmp_path: Path) -> None:
    with approved(tmp_path, 2) as ledger:
        key = ids(ledger)
        provider = Echoing()
        provider.amount[key["B0"]] = Money(1000, "VND")
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        [item] = ledger.review_items(P)
        with pytest.raises(ReviewRefused, match="--no-money-moved"):
            ledger.resolve_review(item.item_id, "failed", by="Chị Hà", reason="phoned")
        ledger.resolve_review(item.item_id, "paid", by="Chị Hà", reason="VTP ticket 4411")
        assert states(ledger)["B0"] == "PAID"
        events = [e for _, e in ledger.store.events(key["B0"])]
        paid = events[-2]
        assert (paid.kind, paid.from_state, paid.to_state, paid.actor) == (
            "instruction.paid",
            "UNKNOWN",
            "PAID",
            "Chị Hà",
        )
        assert "VTP ticket 4411" in (paid.detail or "")
        assert (events[-1].kind, events[-1].actor) == ("review.resolved", "Chị Hà")
        [done] = ledger.review_items(P, include_resolved=True)
        assert (done.resolved_by, done.resolution) == ("Chị Hà", "paid: VTP ticket 4411")
        assert ledger.review_items(P) == []
        with pytest.raises(ReviewNotFound):
            ledger.resolve_review(999, "paid", by="Chị Hà", reason="x")
        ledger.close_cycle(P)
        assert ledger.verify_audit().ok


def test_resolving_as_resend_sends_the_same_key_again(tmp_path: Path) -> None:
    with approved(tmp_path, 1) as ledger:
        key = ids(ledger)["B0"]
        provider = Echoing()
        provider.amount[key] = Money(1000, "VND")
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        [item] = ledger.review_items(P)
        ledger.resolve_review(item.item_id, "resend", by="Anh Minh", reason="VTP voided EC-1")
        assert states(ledger) == {"B0": "READY"}
        provider.books.clear()  # it voided its record …
        provider.amount.clear()
        done = dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert provider.submitted == [key, key]  # … and gets the same key again
        assert (done.sent, done.paid) == (1, 1)
        assert states(ledger) == {"B0": "PAID"}


def test_resolving_as_failed_needs_the_operator_to_say_no_money_moved(tmp_path: Path) -> None:
    with approved(tmp_path, 1) as ledger:
        key = ids(ledger)["B0"]
        provider = Echoing()
        provider.address[key] = WalletAddress("0987654321")
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        [item] = ledger.review_items(P)
        ledger.resolve_review(
            item.item_id, "failed", by="Anh Minh", reason="VTP letter 12", no_money_moved=True
        )
        assert states(ledger) == {"B0": "FAILED"}
        with pytest.raises(ReviewRefused, match="already resolved"):
            ledger.resolve_review(item.item_id, "paid", by="Anh Minh", reason="again")


def test_a_report_file_naming_another_account_is_refused_whole(tmp_path: Path) -> None:
    with approved(tmp_path, 2) as ledger:
        key = ids(ledger)
        provider = Echoing()
        provider.kind = dict.fromkeys(key.values(), ResultKind.PENDING)
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        provider.kind = {}
        provider.address[key["B1"]] = WalletAddress("0987654321")
        report = tmp_path / "report.json"
        report.write_text(json.dumps(sorted(key.values())))
        with pytest.raises(InvalidReport, match="address_mismatch") as refused:
            import_report(ledger.store, provider, report)
        assert "987654321" not in str(refused.value)
        assert set(states(ledger).values()) == {"ACCEPTED"}  # nothing applied, B0 neither
        assert ledger.review_items(P) == []


def test_review_list_and_resolve_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with approved(tmp_path, 1) as ledger:
        key = ids(ledger)["B0"]
        provider = Echoing()
        provider.amount[key] = Money(1000, "VND")
        dispatch(ledger.store, P, providers={"viettelpay": provider})
    db = ["--db", str(tmp_path / "l.db")]
    out = io.StringIO()
    assert main([*db, "review", "list", "--period", P, "--format", "csv"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("item,instruction_id,provider,kind")
    assert len(lines) == 2
    assert f"{key},viettelpay,amount_mismatch" in lines[1]
    item = lines[1].split(",")[0]

    resolve = [*db, "review", "resolve", item, "--as", "failed", "--by", "Chị Hà", "--reason", "x"]
    assert main(resolve, out=io.StringIO()) == 1  # no --no-money-moved: refused, one line
    assert capsys.readouterr().err.startswith(f"error: review item {item}: 'failed' gives")
    out = io.StringIO()
    assert main([*resolve, "--no-money-moved"], out=out) == 0
    assert out.getvalue().startswith(f"review item {item} resolved as failed by Chị Hà")
    out = io.StringIO()
    assert main([*db, "review", "list", "--period", P], out=out) == 0
    assert key not in out.getvalue()


class Tampering(httpx.BaseTransport):
    """A hostile network: the server's answers reach the adapter with every amount rewritten."""

    def __init__(self, amount: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.amount = amount

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        if response.headers.get("content-type", "").startswith("application/json"):
            body = re.sub(rb'"amount": ?"[^"]*"', b'"amount": "%s"' % self.amount.encode(), body)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, content=body)

    def close(self) -> None:
        self.inner.close()


def test_through_the_gsma_adapter_a_tampered_amount_is_not_paid(tmp_path: Path) -> None:
    from sap_payments.gsma import GsmaProvider
    from sap_payments.testing.gsma_server import gsma_server

    roster = write_roster(tmp_path / "roster.csv", [roster_row("B0", msisdn="0912345670")])
    with (
        gsma_server() as server,
        httpx.Client(transport=Tampering("1000")) as client,
        GsmaProvider(
            "viettelpay", {"base_url": server.base_url, "poll_interval": 0}, client=client
        ) as provider,
        Ledger.open(tmp_path / "ledger.db", durable=False) as ledger,
    ):
        ledger.import_roster(roster)
        ledger.prepare(P)
        ledger.approve(P, by="checker")
        done = dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert states(ledger) == {"B0": "UNKNOWN"}, done
        [item] = ledger.review_items(P)
        assert item.kind == "amount_mismatch"
        assert "1,000 VND" in item.detail
