"""The conformance kit passes every built-in plugin and catches broken ones, saying why.

Every built-in plugin runs every check here, in the default suite: the three sandboxes (with a
state file, as a restarted process finds its books), ``iso20022-bank`` with its bank simulator,
``gsma-mobile-money`` against the loopback sandbox server (single and bulk; its answers made
hostile by a transport that swaps their bodies) and ``postal-cash`` with the post-office
simulator. A check a built-in fails for a bug of its plugin is marked ``xfail(strict=True)``
with the reason, so the mark goes as soon as the plugin is fixed.
"""

from __future__ import annotations

import atexit
import itertools
import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, ClassVar

import attrs
import httpx
import pytest

from sap_payments.beneficiaries import Channel, FinancialAddress, WalletAddress
from sap_payments.gsma import GsmaProvider
from sap_payments.money import Money
from sap_payments.plugins import load_plugin
from sap_payments.postal import postal_cash
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    PluginState,
    Provider,
    ProviderError,
    ProviderFactory,
    ProviderTimeout,
    ProviderUnavailable,
    Reason,
    Result,
    ResultKind,
)
from sap_payments.testing import sandbox
from sap_payments.testing.bank import BankSimulator, read_pain001
from sap_payments.testing.conformance import (
    CHECKS,
    HOSTILE,
    Answers,
    Check,
    ConformanceFailure,
    Hostile,
    MoneyProbe,
    ProviderConformance,
    check_provider,
    default_payment,
    instruction_key,
    run_check,
)
from sap_payments.testing.gsma_server import GsmaSandboxServer, gsma_server
from sap_payments.testing.post_office import PostOfficeSimulator

PLUGINS = ["sandbox-ewallet", "sandbox-bank", "sandbox-postal"]
BUILT_INS = [
    *PLUGINS,
    "iso20022-bank",
    "gsma-mobile-money",
    "gsma-mobile-money-bulk",
    "postal-cash",
]
SECRET = "5e" * 32
#: Where the class-based tests below keep their sandboxes' books (a class attribute cannot
#: take a fixture); removed when the test process ends.
BOOKS = Path(tempfile.mkdtemp(prefix="sap-conformance-"))
atexit.register(shutil.rmtree, BOOKS, ignore_errors=True)
OTHER_LEDGER = "f0f0f0f0f0f0f0f0"
INSTRUCTION_ID = re.compile(r"[0-9]{6}-[0-9a-f]{20}")

#: (plugin, check) → why the plugin fails it today: a bug of the plugin, not of the kit.
KNOWN: dict[tuple[str, str], str] = {}


# -- what the kit is given for each built-in plugin -----------------------------------------------
@attrs.define
class Kit:
    factory: ProviderFactory
    settings: Mapping[str, Any]
    applied: MoneyProbe | None = None
    answers: Answers | None = None
    hostile: Hostile | None = None
    foreign_reports: Sequence[bytes] = ()

    def run(self, check: Check | str, key_prefix: str | None = None) -> None:
        run_check(
            check,
            self.factory,
            self.settings,
            applied=self.applied,
            answers=self.answers,
            hostile=self.hostile,
            foreign_reports=self.foreign_reports,
            key_prefix=key_prefix,
        )

    def run_all(self, key_prefix: str | None = None) -> None:
        check_provider(
            self.factory,
            self.settings,
            applied=self.applied,
            answers=self.answers,
            hostile=self.hostile,
            foreign_reports=self.foreign_reports,
            key_prefix=key_prefix,
        )


def other_payments(channel: Channel, count: int = 2) -> list[Payment]:
    return [default_payment(instruction_key(f"other-{i}"), channel) for i in range(count)]


def sandbox_kit(plugin: str, tmp_path: Path) -> Kit:
    other = load_plugin(plugin)("another-instance", {"fail_per_mille": 0, "late_per_mille": 0})
    channel = sorted(other.capabilities.channels)[0]
    other.submit(other_payments(channel))
    assert isinstance(other, sandbox.SandboxProvider)
    foreign = other.reports()  # addressed to another provider instance
    other.close()
    return Kit(
        load_plugin(plugin),
        {"seed": 4, "state": str(tmp_path / "state.db"), "late_per_mille": 300},
        answers=lambda provider: provider.reports(),  # type: ignore[attr-defined]
        foreign_reports=foreign,
    )


