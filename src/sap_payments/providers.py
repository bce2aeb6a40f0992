"""The provider protocol: how sap_payments talks to whoever moves the money.

A provider is any object with the attributes and methods of :class:`Provider` — no subclassing.
Optional abilities are declared in :class:`Capabilities` and checked by the caller (a provider
without ``status_query`` is never asked for a status); they are not discovered by catching
``NotImplementedError``.

What crosses the boundary:

* out: :class:`Payment` — the instruction's key, amount, financial address, payee name (and
  whether the payee is an authorised proxy) and a reference text; nothing else about the
  beneficiary (no national id, no birth date);
* back: :class:`Result` — paid, failed (with a :class:`Reason`), returned, unclaimed, pending,
  or ``NOT_FOUND`` (the provider says, authoritatively, it never received the key);
* errors: :class:`ProviderTimeout` when the outcome is unknown (the payment may have been
  applied), :class:`ProviderUnavailable` when nothing was sent.

Account opening (capability ``enrolment``): a provider that can open or link an account for a
beneficiary also has the method of :class:`EnrollingProvider`, ``enrol(request)``, answered by
an :class:`EnrolmentOutcome` (opened, already had one, refused, failed, pending) with the new
:data:`~sap_payments.beneficiaries.FinancialAddress`. It is optional: a caller checks
``capabilities.enrolment`` before calling it (see :mod:`sap_payments.enrolment`).

Ledger identity (capability ``ledger_identity``): a provider that writes ids or files of its
own (batch and message ids, correlation ids, payout lists) can carry the ledger's id in them and
refuse an answer made for another ledger. It declares the capability and has the method of
:class:`LedgerBoundProvider`, ``bind_ledger(ledger_id)``, which
:func:`sap_payments.plugins.open_provider` calls once, right after the factory, before anything
else. A provider without the capability never hears of it (instruction ids already differ from
ledger to ledger).

Submitting is idempotent by key: sending the same key twice never pays twice. sap_payments uses
the instruction id as the key, for every attempt.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from sap_payments.beneficiaries import Channel, FinancialAddress
from sap_payments.errors import SapPaymentsError
from sap_payments.money import Money

__all__ = [
    "AddressCheck",
    "Capabilities",
    "EnrollingProvider",
    "EnrolmentOutcome",
    "EnrolmentOutcomeKind",
    "EnrolmentRequest",
    "LedgerBoundProvider",
    "Payment",
    "Provider",
    "ProviderError",
    "ProviderFactory",
    "ProviderTimeout",
    "ProviderUnavailable",
    "Reason",
    "Result",
    "ResultKind",
]


class ResultKind(enum.StrEnum):
    PAID = "paid"  # the money reached the payee's account, or was collected
    PENDING = "pending"  # received and in progress (accepted, not final)
    FAILED = "failed"  # not paid, final; see the reason
    RETURNED = "returned"  # paid, then came back
    UNCLAIMED = "unclaimed"  # cash not collected within the payment window
    NOT_FOUND = "not_found"  # the provider never received this key (safe to send again)


class Reason(enum.StrEnum):
    """Why a payment failed or came back, in sap_payments' words (providers map theirs)."""

    INACTIVE_WALLET = "inactive_wallet"
    CLOSED_ACCOUNT = "closed_account"
    UNKNOWN_ACCOUNT = "unknown_account"
    NAME_MISMATCH = "name_mismatch"
    LIMIT_EXCEEDED = "limit_exceeded"
    PAYEE_DECEASED = "payee_deceased"
    REFUSED = "refused"
    DUPLICATE = "duplicate"
    PROVIDER_ERROR = "provider_error"
    OTHER = "other"

    @property
    def dead_address(self) -> bool:
        """The address itself cannot be paid: the next cycle uses the mandate's next address."""
        return self in _DEAD


_DEAD = frozenset({Reason.INACTIVE_WALLET, Reason.CLOSED_ACCOUNT, Reason.UNKNOWN_ACCOUNT})


@attrs.frozen
class Capabilities:
    """What a provider can do, declared up front."""

    channels: frozenset[Channel]
    max_batch: int = 1000
    status_query: bool = True
    callbacks: bool = False
    cancellation: bool = False
    address_validation: bool = False
    enrolment: bool = False
    #: bind_ledger(ledger_id) is called once after opening (see LedgerBoundProvider)
    ledger_identity: bool = False


@attrs.frozen
class Payment:
    """One payment as a provider sees it."""

    key: str  # idempotency key: the instruction id
    amount: Money
    address: FinancialAddress
    payee_name: str
    reference: str  # remittance text, e.g. "monthly-allowance 2021-09"
    payee_is_proxy: bool = False  # the payee is the beneficiary's authorised proxy


