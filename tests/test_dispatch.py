"""Dispatch, reconciliation and closing against a scripted provider.

The provider here is a test double whose every answer the test chooses; the sandbox providers
(``sap_payments.testing``) and the state-machine test exercise the same engine with seeded
faults.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import (
    Channel,
    Config,
    CycleStateError,
    Ledger,
    Period,
)
from sap_payments.dispatch import apply_results, close_cycle, dispatch, reconcile
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    ProviderTimeout,
    ProviderUnavailable,
    Reason,
    Result,
    ResultKind,
)

P = "2021-09"
PROGRAMME = "monthly-allowance"


class Scripted:
    """A provider whose answers the test sets per key; it moves money once per key."""

    def __init__(self, name: str = "viettelpay", channel: Channel = Channel.EWALLET) -> None:
        self.name = name
        self.capabilities = Capabilities(channels=frozenset({channel}), max_batch=2)
        self.outcome: dict[str, Result] = {}  # what submit/status answer, by key
        self.default = ResultKind.PENDING
        self.known: dict[str, Payment] = {}
        self.moved: dict[str, int] = {}  # key → times money moved
        self.submits: list[list[str]] = []
        self.timeout_keys: set[str] = set()  # apply, then time out
        self.unavailable = False
        self.lost: set[str] = set()  # pretend never received (NOT_FOUND) once

    def _answer(self, key: str) -> Result:
        return self.outcome.get(key, Result(key, self.default))

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        if self.unavailable:
            raise ProviderUnavailable(self.name, "connection refused")
        self.submits.append([p.key for p in payments])
        for payment in payments:
            if payment.key not in self.known:
                self.known[payment.key] = payment
                self.moved[payment.key] = self.moved.get(payment.key, 0) + 1
        if self.timeout_keys & {p.key for p in payments}:
            raise ProviderTimeout(self.name, "read timed out")
        return [self._answer(p.key) for p in payments]

    def status(self, keys: Sequence[str]) -> list[Result]:
        return [
            Result(key, ResultKind.NOT_FOUND)
            if key not in self.known or key in self.lost
            else self._answer(key)
            for key in keys
        ]

    def validate(self, address: object, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=True)

    def parse_report(self, data: bytes) -> list[Result]:
        return [Result(item["key"], ResultKind(item["kind"])) for item in json.loads(data)]

    def close(self) -> None:
        pass


def ledger_with(tmp_path: Path, *rows: Mapping[str, str], **config: object) -> Ledger:
    ledger = open_ledger(tmp_path)
    if config:
        ledger.config = Config.loads(str(config.get("toml", "")))
    RosterLoader(tmp_path)(ledger, *rows)
    return ledger


def approved(tmp_path: Path, n: int = 3) -> Ledger:
    ledger = ledger_with(tmp_path, *(roster_row(f"B{k}", msisdn=f"091234567{k}") for k in range(n)))
    ledger.prepare(P)
    ledger.approve(P, by="checker")
    return ledger


def states(ledger: Ledger) -> dict[str, str]:
    return {r.beneficiary_id: r.state for r, _ in ledger.instructions(P)}


def ids(ledger: Ledger) -> dict[str, str]:
    return {r.beneficiary_id: r.instruction_id for r, _ in ledger.instructions(P)}


def test_dispatch_sends_ready_instructions_in_batches_with_manifests(tmp_path: Path) -> None:
    with approved(tmp_path, 3) as ledger:
        provider = Scripted()
        key = ids(ledger)
        provider.outcome[key["B0"]] = Result(key["B0"], ResultKind.PAID, provider_reference="T1")
        provider.outcome[key["B1"]] = Result(key["B1"], ResultKind.FAILED, Reason.INACTIVE_WALLET)
        outbox = tmp_path / "outbox"
        result = dispatch(ledger.store, P, providers={"viettelpay": provider}, outbox=outbox)
        assert (result.batches, result.sent, result.paid, result.failed, result.pending) == (
            2,
            3,
            1,
            1,
            1,
        )
        assert [len(keys) for keys in provider.submits] == [2, 1]  # max_batch 2
        assert states(ledger) == {"B0": "PAID", "B1": "FAILED", "B2": "ACCEPTED"}
        batches = ledger.store.batches(PROGRAMME, Period.parse(P).ordinal)
        assert [b.payments for b in batches] == [2, 1]
        assert sum(b.control_sum for b in batches) == 3 * 360_000
        for batch in batches:
            payload = (outbox / "viettelpay" / f"{batch.batch_id}.json").read_bytes()
            assert hashlib.sha256(payload).hexdigest() == batch.sha256
            manifest = json.loads(
                (outbox / "viettelpay" / f"{batch.batch_id}.manifest.json").read_text()
            )
            assert (manifest["count"], manifest["control_sum"]) == (
                batch.payments,
                batch.control_sum,
            )
            sent = json.loads(payload)
            # only what the provider needs leaves the agency
            assert sent["columns"] == ["key", "amount", "currency", "address", "payee", "reference"]
            assert len(sent["payments"]) == batch.payments
            assert sum(row[1] for row in sent["payments"]) == batch.control_sum
        outcome = ledger.store.outcomes(PROGRAMME, Period.parse(P).ordinal)
        assert outcome[key["B0"]] == (None, "T1")
        assert outcome[key["B1"]] == ("inactive_wallet", None)
        # READY → SUBMITTED → …, each move an event
        moves = [(e.from_state, e.to_state) for _, e in ledger.store.events(key["B0"])]
        assert moves[-2:] == [("READY", "SUBMITTED"), ("SUBMITTED", "PAID")]


def test_a_timeout_makes_the_outcome_unknown_and_a_status_query_settles_it(
    tmp_path: Path,
) -> None:
    with approved(tmp_path, 2) as ledger:
        provider = Scripted()
        key = ids(ledger)
        provider.timeout_keys = {key["B0"]}
        provider.default = ResultKind.PAID
        result = dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert result.unknown == 2
        assert states(ledger) == {"B0": "UNKNOWN", "B1": "UNKNOWN"}
        # dispatching again sends nothing blind
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert len(provider.submits) == 1
        done = reconcile(ledger.store, P, providers={"viettelpay": provider})
        assert (done.queried, done.open) == (2, 0)
        assert states(ledger) == {"B0": "PAID", "B1": "PAID"}
        assert provider.moved == {key["B0"]: 1, key["B1"]: 1}


def test_a_resend_only_after_the_provider_says_it_never_received_it(tmp_path: Path) -> None:
    with approved(tmp_path, 1) as ledger:
        provider = Scripted()
        (key,) = ids(ledger).values()
        provider.unavailable = True
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert states(ledger) == {"B0": "UNKNOWN"}
        provider.unavailable = False
        # the status query says NOT_FOUND: back to READY, sent again with the same key
        reconcile(ledger.store, P, providers={"viettelpay": provider})
        assert states(ledger) == {"B0": "READY"}
        provider.default = ResultKind.PAID
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        assert states(ledger) == {"B0": "PAID"}
        assert provider.submits == [[key]]
        assert provider.moved == {key: 1}


def test_a_run_killed_between_intent_and_call_is_settled_by_status_not_resent(
    tmp_path: Path,
) -> None:
    with approved(tmp_path, 2) as ledger:
        provider = Scripted()
        key = ids(ledger)

        class Dies(BaseException):  # the process killed (an Exception is a plugin bug instead:
            pass  # its batch goes UNKNOWN, tests/test_submit_refusals.py)

        class Killed(Scripted):
            def submit(self, payments: Sequence[Payment]) -> list[Result]:
                super().submit(payments)  # the provider applied the payments …
                raise Dies  # … and the dispatcher died before it heard back

        killed = Killed()
        with pytest.raises(Dies):
            dispatch(ledger.store, P, providers={"viettelpay": killed})
        assert states(ledger) == {"B0": "SUBMITTED", "B1": "SUBMITTED"}  # intent committed
        provider.known, provider.moved = killed.known, killed.moved
        provider.default = ResultKind.PAID
        dispatch(ledger.store, P, providers={"viettelpay": provider})  # the rerun
        assert states(ledger) == {"B0": "PAID", "B1": "PAID"}
        assert provider.submits == []  # settled by status, not sent again
        assert provider.moved == {key["B0"]: 1, key["B1"]: 1}


def test_late_repeated_and_backward_results_never_move_a_final_state(tmp_path: Path) -> None:
    with approved(tmp_path, 2) as ledger:
        provider = Scripted()
        key = ids(ledger)
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        store = ledger.store
        apply_results(store, [Result(key["B0"], ResultKind.PAID)])
        apply_results(store, [Result(key["B1"], ResultKind.FAILED, Reason.CLOSED_ACCOUNT)])
        stale = apply_results(
            store,
            [
                Result(key["B0"], ResultKind.PENDING),
                Result(key["B0"], ResultKind.PAID),
                Result(key["B0"], ResultKind.FAILED),
                Result(key["B1"], ResultKind.PAID),
                Result("202109-NOSUCHKEY", ResultKind.PAID),
            ],
        )
        assert (stale.applied, stale.ignored, stale.unknown_keys) == (0, 4, ("202109-NOSUCHKEY",))
        assert states(ledger) == {"B0": "PAID", "B1": "FAILED"}
        ignored = [e for _, e in store.events(key["B1"]) if e.kind == "result.ignored"]
        assert [e.detail for e in ignored] == ["paid while FAILED"]
        # a return after payment is a forward move: the month is due again
        apply_results(store, [Result(key["B0"], ResultKind.RETURNED, Reason.CLOSED_ACCOUNT)])
        assert states(ledger)["B0"] == "RETURNED"
        assert not store.query("SELECT 1 FROM claims WHERE instruction_id = ?", (key["B0"],))


def test_close_refuses_while_open_then_freezes_the_settlement(tmp_path: Path) -> None:
    with approved(tmp_path, 2) as ledger:
        provider = Scripted()
        key = ids(ledger)
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        with pytest.raises(CycleStateError, match="2 ACCEPTED"):
            close_cycle(ledger.store, P)
        apply_results(
            ledger.store,
            [Result(key["B0"], ResultKind.PAID), Result(key["B1"], ResultKind.FAILED)],
        )
        closed = close_cycle(ledger.store, P)
        assert (closed.instructed, closed.paid) == (2, 1)
        frozen = ledger.store.settlement(PROGRAMME, Period.parse(P).ordinal)
        assert sorted((row[4], row[5], row[6]) for row in frozen) == [
            ("FAILED", 1, 360_000),
            ("PAID", 1, 360_000),
        ]
        with pytest.raises(CycleStateError, match="closed"):
            dispatch(ledger.store, P, providers={"viettelpay": provider})
        with pytest.raises(CycleStateError):
            close_cycle(ledger.store, P)


FALLBACK_TOML = """
[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"
[providers.vietinbank]
plugin = "sandbox-bank"
channel = "bank"
[providers.vnpost]
plugin = "sandbox-postal"
channel = "postal"
[fallback_pay_points]
"20107" = "BD-20107"
"""


def test_a_dead_wallet_falls_back_to_the_next_address_then_to_cash(tmp_path: Path) -> None:
    with ledger_with(
        tmp_path,
        roster_row("B0", bank_bin="970415", account_number="123456789012"),
        roster_row("B1", msisdn="0912345679"),
        toml=FALLBACK_TOML,
    ) as ledger:
        ledger.prepare(P)
        ledger.approve(P, by="checker")
        provider = Scripted()
        key = ids(ledger)
        for beneficiary in ("B0", "B1"):
            provider.outcome[key[beneficiary]] = Result(
                key[beneficiary], ResultKind.FAILED, Reason.INACTIVE_WALLET
            )
        dispatch(ledger.store, P, providers={"viettelpay": provider})
        close_cycle(ledger.store, P)
        result = ledger.prepare("2021-10")
        october = {r.beneficiary_id: r for r, _ in ledger.instructions("2021-10")}
        # B0: the roster's bank account, paid by the bank; B1: cash at the commune's post office
        assert (october["B0"].channel, october["B0"].address, october["B0"].provider) == (
            "bank",
            "bank:970415:123456789012",
            "vietinbank",
        )
        assert (october["B1"].channel, october["B1"].address, october["B1"].provider) == (
            "postal",
            "postal:BD-20107",
            "vnpost",
        )
        # September's failed month comes back as arrears with October's
        assert october["B0"].amount == 2 * 360_000
        assert result.by_provider["vnpost"].count == 1
        changes = {(c.beneficiary_id, c.kind): c.reason for c in ledger.changes("2021-10").changes}
        assert "channel ewallet → bank" in changes[("B0", "payee_changed")]
        assert "channel ewallet → postal" in changes[("B1", "payee_changed")]
