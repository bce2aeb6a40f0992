"""Account-opening campaigns: move beneficiaries from cash to an e-wallet or a bank account.

In 2021 Thừa Thiên Huế moved social assistance from cash to accounts commune by commune: a
provider (an e-wallet operator or a bank) opened accounts for the beneficiaries of a commune, and
from the next payment month they were paid into them. A campaign here is that work:

1. :func:`create_campaign` — choose the targets: the programme's beneficiaries (not ceased) in
   some communes and/or districts whose current channel is, say, ``postal``; name the provider
   that opens the accounts (its channel is the beneficiaries' new channel).
2. :func:`run_campaign` — ask the provider, beneficiary by beneficiary: a provider with the
   ``enrolment`` capability opens (or finds) an account; one with ``address_validation`` only
   confirms that the account the roster already lists is alive (an existing wallet). Every
   attempt is recorded with its time, actor and outcome: opened, already had one, refused,
   failed (with a reason), pending.
3. :func:`import_enrolment_results` — or read the provider's results file (CSV or XLSX, format
   in ``docs/enrolment.md``): all of it or nothing, every problem named by line, column and
   reason; a ``vietqr`` column is read with :func:`~sap_payments.vietqr.parse_vietqr`; the same
   file imported again changes nothing.
4. :func:`schedule_campaign` — switch the beneficiaries with a new account from a benefit month
   on: a *mandate update* is scheduled for each.
5. :func:`apply_mandate_updates` — called by :func:`~sap_payments.cycles.prepare` at the start
   of every cycle: each update due (its month is the cycle's or earlier) becomes a new version
   of the beneficiary's record (history kept, an event ``mandate.updated``): the channel and
   provider switch to the new account, which is the mandate's first address, and the old pay
   point (or account of another channel) stays in the record as the fallback the engine uses
   when the new account turns out dead.

A later roster import that still lists the old channel (the agency's export has not caught up)
overwrites the record as every import does; the next :func:`~sap_payments.cycles.prepare`
notices that the record went back to exactly the payment it had before the campaign and applies
the campaign's account again (event ``mandate.reapplied``). A roster that lists another account
or channel wins: the update is ``superseded`` and not applied again.

The new account is personal data: it is kept (packed like the beneficiaries' details) only
until it is applied, and it never appears in a message or an event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

import attrs

from sap_payments._tables import open_table
from sap_payments.beneficiaries import (
    BankAccount,
    Channel,
    FinancialAddress,
    WalletAddress,
    normalise_msisdn,
)
from sap_payments.config import DEFAULT_PROGRAMME
from sap_payments.errors import InvalidInput, InvalidRoster, RowProblem, StateError
from sap_payments.iso20022.napas import NAPAS_BANKS
from sap_payments.output import unescape_formula
from sap_payments.periods import Period
from sap_payments.providers import (
    EnrollingProvider,
    EnrolmentOutcome,
    EnrolmentOutcomeKind,
    EnrolmentRequest,
    Provider,
    ProviderError,
    ProviderTimeout,
)
from sap_payments.roster import header_positions
from sap_payments.store import (
    BeneficiaryRecord,
    CampaignRecord,
    CampaignTarget,
    EnrolmentAttempt,
    EventRecord,
    ImportSummary,
    MandateUpdate,
    Store,
)
from sap_payments.vietqr import InvalidVietQR, parse_vietqr

__all__ = [
    "OUTCOMES",
    "RESULT_COLUMNS",
    "CampaignError",
    "CampaignNotFound",
    "CampaignSummary",
    "EnrolmentImport",
    "InvalidEnrolmentResults",
    "RunResult",
    "apply_mandate_updates",
    "campaign_summary",
    "create_campaign",
    "import_enrolment_results",
    "run_campaign",
    "schedule_campaign",
]

#: The outcomes of an attempt, as recorded and as written in a results file.
OUTCOMES: Final = tuple(kind.value for kind in EnrolmentOutcomeKind)
#: The columns a results file may have; ``beneficiary_id`` and ``outcome`` are required.
RESULT_COLUMNS: Final = (
    "beneficiary_id",
    "outcome",
    "reason",
    "msisdn",
    "bank_bin",
    "account_number",
    "vietqr",
    "reference",
)
_REQUIRED: Final = ("beneficiary_id", "outcome")
#: Target states after which a campaign no longer changes the target.
_SWITCHED: Final = frozenset({"scheduled", "applied"})
#: Target states ``run_campaign`` tries (again).
_TO_TRY: Final = frozenset({"targeted", "pending"})
_WITH_ACCOUNT: Final = frozenset({"opened", "already_had"})
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CODE = re.compile(r"[A-Za-z0-9]{1,12}")
_BIN = re.compile(r"\d{6}")
_ACCOUNT = re.compile(r"[A-Za-z0-9]{6,19}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Attempts recorded per transaction while a campaign runs.
_CHUNK: Final = 100


class CampaignError(StateError):
    """A campaign action that does not fit the campaign or the ledger."""

    def __init__(self, campaign: str, message: str) -> None:
        super().__init__(f"campaign {campaign}: {message}")
        self.campaign = campaign


class CampaignNotFound(CampaignError, LookupError):
    """No campaign of this name."""

    def __init__(self, campaign: str) -> None:
        super().__init__(campaign, "no such campaign; create it with 'campaign create'")


class InvalidEnrolmentResults(InvalidRoster):
    """A provider's enrolment results file with invalid rows; nothing from it was applied."""