BANK = {
    "debtor_name": "Sở LĐ-TB&XH",
    "debtor_account": "102010001234567",
    "debtor_bank_bin": "970415",
}


def iso20022_kit(tmp_path: Path) -> Kit:
    outbox, inbox = tmp_path / "outbox", tmp_path / "inbox"
    simulator = BankSimulator(outbox, inbox, seed=3, reject_per_mille=250, return_per_mille=250)

    def answers(_provider: Provider) -> list[bytes]:
        return [path.read_bytes() for path in simulator.process()]

    def applied(_provider: Provider, key: str) -> int:  # transfers of the key in the files sent
        return sum(
            transfer.end_to_end_id == key
            for path in outbox.glob("pain.001.*.xml")
            for transfer in read_pain001(path)[3]
        )

    # A bank's answers to the same plugin working for another ledger, and that ledger's file
    other_outbox = tmp_path / "other-outbox"
    other = load_plugin("iso20022-bank")("other", {"outbox": str(other_outbox), **BANK})
    other.bind_ledger(OTHER_LEDGER)  # type: ignore[attr-defined]
    other.submit(other_payments(Channel.BANK))
    other.close()
    answered = BankSimulator(other_outbox, tmp_path / "other-inbox", reject_per_mille=0)
    foreign = [path.read_bytes() for path in answered.process()]
    foreign += [path.read_bytes() for path in other_outbox.glob("pain.001.*.xml")]
    return Kit(
        load_plugin("iso20022-bank"),
        {"outbox": str(outbox), **BANK},
        applied=applied,
        answers=answers,
        foreign_reports=foreign,
    )


