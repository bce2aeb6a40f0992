"""The agency's configuration file, ``sap-payments.toml``.

::

    currency = "VND"                      # optional, the default
    programme = "monthly-allowance"       # optional, the default programme id
    rules = "rules.toml"                  # optional: a rule set instead of the Vietnamese default
                                          # (relative paths are relative to this file)
    outbox = "outbox"                     # optional: where dispatch writes batch files
    keyring = "/media/keys/ledger.keyring"  # optional: the keys personal data is sealed with
                                          # (default: $SAP_PAYMENTS_KEYRING, else <db>.keyring)
    retention_months = 120                # optional: months after a beneficiary's last month
                                          # before `erase` may remove their personal data
    approver_keys = ["2d49caa11efd2e7d"]  # optional: the only approver key ids dispatch trusts;
                                          # when set, every cycle must be signed by one of them
    checkpoint_key = "agency.pem"         # optional: the agency's Ed25519 key; each cycle closed
                                          # then gets a signed audit checkpoint (docs/audit.md)
    checkpoints = "checkpoints"           # optional: where those checkpoints are written as JSON

    [channels]                            # optional: who pays a channel a beneficiary falls
    postal = "vnpost"                     # back to (default: the first provider of it)

    [fallback_pay_points]                 # optional: cash at the commune's post office when
    "20107" = "BD-20107"                  # every address of a mandate has failed

    [providers.viettelpay]                # a configured provider instance, named as on the roster
    plugin = "sandbox-ewallet"            # the plugin that implements it
    channel = "ewallet"                   # ewallet | bank | postal
    # any other keys are the plugin's own settings; a relative ``outbox`` is relative to this file

A roster's ``provider`` column names an instance. When the file configures no provider at all,
any name is accepted at import and checked when the cycle is dispatched.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from sap_payments.beneficiaries import Channel
from sap_payments.errors import ConfigError
from sap_payments.money import MINOR_UNITS

__all__ = ["DEFAULT_PROGRAMME", "Config", "ProviderConfig"]

DEFAULT_PROGRAMME = "monthly-allowance"


@attrs.frozen
class ProviderConfig:
    """A provider instance: a plugin bound to its settings."""

    name: str
    plugin: str
    channel: Channel
    settings: Mapping[str, Any] = attrs.field(factory=lambda: MappingProxyType({}))


@attrs.frozen
class Config:
    currency: str = "VND"
    programme: str = DEFAULT_PROGRAMME
    rules: Path | None = None
    providers: Mapping[str, ProviderConfig] = attrs.field(factory=lambda: MappingProxyType({}))
    source: str | None = None
    #: channel → the provider instance that pays it when a beneficiary falls back to it
    channels: Mapping[str, str] = attrs.field(factory=lambda: MappingProxyType({}))
    #: commune code → pay point for cash when every address of a mandate has failed
    fallback_pay_points: Mapping[str, str] = attrs.field(factory=lambda: MappingProxyType({}))
    #: where dispatch writes each batch's payload and manifest (None: no files)
    outbox: Path | None = None
    #: the keyring file (None: ``SAP_PAYMENTS_KEYRING``, else ``<db>.keyring``; docs/security.md)
    keyring: Path | None = None
    #: months after a beneficiary's last benefit month before their personal data may be erased
    retention_months: int = 120
    #: the approver key ids dispatch trusts, pinned outside the database (empty: the ledger's own
    #: registered keys decide; docs/audit.md)
    approver_keys: tuple[str, ...] = ()
    #: the agency's signing key: closing a cycle signs an audit checkpoint with it (None: not)
    checkpoint_key: Path | None = None
    #: where each closed cycle's checkpoint is written as JSON (None: kept in the ledger only)
    checkpoints: Path | None = None

    @property
    def channel_providers(self) -> dict[str, str]:
        """channel → provider: ``[channels]`` where given, else the first provider configured
        for the channel."""
        found: dict[str, str] = {}
        for name, provider in self.providers.items():
            found.setdefault(provider.channel.value, name)
        found.update(self.channels)
        return found

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", source=source) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text: {exc.reason}", source=source) from None
        return cls.loads(text, source=source)

    @classmethod
    def loads(cls, text: str, *, source: str = "<string>") -> Config:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source=source) from exc
        unknown = set(data) - {
            "currency",
            "programme",
            "rules",
            "providers",
            "channels",
            "fallback_pay_points",
            "outbox",
            "keyring",
            "retention_months",
            "approver_keys",
            "checkpoint_key",
            "checkpoints",
        }
        if unknown:
            raise ConfigError("unknown setting", source=source, key=sorted(unknown)[0])
        currency = data.get("currency", "VND")
        if not isinstance(currency, str) or currency not in MINOR_UNITS:
            raise ConfigError(f"unknown currency {currency!r}", source=source, key="currency")
        programme = data.get("programme", DEFAULT_PROGRAMME)
        if not isinstance(programme, str) or not programme:
            raise ConfigError("must be a non-empty string", source=source, key="programme")
        rules = data.get("rules")
        if rules is not None and (not isinstance(rules, str) or not rules):
            raise ConfigError(
                "must be the path of a rule-set TOML file", source=source, key="rules"
            )
        rules_path = None
        if rules is not None:
            rules_path = Path(rules)
            if not rules_path.is_absolute() and source != "<string>":
                rules_path = Path(source).parent / rules_path
        providers: dict[str, ProviderConfig] = {}
        raw_providers = data.get("providers", {})
        if not isinstance(raw_providers, dict):
            raise ConfigError("must be a table", source=source, key="providers")
        for name, table in raw_providers.items():
            key = f"providers.{name}"
            if not isinstance(table, dict):
                raise ConfigError("must be a table", source=source, key=key)
            settings = dict(table)
            folder = settings.get("outbox")  # a plugin's outbox, like ours: relative to this file
            if isinstance(folder, str) and folder and source != "<string>":
                settings["outbox"] = str(Path(source).parent / folder)
            plugin = settings.pop("plugin", None)
            channel = settings.pop("channel", None)
            if not isinstance(plugin, str) or not plugin:
                raise ConfigError('needs plugin = "NAME"', source=source, key=key)
            try:
                channel_value = Channel(channel)
            except ValueError:
                raise ConfigError(
                    'needs channel = "ewallet", "bank" or "postal"', source=source, key=key
                ) from None
            providers[name] = ProviderConfig(
                name, plugin, channel_value, MappingProxyType(settings)
            )
        channels = _string_table(data, "channels", source)
        for channel, provider_name in channels.items():
            if channel not in {c.value for c in Channel}:
                raise ConfigError(
                    "not a channel (ewallet, bank, postal)",
                    source=source,
                    key=f"channels.{channel}",
                )
            if provider_name not in providers:
                raise ConfigError(
                    f"provider {provider_name!r} is not configured",
                    source=source,
                    key=f"channels.{channel}",
                )
        pay_points = _string_table(data, "fallback_pay_points", source)
        outbox = data.get("outbox")
        if outbox is not None and (not isinstance(outbox, str) or not outbox):
            raise ConfigError("must be a directory path", source=source, key="outbox")
        outbox_path = None
        if outbox is not None:
            outbox_path = Path(outbox)
            if not outbox_path.is_absolute() and source != "<string>":
                outbox_path = Path(source).parent / outbox_path
        keyring_path = _path(data, "keyring", source, "must be the path of a keyring file")
        checkpoint_key = _path(
            data, "checkpoint_key", source, "must be the path of the agency's signing key (PEM)"
        )
        checkpoints = _path(data, "checkpoints", source, "must be a directory path")
        retention = data.get("retention_months", 120)
        if not isinstance(retention, int) or isinstance(retention, bool) or retention < 0:
            raise ConfigError(
                "must be a whole number of months", source=source, key="retention_months"
            )
        approver_keys = data.get("approver_keys", [])
        if not isinstance(approver_keys, list) or not all(
            isinstance(k, str) and len(k) == 16 and all(c in "0123456789abcdef" for c in k)
            for k in approver_keys
        ):
            raise ConfigError(
                "must be a list of approver key ids (16 hex digits, as 'keys approvers' shows)",
                source=source,
                key="approver_keys",
            )
        return cls(
            currency,
            programme,
            rules_path,
            MappingProxyType(providers),
            source,
            MappingProxyType(channels),
            MappingProxyType(pay_points),
            outbox_path,
            keyring=keyring_path,
            retention_months=retention,
            approver_keys=tuple(approver_keys),
            checkpoint_key=checkpoint_key,
            checkpoints=checkpoints,
        )

    @classmethod
    def find(cls, path: str | os.PathLike[str] | None = None) -> Config:
        """Load ``path``, or ``./sap-payments.toml`` when it exists, else the defaults."""
        if path is not None:
            return cls.load(path)
        default = Path("sap-payments.toml")
        return cls.load(default) if default.is_file() else cls()


def _path(data: Mapping[str, Any], key: str, source: str, message: str) -> Path | None:
    """An optional path setting; relative paths are relative to the configuration file."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(message, source=source, key=key)
    path = Path(value)
    if not path.is_absolute() and source != "<string>":
        path = Path(source).parent / path
    return path


def _string_table(data: Mapping[str, Any], key: str, source: str) -> dict[str, str]:
    table = data.get(key, {})
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in table.items()
    ):
        raise ConfigError("must be a table of names to non-empty strings", source=source, key=key)
    return dict(table)
