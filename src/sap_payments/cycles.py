"""The payroll engine: prepare and approve a cycle (one programme × one benefit month).

``prepare`` computes every beneficiary's due months (see :mod:`sap_payments.entitlements`) and
writes one instruction per beneficiary carrying all its lines, with a deterministic id. It can be
run again until the cycle is approved: an unchanged beneficiary is left alone, a changed one is
revised in place (an event says so), one no longer due is cancelled. A month beyond next month is
refused unless asked for on purpose (``allow_future``). ``discard_cycle`` drops a cycle prepared
by mistake before it is approved: its drafts are cancelled and it blocks no other month.
``approve`` moves CREATED to READY, cancels what is held (those months come back as arrears next
cycle) and freezes the cycle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Final, Protocol, TypeVar

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sap_payments._chain import address_fingerprinter, instruction_content
from sap_payments._workers import count_progress, worker_pool
from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.crypto import Keyring
from sap_payments.enrolment import apply_mandate_updates
from sap_payments.entitlements import due_months
from sap_payments.errors import CycleNotFound, CycleStateError, InstructionNotFound, InvalidInput
from sap_payments.instructions import (
    REPAYABLE_STATES,
    InstructionState,
    LineKind,
    check_transition,
)
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.providers import Reason
from sap_payments.rules import RuleSet, canonical_coefficient
from sap_payments.signing import (
    ApprovalRefused,
    CycleReview,
    ReviewDigest,
    check_approver,
    check_review,
    recorded_review,
    same_person,
    sign_approval,
)
from sap_payments.sqlite_store import SQLiteStore
from sap_payments.store import (
    BeneficiaryRecord,
    CycleRecord,
    EventRecord,
    InstructionRecord,
    Store,
)

__all__ = [
    "ApprovalResult",
    "ControlTotal",
    "DiscardResult",
    "FuturePeriod",
    "PrepareResult",
    "approve",
    "cycle_review",
    "discard_cycle",
    "instruction_id",
    "prepare",
    "require_cycle",
    "reviewing",
    "transition",
]

S = InstructionState
PREPARED: Final = "prepared"
APPROVED: Final = "approved"
CLOSED: Final = "closed"
#: A cycle prepared by mistake and discarded before approval: its drafts are CANCELLED, it
#: blocks no other month, and preparing its month again starts it afresh (with new ids).
DISCARDED: Final = "discarded"
MANDATE_EXPIRED: Final = "mandate expired"
NO_ADDRESS: Final = "no payable address: every address of the mandate has failed"
#: Failure reasons that make an address dead: the next cycle pays through the next one.
_DEAD_REASONS: Final = tuple(r.value for r in Reason if r.dead_address)
_BATCH: Final = 5000
_CHANNEL_ORDER: Final = ("ewallet", "bank", "postal")

K = TypeVar("K")
V = TypeVar("V")


def instruction_id(
    programme: str, period: Period, beneficiary_id: str, seq: int = 1, *, ledger_id: str
) -> str:
    """The deterministic id of a beneficiary's ``seq``-th instruction in a cycle of the ledger
    ``ledger_id`` (:attr:`~sap_payments.store.Store.ledger_id`).

    ``YYYYMM-`` and 20 hex digits (80 bits) of a SHA-256 over the ledger id, programme, month,
    beneficiary and sequence: 27 characters, short enough for every provider's reference field
    (ISO 20022 ``EndToEndId`` allows 35), the same every time the cycle is prepared, and
    different in another ledger built from the same roster — so one ledger's answers can never
    name another's instructions.

    >>> instruction_id("monthly-allowance", Period.parse("2021-09"), "PL-1", ledger_id="ab")[:7]
    '202109-'
    """
    return f"{period.year:04d}{period.month:02d}-" + _digest_id(
        ledger_id, programme, period, beneficiary_id, seq
    )


@attrs.frozen
class ControlTotal:
    """A count and a sum, for one provider or one area."""

    count: int
    amount: Money


@attrs.frozen
class PrepareResult:
    programme: str
    period: Period
    created: int
    revised: int
    cancelled: int
    unchanged: int
    held: int
    count: int
    total: Money
    by_provider: dict[str, ControlTotal]
    by_commune: dict[str, ControlTotal]
    #: Rolled up: ``(province,)``, ``(province, district)`` when there is a district, and
    #: ``(province, district, commune)`` / ``(province, commune)``; sorted, so each area comes
    #: before the areas inside it.
    by_area: dict[tuple[str, ...], ControlTotal]


@attrs.frozen
class ApprovalResult:
    programme: str
    period: Period
    approved_by: str
    ready: int
    cancelled_held: int
    total: Money
    #: the SHA-256 of the approval's manifest, and the key that signed it (None: unsigned)
    manifest_sha256: str | None = None
    key_id: str | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _group(rows: Iterable[tuple[K, V]]) -> Iterator[tuple[K, list[V]]]:
    """Consecutive (key, value) rows grouped by key: [(key, [values…]), …]."""
    key: K | None = None
    values: list[V] = []
    started = False
    for row_key, value in rows:
        if started and row_key != key:
            yield key, values  # type: ignore[misc]  # key is set once started
            values = []
        key, started = row_key, True
        values.append(value)
    if started:
        yield key, values  # type: ignore[misc]


def _address(record: BeneficiaryRecord, channel: str) -> str | None:
    if channel == "ewallet":
        return f"ewallet:{record.msisdn}" if record.msisdn else None
    if channel == "bank":
        return f"bank:{record.bank_bin}:{record.account_number}" if record.bank_bin else None
    if record.pay_point:
        return f"postal:{record.pay_point}" + (":home" if record.home_delivery else "")
    return None


def mandate_addresses(record: BeneficiaryRecord) -> list[tuple[str, str]]:
    """(channel, address key) of a beneficiary's mandate: the roster's channel first."""
    order = [record.channel, *(c for c in _CHANNEL_ORDER if c != record.channel)]
    return [(channel, key) for channel in order if (key := _address(record, channel))]


def _check_order(store: Store, programme: str, period: Period) -> CycleRecord | None:
    """The cycle of ``period`` when prepared before (a discarded one is returned too, and may be
    prepared again); refuses an earlier unapproved cycle or any later one (discarded cycles
    block nothing)."""
    existing = None
    for cycle in store.cycles(programme):
        if cycle.period == period.ordinal:
            existing = cycle
        elif cycle.state == DISCARDED:
            continue
        elif cycle.period < period.ordinal and cycle.state == PREPARED:
            raise CycleStateError(
                programme,
                str(period),
                f"cycle {Period.text(cycle.period)} is prepared but not approved; "
                "approve it before preparing a later month",
            )
        elif cycle.period > period.ordinal:
            raise CycleStateError(
                programme,
                str(period),
                f"a later cycle ({Period.text(cycle.period)}) exists; cycles are prepared in order",
            )
    if existing is not None and existing.state not in (PREPARED, DISCARDED):
        raise CycleStateError(
            programme, str(period), f"is {existing.state}; an approved cycle cannot be re-prepared"
        )
    return existing


#: Below this many beneficiaries ``prepare`` stays in one process even when given workers.
PARALLEL_MIN_BENEFICIARIES: Final = 50_000


class FuturePeriod(InvalidInput):
    """A cycle month beyond next month, not asked for on purpose (``allow_future``).

    Preparing a far month by mistake would pay every month up to it as arrears, and then, until
    it was discarded, refuse the real month as "earlier". ``latest`` is the last month that may
    be prepared without ``allow_future`` (next month, from ``today``).
    """

    def __init__(self, programme: str, period: Period, latest: Period) -> None:
        super().__init__(
            f"cycle {period} ({programme}): is beyond next month ({latest}); prepare a later "
            "month only on purpose, with --allow-future (allow_future=True)"
        )
        self.programme = programme
        self.period = period
        self.latest = latest


def _check_not_future(
    programme: str, period: Period, today: dt.date | None, allow_future: bool
) -> None:
    if allow_future:
        return
    latest = Period.containing(today or dt.datetime.now(dt.UTC).date()).next()
    if period > latest:
        raise FuturePeriod(programme, period, latest)


def prepare(
    store: Store,
    period: Period | str,
    *,
    rules: RuleSet,
    programme: str = DEFAULT_PROGRAMME,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    channel_providers: Mapping[str, str] | None = None,
    fallback_pay_points: Mapping[str, str] | None = None,
    by: str | None = None,
    allow_future: bool = False,
    today: dt.date | None = None,
) -> PrepareResult:
    """Compute the cycle's instructions; again and again until it is approved.

    Args:
        by: who prepares the cycle (the maker): the approver must be someone else. Kept from
            an earlier preparation when not given.
        allow_future: prepare a month beyond next month (refused otherwise: see
            :class:`FuturePeriod`).
        today: the date "next month" is counted from (default: today, UTC); for tests.
        channel_providers: the provider that pays each channel when a beneficiary falls back
            to an address of another channel than the roster's (channel → provider name).
        fallback_pay_points: commune → pay point for cash when every address has failed.
        workers: processes that compute slices of a large payroll in parallel (SQLite ledger,
            at least ``PARALLEL_MIN_BENEFICIARIES`` beneficiaries); 1 computes in this process.

    Raises:
        CycleStateError: the cycle is approved, an earlier one is not, or a later one exists.
        FuturePeriod: the month is beyond next month and ``allow_future`` is not set.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    _check_not_future(programme, period, today, allow_future)
    names: list[str] = []
    if (
        workers > 1
        and isinstance(store, SQLiteStore)
        and store.count_beneficiaries(programme) >= PARALLEL_MIN_BENEFICIARIES
    ):
        # One slice a worker: on a machine with as many cores as workers, more slices (to take
        # one in while the next is computed) measured slower, the parent then competing with the
        # workers for a core. Attached outside the transaction; SQLite attaches at most 10.
        names = store.scratch(min(8, workers))
    with store.transaction():  # committed first: parallel workers read committed records
        _check_order(store, programme, period)
        apply_mandate_updates(store, programme, period, _now())
    with store.transaction():
        existing_cycle = _check_order(store, programme, period)
        if existing_cycle is not None and existing_cycle.state == DISCARDED:
            existing_cycle = None  # prepared afresh: a new maker, and always recorded
        at = _now()
        if names and isinstance(store, SQLiteStore):
            result = _prepare_parallel(
                store,
                workers,
                names,
                rules,
                programme,
                period,
                at,
                progress,
                channel_providers,
                fallback_pay_points,
            )
        else:
            run = _Preparation(
                store,
                rules,
                programme,
                period,
                _DirectSink(store, at),
                channel_providers,
                fallback_pay_points,
            )
            run.run(progress)
            result = run.partial().result(programme, period, rules.currency)
        if existing_cycle is not None and not (
            result.created or result.revised or result.cancelled
        ):
            return result  # nothing changed: re-preparing is a no-op, not even an event
        maker = (by or "").strip() or (existing_cycle.prepared_by if existing_cycle else None)
        store.save_cycle(
            CycleRecord(
                programme,
                period.ordinal,
                PREPARED,
                rules.fingerprint(),
                at,
                None,
                None,
                result.count,
                result.total.minor,
                rules.currency,
                maker,
            )
        )
        store.append_events(
            [
                EventRecord(
                    at,
                    "cycle.prepared",
                    None,
                    None,
                    None,
                    maker,
                    f"{programme} {period}: {result.count} instructions, total "
                    f"{result.total.minor} {rules.currency}; created {result.created}, "
                    f"revised {result.revised}, cancelled {result.cancelled}, "
                    f"unchanged {result.unchanged}; rule set {rules.fingerprint()[:16]}",
                )
            ]
        )
    return result


