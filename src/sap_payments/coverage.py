"""Coverage and settlement: how far each area is from its targets, and what each provider owes.

Two reports over one cycle (programme × benefit month), both rolled up by area:

* :func:`coverage_report` — per commune, district (when there is one), province and in total:
  beneficiaries, instructed, paid by channel, the electronic share and the proxy share, held and
  unpaid, and how many communes had any electronic payment. The agency's targets read straight
  off it: every commune electronic, at least 80% paid into an account, few proxies.
* :func:`settlement_report` — per provider and commune, rolled up to the province and to the
  provider: instructed, paid, failed, returned, unclaimed and open, and the balance the provider
  owes back. Instructed = paid + failed + returned + unclaimed + open, to the đồng, on every line.
  A closed cycle is reported from the figures frozen when it closed, so its report never changes.
* :func:`coverage_trend` — the electronic share of each area cycle by cycle against a target,
  and the communes that have not switched to electronic payment.

Shares are exact fractions; their percentage is computed with integer arithmetic, never a float:

>>> Share(2053, 4716).percent  # Hương Thủy, 2021: 2,053 of 4,716 paid into accounts
'43.5'
>>> Share(1, 8).percent, Share(0, 0).percent  # 12.5 exactly; nothing paid: no share
('12.5', None)

The definitions are documented in ``docs/formats.md`` (sections 4.5, 4.5.1 and 4.6).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import attrs

from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.cycles import DISCARDED, require_cycle
from sap_payments.errors import StateError
from sap_payments.instructions import InstructionState
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.store import AreaRecord, CycleRecord, InstructionRecord, Store

__all__ = [
    "CHANNELS",
    "CoverageLine",
    "CoverageReport",
    "CoverageTrend",
    "NoCycles",
    "SettlementLine",
    "SettlementReport",
    "Share",
    "Tally",
    "TrendRow",
    "area_fields",
    "coverage_report",
    "coverage_trend",
    "settlement_report",
]

S = InstructionState

#: The payment channels, in report order; e-wallet and bank are the electronic ones.
CHANNELS: Final = ("ewallet", "bank", "postal")
#: States of an instruction the provider holds and has not settled yet (settlement's "open").
_OPEN: Final = frozenset({S.READY, S.SUBMITTED, S.ACCEPTED, S.UNKNOWN})
#: States of an instruction never advanced to a provider (drafts) or withdrawn.
_NOT_INSTRUCTED: Final = frozenset({S.CREATED, S.HELD, S.CANCELLED})


def _non_negative(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{attribute.name} must be a whole number ≥ 0, not {value!r}")


@attrs.frozen
class Tally:
    """A number of instructions and their amount."""

    count: int = attrs.field(validator=_non_negative)
    amount: Money

    @classmethod
    def zero(cls, currency: str) -> Tally:
        return cls(0, Money.zero(currency))

    def __add__(self, other: Tally) -> Tally:
        if not isinstance(other, Tally):
            return NotImplemented
        return Tally(self.count + other.count, self.amount + other.amount)

    def __sub__(self, other: Tally) -> Tally:
        if not isinstance(other, Tally):
            return NotImplemented
        return Tally(self.count - other.count, self.amount - other.amount)


@attrs.frozen
class Share:
    """An exact fraction ``numerator / denominator`` (a part of a whole, so at most 1)."""

    numerator: int = attrs.field(validator=_non_negative)
    denominator: int = attrs.field(validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.numerator > self.denominator:
            raise ValueError(
                f"a share cannot exceed the whole: {self.numerator}/{self.denominator}"
            )

    @property
    def tenths(self) -> int | None:
        """The percentage in tenths of a percent, rounded half up; None when the whole is 0."""
        if self.denominator == 0:
            return None
        # round(1000·n/d) half up, in integers: floor((2000·n + d) / 2d)
        return (2000 * self.numerator + self.denominator) // (2 * self.denominator)

    @property
    def percent(self) -> str | None:
        """The percentage with one decimal place (``"93.4"``); None when the whole is 0."""
        tenths = self.tenths
        return None if tenths is None else f"{tenths // 10}.{tenths % 10}"


@attrs.frozen
class CoverageLine:
    """Coverage of one area (``level`` commune, district or province) or of all (``total``).

    Codes and names of the levels above the line's are given, those below it are None; a name
    is None when the areas file was not imported. ``communes`` counts the communes on the
    report inside the line's area, ``communes_electronic`` those with any payment made through
    an e-wallet or a bank.
    """

    level: str
    province_code: str | None
    province_name: str | None
    district_code: str | None
    district_name: str | None
    commune_code: str | None
    commune_name: str | None
    communes: int
    communes_electronic: int
    beneficiaries: int
    instructed: Tally
    paid: Tally
    paid_ewallet: Tally
    paid_bank: Tally
    paid_postal: Tally
    paid_proxy: Tally
    held: Tally

    @property
    def unpaid(self) -> Tally:
        """Instructed and not paid: still open, failed, returned or unclaimed."""
        return self.instructed - self.paid

    @property
    def electronic_share(self) -> Share:
        """Payments made through an e-wallet or a bank, of all payments made (counts)."""
        return Share(self.paid_ewallet.count + self.paid_bank.count, self.paid.count)

    @property
    def proxy_share(self) -> Share:
        """Payments made to a proxy, of all payments made (counts)."""
        return Share(self.paid_proxy.count, self.paid.count)

    def paid_by(self, channel: str) -> Tally:
        """The payments made through ``channel`` (``ewallet``, ``bank`` or ``postal``)."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
        paid: Tally = getattr(self, f"paid_{channel}")
        return paid


