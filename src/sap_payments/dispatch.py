"""Dispatch, reconciliation and closing of an approved cycle.

The guarantees, each a test:

* **Outbox.** Before a provider is called, the batch's manifest (count, control sum, SHA-256 of
  the payload) and the move of its instructions READY → SUBMITTED are committed together. A
  crash at any point leaves either READY instructions (never sent) or SUBMITTED ones with a
  recorded batch; a rerun resolves the latter by a status query and never sends them blind.
* **Unknown is a state.** A timeout moves the batch's instructions to UNKNOWN. Only a status
  query (or a report) settles them; a resend happens only after the provider says, with
  ``NOT_FOUND``, that it never received the key — and it carries the same key, which the
  provider deduplicates.
* **Results only move forward.** A result is applied through the transition table; a late,
  repeated or out-of-order result that would move a final state, or move backwards, is ignored
  (and recorded as an ``result.ignored`` event).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from sap_payments._files import write_atomically
from sap_payments.beneficiaries import parse_address
from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.cycles import CLOSED, PREPARED, require_cycle
from sap_payments.errors import CycleStateError, ForeignLedger, InvalidInput
from sap_payments.instructions import OPEN_STATES, InstructionState, check_transition
from sap_payments.leases import CycleLease, cycle_lease
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.providers import (
    Payment,
    Provider,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Result,
    ResultKind,
)
from sap_payments.signing import check_dispatch
from sap_payments.store import (
    BatchRecord,
    EventRecord,
    ImportSummary,
    InstructionRecord,
    Move,
    Store,
)

if TYPE_CHECKING:
    from sap_payments.audit import Checkpoint

__all__ = [
    "ApplyResult",
    "CloseResult",
    "DispatchResult",
    "InvalidReport",
    "ReconcileResult",
    "ReportImport",
    "apply_results",
    "close_cycle",
    "dispatch",
    "import_report",
    "payment_of",
    "reconcile",
]

S = InstructionState

#: How a result moves an instruction, from each state it may find it in. A pair missing here
#: means the result is stale (late, repeated, out of order) and is ignored.
_PATHS: Final[Mapping[tuple[ResultKind, S], tuple[S, ...]]] = {
    (ResultKind.PENDING, S.SUBMITTED): (S.ACCEPTED,),
    (ResultKind.PENDING, S.UNKNOWN): (S.ACCEPTED,),
    (ResultKind.PAID, S.SUBMITTED): (S.PAID,),
    (ResultKind.PAID, S.ACCEPTED): (S.PAID,),
    (ResultKind.PAID, S.UNKNOWN): (S.PAID,),
    (ResultKind.FAILED, S.SUBMITTED): (S.FAILED,),
    (ResultKind.FAILED, S.ACCEPTED): (S.FAILED,),
    (ResultKind.FAILED, S.UNKNOWN): (S.FAILED,),
    (ResultKind.RETURNED, S.PAID): (S.RETURNED,),
    (ResultKind.RETURNED, S.ACCEPTED): (S.PAID, S.RETURNED),
    (ResultKind.RETURNED, S.SUBMITTED): (S.PAID, S.RETURNED),
    (ResultKind.RETURNED, S.UNKNOWN): (S.PAID, S.RETURNED),
    (ResultKind.UNCLAIMED, S.ACCEPTED): (S.UNCLAIMED,),
    (ResultKind.UNCLAIMED, S.SUBMITTED): (S.ACCEPTED, S.UNCLAIMED),
    (ResultKind.UNCLAIMED, S.UNKNOWN): (S.ACCEPTED, S.UNCLAIMED),
    # "never received": authoritative, so the instruction may be sent again (same key)
    (ResultKind.NOT_FOUND, S.UNKNOWN): (S.READY,),
    (ResultKind.NOT_FOUND, S.SUBMITTED): (S.UNKNOWN, S.READY),
}
for (_kind, _start), _path in _PATHS.items():  # the paths obey the one transition table
    for _before, _after in zip((_start, *_path), _path, strict=False):
        check_transition("(path)", _before, _after)

#: The same as the moves each makes: (from, to, event kind).
_STEPS: Final[Mapping[tuple[ResultKind, str], tuple[tuple[S, S, str], ...]]] = {
    key: tuple(
        (before, after, f"instruction.{after.value.lower()}")
        for before, after in zip((key[1], *path), path, strict=False)
    )
    for key, path in _PATHS.items()
}

#: States whose outcome a status query can settle.
_QUERYABLE: Final = (S.SUBMITTED, S.ACCEPTED, S.UNKNOWN)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@attrs.frozen
class DispatchResult:
    batches: int
    sent: int
    paid: int
    failed: int
    pending: int
    unknown: int
    errors: tuple[str, ...]


@attrs.frozen
class ApplyResult:
    applied: int
    ignored: int
    unknown_keys: tuple[str, ...]


@attrs.frozen
class ReconcileResult:
    queried: int
    applied: int
    ignored: int
    open: int


@attrs.frozen
class CloseResult:
    programme: str
    period: Period
    instructed: int
    paid: int
    open: int
    #: the signed audit checkpoint made at close (``checkpoint_key`` configured), and its file
    checkpoint: Checkpoint | None = None
    checkpoint_file: Path | None = None


def payment_of(record: InstructionRecord, reference: str) -> Payment:
    """What a provider is sent for an instruction: key, amount, address, payee, reference."""
    return Payment(
        key=record.instruction_id,
        amount=Money(record.amount, record.currency),
        address=parse_address(record.address, record.provider),
        payee_name=record.payee_name,
        reference=reference,
        payee_is_proxy=record.payee_kind == "proxy",
    )


_NOT_YET: Final = {PREPARED: "is not approved yet"}


def _cycle(store: Store, programme: str, period: Period) -> None:
    require_cycle(store, programme, period, states={**_NOT_YET, CLOSED: "is closed"})


#: The columns of a batch payload's rows.
PAYLOAD_COLUMNS: Final = ("key", "amount", "currency", "address", "payee", "reference")


def _payload(batch: Sequence[Payment]) -> bytes:
    """The batch as compact JSON — ``{"columns": [...], "payments": [[...], ...]}`` — in
    batch order: what the manifest's SHA-256 covers and the outbox file holds."""
    rows = [
        [p.key, p.amount.minor, p.amount.currency, p.address.key, p.payee_name, p.reference]
        for p in batch
    ]
    return json.dumps(
        {"columns": PAYLOAD_COLUMNS, "payments": rows}, ensure_ascii=False, separators=(",", ":")
    ).encode()


