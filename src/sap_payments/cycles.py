"""The payroll engine: prepare and approve a cycle (one programme × one benefit month).

``prepare`` computes every beneficiary's due months (see :mod:`sap_payments.entitlements`) and
writes one instruction per beneficiary carrying all its lines, with a deterministic id. It can be
run again until the cycle is approved: an unchanged beneficiary is left alone, a changed one is
revised in place (an event says so), one no longer due is cancelled. ``approve`` moves CREATED to
READY, cancels what is held (those months come back as arrears next cycle) and freezes the cycle.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Final, TypeVar

import attrs

from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.entitlements import due_months
from sap_payments.errors import CycleNotFound, CycleStateError, InvalidInput
from sap_payments.instructions import (
    REPAYABLE_STATES,
    InstructionState,
    LineKind,
    check_transition,
)
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.rules import RuleSet
from sap_payments.store import (
    BeneficiaryRecord,
    CycleRecord,
    EventRecord,
    InstructionRecord,
    LineRecord,
    Store,
)

__all__ = [
    "ApprovalResult",
    "ControlTotal",
    "PrepareResult",
    "approve",
    "instruction_id",
    "prepare",
]

S = InstructionState
PREPARED: Final = "prepared"
APPROVED: Final = "approved"
MANDATE_EXPIRED: Final = "mandate expired"
_BATCH: Final = 5000
_CHANNEL_ORDER: Final = ("ewallet", "bank", "postal")

K = TypeVar("K")
V = TypeVar("V")


def instruction_id(programme: str, period: Period, beneficiary_id: str, seq: int = 1) -> str:
    """The deterministic id of a beneficiary's ``seq``-th instruction in a cycle.

    ``YYYYMM-`` and 16 base32 characters of a SHA-256: 23 characters, short enough for every
    provider's reference field (ISO 20022 ``EndToEndId`` allows 35), and the same every time the
    cycle is prepared.

    >>> instruction_id("monthly-allowance", Period.parse("2021-09"), "PL-000001")[:7]
    '202109-'
    """
    digest = hashlib.sha256(
        f"{programme}\x1f{period}\x1f{beneficiary_id}\x1f{seq}".encode()
    ).digest()
    return f"{period.year:04d}{period.month:02d}-" + base64.b32encode(digest)[:16].decode()


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


@attrs.frozen
class ApprovalResult:
    programme: str
    period: Period
    approved_by: str
    ready: int
    cancelled_held: int
    total: Money


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
    existing = None
    for cycle in store.cycles(programme):
        if cycle.period == period.ordinal:
            existing = cycle
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
    if existing is not None and existing.state != PREPARED:
        raise CycleStateError(
            programme, str(period), f"is {existing.state}; an approved cycle cannot be re-prepared"
        )
    return existing


def prepare(
    store: Store,
    period: Period | str,
    *,
    rules: RuleSet,
    programme: str = DEFAULT_PROGRAMME,
    progress: Callable[[int], None] | None = None,
) -> PrepareResult:
    """Compute the cycle's instructions; again and again until it is approved.

    Raises:
        CycleStateError: the cycle is approved, an earlier one is not, or a later one exists.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    at = _now()
    currency = rules.currency
    cycle_ordinal = period.ordinal
    first_day = period.first_day.isoformat()
    amount_cache: dict[tuple[int, str], int] = {}
    default_coefficients = {code: str(c.coefficient) for code, c in rules.categories.items()}
    counts = {"created": 0, "revised": 0, "cancelled": 0, "unchanged": 0}

    def amount_for(month: int, coefficient: str) -> int:
        key = (month, coefficient)
        value = amount_cache.get(key)
        if value is None:
            value = rules.monthly_amount(Period(month), Decimal(coefficient)).minor
            amount_cache[key] = value
        return value

    with store.transaction():
        existing_cycle = _check_order(store, programme, period)
        taken = _group(store.live_months(programme, cycle_ordinal))
        existing = _group(
            (record.beneficiary_id, record)
            for record, _ in store.cycle_instructions(programme, cycle_ordinal)
        )
        next_taken = next(taken, None)
        next_existing = next(existing, None)
        new_instructions: list[InstructionRecord] = []
        new_lines: list[LineRecord] = []
        new_events: list[EventRecord] = []

        def flush() -> None:
            store.insert_instructions(new_instructions, new_lines)
            store.append_events(new_events)
            new_instructions.clear()
            new_lines.clear()
            new_events.clear()

        seen = 0
        for record in store.beneficiaries(programme):
            seen += 1
            if progress is not None and seen % 10_000 == 0:
                progress(seen)
            beneficiary_id = record.beneficiary_id
            months_taken: list[int] = []
            while next_taken is not None and next_taken[0] <= beneficiary_id:
                if next_taken[0] == beneficiary_id:
                    months_taken = next_taken[1]
                next_taken = next(taken, None)
            earlier: list[InstructionRecord] = []
            while next_existing is not None and next_existing[0] <= beneficiary_id:
                if next_existing[0] == beneficiary_id:
                    earlier = next_existing[1]
                next_existing = next(existing, None)

            months = due_months(
                cycle_ordinal,
                record.first_period,
                record.last_period,
                record.paid_through,
                record.status,
                set(months_taken) if months_taken else (),
            )
            live = next((i for i in earlier if i.state in (S.CREATED, S.HELD)), None)
            if not months:
                if live is not None:
                    _cancel(store, live, at, "no longer due when the cycle was re-prepared")
                    counts["cancelled"] += 1
                continue

            coefficient = record.coefficient or default_coefficients[record.category]
            lines: list[LineRecord] = []
            total = 0
            for month in months:
                amount = amount_for(month, coefficient)
                total += amount
                lines.append(
                    LineRecord(
                        "",
                        programme,
                        beneficiary_id,
                        month,
                        LineKind.REGULAR if month == cycle_ordinal else LineKind.ARREARS,
                        amount,
                        coefficient,
                    )
                )
            channel, address = mandate_addresses(record)[0]
            proxy = record.proxy_name is not None
            held = (
                MANDATE_EXPIRED
                if proxy
                and record.mandate_valid_until is not None
                and record.mandate_valid_until < first_day
                else None
            )
            content = hashlib.blake2b(
                "\x1f".join(
                    (
                        held or "",
                        channel,
                        record.provider,
                        address,
                        record.proxy_name or record.full_name,
                        str(total),
                        currency,
                        *(f"{ln.month}:{ln.kind}:{ln.amount}:{ln.coefficient}" for ln in lines),
                    )
                ).encode(),
                digest_size=16,
            ).hexdigest()
            if live is not None and live.content == content:
                counts["unchanged"] += 1
                continue
            seq = live.seq if live is not None else len(earlier) + 1
            ident = (
                live.instruction_id
                if live is not None
                else instruction_id(programme, period, beneficiary_id, seq)
            )
            state = S.HELD if held else S.CREATED
            instruction = InstructionRecord(
                ident,
                programme,
                cycle_ordinal,
                beneficiary_id,
                seq,
                state,
                held,
                channel,
                record.provider,
                address,
                "proxy" if proxy else "beneficiary",
                record.proxy_name or record.full_name,
                total,
                currency,
                content,
                record.province_code,
                record.district_code,
                record.commune_code,
            )
            lines = [line._replace(instruction_id=ident) for line in lines]
            if live is not None:
                before = S(live.state)
                if before != state:
                    check_transition(ident, before, state)
                store.replace_instruction(instruction, lines)
                store.append_events(
                    [
                        EventRecord(
                            at,
                            "instruction.revised",
                            ident,
                            before,
                            state,
                            None,
                            f"amount {live.amount} -> {total}"
                            + (f"; held: {held}" if held else ""),
                        )
                    ]
                )
                counts["revised"] += 1
                continue
            new_instructions.append(instruction)
            new_lines.extend(lines)
            new_events.append(
                EventRecord(at, "instruction.created", ident, None, S.CREATED, None, None)
            )
            if held:
                check_transition(ident, S.CREATED, S.HELD)
                new_events.append(
                    EventRecord(at, "instruction.held", ident, S.CREATED, S.HELD, None, held)
                )
            counts["created"] += 1
            if len(new_instructions) >= _BATCH:
                flush()
        flush()
        if progress is not None:
            progress(seen)
        result = _totals(store, programme, period, currency, counts)
        if existing_cycle is not None and not (
            result.created or result.revised or result.cancelled
        ):
            return result  # nothing changed: re-preparing is a no-op, not even an event
        store.save_cycle(
            CycleRecord(
                programme,
                cycle_ordinal,
                PREPARED,
                rules.fingerprint(),
                at,
                None,
                None,
                result.count,
                result.total.minor,
                currency,
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
                    None,
                    f"{programme} {period}: {result.count} instructions, total {result.total.minor}"
                    f" {currency}; created {result.created}, revised {result.revised}, "
                    f"cancelled {result.cancelled}, unchanged {result.unchanged}; "
                    f"rule set {rules.fingerprint()[:16]}",
                )
            ]
        )
    return result


