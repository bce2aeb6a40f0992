"""Provider plugins: discovered through the entry-point group ``sap_payments.providers``.

Listing the plugins reads installed metadata only and imports nothing; a plugin is imported when
it is first loaded. Each error names the distribution involved, so a clerk can tell which
package to update or remove::

    [project.entry-points."sap_payments.providers"]
    mymoney = "sap_payments_mymoney:MyMoneyProvider"

The object named is a :class:`~sap_payments.providers.ProviderFactory`: called with the provider
instance's name and its settings (from ``sap-payments.toml``) it returns a provider. A provider
that declares the capability ``ledger_identity`` is then told the ledger's id
(``bind_ledger``); the settings never carry it, so a plugin that checks its settings strictly
keeps working. A provider that declares ``keeps_state`` is then handed its memory in the ledger
(``bind_state`` with a :class:`LedgerPluginState`) when the ledger's store is given.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs

from sap_payments.config import Config, ProviderConfig
from sap_payments.errors import ConfigError, SapPaymentsError
from sap_payments.providers import (
    LedgerBoundProvider,
    Provider,
    ProviderFactory,
    StatefulProvider,
    _check_slot,
)
from sap_payments.store import Store

__all__ = [
    "GROUP",
    "DuplicatePlugin",
    "LedgerPluginState",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "UnknownPlugin",
    "available_plugins",
    "load_plugin",
    "open_provider",
    "open_providers",
]

GROUP = "sap_payments.providers"


class PluginError(SapPaymentsError):
    """A provider plugin cannot be found or loaded."""


class UnknownPlugin(PluginError, LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) or "none"
        super().__init__(f"no provider plugin {name!r} is installed (installed: {listed})")
        self.name = name


class DuplicatePlugin(PluginError):
    def __init__(self, name: str, distributions: list[str]) -> None:
        super().__init__(
            f"provider plugin {name!r} is claimed by several distributions: "
            f"{', '.join(distributions)}; uninstall all but one"
        )
        self.name = name
        self.distributions = distributions


class PluginLoadError(PluginError):
    def __init__(self, name: str, distribution: str, cause: BaseException) -> None:
        super().__init__(
            f"provider plugin {name!r} from distribution {distribution} failed to load: "
            f"{type(cause).__name__}: {cause}"
        )
        self.name = name
        self.distribution = distribution


@attrs.frozen
class PluginInfo:
    """An installed plugin, as its metadata describes it (nothing imported)."""

    name: str
    value: str  # "module:attribute"
    distribution: str


def _distribution(entry: EntryPoint) -> str:
    dist = entry.dist
    if dist is None:
        return "(unknown distribution)"
    return f"{dist.metadata['Name']} {dist.version}"


def _entries() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for entry in entry_points(group=GROUP):
        found.setdefault(entry.name, []).append(entry)
    return found


def available_plugins() -> list[PluginInfo]:
    """Every installed provider plugin, by name; imports nothing."""
    return [
        PluginInfo(name, entries[0].value, ", ".join(_distribution(e) for e in entries))
        for name, entries in sorted(_entries().items())
    ]


def load_plugin(name: str) -> ProviderFactory:
    """Import the plugin ``name`` and return its factory.

    Raises:
        UnknownPlugin: no installed distribution provides it.
        DuplicatePlugin: more than one distribution claims the name.
        PluginLoadError: importing it failed (the error names the distribution).
    """
    entries = _entries()
    candidates = entries.get(name)
    if not candidates:
        raise UnknownPlugin(name, sorted(entries))
    distributions = sorted({_distribution(e) for e in candidates})
    if len(distributions) > 1:
        raise DuplicatePlugin(name, distributions)
    entry = candidates[0]
    try:
        factory = entry.load()
    except Exception as exc:  # any import-time failure of third-party code, re-raised typed
        raise PluginLoadError(name, _distribution(entry), exc) from exc
    if not callable(factory):
        raise PluginLoadError(name, _distribution(entry), TypeError("not callable"))
    return factory  # type: ignore[no-any-return]


class LedgerPluginState:
    """A provider instance's :class:`~sap_payments.providers.PluginState` in the ledger: the
    ``plugin_state`` table, rows (provider, namespace, key). Each write runs in the store's
    transaction — joining the caller's when one is open (a dispatch's outbox commit), its own
    otherwise — and the table is backed up with the ledger file."""

    def __init__(self, store: Store, provider: str) -> None:
        self.store = store
        self.provider = provider

    def get(self, namespace: str, key: str) -> bytes | None:
        _check_slot(namespace, key)
        return self.store.plugin_state_get(self.provider, namespace, key)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        _check_slot(namespace, key, value)
        at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self.store.transaction():
            self.store.plugin_state_put(self.provider, namespace, key, bytes(value), at)

    def items(self, namespace: str) -> Iterator[tuple[str, bytes]]:
        _check_slot(namespace)
        return self.store.plugin_state_items(self.provider, namespace)

    def get_json(self, namespace: str, key: str) -> Any:
        value = self.get(namespace, key)
        return None if value is None else json.loads(value)

    def put_json(self, namespace: str, key: str, value: Any) -> None:
        # compact, keys sorted, UTF-8: as MemoryPluginState stores it
        self.put(namespace, key, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())

    def transaction(self) -> AbstractContextManager[None]:
        return self.store.transaction()


def open_provider(
    config: ProviderConfig, *, ledger_id: str | None = None, store: Store | None = None
) -> Provider:
    """A provider instance bound to its settings — and to the ledger ``ledger_id`` when the
    provider declares ``ledger_identity`` (its ``bind_ledger`` is called before anything else),
    and to its state in ``store`` when it declares ``keeps_state`` (``bind_state`` next).
    """
    factory = load_plugin(config.plugin)
    settings: Mapping[str, Any] = dict(config.settings)
    provider = factory(config.name, settings)
    if config.channel not in provider.capabilities.channels:
        raise ConfigError(
            f"plugin {config.plugin} does not pay through {config.channel}",
            source=None,
            key=f"providers.{config.name}",
        )
    if ledger_id is not None and provider.capabilities.ledger_identity:
        if not isinstance(provider, LedgerBoundProvider):
            raise PluginError(
                f"provider plugin {config.plugin!r} declares ledger_identity but has no "
                "bind_ledger(ledger_id) method"
            )
        provider.bind_ledger(ledger_id)
    if store is not None and provider.capabilities.keeps_state:
        if not isinstance(provider, StatefulProvider):
            raise PluginError(
                f"provider plugin {config.plugin!r} declares keeps_state but has no "
                "bind_state(state) method"
            )
        provider.bind_state(LedgerPluginState(store, config.name))
    return provider


def open_providers(
    config: Config, *, ledger_id: str | None = None, store: Store | None = None
) -> dict[str, Provider]:
    """Every provider instance the configuration names (imported now), bound to the ledger
    ``ledger_id`` where they declare ``ledger_identity``, and to their state in ``store`` where
    they declare ``keeps_state``."""
    return {
        name: open_provider(provider, ledger_id=ledger_id, store=store)
        for name, provider in config.providers.items()
    }
