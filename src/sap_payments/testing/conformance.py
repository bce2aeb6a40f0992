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

Each check opens a fresh provider from the factory — bound, as a ledger binds it, to a made-up
ledger id (``ledger_identity``) and to a plugin state in memory (``keeps_state``) — sends keys
of its own and closes the provider. The keys have the shape of instruction ids (``YYYYMM-`` and
20 hex digits: what sap_payments sends, so what every plugin must accept), derived from a random
prefix by default, so a provider whose test environment remembers keys across runs still sees
new ones. A broken promise raises :class:`ConformanceFailure` (an ``AssertionError``, so pytest
reports it as a failed assertion) naming the check and the key.

What is checked (``docs/plugins.md`` has the table): the provider declares capabilities;
``submit`` answers one result per payment, for the same keys; the same batch again moves no money
again and answers consistently; a known key sent again with another amount or account is
refused; ``status`` of a key never sent is ``NOT_FOUND`` and of a sent key is not, even after a
crash between the send and the ledger's commit; every result speaks the protocol's words;
``validate`` answers an :class:`AddressCheck`; ``parse_report`` refuses garbage, hostile bytes
and another ledger's files with a ``ProviderError`` and reads the provider's own answers;
hostile answers from the provider never crash the plugin nor pass for a result; ``close`` works.

Money moved is observed through ``applied(provider, key) -> int`` when given, or the provider's
own ``applied(key)`` method when it has one (the sandbox providers do); without either, the
idempotency checks still compare the answers and their provider references. What the kit
cannot reach by itself — the provider's answers, another ledger's files — a plugin's test
supplies through hooks: ``answers``, ``hostile`` and ``foreign_reports``.
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
from sap_payments.errors import ForeignLedger
from sap_payments.money import Money
from sap_payments.plugins import load_plugin
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    LedgerBoundProvider,
    MemoryPluginState,
    Payment,
    Provider,
    ProviderError,
    ProviderFactory,
    ProviderTimeout,
    ProviderUnavailable,
    Reason,
    Result,
    ResultKind,
    StatefulProvider,
)

__all__ = [
    "CHECKS",
    "GARBAGE",
    "HOSTILE",
    "Answers",
    "Check",
    "ConformanceFailure",
    "Hostile",
    "MakeKey",
    "MakePayment",
    "MoneyProbe",
    "ProviderConformance",
    "check_provider",
    "default_payment",
    "instruction_key",
    "run_check",
]

#: Builds the payment the kit sends under ``key`` through ``channel``: give one whose address
#: the provider's test environment accepts.
MakePayment = Callable[[str, Channel], Payment]

#: Makes the key the kit sends for ``label`` (unique per key the kit wants, e.g.
#: ``"conf-1a2b…-submit_twice_is_idempotent-0"``): give one when your test environment accepts
#: only particular keys. The default, :func:`instruction_key`, has the shape of an instruction id.
MakeKey = Callable[[str], str]

#: How many times money moved for a key (0 or 1 for a provider that is idempotent by key).
MoneyProbe = Callable[[Provider, str], int]

#: The provider's answers not given before, as its counterpart sent them (report files, callback
#: bodies): what ``parse_report`` must read. E.g. a bank simulator's pain.002 and camt.054 files
#: for the batches sent since the last call.
Answers = Callable[[Provider], Sequence[bytes]]

#: Makes every answer the provider reads from its counterpart ``body`` instead of the true one,
#: until called with None: the counterpart receives and handles each request as usual, only the
#: answer is replaced (an ``httpx`` transport that swaps bodies, a fault of a test server).
Hostile = Callable[[Provider, bytes | None], None]

#: Bytes that no provider's report format accepts: ``parse_report`` must raise ProviderError.
GARBAGE: Final[tuple[bytes, ...]] = (
    b"",
    b"\x00\xff\xfe\x80 not a report",
    b"{",
    b"<html><body>502 Bad Gateway</body></html>",
)

