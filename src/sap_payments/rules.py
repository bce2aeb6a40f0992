"""Rule sets: the standard level in force each month and the coefficient of each category.

Vietnamese social assistance is paid as *standard level × coefficient*: the Government sets one
standard level (mức chuẩn trợ giúp xã hội, in đồng per month) and raises it by decree from a given
date, and each kind of beneficiary has a coefficient (hệ số). A :class:`RuleSet` holds both, loaded
from a TOML file so that a province that pays more than the national rules ships its own file
instead of patching code. The format is described in ``docs/rules.md``.

>>> rules = RuleSet.vietnam_default()
>>> str(rules.level_for(Period.parse("2021-07")))
'360,000 VND'
>>> str(rules.monthly_amount(Period.parse("2024-07"), rules.coefficient("orphan_under4")))
'1,250,000 VND'

Coefficients are :class:`~decimal.Decimal` and amounts integer minor units: no float is ever
involved, so the same file always pays the same đồng.
"""

from __future__ import annotations

import bisect
import datetime as dt
import difflib
import functools
import hashlib
import json
import os
import re
import tomllib
import types
import unicodedata
from collections.abc import Iterable, Mapping
from decimal import Decimal, localcontext
from importlib import resources
from typing import Any, Final, NoReturn

import attrs

from sap_payments.errors import InvalidInput, InvalidRuleSet, UnknownCategory
from sap_payments.money import MINOR_UNITS, Money, round_half_up
from sap_payments.periods import Period

__all__ = ["Category", "RuleSet", "StandardLevel", "canonical_coefficient"]

#: Version tag inside the fingerprinted serialisation. Changing the serialisation changes every
#: fingerprint, so bump this only on purpose (fingerprints are recorded with payrolls).
_FINGERPRINT_FORMAT: Final = "sap_payments.rules/1"

_TOP_KEYS: Final = ("name", "currency", "levels", "categories")
_LEVEL_KEYS: Final = ("effective_from", "amount", "basis")
_CATEGORY_KEYS: Final = ("coefficient", "description", "basis")

#: Category codes are what rosters refer to: lower-case ASCII, digits and underscores.
_CODE: Final = re.compile(r"[a-z][a-z0-9_]*")
#: A coefficient as written in TOML: digits with an optional decimal point (no sign, exponent,
#: thousands separator or decimal comma).
_COEFFICIENT: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")

#: monthly_amount results kept per rule set; a payroll needs (months × distinct coefficients),
#: which is far below this, so the bound only protects against pathological rosters.
_CACHE_LIMIT: Final = 65_536

_DEFAULT_PACKAGE: Final = "sap_payments.data"
_DEFAULT_FILE: Final = "vn_default_rules.toml"


# --------------------------------------------------------------------------- value classes


def _check_day(_instance: object, _attribute: object, value: dt.date) -> None:
    # datetime is a subclass of date; a level starts on a day, not at an instant.
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise TypeError(f"effective_from must be a datetime.date, not {type(value).__name__}")


def _check_positive_money(_instance: object, _attribute: object, value: Money) -> None:
    if not isinstance(value, Money):
        raise TypeError(f"amount must be Money, not {type(value).__name__}")
    if value.minor <= 0:
        raise InvalidRuleSet(f"a standard level must be greater than zero, not {value}")


