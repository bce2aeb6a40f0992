"""Which months are due and how much each is: level × coefficient half-up, first..last,
paid_through, back-dated arrears, suspension, cessation, re-payable results and mandates."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import (
    drive,
    instruction_of,
    instructions,
    lines_of,
    live_instruction,
    roster_row,
    settle,
)
from sap_payments import (
    InvalidRoster,
    InvalidTransition,
    Ledger,
    Period,
    RuleSet,
    due_months,
)

Loader = Callable[..., object]
A, R = "arrears", "regular"


def _p(text: str) -> int:
    return Period.parse(text).ordinal


def _texts(months: list[int]) -> list[str]:
    return [Period.text(m) for m in months]


# -- due_months, the rule in isolation ------------------------------------------------------------
def test_months_run_from_first_to_the_cycle_when_open_ended() -> None:
    months = due_months(_p("2021-09"), _p("2021-07"), None, None, "active", ())
    assert _texts(months) == ["2021-07", "2021-08", "2021-09"]


def test_months_stop_at_last_period_inclusive() -> None:
    months = due_months(_p("2021-12"), _p("2021-07"), _p("2021-09"), None, "active", ())
    assert _texts(months) == ["2021-07", "2021-08", "2021-09"]


def test_months_through_paid_through_are_never_due() -> None:
    months = due_months(_p("2021-10"), _p("2021-01"), None, _p("2021-08"), "active", ())
    assert _texts(months) == ["2021-09", "2021-10"]
    assert due_months(_p("2021-08"), _p("2021-01"), None, _p("2021-08"), "active", ()) == []


def test_paid_through_before_first_period_changes_nothing() -> None:
    months = due_months(_p("2021-08"), _p("2021-07"), None, _p("2020-12"), "active", ())
    assert _texts(months) == ["2021-07", "2021-08"]


def test_nothing_is_due_before_first_period_or_after_last() -> None:
    assert due_months(_p("2021-06"), _p("2021-07"), None, None, "active", ()) == []
    assert (
        due_months(_p("2021-12"), _p("2021-07"), _p("2021-09"), _p("2021-09"), "ceased", ()) == []
    )


def test_suspended_has_nothing_due_and_ceased_still_has_its_months() -> None:
    assert due_months(_p("2021-09"), _p("2021-07"), None, None, "suspended", ()) == []
    months = due_months(_p("2021-12"), _p("2021-07"), _p("2021-08"), None, "ceased", ())
    assert _texts(months) == ["2021-07", "2021-08"]


def test_months_already_taken_are_not_due_again() -> None:
    months = due_months(
        _p("2021-10"), _p("2021-07"), None, None, "active", {_p("2021-07"), _p("2021-09")}
    )
    assert _texts(months) == ["2021-08", "2021-10"]


# -- amounts through prepare ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("category", "period", "amount"),
    [
        ("elderly_80plus", "2021-09", 360_000),
        ("disabled_heavy", "2021-09", 540_000),
        ("disabled_severe", "2021-09", 720_000),
        ("orphan_4plus", "2021-09", 540_000),
        ("orphan_under4", "2021-09", 900_000),
        ("elderly_80plus", "2024-07", 500_000),
        ("disabled_heavy", "2024-07", 750_000),
        ("orphan_under4", "2024-07", 1_250_000),
    ],
)
def test_monthly_amount_is_level_times_category_coefficient(
    ledger: Ledger, load: Loader, category: str, period: str, amount: int
) -> None:
    before = str(Period.parse(period).previous())
    load(ledger, roster_row(category=category, first_period=period, paid_through=before))
    ledger.prepare(period)
    assert lines_of(ledger, period) == {"B1": [(period, R, amount)]}


def test_the_level_is_the_one_in_force_on_the_first_day_of_the_month(
    ledger: Ledger, load: Loader
) -> None:
    """2021-06 is paid at 270,000 and 2021-07 at 360,000; 2024-06 at 360,000, 2024-07 at 500,000."""
    load(ledger, roster_row(first_period="2021-06", paid_through=""))
    ledger.prepare("2021-07")
    assert lines_of(ledger, "2021-07") == {"B1": [("2021-06", A, 270_000), ("2021-07", R, 360_000)]}
    ledger.approve("2021-07", by="checker")
    load(ledger, roster_row(first_period="2021-06", paid_through="2024-05"))
    ledger.prepare("2024-07")
    assert lines_of(ledger, "2024-07") == {"B1": [("2024-06", A, 360_000), ("2024-07", R, 500_000)]}


def test_a_roster_coefficient_overrides_the_category(ledger: Ledger, load: Loader) -> None:
    load(
        ledger,
        roster_row("B1", coefficient="1.25"),
        roster_row("B2", category="disabled_severe", coefficient="1.25"),
        roster_row("B3", category="disabled_severe", coefficient="1,25"),  # decimal comma
        roster_row("B4", category="disabled_severe"),
    )
    ledger.prepare("2021-09")
    assert lines_of(ledger, "2021-09") == {
        "B1": [("2021-09", R, 450_000)],
        "B2": [("2021-09", R, 450_000)],
        "B3": [("2021-09", R, 450_000)],
        "B4": [("2021-09", R, 720_000)],
    }
    coefficients = {
        record.beneficiary_id: [Decimal(line.coefficient) for line in lines]
        for record, lines in ledger.instructions("2021-09")
    }
    assert coefficients["B2"] == [Decimal("1.25")]
    assert coefficients["B4"] == [Decimal("2.0")]


def test_a_category_unknown_to_the_rules_is_paid_by_its_roster_coefficient(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row(category="provincial_extra", coefficient="1.25"))
    ledger.prepare("2021-09")
    assert lines_of(ledger, "2021-09") == {"B1": [("2021-09", R, 450_000)]}


def test_an_unknown_category_without_a_coefficient_is_refused(ledger: Ledger, load: Loader) -> None:
    with pytest.raises(InvalidRoster) as caught:
        load(ledger, roster_row(category="provincial_extra"))
    assert [(p.line, p.column) for p in caught.value.problems] == [(2, "category")]


ODD_RULES = textwrap.dedent(
    """\
    name = "Odd province"
    currency = "VND"

    [[levels]]
    effective_from = 2020-01-01
    amount = 100001
    basis = "Test decision, Art. 1"

    [categories.half]
    coefficient = "0.5"
    description = "Half"
    basis = "Test decision, Art. 2(a)"

    [categories.one_and_half]
    coefficient = "1.5"
    description = "One and a half"
    basis = "Test decision, Art. 2(b)"
    """
)


def test_amounts_round_half_up_to_a_whole_dong(tmp_path: Path, load: Loader) -> None:
    """100,001 × 0.5 = 50,000.5 → 50,001 and 100,001 × 1.5 = 150,001.5 → 150,002; a roster
    coefficient of 0.7 gives 70,000.7 → 70,001 and 0.3 gives 30,000.3 → 30,000."""
    rules = RuleSet.loads(ODD_RULES)
    with Ledger.open(tmp_path / "odd.db", durable=False, rules=rules) as ledger:
        load(
            ledger,
            roster_row("H1", category="half"),
            roster_row("H2", category="one_and_half"),
            roster_row("H3", category="half", coefficient="0.7"),
            roster_row("H4", category="half", coefficient="0.3"),
            roster_row("H5", category="one_and_half", coefficient="2.5"),
        )
        ledger.prepare("2021-09")
        assert lines_of(ledger, "2021-09") == {
            "H1": [("2021-09", R, 50_001)],
            "H2": [("2021-09", R, 150_002)],
            "H3": [("2021-09", R, 70_001)],
            "H4": [("2021-09", R, 30_000)],
            "H5": [("2021-09", R, 250_003)],  # 250,002.5: banker's rounding would give 250,002
        }


# -- first..last ----------------------------------------------------------------------------------
def test_paid_for_every_month_from_first_through_last(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row(first_period="2021-09", last_period="2021-10", paid_through=""))
    for period in ("2021-08", "2021-09", "2021-10", "2021-11"):
        ledger.prepare(period)
        ledger.approve(period, by="checker")
    assert lines_of(ledger, "2021-08") == {}
    assert lines_of(ledger, "2021-09") == {"B1": [("2021-09", R, 360_000)]}
    assert lines_of(ledger, "2021-10") == {"B1": [("2021-10", R, 360_000)]}
    assert lines_of(ledger, "2021-11") == {}


def test_open_ended_decision_keeps_paying(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row(first_period="2024-05", paid_through="2024-04"))
    for period in ("2024-05", "2024-06", "2024-07", "2024-08"):
        ledger.prepare(period)
        ledger.approve(period, by="checker")
    paid = [lines_of(ledger, p)["B1"] for p in ("2024-05", "2024-06", "2024-07", "2024-08")]
    assert paid == [
        [("2024-05", R, 360_000)],
        [("2024-06", R, 360_000)],
        [("2024-07", R, 500_000)],
        [("2024-08", R, 500_000)],
    ]


# -- back-dated decisions and paid_through --------------------------------------------------------
def test_a_back_dated_decision_is_paid_as_arrears_each_at_its_own_level(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row(category="disabled_heavy", first_period="2021-06", paid_through=""))
    ledger.prepare("2021-08")
    assert lines_of(ledger, "2021-08") == {
        "B1": [
            ("2021-06", A, 405_000),  # 270,000 × 1.5
            ("2021-07", A, 540_000),  # 360,000 × 1.5
            ("2021-08", R, 540_000),
        ]
    }
    record = live_instruction(ledger, "2021-08", "B1")
    assert record.amount == 405_000 + 540_000 + 540_000


def test_a_beneficiary_added_later_gets_the_missed_months(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"))
    ledger.prepare("2021-08")
    ledger.approve("2021-08", by="checker")
    load(
        ledger,
        roster_row("B1"),
        roster_row("B2", category="disabled_heavy", first_period="2021-06", paid_through=""),
    )
    ledger.prepare("2021-09")
    assert lines_of(ledger, "2021-09")["B2"] == [
        ("2021-06", A, 405_000),
        ("2021-07", A, 540_000),
        ("2021-08", A, 540_000),
        ("2021-09", R, 540_000),
    ]


def test_months_through_paid_through_are_never_paid_again(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row(first_period="2021-01", paid_through="2021-08"))
    ledger.prepare("2021-08")
    assert lines_of(ledger, "2021-08") == {}
    ledger.approve("2021-08", by="checker")
    ledger.prepare("2021-10")
    assert lines_of(ledger, "2021-10") == {"B1": [("2021-09", A, 360_000), ("2021-10", R, 360_000)]}


def test_raising_paid_through_before_approval_drops_those_months(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row(paid_through="2021-07"))
    ledger.prepare("2021-09")
    assert lines_of(ledger, "2021-09") == {"B1": [("2021-08", A, 360_000), ("2021-09", R, 360_000)]}
    load(ledger, roster_row(paid_through="2021-08"))
    result = ledger.prepare("2021-09")
    assert (result.revised, result.total.minor) == (1, 360_000)
    assert lines_of(ledger, "2021-09") == {"B1": [("2021-09", R, 360_000)]}


def test_paid_through_beyond_last_period_pays_nothing(ledger: Ledger, load: Loader) -> None:
    load(
        ledger,
        roster_row(
            first_period="2021-01", last_period="2021-06", paid_through="2021-08", status="ceased"
        ),
    )
    ledger.prepare("2021-09")
    assert lines_of(ledger, "2021-09") == {}


# -- suspension and cessation ---------------------------------------------------------------------
def test_a_suspended_beneficiary_gets_no_instruction_and_the_months_come_back(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row("B1"), roster_row("B2", status="suspended"))
    ledger.prepare("2021-09")
    assert set(lines_of(ledger, "2021-09")) == {"B1"}
    ledger.approve("2021-09", by="checker")
    ledger.prepare("2021-10")
    assert set(lines_of(ledger, "2021-10")) == {"B1"}
    ledger.approve("2021-10", by="checker")
    load(ledger, roster_row("B1"), roster_row("B2", status="active"))
    ledger.prepare("2021-11")
    assert lines_of(ledger, "2021-11")["B2"] == [
        ("2021-09", A, 360_000),
        ("2021-10", A, 360_000),
        ("2021-11", R, 360_000),
    ]
    assert lines_of(ledger, "2021-11")["B1"] == [("2021-11", R, 360_000)]


def test_a_failed_month_is_still_paid_after_the_beneficiary_ceased(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    settle(ledger, live_instruction(ledger, "2021-09", "B1").instruction_id, "FAILED")
    load(ledger, roster_row(status="ceased", last_period="2021-09"))
    ledger.prepare("2021-10")
    assert lines_of(ledger, "2021-10") == {"B1": [("2021-09", A, 360_000)]}


def test_ceased_requires_last_period(ledger: Ledger, load: Loader) -> None:
    with pytest.raises(InvalidRoster) as caught:
        load(ledger, roster_row(status="ceased"))
    assert [(p.line, p.column) for p in caught.value.problems] == [(2, "last_period")]
    assert list(ledger.store.beneficiaries("monthly-allowance")) == []


def test_ceased_pays_what_is_still_due_up_to_last_period_and_nothing_after(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row(status="ceased", last_period="2021-10", paid_through="2021-08"))
    ledger.prepare("2021-12")
    assert lines_of(ledger, "2021-12") == {"B1": [("2021-09", A, 360_000), ("2021-10", A, 360_000)]}
    ledger.approve("2021-12", by="checker")
    ledger.prepare("2022-01")
    assert lines_of(ledger, "2022-01") == {}


# -- re-payable outcomes --------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", ["FAILED", "RETURNED", "UNCLAIMED"])
def test_a_repayable_outcome_carries_every_line_into_the_next_cycle(
    ledger: Ledger, load: Loader, outcome: str
) -> None:
    load(ledger, roster_row(first_period="2021-06", paid_through=""))
    ledger.prepare("2021-07")
    ledger.approve("2021-07", by="checker")
    settle(ledger, live_instruction(ledger, "2021-07", "B1").instruction_id, outcome)
    ledger.prepare("2021-08")
    assert lines_of(ledger, "2021-08") == {
        "B1": [
            ("2021-06", A, 270_000),
            ("2021-07", A, 360_000),
            ("2021-08", R, 360_000),
        ]
    }


@pytest.mark.parametrize("outcome", ["READY", "SUBMITTED", "ACCEPTED", "PAID"])
def test_an_open_or_paid_instruction_is_not_paid_again(
    ledger: Ledger, load: Loader, outcome: str
) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    iid = live_instruction(ledger, "2021-09", "B1").instruction_id
    if outcome != "READY":
        settle(ledger, iid, outcome)
    ledger.prepare("2021-10")
    assert lines_of(ledger, "2021-10") == {"B1": [("2021-10", R, 360_000)]}


def test_a_failure_discovered_after_the_next_cycle_is_prepared_revises_it(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    ledger.prepare("2021-10")
    assert lines_of(ledger, "2021-10") == {"B1": [("2021-10", R, 360_000)]}
    settle(ledger, live_instruction(ledger, "2021-09", "B1").instruction_id, "FAILED")
    result = ledger.prepare("2021-10")
    assert (result.created, result.revised) == (0, 1)
    assert lines_of(ledger, "2021-10") == {"B1": [("2021-09", A, 360_000), ("2021-10", R, 360_000)]}


def test_one_instruction_per_beneficiary_per_cycle_carries_all_its_lines(
    ledger: Ledger, load: Loader
) -> None:
    load(
        ledger,
        roster_row("B1", first_period="2021-03", paid_through=""),
        roster_row("B2"),
    )
    ledger.prepare("2021-09")
    pairs = instructions(ledger, "2021-09")
    assert [record.beneficiary_id for record, _ in pairs] == ["B1", "B2"]
    b1, lines = pairs[0]
    assert [Period.text(line.month) for line in lines] == [
        "2021-03", "2021-04", "2021-05", "2021-06", "2021-07", "2021-08", "2021-09",
    ]  # fmt: skip
    assert b1.amount == 4 * 270_000 + 3 * 360_000 == sum(line.amount for line in lines)


# -- mandates -------------------------------------------------------------------------------------
PROXY = {
    "proxy_name": "Trần Thị Bình",
    "proxy_relation": "con",
    "proxy_national_id": "046098765432",
}


def test_an_expired_proxy_mandate_is_held_and_its_months_return_once_renewed(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row(mandate_valid_until="2021-09-15", **PROXY))
    ledger.prepare("2021-09")  # valid on 2021-09-01
    september = live_instruction(ledger, "2021-09", "B1")
    assert (september.state, september.held_reason) == ("CREATED", None)
    assert (september.payee_kind, september.payee_name) == ("proxy", "Trần Thị Bình")
    ledger.approve("2021-09", by="checker")

    ledger.prepare("2021-10")  # expired before 2021-10-01
    october = live_instruction(ledger, "2021-10", "B1")
    assert (october.state, october.held_reason) == ("HELD", "mandate expired")
    approval = ledger.approve("2021-10", by="checker")
    assert approval.cancelled_held == 1
    assert instruction_of(ledger, "2021-10", "B1").state == "CANCELLED"

    ledger.prepare("2021-11")  # not renewed yet: still held, now with 2021-10 as arrears
    november = live_instruction(ledger, "2021-11", "B1")
    assert november.state == "HELD"
    assert lines_of(ledger, "2021-11") == {"B1": [("2021-10", A, 360_000), ("2021-11", R, 360_000)]}
    ledger.approve("2021-11", by="checker")

    load(ledger, roster_row(mandate_valid_until="2022-12-31", **PROXY))
    ledger.prepare("2021-12")
    december = live_instruction(ledger, "2021-12", "B1")
    assert (december.state, december.held_reason) == ("CREATED", None)
    assert lines_of(ledger, "2021-12") == {
        "B1": [("2021-10", A, 360_000), ("2021-11", A, 360_000), ("2021-12", R, 360_000)]
    }


def test_a_mandate_renewed_before_approval_releases_the_hold(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row(mandate_valid_until="2021-08-31", **PROXY))
    ledger.prepare("2021-09")
    held = live_instruction(ledger, "2021-09", "B1")
    assert held.state == "HELD"
    load(ledger, roster_row(mandate_valid_until="2022-08-31", **PROXY))
    result = ledger.prepare("2021-09")
    assert (result.revised, result.held) == (1, 0)
    released = live_instruction(ledger, "2021-09", "B1")
    assert released.instruction_id == held.instruction_id
    assert (released.state, released.held_reason) == ("CREATED", None)


def test_a_mandate_valid_on_the_first_day_is_not_held(ledger: Ledger, load: Loader) -> None:
    load(
        ledger,
        roster_row("B1", mandate_valid_until="2021-09-01", **PROXY),
        roster_row("B2", **PROXY),  # no end date: never expires
    )
    ledger.prepare("2021-09")
    states = {r.beneficiary_id: r.state for r, _ in ledger.instructions("2021-09")}
    assert states == {"B1": "CREATED", "B2": "CREATED"}


def test_a_mandate_date_without_a_proxy_is_refused(ledger: Ledger, load: Loader) -> None:
    with pytest.raises(InvalidRoster) as caught:
        load(ledger, roster_row(mandate_valid_until="2020-01-01"))
    assert [(p.line, p.column) for p in caught.value.problems] == [(2, "proxy_name")]


def test_a_held_instruction_cancelled_on_approval_stays_cancelled(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row(mandate_valid_until="2021-08-31", **PROXY))
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    cancelled = instruction_of(ledger, "2021-09", "B1")
    assert (cancelled.state, cancelled.held_reason) == ("CANCELLED", "mandate expired")
    with pytest.raises(InvalidTransition):
        drive(ledger, cancelled.instruction_id, "READY")
