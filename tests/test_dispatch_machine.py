"""The at-most-once property under every fault the sandbox can inject, as a Hypothesis
``RuleBasedStateMachine``: dispatch, reconcile, reports (duplicated, reordered), dispatcher
crashes before and after the provider call, and new cycles — with the invariants checked after
every step:

* at most one payment moved per instruction, and at most one PAID instruction per entitlement
  (beneficiary × month);
* the settlement balances: instructed = paid + failed + returned + unclaimed + open, to the đồng;
* final states never change (PAID may only become RETURNED);
* nothing lost: once drained, the ledger and the provider's books agree payment by payment.

A deliberately naive dispatcher ("on a timeout, try again") runs in the same machine, and the
machine catches it paying twice.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import RosterLoader, roster_row
from sap_payments import Ledger, Period, transition
from sap_payments.dispatch import apply_results, close_cycle, dispatch, payment_of, reconcile
from sap_payments.instructions import OPEN_STATES
from sap_payments.providers import Payment, Provider, ProviderTimeout, Result
from sap_payments.store import Store
from sap_payments.testing.sandbox import SandboxProvider, ewallet

PROGRAMME = "monthly-allowance"
FINAL = {"PAID", "FAILED", "RETURNED", "UNCLAIMED", "CANCELLED"}


class Crash(BaseException):
    """The dispatching process dies (as a SIGKILL would: nothing after it runs)."""


class Crashing:
    """Wraps a provider; the dispatcher dies just before, or just after, the call."""

    def __init__(self, inner: SandboxProvider, when: str) -> None:
        self.inner = inner
        self.when = when
        self.name = inner.name
        self.capabilities = inner.capabilities

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        if self.when == "before":
            raise Crash
        self.inner.submit(payments)
        raise Crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def real_dispatch(store: Store, period: str, providers: Mapping[str, Provider]) -> None:
    dispatch(store, period, providers=providers)


def naive_dispatch(store: Store, period: str, providers: Mapping[str, Provider]) -> None:
    """What a hurried engineer writes: on a timeout, send again — with a fresh request id, as
    an HTTP client that makes one per attempt does."""
    ordinal = Period.parse(period).ordinal
    for record in store.instructions_in_states(PROGRAMME, ordinal, ["READY", "UNKNOWN"]):
        provider = providers[record.provider]
        payment = payment_of(record, f"{PROGRAMME} {period}")
        if record.state == "READY":
            transition(store, record.instruction_id, "SUBMITTED")
        for attempt in range(3):
            key = payment.key if attempt == 0 else f"{payment.key}~retry{attempt}"
            try:
                results = provider.submit([attrs.evolve(payment, key=key)])
            except ProviderTimeout:
                continue  # "the network was flaky: try again"
            apply_results(store, [attrs.evolve(r, key=payment.key) for r in results])
            break


class DispatchMachine(RuleBasedStateMachine):
    dispatcher = staticmethod(real_dispatch)

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="sap-machine-"))
        self.ledger = Ledger.open(self.directory / "l.db", durable=False)
        # the sandbox's fates follow the instruction ids, which carry the ledger id: a fixed
        # one, so that Hypothesis replays an example exactly
        self.ledger.store.set_ledger_id("0000000000000000")
        self.period = Period.parse("2021-09")
        self.finals: dict[str, str] = {}
        self.sandbox: SandboxProvider | None = None

    @initialize(seed=st.integers(0, 2**32), beneficiaries=st.integers(3, 8))
    def start(self, seed: int, beneficiaries: int) -> None:
        rows = [
            roster_row(f"B{k}", msisdn=f"09{k:08d}", first_period="2021-08", paid_through="")
            for k in range(beneficiaries)
        ]
        RosterLoader(self.directory)(self.ledger, *rows)
        self.sandbox = ewallet(
            "viettelpay",
            {
                "seed": seed,
                "fail_per_mille": 150,
                "late_per_mille": 300,
                "late_polls": 1,
                "timeout_per_mille": 250,
                "return_per_mille": 150,
                "return_polls": 1,
                "duplicate_per_mille": 400,
                "reorder": True,
                "max_batch": 3,
            },
        )
        self.ledger.prepare(self.period)
        self.ledger.approve(self.period, by="checker")

    # -- the world ------------------------------------------------------------------------
    @property
    def providers(self) -> dict[str, Provider]:
        assert self.sandbox is not None
        return {"viettelpay": self.sandbox}

    @rule()
    def send(self) -> None:
        self.dispatcher(self.ledger.store, str(self.period), self.providers)

    @rule(when=st.sampled_from(["before", "after"]))
    def crash_while_sending(self, when: str) -> None:
        assert self.sandbox is not None
        # (nothing happens when nothing is left to send; a killed process leaves no
        # transaction open behind it, and the next run starts clean)
        with contextlib.suppress(Crash):
            self.dispatcher(
                self.ledger.store, str(self.period), {"viettelpay": Crashing(self.sandbox, when)}
            )

    @rule()
    def ask(self) -> None:
        reconcile(self.ledger.store, self.period, providers=self.providers)

    @rule()
    def read_reports(self) -> None:
        assert self.sandbox is not None
        for document in self.sandbox.reports():
            apply_results(self.ledger.store, self.sandbox.parse_report(document))

    @precondition(lambda self: self.period.month < 11)
    @rule()
    def next_cycle(self) -> None:
        self.drain()
        close_cycle(self.ledger.store, self.period)
        self.period = self.period.next()
        self.ledger.prepare(self.period)
        self.ledger.approve(self.period, by="checker")

    def drain(self) -> None:
        """Settle everything: the real engine's reconcile until nothing is open."""
        for _ in range(20):
            self.dispatcher(self.ledger.store, str(self.period), self.providers)
            done = reconcile(self.ledger.store, self.period, providers=self.providers)
            self.read_reports()
            if done.open == 0:
                return
        raise AssertionError("the cycle did not settle in 20 rounds")

    # -- invariants -----------------------------------------------------------------------
    def instructions(self) -> list[tuple[Any, list[Any]]]:
        found = []
        for cycle in self.ledger.store.cycles(PROGRAMME):
            found.extend(
                self.ledger.store.cycle_instructions(PROGRAMME, cycle.period, with_lines=True)
            )
        return found

    @invariant()
    def at_most_once(self) -> None:
        if self.sandbox is None:
            return
        per_instruction = Counter(key.split("~")[0] for key, _ in self.sandbox.movements())
        twice = {key: n for key, n in per_instruction.items() if n > 1}
        assert not twice, f"paid more than once: {twice}"
        paid_months = Counter(
            (record.beneficiary_id, line.month)
            for record, lines in self.instructions()
            if record.state == "PAID"
            for line in lines
        )
        assert max(paid_months.values(), default=0) <= 1, paid_months

    @invariant()
    def settlement_balances(self) -> None:
        for cycle in self.ledger.store.cycles(PROGRAMME):
            rows = self.ledger.store.settlement(PROGRAMME, cycle.period)
            by_state = Counter()
            for _, _, _, _, state, _count, amount in rows:
                by_state[state] += amount
            instructed = sum(a for s, a in by_state.items() if s != "CANCELLED")
            accounted = (
                by_state["PAID"]
                + by_state["FAILED"]
                + by_state["RETURNED"]
                + by_state["UNCLAIMED"]
                + sum(by_state[s] for s in OPEN_STATES)
            )
            assert instructed == accounted

    @invariant()
    def finals_stay_final(self) -> None:
        for record, _ in self.instructions():
            before = self.finals.get(record.instruction_id)
            if before is not None and before != record.state:
                assert (before, record.state) == ("PAID", "RETURNED"), (
                    f"{record.instruction_id}: {before} -> {record.state}"
                )
            if record.state in FINAL:
                self.finals[record.instruction_id] = record.state

    def teardown(self) -> None:
        try:
            if self.sandbox is not None:
                self.drain()
                moved = {key.split("~")[0] for key, _ in self.sandbox.movements()}
                for record, _ in self.instructions():
                    if record.state in {"PAID", "RETURNED"}:
                        assert record.instruction_id in moved, f"{record.instruction_id} lost"
                    if record.instruction_id in moved:
                        assert record.state in {"PAID", "RETURNED"}, (
                            f"{record.instruction_id} moved money but is {record.state}"
                        )
        finally:
            self.ledger.close()
            if self.sandbox is not None:
                self.sandbox.close()
            shutil.rmtree(self.directory, ignore_errors=True)


class NaiveDispatchMachine(DispatchMachine):
    dispatcher = staticmethod(naive_dispatch)


MACHINE_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_at_most_once_under_every_fault() -> None:
    run_state_machine_as_test(DispatchMachine, settings=MACHINE_SETTINGS)


def test_the_machine_catches_a_dispatcher_that_retries_on_timeout() -> None:
    with pytest.raises(AssertionError, match="paid more than once"):
        run_state_machine_as_test(
            NaiveDispatchMachine,
            settings=settings(MACHINE_SETTINGS, max_examples=60, report_multiple_bugs=False),
        )
