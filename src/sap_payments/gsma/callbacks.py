"""Callbacks from the operator: checked, then turned into results — framework-neutral.

The operator PUTs the final representation of a request to the ``X-Callback-URL`` the adapter
sent: a transaction (success), an ``errorObject`` (failure; the ``X-CorrelationID`` header names
the request) or a batch (completed: its completions and rejections are then read back).

:class:`CallbackHandler` takes the raw headers and body and answers a :class:`CallbackResponse`
— the HTTP status to send back and the results — so it mounts in any web framework in a few
lines (``docs/mobile-money.md`` shows Starlette, Flask and ``http.server``). Before anything is
read it checks:

* ``X-Content-Hash`` (GSMA): when present, the SHA-256 hex digest of the body must match;
* with a secret configured, a `Standard Webhooks <https://www.standardwebhooks.com>`_
  signature: ``webhook-id``, ``webhook-timestamp`` (within five minutes of now) and
  ``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the
  secret ``whsec_<base64>``; an id seen before is a replay and is refused (the memory of ids is
  bounded: older ones fall outside the five minutes anyway).

:func:`apply_callback` does the whole round: check, parse, apply through
:func:`sap_payments.dispatch.apply_results`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from sap_payments.errors import ForeignLedger, SapPaymentsError
from sap_payments.gsma._http import GsmaMismatchedAnswer
from sap_payments.gsma._wire import ERROR_REASONS
from sap_payments.providers import ProviderError, Reason, Result, ResultKind

if TYPE_CHECKING:
    from sap_payments.dispatch import ApplyResult
    from sap_payments.gsma.provider import GsmaProvider
    from sap_payments.store import Store

__all__ = [
    "CallbackHandler",
    "CallbackResponse",
    "InvalidSignature",
    "apply_callback",
    "sign_webhook",
    "verify_webhook",
]

#: How far a webhook's timestamp may be from now (Standard Webhooks recommends five minutes).
TOLERANCE: Final = 300


class InvalidSignature(SapPaymentsError):
    """A callback whose Standard Webhooks signature, timestamp or id cannot be accepted."""


def _secret_bytes(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignature("the webhook secret is not whsec_<base64>") from exc


def sign_webhook(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256>`` of
    ``"{id}.{timestamp}.{body}"``.

    >>> sign_webhook("whsec_c2VjcmV0", "msg_1", 1700000000, b"{}")[:3]
    'v1,'
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE,
) -> str:
    """Check a Standard Webhooks signature; the message id when it holds.

    ``headers`` are looked up in lower case.

    Raises:
        InvalidSignature: a header is missing, the timestamp is outside the tolerance, or no
            signature matches.
    """
    message_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not message_id or not stamp or not signatures:
        raise InvalidSignature("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not a whole number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature("webhook-timestamp is too far from now (replay or clock skew)")
    expected = sign_webhook(secret, message_id, timestamp, body).encode()
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return message_id
    raise InvalidSignature("no webhook-signature matches")


@attrs.frozen
class CallbackResponse:
    """What to answer the operator (``status``: 204 accepted, 400, 401, 404) and the results
    the callback carried. ``detail`` says why, without personal data."""

    status: int
    results: tuple[Result, ...] = ()
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.status < 300


def _lower(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {str(name).lower(): str(value) for name, value in pairs}


class CallbackHandler:
    """Check and read the operator's callbacks for one provider; thread-safe.

    Args:
        provider: the :class:`~sap_payments.gsma.provider.GsmaProvider` the callbacks answer.
        secret: the Standard Webhooks secret (default: the provider's ``webhook_secret``);
            without one only ``X-Content-Hash`` is checked.
        tolerance: seconds a webhook timestamp may be off.
        remember: how many webhook ids are kept to refuse replays.
        clock: the time now (tests pass a fake).
        resolve: correlation id → keys, for failure callbacks of requests this process did not
            send and the journal does not know (default: the provider's memory and journal).
    """

    def __init__(
        self,
        provider: GsmaProvider,
        *,
        secret: str | None = None,
        tolerance: int = TOLERANCE,
        remember: int = 100_000,
        clock: Callable[[], float] = time.time,
        resolve: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self.provider = provider
        self.secret = secret if secret is not None else provider.settings.webhook_secret
        if self.secret is not None:
            _secret_bytes(self.secret)  # refuse a malformed secret now, not per callback
        self.tolerance = tolerance
        self.remember = remember
        self.clock = clock
        self.resolve = resolve or provider.keys_of
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _replayed(self, message_id: str) -> bool:
        now = self.clock()
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if len(self._seen) < self.remember and now - at <= 2 * self.tolerance:
                    break
                del self._seen[oldest]
            if message_id in self._seen:
                return True
            self._seen[message_id] = now
            return False

    def __call__(
        self, headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes
    ) -> CallbackResponse:
        """Check one callback and read its results (nothing is applied here)."""
        lowered = _lower(headers)
        claimed = lowered.get("x-content-hash")
        if claimed is not None and not hmac.compare_digest(
            claimed.strip().lower(), hashlib.sha256(body).hexdigest()
        ):
            return CallbackResponse(400, detail="X-Content-Hash does not match the body")
        message_id = None
        if self.secret is not None:
            try:
                message_id = verify_webhook(
                    self.secret, lowered, body, now=self.clock(), tolerance=self.tolerance
                )
            except InvalidSignature as exc:
                return CallbackResponse(401, detail=str(exc))
        try:
            document = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return CallbackResponse(400, detail="the body is not JSON")
        try:
            results = self._results(document, lowered.get("x-correlationid"))
        except (ProviderError, ForeignLedger) as exc:  # ForeignLedger: another ledger's answer
            return CallbackResponse(400, detail=str(exc))
        if results is None:
            return CallbackResponse(404, detail="the callback names no request sent from here")
        if message_id is not None and self._replayed(message_id):
            return CallbackResponse(400, detail="replayed webhook-id: refused")
        return CallbackResponse(204, tuple(results), detail=f"{len(results)} results")

    def _results(self, document: Any, correlation: str | None) -> list[Result] | None:
        if isinstance(document, dict) and "transactionStatus" in document:
            self.provider.check_ledger(document)
            key = document.get("requestingOrganisationTransactionReference")
            sent = list(self.resolve(correlation)) if correlation else []
            if not isinstance(key, str) and len(sent) == 1:
                key = sent[0]
            if not isinstance(key, str):
                return None
            if sent and key not in sent:  # the request it answers carried other keys
                raise GsmaMismatchedAnswer(
                    self.provider.name,
                    "the callback",
                    f"names key {key[:40]!r}, not the key(s) of the request its "
                    "X-CorrelationID names: applied to none",
                    expected=sent[0],
                    answered=key,
                )
            return [self.provider._from_transaction(key, document, where="the callback")]
        if isinstance(document, dict) and "errorCategory" in document:
            keys = list(self.resolve(correlation)) if correlation else []
            if not keys:
                return None
            code = document.get("errorCode")
            code = code if isinstance(code, str) else None
            text = document.get("errordescription")
            return [
                Result(
                    key,
                    ResultKind.FAILED,
                    ERROR_REASONS.get(code or "", Reason.PROVIDER_ERROR),
                    provider_code=code,
                    provider_message=text if isinstance(text, str) else None,
                )
                for key in keys
            ]
        if isinstance(document, dict) and "batchId" in document:
            if document.get("batchStatus") != "completed":
                return []
            # the keys the batch carried, when the callback says which request it answers:
            # a listing entry naming any other key is about another instruction, ignored
            keys = list(self.resolve(correlation)) if correlation else []
            return self.provider.batch_results(str(document["batchId"])[:256], keys)
        raise ProviderError(
            self.provider.name, "not a transaction, error or batch callback", provider_code="BODY"
        )


def apply_callback(
    store: Store,
    handler: CallbackHandler,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
) -> tuple[CallbackResponse, ApplyResult | None]:
    """Check a callback, read it, and apply its results to the ledger (through the transition
    table, so late, repeated and out-of-order callbacks are ignored). Answer the operator with
    the returned response's ``status``."""
    from sap_payments.dispatch import apply_results

    response = handler(headers, body)
    if not response.accepted or not response.results:
        return response, None
    outcome = apply_results(store, response.results, provider=handler.provider.name)
    return response, outcome
