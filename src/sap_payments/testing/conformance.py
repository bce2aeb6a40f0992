"""The conformance kit: proof that a provider plugin keeps the promises of the protocol.

A plugin author runs it in their own test suite, in one of three ways::

    from sap_payments.testing.conformance import ProviderConformance, check_provider

    def test_mymoney_conforms() -> None:                 # 1. one call, every check
        check_provider(mymoney_factory, {"base_url": "http://127.0.0.1:8080"})

    class TestMyMoney(ProviderConformance):              # 2. one pytest test per check
        plugin = "mymoney"                               # (or factory = staticmethod(...))
        settings = {"base_url": "http://127.0.0.1:8080"}

    @pytest.mark.parametrize("check", CHECKS, ids=str)   # 3. parametrised over CHECKS
    def test_mymoney(check: Check) -> None:
        run_check(check, mymoney_factory, {...})

Each check opens a fresh provider from the factory, uses keys of its own (a random prefix by
default, so a provider whose test environment remembers keys across runs still sees new ones)
and closes the provider. A broken promise raises :class:`ConformanceFailure` (an
``AssertionError``, so pytest reports it as a failed assertion) naming the check and the key.

What is checked: the provider declares capabilities (one channel at least, ``max_batch`` ≥ 1);
``submit`` answers one result per payment, for the same keys; submitting the same batch again
moves no money again and answers consistently; ``status`` of a key never sent is ``NOT_FOUND``
and of a sent key is not; every result speaks the protocol's words (:class:`ResultKind`,
:class:`Reason`, a reason on every failure and return); ``validate`` answers an
:class:`AddressCheck`; ``parse_report`` refuses garbage with a ``ProviderError``; ``close`` works.

Money moved is observed through ``applied(provider, key) -> int`` when given, or the provider's
own ``applied(key)`` method when it has one (the sandbox providers do); without either, the
idempotency check still compares the two answers and their provider references.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Final

import attrs

from sap_payments.beneficiaries import (
    BankAccount,
    CashPickup,
    Channel,
    FinancialAddress,
    WalletAddress,
)
from sap_payments.money import Money
from sap_payments.plugins import load_plugin
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    LedgerBoundProvider,
    Payment,
    Provider,
    ProviderError,
    ProviderFactory,
    Reason,
    Result,
    ResultKind,
)

__all__ = [
    "CHECKS",
    "Check",
    "ConformanceFailure",
    "MakePayment",
    "MoneyProbe",
    "ProviderConformance",
    "check_provider",
    "default_payment",
    "run_check",
]

#: Builds the payment the kit sends under ``key`` through ``channel``: give one whose address
#: the provider's test environment accepts.
MakePayment = Callable[[str, Channel], Payment]

#: How many times money moved for a key (0 or 1 for a provider that is idempotent by key).
MoneyProbe = Callable[[Provider, str], int]

#: Bytes that no provider's report format accepts.
GARBAGE: Final[tuple[bytes, ...]] = (
    b"",
    b"\x00\xff\xfe\x80 not a report",
    b"{",
    b"<html><body>502 Bad Gateway</body></html>",
)

# What a key may answer to a second submit, given its answer to the first.
_NEXT: Final[Mapping[ResultKind, frozenset[ResultKind]]] = {
    ResultKind.PENDING: frozenset(ResultKind) - {ResultKind.NOT_FOUND},
    ResultKind.PAID: frozenset({ResultKind.PAID, ResultKind.RETURNED}),
    ResultKind.FAILED: frozenset({ResultKind.FAILED}),
    ResultKind.RETURNED: frozenset({ResultKind.RETURNED}),
    ResultKind.UNCLAIMED: frozenset({ResultKind.UNCLAIMED}),
}


class ConformanceFailure(AssertionError):
    """A provider broke a promise of the protocol. ``check`` names the check; ``failures``
    lists ``(check, message)`` of every failed check when several ran."""

    def __init__(self, check: str, message: str, failures: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.failures: tuple[tuple[str, str], ...] = tuple(failures) or ((check, message),)


def default_payment(key: str, channel: Channel) -> Payment:
    """A VND 360,000 payment under ``key`` to a synthetic address of ``channel`` (a different
    address for each key: ``+849…`` wallets, BIN 970415 accounts, pay point ``PP-CONFORMANCE``)."""
    number = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    address: FinancialAddress
    if channel is Channel.EWALLET:
        address = WalletAddress(f"+849{number % 10**8:08d}")
    elif channel is Channel.BANK:
        address = BankAccount("970415", f"{number % 10**12:012d}")
    else:
        address = CashPickup("PP-CONFORMANCE")
    return Payment(key, Money.vnd(360_000), address, "Nguyễn Văn An", "conformance check")


@attrs.define
class _Session:
    """What one check needs: the factory and settings, how to build payments and keys."""

    check: str
    factory: ProviderFactory
    settings: Mapping[str, Any]
    make_payment: MakePayment
    applied: MoneyProbe | None
    name: str
    key_prefix: str

    def fail(self, message: str) -> ConformanceFailure:
        return ConformanceFailure(self.check, message)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.fail(message)

    @contextlib.contextmanager
    def provider(self) -> Iterator[Provider]:
        provider = self.factory(self.name, self.settings)
        self.expect(
            isinstance(provider, Provider),
            f"the factory returned {type(provider).__name__}, which lacks attributes of the "
            "Provider protocol (name, capabilities, submit, status, validate, parse_report, "
            "close)",
        )
        if provider.capabilities.ledger_identity:  # bound as open_provider binds it
            if not isinstance(provider, LedgerBoundProvider):
                raise self.fail(
                    "capabilities.ledger_identity is declared, but there is no "
                    "bind_ledger(ledger_id) method"
                )
            provider.bind_ledger(hashlib.sha256(self.key_prefix.encode()).hexdigest()[:16])
        try:
            yield provider
        except BaseException:
            # The check's own failure is the one to report, not a failure to close after it.
            with contextlib.suppress(Exception):
                provider.close()
            raise
        provider.close()

    def payments(self, provider: Provider, count: int) -> list[Payment]:
        channel = sorted(provider.capabilities.channels)[0]
        count = max(1, min(count, provider.capabilities.max_batch))
        made = [
            self.make_payment(f"{self.key_prefix}-{self.check}-{i}", channel) for i in range(count)
        ]
        for payment in made:
            self.expect(isinstance(payment, Payment), "make_payment did not return a Payment")
        return made

    def submit(self, provider: Provider, payments: Sequence[Payment], what: str) -> list[Result]:
        results = provider.submit(payments)
        self.answers(results, [p.key for p in payments], what)
        for result in results:
            self.expect(
                result.kind is not ResultKind.NOT_FOUND,
                f"{what} answered not_found for key {result.key}, which it was just sent",
            )
        return results

    def answers(self, results: object, keys: Sequence[str], what: str) -> None:
        """One well-formed result per key, for exactly these keys."""
        if not isinstance(results, list):
            raise self.fail(f"{what} returned {type(results).__name__}, not a list")
        self.expect(
            len(results) == len(keys),
            f"{what} returned {len(results)} results for {len(keys)} keys; one per key expected",
        )
        for result in results:
            self.vocabulary(result, what)
        got = Counter(result.key for result in results)
        self.expect(
            got == Counter(keys),
            f"{what} answered for keys {sorted(got)}, but was asked about {sorted(set(keys))}",
        )

    def vocabulary(self, result: object, what: str) -> None:
        """A Result in the protocol's words: a ResultKind, a Reason (on every failure)."""
        if not isinstance(result, Result):
            raise self.fail(f"{what} returned {type(result).__name__}, not a Result")
        self.expect(
            isinstance(result.kind, ResultKind),
            f"{what}: key {result.key} has kind {result.kind!r}, not a ResultKind",
        )
        self.expect(
            result.reason is None or isinstance(result.reason, Reason),
            f"{what}: key {result.key} has reason {result.reason!r}, not a Reason "
            "(map the provider's own code to a Reason and keep it in provider_code)",
        )
        if result.kind in (ResultKind.FAILED, ResultKind.RETURNED):
            self.expect(
                result.reason is not None,
                f"{what}: key {result.key} is {result.kind.value} without a reason",
            )
        self.expect(
            result.amount is None or isinstance(result.amount, Money),
            f"{what}: key {result.key} has an amount that is not Money",
        )

    def probe(self, provider: Provider) -> MoneyProbe | None:
        if self.applied is not None:
            return self.applied
        method = getattr(provider, "applied", None)
        if callable(method):
            return lambda _provider, key: int(method(key))
        return None