_LAUGHS: Final = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10)
        for n in range(1, 6)
    )
    + b"]><lolz>&lol5;</lolz>"
)

#: Hostile bytes, by name: a report or an answer that is not what the protocol speaks — empty,
#: not UTF-8, not an object, nested beyond reason, huge, another format. A plugin may refuse
#: each (``ProviderError``) or find nothing of its own in it (no result); it must not crash,
#: hang or answer a result from it.
HOSTILE: Final[tuple[tuple[str, bytes], ...]] = (
    ("empty", b""),
    ("blank", b" \r\n\t "),
    ("not UTF-8", b"\xff\xfe\x00\x80\xc3( \xe9t\xe9"),
    ("NUL bytes", b"\x00" * 512),
    ("UTF-16 text", '{"results": []}'.encode("utf-16")),
    ("JSON null", b"null"),
    ("a JSON string", b'"paid"'),
    ("a JSON number beyond a float", b"1e999999"),
    ("a JSON list of numbers", b"[1, 2, 3]"),
    ("a JSON object of the wrong shape", b'{"results": {"key": 1}, "status": [], "amount": 1.5}'),
    ("JSON nested beyond reason", b"[" * 100_000 + b"]" * 100_000),
    ("truncated JSON", b'{"results": [{"key": "'),
    ("XML nested beyond reason", b"<a>" * 20_000 + b"</a>" * 20_000),
    ("XML with entity expansion", _LAUGHS),
    ("XML of another message", b'<?xml version="1.0"?><Document xmlns="urn:other"><X/></Document>'),
    ("an HTML error page", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    ("CSV", b"key,status,amount\n202109-00000000000000000000,paid,360000\n"),
    ("huge (8 MiB)", b'{"results": "' + b"A" * (8 << 20) + b'"}'),
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


def instruction_key(label: str) -> str:
    """A key with the shape of an instruction id — ``YYYYMM-`` and 20 lower-case hex digits,
    27 characters — derived from ``label``: what sap_payments sends, so what every plugin
    must accept (an ISO 20022 ``EndToEndId``, a GSMA correlation, a collection code all carry
    it as it is).

    >>> instruction_key("conf-1-submit-0")
    '202109-9ea1ec24504cfff1e30f'
    """
    return "202109-" + hashlib.sha256(label.encode()).hexdigest()[:20]


def _other_address(address: FinancialAddress, key: str) -> FinancialAddress | None:
    """Another address of the same kind (None for a kind the kit does not know)."""
    number = int(hashlib.sha256(f"other:{key}".encode()).hexdigest(), 16)
    if isinstance(address, WalletAddress):
        other: FinancialAddress = WalletAddress(f"+848{number % 10**8:08d}")
    elif isinstance(address, BankAccount):
        other = BankAccount(address.bank_bin, f"{number % 10**12:012d}")
    elif isinstance(address, CashPickup):
        other = attrs.evolve(address, pay_point=f"{address.pay_point}-OTHER")
    else:
        return None
    return other if other != address else None


class _Crash(Exception):
    """The process dies between the provider's answer and the ledger's commit."""


@attrs.define
class _Session:
    """What one check needs: the factory and settings, how to build payments and keys, the
    hooks, and the plugin state the check's providers share (as they would share a ledger)."""

    check: str
    factory: ProviderFactory
    settings: Mapping[str, Any]
    make_payment: MakePayment
    make_key: MakeKey
    applied: MoneyProbe | None
    name: str
    key_prefix: str
    answers: Answers | None = None
    hostile: Hostile | None = None
    foreign_reports: Sequence[bytes] = ()
    state: MemoryPluginState = attrs.field(factory=MemoryPluginState)

    def fail(self, message: str) -> ConformanceFailure:
        return ConformanceFailure(self.check, message)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.fail(message)

    def open(self) -> Provider:
        """A provider from the factory, bound as ``open_provider`` binds it."""
        provider = self.factory(self.name, self.settings)
        self.expect(
            isinstance(provider, Provider),
            f"the factory returned {type(provider).__name__}, which lacks attributes of the "
            "Provider protocol (name, capabilities, submit, status, validate, parse_report, "
            "close)",
        )
        capabilities = provider.capabilities
        if capabilities.ledger_identity:
            if not isinstance(provider, LedgerBoundProvider):
                raise self.fail(
                    "capabilities.ledger_identity is declared, but there is no "
                    "bind_ledger(ledger_id) method"
                )
            provider.bind_ledger(self.ledger_id)
        if getattr(capabilities, "keeps_state", False):
            if not isinstance(provider, StatefulProvider):
                raise self.fail(
                    "capabilities.keeps_state is declared, but there is no bind_state(state) method"
                )
            provider.bind_state(self.state)
        return provider

    @property
    def ledger_id(self) -> str:
        """The made-up ledger id the check's providers are bound to."""
        return hashlib.sha256(self.key_prefix.encode()).hexdigest()[:16]

    @contextlib.contextmanager
    def provider(self) -> Iterator[Provider]:
        provider = self.open()
        try:
            yield provider
        except BaseException:
            # The check's own failure is the one to report, not a failure to close after it.
            with contextlib.suppress(Exception):
                provider.close()
            raise
        provider.close()

    def key(self, label: str) -> str:
        return self.make_key(f"{self.key_prefix}-{self.check}-{label}")

    def payments(self, provider: Provider, count: int, tag: str = "") -> list[Payment]:
        channel = sorted(provider.capabilities.channels)[0]
        count = max(1, min(count, provider.capabilities.max_batch))
        made = [self.make_payment(self.key(f"{tag}{i}"), channel) for i in range(count)]
        for payment in made:
            self.expect(isinstance(payment, Payment), "make_payment did not return a Payment")
        return made

    def submit(self, provider: Provider, payments: Sequence[Payment], what: str) -> list[Result]:
        results = provider.submit(payments)
        self.answers_for(results, [p.key for p in payments], what)
        for result in results:
            self.expect(
                result.kind is not ResultKind.NOT_FOUND,
                f"{what} answered not_found for key {result.key}, which it was just sent",
            )
        return results

    def answers_for(self, results: object, keys: Sequence[str], what: str) -> None:
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

    def moved_at_most_once(self, provider: Provider, keys: Sequence[str], after: str) -> None:
        probe = self.probe(provider)
        if probe is None:
            return
        for key in keys:
            moved = probe(provider, key)
            self.expect(
                moved <= 1,
                f"key {key}: money moved {moved} times {after}; submit must be idempotent by key",
            )

    def consistent(self, before: Mapping[str, Result], after: Sequence[Result], what: str) -> None:
        """``after`` answers each key as ``before`` did, or as it may have moved on since."""
        for result in after:
            earlier = before[result.key]
            self.expect(
                result.kind in _NEXT[earlier.kind],
                f"key {result.key} answered {earlier.kind.value}, then {result.kind.value} "
                f"{what}; a repeated submit must answer the recorded result",
            )
            self.expect(
                earlier.provider_reference is None
                or result.provider_reference is None
                or earlier.provider_reference == result.provider_reference,
                f"key {result.key}: sending it again made a new transaction (reference "
                f"{earlier.provider_reference!r}, then {result.provider_reference!r}); "
                "submit must be idempotent by key",
            )


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
        second = session.submit(provider, payments, "the same batch again")
        session.consistent(first, second, "when sent again")
        alone = session.submit(provider, payments[:1], "the first payment again, alone")
        session.consistent(first, alone, "when sent again")
        keys = [payment.key for payment in payments]
        session.moved_at_most_once(
            provider, keys, "after the same payment was submitted three times"
        )
        if provider.capabilities.status_query:
            results = provider.status(keys)
            session.answers_for(results, keys, "status after the repeated submits")
            for result in results:
                session.expect(
                    result.kind is not ResultKind.NOT_FOUND,
                    f"status says key {result.key} was never received, after it was submitted",
                )


def _reused_key_is_refused(session: _Session) -> None:
    """A known key sent again with another amount, or to another account, is a bug upstream:
    the provider must refuse it (ProviderError, or a FAILED result), never take it."""
    with session.provider() as provider:
        payments = session.payments(provider, 2)
        session.submit(provider, payments, "submit")
        first, second = payments[0], payments[-1]
        amount = first.amount
        changes = [
            ("another amount", attrs.evolve(first, amount=Money(amount.minor * 2, amount.currency)))
        ]
        other = _other_address(second.address, second.key)
        if other is not None:
            changes.append(("another account", attrs.evolve(second, address=other)))
        for what, changed in changes:
            asked = f"key {changed.key}, sent before, sent again with {what}"
            try:
                results = provider.submit([changed])
            except ProviderTimeout as exc:
                raise session.fail(
                    f"{asked}: raised ProviderTimeout ({exc}), which says it may have been "
                    "taken; refuse it with a ProviderError"
                ) from exc
            except ProviderError:
                continue
            session.answers_for(results, [changed.key], f"submit of {asked}")
            kind = results[0].kind
            session.expect(
                kind is ResultKind.FAILED,
                f"{asked}: answered {kind.value}; a known key with another payment must be "
                "refused (ProviderError, or failed with a reason), never taken",
            )
        session.moved_at_most_once(
            provider, [p.key for p in payments], "after the keys were sent again, changed"
        )
        if provider.capabilities.status_query:
            keys = [p.key for p in payments]
            results = provider.status(keys)
            session.answers_for(results, keys, "status after the changed resends")
            for result in results:
                session.expect(
                    result.kind is not ResultKind.NOT_FOUND,
                    f"status says key {result.key} was never received, after it was submitted "
                    "(and then refused when sent again changed)",
                )


def _status_of_unknown_key(session: _Session) -> None:
    with session.provider() as provider:
        if not provider.capabilities.status_query:
            return  # a provider without status queries is never asked
        key = session.key("never-sent")
        results = provider.status([key])
        session.answers_for(results, [key], "status of a key never sent")
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
            session.answers_for(results, keys, f"status (query {round_})")
            for result in results:
                session.expect(
                    result.kind is not ResultKind.NOT_FOUND,
                    f"status query {round_} says key {result.key} was never received, "
                    "after it was submitted",
                )


def _crash_before_the_ledger_commits(session: _Session) -> None:
    """The batch went out (a file written, a request sent), then the process died before the
    ledger committed — and the plugin state written in the ledger's transaction with it. A
    provider opened afresh with the same settings must still know the keys: ``status`` says
    what the provider holds (``NOT_FOUND`` only for a key it truly never received), and the
    batch sent again moves no money again."""
    crashed = session.open()
    try:
        payments = session.payments(crashed, 3)
        keys = [payment.key for payment in payments]
        try:
            with session.state.transaction():  # the ledger's transaction, never committed
                before = {r.key: r for r in session.submit(crashed, payments, "submit")}
                raise _Crash
        except _Crash:
            pass
        # ``crashed`` is abandoned as a dead process leaves it: not closed (until the end).
        with session.provider() as restarted:
            if restarted.capabilities.status_query:
                never = session.key("never-sent")
                results = restarted.status([*keys, never])
                session.answers_for(results, [*keys, never], "status after the crash")
                for result in results:
                    if result.key == never:
                        session.expect(
                            result.kind is ResultKind.NOT_FOUND,
                            f"status after the crash: key {never}, never sent, is "
                            f"{result.kind.value}; it must be not_found",
                        )
                    else:
                        session.expect(
                            result.kind is not ResultKind.NOT_FOUND,
                            f"status after the crash says key {result.key} was never "
                            "received, but it was sent before the crash (only the ledger's "
                            "commit was lost): the dispatcher would send it again",
                        )
            again = session.submit(restarted, payments, "the batch sent again after the crash")
            session.consistent(before, again, "when sent again after the crash")
            session.moved_at_most_once(
                restarted, keys, "after the batch was sent again after a crash"
            )
    finally:
        with contextlib.suppress(Exception):
            crashed.close()


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


def _shown(data: bytes) -> str:
    return f"{data[:20]!r}{'…' if len(data) > 20 else ''}"


def _parse_report_rejects_garbage(session: _Session) -> None:
    with session.provider() as provider:
        for data in GARBAGE:
            try:
                parsed = provider.parse_report(data)
            except ProviderError:
                continue
            except Exception as exc:  # any other exception is the finding
                raise session.fail(
                    f"parse_report({_shown(data)}) raised {type(exc).__name__}: {exc}; it must "
                    "raise ProviderError on a malformed report"
                ) from exc
            raise session.fail(
                f"parse_report({_shown(data)}) accepted garbage (returned {parsed!r}); it must "
                "raise ProviderError on a malformed report"
            )


def _hostile_reports_are_refused(session: _Session) -> None:
    """Hostile bytes (:data:`HOSTILE`) never crash ``parse_report`` nor give a result; a
    report made for another ledger or provider (``foreign_reports``) is refused whole."""
    with session.provider() as provider:
        for label, data in HOSTILE:
            try:
                parsed = provider.parse_report(data)
            except ProviderError:
                continue
            except Exception as exc:
                raise session.fail(
                    f"parse_report of {label} ({_shown(data)}) raised {type(exc).__name__}: "
                    f"{str(exc)[:200]}; only a ProviderError may escape"
                ) from exc
            session.expect(
                isinstance(parsed, list) and not parsed,
                f"parse_report of {label} ({_shown(data)}) answered {str(parsed)[:200]}; "
                "it must refuse it (ProviderError) or find nothing in it",
            )
        for number, data in enumerate(session.foreign_reports, 1):
            what = f"foreign report {number} ({_shown(data)})"
            try:
                parsed = provider.parse_report(data)
            except (ProviderError, ForeignLedger):
                continue
            except Exception as exc:
                raise session.fail(
                    f"parse_report of {what} raised {type(exc).__name__}: {str(exc)[:200]}; "
                    "it must refuse it with a ProviderError (or ForeignLedger)"
                ) from exc
            raise session.fail(
                f"parse_report of {what} answered {str(parsed)[:200]}; a report made for "
                "another ledger or provider must be refused whole"
            )


def _reports_answer_what_was_sent(session: _Session) -> None:
    """``parse_report`` reads the provider's own answers (the ``answers`` hook) and finds in
    them only keys that were sent, at the amounts sent."""
    if session.answers is None:
        return
    with session.provider() as provider:
        session.answers(provider)  # answers to what was sent before: not this check's
        payments = session.payments(provider, 3)
        session.submit(provider, payments, "submit")
        sent = {payment.key: payment for payment in payments}
        documents = session.answers(provider)
        session.expect(bool(documents), "the answers hook gave no answer to the batch sent")
        for number, data in enumerate(documents, 1):
            what = f"parse_report of answer {number}"
            try:
                results = provider.parse_report(data)
            except Exception as exc:
                raise session.fail(
                    f"{what} raised {type(exc).__name__}: {str(exc)[:200]}; it must read the "
                    "provider's own answers"
                ) from exc
            if not isinstance(results, list):
                raise session.fail(f"{what} returned {type(results).__name__}, not a list")
            for result in results:
                session.vocabulary(result, what)
                payment = sent.get(result.key)
                session.expect(
                    payment is not None,
                    f"{what}: key {result.key} was never sent in this batch",
                )
                assert payment is not None  # for mypy: expect raised otherwise
                session.expect(
                    result.amount is None or result.amount == payment.amount,
                    f"{what}: key {result.key} answered {result.amount}, but "
                    f"{payment.amount} was sent",
                )


def _hostile_answers_are_refused(session: _Session) -> None:
    """While every answer of the provider's counterpart is hostile (the ``hostile`` hook), a
    submit or status raises a ProviderError or answers PENDING — never a final result nor
    ``NOT_FOUND`` read out of garbage — and nothing crashes; with true answers again, the
    keys are known and money moved at most once."""
    if session.hostile is None:
        return
    hostile = session.hostile
    with session.provider() as provider:
        for number, (label, body) in enumerate(HOSTILE):
            payments = session.payments(provider, 2, tag=f"h{number}-")
            keys = [payment.key for payment in payments]
            unavailable = False
            hostile(provider, body)
            try:
                for what in ("submit", "status"):
                    if what == "status" and not provider.capabilities.status_query:
                        continue
                    asked = f"{what} while every answer is {label}"
                    try:
                        if what == "submit":
                            results = provider.submit(payments)
                        else:
                            results = provider.status(keys)
                    except ProviderUnavailable:
                        unavailable = unavailable or what == "submit"
                        continue
                    except ProviderError:
                        continue
                    except Exception as exc:
                        raise session.fail(
                            f"{asked}: raised {type(exc).__name__}: {str(exc)[:200]}; only a "
                            "ProviderError may escape"
                        ) from exc
                    session.answers_for(results, keys, asked)
                    for result in results:
                        session.expect(
                            result.kind is ResultKind.PENDING,
                            f"{asked}: key {result.key} answered {result.kind.value}; an answer "
                            "that cannot be read is no result (raise ProviderTimeout, or "
                            "answer pending)",
                        )
            finally:
                hostile(provider, None)
            if unavailable:
                probe = session.probe(provider)
                for key in keys if probe is not None else ():
                    assert probe is not None
                    session.expect(
                        probe(provider, key) == 0,
                        f"submit while every answer is {label} raised ProviderUnavailable "
                        f"(nothing was sent), but money moved for key {key}",
                    )
                continue
            if provider.capabilities.status_query:
                results = provider.status(keys)
                session.answers_for(results, keys, f"status after answers that were {label}")
                for result in results:
                    session.expect(
                        result.kind is not ResultKind.NOT_FOUND,
                        f"status after answers that were {label}: key {result.key} is "
                        "not_found, but the provider received it",
                    )
            session.moved_at_most_once(provider, keys, f"after answers that were {label}")


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
    Check(
        "reused_key_is_refused",
        "a known key sent again with another amount or account is refused, never taken",
        _reused_key_is_refused,
    ),
    Check("status_of_unknown_key", "a key never sent is not_found", _status_of_unknown_key),
    Check(
        "status_of_submitted_keys",
        "a sent key is never not_found, poll after poll",
        _status_of_submitted_keys,
    ),
    Check(
        "crash_before_the_ledger_commits",
        "a batch sent before a crash is known after it; sent again, it moves no money again",
        _crash_before_the_ledger_commits,
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
    Check(
        "hostile_reports_are_refused",
        "hostile bytes and other ledgers' reports never crash parse_report nor give a result",
        _hostile_reports_are_refused,
    ),
    Check(
        "reports_answer_what_was_sent",
        "parse_report reads the provider's own answers: only keys sent, at the amounts sent",
        _reports_answer_what_was_sent,
    ),
    Check(
        "hostile_answers_are_refused",
        "hostile answers over the wire never crash submit or status nor pass for a result",
        _hostile_answers_are_refused,
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
    make_key: MakeKey | None = None,
    applied: MoneyProbe | None = None,
    answers: Answers | None = None,
    hostile: Hostile | None = None,
    foreign_reports: Sequence[bytes] = (),
    name: str = "conformance",
    key_prefix: str | None = None,
) -> None:
    """Run one check (a :class:`Check` or its name) against providers from ``factory``; the
    arguments are those of :func:`check_provider`.

    Raises:
        ConformanceFailure: the provider broke the promise the check is about.
    """
    found = _BY_NAME[check] if isinstance(check, str) else check
    session = _Session(
        check=found.name,
        factory=factory,
        settings=MappingProxyType(dict(settings or {})),
        make_payment=make_payment or default_payment,
        make_key=make_key or instruction_key,
        applied=applied,
        name=name,
        key_prefix=key_prefix or f"conf-{uuid.uuid4().hex[:12]}",
        answers=answers,
        hostile=hostile,
        foreign_reports=tuple(foreign_reports),
    )
    found.function(session)


def check_provider(
    factory: ProviderFactory,
    settings: Mapping[str, Any] | None = None,
    *,
    make_payment: MakePayment | None = None,
    make_key: MakeKey | None = None,
    applied: MoneyProbe | None = None,
    answers: Answers | None = None,
    hostile: Hostile | None = None,
    foreign_reports: Sequence[bytes] = (),
    name: str = "conformance",
    key_prefix: str | None = None,
) -> None:
    """Run every check in :data:`CHECKS`; report all that fail at once.

    Args:
        factory: the plugin's provider factory (what its entry point names).
        settings: the settings to open providers with (a test environment's).
        make_payment: builds a payment the provider accepts (default: :func:`default_payment`).
        make_key: makes the keys sent (default: :func:`instruction_key`).
        applied: how many times money moved for a key, if the test environment can tell.
        answers: the provider's answers not given before (report files, callback bodies),
            for ``parse_report`` to read; without it, ``reports_answer_what_was_sent`` is skipped.
        hostile: makes the provider's counterpart answer given bytes (None: true answers
            again); without it, ``hostile_answers_are_refused`` is skipped.
        foreign_reports: reports made for another ledger or another provider instance, which
            ``parse_report`` must refuse whole.
        name: the provider instance name given to the factory.
        key_prefix: what the keys of every check are derived from (default: random per check
            run); the same prefix gives the same keys.

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
                make_key=make_key,
                applied=applied,
                answers=answers,
                hostile=hostile,
                foreign_reports=foreign_reports,
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
    itself; set ``settings``, ``make_payment``, ``make_key``, ``applied``, ``answers``,
    ``hostile``, ``foreign_reports`` or ``key_prefix`` when needed::

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
    make_key: ClassVar[MakeKey | None] = None
    applied: ClassVar[MoneyProbe | None] = None
    answers: ClassVar[Answers | None] = None
    hostile: ClassVar[Hostile | None] = None
    foreign_reports: ClassVar[Sequence[bytes]] = ()
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
            make_key=cls.make_key,
            applied=cls.applied,
            answers=cls.answers,
            hostile=cls.hostile,
            foreign_reports=cls.foreign_reports,
            key_prefix=cls.key_prefix,
        )

    def test_capabilities(self) -> None:
        self.run_check("capabilities")

    def test_submit_one_result_per_payment(self) -> None:
        self.run_check("submit_one_result_per_payment")

    def test_submit_twice_is_idempotent(self) -> None:
        self.run_check("submit_twice_is_idempotent")

    def test_reused_key_is_refused(self) -> None:
        self.run_check("reused_key_is_refused")

    def test_status_of_unknown_key(self) -> None:
        self.run_check("status_of_unknown_key")

    def test_status_of_submitted_keys(self) -> None:
        self.run_check("status_of_submitted_keys")

    def test_crash_before_the_ledger_commits(self) -> None:
        self.run_check("crash_before_the_ledger_commits")

    def test_validate_answers_address_check(self) -> None:
        self.run_check("validate_answers_address_check")

    def test_parse_report_rejects_garbage(self) -> None:
        self.run_check("parse_report_rejects_garbage")

    def test_hostile_reports_are_refused(self) -> None:
        self.run_check("hostile_reports_are_refused")

    def test_reports_answer_what_was_sent(self) -> None:
        self.run_check("reports_answer_what_was_sent")

    def test_hostile_answers_are_refused(self) -> None:
        self.run_check("hostile_answers_are_refused")

    def test_close_works(self) -> None:
        self.run_check("close_works")