def apply_results(
    store: Store,
    results: Iterable[Result],
    *,
    provider: str | None = None,
    actor: str | None = None,
    resend_not_found: bool = False,
) -> ApplyResult:
    """Move instructions according to provider results, through the transition table.

    ``NOT_FOUND`` ("never received") sends an instruction back to READY only with
    ``resend_not_found``: from a status query made under the cycle's lease, when no send of
    the cycle can be in flight (:func:`reconcile`). Anywhere else — a report, a callback — it
    may describe a batch still on the wire, so it is recorded as ``result.ignored``.

    Each result is judged against the instruction's state read in the same transaction as
    the moves are written, and every move is compare-and-set (``Store.apply_moves``): two
    commands applying the same answer at once (two reconciles, a callback racing a report)
    move an instruction once; the second finds it moved and records ``result.ignored``.
    Results for unknown keys (or another provider's) are reported back, not applied.
    """
    results = list(results)
    at = _now()
    with store.transaction():
        known = store.states_by_id(sorted({x.key for x in results}))
        state = {key: current for key, (current, _) in known.items()}
        moves: list[Move] = []
        ignored: list[EventRecord] = []
        unknown: list[str] = []
        for result in results:
            entry = known.get(result.key)
            if entry is None or (provider is not None and entry[1] != provider):
                unknown.append(result.key)
                continue
            current = state[result.key]
            if result.kind == ResultKind.PENDING and current == S.ACCEPTED:
                continue  # still in progress: nothing new to record
            steps = _STEPS.get((result.kind, current))
            if result.kind == ResultKind.NOT_FOUND and not resend_not_found:
                steps = None  # not authoritative here: the send may still be in flight
            if steps is None:
                ignored.append(
                    EventRecord(
                        at,
                        "result.ignored",
                        result.key,
                        current,
                        None,
                        actor,
                        f"{result.kind} while {current}",
                    )
                )
                continue
            reason = result.reason.value if result.reason else None
            reference = result.provider_reference
            for before, after, kind in steps:
                moves.append(Move(result.key, before, after, kind, reason, reason, reference))
            state[result.key] = steps[-1][1]
        store.apply_moves(moves, at, actor)
        store.append_events(ignored)
    return ApplyResult(len(results) - len(ignored) - len(unknown), len(ignored), tuple(unknown))


