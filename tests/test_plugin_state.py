"""The plugin-state API: what a provider plugin remembers lives in the ledger (the
``plugin_state`` table), handed to plugins that declare ``keeps_state`` through ``bind_state``.

The same checks run against the ledger's implementation and the in-memory one, so a plugin
tested without a ledger behaves as it will with one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from sap_payments import SQLiteStore
from sap_payments.beneficiaries import Channel, FinancialAddress
from sap_payments.config import ProviderConfig
from sap_payments.errors import InvalidInput
from sap_payments.plugins import LedgerPluginState, PluginError, open_provider
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    MemoryPluginState,
    Payment,
    PluginState,
    Result,
    ResultKind,
    StatefulProvider,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "l.db", durable=False) as opened:
        yield opened


@pytest.fixture(params=["ledger", "memory"])
def state(request: pytest.FixtureRequest, store: SQLiteStore) -> PluginState:
    if request.param == "ledger":
        return LedgerPluginState(store, "vietinbank")
    return MemoryPluginState()


def test_values_are_kept_by_namespace_and_key(state: PluginState) -> None:
    assert isinstance(state, PluginState)
    assert state.get("message", "M1") is None
    assert state.get_json("message", "M1") is None
    state.put("message", "M1", b"\x00raw\xff")
    state.put_json("payment", "K2", {"message": "M1", "amount": 360_000})
    state.put_json("payment", "K1", {"message": "M1", "amount": 540_000})
    assert state.get("message", "M1") == b"\x00raw\xff"
    assert state.get("payment", "M1") is None  # another namespace
    assert state.get_json("payment", "K1") == {"message": "M1", "amount": 540_000}
    state.put_json("payment", "K1", ["replaced"])
    assert state.get_json("payment", "K1") == ["replaced"]
    assert [key for key, _ in state.items("payment")] == ["K1", "K2"]  # by key
    assert list(state.items("nothing")) == []


def test_writes_in_a_transaction_go_together_or_not_at_all(state: PluginState) -> None:
    state.put("message", "kept", b"1")

    def crash() -> None:
        with state.transaction():
            state.put("message", "lost", b"2")
            state.put("message", "kept", b"changed")
            raise RuntimeError("the file could not be written")

    with pytest.raises(RuntimeError):
        crash()
    assert state.get("message", "lost") is None
    assert state.get("message", "kept") == b"1"
    with state.transaction(), state.transaction():  # nested calls join the outer one
        state.put("message", "both", b"3")
    assert state.get("message", "both") == b"3"


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.put("", "k", b"v"),
        lambda s: s.put("ns", "", b"v"),
        lambda s: s.put("ns", "k", "not bytes"),
        lambda s: s.get("", "k"),
    ],
    ids=["empty namespace", "empty key", "text value", "empty namespace read"],
)
def test_what_cannot_be_stored_is_refused(
    state: PluginState, write: Callable[[Any], object]
) -> None:
    with pytest.raises(InvalidInput):
        write(state)


def test_each_provider_instance_has_its_own_state_kept_with_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with SQLiteStore(path, durable=False) as store:
        LedgerPluginState(store, "vietinbank").put_json("message", "M1", {"keys": ["K1"]})
        LedgerPluginState(store, "bidv").put_json("message", "M1", {"keys": ["K9"]})
    with SQLiteStore(path, durable=False) as store:  # reopened: it was committed
        assert LedgerPluginState(store, "vietinbank").get_json("message", "M1") == {"keys": ["K1"]}
        assert LedgerPluginState(store, "bidv").get_json("message", "M1") == {"keys": ["K9"]}
        assert list(LedgerPluginState(store, "agribank").items("message")) == []


def test_a_write_joins_the_ledgers_transaction(store: SQLiteStore) -> None:
    """Written inside the ledger's own transaction (a dispatch's outbox commit), the state is
    committed with it — or rolled back with it."""
    state = LedgerPluginState(store, "vietinbank")

    def crash() -> None:
        with store.transaction():
            state.put("message", "M1", b"1")
            raise RuntimeError("crash before the outbox commit")

    with pytest.raises(RuntimeError):
        crash()
    assert state.get("message", "M1") is None


def test_items_page_through_many_keys_while_writing(store: SQLiteStore) -> None:
    state = LedgerPluginState(store, "vietinbank")
    with state.transaction():
        for number in range(2500):
            state.put("payment", f"K{number:05d}", b"x")
    seen = []
    for key, _value in state.items("payment"):
        seen.append(key)
        state.put("payment", key, b"y")  # the caller may write while it reads
    assert seen == [f"K{number:05d}" for number in range(2500)]
    assert {value for _, value in state.items("payment")} == {b"y"}


# -- bind_state through open_provider -------------------------------------------------------------
class _Remembering:
    """A provider that declares keeps_state (and, unless told otherwise, has bind_state)."""

    bound: list[PluginState]

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.capabilities = Capabilities(
            channels=frozenset({Channel.EWALLET}), keeps_state=settings.get("keeps", True)
        )
        self.bound = []

    def bind_state(self, state: PluginState) -> None:
        self.bound.append(state)

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        return [Result(p.key, ResultKind.PENDING) for p in payments]

    def status(self, keys: Sequence[str]) -> list[Result]:
        return [Result(key, ResultKind.NOT_FOUND) for key in keys]

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=True)

    def parse_report(self, data: bytes) -> list[Result]:
        return []

    def close(self) -> None:
        pass


class _Forgetful(_Remembering):
    bind_state = None  # type: ignore[assignment]  # declares keeps_state, has no bind_state


def _open(
    monkeypatch: pytest.MonkeyPatch,
    factory: Callable[[str, Mapping[str, Any]], Any],
    store: SQLiteStore | None,
    **settings: Any,
) -> Any:
    monkeypatch.setattr("sap_payments.plugins.load_plugin", lambda _name: factory)
    config = ProviderConfig("wallet", "remembering", Channel.EWALLET, dict(settings))
    return open_provider(config, ledger_id=None, store=store)


def test_open_provider_hands_a_stateful_provider_its_state_in_the_ledger(
    monkeypatch: pytest.MonkeyPatch, store: SQLiteStore
) -> None:
    provider = _open(monkeypatch, _Remembering, store)
    assert isinstance(provider, StatefulProvider)
    (state,) = provider.bound
    state.put_json("message", "M1", {"keys": ["K1"]})
    assert LedgerPluginState(store, "wallet").get_json("message", "M1") == {"keys": ["K1"]}
    assert _open(monkeypatch, _Remembering, None).bound == []  # no ledger: not bound
    assert _open(monkeypatch, _Remembering, store, keeps=False).bound == []  # not declared


def test_keeps_state_without_bind_state_is_a_plugin_error(
    monkeypatch: pytest.MonkeyPatch, store: SQLiteStore
) -> None:
    with pytest.raises(PluginError, match="declares keeps_state but has no bind_state"):
        _open(monkeypatch, _Forgetful, store)
