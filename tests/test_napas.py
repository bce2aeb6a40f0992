"""The NAPAS member table: well-formed rows, the banks everyone knows, and agreement with the
public VietQR list in ``shared/data`` where both name a bank."""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path

import pytest

from sap_payments.iso20022.napas import NAPAS_BANKS, NapasBank, bank_by_bin

SHARED = Path(__file__).parents[1].parent / "shared"
VIETQR_CSV = SHARED / "data" / "napas_bank_bins_subiz-vietqr.csv"

#: A BIC as pain.001.001.03 (BICIdentifier) accepts it, 8 or 11 characters; it also matches
#: pain.001.001.09's looser BICFIDec2014Identifier.
BIC = re.compile("[A-Z]{6}[A-Z2-9][A-NP-Z0-9]([A-Z0-9]{3})?")

#: Where this table knowingly differs from the VietQR CSV: BIN → (CSV's SWIFT, ours).
#: OCBKUS3M is the BIC of a bank in the United States (country code US), not of Oceanbank.
KNOWN_DISAGREEMENTS = {"970414": ("OCBKUS3M", "OJBAVNVX")}


def test_rows_are_keyed_by_their_six_digit_bin() -> None:
    assert len(NAPAS_BANKS) >= 50
    for key, bank in NAPAS_BANKS.items():
        assert isinstance(bank, NapasBank)
        assert key == bank.bin
        assert re.fullmatch("[0-9]{6}", bank.bin), bank
        assert bank.short_name.strip(), bank
        assert bank.name.strip(), bank
        assert unicodedata.is_normalized("NFC", bank.name), bank


def test_swift_codes_are_vietnamese_bics_of_8_or_11_characters() -> None:
    for bank in NAPAS_BANKS.values():
        if bank.swift is None:
            continue
        assert len(bank.swift) in (8, 11), bank
        assert BIC.fullmatch(bank.swift), bank
        assert bank.swift[4:6] == "VN", bank  # the country code of the BIC


@pytest.mark.parametrize(
    ("bin_", "short_name", "swift"),
    [
        ("970415", "VietinBank", "ICBVVNVX"),
        ("970436", "Vietcombank", "BFTVVNVX"),
        ("970418", "BIDV", "BIDVVNVX"),
        ("970405", "Agribank", "VBAAVNVX"),
        ("970407", "Techcombank", "VTCBVNVX"),
        ("970422", "MBBank", "MSCBVNVX"),
        ("970416", "ACB", "ASCBVNVX"),
        ("970432", "VPBank", "VPBKVNVX"),
        ("970403", "Sacombank", "SGTTVNVX"),
    ],
)
def test_the_big_banks(bin_: str, short_name: str, swift: str) -> None:
    bank = bank_by_bin(bin_)
    assert bank is not None
    assert (bank.bin, bank.short_name, bank.swift) == (bin_, short_name, swift)


def test_vietinbank_row() -> None:
    assert bank_by_bin("970415") == NapasBank(
        "970415", "VietinBank", "Ngân hàng TMCP Công Thương Việt Nam", "ICBVVNVX"
    )


def test_a_member_without_swift_code_and_an_unknown_bin() -> None:
    coopbank = bank_by_bin("970446")
    assert coopbank is not None
    assert coopbank.swift is None
    assert bank_by_bin("970499") is None
    assert bank_by_bin("") is None


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        NAPAS_BANKS["000000"] = NapasBank("000000", "X", "X")  # type: ignore[index]


def _vietqr_rows() -> dict[str, dict[str, str]]:
    if not VIETQR_CSV.is_file():
        pytest.skip(f"the shared VietQR bank list is not there ({VIETQR_CSV})")
    with VIETQR_CSV.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = [cell.strip() for cell in next(reader)]
        rows = [dict(zip(header, (cell.strip() for cell in row), strict=True)) for row in reader]
    return {row["Mã BIN"]: row for row in rows}


def test_agrees_with_the_vietqr_list_on_common_bins() -> None:
    rows = _vietqr_rows()
    assert rows["970415"]["SWIFT"] == "ICBVVNVX"  # the CSV was read as meant
    common = sorted(rows.keys() & NAPAS_BANKS.keys())
    assert len(common) >= 50
    disagreements = {}
    for bin_ in common:
        theirs = rows[bin_]["SWIFT"] or None
        ours = NAPAS_BANKS[bin_].swift
        if theirs != ours:
            disagreements[bin_] = (theirs, ours)
    assert disagreements == KNOWN_DISAGREEMENTS


def test_knows_every_bin_of_the_vietqr_list() -> None:
    assert sorted(_vietqr_rows().keys() - NAPAS_BANKS.keys()) == []
