"""The instruction lifecycle: one transition table, final states that never change, and an event
recorded for every transition the ledger makes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from conftest import drive, live_instruction, roster_row, settle, state_of
from sap_payments import (
    FINAL_STATES,
    OPEN_STATES,
    REPAYABLE_STATES,
    TRANSITIONS,
    InstructionState,
    InvalidTransition,
    Ledger,
    StateError,
    check_transition,
)

S = InstructionState
ALL_STATES = list(S)

#: The moves the lifecycle in DESIGN.md draws, plus the HELD detour of instructions.py.
EXPECTED_MOVES = {
    (S.CREATED, S.READY),
    (S.CREATED, S.HELD),
    (S.CREATED, S.CANCELLED),
    (S.HELD, S.CREATED),
    (S.HELD, S.CANCELLED),
    (S.READY, S.SUBMITTED),
    (S.READY, S.CANCELLED),
    (S.SUBMITTED, S.ACCEPTED),
    (S.SUBMITTED, S.PAID),
    (S.SUBMITTED, S.FAILED),
    (S.SUBMITTED, S.UNKNOWN),
    (S.UNKNOWN, S.ACCEPTED),
    (S.UNKNOWN, S.PAID),
    (S.UNKNOWN, S.FAILED),
    (S.UNKNOWN, S.READY),
    (S.ACCEPTED, S.PAID),
    (S.ACCEPTED, S.FAILED),
    (S.ACCEPTED, S.UNCLAIMED),
    (S.ACCEPTED, S.UNKNOWN),  # an answer that does not match what was sent: held for review
    (S.PAID, S.RETURNED),
}


# -- the table ------------------------------------------------------------------------------------
def test_the_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(ALL_STATES)
    for targets in TRANSITIONS.values():
        assert targets <= set(ALL_STATES)


def test_the_table_holds_exactly_the_lifecycle_moves() -> None:
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert table == EXPECTED_MOVES


@pytest.mark.parametrize(("source", "target"), sorted(EXPECTED_MOVES))
def test_check_transition_allows_every_move_in_the_table(
    source: InstructionState, target: InstructionState
) -> None:
    check_transition("I1", source, target)  # does not raise


@pytest.mark.parametrize(
    ("source", "target"),
    sorted(set(itertools.product(ALL_STATES, ALL_STATES)) - EXPECTED_MOVES),
)
def test_check_transition_refuses_every_move_not_in_the_table(
    source: InstructionState, target: InstructionState
) -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_transition("202109-ABC", source, target)
    error = caught.value
    assert (error.instruction_id, error.from_state, error.to_state) == (
        "202109-ABC",
        source.value,
        target.value,
    )
    assert "202109-ABC" in str(error)
    assert isinstance(error, StateError)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.PAID, S.READY),  # a late callback cannot undo a payment
        (S.PAID, S.SUBMITTED),
        (S.PAID, S.FAILED),
        (S.READY, S.CREATED),  # approval cannot be taken back
        (S.CREATED, S.PAID),  # no skipping dispatch
        (S.CREATED, S.SUBMITTED),
        (S.FAILED, S.READY),  # a final state is final
        (S.CANCELLED, S.CREATED),
        (S.HELD, S.READY),  # a held instruction is never approved
        (S.SUBMITTED, S.SUBMITTED),  # repeating a state is not a move
    ],
)
def test_backward_and_skipping_moves_are_refused(
    source: InstructionState, target: InstructionState
) -> None:
    with pytest.raises(InvalidTransition):
        check_transition("I1", source, target)


@pytest.mark.parametrize(("source", "target"), [("PAID", "READY"), ("BOGUS", "READY")])
def test_states_given_as_text_are_refused_with_invalid_transition(source: str, target: str) -> None:
    """States read back from the ledger are text; a bad one is an InvalidTransition too."""
    with pytest.raises(InvalidTransition):
        check_transition("I1", source, target)  # type: ignore[arg-type]


def test_final_states_have_no_exits() -> None:
    assert {S.FAILED, S.RETURNED, S.UNCLAIMED, S.CANCELLED} == FINAL_STATES
    for state in FINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
        for target in ALL_STATES:
            with pytest.raises(InvalidTransition):
                check_transition("I1", state, target)


def test_state_groups() -> None:
    assert {S.FAILED, S.RETURNED, S.UNCLAIMED} <= REPAYABLE_STATES
    assert S.PAID not in REPAYABLE_STATES
    assert not OPEN_STATES & FINAL_STATES
    assert OPEN_STATES | FINAL_STATES | {S.PAID} == set(ALL_STATES)
    assert REPAYABLE_STATES <= FINAL_STATES


def test_states_are_their_names() -> None:
    for state in ALL_STATES:
        assert state.value == state.name
        assert S(state.name) is state


# -- events ---------------------------------------------------------------------------------------
def _events(ledger: Ledger, instruction_id: str) -> list[tuple[str, str | None, str | None]]:
    return [
        (event.kind, event.from_state, event.to_state)
        for _, event in ledger.store.events(instruction_id)
    ]


def test_created_and_approved_are_recorded_with_the_approver(
    ledger: Ledger, load: Callable[..., object]
) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    iid = live_instruction(ledger, "2021-09", "B1").instruction_id
    assert _events(ledger, iid) == [("instruction.created", None, "CREATED")]
    ledger.approve("2021-09", by="checker")
    assert _events(ledger, iid) == [
        ("instruction.created", None, "CREATED"),
        ("instruction.approved", "CREATED", "READY"),
    ]
    (approved,) = [e for _, e in ledger.store.events(iid) if e.kind == "instruction.approved"]
    assert approved.actor == "checker"
    assert state_of(ledger, iid) == "READY"


def test_held_then_cancelled_on_approval_is_recorded(
    ledger: Ledger, load: Callable[..., object]
) -> None:
    load(
        ledger,
        roster_row(
            proxy_name="Trần Thị Bình", proxy_relation="con", mandate_valid_until="2021-08-31"
        ),
    )
    ledger.prepare("2021-09")
    iid = live_instruction(ledger, "2021-09", "B1").instruction_id
    ledger.approve("2021-09", by="checker")
    assert _events(ledger, iid) == [
        ("instruction.created", None, "CREATED"),
        ("instruction.held", "CREATED", "HELD"),
        ("instruction.cancelled", "HELD", "CANCELLED"),
    ]
    held = next(e for _, e in ledger.store.events(iid) if e.kind == "instruction.held")
    assert held.detail == "mandate expired"
    assert state_of(ledger, iid) == "CANCELLED"


def test_revised_and_cancelled_on_re_preparation_are_recorded(
    ledger: Ledger, load: Callable[..., object]
) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    iid = live_instruction(ledger, "2021-09", "B1").instruction_id
    load(ledger, roster_row(coefficient="1.5"))
    ledger.prepare("2021-09")
    load(ledger, roster_row(coefficient="1.5", status="suspended"))
    ledger.prepare("2021-09")
    assert _events(ledger, iid) == [
        ("instruction.created", None, "CREATED"),
        ("instruction.revised", "CREATED", "CREATED"),
        ("instruction.cancelled", "CREATED", "CANCELLED"),
    ]
    revised = next(e for _, e in ledger.store.events(iid) if e.kind == "instruction.revised")
    assert revised.detail is not None
    assert "360000 -> 540000" in revised.detail


def test_every_recorded_transition_is_in_the_table_and_ends_in_the_current_state(
    ledger: Ledger, load: Callable[..., object]
) -> None:
    """Replay each instruction's events: a chain of allowed moves ending where it stands."""
    proxy = {"proxy_name": "Lê Văn Cường", "proxy_relation": "con"}
    load(
        ledger,
        roster_row("B1"),
        roster_row("B2", category="disabled_heavy"),
        roster_row("B3", mandate_valid_until="2021-09-30", **proxy),
        roster_row("B4", first_period="2021-06", paid_through=""),
    )
    ledger.prepare("2021-09")
    load(
        ledger,
        roster_row("B1", coefficient="2"),
        roster_row("B2", category="disabled_heavy", status="suspended"),
        roster_row("B3", mandate_valid_until="2021-09-30", **proxy),
        roster_row("B4", first_period="2021-06", paid_through=""),
    )
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    settle(ledger, live_instruction(ledger, "2021-09", "B1").instruction_id, "PAID")
    settle(ledger, live_instruction(ledger, "2021-09", "B4").instruction_id, "FAILED")
    ledger.prepare("2021-10")
    ledger.approve("2021-10", by="checker")

    ids = [r.instruction_id for p in ("2021-09", "2021-10") for r, _ in ledger.instructions(p)]
    assert len(ids) >= 7
    for iid in ids:
        state: InstructionState | None = None
        for _, event in ledger.store.events(iid):
            assert event.from_state == (state.value if state else None), (iid, event)
            target = S(event.to_state)
            if state is not None and target != state:
                check_transition(iid, state, target)
            state = target
        assert state is not None
        assert state.value == state_of(ledger, iid)


def test_a_final_instruction_cannot_be_driven_further(
    ledger: Ledger, load: Callable[..., object]
) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    iid = live_instruction(ledger, "2021-09", "B1").instruction_id
    settle(ledger, iid, "FAILED")
    for target in ("READY", "SUBMITTED", "PAID", "ACCEPTED"):
        with pytest.raises(InvalidTransition):
            drive(ledger, iid, target)
    assert state_of(ledger, iid) == "FAILED"
