"""The settings of a ``gsma-mobile-money`` provider, checked (``[providers.NAME]``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from sap_payments.errors import ConfigError
from sap_payments.gsma._wire import DEFAULT_NAMESPACE

__all__ = ["GsmaSettings"]

_AUTH_MODES: Final = ("none", "api_key", "oauth2")

_KEYS: Final = frozenset(
    {
        "base_url",
        "timeout",
        "connect_timeout",
        "auth",
        "api_key",
        "api_key_env",
        "client_id",
        "client_secret",
        "client_secret_env",
        "token_url",
        "bulk",
        "bulk_threshold",
        "max_batch",
        "journal",
        "max_concurrency",
        "requests_per_second",
        "max_retries",
        "backoff",
        "max_backoff",
        "retry_after_cap",
        "poll_limit",
        "poll_interval",
        "callback_url",
        "check_accounts",
        "debit_party_type",
        "debit_party",
        "correlation_namespace",
        "webhook_secret",
        "webhook_secret_env",
        "page_size",
        "in_flight_grace",
        "max_answer_bytes",
        "max_entry_bytes",
    }
)


@attrs.frozen
class GsmaSettings:
    """Checked settings; every duration is in seconds. See ``docs/mobile-money.md``."""

    base_url: str
    timeout: float = 10.0
    connect_timeout: float = 5.0
    auth: str = "none"
    api_key: str | None = attrs.field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    token_url: str | None = None
    bulk: bool = False
    bulk_threshold: int = 20
    max_batch: int = 1000
    journal: Path | None = None
    max_concurrency: int = 8
    requests_per_second: float = 0.0  # 0: no limit
    max_retries: int = 4
    backoff: float = 0.2
    max_backoff: float = 5.0
    retry_after_cap: float = 60.0
    poll_limit: int = 10
    poll_interval: float = 0.5
    callback_url: str | None = None
    check_accounts: bool = False
    debit_party_type: str = "accountid"
    debit_party: str | None = None
    correlation_namespace: uuid.UUID = DEFAULT_NAMESPACE
    webhook_secret: str | None = attrs.field(default=None, repr=False)
    page_size: int = 1000
    in_flight_grace: float = 30.0  # a batch's 404 is authoritative only after this long
    #: the most of an answer's body that is read (after decoding); a larger answer is unreadable
    max_answer_bytes: int = 1 << 20
    #: a page of a batch listing may also hold this much per entry asked for (``page_size``)
    max_entry_bytes: int = 4096

    @classmethod
    def from_mapping(cls, name: str, settings: Mapping[str, Any]) -> GsmaSettings:
        """Check ``settings`` as read from ``sap-payments.toml``.

        Secrets may be given in the file (``api_key``, ``client_secret``, ``webhook_secret``) or,
        better, named by environment variable (``api_key_env``, ``client_secret_env``,
        ``webhook_secret_env``).

        Raises:
            ConfigError: an unknown key or a bad value (``key`` is ``providers.NAME.SETTING``).
        """

        def fail(key: str, message: str) -> ConfigError:
            return ConfigError(message, key=f"providers.{name}.{key}")

        unknown = sorted(set(settings) - _KEYS)
        if unknown:
            raise fail(unknown[0], "not a setting of the gsma-mobile-money plugin")
        values: dict[str, Any] = {}

        def text(key: str) -> str | None:
            value = settings.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not value.strip():
                raise fail(key, "must be a non-empty string")
            return value.strip()

        def secret(key: str) -> str | None:
            direct = text(key)
            variable = text(f"{key}_env")
            if direct is not None and variable is not None:
                raise fail(key, f"give {key} or {key}_env, not both")
            if variable is not None:
                found = os.environ.get(variable)
                if not found:
                    raise fail(f"{key}_env", f"the environment variable {variable} is not set")
                return found
            return direct

        def number(key: str, low: float, *, whole: bool = False) -> None:
            if key not in settings:
                return
            value = settings[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (whole and not isinstance(value, int))
            ):
                kind = "a whole number" if whole else "a number"
                raise fail(key, f"must be {kind}, not {type(value).__name__}")
            number = float(value)
            if number < low:
                raise fail(key, f"must be at least {low}, not {value}")
            values[key] = value if whole else number

        def flag(key: str) -> None:
            if key in settings:
                if not isinstance(settings[key], bool):
                    raise fail(key, "must be true or false")
                values[key] = settings[key]

        base_url = text("base_url")
        if base_url is None:
            raise fail("base_url", "required: the operator's API root, e.g. https://…/mm/v1.2")
        if not base_url.startswith(("http://", "https://")):
            raise fail("base_url", "must be an http:// or https:// URL")
        values["base_url"] = base_url.rstrip("/")
        for key in ("timeout", "connect_timeout", "backoff", "max_backoff", "retry_after_cap"):
            number(key, 0.001)
        number("poll_interval", 0)
        number("in_flight_grace", 0)
        number("requests_per_second", 0)
        for key in ("bulk_threshold", "max_batch", "max_concurrency", "page_size"):
            number(key, 1, whole=True)
        number("max_answer_bytes", 1024, whole=True)
        number("max_entry_bytes", 256, whole=True)
        for key in ("max_retries", "poll_limit"):
            number(key, 0, whole=True)
        flag("bulk")
        flag("check_accounts")
        for key in ("client_id", "token_url", "callback_url", "debit_party_type", "debit_party"):
            value = text(key)
            if value is not None:
                values[key] = value
        values["api_key"] = secret("api_key")
        values["client_secret"] = secret("client_secret")
        webhook = secret("webhook_secret")
        if webhook is not None and not webhook.startswith("whsec_"):
            raise fail("webhook_secret", "must be a Standard Webhooks secret (whsec_<base64>)")
        values["webhook_secret"] = webhook
        auth = text("auth")
        if auth is None:
            auth = (
                "oauth2"
                if values.get("token_url")
                else ("api_key" if values["api_key"] else "none")
            )
        if auth not in _AUTH_MODES:
            raise fail("auth", f"must be one of {', '.join(_AUTH_MODES)}")
        if auth == "api_key" and not values["api_key"]:
            raise fail("api_key", "required with auth = api_key")
        if auth == "oauth2":
            for key in ("token_url", "client_id", "client_secret"):
                if not values.get(key):
                    raise fail(key, "required with auth = oauth2")
        values["auth"] = auth
        journal = text("journal")
        if journal is not None:
            values["journal"] = Path(journal)
        if values.get("bulk"):
            if "journal" not in values:
                raise fail(
                    "journal",
                    "bulk mode needs a journal file: it records which batch carried each key, "
                    "so a status query after a crash can find it",
                )
            if not values.get("debit_party"):
                raise fail("debit_party", "bulk mode needs the agency's debit account")
        namespace = text("correlation_namespace")
        if namespace is not None:
            try:
                values["correlation_namespace"] = uuid.UUID(namespace)
            except ValueError:
                raise fail("correlation_namespace", "must be a UUID") from None
        return cls(**values)
