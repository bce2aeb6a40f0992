"""Shared fixtures and helpers: rosters written as CSV files (format v1), throw-away ledgers, and a
stand-in for dispatch that walks instructions through the transition table.

The plain functions are importable (``from conftest import roster_row``) for tests that cannot
take fixtures, such as Hypothesis tests, which build their own temporary directories.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from sap_payments import (
    ROSTER_COLUMNS,
    ImportResult,
    Ledger,
    Period,
    transition,
)
from sap_payments.store import InstructionRecord, LineRecord

#: A valid roster row (format v1); tests override the columns they are about.
BASE_ROW: Mapping[str, str] = {
    "beneficiary_id": "B1",
    "full_name": "Nguyễn Văn An",
    "national_id": "046012345678",
    "birth_date": "1940-01-01",
    "sex": "M",
    "province_code": "46",
    "district_code": "482",
    "commune_code": "20107",
    "category": "elderly_80plus",
    "coefficient": "",
    "first_period": "2021-01",
    "last_period": "",
    "paid_through": "2021-08",
    "status": "active",
    "channel": "ewallet",
    "provider": "viettelpay",
    "msisdn": "0912345678",
    "bank_bin": "",
    "account_number": "",
    "pay_point": "",
    "proxy_name": "",
    "proxy_national_id": "",
    "proxy_relation": "",
    "mandate_valid_until": "",
    "home_delivery": "",
}

#: The paths an approved instruction takes to each outcome (as dispatch and results move it).
PATHS: Mapping[str, tuple[str, ...]] = {
    "SUBMITTED": ("SUBMITTED",),
    "ACCEPTED": ("SUBMITTED", "ACCEPTED"),
    "PAID": ("SUBMITTED", "ACCEPTED", "PAID"),
    "FAILED": ("SUBMITTED", "FAILED"),
    "RETURNED": ("SUBMITTED", "ACCEPTED", "PAID", "RETURNED"),
    "UNCLAIMED": ("SUBMITTED", "ACCEPTED", "UNCLAIMED"),
}


def national_id_for(beneficiary_id: str) -> str:
    """A 12-digit national id derived from the beneficiary id (distinct ids, distinct numbers)."""
    if beneficiary_id == BASE_ROW["beneficiary_id"]:
        return BASE_ROW["national_id"]
    digest = int(hashlib.sha256(beneficiary_id.encode()).hexdigest(), 16)
    return f"0791{digest % 10**8:08d}"


def roster_row(beneficiary_id: str = "B1", **overrides: str) -> dict[str, str]:
    """BASE_ROW for ``beneficiary_id`` (with its own national id), with columns overridden."""
    row = {**BASE_ROW, "beneficiary_id": beneficiary_id}
    row["national_id"] = national_id_for(beneficiary_id)
    unknown = set(overrides) - set(BASE_ROW)
    assert not unknown, f"not roster columns: {unknown}"
    row.update(overrides)
    return row


def write_roster(path: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    """Write rows (full or partial; missing columns come from BASE_ROW) as a v1 CSV roster."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ROSTER_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({**BASE_ROW, **row})
    return path


class RosterLoader:
    """Writes each roster to a new file in ``directory`` and imports it into a ledger."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count(1)

    def __call__(self, ledger: Ledger, *rows: Mapping[str, str]) -> ImportResult:
        path = write_roster(self.directory / f"roster-{next(self._numbers)}.csv", rows)
        return ledger.import_roster(path)


def open_ledger(directory: Path) -> Ledger:
    return Ledger.open(directory / "l.db", durable=False)


def instructions(ledger: Ledger, period: str) -> list[tuple[InstructionRecord, list[LineRecord]]]:
    return list(ledger.instructions(period))


def live_instruction(ledger: Ledger, period: str, beneficiary_id: str) -> InstructionRecord:
    """The beneficiary's one instruction of the cycle that is not CANCELLED."""
    found = [
        record
        for record, _ in ledger.instructions(period)
        if record.beneficiary_id == beneficiary_id and record.state != "CANCELLED"
    ]
    assert len(found) == 1, found
    return found[0]


def instruction_of(ledger: Ledger, period: str, beneficiary_id: str) -> InstructionRecord:
    """The beneficiary's latest instruction of the cycle (highest seq), whatever its state."""
    found = [
        record
        for record, _ in ledger.instructions(period)
        if record.beneficiary_id == beneficiary_id
    ]
    assert found, f"no instruction for {beneficiary_id} in {period}"
    return found[-1]


def lines_of(ledger: Ledger, period: str) -> dict[str, list[tuple[str, str, int]]]:
    """beneficiary_id → [(month YYYY-MM, kind, amount)] of its not-cancelled instruction."""
    result: dict[str, list[tuple[str, str, int]]] = {}
    for record, lines in ledger.instructions(period):
        if record.state == "CANCELLED":
            continue
        assert record.beneficiary_id not in result, "two live instructions for one beneficiary"
        result[record.beneficiary_id] = [
            (Period.text(line.month), line.kind, line.amount) for line in lines
        ]
    return result


def state_of(ledger: Ledger, instruction_id: str) -> str:
    rows = ledger.store.query(
        "SELECT state FROM instructions WHERE instruction_id = ?", (instruction_id,)
    )
    assert len(rows) == 1
    return str(rows[0][0])


def drive(ledger: Ledger, instruction_id: str, *states: str) -> None:
    """Move an instruction through ``states`` the way dispatch will: each move checked against
    the transition table, recorded as an event, and lines released on a re-payable state."""
    for name in states:
        transition(ledger.store, instruction_id, name, actor="test-dispatch")


def settle(ledger: Ledger, instruction_id: str, outcome: str) -> None:
    """Drive an approved (READY) instruction to ``outcome`` along its usual path."""
    drive(ledger, instruction_id, *PATHS[outcome])


def events_count(ledger: Ledger) -> int:
    return sum(1 for _ in ledger.store.events())


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def load(tmp_path: Path) -> Callable[..., ImportResult]:
    """``load(ledger, row, row, …)``: write the rows as a roster file and import it."""
    directory = tmp_path / "rosters"
    directory.mkdir()
    return RosterLoader(directory)
