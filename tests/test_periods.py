"""Period: one calendar month, stored as an ordinal; YYYY-MM in and out."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sap_payments import InvalidInput, InvalidPeriod, Period


def test_parse_and_print() -> None:
    period = Period.parse("2021-09")
    assert (period.year, period.month) == (2021, 9)
    assert period.ordinal == 2021 * 12 + 8
    assert str(period) == "2021-09"
    assert Period.parse(" 2021-09 ") == period
    assert Period.of(2021, 9) == period


@pytest.mark.parametrize(
    "text", ["2021-13", "2021-00", "2021-9", "21-09", "2021/09", "", "2021-09-01", "abcd-ef"]
)
def test_a_malformed_month_raises_invalid_period(text: str) -> None:
    with pytest.raises(InvalidPeriod) as caught:
        Period.parse(text)
    assert caught.value.text == text
    assert isinstance(caught.value, InvalidInput)


def test_a_non_string_raises_invalid_period() -> None:
    with pytest.raises(InvalidPeriod):
        Period.parse(202109)  # type: ignore[arg-type]


@pytest.mark.parametrize(("year", "month"), [(2021, 0), (2021, 13), (0, 1), (10_000, 1)])
def test_of_refuses_impossible_months(year: int, month: int) -> None:
    with pytest.raises(InvalidPeriod):
        Period.of(year, month)


def test_the_ordinal_must_be_an_int() -> None:
    with pytest.raises(TypeError):
        Period(24260.0)  # type: ignore[arg-type]


def test_next_previous_and_arithmetic_cross_years() -> None:
    december = Period.parse("2021-12")
    assert str(december.next()) == "2022-01"
    assert str(Period.parse("2022-01").previous()) == "2021-12"
    assert str(december + 2) == "2022-02"
    assert str(december - 12) == "2020-12"


def test_first_day_and_containing() -> None:
    assert Period.parse("2024-07").first_day == dt.date(2024, 7, 1)
    assert Period.containing(dt.date(2021, 7, 31)) == Period.parse("2021-07")


def test_through_is_inclusive_and_empty_when_last_is_earlier() -> None:
    months = [str(m) for m in Period.parse("2021-11").through(Period.parse("2022-01"))]
    assert months == ["2021-11", "2021-12", "2022-01"]
    assert [str(m) for m in Period.parse("2021-11").through(Period.parse("2021-11"))] == ["2021-11"]
    assert list(Period.parse("2021-11").through(Period.parse("2021-10"))) == []


def test_periods_are_ordered_by_time() -> None:
    months = [Period.parse(t) for t in ("2022-01", "2021-12", "2021-02")]
    assert [str(m) for m in sorted(months)] == ["2021-02", "2021-12", "2022-01"]
    assert Period.parse("2021-12") < Period.parse("2022-01")


def test_text_of_an_ordinal() -> None:
    assert Period.text(2021 * 12 + 8) == "2021-09"
    assert Period.text(Period.parse("2024-07").ordinal) == "2024-07"


@given(st.integers(min_value=1, max_value=9999), st.integers(min_value=1, max_value=12))
def test_round_trip(year: int, month: int) -> None:
    text = f"{year:04d}-{month:02d}"
    period = Period.parse(text)
    assert str(period) == text
    assert Period.text(period.ordinal) == text
    assert Period(period.ordinal) == period
    assert period.next().previous() == period
    assert period.first_day == dt.date(year, month, 1)