class SwappingTransport(httpx.BaseTransport):
    """Passes every request to the server; while ``body`` is set, the answer read is that body
    (with the server's status and headers): the server applied the request, the plugin reads
    garbage."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.body: bytes | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = self.body
        if body is None:
            return response
        response.read()
        response.close()
        headers = [
            (name, value)
            for name, value in response.headers.items()
            if name.lower() not in ("content-length", "content-encoding", "transfer-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)

    def close(self) -> None:
        self.inner.close()


def gsma_kit(server: GsmaSandboxServer, tmp_path: Path, client: httpx.Client, bulk: bool) -> Kit:
    transport = client._transport
    assert isinstance(transport, SwappingTransport)
    given: dict[str, Any] = {"base_url": server.base_url, "poll_interval": 0, "backoff": 0.001}
    if bulk:
        given.update(
            bulk=True, bulk_threshold=3, journal=str(tmp_path / "journal.db"), debit_party="ACC-1"
        )

    def factory(name: str, settings: Mapping[str, Any]) -> Provider:
        return GsmaProvider(name, settings, client=client, sleep=lambda _seconds: None)

    def hostile(_provider: Provider, body: bytes | None) -> None:
        transport.body = body

    answered: set[str] = set()

    def answers(_provider: Provider) -> list[bytes]:
        # what the operator's callbacks carry: the transaction representation of each payment
        # not answered before (the server's books, read as a test reads them)
        rows = server._query("SELECT ref FROM transactions ORDER BY rowid")
        fresh = [ref for (ref,) in rows if ref not in answered]
        answered.update(fresh)
        return [json.dumps(server.transaction(ref)).encode() for ref in fresh]

    foreign = json.dumps(
        {
            "transactionReference": "T-OTHER-LEDGER",
            "requestingOrganisationTransactionReference": instruction_key("other-0"),
            "transactionStatus": "completed",
            "amount": "360000",
            "currency": "VND",
            "metadata": [{"key": "sapLedger", "value": OTHER_LEDGER}],
        }
    ).encode()
    return Kit(
        factory,
        given,
        applied=lambda _provider, key: server.paid(key),
        answers=answers,
        hostile=hostile,
        foreign_reports=[foreign],
    )


def postal_kit(tmp_path: Path) -> Kit:
    outbox = tmp_path / "outbox"

    def applied(_provider: Provider, key: str) -> int:  # lines of the key on the lists written
        return sum(
            path.read_text(encoding="utf-8").count(f",{key},")
            for path in outbox.glob("payout-*.csv")
        )

    # what the post office answered to another outbox's lists: a confirmation file, which only
    # `import confirmations` reads (parse_report must refuse it)
    other_outbox = tmp_path / "other-outbox"
    other = postal_cash("other", {"outbox": str(other_outbox), "secret": SECRET})
    other.submit(other_payments(Channel.POSTAL))
    other.close()
    office = PostOfficeSimulator(other_outbox, tmp_path / "other-inbox", unclaimed_per_mille=0)
    foreign = [path.read_bytes() for path in office.process()]
    return Kit(
        load_plugin("postal-cash"),
        {"outbox": str(outbox), "secret": SECRET},
        applied=applied,
        foreign_reports=foreign,
    )


@pytest.fixture(scope="module")
def gsma() -> Iterator[GsmaSandboxServer]:
    with gsma_server() as running:
        yield running


@pytest.fixture
def built_in(gsma: GsmaSandboxServer, tmp_path: Path) -> Iterator[Callable[[str], Kit]]:
    client = httpx.Client(transport=SwappingTransport(), timeout=10)

    def make(plugin: str) -> Kit:
        if plugin in PLUGINS:
            return sandbox_kit(plugin, tmp_path)
        if plugin == "iso20022-bank":
            return iso20022_kit(tmp_path)
        if plugin.startswith("gsma-mobile-money"):
            return gsma_kit(gsma, tmp_path, client, bulk=plugin.endswith("-bulk"))
        assert plugin == "postal-cash"
        return postal_kit(tmp_path)

    try:
        yield make
    finally:
        client.close()


def built_in_cases() -> Iterator[Any]:
    for plugin, check in itertools.product(BUILT_INS, CHECKS):
        why = KNOWN.get((plugin.removesuffix("-bulk"), check.name))
        marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
        yield pytest.param(plugin, check, id=f"{plugin}-{check.name}", marks=marks)


@pytest.mark.parametrize(("plugin", "check"), list(built_in_cases()))
def test_every_built_in_plugin_passes_every_check(
    built_in: Callable[[str], Kit], plugin: str, check: Check
) -> None:
    # a fixed key prefix: the simulators' draws (a rejection, a return) are the same every run
    built_in(plugin).run(check, key_prefix=f"builtin-{plugin}")


@pytest.mark.parametrize("plugin", PLUGINS)
def test_a_sandbox_with_a_state_file_passes_twice(plugin: str, tmp_path: Path) -> None:
    """Keys persist in the state file; a second run with the same keys still conforms."""
    settings = {"state": str(tmp_path / "state.db"), "late_per_mille": 500}
    check_provider(load_plugin(plugin), settings, key_prefix="same")
    check_provider(load_plugin(plugin), settings, key_prefix="same")


@pytest.mark.parametrize("plugin", PLUGINS)
def test_a_sandbox_whose_books_die_with_it_fails_the_crash_check(plugin: str) -> None:
    """In memory, a sandbox forgets on restart what it was sent: a plugin that kept its
    idempotency register so would send a batch again after a crash."""
    with pytest.raises(ConformanceFailure, match="was never received, but it was sent before"):
        run_check("crash_before_the_ledger_commits", load_plugin(plugin), {})


class TestSandboxBankConformance(ProviderConformance):
    """The way a plugin author uses the kit: one pytest test per check, the plugin by name."""

    plugin = "sandbox-bank"
    settings = MappingProxyType(
        {"late_per_mille": 1000, "return_per_mille": 1000, "state": str(BOOKS / "bank.db")}
    )


class TestSandboxPostalConformance(ProviderConformance):
    """… or by its factory."""

    factory = staticmethod(sandbox.postal)
    settings = MappingProxyType({"state": str(BOOKS / "postal.db")})
    key_prefix = "postal"


# -- broken providers -----------------------------------------------------------------------------
class Wrapped:
    """A sandbox e-wallet behind a plain class (no subclassing of the protocol); the broken
    providers below each override one method to break one promise. Its books are in a file of
    the test's (``books``), so a provider opened again after a crash finds them."""

    books: Path | None = None  # set for each test by the ``books`` fixture
    remembers = True

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        state = {"state": str(self.books / f"{name}.db")} if self.books and self.remembers else {}
        self.inner = sandbox.ewallet(name, {"late_per_mille": 0, **state, **settings})
        self.name = name
        self.capabilities: Capabilities = self.inner.capabilities

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        return self.inner.submit(payments)

    def status(self, keys: Sequence[str]) -> list[Result]:
        return self.inner.status(keys)

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        return self.inner.validate(address, payee_name)

    def parse_report(self, data: bytes) -> list[Result]:
        return self.inner.parse_report(data)

    def close(self) -> None:
        self.inner.close()


