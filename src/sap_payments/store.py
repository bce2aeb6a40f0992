"""The ledger store: the protocol the cycle engine talks to, and the records it passes.

The embedded default is :class:`~sap_payments.sqlite_store.SQLiteStore` (one file, WAL). The
engine never writes SQL itself; it streams rows in and out through :class:`Store`, so a
PostgreSQL backend can implement the same protocol. Rows are plain named tuples, not domain
objects: a payroll of a million beneficiaries passes through here, and the engine builds domain
objects only where a rule needs one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol

__all__ = [
    "DETAILS_FROM",
    "AreaRecord",
    "BatchRecord",
    "BeneficiaryRecord",
    "CycleRecord",
    "EventRecord",
    "ImportRecord",
    "ImportSummary",
    "InstructionRecord",
    "LineRecord",
    "Move",
    "Store",
]


class BeneficiaryRecord(NamedTuple):
    """One beneficiary as stored: the roster row, normalised (periods as month ordinals).

    The first fields are what the ledger selects and groups by; the rest (from ``full_name``
    on) are the personal and payment details, which a store may keep together as one value.
    """

    beneficiary_id: str
    national_id: str | None
    province_code: str
    district_code: str
    commune_code: str
    category: str
    coefficient: str | None
    first_period: int
    last_period: int | None
    paid_through: int | None
    status: str
    channel: str
    provider: str
    full_name: str
    birth_date: str | None
    sex: str
    msisdn: str | None
    bank_bin: str | None
    account_number: str | None
    pay_point: str | None
    proxy_name: str | None
    proxy_national_id: str | None
    proxy_relation: str | None
    mandate_valid_until: str | None
    home_delivery: int


#: Where the details start in :class:`BeneficiaryRecord`.
DETAILS_FROM = BeneficiaryRecord._fields.index("full_name")


class AreaRecord(NamedTuple):
    province_code: str
    province_name: str
    district_code: str
    district_name: str
    commune_code: str
    commune_name: str


class CycleRecord(NamedTuple):
    programme: str
    period: int
    state: str  # "prepared" | "approved" | later states added by dispatch
    ruleset: str
    prepared_at: str
    approved_at: str | None
    approved_by: str | None
    instructions: int
    total: int
    currency: str


class InstructionRecord(NamedTuple):
    instruction_id: str
    programme: str
    period: int
    beneficiary_id: str
    seq: int
    state: str
    held_reason: str | None
    channel: str
    provider: str
    address: str
    payee_kind: str  # "beneficiary" | "proxy"
    payee_name: str
    amount: int
    currency: str
    lines: str  # the lines as JSON: [[month ordinal, kind, amount, coefficient], …]
    province_code: str
    district_code: str
    commune_code: str


class LineRecord(NamedTuple):
    instruction_id: str
    programme: str
    beneficiary_id: str
    month: int
    kind: str
    amount: int
    coefficient: str


class EventRecord(NamedTuple):
    at: str
    kind: str
    instruction_id: str | None
    from_state: str | None
    to_state: str | None
    actor: str | None
    detail: str | None


class BatchRecord(NamedTuple):
    """A batch sent to one provider: the outbox manifest written before the call."""

    batch_id: str
    provider: str
    programme: str
    period: int
    payments: int
    control_sum: int
    currency: str
    sha256: str
    created_at: str
    answered_at: str | None = None
    outcome: str | None = None  # "answered" | "timeout" | "unavailable" | "error"


class Move(NamedTuple):
    """One instruction's state change, checked against the transition table by the caller."""

    instruction_id: str
    from_state: str
    to_state: str
    kind: str  # the event kind, e.g. "instruction.paid"
    detail: str | None = None
    reason: str | None = None  # the provider's result reason, kept on the instruction
    provider_reference: str | None = None


class ImportRecord(NamedTuple):
    import_id: int
    kind: str
    source: str
    sha256: str
    rows: int
    added: int
    changed: int
    unchanged: int
    at: str


class ImportSummary(NamedTuple):
    added: int
    changed: int
    unchanged: int


