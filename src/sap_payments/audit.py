"""The tamper-evident audit trail: verifying the hash chain, and signed checkpoints.

Every event the ledger records — imports, instruction moves, approvals, closings — is chained:
its ``hash`` covers the event and the hash of the one before (see :mod:`sap_payments._chain`).
The events that create or revise an instruction carry its *content* (amount, currency,
beneficiary, provider and a fingerprint of the address), so the instructions table can be
checked against the chain.

:func:`verify` walks the chain and reports the first events that do not hash as recorded, rows
missing from it or never sealed into it, moves of an instruction that its lifecycle cannot make
(each instruction's events replayed through the transition table: a payment recorded twice, a
move out of a final state), and instructions whose amount, payee, address or state differ from
what the chain says. A chain only proves that the log is consistent with itself:
whoever can write the database can rewrite the whole log and recompute every hash. A
*checkpoint* closes that gap: when a cycle is closed, :func:`make_checkpoint` signs (with the
agency's Ed25519 key) the number of events and the chain's head hash, as a small JSON file
that someone else keeps (the ministry, the bank). ``verify(store, checkpoint)`` then checks
that the log still begins with exactly the events that checkpoint signed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Final

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sap_payments._chain import (
    GENESIS,
    address_fingerprinter,
    encode,
    event_hash,
    instruction_content,
)
from sap_payments._files import write_atomically
from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.crypto import ERASED
from sap_payments.cycles import CLOSED, require_cycle
from sap_payments.errors import CycleStateError, InvalidInput, StateError
from sap_payments.instructions import TRANSITIONS, InstructionState
from sap_payments.periods import Period
from sap_payments.signing import (
    APPROVAL_CONTEXT,
    key_id,
    manifest_sha256,
    same_person,
    verify_signature,
)
from sap_payments.store import ApproverKey, CheckpointRecord, EventRecord, Store

__all__ = [
    "AuditFailed",
    "AuditProblem",
    "AuditReport",
    "Checkpoint",
    "InvalidCheckpoint",
    "make_checkpoint",
    "stored_checkpoint",
    "verify",
]

CHECKPOINT_FORMAT: Final = "sap-payments checkpoint v1"
CHECKPOINT_CONTEXT: Final = b"sap-payments/checkpoint/v1\n"
#: The fields of the instruction content, in the order of :func:`instruction_content`.
_CONTENT_FIELDS: Final = ("amount", "currency", "beneficiary", "provider", "address")


class InvalidCheckpoint(InvalidInput):
    """A checkpoint file that cannot be read."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


@attrs.frozen
class AuditProblem:
    """One thing :func:`verify` found wrong: at an event (``seq``) or an instruction."""

    message: str
    seq: int | None = None
    instruction_id: str | None = None

    def __str__(self) -> str:
        if self.seq is not None and self.instruction_id is not None:
            return f"event {self.seq}: instruction {self.instruction_id}: {self.message}"
        if self.seq is not None:
            return f"event {self.seq}: {self.message}"
        if self.instruction_id is not None:
            return f"instruction {self.instruction_id}: {self.message}"
        return self.message