def _check_text(_instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidRuleSet(f"{attribute.name} must not be empty")


def _check_code(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"a category code must be a string, not {type(value).__name__}")
    if not _CODE.fullmatch(value):
        raise InvalidRuleSet(
            f"category code {value!r} must be lower-case letters, digits and '_', "
            "starting with a letter"
        )


def _check_coefficient(_instance: object, _attribute: object, value: Decimal) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"a coefficient must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value <= 0:
        raise InvalidRuleSet(
            f"a coefficient must be a finite number greater than zero, not {value}"
        )


@attrs.frozen
class StandardLevel:
    """The standard level (mức chuẩn) paid from ``effective_from`` until the next level starts.

    ``basis`` cites the legal text that sets it, so that every amount paid can be traced to a
    decree article.
    """

    effective_from: dt.date = attrs.field(validator=_check_day)
    amount: Money = attrs.field(validator=_check_positive_money)
    basis: str = attrs.field(validator=_check_text)


@attrs.frozen
class Category:
    """A kind of beneficiary and its coefficient, with the article that sets it.

    ``code`` is what a roster names (``elderly_80plus``); ``description`` is English for
    reports; ``basis`` cites the decree, article, clause and point.
    """

    code: str = attrs.field(validator=_check_code)
    coefficient: Decimal = attrs.field(validator=_check_coefficient)
    description: str = attrs.field(validator=_check_text)
    basis: str = attrs.field(validator=_check_text)


def _to_levels(value: Iterable[StandardLevel]) -> tuple[StandardLevel, ...]:
    return tuple(value)


def _freeze_categories(value: Mapping[str, Category]) -> Mapping[str, Category]:
    # Sorted by code so that iteration (reports, docs, fingerprints) never depends on file order.
    return types.MappingProxyType(dict(sorted(value.items())))


def _check_levels(levels: tuple[StandardLevel, ...], currency: str, source: str | None) -> None:
    """Check the levels of one rule set together: present, dated in order, one currency."""
    if not levels:
        raise InvalidRuleSet("levels: at least one [[levels]] entry is needed", source=source)
    for number, level in enumerate(levels, start=1):
        if not isinstance(level, StandardLevel):
            raise TypeError(f"levels[{number}] must be a StandardLevel, not {type(level).__name__}")
        if level.amount.currency != currency:
            raise InvalidRuleSet(
                f"levels[{number}].amount: currency {level.amount.currency} differs from the "
                f"rule set's currency {currency}",
                source=source,
            )
    for number in range(2, len(levels) + 1):
        here = levels[number - 1].effective_from
        before = levels[number - 2].effective_from
        if here == before:
            raise InvalidRuleSet(
                f"levels[{number}].effective_from: {here.isoformat()} repeats "
                f"levels[{number - 1}].effective_from; each level needs its own start date",
                source=source,
            )
        if here < before:
            raise InvalidRuleSet(
                f"levels[{number}].effective_from: {here.isoformat()} is earlier than "
                f"levels[{number - 1}].effective_from ({before.isoformat()}); "
                "list [[levels]] in date order, oldest first",
                source=source,
            )


def _check_categories(categories: Mapping[str, Category], source: str | None) -> None:
    if not categories:
        raise InvalidRuleSet("categories: at least one category is needed", source=source)
    for code, category in categories.items():
        if not isinstance(category, Category):
            raise TypeError(
                f"categories[{code!r}] must be a Category, not {type(category).__name__}"
            )
        if category.code != code:
            raise InvalidRuleSet(
                f"categories.{code}: holds category {category.code!r} under another code",
                source=source,
            )


def canonical_coefficient(value: Decimal) -> str:
    """``1.50`` and ``1.5`` are the same coefficient, so they serialise the same: ``"1.5"``."""
    return format(value.normalize(), "f")


def _nfc(text: str) -> str:
    """Vietnamese text can arrive precomposed or decomposed; both mean the same."""
    return unicodedata.normalize("NFC", text)


# --------------------------------------------------------------------------- the rule set


@attrs.frozen
class RuleSet:
    """Standard levels over time and the coefficient of every category.

    Validated on construction: at least one level, levels in strictly increasing date order, all
    in ``currency`` and above zero; at least one category, each stored under its own code.
    ``categories`` is a read-only mapping sorted by code.

    ``monthly_amount`` is called once per beneficiary per month, so its results are cached per
    rule set (the cache is not part of equality, hashing or the fingerprint).
    """

    name: str = attrs.field(validator=_check_text)
    currency: str
    levels: tuple[StandardLevel, ...] = attrs.field(converter=_to_levels)
    # A mappingproxy is not hashable; equal rule sets still hash equal through the other fields.
    categories: Mapping[str, Category] = attrs.field(converter=_freeze_categories, hash=False)
    _dates: tuple[dt.date, ...] = attrs.field(init=False, repr=False, eq=False, hash=False)
    _amounts: dict[tuple[int, Decimal | int], Money] = attrs.field(
        init=False, repr=False, eq=False, hash=False, factory=dict
    )

    def __attrs_post_init__(self) -> None:
        if self.currency not in MINOR_UNITS:
            raise InvalidRuleSet(
                f"currency: unknown currency {self.currency!r} "
                f"(known: {', '.join(sorted(MINOR_UNITS))})"
            )
        _check_levels(self.levels, self.currency, None)
        _check_categories(self.categories, None)
        object.__setattr__(self, "_dates", tuple(level.effective_from for level in self.levels))

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only mapping cannot be pickled as is; rebuild through the constructor.
        return (type(self), (self.name, self.currency, self.levels, dict(self.categories)))

    # ------------------------------------------------------------------ lookups

    def level_on(self, day: dt.date) -> Money:
        """The standard level in force on ``day``.

        A level applies from its ``effective_from`` (inclusive) until the day before the next
        one starts. Raises :class:`~sap_payments.errors.InvalidRuleSet` for a day before the
        first level: the rule set says nothing about it, and guessing would pay a wrong amount.
        """
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            raise TypeError(f"level_on takes a datetime.date, not {type(day).__name__}")
        index = bisect.bisect_right(self._dates, day) - 1
        if index < 0:
            raise InvalidRuleSet(
                f"rule set {self.name!r} has no standard level on {day.isoformat()}: "
                f"its first level starts on {self._dates[0].isoformat()}"
            )
        return self.levels[index].amount

    def level_for(self, period: Period) -> Money:
        """The standard level for a benefit month: the one in force on its first day."""
        return self.level_on(period.first_day)

    def coefficient(self, category: str) -> Decimal:
        """The coefficient of a category code; :class:`UnknownCategory` if there is none."""
        found = self.categories.get(category)
        if found is None:
            raise UnknownCategory(category)
        return found.coefficient

    def monthly_amount(self, period: Period, coefficient: Decimal) -> Money:
        """One month's allowance: the month's level × ``coefficient``, half-up to a minor unit.

        ``coefficient`` is usually ``coefficient(category)``, or a roster's own coefficient
        that overrides it. It must be a ``Decimal`` (an ``int`` is accepted too, being exact);
        a float raises ``TypeError``. A negative or non-finite coefficient raises
        :class:`~sap_payments.errors.InvalidInput`.
        """
        kind: type[object] = type(coefficient)
        # The exact type check comes first: 1.5 == Decimal("1.5") and they hash alike, so a
        # float would otherwise find a cached Decimal result and slip through.
        if kind is not Decimal and kind is not int:
            raise TypeError(
                f"a coefficient must be a Decimal (or int), not {kind.__name__}; floats are inexact"
            )
        key = (period.ordinal, coefficient)
        cached = self._amounts.get(key)
        if cached is not None:
            return cached
        amount = self._compute(period, coefficient)
        if len(self._amounts) >= _CACHE_LIMIT:
            self._amounts.clear()
        self._amounts[key] = amount
        return amount

    def _compute(self, period: Period, coefficient: Decimal | int) -> Money:
        factor = Decimal(coefficient)
        if not factor.is_finite() or factor < 0:
            raise InvalidInput(f"a coefficient must be a finite number ≥ 0, not {coefficient}")
        level = self.level_for(period)
        base = Decimal(level.minor)
        shape = factor.as_tuple()
        exponent = shape.exponent if isinstance(shape.exponent, int) else 0
        # Digits of the exact product (a positive exponent adds trailing zeros to it).
        digits = len(base.as_tuple().digits) + len(shape.digits) + max(exponent, 0)
        with localcontext() as context:
            # Enough precision for the exact product, so the only rounding is the half-up one.
            context.prec = max(context.prec, digits + 2)
            return Money(round_half_up(base * factor), level.currency)

    # ------------------------------------------------------------------ identity

    def fingerprint(self) -> str:
        """Hex SHA-256 of a canonical serialisation of everything in the rule set.

        Recorded with a payroll, it shows later which rules paid it. It does not depend on the
        order of keys in the file, on how a coefficient is written (``"1.50"`` is ``"1.5"``),
        on Unicode normalisation or on the Python process; any change of a value changes it.
        """
        document = {
            "format": _FINGERPRINT_FORMAT,
            "name": _nfc(self.name),
            "currency": self.currency,
            "levels": [
                {
                    "effective_from": level.effective_from.isoformat(),
                    "amount": level.amount.minor,
                    "basis": _nfc(level.basis),
                }
                for level in self.levels
            ],
            "categories": [
                {
                    "code": category.code,
                    "coefficient": canonical_coefficient(category.coefficient),
                    "description": _nfc(category.description),
                    "basis": _nfc(category.basis),
                }
                for _code, category in sorted(self.categories.items())
            ],
        }
        text = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ loading

    @classmethod
    def loads(cls, text: str, *, source: str = "<string>") -> RuleSet:
        """Parse a rule set from TOML text; ``source`` names the file in error messages.

        Every problem raises :class:`~sap_payments.errors.InvalidRuleSet` naming the source and
        the offending key (``levels[2].amount``; entries are numbered from 1 in file order).
        """
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRuleSet(f"not valid TOML: {exc}", source=source) from exc
        return _Parser(source).rule_set(document)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RuleSet:
        """Read and parse a rule-set file (UTF-8, with or without a byte-order mark)."""
        source = os.fspath(path)
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise InvalidRuleSet(f"cannot read the file: {reason}", source=source) from exc
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidRuleSet(
                f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", source=source
            ) from exc
        return cls.loads(text, source=source)

    @classmethod
    def vietnam_default(cls) -> RuleSet:
        """The national Vietnamese rules shipped with sap_payments (loaded once, then shared)."""
        return _vietnam_default()


@functools.cache
def _vietnam_default() -> RuleSet:
    text = resources.files(_DEFAULT_PACKAGE).joinpath(_DEFAULT_FILE).read_text(encoding="utf-8")
    return RuleSet.loads(text, source=f"{_DEFAULT_PACKAGE.replace('.', '/')}/{_DEFAULT_FILE}")


# --------------------------------------------------------------------------- TOML parsing


class _Parser:
    """Turns a parsed TOML document into a RuleSet, naming the key of every problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> NoReturn:
        raise InvalidRuleSet(f"{key}: {message}", source=self.source)

    def keys(self, table: Mapping[str, object], allowed: tuple[str, ...], where: str) -> None:
        """Unknown keys are errors (they are usually typos); every allowed key is required."""
        prefix = f"{where}." if where else ""
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(f"{prefix}{key}", f"unknown key; {hint}(allowed: {', '.join(allowed)})")
        for key in allowed:
            if key not in table:
                self.fail(f"{prefix}{key}", "missing")

    def text(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            self.fail(key, f"must be a quoted string, not {_toml_type(value)}")
        if not value.strip():
            self.fail(key, "must not be empty")
        return value.strip()

    def rule_set(self, document: Mapping[str, Any]) -> RuleSet:
        self.keys(document, _TOP_KEYS, "")
        name = self.text(document["name"], "name")
        currency = self.text(document["currency"], "currency")
        if currency not in MINOR_UNITS:
            known = ", ".join(sorted(MINOR_UNITS))
            self.fail("currency", f"unknown currency {currency!r} (known: {known})")

        raw_levels = document["levels"]
        if not isinstance(raw_levels, list):
            self.fail("levels", "must be an array of [[levels]] tables")
        levels = tuple(
            self.level(entry, f"levels[{number}]", currency)
            for number, entry in enumerate(raw_levels, start=1)
        )
        _check_levels(levels, currency, self.source)

        raw_categories = document["categories"]
        if not isinstance(raw_categories, dict):
            self.fail("categories", "must be a table of [categories.CODE] tables")
        categories = {code: self.category(code, entry) for code, entry in raw_categories.items()}
        _check_categories(categories, self.source)
        return RuleSet(name=name, currency=currency, levels=levels, categories=categories)

    def level(self, entry: object, where: str, currency: str) -> StandardLevel:
        if not isinstance(entry, dict):
            self.fail(where, "must be a [[levels]] table")
        self.keys(entry, _LEVEL_KEYS, where)
        day = entry["effective_from"]
        if isinstance(day, str):
            self.fail(
                f"{where}.effective_from",
                f"write an unquoted TOML date such as 2021-07-01, not the string {day!r}",
            )
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            self.fail(
                f"{where}.effective_from",
                f"must be a TOML date such as 2021-07-01, not {_toml_type(day)}",
            )
        amount = entry["amount"]
        if type(amount) is not int:
            self.fail(
                f"{where}.amount",
                f"must be a TOML integer of minor units (đồng for VND), such as 360000, "
                f"not {_toml_type(amount)}",
            )
        if amount <= 0:
            self.fail(f"{where}.amount", f"must be greater than zero, not {amount}")
        basis = self.text(entry["basis"], f"{where}.basis")
        return StandardLevel(effective_from=day, amount=Money(amount, currency), basis=basis)

    def category(self, code: str, entry: object) -> Category:
        if not _CODE.fullmatch(code):
            self.fail(
                f"categories.{json.dumps(code, ensure_ascii=False)}",
                "a category code must be lower-case letters, digits and '_', "
                "starting with a letter",
            )
        where = f"categories.{code}"
        if not isinstance(entry, dict):
            self.fail(where, "must be a [categories.CODE] table")
        self.keys(entry, _CATEGORY_KEYS, where)
        return Category(
            code=code,
            coefficient=self.coefficient(entry["coefficient"], f"{where}.coefficient"),
            description=self.text(entry["description"], f"{where}.description"),
            basis=self.text(entry["basis"], f"{where}.basis"),
        )

    def coefficient(self, value: object, key: str) -> Decimal:
        """A coefficient is a quoted decimal string; TOML numbers are refused (floats inexact)."""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.fail(key, f'must be a quoted decimal such as "1.5", not {_toml_type(value)}')
        if not isinstance(value, str):
            self.fail(key, f'write the coefficient as a quoted decimal: coefficient = "{value}"')
        text = value.strip()
        if "," in text:
            fixed = text.replace(",", ".")
            self.fail(key, f'use a decimal point, not a comma: "{fixed}", not {value!r}')
        if not _COEFFICIENT.fullmatch(text):
            self.fail(key, f'must be a decimal number such as "1.5", not {value!r}')
        number = Decimal(text)
        if number <= 0:
            self.fail(key, f"must be greater than zero, not {value!r}")
        return number


def _toml_type(value: object) -> str:
    """What a TOML value is, in the words of the TOML format."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, dt.datetime):
        return "a date-time"
    if isinstance(value, dt.date):
        return "a date"
    if isinstance(value, dt.time):
        return "a time"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__