# -- the checks ----------------------------------------------------------------------------------
def _capabilities(session: _Session) -> None:
    with session.provider() as provider:
        session.expect(
            provider.name == session.name,
            f"the provider is named {provider.name!r}, not {session.name!r} as the factory "
            "was told",
        )
        capabilities = provider.capabilities
        session.expect(
            isinstance(capabilities, Capabilities),
            f"capabilities is {type(capabilities).__name__}, not Capabilities",
        )
        channels = capabilities.channels
        session.expect(
            isinstance(channels, frozenset) and len(channels) > 0,
            "capabilities.channels must be a non-empty frozenset of Channel",
        )
        session.expect(
            all(isinstance(channel, Channel) for channel in channels),
            f"capabilities.channels holds something that is not a Channel: {sorted(channels)}",
        )
        batch = capabilities.max_batch
        session.expect(
            type(batch) is int and batch >= 1,
            f"capabilities.max_batch must be a whole number ≥ 1, not {batch!r}",
        )


def _submit_one_result_per_payment(session: _Session) -> None:
    with session.provider() as provider:
        payments = session.payments(provider, 3)
        session.submit(provider, payments, "submit")


def _submit_twice_is_idempotent(session: _Session) -> None:
    with session.provider() as provider:
        payments = session.payments(provider, 3)
        first = {r.key: r for r in session.submit(provider, payments, "the first submit")}
        second = {r.key: r for r in session.submit(provider, payments, "the same batch again")}
        alone = session.submit(provider, payments[:1], "the first payment again, alone")
        for key, before in first.items():
            for after in (second[key], *[r for r in alone if r.key == key]):
                session.expect(
                    after.kind in _NEXT[before.kind],
                    f"key {key} answered {before.kind.value}, then {after.kind.value} when "
                    "sent again; a repeated submit must answer the recorded result",
                )
                session.expect(
                    before.provider_reference is None
                    or after.provider_reference is None
                    or before.provider_reference == after.provider_reference,
                    f"key {key}: sending it again made a new transaction (reference "
                    f"{before.provider_reference!r}, then {after.provider_reference!r}); "
                    "submit must be idempotent by key",
                )
        probe = session.probe(provider)
        if probe is not None:
            for payment in payments:
                moved = probe(provider, payment.key)
                session.expect(
                    moved <= 1,
                    f"key {payment.key}: money moved {moved} times after the same payment was "
                    "submitted three times; submit must be idempotent by key",
                )
        if provider.capabilities.status_query:
            keys = [payment.key for payment in payments]
            results = provider.status(keys)
            session.answers(results, keys, "status after the repeated submits")
            for result in results:
                session.expect(
                    result.kind is not ResultKind.NOT_FOUND,
                    f"status says key {result.key} was never received, after it was submitted",
                )


