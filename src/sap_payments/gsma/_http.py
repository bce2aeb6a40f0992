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
  request may have arrived is :class:`~sap_payments.providers.ProviderTimeout` (outcome unknown);
* every answer's body is read as a stream and no further than a cap (``max_answer_bytes``, more
  for a page of a batch listing): a larger one is :class:`GsmaMalformedAnswer` — unreadable, the
  outcome unknown — and is never held whole in memory.
"""

from __future__ import annotations

import email.utils
import json
import logging
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
    "GsmaMalformedAnswer",
    "GsmaMismatchedAnswer",
    "GsmaRequestRejected",
    "Http",
    "body_problem",
    "json_kind",
    "malformed",
]

log = logging.getLogger(__name__)

_RETRY_STATUS: Final = frozenset({500, 502, 503, 504})
#: Headers that describe the body as it travelled; the answer kept after a capped read holds
#: the decoded body, so they no longer apply to it.
_TRANSFER_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})


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


class GsmaMalformedAnswer(ProviderTimeout):
    """The operator answered, but with nothing we can use: not JSON, not the JSON shape the API
    defines, larger than the cap (``max_answer_bytes``), or an HTTP status the request does not
    expect. Like a timeout, the outcome of the request is unknown — nothing is applied from the
    answer, and a status query settles it later.

    ``where`` is the request (``GET /transactions/…``: identifiers masked), ``problem`` what was
    wrong with the answer, ``status`` its HTTP status (None when there was no answer to speak
    of)."""

    def __init__(
        self, provider: str, where: str, problem: str, *, status: int | None = None
    ) -> None:
        super().__init__(provider, f"the operator's answer to {where} {problem}")
        self.where = where
        self.problem = problem
        self.status = status


class GsmaMismatchedAnswer(GsmaMalformedAnswer):
    """An answer about another instruction than the one asked about (another key, or another
    amount). It is never applied — neither to the instruction asked about nor to the one it
    names — and the instruction asked about stays unknown.

    ``expected`` is the key asked about, ``answered`` what the answer named instead."""

    def __init__(
        self,
        provider: str,
        where: str,
        problem: str,
        *,
        expected: str,
        answered: str,
        status: int | None = None,
    ) -> None:
        super().__init__(provider, where, problem, status=status)
        self.expected = expected
        self.answered = answered


def malformed(
    provider: str, where: str, problem: str, *, status: int | None = None
) -> GsmaMalformedAnswer:
    """A :class:`GsmaMalformedAnswer`, logged (a warning, one line) as it is made: a reconcile
    that carries on past it still leaves a trace of what the operator sent."""
    error = GsmaMalformedAnswer(provider, where, problem, status=status)
    log.warning("%s", error)
    return error


def json_kind(value: object) -> str:
    """What JSON value ``value`` is, in words: ``a list``, ``a string``, ``null``, …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _content_type(response: httpx.Response) -> str:
    kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
    return re.sub(r"[^A-Za-z0-9/+.\-]", "", kind)[:40] or "no content type"


def body_problem(response: httpx.Response) -> str | None:
    """What is wrong with an answer's body for a JSON API, in a few words — ``the body is not
    JSON (text/html, 1,234 bytes)``, ``the body is empty``, ``the body is a list, not a JSON
    object`` — or None when it is a JSON object."""
    size = len(response.content)
    if not size:
        return "the body is empty"
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return f"the body is not JSON ({_content_type(response)}, {size:,} bytes)"
    if not isinstance(body, dict):
        return f"the body is {json_kind(body)}, not a JSON object"
    return None


def error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """``(errorCategory, errorCode, errordescription)`` of an error answer, when it has them."""
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):  # not JSON, not text, or nested beyond reason
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None
    values = (body.get("errorCategory"), body.get("errorCode"), body.get("errordescription"))
    category, code, text = (value if isinstance(value, str) else None for value in values)
    return category, code, text


_MSISDN_IN_PATH: Final = re.compile(r"(/accounts/[^/]+/)[^/?]+")
#: The identifiers in the other paths: a transaction reference, a request's server or client
#: correlation id, a batch id (``/transactions/type/…`` names an operation, not a resource).
_IDS_IN_PATH: Final = re.compile(
    r"(/(?:transactions|requeststates|responses|batchtransactions)/)(?!type/)[^/?]+"
)


