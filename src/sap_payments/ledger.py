"""The Python API in one object: a ledger file, its configuration and its rule set.

>>> from sap_payments import Ledger
>>> with Ledger.open("sap-payments.db") as ledger:            # doctest: +SKIP
...     ledger.import_roster("roster.csv")
...     ledger.prepare("2021-09")
...     ledger.approve("2021-09", by="Trưởng phòng BTXH")
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import attrs

from sap_payments.areas import Area
from sap_payments.beneficiaries import (
    BankAccount,
    Beneficiary,
    CashPickup,
    Decision,
    Enrolment,
    FinancialAddress,
    Mandate,
    Proxy,
    Sex,
    Status,
    WalletAddress,
    parse_address,
)
from sap_payments.changes import ChangeReport, change_report
from sap_payments.config import Config
from sap_payments.coverage import (
    CoverageReport,
    CoverageTrend,
    SettlementReport,
    coverage_report,
    coverage_trend,
    settlement_report,
)
from sap_payments.cycles import (
    ApprovalResult,
    PrepareResult,
    approve,
    mandate_addresses,
    prepare,
)
from sap_payments.dispatch import (
    ApplyResult,
    CloseResult,
    DispatchResult,
    ReconcileResult,
    ReportImport,
    apply_results,
    close_cycle,
    dispatch,
    import_report,
    reconcile,
)
from sap_payments.entitlements import Entitlement
from sap_payments.errors import ConfigError, CycleNotFound
from sap_payments.instructions import Instruction, InstructionState, LineKind
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.plugins import open_providers
from sap_payments.providers import Provider, Result
from sap_payments.public_list import PublicList, public_list
from sap_payments.roster import ImportResult, import_areas, import_roster
from sap_payments.rules import RuleSet
from sap_payments.sqlite_store import SQLiteStore
from sap_payments.store import BeneficiaryRecord, CycleRecord, InstructionRecord, LineRecord

__all__ = ["Ledger", "enrolment"]

Progress = Callable[[int], None] | None


@attrs.define
class Ledger:
    """A ledger database with the configuration and rule set it is operated under."""

    store: SQLiteStore
    config: Config = attrs.field(factory=Config)
    rules: RuleSet = attrs.field(factory=RuleSet.vietnam_default)
    #: provider instances by name; opened from the configuration when first needed
    providers: dict[str, Provider] | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        config: Config | None = None,
        rules: RuleSet | None = None,
        durable: bool = True,
    ) -> Ledger:
        """Open (or create) the ledger at ``path``."""
        config = config or Config()
        if rules is None:
            rules = RuleSet.load(config.rules) if config.rules else RuleSet.vietnam_default()
        return cls(SQLiteStore(Path(path), durable=durable), config, rules)

    def close(self) -> None:
        """Close the ledger (and the providers it opened)."""
        for provider in (self.providers or {}).values():
            provider.close()
        self.store.close()

    def provider_instances(self) -> dict[str, Provider]:
        """The configured providers, opened through their plugins on first use."""
        if self.providers is None:
            self.providers = open_providers(self.config)
        return self.providers

    def dispatch(
        self, period: Period | str, *, programme: str | None = None, progress: Progress = None
    ) -> DispatchResult:
        """Send the cycle's READY instructions (see :func:`sap_payments.dispatch.dispatch`)."""
        return dispatch(
            self.store,
            period,
            providers=self.provider_instances(),
            programme=programme or self.config.programme,
            outbox=self.config.outbox,
            progress=progress,
        )

    def reconcile(self, period: Period | str, *, programme: str | None = None) -> ReconcileResult:
        """Query providers for open instructions and apply the answers."""
        return reconcile(
            self.store,
            period,
            providers=self.provider_instances(),
            programme=programme or self.config.programme,
        )

    def apply_results(
        self, results: Iterable[Result], *, provider: str | None = None
    ) -> ApplyResult:
        """Apply results from a provider's report or callback."""
        return apply_results(self.store, results, provider=provider)

    def import_report(self, path: str | os.PathLike[str], *, provider: str) -> ReportImport:
        """Apply a provider's report file (e.g. a bank's pain.002 or camt.054), exactly once."""
        instances = self.provider_instances()
        if provider not in instances:
            raise ConfigError(f"provider {provider!r} is not configured", key="providers")
        return import_report(self.store, instances[provider], Path(path))

    def close_cycle(self, period: Period | str, *, programme: str | None = None) -> CloseResult:
        """Close a cycle once nothing is open; freezes its settlement figures."""
        return close_cycle(self.store, period, programme=programme or self.config.programme)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _providers(self) -> dict[str, str] | None:
        if not self.config.providers:
            return None
        return {name: p.channel.value for name, p in self.config.providers.items()}

    def import_roster(
        self,
        path: str | os.PathLike[str],
        *,
        programme: str | None = None,
        progress: Progress = None,
        workers: int = 1,
    ) -> ImportResult:
        """Import a roster (see :func:`sap_payments.roster.import_roster`)."""
        return import_roster(
            self.store,
            path,
            rules=self.rules,
            programme=programme or self.config.programme,
            providers=self._providers,
            progress=progress,
            workers=workers,
        )

    def beneficiary(self, beneficiary_id: str) -> Enrolment | None:
        """A beneficiary as domain objects: who, under which decision, paid how."""
        record = self.store.beneficiary(beneficiary_id)
        return None if record is None else enrolment(record, self.config.programme)

    def instruction(self, instruction_id: str) -> Instruction | None:
        """An instruction as a domain object, with its lines as entitlements."""
        record = self.store.instruction(instruction_id)
        if record is None:
            return None
        return Instruction(
            record.instruction_id,
            record.programme,
            Period(record.period),
            record.beneficiary_id,
            InstructionState(record.state),
            record.payee_name,
            record.payee_kind == "proxy",
            parse_address(record.address, record.provider),
            Money(record.amount, record.currency),
            tuple(
                Entitlement(
                    record.programme,
                    record.beneficiary_id,
                    Period(month),
                    LineKind(kind),
                    Money(amount, record.currency),
                )
                for month, kind, amount, _coefficient in json.loads(record.lines)
            ),
            record.held_reason,
        )

    def import_areas(self, path: str | os.PathLike[str]) -> int:
        return import_areas(self.store, path)

    def prepare(
        self,
        period: Period | str,
        *,
        programme: str | None = None,
        progress: Progress = None,
        workers: int = 1,
    ) -> PrepareResult:
        """Prepare a cycle (see :func:`sap_payments.cycles.prepare`)."""
        return prepare(
            self.store,
            period,
            rules=self.rules,
            programme=programme or self.config.programme,
            progress=progress,
            workers=workers,
            channel_providers=self.config.channel_providers,
            fallback_pay_points=self.config.fallback_pay_points,
        )

    def approve(
        self, period: Period | str, *, by: str, programme: str | None = None
    ) -> ApprovalResult:
        return approve(self.store, period, by=by, programme=programme or self.config.programme)

    def cycle(self, period: Period | str, *, programme: str | None = None) -> CycleRecord:
        period = Period.parse(period) if isinstance(period, str) else period
        programme = programme or self.config.programme
        cycle = self.store.cycle(programme, period.ordinal)
        if cycle is None:
            raise CycleNotFound(programme, str(period))
        return cycle

    def instructions(
        self,
        period: Period | str | None = None,
        *,
        programme: str | None = None,
        cycle: CycleRecord | None = None,
    ) -> Iterator[tuple[InstructionRecord, list[LineRecord]]]:
        """The cycle's instructions with their lines, by beneficiary_id."""
        if cycle is None:
            if period is None:
                raise TypeError("instructions() needs a period or a cycle")
            cycle = self.cycle(period, programme=programme)
        return self.store.cycle_instructions(cycle.programme, cycle.period, with_lines=True)

    def changes(self, period: Period | str, *, programme: str | None = None) -> ChangeReport:
        return change_report(
            self.store, period, rules=self.rules, programme=programme or self.config.programme
        )

    def coverage(self, period: Period | str, *, programme: str | None = None) -> CoverageReport:
        """Coverage by area (see :func:`sap_payments.coverage.coverage_report`)."""
        return coverage_report(self.store, period, programme=programme or self.config.programme)

    def settlement(self, period: Period | str, *, programme: str | None = None) -> SettlementReport:
        """Settlement by provider and area (see :func:`sap_payments.coverage.settlement_report`)."""
        return settlement_report(self.store, period, programme=programme or self.config.programme)

    def coverage_trend(
        self,
        periods: Sequence[Period] | None = None,
        *,
        programme: str | None = None,
        target_percent: int = 80,
    ) -> CoverageTrend:
        """Electronic share by area and cycle (see :func:`sap_payments.coverage.coverage_trend`)."""
        return coverage_trend(
            self.store,
            programme=programme or self.config.programme,
            periods=periods,
            target_percent=target_percent,
        )

    def public_list(
        self, period: Period | str, commune_code: str, *, programme: str | None = None
    ) -> PublicList:
        """A commune's public list (see :func:`sap_payments.public_list.public_list`)."""
        return public_list(
            self.store, period, commune_code, programme=programme or self.config.programme
        )