class Store(Protocol):
    """What the engine needs from a ledger database."""

    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside happen together or not at all (nested calls join the outer one)."""
        ...

    def close(self) -> None: ...

    # -- roster -------------------------------------------------------------------------
    def upsert_roster(
        self, programme: str, import_id: int, rows: Iterable[tuple[int, BeneficiaryRecord]]
    ) -> int:
        """Add or update beneficiaries from (line, *record) rows; return how many were added.

        A changed row keeps its earlier version in the history; an unchanged row is only marked
        as listed by this import. Problems found on the way (a beneficiary listed twice, one
        enrolled in another programme) are recorded for :meth:`roster_problems`.
        """
        ...

    def roster_problems(self, import_id: int) -> Iterator[tuple[int, str, str]]:
        """(line, column, reason) for every problem of the import that only the ledger sees."""
        ...

    def changed_in(self, import_id: int) -> int:
        """How many beneficiaries the import changed."""
        ...

    def find_import(self, kind: str, sha256: str) -> ImportRecord | None: ...

    def add_import(self, kind: str, source: str, sha256: str, at: str) -> int: ...

    def finish_import(self, import_id: int, rows: int, summary: ImportSummary) -> None: ...

    def upsert_areas(self, rows: Iterable[AreaRecord]) -> int: ...

    def areas(self) -> Iterator[AreaRecord]: ...

    def beneficiary(self, beneficiary_id: str) -> BeneficiaryRecord | None: ...

    def beneficiaries(
        self, programme: str, start: str | None = None, stop: str | None = None
    ) -> Iterator[BeneficiaryRecord]:
        """The programme's beneficiaries with an id in [start, stop) (None: open), by id."""
        ...

    def beneficiaries_by_area(self, programme: str, period: int) -> list[tuple[str, str, str, int]]:
        """(province, district, commune, count) of the programme's beneficiaries not ceased
        before ``period`` (``last_period`` empty or not earlier)."""
        ...

    def beneficiary_history(self, beneficiary_id: str) -> list[tuple[int, BeneficiaryRecord]]:
        """Earlier versions (version number, record), oldest first."""
        ...

    # -- cycles ---------------------------------------------------------------------------
    def cycle(self, programme: str, period: int) -> CycleRecord | None: ...

    def cycles(self, programme: str) -> list[CycleRecord]: ...

    def save_cycle(self, cycle: CycleRecord) -> None: ...

    def live_months(
        self,
        programme: str,
        exclude_period: int,
        start: str | None = None,
        stop: str | None = None,
    ) -> Iterator[tuple[str, int]]:
        """(beneficiary_id, month) carried by live lines of other cycles, by beneficiary_id;
        for ids in [start, stop) when given."""
        ...

    def cycle_instructions(
        self,
        programme: str,
        period: int,
        *,
        with_lines: bool = False,
        start: str | None = None,
        stop: str | None = None,
    ) -> Iterator[tuple[InstructionRecord, list[LineRecord]]]:
        """The cycle's instructions ordered by beneficiary_id then seq, each with its lines."""
        ...

    def instruction(self, instruction_id: str) -> InstructionRecord | None: ...

    def beneficiary_instructions(
        self, programme: str, beneficiary_id: str
    ) -> list[InstructionRecord]:
        """Every instruction of one beneficiary in the programme, by period and seq."""
        ...

    def insert_instructions(self, instructions: Sequence[InstructionRecord], at: str) -> None:
        """Add new instructions (CREATED or HELD) with their lines, and record each as an event
        ("instruction.created", then "instruction.held" for a held one) at time ``at``."""
        ...

    def cycle_totals(self, programme: str, period: int) -> list[tuple[str, str, str, int, int]]:
        """(state, provider, commune_code, count, amount) of the cycle's instructions."""
        ...

    def replace_instruction(self, instruction: InstructionRecord) -> None:
        """Overwrite a draft instruction's content and lines (same id, same state)."""
        ...

    def set_state(
        self, instruction_ids: Sequence[str], to_state: str, *, release_lines: bool
    ) -> None:
        """Set the state of instructions (the caller has checked the transition table)."""
        ...

    def bulk_transition(
        self,
        programme: str,
        period: int,
        from_state: str,
        to_state: str,
        event: EventRecord,
        *,
        release_lines: bool,
    ) -> int:
        """Move every instruction of the cycle in ``from_state`` to ``to_state``, one event each."""
        ...

    def append_events(self, events: Iterable[EventRecord]) -> None: ...

    # -- dispatch ---------------------------------------------------------------------------
    def instructions_in_states(
        self, programme: str, period: int, states: Sequence[str]
    ) -> list[InstructionRecord]:
        """The cycle's instructions in any of ``states``, in no particular order."""
        ...

    def instructions_by_id(self, instruction_ids: Sequence[str]) -> list[InstructionRecord]: ...

    def instruction_ids_in_state(
        self, programme: str, period: int, state: str
    ) -> list[tuple[str, str]]:
        """(instruction_id, provider) of the cycle's instructions in ``state``, by provider
        then beneficiary_id."""
        ...

    def add_batch(self, batch: BatchRecord) -> None:
        """Record a batch (its instructions name it in the detail of their move to
        SUBMITTED)."""
        ...

    def answer_batch(self, batch_id: str, at: str, outcome: str) -> None: ...

    def batches(self, programme: str, period: int) -> list[BatchRecord]: ...

    def apply_moves(self, moves: Sequence[Move], at: str, actor: str | None) -> None:
        """Set each instruction's new state (and the move's reason and provider reference
        where given), release the claims of those that end FAILED, RETURNED, UNCLAIMED or
        CANCELLED, and record one event a move."""
        ...

    def outcomes(self, programme: str, period: int) -> dict[str, tuple[str | None, str | None]]:
        """instruction_id → (reason, provider_reference) for the cycle's instructions."""
        ...

    def dead_addresses(
        self,
        programme: str,
        reasons: Sequence[str],
        start: str | None = None,
        stop: str | None = None,
    ) -> Iterator[tuple[str, str]]:
        """(beneficiary_id, address) of FAILED instructions whose reason says the address is
        dead, by beneficiary_id; for ids in [start, stop) when given."""
        ...

    def freeze_settlement(self, programme: str, period: int, at: str) -> None: ...

    def settlement(
        self, programme: str, period: int
    ) -> list[tuple[str, str, str, str, str, int, int]]:
        """(provider, province, district, commune, state, count, amount): frozen when the cycle
        is closed, else live."""
        ...

    def events(self, instruction_id: str | None = None) -> Iterator[tuple[int, EventRecord]]: ...