@attrs.define
class _Partial:
    """What one run over (a slice of) the beneficiaries computed: counts and control totals."""

    counts: dict[str, int] = attrs.field(
        factory=lambda: dict.fromkeys(("created", "revised", "cancelled", "unchanged"), 0)
    )
    by_provider: dict[str, list[int]] = attrs.field(factory=dict)
    #: keyed by (province, district, commune) codes
    by_commune: dict[tuple[str, str, str], list[int]] = attrs.field(factory=dict)
    count: int = 0
    total: int = 0
    held: int = 0

    def tally(self, provider: str, area: tuple[str, str, str], amount: int, held: bool) -> None:
        self.count += 1
        self.total += amount
        self.held += held
        entry = self.by_provider.get(provider)
        if entry is None:
            entry = self.by_provider[provider] = [0, 0]
        entry[0] += 1
        entry[1] += amount
        entry = self.by_commune.get(area)
        if entry is None:
            entry = self.by_commune[area] = [0, 0]
        entry[0] += 1
        entry[1] += amount

    def merge(self, other: _Partial) -> None:
        for key, value in other.counts.items():
            self.counts[key] += value
        for key, (count, amount) in other.by_provider.items():
            entry = self.by_provider.setdefault(key, [0, 0])
            entry[0] += count
            entry[1] += amount
        for area, (count, amount) in other.by_commune.items():
            entry = self.by_commune.setdefault(area, [0, 0])
            entry[0] += count
            entry[1] += amount
        self.count += other.count
        self.total += other.total
        self.held += other.held

    def result(self, programme: str, period: Period, currency: str) -> PrepareResult:
        def totals(table: Mapping[K, list[int]]) -> dict[K, ControlTotal]:
            return {
                key: ControlTotal(count, Money(amount, currency))
                for key, (count, amount) in sorted(table.items())
            }

        communes: dict[str, list[int]] = {}
        areas: dict[tuple[str, ...], list[int]] = {}
        for (province, district, commune), (count, amount) in self.by_commune.items():
            entry = communes.setdefault(commune, [0, 0])
            entry[0] += count
            entry[1] += amount
            levels = (
                [(province,), (province, district, commune)]
                if district
                else [(province,), (province, commune)]
            )
            if district:
                levels.append((province, district))
            for key in levels:
                entry = areas.setdefault(key, [0, 0])
                entry[0] += count
                entry[1] += amount

        return PrepareResult(
            programme,
            period,
            self.counts["created"],
            self.counts["revised"],
            self.counts["cancelled"],
            self.counts["unchanged"],
            self.held,
            self.count,
            Money(self.total, currency),
            totals(self.by_provider),
            totals(communes),
            totals(areas),
        )


