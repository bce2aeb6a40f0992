"""The sandbox providers: deterministic fates, idempotent books, timeouts, reports, settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sap_payments import Config, ConfigError, Money, ProviderConfig
from sap_payments.beneficiaries import BankAccount, CashPickup, Channel, WalletAddress
from sap_payments.plugins import available_plugins, load_plugin, open_provider, open_providers
from sap_payments.providers import (
    AddressCheck,
    Payment,
    Provider,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Reason,
    Result,
    ResultKind,
)
from sap_payments.testing import sandbox
from sap_payments.testing.conformance import default_payment
from sap_payments.testing.sandbox import REPORT_FORMAT, SandboxProvider

PAID, PENDING, FAILED = ResultKind.PAID, ResultKind.PENDING, ResultKind.FAILED
RETURNED, UNCLAIMED, NOT_FOUND = ResultKind.RETURNED, ResultKind.UNCLAIMED, ResultKind.NOT_FOUND
FACTORIES = {
    Channel.EWALLET: sandbox.ewallet,
    Channel.BANK: sandbox.bank,
    Channel.POSTAL: sandbox.postal,
}
ROOT = Path(__file__).resolve().parent.parent

#: What a key's status queries answered, in order.
Fate = tuple[tuple[ResultKind, Reason | None], ...]


# -- helpers --------------------------------------------------------------------------------------
def open_sandbox(channel: Channel = Channel.EWALLET, /, **settings: Any) -> SandboxProvider:
    return SandboxProvider("sbx", channel, settings)


def wallet(key: str, **changes: Any) -> Payment:
    """The conformance kit's e-wallet payment under ``key``, with fields changed."""
    return attrs.evolve(default_payment(key, Channel.EWALLET), **changes)


def keys(count: int, prefix: str = "K") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(count)]


def payments(names: Sequence[str], channel: Channel = Channel.EWALLET) -> list[Payment]:
    return [default_payment(key, channel) for key in names]


def submit_all(provider: SandboxProvider, batch: Sequence[Payment]) -> list[Result]:
    size = provider.capabilities.max_batch
    results: list[Result] = []
    for start in range(0, len(batch), size):
        results.extend(provider.submit(batch[start : start + size]))
    return results


def history(provider: SandboxProvider, names: Sequence[str], rounds: int) -> list[list[Result]]:
    """The answers of ``rounds`` status queries of every key."""
    return [provider.status(names) for _ in range(rounds)]


def fates(provider: SandboxProvider, names: Sequence[str], rounds: int = 8) -> dict[str, Fate]:
    """key → the sequence of (kind, reason) its status queries answered."""
    answers = history(provider, names, rounds)
    return {
        key: tuple((answer[i].kind, answer[i].reason) for answer in answers)
        for i, key in enumerate(names)
    }


def kinds(results: Sequence[Result]) -> Counter[str]:
    return Counter(result.kind.value for result in results)


@pytest.fixture
def ewallet() -> Iterator[SandboxProvider]:
    with open_sandbox() as provider:
        yield provider


# -- factories, capabilities, entry points ------------------------------------------------------
@pytest.mark.parametrize("channel", list(Channel))
def test_each_factory_pays_through_one_channel(channel: Channel) -> None:
    provider = FACTORIES[channel]("sbx", {})
    with provider:
        capabilities = provider.capabilities
        assert isinstance(provider, Provider)
        assert provider.name == "sbx"
        assert capabilities.channels == frozenset({channel})
        assert capabilities.max_batch == 500
        assert capabilities.status_query
        assert capabilities.callbacks
        assert capabilities.address_validation is (channel is not Channel.POSTAL)
    assert FACTORIES[channel]("sbx", {"max_batch": 20}).capabilities.max_batch == 20


def test_entry_points_are_discoverable() -> None:
    names = {info.name: info for info in available_plugins()}
    for name, factory in [
        ("sandbox-ewallet", sandbox.ewallet),
        ("sandbox-bank", sandbox.bank),
        ("sandbox-postal", sandbox.postal),
    ]:
        assert load_plugin(name) is factory
        assert names[name].distribution.startswith("sap-payments ")
    config = ProviderConfig("viettelpay", "sandbox-ewallet", Channel.EWALLET, {"seed": 3})
    with open_provider(config) as provider:  # type: ignore[attr-defined]
        assert isinstance(provider, SandboxProvider)
        assert (provider.name, provider.settings.seed) == ("viettelpay", 3)


def test_the_example_configuration_opens_three_sandboxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the example's sandbox books are relative to the working dir
    providers = open_providers(Config.load(ROOT / "docs" / "examples" / "sap-payments.toml"))
    try:
        assert {name: sorted(p.capabilities.channels) for name, p in providers.items()} == {
            "viettelpay": [Channel.EWALLET],
            "vietinbank": [Channel.BANK],
            "vnpost": [Channel.POSTAL],
        }
    finally:
        for provider in providers.values():
            provider.close()


