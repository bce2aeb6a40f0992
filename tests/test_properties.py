"""Properties of the payroll over random small rosters and random sequences of cycles.

Each example imports a roster, prepares a few cycles (re-preparing after late results of the
previous cycle or a roster change), approves them and lets "dispatch" pay, fail, return or leave
the instructions. Then:

1. the lines of every instruction sum to its amount;
2. preparing a cycle again changes nothing (same ids, amounts, states; no new events);
3. amounts are integers everywhere, each line is level × coefficient half-up, never a float;
4. at most one live line per beneficiary and month across all cycles, and no month up to
   paid_through or outside first..last is ever paid;
5. nothing is lost: once everyone is active again, every month due is carried exactly once.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings

import strategies
from conftest import RosterLoader, open_ledger, settle
from sap_payments import REPAYABLE_STATES, Ledger, Period, PrepareResult, RuleSet
from sap_payments.store import InstructionRecord, LineRecord
from strategies import Decision, Plan, Step, Terms

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RULES = RuleSet.vietnam_default()

Pair = tuple[InstructionRecord, list[LineRecord]]
Checkpoint = Callable[[Ledger, Step, tuple[Terms, ...], PrepareResult], None]


def _all_instructions(ledger: Ledger) -> list[Pair]:
    return [
        pair
        for cycle in ledger.store.cycles(ledger.config.programme)
        for pair in ledger.instructions(cycle=cycle)
    ]


def _snapshot(ledger: Ledger, period: int) -> list[tuple[object, ...]]:
    return [(*record, tuple(lines)) for record, lines in ledger.instructions(Period(period))]


def _ignore(*_args: object) -> None:
    return None


def _execute(plan: Plan, directory: Path, checkpoint: Checkpoint = _ignore) -> Ledger:
    """Run the plan in a new ledger; call ``checkpoint`` after every preparation.

    Roster files go to ``directory/rosters``; the caller closes the ledger."""
    ledger = open_ledger(directory)
    (directory / "rosters").mkdir()
    load = RosterLoader(directory / "rosters")
    previous: Period | None = None
    try:
        for step in plan.steps:
            period = Period(step.period)
            load(ledger, *strategies.roster(plan, step.terms))
            checkpoint(ledger, step, step.terms, ledger.prepare(period))
            if previous is not None and _dispatch(ledger, plan, previous, step.late_outcomes):
                checkpoint(ledger, step, step.terms, ledger.prepare(period))
            if step.revised_terms is not None:
                load(ledger, *strategies.roster(plan, step.revised_terms))
                checkpoint(ledger, step, step.revised_terms, ledger.prepare(period))
            ledger.approve(period, by="checker")
            _dispatch(ledger, plan, period, step.outcomes)
            previous = period
    except BaseException:
        ledger.close()
        raise
    return ledger


def _dispatch(ledger: Ledger, plan: Plan, period: Period, outcomes: tuple[str | None, ...]) -> bool:
    """Give the cycle's READY instructions their outcomes; whether any moved."""
    ready = {
        record.beneficiary_id: record.instruction_id
        for record, _ in ledger.instructions(period)
        if record.state == "READY"
    }
    moved = False
    for decision, outcome in zip(plan.decisions, outcomes, strict=True):
        if outcome is not None and decision.beneficiary_id in ready:
            settle(ledger, ready[decision.beneficiary_id], outcome)
            moved = True
    return moved


def _coefficient(decision: Decision, terms: Terms) -> Decimal:
    return Decimal(terms.coefficient) if terms.coefficient else RULES.coefficient(decision.category)


def _held(terms: Terms, period: int) -> bool:
    return (
        terms.mandate_until is not None
        and terms.mandate_until < Period(period).first_day.isoformat()
    )


# -- 1: lines add up ------------------------------------------------------------------------------
@SETTINGS
@given(plan=strategies.plans())
def test_lines_sum_to_the_instruction_amount(plan: Plan) -> None:
    def check(ledger: Ledger, step: Step, _terms: tuple[Terms, ...], result: PrepareResult) -> None:
        pairs = list(ledger.instructions(Period(step.period)))
        for record, lines in pairs:
            assert lines, record
            assert sum(line.amount for line in lines) == record.amount
            assert record.amount > 0
        live = [r for r, _ in pairs if r.state != "CANCELLED"]
        assert result.count == len(live)
        assert result.total.minor == sum(r.amount for r in live)
        assert sum(t.amount.minor for t in result.by_provider.values()) == result.total.minor
        assert sum(t.amount.minor for t in result.by_commune.values()) == result.total.minor
        assert sum(t.count for t in result.by_provider.values()) == result.count

    with tempfile.TemporaryDirectory() as directory:
        ledger = _execute(plan, Path(directory), check)
        with ledger:
            for record, lines in _all_instructions(ledger):
                assert sum(line.amount for line in lines) == record.amount