class PaysEverySubmit(Wrapped):
    """Not idempotent: every submit is a new transfer with a new reference."""

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        self.moved: dict[str, int] = {}
        self.counter = itertools.count(1)

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        for payment in payments:
            self.moved[payment.key] = self.moved.get(payment.key, 0) + 1
        self.inner.submit(payments)
        return [
            Result(p.key, ResultKind.PENDING, provider_reference=f"TX-{next(self.counter)}")
            for p in payments
        ]

    def applied(self, key: str) -> int:
        return self.moved.get(key, 0)


class PaysEverySubmitQuietly(PaysEverySubmit):
    """Not idempotent either, but gives no reference: only the money probe can tell."""

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        return [attrs.evolve(r, provider_reference=None) for r in super().submit(payments)]


class DropsAResult(Wrapped):
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        return super().submit(payments)[:-1]


class RenamesKeys(Wrapped):
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        return [attrs.evolve(r, key=r.key.upper()) for r in super().submit(payments)]


class GuessesPending(Wrapped):
    def status(self, keys: Sequence[str]) -> list[Result]:
        return [Result(key, ResultKind.PENDING) for key in keys]


class ForgetsKeys(Wrapped):
    def status(self, keys: Sequence[str]) -> list[Result]:
        return [Result(key, ResultKind.NOT_FOUND) for key in keys]


class OwnReasons(Wrapped):
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        return [Result(p.key, ResultKind.FAILED, "E42") for p in payments]  # type: ignore[arg-type]


class FailsSilently(Wrapped):
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        return [Result(p.key, ResultKind.FAILED) for p in payments]


class PlainStrings(Wrapped):
    def status(self, keys: Sequence[str]) -> list[Result]:
        return [attrs.evolve(r, kind="paid") for r in super().status(keys)]  # type: ignore[arg-type]


class LeaksValueError(Wrapped):
    def parse_report(self, data: bytes) -> list[Result]:
        raise ValueError("cannot parse")


class SwallowsGarbage(Wrapped):
    def parse_report(self, data: bytes) -> list[Result]:
        return []


class NoChannels(Wrapped):
    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        self.capabilities = Capabilities(channels=frozenset(), max_batch=0)


class Misnamed(Wrapped):
    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__("always-this-name", settings)


class ValidatesWithoutReason(Wrapped):
    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=False)


class CannotClose(Wrapped):
    def close(self) -> None:
        super().close()
        raise RuntimeError("socket already closed")


class NotAProvider:
    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def books(tmp_path: Path) -> Iterator[None]:
    Wrapped.books = tmp_path / "books"
    Wrapped.books.mkdir()
    try:
        yield
    finally:
        Wrapped.books = None


class TakesReusedKeys(Wrapped):
    """Answers a known key sent with another payment as if it were the first."""

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        try:
            return super().submit(payments)
        except ProviderError as exc:
            if exc.provider_code != "DUPLICATE_KEY_MISMATCH":
                raise
            return [Result(p.key, ResultKind.PENDING) for p in payments]


class TimesOutOnReusedKeys(Wrapped):
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        try:
            return super().submit(payments)
        except ProviderError as exc:
            raise ProviderTimeout(self.name, "no answer in time") from exc


class ForgetsOnRestart(Wrapped):
    """Keeps its books in memory: a new process has forgotten every key."""

    remembers = False


class RecursesOnNesting(Wrapped):
    def parse_report(self, data: bytes) -> list[Result]:
        try:
            json.loads(data)
        except ValueError as exc:  # but a RecursionError escapes
            raise ProviderError(self.name, "not JSON") from exc
        return super().parse_report(data)


class FindsResultsInLists(Wrapped):
    """Reads any JSON list as results, one paid per element."""

    def parse_report(self, data: bytes) -> list[Result]:
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ProviderError(self.name, "not JSON") from exc
        if isinstance(document, list):
            return [Result(str(entry), ResultKind.PAID) for entry in document]
        return super().parse_report(data)


class ReadsAnyonesReports(Wrapped):
    """Reads a report addressed to another provider instance as nothing of its own."""

    def parse_report(self, data: bytes) -> list[Result]:
        try:
            return super().parse_report(data)
        except ProviderError as exc:
            if "not addressed to" in str(exc):
                return []
            raise


class MisreadsAmounts(Wrapped):
    def parse_report(self, data: bytes) -> list[Result]:
        return [
            attrs.evolve(r, amount=None if r.amount is None else Money(r.amount.minor * 10, "VND"))
            for r in super().parse_report(data)
        ]