# -- determinism ----------------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_answers() -> None:
    names = keys(3000)
    with open_sandbox(seed=11, max_batch=3000) as one, open_sandbox(seed=11) as two:
        assert one.submit(payments(names)) == submit_all(two, payments(names))
        assert history(one, names, 7) == history(two, names, 7)
        assert one.movements() == two.movements()
        # The reports group results by call (one batch here, six there), the results are alike.
        reported = [
            sorted(map(repr, (r for d in p.reports() for r in p.parse_report(d))))
            for p in (one, two)
        ]
        assert reported[0] == reported[1]


def test_another_seed_gives_other_answers() -> None:
    names = keys(3000)
    with open_sandbox(seed=0, max_batch=3000) as zero, open_sandbox(seed=1, max_batch=3000) as one:
        zero.submit(payments(names))
        one.submit(payments(names))
        failed_0 = {k for k, f in fates(zero, names).items() if f[-1][0] is FAILED}
        failed_1 = {k for k, f in fates(one, names).items() if f[-1][0] is FAILED}
    assert failed_0 != failed_1
    assert 30 < len(failed_0) < 90
    assert 30 < len(failed_1) < 90


_FAIR = {"fail_per_mille": 150, "late_per_mille": 300, "return_per_mille": 100, "max_batch": 60}
_NAMES = keys(60, "H")


def _reference_fates() -> dict[str, Fate]:
    with open_sandbox(**_FAIR) as provider:
        provider.submit(payments(_NAMES))
        return fates(provider, _NAMES)


_REFERENCE = _reference_fates()


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(range(60)), size=st.integers(1, 60), others=st.integers(0, 5))
def test_a_keys_fate_does_not_depend_on_order_or_batches(
    order: list[int], size: int, others: int
) -> None:
    """Shuffled, split into batches of any size, mixed with other keys: the same fates."""
    shuffled = [_NAMES[i] for i in order]
    with open_sandbox(**_FAIR) as provider:
        for start in range(0, 60, size):
            chunk = shuffled[start : start + size]
            extra = [f"other-{start}-{n}" for n in range(others)]
            provider.submit(payments((extra + chunk)[:60]))
            rest = (extra + chunk)[60:]
            if rest:
                provider.submit(payments(rest))
        assert fates(provider, shuffled) == {key: _REFERENCE[key] for key in shuffled}


