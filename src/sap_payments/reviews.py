"""Answers that do not match what was sent, and their review by an operator.

A provider's answer may name the amount it paid (``Result.amount``) and the account it paid
into (``Result.address``). When either differs from the instruction — another amount, another
currency, another account — the answer is **not applied**: the mismatch rule, checked in one
place for every channel (:func:`sap_payments.dispatch.apply_results`), records a review item
(:class:`~sap_payments.store.ReviewItem`: ``amount_mismatch``, ``currency_mismatch`` or
``address_mismatch``) and moves the instruction to UNKNOWN (from SUBMITTED or ACCEPTED; an
UNKNOWN one stays UNKNOWN). Nothing about the person is in the item: amounts, and addresses only
as fingerprints (the keyed blind index the approval manifest uses).

While an item is open its instruction is held: every later answer about it — a callback, a
report, a status query, even one that now matches — is recorded as ``result.held`` and not
applied, ``cycle reconcile`` does not ask about it, and the cycle cannot close. Only an
operator's decision (:func:`resolve_review`, ``sap-payments review resolve``) moves it on,
through the transition table, with who and why recorded:

========== ================================================== ============================
as         when                                               the instruction
========== ================================================== ============================
paid       the provider confirms the instruction's amount     UNKNOWN → PAID (a PAID one
           reached the instruction's account                  stays PAID)
resend     the provider confirms it never paid the key (it    UNKNOWN → READY: the next
           voided its record): send it again, same key        dispatch sends it, same key
failed     the provider confirms, in writing, that no money   UNKNOWN → FAILED: its months
           moved under the key (``no_money_moved`` required)  are due again, paid next cycle
returned   the money was paid and is back in the agency's     → PAID → RETURNED: its months
           account                                            are due again
========== ================================================== ============================

At most once: ``resend`` is safe by construction — the same key goes again, and a provider
deduplicates by key (if it still holds the key it answers its record again, the mismatch is
found again and a new item raised). ``failed`` and ``returned`` release the instruction's months:
the next cycle pays them under a *new* key, which no provider can deduplicate against the old
one; so ``failed`` is refused unless the operator states that no money moved. Resolving an item
resolves every open item of the same instruction (one decision per instruction).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final

from sap_payments._chain import address_fingerprinter
from sap_payments.beneficiaries import WalletAddress, normalise_msisdn
from sap_payments.errors import InvalidInput, StateError
from sap_payments.instructions import InstructionState, check_transition
from sap_payments.money import Money
from sap_payments.store import EventRecord, Move, ReviewItem

if TYPE_CHECKING:
    from sap_payments.beneficiaries import FinancialAddress
    from sap_payments.providers import Result
    from sap_payments.store import InstructionRecord, Store

__all__ = [
    "RESOLUTIONS",
    "ReviewNotFound",
    "ReviewRefused",
    "mismatches",
    "resolve_review",
]

S = InstructionState

#: How a mismatch moves an instruction, from each state a result can find it in (an UNKNOWN
#: or PAID one does not move; the item holds it where it is).
HOLD_PATHS: Final = {
    S.SUBMITTED: (S.UNKNOWN,),
    S.ACCEPTED: (S.UNKNOWN,),
    S.UNKNOWN: (),
    S.PAID: (),
}

#: How each resolution moves an instruction, from the state it is held in.
_RESOLUTION_PATHS: Final[dict[tuple[str, S], tuple[S, ...]]] = {
    ("paid", S.UNKNOWN): (S.PAID,),
    ("paid", S.PAID): (),
    ("resend", S.UNKNOWN): (S.READY,),
    ("failed", S.UNKNOWN): (S.FAILED,),
    ("returned", S.UNKNOWN): (S.PAID, S.RETURNED),
    ("returned", S.PAID): (S.RETURNED,),
}
#: The operator's choices.
RESOLUTIONS: Final = ("paid", "resend", "failed", "returned")

for _start, _path in HOLD_PATHS.items():  # both tables obey the one transition table
    for _before, _after in zip((_start, *_path), _path, strict=False):
        check_transition("(review)", _before, _after)
for (_as, _start), _path in _RESOLUTION_PATHS.items():
    for _before, _after in zip((_start, *_path), _path, strict=False):
        check_transition("(review)", _before, _after)


class ReviewNotFound(StateError, LookupError):
    """No review item with this id."""

    def __init__(self, item_id: int) -> None:
        super().__init__(f"no review item {item_id}: see 'sap-payments review list'")
        self.item_id = item_id


class ReviewRefused(StateError):
    """A resolution that does not fit: the item is resolved already, the instruction is in a
    state the resolution cannot start from, or ``failed`` without ``no_money_moved``."""

    def __init__(self, item_id: int, message: str) -> None:
        super().__init__(f"review item {item_id}: {message}")
        self.item_id = item_id


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _address_key(address: FinancialAddress) -> str:
    """The address's key, a wallet's number in E.164 (a provider may echo ``09…``)."""
    if isinstance(address, WalletAddress):
        try:
            return f"ewallet:{normalise_msisdn(address.msisdn)}"
        except InvalidInput:
            return address.key
    return address.key


def mismatches(store: Store, record: InstructionRecord, result: Result) -> list[tuple[str, str]]:
    """(kind, detail) of every way ``result`` contradicts what ``record`` instructed: another
    currency, another amount, another account. Empty when it names none, or the same.
    The details hold amounts and address fingerprints, never an address."""
    found: list[tuple[str, str]] = []
    ours = Money(record.amount, record.currency)
    theirs = result.amount
    if theirs is not None:
        if theirs.currency != record.currency:
            found.append(
                (
                    "currency_mismatch",
                    f"the provider confirmed {theirs}, which differs from the instruction's {ours}",
                )
            )
        elif theirs.minor != record.amount:
            found.append(
                (
                    "amount_mismatch",
                    f"the provider confirmed {theirs}, which differs from the instruction's {ours}",
                )
            )
    if result.address is not None:
        confirmed = _address_key(result.address)
        if confirmed != record.address:
            fingerprint = address_fingerprinter(store)
            found.append(
                (
                    "address_mismatch",
                    f"the provider confirmed account {fingerprint(confirmed)[:12]}…, which "
                    f"differs from the instruction's {fingerprint(record.address)[:12]}… "
                    "(fingerprints)",
                )
            )
    return found


def resolve_review(
    store: Store,
    item_id: int,
    resolution: str,
    *,
    by: str,
    reason: str,
    no_money_moved: bool = False,
) -> list[ReviewItem]:
    """Resolve a review item (and every other open item of its instruction) as ``resolution``
    (one of :data:`RESOLUTIONS`; see the module doc), moving the instruction through the
    transition table; ``by`` and ``reason`` are recorded with every event. Returns the items
    resolved.

    Raises:
        InvalidInput: an unknown resolution, or no ``by`` or ``reason``.
        ReviewNotFound: no such item.
        ReviewRefused: the item is resolved already; ``failed`` without ``no_money_moved``; or
            the instruction is in a state the resolution cannot start from.
    """
    if resolution not in RESOLUTIONS:
        raise InvalidInput(f"not a resolution: {resolution!r} (one of {', '.join(RESOLUTIONS)})")
    by, reason = by.strip(), reason.strip()
    if not by or not reason:
        raise InvalidInput("a review is resolved by someone (--by) for a reason (--reason)")
    if resolution == "failed" and not no_money_moved:
        raise ReviewRefused(
            item_id,
            "'failed' gives the instruction's months back, to be paid again under a new key "
            "that the provider cannot recognise; confirm first with the provider that no money "
            "moved under this key (--no-money-moved), or resolve it as 'resend' (same key)",
        )
    at = _now()
    with store.transaction():
        item = store.review_item(item_id)
        if item is None:
            raise ReviewNotFound(item_id)
        if item.resolved_at is not None:
            raise ReviewRefused(
                item_id,
                f"already resolved by {item.resolved_by} at {item.resolved_at}: {item.resolution}",
            )
        ident = item.instruction_id
        states = store.states_by_id([ident])
        if ident not in states:
            raise ReviewRefused(item_id, f"its instruction {ident} is not in this ledger")
        state = S(states[ident][0])
        path = _RESOLUTION_PATHS.get((resolution, state))
        if path is None:
            fits = sorted({r for r, s in _RESOLUTION_PATHS if s == state})
            raise ReviewRefused(
                item_id,
                f"instruction {ident} is {state}: it cannot be resolved as {resolution!r}"
                + (f" (only as {' or '.join(fits)})" if fits else ""),
            )
        items = [
            other
            for other in store.review_items(include_resolved=False)
            if other.instruction_id == ident
        ]
        text = f"{resolution}: {reason}"
        for other in items:
            if not store.resolve_review_item(other.item_id, at, by, text):
                raise ReviewRefused(other.item_id, "was resolved by someone else meanwhile")
        numbers = ", ".join(str(other.item_id) for other in items)
        detail = f"review {numbers} resolved as {resolution}: {reason}"
        store.apply_moves(
            [
                Move(ident, before, after, f"instruction.{after.value.lower()}", detail)
                for before, after in zip((state, *path), path, strict=False)
            ],
            at,
            by,
        )
        store.append_events(
            [
                EventRecord(
                    at,
                    "review.resolved",
                    ident,
                    state,
                    None,
                    by,
                    f"item {other.item_id} ({other.kind}) resolved as {resolution}: {reason}",
                )
                for other in items
            ]
        )
    return [other._replace(resolved_at=at, resolved_by=by, resolution=text) for other in items]
