"""The conformance kit passes the sandbox providers and catches broken ones, saying why."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pytest

from sap_payments.beneficiaries import Channel, FinancialAddress
from sap_payments.plugins import load_plugin
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    Provider,
    ProviderFactory,
    Result,
    ResultKind,
)
from sap_payments.testing import sandbox
from sap_payments.testing.conformance import (
    CHECKS,
    Check,
    ConformanceFailure,
    ProviderConformance,
    check_provider,
    default_payment,
    run_check,
)

PLUGINS = ["sandbox-ewallet", "sandbox-bank", "sandbox-postal"]


# -- the sandboxes conform ------------------------------------------------------------------------
@pytest.mark.parametrize("plugin", PLUGINS)
def test_every_sandbox_passes_every_check(plugin: str) -> None:
    check_provider(load_plugin(plugin), {"seed": 4}, key_prefix="t")


@pytest.mark.parametrize("plugin", PLUGINS)
def test_a_sandbox_with_a_state_file_passes_twice(plugin: str, tmp_path: Path) -> None:
    """Keys persist in the state file; a second run with the same keys still conforms."""
    settings = {"state": str(tmp_path / "state.db"), "late_per_mille": 500}
    check_provider(load_plugin(plugin), settings, key_prefix="same")
    check_provider(load_plugin(plugin), settings, key_prefix="same")


@pytest.mark.parametrize(
    ("plugin", "check"), list(itertools.product(PLUGINS, CHECKS)), ids=str
)  # fmt: skip
def test_each_check_on_each_sandbox(plugin: str, check: Check) -> None:
    run_check(check, load_plugin(plugin), {"fail_per_mille": 500}, key_prefix="p")


class TestSandboxBankConformance(ProviderConformance):
    """The way a plugin author uses the kit: one pytest test per check, the plugin by name."""

    plugin = "sandbox-bank"
    settings = MappingProxyType({"late_per_mille": 1000, "return_per_mille": 1000})


class TestSandboxPostalConformance(ProviderConformance):
    """… or by its factory."""

    factory = staticmethod(sandbox.postal)
    key_prefix = "postal"


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
        "status_of_unknown_key",
        "status_of_submitted_keys",
        "validate_answers_address_check",
        "parse_report_rejects_garbage",
        "close_works",
    ]
    assert {name for name in dir(ProviderConformance) if name.startswith("test_")} == {
        f"test_{check.name}" for check in CHECKS
    }


# -- broken providers -----------------------------------------------------------------------------
class Wrapped:
    """A sandbox e-wallet behind a plain class (no subclassing of the protocol); the broken
    providers below each override one method to break one promise."""

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.inner = sandbox.ewallet(name, {"late_per_mille": 0, **settings})
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


@pytest.mark.parametrize(
    ("broken", "check", "message"),
    [
        (
            PaysEverySubmit,
            "submit_twice_is_idempotent",
            r"made a new transaction \(reference 'TX-1', then 'TX-4'\)",
        ),
        (PaysEverySubmitQuietly, "submit_twice_is_idempotent", "money moved 3 times"),
        (DropsAResult, "submit_one_result_per_payment", "returned 2 results for 3 keys"),
        (RenamesKeys, "submit_one_result_per_payment", "answered for keys .*'T-SUB"),
        (GuessesPending, "status_of_unknown_key", "never sent, is pending; it must be not_found"),
        (ForgetsKeys, "status_of_submitted_keys", "was never received, after it was submitted"),
        (OwnReasons, "submit_one_result_per_payment", "reason 'E42', not a Reason"),
        (FailsSilently, "submit_one_result_per_payment", "is failed without a reason"),
        (PlainStrings, "status_of_submitted_keys", "has kind 'paid', not a ResultKind"),
        (LeaksValueError, "parse_report_rejects_garbage", "raised ValueError: cannot parse"),
        (SwallowsGarbage, "parse_report_rejects_garbage", "accepted garbage"),
        (NoChannels, "capabilities", "channels must be a non-empty frozenset"),
        (Misnamed, "capabilities", "named 'always-this-name', not 'conformance'"),
        (ValidatesWithoutReason, "validate_answers_address_check", "gave no reason"),
        (NotAProvider, "capabilities", "lacks attributes of the Provider protocol"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_the_kit_catches_a_broken_provider(broken: Any, check: str, message: str) -> None:
    factory: ProviderFactory = broken
    with pytest.raises(ConformanceFailure, match=message) as caught:
        run_check(check, factory, {}, key_prefix="t")
    assert caught.value.check == check
    assert str(caught.value).startswith(f"{check}: ")
    with pytest.raises(ConformanceFailure) as everything:
        check_provider(factory, {}, key_prefix="t")
    assert check in {name for name, _ in everything.value.failures}


def test_the_wrapper_itself_conforms() -> None:
    """So each broken provider above fails for its one broken promise only."""
    check_provider(Wrapped, {}, key_prefix="t")


def test_check_provider_reports_every_failed_check_at_once() -> None:
    class TwiceBroken(PaysEverySubmit, SwallowsGarbage):
        pass

    with pytest.raises(ConformanceFailure) as caught:
        check_provider(TwiceBroken, {}, key_prefix="t")
    failed = [name for name, _ in caught.value.failures]
    assert failed == ["submit_twice_is_idempotent", "parse_report_rejects_garbage"]
    assert str(caught.value).startswith(f"check_provider: 2 of {len(CHECKS)} checks failed:\n")
    assert "  - submit_twice_is_idempotent: key t-submit_twice_is_idempotent-0:" in str(
        caught.value
    )


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


def test_make_payment_is_used_for_every_payment() -> None:
    seen: list[tuple[str, Channel]] = []

    def make(key: str, channel: Channel) -> Payment:
        seen.append((key, channel))
        return attrs.evolve(default_payment(key, channel), reference="mine")

    check_provider(sandbox.bank, {}, make_payment=make, key_prefix="m")
    assert len(seen) == 3 + 3 + 5 + 1  # submit, submit twice, status of submitted, validate
    assert {channel for _, channel in seen} == {Channel.BANK}
    assert all(key.startswith("m-") for key, _ in seen)


def test_default_keys_differ_between_runs() -> None:
    """A provider whose test environment remembers keys still sees new ones on every run."""
    runs: list[set[str]] = [set(), set()]
    for keys in runs:

        def make(key: str, channel: Channel, keys: set[str] = keys) -> Payment:
            keys.add(key)
            return default_payment(key, channel)

        run_check("submit_one_result_per_payment", sandbox.postal, make_payment=make)
    assert len(runs[0]) == len(runs[1]) == 3
    assert not runs[0] & runs[1]