@attrs.frozen
class RunResult:
    """What :func:`run_campaign` did: attempts made, by outcome."""

    campaign: str
    attempted: int
    outcomes: dict[str, int]


@attrs.frozen
class EnrolmentImport:
    """What :func:`import_enrolment_results` did (``already_imported``: the same file was
    imported before, and nothing changed)."""

    campaign: str
    source: str
    sha256: str
    rows: int
    outcomes: dict[str, int]
    already_imported: bool = False


@attrs.frozen
class CampaignSummary:
    """A campaign and where its targets stand: counts by state, overall and per commune."""

    campaign: CampaignRecord
    states: dict[str, int]
    by_commune: dict[str, dict[str, int]]
    scheduled_from: tuple[str, ...]  # the months its mandate updates take effect from

    @property
    def targeted(self) -> int:
        return sum(self.states.values())


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _require(store: Store, name: str) -> CampaignRecord:
    campaign = store.campaign(name)
    if campaign is None:
        raise CampaignNotFound(name)
    return campaign


# -- 1. targeting ---------------------------------------------------------------------------------
def create_campaign(
    store: Store,
    name: str,
    *,
    provider: str,
    channel: Channel | str,
    communes: Sequence[str] = (),
    districts: Sequence[str] = (),
    target_channel: Channel | str = Channel.POSTAL,
    programme: str = DEFAULT_PROGRAMME,
    by: str | None = None,
    at: str | None = None,
) -> CampaignSummary:
    """Create a campaign and choose its targets.

    Args:
        provider: the provider (configured name) that opens the accounts and pays into them.
        channel: that provider's channel, ``ewallet`` or ``bank``: the targets' new channel.
        communes, districts: the areas targeted (a beneficiary in any of them is a target).
        target_channel: the current channel of the beneficiaries targeted.

    Raises:
        CampaignError: the name is taken, no area is given, the channels do not fit, or no
            beneficiary matches.
    """
    if not _NAME.fullmatch(name):
        raise InvalidInput("a campaign name is 1–64 letters, digits, '.', '_' or '-'")
    new, old = Channel(channel), Channel(target_channel)
    if not new.electronic:
        raise CampaignError(name, f"provider {provider} pays {new}: a campaign opens accounts")
    if new is old:
        raise CampaignError(name, f"the targets already are on channel {old}")
    if not communes and not districts:
        raise CampaignError(name, "name at least one commune or district to target")
    for code in (*communes, *districts):
        if not _CODE.fullmatch(code):
            raise InvalidInput(f"not an area code: {code!r}")
    at = at or _now()
    with store.transaction():
        if store.campaign(name) is not None:
            raise CampaignError(name, "a campaign of this name exists")
        found = store.beneficiaries_on_channel(programme, old.value, communes, districts)
        if not found:
            raise CampaignError(
                name, f"no beneficiary of {programme} on channel {old} in the areas given"
            )
        record = CampaignRecord(
            name,
            programme,
            provider,
            new.value,
            old.value,
            json.dumps(sorted(set(communes))),
            json.dumps(sorted(set(districts))),
            at,
            by,
        )
        store.add_campaign(
            record,
            [
                CampaignTarget(name, ident, province, district, commune, "targeted", None, at)
                for ident, province, district, commune in found
            ],
        )
        store.append_events(
            [
                EventRecord(
                    at,
                    "campaign.created",
                    None,
                    None,
                    None,
                    by,
                    f"campaign {name}: {len(found)} beneficiaries on {old} to {new} "
                    f"with {provider}",
                )
            ]
        )
    return campaign_summary(store, name)


