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
* **An answer that does not match is never applied.** A result naming another amount,
  currency or account than the instruction's raises a review item and moves the instruction to
  UNKNOWN; while the item is open every answer about it is held (:mod:`sap_payments.reviews`).
* **A refusal fails one payment, not the batch.** A plugin that refuses some payments before
  sending anything (:class:`~sap_payments.providers.PaymentsRefused`) fails exactly those; the
  rest go again as a new batch. A plugin that crashes in ``submit`` leaves its batch UNKNOWN
  (a status query settles it), never SUBMITTED with no way out.
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
from sap_payments._result_detail import result_detail
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
    PaymentsRefused,
    Provider,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Reason,
    ReportRefused,
    Result,
    ResultKind,
)
from sap_payments.reviews import HOLD_PATHS, mismatches
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
    """What one dispatch run did, and what the cycle holds after it — kept apart.

    This run: ``sent`` instructions handed to providers (each counted once, also when it went
    again after a refusal) in ``batches`` batches, and what this run's answers said of them:
    ``paid``, ``failed``, ``pending`` (accepted, in progress), ``unknown`` (no usable answer: a
    status query settles them), ``refused`` (refused by the plugin before anything was sent:
    FAILED with its reason) and ``review`` (an answer that did not match what was sent: UNKNOWN,
    held for review). They add up to ``sent``.

    ``errors``: one line per provider failure (a provider error, a plugin that crashed): the run
    did not do all it was asked. ``waiting``: provider → READY instructions left because the
    provider is not configured. ``states``: the cycle's instructions by state after the run.
    """

    batches: int
    sent: int
    paid: int
    failed: int
    pending: int
    unknown: int
    errors: tuple[str, ...]
    refused: int = 0
    review: int = 0
    waiting: Mapping[str, int] = attrs.field(factory=dict)
    states: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen
class ApplyResult:
    """``applied``: results that moved an instruction or confirmed it in progress; ``ignored``:
    stale ones (``result.ignored``); ``unknown_keys``: keys of no instruction of the provider;
    ``held``: keys whose result was not applied for review (a mismatch found now, or an open
    review item); ``reviews``: the ids of the review items raised."""

    applied: int
    ignored: int
    unknown_keys: tuple[str, ...]
    held: tuple[str, ...] = ()
    reviews: tuple[int, ...] = ()


@attrs.frozen
class ReconcileResult:
    """``queried`` instructions, ``applied``/``ignored``/``held`` results (held: not applied,
    for review); ``under_review``: open instructions not queried because a review item holds
    them; ``open``: the cycle's open instructions after the run; ``errors``: one line per
    provider that could not be queried (the others were)."""

    queried: int
    applied: int
    ignored: int
    open: int
    errors: tuple[str, ...] = ()
    held: int = 0
    under_review: int = 0


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