class _Sink(Protocol):
    """Where a preparation run puts what it decided."""

    def add(self, instruction: InstructionRecord) -> None: ...

    def revise(self, live: InstructionRecord, instruction: InstructionRecord) -> None: ...

    def cancel(self, live: InstructionRecord, reason: str) -> None: ...

    def flush(self) -> None: ...


class _Batching:
    """New instructions are written in batches of ``_BATCH``."""

    def __init__(self) -> None:
        self.batch: list[InstructionRecord] = []

    def add(self, instruction: InstructionRecord) -> None:
        self.batch.append(instruction)
        if len(self.batch) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        self._write(self.batch)
        self.batch.clear()

    def _write(self, batch: list[InstructionRecord]) -> None:
        raise NotImplementedError  # pragma: no cover - each sink writes its own way


class _DirectSink(_Batching):
    """Straight into the ledger, inside the caller's transaction."""

    def __init__(self, store: Store, at: str) -> None:
        super().__init__()
        self.store = store
        self.at = at
        self.fingerprint = address_fingerprinter(store)

    def _write(self, batch: list[InstructionRecord]) -> None:
        self.store.insert_instructions(batch, self.at)

    def revise(self, live: InstructionRecord, instruction: InstructionRecord) -> None:
        before, after = S(live.state), S(instruction.state)
        if before != after:
            check_transition(instruction.instruction_id, before, after)
        self.store.replace_instruction(instruction)
        detail = f"amount {live.amount} -> {instruction.amount}"
        if instruction.address != live.address:
            detail += f"; channel {live.channel} -> {instruction.channel}"
        if instruction.held_reason:
            detail += f"; held: {instruction.held_reason}"
        self.store.append_events(
            [
                EventRecord(
                    self.at,
                    "instruction.revised",
                    instruction.instruction_id,
                    before,
                    after,
                    None,
                    detail,
                    instruction_content(instruction, self.fingerprint),
                )
            ]
        )

    def cancel(self, live: InstructionRecord, reason: str) -> None:
        check_transition(live.instruction_id, S(live.state), S.CANCELLED)
        self.store.set_state(
            [live.instruction_id], S.CANCELLED, from_state=live.state, release_lines=True
        )
        self.store.append_events(
            [
                EventRecord(
                    self.at,
                    "instruction.cancelled",
                    live.instruction_id,
                    live.state,
                    S.CANCELLED,
                    None,
                    reason,
                )
            ]
        )