def campaign_summary(store: Store, name: str) -> CampaignSummary:
    """The campaign and its targets' states (overall and per commune)."""
    campaign = _require(store, name)
    states: Counter[str] = Counter()
    by_commune: dict[str, Counter[str]] = {}
    for target in store.campaign_targets(name):
        states[target.state] += 1
        by_commune.setdefault(target.commune_code, Counter())[target.state] += 1
    months = sorted(
        {
            update.from_period
            for update in store.mandate_updates(
                campaign.programme, ("scheduled", "applied", "superseded"), name
            )
        }
    )
    return CampaignSummary(
        campaign,
        dict(sorted(states.items())),
        {code: dict(sorted(c.items())) for code, c in sorted(by_commune.items())},
        tuple(Period.text(month) for month in months),
    )


# -- 2. attempts ----------------------------------------------------------------------------------
def _account(address: FinancialAddress | None, channel: str) -> str | None:
    """The address key of an account of ``channel`` (normalised), or None when it is not one."""
    if isinstance(address, WalletAddress) and channel == Channel.EWALLET:
        try:
            return f"ewallet:{normalise_msisdn(address.msisdn)}"
        except InvalidInput:
            return None
    if (
        isinstance(address, BankAccount)
        and channel == Channel.BANK
        and address.bank_bin in NAPAS_BANKS
        and _ACCOUNT.fullmatch(address.account_number)
    ):
        return address.key
    return None


def _known_account(record: BeneficiaryRecord, channel: str) -> FinancialAddress | None:
    """The account of ``channel`` the beneficiary's record already lists, if any."""
    if channel == Channel.EWALLET and record.msisdn:
        return WalletAddress(record.msisdn)
    if channel == Channel.BANK and record.bank_bin and record.account_number:
        return BankAccount(record.bank_bin, record.account_number)
    return None


def _attempt(
    provider: Provider, campaign: CampaignRecord, record: BeneficiaryRecord
) -> tuple[str, EnrolmentOutcome]:
    """(source, outcome) of one attempt for one beneficiary."""
    key = f"{campaign.name}:{record.beneficiary_id}"
    if provider.capabilities.enrolment and isinstance(provider, EnrollingProvider):
        request = EnrolmentRequest(
            key,
            record.beneficiary_id,
            record.full_name,
            record.national_id,
            record.birth_date,
            record.msisdn if campaign.channel == Channel.EWALLET else None,
            record.commune_code,
        )
        try:
            return "enrol", provider.enrol(request)
        except ProviderTimeout:
            return "enrol", EnrolmentOutcome(key, EnrolmentOutcomeKind.PENDING, reason="timeout")
        except ProviderError as exc:
            reason = (
                f"provider error {exc.provider_code}" if exc.provider_code else "provider error"
            )
            return "enrol", EnrolmentOutcome(key, EnrolmentOutcomeKind.PENDING, reason=reason)
    known = _known_account(record, campaign.channel)
    if known is None:
        return "validate", EnrolmentOutcome(
            key, EnrolmentOutcomeKind.FAILED, reason="no known account to confirm"
        )
    try:
        check = provider.validate(known, record.full_name)
    except ProviderError:
        return "validate", EnrolmentOutcome(
            key, EnrolmentOutcomeKind.PENDING, reason="provider error"
        )
    if not check.ok:
        why = check.reason.value if check.reason is not None else "account not usable"
        return "validate", EnrolmentOutcome(key, EnrolmentOutcomeKind.FAILED, reason=why)
    if check.name_matches is False:
        return "validate", EnrolmentOutcome(
            key, EnrolmentOutcomeKind.FAILED, reason="name_mismatch"
        )
    return "validate", EnrolmentOutcome(key, EnrolmentOutcomeKind.ALREADY_HAD, address=known)