def test_a_keys_fate_is_the_same_in_another_process() -> None:
    """Fates come from SHA-256, not from hash() or random state: another interpreter (with
    another hash seed) draws the same."""
    names = keys(300)
    code = textwrap.dedent(
        """
        import json
        from sap_payments.beneficiaries import Channel
        from sap_payments.testing.conformance import default_payment
        from sap_payments.testing.sandbox import SandboxProvider
        names = [f"K{i:05d}" for i in range(300)]
        with SandboxProvider("sbx", Channel.BANK, {"seed": 5}) as p:
            p.submit([default_payment(k, Channel.BANK) for k in names])
            rounds = [p.status(names) for _ in range(8)]
        print(json.dumps([[r.kind.value for r in answer] for answer in rounds]))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    with open_sandbox(Channel.BANK, seed=5) as provider:
        provider.submit(payments(names, Channel.BANK))
        here = [[r.kind.value for r in answer] for answer in history(provider, names, 8)]
    assert json.loads(done.stdout) == here


# -- rates on 10,000 keys -------------------------------------------------------------------------
@attrs.frozen
class Run:
    submitted: Counter[str]
    rounds: list[Counter[str]]
    final: Counter[tuple[str, str | None]]
    moved: int
    movements: int
    documents: int


@pytest.fixture(scope="module")
def ten_thousand() -> dict[Channel, Run]:
    """Every channel at its default settings, seed 0, 10,000 keys, 7 status rounds."""
    runs = {}
    names = keys(10_000)
    for channel in Channel:
        with open_sandbox(channel, max_batch=10_000) as provider:
            submitted = provider.submit(payments(names, channel))
            rounds = history(provider, names, 7)
            runs[channel] = Run(
                submitted=kinds(submitted),
                rounds=[kinds(answer) for answer in rounds],
                final=Counter(
                    (r.kind.value, None if r.reason is None else r.reason.value) for r in rounds[-1]
                ),
                moved=provider.applied_total(),
                movements=len(provider.movements()),
                documents=len(provider.reports()),
            )
    return runs


# Pinned at seed 0: the draws are SHA-256, so these never change unless the sandbox does.
PINNED: dict[Channel, dict[str, Any]] = {
    Channel.EWALLET: {
        "submitted": {"pending": 9817, "failed": 183},
        "first poll": {"paid": 8778, "pending": 1039, "failed": 183},
        "final": {
            ("paid", None): 9751,
            ("failed", "name_mismatch"): 107,
            ("failed", "inactive_wallet"): 102,
            ("returned", "inactive_wallet"): 40,
        },
    },
    Channel.BANK: {
        "submitted": {"pending": 9808, "failed": 192},
        "first poll": {"paid": 8769, "pending": 1039, "failed": 192},
        "final": {
            ("paid", None): 9744,
            ("failed", "closed_account"): 109,
            ("failed", "name_mismatch"): 107,
            ("returned", "closed_account"): 40,
        },
    },
    Channel.POSTAL: {
        "submitted": {"pending": 9816, "failed": 184},
        "first poll": {"paid": 8527, "pending": 1039, "failed": 184, "unclaimed": 250},
        "final": {
            ("paid", None): 9473,
            ("unclaimed", None): 281,
            ("failed", "refused"): 209,
            ("returned", "refused"): 37,
        },
    },
}


@pytest.mark.parametrize("channel", list(Channel))
def test_default_rates_at_seed_0(ten_thousand: dict[Channel, Run], channel: Channel) -> None:
    run, pinned = ten_thousand[channel], PINNED[channel]
    assert run.submitted == pinned["submitted"]
    assert run.rounds[0] == pinned["first poll"]
    assert run.final == pinned["final"]
    # The rates, roughly: fail 20‰, late 100‰ (for 2 polls), return 5‰, unclaimed 30‰.
    failed = sum(n for (kind, _), n in run.final.items() if kind == "failed")
    assert 160 <= failed <= 240
    assert 900 <= run.rounds[0]["pending"] == run.rounds[1]["pending"] <= 1100
    assert run.rounds[2]["pending"] == 0
    assert 25 <= run.final["returned", _RETURN_REASON[channel]] <= 75
    unclaimed = run.final["unclaimed", None]
    assert (240 <= unclaimed <= 360) if channel is Channel.POSTAL else unclaimed == 0
    # Money moved once for every key not refused; one report per call that made results final.
    assert run.movements == 10_000 - failed
    assert run.moved == 360_000 * run.movements
    assert run.documents == 4  # submit, the third poll (late keys), returns at polls 4 and 6


_RETURN_REASON = {
    Channel.EWALLET: "inactive_wallet",
    Channel.BANK: "closed_account",
    Channel.POSTAL: "refused",
}


@pytest.mark.parametrize("channel", list(Channel))
def test_default_failure_reasons_by_channel(
    ten_thousand: dict[Channel, Run], channel: Channel
) -> None:
    reasons = {reason for (kind, reason) in ten_thousand[channel].final if kind == "failed"}
    assert (
        reasons
        == {
            Channel.EWALLET: {"inactive_wallet", "name_mismatch"},
            Channel.BANK: {"closed_account", "name_mismatch"},
            Channel.POSTAL: {"refused"},
        }[channel]
    )


@pytest.mark.parametrize(
    ("rate", "expected"), [(0, 0), (100, 180), (1000, 2000)], ids=["none", "100", "all"]
)
def test_fail_per_mille(rate: int, expected: int) -> None:
    names = keys(2000)
    with open_sandbox(fail_per_mille=rate, late_per_mille=0, max_batch=2000) as provider:
        results = provider.submit(payments(names))
        assert kinds(results)[FAILED.value] == expected  # no failure is late: all are at once
        assert len(provider.movements()) == 2000 - expected


def test_fail_reasons_are_the_ones_configured() -> None:
    names = keys(2000)
    reasons = ["limit_exceeded", "payee_deceased", "closed_account"]
    with open_sandbox(
        Channel.BANK, fail_per_mille=300, fail_reasons=reasons, late_per_mille=0, max_batch=2000
    ) as provider:
        results = provider.submit(payments(names, Channel.BANK))
    seen = Counter(r.reason.value for r in results if r.kind is FAILED and r.reason)
    assert seen == {"limit_exceeded": 191, "payee_deceased": 206, "closed_account": 226}
    assert all(r.provider_code == f"SBX-{r.reason.value.upper()}" for r in results if r.reason)


@pytest.mark.parametrize("late_polls", [0, 1, 4])
def test_late_keys_answer_pending_for_late_polls_queries(late_polls: int) -> None:
    names = keys(20)
    with open_sandbox(
        fail_per_mille=0, late_per_mille=1000, late_polls=late_polls, return_per_mille=0
    ) as provider:
        assert kinds(provider.submit(payments(names))) == {"pending": 20}
        answers = [kinds(answer) for answer in history(provider, names, late_polls + 2)]
        assert answers == [{"pending": 20}] * late_polls + [{"paid": 20}] * 2
        assert provider.status_polls(names[0]) == late_polls + 2
        assert len(provider.movements()) == 20  # the money moved at submit, not when reported


def test_a_late_failure_is_pending_first() -> None:
    with open_sandbox(
        fail_per_mille=1000, fail_reasons=["name_mismatch"], late_per_mille=1000
    ) as p:
        assert p.submit(payments(["L1"]))[0].kind is PENDING
        assert [r[0].kind for r in history(p, ["L1"], 3)] == [PENDING, PENDING, FAILED]
        assert p.applied("L1") == 0


@pytest.mark.parametrize("channel", list(Channel))
def test_a_return_comes_return_polls_queries_after_paid(channel: Channel) -> None:
    extra = {"unclaimed_per_mille": 0} if channel is Channel.POSTAL else {}
    with open_sandbox(
        channel, fail_per_mille=0, late_per_mille=0, return_per_mille=1000, return_polls=2, **extra
    ) as provider:
        provider.submit(payments(["R1"], channel))
        answers = [answer[0] for answer in history(provider, ["R1"], 4)]
        assert [a.kind for a in answers] == [PAID, PAID, RETURNED, RETURNED]
        assert answers[0].reason is None
        assert answers[2].reason == Reason(_RETURN_REASON[channel])
        assert provider.applied("R1") == 1  # paid once; the return brings it back


def test_unclaimed_cash_is_final_and_was_advanced() -> None:
    names = keys(40)
    with open_sandbox(
        Channel.POSTAL, fail_per_mille=0, unclaimed_per_mille=1000, late_per_mille=0
    ) as provider:
        provider.submit(payments(names, Channel.POSTAL))
        assert [kinds(a) for a in history(provider, names, 5)] == [{"unclaimed": 40}] * 5
        assert all(provider.applied(key) == 1 for key in names)


# -- idempotency ----------------------------------------------------------------------------------
def test_resubmitting_moves_money_once(ewallet: SandboxProvider) -> None:
    names = keys(60)
    batch = payments(names)
    first = ewallet.submit(batch)
    assert ewallet.submit(batch) == first
    assert ewallet.submit(list(reversed(batch)))[::-1] == first
    for start in range(0, 60, 7):
        ewallet.submit(batch[start : start + 7])
    refused = {r.key for r in first if r.kind is FAILED}
    assert all(ewallet.applied(key) == (0 if key in refused else 1) for key in names)
    assert [key for key, _ in ewallet.movements()] == [k for k in names if k not in refused]
    assert ewallet.applied_total() == 360_000 * (60 - len(refused))


def test_a_resubmit_answers_the_current_result() -> None:
    with open_sandbox(fail_per_mille=0, late_per_mille=0, return_per_mille=1000) as provider:
        batch = payments(["A1"])
        assert provider.submit(batch)[0].kind is PENDING
        assert provider.status(["A1"])[0].kind is PAID
        assert provider.submit(batch)[0].kind is PAID  # a resubmit does not advance the clock
        assert provider.status_polls("A1") == 1
        history(provider, ["A1"], 3)
        assert provider.submit(batch)[0].kind is RETURNED
        assert provider.applied("A1") == 1


def test_the_same_key_twice_in_one_batch_moves_money_once(ewallet: SandboxProvider) -> None:
    payment = wallet("D1")
    results = ewallet.submit([payment, payment])
    assert [r.key for r in results] == ["D1", "D1"]
    assert ewallet.applied("D1") == 1


@pytest.mark.parametrize(
    "change",
    [
        {"amount": Money.vnd(500_000)},
        {"address": WalletAddress("+84900000001")},
    ],
    ids=["amount", "address"],
)
def test_a_key_reused_for_another_payment_is_refused(
    ewallet: SandboxProvider, change: dict[str, Any]
) -> None:
    original = wallet("M1")
    ewallet.submit([original])
    other = attrs.evolve(original, **change)
    with pytest.raises(ProviderError) as caught:
        ewallet.submit([wallet("M2"), other])
    assert caught.value.provider_code == "DUPLICATE_KEY_MISMATCH"
    assert "M1" in str(caught.value)
    assert ewallet.status(["M2"])[0].kind is NOT_FOUND  # nothing of the batch was applied
    assert ewallet.movements() == [("M1", 360_000)]
    with pytest.raises(ProviderError, match="another amount or address"):
        ewallet.submit([wallet("M3"), attrs.evolve(other, key="M3")])


def test_the_payee_name_and_reference_do_not_make_another_payment(
    ewallet: SandboxProvider,
) -> None:
    original = wallet("N1")
    ewallet.submit([original])
    ewallet.submit([attrs.evolve(original, payee_name="Trần Thị B", reference="resend")])
    assert ewallet.applied("N1") == 1


@pytest.mark.parametrize(
    ("payment", "code"),
    [
        (default_payment("X", Channel.BANK), "WRONG_CHANNEL"),
        (wallet("X", amount=Money.vnd(0)), "INVALID_AMOUNT"),
        (wallet("X", amount=Money(5, "USD")), "CURRENCY_NOT_SUPPORTED"),
        (wallet(""), "INVALID_KEY"),
    ],
    ids=["channel", "amount", "currency", "key"],
)
def test_a_bad_payment_refuses_the_whole_batch(
    ewallet: SandboxProvider, payment: Payment, code: str
) -> None:
    good = wallet("G1")
    with pytest.raises(ProviderError) as caught:
        ewallet.submit([good, payment])
    assert caught.value.provider_code == code
    assert "payment 1" in str(caught.value)
    assert ewallet.movements() == []
    assert ewallet.status(["G1"])[0].kind is NOT_FOUND


def test_a_batch_over_max_batch_is_refused() -> None:
    with open_sandbox(max_batch=3) as provider:
        with pytest.raises(ProviderError) as caught:
            provider.submit(payments(keys(4)))
        assert caught.value.provider_code == "BATCH_TOO_LARGE"
        assert provider.movements() == []
        assert provider.submit([]) == []


def test_status_of_an_unknown_key_is_not_found(ewallet: SandboxProvider) -> None:
    assert ewallet.status(["nobody"]) == [Result(key="nobody", kind=NOT_FOUND)]
    assert ewallet.status_polls("nobody") == 0
    assert ewallet.applied("nobody") == 0


# -- timeouts and unavailability ------------------------------------------------------------------
def test_a_timeout_comes_after_the_batch_is_applied_and_committed(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.db"
    names = keys(10)
    settings_ = {"state": str(state), "timeout_per_mille": 1000, "fail_per_mille": 0}
    with open_sandbox(**settings_) as provider:
        with pytest.raises(ProviderTimeout, match="applied the batch"):
            provider.submit(payments(names))
        assert [provider.applied(key) for key in names] == [1] * 10
        moved = provider.movements()
    with open_sandbox(**settings_) as reopened:  # a new instance, as after a restart
        assert reopened.movements() == moved
        assert all(r.kind is not NOT_FOUND for r in reopened.status(names))
        reopened.submit(payments(names))  # known keys: no new timeout, no money moved
        assert reopened.movements() == moved


def test_a_timeout_survives_a_sigkill_of_the_caller(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.db"
    code = textwrap.dedent(
        f"""
        import os, signal
        from sap_payments.beneficiaries import Channel
        from sap_payments.providers import ProviderTimeout
        from sap_payments.testing.conformance import default_payment
        from sap_payments.testing.sandbox import SandboxProvider
        p = SandboxProvider("sbx", Channel.EWALLET,
                            {{"state": {str(state)!r}, "timeout_per_mille": 1000}})
        try:
            p.submit([default_payment(f"S{{i}}", Channel.EWALLET) for i in range(5)])
        except ProviderTimeout:
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with open_sandbox(state=str(state)) as reopened:
        assert sorted(key for key, _ in reopened.movements()) == [f"S{i}" for i in range(5)]


def test_timeouts_come_from_the_keys_drawn_for_them() -> None:
    names = keys(400)
    timeouts = 0
    with open_sandbox(timeout_per_mille=20, fail_per_mille=0) as provider:
        for start in range(0, 400, 10):
            try:
                provider.submit(payments(names[start : start + 10]))
            except ProviderTimeout:
                timeouts += 1
        assert timeouts == 6  # of 40 batches: 1 - 0.98¹⁰ ≈ 18% of them
        assert len(provider.movements()) == 400  # every batch was applied, timeout or not
        for start in range(0, 400, 10):  # the caller's retry finds every key known
            provider.submit(payments(names[start : start + 10]))
        assert len(provider.movements()) == 400


def test_unavailable_applies_nothing_and_the_retry_goes_through() -> None:
    names = keys(10)
    with open_sandbox(unavailable_per_mille=1000, timeout_per_mille=1000) as provider:
        with pytest.raises(ProviderUnavailable, match="nothing was applied"):
            provider.submit(payments(names))
        assert provider.movements() == []
        assert kinds(provider.status(names)) == {"not_found": 10}
        assert provider.reports() == []
        with pytest.raises(ProviderTimeout):  # the retry is applied (and this one times out)
            provider.submit(payments(names))
        assert len(provider.movements()) == 10 - kinds(provider.submit(payments(names)))["failed"]


def test_one_unavailable_key_holds_back_its_whole_batch() -> None:
    names = keys(200)
    with open_sandbox(unavailable_per_mille=20) as provider:
        refused = 0
        for start in range(0, 200, 20):
            batch = payments(names[start : start + 20])
            try:
                provider.submit(batch)
            except ProviderUnavailable:
                refused += 1
                assert all(provider.applied(p.key) == 0 for p in batch)
                assert kinds(provider.status([p.key for p in batch])) == {"not_found": 20}
        assert refused == 5  # of 10 batches: 1 - 0.98²⁰ ≈ 33% of them


# -- dead addresses and validate ------------------------------------------------------------------
def test_listed_dead_wallets_fail_at_once_and_validate_says_so() -> None:
    with open_sandbox(dead_msisdns=["0912 345 678"], late_per_mille=1000) as provider:
        dead = WalletAddress("+84912345678")
        payment = wallet("W1", address=dead)
        result = provider.submit([payment])[0]
        assert (result.kind, result.reason) == (FAILED, Reason.INACTIVE_WALLET)
        assert provider.applied("W1") == 0
        assert provider.validate(dead, "Nguyễn Văn An") == AddressCheck(
            ok=False, reason=Reason.INACTIVE_WALLET
        )
        assert provider.validate(WalletAddress("0987654321")).ok


@pytest.mark.parametrize("listed", ["0011223344", "970415:0011223344"])
def test_listed_closed_accounts_fail(listed: str) -> None:
    with open_sandbox(Channel.BANK, closed_accounts=[listed], fail_per_mille=0) as provider:
        closed = BankAccount("970415", "0011223344")
        payment = attrs.evolve(default_payment("B1", Channel.BANK), address=closed)
        assert provider.submit([payment])[0].reason is Reason.CLOSED_ACCOUNT
        assert provider.validate(closed) == AddressCheck(ok=False, reason=Reason.CLOSED_ACCOUNT)
        assert provider.validate(BankAccount("970415", "99887766")).ok


@pytest.mark.parametrize("channel", [Channel.EWALLET, Channel.BANK])
def test_a_drawn_dead_address_fails_every_payment_and_validate_knows(channel: Channel) -> None:
    with open_sandbox(channel, late_per_mille=0) as provider:
        addresses = [default_payment(key, channel).address for key in keys(2000, "A")]
        checks = [provider.validate(address) for address in addresses]
        dead = [a for a, check in zip(addresses, checks, strict=True) if not check.ok]
        assert len(dead) == {Channel.EWALLET: 24, Channel.BANK: 17}[channel]  # ~10‰ (20‰ × ½)
        for n, address in enumerate(dead):
            again = [Payment(f"dead-{n}-{i}", Money.vnd(1000), address, "X", "r") for i in range(3)]
            reason = provider.validate(address).reason
            assert reason is not None
            assert reason.dead_address
            assert {(r.kind, r.reason) for r in provider.submit(again)} == {(FAILED, reason)}
        live = [a for a, check in zip(addresses, checks, strict=True) if check.ok]
        batch = [Payment(f"live-{n}", Money.vnd(1000), a, "X", "r") for n, a in enumerate(live)]
        results = submit_all(provider, batch)
        assert all(r.reason is None or not r.reason.dead_address for r in results)


def test_validate_of_cash_and_of_another_channel(ewallet: SandboxProvider) -> None:
    assert ewallet.validate(CashPickup("PP01")) == AddressCheck(
        ok=False, reason=Reason.UNKNOWN_ACCOUNT
    )
    with open_sandbox(Channel.POSTAL) as postal:
        assert postal.validate(CashPickup("PP01")) == AddressCheck(ok=True)


# -- reports --------------------------------------------------------------------------------------
_LIVELY = {"fail_per_mille": 100, "late_per_mille": 200, "return_per_mille": 50}


def test_reports_carry_every_final_result_once() -> None:
    names = keys(500)
    with open_sandbox(**_LIVELY) as provider:
        submit_all(provider, payments(names))
        answers = history(provider, names, 8)
        documents = provider.reports()
        assert provider.reports() == []  # drained
        reported = [r for document in documents for r in provider.parse_report(document)]
    changes = {
        (r.key, r.kind, r.reason) for answer in answers for r in answer if r.kind is not PENDING
    }
    assert len(reported) == len(changes) == 500 + 22  # one final result each, 22 returns
    assert {(r.key, r.kind, r.reason) for r in reported} == changes
    assert all(r.amount == Money.vnd(360_000) and r.provider_reference for r in reported)
    assert len(documents) == 4  # the one submit batch, late keys at poll 3, returns at 4 and 6
    document = json.loads(documents[0])
    assert (document["format"], document["provider"], document["channel"]) == (
        REPORT_FORMAT,
        "sbx",
        "ewallet",
    )


def test_reports_survive_a_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "s.db")
    with open_sandbox(state=state) as provider:
        provider.submit(payments(keys(5)))
    with open_sandbox(state=state) as reopened:
        assert len(reopened.reports()) == 1
    with open_sandbox(state=state) as again:
        assert again.reports() == []