def payment_of(
    record: InstructionRecord, reference: str, *, batch_created_at: str | None = None
) -> Payment:
    """What a provider is sent for an instruction: key, amount, address, payee, reference —
    and when the ledger committed its batch (``batch_created_at``, the batch record's
    ``created_at``), so that a plugin writing it into a file writes the same bytes again."""
    return Payment(
        key=record.instruction_id,
        amount=Money(record.amount, record.currency),
        address=parse_address(record.address, record.provider),
        payee_name=record.payee_name,
        reference=reference,
        payee_is_proxy=record.payee_kind == "proxy",
        batch_created_at=(
            None if batch_created_at is None else dt.datetime.fromisoformat(batch_created_at)
        ),
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

    The mismatch rule, the same for every channel: a result that would move an instruction and
    names an amount or an account (``Result.amount``, ``Result.address``) other than the
    instruction's is not applied; a review item is raised and the instruction moves to UNKNOWN
    (see :mod:`sap_payments.reviews`). While an instruction has an open review item, every
    result about it is held (``result.held``), a matching one too.

    Each result is judged against the instruction's state read in the same transaction as
    the moves are written, and every move is compare-and-set (``Store.apply_moves``): two
    commands applying the same answer at once (two reconciles, a callback racing a report)
    move an instruction once; the second finds it moved and records ``result.ignored``.
    Results for unknown keys (or another provider's) are reported back, not applied.
    """
    return _apply_results(
        store, results, provider=provider, actor=actor, resend_not_found=resend_not_found
    )


def _apply_results(
    store: Store,
    results: Iterable[Result],
    *,
    provider: str | None = None,
    actor: str | None = None,
    resend_not_found: bool = False,
    read: Mapping[str, InstructionRecord] | None = None,
) -> ApplyResult:
    """:func:`apply_results`; ``read``: instructions the caller has just read (the batch a
    submit answered), so that they are not read and unsealed again for the mismatch rule (what
    an approved instruction pays, and where, does not change)."""
    results = list(results)
    at = _now()
    with store.transaction():
        keys = sorted({x.key for x in results})
        known = store.states_by_id(keys)
        state = {key: current for key, (current, _) in known.items()}
        under_review = store.open_reviews(keys) if known else {}
        # what the instruction says, read only for results that name an amount or an account
        read = read or {}
        checked = sorted(
            {
                x.key
                for x in results
                if (x.amount is not None or x.address is not None)
                and x.key in known
                and x.key not in read
            }
        )
        records = {**read, **{r.instruction_id: r for r in store.instructions_by_id(checked)}}
        moves: list[Move] = []
        events: list[EventRecord] = []
        unknown: list[str] = []
        held: list[str] = []
        raised: list[int] = []
        ignored = 0
        for result in results:
            entry = known.get(result.key)
            if entry is None or (provider is not None and entry[1] != provider):
                unknown.append(result.key)
                continue
            current = state[result.key]
            if result.key in under_review:
                held.append(result.key)
                events.append(
                    EventRecord(
                        at,
                        "result.held",
                        result.key,
                        current,
                        None,
                        actor,
                        f"{result.kind} while {current}, not applied: review item "
                        f"{under_review[result.key]} is open",
                    )
                )
                continue
            steps = _STEPS.get((result.kind, current))
            if result.kind == ResultKind.NOT_FOUND and not resend_not_found:
                steps = None  # not authoritative here: the send may still be in flight
            in_progress = result.kind == ResultKind.PENDING and current == S.ACCEPTED
            record = records.get(result.key)
            found = (
                mismatches(store, record, result)
                if record is not None
                and result.kind != ResultKind.NOT_FOUND
                and (steps is not None or in_progress)
                else []
            )
            if found:
                held.append(result.key)
                numbers = []
                for kind, detail in found:
                    number = store.add_review_item(
                        result.key, entry[1], kind, f"{result.kind}: {detail}", at
                    )
                    numbers.append(number)
                    events.append(
                        EventRecord(
                            at,
                            "review.raised",
                            result.key,
                            current,
                            None,
                            actor,
                            f"item {number}: {kind}: {result.kind}: {detail}",
                        )
                    )
                raised.extend(numbers)
                under_review[result.key] = numbers[0]
                path = HOLD_PATHS[S(current)]
                listed = ", ".join(map(str, numbers))
                for before, after in zip((S(current), *path), path, strict=False):
                    moves.append(
                        Move(
                            result.key,
                            before,
                            after,
                            f"instruction.{after.value.lower()}",
                            f"the answer does not match the instruction: review item {listed}",
                            None,
                            result.provider_reference,
                        )
                    )
                if path:
                    state[result.key] = path[-1]
                continue
            if in_progress:
                continue  # still in progress: nothing new to record
            if steps is None:
                ignored += 1
                events.append(
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
            # our reason, and beside it the provider's own code and words (cycle show reads them)
            said = result_detail(reason, result.provider_code, result.provider_message)
            for before, after, kind in steps:
                moves.append(Move(result.key, before, after, kind, said, reason, reference))
            state[result.key] = steps[-1][1]
        store.apply_moves(moves, at, actor)
        store.append_events(events)
    return ApplyResult(
        len(results) - ignored - len(unknown) - len(held),
        ignored,
        tuple(unknown),
        tuple(held),
        tuple(raised),
    )


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
        first = _reconcile(store, period, providers, programme, lease, stale=True)
        return _dispatch(
            store,
            period,
            providers,
            programme,
            outbox,
            progress,
            trusted_approver_keys,
            lease,
            first.errors,
        )


@attrs.define
class _Run:
    """What a dispatch run has done so far (see :class:`DispatchResult`)."""

    batches: int = 0
    sent: int = 0
    paid: int = 0
    failed: int = 0
    pending: int = 0
    unknown: int = 0
    refused: int = 0
    review: int = 0
    errors: list[str] = attrs.field(factory=list)


#: How an answer's result kind is counted in a run's summary.
_COUNTED: Final = {
    ResultKind.PAID: "paid",
    ResultKind.FAILED: "failed",
    ResultKind.RETURNED: "failed",
    ResultKind.UNCLAIMED: "failed",
    ResultKind.PENDING: "pending",
}


def _dispatch(
    store: Store,
    period: Period,
    providers: Mapping[str, Provider],
    programme: str,
    outbox: Path | None,
    progress: Callable[[int], None] | None,
    trusted_approver_keys: Collection[str],
    lease: CycleLease,
    earlier_errors: Sequence[str] = (),
) -> DispatchResult:
    reference = f"{programme} {period}"
    run = _Run(errors=list(earlier_errors))
    sequence = len(store.batches(programme, period.ordinal))
    waiting: dict[str, int] = {}
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
            waiting[name] = len(idents)
            continue
        size = max(1, provider.capabilities.max_batch)
        for start in range(0, len(idents), size):
            lease.renew()  # the heartbeat; stops the run if another took the lease over
            wanted: Sequence[str] = idents[start : start + size]
            again = False
            crashed = False
            while wanted:  # a batch, then what a refusal left of it (fewer each round)
                sequence += 1
                wanted, crashed = _send(
                    store,
                    provider,
                    name,
                    wanted,
                    programme,
                    period,
                    reference,
                    outbox,
                    run,
                    sequence,
                    again=again,
                )
                again = True
            if progress is not None:
                progress(run.sent)
            if crashed:  # a plugin bug: its other instructions stay READY for the next run
                left = len(idents) - start - size
                if left > 0:
                    run.errors[-1] += f"; {left} of its instructions were not sent (still READY)"
                break
    tally: dict[str, int] = {}
    for state, _provider, _commune, count, _amount in store.cycle_totals(programme, period.ordinal):
        tally[state] = tally.get(state, 0) + count
    return DispatchResult(
        run.batches,
        run.sent,
        run.paid,
        run.failed,
        run.pending,
        run.unknown,
        tuple(run.errors),
        refused=run.refused,
        review=run.review,
        waiting=waiting,
        states={state.value: tally[state.value] for state in S if state.value in tally},
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
    run: _Run,
    sequence: int,
    *,
    again: bool = False,
) -> tuple[list[str], bool]:
    """Send one batch of the instructions ``wanted`` that are still READY (``again``: they were
    counted as sent already, by the batch a refusal cut short). Returns the keys to send again
    as a new batch (what a refusal left, back to READY) and whether the plugin crashed."""
    at = _now()
    with store.transaction():  # the outbox: intent and state change, committed together
        # read in the transaction that moves them: only what is READY now goes
        order = {ident: number for number, ident in enumerate(wanted)}
        chunk = sorted(
            (r for r in store.instructions_by_id(wanted) if r.state == S.READY),
            key=lambda r: order[r.instruction_id],
        )
        if not chunk:
            return [], False
        payments = [payment_of(record, reference, batch_created_at=at) for record in chunk]
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
    run.batches += 1
    if not again:
        run.sent += len(chunk)
    try:
        results = provider.submit(payments)
    except PaymentsRefused as exc:
        keys = {r.instruction_id for r in chunk}
        refused = {key: why for key, why in exc.refused.items() if key in keys}
        if refused:
            return _refused(store, chunk, batch, refused, run), False
        _unanswered(store, chunk, batch, "error", f"provider error: {exc}")
        run.errors.append(f"{exc} (it named no payment of batch {batch.batch_id})")
        run.unknown += len(chunk)
        return [], False
    except ProviderTimeout as exc:
        _unanswered(store, chunk, batch, "timeout", f"no answer: {exc}")
        run.unknown += len(chunk)
        return [], False
    except ProviderUnavailable as exc:
        _unanswered(store, chunk, batch, "unavailable", f"provider unavailable: {exc}")
        run.errors.append(str(exc))
        run.unknown += len(chunk)
        return [], False
    except ProviderError as exc:
        _unanswered(store, chunk, batch, "error", f"provider error: {exc}")
        run.errors.append(str(exc))
        run.unknown += len(chunk)
        return [], False
    except Exception as exc:  # noqa: BLE001 - a plugin bug must not strand its batch SUBMITTED
        # Its message is not shown: a plugin's own text may hold personal data.
        what = type(exc).__name__
        _unanswered(store, chunk, batch, "error", f"the plugin failed in submit ({what})")
        run.errors.append(
            f"provider {name}: the plugin failed in submit ({what}): batch {batch.batch_id}, "
            f"{len(chunk)} instructions UNKNOWN until a status query or report settles them"
        )
        run.unknown += len(chunk)
        return [], True
    ours = {r.instruction_id for r in chunk}
    answered = [r for r in results if r.key in ours]
    with store.transaction():  # the answer and its results: one commit
        store.answer_batch(batch.batch_id, _now(), "answered")
        outcome = _apply_results(
            store, answered, provider=name, read={r.instruction_id: r for r in chunk}
        )
        if len(answered) != len(results):  # keys this batch did not carry: not applied
            store.append_events(
                [
                    EventRecord(
                        _now(),
                        "result.ignored",
                        None,
                        None,
                        None,
                        None,
                        f"batch {batch.batch_id}: {len(results) - len(answered)} results name "
                        "keys the batch did not carry",
                    )
                ]
            )
    kinds = {r.key: r.kind for r in answered}
    held = set(outcome.held)
    for record in chunk:
        key = record.instruction_id
        if key in held:
            run.review += 1
            continue
        field = _COUNTED.get(kinds.get(key))  # type: ignore[arg-type]
        if field is None:  # no answer for it (or "not found"): a status query settles it
            run.unknown += 1
        else:
            setattr(run, field, getattr(run, field) + 1)
    return [], False


def _refused(
    store: Store,
    chunk: list[InstructionRecord],
    batch: BatchRecord,
    refused: Mapping[str, tuple[Reason, str]],
    run: _Run,
) -> list[str]:
    """The plugin refused some payments before sending anything: those fail with its reason;
    the rest were not sent either, so — as after an authoritative "never received" — they go
    back to READY (SUBMITTED → UNKNOWN → READY, an event each) to go again as a new batch.
    Returns the rest's keys."""
    at = _now()
    with store.transaction():
        store.answer_batch(batch.batch_id, at, "refused")
        states = store.states_by_id([r.instruction_id for r in chunk])
        still = [r for r in chunk if states.get(r.instruction_id, ("",))[0] == S.SUBMITTED]
        moves: list[Move] = []
        rest: list[str] = []
        for record in still:
            key = record.instruction_id
            if key in refused:
                reason, message = refused[key]
                check_transition(key, S.SUBMITTED, S.FAILED)
                moves.append(
                    Move(
                        key,
                        S.SUBMITTED,
                        S.FAILED,
                        "instruction.failed",
                        f"refused by provider {batch.provider} before sending: {message}",
                        reason.value,
                    )
                )
            else:
                rest.append(key)
                detail = (
                    f"batch {batch.batch_id} not sent: the provider refused other payments of "
                    "it before sending anything; sent again in a new batch"
                )
                moves.append(Move(key, S.SUBMITTED, S.UNKNOWN, "instruction.unknown", detail))
                moves.append(Move(key, S.UNKNOWN, S.READY, "instruction.ready", detail))
        store.apply_moves(moves, at, None)
    run.refused += sum(1 for r in still if r.instruction_id in refused)
    return rest


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
    results arrive as reports (:func:`apply_results`). Instructions held by an open review item
    are not queried (``under_review``). A provider that fails (refused credentials, no answer,
    a plugin bug) is named in ``errors``, one line each, and the others are still queried. The
    run holds the cycle's lease, as :func:`dispatch` does (``wait``: seconds to wait for it).

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
    # held by an open review item: only the operator's decision moves them; do not ask
    reviewed = {item.instruction_id for item in store.review_items(programme, period.ordinal)}
    queried = applied = ignored = held = 0
    errors: list[str] = []
    by_provider: dict[str, list[InstructionRecord]] = {}
    under_review = 0
    for record in open_records:
        if record.instruction_id in reviewed:
            under_review += 1
            continue
        by_provider.setdefault(record.provider, []).append(record)
    for name, records in by_provider.items():
        provider = providers.get(name)
        if provider is None:
            errors.append(
                f"provider {name} is not configured: {len(records)} open instructions could "
                "not be queried"
            )
            continue
        if not provider.capabilities.status_query:
            continue  # its answers arrive as reports
        size = max(1, provider.capabilities.max_batch)
        for start in range(0, len(records), size):
            lease.renew()
            chunk = records[start : start + size]
            keys = [record.instruction_id for record in chunk]
            left = len(records) - start
            try:
                results = provider.status(keys)
            except ProviderError as exc:  # still unknown: the next reconcile asks again
                errors.append(f"{exc} ({left} open instructions not queried)")
                break
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not stop the others
                errors.append(
                    f"provider {name}: the plugin failed in status ({type(exc).__name__}); "
                    f"{left} open instructions not queried"
                )
                break
            queried += len(keys)
            # under the lease no send of this cycle is in flight: "never received" is final
            ours = set(keys)
            outcome = apply_results(
                store, [r for r in results if r.key in ours], provider=name, resend_not_found=True
            )
            applied += outcome.applied
            ignored += outcome.ignored
            held += len(outcome.held)
    still_open = sum(
        count
        for state, _provider, _commune, count, _amount in store.cycle_totals(
            programme, period.ordinal
        )
        if state in OPEN_STATES
    )
    return ReconcileResult(queried, applied, ignored, still_open, tuple(errors), held, under_review)


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
        reviews = store.review_items(programme, period.ordinal)
        if still_open or reviews:
            states: dict[str, int] = {}
            for record in still_open:
                states[record.state] = states.get(record.state, 0) + 1
            listed = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            advice: list[str] = []
            if reviews:  # only an operator's decision moves them
                advice.append(
                    f"resolve the {len(reviews)} open review items ('sap-payments review list "
                    f"--period {period}')"
                )
            if S.READY in states:  # not sent yet: reconcile would not send them
                advice.append("run 'cycle dispatch' to send the READY ones")
            if states.keys() - {S.READY}:
                advice.append("run 'cycle reconcile' or import the providers' reports")
            what = (
                f"{len(still_open)} instructions are still open ({listed})"
                if still_open
                else f"{len(reviews)} review items are open"
            )
            raise CycleStateError(
                programme, str(period), f"cannot close: {what}; " + "; then ".join(advice)
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
    """A report that names instructions this ledger does not have for the provider, or
    amounts, currencies or accounts that differ from them (the mismatch rule of
    :func:`apply_results`, applied to the whole file). Nothing from it was applied."""

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

    A file is a unit a clerk can send back to the bank: one result in it that does not match
    its instruction (another amount, currency or account) refuses the whole file, nothing
    applied, instead of raising review items one by one.

    Raises:
        InvalidReport: the file names unknown instructions, or wrong amounts or accounts.
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
    except ReportRefused as exc:  # the plugin was handed bytes: say which file
        raise exc.in_file(source) from exc
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
            elif result.kind != ResultKind.NOT_FOUND:  # the mismatch rule, for a whole file
                problems.extend(
                    (result.key, f"{kind}: {detail}")
                    for kind, detail in mismatches(store, record, result)
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