def run_campaign(
    store: Store,
    name: str,
    provider: Provider,
    *,
    by: str | None = None,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
    at: str | None = None,
) -> RunResult:
    """Ask the provider about every target not yet settled (``targeted`` or ``pending``; with
    ``retry_failed`` also ``failed``) and record each attempt, ``_CHUNK`` per transaction.

    A provider with capability ``enrolment`` opens or finds the account (idempotent by the key
    ``<campaign>:<beneficiary_id>``); one with ``address_validation`` only confirms the account
    the record already lists. A timeout or an error leaves the target ``pending``. ``at``
    (ISO 8601) stamps every attempt instead of the time of each (for replays and tests).

    Raises:
        CampaignError: the provider is not the campaign's, or can neither enrol nor validate.
    """
    campaign = _require(store, name)
    if provider.name != campaign.provider:
        raise CampaignError(name, f"runs with provider {campaign.provider}, not {provider.name}")
    capabilities = provider.capabilities
    if not (capabilities.enrolment and isinstance(provider, EnrollingProvider)) and not (
        capabilities.address_validation
    ):
        raise CampaignError(
            name,
            f"provider {provider.name} can neither open nor check accounts; import its results "
            "file with 'campaign import'",
        )
    states = _TO_TRY | ({"failed"} if retry_failed else set())
    todo = [t.beneficiary_id for t in store.campaign_targets(name) if t.state in states]
    outcomes: Counter[str] = Counter()
    for start in range(0, len(todo), _CHUNK):
        attempts: list[EnrolmentAttempt] = []
        addresses: dict[str, str] = {}
        for ident in todo[start : start + _CHUNK]:
            record = store.beneficiary(ident)
            if record is None:  # pragma: no cover - targets are never deleted
                continue
            source, outcome = _attempt(provider, campaign, record)
            kind, reason = outcome.kind.value, outcome.reason
            if kind in _WITH_ACCOUNT:
                account = _account(outcome.address, campaign.channel)
                if account is None:
                    kind, reason = "failed", f"the provider gave no {campaign.channel} account"
                else:
                    addresses[ident] = account
            attempts.append(
                EnrolmentAttempt(
                    name, ident, at or _now(), by, source, kind, reason, outcome.provider_reference
                )
            )
            outcomes[kind] += 1
        with store.transaction():
            store.record_enrolment(attempts, addresses)
        if progress is not None:
            progress(min(start + _CHUNK, len(todo)), len(todo))
    if todo:
        with store.transaction():
            store.append_events(
                [_event("campaign.run", by, f"campaign {name}: {len(todo)} attempts", outcomes, at)]
            )
    return RunResult(name, len(todo), dict(sorted(outcomes.items())))


def _event(
    kind: str, by: str | None, text: str, outcomes: Counter[str], at: str | None = None
) -> EventRecord:
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    return EventRecord(at or _now(), kind, None, None, None, by, f"{text}: {counts or 'none'}")


# -- 3. the provider's results file ---------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _header(source: str, header: Sequence[str], line: int) -> dict[str, int]:
    return header_positions(
        source,
        header,
        RESULT_COLUMNS,
        required=_REQUIRED,
        error=InvalidEnrolmentResults,
        line=line,
    )


