"""The ledger store: the protocol the cycle engine talks to, and the records it passes.

The embedded default is :class:`~sap_payments.sqlite_store.SQLiteStore` (one file, WAL). The
engine never writes SQL itself; it streams rows in and out through :class:`Store`, so a
PostgreSQL backend can implement the same protocol. Rows are plain named tuples, not domain
objects: a payroll of a million beneficiaries passes through here, and the engine builds domain
objects only where a rule needs one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol

__all__ = [
    "DETAILS_FROM",
    "ApprovalEntry",
    "ApprovalRecord",
    "ApproverKey",
    "AreaRecord",
    "BatchRecord",
    "BeneficiaryRecord",
    "CampaignRecord",
    "CampaignTarget",
    "CheckpointRecord",
    "CycleRecord",
    "EnrolmentAttempt",
    "EventRecord",
    "FlagRecord",
    "ImportRecord",
    "ImportSummary",
    "InstructionRecord",
    "LineRecord",
    "MandateUpdate",
    "Move",
    "ReviewItem",
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
    #: who prepared the cycle (the maker; the approver must be someone else), when known
    prepared_by: str | None = None


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
    #: what an instruction pays, to whom, where (on the events creating or revising one):
    #: see :func:`sap_payments._chain.instruction_content`; covered by the hash chain
    content: str | None = None


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
    #: "answered" | "timeout" | "unavailable" | "error" | "refused" (the plugin refused some
    #: payments before sending anything: the rest went again in the next batch)
    outcome: str | None = None


class FlagRecord(NamedTuple):
    """A flag raised on a beneficiary for a clerk to act on (e.g. ``reverify``: re-verify
    after months of uncollected cash). ``detail`` names ids and counts, never personal data."""

    programme: str
    beneficiary_id: str
    kind: str
    raised_at: str
    detail: str | None
    cleared_at: str | None = None


class ReviewItem(NamedTuple):
    """An answer that did not match what was sent, waiting for an operator (see
    :mod:`sap_payments.reviews`). ``kind``: ``amount_mismatch``, ``currency_mismatch`` or
    ``address_mismatch``; ``detail`` holds amounts and address fingerprints, never an address
    or a name. ``resolved_at``/``resolved_by``/``resolution`` stay None while it is open."""

    item_id: int
    instruction_id: str
    provider: str
    kind: str
    detail: str
    raised_at: str
    resolved_at: str | None = None
    resolved_by: str | None = None
    resolution: str | None = None


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


class ApproverKey(NamedTuple):
    """An approver's registered Ed25519 public key (raw, 32 bytes)."""

    name: str
    public_key: bytes
    key_id: str  # the first 16 hex digits of the SHA-256 of the raw public key
    added_at: str


class ApprovalRecord(NamedTuple):
    """A cycle's approval: who approved it and the signature over its manifest's digest
    (``key_id`` and ``signature`` are None when the ledger runs without approver keys)."""

    programme: str
    period: int
    approver: str
    key_id: str | None
    signature: bytes | None
    manifest_sha256: str
    instructions: int
    total: int
    currency: str
    signed_at: str


class ApprovalEntry(NamedTuple):
    """One instruction as its approval saw it: no address, no name, only a fingerprint."""

    instruction_id: str
    fingerprint: str
    amount: int
    currency: str
    provider: str


class CheckpointRecord(NamedTuple):
    """A signed statement of the audit trail when a cycle closed: its first ``size`` events
    chain to ``head`` (hex)."""

    programme: str
    period: int
    size: int
    head: str
    signed_at: str
    key_id: str
    public_key: bytes
    signature: bytes


class LeaseRecord(NamedTuple):
    """Who holds a cycle's lease (:mod:`sap_payments.leases`), since when, until when."""

    programme: str
    period: int
    operation: str
    holder: str
    host: str
    pid: int
    acquired_at: str
    heartbeat_at: str
    expires_at: str


class CampaignRecord(NamedTuple):
    """An account-opening campaign (see :mod:`sap_payments.enrolment`)."""

    name: str
    programme: str
    provider: str  # who opens the accounts, and pays into them once switched
    channel: str  # that provider's channel: the beneficiaries' new channel
    target_channel: str  # the current channel of the beneficiaries targeted, e.g. "postal"
    communes: str  # the commune codes targeted, as a JSON list
    districts: str  # the district codes targeted, as a JSON list
    created_at: str
    created_by: str | None