def _cancel(store: Store, record: InstructionRecord, at: str, reason: str) -> None:
    check_transition(record.instruction_id, S(record.state), S.CANCELLED)
    store.set_state([record.instruction_id], S.CANCELLED, release_lines=True)
    store.append_events(
        [
            EventRecord(
                at,
                "instruction.cancelled",
                record.instruction_id,
                record.state,
                S.CANCELLED,
                None,
                reason,
            )
        ]
    )


def _totals(
    store: Store, programme: str, period: Period, currency: str, counts: dict[str, int]
) -> PrepareResult:
    by_provider: dict[str, list[int]] = {}
    by_commune: dict[str, list[int]] = {}
    count = total = held = 0
    for record, _ in store.cycle_instructions(programme, period.ordinal):
        if record.state in REPAYABLE_STATES:
            continue
        count += 1
        total += record.amount
        held += record.state == S.HELD
        for table, key in ((by_provider, record.provider), (by_commune, record.commune_code)):
            entry = table.setdefault(key, [0, 0])
            entry[0] += 1
            entry[1] += record.amount
    return PrepareResult(
        programme,
        period,
        counts["created"],
        counts["revised"],
        counts["cancelled"],
        counts["unchanged"],
        held,
        count,
        Money(total, currency),
        {k: ControlTotal(n, Money(a, currency)) for k, (n, a) in sorted(by_provider.items())},
        {k: ControlTotal(n, Money(a, currency)) for k, (n, a) in sorted(by_commune.items())},
    )