class _ResultRows:
    """Checks the rows of a results file against the campaign; collects every problem."""

    def __init__(self, campaign: CampaignRecord, targets: dict[str, CampaignTarget]) -> None:
        self.campaign = campaign
        self.targets = targets
        self.problems: list[RowProblem] = []
        self.first_line: dict[str, int] = {}

    def add(self, line: int, column: str, reason: str) -> None:
        self.problems.append(RowProblem(line, column, reason))

    def check(
        self, line: int, cell: dict[str, str]
    ) -> tuple[str, str, str | None, str | None, str | None] | None:
        """(beneficiary_id, outcome, reason, address key, reference), or None on a problem."""
        before = len(self.problems)
        ident, outcome = cell["beneficiary_id"], cell["outcome"].lower()
        target = self.targets.get(ident)
        if not ident:
            self.add(line, "beneficiary_id", "required")
        elif target is None:
            self.add(line, "beneficiary_id", f"not a target of campaign {self.campaign.name}")
        elif ident in self.first_line:
            self.add(
                line, "beneficiary_id", f"listed twice (first on line {self.first_line[ident]})"
            )
        elif target.state in _SWITCHED:
            self.add(line, "beneficiary_id", f"already switched by this campaign ({target.state})")
        if ident:
            self.first_line.setdefault(ident, line)
        if outcome not in OUTCOMES:
            self.add(line, "outcome", f"must be one of {', '.join(OUTCOMES)}")
        reason = unicodedata.normalize("NFC", unescape_formula(cell["reason"])) or None
        if reason is not None and (len(reason) > 200 or _CONTROL.search(reason)):
            self.add(line, "reason", "longer than 200 characters or holds control characters")
        if outcome in ("refused", "failed") and reason is None:
            self.add(line, "reason", f"required when outcome is {outcome}")
        reference = cell["reference"] or None
        if reference is not None and (len(reference) > 64 or _CONTROL.search(reference)):
            self.add(line, "reference", "longer than 64 characters or holds control characters")
        address = self.address(line, cell, outcome)
        if len(self.problems) != before:
            return None
        return ident, outcome, reason, address, reference

    def address(self, line: int, cell: dict[str, str], outcome: str) -> str | None:
        given = [c for c in ("msisdn", "bank_bin", "account_number", "vietqr") if cell[c]]
        if outcome not in _WITH_ACCOUNT:
            if given:
                self.add(line, given[0], f"must be empty when outcome is {outcome or '(empty)'}")
            return None
        channel = self.campaign.channel
        kinds = {
            "msisdn" if c == "msisdn" else "vietqr" if c == "vietqr" else "bank" for c in given
        }
        if not kinds:
            column = "msisdn" if channel == Channel.EWALLET else "account_number"
            self.add(line, column, f"an account is required when outcome is {outcome}")
            return None
        if len(kinds) > 1:
            self.add(line, given[-1], "give one account: msisdn, bank_bin/account_number or vietqr")
            return None
        kind = kinds.pop()
        wanted = "msisdn" if channel == Channel.EWALLET else "bank_bin, account_number or vietqr"
        if (kind == "msisdn") != (channel == Channel.EWALLET):
            self.add(
                line,
                given[0],
                f"campaign {self.campaign.name} switches to {channel} "
                f"({self.campaign.provider}): give {wanted}",
            )
            return None
        if kind == "msisdn":
            try:
                return f"ewallet:{normalise_msisdn(cell['msisdn'])}"
            except InvalidInput as exc:
                self.add(line, "msisdn", str(exc))
                return None
        if kind == "vietqr":
            try:
                return parse_vietqr(cell["vietqr"]).address().key
            except InvalidVietQR as exc:
                self.add(line, "vietqr", f"{exc.reason}: {exc}")
                return None
        bank_bin, account = cell["bank_bin"], cell["account_number"]
        ok = True
        if not _BIN.fullmatch(bank_bin):
            self.add(line, "bank_bin", "must be the bank's 6-digit NAPAS BIN")
            ok = False
        elif bank_bin not in NAPAS_BANKS:
            self.add(line, "bank_bin", f"{bank_bin} is not the BIN of a NAPAS member bank")
            ok = False
        if not _ACCOUNT.fullmatch(account):
            self.add(line, "account_number", "must be 6–19 letters or digits")
            ok = False
        return f"bank:{bank_bin}:{account}" if ok else None