@attrs.frozen
class CoverageReport:
    """The coverage of one cycle: areas in tree order (each area before the areas inside it,
    by code; communes without a district directly under their province), the total last."""

    programme: str
    period: Period
    state: str
    currency: str
    lines: tuple[CoverageLine, ...]

    @property
    def total(self) -> CoverageLine:
        return self.lines[-1]


@attrs.frozen
class SettlementLine:
    """What one provider was advanced in one area (``level`` commune or province), for one
    provider in all areas (``provider``), or for every provider (``total``, provider None).

    ``balance`` is what the provider owes back: the money advanced that did not reach a payee.
    """

    level: str
    provider: str | None
    province_code: str | None
    province_name: str | None
    district_code: str | None
    district_name: str | None
    commune_code: str | None
    commune_name: str | None
    instructed: Tally
    paid: Tally
    failed: Tally
    returned: Tally
    unclaimed: Tally
    open: Tally

    @property
    def balance(self) -> Money:
        """Failed + returned + unclaimed amounts: advanced, and not paid to anyone."""
        return self.failed.amount + self.returned.amount + self.unclaimed.amount


@attrs.frozen
class SettlementReport:
    """The settlement of one cycle: each provider's line, then its provinces, each followed by
    its communes; the total of every provider last. ``frozen`` is true once the cycle is closed:
    the figures are those recorded at closing."""

    programme: str
    period: Period
    state: str
    frozen: bool
    currency: str
    lines: tuple[SettlementLine, ...]

    @property
    def total(self) -> SettlementLine:
        return self.lines[-1]


# -- shared ---------------------------------------------------------------------------------------
AreaFields = tuple[str | None, str | None, str | None, str | None, str | None, str | None]


def area_fields(line: CoverageLine | SettlementLine | TrendRow) -> AreaFields:
    """(province, its name, district, its name, commune, its name) of a report line: the area
    columns every report shares (``sap_payments.roster.AREA_COLUMNS``)."""
    return (
        line.province_code,
        line.province_name,
        line.district_code,
        line.district_name,
        line.commune_code,
        line.commune_name,
    )


def _cycle(store: Store, period: Period | str, programme: str) -> tuple[Period, CycleRecord]:
    if isinstance(period, str):
        period = Period.parse(period)
    return period, require_cycle(store, programme, period)


@attrs.frozen
class _Names:
    """Area names from the imported areas file (empty when none was imported)."""

    provinces: dict[str, str]
    districts: dict[tuple[str, str], str]
    communes: dict[str, str]

    @classmethod
    def of(cls, areas: Iterable[AreaRecord]) -> _Names:
        names = cls({}, {}, {})
        for area in areas:
            names.provinces.setdefault(area.province_code, area.province_name)
            if area.district_code:
                names.districts.setdefault(
                    (area.province_code, area.district_code), area.district_name
                )
            names.communes[area.commune_code] = area.commune_name
        return names

    def label(self, key: tuple[str, ...]) -> AreaFields:
        """(province, its name, district, its name, commune, its name) of an area key, None
        below the key's level and for a name not imported."""
        province = key[0] if key else None
        district = key[1] if len(key) > 1 and key[1] else None
        commune = key[2] if len(key) > 2 else None
        return (
            province,
            self.provinces.get(province) if province is not None else None,
            district,
            self.districts.get((key[0], district)) if district is not None else None,
            commune,
            self.communes.get(commune) if commune is not None else None,
        )