def test_duplicate_per_mille_repeats_results_in_a_report() -> None:
    names = keys(1000)
    counts = {}
    for rate in (0, 100, 1000):
        with open_sandbox(duplicate_per_mille=rate, late_per_mille=0, max_batch=1000) as p:
            p.submit(payments(names))
            (document,) = p.reports()
            counts[rate] = Counter(r.key for r in p.parse_report(document))
    assert set(counts[0].values()) == {1}
    assert sum(counts[100].values()) == 1000 + 94
    assert set(counts[100].values()) == {1, 2}
    assert set(counts[1000].values()) == {2}


def test_reorder_shuffles_results_and_documents_deterministically() -> None:
    names = keys(300)

    def documents(**extra: Any) -> list[bytes]:
        with open_sandbox(**_LIVELY, **extra) as provider:
            provider.submit(payments(names))
            history(provider, names, 8)
            return provider.reports()

    plain, shuffled = documents(), documents(reorder=True)
    assert shuffled == documents(reorder=True)  # seeded
    assert shuffled != plain
    numbers = [json.loads(d)["report"] for d in shuffled]
    assert sorted(numbers) == [json.loads(d)["report"] for d in plain] == [1, 2, 3, 4]
    assert numbers != [1, 2, 3, 4]
    by_number = {json.loads(d)["report"]: json.loads(d)["results"] for d in shuffled}
    for document in plain:
        ordered = json.loads(document)
        entries = by_number[ordered["report"]]
        assert sorted(map(json.dumps, entries)) == sorted(map(json.dumps, ordered["results"]))
    assert any(
        by_number[json.loads(d)["report"]] != json.loads(d)["results"]
        for d in plain
        if len(json.loads(d)["results"]) > 1
    )