def _moves(records: Iterable[InstructionRecord], to: S, detail: str | None) -> list[Move]:
    moves = []
    checked: set[str] = set()
    kind = f"instruction.{to.value.lower()}"
    for record in records:
        if record.state not in checked:  # the table is consulted once per starting state
            check_transition(record.instruction_id, record.state, to)
            checked.add(record.state)
        moves.append(Move(record.instruction_id, record.state, to, kind, detail))
    return moves


def dispatch(
    store: Store,
    period: Period | str,
    *,
    providers: Mapping[str, Provider],
    programme: str = DEFAULT_PROGRAMME,
    outbox: Path | None = None,
    progress: Callable[[int], None] | None = None,
    trusted_approver_keys: Collection[str] = (),
    wait: float = 0.0,
) -> DispatchResult:
    """Send the cycle's READY instructions to their providers, batch by batch.

    ``trusted_approver_keys``: the approver key ids pinned by the configuration
    (``approver_keys``); see :func:`sap_payments.signing.check_dispatch`.

    The run holds the cycle's lease (:mod:`sap_payments.leases`): a second dispatch,
    reconcile or close of the cycle waits ``wait`` seconds for it, then raises ``CycleBusy``.
    First, instructions left SUBMITTED by an earlier run that died mid-call are settled by a
    status query (see :func:`reconcile`) — never sent again blind.

    Raises:
        CycleNotFound, CycleStateError: the cycle is not approved, or is closed.
        CycleBusy: another run holds the cycle's lease.
        SignatureError: the approval's signature is missing (approver keys are registered)
            or does not verify.
        ApprovalMismatch: instructions differ from what was approved; nothing was sent.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    _cycle(store, programme, period)
    with cycle_lease(store, programme, period, "dispatch", wait=wait) as lease:
        _cycle(store, programme, period)  # closed while this run waited?
        _reconcile(store, period, providers, programme, lease, stale=True)
        return _dispatch(
            store,
            period,
            providers,
            programme,
            outbox,
            progress,
            trusted_approver_keys,
            lease,
        )


def _dispatch(
    store: Store,
    period: Period,
    providers: Mapping[str, Provider],
    programme: str,
    outbox: Path | None,
    progress: Callable[[int], None] | None,
    trusted_approver_keys: Collection[str],
    lease: CycleLease,
) -> DispatchResult:
    reference = f"{programme} {period}"
    counts = {"batches": 0, "sent": 0}
    sequence = len(store.batches(programme, period.ordinal))
    errors: list[str] = []
    # Ids only up front; the instructions themselves are read a batch at a time.
    by_provider: dict[str, list[str]] = {}
    for ident, name in store.instruction_ids_in_state(programme, period.ordinal, S.READY):
        by_provider.setdefault(name, []).append(ident)
    # The approval's signature, and each instruction against what was approved: before any
    # money moves (sap_payments.signing).
    check_dispatch(
        store,
        programme,
        period,
        [i for ids in by_provider.values() for i in ids],
        trusted=trusted_approver_keys,
    )
    for name, idents in by_provider.items():
        provider = providers.get(name)
        if provider is None:
            errors.append(f"provider {name} is not configured: {len(idents)} instructions wait")
            continue
        size = max(1, provider.capabilities.max_batch)
        for start in range(0, len(idents), size):
            lease.renew()  # the heartbeat; stops the run if another took the lease over
            sequence += 1
            sent = _send(
                store,
                provider,
                name,
                idents[start : start + size],
                programme,
                period,
                reference,
                outbox,
                errors,
                sequence,
            )
            counts["batches"] += sent > 0
            counts["sent"] += sent
            if progress is not None:
                progress(counts["sent"])
    tally = dict.fromkeys(S, 0)
    for state, _provider, _commune, count, _amount in store.cycle_totals(programme, period.ordinal):
        tally[S(state)] += count
    return DispatchResult(
        counts["batches"],
        counts["sent"],
        tally[S.PAID],
        tally[S.FAILED],
        tally[S.ACCEPTED] + tally[S.SUBMITTED],
        tally[S.UNKNOWN],
        tuple(errors),
    )


def _send(
    store: Store,
    provider: Provider,
    name: str,
    wanted: Sequence[str],
    programme: str,
    period: Period,
    reference: str,
    outbox: Path | None,
    errors: list[str],
    sequence: int,
) -> int:
    """Send one batch of the instructions ``wanted`` that are still READY; how many went."""
    at = _now()
    with store.transaction():  # the outbox: intent and state change, committed together
        # read in the transaction that moves them: only what is READY now goes
        order = {ident: number for number, ident in enumerate(wanted)}
        chunk = sorted(
            (r for r in store.instructions_by_id(wanted) if r.state == S.READY),
            key=lambda r: order[r.instruction_id],
        )
        if not chunk:
            return 0
        payments = [payment_of(record, reference) for record in chunk]
        payload = _payload(payments)
        digest = hashlib.sha256(payload).hexdigest()
        batch = BatchRecord(
            f"{period.year:04d}{period.month:02d}-{name}-{sequence:05d}",
            name,
            programme,
            period.ordinal,
            len(chunk),
            sum(record.amount for record in chunk),
            chunk[0].currency,
            digest,
            at,
        )
        if outbox is not None:  # the files before the commit: a batch always has its manifest
            _write_outbox(outbox, batch, payload)
        store.add_batch(batch)
        store.apply_moves(_moves(chunk, S.SUBMITTED, batch.batch_id), at, None)
    try:
        results = provider.submit(payments)
    except ProviderTimeout as exc:
        _unanswered(store, chunk, batch, "timeout", f"no answer: {exc}")
        return len(chunk)
    except ProviderUnavailable as exc:
        _unanswered(store, chunk, batch, "unavailable", f"provider unavailable: {exc}")
        errors.append(str(exc))
        return len(chunk)
    except ProviderError as exc:
        _unanswered(store, chunk, batch, "error", f"provider error: {exc}")
        errors.append(str(exc))
        return len(chunk)
    with store.transaction():  # the answer and its results: one commit
        store.answer_batch(batch.batch_id, _now(), "answered")
        apply_results(store, results, provider=name)
    return len(chunk)


def _write_outbox(outbox: Path, batch: BatchRecord, payload: bytes) -> None:
    directory = outbox / batch.provider
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / f"{batch.batch_id}.json", payload)
    write_atomically(
        directory / f"{batch.batch_id}.manifest.json",
        json.dumps(
            {
                "batch_id": batch.batch_id,
                "provider": batch.provider,
                "programme": batch.programme,
                "period": str(Period(batch.period)),
                "count": batch.payments,
                "control_sum": batch.control_sum,
                "currency": batch.currency,
                "sha256": batch.sha256,
            },
            indent=1,
        ).encode(),
    )


def _unanswered(
    store: Store, chunk: list[InstructionRecord], batch: BatchRecord, outcome: str, detail: str
) -> None:
    """No usable answer: the outcome is unknown until a status query settles it. Only what is
    still SUBMITTED moves (a callback may have settled some while the call hung)."""
    with store.transaction():
        store.answer_batch(batch.batch_id, _now(), outcome)
        states = store.states_by_id([r.instruction_id for r in chunk])
        submitted = [
            r._replace(state=S.SUBMITTED)
            for r in chunk
            if states.get(r.instruction_id, ("",))[0] == S.SUBMITTED
        ]
        store.apply_moves(_moves(submitted, S.UNKNOWN, detail), _now(), None)


def reconcile(
    store: Store,
    period: Period | str,
    *,
    providers: Mapping[str, Provider],
    programme: str = DEFAULT_PROGRAMME,
    stale: bool = False,
    wait: float = 0.0,
) -> ReconcileResult:
    """Ask providers for the status of every open instruction they hold and apply the answers.

    With ``stale`` (what dispatch does first) only instructions left SUBMITTED by a run that
    died are queried. Providers without the ``status_query`` capability are skipped: their
    results arrive as reports (:func:`apply_results`). The run holds the cycle's lease, as
    :func:`dispatch` does (``wait``: seconds to wait for it).

    Raises:
        CycleNotFound, CycleStateError: the cycle is not approved, or is closed.
        CycleBusy: another run holds the cycle's lease.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    _cycle(store, programme, period)
    with cycle_lease(store, programme, period, "reconcile", wait=wait) as lease:
        _cycle(store, programme, period)
        return _reconcile(store, period, providers, programme, lease, stale=stale)