def wrapped_reports(provider: Provider) -> list[bytes]:
    assert isinstance(provider, Wrapped)
    return provider.inner.reports()


def another_instances_report() -> list[bytes]:
    other = sandbox.ewallet("another-instance", {"late_per_mille": 0, "fail_per_mille": 0})
    other.submit(other_payments(Channel.EWALLET))
    try:
        return other.reports()
    finally:
        other.close()


# -- a wallet operator over a wire, written from docs/plugins.md ----------------------------------
@attrs.define
class Operator:
    """The far side of a wire: books, money moved, and its answers as JSON bytes — replaced by
    ``garble`` while it is set (the operator applied the request; the answer came back wrong)."""

    books: dict[str, Payment] = attrs.field(factory=dict)
    moved: Counter[str] = attrs.field(factory=Counter)
    garble: bytes | None = None

    def call(
        self, operation: str, payments: Sequence[Payment] = (), keys: Sequence[str] = ()
    ) -> bytes:
        answer: dict[str, str] = {}
        if operation == "pay":
            for payment in payments:
                known = self.books.setdefault(payment.key, payment)
                if (known.amount, known.address) != (payment.amount, payment.address):
                    answer[payment.key] = "refused"
                    continue
                if self.moved[payment.key] == 0:
                    self.moved[payment.key] += 1
                answer[payment.key] = "paid"
        else:
            answer = {key: "paid" if key in self.books else "unknown" for key in keys}
        return self.garble if self.garble is not None else json.dumps(answer).encode()


class WireWallet:
    """A correct plugin for the operator above: an answer it cannot read is an unknown
    outcome (ProviderTimeout), never a result."""

    def __init__(self, name: str, operator: Operator) -> None:
        self.name = name
        self.operator = operator
        self.capabilities = Capabilities(
            channels=frozenset({Channel.EWALLET}), max_batch=10, status_query=True
        )

    def read(self, body: bytes, keys: Sequence[str]) -> dict[str, str]:
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise ProviderTimeout(self.name, "the operator's answer is not JSON") from exc
        if not isinstance(answer, dict) or any(
            answer.get(key) not in ("paid", "unknown", "refused") for key in keys
        ):
            raise ProviderTimeout(self.name, "the operator's answer does not answer the keys")
        return {key: str(answer[key]) for key in keys}

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        keys = [p.key for p in payments]
        answer = self.read(self.operator.call("pay", payments), keys)
        if "refused" in answer.values():
            raise ProviderError(self.name, "a key reused for another payment")
        return [
            Result(key, ResultKind.PAID)
            if answer[key] == "paid"
            else Result(key, ResultKind.FAILED, Reason.OTHER)
            for key in keys
        ]

    def status(self, keys: Sequence[str]) -> list[Result]:
        answer = self.read(self.operator.call("status", keys=keys), keys)
        return [
            Result(key, ResultKind.PAID if answer[key] == "paid" else ResultKind.NOT_FOUND)
            for key in keys
        ]

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=True)

    def parse_report(self, data: bytes) -> list[Result]:
        raise ProviderError(self.name, "this operator sends no reports")

    def close(self) -> None:
        pass


class GarbleIsFailure(WireWallet):
    def read(self, body: bytes, keys: Sequence[str]) -> dict[str, str]:
        try:
            return super().read(body, keys)
        except ProviderTimeout:
            return dict.fromkeys(keys, "unknown")  # "not paid": re-routed, paid twice


class GarbleCrashes(WireWallet):
    def read(self, body: bytes, keys: Sequence[str]) -> dict[str, str]:
        answer = json.loads(body)
        return {key: answer[key] for key in keys}


class GarbleIsUnavailable(WireWallet):
    def read(self, body: bytes, keys: Sequence[str]) -> dict[str, str]:
        try:
            return super().read(body, keys)
        except ProviderTimeout as exc:
            raise ProviderUnavailable(self.name, "cannot reach the operator") from exc


def over_the_wire(cls: type[WireWallet]) -> dict[str, Any]:
    """run_check's arguments for ``cls`` against one operator shared by its instances."""
    operator = Operator()

    def garble(_provider: Provider, body: bytes | None) -> None:
        operator.garble = body

    return {
        "factory": lambda name, _settings: cls(name, operator),
        "applied": lambda _provider, key: operator.moved[key],
        "hostile": garble,
    }