def _report(*entries: Any, **document: Any) -> bytes:
    body = {"format": REPORT_FORMAT, "provider": "sbx", "channel": "ewallet", "report": 1}
    body["results"] = list(entries)
    body.update(document)
    return json.dumps(body).encode()


_ENTRY = {"key": "K1", "status": "paid", "reason": None, "amount": 1000, "currency": "VND"}


def test_parse_report_reads_a_hand_written_document(ewallet: SandboxProvider) -> None:
    failed = {"key": "K2", "status": "failed", "reason": "name_mismatch", "code": "E7"}
    assert ewallet.parse_report(_report(_ENTRY, failed, {**_ENTRY, "extra": 1})) == [
        Result("K1", PAID, amount=Money.vnd(1000)),
        Result("K2", FAILED, Reason.NAME_MISMATCH, provider_code="E7"),
        Result("K1", PAID, amount=Money.vnd(1000)),
    ]


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"<html>502</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_report(format="other/1"), "format"),
        (_report(provider="someone-else"), "not addressed to provider sbx"),
        (_report(results={"K1": "paid"}), "results is not a list"),
        (_report("K1"), r"results\[0\] is not an object"),
        (_report({**_ENTRY, "key": ""}), "key is missing"),
        (_report({**_ENTRY, "key": 7}), "key is missing"),
        (_report({**_ENTRY, "status": "settled"}), "is not a result"),
        (_report({**_ENTRY, "status": ["paid"]}), "is not a result"),
        (_report({**_ENTRY, "status": "pending"}), "does not belong in a report"),
        (_report({**_ENTRY, "status": "not_found"}), "does not belong in a report"),
        (_report({**_ENTRY, "reason": "bad luck"}), "is not a reason"),
        (_report({**_ENTRY, "reason": ["closed_account"]}), "is not a reason"),
        (_report({**_ENTRY, "status": "failed"}), "needs a reason"),
        (_report({**_ENTRY, "status": "returned"}), "needs a reason"),
        (_report({**_ENTRY, "amount": 10.5}), "whole minor units"),
        (_report({**_ENTRY, "amount": True}), "whole minor units"),
        (_report({**_ENTRY, "currency": None}), "whole minor units"),
        (_report({**_ENTRY, "currency": ["VND"]}), "whole minor units"),
        (_report({**_ENTRY, "currency": "XYZ"}), "whole minor units"),
        (_report({**_ENTRY, "reference": 12}), "reference is not a string"),
    ],
)
def test_parse_report_refuses_malformed_documents(
    ewallet: SandboxProvider, data: bytes, complaint: str
) -> None:
    with pytest.raises(ProviderError, match=complaint) as caught:
        ewallet.parse_report(data)
    assert caught.value.provider_code == "MALFORMED_REPORT"
    assert type(caught.value) is ProviderError