#: (province, district or "", commune): how every figure is keyed before it is rolled up.
_Key = tuple[str, str, str]


# -- coverage -------------------------------------------------------------------------------------
_INSTRUCTED, _PAID, _PAID_EWALLET, _PAID_BANK, _PAID_POSTAL, _PAID_PROXY, _HELD = range(7)
_FIGURES: Final = 7


class _Coverage:
    """Running sums of one area (mutable; frozen into a :class:`CoverageLine` at the end)."""

    __slots__ = ("beneficiaries", "communes", "communes_electronic", "sums")

    def __init__(self) -> None:
        self.beneficiaries = 0
        self.communes = 0
        self.communes_electronic = 0
        #: count, amount of each figure (_INSTRUCTED … _HELD), as CoverageLine lists them
        self.sums = [0] * (2 * _FIGURES)

    def count(self, figure: int, amount: int) -> None:
        self.sums[2 * figure] += 1
        self.sums[2 * figure + 1] += amount

    def add(self, other: _Coverage) -> None:
        self.beneficiaries += other.beneficiaries
        self.communes += other.communes
        self.communes_electronic += other.communes_electronic
        self.sums = [a + b for a, b in zip(self.sums, other.sums, strict=True)]

    def tallies(self, currency: str) -> list[Tally]:
        return [
            Tally(self.sums[i], Money(self.sums[i + 1], currency))
            for i in range(0, len(self.sums), 2)
        ]


_PAID_CHANNEL: Final = {"ewallet": _PAID_EWALLET, "bank": _PAID_BANK, "postal": _PAID_POSTAL}


def _latest(records: Iterable[InstructionRecord]) -> Iterator[InstructionRecord]:
    """The last instruction of each beneficiary, from records ordered by beneficiary then seq."""
    previous: InstructionRecord | None = None
    for record in records:
        if previous is not None and record.beneficiary_id != previous.beneficiary_id:
            yield previous
        previous = record
    if previous is not None:
        yield previous


def coverage_report(
    store: Store, period: Period | str, *, programme: str = DEFAULT_PROGRAMME
) -> CoverageReport:
    """How far each area is from electronic payment in the cycle of ``period``.

    Definitions (each figure for the area's communes):

    * beneficiaries — the programme's beneficiaries enrolled in the area (their roster record
      as it is now) and not ceased before the period: ``last_period`` empty or not before it.
      Suspended ones count.
    * of each beneficiary's **latest** instruction in the cycle (the highest ``seq``; earlier
      ones were cancelled when the cycle was re-prepared), counted in the instruction's area:
      instructed — not CANCELLED; paid — PAID, by channel and to a proxy; held — HELD, or
      CANCELLED with a held reason (held until approval cancelled it); unpaid — instructed −
      paid (still open, failed, returned or unclaimed).
    * electronic share — paid through an e-wallet or a bank / all paid; proxy share — paid to a
      proxy / all paid; both by number of payments.

    Raises:
        CycleNotFound: the cycle has not been prepared.
    """
    period, cycle = _cycle(store, period, programme)
    by_commune: dict[_Key, _Coverage] = {}

    def sums(key: _Key) -> _Coverage:
        found = by_commune.get(key)
        if found is None:
            found = by_commune[key] = _Coverage()
        return found

    for province, district, commune, count in store.beneficiaries_by_area(
        programme, period.ordinal
    ):
        sums((province, district, commune)).beneficiaries += count
    records = (record for record, _ in store.cycle_instructions(programme, period.ordinal))
    for record in _latest(records):
        area = sums((record.province_code, record.district_code, record.commune_code))
        state = S(record.state)
        if state is S.CANCELLED:
            if record.held_reason is not None:
                area.count(_HELD, record.amount)
            continue
        area.count(_INSTRUCTED, record.amount)
        if state is S.HELD and record.held_reason is not None:
            area.count(_HELD, record.amount)
        if state is S.PAID:
            area.count(_PAID, record.amount)
            area.count(_PAID_CHANNEL[record.channel], record.amount)
            if record.payee_kind == "proxy":
                area.count(_PAID_PROXY, record.amount)
    for area in by_commune.values():
        area.communes = 1
        area.communes_electronic = int(area.sums[2 * _PAID_EWALLET] + area.sums[2 * _PAID_BANK] > 0)

    names = _Names.of(store.areas())
    currency = cycle.currency

    def line(level: str, key: tuple[str, ...], area: _Coverage) -> CoverageLine:
        return CoverageLine(
            level,
            *names.label(key),
            area.communes,
            area.communes_electronic,
            area.beneficiaries,
            *area.tallies(currency),
        )

    def rolled_up(keys: Iterable[_Key]) -> _Coverage:
        rolled = _Coverage()
        for key in keys:
            rolled.add(by_commune[key])
        return rolled

    lines: list[CoverageLine] = []
    # sorted keys: each province's district-less communes ("" sorts first), then each district's
    for province, province_keys in itertools.groupby(sorted(by_commune), key=lambda k: k[0]):
        in_province = list(province_keys)
        lines.append(line("province", (province,), rolled_up(in_province)))
        for district, district_keys in itertools.groupby(in_province, key=lambda k: k[1]):
            communes = list(district_keys)
            if district:
                lines.append(line("district", (province, district), rolled_up(communes)))
            lines.extend(line("commune", key, by_commune[key]) for key in communes)
    lines.append(line("total", (), rolled_up(by_commune)))
    return CoverageReport(programme, period, cycle.state, currency, tuple(lines))