def enrolment(record: BeneficiaryRecord, programme: str) -> Enrolment:
    """The domain objects for a stored beneficiary record."""
    addresses: list[FinancialAddress] = []
    for channel, _ in mandate_addresses(record):
        provider = record.provider if channel == record.channel else None
        if channel == "ewallet" and record.msisdn:
            addresses.append(WalletAddress(record.msisdn, provider))
        elif channel == "bank" and record.bank_bin and record.account_number:
            addresses.append(BankAccount(record.bank_bin, record.account_number, provider))
        elif channel == "postal" and record.pay_point:
            addresses.append(CashPickup(record.pay_point, bool(record.home_delivery), provider))
    proxy = (
        Proxy(record.proxy_name, record.proxy_relation or "", record.proxy_national_id)
        if record.proxy_name
        else None
    )
    area = Area(record.province_code, record.commune_code, record.district_code)
    return Enrolment(
        Beneficiary(
            record.beneficiary_id,
            record.full_name,
            area,
            record.category,
            Status(record.status),
            record.national_id,
            dt.date.fromisoformat(record.birth_date) if record.birth_date else None,
            Sex(record.sex) if record.sex else None,
        ),
        Decision(
            programme,
            record.category,
            Period(record.first_period),
            Decimal(record.coefficient) if record.coefficient else None,
            Period(record.last_period) if record.last_period is not None else None,
            Period(record.paid_through) if record.paid_through is not None else None,
        ),
        Mandate(
            record.beneficiary_id,
            tuple(addresses),
            proxy,
            dt.date.fromisoformat(record.mandate_valid_until)
            if record.mandate_valid_until
            else None,
        ),
    )
