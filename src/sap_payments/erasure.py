"""Erasure: a beneficiary's personal data removed once the retention period has passed.

Erasing replaces every sealed personal value of the beneficiary — the current details, every
earlier version's, the address and payee name of each instruction, a campaign's pending new
account — by an erasure marker that reads ``[erased]``. Ids, amounts, states, periods and the
event trail stay, so totals, settlements and the audit trail still add up and verify; an
``beneficiary.erased`` event records who erased whom and when. Deleted bytes are overwritten
on disk (SQLite ``secure_delete``, then a WAL checkpoint). Backups keep what they hold: see
``docs/security.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sap_payments.crypto import ErasureRefused
from sap_payments.instructions import FINAL_STATES, REPAYABLE_STATES
from sap_payments.periods import Period
from sap_payments.sqlite_store import SQLiteStore

__all__ = ["erase_personal_data", "retention_limit"]

#: States in which an instruction is settled: its payee's data may go.
_SETTLED = frozenset(FINAL_STATES | REPAYABLE_STATES | {"PAID"})


def retention_limit(retention_months: int, today: dt.date | None = None) -> Period:
    """The first month whose beneficiaries must still be kept: a beneficiary whose last benefit
    month is earlier may be erased."""
    return Period.containing(today or dt.datetime.now(dt.UTC).date()) - retention_months


def erase_personal_data(
    store: SQLiteStore,
    *,
    programme: str,
    retention_months: int,
    beneficiary_ids: Sequence[str] = (),
    closed_before: Period | None = None,
    today: dt.date | None = None,
    actor: str | None = None,
) -> list[str]:
    """Erase the personal data of the beneficiaries named, or of every beneficiary of the
    programme whose entitlement ended before ``closed_before``. Returns the ids erased.

    Raises:
        ErasureRefused: a beneficiary's last month is within the retention period (or not set:
            still entitled), ``closed_before`` is later than the retention allows, or one has an
            instruction not settled yet. Nothing is erased then.
    """
    limit = retention_limit(retention_months, today)
    if closed_before is not None:
        if closed_before > limit:
            raise ErasureRefused(
                None,
                f"the retention period ({retention_months} months) allows erasing only "
                f"beneficiaries closed before {limit}",
            )
        chosen = [*beneficiary_ids, *store.erasable(programme, closed_before.ordinal)]
    else:
        chosen = list(beneficiary_ids)
    chosen = list(dict.fromkeys(chosen))
    for ident in chosen:
        record = store.beneficiary(ident)
        if record is None:
            raise ErasureRefused(ident, "no such beneficiary")
        if record.last_period is None or record.last_period >= limit.ordinal:
            raise ErasureRefused(
                ident,
                f"within the retention period ({retention_months} months): erasable once the "
                f"last benefit month is before {limit}",
            )
        open_ = [
            i.instruction_id
            for i in store.beneficiary_instructions(programme, ident)
            if i.state not in _SETTLED
        ]
        if open_:
            raise ErasureRefused(ident, f"instruction {open_[0]} is not settled")
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    store.erase_beneficiaries(chosen, at, actor)
    return chosen
