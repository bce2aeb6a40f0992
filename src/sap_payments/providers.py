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
  applied), :class:`ProviderUnavailable` when nothing was sent, :class:`PaymentsRefused` when
  the plugin refuses some payments of a batch before sending anything (a name or text its
  channel cannot carry): those fail with the reason given, the rest are sent again.

A result that names an amount (``Result.amount``) or an account (``Result.address``) the
provider confirmed is checked against the instruction before it is applied: another amount,
currency or account is never applied — the instruction waits, UNKNOWN, for an operator's review
(:func:`sap_payments.dispatch.apply_results`). A plugin fills these fields only with what its
provider actually echoed, never with what it was sent.

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

Plugin state (capability ``keeps_state``): what a plugin must remember to read its provider's
answers later — which message carried which payment, a mapping of its ids to our keys — belongs
in the ledger, not in files of its own that can be moved or lost. A provider that declares the
capability has the method of :class:`StatefulProvider`, ``bind_state(state)``, which
:func:`sap_payments.plugins.open_provider` calls once (after ``bind_ledger``, before anything
else) with a :class:`PluginState`: a small keyed store (namespace, key → bytes or JSON), kept in
the ledger's ``plugin_state`` table, committed with the ledger's own changes when the caller is
inside a transaction, and backed up with the ledger. :class:`MemoryPluginState` is the same in
memory, for a provider built without a ledger (a test calling the factory).

Submitting is idempotent by key: sending the same key twice never pays twice. sap_payments uses
the instruction id as the key, for every attempt.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, runtime_checkable

import attrs

from sap_payments.beneficiaries import Channel, FinancialAddress
from sap_payments.errors import InvalidInput, SapPaymentsError
from sap_payments.money import Money

