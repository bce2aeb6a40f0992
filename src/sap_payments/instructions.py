"""Payment instructions and their lifecycle.

One instruction pays one payee in one cycle; it carries every entitlement line due to that
beneficiary in the cycle. Its state moves only through :data:`TRANSITIONS`, the one transition
table; :func:`check_transition` is the single gate every state change in the library passes, and
each change is recorded as an :class:`Event`.

::

    CREATED ──approve──▶ READY ──send──▶ SUBMITTED ──ack──▶ ACCEPTED ──▶ PAID
       │ ▲                 │                 │  └─timeout──▶ UNKNOWN ──status query──▶ (a result)
       ▼ │                 │                 └──▶ FAILED
      HELD ──▶ CANCELLED ◀─┘                          PAID ──▶ RETURNED
                                                  ACCEPTED ──▶ UNCLAIMED

An answer that does not match what was sent (another amount, currency or account) moves a
SUBMITTED or ACCEPTED instruction to UNKNOWN, where it waits for an operator's review
(:mod:`sap_payments.reviews`).

HELD is an instruction that cannot be paid as it stands (for example the proxy's mandate has
expired); approving the cycle cancels it and its months come back as arrears in the next cycle.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs

from sap_payments.beneficiaries import FinancialAddress
from sap_payments.errors import InvalidTransition
from sap_payments.money import Money
from sap_payments.periods import Period

if TYPE_CHECKING:
    from sap_payments.entitlements import Entitlement

__all__ = [
    "FINAL_STATES",
    "OPEN_STATES",
    "REPAYABLE_STATES",
    "TRANSITIONS",
    "Event",
    "Instruction",
    "InstructionState",
    "LineKind",
    "check_transition",
]


class InstructionState(enum.StrEnum):
    CREATED = "CREATED"
    HELD = "HELD"
    READY = "READY"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    UNKNOWN = "UNKNOWN"
    PAID = "PAID"
    FAILED = "FAILED"
    RETURNED = "RETURNED"
    UNCLAIMED = "UNCLAIMED"
    CANCELLED = "CANCELLED"


class LineKind(enum.StrEnum):
    """Why a line is in an instruction."""

    REGULAR = "regular"  # the cycle's own month
    ARREARS = "arrears"  # an earlier month not paid yet (back-dated, withheld or re-payable)
    ONE_OFF = "one_off"  # a one-time grant
    CORRECTION = "correction"


S = InstructionState

#: The one transition table: state → the states it may move to.
TRANSITIONS: Final[Mapping[InstructionState, frozenset[InstructionState]]] = {
    S.CREATED: frozenset({S.READY, S.HELD, S.CANCELLED}),
    S.HELD: frozenset({S.CREATED, S.CANCELLED}),
    S.READY: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.ACCEPTED, S.PAID, S.FAILED, S.UNKNOWN}),
    # An authoritative "never received" turns an unknown outcome back into READY for a resend.
    S.UNKNOWN: frozenset({S.ACCEPTED, S.PAID, S.FAILED, S.READY}),
    # An answer that does not match what was sent (another amount, currency or account) puts
    # an accepted instruction back to UNKNOWN until an operator reviews it (dispatch).
    S.ACCEPTED: frozenset({S.PAID, S.FAILED, S.UNCLAIMED, S.UNKNOWN}),
    S.PAID: frozenset({S.RETURNED}),
    S.FAILED: frozenset(),
    S.RETURNED: frozenset(),
    S.UNCLAIMED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: States no result can move any more.
FINAL_STATES: Final = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
#: States whose lines are due again: the money did not reach the payee (or came back).
REPAYABLE_STATES: Final = frozenset({S.FAILED, S.RETURNED, S.UNCLAIMED, S.CANCELLED})
#: States in which the outcome of an instruction is still open.
OPEN_STATES: Final = frozenset({S.CREATED, S.HELD, S.READY, S.SUBMITTED, S.ACCEPTED, S.UNKNOWN})


def check_transition(
    instruction_id: str, from_state: InstructionState | str, to_state: InstructionState | str
) -> None:
    """Raise :class:`~sap_payments.errors.InvalidTransition` unless the table allows the move.

    States may be given as members or as their text (as the ledger stores them); an unknown
    state is refused like a forbidden move.
    """
    try:
        allowed = to_state in TRANSITIONS[InstructionState(from_state)] and bool(
            InstructionState(to_state)
        )
    except ValueError:
        allowed = False
    if not allowed:
        raise InvalidTransition(instruction_id, str(from_state), str(to_state))


@attrs.frozen
class Event:
    """A recorded change: an instruction transition, or a ledger event such as an import."""

    seq: int
    at: str
    kind: str
    instruction_id: str | None = None
    from_state: InstructionState | None = None
    to_state: InstructionState | None = None
    actor: str | None = None
    detail: str | None = None


@attrs.frozen
class Instruction:
    """One payment to one payee in one cycle, carrying every entitlement line due in it."""

    instruction_id: str  # deterministic; also the idempotency key providers see
    programme: str
    period: Period
    beneficiary_id: str
    state: InstructionState
    payee: str  # the beneficiary, or the authorised proxy
    payee_is_proxy: bool
    address: FinancialAddress
    amount: Money
    lines: tuple[Entitlement, ...]
    held_reason: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES
