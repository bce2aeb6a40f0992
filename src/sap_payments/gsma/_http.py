"""The HTTP side of the adapter: authentication, retries, rate limit, error translation.

Every request goes through :meth:`Http.request`:

* headers: ``X-Date``, ``X-CorrelationID`` (when given), ``X-Content-Hash`` of a body, the
  callback URL on POSTs, and the credentials — ``X-API-Key`` (+ ``X-Client-Id``) for a
  pre-shared key, or ``Authorization: Bearer`` for an OAuth 2.0 client-credentials token,
  fetched on first use and fetched again when it expires or a request answers 401;
* 429 waits ``Retry-After`` (capped) and tries again; 5xx and transport errors are retried with
  exponential backoff and jitter when the request is safe to repeat — a GET, or a POST carrying
  its correlation id (the server deduplicates it);
* ``httpx`` exceptions are translated here, most specific first: a connection that was never made
  is :class:`~sap_payments.providers.ProviderUnavailable` (nothing sent), anything after the
  request may have arrived is :class:`~sap_payments.providers.ProviderTimeout` (outcome unknown).
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from sap_payments.gsma._wire import content_hash, x_date
from sap_payments.gsma.settings import GsmaSettings
from sap_payments.providers import ProviderError, ProviderTimeout, ProviderUnavailable

__all__ = [
    "GsmaAuthorisationError",
    "GsmaError",
    "GsmaRequestRejected",
    "Http",
]

_RETRY_STATUS: Final = frozenset({500, 502, 503, 504})


class GsmaError(ProviderError):
    """The operator answered with a GSMA ``errorObject``; ``error_category`` and ``error_code``
    are its words (also in ``provider_code`` as ``category/code``)."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int,
        error_category: str | None = None,
        error_code: str | None = None,
        description: str | None = None,
    ) -> None:
        code = f"{error_category}/{error_code}" if error_category or error_code else None
        super().__init__(
            provider,
            f"{message} (HTTP {status}{', ' + code if code else ''})",
            provider_code=code,
            provider_message=description,
        )
        self.status = status
        self.error_category = error_category
        self.error_code = error_code


class GsmaRequestRejected(GsmaError):
    """The request as a whole was refused (validation, business rule, our float or setup):
    nothing was applied, no payee is to blame."""


class GsmaAuthorisationError(GsmaRequestRejected):
    """Our credentials were refused (401, or an authorisation ``errorCategory``)."""