def _status_of_unknown_key(session: _Session) -> None:
    with session.provider() as provider:
        if not provider.capabilities.status_query:
            return  # a provider without status queries is never asked
        key = f"{session.key_prefix}-never-sent"
        results = provider.status([key])
        session.answers(results, [key], "status of a key never sent")
        session.expect(
            results[0].kind is ResultKind.NOT_FOUND,
            f"status of key {key}, never sent, is {results[0].kind.value}; it must be "
            "not_found (the dispatcher resends only on an authoritative not_found)",
        )


def _status_of_submitted_keys(session: _Session) -> None:
    with session.provider() as provider:
        if not provider.capabilities.status_query:
            return
        payments = session.payments(provider, 5)
        session.submit(provider, payments, "submit")
        keys = [payment.key for payment in payments]
        for round_ in range(1, 4):
            results = provider.status(keys)
            session.answers(results, keys, f"status (query {round_})")
            for result in results:
                session.expect(
                    result.kind is not ResultKind.NOT_FOUND,
                    f"status query {round_} says key {result.key} was never received, "
                    "after it was submitted",
                )


def _validate_answers_address_check(session: _Session) -> None:
    with session.provider() as provider:
        if not provider.capabilities.address_validation:
            return
        payment = session.payments(provider, 1)[0]
        check = provider.validate(payment.address, payment.payee_name)
        session.expect(
            isinstance(check, AddressCheck),
            f"validate returned {type(check).__name__}, not an AddressCheck",
        )
        session.expect(
            check.reason is None or isinstance(check.reason, Reason),
            f"validate answered reason {check.reason!r}, not a Reason",
        )
        session.expect(
            check.ok or check.reason is not None,
            "validate said the address cannot be paid but gave no reason",
        )


