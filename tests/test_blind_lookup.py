"""Lookups and duplicate detection by keyed blind index: the ledger finds beneficiaries by
national id, mobile number or bank account without comparing (or storing) the plaintext."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import national_id_for, roster_row
from sap_payments import InvalidInput, Ledger
from sap_payments.cli import main


def _bank(beneficiary_id: str, bank_bin: str) -> dict[str, str]:
    return roster_row(
        beneficiary_id,
        channel="bank",
        provider="vietinbank",
        msisdn="",
        bank_bin=bank_bin,
        account_number="0123456789",
    )


def _rows() -> list[dict[str, str]]:
    return [
        roster_row("B1", msisdn="0912345678"),
        roster_row("B2", msisdn="+84912345678"),  # the same phone, written another way
        roster_row("B3", msisdn="0987654321"),
        _bank("B4", "970415"),
        _bank("B5", "970415"),  # the same account
        _bank("B6", "970436"),  # the same number at another bank: another account
    ]


def test_find_by_each_detail(ledger: Ledger, load: Callable[..., object]) -> None:
    load(ledger, *_rows())
    assert ledger.find_beneficiaries(msisdn="0912 345 678") == ["B1", "B2"]
    assert ledger.find_beneficiaries(msisdn="+84987654321") == ["B3"]
    assert ledger.find_beneficiaries(msisdn="0911111111") == []
    assert ledger.find_beneficiaries(account=("970415", "0123456789")) == ["B4", "B5"]
    assert ledger.find_beneficiaries(account=("970436", "0123456789")) == ["B6"]
    assert ledger.find_beneficiaries(national_id=national_id_for("B3")) == ["B3"]


def test_shared_details_are_grouped(ledger: Ledger, load: Callable[..., object]) -> None:
    load(ledger, *_rows())
    assert ledger.shared_details("msisdn") == [("B1", "B2")]
    assert ledger.shared_details("account") == [("B4", "B5")]
    assert ledger.shared_details("national_id") == []


def test_the_index_holds_no_plaintext(tmp_path: Path, load: Callable[..., object]) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        load(ledger, *_rows())
    db = sqlite3.connect(path)
    indexes = db.execute(
        "SELECT national_id, msisdn_index, account_index FROM beneficiaries ORDER BY 1"
    ).fetchall()
    db.close()
    for national_id, msisdn_index, account_index in indexes:
        assert national_id is None  # the national id lives sealed in the details
        for index in (msisdn_index, account_index):
            assert index is None or (isinstance(index, bytes) and len(index) == 16)
    data = path.read_bytes()
    for plain in (b"912345678", b"0123456789", national_id_for("B3").encode()):
        assert plain not in data


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"msisdn": "0912345678", "national_id": "046123456789"}, "exactly one"),
        ({"national_id": "12345"}, "12 digits"),
        ({"msisdn": "12345"}, "mobile number"),
        ({"account": ("9704", "1")}, "BIN"),
    ],
)
def test_bad_lookups_are_refused(ledger: Ledger, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ledger.find_beneficiaries(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="kind"):
        ledger.shared_details("full_name")


def test_cli(tmp_path: Path, load: Callable[..., object]) -> None:
    db = tmp_path / "ledger.db"
    with Ledger.open(db) as ledger:
        load(ledger, *_rows())
    out = io.StringIO()
    assert main(["beneficiary", "find", "--db", str(db), "--msisdn", "0912345678"], out=out) == 0
    assert out.getvalue().split() == ["B1", "B2"]
    out = io.StringIO()
    assert (
        main(["beneficiary", "shared", "account", "--db", str(db), "--format", "csv"], out=out) == 0
    )
    assert out.getvalue().splitlines() == ["group,beneficiaries,beneficiary_ids", "1,2,B4 B5"]


def test_cli_json(tmp_path: Path, load: Callable[..., object]) -> None:
    db = tmp_path / "ledger.db"
    with Ledger.open(db) as ledger:
        load(ledger, *_rows())
    out = io.StringIO()
    assert (
        main(["beneficiary", "shared", "msisdn", "--db", str(db), "--format", "json"], out=out) == 0
    )
    document = json.loads(out.getvalue())
    assert document["kind"] == "msisdn"
    assert document["count"] == 1
    assert document["groups"] == [{"group": 1, "beneficiaries": 2, "beneficiary_ids": "B1 B2"}]