class CampaignTarget(NamedTuple):
    """One beneficiary targeted by a campaign and where it stands (no personal data).

    ``state``: ``targeted`` (not tried yet), then the latest outcome (``opened``,
    ``already_had``, ``refused``, ``failed``, ``pending``), then ``scheduled`` once the new
    account is to be paid from a period on and ``applied`` once it is the mandate's first address.
    """

    campaign: str
    beneficiary_id: str
    province_code: str
    district_code: str
    commune_code: str
    state: str
    reason: str | None
    updated_at: str


class EnrolmentAttempt(NamedTuple):
    """One attempt to open or confirm an account, and its outcome (no personal data)."""

    campaign: str
    beneficiary_id: str
    at: str
    actor: str | None
    source: str  # "enrol" (the provider's API), "validate" (an existing account checked), or
    # "import <import id>" (the provider's results file)
    outcome: str
    reason: str | None
    provider_reference: str | None


class MandateUpdate(NamedTuple):
    """A beneficiary's switch to a new account from a benefit month on.

    ``address`` (a financial address key, e.g. ``ewallet:+84…``) is held only until the update
    is applied; it is None afterwards (the beneficiary's record then carries it).
    """

    campaign: str
    beneficiary_id: str
    programme: str
    from_period: int
    channel: str
    provider: str
    address: str | None
    state: str  # "scheduled" | "applied" | "superseded"
    scheduled_at: str
    applied_at: str | None = None  # when first applied (a re-application keeps it)
    applied_period: int | None = None  # the cycle first prepared with it
    applied_version: int | None = None  # the beneficiary version that carries it (the latest)