# -- 2: re-preparing is a no-op -------------------------------------------------------------------
@SETTINGS
@given(plan=strategies.plans())
def test_re_preparing_changes_nothing(plan: Plan) -> None:
    def check(ledger: Ledger, step: Step, _terms: tuple[Terms, ...], result: PrepareResult) -> None:
        before = _snapshot(ledger, step.period)
        events = list(ledger.store.events())
        again = ledger.prepare(Period(step.period))
        assert _snapshot(ledger, step.period) == before
        assert list(ledger.store.events()) == events
        assert (again.created, again.revised, again.cancelled) == (0, 0, 0)
        assert again.unchanged == result.count == again.count
        assert again.total == result.total
        assert again.by_provider == result.by_provider
        assert again.by_commune == result.by_commune
        ids = [record.instruction_id for record, _ in ledger.instructions(Period(step.period))]
        assert len(ids) == len(set(ids))

    with tempfile.TemporaryDirectory() as directory:
        _execute(plan, Path(directory), check).close()


# -- 3: integers only; each line is level × coefficient half-up -----------------------------------
@SETTINGS
@given(plan=strategies.plans())
def test_amounts_are_whole_dong_computed_from_the_roster_terms(plan: Plan) -> None:
    def check(ledger: Ledger, step: Step, terms: tuple[Terms, ...], result: PrepareResult) -> None:
        decision_of = {d.beneficiary_id: (d, t) for d, t in zip(plan.decisions, terms, strict=True)}
        assert type(result.total.minor) is int
        for record, lines in ledger.instructions(Period(step.period)):
            assert type(record.amount) is int
            if record.state == "CANCELLED":
                continue
            decision, current = decision_of[record.beneficiary_id]
            coefficient = _coefficient(decision, current)
            assert current.status != "suspended"
            assert (record.state == "HELD") == _held(current, step.period)
            for line in lines:
                assert type(line.amount) is int
                assert Decimal(line.coefficient) == coefficient
                level = RULES.level_for(Period(line.month)).minor
                exact = Decimal(level) * coefficient
                assert line.amount == int(exact + Decimal("0.5"))  # half-up (amounts are positive)
                assert line.kind == ("regular" if line.month == step.period else "arrears")

    with tempfile.TemporaryDirectory() as directory:
        ledger = _execute(plan, Path(directory), check)
        with ledger:
            kinds = ledger.store.query("SELECT DISTINCT typeof(amount) FROM instructions")
            assert set(kinds) <= {("integer",)}


# -- 4: at most once, and only months that are due ------------------------------------------------
def _check_at_most_once(ledger: Ledger, plan: Plan) -> None:
    decisions = {d.beneficiary_id: d for d in plan.decisions}
    live: Counter[tuple[str, int]] = Counter()
    for record, lines in _all_instructions(ledger):
        decision = decisions[record.beneficiary_id]
        for line in lines:
            month = line.month
            assert month >= decision.first, (record, line)
            assert decision.last is None or month <= decision.last, (record, line)
            assert decision.paid_through is None or month > decision.paid_through, (record, line)
            assert month <= record.period
        if record.state not in REPAYABLE_STATES:
            live.update((record.beneficiary_id, line.month) for line in lines)
    twice = {key: n for key, n in live.items() if n > 1}
    assert not twice, {(b, Period.text(m)): n for (b, m), n in twice.items()}


@SETTINGS
@given(plan=strategies.plans())
def test_each_month_is_carried_at_most_once_and_only_when_due(plan: Plan) -> None:
    def check(ledger: Ledger, *_args: object) -> None:
        _check_at_most_once(ledger, plan)

    with tempfile.TemporaryDirectory() as directory:
        ledger = _execute(plan, Path(directory), check)
        with ledger:
            _check_at_most_once(ledger, plan)


# -- 5: nothing lost ------------------------------------------------------------------------------
@SETTINGS
@given(plan=strategies.plans())
def test_every_due_month_is_carried_once_everyone_is_back_in_payment(plan: Plan) -> None:
    final = plan.steps[-1].period + 1
    everyone_active = tuple(
        Terms(status="active", coefficient=None, channel="ewallet", mandate_until=None)
        for _ in plan.decisions
    )
    with tempfile.TemporaryDirectory() as directory:
        ledger = _execute(plan, Path(directory))
        with ledger:
            (Path(directory) / "final").mkdir()
            RosterLoader(Path(directory) / "final")(
                ledger, *strategies.roster(plan, everyone_active)
            )
            ledger.prepare(Period(final))
            _check_at_most_once(ledger, plan)
            carried: dict[str, set[int]] = {d.beneficiary_id: set() for d in plan.decisions}
            for record, lines in _all_instructions(ledger):
                if record.state not in REPAYABLE_STATES:
                    carried[record.beneficiary_id].update(line.month for line in lines)
            for decision in plan.decisions:
                start = decision.first
                if decision.paid_through is not None:
                    start = max(start, decision.paid_through + 1)
                end = final if decision.last is None else min(decision.last, final)
                expected = set(range(start, end + 1))
                assert carried[decision.beneficiary_id] == expected, (
                    decision.beneficiary_id,
                    sorted(Period.text(m) for m in carried[decision.beneficiary_id]),
                    sorted(Period.text(m) for m in expected),
                )
