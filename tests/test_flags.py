"""Clearing a flag raised on a beneficiary (``beneficiary unflag``): who and why are recorded,
the flag leaves ``report flags``, and the same flag raised later opens anew."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sap_payments import InvalidInput, Ledger
from sap_payments.cli import main
from sap_payments.store import FlagRecord

PROGRAMME = "monthly-allowance"


def _raise(ledger: Ledger, beneficiary_id: str, kind: str = "reverify") -> None:
    with ledger.store.transaction():
        ledger.store.add_flags(
            [FlagRecord(PROGRAMME, beneficiary_id, kind, "2021-11-30T00:00:00+00:00", "3 cycles")]
        )


def _events(ledger: Ledger, kind: str) -> list[tuple[str | None, str | None]]:
    return [
        (event.actor, event.detail)
        for _seq, event, _hash in ledger.store.chained_events()
        if event.kind == kind
    ]


def test_clearing_records_who_and_why(ledger: Ledger) -> None:
    _raise(ledger, "B1")
    _raise(ledger, "B1", "other")
    _raise(ledger, "B2")
    cleared = ledger.clear_flags(
        "B1", by="Cán bộ xã", reason="re-verified at home", kind="reverify"
    )
    assert [(f.beneficiary_id, f.kind) for f in cleared] == [("B1", "reverify")]
    assert all(f.cleared_at for f in cleared)
    assert [(f.beneficiary_id, f.kind) for f in ledger.flags()] == [
        ("B1", "other"),
        ("B2", "reverify"),
    ]
    assert _events(ledger, "beneficiary.flag_cleared") == [
        ("Cán bộ xã", "B1: reverify: re-verified at home")
    ]
    _raise(ledger, "B1")  # raised again later: a new open flag
    assert ("B1", "reverify") in [(f.beneficiary_id, f.kind) for f in ledger.flags()]


def test_every_open_flag_of_a_beneficiary_without_kind(ledger: Ledger) -> None:
    _raise(ledger, "B1")
    _raise(ledger, "B1", "other")
    cleared = ledger.clear_flags("B1", by="x", reason="checked")
    assert sorted(f.kind for f in cleared) == ["other", "reverify"]
    assert ledger.flags() == []


@pytest.mark.parametrize(
    ("by", "reason", "match"),
    [("", "checked", "who"), ("x", "  ", "why"), ("x", "checked", "no open flag")],
)
def test_refusals(ledger: Ledger, by: str, reason: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        ledger.clear_flags("B9", by=by, reason=reason)
    assert _events(ledger, "beneficiary.flag_cleared") == []


def test_cli(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    with Ledger.open(db) as ledger:
        _raise(ledger, "B1")
    out = io.StringIO()
    argv = ["beneficiary", "unflag", "B1", "--db", str(db), "--by", "x", "--reason", "seen"]
    assert main(argv, out=out) == 0
    assert out.getvalue() == "beneficiary B1: cleared reverify\n"
    assert main(argv, out=io.StringIO()) == 1  # nothing open any more
    with Ledger.open(db) as ledger:
        assert ledger.flags() == []