def approve(
    store: Store,
    period: Period | str,
    *,
    by: str,
    programme: str = DEFAULT_PROGRAMME,
) -> ApprovalResult:
    """Approve a prepared cycle: CREATED → READY, HELD → CANCELLED; the cycle is then frozen.

    Raises:
        CycleNotFound: the cycle was never prepared.
        CycleStateError: the cycle is already approved.
        InvalidInput: ``by`` is empty.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    approver = by.strip()
    if not approver:
        raise InvalidInput("approve needs the approver's name (--by)")
    at = _now()
    with store.transaction():
        cycle = store.cycle(programme, period.ordinal)
        if cycle is None:
            raise CycleNotFound(programme, str(period))
        if cycle.state != PREPARED:
            raise CycleStateError(programme, str(period), f"is already {cycle.state}")
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
        result = _totals(
            store,
            programme,
            period,
            cycle.currency,
            dict.fromkeys(("created", "revised", "cancelled", "unchanged"), 0),
        )
        store.save_cycle(
            cycle._replace(
                state=APPROVED,
                approved_at=at,
                approved_by=approver,
                instructions=result.count,
                total=result.total.minor,
            )
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
                    f"{programme} {period}: {ready} ready, total {result.total.minor} "
                    f"{cycle.currency}; {cancelled} held instructions cancelled",
                )
            ]
        )
    return ApprovalResult(programme, period, approver, ready, cancelled, result.total)
