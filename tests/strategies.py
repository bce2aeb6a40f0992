"""Hypothesis strategies shared by the property tests: small rosters and sequences of cycles.

A :class:`Plan` is a roster of a few beneficiaries and the cycles to run on it. What a decision
fixes (first and last month, paid_through, category) stays the same for the whole plan; what a
clerk changes between imports (status, coefficient, channel, proxy mandate) changes per step, and
each step says what dispatch did to the approved instructions afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from hypothesis import strategies as st

from conftest import roster_row
from sap_payments import Period

#: Months a plan may touch: both sides of the 2021-07-01 level change.
FIRST_MONTH = Period.parse("2021-01").ordinal
LAST_MONTH = Period.parse("2021-12").ordinal

CATEGORIES = (
    "elderly_80plus",
    "disabled_heavy",
    "disabled_severe",
    "orphan_4plus",
    "orphan_under4",
)
#: Roster coefficients: None uses the category's; the others include ones that round.
COEFFICIENTS = (None, "0.5", "1.25", "1.5", "2", "2.5", "0.3333", "1.0001")
#: What dispatch may do to a READY instruction (None: leave it READY).
OUTCOMES = (None, "SUBMITTED", "PAID", "PAID", "FAILED", "RETURNED", "UNCLAIMED")

CHANNELS: Mapping[str, Mapping[str, str]] = {
    "ewallet": {"channel": "ewallet", "provider": "viettelpay", "msisdn": "0912345678"},
    "bank": {
        "channel": "bank",
        "provider": "vietinbank",
        "msisdn": "",
        "bank_bin": "970415",
        "account_number": "1234567890",
    },
    "postal": {"channel": "postal", "provider": "vnpost", "msisdn": "", "pay_point": "BD-01"},
}


@attrs.frozen
class Decision:
    """What stays fixed for one beneficiary (month ordinals)."""

    beneficiary_id: str
    category: str
    first: int
    last: int | None
    paid_through: int | None


@attrs.frozen
class Terms:
    """What a roster import may change for one beneficiary."""

    status: str
    coefficient: str | None
    channel: str
    mandate_until: str | None  # None: paid to the beneficiary; else a proxy valid to this day


@attrs.frozen
class Step:
    """One cycle: the roster imported before it; late results of the previous cycle that
    arrive once this one is prepared (it is then prepared again); an optional roster change
    before preparing again; and what dispatch does to each instruction once it is approved."""

    period: int
    terms: tuple[Terms, ...]
    late_outcomes: tuple[str | None, ...]
    revised_terms: tuple[Terms, ...] | None
    outcomes: tuple[str | None, ...]


@attrs.frozen
class Plan:
    decisions: tuple[Decision, ...]
    steps: tuple[Step, ...]


def row(decision: Decision, terms: Terms) -> dict[str, str]:
    """The roster row (format v1) of a beneficiary under the given terms."""
    overrides: dict[str, str] = {
        "category": decision.category,
        "first_period": Period.text(decision.first),
        "last_period": Period.text(decision.last) if decision.last is not None else "",
        "paid_through": (
            Period.text(decision.paid_through) if decision.paid_through is not None else ""
        ),
        "status": terms.status,
        "coefficient": terms.coefficient or "",
        **CHANNELS[terms.channel],
    }
    if terms.mandate_until is not None:
        overrides.update(
            proxy_name="Trần Thị Bình",
            proxy_relation="con",
            mandate_valid_until=terms.mandate_until,
        )
    return roster_row(decision.beneficiary_id, **overrides)


def roster(plan: Plan, terms: tuple[Terms, ...]) -> list[dict[str, str]]:
    return [row(d, t) for d, t in zip(plan.decisions, terms, strict=True)]


months = st.integers(min_value=FIRST_MONTH, max_value=LAST_MONTH)


@st.composite
def decisions(draw: st.DrawFn, beneficiary_id: str) -> Decision:
    first = draw(months)
    last = draw(st.none() | st.integers(min_value=first, max_value=first + 8))
    paid_through = draw(st.none() | st.integers(min_value=first - 3, max_value=first + 6))
    return Decision(beneficiary_id, draw(st.sampled_from(CATEGORIES)), first, last, paid_through)


def mandate_days() -> st.SearchStrategy[str | None]:
    """No proxy, or a proxy whose mandate ends on some day of the plan's window."""
    day = st.builds(
        lambda ordinal, day: f"{Period.text(ordinal)}-{day:02d}",
        st.integers(min_value=FIRST_MONTH, max_value=LAST_MONTH + 2),
        st.sampled_from([1, 15, 28]),
    )
    return st.one_of(st.none(), st.none(), day)


@st.composite
def terms_for(draw: st.DrawFn, decision: Decision) -> Terms:
    statuses = ["active", "active", "suspended"]
    if decision.last is not None:
        statuses.append("ceased")
    return Terms(
        status=draw(st.sampled_from(statuses)),
        coefficient=draw(st.sampled_from(COEFFICIENTS)),
        channel=draw(st.sampled_from(sorted(CHANNELS))),
        mandate_until=draw(mandate_days()),
    )


@st.composite
def plans(draw: st.DrawFn, *, max_people: int = 4, max_cycles: int = 4) -> Plan:
    count = draw(st.integers(min_value=1, max_value=max_people))
    people = tuple(draw(decisions(f"P{k}")) for k in range(count))
    periods = sorted(
        draw(
            st.sets(
                st.integers(min_value=FIRST_MONTH + 2, max_value=LAST_MONTH + 3),
                min_size=1,
                max_size=max_cycles,
            )
        )
    )
    steps = []
    for period in periods:
        terms = tuple(draw(terms_for(d)) for d in people)
        late = tuple(draw(st.sampled_from(OUTCOMES)) for _ in people)
        revised = draw(st.none() | st.tuples(*(terms_for(d) for d in people)))
        outcomes = tuple(draw(st.sampled_from(OUTCOMES)) for _ in people)
        steps.append(Step(period, terms, late, revised, outcomes))
    return Plan(people, tuple(steps))
