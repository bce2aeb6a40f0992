"""Confirmation files as a post office clerk types them, and the rows that must not pass.

Each file here is what a clerk makes by hand or saves from Excel — a title above the header,
amounts written the Vietnamese way (``360.000 đ``), a note typed beside the table, a header and
nothing under it — and each test names what the import must do with it: apply it, send the row
to the review list with a reason, or refuse the file. A beneficiary's unclaimed months count
toward re-verification however each month was recorded.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import openpyxl
import pytest

from sap_payments import Ledger
from sap_payments.postal import CONFIRMATION_COLUMNS, InvalidConfirmations, PostalCashProvider
from test_postal import (
    cash_row,
    confirmation,
    dispatched,
    ids,
    payout_lines,
    postal_ledger,
    states,
)

TITLE = "BƯU ĐIỆN TỈNH THỪA THIÊN HUẾ — KẾT QUẢ CHI TRẢ THÁNG 9/2021"

Cycle = tuple[Ledger, dict[str, str], dict[str, dict[str, str]]]


@pytest.fixture
def cycle(tmp_path: Path) -> Iterator[Cycle]:
    ledger = postal_ledger(tmp_path, *(cash_row(f"B{i}") for i in range(1, 7)))
    dispatched(ledger)
    try:
        yield ledger, ids(ledger), payout_lines(tmp_path / "outbox")
    finally:
        ledger.close()


def line_of(cycle: Cycle, beneficiary: str) -> dict[str, str]:
    _, by_id, lines = cycle
    return lines[by_id[beneficiary]]


def clerk_csv(path: Path, rows: Sequence[Sequence[str]], *, separator: str = ",") -> Path:
    """A CSV as Excel saves it: UTF-8 with a byte-order mark, a title and a blank line above
    the header, CRLF line ends; rows as given (as many fields as the clerk typed)."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, delimiter=separator, lineterminator="\r\n")
        writer.writerow([TITLE])
        writer.writerow([])
        writer.writerow(CONFIRMATION_COLUMNS[:-1])  # the ledger column is optional
        writer.writerows(rows)
    return path


