"""The change report: what is different in a cycle compared with the cycle before it.

Each :class:`Change` says who, what kind of change, the amounts before and after, and why, in
words a clerk can check against the decisions on file:

* ``added`` — paid this cycle, not in the previous one (new beneficiary, back-dated decision with
  arrears, back in payment after a suspension or a failed payment);
* ``removed`` — paid in the previous cycle, not in this one (suspended, ceased, nothing due);
* ``amount_changed`` — paid in both, a different amount (standard level, coefficient, arrears);
* ``payee_changed`` — paid in both, to another payee, channel or account;
* ``held`` — due, but held (the proxy's mandate expired) and not paid this cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.cycles import DISCARDED, require_cycle, reviewing
from sap_payments.instructions import InstructionState, LineKind
from sap_payments.periods import Period
from sap_payments.rules import RuleSet
from sap_payments.signing import CycleReview
from sap_payments.store import BeneficiaryRecord, InstructionRecord, LineRecord, Store

__all__ = ["CHANGE_KINDS", "Change", "ChangeReport", "change_report"]

CHANGE_KINDS = ("added", "removed", "amount_changed", "payee_changed", "held")

_Pair = tuple[InstructionRecord, list[LineRecord]]


@attrs.frozen
class Change:
    kind: str
    beneficiary_id: str
    commune_code: str
    previous_amount: int | None
    amount: int | None
    reason: str


@attrs.frozen
class ChangeReport:
    programme: str
    period: Period
    previous_period: Period | None
    currency: str
    changes: tuple[Change, ...]
    #: the digest, count and total to approve the cycle with (``approve(expect_digest=...)``),
    #: computed from the instructions this report read; None when there is none to give
    review: CycleReview | None = None

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(CHANGE_KINDS, 0)
        for change in self.changes:
            counts[change.kind] += 1
        return counts


def _months(lines: list[LineRecord], kind: str) -> list[int]:
    return [line.month for line in lines if line.kind == kind]


def _month_list(months: list[int]) -> str:
    if len(months) > 3:
        return f"{Period.text(months[0])} … {Period.text(months[-1])} ({len(months)} months)"
    return ", ".join(Period.text(m) for m in months)


def _pick(pairs: list[_Pair]) -> _Pair | None:
    """The instruction that counts for a beneficiary in a cycle: the latest not cancelled."""
    for pair in reversed(pairs):
        if pair[0].state != InstructionState.CANCELLED:
            return pair
    return None


def _held(store: Store, pairs: list[_Pair]) -> _Pair | None:
    """The beneficiary's held instruction in the cycle: HELD still, or cancelled for its hold
    when the cycle was approved (an approver's cancellation); not one cancelled because the
    beneficiary was no longer due when the cycle was prepared again."""
    record = pairs[-1][0]
    if record.state == InstructionState.HELD:
        return pairs[-1]
    if record.state == InstructionState.CANCELLED and record.held_reason:
        for _, event in store.events(record.instruction_id):
            if event.to_state == InstructionState.CANCELLED and event.actor is not None:
                return pairs[-1]
    return None


def _grouped(
    store: Store, programme: str, period: int | None, rows: Iterable[_Pair] | None = None
) -> Iterator[tuple[str, list[_Pair]]]:
    if period is None:
        return
    current: str | None = None
    pairs: list[_Pair] = []
    if rows is None:
        rows = store.cycle_instructions(programme, period, with_lines=True)
    for record, lines in rows:
        if record.beneficiary_id != current and pairs:
            yield current, pairs  # type: ignore[misc]  # set with the first pair
            pairs = []
        current = record.beneficiary_id
        pairs.append((record, lines))
    if pairs:
        yield current, pairs  # type: ignore[misc]


class _Explainer:
    def __init__(
        self, store: Store, rules: RuleSet, programme: str, period: Period, first_cycle: bool
    ) -> None:
        self.store = store
        self.rules = rules
        self.programme = programme
        self.period = period
        self.first_cycle = first_cycle

    def _beneficiary(self, beneficiary_id: str) -> BeneficiaryRecord | None:
        return self.store.beneficiary(beneficiary_id)

    def added(self, record: InstructionRecord, lines: list[LineRecord]) -> str:
        arrears = _months(lines, LineKind.ARREARS)
        arrears_text = f"; arrears for {_month_list(arrears)}" if arrears else ""
        if self.first_cycle:
            return "first cycle in this ledger" + arrears_text
        earlier = [
            i
            for i in self.store.beneficiary_instructions(self.programme, record.beneficiary_id)
            if i.period < self.period.ordinal
        ]
        if not earlier:
            beneficiary = self._beneficiary(record.beneficiary_id)
            start = Period.text(beneficiary.first_period) if beneficiary else "?"
            if arrears:
                return f"new beneficiary, decision back-dated to {start}{arrears_text}"
            return f"new beneficiary from {start}"
        return "back in payment" + arrears_text

    def removed(self, beneficiary_id: str) -> str:
        beneficiary = self._beneficiary(beneficiary_id)
        if beneficiary is None:
            return "no longer on the roster"
        if beneficiary.status == "suspended":
            return "suspended: months are withheld until the status is active again"
        if beneficiary.last_period is not None and beneficiary.last_period < self.period.ordinal:
            return f"ceased: last month was {Period.text(beneficiary.last_period)}"
        return "nothing due this month"

    def amount_changed(self, before: _Pair, after: _Pair) -> str:
        reasons = []
        old_regular = [ln for ln in before[1] if ln.kind == LineKind.REGULAR]
        new_regular = [ln for ln in after[1] if ln.kind == LineKind.REGULAR]
        if old_regular and new_regular:
            old, new = old_regular[0], new_regular[0]
            if old.coefficient != new.coefficient:
                reasons.append(f"coefficient {old.coefficient} → {new.coefficient}")
            old_level = self.rules.level_for(Period(old.month))
            new_level = self.rules.level_for(Period(new.month))
            if old_level != new_level:
                reasons.append(f"standard level {old_level} → {new_level}")
        arrears = _months(after[1], LineKind.ARREARS)
        if arrears:
            reasons.append(f"arrears for {_month_list(arrears)}")
        old_arrears = _months(before[1], LineKind.ARREARS)
        if old_arrears and not arrears:
            reasons.append("no arrears this month")
        if not old_regular and new_regular:
            reasons.append("regular payment resumed")
        return "; ".join(reasons) or "amount recomputed"


def change_report(
    store: Store,
    period: Period | str,
    *,
    rules: RuleSet,
    programme: str = DEFAULT_PROGRAMME,
) -> ChangeReport:
    """Compare the cycle of ``period`` with the latest earlier cycle of the programme.

    Raises:
        CycleNotFound: the cycle has not been prepared.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    cycle = require_cycle(store, programme, period)
    earlier = [
        c.period
        for c in store.cycles(programme)
        if c.period < period.ordinal and c.state != DISCARDED
    ]
    previous = earlier[-1] if earlier else None
    explain = _Explainer(store, rules, programme, period, previous is None)
    changes: list[Change] = []
    old_groups = _grouped(store, programme, previous)
    rows, review = reviewing(
        store, cycle, store.cycle_instructions(programme, period.ordinal, with_lines=True)
    )
    new_groups = _grouped(store, programme, period.ordinal, rows)
    old = next(old_groups, None)
    new = next(new_groups, None)
    while old is not None or new is not None:
        if new is None or (old is not None and old[0] < new[0]):
            assert old is not None
            key, old_pairs, new_pairs = old[0], old[1], []
            old = next(old_groups, None)
        elif old is None or new[0] < old[0]:
            key, old_pairs, new_pairs = new[0], [], new[1]
            new = next(new_groups, None)
        else:
            key, old_pairs, new_pairs = new[0], old[1], new[1]
            old, new = next(old_groups, None), next(new_groups, None)
        before, after = _pick(old_pairs), _pick(new_pairs)
        held = (
            _held(store, new_pairs)
            if new_pairs and (after is None or after[0].held_reason)
            else None
        )
        if held is not None:
            record = held[0]
            changes.append(
                Change(
                    "held",
                    key,
                    record.commune_code,
                    before[0].amount if before else None,
                    record.amount,
                    f"held: {record.held_reason}; the months stay due",
                )
            )
            continue
        if after is None and before is not None:
            changes.append(
                Change(
                    "removed",
                    key,
                    before[0].commune_code,
                    before[0].amount,
                    None,
                    explain.removed(key),
                )
            )
        elif after is not None and before is None:
            changes.append(
                Change(
                    "added",
                    key,
                    after[0].commune_code,
                    None,
                    after[0].amount,
                    explain.added(*after),
                )
            )
        elif after is not None and before is not None:
            if after[0].amount != before[0].amount:
                changes.append(
                    Change(
                        "amount_changed",
                        key,
                        after[0].commune_code,
                        before[0].amount,
                        after[0].amount,
                        explain.amount_changed(before, after),
                    )
                )
            if (after[0].address, after[0].payee_name) != (before[0].address, before[0].payee_name):
                what = []
                if after[0].channel != before[0].channel:
                    what.append(f"channel {before[0].channel} → {after[0].channel}")
                elif after[0].address != before[0].address:
                    what.append(f"new {after[0].channel} address")
                if after[0].payee_kind != before[0].payee_kind:
                    what.append(f"payee {before[0].payee_kind} → {after[0].payee_kind}")
                elif after[0].payee_name != before[0].payee_name:
                    what.append("payee name changed")
                changes.append(
                    Change(
                        "payee_changed",
                        key,
                        after[0].commune_code,
                        before[0].amount,
                        after[0].amount,
                        "; ".join(what),
                    )
                )
    return ChangeReport(
        programme,
        period,
        Period(previous) if previous is not None else None,
        cycle.currency,
        tuple(changes),
        review(),
    )
