"""The anomaly report of a cycle: patterns worth a second look before the next payment.

* ``proxy_for_many`` — one proxy (the same identity document on the mandates, or the same name
  when none is on file) paid for more than ``max_per_proxy`` beneficiaries (default 3);
* ``collected_after_ceased`` — cash collected on a date after the beneficiary's last benefit
  month, or for a beneficiary whose status is ceased;
* ``shared_phone`` / ``shared_account`` — the same mobile number, or the same bank account, on
  the mandates of several beneficiaries.

The report names beneficiary ids and instruction ids, never names; a shared phone, account or
proxy identity is shown masked to its last 3 characters. Beneficiary data is read through the
store's :class:`~sap_payments.store.BeneficiaryRecord` methods only.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any, Final, TextIO

import attrs

from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.cycles import require_cycle
from sap_payments.instructions import InstructionState
from sap_payments.periods import Period
from sap_payments.postal.confirmations import parse_collection_reference
from sap_payments.reports import write_records
from sap_payments.store import BeneficiaryRecord, InstructionRecord, Store

__all__ = [
    "ANOMALY_COLUMNS",
    "KINDS",
    "Anomaly",
    "AnomalyReport",
    "anomaly_report",
    "mask_tail",
    "write_anomaly_report",
]

#: The kinds of anomaly, in report order.
KINDS: Final = ("proxy_for_many", "collected_after_ceased", "shared_phone", "shared_account")
#: The columns of the report (ids joined by ";" in CSV and table form).
ANOMALY_COLUMNS: Final = ("kind", "subject", "beneficiary_ids", "instruction_ids", "detail")


def mask_tail(value: str, keep: int = 3) -> str:
    """Every character but the last ``keep`` as ``*``.

    >>> mask_tail("+84912345678")
    '*********678'
    """
    if len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


@attrs.frozen
class Anomaly:
    kind: str
    subject: str  # an instruction id, or a masked phone, account or proxy identity
    beneficiary_ids: tuple[str, ...]
    instruction_ids: tuple[str, ...]
    detail: str


@attrs.frozen
class AnomalyReport:
    programme: str
    period: Period
    max_per_proxy: int
    anomalies: tuple[Anomaly, ...]


def _pairs(
    store: Store, programme: str, period: Period
) -> Iterator[tuple[InstructionRecord, BeneficiaryRecord | None]]:
    """The cycle's instructions (not cancelled) with their beneficiary, merged by id."""
    people = store.beneficiaries(programme)
    person = next(people, None)
    for record, _ in store.cycle_instructions(programme, period.ordinal):
        while person is not None and person.beneficiary_id < record.beneficiary_id:
            person = next(people, None)
        if record.state == InstructionState.CANCELLED:
            continue
        found = person if person and person.beneficiary_id == record.beneficiary_id else None
        yield record, found


def _group(
    kind: str, groups: dict[str, list[InstructionRecord]], least: int, detail: str
) -> Iterator[Anomaly]:
    for subject, records in sorted(groups.items()):
        beneficiaries = tuple(sorted({r.beneficiary_id for r in records}))
        if len(beneficiaries) >= least:
            yield Anomaly(
                kind,
                subject,
                beneficiaries,
                tuple(sorted(r.instruction_id for r in records)),
                detail.format(n=len(beneficiaries)),
            )


def anomaly_report(
    store: Store,
    period: Period | str,
    *,
    programme: str = DEFAULT_PROGRAMME,
    max_per_proxy: int = 3,
) -> AnomalyReport:
    """The anomalies of the cycle of ``period`` (see the module's docstring).

    Raises:
        CycleNotFound: the cycle has not been prepared.
    """
    if isinstance(period, str):
        period = Period.parse(period)
    require_cycle(store, programme, period)
    references = store.outcomes(programme, period.ordinal)
    proxies: dict[str, list[InstructionRecord]] = {}
    phones: dict[str, list[InstructionRecord]] = {}
    accounts: dict[str, list[InstructionRecord]] = {}
    late: list[Anomaly] = []
    for record, person in _pairs(store, programme, period):
        if person is None:
            continue
        if record.payee_kind == "proxy" and person.proxy_name:
            if person.proxy_national_id:
                group, subject = (
                    person.proxy_national_id,
                    f"id {mask_tail(person.proxy_national_id)}",
                )
            else:  # no identity on file: the same name (a weaker match), shown masked
                group = " ".join(unicodedata.normalize("NFC", person.proxy_name).casefold().split())
                subject = f"name {mask_tail(group)}"
            proxies.setdefault(f"{subject}\x1f{group}", []).append(record)
        if person.msisdn:
            phones.setdefault(person.msisdn, []).append(record)
        if person.bank_bin and person.account_number:
            accounts.setdefault(f"{person.bank_bin}:{person.account_number}", []).append(record)
        if record.state == InstructionState.PAID:
            collected = parse_collection_reference(
                references.get(record.instruction_id, (None, None))[1]
            )
            if collected is not None:
                found = _after_ceased(person, collected[0])
                if found:
                    late.append(
                        Anomaly(
                            "collected_after_ceased",
                            record.instruction_id,
                            (record.beneficiary_id,),
                            (record.instruction_id,),
                            found,
                        )
                    )
    anomalies = [
        *(
            attrs.evolve(a, subject=a.subject.split("\x1f")[0])
            for a in _group(
                "proxy_for_many",
                proxies,
                max_per_proxy + 1,
                f"one proxy paid for {{n}} beneficiaries (more than {max_per_proxy})",
            )
        ),
        *late,
        *(
            attrs.evolve(a, subject=mask_tail(a.subject))
            for a in _group("shared_phone", phones, 2, "one mobile number on {n} beneficiaries")
        ),
        *(
            attrs.evolve(
                a, subject=f"{a.subject.split(':')[0]}:{mask_tail(a.subject.split(':')[1])}"
            )
            for a in _group("shared_account", accounts, 2, "one bank account on {n} beneficiaries")
        ),
    ]
    return AnomalyReport(programme, period, max_per_proxy, tuple(anomalies))


def _after_ceased(person: BeneficiaryRecord, on: dt.date) -> str | None:
    """Why a collection on ``on`` is suspicious for this beneficiary, or None."""
    if person.last_period is not None:
        last = Period(person.last_period)
        if on > last.next().first_day - dt.timedelta(days=1):
            return f"collected {on.isoformat()}, after the last benefit month {last}"
    if person.status == "ceased":
        return f"collected {on.isoformat()} for a beneficiary whose status is ceased"
    return None


def _rows(report: AnomalyReport) -> Iterator[Sequence[Any]]:
    for a in report.anomalies:
        yield (
            a.kind,
            a.subject,
            ";".join(a.beneficiary_ids),
            ";".join(a.instruction_ids),
            a.detail,
        )


def write_anomaly_report(out: TextIO, fmt: str, report: AnomalyReport) -> int:
    """``report anomalies`` as a table, CSV or JSON (ids as lists in JSON)."""
    header = {
        "programme": report.programme,
        "period": str(report.period),
        "max_per_proxy": report.max_per_proxy,
        "count": len(report.anomalies),
    }
    items = (
        {
            "kind": a.kind,
            "subject": a.subject,
            "beneficiary_ids": list(a.beneficiary_ids),
            "instruction_ids": list(a.instruction_ids),
            "detail": a.detail,
        }
        for a in report.anomalies
    )
    return write_records(
        out, fmt, ANOMALY_COLUMNS, _rows(report), header=header, key="anomalies", items=items
    )
