"""Money: an integer count of minor units and an ISO 4217 currency.

Floats never enter: constructing Money from a float (or a bool) raises ``TypeError``.

>>> Money.vnd(360_000) + Money.vnd(140_000)
Money(minor=500000, currency='VND')
>>> str(Money.vnd(1_250_000))
'1,250,000 VND'
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Final

import attrs

from sap_payments.errors import CurrencyMismatch, InvalidInput

__all__ = ["MINOR_UNITS", "Money", "round_half_up"]

#: Decimal places of the currencies sap_payments knows (ISO 4217 minor units).
MINOR_UNITS: Final[dict[str, int]] = {
    "VND": 0,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "CNY": 2,
    "KHR": 2,
    "LAK": 2,
    "MMK": 2,
    "THB": 2,
    "PHP": 2,
    "IDR": 2,
    "MYR": 2,
    "SGD": 2,
    "INR": 2,
    "BDT": 2,
    "KES": 2,
    "JPY": 0,
    "KRW": 0,
}


def _check_minor(_instance: object, _attribute: object, value: int) -> None:
    if type(value) is not int:
        raise TypeError(f"Money amounts are whole minor units (int), not {type(value).__name__}")


def _check_currency(_instance: object, _attribute: object, value: str) -> None:
    if value not in MINOR_UNITS:
        raise InvalidInput(f"unknown currency {value!r}")


def round_half_up(value: Decimal) -> int:
    """Round a Decimal to a whole number, halves away from zero (0.5 → 1, -0.5 → -1).

    >>> round_half_up(Decimal("135000.5")), round_half_up(Decimal("2.49"))
    (135001, 2)
    """
    with localcontext() as context:
        context.prec = max(28, value.adjusted() + 2)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@attrs.frozen(order=False)
class Money:
    """An amount of money in integer minor units (đồng for VND) of one currency."""

    minor: int = attrs.field(validator=_check_minor)
    currency: str = attrs.field(validator=_check_currency)

    @classmethod
    def vnd(cls, dong: int) -> Money:
        """An amount in Vietnamese đồng (VND has no minor unit)."""
        return cls(dong, "VND")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return self.minor >= other.minor

    def __bool__(self) -> bool:
        return self.minor != 0

    def times(self, factor: Decimal | int) -> Money:
        """Multiply by an exact factor, rounding half-up to a whole minor unit."""
        if isinstance(factor, float | bool):
            raise TypeError("Money can only be multiplied by an int or a Decimal")
        # The product of two decimals is exact when the precision holds all their digits: round
        # once, half-up, never first to the context's 28 digits.
        factor = Decimal(factor)
        with localcontext() as context:
            context.prec = len(str(abs(self.minor))) + len(factor.as_tuple().digits) + 2
            product = Decimal(self.minor) * factor
        return Money(round_half_up(product), self.currency)

    @property
    def decimals(self) -> int:
        return MINOR_UNITS[self.currency]

    def to_decimal(self) -> Decimal:
        """The amount in major units, exactly (``Money(150, 'USD')`` → ``Decimal('1.50')``)."""
        return Decimal(self.minor).scaleb(-self.decimals)

    def __str__(self) -> str:
        if self.decimals == 0:
            return f"{self.minor:,} {self.currency}"
        return f"{self.to_decimal():,.{self.decimals}f} {self.currency}"

    @staticmethod
    def total(amounts: list[Money] | tuple[Money, ...], currency: str) -> Money:
        """Sum of amounts, all of ``currency`` (an empty sum is zero)."""
        result = Money.zero(currency)
        for amount in amounts:
            result = result + amount
        return result