def clerk_xlsx(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    """A workbook as a clerk fills it: a title row, the header, typed cells (dates as dates,
    amounts as the clerk wrote them)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Kết quả"
    sheet.append([TITLE])
    sheet.append(list(CONFIRMATION_COLUMNS[:-1]))
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path


def cells(row: Mapping[str, str]) -> list[str]:
    return [row[column] for column in CONFIRMATION_COLUMNS[:-1]]


def reasons(done: object) -> list[tuple[int, str]]:
    return [(line.row, line.reason) for line in done.review]  # type: ignore[attr-defined]


# -- amounts the Vietnamese way -------------------------------------------------------------------
WRITTEN = ["360.000", "360.000 đ", "360.000đ", "360.000 VND", "360 000", "360,000 ₫"]


def test_amounts_written_the_vietnamese_way_are_read(tmp_path: Path, cycle: Cycle) -> None:
    ledger = cycle[0]
    assert {line_of(cycle, f"B{i}")["amount"] for i in range(1, 7)} == {"360000"}
    rows = [
        cells(confirmation(line_of(cycle, f"B{i}"), amount=written))
        for i, written in enumerate(WRITTEN, 1)
    ]
    done = ledger.import_confirmations(clerk_csv(tmp_path / "c.csv", rows), provider="vnpost")
    assert reasons(done) == []
    assert (done.rows, done.applied) == (6, 6)
    assert set(states(ledger).values()) == {"PAID"}


@pytest.mark.parametrize(
    "written",
    [
        "360.5",
        "3,60,000",
        "36.0000",
        "360.000,00",
        "360,000.00",
        "360.00",
        "-360.000",
        "360.000 USD",
    ],
)
def test_amounts_that_are_not_whole_dong_grouped_by_thousands_are_malformed(
    tmp_path: Path, cycle: Cycle, written: str
) -> None:
    ledger = cycle[0]
    row = cells(confirmation(line_of(cycle, "B1"), amount=written))
    done = ledger.import_confirmations(clerk_csv(tmp_path / "c.csv", [row]), provider="vnpost")
    assert reasons(done) == [(4, "malformed_row")]
    assert "amount" in done.review[0].detail
    assert states(ledger)["B1"] == "ACCEPTED"


def test_a_clerks_workbook_with_amounts_as_text_and_dates_as_dates(
    tmp_path: Path, cycle: Cycle
) -> None:
    ledger = cycle[0]

    def typed(beneficiary: str, amount: object, on: object) -> list[object]:
        line = line_of(cycle, beneficiary)
        return [line["instruction_id"], line["collection_code"], amount, line["pay_point"],
                "paid", on, "beneficiary", None, None]  # fmt: skip

    path = clerk_xlsx(
        tmp_path / "ket-qua.xlsx",
        [
            typed("B1", "360.000 đ", dt.date(2021, 9, 14)),
            typed("B2", 360000, dt.datetime(2021, 9, 15, 8, 30)),  # noqa: DTZ001 - Excel holds no zone
            typed("B3", "360.000đ", "2021-09-16"),
            typed("B4", 360000.5, dt.date(2021, 9, 14)),  # a fraction of a đồng: malformed
            typed("B5", "360.5", dt.date(2021, 9, 14)),
        ],
    )
    done = ledger.import_confirmations(path, provider="vnpost")
    assert reasons(done) == [(6, "malformed_row"), (7, "malformed_row")]
    assert done.applied == 3
    now = states(ledger)
    assert [now[b] for b in ("B1", "B2", "B3", "B4", "B5")] == ["PAID"] * 3 + ["ACCEPTED"] * 2


# -- a second row for a code whose first row was rejected -----------------------------------------
def test_a_second_row_cannot_slip_in_what_the_first_row_could_not(
    tmp_path: Path, cycle: Cycle
) -> None:
    """The clerk first typed the wrong amount, then added a corrected row below instead of
    fixing the first: which one did the counter pay? Both go to review; nothing is applied."""
    ledger = cycle[0]
    line = line_of(cycle, "B1")
    rows = [
        cells(confirmation(line, amount="400.000")),  # row 4: amount differs
        cells(confirmation(line_of(cycle, "B2"))),  # row 5: fine
        cells(confirmation(line)),  # row 6: the same code again, this time matching
        cells(confirmation(line, collected_on="2021-09-15")),  # row 7: and a third time
    ]
    done = ledger.import_confirmations(clerk_csv(tmp_path / "c.csv", rows), provider="vnpost")
    assert reasons(done) == [(4, "code_used_twice"), (6, "code_used_twice"), (7, "code_used_twice")]
    assert "amount_differs" in done.review[0].detail  # the first row's own reason is kept
    assert "row 4" in done.review[1].detail
    assert done.applied == 1
    now = states(ledger)
    assert (now["B1"], now["B2"]) == ("ACCEPTED", "PAID")


def test_a_code_accepted_then_repeated_in_the_file_keeps_the_first_row(
    tmp_path: Path, cycle: Cycle
) -> None:
    ledger = cycle[0]
    line = line_of(cycle, "B1")
    rows = [cells(confirmation(line)), cells(confirmation(line, collected_on="2021-09-15"))]
    done = ledger.import_confirmations(clerk_csv(tmp_path / "c.csv", rows), provider="vnpost")
    assert reasons(done) == [(5, "code_used_twice")]
    assert states(ledger)["B1"] == "PAID"


# -- rows wider than the header, files with no rows -----------------------------------------------
def test_a_row_with_more_fields_than_the_header_is_not_read_shifted(
    tmp_path: Path, cycle: Cycle
) -> None:
    """A note typed after the last column, and an unquoted comma in a proxy's name: the row
    cannot be read as the clerk meant it, so it goes to review instead of being applied."""
    ledger = cycle[0]
    noted = [*cells(confirmation(line_of(cycle, "B1"))), "", "đã ký thay"]
    shifted = cells(confirmation(line_of(cycle, "B2"), collected_by="proxy", authorisation="8888"))
    shifted[7:8] = ["Trần", " Thị Bình"]  # what "Trần, Thị Bình" unquoted becomes
    blank_tail = [*cells(confirmation(line_of(cycle, "B3"))), "", " "]  # Excel's empty cells
    path = clerk_csv(tmp_path / "c.csv", [noted, shifted, blank_tail])
    done = ledger.import_confirmations(path, provider="vnpost")
    assert reasons(done) == [(4, "malformed_row"), (5, "malformed_row")]
    assert done.review[0].detail == "has 11 fields, the header 9"
    assert "Trần" not in done.review[1].detail
    assert done.applied == 1
    assert [states(ledger)[b] for b in ("B1", "B2", "B3")] == ["ACCEPTED", "ACCEPTED", "PAID"]


def test_a_workbook_row_with_a_cell_beside_the_table_goes_to_review(
    tmp_path: Path, cycle: Cycle
) -> None:
    ledger = cycle[0]
    line = line_of(cycle, "B1")
    row: list[object] = [*cells(confirmation(line)), None, "ghi chú: nhận muộn"]
    done = ledger.import_confirmations(clerk_xlsx(tmp_path / "c.xlsx", [row]), provider="vnpost")
    assert reasons(done) == [(3, "malformed_row")]
    assert states(ledger)["B1"] == "ACCEPTED"


@pytest.mark.parametrize("kind", ["csv", "csv-blank-rows", "semicolon", "xlsx"])
def test_a_header_with_no_rows_is_refused(tmp_path: Path, cycle: Cycle, kind: str) -> None:
    ledger = cycle[0]
    if kind == "xlsx":
        path = clerk_xlsx(tmp_path / "c.xlsx", [])
    elif kind == "csv-blank-rows":
        path = clerk_csv(tmp_path / "c.csv", [[""] * 9, [], [" "]])
    else:
        path = clerk_csv(tmp_path / "c.csv", [], separator=";" if kind == "semicolon" else ",")
    with pytest.raises(InvalidConfirmations, match="no rows") as caught:
        ledger.import_confirmations(path, provider="vnpost")
    assert "nothing was applied" in str(caught.value)
    assert ledger.store.query("SELECT count(*) FROM imports WHERE kind LIKE 'postal%'") == [(0,)]


# -- collected_on outside the payout window -------------------------------------------------------
@pytest.mark.parametrize("on", ["2020-01-01", "2031-01-01", "2021-08-31"])
def test_a_collection_outside_the_payout_window_goes_to_review(
    tmp_path: Path, cycle: Cycle, on: str
) -> None:
    """Before the benefit month and the list, or after the list's window closed: a typo of
    the year or of the month, never a payment to apply."""
    ledger = cycle[0]
    rows = [cells(confirmation(line_of(cycle, "B1"), collected_on=on))]
    done = ledger.import_confirmations(clerk_csv(tmp_path / "c.csv", rows), provider="vnpost")
    assert reasons(done) == [(4, "outside_window")]
    assert on in done.review[0].detail
    assert states(ledger)["B1"] == "ACCEPTED"


def test_the_window_ends_on_the_lists_last_day(tmp_path: Path, cycle: Cycle) -> None:
    ledger, by_id, _ = cycle
    provider = ledger.provider_instances()["vnpost"]
    assert isinstance(provider, PostalCashProvider)
    closes = provider.window_closes([by_id["B1"]])[by_id["B1"]]
    rows = [
        cells(confirmation(line_of(cycle, "B1"), collected_on=closes.isoformat())),
        cells(confirmation(line_of(cycle, "B2"), collected_on=str(closes + dt.timedelta(1)))),
        cells(confirmation(line_of(cycle, "B3"), collected_on="2021-09-01")),
    ]
    done = ledger.import_confirmations(clerk_csv(tmp_path / "c.csv", rows), provider="vnpost")
    assert reasons(done) == [(5, "outside_window")]
    assert [states(ledger)[b] for b in ("B1", "B2", "B3")] == ["PAID", "ACCEPTED", "PAID"]


# -- unclaimed months, however recorded -----------------------------------------------------------
def unclaimed_row(ledger: Ledger, outbox: Path, period: str, beneficiary: str) -> list[str]:
    line = payout_lines(outbox)[ids(ledger, period)[beneficiary]]
    return cells(confirmation(line, outcome="unclaimed", collected_on="", collected_by=""))


@pytest.mark.parametrize(
    "recorded",
    [("file", "file", "file"), ("file", "close", "file"), ("close", "close", "file")],
    ids="-".join,
)
def test_unclaimed_months_count_however_they_were_recorded(
    tmp_path: Path, recorded: tuple[str, str, str]
) -> None:
    """Months reported ``unclaimed`` by the post office count as much as months the window
    close made UNCLAIMED: the third in a row flags the beneficiary, once."""
    ledger = postal_ledger(tmp_path, cash_row("B1"), cash_row("B2"), reverify_after_unclaimed=3)
    outbox = tmp_path / "outbox"
    flagged: list[tuple[str, ...]] = []
    for period, how in zip(("2021-09", "2021-10", "2021-11"), recorded, strict=True):
        dispatched(ledger, period)
        paid = confirmation(
            payout_lines(outbox)[ids(ledger, period)["B2"]], collected_on=f"{period}-12"
        )
        rows = [cells(paid)]
        if how == "file":
            rows.append(unclaimed_row(ledger, outbox, period, "B1"))
        path = clerk_csv(tmp_path / f"c-{period}.csv", rows)
        done = ledger.import_confirmations(path, provider="vnpost")
        assert reasons(done) == []
        closed = ledger.close_window(period, provider="vnpost", early=True)
        flagged.append(tuple(f.beneficiary_id for f in ledger.flags()))
        ledger.close_cycle(period)
        assert states(ledger, period)["B1"] == "UNCLAIMED"
        assert closed.unclaimed == (1 if how == "close" else 0)
    assert flagged == [(), (), ("B1",)]
    events = [e for _, e in ledger.store.events() if e.kind == "beneficiary.flagged"]
    assert [e.detail for e in events] == [
        "B1: reverify: cash uncollected 3 cycles in a row, the last 2021-11"
    ]
    ledger.close()
