"""Closing a cycle's payment window at the post office, and the re-verification flag.

When the window closes, every cash instruction of the provider still ACCEPTED (listed, not
collected, not reported) becomes UNCLAIMED, through the transition table
(:func:`sap_payments.dispatch.apply_results`; one event each). UNCLAIMED releases the months:
the settlement counts the amount as owed back by the provider, and the next cycle pays the
months again as arrears.

A beneficiary whose cash went uncollected in ``reverify_after_unclaimed`` consecutive cycles
(default 3) is flagged ``reverify``: someone should check that the person is alive, still lives
there and can reach the pay point. A month counts however it became UNCLAIMED — moved by the
window close, or reported ``unclaimed`` in a confirmation file — and is judged when it does
(:func:`flag_unclaimed`, called by both). The flag is stored (one open flag per beneficiary
and kind), recorded as a ``beneficiary.flagged`` event and listed by ``sap-payments report
flags``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, TextIO

import attrs

from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.cycles import CLOSED, PREPARED, require_cycle
from sap_payments.dispatch import apply_results
from sap_payments.errors import CycleStateError
from sap_payments.instructions import InstructionState
from sap_payments.leases import cycle_lease
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.postal.plugin import PostalCashProvider
from sap_payments.providers import Result, ResultKind
from sap_payments.reports import write_records
from sap_payments.store import EventRecord, FlagRecord, Store

__all__ = [
    "FLAG_COLUMNS",
    "REVERIFY",
    "WindowClose",
    "WindowStillOpen",
    "close_window",
    "flag_unclaimed",
    "unclaimed_streaks",
    "write_flags",
]

S = InstructionState

#: The flag kind raised after consecutive unclaimed months.
REVERIFY: Final = "reverify"
#: The columns of ``report flags``.
FLAG_COLUMNS: Final = ("beneficiary_id", "kind", "raised_at", "detail")


class WindowStillOpen(CycleStateError):
    """The payment window has not ended yet (close it early only on purpose)."""

    def __init__(self, programme: str, period: str, provider: str, closes: dt.date) -> None:
        super().__init__(
            programme,
            period,
            f"the payment window of {provider} is open through {closes.isoformat()}; "
            "close it early only on purpose (--early)",
        )
        self.provider = provider
        self.closes = closes


@attrs.frozen
class WindowClose:
    """What closing the window did: how many instructions (and how much) became UNCLAIMED,
    and which beneficiaries were newly flagged for re-verification."""

    provider: str
    period: Period
    unclaimed: int
    amount: Money
    flagged: tuple[str, ...]


def unclaimed_streaks(
    store: Store, programme: str, period: Period, beneficiary_ids: Iterable[str], enough: int
) -> dict[str, int]:
    """How many of each beneficiary's latest cycles up to ``period``, in a row, ended with cash
    uncollected — cycles where every instruction not cancelled ended UNCLAIMED; cycles where the
    beneficiary had no such instruction are passed over. Counting stops at ``enough``.

    One pass over each earlier cycle's (beneficiary, state) pairs, newest first, while some
    beneficiary's streak is still running: no personal column is read.
    """
    streak = dict.fromkeys(beneficiary_ids, 0)
    running = set(streak)
    periods = sorted((c.period for c in store.cycles(programme)), reverse=True)
    for ordinal in periods:
        if not running:
            break
        if ordinal > period.ordinal:
            continue
        seen: dict[str, set[str]] = {}
        for beneficiary_id, state in store.instruction_states(programme, ordinal):
            if beneficiary_id in running and state != S.CANCELLED:
                seen.setdefault(beneficiary_id, set()).add(state)
        for beneficiary_id, states in seen.items():
            if states == {S.UNCLAIMED.value}:
                streak[beneficiary_id] += 1
                if streak[beneficiary_id] >= enough:
                    running.discard(beneficiary_id)
            else:
                running.discard(beneficiary_id)
    return streak


def flag_unclaimed(
    store: Store,
    programme: str,
    period: Period,
    beneficiary_ids: Iterable[str],
    threshold: int,
    at: str,
) -> list[FlagRecord]:
    """Flag ``reverify`` those of ``beneficiary_ids`` whose cash went uncollected ``threshold``
    cycles in a row up to ``period`` (:func:`unclaimed_streaks`), with a ``beneficiary.flagged``
    event each; the flags newly raised (one already open is not raised again).

    Called for the beneficiaries whose instruction of the cycle has just become UNCLAIMED,
    whichever way: by the window close, or by an ``unclaimed`` row of a confirmation file.
    """
    streaks = unclaimed_streaks(store, programme, period, beneficiary_ids, threshold)
    raised = store.add_flags(
        [
            FlagRecord(
                programme,
                beneficiary_id,
                REVERIFY,
                at,
                f"cash uncollected {streak} cycles in a row, the last {period}",
            )
            for beneficiary_id, streak in sorted(streaks.items())
            if streak >= threshold
        ]
    )
    store.append_events(
        EventRecord(
            at,
            "beneficiary.flagged",
            None,
            None,
            None,
            None,
            f"{flag.beneficiary_id}: {flag.kind}: {flag.detail}",
        )
        for flag in raised
    )
    return raised


def close_window(
    store: Store,
    provider: PostalCashProvider,
    period: Period | str,
    *,
    programme: str = DEFAULT_PROGRAMME,
    today: dt.date | None = None,
    early: bool = False,
    reverify_after: int | None = None,
    wait: float = 0.0,
) -> WindowClose:
    """Close the provider's payment window of the cycle: ACCEPTED → UNCLAIMED; flag those
    uncollected ``reverify_after`` cycles in a row (default: the provider's setting). Holds
    the cycle's lease (``wait``: seconds to wait for it; see :mod:`sap_payments.leases`).

    Raises:
        CycleNotFound, CycleStateError: the cycle is not approved, or is closed.
        CycleBusy: another run holds the cycle's lease.
        WindowStillOpen: a payout list's window ends after ``today``, and not ``early``.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    threshold = provider.reverify_after if reverify_after is None else reverify_after
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with cycle_lease(store, programme, period, "close-window", wait=wait), store.transaction():
        require_cycle(
            store,
            programme,
            period,
            states={PREPARED: "is not approved yet", CLOSED: "is closed"},
        )
        open_records = [
            record
            for record in store.instructions_in_states(programme, period.ordinal, [S.ACCEPTED])
            if record.provider == provider.name
        ]
        closes = provider.window_closes([r.instruction_id for r in open_records])
        last = max(closes.values(), default=None)
        if last is not None and not early and (today or provider.today()) <= last:
            raise WindowStillOpen(programme, str(period), provider.name, last)
        apply_results(
            store,
            [Result(r.instruction_id, ResultKind.UNCLAIMED) for r in open_records],
            provider=provider.name,
            actor="window-close",
        )
        currency = open_records[0].currency if open_records else "VND"
        amount = Money(sum(r.amount for r in open_records), currency)
        raised = flag_unclaimed(
            store, programme, period, {r.beneficiary_id for r in open_records}, threshold, at
        )
        store.append_events(
            [
                EventRecord(
                    at,
                    "window.closed",
                    None,
                    None,
                    None,
                    None,
                    f"{provider.name} {programme} {period}: {len(open_records)} unclaimed, "
                    f"{amount}; {len(raised)} flagged for re-verification",
                ),
            ]
        )
    return WindowClose(
        provider.name,
        period,
        len(open_records),
        amount,
        tuple(flag.beneficiary_id for flag in raised),
    )


def _flag_rows(flags: Iterable[FlagRecord]) -> Iterator[Sequence[Any]]:
    for flag in flags:
        yield (flag.beneficiary_id, flag.kind, flag.raised_at, flag.detail)


def write_flags(out: TextIO, fmt: str, programme: str, flags: Sequence[FlagRecord]) -> int:
    """``report flags``: the open flags, one per row (table, CSV or JSON)."""
    return write_records(
        out,
        fmt,
        FLAG_COLUMNS,
        _flag_rows(flags),
        header={"programme": programme, "count": len(flags)},
        key="flags",
    )