@attrs.frozen
class Checkpoint:
    """A signed statement: the ledger's first ``size`` events chain to ``head``."""

    programme: str
    period: str
    size: int
    head: str  # hex
    signed_at: str
    key_id: str
    public_key: str  # raw Ed25519, hex
    signature: str  # hex

    def message(self) -> bytes:
        """What the signature covers."""
        return CHECKPOINT_CONTEXT + encode(
            [self.programme, self.period, self.size, self.head, self.signed_at]
        ).encode("utf-8")

    def signature_valid(self) -> bool:
        try:
            public, signature = bytes.fromhex(self.public_key), bytes.fromhex(self.signature)
        except ValueError:
            return False
        return key_id(public) == self.key_id and verify_signature(public, signature, self.message())

    def to_json(self) -> str:
        return json.dumps({"format": CHECKPOINT_FORMAT, **attrs.asdict(self)}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "checkpoint") -> Checkpoint:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidCheckpoint(source, f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise InvalidCheckpoint(source, f"not a {CHECKPOINT_FORMAT!r} file")
        try:
            return cls(
                str(data["programme"]),
                str(data["period"]),
                int(data["size"]),
                str(data["head"]),
                str(data["signed_at"]),
                str(data["key_id"]),
                str(data["public_key"]),
                str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidCheckpoint(source, f"missing or bad field {exc}") from exc

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidCheckpoint(str(path), f"cannot be read: {exc.strerror or exc}") from exc
        return cls.from_json(text, source=str(path))

    def write(self, path: Path) -> None:
        write_atomically(path, self.to_json().encode())

    @classmethod
    def from_record(cls, record: CheckpointRecord) -> Checkpoint:
        return cls(
            record.programme,
            Period.text(record.period),
            record.size,
            record.head,
            record.signed_at,
            record.key_id,
            record.public_key.hex(),
            record.signature.hex(),
        )


@attrs.frozen
class AuditReport:
    """What :func:`verify` found. ``problems`` lists the first ones (``total_problems``
    counts them all), in the order found: events by seq, then instructions."""

    events: int
    head_seq: int
    head: str
    instructions: int
    problems: tuple[AuditProblem, ...]
    total_problems: int
    checkpoint: Checkpoint | None = None

    @property
    def ok(self) -> bool:
        return self.total_problems == 0


class AuditFailed(StateError):
    """The audit trail does not verify, so it cannot be checkpointed."""

    def __init__(self, report: AuditReport) -> None:
        shown = "\n".join(f"  {p}" for p in report.problems[:10])
        super().__init__(
            f"the audit trail does not verify ({report.total_problems} problems); run "
            f"'audit verify'\n{shown}"
        )
        self.report = report


class _Problems:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.found: list[AuditProblem] = []
        self.total = 0

    def add(self, message: str, *, seq: int | None = None, instruction: str | None = None) -> None:
        self.total += 1
        if len(self.found) < self.limit:
            self.found.append(AuditProblem(message, seq, instruction))


#: How many bytes of :func:`_digest` cover the content before the address fingerprint.
_HEAD: Final = 16


def _digest(content: str) -> bytes:
    """A short digest of an instruction's content: 16 bytes for everything but the address
    fingerprint (the last field), then 8 for it, so an erased address can be left out."""
    head, _, address = content.rpartition(",")
    blake2b = hashlib.blake2b
    return (
        blake2b(head.encode(), digest_size=_HEAD).digest()
        + blake2b(address.encode(), digest_size=8).digest()
    )


#: The moves the transition table allows, as the ledger stores states: (from, to) text pairs.
_ALLOWED: Final = frozenset(
    (start.value, end.value) for start, targets in TRANSITIONS.items() for end in targets
)
#: Each state's text, so the replay holds one string object per state, not one per event.
_STATE_TEXT: Final = {state.value: state.value for state in InstructionState}
_CREATED: Final = InstructionState.CREATED.value
#: The event that revises an instruction's amount or payee: it may keep the state.
_REVISED: Final = "instruction.revised"


def _replay(
    seq: int, ident: str, to: str, event: EventRecord, states: dict[str, str], problems: _Problems
) -> None:
    """Replay one move of an instruction through the transition table, from the state the
    events before it left (``states``), and report a move its lifecycle cannot make.

    The hash chain covers whatever was appended; this catches what a race or a bug appends
    well-formed: the same move recorded twice (two SUBMITTED → PAID), a move out of a final
    state (RETURNED → PAID), a move that starts from another state than the instruction was
    in, a move the table does not have, a move of an instruction never created. A creation
    (``from_state`` NULL) starts an instruction in CREATED; ``instruction.revised`` may keep
    the state."""
    to = _STATE_TEXT.get(to, to)
    current = states.get(ident)
    start = event.from_state
    kind = event.kind
    if start is None:
        if current is None:
            if to != _CREATED:
                problems.add(
                    f"{kind}: an instruction starts CREATED, not {to}", seq=seq, instruction=ident
                )
        elif (current, to) not in _ALLOWED:
            problems.add(
                f"{kind} creates it, but it exists already ({current})",
                seq=seq,
                instruction=ident,
            )
    else:
        if current is None:
            problems.add(
                f"{kind} moves it from {start}, but it was never created",
                seq=seq,
                instruction=ident,
            )
        elif start != current:
            twice = ": the same move recorded twice" if to == current else ""
            problems.add(
                f"{kind} moves it from {start}, but the events before left it {current}{twice}",
                seq=seq,
                instruction=ident,
            )
        if (start, to) not in _ALLOWED and not (start == to and kind == _REVISED):
            problems.add(
                f"{kind}: {start} → {to} is not a move the transition table allows",
                seq=seq,
                instruction=ident,
            )
    states[ident] = to


def verify(store: Store, checkpoint: Checkpoint | None = None, *, limit: int = 100) -> AuditReport:
    """Check the audit trail: the hash chain, the chain head, each instruction's moves replayed
    through the transition table, the instructions against it and, when given, a checkpoint
    (its signature, and that the log still begins with the events it covers). Reads the whole
    log once, in seq order; holds a small digest and a state per instruction. An empty log
    verifies."""
    problems = _Problems(limit)
    head = store.chain_head()
    previous = pure = GENESIS
    last = count = 0
    # an empty log sealed by a transaction that wrote no event has its head at event 0
    at_head: bytes | None = GENESIS if head is not None and head[0] == 0 else None
    at_checkpoint: bytes | None = None
    contents: dict[str, bytes] = {}
    states: dict[str, str] = {}
    signing: list[tuple[int, str, str]] = []  # (seq, kind, detail) of approver and approval events
    for seq, event, stored in store.chained_events():
        count += 1
        if seq != last + 1:
            missing = f"{last + 1}" if seq == last + 2 else f"{last + 1}–{seq - 1}"
            problems.add(f"event {missing} missing: deleted from the log", seq=seq)
        row = (seq, *event)
        expected = event_hash(previous, row)
        if checkpoint is not None:
            pure = event_hash(pure, row)
            if seq == checkpoint.size:
                at_checkpoint = pure
        if stored is None:
            problems.add("not sealed into the chain: written outside sap-payments", seq=seq)
        else:
            if stored != expected:
                problems.add(
                    "does not hash as recorded: it was changed, or the event before it was "
                    "changed, removed or moved",
                    seq=seq,
                )
            previous = stored
        if head is not None and seq > head[0] and stored is not None:
            problems.add(f"past the chain head (event {head[0]}): added afterwards", seq=seq)
        if head is not None and seq == head[0]:
            at_head = stored
        last = seq
        ident = event.instruction_id
        if ident is not None:
            if event.content is not None:
                contents[ident] = _digest(event.content)
            to, start = event.to_state, event.from_state
            if to is not None:  # a move (result.ignored and the like move nothing)
                if start is not None and states.get(ident) == start and (start, to) in _ALLOWED:
                    states[ident] = _STATE_TEXT[to]  # the usual move, replayed inline
                else:
                    _replay(seq, ident, to, event, states, problems)
        elif event.kind in _SIGNING_KINDS and event.detail is not None:
            signing.append((seq, event.kind, event.detail))
    if head is not None:
        if head[0] > last:
            problems.add(
                f"the log ends at event {last}, but the chain head is event {head[0]}: "
                "events were deleted from its end",
                seq=last + 1,
            )
        elif at_head != head[1]:
            problems.add("the chain head does not match this event", seq=head[0])
    elif count:
        problems.add("the log has events but no chain head: it was never sealed")
    checked = _check_instructions(store, contents, states, problems)
    _check_signing(store, signing, problems)
    if checkpoint is not None:
        _check_checkpoint(checkpoint, last, at_checkpoint, problems)
    return AuditReport(
        count,
        head[0] if head else 0,
        head[1].hex() if head else GENESIS.hex(),
        checked,
        tuple(problems.found),
        problems.total,
        checkpoint,
    )


def _check_checkpoint(
    checkpoint: Checkpoint, last: int, at_size: bytes | None, problems: _Problems
) -> None:
    where = f"checkpoint {checkpoint.programme} {checkpoint.period}"
    if not checkpoint.signature_valid():
        problems.add(f"{where}: its signature does not verify (key {checkpoint.key_id})")
    if last < checkpoint.size:
        problems.add(
            f"{where}: covers {checkpoint.size} events but the log has only {last}: events "
            "were removed"
        )
    elif at_size is None or at_size.hex() != checkpoint.head:
        problems.add(
            f"{where}: the first {checkpoint.size} events differ from the ones it signed: "
            "the log was rewritten",
            seq=checkpoint.size,
        )


_SIGNING_KINDS: Final = frozenset({"approver.added", "cycle.approved"})
_APPROVED: Final = re.compile(
    r"(?P<programme>\S+) (?P<period>\d{4}-\d{2}): .*; manifest sha256 (?P<digest>[0-9a-f]{64}), "
    r"(?:signed with key (?P<key>[0-9a-f]{16})|unsigned)$"
)
_ADDED: Final = re.compile(r"(?P<name>.+): key (?P<key>[0-9a-f]{16})$")


def _check_signing(store: Store, events: list[tuple[int, str, str]], problems: _Problems) -> None:
    """The approver keys and the approvals (manifest and signature) against the events that
    recorded them: a key removed or swapped, or an approval rewritten, is caught here."""
    registered = {key.key_id: key for key in store.approver_keys()}
    for key in registered.values():
        if key_id(key.public_key) != key.key_id:
            problems.add(f"approver {key.name!r}: the stored key is not key {key.key_id}")
    added: set[str] = set()
    for seq, kind, detail in events:
        if kind == "approver.added" and (match := _ADDED.match(detail)):
            added.add(match["key"])
            found = registered.get(match["key"])
            if found is None or not same_person(found.name, match["name"]):
                problems.add("approver key registered here is missing or changed", seq=seq)
        elif kind == "cycle.approved" and (match := _APPROVED.match(detail)):
            _check_approval(store, seq, match, registered, problems)
    for ident in sorted(set(registered) - added):
        problems.add(f"approver key {ident} has no event in the audit trail: added outside")


def _check_approval(
    store: Store,
    seq: int,
    match: re.Match[str],
    registered: dict[str, ApproverKey],
    problems: _Problems,
) -> None:
    period = Period.parse(match["period"])
    approval = store.approval(match["programme"], period.ordinal)
    where = f"the approval of cycle {period} ({match['programme']})"
    if approval is None:
        problems.add(f"{where} is missing", seq=seq)
        return
    if approval.manifest_sha256 != match["digest"] or approval.key_id != match["key"]:
        problems.add(f"{where} differs from the one recorded here", seq=seq)
        return
    digest, _, _ = manifest_sha256(
        approval.programme,
        approval.period,
        store.approval_entries(approval.programme, approval.period),
        approval.currency,
    )
    if digest != approval.manifest_sha256:
        problems.add(f"{where}: its manifest was changed after approval", seq=seq)
    if approval.key_id is not None:
        key = registered.get(approval.key_id)
        if (
            key is None
            or approval.signature is None
            or not verify_signature(
                key.public_key,
                approval.signature,
                APPROVAL_CONTEXT + approval.manifest_sha256.encode(),
            )
        ):
            problems.add(f"{where}: its signature does not verify", seq=seq)


def _last_contents(store: Store, idents: set[str]) -> dict[str, str]:
    """The last content the chain records for each of ``idents`` (one pass over the log)."""
    found: dict[str, str] = {}
    for _, event, _stored in store.chained_events():
        if event.instruction_id in idents and event.content is not None:
            found[event.instruction_id] = event.content
    return found


def _check_instructions(
    store: Store, contents: dict[str, bytes], states: dict[str, str], problems: _Problems
) -> int:
    """Cross-check every instruction against the last content and state the chain records.

    An erased address (``[erased]``, see docs/security.md) is not compared: erasure replaces
    it on purpose, and a ``beneficiary.erased`` event records that."""
    fingerprint = address_fingerprinter(store)
    checked = 0
    differing: dict[str, tuple[str, bool]] = {}  # instruction id → (content now, erased)
    for programme in store.programmes():
        for cycle in store.cycles(programme):
            for record, _ in store.cycle_instructions(programme, cycle.period):
                checked += 1
                ident = record.instruction_id
                wanted = contents.pop(ident, None)
                state = states.pop(ident, None)
                content = instruction_content(record, fingerprint)
                if wanted is None:
                    if state is None:
                        problems.add(
                            "has no event in the audit trail: added outside sap-payments",
                            instruction=ident,
                        )
                    # else: created before the audit trail recorded contents (an old ledger)
                else:
                    now = _digest(content)
                    erased = ERASED in record.address
                    if erased:
                        now, wanted = now[:_HEAD], wanted[:_HEAD]
                    if now != wanted and len(differing) < problems.limit:
                        differing[ident] = (content, erased)
                    elif now != wanted:
                        problems.add("differs from the audit trail", instruction=ident)
                if state is not None and state != record.state:
                    problems.add(
                        f"is {record.state}, but its last recorded move was to {state}",
                        instruction=ident,
                    )
    recorded = _last_contents(store, set(differing)) if differing else {}
    for ident, (content, erased) in differing.items():
        before = json.loads(recorded.get(ident, "[]"))
        changed = [
            name
            for name, a, b in zip(_CONTENT_FIELDS, before, json.loads(content), strict=False)
            if a != b and not (erased and name == "address")
        ] or ["content"]
        verb = "differs" if len(changed) == 1 else "differ"
        problems.add(f"{', '.join(changed)} {verb} from the audit trail", instruction=ident)
    for ident in sorted(contents):
        problems.add(
            "is in the audit trail but not in the instructions table: deleted", instruction=ident
        )
    return checked


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def make_checkpoint(
    store: Store,
    period: Period | str,
    key: Ed25519PrivateKey,
    *,
    programme: str = DEFAULT_PROGRAMME,
) -> Checkpoint:
    """Sign a checkpoint of the audit trail for a closed cycle: the number of events and the
    chain's head now. The trail is verified first; the checkpoint is stored in the ledger and
    recorded as an ``audit.checkpoint`` event.

    Raises:
        CycleNotFound, CycleStateError: the cycle does not exist or is not closed.
        AuditFailed: the audit trail does not verify (a tampered log is never signed).
    """
    if isinstance(period, str):
        period = Period.parse(period)
    cycle = require_cycle(store, programme, period)
    if cycle.state != CLOSED:
        raise CycleStateError(programme, str(period), "is not closed; close it first")
    report = verify(store)
    if not report.ok:
        raise AuditFailed(report)
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    public = _raw_public(key)
    with store.transaction():
        head = store.chain_head()
        if head is None or head[0] != report.head_seq:
            raise AuditFailed(report)  # written to since: verify again
        draft = Checkpoint(
            programme, str(period), head[0], head[1].hex(), at, key_id(public), public.hex(), ""
        )
        signature = key.sign(draft.message())
        checkpoint = attrs.evolve(draft, signature=signature.hex())
        store.save_checkpoint(
            CheckpointRecord(
                programme,
                period.ordinal,
                checkpoint.size,
                checkpoint.head,
                at,
                checkpoint.key_id,
                public,
                signature,
            )
        )
        store.append_events(
            [
                EventRecord(
                    at,
                    "audit.checkpoint",
                    None,
                    None,
                    None,
                    None,
                    f"{programme} {period}: events 1-{checkpoint.size}, head {checkpoint.head}, "
                    f"key {checkpoint.key_id}",
                )
            ]
        )
    return checkpoint


def stored_checkpoint(
    store: Store, period: Period | str, *, programme: str = DEFAULT_PROGRAMME
) -> Checkpoint | None:
    """The checkpoint made for a cycle, if any."""
    if isinstance(period, str):
        period = Period.parse(period)
    record = store.checkpoint(programme, period.ordinal)
    return None if record is None else Checkpoint.from_record(record)