def _reconcile(
    store: Store,
    period: Period,
    providers: Mapping[str, Provider],
    programme: str,
    lease: CycleLease,
    *,
    stale: bool,
) -> ReconcileResult:
    states = [S.SUBMITTED] if stale else list(_QUERYABLE)
    open_records = store.instructions_in_states(programme, period.ordinal, states)
    queried = applied = ignored = 0
    by_provider: dict[str, list[InstructionRecord]] = {}
    for record in open_records:
        by_provider.setdefault(record.provider, []).append(record)
    for name, records in by_provider.items():
        provider = providers.get(name)
        if provider is None or not provider.capabilities.status_query:
            continue
        size = max(1, provider.capabilities.max_batch)
        for start in range(0, len(records), size):
            lease.renew()
            chunk = records[start : start + size]
            keys = [record.instruction_id for record in chunk]
            try:
                results = provider.status(keys)
            except ProviderError:
                continue  # still unknown; the next reconcile asks again
            queried += len(keys)
            # under the lease no send of this cycle is in flight: "never received" is final
            outcome = apply_results(store, results, provider=name, resend_not_found=True)
            applied += outcome.applied
            ignored += outcome.ignored
    still_open = sum(
        count
        for state, _provider, _commune, count, _amount in store.cycle_totals(
            programme, period.ordinal
        )
        if state in OPEN_STATES
    )
    return ReconcileResult(queried, applied, ignored, still_open)