def test_the_wire_wallet_conforms() -> None:
    """The fake the broken wire wallets below break, so each fails for its one flaw only."""
    arguments = over_the_wire(WireWallet)
    check_provider(arguments.pop("factory"), {}, **arguments)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (GarbleIsFailure, r"submit while every answer is empty: key .* answered failed"),
        (GarbleCrashes, r"submit while every answer is empty: raised JSONDecodeError"),
        (GarbleIsUnavailable, r"raised ProviderUnavailable \(nothing was sent\), but money moved"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_the_kit_catches_a_plugin_fooled_by_hostile_answers(
    broken: type[WireWallet], message: str
) -> None:
    arguments = over_the_wire(broken)
    with pytest.raises(ConformanceFailure, match=message):
        run_check("hostile_answers_are_refused", arguments.pop("factory"), {}, **arguments)


def test_without_the_hook_hostile_answers_are_not_checked() -> None:
    arguments = over_the_wire(GarbleCrashes)
    run_check("hostile_answers_are_refused", arguments["factory"], {})


# -- plugin state and the crash between the send and the ledger's commit --------------------------
class StateBank:
    """A file-writing plugin that remembers what it sent in the ledger's plugin state
    (``keeps_state``); ``files`` stands for the bank's side: the names of the files it received (a
    file written again under the same name replaces the first: it reaches the bank once)."""

    files: ClassVar[set[str]] = set()

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.capabilities = Capabilities(
            channels=frozenset({Channel.BANK}), max_batch=10, status_query=False, keeps_state=True
        )
        self.state: PluginState | None = None

    def bind_state(self, state: PluginState) -> None:
        self.state = state

    def file_name(self, payments: Sequence[Payment]) -> str:
        return "+".join(sorted(p.key for p in payments))

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        assert self.state is not None, "the kit binds the state of a keeps_state provider"
        fresh = []
        for payment in payments:
            sent = self.state.get_json("sent", payment.key)
            if sent is None:
                fresh.append(payment)
            elif sent != [payment.amount.minor, str(payment.address)]:
                raise ProviderError(self.name, f"key {payment.key} reused for another payment")
        if fresh:
            type(self).files.add(self.file_name(fresh))
            for payment in fresh:
                self.state.put_json(
                    "sent", payment.key, [payment.amount.minor, str(payment.address)]
                )
        return [Result(p.key, ResultKind.PENDING) for p in payments]

    def status(self, keys: Sequence[str]) -> list[Result]:
        raise ProviderError(self.name, "a bank answers by file")

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=True)

    def parse_report(self, data: bytes) -> list[Result]:
        raise ProviderError(self.name, "no reports here")

    def close(self) -> None:
        pass


def files_with(key: str) -> int:
    return sum(key in name.split("+") for name in StateBank.files)


def test_the_kit_rolls_back_the_plugin_state_written_before_the_crash() -> None:
    """A file written again after the crash, under a new name, reaches the bank twice; the
    same name (a file made from its keys) replaces the first."""

    class NewNameEachTime(StateBank):
        counter = itertools.count()

        def file_name(self, payments: Sequence[Payment]) -> str:
            return super().file_name(payments) + f"+#{next(self.counter)}"

    probe = lambda _provider, key: files_with(key)  # noqa: E731
    StateBank.files = set()
    check_provider(StateBank, {}, applied=probe)
    with pytest.raises(ConformanceFailure, match="moved 2 times after the batch was sent again"):
        run_check("crash_before_the_ledger_commits", NewNameEachTime, {}, applied=probe)


# -- what the kit says ----------------------------------------------------------------------------
def test_a_conformance_class_without_a_provider_says_so() -> None:
    class TestNothing(ProviderConformance):
        pass

    with pytest.raises(ConformanceFailure, match="sets neither plugin nor factory"):
        TestNothing().test_capabilities()


def test_the_kit_lists_its_checks_by_name() -> None:
    assert [check.name for check in CHECKS] == [
        "capabilities",
        "submit_one_result_per_payment",
        "submit_twice_is_idempotent",
        "reused_key_is_refused",
        "status_of_unknown_key",
        "status_of_submitted_keys",
        "crash_before_the_ledger_commits",
        "validate_answers_address_check",
        "parse_report_rejects_garbage",
        "hostile_reports_are_refused",
        "reports_answer_what_was_sent",
        "hostile_answers_are_refused",
        "close_works",
    ]
    assert {name for name in dir(ProviderConformance) if name.startswith("test_")} == {
        f"test_{check.name}" for check in CHECKS
    }


