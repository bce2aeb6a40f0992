"""Signed maker-checker approval: Ed25519 keys, the approval manifest, and its checks.

Two people release a payroll. The *maker* prepares the cycle (``prepare(..., by=...)``); the
*checker* approves it and may not be the maker. Once approvers' public keys are registered in
the ledger (:func:`add_approver`), approving needs the approver's private key: it signs the
cycle's *manifest* — every READY instruction's id, payee address fingerprint, amount, currency
and provider, then the control totals (count and sum). Dispatch checks the signature and every
instruction it is about to send against the manifest, so an amount or an account edited in the
database after approval is refused before any money moves.

A ledger with no registered approver key runs without signatures: approval records the
manifest unsigned and dispatch still checks instructions against it (which catches a careless
edit, not a deliberate one: whoever can write the database can rewrite the manifest too). Once
any approver key is registered, an unsigned approval is refused and dispatch requires a valid
signature.

The manifest, as hashed (UTF-8, one line each, ids in ascending order)::

    sap-payments approval manifest v1
    <programme>\\t<YYYY-MM>
    <instruction id>\\t<address fingerprint>\\t<amount>\\t<currency>\\t<provider>
    …
    total\\t<count>\\t<sum>\\t<currency>

and the approver signs ``b"sap-payments/approval/v1\\n" + <its SHA-256, hex>``. No address
and no name is in it, only :func:`sap_payments._chain.address_fingerprinter` fingerprints.

The approval is bound to what the checker reviewed: ``cycle show`` and ``report changes``
print a prepared cycle's :class:`CycleReview` — the SHA-256 of the manifest its approval would
sign (over the instructions approval makes READY), their count and total — and ``approve``
given that digest (or the count and total) refuses with :class:`CycleChanged`, approving
nothing, when the cycle has been prepared again since.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Final

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sap_payments._chain import address_fingerprinter
from sap_payments.errors import InvalidInput, SapPaymentsError, StateError
from sap_payments.instructions import InstructionState
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.store import (
    ApprovalEntry,
    ApprovalRecord,
    ApproverKey,
    CycleRecord,
    EventRecord,
    InstructionRecord,
    Store,
)

__all__ = [
    "ApprovalMismatch",
    "ApprovalRefused",
    "CycleChanged",
    "CycleReview",
    "KeyFileError",
    "ReviewDigest",
    "SignatureError",
    "add_approver",
    "approvers",
    "check_dispatch",
    "check_review",
    "generate_signing_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "manifest_sha256",
    "recorded_review",
    "same_person",
    "sign_approval",
    "verify_signature",
]

MANIFEST_HEADER: Final = "sap-payments approval manifest v1"
APPROVAL_CONTEXT: Final = b"sap-payments/approval/v1\n"


class KeyFileError(InvalidInput):
    """A key file that cannot be read, or is not an Ed25519 key of the expected kind."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class ApprovalRefused(StateError):
    """An approval that maker-checker or the approver keys do not allow; nothing changed."""

    def __init__(self, programme: str, period: str, message: str) -> None:
        super().__init__(f"cycle {period} ({programme}): approval refused: {message}")
        self.programme = programme
        self.period = period


class CycleChanged(ApprovalRefused):
    """An approval refused because the cycle is not what the checker reviewed: its digest,
    count or total differs from the one given. ``differences``: (what, as reviewed, now) for
    each; nothing was approved.

    The new digest is shown shortened on purpose: it is to be read again from a new review
    ('report changes'), not copied from this message."""

    def __init__(
        self, programme: str, period: str, differences: Sequence[tuple[str, str, str]]
    ) -> None:
        what = ", ".join(f"{name} {then} now {now}" for name, then, now in differences)
        super().__init__(
            programme,
            period,
            f"the cycle changed since it was reviewed: {what}; run 'report changes' again",
        )
        self.differences = tuple(differences)


class SignatureError(SapPaymentsError):
    """A signature that is missing or does not verify (an approval's or a checkpoint's)."""