# -- settings -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channel", "settings_", "key", "complaint"),
    [
        (Channel.EWALLET, {"fail_rate": 20}, "fail_rate", "not a setting of the ewallet"),
        (Channel.EWALLET, {"fail_per_mille": -1}, "fail_per_mille", "must be 0–1000"),
        (Channel.EWALLET, {"fail_per_mille": 1001}, "fail_per_mille", "must be 0–1000"),
        (Channel.EWALLET, {"late_per_mille": 2.5}, "late_per_mille", "not float"),
        (Channel.EWALLET, {"timeout_per_mille": "5"}, "timeout_per_mille", "not str"),
        (Channel.EWALLET, {"return_per_mille": True}, "return_per_mille", "not bool"),
        (Channel.EWALLET, {"late_polls": -1}, "late_polls", "at least 0"),
        (Channel.EWALLET, {"max_batch": 0}, "max_batch", "at least 1"),
        (Channel.EWALLET, {"seed": "zero"}, "seed", "whole number"),
        (Channel.EWALLET, {"fail_reasons": "refused"}, "fail_reasons", "a list of strings"),
        (Channel.EWALLET, {"fail_reasons": ["bad luck"]}, "fail_reasons", "is not a reason"),
        (Channel.EWALLET, {"fail_reasons": []}, "fail_reasons", "at least one reason"),
        (Channel.EWALLET, {"fail_reasons": [3]}, "fail_reasons", "non-empty strings"),
        (Channel.EWALLET, {"reorder": "yes"}, "reorder", "true or false"),
        (Channel.EWALLET, {"state": ""}, "state", "path of a SQLite file"),
        (Channel.EWALLET, {"state": 5}, "state", "path of a SQLite file"),
        (Channel.EWALLET, {"currency": "XYZ"}, "currency", "unknown currency"),
        (Channel.EWALLET, {"currency": ["VND"]}, "currency", "unknown currency"),
        (Channel.EWALLET, {"unclaimed_per_mille": 5}, "unclaimed_per_mille", "not a setting"),
        (Channel.EWALLET, {"closed_accounts": ["1"]}, "closed_accounts", "not a setting"),
        (Channel.EWALLET, {"dead_msisdns": ["12345"]}, "dead_msisdns", "not a Vietnamese"),
        (Channel.BANK, {"dead_msisdns": ["0912345678"]}, "dead_msisdns", "not a setting"),
        (Channel.BANK, {"closed_accounts": [""]}, "closed_accounts", "non-empty strings"),
        (Channel.POSTAL, {"unclaimed_per_mille": 1200}, "unclaimed_per_mille", "0–1000"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    channel: Channel, settings_: dict[str, Any], key: str, complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        FACTORIES[channel]("viettelpay", settings_)
    assert caught.value.key == f"providers.viettelpay.{key}"


def test_a_state_file_of_another_channel_is_refused(tmp_path: Path) -> None:
    state = str(tmp_path / "s.db")
    open_sandbox(Channel.BANK, state=state).close()
    with pytest.raises(ConfigError, match="books of a bank sandbox") as caught:
        open_sandbox(Channel.EWALLET, state=state)
    assert caught.value.key == "providers.sbx.state"


@pytest.mark.parametrize("kind", ["directory", "garbage"])
def test_a_state_file_that_is_no_database_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "state"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(ConfigError, match="sandbox state file") as caught:
        open_sandbox(state=str(path))
    assert caught.value.key == "providers.sbx.state"


def test_settings_keep_their_defaults() -> None:
    with open_sandbox(Channel.POSTAL) as postal, open_sandbox() as wallet:
        assert attrs.asdict(postal.settings, recurse=False) == {
            "channel": Channel.POSTAL,
            "seed": 0,
            "fail_per_mille": 20,
            "fail_reasons": (Reason.REFUSED,),
            "late_per_mille": 100,
            "late_polls": 2,
            "timeout_per_mille": 0,
            "unavailable_per_mille": 0,
            "return_per_mille": 5,
            "return_polls": 3,
            "unclaimed_per_mille": 30,
            "duplicate_per_mille": 0,
            "reorder": False,
            "state": None,
            "max_batch": 500,
            "currency": "VND",
            "dead_msisdns": frozenset(),
            "closed_accounts": frozenset(),
            "enrol_already_per_mille": 100,
            "enrol_refused_per_mille": 30,
            "enrol_failed_per_mille": 20,
            "enrol_pending_per_mille": 0,
            "enrol_pending_polls": 1,
        }
        assert wallet.settings.unclaimed_per_mille == 0
        assert wallet.settings.fail_reasons == (Reason.INACTIVE_WALLET, Reason.NAME_MISMATCH)


# -- closing --------------------------------------------------------------------------------------
def test_close_is_idempotent_and_a_closed_sandbox_says_so() -> None:
    provider = open_sandbox()
    provider.close()
    provider.close()
    for call in (
        lambda: provider.submit(payments(["C1"])),
        lambda: provider.status(["C1"]),
        provider.reports,
        provider.movements,
    ):
        with pytest.raises(ProviderError, match="closed") as caught:
            call()
        assert caught.value.provider_code == "CLOSED"