class _ScratchSink(_Batching):
    """Into a worker's scratch file, for the parent to apply (see ``_apply_scratch``)."""

    def __init__(self, path: Path, store: SQLiteStore) -> None:
        super().__init__()
        self.store = store  # seals what the scratch file holds: no personal data in clear
        self.fingerprint = address_fingerprinter(store)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        # and each new instruction's audit-trail content, computed here in the worker
        columns = ", ".join((*InstructionRecord._fields, "payee", "content"))
        for table, schema in (
            ("new", columns),
            ("revised", "live TEXT, instruction TEXT"),
            ("cancelled", "live TEXT, reason TEXT"),
        ):
            self.db.execute(f"DROP TABLE IF EXISTS {table}")
            self.db.execute(f"CREATE TABLE {table} ({schema})")
        self.db.execute("BEGIN")
        self.insert = (
            f"INSERT INTO new VALUES ({', '.join('?' * (len(InstructionRecord._fields) + 2))})"
        )

    def _write(self, batch: list[InstructionRecord]) -> None:
        fingerprint = self.fingerprint
        self.db.executemany(
            self.insert,
            [
                (*row, instruction_content(record, fingerprint))
                for row, record in zip(self.store.seal_instructions(batch), batch, strict=True)
            ],
        )

    def revise(self, live: InstructionRecord, instruction: InstructionRecord) -> None:
        seal = self.store.seal_scratch
        self.db.execute(
            "INSERT INTO revised VALUES (?, ?)",
            (seal("live", json.dumps(live)), seal("instruction", json.dumps(instruction))),
        )

    def cancel(self, live: InstructionRecord, reason: str) -> None:
        self.db.execute(
            "INSERT INTO cancelled VALUES (?, ?)",
            (self.store.seal_scratch("live", json.dumps(live)), reason),
        )

    def close(self) -> None:
        self.flush()
        self.db.execute("COMMIT")
        self.db.close()


def _prepare_range(
    ledger: Path,
    scratch: Path,
    rules: RuleSet,
    programme: str,
    period: int,
    start: str | None,
    stop: str | None,
    channel_providers: Mapping[str, str] | None,
    fallback_pay_points: Mapping[str, str] | None,
    keyring: Keyring,
) -> _Partial:
    """In a worker: prepare the beneficiaries in [start, stop) into a scratch file."""
    store = SQLiteStore(ledger, readonly=True, keyring=keyring)
    sink = _ScratchSink(scratch, store)
    try:
        run = _Preparation(
            store, rules, programme, Period(period), sink, channel_providers, fallback_pay_points
        )
        run.run(count_progress, start, stop, progress_step=True)
    finally:
        sink.close()
        store.close()
    return run.partial()