class ApprovalMismatch(StateError):
    """Instructions about to be sent that the approval does not cover, or that differ from it.
    ``problems``: (instruction id, what differs), every one; nothing of the cycle was sent."""

    def __init__(self, programme: str, period: str, problems: Sequence[tuple[str, str]]) -> None:
        self.programme = programme
        self.period = period
        self.problems = tuple(problems)
        self.instruction_ids = tuple(ident for ident, _ in self.problems)
        shown = "\n".join(f"  {ident}: {what}" for ident, what in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n  … and {more} more" if more > 0 else ""
        super().__init__(
            f"cycle {period} ({programme}): {len(self.problems)} instructions differ from what "
            f"was approved; nothing was sent (run 'audit verify')\n{shown}{tail}"
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def key_id(public_key: bytes) -> str:
    """A short id of a raw Ed25519 public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_signing_key(out: Path) -> tuple[Path, Path, str]:
    """Write a new Ed25519 key pair: the private key to ``out`` (PEM, PKCS#8, mode 0600; an
    existing file is never overwritten) and the public key next to it (``*.pub.pem``).

    Returns (private key file, public key file, key id).
    """
    private = Ed25519PrivateKey.generate()
    public_path = out.with_name(out.stem + ".pub.pem")
    if out.exists() or public_path.exists():
        raise KeyFileError(str(out), "exists already; choose another name")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public = private.public_key()
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return out, public_path, key_id(_raw(public))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (unencrypted PKCS#8)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(str(path), f"cannot be read: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:
        raise KeyFileError(str(path), "is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(str(path), "is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> bytes:
    """A raw Ed25519 public key (32 bytes) from a PEM file (a private key file gives its
    public half)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(str(path), f"cannot be read: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        return _raw(load_private_key(path).public_key())
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(str(path), "is not an Ed25519 public key")
    return _raw(key)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _person(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def same_person(first: str, second: str) -> bool:
    """Whether two names given as ``--by`` are the same person (case and spacing aside)."""
    return _person(first) == _person(second)


def approvers(store: Store) -> list[ApproverKey]:
    """The registered approvers and their public keys, by name."""
    return store.approver_keys()


def add_approver(store: Store, name: str, public_key: bytes) -> ApproverKey:
    """Register an approver's public key; from then on every approval must be signed.

    Raises:
        InvalidInput: the name is empty, already registered, or the key is registered already.
        ApprovalRefused: a cycle approved without a signature is not closed yet (its dispatch
            would be refused once keys are registered): close it first.
    """
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise InvalidInput("an approver needs a name")
    if len(public_key) != 32:
        raise InvalidInput("not a raw Ed25519 public key (32 bytes)")
    ident = key_id(public_key)
    with store.transaction():
        for known in store.approver_keys():
            if same_person(known.name, name):
                raise InvalidInput(f"approver {name!r} is registered already (key {known.key_id})")
            if known.public_key == public_key:
                raise InvalidInput(f"key {ident} is registered already, for {known.name!r}")
        for programme in store.programmes():
            for cycle in store.cycles(programme):
                approval = store.approval(programme, cycle.period)
                if cycle.state == "approved" and (approval is None or approval.signature is None):
                    raise ApprovalRefused(
                        programme,
                        Period.text(cycle.period),
                        "it was approved without a signature and is not closed; close it "
                        "before registering approver keys",
                    )
        at = _now()
        key = ApproverKey(name, public_key, ident, at)
        store.add_approver_key(key)
        store.append_events(
            [EventRecord(at, "approver.added", None, None, None, None, f"{name}: key {ident}")]
        )
    return key


def _manifest_head(programme: str, period: int) -> bytes:
    return f"{MANIFEST_HEADER}\n{programme}\t{Period.text(period)}\n".encode()


def _manifest_line(entry: ApprovalEntry) -> bytes:
    return (
        f"{entry.instruction_id}\t{entry.fingerprint}\t{entry.amount}\t{entry.currency}\t"
        f"{entry.provider}\n".encode()
    )


def _manifest_tail(count: int, total: int, currency: str) -> bytes:
    return f"total\t{count}\t{total}\t{currency}\n".encode()


def manifest_sha256(
    programme: str, period: int, entries: Iterable[ApprovalEntry], currency: str
) -> tuple[str, int, int]:
    """(SHA-256 hex, count, sum) of the manifest of ``entries`` (in instruction id order)."""
    digest = hashlib.sha256(_manifest_head(programme, period))
    count = total = 0
    for entry in entries:
        count += 1
        total += entry.amount
        digest.update(_manifest_line(entry))
    digest.update(_manifest_tail(count, total, currency))
    return digest.hexdigest(), count, total


@attrs.frozen
class CycleReview:
    """What the checker reviews of a cycle, for the approval to be bound to: ``digest``, the
    SHA-256 of the manifest its approval signs (every instruction to pay: id, address
    fingerprint, amount, currency, provider; see the module's docstring), and the ``count``
    and ``total`` of those instructions.

    Of a prepared cycle it is computed from the instructions as they stand (those approval
    makes READY); of an approved or closed one it is the approval's (``approved``)."""

    programme: str
    period: Period
    digest: str
    count: int
    total: Money
    approved: bool = False

    def to_json(self) -> dict[str, object]:
        """As ``cycle show`` and ``report changes`` print it in JSON (total in minor units)."""
        return {"digest": self.digest, "count": self.count, "total": self.total.minor}

    def __str__(self) -> str:
        if self.approved:
            return (
                f"approved: manifest sha256 {self.digest} ({self.count:,} instructions, "
                f"total {self.total})"
            )
        return (
            f"review digest {self.digest} ({self.count:,} instructions to approve, total "
            f"{self.total}): approve with --expect-digest {self.digest}"
        )


#: The states whose instructions an approval pays: CREATED becomes READY.
_TO_APPROVE: Final = frozenset({InstructionState.CREATED.value, InstructionState.READY.value})


class ReviewDigest:
    """The :class:`CycleReview` of a prepared cycle, built from its instructions as they are
    read (so that a report and the digest it prints come from the same rows): :meth:`add`
    each, in any order, then :meth:`review`.

    The manifest is in instruction id order: each instruction's manifest line is kept (about
    120 bytes) and sorted at the end — the id comes first and a tab follows it, so the lines
    sort as the ids do."""

    def __init__(self, store: Store, cycle: CycleRecord) -> None:
        self.cycle = cycle
        self._fingerprint = address_fingerprinter(store)
        self._lines: list[bytes] = []
        self._total = 0

    def add(self, record: InstructionRecord) -> None:
        if record.state in _TO_APPROVE:
            self._lines.append(_manifest_line(_entry(record, self._fingerprint(record.address))))
            self._total += record.amount

    def review(self) -> CycleReview:
        cycle = self.cycle
        self._lines.sort()
        digest = hashlib.sha256(_manifest_head(cycle.programme, cycle.period))
        for line in self._lines:
            digest.update(line)
        count = len(self._lines)
        digest.update(_manifest_tail(count, self._total, cycle.currency))
        return CycleReview(
            cycle.programme,
            Period(cycle.period),
            digest.hexdigest(),
            count,
            Money(self._total, cycle.currency),
        )


def recorded_review(store: Store, cycle: CycleRecord) -> CycleReview | None:
    """The review an approved (or closed) cycle was approved with: its approval's manifest
    digest, count and total; None when no approval is recorded."""
    approval = store.approval(cycle.programme, cycle.period)
    if approval is None:
        return None
    return CycleReview(
        cycle.programme,
        Period(cycle.period),
        approval.manifest_sha256,
        approval.instructions,
        Money(approval.total, approval.currency),
        approved=True,
    )


def check_review(
    approval: ApprovalRecord,
    *,
    digest: str | None = None,
    count: int | None = None,
    total: Money | None = None,
) -> None:
    """Refuse an approval whose manifest is not the one reviewed (``digest``), or whose count
    or total is not (inside the approval's transaction, which then rolls back).

    Raises:
        CycleChanged: naming each that differs.
    """
    differences: list[tuple[str, str, str]] = []
    if digest is not None and digest != approval.manifest_sha256:
        differences.append(("digest", f"{digest[:16]}…", f"{approval.manifest_sha256[:16]}…"))
    if count is not None and count != approval.instructions:
        differences.append(("count", f"{count:,}", f"{approval.instructions:,}"))
    now = Money(approval.total, approval.currency)
    if total is not None and total != now:
        differences.append(("total", str(total), str(now)))
    if differences:
        raise CycleChanged(approval.programme, Period.text(approval.period), differences)


def _entry(record: InstructionRecord, fingerprint: str) -> ApprovalEntry:
    return ApprovalEntry(
        record.instruction_id, fingerprint, record.amount, record.currency, record.provider
    )


def sign_approval(
    store: Store,
    programme: str,
    period: int,
    approver: str,
    currency: str,
    key: Ed25519PrivateKey | None,
    at: str,
) -> ApprovalRecord:
    """Record the manifest of the cycle's READY instructions and the approval over it, signed
    with ``key`` when given (inside the caller's transaction). The caller has checked that
    ``key`` belongs to ``approver``."""
    fingerprint = address_fingerprinter(store)
    ready = InstructionState.READY.value
    store.save_approval_entries(
        programme,
        period,
        (
            _entry(record, fingerprint(record.address))
            for record, _ in store.cycle_instructions(programme, period)
            if record.state == ready
        ),
    )
    digest, count, total = manifest_sha256(
        programme, period, store.approval_entries(programme, period), currency
    )
    signature = key_ident = None
    if key is not None:
        signature = key.sign(APPROVAL_CONTEXT + digest.encode())
        key_ident = key_id(_raw(key.public_key()))
    approval = ApprovalRecord(
        programme, period, approver, key_ident, signature, digest, count, total, currency, at
    )
    store.save_approval(approval)
    return approval


def check_approver(
    store: Store, programme: str, period: Period, approver: str, key: Ed25519PrivateKey | None
) -> None:
    """Refuse an approval that the registered approver keys do not allow.

    Raises:
        ApprovalRefused: keys are registered and no key was given, the approver is not
            registered, or the key is not theirs; or a key was given to a ledger without keys.
    """
    keys = store.approver_keys()
    if not keys:
        if key is not None:
            raise ApprovalRefused(
                programme,
                str(period),
                "no approver key is registered in this ledger; register the public key first "
                "('keys add-approver')",
            )
        return
    if key is None:
        raise ApprovalRefused(
            programme,
            str(period),
            "approver keys are registered in this ledger: the approval must be signed with "
            "the approver's private key (--key)",
        )
    mine = next((k for k in keys if same_person(k.name, approver)), None)
    if mine is None:
        raise ApprovalRefused(
            programme, str(period), f"{approver!r} is not a registered approver ('keys approvers')"
        )
    if _raw(key.public_key()) != mine.public_key:
        raise ApprovalRefused(
            programme, str(period), f"the key given is not {mine.name!r}'s (key {mine.key_id})"
        )


def check_dispatch(
    store: Store,
    programme: str,
    period: Period,
    instruction_ids: Sequence[str],
    *,
    trusted: Collection[str] = (),
) -> None:
    """Before a dispatch: the approval's signature holds and every instruction about to be
    sent is in its manifest, unchanged (address fingerprint, amount, currency, provider).

    ``trusted``: approver key ids pinned outside the database (the configuration's
    ``approver_keys``). When given, the approval must be signed by one of them whatever the
    ledger's own tables say — deleting or replacing the registered keys in the database does
    not switch signing off.

    Raises:
        SignatureError: approver keys are registered (or pinned) and the approval is unsigned,
            or signed by a key that is not pinned, or its signature or manifest does not verify.
        ApprovalMismatch: instructions not covered by the approval, or different from it.
    """
    ordinal = period.ordinal
    approval = store.approval(programme, ordinal)
    keys = {k.key_id: k for k in store.approver_keys()}
    where = f"cycle {period} ({programme})"
    if trusted:
        if approval is None or approval.signature is None or approval.key_id is None:
            raise SignatureError(
                f"{where}: the configuration pins approver keys (approver_keys) and the "
                "approval is not signed; it cannot be dispatched"
            )
        if approval.key_id not in trusted:
            raise SignatureError(
                f"{where}: signed with key {approval.key_id}, which is not one of the approver "
                "keys the configuration pins (approver_keys)"
            )
        if approval.key_id not in keys:
            raise SignatureError(
                f"{where}: the pinned key {approval.key_id} that signed the approval is not "
                "registered in this ledger (run 'audit verify')"
            )
    if approval is None:
        if keys:
            raise SignatureError(f"{where}: has no signed approval; it cannot be dispatched")
        return  # approved before approvals recorded a manifest, in a ledger without keys
    digest, _count, _total = manifest_sha256(
        programme, ordinal, store.approval_entries(programme, ordinal), approval.currency
    )
    if digest != approval.manifest_sha256:
        raise SignatureError(
            f"{where}: the approval's manifest was changed after approval (run 'audit verify')"
        )
    if approval.signature is None or approval.key_id is None:
        if keys:
            raise SignatureError(
                f"{where}: approved without a signature, but approver keys are registered"
            )
    else:
        signer = keys.get(approval.key_id)
        if signer is not None and key_id(signer.public_key) != approval.key_id:
            raise SignatureError(
                f"{where}: the public key registered as {approval.key_id} is not that key "
                "(the ledger's approver keys were edited; run 'audit verify')"
            )
        if signer is None or not same_person(signer.name, approval.approver):
            raise SignatureError(
                f"{where}: signed with key {approval.key_id}, which is not the registered key "
                f"of approver {approval.approver!r}"
            )
        if not verify_signature(
            signer.public_key, approval.signature, APPROVAL_CONTEXT + digest.encode()
        ):
            raise SignatureError(f"{where}: the approval's signature does not verify")
    fingerprint = address_fingerprinter(store)
    problems: list[tuple[str, str]] = []
    for start in range(0, len(instruction_ids), 5000):
        chunk = instruction_ids[start : start + 5000]
        approved = {e.instruction_id: e for e in store.approval_entries(programme, ordinal, chunk)}
        for record in store.instructions_by_id(chunk):
            entry = approved.get(record.instruction_id)
            if entry is None:
                problems.append((record.instruction_id, "not covered by the approval"))
                continue
            now = _entry(record, fingerprint(record.address))
            changed = [
                field
                for field in ("fingerprint", "amount", "currency", "provider")
                if getattr(now, field) != getattr(entry, field)
            ]
            if changed:
                what = ", ".join("address" if f == "fingerprint" else f for f in changed)
                problems.append((record.instruction_id, f"{what} changed since approval"))
    if problems:
        raise ApprovalMismatch(programme, str(period), sorted(problems))
