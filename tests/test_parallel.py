"""The parallel paths give exactly what one process gives: worker processes for `prepare` (by
beneficiary-id ranges) and the transition gate they rely on.

The parallel import has its own equivalence test in test_roster.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import sap_payments.cycles as cycles_module
from sap_payments import (
    InstructionNotFound,
    InvalidTransition,
    Ledger,
    transition,
)
from sap_payments.synthetic import ROSTER_COLUMNS, RosterSpec, roster_rows, write_roster_csv


def snapshot(ledger: Ledger, period: str) -> list[tuple[object, ...]]:
    return [
        (*record, tuple((line.month, line.kind, line.amount) for line in lines))
        for record, lines in ledger.instructions(period)
    ]


def claims(ledger: Ledger) -> list[tuple[object, ...]]:
    return ledger.store.query(
        "SELECT programme, beneficiary_id, month, instruction_id FROM claims ORDER BY 1, 2, 3"
    )


def event_kinds(ledger: Ledger) -> list[tuple[object, ...]]:
    return ledger.store.query(
        "SELECT kind, instruction_id, from_state, to_state, detail FROM events "
        "WHERE instruction_id IS NOT NULL ORDER BY instruction_id, seq"
    )


def edited(source: Path, target: Path) -> Path:
    """The roster with some rows changed: suspended, re-coefficiented, moved to cash, expired."""
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows):
        if number % 97 == 0:
            row["status"] = "suspended"
        elif number % 89 == 0:
            row["coefficient"] = "2.5"
        elif number % 83 == 0 and not row["proxy_name"]:
            row["proxy_name"], row["proxy_relation"] = "Trần Thị Bé", "con"
            row["mandate_valid_until"] = "2021-01-31"
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ROSTER_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_parallel_prepare_matches_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cycles_module, "PARALLEL_MIN_BENEFICIARIES", 0)
    roster = tmp_path / "roster.csv"
    write_roster_csv(roster, roster_rows(RosterSpec(n=3000, seed=11)))
    second = edited(roster, tmp_path / "roster-2.csv")
    results = {}
    for workers in (1, 3):
        with Ledger.open(tmp_path / f"ledger-{workers}.db", durable=False) as ledger:
            # the same ledger id in both, so that the ids (which carry it) compare too
            ledger.store.set_ledger_id("0123456789abcdef")
            ledger.import_roster(roster)
            first = ledger.prepare("2021-09", workers=workers)
            ledger.import_roster(second)
            again = ledger.prepare("2021-09", workers=workers)  # revises, cancels, holds
            results[workers] = (
                first,
                again,
                snapshot(ledger, "2021-09"),
                claims(ledger),
                event_kinds(ledger),
            )
    one, many = results[1], results[3]
    assert one[1].revised > 0  # the edits bite
    assert one[1].cancelled > 0
    assert one[1].held > 0
    assert many[0] == one[0]
    assert many[1] == one[1]
    assert many[2] == one[2]
    assert many[3] == one[3]
    assert many[4] == one[4]


def test_transition_checks_records_and_releases(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    write_roster_csv(roster, roster_rows(RosterSpec(n=20, seed=3)))
    with Ledger.open(tmp_path / "l.db", durable=False) as ledger:
        ledger.import_roster(roster)
        ledger.prepare("2021-09")
        ledger.approve("2021-09", by="checker")
        record, _ = next(r for r in ledger.instructions("2021-09") if r[0].state == "READY")
        ident = record.instruction_id
        before = len(claims(ledger))
        with pytest.raises(InvalidTransition):
            transition(ledger.store, ident, "PAID")  # READY cannot jump to PAID
        assert ledger.store.instruction(ident).state == "READY"  # type: ignore[union-attr]
        transition(ledger.store, ident, "SUBMITTED", actor="dispatch")
        transition(ledger.store, ident, "FAILED", reason="AC04 closed account")
        assert ledger.store.instruction(ident).state == "FAILED"  # type: ignore[union-attr]
        carried = len(json.loads(record.lines))
        assert carried >= 1
        assert len(claims(ledger)) == before - carried  # its months are released …
        assert not [c for c in claims(ledger) if c[3] == ident]  # … and only its months
        moves = [
            (event.from_state, event.to_state, event.actor, event.detail)
            for _, event in ledger.store.events(ident)
        ][-2:]
        assert moves == [
            ("READY", "SUBMITTED", "dispatch", None),
            ("SUBMITTED", "FAILED", None, "AC04 closed account"),
        ]
        with pytest.raises(InstructionNotFound):
            transition(ledger.store, "202109-NOPE", "SUBMITTED")