def _prepare_parallel(
    store: SQLiteStore,
    workers: int,
    names: list[str],
    rules: RuleSet,
    programme: str,
    period: Period,
    at: str,
    progress: Callable[[int], None] | None,
    channel_providers: Mapping[str, str] | None,
    fallback_pay_points: Mapping[str, str] | None,
) -> PrepareResult:
    points = store.split_points(programme, len(names))
    bounds: list[str | None] = [None, *points, None]
    ranges = list(itertools.pairwise(bounds))
    total = _Partial()
    direct = _DirectSink(store, at)

    def take(number: int, partial: _Partial) -> None:
        """Move one finished slice from its scratch file into the ledger."""
        name = names[number]
        total.merge(partial)
        store.insert_instructions_from(f"{name}.new", at)
        opened = store.open_scratch
        for live, instruction in store.query(f"SELECT live, instruction FROM {name}.revised"):
            direct.revise(
                InstructionRecord(*json.loads(opened("live", live))),  # type: ignore[arg-type]
                InstructionRecord(*json.loads(opened("instruction", instruction))),  # type: ignore[arg-type]
            )
        for live, reason in store.query(f"SELECT live, reason FROM {name}.cancelled"):
            direct.cancel(
                InstructionRecord(*json.loads(opened("live", live))),  # type: ignore[arg-type]
                str(reason),
            )

    with worker_pool(workers) as pool:
        partials = pool.run(
            [
                (
                    _prepare_range,
                    (
                        store.path,
                        store.scratch_paths[n],
                        rules,
                        programme,
                        period.ordinal,
                        start,
                        stop,
                        dict(channel_providers or {}),
                        dict(fallback_pay_points or {}),
                        store.keyring,
                    ),
                )
                for n, (start, stop) in enumerate(ranges)
            ],
            progress,
        )
    # Taken in only once every worker is done: taking one in while another still reads the
    # ledger measured slower (the reader then walks a growing write-ahead log).
    for number, partial in enumerate(partials):
        take(number, partial)
    return total.result(programme, period, rules.currency)


