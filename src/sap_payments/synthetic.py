"""Synthetic beneficiary rosters in the agency roster format v1.

The demo, the tests and the benchmarks need rosters that look like the real thing without holding
anybody's personal data. This module makes them, modelled on the 2021 cashless pilot in Phú Lộc
district, Thừa Thiên Huế: 17 communes, 8,364 beneficiaries paid, 7,951 accounts opened (so about
413 paid through a proxy), ViettelPay as the e-wallet, VietinBank as the bank and the provincial
post office paying cash.

What the rows model, and why:

* a take-over of the caseload by this system at ``RosterSpec.takeover``: most beneficiaries are
  existing ones paid through the month before (no arrears), a few have back-dated decisions (they
  get arrears), a few start at the take-over, and a few are ceased or suspended, so every branch of
  the entitlement rules has rows to work on;
* the categories of Decree 20/2021/NĐ-CP in a plausible mix, with birth dates that fit each one
  (80 or older at the take-over for ``elderly_80plus``, under 4 for ``orphan_under4``, ...);
* Vietnamese names in NFC, 12-digit CCCD numbers (province of birth, sex and century, year of
  birth, serial) that are unique by construction, phone numbers in both the local and the ``+84``
  form so that normalisation is exercised, fallback addresses (a cash pay point behind a wallet);
* proxies: young children have a guardian; the total share of rows paid through a proxy follows
  ``RosterSpec.proxy_per_mille`` (49‰ ≈ 413 of 8,364), older minors and adults share what is left.

Everything is derived from ``random.Random(spec.seed)`` in a fixed order, so one spec always gives
the same rows and, through :func:`write_roster_csv`, byte-identical files. Rows are generated one
at a time (a generator), so a million-row roster never sits in memory. Unique values (ids, national
ids, phone and account numbers) are bijections of the row index, so uniqueness needs no set.

The commune weights are illustrative, not census figures.

>>> rows = list(roster_rows(RosterSpec(n=3)))
>>> [row[0] for row in rows]
['PL-000001', 'PL-000002', 'PL-000003']
>>> len(rows[0]) == len(ROSTER_COLUMNS)
True
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import os
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import attrs

from sap_payments._files import atomic_file
from sap_payments.periods import Period
from sap_payments.roster import AREA_COLUMNS, ROSTER_COLUMNS

__all__ = [
    "AREA_COLUMNS",
    "CATEGORY_PER_MILLE",
    "PHU_LOC_AREAS",
    "ROSTER_COLUMNS",
    "AreaRow",
    "RosterSpec",
    "roster_rows",
    "write_areas_csv",
    "write_roster_csv",
    "write_roster_xlsx",
]


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@attrs.frozen
class AreaRow:
    """One commune with its district and province, as in the areas file (codes are strings)."""

    province_code: str
    province_name: str = attrs.field(converter=_nfc)
    district_code: str
    district_name: str = attrs.field(converter=_nfc)
    commune_code: str
    commune_name: str = attrs.field(converter=_nfc)


def _phu_loc(code: str, name: str) -> AreaRow:
    return AreaRow("46", "Tỉnh Thừa Thiên Huế", "482", "Huyện Phú Lộc", code, name)


#: The 17 communes of the 2021 pilot (GSO codes; Phú Lộc district 482, Thừa Thiên Huế 46).
PHU_LOC_AREAS: tuple[AreaRow, ...] = (
    _phu_loc("20107", "Thị trấn Phú Lộc"),
    _phu_loc("20110", "Thị trấn Lăng Cô"),
    _phu_loc("20113", "Xã Vinh Mỹ"),
    _phu_loc("20116", "Xã Vinh Hưng"),
    _phu_loc("20122", "Xã Giang Hải"),
    _phu_loc("20125", "Xã Vinh Hiền"),
    _phu_loc("20128", "Xã Lộc Bổn"),
    _phu_loc("20131", "Thị trấn Lộc Sơn"),
    _phu_loc("20134", "Xã Lộc Bình"),
    _phu_loc("20137", "Xã Lộc Vĩnh"),
    _phu_loc("20140", "Xã Lộc An"),
    _phu_loc("20143", "Xã Lộc Điền"),
    _phu_loc("20146", "Xã Lộc Thủy"),
    _phu_loc("20149", "Xã Lộc Trì"),
    _phu_loc("20152", "Xã Lộc Tiến"),
    _phu_loc("20155", "Xã Lộc Hòa"),
    _phu_loc("20158", "Xã Xuân Lộc"),
)

# Relative caseload of each commune (illustrative): the two towns and the large lagoon-side
# communes carry more beneficiaries than the small hill communes. Communes not listed weigh 100.
_COMMUNE_WEIGHTS: dict[str, int] = {
    "20107": 190, "20110": 150, "20113": 95, "20116": 85, "20122": 120, "20125": 105,
    "20128": 110, "20131": 100, "20134": 55, "20137": 70, "20140": 140, "20143": 135,
    "20146": 80, "20149": 45, "20152": 75, "20155": 40, "20158": 30,
}  # fmt: skip

#: Share of each category in a generated roster, per mille (sums to 1000).
CATEGORY_PER_MILLE: tuple[tuple[str, int], ...] = (
    ("elderly_80plus", 450),
    ("disabled_heavy", 200),
    ("disabled_severe", 120),
    ("disabled_heavy_child_elderly", 80),
    ("disabled_severe_child_elderly", 70),
    ("orphan_4plus", 60),
    ("orphan_under4", 20),
)

_ID_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,50}")
_SERIALS = 1_000_000  # the 6-digit serial of a CCCD number
# Province-of-birth codes of the CCCD: Thừa Thiên Huế first; each further block of a million rows
# uses the next code, so national ids stay unique by construction past a million rows.
_BIRTH_PROVINCES = ("046", "045", "048", "049", "044", "040", "042", "001", "079")
_MAX_ROWS = _SERIALS * len(_BIRTH_PROVINCES)
# Multipliers coprime with 10, so (index * m + offset) mod 10**k is a bijection on 0 .. 10**k - 1.
_SERIAL_MUL = 387_419
_PHONE_MUL = 7_654_321  # mod 10**7: the subscriber part of a phone number
_ACCOUNT_MUL = 3_141_592_653  # mod 10**10: the variable part of an account number


def _check_per_mille(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 1000:
        raise ValueError(
            f"{attribute.name} must be an int from 0 to 1000 (per mille), got {value!r}"
        )


def _check_takeover(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    period = Period.parse(value)
    if not 1930 <= period.year <= 2200:
        raise ValueError(f"takeover must be a month between 1930 and 2200, got {value!r}")


def _to_areas(areas: Iterable[AreaRow]) -> tuple[AreaRow, ...]:
    return tuple(areas)


def _check_areas(instance: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    if not value or not all(isinstance(area, AreaRow) for area in value):
        raise ValueError("areas must be a non-empty tuple of AreaRow")


def _check_prefix(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _ID_PREFIX.fullmatch(value):
        raise ValueError(f"id_prefix must be 1-50 characters of [A-Za-z0-9._-], got {value!r}")


@attrs.frozen
class RosterSpec:
    """What to generate. Shares are per mille of rows (integers out of 1000).

    Args:
        n: number of rows (up to 9,000,000).
        seed: seed of the ``random.Random`` every value is drawn from.
        takeover: the first month this system pays (``YYYY-MM``); ages are measured on its first
            day, existing beneficiaries are paid through the month before.
        areas: communes to spread beneficiaries over; the Phú Lộc communes carry their own
            weights, other communes weigh the same.
        id_prefix: beneficiary ids are ``<id_prefix>-000001``, ``<id_prefix>-000002``, ...
        ewallet_share, bank_share, postal_share: channel mix, per mille; they must sum to 1000.
        proxy_per_mille: share of all rows paid through a proxy (49‰ ≈ 413 of 8,364).
        guardian_per_mille: share of young children (under 6) with a guardian proxy. They come
            first out of ``proxy_per_mille``; older minors and adults share the rest, a minor ten
            times as likely as an adult.
    """

    n: int = attrs.field(default=8364, validator=attrs.validators.instance_of(int))
    seed: int = attrs.field(default=2021, validator=attrs.validators.instance_of(int))
    takeover: str = attrs.field(default="2021-09", validator=_check_takeover)
    areas: tuple[AreaRow, ...] = attrs.field(
        default=PHU_LOC_AREAS, converter=_to_areas, validator=_check_areas
    )
    id_prefix: str = attrs.field(default="PL", validator=_check_prefix)
    ewallet_share: int = attrs.field(default=930, validator=_check_per_mille)
    bank_share: int = attrs.field(default=40, validator=_check_per_mille)
    postal_share: int = attrs.field(default=30, validator=_check_per_mille)
    proxy_per_mille: int = attrs.field(default=49, validator=_check_per_mille)
    guardian_per_mille: int = attrs.field(default=970, validator=_check_per_mille)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.n <= _MAX_ROWS:
            raise ValueError(f"n must be between 0 and {_MAX_ROWS:,}, got {self.n}")
        shares = self.ewallet_share + self.bank_share + self.postal_share
        if shares != 1000:
            raise ValueError(f"channel shares must sum to 1000 per mille, got {shares}")


# --- names -------------------------------------------------------------------------------------

# Family names with rough national frequencies (per mille), leaning to the central coast
# (more Võ and Hồ than Vũ; Tôn Thất of the Huế royal lineage).
_FAMILY_NAMES: tuple[tuple[str, int], ...] = (
    ("Nguyễn", 360), ("Trần", 110), ("Lê", 100), ("Phạm", 60), ("Hoàng", 40), ("Huỳnh", 20),
    ("Phan", 45), ("Võ", 50), ("Đặng", 21), ("Bùi", 20), ("Đỗ", 14), ("Hồ", 25), ("Ngô", 13),
    ("Dương", 10), ("Lý", 5), ("Trương", 15), ("Đoàn", 12), ("Tôn Thất", 8), ("Hà", 8),
    ("Cao", 9), ("Lương", 8), ("Mai", 7),
)  # fmt: skip
# Middle names by sex and generation: older women are nearly all "Thị".
_MIDDLE: dict[tuple[bool, bool], tuple[tuple[str, int], ...]] = {
    (False, True): (("Văn", 600), ("Hữu", 90), ("Đức", 80), ("Công", 60), ("Quang", 50),
                    ("Đình", 60), ("Ngọc", 30), ("Xuân", 30)),
    (True, True): (("Thị", 820), ("Thị Kim", 40), ("Thị Thu", 40), ("Thị Ngọc", 30),
                   ("Thị Thanh", 40), ("Ngọc", 15), ("Kim", 15)),
    (False, False): (("Văn", 250), ("Minh", 150), ("Đức", 120), ("Hữu", 80), ("Quang", 100),
                     ("Gia", 80), ("Bảo", 80), ("Anh", 70), ("Thanh", 70)),
    (True, False): (("Thị", 350), ("Thị Kim", 50), ("Ngọc", 120), ("Thu", 80), ("Khánh", 70),
                    ("Bảo", 60), ("Minh", 70), ("Thị Thu", 60), ("Như", 70), ("Phương", 70)),
}  # fmt: skip
_GIVEN_MALE = (
    "An", "Bình", "Châu", "Cường", "Dũng", "Đạt", "Hải", "Hiếu", "Hòa", "Hùng", "Huy", "Khoa",
    "Lâm", "Lộc", "Long", "Minh", "Nam", "Nhân", "Phúc", "Phước", "Quang", "Quyết", "Sơn", "Tài",
    "Tâm", "Thắng", "Thành", "Thiện", "Toàn", "Trung", "Tuấn", "Vinh", "Xuân",
)  # fmt: skip
_GIVEN_FEMALE = (
    "An", "Bình", "Châu", "Cúc", "Đào", "Hà", "Hằng", "Hạnh", "Hoa", "Hồng", "Hương", "Lan",
    "Liên", "Linh", "Loan", "Mai", "Nga", "Nhung", "Phương", "Sương", "Tâm", "Thảo", "Thủy",
    "Trang", "Tuyết", "Vân", "Xuân", "Yến",
)  # fmt: skip
_NAME_POOL_BITS = 12  # a pool of 4,096 names per (sex, generation): one draw per name
_NAME_POOL_SEED = 1975
_OLD_GENERATION_BEFORE = 1975  # born before this year: the older naming fashion


def _weighted_table(items: Sequence[tuple[str, int]]) -> list[str]:
    return [value for value, weight in items for _ in range(weight)]


@functools.cache
def _name_pools() -> tuple[tuple[str, ...], ...]:
    """Four pools of NFC full names, indexed ``old * 2 + female``, drawn by the weights above."""
    rng = random.Random(_NAME_POOL_SEED)  # noqa: S311 - synthetic test data, not security
    families = _weighted_table(_FAMILY_NAMES)
    pools = []
    for old in (False, True):
        for female in (False, True):
            middles = _weighted_table(_MIDDLE[female, old])
            givens = _GIVEN_FEMALE if female else _GIVEN_MALE
            pools.append(
                tuple(
                    _nfc(f"{rng.choice(families)} {rng.choice(middles)} {rng.choice(givens)}")
                    for _ in range(1 << _NAME_POOL_BITS)
                )
            )
    return tuple(pools)


# --- categories and ages -----------------------------------------------------------------------

_YOUNG, _MINOR, _ADULT = 0, 1, 2  # under 6, 6 to 15, 16 and over
_RELATIONS_MINOR, _RELATIONS_ELDERLY, _RELATIONS_ADULT = 0, 1, 2
_SPOUSE = "spouse"  # becomes "vợ" or "chồng" by the beneficiary's sex


@attrs.frozen
class _Band:
    """An age band of a category: ages min_age..max_age (inclusive) on the take-over date."""

    min_age: int
    max_age: int
    per_mille: int  # of the category
    group: int  # _YOUNG, _MINOR or _ADULT
    relations: int  # which proxy relations fit
    skew_young: bool = False  # more people near min_age (the old are fewer at each older age)
    eligible_at_age: int = 0  # the decision cannot start before this age


_CHILD_ELDERLY = (
    _Band(0, 5, 30, _YOUNG, _RELATIONS_MINOR),
    _Band(6, 15, 120, _MINOR, _RELATIONS_MINOR),
    _Band(60, 99, 850, _ADULT, _RELATIONS_ELDERLY, skew_young=True, eligible_at_age=60),
)
_DISABLED_ADULT = (_Band(16, 59, 1000, _ADULT, _RELATIONS_ADULT),)
# category -> (per mille female, age bands)
_CATEGORY_MODEL: dict[str, tuple[int, tuple[_Band, ...]]] = {
    "elderly_80plus": (
        620,
        (_Band(80, 100, 1000, _ADULT, _RELATIONS_ELDERLY, skew_young=True, eligible_at_age=80),),
    ),
    "disabled_heavy": (480, _DISABLED_ADULT),
    "disabled_severe": (480, _DISABLED_ADULT),
    "disabled_heavy_child_elderly": (560, _CHILD_ELDERLY),
    "disabled_severe_child_elderly": (560, _CHILD_ELDERLY),
    "orphan_4plus": (
        490,
        (
            # Under 16 (Decree 20/2021 Art. 5(1)); at 16-22 in school it is another category.
            _Band(4, 5, 167, _YOUNG, _RELATIONS_MINOR),
            _Band(6, 15, 833, _MINOR, _RELATIONS_MINOR),
        ),
    ),
    "orphan_under4": (490, (_Band(0, 3, 1000, _YOUNG, _RELATIONS_MINOR),)),
}
_MINOR_PROXY_WEIGHT = 10  # an older minor is this many times as likely to have a proxy as an adult

_RELATIONS: dict[int, tuple[tuple[str, int], ...]] = {
    _RELATIONS_MINOR: (("người giám hộ", 900), ("cán bộ xã", 100)),
    _RELATIONS_ELDERLY: (("con", 550), ("cháu", 250), (_SPOUSE, 100), ("cán bộ xã", 100)),
    _RELATIONS_ADULT: (
        ("con", 200), (_SPOUSE, 300), ("người giám hộ", 300), ("cháu", 100), ("cán bộ xã", 100),
    ),
}  # fmt: skip
# Years between the beneficiary's and the proxy's birth, by relation: (least, spread).
_PROXY_YEARS_AFTER: dict[str, tuple[int, int]] = {
    "con": (20, 20),
    "cháu": (40, 25),
    _SPOUSE: (-6, 12),
}

# --- periods, status, channels -----------------------------------------------------------------

_EXISTING_PER_MILLE = 960  # paid through the month before the take-over
_BACKDATED_PER_MILLE = 30  # decision starts 1-3 months before the take-over: arrears
_EXISTING_SINCE_MONTHS = 80  # existing decisions start 80..3 months before (2015-01..2021-06)
_CEASED_PER_MILLE = 3
_SUSPENDED_PER_MILLE = 5
_COEFFICIENT_OVERRIDE_PER_MILLE = 5
_COEFFICIENT_OVERRIDES = ("1.5", "2.0", "2.0", "2.5")
_NO_NATIONAL_ID_PER_MILLE = 40  # of children: birth not registered with a personal id yet
_INTERNATIONAL_MSISDN_PER_MILLE = 200
# Viettel mobile prefixes; the +84 form is only ever written for 09x numbers.
_LOCAL_PREFIXES = ("096", "097", "098", "032", "033", "034", "035", "036", "037", "038", "039")
_INTERNATIONAL_PREFIXES = ("+8496", "+8497", "+8498")
# NAPAS BIN, a fixed start of the account number, per mille of bank rows.
_BANKS: tuple[tuple[tuple[str, str], int], ...] = (
    (("970415", "10"), 900),  # VietinBank: 12 digits
    (("970405", "400"), 40),  # Agribank: 13 digits
    (("970418", "5510"), 30),  # BIDV: 14 digits
    (("970436", "100"), 30),  # Vietcombank: 13 digits
)
_EWALLET_PAY_POINT_PER_MILLE = 300  # cash fallback behind a wallet
_BANK_PAY_POINT_PER_MILLE = 600
_BANK_MSISDN_PER_MILLE = 400
_POSTAL_MSISDN_PER_MILLE = 250  # a contact number
_HOME_DELIVERY_PER_MILLE = 200  # of postal rows: cannot travel to the post office
_EXPIRED_MANDATE_PER_MILLE = 30
_LATER_MANDATE_PER_MILLE = 150  # valid a year longer than most


@attrs.frozen
class _Profile:
    """One (category, age band) with the day range its birth dates are drawn from."""

    category: str
    female_p: float
    newest_day: int  # index into _Calendar.days of the youngest birth date
    span: int  # number of possible birth dates
    skew_young: bool
    group: int
    relations: int
    eligible_months: int  # months after the birth month the decision may start


@attrs.frozen
class _Calendar:
    """Birth dates from ``first_year`` to the take-over, with what a row needs from each."""

    first_year: int
    days: tuple[str, ...]  # ISO dates
    years: tuple[int, ...]
    months: tuple[int, ...]  # Period ordinals

    def index(self, day: dt.date) -> int:
        return day.toordinal() - dt.date(self.first_year, 1, 1).toordinal()


@functools.cache
def _calendar(takeover: str) -> _Calendar:
    reference = Period.parse(takeover).first_day
    first_year = reference.year - 102
    start = dt.date(first_year, 1, 1).toordinal()
    dates = [dt.date.fromordinal(o) for o in range(start, reference.toordinal() + 1)]
    return _Calendar(
        first_year,
        tuple(d.isoformat() for d in dates),
        tuple(d.year for d in dates),
        tuple(d.year * 12 + d.month - 1 for d in dates),
    )


def _profiles(calendar: _Calendar, reference: dt.date) -> list[tuple[_Profile, int, int]]:
    """Every (category, band) as a profile, with the category's and the band's weights."""
    out = []
    for category, category_per_mille in CATEGORY_PER_MILLE:
        female_per_mille, bands = _CATEGORY_MODEL[category]
        for band in bands:
            # Born after the day the person would turn max_age + 1, on or before turning min_age;
            # babies at least a month before the take-over, so their decision can start by then.
            oldest = calendar.index(reference.replace(year=reference.year - band.max_age - 1)) + 1
            newest = calendar.index(reference.replace(year=reference.year - band.min_age))
            newest = min(newest, calendar.index(reference) - 31)
            profile = _Profile(
                category=category,
                female_p=female_per_mille / 1000,
                newest_day=newest,
                span=newest - oldest + 1,
                skew_young=band.skew_young,
                group=band.group,
                relations=band.relations,
                eligible_months=max(1, band.eligible_at_age * 12),
            )
            out.append((profile, category_per_mille, band.per_mille))
    return out


def _proxy_rates(spec: RosterSpec, profiles: list[tuple[_Profile, int, int]]) -> tuple[float, ...]:
    """Chance of a proxy for a row of each age group, so that the total meets the spec."""
    share = [0.0, 0.0, 0.0]
    for profile, category_per_mille, band_per_mille in profiles:
        share[profile.group] += category_per_mille * band_per_mille / 1_000_000
    young, minor, adult = share
    target = spec.proxy_per_mille / 1000
    young_rate = spec.guardian_per_mille / 1000
    if young * young_rate >= target:  # the budget does not even cover the young children
        return (target / young if young else 0.0, 0.0, 0.0)
    rest = target - young * young_rate
    adult_rate = rest / (_MINOR_PROXY_WEIGHT * minor + adult) if minor + adult else 0.0
    minor_rate = min(1.0, _MINOR_PROXY_WEIGHT * adult_rate)
    if minor_rate == 1.0 and adult:
        adult_rate = min(1.0, (rest - minor) / adult)
    return (young_rate, minor_rate, adult_rate)


def _table(items: Iterable[tuple[Any, int]], size: int) -> list[Any]:
    """A lookup list of ``size`` slots, each item taking as many slots as its weight."""
    table = [value for value, weight in items for _ in range(weight)]
    if len(table) != size:
        raise AssertionError(f"weights sum to {len(table)}, not {size}")  # a bug in the tables
    return table


def _area_table(areas: tuple[AreaRow, ...]) -> list[int]:
    """Commune indexes, each taking slots in proportion to its weight (4,096 slots in all)."""
    weights = [_COMMUNE_WEIGHTS.get(area.commune_code, 100) for area in areas]
    total = sum(weights)
    slots = 4096 * max(1, -(-len(areas) // 4096))
    # Largest-remainder apportionment keeps the table exactly `slots` long.
    exact = [w * slots / total for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(areas)), key=lambda k: counts[k] - exact[k])
    for k in by_remainder[: slots - sum(counts)]:
        counts[k] += 1
    return [k for k, count in enumerate(counts) for _ in range(count)]


def _period_text(ordinal: int) -> str:
    return f"{ordinal // 12:04d}-{ordinal % 12 + 1:02d}"


def roster_rows(spec: RosterSpec) -> Iterator[tuple[str, ...]]:
    """Yield ``spec.n`` roster rows, each a tuple of strings in :data:`ROSTER_COLUMNS` order.

    The rows depend only on ``spec``: the same spec yields the same rows, in the same order.
    """
    rng = random.Random(spec.seed)  # noqa: S311 - synthetic test data, not security
    rand = rng.random
    bits = rng.getrandbits
    takeover = Period.parse(spec.takeover)
    reference = takeover.first_day
    t = takeover.ordinal
    calendar = _calendar(spec.takeover)
    days, years, months = calendar.days, calendar.years, calendar.months
    first_year = calendar.first_year
    pools = _name_pools()

    profiles = _profiles(calendar, reference)
    proxy_rates = _proxy_rates(spec, profiles)
    # Two-stage lookup: a category's slots (per mille of rows) hold its bands' table (per mille).
    # Profiles become plain tuples here: unpacking one is cheaper than reading its attributes.
    band_tables = {
        category: _table(
            (
                (attrs.astuple(p, recurse=False), w)
                for p, _, w in profiles
                if p.category == category
            ),
            1000,
        )
        for category, _ in CATEGORY_PER_MILLE
    }
    category_table = _table(((band_tables[c], w) for c, w in CATEGORY_PER_MILLE), 1000)
    area_table = _area_table(spec.areas)
    area_slots = len(area_table)
    area_fields = [
        (a.province_code, a.district_code, a.commune_code, f"BD-{a.commune_code}")
        for a in spec.areas
    ]
    relation_tables = {k: _table(v, 1000) for k, v in _RELATIONS.items()}
    banks = _table(_BANKS, 1000)
    # One draw picks the form and the operator: +84 for a fifth of the numbers.
    intl = _INTERNATIONAL_MSISDN_PER_MILLE
    phone_prefixes = [
        _INTERNATIONAL_PREFIXES[k * len(_INTERNATIONAL_PREFIXES) // intl] for k in range(intl)
    ] + [_LOCAL_PREFIXES[k * len(_LOCAL_PREFIXES) // (1000 - intl)] for k in range(1000 - intl)]

    periods_base = t - _EXISTING_SINCE_MONTHS
    period_texts = [_period_text(o) for o in range(periods_base, t + 1)]
    paid_through_text = _period_text(t - 1)
    takeover_text = _period_text(t)
    mandate_until = f"{reference.year + 1}-12-31"
    mandate_later = f"{reference.year + 2}-12-31"
    mandate_expired = ((takeover - 2).first_day - dt.timedelta(days=1)).isoformat()
    oldest_proxy_year = reference.year - 18

    # Shares as chances of one uniform draw (floats are fine for drawing; no money here).
    ewallet_p = spec.ewallet_share / 1000
    bank_p = (spec.ewallet_share + spec.bank_share) / 1000
    existing_p = _EXISTING_PER_MILLE / 1000
    backdated_p = (_EXISTING_PER_MILLE + _BACKDATED_PER_MILLE) / 1000
    ceased_p = _CEASED_PER_MILLE / 1000
    suspended_p = (_CEASED_PER_MILLE + _SUSPENDED_PER_MILLE) / 1000
    override_p = _COEFFICIENT_OVERRIDE_PER_MILLE / 1000
    no_id_p = _NO_NATIONAL_ID_PER_MILLE / 1000
    ewallet_pay_point_p = _EWALLET_PAY_POINT_PER_MILLE / 1000
    bank_pay_point_p = _BANK_PAY_POINT_PER_MILLE / 1000
    bank_msisdn_p = _BANK_MSISDN_PER_MILLE / 1000
    postal_msisdn_p = _POSTAL_MSISDN_PER_MILLE / 1000
    home_delivery_p = _HOME_DELIVERY_PER_MILLE / 1000
    expired_p = _EXPIRED_MANDATE_PER_MILLE / 1000
    later_p = (_EXPIRED_MANDATE_PER_MILLE + _LATER_MANDATE_PER_MILLE) / 1000
    existing_months = _EXISTING_SINCE_MONTHS - 2

    # Offsets drawn once make the unique numbers depend on the seed too.
    serial_offset = rng.randrange(_SERIALS)
    phone_offset = rng.randrange(10**7)
    account_offset = rng.randrange(10**10)
    prefix = spec.id_prefix

    old_before, pool_bits = _OLD_GENERATION_BEFORE, _NAME_POOL_BITS

    def person_name(year: int, female: bool) -> str:
        return pools[(year < old_before) * 2 + female][bits(pool_bits)]

    for block, birth_province in enumerate(_BIRTH_PROVINCES):
        start = block * _SERIALS
        if start >= spec.n:
            break
        # CCCD head by birth year and sex: province, sex and century digit, year of birth.
        heads = [
            f"{birth_province}{(2 if year >= 2000 else 0) + female}{year % 100:02d}"
            for year in range(first_year, reference.year + 1)
            for female in (0, 1)
        ]
        for i in range(start, min(spec.n, start + _SERIALS)):
            (
                category,
                female_p,
                newest_day,
                span,
                skew_young,
                group,
                relations,
                eligible_months,
            ) = category_table[int(rand() * 1000)][int(rand() * 1000)]
            area = area_fields[area_table[int(rand() * area_slots)]]
            female = rand() < female_p
            u = rand()
            day = newest_day - int((u * rand() if skew_young else u) * span)
            year = years[day]
            head = heads[(year - first_year) * 2 + female]
            serial = f"{(i * _SERIAL_MUL + serial_offset) % _SERIALS:06d}"
            national_id = "" if group != _ADULT and rand() < no_id_p else head + serial

            # Decision months: existing, back-dated or new; never before the person qualifies.
            u = rand()
            if u < existing_p:
                first = periods_base + int(rand() * existing_months)
            elif u < backdated_p:
                first = t - 1 - int(rand() * 3)
            else:
                first = t
            eligible = months[day] + eligible_months
            if first < eligible:
                first = eligible
            paid_through = paid_through_text if u < existing_p and first < t else ""
            u = rand()
            if u < ceased_p:
                status = "ceased"
                last = paid_through_text if first < t and rand() < 0.5 else takeover_text
            else:
                status = "suspended" if u < suspended_p else "active"
                last = ""
            coefficient = _COEFFICIENT_OVERRIDES[int(rand() * 4)] if rand() < override_p else ""

            # Where the money goes (the proxy's address when there is a proxy).
            msisdn = phone_prefixes[int(rand() * 1000)] + (
                f"{(i * _PHONE_MUL + phone_offset) % 10**7:07d}"
            )
            bank_bin = account = home = ""
            u = rand()
            if u < ewallet_p:
                channel, provider = "ewallet", "viettelpay"
                pay_point = area[3] if rand() < ewallet_pay_point_p else ""
            elif u < bank_p:
                channel, provider = "bank", "vietinbank"
                bank_bin, account_head = banks[int(rand() * 1000)]
                account = f"{account_head}{(i * _ACCOUNT_MUL + account_offset) % 10**10:010d}"
                pay_point = area[3] if rand() < bank_pay_point_p else ""
                if rand() >= bank_msisdn_p:
                    msisdn = ""
            else:
                channel, provider = "postal", "vnpost"
                pay_point = area[3]
                if rand() >= postal_msisdn_p:
                    msisdn = ""
                if rand() < home_delivery_p:
                    home = "1"

            proxy_name = proxy_id = relation = mandate = ""
            if rand() < proxy_rates[group]:
                relation = relation_tables[relations][int(rand() * 1000)]
                if relation == _SPOUSE:
                    relation, proxy_female = ("chồng", False) if female else ("vợ", True)
                else:
                    proxy_female = rand() < 0.6
                if relation in _PROXY_YEARS_AFTER:
                    least, spread = _PROXY_YEARS_AFTER[relation]
                    proxy_year = year + least + int(rand() * spread)
                else:  # a guardian or a commune officer: 25 to 64 years old
                    proxy_year = reference.year - 25 - int(rand() * 40)
                proxy_year = max(first_year, min(proxy_year, oldest_proxy_year))
                proxy_head = heads[(proxy_year - first_year) * 2 + proxy_female]
                if proxy_head == head:  # same sex and birth year: the full id would collide
                    proxy_year += 1 if proxy_year < oldest_proxy_year else -1
                    proxy_head = heads[(proxy_year - first_year) * 2 + proxy_female]
                proxy_name = person_name(proxy_year, proxy_female)
                # The row's own serial: no other row has it, and the head differs from the
                # beneficiary's, so the id is unique among beneficiaries and proxies alike.
                proxy_id = proxy_head + serial
                u = rand()
                if u < expired_p:
                    mandate = mandate_expired
                elif u < later_p:
                    mandate = mandate_later
                else:
                    mandate = mandate_until

            yield (
                f"{prefix}-{i + 1:06d}",
                pools[(year < old_before) * 2 + female][bits(pool_bits)],
                national_id,
                days[day],
                "F" if female else "M",
                area[0],
                area[1],
                area[2],
                category,
                coefficient,
                period_texts[first - periods_base],
                last,
                paid_through,
                status,
                channel,
                provider,
                msisdn,
                bank_bin,
                account,
                pay_point,
                proxy_name,
                proxy_id,
                relation,
                mandate,
                home,
            )


# --- writing -----------------------------------------------------------------------------------

_CHUNK = 8192


def _write_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[str]]
) -> int:
    count = 0
    with atomic_file(Path(path), "w") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        iterator = iter(rows)
        while chunk := list(islice(iterator, _CHUNK)):
            writer.writerows(chunk)
            count += len(chunk)
    return count


def write_roster_csv(path: str | os.PathLike[str], rows: Iterable[Sequence[str]]) -> int:
    """Write a roster CSV (UTF-8, header, ``\\r\\n`` line ends) atomically; return the row count.

    ``rows`` is consumed in chunks, so a generator of any length is written in flat memory. The
    rows are written as given (a test may write an invalid roster on purpose).
    """
    return _write_csv(path, ROSTER_COLUMNS, rows)


def write_roster_xlsx(path: str | os.PathLike[str], rows: Iterable[Sequence[str]]) -> int:
    """Write a roster XLSX atomically; return the row count.

    Every cell is a string, so codes and ids keep their leading zeros. The cell contents are
    deterministic; the file's bytes are not, as openpyxl stamps the save time into it.
    """
    import openpyxl  # imported here: only XLSX writers pay for it

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("roster")
    sheet.append([str(name) for name in ROSTER_COLUMNS])
    count = 0
    try:
        for row in rows:
            sheet.append([str(value) for value in row])
            count += 1
    except BaseException:
        _discard_sheet(sheet)
        raise
    with atomic_file(Path(path), "wb") as fh:
        workbook.save(fh)
    return count


def _discard_sheet(sheet: Any) -> None:
    """Close a write-only sheet that will not be saved and delete openpyxl's temporary file.

    Best effort: this runs while another error propagates, which it must not hide.
    """
    with contextlib.suppress(Exception):
        sheet.close()
        if sheet._writer is not None:
            sheet._writer.cleanup()


def write_areas_csv(path: str | os.PathLike[str], areas: Iterable[AreaRow]) -> int:
    """Write an areas CSV (the columns of :data:`AREA_COLUMNS`) atomically; return the row count."""
    return _write_csv(path, AREA_COLUMNS, (attrs.astuple(area) for area in areas))
