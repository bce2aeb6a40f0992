"""Money: integer minor units and an ISO 4217 currency; never a float; half-up multiplication."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sap_payments import CurrencyMismatch, InvalidInput, Money, SapPaymentsError
from sap_payments.money import MINOR_UNITS, round_half_up


# -- construction ---------------------------------------------------------------------------------
def test_money_holds_integer_minor_units_and_a_currency() -> None:
    amount = Money(360_000, "VND")
    assert amount.minor == 360_000
    assert type(amount.minor) is int
    assert amount.currency == "VND"
    assert Money.vnd(360_000) == amount
    assert Money.zero("USD") == Money(0, "USD")


def test_vnd_has_no_minor_unit_and_usd_has_two() -> None:
    assert MINOR_UNITS["VND"] == 0
    assert Money.vnd(1).decimals == 0
    assert Money(1, "USD").decimals == 2
    assert Money.vnd(1_250_000).to_decimal() == Decimal(1_250_000)
    assert Money(150, "USD").to_decimal() == Decimal("1.50")


@pytest.mark.parametrize("value", [1.0, 360000.0, 0.5, float("nan")])
def test_a_float_amount_is_refused(value: float) -> None:
    with pytest.raises(TypeError, match="int"):
        Money(value, "VND")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money.vnd(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, False, Decimal(1), "100", None])
def test_a_bool_or_other_non_int_amount_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        Money(value, "VND")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["XXX", "vnd", "", "ĐỒNG"])
def test_an_unknown_currency_is_refused(currency: str) -> None:
    with pytest.raises(InvalidInput, match="currency"):
        Money(1, currency)


def test_money_is_immutable() -> None:
    amount = Money.vnd(1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        amount.minor = 2  # type: ignore[misc]


# -- arithmetic -----------------------------------------------------------------------------------
def test_adding_and_subtracting_the_same_currency() -> None:
    assert Money.vnd(360_000) + Money.vnd(140_000) == Money.vnd(500_000)
    assert Money.vnd(360_000) - Money.vnd(500_000) == Money.vnd(-140_000)
    assert -Money.vnd(5) == Money.vnd(-5)
    assert Money(199, "USD") + Money(1, "USD") == Money(200, "USD")


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
    ids=["add", "sub", "lt", "le", "gt", "ge"],
)
def test_mixing_currencies_raises_currency_mismatch(operation: object) -> None:
    with pytest.raises(CurrencyMismatch) as caught:
        operation(Money.vnd(100), Money(100, "USD"))  # type: ignore[operator]
    assert caught.value.left == "VND"
    assert caught.value.right == "USD"
    assert isinstance(caught.value, InvalidInput)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, SapPaymentsError)


def test_equal_minor_units_in_different_currencies_are_not_equal() -> None:
    assert Money(100, "VND") != Money(100, "JPY")


def test_adding_a_plain_number_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Money.vnd(1) + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money.vnd(1) + 1.0  # type: ignore[operator]


def test_comparisons_within_a_currency() -> None:
    assert Money.vnd(1) < Money.vnd(2) <= Money.vnd(2)
    assert Money.vnd(3) > Money.vnd(2) >= Money.vnd(2)
    assert bool(Money.vnd(0)) is False
    assert bool(Money.vnd(-1)) is True


def test_total_sums_one_currency_and_an_empty_total_is_zero() -> None:
    assert Money.total([Money.vnd(270_000), Money.vnd(360_000)], "VND") == Money.vnd(630_000)
    assert Money.total([], "USD") == Money(0, "USD")
    with pytest.raises(CurrencyMismatch):
        Money.total([Money.vnd(1), Money(1, "USD")], "VND")
    with pytest.raises(CurrencyMismatch):
        Money.total([Money.vnd(1)], "USD")


# -- multiplication: exact factors only, half-up --------------------------------------------------
def test_times_a_decimal_coefficient() -> None:
    assert Money.vnd(360_000).times(Decimal("1.25")) == Money.vnd(450_000)
    assert Money.vnd(270_000).times(Decimal("1.5")) == Money.vnd(405_000)
    assert Money.vnd(500_000).times(Decimal("2.5")) == Money.vnd(1_250_000)
    assert Money.vnd(360_000).times(3) == Money.vnd(1_080_000)


@pytest.mark.parametrize(
    ("minor", "factor", "expected"),
    [
        (270_001, "0.5", 135_001),  # 135,000.5: half-up, where banker's rounding gives 135,000
        (100_003, "1.5", 150_005),  # 150,004.5 → 150,005 (banker's: 150,004)
        (100_001, "0.3", 30_000),  # 30,000.3 → 30,000
        (100_001, "0.7", 70_001),  # 70,000.7 → 70,001
        (1, "0.49", 0),
        (-1, "0.5", -1),  # halves away from zero
    ],
)
def test_times_rounds_half_up_to_a_whole_minor_unit(minor: int, factor: str, expected: int) -> None:
    result = Money.vnd(minor).times(Decimal(factor))
    assert result == Money.vnd(expected)
    assert type(result.minor) is int


@pytest.mark.parametrize("factor", [1.5, 1.0, True, False])
def test_times_refuses_floats_and_bools(factor: object) -> None:
    with pytest.raises(TypeError):
        Money.vnd(360_000).times(factor)  # type: ignore[arg-type]


def test_times_rounds_once_whatever_the_factor_s_digits() -> None:
    """0.49999… (29 digits) is below a half: no half-even rounding to 28 digits first."""
    assert Money.vnd(1).times(Decimal("0." + "4" + "9" * 28)) == Money.vnd(0)


def test_times_is_exact_for_large_amounts() -> None:
    """Products past 28 significant digits are not cut short before rounding."""
    assert Money.vnd(10**28 + 1).times(Decimal("0.5")) == Money.vnd(5 * 10**27 + 1)


@pytest.mark.parametrize("other", [1, 1.0, Decimal(1)])
def test_comparing_with_a_plain_number_is_a_type_error(other: object) -> None:
    """Like __add__, the comparisons give way (NotImplemented) to a non-Money operand."""
    with pytest.raises(TypeError):
        Money.vnd(1) < other  # type: ignore[operator]  # noqa: B015


def test_round_half_up() -> None:
    assert round_half_up(Decimal("135000.5")) == 135_001
    assert round_half_up(Decimal("2.5")) == 3
    assert round_half_up(Decimal("2.49")) == 2
    assert round_half_up(Decimal("-0.5")) == -1
    assert type(round_half_up(Decimal("1.5"))) is int


@given(
    minor=st.integers(min_value=0, max_value=10**12),
    scaled=st.integers(min_value=0, max_value=200_000),
)
def test_times_equals_exact_integer_half_up(minor: int, scaled: int) -> None:
    """times(k / 10^4) is floor(minor * k / 10^4 + 1/2), computed here in integers only."""
    factor = Decimal(scaled).scaleb(-4)
    expected = (2 * minor * scaled + 10**4) // (2 * 10**4)
    assert Money.vnd(minor).times(factor) == Money.vnd(expected)


# -- text -----------------------------------------------------------------------------------------
def test_str_shows_the_currency_decimals() -> None:
    assert str(Money.vnd(1_250_000)) == "1,250,000 VND"
    assert str(Money(150, "USD")) == "1.50 USD"
    assert str(Money(-150, "USD")) == "-1.50 USD"
    assert repr(Money.vnd(5)) == "Money(minor=5, currency='VND')"