def close_cycle(
    store: Store, period: Period | str, *, programme: str = DEFAULT_PROGRAMME, wait: float = 0.0
) -> CloseResult:
    """Close the cycle: refused while any instruction is open; freezes the settlement figures.
    Holds the cycle's lease (``wait``: seconds to wait for it), so a dispatch or reconcile
    still running refuses the close instead of racing it.

    Raises:
        CycleStateError: instructions are still open, or the cycle is not approved.
        CycleBusy: another run holds the cycle's lease.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    at = _now()
    with cycle_lease(store, programme, period, "close", wait=wait), store.transaction():
        cycle = require_cycle(
            store, programme, period, states={**_NOT_YET, CLOSED: "is already closed"}
        )
        still_open = store.instructions_in_states(programme, period.ordinal, list(OPEN_STATES))
        if still_open:
            states: dict[str, int] = {}
            for record in still_open:
                states[record.state] = states.get(record.state, 0) + 1
            listed = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            advice: list[str] = []
            if S.READY in states:  # not sent yet: reconcile would not send them
                advice.append("run 'cycle dispatch' to send the READY ones")
            if states.keys() - {S.READY}:
                advice.append("run 'cycle reconcile' or import the providers' reports")
            raise CycleStateError(
                programme,
                str(period),
                f"cannot close: {len(still_open)} instructions are still open ({listed}); "
                + "; then ".join(advice),
            )
        store.freeze_settlement(programme, period.ordinal, at)
        store.save_cycle(cycle._replace(state=CLOSED))
        totals = store.cycle_totals(programme, period.ordinal)
        instructed = sum(n for state, _, _, n, _ in totals if state != S.CANCELLED)
        paid = sum(n for state, _, _, n, _ in totals if state == S.PAID)
        store.append_events(
            [EventRecord(at, "cycle.closed", None, None, None, None, f"{programme} {period}")]
        )
    return CloseResult(programme, period, instructed, paid, 0)


@attrs.frozen
class ReportImport:
    """What importing one provider report file did."""

    source: str
    sha256: str
    results: int
    applied: int
    ignored: int
    already_imported: bool


class InvalidReport(InvalidInput):
    """A report that names instructions this ledger does not have for the provider, or amounts
    that differ from them. Nothing from it was applied."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = tuple(problems)
        shown = "\n".join(f"  {key}: {reason}" for key, reason in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n  … and {more} more" if more > 0 else ""
        super().__init__(
            f"{source}: {len(self.problems)} results do not match the ledger; nothing was "
            f"applied\n{shown}{tail}"
        )


def import_report(store: Store, provider: Provider, path: Path) -> ReportImport:
    """Apply a provider's report file (a bank's pain.002 or camt.054, a sandbox report), all of
    it or nothing, and exactly once: the same file again is a no-op.

    Raises:
        InvalidReport: the file names unknown instructions or wrong amounts.
        ForeignLedger: the file answers another ledger's file (the provider recognised it).
        InvalidInput, ProviderError: the provider cannot read the file (malformed, unknown type).
    """
    source = str(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if store.find_import("report", digest) is not None:
        return ReportImport(source, digest, 0, 0, 0, already_imported=True)
    try:
        results = provider.parse_report(data)
    except ForeignLedger as exc:  # say which file
        raise ForeignLedger(exc.theirs, exc.ours, source=source, what=exc.what) from None
    at = _now()
    with store.transaction():
        records = {
            r.instruction_id: r for r in store.instructions_by_id(sorted({x.key for x in results}))
        }
        problems = []
        for result in results:
            record = records.get(result.key)
            if record is None or record.provider != provider.name:
                problems.append((result.key, f"no instruction of provider {provider.name}"))
            elif result.amount is not None and (
                result.amount.minor != record.amount or result.amount.currency != record.currency
            ):
                problems.append(
                    (
                        result.key,
                        f"amount {result.amount} differs from the instruction's "
                        f"{Money(record.amount, record.currency)}",
                    )
                )
        if problems:
            raise InvalidReport(source, problems)
        import_id = store.add_import("report", source, digest, at)
        outcome = apply_results(store, results, provider=provider.name)
        store.finish_import(
            import_id, len(results), ImportSummary(outcome.applied, 0, outcome.ignored)
        )
        store.append_events(
            [
                EventRecord(
                    at,
                    "report.imported",
                    None,
                    None,
                    None,
                    None,
                    f"{provider.name}: {source}, {len(results)} results, {outcome.applied} "
                    f"applied, {outcome.ignored} stale; sha256 {digest}",
                )
            ]
        )
    return ReportImport(
        source, digest, len(results), outcome.applied, outcome.ignored, already_imported=False
    )