def import_enrolment_results(
    store: Store,
    name: str,
    path: str | os.PathLike[str],
    *,
    by: str | None = None,
    at: str | None = None,
) -> EnrolmentImport:
    """Apply a provider's enrolment results file (CSV or XLSX) to a campaign, all or nothing.

    Each row is an attempt (source ``import <id>``) that sets its target's outcome. Importing
    the same file (same SHA-256) into the same campaign again changes nothing.

    Raises:
        InvalidEnrolmentResults: the file or some rows are invalid (every problem listed with
            line, column and reason); nothing was applied.
    """
    campaign = _require(store, name)
    source = str(path)
    digest = _sha256(Path(path))
    kind = f"enrolment:{name}"
    earlier = store.find_import(kind, digest)
    if earlier is not None:
        return EnrolmentImport(name, source, digest, earlier.rows, {}, already_imported=True)
    try:
        table = open_table(path, columns=RESULT_COLUMNS)
        header, rows = table.header, table.rows
        try:
            positions = _header(source, header, table.line)
        except InvalidEnrolmentResults:
            table.close()
            raise
        checker = _ResultRows(campaign, {t.beneficiary_id: t for t in store.campaign_targets(name)})
        checked: list[tuple[str, str, str | None, str | None, str | None]] = []
        count = 0
        for line, cells in rows:
            count += 1
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
                checker.add(line, "(row)", f"has {len(cells)} fields, the header {len(header)}")
                continue
            cell = {
                column: (cells[positions[column]].strip() if positions[column] < len(cells) else "")
                if column in positions
                else ""
                for column in RESULT_COLUMNS
            }
            result = checker.check(line, cell)
            if result is not None:
                checked.append(result)
    except InvalidEnrolmentResults:
        raise
    except InvalidRoster as exc:  # from the file reader: not UTF-8, broken CSV, …
        raise InvalidEnrolmentResults(exc.source, exc.problems, total=exc.total) from None
    if count == 0 and not checker.problems:
        checker.add(2, "(file)", "the file has no rows")
    if checker.problems:
        raise InvalidEnrolmentResults(source, sorted(checker.problems, key=lambda p: p.line))
    at = at or _now()
    outcomes: Counter[str] = Counter(outcome for _, outcome, _, _, _ in checked)
    with store.transaction():
        import_id = store.add_import(kind, source, digest, at)
        store.record_enrolment(
            [
                EnrolmentAttempt(name, ident, at, by, f"import {import_id}", outcome, reason, ref)
                for ident, outcome, reason, _, ref in checked
            ],
            {ident: address for ident, _, _, address, _ in checked if address is not None},
        )
        store.finish_import(import_id, count, ImportSummary(0, count, 0))
        store.append_events(
            [_event("campaign.imported", by, f"campaign {name}: import {import_id}", outcomes, at)]
        )
    return EnrolmentImport(name, source, digest, count, dict(sorted(outcomes.items())))


# -- 4. scheduling the switch ---------------------------------------------------------------------
def schedule_campaign(
    store: Store, name: str, from_period: Period | str, *, by: str | None = None
) -> int:
    """Schedule the switch of every target with a new account, from ``from_period`` on.

    The updates take effect when a cycle for that month or a later one is prepared. Targets
    still pending can be scheduled by a later call, once their outcome is known.

    Raises:
        CampaignError: a cycle of that month or later is already approved (it would not
            see the switch): choose a later month.
    """
    campaign = _require(store, name)
    period = Period.parse(from_period) if isinstance(from_period, str) else from_period
    at = _now()
    with store.transaction():
        for cycle in store.cycles(campaign.programme):
            if cycle.period >= period.ordinal and cycle.state not in ("prepared", "discarded"):
                raise CampaignError(
                    name,
                    f"cycle {Period.text(cycle.period)} is {cycle.state}; schedule from "
                    f"{Period(cycle.period).next()} or later",
                )
        count = store.schedule_mandate_updates(
            name, campaign.programme, period.ordinal, campaign.channel, campaign.provider, at
        )
        store.append_events(
            [
                EventRecord(
                    at,
                    "campaign.scheduled",
                    None,
                    None,
                    None,
                    by,
                    f"campaign {name}: {count} beneficiaries switch to {campaign.channel} "
                    f"({campaign.provider}) from {period}",
                )
            ]
        )
    return count