@pytest.mark.parametrize(
    ("broken", "check", "message", "hooks"),
    [
        (
            PaysEverySubmit,
            "submit_twice_is_idempotent",
            r"made a new transaction \(reference 'TX-1', then 'TX-4'\)",
            {},
        ),
        (PaysEverySubmitQuietly, "submit_twice_is_idempotent", "money moved 3 times", {}),
        (DropsAResult, "submit_one_result_per_payment", "returned 2 results for 3 keys", {}),
        (
            RenamesKeys,
            "submit_one_result_per_payment",
            r"answered for keys \['202109-[0-9A-F]{20}'",
            {},
        ),
        (
            GuessesPending,
            "status_of_unknown_key",
            "never sent, is pending; it must be not_found",
            {},
        ),
        (ForgetsKeys, "status_of_submitted_keys", "was never received, after it was submitted", {}),
        (OwnReasons, "submit_one_result_per_payment", "reason 'E42', not a Reason", {}),
        (FailsSilently, "submit_one_result_per_payment", "is failed without a reason", {}),
        (PlainStrings, "status_of_submitted_keys", "has kind 'paid', not a ResultKind", {}),
        (LeaksValueError, "parse_report_rejects_garbage", "raised ValueError: cannot parse", {}),
        (SwallowsGarbage, "parse_report_rejects_garbage", "accepted garbage", {}),
        (NoChannels, "capabilities", "channels must be a non-empty frozenset", {}),
        (Misnamed, "capabilities", "named 'always-this-name', not 'conformance'", {}),
        (ValidatesWithoutReason, "validate_answers_address_check", "gave no reason", {}),
        (NotAProvider, "capabilities", "lacks attributes of the Provider protocol", {}),
        (
            TakesReusedKeys,
            "reused_key_is_refused",
            "sent again with another amount: answered pending",
            {},
        ),
        (TimesOutOnReusedKeys, "reused_key_is_refused", "raised ProviderTimeout", {}),
        (
            ForgetsOnRestart,
            "crash_before_the_ledger_commits",
            "status after the crash says key",
            {},
        ),
        (
            RecursesOnNesting,
            "hostile_reports_are_refused",
            "JSON nested beyond reason .* raised RecursionError",
            {},
        ),
        (
            FindsResultsInLists,
            "hostile_reports_are_refused",
            "a JSON list of numbers .* answered",
            {},
        ),
        (
            ReadsAnyonesReports,
            "hostile_reports_are_refused",
            "another ledger or provider must be refused whole",
            {"foreign_reports": another_instances_report()},
        ),
        (
            MisreadsAmounts,
            "reports_answer_what_was_sent",
            "answered 3,600,000 VND|answered .*3600000",
            {"answers": wrapped_reports},
        ),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_the_kit_catches_a_broken_provider(
    broken: Any, check: str, message: str, hooks: dict[str, Any]
) -> None:
    factory: ProviderFactory = broken
    with pytest.raises(ConformanceFailure, match=message) as caught:
        run_check(check, factory, {}, key_prefix="t", **hooks)
    assert caught.value.check == check
    assert str(caught.value).startswith(f"{check}: ")
    with pytest.raises(ConformanceFailure) as everything:
        check_provider(factory, {}, key_prefix="t", **hooks)
    assert check in {name for name, _ in everything.value.failures}


def test_the_wrapper_itself_conforms() -> None:
    """So each broken provider above fails for its one broken promise only."""
    check_provider(
        Wrapped,
        {},
        key_prefix="t",
        answers=wrapped_reports,
        foreign_reports=another_instances_report(),
    )


def test_check_provider_reports_every_failed_check_at_once() -> None:
    class TwiceBroken(PaysEverySubmit, SwallowsGarbage):
        pass

    with pytest.raises(ConformanceFailure) as caught:
        check_provider(TwiceBroken, {}, key_prefix="t")
    failed = [name for name, _ in caught.value.failures]
    assert failed == [
        "submit_twice_is_idempotent",
        "reused_key_is_refused",  # it counts the changed resend as money moved
        "parse_report_rejects_garbage",
    ]
    assert str(caught.value).startswith(f"check_provider: 3 of {len(CHECKS)} checks failed:\n")
    key = instruction_key("t-submit_twice_is_idempotent-0")
    assert f"  - submit_twice_is_idempotent: key {key}:" in str(caught.value)


def test_an_exception_inside_a_check_is_a_failure_of_that_check() -> None:
    with pytest.raises(ConformanceFailure) as caught:
        check_provider(CannotClose, {}, key_prefix="t")
    assert ("close_works", "raised RuntimeError: socket already closed") in caught.value.failures


def test_a_money_probe_can_be_given() -> None:
    """A provider without an applied() method, probed by the test environment instead."""
    moved: dict[str, int] = {}

    class Quiet(Wrapped):
        def submit(self, payments: Sequence[Payment]) -> list[Result]:
            for payment in payments:
                moved[payment.key] = moved.get(payment.key, 0) + 1
            return super().submit(payments)

    def probe(_provider: Provider, key: str) -> int:
        return moved.get(key, 0)

    with pytest.raises(ConformanceFailure, match="money moved 3 times"):
        run_check("submit_twice_is_idempotent", Quiet, {}, applied=probe, key_prefix="q")
    run_check("submit_twice_is_idempotent", Wrapped, {}, applied=lambda p, k: 1)


def test_make_payment_and_make_key_are_used_for_every_payment(tmp_path: Path) -> None:
    seen: list[tuple[str, Channel]] = []
    labels: list[str] = []

    def make(key: str, channel: Channel) -> Payment:
        seen.append((key, channel))
        return attrs.evolve(default_payment(key, channel), reference="mine")

    def make_key(label: str) -> str:
        labels.append(label)
        return f"MINE-{len(labels)}"

    settings = {"state": str(tmp_path / "bank.db")}
    check_provider(sandbox.bank, settings, make_payment=make, make_key=make_key, key_prefix="m")
    # submit, submit twice, reused key, status of submitted, crash, validate
    assert len(seen) == 3 + 3 + 2 + 5 + 3 + 1
    assert {channel for _, channel in seen} == {Channel.BANK}
    assert {key for key, _ in seen} <= {f"MINE-{n}" for n in range(1, len(labels) + 1)}
    assert all(label.startswith("m-") for label in labels)


def test_default_keys_look_like_instruction_ids_and_differ_between_runs() -> None:
    """What sap_payments sends, so what every plugin must take; new keys on every run, so a
    provider whose test environment remembers keys still sees new ones; the same prefix, the
    same keys."""
    runs: list[list[str]] = [[], [], []]
    for run, prefix in zip(runs, (None, None, "fixed"), strict=True):

        def make(key: str, channel: Channel, keys: list[str] = run) -> Payment:
            keys.append(key)
            return default_payment(key, channel)

        run_check(
            "submit_one_result_per_payment", sandbox.postal, make_payment=make, key_prefix=prefix
        )
    assert all(INSTRUCTION_ID.fullmatch(key) for run in runs for key in run)
    assert len(set(runs[0])) == len(set(runs[1])) == 3
    assert not set(runs[0]) & set(runs[1])
    assert runs[2] == [
        instruction_key(f"fixed-submit_one_result_per_payment-{i}") for i in range(3)
    ]


def test_hostile_bytes_are_named_and_cover_the_usual_suspects() -> None:
    names = [name for name, _ in HOSTILE]
    assert len(names) == len(set(names))
    for wanted in ("empty", "not UTF-8", "JSON null", "JSON nested beyond reason", "huge (8 MiB)"):
        assert wanted in names
    assert len(dict(HOSTILE)["huge (8 MiB)"]) > 8 << 20


# -- the example in docs/plugins.md ---------------------------------------------------------------
DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def test_the_example_plugin_in_the_docs_conforms() -> None:
    """The minimal plugin of ``docs/plugins.md``, as printed, passes every check."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    (source,) = [block for block in blocks if "class MyMoneyProvider" in block]
    module = ModuleType("sap_payments_mymoney")
    exec(compile(source, str(DOCS), "exec"), module.__dict__)
    factory = module.MyMoneyProvider
    check_provider(factory, {"max_batch": 50})
    provider = factory("mymoney", {})
    payment = default_payment(instruction_key("doc"), Channel.EWALLET)
    provider.submit([payment])
    elsewhere = attrs.evolve(payment, address=WalletAddress("+84900000000"))
    with pytest.raises(ProviderError, match="reused for another payment"):
        provider.submit([elsewhere])