__all__ = [
    "AddressCheck",
    "Capabilities",
    "EnrollingProvider",
    "EnrolmentOutcome",
    "EnrolmentOutcomeKind",
    "EnrolmentRequest",
    "LedgerBoundProvider",
    "MemoryPluginState",
    "Payment",
    "PaymentsRefused",
    "PluginState",
    "Provider",
    "ProviderError",
    "ProviderFactory",
    "ProviderTimeout",
    "ProviderUnavailable",
    "Reason",
    "ReportRefused",
    "Result",
    "ResultKind",
    "StatefulProvider",
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
    #: bind_state(state) is called once after opening (see StatefulProvider)
    keeps_state: bool = False


@attrs.frozen
class Payment:
    """One payment as a provider sees it."""

    key: str  # idempotency key: the instruction id
    amount: Money
    address: FinancialAddress
    payee_name: str
    reference: str  # remittance text, e.g. "monthly-allowance 2021-09"
    payee_is_proxy: bool = False  # the payee is the beneficiary's authorised proxy
    #: when the ledger committed the batch carrying this payment (the outbox record's
    #: ``created_at``, timezone-aware): the same for every payment of the batch and every time
    #: the batch is handed over again, so a plugin that writes it into a file (pain.001
    #: ``CreDtTm``) writes the same bytes again. None outside a ledger (a test calling submit).
    batch_created_at: dt.datetime | None = None


@attrs.frozen
class Result:
    """What a provider says happened to one payment."""

    key: str
    kind: ResultKind
    reason: Reason | None = None
    provider_reference: str | None = None
    provider_code: str | None = None  # the provider's own code, kept apart from ours
    provider_message: str | None = None
    #: the amount the provider says it paid (or holds): None when its answer names none
    amount: Money | None = None
    #: the account the provider says it paid into, as its answer names it (the MSISDN of a
    #: wallet, the BIN and number of a bank account): None when its answer names none. Only
    #: what the provider echoed — never copied from the payment sent — so that a payment into
    #: another account is caught (see the module doc)
    address: FinancialAddress | None = None


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
            PaymentsRefused: some payments cannot go through this channel (a name it cannot
                carry, an account number it cannot write); nothing was sent.
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


@runtime_checkable
class PluginState(Protocol):
    """What a provider instance remembers between calls and between runs (``keeps_state``).

    Values are bytes (``put``/``get``) or JSON (``put_json``/``get_json``), under a namespace of
    the plugin's choosing (``"message"``, ``"payment"``, …) and a key; each provider instance
    (``[providers.NAME]``) has its own. A write is committed at once, or with the caller's
    transaction when there is one; the writes inside ``with state.transaction():`` are committed
    together or not at all. The ledger's table is not encrypted: keep ids, keys, amounts and
    codes there, never a name, an account or a phone number.
    """

    def get(self, namespace: str, key: str) -> bytes | None:
        """The value stored under (``namespace``, ``key``); None when there is none."""
        ...

    def put(self, namespace: str, key: str, value: bytes) -> None:
        """Store ``value`` under (``namespace``, ``key``), replacing what was there."""
        ...

    def items(self, namespace: str) -> Iterator[tuple[str, bytes]]:
        """Every (key, value) of ``namespace``, by key."""
        ...

    def get_json(self, namespace: str, key: str) -> Any:
        """The JSON value stored under (``namespace``, ``key``); None when there is none."""
        ...

    def put_json(self, namespace: str, key: str, value: Any) -> None:
        """Store ``value`` (anything :func:`json.dumps` takes) as JSON."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """The writes inside happen together or not at all (nested calls join the outer)."""
        ...


def _check_slot(namespace: str, key: str = "-", value: bytes = b"") -> None:
    """Refuse what a :class:`PluginState` cannot store (raises InvalidInput)."""
    if not isinstance(namespace, str) or not namespace or not isinstance(key, str) or not key:
        raise InvalidInput(
            f"plugin state: namespace and key must be non-empty strings, not {namespace!r}, {key!r}"
        )
    if not isinstance(value, bytes | bytearray):
        raise InvalidInput(f"plugin state: a value is bytes, not {type(value).__name__}")


class MemoryPluginState:
    """A :class:`PluginState` in memory: what a provider built without a ledger remembers (it
    forgets everything when the process ends)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], bytes] = {}
        self._depth = 0

    def get(self, namespace: str, key: str) -> bytes | None:
        _check_slot(namespace, key)
        return self._values.get((namespace, key))

    def put(self, namespace: str, key: str, value: bytes) -> None:
        _check_slot(namespace, key, value)
        self._values[(namespace, key)] = bytes(value)

    def items(self, namespace: str) -> Iterator[tuple[str, bytes]]:
        _check_slot(namespace)
        return iter(sorted((k, v) for (ns, k), v in self._values.items() if ns == namespace))

    def get_json(self, namespace: str, key: str) -> Any:
        value = self.get(namespace, key)
        return None if value is None else json.loads(value)

    def put_json(self, namespace: str, key: str, value: Any) -> None:
        # compact, keys sorted, UTF-8: as the ledger's state stores it
        self.put(namespace, key, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        saved = copy.copy(self._values)
        self._depth = 1
        try:
            yield
        except BaseException:
            self._values = saved
            raise
        finally:
            self._depth = 0


@runtime_checkable
class StatefulProvider(Provider, Protocol):
    """A provider with capability ``keeps_state``: it keeps what it must remember in the ledger."""

    def bind_state(self, state: PluginState) -> None:
        """Keep this provider's memory in ``state`` from now on (a provider never bound keeps
        it in a :class:`MemoryPluginState`). Called once, after ``bind_ledger``, before any
        other call."""
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


class PaymentsRefused(ProviderError):
    """Some payments of a batch cannot go through this channel; NOTHING was sent.

    A plugin raises it from ``submit`` before it sends or writes anything — a payee name with a
    character its files cannot carry, an account number its format cannot hold — naming each
    refused payment: ``refused`` maps the payment's key to (:class:`Reason`, a short message
    without personal data, e.g. ``"creditor_name: holds a control character"``). Dispatch
    fails exactly those instructions (FAILED, with the reason) and sends the rest of the batch
    again as a new batch (same keys). A plugin that finds one bad payment at a time may name
    only that one: the rest is sent again and refused again until only good payments remain.
    """

    def __init__(
        self,
        provider: str,
        refused: Mapping[str, tuple[Reason, str]],
        *,
        provider_code: str | None = None,
        provider_message: str | None = None,
    ) -> None:
        self.refused = dict(refused)
        shown = "; ".join(
            f"{key}: {message}" for key, (_, message) in list(self.refused.items())[:3]
        )
        more = len(self.refused) - 3
        tail = f"; … and {more} more" if more > 0 else ""
        super().__init__(
            provider,
            f"refused {len(self.refused)} payments before sending anything ({shown}{tail})",
            provider_code=provider_code,
            provider_message=provider_message,
        )


class ReportRefused(ProviderError, InvalidInput):
    """A provider's report — a file, a callback body — that cannot be applied; nothing from it
    was: malformed, not a report at all, or naming what was never sent (a message, a
    transaction, a key).

    ``reason`` says why; ``source`` names the file (None when the plugin was handed bytes:
    ``import reports`` names it, see :meth:`in_file`); ``line`` and ``path`` (an element path,
    a JSON pointer) say where in it, when known. No personal data: ids, lines, codes only.
    """

    def __init__(
        self,
        provider: str,
        reason: str,
        *,
        source: str | None = None,
        line: int | None = None,
        path: str | None = None,
        provider_code: str | None = None,
        provider_message: str | None = None,
    ) -> None:
        where = ", ".join(
            p for p in (source or "", f"line {line}" if line else "", path or "") if p
        )
        super().__init__(
            provider,
            f"{where}: {reason}" if where else reason,
            provider_code=provider_code,
            provider_message=provider_message,
        )
        self.reason = reason
        self.source = source
        self.line = line
        self.path = path

    def in_file(self, source: str) -> ReportRefused:
        """The same refusal, naming the file ``source``."""
        return ReportRefused(
            self.provider,
            self.reason,
            source=source,
            line=self.line,
            path=self.path,
            provider_code=self.provider_code,
            provider_message=self.provider_message,
        )