@attrs.frozen
class Result:
    """What a provider says happened to one payment."""

    key: str
    kind: ResultKind
    reason: Reason | None = None
    provider_reference: str | None = None
    provider_code: str | None = None  # the provider's own code, kept apart from ours
    provider_message: str | None = None
    amount: Money | None = None


@attrs.frozen
class AddressCheck:
    """The answer to "can this address be paid?" asked before money moves."""

    ok: bool
    reason: Reason | None = None
    name_matches: bool | None = None


class EnrolmentOutcomeKind(enum.StrEnum):
    """What became of a request to open (or link) an account for a beneficiary."""

    OPENED = "opened"  # a new account was opened: the outcome carries its address
    ALREADY_HAD = "already_had"  # the beneficiary already had an active one: its address
    REFUSED = "refused"  # the beneficiary declined (final for this campaign)
    FAILED = "failed"  # could not be opened; see the reason (may be tried again)
    PENDING = "pending"  # in progress (e.g. identity check): ask again later


@attrs.frozen
class EnrolmentRequest:
    """Open or link an account for one beneficiary (capability ``enrolment``).

    ``key`` makes the request idempotent: asking again with the same key never opens a second
    account. Only what opening an account needs crosses the boundary: the name, the national id
    and birth date for the identity check, the commune, and a mobile number when one is known.
    """

    key: str
    beneficiary_id: str
    full_name: str
    national_id: str | None = None
    birth_date: str | None = None
    msisdn: str | None = None
    commune_code: str | None = None


@attrs.frozen
class EnrolmentOutcome:
    """A provider's answer to an :class:`EnrolmentRequest`.

    ``address`` is the account's address for ``OPENED`` and ``ALREADY_HAD`` (None otherwise);
    ``reason`` says in a few words (no personal data) why it was refused or failed.
    """

    key: str
    kind: EnrolmentOutcomeKind
    address: FinancialAddress | None = None
    reason: str | None = None
    provider_reference: str | None = None
    provider_code: str | None = None  # the provider's own code, kept apart from ours
    provider_message: str | None = None


@runtime_checkable
class Provider(Protocol):
    """A configured provider instance (a plugin bound to its settings).

    ``name`` and ``capabilities`` may be plain attributes or read-only properties. ``validate``
    must exist, but is only called when ``capabilities.address_validation`` is true.
    """

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        """Send payments; idempotent by key. Returns what is known at once (often PENDING).

        Raises:
            ProviderTimeout: the outcome is unknown — some payments may have been applied.
            ProviderUnavailable: nothing was sent.
        """
        ...

    def status(self, keys: Sequence[str]) -> list[Result]:
        """The current result of each key (``NOT_FOUND`` when never received)."""
        ...

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        """Check an address before payment (capability ``address_validation``)."""
        ...

    def parse_report(self, data: bytes) -> list[Result]:
        """Turn a report or callback body from the provider into results."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class EnrollingProvider(Provider, Protocol):
    """A provider with capability ``enrolment``: it also opens or links accounts."""

    def enrol(self, request: EnrolmentRequest) -> EnrolmentOutcome:
        """Open or link an account; idempotent by ``request.key``.

        Raises:
            ProviderTimeout: no answer in time (the account may have been opened: ask again
                with the same key).
            ProviderUnavailable: nothing was sent.
        """
        ...


@runtime_checkable
class LedgerBoundProvider(Provider, Protocol):
    """A provider with capability ``ledger_identity``: told which ledger it works for."""

    def bind_ledger(self, ledger_id: str) -> None:
        """Work for the ledger ``ledger_id`` (16 hex digits) from now on: put it in the ids and
        files this provider makes, and refuse, with
        :class:`~sap_payments.errors.ForeignLedger`, a report or answer that names another
        ledger. Called once, before any other call."""
        ...


class ProviderFactory(Protocol):
    """What an entry point of group ``sap_payments.providers`` names."""

    def __call__(self, name: str, settings: Mapping[str, Any]) -> Provider: ...


class ProviderError(SapPaymentsError):
    """A provider refused or failed a request. ``provider_code``/``provider_message`` are the
    provider's own words, kept apart from ours."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        provider_code: str | None = None,
        provider_message: str | None = None,
    ) -> None:
        super().__init__(f"provider {provider}: {message}")
        self.provider = provider
        self.provider_code = provider_code
        self.provider_message = provider_message


class ProviderTimeout(ProviderError):
    """No answer in time: the payments may or may not have been applied (outcome unknown)."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached; nothing was sent."""
