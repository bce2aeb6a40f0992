"""A month far ahead is refused unless asked for on purpose, and a cycle prepared by mistake can
be discarded before approval: its drafts are cancelled through the transition table, its months
released, and it blocks no other month; its ids are never used again."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import open_ledger, roster_row
from sap_payments import (
    CycleNotFound,
    CycleStateError,
    FuturePeriod,
    ImportResult,
    Ledger,
    Money,
    Period,
    discard_cycle,
)
from sap_payments.cli import main
from sap_payments.instructions import TRANSITIONS, InstructionState

Loader = Callable[..., ImportResult]
TODAY = dt.date(2021, 9, 5)  # "next month" is 2021-10
S = InstructionState


def _states(ledger: Ledger, period: str) -> dict[str, str]:
    return {r.instruction_id: r.state for r, _ in ledger.instructions(period)}


def _claims(ledger: Ledger) -> list[tuple[object, ...]]:
    return ledger.store.query("SELECT beneficiary_id, month FROM claims ORDER BY 1, 2")


# -- months far ahead ----------------------------------------------------------------------------
def test_a_month_beyond_next_month_is_refused_unless_on_purpose(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row("B1"))
    with pytest.raises(FuturePeriod) as refused:
        ledger.prepare("2031-09", today=TODAY)
    assert "beyond next month (2021-10)" in str(refused.value)
    assert "--allow-future" in str(refused.value)
    assert ledger.store.cycles("monthly-allowance") == []
    assert _claims(ledger) == []
    assert ledger.prepare("2021-10", today=TODAY).count == 1  # next month is fine
    with pytest.raises(FuturePeriod):
        ledger.prepare("2021-11", today=dt.date(2021, 9, 30))


def test_allow_future_prepares_a_month_ahead(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1", paid_through="2021-10"))
    result = ledger.prepare("2021-12", today=TODAY, allow_future=True)
    assert result.count == 1
    assert result.total == Money.vnd(2 * 360_000)  # November and December


def test_the_command_line_refuses_a_far_month_and_allows_it_on_purpose(
    tmp_path: Path, load: Loader, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_ledger(tmp_path) as ledger:
        load(ledger, roster_row("B1", first_period="2021-01"))
    db = str(tmp_path / "l.db")
    assert main(["cycle", "prepare", "--period", "9999-12", "--db", db]) == 1
    err = capsys.readouterr().err
    assert "beyond next month" in err
    assert len(err.strip().splitlines()) == 1
    ahead = str(Period.containing(dt.datetime.now(dt.UTC).date()) + 3)
    assert main(["cycle", "prepare", "--period", ahead, "--db", db]) == 1
    capsys.readouterr()
    assert main(["cycle", "prepare", "--period", ahead, "--allow-future", "--db", db]) == 0
    assert f"cycle {ahead}" in capsys.readouterr().out


# -- discarding ----------------------------------------------------------------------------------
def test_discarding_a_mistaken_month_unblocks_the_real_one(ledger: Ledger, load: Loader) -> None:
    load(
        ledger,
        roster_row("B1"),
        roster_row(
            "B2", proxy_name="Lê Văn Cường", proxy_relation="con", mandate_valid_until="2021-01-31"
        ),
    )
    mistaken = ledger.prepare("2031-09", today=TODAY, allow_future=True)
    assert (mistaken.count, mistaken.held) == (2, 1)
    drafts = {r.instruction_id: r.state for r, _ in ledger.instructions("2031-09")}
    assert sorted(drafts.values()) == ["CREATED", "HELD"]
    assert len(_claims(ledger)) == 2 * 121  # 2021-09 … 2031-09
    with pytest.raises(CycleStateError, match="2031-09"):
        ledger.prepare("2021-09", today=TODAY)

    done = ledger.discard_cycle("2031-09", by="clerk", reason="typed the wrong year")
    assert (done.cancelled, done.discarded_by, str(done.period)) == (2, "clerk", "2031-09")
    assert set(_states(ledger, "2031-09").values()) == {"CANCELLED"}
    assert _claims(ledger) == []  # every month released
    cycle = ledger.cycle("2031-09")
    assert (cycle.state, cycle.instructions, cycle.total) == ("discarded", 0, 0)
    for ident, before in drafts.items():  # each move an event, allowed by the one table
        moves = [
            (e.from_state, e.to_state, e.actor)
            for _, e in ledger.store.events(ident)
            if e.kind == "instruction.cancelled"
        ]
        assert moves == [(before, "CANCELLED", "clerk")]
        assert S.CANCELLED in TRANSITIONS[S(before)]
    (event,) = [e for _, e in ledger.store.events() if e.kind == "cycle.discarded"]
    assert event.actor == "clerk"
    assert event.detail == (
        "monthly-allowance 2031-09: 2 draft instructions cancelled; typed the wrong year"
    )

    real = ledger.prepare("2021-09", today=TODAY)
    assert (real.count, real.total) == (2, Money.vnd(2 * 360_000))  # one month each, no arrears
    ledger.approve("2021-09", by="checker")
    ledger.prepare("2021-10", today=TODAY)  # the discarded month blocks no later one either
    assert ledger.verify_audit().ok


def test_a_discarded_month_prepared_again_never_reuses_an_id(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"), roster_row("B2"))
    ledger.prepare("2021-09", today=TODAY)
    first = _states(ledger, "2021-09")
    discard_cycle(ledger.store, "2021-09")
    with pytest.raises(CycleStateError, match="discarded"):
        ledger.approve("2021-09", by="checker")
    again = ledger.prepare("2021-09", today=TODAY)
    assert again.created == 2
    assert ledger.cycle("2021-09").state == "prepared"
    now = _states(ledger, "2021-09")
    fresh = {ident for ident, state in now.items() if state == "CREATED"}
    assert len(fresh) == 2
    assert not fresh & set(first)
    assert {r.seq for r, _ in ledger.instructions("2021-09") if r.state == "CREATED"} == {2}
    ledger.approve("2021-09", by="checker")
    assert ledger.verify_audit().ok


def test_an_approved_or_closed_cycle_cannot_be_discarded(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"))
    with pytest.raises(CycleNotFound):
        ledger.discard_cycle("2021-09")
    ledger.prepare("2021-09", today=TODAY)
    ledger.approve("2021-09", by="checker")
    with pytest.raises(CycleStateError, match="is approved and cannot be discarded"):
        ledger.discard_cycle("2021-09")
    assert ledger.cycle("2021-09").state == "approved"
    assert set(_states(ledger, "2021-09").values()) == {"READY"}
    ledger.store.save_cycle(ledger.cycle("2021-09")._replace(state="closed"))
    with pytest.raises(CycleStateError, match="is closed and cannot be discarded"):
        ledger.discard_cycle("2021-09")


def test_discarding_twice_is_refused(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row("B1"))
    ledger.prepare("2021-09", today=TODAY)
    ledger.discard_cycle("2021-09")
    with pytest.raises(CycleStateError, match="already discarded"):
        ledger.discard_cycle("2021-09")


def test_cycle_discard_on_the_command_line(
    tmp_path: Path, load: Loader, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_ledger(tmp_path) as ledger:
        load(ledger, roster_row("B1"), roster_row("B2"))
        ledger.prepare("2031-09", today=TODAY, allow_future=True)
    db = str(tmp_path / "l.db")
    assert main(["cycle", "discard", "--period", "2031-09", "--by", "clerk", "--db", db]) == 0
    assert "2 draft instructions cancelled" in capsys.readouterr().out
    assert main(["cycle", "discard", "--period", "2031-09", "--db", db]) == 1
    assert "already discarded" in capsys.readouterr().err
    with open_ledger(tmp_path) as ledger:
        assert ledger.prepare("2021-09", today=TODAY).count == 2