def _parse_report_rejects_garbage(session: _Session) -> None:
    with session.provider() as provider:
        for data in GARBAGE:
            try:
                parsed = provider.parse_report(data)
            except ProviderError:
                continue
            except Exception as exc:  # any other exception is the finding
                raise session.fail(
                    f"parse_report({data[:20]!r}…) raised {type(exc).__name__}: {exc}; it must "
                    "raise ProviderError on a malformed report"
                ) from exc
            raise session.fail(
                f"parse_report({data[:20]!r}…) accepted garbage (returned {parsed!r}); it must "
                "raise ProviderError on a malformed report"
            )


def _close_works(session: _Session) -> None:
    provider = session.factory(session.name, session.settings)
    returned = provider.close()  # type: ignore[func-returns-value]  # the point is to check it
    session.expect(returned is None, f"close() returned {returned!r}")


@attrs.frozen
class Check:
    """One conformance check: its name, what it proves and the function that runs it."""

    name: str
    description: str
    function: Callable[[_Session], None] = attrs.field(repr=False)

    def __str__(self) -> str:
        return self.name


#: Every check, in the order :func:`check_provider` runs them.
CHECKS: Final[tuple[Check, ...]] = (
    Check("capabilities", "declares a channel and max_batch ≥ 1", _capabilities),
    Check(
        "submit_one_result_per_payment",
        "submit answers one result per payment, same keys",
        _submit_one_result_per_payment,
    ),
    Check(
        "submit_twice_is_idempotent",
        "the same batch twice moves money once and answers consistently",
        _submit_twice_is_idempotent,
    ),
    Check("status_of_unknown_key", "a key never sent is not_found", _status_of_unknown_key),
    Check(
        "status_of_submitted_keys",
        "a sent key is never not_found, poll after poll",
        _status_of_submitted_keys,
    ),
    Check(
        "validate_answers_address_check",
        "validate answers an AddressCheck with a Reason when not ok",
        _validate_answers_address_check,
    ),
    Check(
        "parse_report_rejects_garbage",
        "parse_report raises ProviderError on garbage",
        _parse_report_rejects_garbage,
    ),
    Check("close_works", "close() works on a fresh provider", _close_works),
)

_BY_NAME: Final = {check.name: check for check in CHECKS}


def run_check(
    check: Check | str,
    factory: ProviderFactory,
    settings: Mapping[str, Any] | None = None,
    *,
    make_payment: MakePayment | None = None,
    applied: MoneyProbe | None = None,
    name: str = "conformance",
    key_prefix: str | None = None,
) -> None:
    """Run one check (a :class:`Check` or its name) against providers from ``factory``.

    Raises:
        ConformanceFailure: the provider broke the promise the check is about.
    """
    found = _BY_NAME[check] if isinstance(check, str) else check
    session = _Session(
        check=found.name,
        factory=factory,
        settings=MappingProxyType(dict(settings or {})),
        make_payment=make_payment or default_payment,
        applied=applied,
        name=name,
        key_prefix=key_prefix or f"conf-{uuid.uuid4().hex[:12]}",
    )
    found.function(session)