# -- trend ----------------------------------------------------------------------------------------
class NoCycles(StateError, LookupError):
    """The programme has no cycle, so there is no trend to report."""

    def __init__(self, programme: str) -> None:
        super().__init__(
            f"no cycles for programme {programme}: there is no trend before "
            "'cycle prepare --period YYYY-MM' has run"
        )
        self.programme = programme


@attrs.frozen
class TrendRow:
    """One area's electronic share cycle by cycle (``level`` as on :class:`CoverageLine`).

    ``shares`` has one entry per period of the trend, None when the area had no payment that
    month. ``meets_target`` is true when the share of the latest period is at least the target
    (false when it is None). ``switched`` is true when, in the latest period, every commune of the
    area had a payment through an e-wallet or a bank (for a commune: it had one), and None when
    the area is not on the latest period's report.
    """

    level: str
    province_code: str | None
    province_name: str | None
    district_code: str | None
    district_name: str | None
    commune_code: str | None
    commune_name: str | None
    shares: tuple[Share | None, ...]
    meets_target: bool
    switched: bool | None

    @property
    def latest(self) -> Share | None:
        """The share of the latest period."""
        return self.shares[-1]


@attrs.frozen
class CoverageTrend:
    """The electronic share of each area over ``periods`` (oldest first), in the tree order
    of :class:`CoverageReport`, the total last; ``target`` is an exact fraction (80/100)."""

    programme: str
    periods: tuple[Period, ...]
    target: Share
    rows: tuple[TrendRow, ...]

    @property
    def target_percent(self) -> int:
        return self.target.numerator

    @property
    def not_switched(self) -> tuple[TrendRow, ...]:
        """The communes on the latest period's report without any electronic payment in it."""
        return tuple(row for row in self.rows if row.level == "commune" and row.switched is False)


_LEVEL_RANK: Final = {"province": 0, "district": 1, "commune": 2}


#: (level, province, district, commune) of a coverage line: how the trend follows an area.
_AreaKey = tuple[str, str | None, str | None, str | None]


def _tree_order(key: _AreaKey) -> tuple[int, str, str, int, str]:
    """Coverage's line order for a (level, province, district, commune) key: each province, its
    district-less communes, then each district followed by its communes; the total last."""
    level, province, district, commune = key
    if level == "total":
        return (1, "", "", 0, "")
    return (0, province or "", district or "", _LEVEL_RANK[level], commune or "")