def error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """``(errorCategory, errorCode, errordescription)`` of an error answer, when it has them."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None
    values = (body.get("errorCategory"), body.get("errorCode"), body.get("errordescription"))
    category, code, text = (value if isinstance(value, str) else None for value in values)
    return category, code, text


_MSISDN_IN_PATH: Final = re.compile(r"(/accounts/[^/]+/)[^/?]+")


def _redacted(url: str) -> str:
    """The request's path without an account identifier (a phone number is personal data and
    never goes into an error message) and without the host."""
    path = urllib.parse.urlsplit(url).path
    return _MSISDN_IN_PATH.sub(r"\1…", path)


class _RateLimit:
    """At most ``rate`` requests a second, shared by every thread (a leaky bucket)."""

    def __init__(self, rate: float, sleep: Callable[[float], None]) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.sleep = sleep
        self.lock = threading.Lock()
        self.next = 0.0

    def acquire(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        if start > now:
            self.sleep(start - now)


class _Token:
    """An OAuth 2.0 client-credentials access token, fetched when missing or expired."""

    def __init__(self, settings: GsmaSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.value: str | None = None
        self.expires = 0.0
        self.fetched = 0

    def get(self, client: httpx.Client, provider: str, *, renew: bool = False) -> str:
        with self.lock:
            if renew or self.value is None or time.monotonic() >= self.expires:
                self.value, self.expires = self._fetch(client, provider)
                self.fetched += 1
            return self.value

    def _fetch(self, client: httpx.Client, provider: str) -> tuple[str, float]:
        settings = self.settings
        url = settings.token_url or ""
        if url.startswith("/"):
            url = settings.base_url + url
        try:
            response = client.post(
                url,
                data={"grant_type": "client_credentials"},
                auth=(settings.client_id or "", settings.client_secret or ""),
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                provider, f"the OAuth token endpoint cannot be reached: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise GsmaAuthorisationError(
                provider, "the OAuth token request was refused", status=response.status_code
            )
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise GsmaAuthorisationError(
                provider, "the OAuth token answer has no access_token", status=200
            ) from exc
        if not isinstance(token, str) or not token:
            raise GsmaAuthorisationError(provider, "the OAuth token is empty", status=200)
        return token, time.monotonic() + max(1.0, lifetime - 30.0)


class Http:
    """One operator's API on an ``httpx.Client``; thread-safe."""

    def __init__(
        self,
        provider: str,
        settings: GsmaSettings,
        client: httpx.Client,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.client = client
        self.sleep = sleep
        self.limit = _RateLimit(settings.requests_per_second, sleep)
        self.token = _Token(settings) if settings.auth == "oauth2" else None
        self.lock = threading.Lock()
        self.requests = 0  # counters, for tests and the benchmark
        self.retries = 0

    def _headers(self, correlation: str | None, body: bytes | None) -> dict[str, str]:
        headers = {"X-Date": x_date(), "Accept": "application/json"}
        if correlation is not None:
            headers["X-CorrelationID"] = correlation
        if body is not None:
            headers["Content-Type"] = "application/json"
            headers["X-Content-Hash"] = content_hash(body)
            if self.settings.callback_url:
                headers["X-Callback-URL"] = self.settings.callback_url
        if self.settings.auth == "api_key":
            headers["X-API-Key"] = self.settings.api_key or ""
            if self.settings.client_id:
                headers["X-Client-Id"] = self.settings.client_id
        elif self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.get(self.client, self.provider)}"
        return headers

    def backoff(self, attempt: int) -> float:
        base = min(self.settings.max_backoff, self.settings.backoff * 2.0**attempt)
        return float(base) * (0.5 + random.random() / 2)  # noqa: S311  # jitter, not cryptography

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        value = response.headers.get("Retry-After")
        wait: float | None = None
        if value:
            try:
                wait = float(value)
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(value) if value else None
                if parsed is not None:
                    wait = parsed.timestamp() - time.time()
        if wait is None:
            wait = self.backoff(attempt)
        return float(max(0.0, min(wait, self.settings.retry_after_cap)))

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        correlation: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request, retrying where safe; the final answer (any status below 500, or a
        5xx after the last retry is turned into an exception).

        Raises:
            ProviderUnavailable: the operator could not be reached (nothing was sent).
            ProviderTimeout: no usable answer; the request may have been applied.
            GsmaAuthorisationError: credentials refused (after one token renewal).
        """
        content = (
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            if body is not None
            else None
        )
        where = _redacted(path)  # what error messages may say of the request
        # Our POSTs always carry their correlation id: the server recognises a repeat.
        safe = method == "GET" or correlation is not None
        attempts = self.settings.max_retries + 1
        reached = False
        renewed = False
        attempt = 0
        last = "no answer"
        while attempt < attempts:
            self.limit.acquire()
            with self.lock:
                self.requests += 1
            try:
                response = self.client.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=self._headers(correlation, content),
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = type(exc).__name__  # never reached the server: always safe to retry
            except httpx.TransportError as exc:
                reached = True
                last = type(exc).__name__
                if not safe:
                    raise ProviderTimeout(self.provider, f"{method} {where}: {last}") from exc
            else:
                status = response.status_code
                if status == 401 and self.token is not None and not renewed:
                    renewed = True
                    self.token.get(self.client, self.provider, renew=True)
                    continue  # a renewed token is not a retry
                if status == 401 or (
                    status == 403 and error_fields(response)[0] == "authorisation"
                ):
                    category, code, text = error_fields(response)
                    raise GsmaAuthorisationError(
                        self.provider,
                        f"{method} {where}: credentials refused",
                        status=status,
                        error_category=category,
                        error_code=code,
                        description=text,
                    )
                if status == 429 or (
                    status == 400 and error_fields(response)[1] == "rateLimitError"
                ):
                    last = "rate limited (429)"
                    attempt += 1
                    if attempt < attempts:
                        self._count_retry()
                        self.sleep(self._retry_after(response, attempt))
                    continue
                if status in _RETRY_STATUS:
                    reached = True
                    last = f"HTTP {status}"
                    if not safe:
                        raise ProviderTimeout(self.provider, f"{method} {where}: {last}")
                else:
                    return response
            attempt += 1
            if attempt < attempts:
                self._count_retry()
                self.sleep(self.backoff(attempt))
        message = f"{method} {where}: {last} after {attempts} attempts"
        if reached:
            raise ProviderTimeout(self.provider, message)
        raise ProviderUnavailable(self.provider, message)

    def _count_retry(self) -> None:
        with self.lock:
            self.retries += 1
