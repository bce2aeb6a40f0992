"""A name or text no payment channel can carry is refused at roster import (#12), naming the
line and the column — not found at dispatch, where it used to strand a whole batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import roster_row, write_roster
from sap_payments import InvalidRoster, Ledger

CHARACTERS = {
    "\x85": "control character",  # NEXT LINE, a C1 control
    "\x9f": "control character",
    "\x07": "control character",
    "\ufffe": "non-character",
    "\uffff": "non-character",
    "\ufdd0": "non-character",
    "\U0001fffe": "non-character",
    "\ue000": "private-use",
    "\U000f0001": "private-use",
    "\u0378": "unassigned",  # not assigned in any Unicode version so far
}


@pytest.mark.parametrize(("char", "what"), sorted(CHARACTERS.items()))
@pytest.mark.parametrize("column", ["full_name", "proxy_name", "proxy_relation"])
def test_an_uncarriable_character_in_a_name_is_refused_naming_line_and_column(
    tmp_path: Path, char: str, what: str, column: str
) -> None:
    proxy = {"proxy_name": "Lê Thị Hoa", "proxy_relation": "con gái"}
    good = roster_row("B0", **proxy)
    bad = roster_row("B1", **{**proxy, column: f"Trần{char}Thị"})
    path = write_roster(tmp_path / "roster.csv", [good, bad])
    with Ledger.open(tmp_path / "l.db", durable=False) as ledger:
        with pytest.raises(InvalidRoster) as refused:
            ledger.import_roster(path)
        [problem] = refused.value.problems  # that one problem, not "too long" or the like too
        assert (problem.line, problem.column) == (3, column)
        assert f"U+{ord(char):04X}" in problem.reason
        assert what in problem.reason
        assert "Trần" not in str(refused.value)
        assert list(ledger.store.beneficiaries("monthly-allowance")) == []  # nothing applied


def test_every_text_column_is_checked_and_each_bad_cell_named(tmp_path: Path) -> None:
    row = roster_row("B1", pay_point="BD\x85201", account_number="", bank_bin="")
    row["commune_code"] = "20107\ufffe"
    path = write_roster(tmp_path / "roster.csv", [roster_row("B0"), row])
    with (
        Ledger.open(tmp_path / "l.db", durable=False) as ledger,
        pytest.raises(InvalidRoster) as refused,
    ):
        ledger.import_roster(path)
    assert sorted((p.line, p.column, p.reason[:12]) for p in refused.value.problems) == [
        (3, "commune_code", "holds U+FFFE"),  # what is wrong with it, not "letters and digits"
        (3, "pay_point", "holds U+0085"),
    ]


def test_names_of_every_script_a_roster_holds_still_import(tmp_path: Path) -> None:
    names = ["Nguyễn Thị Ánh", "Hồ Văn Đức", "Đặng Thị Ngọc Ẩn", "Lò Văn Sành", "阮氏", "𠀀𡨸"]
    rows = [roster_row(f"B{k}", full_name=name) for k, name in enumerate(names)]
    with Ledger.open(tmp_path / "l.db", durable=False) as ledger:
        assert ledger.import_roster(write_roster(tmp_path / "roster.csv", rows)).added == len(names)


def test_the_check_is_one_compiled_regular_expression() -> None:
    """Its cost is measured by the import benchmark, not timed here: a compiled pattern that
    finds a C1 control in a row and passes a clean Vietnamese one."""
    from sap_payments.roster import _uncarriable

    quick, _exact = _uncarriable()
    row = " ".join(roster_row("B000123", full_name="Nguyễn Thị Ngọc Ánh").values())
    assert quick.search(row) is None
    assert quick.search(row + "\u0085") is not None