def coverage_trend(
    store: Store,
    *,
    programme: str = DEFAULT_PROGRAMME,
    periods: Sequence[Period] | None = None,
    target_percent: int = 80,
) -> CoverageTrend:
    """The electronic share of every area in each cycle, against a target.

    Each period is reported with :func:`coverage_report`: an area's share is its
    ``electronic_share`` (payments through an e-wallet or a bank / all payments, by count), None
    when it had no payment. An area on the report of any period gets a row. ``periods`` defaults
    to every cycle of the programme; given ones are sorted and each must have a cycle.

    Raises:
        ValueError: ``target_percent`` is not a whole number from 0 to 100.
        NoCycles: no periods were given and the programme has no cycle.
        CycleNotFound: a given period has no cycle.
    """
    if type(target_percent) is not int or not 0 <= target_percent <= 100:
        raise ValueError(f"the target must be a whole percentage 0–100, not {target_percent!r}")
    target = Share(target_percent, 100)
    if periods is None:
        chosen = [
            Period(cycle.period) for cycle in store.cycles(programme) if cycle.state != DISCARDED
        ]
    else:
        chosen = sorted(set(periods))
    if not chosen:
        raise NoCycles(programme)
    found: dict[_AreaKey, CoverageLine] = {}  # each area's line of its latest period
    shares: dict[_AreaKey, list[Share | None]] = {}
    latest: dict[_AreaKey, CoverageLine] = {}
    for index, period in enumerate(chosen):
        report = coverage_report(store, period, programme=programme)
        latest = {}
        for line in report.lines:
            key = (line.level, line.province_code, line.district_code, line.commune_code)
            found[key] = latest[key] = line
            share = line.electronic_share
            series = shares.setdefault(key, [None] * len(chosen))
            series[index] = share if share.denominator else None
    rows = []
    for key in sorted(found, key=_tree_order):
        line, last, now = found[key], shares[key][-1], latest.get(key)
        rows.append(
            TrendRow(
                line.level,
                *area_fields(line),
                tuple(shares[key]),
                last is not None
                and last.numerator * target.denominator >= target.numerator * last.denominator,
                None if now is None else now.communes_electronic == now.communes,
            )
        )
    return CoverageTrend(programme, tuple(chosen), target, tuple(rows))


# -- settlement -----------------------------------------------------------------------------------
#: settlement figures, in report order: instructed, then where the instructions ended
_SETTLEMENT_FIGURES: Final = ("instructed", "paid", "failed", "returned", "unclaimed", "open")
_BUCKET: Final = {S.PAID: 1, S.FAILED: 2, S.RETURNED: 3, S.UNCLAIMED: 4} | dict.fromkeys(_OPEN, 5)


def settlement_report(
    store: Store, period: Period | str, *, programme: str = DEFAULT_PROGRAMME
) -> SettlementReport:
    """What each provider was advanced in the cycle of ``period``, and what became of it.

    Instructed is every instruction approved for payment: in any state but CREATED and HELD
    (drafts, before approval) and CANCELLED. Each is then paid (PAID), failed (FAILED), returned
    (RETURNED), unclaimed (UNCLAIMED) or open (READY, SUBMITTED, ACCEPTED, UNKNOWN). The balance
    the provider owes back is the failed, returned and unclaimed amounts: the whole amount of an
    instruction is taken to be advanced to its provider when it is sent, and no fees are
    deducted. Figures come from :meth:`Store.settlement`: frozen at closing for a closed cycle,
    live before.

    Raises:
        CycleNotFound: the cycle has not been prepared.
    """
    period, cycle = _cycle(store, period, programme)
    currency = cycle.currency
    width = len(_SETTLEMENT_FIGURES)
    # provider → (province, district, commune) → [count, amount] per figure
    sums: dict[str, dict[_Key, list[int]]] = {}
    for provider, province, district, commune, state, count, amount in store.settlement(
        programme, period.ordinal
    ):
        state_ = S(state)
        if state_ in _NOT_INSTRUCTED:
            continue
        row = sums.setdefault(provider, {}).setdefault(
            (province, district, commune), [0] * (2 * width)
        )
        row[0] += count
        row[1] += amount
        bucket = _BUCKET[state_]
        row[2 * bucket] += count
        row[2 * bucket + 1] += amount
    names = _Names.of(store.areas())

    def add(into: list[int], row: list[int]) -> None:
        for i, value in enumerate(row):
            into[i] += value

    def line(
        level: str, provider: str | None, key: tuple[str, ...], row: list[int]
    ) -> SettlementLine:
        return SettlementLine(
            level,
            provider,
            *names.label(key),
            *(Tally(row[i], Money(row[i + 1], currency)) for i in range(0, 2 * width, 2)),
        )

    lines: list[SettlementLine] = []
    total = [0] * (2 * width)
    for provider in sorted(sums):
        communes = sums[provider]
        provider_total = [0] * (2 * width)
        for row in communes.values():
            add(provider_total, row)
        lines.append(line("provider", provider, (), provider_total))
        for province, keys in itertools.groupby(sorted(communes), key=lambda k: k[0]):
            in_province = list(keys)
            province_total = [0] * (2 * width)
            for key in in_province:
                add(province_total, communes[key])
            lines.append(line("province", provider, (province,), province_total))
            lines.extend(line("commune", provider, key, communes[key]) for key in in_province)
        add(total, provider_total)
    lines.append(line("total", None, (), total))
    return SettlementReport(
        programme, period, cycle.state, cycle.state == "closed", currency, tuple(lines)
    )