def check_provider(
    factory: ProviderFactory,
    settings: Mapping[str, Any] | None = None,
    *,
    make_payment: MakePayment | None = None,
    applied: MoneyProbe | None = None,
    name: str = "conformance",
    key_prefix: str | None = None,
) -> None:
    """Run every check in :data:`CHECKS`; report all that fail at once.

    Args:
        factory: the plugin's provider factory (what its entry point names).
        settings: the settings to open providers with (a test environment's).
        make_payment: builds a payment the provider accepts (default: :func:`default_payment`).
        applied: how many times money moved for a key, if the test environment can tell.
        name: the provider instance name given to the factory.
        key_prefix: the prefix of every key the kit sends (default: random per check run).

    Raises:
        ConformanceFailure: one or more checks failed; ``failures`` lists them all. An
            unexpected exception inside a check counts as its failure.
    """
    failures: list[tuple[str, str]] = []
    for check in CHECKS:
        try:
            run_check(
                check,
                factory,
                settings,
                make_payment=make_payment,
                applied=applied,
                name=name,
                key_prefix=key_prefix,
            )
        except ConformanceFailure as failure:
            failures.extend(failure.failures)
        except Exception as exc:  # noqa: BLE001  # a crash inside a check is a finding too
            failures.append((check.name, f"raised {type(exc).__name__}: {exc}"))
    if failures:
        listed = "\n".join(f"  - {check}: {message}" for check, message in failures)
        raise ConformanceFailure(
            "check_provider", f"{len(failures)} of {len(CHECKS)} checks failed:\n{listed}", failures
        )


class ProviderConformance:
    """Subclass in a test module (as ``TestSomething``) to get one pytest test per check.

    Name the plugin by its entry point (which proves the entry point too), or give the factory
    itself; set ``settings``, ``make_payment``, ``applied`` or ``key_prefix`` when needed::

        class TestMyMoney(ProviderConformance):
            plugin = "mymoney"
            settings = {"base_url": "http://127.0.0.1:8080"}

        class TestMyMoneyFactory(ProviderConformance):
            factory = staticmethod(mymoney_factory)  # staticmethod keeps mypy from binding it
    """

    plugin: ClassVar[str | None] = None
    factory: ClassVar[ProviderFactory | None] = None
    settings: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    make_payment: ClassVar[MakePayment | None] = None
    applied: ClassVar[MoneyProbe | None] = None
    key_prefix: ClassVar[str | None] = None

    def run_check(self, check: str) -> None:
        """Run the check named ``check`` against this class's provider."""
        cls = type(self)
        factory = cls.factory
        if factory is None:
            if cls.plugin is None:
                raise ConformanceFailure(check, f"{cls.__name__} sets neither plugin nor factory")
            factory = load_plugin(cls.plugin)
        run_check(
            check,
            factory,
            cls.settings,
            make_payment=cls.make_payment,
            applied=cls.applied,
            key_prefix=cls.key_prefix,
        )

    def test_capabilities(self) -> None:
        self.run_check("capabilities")

    def test_submit_one_result_per_payment(self) -> None:
        self.run_check("submit_one_result_per_payment")

    def test_submit_twice_is_idempotent(self) -> None:
        self.run_check("submit_twice_is_idempotent")

    def test_status_of_unknown_key(self) -> None:
        self.run_check("status_of_unknown_key")

    def test_status_of_submitted_keys(self) -> None:
        self.run_check("status_of_submitted_keys")

    def test_validate_answers_address_check(self) -> None:
        self.run_check("validate_answers_address_check")

    def test_parse_report_rejects_garbage(self) -> None:
        self.run_check("parse_report_rejects_garbage")

    def test_close_works(self) -> None:
        self.run_check("close_works")
