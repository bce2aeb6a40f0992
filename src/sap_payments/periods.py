"""Benefit months.

A :class:`Period` is one calendar month, written ``YYYY-MM``. Its :attr:`~Period.ordinal` (months
since year 0) is what the ledger stores, so comparisons and ranges are integer arithmetic.

>>> p = Period.parse("2021-12")
>>> str(p.next()), str(p + 2), p.first_day.isoformat()
('2022-01', '2022-02', '2021-12-01')
>>> [str(m) for m in Period.parse("2021-11").through(Period.parse("2022-01"))]
['2021-11', '2021-12', '2022-01']
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import attrs

from sap_payments.errors import InvalidPeriod

__all__ = ["Period"]

_PATTERN = re.compile(r"(\d{4})-(\d{2})")


@attrs.frozen(order=True)
class Period:
    """One calendar month, ordered by time."""

    ordinal: int = attrs.field(validator=attrs.validators.instance_of(int))

    @classmethod
    def of(cls, year: int, month: int) -> Period:
        if not 1 <= month <= 12 or not 1 <= year <= 9999:
            raise InvalidPeriod(f"{year:04d}-{month:02d}")
        return cls(year * 12 + month - 1)

    @classmethod
    def parse(cls, text: str) -> Period:
        """Parse ``YYYY-MM``; raise :class:`~sap_payments.errors.InvalidPeriod` otherwise."""
        match = _PATTERN.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise InvalidPeriod(text)
        return cls.of(int(match[1]), int(match[2]))

    @classmethod
    def containing(cls, day: dt.date) -> Period:
        return cls.of(day.year, day.month)

    @property
    def year(self) -> int:
        return self.ordinal // 12

    @property
    def month(self) -> int:
        return self.ordinal % 12 + 1

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    def next(self) -> Period:
        return Period(self.ordinal + 1)

    def previous(self) -> Period:
        return Period(self.ordinal - 1)

    def __add__(self, months: int) -> Period:
        return Period(self.ordinal + months)

    def __sub__(self, months: int) -> Period:
        return Period(self.ordinal - months)

    def through(self, last: Period) -> Iterator[Period]:
        """Every month from this one through ``last`` inclusive (nothing when last is earlier)."""
        for ordinal in range(self.ordinal, last.ordinal + 1):
            yield Period(ordinal)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @staticmethod
    def text(ordinal: int) -> str:
        """``YYYY-MM`` for a stored ordinal, without building a Period."""
        return f"{ordinal // 12:04d}-{ordinal % 12 + 1:02d}"