class _Preparation:
    """One run of ``prepare``: a merge of three streams ordered by beneficiary_id.

    The beneficiaries, the months live instructions of other cycles already carry, and this
    cycle's existing instructions (when it is prepared again) are read side by side, so memory
    stays flat whatever the size of the roster. What it decides goes to a sink: straight into
    the ledger, or into a worker's scratch file.
    """

    def __init__(
        self,
        store: Store,
        rules: RuleSet,
        programme: str,
        period: Period,
        sink: _Sink,
        channel_providers: Mapping[str, str] | None = None,
        fallback_pay_points: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.programme = programme
        self.period = period
        self.sink = sink
        self.channel_providers: Mapping[str, str] = channel_providers or {}
        self.fallback_pay_points: Mapping[str, str] = fallback_pay_points or {}
        self._partial = _Partial()
        self._amounts: dict[tuple[int, str], int] = {}
        self._coefficients = {
            code: canonical_coefficient(c.coefficient) for code, c in rules.categories.items()
        }
        self._id_prefix = f"{period.year:04d}{period.month:02d}-"
        self._ledger_id = store.ledger_id

    def partial(self) -> _Partial:
        return self._partial

    def _fallback(
        self, record: BeneficiaryRecord, dead: list[str]
    ) -> tuple[str, str, str, str | None]:
        """(channel, address, provider, held reason) once the roster's address has failed for
        good: the mandate's next address, else cash at the commune's default pay point."""
        candidates = [pair for pair in mandate_addresses(record) if pair[1] not in dead]
        pay_point = self.fallback_pay_points.get(record.commune_code)
        if pay_point is not None and f"postal:{pay_point}" not in dead:
            candidates.append(("postal", f"postal:{pay_point}"))
        for channel, address in candidates:
            provider = (
                record.provider
                if channel == record.channel
                else self.channel_providers.get(channel)
            )
            if provider is not None:
                return channel, address, provider, None
        return (
            record.channel,
            _address(record, record.channel) or "",
            record.provider,
            NO_ADDRESS,
        )

    def amount(self, month: int, coefficient: str) -> int:
        key = (month, coefficient)
        value = self._amounts.get(key)
        if value is None:
            value = self.rules.monthly_amount(Period(month), Decimal(coefficient)).minor
            self._amounts[key] = value
        return value

    def run(
        self,
        progress: Callable[[int], None] | None,
        start: str | None = None,
        stop: str | None = None,
        *,
        progress_step: bool = False,
    ) -> None:
        """Prepare the beneficiaries in [start, stop) (all by default).

        ``progress`` gets the running count, or with ``progress_step`` each 10,000 done.
        """
        store, programme, sink = self.store, self.programme, self.sink
        cycle = self.period.ordinal
        first_day = self.period.first_day.isoformat()
        currency = self.rules.currency
        counts = self._partial.counts
        coefficients = self._coefficients
        amount_of = self.amount
        tally = self._partial.tally
        id_prefix = self._id_prefix
        regular, arrears = LineKind.REGULAR.value, LineKind.ARREARS.value
        created_state, held_state = S.CREATED.value, S.HELD.value
        check_transition("(new)", S.CREATED, S.HELD)  # the move insert_instructions records
        taken = _group(store.live_months(programme, cycle, start, stop))
        existing = _group(
            (record.beneficiary_id, record)
            for record, _ in store.cycle_instructions(programme, cycle, start=start, stop=stop)
        )
        dead = _group(store.dead_addresses(programme, _DEAD_REASONS, start, stop))
        next_taken = next(taken, None)
        next_existing = next(existing, None)
        next_dead = next(dead, None)
        seen = 0
        for record in store.beneficiaries(programme, start, stop):
            seen += 1
            if progress is not None and not seen % 10_000:
                progress(10_000 if progress_step else seen)
            beneficiary_id = record.beneficiary_id
            months_taken: list[int] | None = None
            while next_taken is not None and next_taken[0] <= beneficiary_id:
                if next_taken[0] == beneficiary_id:
                    months_taken = next_taken[1]
                next_taken = next(taken, None)
            earlier: list[InstructionRecord] = []
            while next_existing is not None and next_existing[0] <= beneficiary_id:
                if next_existing[0] == beneficiary_id:
                    earlier = next_existing[1]
                next_existing = next(existing, None)
            dead_addresses: list[str] | None = None
            while next_dead is not None and next_dead[0] <= beneficiary_id:
                if next_dead[0] == beneficiary_id:
                    dead_addresses = next_dead[1]
                next_dead = next(dead, None)

            months = due_months(
                cycle,
                record.first_period,
                record.last_period,
                record.paid_through,
                record.status,
                set(months_taken) if months_taken else (),
            )
            live = None
            for candidate in earlier:
                if candidate.state == created_state or candidate.state == held_state:
                    live = candidate
            if not months:
                if live is not None:
                    sink.cancel(live, "no longer due when the cycle was re-prepared")
                    counts["cancelled"] += 1
                continue

            coefficient = record.coefficient or coefficients[record.category]
            if len(months) == 1:
                total = amount_of(months[0], coefficient)
                kind = regular if months[0] == cycle else arrears
                lines = f'[[{months[0]},"{kind}",{total},"{coefficient}"]]'
            else:
                amounts = [amount_of(month, coefficient) for month in months]
                total = sum(amounts)
                lines = (
                    "["
                    + ",".join(
                        f'[{month},"{regular if month == cycle else arrears}",{amount},'
                        f'"{coefficient}"]'
                        for month, amount in zip(months, amounts, strict=True)
                    )
                    + "]"
                )
            channel, provider = record.channel, record.provider
            address = _address(record, channel)
            if address is None:  # pragma: no cover - the roster import guarantees it
                channel, address = mandate_addresses(record)[0]
            held = (
                MANDATE_EXPIRED
                if record.proxy_name is not None
                and record.mandate_valid_until is not None
                and record.mandate_valid_until < first_day
                else None
            )
            if dead_addresses is not None and address in dead_addresses:
                channel, address, provider, why = self._fallback(record, dead_addresses)
                held = held or why
            tally(
                provider,
                (record.province_code, record.district_code, record.commune_code),
                total,
                held is not None,
            )
            if live is not None:
                seq, ident = live.seq, live.instruction_id
            else:
                seq = len(earlier) + 1
                ident = id_prefix + _digest_id(
                    self._ledger_id, programme, self.period, beneficiary_id, seq
                )
            instruction = InstructionRecord(
                ident,
                programme,
                cycle,
                beneficiary_id,
                seq,
                held_state if held else created_state,
                held,
                channel,
                provider,
                address,
                "beneficiary" if record.proxy_name is None else "proxy",
                record.full_name if record.proxy_name is None else record.proxy_name,
                total,
                currency,
                lines,
                record.province_code,
                record.district_code,
                record.commune_code,
            )
            if live is not None:
                if live == instruction:
                    counts["unchanged"] += 1
                else:
                    sink.revise(live, instruction)
                    counts["revised"] += 1
                continue
            sink.add(instruction)
            counts["created"] += 1
        sink.flush()
        if progress is not None and not progress_step:
            progress(seen)


def _digest_id(
    ledger_id: str, programme: str, period: Period, beneficiary_id: str, seq: int
) -> str:
    """80 bits of SHA-256 over what identifies the instruction (the ledger first), as 20
    upper-case hex digits."""
    text = f"{ledger_id}\x1f{programme}\x1f{period.ordinal}\x1f{beneficiary_id}\x1f{seq}"
    return hashlib.sha256(text.encode()).hexdigest()[:20].upper()


def require_cycle(
    store: Store,
    programme: str,
    period: Period,
    *,
    states: Mapping[str, str] | None = None,
) -> CycleRecord:
    """The cycle, which must exist and, when ``states`` is given, be in one of its keys.

    ``states`` maps each state the cycle may NOT be in to the clerk's explanation, e.g.
    ``{"approved": "is already approved"}``; any state not listed is accepted — but a
    discarded cycle is always refused (``states`` may word why).

    Raises:
        CycleNotFound: the cycle was never prepared.
        CycleStateError: the cycle is in a state listed in ``states``, or discarded.
    """
    cycle = store.cycle(programme, period.ordinal)
    if cycle is None:
        raise CycleNotFound(programme, str(period))
    refused = {DISCARDED: _WAS_DISCARDED, **(states or {})}
    if cycle.state in refused:
        raise CycleStateError(programme, str(period), refused[cycle.state])
    return cycle


_WAS_DISCARDED: Final = "was discarded; prepare it again to use it"


@attrs.frozen
class DiscardResult:
    """What discarding a cycle did: its draft instructions (CREATED and HELD) cancelled."""

    programme: str
    period: Period
    discarded_by: str | None
    cancelled: int


def discard_cycle(
    store: Store,
    period: Period | str,
    *,
    programme: str = DEFAULT_PROGRAMME,
    by: str | None = None,
    reason: str | None = None,
) -> DiscardResult:
    """Discard a cycle that was prepared but not approved (e.g. a month prepared by mistake).

    Every draft instruction (CREATED or HELD) moves to CANCELLED through the transition table,
    one ``instruction.cancelled`` event each, and its months are released; the cycle is kept
    as ``discarded`` (its history stays readable, its instructions in the audit trail) and a
    ``cycle.discarded`` event is recorded. A discarded cycle blocks no other month. Its month
    can be prepared again later: the new drafts get new ids (the sequence in the id counts the
    cancelled ones), so a discarded id is never reused.

    Raises:
        CycleNotFound: the cycle was never prepared.
        CycleStateError: the cycle is approved or closed (its instructions may be on their way
            to a provider), or discarded already.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    actor = (by or "").strip() or None
    at = _now()
    with store.transaction():
        cycle = require_cycle(
            store,
            programme,
            period,
            states={
                APPROVED: "is approved and cannot be discarded: its instructions are ready to "
                "be paid (cancel them one by one, or let them run and close the cycle)",
                CLOSED: "is closed and cannot be discarded",
                DISCARDED: "is already discarded",
            },
        )
        cancelled = 0
        for draft in (S.CREATED, S.HELD):
            check_transition("(cycle)", draft, S.CANCELLED)
            cancelled += store.bulk_transition(
                programme,
                period.ordinal,
                draft,
                S.CANCELLED,
                EventRecord(
                    at, "instruction.cancelled", None, None, None, actor, "the cycle was discarded"
                ),
                release_lines=True,
            )
        store.save_cycle(cycle._replace(state=DISCARDED, instructions=0, total=0))
        why = (reason or "").strip()
        store.append_events(
            [
                EventRecord(
                    at,
                    "cycle.discarded",
                    None,
                    None,
                    None,
                    actor,
                    f"{programme} {period}: {cancelled} draft instructions cancelled"
                    + (f"; {why}" if why else ""),
                )
            ]
        )
    return DiscardResult(programme, period, actor, cancelled)


def transition(
    store: Store,
    instruction_id: str,
    to_state: InstructionState | str,
    *,
    reason: str | None = None,
    actor: str | None = None,
) -> InstructionRecord:
    """Move one instruction to ``to_state``: the single gate for a state change.

    The move is checked against the transition table, recorded as an event, and, when the new
    state is FAILED, RETURNED, UNCLAIMED or CANCELLED, the instruction's months are released so
    the next cycle pays them as arrears. Returns the instruction as it was before.

    Raises:
        LookupError (``InstructionNotFound``): no such instruction.
        InvalidTransition: the table does not allow the move (nothing is changed).
    """
    target = InstructionState(to_state)
    with store.transaction():
        record = store.instruction(instruction_id)
        if record is None:
            raise InstructionNotFound(instruction_id)
        check_transition(instruction_id, record.state, target)
        store.set_state(
            [instruction_id],
            target,
            from_state=record.state,
            release_lines=target in REPAYABLE_STATES,
        )
        store.append_events(
            [
                EventRecord(
                    _now(),
                    f"instruction.{target.value.lower()}",
                    instruction_id,
                    record.state,
                    target,
                    actor,
                    reason,
                )
            ]
        )
    return record


_L = TypeVar("_L")  # what a report reads with each instruction (its lines, or nothing)


def _expected_digest(text: str | None) -> str | None:
    if text is None:
        return None
    digest = text.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInput(
            f"not a review digest (a SHA-256: 64 hex digits, as 'cycle show' prints it): {text!r}"
        )
    return digest


def cycle_review(
    store: Store, period: Period | str, *, programme: str = DEFAULT_PROGRAMME
) -> CycleReview | None:
    """What the checker reviews and ``approve(expect_digest=...)`` is bound to: of a prepared
    cycle, the digest of the manifest its approval would sign, with the count and total of
    the instructions it would pay; of an approved or closed one, its approval's (None when
    none is recorded, or the cycle was discarded).

    Raises:
        CycleNotFound: the cycle was never prepared.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    cycle = require_cycle(store, programme, period)
    rows = store.cycle_instructions(programme, period.ordinal) if cycle.state == PREPARED else ()
    return reviewing(store, cycle, rows)[1]()