def _redacted(url: str, base: str = "") -> str:
    """The request's path without an account identifier (a phone number is personal data and
    never goes into an error message), without the other identifiers (an error message names
    the operation; the ids are in the journal), without the host and the API root ``base``."""
    path = urllib.parse.urlsplit(url).path
    if base and path.startswith(base + "/"):
        path = path[len(base) :]
    return _IDS_IN_PATH.sub(r"\1…", _MSISDN_IN_PATH.sub(r"\1…", path))


def _read_capped(response: httpx.Response, limit: int, provider: str, where: str) -> httpx.Response:
    """The answer with its body read — as a stream, and no further than ``limit`` bytes (after
    decoding: a compressed body counts as it unpacks). The caller closes ``response``.

    Raises:
        GsmaMalformedAnswer: the body is larger than ``limit``, or its encoding is broken.
        httpx.TransportError: the connection broke while reading (the caller translates it).
    """

    def too_large() -> GsmaMalformedAnswer:
        return malformed(
            provider,
            where,
            f"is larger than {limit:,} bytes (HTTP {response.status_code}): not read",
            status=response.status_code,
        )

    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large()
            chunks.append(chunk)
    except httpx.DecodingError as exc:
        raise malformed(
            provider,
            where,
            f"cannot be decoded ({type(exc).__name__}, HTTP {response.status_code})",
            status=response.status_code,
        ) from exc
    headers = [  # as they came: bytes (a header need not be ASCII)
        (name, value)
        for name, value in response.headers.raw
        if name.decode("latin-1").lower() not in _TRANSFER_HEADERS
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=b"".join(chunks), request=response.request
    )


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
        request = client.build_request("POST", url, data={"grant_type": "client_credentials"})
        try:
            streamed = client.send(
                request,
                auth=(settings.client_id or "", settings.client_secret or ""),
                stream=True,
            )
            try:
                response = _read_capped(
                    streamed, settings.max_answer_bytes, provider, "the OAuth token request"
                )
            finally:
                streamed.close()
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                provider, f"the OAuth token endpoint cannot be reached: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise GsmaAuthorisationError(
                provider, "the OAuth token request was refused", status=response.status_code
            )
        try:
            body = json.loads(response.content)
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 300))
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            RecursionError,
        ) as exc:
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
                wait = None
        if value and wait is None:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError, OverflowError):  # neither seconds nor a date
                parsed = None
            if parsed is not None:
                wait = parsed.timestamp() - time.time()
        if wait is None or wait != wait:  # absent, unreadable, or NaN
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
        limit: int | None = None,
    ) -> httpx.Response:
        """Send one request, retrying where safe; the final answer (any status below 500, or a
        5xx after the last retry is turned into an exception), its body read — at most
        ``limit`` bytes of it (``max_answer_bytes`` by default).

        Raises:
            ProviderUnavailable: the operator could not be reached (nothing was sent).
            ProviderTimeout: no usable answer; the request may have been applied.
            GsmaMalformedAnswer: an answer larger than ``limit`` (or whose encoding is broken):
                unreadable, the request may have been applied.
            GsmaAuthorisationError: credentials refused (after one token renewal).
        """
        content = (
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            if body is not None
            else None
        )
        where = self.path_of(path)  # what error messages may say of the request
        cap = self.settings.max_answer_bytes if limit is None else limit
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
                request = self.client.build_request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=self._headers(correlation, content),
                )
                streamed = self.client.send(request, stream=True)
                try:
                    response = _read_capped(streamed, cap, self.provider, f"{method} {where}")
                finally:
                    streamed.close()
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

    def path_of(self, url: str) -> str:
        """What a message may say of a request's URL: its path below the API root, identifiers
        masked (``/transactions/…``)."""
        return _redacted(url, urllib.parse.urlsplit(self.settings.base_url).path.rstrip("/"))

    def describe(self, response: httpx.Response) -> str:
        """``GET /transactions/…``: the request an answer answers, as a message may name it."""
        request = response.request
        return f"{request.method} {self.path_of(str(request.url))}"

    def _count_retry(self) -> None:
        with self.lock:
            self.retries += 1
