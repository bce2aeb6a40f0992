"""Preparing and approving cycles: deterministic ids, idempotent re-preparation, revisions,
cycle order, approval, control totals, and at-most-once in the schema itself."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from conftest import (
    events_count,
    instruction_of,
    instructions,
    lines_of,
    live_instruction,
    open_ledger,
    roster_row,
    settle,
)
from sap_payments import (
    DEFAULT_PROGRAMME,
    CycleNotFound,
    CycleStateError,
    InvalidInput,
    Ledger,
    Money,
    Period,
    approve,
    instruction_id,
    prepare,
)

Loader = Callable[..., object]

ROSTER = (
    roster_row("B1"),
    roster_row("B2", category="disabled_heavy", commune_code="20110"),
    roster_row(
        "B3",
        category="disabled_severe",
        channel="bank",
        provider="vietinbank",
        msisdn="",
        bank_bin="970415",
        account_number="1234567890",
        commune_code="20110",
    ),
    roster_row(
        "B4",
        category="orphan_under4",
        first_period="2021-07",
        paid_through="",
        channel="postal",
        provider="vnpost",
        msisdn="",
        pay_point="BD-PHULOC",
        home_delivery="1",
    ),
)


def _snapshot(ledger: Ledger, period: str) -> list[tuple[object, ...]]:
    return [(*record, tuple(lines)) for record, lines in ledger.instructions(period)]


# -- ids ------------------------------------------------------------------------------------------
def test_instruction_ids_are_deterministic(ledger: Ledger, load: Loader) -> None:
    load(ledger, *ROSTER)
    ledger.prepare("2021-09")
    ids = {
        record.beneficiary_id: record.instruction_id for record, _ in ledger.instructions("2021-09")
    }
    september = Period.parse("2021-09")
    assert ids == {
        bid: instruction_id(DEFAULT_PROGRAMME, september, bid, 1, ledger_id=ledger.ledger_id)
        for bid in ("B1", "B2", "B3", "B4")
    }
    for iid in ids.values():
        assert re.fullmatch(r"202109-[0-9A-F]{20}", iid)


def test_instruction_id_depends_on_every_part() -> None:
    september = Period.parse("2021-09")
    ledger_id = "0123456789abcdef"
    base = instruction_id("monthly-allowance", september, "B1", 1, ledger_id=ledger_id)
    assert base == instruction_id("monthly-allowance", september, "B1", 1, ledger_id=ledger_id)
    assert len(base) == 27
    variants = {
        instruction_id("social-pension", september, "B1", 1, ledger_id=ledger_id),
        instruction_id("monthly-allowance", september.next(), "B1", 1, ledger_id=ledger_id),
        instruction_id("monthly-allowance", september, "B2", 1, ledger_id=ledger_id),
        instruction_id("monthly-allowance", september, "B1", 2, ledger_id=ledger_id),
        instruction_id("monthly-allowance", september, "B1", 1, ledger_id="fedcba9876543210"),
    }
    assert base not in variants
    assert len(variants) == 5
    assert instruction_id(
        "monthly-allowance", september.next(), "B1", 1, ledger_id=ledger_id
    ).startswith("202110-")


def test_two_ledgers_prepare_the_same_instructions_under_their_own_ids(
    tmp_path: Path, load: Loader
) -> None:
    """The same roster gives the same instructions in two ledgers; only the ids differ (they
    carry each ledger's id, so one ledger's answers never name the other's instructions)."""
    snapshots = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        with open_ledger(tmp_path / name) as ledger:
            load(ledger, *ROSTER)
            ledger.prepare("2021-09")
            snapshots.append(_snapshot(ledger, "2021-09"))

    def without_ids(snapshot: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        """Each row but its id, and its lines but theirs."""
        found = []
        for row in snapshot:
            lines = cast("tuple[tuple[object, ...], ...]", row[-1])
            found.append((*row[1:-1], *(line[1:] for line in lines)))
        return found

    assert without_ids(snapshots[0]) == without_ids(snapshots[1])
    assert not {row[0] for row in snapshots[0]} & {row[0] for row in snapshots[1]}
    assert len(snapshots[0]) == 4


# -- preparing again ------------------------------------------------------------------------------
def test_preparing_twice_yields_exactly_the_same_instructions(ledger: Ledger, load: Loader) -> None:
    load(ledger, *ROSTER)
    first = ledger.prepare("2021-09")
    before = _snapshot(ledger, "2021-09")
    events = events_count(ledger)
    second = ledger.prepare("2021-09")
    assert _snapshot(ledger, "2021-09") == before
    assert events_count(ledger) == events
    assert (first.created, first.unchanged) == (4, 0)
    assert (second.created, second.revised, second.cancelled, second.unchanged) == (0, 0, 0, 4)
    assert (second.count, second.total) == (first.count, first.total)
    assert second.by_provider == first.by_provider
    assert second.by_commune == first.by_commune
    rows = ledger.store.query(
        "SELECT count(*), count(DISTINCT beneficiary_id) FROM instructions WHERE period = ?",
        (Period.parse("2021-09").ordinal,),
    )
    assert rows == [(4, 4)]


def test_re_preparing_after_a_roster_change_revises_cancels_and_creates(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row("B1"), roster_row("B2"), roster_row("B3"))
    ledger.prepare("2021-09")
    ids = {r.beneficiary_id: r.instruction_id for r, _ in ledger.instructions("2021-09")}
    load(
        ledger,
        roster_row("B1", coefficient="1.25"),  # revised
        roster_row("B2", status="suspended"),  # cancelled
        roster_row("B3"),  # unchanged
        roster_row("B5"),  # created
    )
    result = ledger.prepare("2021-09")
    assert (result.created, result.revised, result.cancelled, result.unchanged) == (1, 1, 1, 1)
    assert result.count == 3
    assert result.total == Money.vnd(450_000 + 360_000 + 360_000)

    states = {
        r.beneficiary_id: (r.instruction_id, r.state, r.amount)
        for r, _ in ledger.instructions("2021-09")
    }
    assert states == {
        "B1": (ids["B1"], "CREATED", 450_000),
        "B2": (ids["B2"], "CANCELLED", 360_000),
        "B3": (ids["B3"], "CREATED", 360_000),
        "B5": (
            instruction_id(
                DEFAULT_PROGRAMME, Period.parse("2021-09"), "B5", 1, ledger_id=ledger.ledger_id
            ),
            "CREATED",
            360_000,
        ),
    }
    kinds = [(e.kind, e.instruction_id) for _, e in ledger.store.events() if e.instruction_id]
    assert ("instruction.revised", ids["B1"]) in kinds
    assert ("instruction.cancelled", ids["B2"]) in kinds
    assert ("instruction.created", states["B5"][0]) in kinds
    assert not any(iid == ids["B3"] and kind != "instruction.created" for kind, iid in kinds)
    cancelled = next(
        e for _, e in ledger.store.events(ids["B2"]) if e.kind == "instruction.cancelled"
    )
    assert cancelled.detail == "no longer due when the cycle was re-prepared"


def test_an_override_equal_to_the_category_coefficient_changes_nothing(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row(category="disabled_heavy"))
    ledger.prepare("2021-09")
    before = _snapshot(ledger, "2021-09")
    events = events_count(ledger)
    load(ledger, roster_row(category="disabled_heavy", coefficient="1.50"))
    result = ledger.prepare("2021-09")
    assert (result.revised, result.unchanged) == (0, 1)
    assert _snapshot(ledger, "2021-09") == before
    assert events_count(ledger) == events + 1  # the import only


def test_back_in_payment_in_the_same_cycle_gets_a_second_instruction(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row("B1"))
    ledger.prepare("2021-09")
    load(ledger, roster_row("B1", status="suspended"))
    ledger.prepare("2021-09")
    load(ledger, roster_row("B1"))
    ledger.prepare("2021-09")
    september = Period.parse("2021-09")
    states = [(r.instruction_id, r.seq, r.state) for r, _ in ledger.instructions("2021-09")]
    assert states == [
        (
            instruction_id(DEFAULT_PROGRAMME, september, "B1", 1, ledger_id=ledger.ledger_id),
            1,
            "CANCELLED",
        ),
        (
            instruction_id(DEFAULT_PROGRAMME, september, "B1", 2, ledger_id=ledger.ledger_id),
            2,
            "CREATED",
        ),
    ]


def test_an_approved_cycle_cannot_be_re_prepared(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    before = _snapshot(ledger, "2021-09")
    load(ledger, roster_row(coefficient="2"))
    with pytest.raises(CycleStateError, match="approved") as caught:
        ledger.prepare("2021-09")
    assert (caught.value.programme, caught.value.period) == (DEFAULT_PROGRAMME, "2021-09")
    assert _snapshot(ledger, "2021-09") == before


def test_a_later_cycle_waits_for_the_earlier_approval(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    with pytest.raises(CycleStateError, match="2021-09"):
        ledger.prepare("2021-10")
    with pytest.raises(CycleNotFound):
        ledger.cycle("2021-10")
    ledger.approve("2021-09", by="checker")
    ledger.prepare("2021-10")
    assert ledger.cycle("2021-10").state == "prepared"


def test_an_earlier_cycle_cannot_be_prepared_after_a_later_one(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-10")
    ledger.approve("2021-10", by="checker")
    with pytest.raises(CycleStateError):
        ledger.prepare("2021-09")


def test_prepare_and_approve_also_work_as_functions(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    result = prepare(ledger.store, "2021-09", rules=ledger.rules)
    assert result.count == 1
    approval = approve(ledger.store, Period.parse("2021-09"), by="checker")
    assert approval.ready == 1


# -- control totals -------------------------------------------------------------------------------
def test_control_totals_equal_the_sums_of_the_instructions(ledger: Ledger, load: Loader) -> None:
    load(ledger, *ROSTER)
    result = ledger.prepare("2021-09")
    pairs = instructions(ledger, "2021-09")
    by_provider: dict[str, list[int]] = {}
    by_commune: dict[str, list[int]] = {}
    for record, _ in pairs:
        for table, key in ((by_provider, record.provider), (by_commune, record.commune_code)):
            entry = table.setdefault(key, [0, 0])
            entry[0] += 1
            entry[1] += record.amount
    assert {k: (v.count, v.amount.minor) for k, v in result.by_provider.items()} == {
        k: tuple(v) for k, v in by_provider.items()
    }
    assert {k: (v.count, v.amount.minor) for k, v in result.by_commune.items()} == {
        k: tuple(v) for k, v in by_commune.items()
    }
    # and the concrete values: B4 is 2.5 × 360,000 for each of 2021-07, 2021-08 and 2021-09
    assert {k: (v.count, v.amount.minor) for k, v in result.by_provider.items()} == {
        "viettelpay": (2, 360_000 + 540_000),
        "vietinbank": (1, 720_000),
        "vnpost": (1, 3 * 900_000),
    }
    assert {k: (v.count, v.amount.minor) for k, v in result.by_commune.items()} == {
        "20107": (2, 360_000 + 3 * 900_000),
        "20110": (2, 540_000 + 720_000),
    }
    assert result.count == 4
    assert result.total == Money.vnd(360_000 + 540_000 + 720_000 + 2_700_000)
    assert all(isinstance(v.amount, Money) for v in result.by_provider.values())


def test_control_totals_after_a_revision_count_only_live_instructions(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, *ROSTER)
    ledger.prepare("2021-09")
    load(ledger, ROSTER[0], {**ROSTER[1], "status": "suspended"}, *ROSTER[2:])
    result = ledger.prepare("2021-09")
    live = [r for r, _ in ledger.instructions("2021-09") if r.state != "CANCELLED"]
    assert result.count == len(live) == 3
    assert result.total.minor == sum(r.amount for r in live)
    assert result.by_commune["20110"].count == 1
    assert sum(t.amount.minor for t in result.by_provider.values()) == result.total.minor


# -- approval -------------------------------------------------------------------------------------
def test_approve_moves_created_to_ready_and_records_the_approver(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, *ROSTER)
    prepared = ledger.prepare("2021-09")
    result = ledger.approve("2021-09", by="  Trưởng phòng BTXH ")
    assert result.approved_by == "Trưởng phòng BTXH"
    assert (result.ready, result.cancelled_held) == (4, 0)
    assert result.total == prepared.total
    assert {r.state for r, _ in ledger.instructions("2021-09")} == {"READY"}
    cycle = ledger.cycle("2021-09")
    assert cycle.state == "approved"
    assert cycle.approved_by == "Trưởng phòng BTXH"
    assert cycle.approved_at is not None
    assert (cycle.instructions, cycle.total) == (4, prepared.total.minor)


def test_approve_cancels_held_instructions_and_leaves_them_out_of_the_total(
    ledger: Ledger, load: Loader
) -> None:
    load(
        ledger,
        roster_row("B1"),
        roster_row(
            "B2", proxy_name="Lê Văn Cường", proxy_relation="con", mandate_valid_until="2021-01-31"
        ),
    )
    prepared = ledger.prepare("2021-09")
    assert (prepared.count, prepared.held) == (2, 1)
    result = ledger.approve("2021-09", by="checker")
    assert (result.ready, result.cancelled_held) == (1, 1)
    assert result.total == Money.vnd(360_000)
    assert ledger.cycle("2021-09").total == 360_000
    assert instruction_of(ledger, "2021-09", "B2").state == "CANCELLED"


@pytest.mark.parametrize("by", ["", "   ", "\t"])
def test_approve_needs_an_approver(ledger: Ledger, load: Loader, by: str) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    with pytest.raises(InvalidInput):
        ledger.approve("2021-09", by=by)
    assert ledger.cycle("2021-09").state == "prepared"
    assert live_instruction(ledger, "2021-09", "B1").state == "CREATED"


def test_approving_twice_raises(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    with pytest.raises(CycleStateError, match="already approved"):
        ledger.approve("2021-09", by="someone else")
    assert ledger.cycle("2021-09").approved_by == "checker"


def test_approving_an_unknown_cycle_raises(ledger: Ledger) -> None:
    with pytest.raises(CycleNotFound) as caught:
        ledger.approve("2021-09", by="checker")
    assert (caught.value.programme, caught.value.period) == (DEFAULT_PROGRAMME, "2021-09")
    assert isinstance(caught.value, LookupError)


def test_an_empty_cycle_can_be_prepared_and_approved(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row(paid_through="2021-12"))
    result = ledger.prepare("2021-09")
    assert (result.count, result.total) == (0, Money.vnd(0))
    assert result.by_provider == {}
    assert ledger.approve("2021-09", by="checker").ready == 0


# -- at most once, in the schema ------------------------------------------------------------------
MONTH_KEY = ["programme", "beneficiary_id", "month"]


def _month_keys(db: sqlite3.Connection) -> list[tuple[str, str, bool]]:
    """(table, index, partial) of every unique index keyed by programme, beneficiary and month."""
    found = []
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for _, index, unique, _origin, partial in db.execute(f"PRAGMA index_list({table})"):
            columns = [row[2] for row in db.execute(f"PRAGMA index_info({index})")]
            if unique and columns == MONTH_KEY:
                found.append((table, index, bool(partial)))
    return found


def test_the_schema_refuses_a_second_live_claim_on_a_month(tmp_path: Path, load: Loader) -> None:
    """Straight at the SQLite file: the month key is unique among live rows, so a second
    instruction carrying the same month cannot be recorded, whatever the engine does."""
    with open_ledger(tmp_path) as ledger:
        load(ledger, roster_row())
        ledger.prepare("2021-09")
        path = ledger.store.path
    db = sqlite3.connect(path)
    try:
        keys = _month_keys(db)
        assert keys, "no unique index on (programme, beneficiary_id, month)"
        table, _index, partial = keys[0]
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        assert "instruction_id" in columns
        row = dict(zip(columns, db.execute(f"SELECT * FROM {table}").fetchone(), strict=True))
        assert (row["beneficiary_id"], row["month"]) == ("B1", Period.parse("2021-09").ordinal)
        row["instruction_id"] = "202109-SECOND-ATTEMPT"
        if "live" in columns:
            assert row["live"] == 1
        insert = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        )
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute(insert, [row[c] for c in columns])
        if partial and "live" in columns:
            row["live"] = 0  # a released line (failed, returned, …) may sit beside the live one
            db.execute(insert, [row[c] for c in columns])
        db.rollback()
    finally:
        db.close()


def test_the_store_refuses_a_second_instruction_for_a_paid_month(
    ledger: Ledger, load: Loader
) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    record = live_instruction(ledger, "2021-09", "B1")
    duplicate = record._replace(instruction_id="202109-DUPLICATE", seq=2)
    with pytest.raises(sqlite3.IntegrityError), ledger.store.transaction():
        ledger.store.insert_instructions([duplicate], "2021-09-01T00:00:00+00:00")
    assert len(instructions(ledger, "2021-09")) == 1


def test_a_released_month_can_be_carried_again(ledger: Ledger, load: Loader) -> None:
    load(ledger, roster_row())
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    returned = live_instruction(ledger, "2021-09", "B1").instruction_id
    settle(ledger, returned, "RETURNED")
    ledger.prepare("2021-10")
    assert lines_of(ledger, "2021-10") == {
        "B1": [("2021-09", "arrears", 360_000), ("2021-10", "regular", 360_000)]
    }
    september = instruction_of(ledger, "2021-09", "B1")
    assert (september.instruction_id, september.state) == (returned, "RETURNED")
    ledger.approve("2021-10", by="checker")
    ledger.prepare("2021-11")  # carried once: not again in the cycle after
    assert lines_of(ledger, "2021-11") == {"B1": [("2021-11", "regular", 360_000)]}
