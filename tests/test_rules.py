"""Rule sets: levels over time, coefficients, half-up amounts, TOML validation, fingerprints.

Every value of the shipped Vietnamese default is pinned here, so that changing the data file
without changing a test (and re-reading the decree) fails.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import subprocess
import sys
import textwrap
import unicodedata
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sap_payments.errors import InvalidInput, InvalidRuleSet, SapPaymentsError, UnknownCategory
from sap_payments.money import Money, round_half_up
from sap_payments.periods import Period
from sap_payments.rules import Category, RuleSet, StandardLevel

VN = RuleSet.vietnam_default()


def month(text: str) -> Period:
    return Period.parse(text)


# A small, complete rule set; tests edit one line of it to provoke one error.
SMALL = textwrap.dedent(
    """\
    name = "Test province"
    currency = "VND"

    [[levels]]
    effective_from = 2020-01-01
    amount = 100000
    basis = "Test decree, Art. 1"

    [[levels]]
    effective_from = 2022-01-01
    amount = 333333
    basis = "Test decree, Art. 2"

    [categories.alpha]
    coefficient = "1.5"
    description = "Alpha"
    basis = "Test decree, Art. 3(a)"

    [categories.beta]
    coefficient = "2.0"
    description = "Beta"
    basis = "Test decree, Art. 3(b)"
    """
)


def small(**replace: str) -> str:
    """SMALL with whole lines replaced: ``small(**{'amount = 333333': 'amount = -1'})``."""
    text = SMALL
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def levels(*pairs: tuple[str, int]) -> tuple[StandardLevel, ...]:
    return tuple(
        StandardLevel(dt.date.fromisoformat(day), Money.vnd(amount), f"basis {day}")
        for day, amount in pairs
    )


def category(code: str, coefficient: str) -> Category:
    return Category(code, Decimal(coefficient), f"{code} description", f"{code} basis")


# ------------------------------------------------------------------ the Vietnamese default


class TestVietnamDefaultLevels:
    @pytest.mark.parametrize(
        ("day", "dong"),
        [
            ("2014-01-01", 270_000),
            ("2021-06-30", 270_000),
            ("2021-07-01", 360_000),
            ("2024-06-30", 360_000),
            ("2024-07-01", 500_000),
            ("2030-12-31", 500_000),
        ],
    )
    def test_level_on(self, day: str, dong: int) -> None:
        assert VN.level_on(dt.date.fromisoformat(day)) == Money.vnd(dong)

    @pytest.mark.parametrize(
        ("period", "dong"),
        [
            ("2021-06", 270_000),
            ("2021-07", 360_000),
            ("2024-06", 360_000),
            ("2024-07", 500_000),
        ],
    )
    def test_level_for_period_uses_the_first_day(self, period: str, dong: int) -> None:
        assert VN.level_for(month(period)) == Money.vnd(dong)

    def test_levels_and_their_basis(self) -> None:
        assert [(lv.effective_from.isoformat(), lv.amount.minor) for lv in VN.levels] == [
            ("2014-01-01", 270_000),
            ("2021-07-01", 360_000),
            ("2024-07-01", 500_000),
        ]
        assert "136/2013" in VN.levels[0].basis
        assert "20/2021" in VN.levels[1].basis
        assert "76/2024" in VN.levels[2].basis

    def test_before_the_first_level_is_an_error(self) -> None:
        with pytest.raises(InvalidRuleSet, match=r"2013-12-31.*2014-01-01"):
            VN.level_on(dt.date(2013, 12, 31))
        with pytest.raises(InvalidRuleSet):
            VN.level_for(month("2013-12"))

    def test_level_on_refuses_a_datetime(self) -> None:
        with pytest.raises(TypeError):
            VN.level_on(dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.UTC))  # type: ignore[arg-type]

    def test_name_and_currency(self) -> None:
        assert VN.name == "Vietnam national social assistance (Decree 20/2021, Decree 76/2024)"
        assert VN.currency == "VND"


#: Decree 20/2021/ND-CP Art. 6(1), as confirmed against the text (see docs/rules.md).
EXPECTED_CATEGORIES = {
    "orphan_under4": ("2.5", "Art. 6(1)(a)", "Art. 5(1)"),
    "orphan_4plus": ("1.5", "Art. 6(1)(a)", "Art. 5(1)"),
    "student_16_22": ("1.5", "Art. 6(1)(b)", "Art. 5(2)"),
    "hiv_child_under4": ("2.5", "Art. 6(1)(c)", "Art. 5(3)"),
    "hiv_child_4plus": ("2.0", "Art. 6(1)(c)", "Art. 5(3)"),
    "single_parent_per_child": ("1.0", "Art. 6(1)(d)", "Art. 5(4)"),
    "elderly_poor_60_80": ("1.5", "Art. 6(1)(đ)", "Art. 5(5)(a)"),
    "elderly_poor_80plus": ("2.0", "Art. 6(1)(đ)", "Art. 5(5)(a)"),
    "elderly_poor_75_80": ("1.0", "Art. 6(1)(đ)", "Art. 5(5)(b)"),
    "elderly_80plus": ("1.0", "Art. 6(1)(đ)", "Art. 5(5)(c)"),
    "elderly_no_carer": ("3.0", "Art. 6(1)(đ)", "Art. 5(5)(d)"),
    "disabled_severe": ("2.0", "Art. 6(1)(e)", "Art. 5(6)"),
    "disabled_severe_child_elderly": ("2.5", "Art. 6(1)(e)", "Art. 5(6)"),
    "disabled_heavy": ("1.5", "Art. 6(1)(e)", "Art. 5(6)"),
    "disabled_heavy_child_elderly": ("2.0", "Art. 6(1)(e)", "Art. 5(6)"),
    "child_under3_poor": ("1.5", "Art. 6(1)(g)", "Art. 5(7)"),
    "hiv_poor": ("1.5", "Art. 6(1)(g)", "Art. 5(8)"),
}


class TestVietnamDefaultCategories:
    def test_exactly_the_expected_codes(self) -> None:
        assert list(VN.categories) == sorted(EXPECTED_CATEGORIES)

    @pytest.mark.parametrize("code", sorted(EXPECTED_CATEGORIES))
    def test_coefficient_and_basis(self, code: str) -> None:
        coefficient, point, beneficiary = EXPECTED_CATEGORIES[code]
        found = VN.categories[code]
        assert found.code == code
        assert VN.coefficient(code) == Decimal(coefficient)
        assert isinstance(VN.coefficient(code), Decimal)
        assert found.basis.startswith("Decree 20/2021/ND-CP, " + point), found.basis
        assert beneficiary in found.basis
        assert found.description.strip()

    def test_the_six_codes_other_modules_rely_on(self) -> None:
        assert VN.coefficient("orphan_under4") == Decimal("2.5")
        assert VN.coefficient("orphan_4plus") == Decimal("1.5")
        assert VN.coefficient("elderly_80plus") == Decimal("1.0")
        assert VN.coefficient("disabled_severe") == Decimal("2.0")
        assert VN.coefficient("disabled_severe_child_elderly") == Decimal("2.5")
        assert VN.coefficient("disabled_heavy") == Decimal("1.5")
        assert VN.coefficient("disabled_heavy_child_elderly") == Decimal("2.0")

    def test_unknown_category(self) -> None:
        with pytest.raises(UnknownCategory) as caught:
            VN.coefficient("elderly_90plus")
        assert caught.value.code == "elderly_90plus"
        assert str(caught.value) == "unknown category 'elderly_90plus' (not in the rule set)"
        assert isinstance(caught.value, LookupError)
        assert isinstance(caught.value, InvalidInput)
        assert isinstance(caught.value, SapPaymentsError)

    def test_categories_are_read_only(self) -> None:
        with pytest.raises(TypeError):
            VN.categories["x"] = VN.categories["orphan_4plus"]  # type: ignore[index]

    def test_vietnam_default_is_loaded_once(self) -> None:
        assert RuleSet.vietnam_default() is RuleSet.vietnam_default()

    def test_shipped_file_is_a_package_resource(self) -> None:
        text = (
            resources.files("sap_payments.data")
            .joinpath("vn_default_rules.toml")
            .read_text(encoding="utf-8")
        )
        assert RuleSet.loads(text) == VN


# ------------------------------------------------------------------ monthly amounts


class TestMonthlyAmount:
    def test_pinned_amounts(self) -> None:
        assert VN.monthly_amount(month("2021-07"), Decimal("1.5")) == Money.vnd(540_000)
        assert VN.monthly_amount(month("2021-06"), Decimal("1.5")) == Money.vnd(405_000)
        assert VN.monthly_amount(month("2024-07"), Decimal("2.5")) == Money.vnd(1_250_000)
        assert VN.monthly_amount(month("2024-07"), Decimal("3.0")) == Money.vnd(1_500_000)
        elderly = VN.coefficient("elderly_80plus")
        assert VN.monthly_amount(month("2024-06"), elderly) == Money.vnd(360_000)

    def test_half_rounds_up(self) -> None:
        rules = RuleSet.loads(SMALL)
        # 333,333 × 1.5 = 499,999.5 → 500,000
        assert rules.monthly_amount(month("2022-01"), Decimal("1.5")) == Money.vnd(500_000)

    def test_below_half_rounds_down(self) -> None:
        rules = RuleSet.loads(SMALL)
        # 333,333 × 1.23 = 409,999.59 → 410,000 ; 333,333 × 1.01 = 336,666.33 → 336,666
        assert rules.monthly_amount(month("2022-01"), Decimal("1.23")) == Money.vnd(410_000)
        assert rules.monthly_amount(month("2022-01"), Decimal("1.01")) == Money.vnd(336_666)
        # 100,000 × 1.0000049 = 100,000.49 → 100,000
        assert rules.monthly_amount(month("2021-12"), Decimal("1.0000049")) == Money.vnd(100_000)

    def test_int_coefficient(self) -> None:
        assert VN.monthly_amount(month("2024-07"), 2) == Money.vnd(1_000_000)  # type: ignore[arg-type]

    def test_zero_coefficient_pays_nothing(self) -> None:
        assert VN.monthly_amount(month("2024-07"), Decimal(0)) == Money.vnd(0)

    def test_float_is_refused_even_when_an_equal_decimal_is_cached(self) -> None:
        rules = RuleSet.loads(SMALL)
        rules.monthly_amount(month("2022-01"), Decimal("1.5"))
        with pytest.raises(TypeError, match="float"):
            rules.monthly_amount(month("2022-01"), 1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            rules.monthly_amount(month("2022-01"), True)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", ["-1", "NaN", "Infinity"])
    def test_negative_or_non_finite_is_refused(self, bad: str) -> None:
        with pytest.raises(InvalidInput):
            VN.monthly_amount(month("2024-07"), Decimal(bad))

    def test_before_the_first_level(self) -> None:
        with pytest.raises(InvalidRuleSet):
            VN.monthly_amount(month("2013-12"), Decimal("1.0"))

    def test_cached_results_are_the_same(self) -> None:
        rules = RuleSet.loads(SMALL)
        first = rules.monthly_amount(month("2022-03"), Decimal("1.5"))
        again = rules.monthly_amount(month("2022-03"), Decimal("1.50"))
        assert first == again == Money.vnd(500_000)
        # The cache is per month: the earlier level still applies to an earlier month.
        assert rules.monthly_amount(month("2021-03"), Decimal("1.5")) == Money.vnd(150_000)

    def test_cache_is_not_part_of_equality_or_hash(self) -> None:
        fresh = RuleSet.loads(SMALL)
        used = RuleSet.loads(SMALL)
        used.monthly_amount(month("2022-03"), Decimal("1.5"))
        assert fresh == used
        assert hash(fresh) == hash(used)

    def test_exact_for_many_digits(self) -> None:
        # A long coefficient must not be rounded twice (once by the context, once half-up).
        rules = RuleSet(
            "big",
            "VND",
            levels(("2020-01-01", 999_999_999_999)),
            {"a": category("a", "1")},
        )
        coefficient = Decimal("1.00000000000000000000000000005")
        # exact product: 999,999,999,999.00000000000000000004999… → rounds down
        assert rules.monthly_amount(month("2020-01"), coefficient).minor == 999_999_999_999
        coefficient = Decimal("1.0000000000005")
        # exact product: 999,999,999,999.4999999999995 → rounds down
        assert rules.monthly_amount(month("2020-01"), coefficient).minor == 999_999_999_999
        # 100,000 × 1.2500049999999999999999999999999 = 125,000.49999…99 exactly; at Python's
        # default 28 digits the product would first become 125,000.5 and then round up.
        coefficient = Decimal("1.2500049999999999999999999999999")
        assert RuleSet.loads(SMALL).monthly_amount(month("2021-01"), coefficient) == Money.vnd(
            125_000
        )

    @given(
        period=st.integers(min_value=2014 * 12, max_value=2035 * 12 + 11).map(Period),
        hundredths=st.integers(min_value=0, max_value=2_000),
    )
    def test_property_half_up_of_level_times_coefficient(
        self, period: Period, hundredths: int
    ) -> None:
        coefficient = Decimal(hundredths).scaleb(-2)  # up to 2 decimals, 0.00 … 20.00
        amount = VN.monthly_amount(period, coefficient)
        level = VN.level_for(period).minor
        assert type(amount.minor) is int
        assert amount.currency == "VND"
        assert amount.minor == round_half_up(Decimal(level) * coefficient)
        # An independent oracle in integer arithmetic: level × n / 100, halves up.
        assert amount.minor == (level * hundredths + 50) // 100

    @given(
        level=st.integers(min_value=1, max_value=10**9),
        coefficient=st.decimals(
            min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False
        ),
    )
    def test_property_for_any_level(self, level: int, coefficient: Decimal) -> None:
        rules = RuleSet("p", "VND", levels(("2000-01-01", level)), {"a": category("a", "1")})
        amount = rules.monthly_amount(month("2000-01"), coefficient)
        assert amount == Money.vnd(round_half_up(Decimal(level) * coefficient))
        hundredths = int(coefficient * 100)
        assert amount.minor == (level * hundredths + 50) // 100


# ------------------------------------------------------------------ TOML loading and errors


class TestLoads:
    def test_small_rule_set(self) -> None:
        rules = RuleSet.loads(SMALL, source="small.toml")
        assert rules.name == "Test province"
        assert rules.levels == (
            StandardLevel(dt.date(2020, 1, 1), Money.vnd(100_000), "Test decree, Art. 1"),
            StandardLevel(dt.date(2022, 1, 1), Money.vnd(333_333), "Test decree, Art. 2"),
        )
        assert rules.categories["alpha"] == Category(
            "alpha", Decimal("1.5"), "Alpha", "Test decree, Art. 3(a)"
        )

    def test_underscores_in_amounts_are_fine(self) -> None:
        rules = RuleSet.loads(small(**{"amount = 333333": "amount = 333_333"}))
        assert rules.levels[1].amount == Money.vnd(333_333)

    def test_load_from_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "province.toml"
        path.write_text(SMALL, encoding="utf-8")
        assert RuleSet.load(path) == RuleSet.loads(SMALL)
        assert RuleSet.load(str(path)) == RuleSet.loads(SMALL)

    def test_load_accepts_a_byte_order_mark(self, tmp_path: Path) -> None:
        path = tmp_path / "bom.toml"
        path.write_bytes(b"\xef\xbb\xbf" + SMALL.encode("utf-8"))
        assert RuleSet.load(path) == RuleSet.loads(SMALL)

    def test_load_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "nope.toml"
        with pytest.raises(InvalidRuleSet, match="cannot read") as caught:
            RuleSet.load(path)
        assert caught.value.source == str(path)

    def test_load_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.toml"
        path.write_bytes(SMALL.replace("Alpha", "Alph\u00e9").encode("latin-1"))
        with pytest.raises(InvalidRuleSet, match="UTF-8"):
            RuleSet.load(path)

    def test_not_toml(self) -> None:
        with pytest.raises(InvalidRuleSet, match=r"^x\.toml: not valid TOML"):
            RuleSet.loads("name = ", source="x.toml")

    def test_source_defaults_to_string(self) -> None:
        with pytest.raises(InvalidRuleSet, match=r"^<string>: "):
            RuleSet.loads("")


def invalid(text: str) -> InvalidRuleSet:
    with pytest.raises(InvalidRuleSet) as caught:
        RuleSet.loads(text, source="prov.toml")
    assert caught.value.source == "prov.toml"
    assert str(caught.value).startswith("prov.toml: ")
    return caught.value


class TestValidationErrors:
    @pytest.mark.parametrize("literal", ["1.5", "1.0", "2.50e0"])
    def test_float_coefficient(self, literal: str) -> None:
        error = invalid(small(**{'coefficient = "1.5"': f"coefficient = {literal}"}))
        message = str(error)
        assert "categories.alpha.coefficient" in message
        assert "quoted" in message

    def test_int_coefficient_is_also_refused(self) -> None:
        error = invalid(small(**{'coefficient = "2.0"': "coefficient = 2"}))
        assert (
            "categories.beta.coefficient: write the coefficient as a quoted decimal: "
            'coefficient = "2"'
        ) in str(error)

    @pytest.mark.parametrize(
        ("written", "hint"),
        [
            ('"1,5"', 'use a decimal point, not a comma: "1.5"'),
            ('"-1.5"', "decimal number"),
            ('"1e2"', "decimal number"),
            ('"NaN"', "decimal number"),
            ('"abc"', "decimal number"),
            ('""', "decimal number"),
            ('"0"', "greater than zero"),
            ('"0.00"', "greater than zero"),
            ("true", "quoted decimal"),
            ("[1]", "quoted decimal"),
        ],
    )
    def test_bad_coefficient_text(self, written: str, hint: str) -> None:
        error = invalid(small(**{'coefficient = "1.5"': f"coefficient = {written}"}))
        assert "categories.alpha.coefficient: " in str(error)
        assert hint in str(error)

    def test_coefficient_with_spaces_and_trailing_zeros(self) -> None:
        rules = RuleSet.loads(small(**{'coefficient = "1.5"': 'coefficient = " 1.50 "'}))
        assert rules.coefficient("alpha") == Decimal("1.5")

    def test_unknown_top_level_key(self) -> None:
        error = invalid(SMALL.replace('currency = "VND"', 'currency = "VND"\ncurency = "VND"'))
        assert "curency: unknown key; did you mean 'currency'?" in str(error)

    def test_unknown_level_key(self) -> None:
        error = invalid(small(**{"amount = 333333": "amount = 333333\namout = 1"}))
        assert "levels[2].amout: unknown key; did you mean 'amount'?" in str(error)

    def test_unknown_category_key(self) -> None:
        error = invalid(small(**{'description = "Beta"': 'description = "Beta"\nnote = "x"'}))
        assert "categories.beta.note: unknown key" in str(error)
        assert "allowed: coefficient, description, basis" in str(error)

    def test_misspelt_table(self) -> None:
        error = invalid(SMALL.replace("[categories.beta]", "[category.beta]"))
        assert "category: unknown key; did you mean 'categories'?" in str(error)

    def test_unsorted_dates(self) -> None:
        error = invalid(small(**{"effective_from = 2022-01-01": "effective_from = 2019-01-01"}))
        assert (
            "levels[2].effective_from: 2019-01-01 is earlier than levels[1].effective_from"
        ) in str(error)
        assert "date order" in str(error)

    def test_duplicate_dates(self) -> None:
        error = invalid(small(**{"effective_from = 2022-01-01": "effective_from = 2020-01-01"}))
        assert ("levels[2].effective_from: 2020-01-01 repeats levels[1].effective_from") in str(
            error
        )

    @pytest.mark.parametrize(
        ("line", "key"),
        [
            ('name = "Test province"\n', "name"),
            ('currency = "VND"\n', "currency"),
            ("amount = 333333\n", "levels[2].amount"),
            ("effective_from = 2020-01-01\n", "levels[1].effective_from"),
            ('basis = "Test decree, Art. 1"\n', "levels[1].basis"),
            ('coefficient = "1.5"\n', "categories.alpha.coefficient"),
            ('description = "Beta"\n', "categories.beta.description"),
            ('basis = "Test decree, Art. 3(b)"\n', "categories.beta.basis"),
        ],
    )
    def test_missing_field(self, line: str, key: str) -> None:
        error = invalid(small(**{line: ""}))
        assert f"prov.toml: {key}: missing" == str(error)

    def test_missing_levels(self) -> None:
        text = SMALL.split("[[levels]]")[0] + "[categories" + SMALL.split("[categories", 1)[1]
        assert "levels: missing" in str(invalid(text))

    def test_empty_levels(self) -> None:
        text = 'name = "x"\ncurrency = "VND"\nlevels = []\n[categories.a]\n' + (
            'coefficient = "1"\ndescription = "a"\nbasis = "b"\n'
        )
        assert "levels: at least one" in str(invalid(text))

    def test_empty_categories(self) -> None:
        text = "categories = {}\n" + SMALL.split("[categories")[0]
        assert "categories: at least one category" in str(invalid(text))

    @pytest.mark.parametrize(
        ("written", "hint"),
        [
            ("-360000", "greater than zero, not -360000"),
            ("0", "greater than zero, not 0"),
            ("333333.0", "must be a TOML integer"),
            ('"333333"', "must be a TOML integer"),
            ("true", "must be a TOML integer"),
        ],
    )
    def test_bad_amount(self, written: str, hint: str) -> None:
        error = invalid(small(**{"amount = 333333": f"amount = {written}"}))
        assert "levels[2].amount: " in str(error)
        assert hint in str(error)

    @pytest.mark.parametrize(
        ("written", "hint"),
        [
            ('"2022-01-01"', "unquoted TOML date"),
            ("2022-01-01T00:00:00", "not a date-time"),
            ("20220101", "not an integer"),
        ],
    )
    def test_bad_effective_from(self, written: str, hint: str) -> None:
        error = invalid(small(**{"effective_from = 2022-01-01": f"effective_from = {written}"}))
        assert "levels[2].effective_from: " in str(error)
        assert hint in str(error)

    def test_unknown_currency(self) -> None:
        error = invalid(small(**{'currency = "VND"': 'currency = "XYZ"'}))
        assert "currency: unknown currency 'XYZ'" in str(error)

    def test_currency_applies_to_amounts(self) -> None:
        rules = RuleSet.loads(small(**{'currency = "VND"': 'currency = "USD"'}))
        assert rules.level_for(month("2022-01")) == Money(333_333, "USD")

    @pytest.mark.parametrize(("line", "key"), [('name = "Test province"', "name")])
    def test_blank_text(self, line: str, key: str) -> None:
        error = invalid(small(**{line: 'name = "   "'}))
        assert f"{key}: must not be empty" in str(error)

    def test_blank_basis(self) -> None:
        error = invalid(small(**{'basis = "Test decree, Art. 3(a)"': 'basis = ""'}))
        assert "categories.alpha.basis: must not be empty" in str(error)

    def test_bad_category_code(self) -> None:
        error = invalid(SMALL.replace("[categories.beta]", '[categories."Beta Code"]'))
        assert 'categories."Beta Code": a category code must be lower-case' in str(error)

    def test_level_entry_not_a_table(self) -> None:
        text = 'name = "x"\ncurrency = "VND"\nlevels = [1]\n[categories.a]\n' + (
            'coefficient = "1"\ndescription = "a"\nbasis = "b"\n'
        )
        assert "levels[1]: must be a [[levels]] table" in str(invalid(text))


# ------------------------------------------------------------------ direct construction


class TestConstruction:
    def test_currency_mismatch(self) -> None:
        mixed = (
            StandardLevel(dt.date(2020, 1, 1), Money.vnd(100), "a"),
            StandardLevel(dt.date(2021, 1, 1), Money(100, "USD"), "b"),
        )
        with pytest.raises(InvalidRuleSet, match=r"levels\[2\]\.amount: currency USD differs"):
            RuleSet("x", "VND", mixed, {"a": category("a", "1")})

    def test_unsorted_and_duplicate(self) -> None:
        with pytest.raises(InvalidRuleSet, match=r"levels\[2\]\.effective_from: .* earlier"):
            RuleSet(
                "x", "VND", levels(("2021-01-01", 1), ("2020-01-01", 2)), {"a": category("a", "1")}
            )
        with pytest.raises(InvalidRuleSet, match=r"levels\[2\]\.effective_from: .* repeats"):
            RuleSet(
                "x", "VND", levels(("2021-01-01", 1), ("2021-01-01", 2)), {"a": category("a", "1")}
            )

    def test_empty(self) -> None:
        with pytest.raises(InvalidRuleSet, match="levels: at least one"):
            RuleSet("x", "VND", (), {"a": category("a", "1")})
        with pytest.raises(InvalidRuleSet, match="categories: at least one"):
            RuleSet("x", "VND", levels(("2021-01-01", 1)), {})

    def test_category_under_the_wrong_code(self) -> None:
        with pytest.raises(InvalidRuleSet, match=r"categories\.b: holds category 'a'"):
            RuleSet("x", "VND", levels(("2021-01-01", 1)), {"b": category("a", "1")})

    def test_values_are_checked(self) -> None:
        with pytest.raises(InvalidRuleSet):
            StandardLevel(dt.date(2020, 1, 1), Money.vnd(0), "a")
        with pytest.raises(InvalidRuleSet):
            StandardLevel(dt.date(2020, 1, 1), Money.vnd(-5), "a")
        with pytest.raises(TypeError):
            StandardLevel(dt.datetime(2020, 1, 1, tzinfo=dt.UTC), Money.vnd(5), "a")
        with pytest.raises(TypeError):
            Category("a", 1.5, "d", "b")  # type: ignore[arg-type]
        with pytest.raises(InvalidRuleSet):
            Category("a", Decimal("-1"), "d", "b")
        with pytest.raises(InvalidRuleSet):
            Category("A", Decimal("1"), "d", "b")
        with pytest.raises(InvalidRuleSet):
            Category("a", Decimal("1"), "d", " ")

    def test_levels_list_becomes_a_tuple_and_categories_are_sorted(self) -> None:
        rules = RuleSet(
            "x",
            "VND",
            list(levels(("2021-01-01", 1))),
            {"b": category("b", "2"), "a": category("a", "1")},
        )
        assert isinstance(rules.levels, tuple)
        assert list(rules.categories) == ["a", "b"]

    def test_pickle_round_trip(self) -> None:
        again = pickle.loads(pickle.dumps(VN))
        assert again == VN
        assert again.fingerprint() == VN.fingerprint()
        assert again.monthly_amount(month("2024-07"), Decimal("1.5")) == Money.vnd(750_000)


# ------------------------------------------------------------------ fingerprints


class TestFingerprint:
    def test_is_hex_sha256(self) -> None:
        value = VN.fingerprint()
        assert len(value) == 64
        assert int(value, 16) >= 0

    def test_pinned_for_a_fixed_rule_set(self) -> None:
        # Fingerprints are recorded with payrolls: a change of the serialisation must be a
        # deliberate decision (bump the format tag), never an accident.
        assert RuleSet.loads(SMALL).fingerprint() == PINNED_SMALL_FINGERPRINT

    def test_same_text_same_fingerprint(self) -> None:
        assert RuleSet.loads(SMALL).fingerprint() == RuleSet.loads(SMALL).fingerprint()

    def test_independent_of_key_and_table_order(self) -> None:
        alpha, beta = SMALL.split("[categories.alpha]")[1].split("[categories.beta]")
        swapped = (
            SMALL.split("[categories.alpha]")[0]
            + "[categories.beta]"
            + beta
            + "\n[categories.alpha]"
            + alpha
        )
        reordered = swapped.replace(
            'coefficient = "2.0"\ndescription = "Beta"', 'description = "Beta"\ncoefficient = "2.0"'
        )
        assert RuleSet.loads(reordered).fingerprint() == RuleSet.loads(SMALL).fingerprint()

    def test_independent_of_how_a_coefficient_is_written(self) -> None:
        written = small(**{'coefficient = "2.0"': 'coefficient = "2.000"'})
        assert RuleSet.loads(written).fingerprint() == RuleSet.loads(SMALL).fingerprint()

    def test_independent_of_unicode_normalisation(self) -> None:
        text = "Người khuyết tật đặc biệt nặng"
        composed = SMALL.replace("Alpha", unicodedata.normalize("NFC", text))
        decomposed = SMALL.replace("Alpha", unicodedata.normalize("NFD", text))
        assert composed != decomposed
        assert RuleSet.loads(composed).fingerprint() == RuleSet.loads(decomposed).fingerprint()

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("amount = 333333", "amount = 333334"),
            ("effective_from = 2022-01-01", "effective_from = 2022-02-01"),
            ('coefficient = "1.5"', 'coefficient = "1.51"'),
            ('description = "Beta"', 'description = "Beta!"'),
            ('basis = "Test decree, Art. 1"', 'basis = "Test decree, Art. 1(1)"'),
            ('name = "Test province"', 'name = "Test province 2"'),
            ('currency = "VND"', 'currency = "JPY"'),
            ("[categories.beta]", "[categories.gamma]"),
        ],
    )
    def test_changes_when_a_value_changes(self, old: str, new: str) -> None:
        changed = RuleSet.loads(small(**{old: new}))
        assert changed.fingerprint() != RuleSet.loads(SMALL).fingerprint()

    def test_stable_across_processes(self) -> None:
        code = (
            "from sap_payments.rules import RuleSet;print(RuleSet.vietnam_default().fingerprint())"
        )
        seen = set()
        for seed in ("1", "2"):
            result = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                env={**_environment(), "PYTHONHASHSEED": seed},
            )
            seen.add(result.stdout.strip())
        assert seen == {VN.fingerprint()}


PINNED_SMALL_FINGERPRINT = "301f1cd070166a9dbd7174f6759230863814bad1393d22cd1ebc3c5c4e34eae0"


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # The child must import the same sap_payments as this process.
    src = str(Path(sys.modules[RuleSet.__module__].__file__ or "").resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env