# -- 5. applying, at the start of prepare ---------------------------------------------------------
def _switched(record: BeneficiaryRecord, update: MandateUpdate, address: str) -> BeneficiaryRecord:
    """The record paid through ``address`` first; its other addresses kept as fallbacks."""
    kind, _, rest = address.partition(":")
    if kind == "ewallet":
        return record._replace(channel=update.channel, provider=update.provider, msisdn=rest)
    bank_bin, _, account = rest.partition(":")
    return record._replace(
        channel=update.channel, provider=update.provider, bank_bin=bank_bin, account_number=account
    )


def _payment(record: BeneficiaryRecord) -> tuple[object, ...]:
    """What a roster import decides of how a beneficiary is paid (channel and accounts)."""
    return (record.channel, record.provider, record.msisdn, record.bank_bin, record.account_number)


def apply_mandate_updates(store: Store, programme: str, period: Period, at: str) -> int:
    """Apply the mandate updates due by ``period``; re-apply those a roster import undid.

    Called by :func:`~sap_payments.cycles.prepare` inside its transaction, before it reads the
    beneficiaries. Returns how many beneficiary records it changed.
    """
    due = [
        u
        for u in store.mandate_updates(programme, ("scheduled",))
        if u.from_period <= period.ordinal
    ]
    watched = store.mandate_updates(programme, ("applied",), changed_since=True)
    undone: list[tuple[MandateUpdate, BeneficiaryRecord, str]] = []
    for update in watched:
        if update.applied_version is None:  # pragma: no cover - set when applied
            continue
        history = dict(store.beneficiary_history(update.beneficiary_id))
        as_applied = history.get(update.applied_version)
        before = history.get(update.applied_version - 1)
        current = store.beneficiary(update.beneficiary_id)
        if as_applied is None or before is None or current is None:  # pragma: no cover
            continue
        if _payment(current) == _payment(before):
            account = _account(_known_account(as_applied, update.channel), update.channel)
            if account is not None:
                undone.append((update, current, account))
        elif _payment(current) != _payment(as_applied):
            store.supersede_mandate_update(update.campaign, update.beneficiary_id, at)
            store.append_events(
                [
                    EventRecord(
                        at,
                        "mandate.superseded",
                        None,
                        None,
                        None,
                        f"campaign {update.campaign}",
                        f"beneficiary {update.beneficiary_id}: a roster import gave another "
                        "payment; the campaign's account is no longer applied",
                    )
                ]
            )
    if not due and not undone:
        return 0
    digest = hashlib.sha256(f"{programme}:{period}:{at}".encode()).hexdigest()
    import_id = store.add_import("mandate-update", f"prepare {programme} {period}", digest, at)
    events: list[EventRecord] = []
    changed = 0
    work: Iterable[tuple[str, MandateUpdate, BeneficiaryRecord | None, str | None]] = [
        *(("mandate.updated", u, store.beneficiary(u.beneficiary_id), u.address) for u in due),
        *(("mandate.reapplied", u, record, account) for u, record, account in undone),
    ]
    for kind, update, record, address in work:
        if record is None or address is None:  # pragma: no cover - never deleted / always held
            continue
        new = _switched(record, update, address)
        store.apply_mandate_update(update, new, period=period.ordinal, import_id=import_id, at=at)
        changed += 1
        fallback = ", ".join(
            c for c in ("ewallet", "bank", "postal") if c != update.channel and _has(new, c)
        )
        events.append(
            EventRecord(
                at,
                kind,
                None,
                None,
                None,
                f"campaign {update.campaign}",
                f"beneficiary {update.beneficiary_id}: paid by {update.channel} "
                f"({update.provider}) from {period}, was {record.channel}; "
                f"fallback {fallback or 'none'}",
            )
        )
    store.finish_import(import_id, changed, ImportSummary(0, changed, 0))
    store.append_events(events)
    return changed


def _has(record: BeneficiaryRecord, channel: str) -> bool:
    if channel == "ewallet":
        return record.msisdn is not None
    if channel == "bank":
        return record.bank_bin is not None
    return record.pay_point is not None