def reviewing(
    store: Store, cycle: CycleRecord, rows: Iterable[tuple[InstructionRecord, _L]]
) -> tuple[Iterator[tuple[InstructionRecord, _L]], Callable[[], CycleReview | None]]:
    """``rows`` (a cycle's instructions, as a report reads them) passed through, and the
    cycle's review, to be asked for once they have been read: for a prepared cycle it is
    computed from those very rows, so a report and the digest it prints agree."""
    if cycle.state != PREPARED:
        recorded = recorded_review(store, cycle) if cycle.state != DISCARDED else None
        return iter(rows), lambda: recorded
    digest = ReviewDigest(store, cycle)

    def passing() -> Iterator[tuple[InstructionRecord, _L]]:
        for pair in rows:
            digest.add(pair[0])
            yield pair

    done: list[CycleReview] = []

    def review() -> CycleReview:
        if not done:
            for _ in passed:  # whatever the reader left unread
                pass
            done.append(digest.review())
        return done[0]

    passed = passing()
    return passed, review


def approve(
    store: Store,
    period: Period | str,
    *,
    by: str,
    programme: str = DEFAULT_PROGRAMME,
    key: Ed25519PrivateKey | None = None,
    expect_digest: str | None = None,
    expect_count: int | None = None,
    expect_total: Money | int | None = None,
) -> ApprovalResult:
    """Approve a prepared cycle: CREATED → READY, HELD → CANCELLED; the cycle is then frozen.

    The approval records the manifest of the READY instructions (see
    :mod:`sap_payments.signing`), signed with the approver's ``key``: required once approver
    keys are registered in the ledger, refused before.

    ``expect_digest`` (and/or ``expect_count``, ``expect_total``: an int is in the cycle's
    currency's minor units) binds the approval to what the checker reviewed: the
    :class:`~sap_payments.signing.CycleReview` that ``cycle show`` and ``report changes``
    print (:func:`cycle_review`). If the cycle was prepared again since and differs, nothing
    is approved. Optional, and the recommended practice.

    Raises:
        CycleNotFound: the cycle was never prepared.
        CycleStateError: the cycle is already approved, closed or discarded.
        ApprovalRefused: ``by`` prepared the cycle (maker-checker), or the key is missing,
            not registered, or not ``by``'s.
        CycleChanged (an ApprovalRefused): the cycle is not the one reviewed.
        InvalidInput: ``by`` is empty, or ``expect_digest`` is not a SHA-256 in hex.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    approver = by.strip()
    if not approver:
        raise InvalidInput("approve needs the approver's name (--by)")
    digest = _expected_digest(expect_digest)
    if expect_count is not None and expect_count < 0:
        raise InvalidInput(f"the expected count must not be negative: {expect_count}")
    at = _now()
    with store.transaction():
        cycle = require_cycle(
            store,
            programme,
            period,
            states={
                APPROVED: "is already approved",
                CLOSED: "is already closed",
                DISCARDED: "was discarded; prepare it again to approve it",
            },
        )
        if cycle.prepared_by is not None and same_person(cycle.prepared_by, approver):
            raise ApprovalRefused(
                programme,
                str(period),
                f"{approver!r} prepared this cycle; another person must approve it",
            )
        check_approver(store, programme, period, approver, key)
        check_transition("(cycle)", S.CREATED, S.READY)
        ready = store.bulk_transition(
            programme,
            period.ordinal,
            S.CREATED,
            S.READY,
            EventRecord(at, "instruction.approved", None, None, None, approver, None),
            release_lines=False,
        )
        check_transition("(cycle)", S.HELD, S.CANCELLED)
        cancelled = store.bulk_transition(
            programme,
            period.ordinal,
            S.HELD,
            S.CANCELLED,
            EventRecord(at, "instruction.cancelled", None, None, None, approver, None),
            release_lines=True,
        )
        count = total = 0
        for state, _provider, _commune, n, amount in store.cycle_totals(programme, period.ordinal):
            if state not in REPAYABLE_STATES:
                count += n
                total += amount
        store.save_cycle(
            cycle._replace(
                state=APPROVED,
                approved_at=at,
                approved_by=approver,
                instructions=count,
                total=total,
            )
        )
        signed = sign_approval(store, programme, period.ordinal, approver, cycle.currency, key, at)
        # Checked on the manifest just recorded, not before the moves: computing it is the
        # cost of an approval, and a refusal rolls the whole transaction back.
        check_review(
            signed,
            digest=digest,
            count=expect_count,
            total=(
                Money(expect_total, cycle.currency)
                if isinstance(expect_total, int)
                else expect_total
            ),
        )
        store.append_events(
            [
                EventRecord(
                    at,
                    "cycle.approved",
                    None,
                    None,
                    None,
                    approver,
                    f"{programme} {period}: {ready} ready, total {total} "
                    f"{cycle.currency}; {cancelled} held instructions cancelled; manifest "
                    f"sha256 {signed.manifest_sha256}, "
                    + (f"signed with key {signed.key_id}" if signed.key_id else "unsigned"),
                )
            ]
        )
    return ApprovalResult(
        programme,
        period,
        approver,
        ready,
        cancelled,
        Money(total, cycle.currency),
        signed.manifest_sha256,
        signed.key_id,
    )
