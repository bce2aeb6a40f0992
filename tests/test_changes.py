"""The change report: what differs from the previous cycle, and why, in a clerk's words."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import live_instruction, roster_row, settle
from sap_payments import Change, CycleNotFound, Ledger, Period, change_report
from sap_payments.changes import CHANGE_KINDS

Loader = Callable[..., object]


def _run(ledger: Ledger, period: str) -> dict[str, Change]:
    """Prepare and approve ``period``; its changes by beneficiary_id."""
    ledger.prepare(period)
    report = ledger.changes(period)
    ledger.approve(period, by="checker")
    by_id = {change.beneficiary_id: change for change in report.changes}
    assert len(by_id) == len(report.changes), "one change per beneficiary"
    return by_id


def test_kinds() -> None:
    assert CHANGE_KINDS == ("added", "removed", "amount_changed", "payee_changed", "held")


def test_everyone_in_the_first_cycle_is_added_because_it_is_the_first(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row("B1"), roster_row("B2", first_period="2021-07", paid_through=""))
    changes = _run(ledger, "2021-09")
    assert changes["B1"] == Change(
        "added", "B1", "20107", None, 360_000, "first cycle in this ledger"
    )
    assert changes["B2"].kind == "added"
    assert changes["B2"].amount == 3 * 360_000
    assert changes["B2"].reason.startswith("first cycle in this ledger")
    assert "arrears" in changes["B2"].reason
    assert "2021-07" in changes["B2"].reason
    assert "2021-08" in changes["B2"].reason
    report = ledger.changes("2021-09")
    assert report.previous_period is None
    assert report.currency == "VND"


def test_a_new_beneficiary_with_a_back_dated_decision_names_the_arrears_months(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row("B1", paid_through="2021-07"))
    _run(ledger, "2021-08")
    load(
        ledger,
        roster_row("B1", paid_through="2021-07"),
        roster_row("B2", category="disabled_heavy", first_period="2021-06", paid_through=""),
    )
    changes = _run(ledger, "2021-09")
    assert set(changes) == {"B2"}
    added = changes["B2"]
    assert (added.kind, added.previous_amount) == ("added", None)
    assert added.amount == 405_000 + 3 * 540_000
    assert "new beneficiary" in added.reason
    assert "back-dated to 2021-06" in added.reason
    assert "arrears" in added.reason
    for month in ("2021-06", "2021-07", "2021-08"):
        assert month in added.reason


def test_a_new_beneficiary_without_arrears(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"))
    _run(ledger, "2021-09")
    load(ledger, roster_row("B1"), roster_row("B2", first_period="2021-10", paid_through=""))
    changes = _run(ledger, "2021-10")
    assert changes == {
        "B2": Change("added", "B2", "20107", None, 360_000, "new beneficiary from 2021-10")
    }


def test_an_unchanged_beneficiary_is_not_reported(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"))
    _run(ledger, "2021-09")
    assert _run(ledger, "2021-10") == {}
    report = ledger.changes("2021-10")
    assert report.previous_period == Period.parse("2021-09")
    assert report.summary() == dict.fromkeys(CHANGE_KINDS, 0)


def test_suspended_is_removed_with_the_reason(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"), roster_row("B2"))
    _run(ledger, "2021-09")
    load(ledger, roster_row("B1"), roster_row("B2", status="suspended"))
    changes = _run(ledger, "2021-10")
    assert set(changes) == {"B2"}
    removed = changes["B2"]
    assert (removed.kind, removed.previous_amount, removed.amount) == ("removed", 360_000, None)
    assert removed.reason.startswith("suspended")


def test_back_in_payment_after_a_suspension_names_the_arrears(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"))
    _run(ledger, "2021-09")
    load(ledger, roster_row("B1", status="suspended"))
    _run(ledger, "2021-10")
    load(ledger, roster_row("B1"))
    changes = _run(ledger, "2021-11")
    assert changes["B1"].kind == "added"
    assert changes["B1"].amount == 2 * 360_000
    assert changes["B1"].reason == "back in payment; arrears for 2021-10"


def test_ceased_is_removed_naming_the_last_month(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"), roster_row("B2"))
    _run(ledger, "2021-09")
    load(ledger, roster_row("B1"), roster_row("B2", status="ceased", last_period="2021-09"))
    changes = _run(ledger, "2021-10")
    assert changes == {
        "B2": Change("removed", "B2", "20107", 360_000, None, "ceased: last month was 2021-09")
    }


def test_a_new_standard_level_is_an_amount_change(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row(first_period="2024-06", paid_through="2024-05"))
    _run(ledger, "2024-06")
    changes = _run(ledger, "2024-07")
    change = changes["B1"]
    assert (change.kind, change.previous_amount, change.amount) == (
        "amount_changed",
        360_000,
        500_000,
    )
    assert "standard level" in change.reason
    assert "360,000" in change.reason
    assert "500,000" in change.reason
    assert "coefficient" not in change.reason


def test_a_new_coefficient_is_an_amount_change(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    _run(ledger, "2021-09")
    load(ledger, roster_row(coefficient="1.5"))
    change = _run(ledger, "2021-10")["B1"]
    assert (change.kind, change.previous_amount, change.amount) == (
        "amount_changed",
        360_000,
        540_000,
    )
    assert "coefficient" in change.reason
    assert "1.5" in change.reason
    assert "standard level" not in change.reason


def test_arrears_after_a_failed_payment_are_an_amount_change(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    _run(ledger, "2021-09")
    settle(ledger, live_instruction(ledger, "2021-09", "B1").instruction_id, "FAILED")
    change = _run(ledger, "2021-10")["B1"]
    assert (change.kind, change.previous_amount, change.amount) == (
        "amount_changed",
        360_000,
        720_000,
    )
    assert "arrears" in change.reason
    assert "2021-09" in change.reason


def test_a_new_channel_is_a_payee_change(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    _run(ledger, "2021-09")
    load(
        ledger,
        roster_row(
            channel="bank",
            provider="vietinbank",
            bank_bin="970415",
            account_number="1234567890",
            msisdn="",
        ),
    )
    changes = _run(ledger, "2021-10")
    assert changes == {
        "B1": Change("payee_changed", "B1", "20107", 360_000, 360_000, "channel ewallet → bank")
    }


def test_a_new_proxy_is_a_payee_change(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    _run(ledger, "2021-09")
    load(ledger, roster_row(proxy_name="Trần Thị Bình", proxy_relation="con"))
    change = _run(ledger, "2021-10")["B1"]
    assert change.kind == "payee_changed"
    assert "proxy" in change.reason


def test_an_expired_mandate_is_reported_as_held(ledger: Ledger, load: Loader) -> None:
    proxy = {"proxy_name": "Trần Thị Bình", "proxy_relation": "con"}
    load(ledger, roster_row(mandate_valid_until="2021-09-30", **proxy))
    _run(ledger, "2021-09")
    ledger.prepare("2021-10")
    before_approval = ledger.changes("2021-10")
    ledger.approve("2021-10", by="checker")
    after_approval = ledger.changes("2021-10")
    for report in (before_approval, after_approval):
        (change,) = report.changes
        assert (change.kind, change.previous_amount, change.amount) == (
            "held",
            360_000,
            360_000,
        )
        assert "mandate expired" in change.reason
    assert after_approval.summary() == {**dict.fromkeys(CHANGE_KINDS, 0), "held": 1}


def test_suspended_while_held_is_removed_not_held(ledger: Ledger, load: Loader) -> None:
    """A held instruction cancelled on re-preparation because the beneficiary is now
    suspended is a removal, not a hold whose months stay due."""
    proxy = {"proxy_name": "Trần Thị Bình", "proxy_relation": "con"}
    load(ledger, roster_row(mandate_valid_until="2021-09-30", **proxy))
    _run(ledger, "2021-09")
    ledger.prepare("2021-10")  # held: the mandate expired
    load(ledger, roster_row(mandate_valid_until="2021-09-30", status="suspended", **proxy))
    assert ledger.prepare("2021-10").cancelled == 1
    (change,) = ledger.changes("2021-10").changes
    assert (change.kind, change.previous_amount, change.amount) == ("removed", 360_000, None)
    assert change.reason.startswith("suspended")


def test_summary_counts_each_kind(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"), roster_row("B2"), roster_row("B3"))
    _run(ledger, "2021-09")
    load(
        ledger,
        roster_row("B1", coefficient="2"),
        roster_row("B2", status="suspended"),
        roster_row("B3"),
        roster_row("B4", first_period="2021-10", paid_through=""),
    )
    ledger.prepare("2021-10")
    report = ledger.changes("2021-10")
    assert report.summary() == {
        "added": 1,
        "removed": 1,
        "amount_changed": 1,
        "payee_changed": 0,
        "held": 0,
    }
    assert [c.beneficiary_id for c in report.changes] == ["B1", "B2", "B4"]
    assert report == change_report(ledger.store, "2021-10", rules=ledger.rules)


def test_a_cycle_not_prepared_has_no_report(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    with pytest.raises(CycleNotFound):
        ledger.changes("2021-09")