class Store(Protocol):
    """What the engine needs from a ledger database."""

    @property
    def ledger_id(self) -> str:
        """This ledger's random id: 16 lower-case hex digits, made once when the ledger was
        created (or migrated) and never changed. It goes into every id and file that leaves
        (instruction ids, batch and message ids, correlation ids, payout lists), so a file
        made for another ledger is recognised and refused."""
        ...

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

    def beneficiaries_by_index(self, purpose: str, value: str) -> list[str]:
        """The ids of the beneficiaries whose ``purpose`` (``"national_id"``, ``"msisdn"`` in
        E.164, ``"account"`` as ``BIN:number``) equals ``value``, found by its blind index."""
        ...

    def shared_indexes(self, purpose: str) -> list[tuple[str, ...]]:
        """Groups of two or more beneficiary ids sharing one ``purpose`` value (by blind index,
        never by plaintext), each sorted, the groups in order."""
        ...

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

    def blind_index(self, purpose: str, value: str) -> str:
        """A keyed fingerprint of ``value`` for ``purpose`` (``"address"``, ``"national_id"``,
        ``"msisdn"``, ``"account"``): HMAC-SHA256 under the keyring's index key, 32 hex digits.
        Equal values give equal fingerprints; without the key nothing can be learnt from one."""
        ...

    # -- enrolment campaigns ------------------------------------------------------------------
    def beneficiaries_on_channel(
        self, programme: str, channel: str, communes: Sequence[str], districts: Sequence[str]
    ) -> list[tuple[str, str, str, str]]:
        """(beneficiary_id, province, district, commune) of the programme's beneficiaries not
        ceased whose channel is ``channel``, in any of ``communes`` or ``districts``, by id."""
        ...

    def channels_by_area(self, programme: str) -> list[tuple[str, str, str, str, str, int]]:
        """(province, district, commune, channel, provider, count) of the programme's
        beneficiaries not ceased, as their records stand now."""
        ...

    def add_campaign(self, campaign: CampaignRecord, targets: Sequence[CampaignTarget]) -> None: ...

    def campaign(self, name: str) -> CampaignRecord | None: ...

    def campaigns(self) -> list[CampaignRecord]: ...

    def campaign_targets(self, campaign: str | None = None) -> list[CampaignTarget]:
        """The targets of one campaign (every campaign when None), by campaign then id."""
        ...

    def record_enrolment(
        self,
        attempts: Sequence[EnrolmentAttempt],
        addresses: Mapping[str, str],
    ) -> None:
        """Record attempts; each sets its target's state and reason. ``addresses`` holds the
        new account (an address key) of beneficiaries whose attempt opened or found one; it is
        kept, like the beneficiaries' details, until the update is scheduled."""
        ...

    def enrolment_attempts(self, campaign: str | None = None) -> list[EnrolmentAttempt]:
        """Attempts in the order recorded (of one campaign, or of all)."""
        ...

    def schedule_mandate_updates(
        self, campaign: str, programme: str, from_period: int, channel: str, provider: str, at: str
    ) -> int:
        """Turn every target holding a new account into a scheduled :class:`MandateUpdate`
        (the address moves there); the targets become ``scheduled``. Returns how many."""
        ...

    def mandate_updates(
        self,
        programme: str,
        states: Sequence[str],
        campaign: str | None = None,
        *,
        changed_since: bool = False,
    ) -> list[MandateUpdate]:
        """The programme's mandate updates in any of ``states``, by beneficiary_id; with
        ``changed_since``, only those whose beneficiary has a version newer than the one the
        update was applied as (a roster import changed the record since)."""
        ...

    def apply_mandate_update(
        self,
        update: MandateUpdate,
        record: BeneficiaryRecord,
        *,
        period: int,
        import_id: int,
        at: str,
    ) -> int:
        """Make ``record`` the beneficiary's new version (the current one goes to the history,
        replaced by ``import_id``); the update becomes ``applied`` and forgets its address;
        the target ``applied``. Returns the new version number."""
        ...

    def supersede_mandate_update(self, campaign: str, beneficiary_id: str, at: str) -> None:
        """A later roster import gave the beneficiary another account: stop re-applying."""
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
        self,
        instruction_ids: Sequence[str],
        to_state: str,
        *,
        from_state: str,
        release_lines: bool,
    ) -> None:
        """Move instructions from ``from_state`` to ``to_state`` (the caller has checked the
        transition table), compare-and-set: an instruction no longer in ``from_state`` raises
        :class:`~sap_payments.errors.ConcurrentUpdate` (the caller's transaction rolls back)."""
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

    def states_by_id(self, instruction_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """instruction_id → (state, provider) of those of ``instruction_ids`` that exist (no
        personal column is read). Read inside the transaction that applies a result, it is the
        state the result is judged against."""
        ...

    def instruction_states(self, programme: str, period: int) -> Iterator[tuple[str, str]]:
        """(beneficiary_id, state) of every instruction of the cycle, in no particular order
        (no personal column is read)."""
        ...

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
        CANCELLED, and record one event a move.

        Compare-and-set: a move applies only while the instruction is in the move's
        ``from_state``; an instruction's moves apply in the order given (PAID, then RETURNED).
        A move whose start no longer holds raises
        :class:`~sap_payments.errors.ConcurrentUpdate` and nothing is applied.
        """
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
        """(beneficiary_id, address) of FAILED and RETURNED instructions whose reason says the
        address is dead (a payment refused, or paid and sent back, for a closed account), by
        beneficiary_id; for ids in [start, stop) when given."""
        ...

    def result_details(
        self, programme: str, period: int
    ) -> list[tuple[str, str, str, int, str | None]]:
        """(instruction_id, provider, state, amount, detail) of each of the cycle's instructions
        that ended FAILED, RETURNED or UNCLAIMED, by id; ``detail`` is that of the event that
        moved it there: our reason and the provider's own code and words
        (:mod:`sap_payments._result_detail`), None when there is none."""
        ...

    def freeze_settlement(self, programme: str, period: int, at: str) -> None: ...

    def settlement(
        self, programme: str, period: int
    ) -> list[tuple[str, str, str, str, str, int, int]]:
        """(provider, province, district, commune, state, count, amount): frozen when the cycle
        is closed, else live."""
        ...

    def events(self, instruction_id: str | None = None) -> Iterator[tuple[int, EventRecord]]: ...

    # -- audit trail and signed approval (sap_payments.audit, sap_payments.signing) ---------
    def chain_head(self) -> tuple[int, bytes] | None:
        """(seq, hash) of the last event the hash chain covers; None before the first."""
        ...

    def chained_events(self) -> Iterator[tuple[int, EventRecord, bytes | None]]:
        """Every event with its stored chain hash, by seq."""
        ...

    def programmes(self) -> list[str]:
        """The programmes that have cycles."""
        ...

    def add_approver_key(self, key: ApproverKey) -> None: ...

    def approver_keys(self) -> list[ApproverKey]: ...

    def save_approval_entries(
        self, programme: str, period: int, entries: Iterable[ApprovalEntry]
    ) -> None:
        """Record the manifest of a cycle's approval (replacing an earlier one)."""
        ...

    def save_approval(self, approval: ApprovalRecord) -> None: ...

    def approval(self, programme: str, period: int) -> ApprovalRecord | None: ...

    def approval_entries(
        self, programme: str, period: int, instruction_ids: Sequence[str] | None = None
    ) -> Iterator[ApprovalEntry]:
        """The approval's manifest entries (of ``instruction_ids`` only, when given), by id."""
        ...

    def save_checkpoint(self, checkpoint: CheckpointRecord) -> None: ...

    def checkpoint(self, programme: str, period: int) -> CheckpointRecord | None: ...

    # -- leases -----------------------------------------------------------------------------
    def lease(self, programme: str, period: int) -> LeaseRecord | None:
        """The cycle's lease as recorded (held or stale), or None."""
        ...

    def put_lease(self, lease: LeaseRecord) -> None:
        """Record ``lease`` as the cycle's, replacing any other (in the caller's transaction,
        after it has read and judged the current one)."""
        ...

    def drop_lease(self, programme: str, period: int, holder: str) -> None:
        """Remove the cycle's lease if ``holder`` still holds it."""
        ...

    # -- review items (answers that did not match what was sent) ----------------------------
    def add_review_item(
        self, instruction_id: str, provider: str, kind: str, detail: str, at: str
    ) -> int:
        """Record an open review item; returns its id."""
        ...

    def open_reviews(self, instruction_ids: Sequence[str]) -> dict[str, int]:
        """instruction_id → the id of its (first) open review item, for those of
        ``instruction_ids`` that have one."""
        ...

    def review_item(self, item_id: int) -> ReviewItem | None: ...

    def review_items(
        self,
        programme: str | None = None,
        period: int | None = None,
        *,
        include_resolved: bool = False,
    ) -> list[ReviewItem]:
        """Review items of the instructions of ``programme`` (and ``period``) when given, open
        ones only unless ``include_resolved``, by item id."""
        ...

    def resolve_review_item(self, item_id: int, at: str, by: str, resolution: str) -> bool:
        """Close the review item if it is still open (compare-and-set); False when it was not
        (already resolved, or no such item)."""
        ...

    # -- flags ------------------------------------------------------------------------------
    def add_flags(self, flags: Sequence[FlagRecord]) -> list[FlagRecord]:
        """Raise flags; one already open (same programme, beneficiary and kind) is kept as it
        is. Returns the flags newly raised."""
        ...

    def flags(self, programme: str, kind: str | None = None) -> list[FlagRecord]:
        """The programme's open flags (of ``kind`` when given), by beneficiary_id then kind."""
        ...

    def clear_flags(
        self, programme: str, beneficiary_id: str, kind: str | None, at: str
    ) -> list[FlagRecord]:
        """Clear the beneficiary's open flags (of ``kind`` when given); returns those cleared."""
        ...

    # -- plugin state (sap_payments.providers.PluginState; sap_payments.plugins) ---------------
    def plugin_state_get(self, provider: str, namespace: str, key: str) -> bytes | None:
        """What the provider instance ``provider`` stored under (``namespace``, ``key``)."""
        ...

    def plugin_state_put(
        self, provider: str, namespace: str, key: str, value: bytes, at: str
    ) -> None:
        """Store ``value`` for the provider instance, replacing what was there (in the caller's
        transaction)."""
        ...

    def plugin_state_items(self, provider: str, namespace: str) -> Iterator[tuple[str, bytes]]:
        """Every (key, value) the provider instance stored under ``namespace``, by key."""
        ...
