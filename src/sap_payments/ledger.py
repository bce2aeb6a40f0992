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
from typing import Final

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sap_payments.areas import Area
from sap_payments.audit import AuditReport, Checkpoint, make_checkpoint, stored_checkpoint
from sap_payments.audit import verify as verify_audit
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
    normalise_msisdn,
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
from sap_payments.crypto import Keyring
from sap_payments.cycles import (
    ApprovalResult,
    DiscardResult,
    PrepareResult,
    approve,
    cycle_review,
    discard_cycle,
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
from sap_payments.enrolment import (
    CampaignSummary,
    EnrolmentImport,
    RunResult,
    campaign_summary,
    create_campaign,
    import_enrolment_results,
    run_campaign,
    schedule_campaign,
)
from sap_payments.enrolment_report import EnrolmentReport, enrolment_report
from sap_payments.entitlements import Entitlement
from sap_payments.erasure import erase_personal_data
from sap_payments.errors import ConfigError, CycleNotFound, InvalidInput
from sap_payments.instructions import Instruction, InstructionState, LineKind
from sap_payments.keys import Rotation, rotate_keys
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.plugins import open_providers
from sap_payments.postal import (
    AnomalyReport,
    ConfirmationImport,
    PostalCashProvider,
    WindowClose,
    anomaly_report,
    close_window,
    import_confirmations,
    write_review_csv,
)
from sap_payments.providers import Provider, Result
from sap_payments.public_list import PublicList, public_list
from sap_payments.reviews import resolve_review
from sap_payments.roster import ImportResult, import_areas, import_roster
from sap_payments.rules import RuleSet
from sap_payments.signing import (
    CycleReview,
    add_approver,
    approvers,
    load_private_key,
    load_public_key,
)
from sap_payments.sqlite_store import SQLiteStore
from sap_payments.store import (
    ApproverKey,
    BeneficiaryRecord,
    CycleRecord,
    EventRecord,
    FlagRecord,
    InstructionRecord,
    LineRecord,
    ReviewItem,
)

__all__ = ["SHARED_KINDS", "Ledger", "enrolment"]

#: What :meth:`Ledger.shared_details` can group by.
SHARED_KINDS: Final = ("national_id", "msisdn", "account")

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
        keyring: Keyring | None = None,
    ) -> Ledger:
        """Open (or create) the ledger at ``path``.

        ``keyring``: the keys personal data is sealed with; by default the configuration's
        ``keyring`` file, else as :class:`~sap_payments.sqlite_store.SQLiteStore` finds it.
        """
        config = config or Config()
        if rules is None:
            rules = RuleSet.load(config.rules) if config.rules else RuleSet.vietnam_default()
        if keyring is None and config.keyring is not None:
            keyring = Keyring.load(config.keyring)
        return cls(SQLiteStore(Path(path), durable=durable, keyring=keyring), config, rules)

    @property
    def ledger_id(self) -> str:
        """This ledger's random id (16 hex digits), carried by every id and file that leaves it
        so that another ledger's reports are refused (see :attr:`SQLiteStore.ledger_id`)."""
        return self.store.ledger_id

    def key_status(self) -> dict[str, dict[str, int]]:
        """Sealed values by place and key id (see :meth:`SQLiteStore.key_status`)."""
        return self.store.key_status()

    def rotate_keys(
        self,
        *,
        batch: int = 5000,
        retire: bool = True,
        after_batch: Callable[[int], None] | None = None,
    ) -> Rotation:
        """Seal every personal value under a new key, or finish an interrupted rotation (see
        :func:`sap_payments.keys.rotate_keys`)."""
        return rotate_keys(self.store, batch=batch, retire=retire, after_batch=after_batch)

    def erase(
        self,
        beneficiary_ids: Sequence[str] = (),
        *,
        closed_before: Period | str | None = None,
        by: str | None = None,
        programme: str | None = None,
        today: dt.date | None = None,
    ) -> list[str]:
        """Erase personal data past the retention period (``retention_months``; see
        :func:`sap_payments.erasure.erase_personal_data`)."""
        if isinstance(closed_before, str):
            closed_before = Period.parse(closed_before)
        return erase_personal_data(
            self.store,
            programme=programme or self.config.programme,
            retention_months=self.config.retention_months,
            beneficiary_ids=beneficiary_ids,
            closed_before=closed_before,
            today=today,
            actor=by,
        )

    def close(self) -> None:
        """Close the ledger (and the providers it opened)."""
        for provider in (self.providers or {}).values():
            provider.close()
        self.store.close()

    def provider_instances(self) -> dict[str, Provider]:
        """The configured providers, opened through their plugins on first use."""
        if self.providers is None:
            self.providers = open_providers(self.config, ledger_id=self.ledger_id, store=self.store)
        return self.providers

    def dispatch(
        self,
        period: Period | str,
        *,
        programme: str | None = None,
        progress: Progress = None,
        wait: float = 0.0,
    ) -> DispatchResult:
        """Send the cycle's READY instructions (see :func:`sap_payments.dispatch.dispatch`);
        ``wait``: seconds to wait for another run's lease on the cycle."""
        return dispatch(
            self.store,
            period,
            providers=self.provider_instances(),
            programme=programme or self.config.programme,
            outbox=self.config.outbox,
            progress=progress,
            trusted_approver_keys=self.config.approver_keys,
            wait=wait,
        )

    def reconcile(
        self, period: Period | str, *, programme: str | None = None, wait: float = 0.0
    ) -> ReconcileResult:
        """Query providers for open instructions and apply the answers (``wait``: seconds to
        wait for another run's lease on the cycle)."""
        return reconcile(
            self.store,
            period,
            providers=self.provider_instances(),
            programme=programme or self.config.programme,
            wait=wait,
        )

    def apply_results(
        self, results: Iterable[Result], *, provider: str | None = None
    ) -> ApplyResult:
        """Apply results from a provider's report or callback."""
        return apply_results(self.store, results, provider=provider)

    def review_items(
        self,
        period: Period | str | None = None,
        *,
        programme: str | None = None,
        include_resolved: bool = False,
    ) -> list[ReviewItem]:
        """Answers that did not match what was sent, waiting for a decision (with
        ``include_resolved``, the decided ones too): of the cycle of ``period`` when given,
        else of every cycle of the programme; by item id (see :mod:`sap_payments.reviews`)."""
        if period is None:
            return self.store.review_items(
                programme or self.config.programme, include_resolved=include_resolved
            )
        cycle = self.cycle(period, programme=programme)
        return self.store.review_items(
            cycle.programme, cycle.period, include_resolved=include_resolved
        )

    def resolve_review(
        self,
        item_id: int,
        resolution: str,
        *,
        by: str,
        reason: str,
        no_money_moved: bool = False,
    ) -> list[ReviewItem]:
        """Decide a review item — ``"paid"``, ``"resend"``, ``"failed"`` (only with
        ``no_money_moved``) or ``"returned"`` — and move its instruction accordingly; see
        :func:`sap_payments.reviews.resolve_review`."""
        return resolve_review(
            self.store, item_id, resolution, by=by, reason=reason, no_money_moved=no_money_moved
        )

    def import_report(self, path: str | os.PathLike[str], *, provider: str) -> ReportImport:
        """Apply a provider's report file (e.g. a bank's pain.002 or camt.054), exactly once."""
        instances = self.provider_instances()
        if provider not in instances:
            raise ConfigError(f"provider {provider!r} is not configured", key="providers")
        return import_report(self.store, instances[provider], Path(path))

    def close_cycle(
        self, period: Period | str, *, programme: str | None = None, wait: float = 0.0
    ) -> CloseResult:
        """Close a cycle once nothing is open; freezes its settlement figures. With
        ``checkpoint_key`` configured, the closed cycle's audit trail is verified and a signed
        checkpoint made (and written to ``checkpoints`` when configured).

        Raises:
            CycleStateError: instructions are still open, or the cycle is not approved.
            AuditFailed: the audit trail does not verify; the cycle is closed, unsigned.
        """
        programme = programme or self.config.programme
        closed = close_cycle(self.store, period, programme=programme, wait=wait)
        if self.config.checkpoint_key is None:
            return closed
        checkpoint = self.checkpoint(closed.period, key=self.config.checkpoint_key)
        written = None
        if self.config.checkpoints is not None:
            written = self.config.checkpoints / f"checkpoint-{programme}-{closed.period}.json"
            written.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write(written)
        return attrs.evolve(closed, checkpoint=checkpoint, checkpoint_file=written)

    def _postal(self, provider: str) -> PostalCashProvider:
        instance = self.provider_instances().get(provider)
        if instance is None:
            raise ConfigError(f"provider {provider!r} is not configured", key="providers")
        if not isinstance(instance, PostalCashProvider):
            raise ConfigError(
                f"provider {provider!r} is not a postal-cash provider", key=f"providers.{provider}"
            )
        return instance

    def import_confirmations(
        self,
        path: str | os.PathLike[str],
        *,
        provider: str,
        review_out: str | os.PathLike[str] | None = None,
    ) -> ConfirmationImport:
        """Apply a post office's confirmation file, exactly once; rows that fail a check go to
        the review list (written as CSV to ``review_out`` when given). See
        :func:`sap_payments.postal.import_confirmations`."""
        done = import_confirmations(self.store, self._postal(provider), Path(path))
        if review_out is not None and not done.already_imported:
            write_review_csv(Path(review_out), done.review)
        return done

    def close_window(
        self,
        period: Period | str,
        *,
        provider: str,
        programme: str | None = None,
        early: bool = False,
        wait: float = 0.0,
    ) -> WindowClose:
        """Close a postal provider's payment window: uncollected cash becomes UNCLAIMED (see
        :func:`sap_payments.postal.close_window`)."""
        return close_window(
            self.store,
            self._postal(provider),
            period,
            programme=programme or self.config.programme,
            early=early,
            wait=wait,
        )

    def anomalies(
        self, period: Period | str, *, programme: str | None = None, max_per_proxy: int = 3
    ) -> AnomalyReport:
        """The cycle's anomaly report (see :func:`sap_payments.postal.anomaly_report`)."""
        return anomaly_report(
            self.store,
            period,
            programme=programme or self.config.programme,
            max_per_proxy=max_per_proxy,
        )

    def flags(self, *, kind: str | None = None, programme: str | None = None) -> list[FlagRecord]:
        """Open flags on beneficiaries (e.g. ``reverify``), by beneficiary id."""
        return self.store.flags(programme or self.config.programme, kind)

    def clear_flags(
        self,
        beneficiary_id: str,
        *,
        by: str,
        reason: str,
        kind: str | None = None,
        programme: str | None = None,
    ) -> list[FlagRecord]:
        """Clear a beneficiary's open flags (e.g. once re-verified), recording who and why as a
        ``beneficiary.flag_cleared`` event. A flag raised again later opens anew.

        Raises:
            InvalidInput: ``by`` or ``reason`` is empty, or the beneficiary has no open flag
                (of ``kind``).
        """
        if not by.strip() or not reason.strip():
            raise InvalidInput("clearing a flag needs who (by) and why (reason)")
        programme = programme or self.config.programme
        at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self.store.transaction():
            cleared = self.store.clear_flags(programme, beneficiary_id, kind, at)
            if not cleared:
                what = f"{kind} flag" if kind else "flag"
                raise InvalidInput(f"beneficiary {beneficiary_id} has no open {what}")
            self.store.append_events(
                [
                    EventRecord(
                        at,
                        "beneficiary.flag_cleared",
                        None,
                        None,
                        None,
                        by.strip(),
                        f"{beneficiary_id}: {flag.kind}: {reason.strip()}",
                    )
                    for flag in cleared
                ]
            )
        return cleared

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

    def find_beneficiaries(
        self,
        *,
        national_id: str | None = None,
        msisdn: str | None = None,
        account: tuple[str, str] | None = None,
    ) -> list[str]:
        """The ids of the beneficiaries with this national id, mobile number (any Vietnamese
        form) or bank account (``(BIN, number)``), found by keyed blind index: the ledger never
        compares the plaintext. Give exactly one.

        Raises:
            InvalidInput: none or several given, or a value that is not well formed.
        """
        given = [v is not None for v in (national_id, msisdn, account)]
        if sum(given) != 1:
            raise InvalidInput("give exactly one of national_id, msisdn, account")
        if national_id is not None:
            value = national_id.strip()
            if not (len(value) == 12 and value.isdigit()):
                raise InvalidInput("national_id: must be 12 digits")
            return self.store.beneficiaries_by_index("national_id", value)
        if msisdn is not None:
            return self.store.beneficiaries_by_index("msisdn", normalise_msisdn(msisdn))
        assert account is not None
        bank_bin, number = (part.strip() for part in account)
        if not (len(bank_bin) == 6 and bank_bin.isdigit()) or not number:
            raise InvalidInput("account: give the bank's 6-digit BIN and the account number")
        return self.store.beneficiaries_by_index("account", f"{bank_bin}:{number}")

    def shared_details(self, kind: str) -> list[tuple[str, ...]]:
        """Groups of beneficiaries sharing one national id, mobile number or bank account
        (``kind``: ``national_id``, ``msisdn``, ``account``), compared by blind index.

        Raises:
            InvalidInput: an unknown kind.
        """
        if kind not in SHARED_KINDS:
            raise InvalidInput(f"kind: must be one of {', '.join(SHARED_KINDS)}")
        return self.store.shared_indexes(kind)

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
        by: str | None = None,
        allow_future: bool = False,
        today: dt.date | None = None,
    ) -> PrepareResult:
        """Prepare a cycle (see :func:`sap_payments.cycles.prepare`); ``by``: the maker;
        ``allow_future``: a month beyond next month, on purpose."""
        return prepare(
            self.store,
            period,
            rules=self.rules,
            programme=programme or self.config.programme,
            progress=progress,
            workers=workers,
            channel_providers=self.config.channel_providers,
            fallback_pay_points=self.config.fallback_pay_points,
            by=by,
            allow_future=allow_future,
            today=today,
        )

    def discard_cycle(
        self,
        period: Period | str,
        *,
        programme: str | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> DiscardResult:
        """Discard a prepared, unapproved cycle: its drafts are cancelled and it no longer
        blocks other months (see :func:`sap_payments.cycles.discard_cycle`)."""
        return discard_cycle(
            self.store,
            period,
            programme=programme or self.config.programme,
            by=by,
            reason=reason,
        )

    def approve(
        self,
        period: Period | str,
        *,
        by: str,
        programme: str | None = None,
        key: Ed25519PrivateKey | str | os.PathLike[str] | None = None,
        expect_digest: str | None = None,
        expect_count: int | None = None,
        expect_total: Money | int | None = None,
    ) -> ApprovalResult:
        """Approve a cycle, signed with the approver's private key (an Ed25519 key or its PEM
        file) when approver keys are registered (see :mod:`sap_payments.signing`).

        ``expect_digest`` — the digest of :meth:`review` (``cycle show``, ``report changes``)
        that the checker reviewed — and/or ``expect_count`` and ``expect_total`` refuse the
        approval (:class:`~sap_payments.signing.CycleChanged`, nothing approved) when the
        cycle has been prepared again since and differs (see
        :func:`sap_payments.cycles.approve`)."""
        if key is not None and not isinstance(key, Ed25519PrivateKey):
            key = load_private_key(Path(key))
        return approve(
            self.store,
            period,
            by=by,
            programme=programme or self.config.programme,
            key=key,
            expect_digest=expect_digest,
            expect_count=expect_count,
            expect_total=expect_total,
        )

    def review(self, period: Period | str, *, programme: str | None = None) -> CycleReview | None:
        """The digest, count and total the approval of a cycle is to be bound to (see
        :func:`sap_payments.cycles.cycle_review`)."""
        return cycle_review(self.store, period, programme=programme or self.config.programme)

    def add_approver(self, name: str, public_key: bytes | str | os.PathLike[str]) -> ApproverKey:
        """Register an approver's public key (raw bytes or a PEM file); from then on every
        approval must be signed."""
        if not isinstance(public_key, bytes):
            public_key = load_public_key(Path(public_key))
        return add_approver(self.store, name, public_key)

    def approvers(self) -> list[ApproverKey]:
        """The registered approvers, by name."""
        return approvers(self.store)

    def verify_audit(
        self, checkpoint: Checkpoint | str | os.PathLike[str] | None = None
    ) -> AuditReport:
        """Verify the audit trail (see :func:`sap_payments.audit.verify`), against a
        checkpoint (or its JSON file) when given."""
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            checkpoint = Checkpoint.load(Path(checkpoint))
        return verify_audit(self.store, checkpoint)

    def checkpoint(
        self,
        period: Period | str,
        *,
        key: Ed25519PrivateKey | str | os.PathLike[str] | None = None,
        programme: str | None = None,
    ) -> Checkpoint:
        """A closed cycle's signed checkpoint: made (and stored) with the agency's ``key``, or
        the one made before when no key is given."""
        programme = programme or self.config.programme
        if key is None:
            found = stored_checkpoint(self.store, period, programme=programme)
            if found is None:
                raise InvalidInput(
                    f"no checkpoint of cycle {period} yet: give the agency's signing key (--key)"
                )
            return found
        if not isinstance(key, Ed25519PrivateKey):
            key = load_private_key(Path(key))
        return make_checkpoint(self.store, period, key, programme=programme)

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

    # -- account-opening campaigns (see sap_payments.enrolment) ---------------------------------
    def create_campaign(
        self,
        name: str,
        *,
        provider: str,
        communes: Sequence[str] = (),
        districts: Sequence[str] = (),
        channel: str = "postal",
        programme: str | None = None,
        by: str | None = None,
        at: str | None = None,
    ) -> CampaignSummary:
        """Target the beneficiaries on ``channel`` in the areas given, for ``provider`` (a
        configured e-wallet or bank provider) to open accounts."""
        configured = self.config.providers.get(provider)
        if configured is None:
            raise ConfigError(f"provider {provider!r} is not configured", key="providers")
        return create_campaign(
            self.store,
            name,
            provider=provider,
            channel=configured.channel,
            communes=communes,
            districts=districts,
            target_channel=channel,
            programme=programme or self.config.programme,
            by=by,
            at=at,
        )

    def run_campaign(
        self,
        name: str,
        *,
        by: str | None = None,
        retry_failed: bool = False,
        progress: Callable[[int, int], None] | None = None,
        at: str | None = None,
    ) -> RunResult:
        """Ask the campaign's provider to open (or confirm) each target's account."""
        campaign = campaign_summary(self.store, name).campaign
        instances = self.provider_instances()
        if campaign.provider not in instances:
            raise ConfigError(f"provider {campaign.provider!r} is not configured", key="providers")
        return run_campaign(
            self.store,
            name,
            instances[campaign.provider],
            by=by,
            retry_failed=retry_failed,
            progress=progress,
            at=at,
        )

    def import_enrolment_results(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        by: str | None = None,
        at: str | None = None,
    ) -> EnrolmentImport:
        """Apply a provider's enrolment results file to a campaign, exactly once."""
        return import_enrolment_results(self.store, name, path, by=by, at=at)

    def schedule_campaign(
        self, name: str, from_period: Period | str, *, by: str | None = None
    ) -> int:
        """Switch the campaign's beneficiaries with a new account from ``from_period`` on."""
        return schedule_campaign(self.store, name, from_period, by=by)

    def campaign(self, name: str) -> CampaignSummary:
        return campaign_summary(self.store, name)

    def enrolment_report(
        self, periods: Sequence[Period] | None = None, *, programme: str | None = None
    ) -> EnrolmentReport:
        """Campaign progress and account share per commune and provider, month by month."""
        return enrolment_report(
            self.store, programme=programme or self.config.programme, periods=periods
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
