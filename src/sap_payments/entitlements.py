"""Entitlements: which months are due to a beneficiary in a cycle, and how much each is.

The rules, each pinned by a test:

* The monthly amount is the standard level in force on the first day of the month × the
  coefficient (the roster's override, else the category's), rounded half-up to a whole đồng.
* Months run from ``first_period`` through ``last_period`` (open-ended when empty).
* Months up to and including ``paid_through`` were settled before this system and are never paid.
* A month already carried by a live instruction (any state but FAILED, RETURNED, UNCLAIMED or
  CANCELLED) is not due again: at most one payment per entitlement.
* The cycle's own month is a *regular* line; every earlier month still due is an *arrears* line
  (back-dated decisions, months withheld while suspended, lines of failed or returned payments).
* A suspended beneficiary gets no instruction; the months stay due until the status is active again.
"""

from __future__ import annotations

from collections.abc import Container

import attrs

from sap_payments.beneficiaries import Status
from sap_payments.instructions import LineKind
from sap_payments.money import Money
from sap_payments.periods import Period

__all__ = ["Entitlement", "due_months"]


@attrs.frozen
class Entitlement:
    """Money due to one beneficiary for one month of one programme."""

    programme: str
    beneficiary_id: str
    month: Period
    kind: LineKind
    amount: Money


def due_months(
    period: int,
    first: int,
    last: int | None,
    paid_through: int | None,
    status: str,
    taken: Container[int],
) -> list[int]:
    """Month ordinals due in the cycle of ``period`` (ordinals as :attr:`Period.ordinal`).

    ``taken`` holds the months already carried by live instructions of other cycles.

    >>> p = Period.parse
    >>> [Period.text(m) for m in due_months(
    ...     p("2021-09").ordinal, p("2021-07").ordinal, None, None, "active", ())]
    ['2021-07', '2021-08', '2021-09']
    """
    if status == Status.SUSPENDED:
        return []
    start = first if paid_through is None or paid_through < first else paid_through + 1
    end = period if last is None or last > period else last
    return [month for month in range(start, end + 1) if month not in taken]
