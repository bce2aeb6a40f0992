"""The ``gsma-mobile-money`` provider: e-wallet disbursements over the GSMA Mobile Money API 1.2.

Settings (``[providers.NAME]`` in ``sap-payments.toml``; every one in ``docs/mobile-money.md``)::

    plugin = "gsma-mobile-money"
    channel = "ewallet"
    base_url = "https://api.operator.example/mm/v1.2"
    api_key_env = "VIETTELPAY_API_KEY"        # or: token_url + client_id + client_secret_env
    bulk = true                               # the operator has /batchtransactions
    bulk_threshold = 20                       # smaller batches go as single disbursements
    journal = "/srv/sap-payments/gsma-viettelpay.journal"
    debit_party = "ACC-0001"                  # the agency's disbursement account

What leaves the agency for a payment: the MSISDN, the amount, the currency, the instruction key
(as ``requestingOrganisationTransactionReference``) and the reference text — never the payee's
name, which is only *compared* with the operator's ``/accountname`` in :meth:`validate`.

Bound to a ledger (capability ``ledger_identity``), the correlation ids are derived in a
namespace of that ledger's own (``uuid5(correlation_namespace, "ledger:<id>")``), so two ledgers
never share one, and each transaction carries the ledger's id as the metadata entry
``sapLedger``; a callback or report that echoes another ledger's id is refused with
:class:`~sap_payments.errors.ForeignLedger`. A status query still asks under the unbound
namespace before it answers NOT_FOUND, so payments sent before the ledger had an id are found.
"""

from __future__ import annotations

import functools
import json
import ssl
import threading
import time
import unicodedata
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

import httpx

from sap_payments.beneficiaries import Channel, FinancialAddress, WalletAddress
from sap_payments.errors import ForeignLedger, InvalidInput
from sap_payments.gsma._http import (
    GsmaError,
    GsmaRequestRejected,
    Http,
    error_fields,
)
from sap_payments.gsma._wire import (
    ACCOUNT_REASONS,
    ERROR_REASONS,
    amount_text,
    batch_correlation_id,
    correlation_id,
    parse_amount,
    rejection_reason,
)
from sap_payments.gsma.journal import Journal
from sap_payments.gsma.settings import GsmaSettings
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    ProviderError,
    ProviderTimeout,
    Reason,
    Result,
    ResultKind,
)

__all__ = ["GsmaProvider", "gsma_mobile_money"]

_PAID: Final = frozenset({"completed", "success", "successful", "paid"})
_FAILED: Final = frozenset({"failed", "rejected", "declined", "cancelled"})
_RETURNED: Final = frozenset({"reversed"})

_DISBURSE: Final = "/transactions/type/disbursement"
#: The metadata key of the ledger id a bound provider sends with every transaction.
LEDGER_METADATA: Final = "sapLedger"

_Results = dict[str, Result]


def _reason_of(code: str | None) -> Reason:
    return ERROR_REASONS.get(code or "", Reason.PROVIDER_ERROR)


def _fold(name: str) -> str:
    """A name reduced for comparison: NFC, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def _latin(name: str) -> str:
    """The same without diacritics (operators often hold names in plain Latin letters)."""
    decomposed = unicodedata.normalize("NFD", _fold(name).replace("đ", "d"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def names_match(given: str, held: str) -> bool:
    """Whether the payee's name and the operator's account name are the same person's name,
    ignoring case, spacing and (when either side lacks them) diacritics."""
    return _fold(given) == _fold(held) or _latin(given) == _latin(held)


class GsmaProvider:
    """A mobile-money operator's GSMA Mobile Money API (implements
    :class:`~sap_payments.providers.Provider`).

    Args:
        name: the provider instance's name.
        settings: the plugin settings (a mapping from the configuration, or checked ones).
        client: the ``httpx.Client`` to use (a test's, or one with custom TLS); by default one
            is built from the settings and closed with the provider.
        sleep: how to wait (between polls, retries, for the rate limit); tests pass a fake.

    Raises:
        ConfigError: bad settings.
    """

    def __init__(
        self,
        name: str,
        settings: GsmaSettings | Mapping[str, Any],
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.settings = (
            settings
            if isinstance(settings, GsmaSettings)
            else GsmaSettings.from_mapping(name, settings)
        )
        s = self.settings
        self.capabilities = Capabilities(
            channels=frozenset({Channel.EWALLET}),
            max_batch=s.max_batch if s.bulk else max(s.max_batch, 1),
            status_query=True,
            callbacks=s.callback_url is not None,
            address_validation=True,
            ledger_identity=True,
        )
        #: the ledger this provider works for (``bind_ledger``), and the namespace of the
        #: correlation ids it derives (the configured one until bound)
        self.ledger_id: str | None = None
        self.namespace: uuid.UUID = s.correlation_namespace
        self._own_client = client is None
        self.client = client or httpx.Client(
            verify=_tls_context(),
            timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout),
            limits=httpx.Limits(
                max_connections=s.max_concurrency + 4,
                max_keepalive_connections=s.max_concurrency + 4,
            ),
        )
        self.sleep = sleep
        self.http = Http(name, s, self.client, sleep=sleep)
        self.journal = Journal(s.journal)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._issued: OrderedDict[str, tuple[str, ...]] = OrderedDict()  # id → keys, bounded
        self._latencies: list[float] = []

    def __repr__(self) -> str:
        mode = "bulk" if self.settings.bulk else "single"
        return f"<GsmaProvider {self.name!r} ({mode})>"

    def bind_ledger(self, ledger_id: str) -> None:
        """Work for the ledger ``ledger_id``: correlation ids in its own namespace, its id sent
        as ``sapLedger`` metadata, and answers naming another ledger refused."""
        self.ledger_id = ledger_id
        self.namespace = uuid.uuid5(self.settings.correlation_namespace, f"ledger:{ledger_id}")

    def check_ledger(self, body: Any) -> None:
        """Refuse (``ForeignLedger``) a transaction body that echoes another ledger's id."""
        if self.ledger_id is None or not isinstance(body, dict):
            return
        theirs = _metadata(body, LEDGER_METADATA)
        if theirs is not None and theirs != self.ledger_id:
            raise ForeignLedger(theirs, self.ledger_id, what="answer")

    def __enter__(self) -> GsmaProvider:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        base = self.settings.base_url
        if path.startswith(("http://", "https://")):
            return path
        return base + path

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        correlation: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        started = time.perf_counter()
        try:
            return self.http.request(
                method, self._url(path), body=body, correlation=correlation, params=params
            )
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                if len(self._latencies) < 1_000_000:
                    self._latencies.append(elapsed)

    def latencies(self) -> list[float]:
        """Seconds taken by each request so far (retries included), for the benchmark."""
        with self._lock:
            return list(self._latencies)

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderTimeout(
                self.name, f"{what}: the answer is not JSON (HTTP {response.status_code})"
            ) from exc

    def _gather(
        self, function: Callable[[Any], Any], items: Sequence[Any]
    ) -> list[tuple[bool, Any]]:
        """``function`` over ``items`` on the worker threads: ``(True, value)`` or ``(False,
        ProviderError)`` for each item, in order (every item runs even when one fails)."""
        if len(items) <= 1 or self.settings.max_concurrency == 1:
            outcomes: list[tuple[bool, Any]] = []
            for item in items:
                try:
                    outcomes.append((True, function(item)))
                except ProviderError as exc:
                    outcomes.append((False, exc))
            return outcomes
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.settings.max_concurrency, thread_name_prefix=f"gsma-{self.name}"
                )
            pool = self._pool
        futures: list[Future[Any]] = [pool.submit(function, item) for item in items]
        gathered: list[tuple[bool, Any]] = []
        for future in futures:
            try:
                gathered.append((True, future.result()))
            except ProviderError as exc:
                gathered.append((False, exc))
        return gathered

    def _map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``function`` over ``items``; the first error (a timeout before anything else) is
        raised after every item ran."""
        gathered = self._gather(function, items)
        _raise_first([value for ok, value in gathered if not ok])
        return [value for _ok, value in gathered]

    def _map_patiently(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """Like :meth:`_map` for queries (safe to repeat): the items that failed are asked again,
        in up to ``max(4, max_retries + 2)`` rounds in all, so that one unlucky key does not
        leave a whole chunk unknown."""
        values: dict[int, Any] = {}
        waiting = list(range(len(items)))
        errors: list[BaseException] = []
        for round_ in range(max(4, self.settings.max_retries + 2)):
            if round_:
                self.sleep(self.http.backoff(round_))
            gathered = self._gather(function, [items[i] for i in waiting])
            errors = [value for ok, value in gathered if not ok]
            for index, (ok, value) in zip(waiting, gathered, strict=True):
                if ok:
                    values[index] = value
            waiting = [i for i in waiting if i not in values]
            if not waiting:
                break
        _raise_first(errors)
        return [values[i] for i in range(len(items))]

    def _remember(self, correlation: str, keys: Iterable[str]) -> None:
        with self._lock:
            self._issued[correlation] = tuple(keys)
            while len(self._issued) > 200_000:
                self._issued.popitem(last=False)

    def keys_of(self, correlation: str) -> list[str]:
        """The keys a request with ``correlation`` carried (from memory, else the journal)."""
        with self._lock:
            known = self._issued.get(correlation)
        if known is not None:
            return list(known)
        return self.journal.keys_of(correlation)

    def _error(self, response: httpx.Response, what: str) -> GsmaError:
        category, code, text = error_fields(response)
        return GsmaRequestRejected(
            self.name,
            f"{what} was refused",
            status=response.status_code,
            error_category=category,
            error_code=code,
            description=text,
        )

    # -- bodies ------------------------------------------------------------------------------
    def _check(self, payments: Sequence[Payment]) -> None:
        for index, payment in enumerate(payments):
            if not isinstance(payment.address, WalletAddress):
                raise ProviderError(
                    self.name,
                    f"payment {index} (key {payment.key}): not an e-wallet address",
                    provider_code="WRONG_CHANNEL",
                )
            if payment.amount.minor <= 0:
                raise ProviderError(
                    self.name,
                    f"payment {index} (key {payment.key}): the amount must be positive",
                    provider_code="INVALID_AMOUNT",
                )

    def _transaction(self, payment: Payment, *, in_batch: bool) -> dict[str, Any]:
        """The request body of one disbursement: MSISDN, amount, currency, key, reference."""
        body: dict[str, Any] = {
            "amount": amount_text(payment.amount),
            "currency": payment.amount.currency,
            "creditParty": [{"key": "msisdn", "value": _msisdn(payment)}],
            "requestingOrganisationTransactionReference": payment.key,
        }
        if payment.reference:
            body["descriptionText"] = payment.reference[:160]
        if self.settings.debit_party:
            body["debitParty"] = [
                {"key": self.settings.debit_party_type, "value": self.settings.debit_party}
            ]
        if in_batch:
            body["type"] = "disbursement"
        if self.ledger_id is not None:
            body["metadata"] = [{"key": LEDGER_METADATA, "value": self.ledger_id}]
        return body

    # -- reading answers ---------------------------------------------------------------------
    def _from_transaction(self, key: str | None, body: Any) -> Result:
        if not isinstance(body, dict) or not isinstance(body.get("transactionStatus"), str):
            raise ProviderTimeout(self.name, "a transaction answer without transactionStatus")
        key = body.get("requestingOrganisationTransactionReference") or key
        if not isinstance(key, str):
            raise ProviderError(self.name, "a transaction answer names no instruction key")
        status = body["transactionStatus"].lower()
        amount = None
        if isinstance(body.get("amount"), str) and isinstance(body.get("currency"), str):
            try:
                amount = parse_amount(body["amount"], body["currency"])
            except (ValueError, InvalidInput):
                amount = None
        reference = body.get("transactionReference")
        reference = reference if isinstance(reference, str) else None
        if status in _PAID:
            return Result(key, ResultKind.PAID, provider_reference=reference, amount=amount)
        if status in _FAILED or status in _RETURNED:
            code = _metadata(body, "errorCode")
            return Result(
                key,
                ResultKind.RETURNED if status in _RETURNED else ResultKind.FAILED,
                _reason_of(code) if code else Reason.OTHER,
                provider_reference=reference,
                provider_code=code or status,
                amount=amount,
            )
        return Result(key, ResultKind.PENDING, provider_reference=reference, amount=amount)

    def _failed_state(self, keys: Sequence[str], state: Mapping[str, Any]) -> _Results:
        found = state.get("error")
        error: Mapping[str, Any] = found if isinstance(found, dict) else {}
        code = error.get("errorCode") if isinstance(error.get("errorCode"), str) else None
        text = error.get("errordescription")
        return {
            key: Result(
                key,
                ResultKind.FAILED,
                _reason_of(code),
                provider_code=code,
                provider_message=text if isinstance(text, str) else None,
            )
            for key in keys
        }

    def _poll_state(self, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """Poll a pending request state within the poll limit (ours and the server's)."""
        limit = self.settings.poll_limit
        server = state.get("pollLimit")
        if isinstance(server, int | float) and not isinstance(server, bool):
            limit = min(limit, int(server))
        if state.get("notificationMethod") == "callback" and self.settings.callback_url:
            return state  # the callback will settle it
        polls = 0
        while state.get("status") == "pending" and polls < limit:
            self.sleep(self.settings.poll_interval)
            polls += 1
            response = self._call("GET", f"/requeststates/{state['serverCorrelationId']}")
            if response.status_code != 200:
                raise self._error(response, "a request-state query")
            state = self._json(response, "request state")
        return state

    def _settle_single(self, key: str, state: Mapping[str, Any], *, poll: bool) -> Result:
        if poll:
            state = self._poll_state(state)
        status = state.get("status")
        if status == "failed":
            return self._failed_state([key], state)[key]
        if status == "completed" and isinstance(state.get("objectReference"), str):
            return self._read_transaction(key, state["objectReference"])
        return Result(key, ResultKind.PENDING)

    def _read_transaction(self, key: str | None, reference: str) -> Result:
        path = f"/transactions/{urllib.parse.quote(reference, safe='')}"
        response = self._call("GET", path)
        if response.status_code != 200:
            raise self._error(response, "a transaction query")
        return self._from_transaction(key, self._json(response, "transaction"))

    # -- single disbursements ----------------------------------------------------------------
    def _single(self, payment: Payment) -> Result:
        cid = correlation_id(payment.key, self.namespace)
        response = self._call(
            "POST", _DISBURSE, body=self._transaction(payment, in_batch=False), correlation=cid
        )
        status = response.status_code
        if status == 201:
            return self._from_transaction(payment.key, self._json(response, "disbursement"))
        if status == 202:
            return self._settle_single(payment.key, self._json(response, "request"), poll=True)
        _category, code, text = error_fields(response)
        if code == "duplicateRequest":
            found = self._lookup_single(payment.key, cid)
            if found.kind is ResultKind.NOT_FOUND:  # said "duplicate", then "never heard of it"
                raise ProviderTimeout(self.name, f"key {payment.key}: duplicate, yet not found")
            return found
        if code is not None and code in ERROR_REASONS and status in (400, 404):
            return Result(
                payment.key,
                ResultKind.FAILED,
                ERROR_REASONS[code],
                provider_code=code,
                provider_message=text,
            )
        raise self._error(response, f"the disbursement of key {payment.key}")

    def _lookup_in(self, namespace: uuid.UUID, key: str) -> Result:
        """A single disbursement's result, by its correlation id in ``namespace``."""
        return self._lookup_single(key, correlation_id(key, namespace))

    def _lookup_single(self, key: str, cid: str) -> Result:
        response = self._call("GET", f"/responses/{cid}")
        if response.status_code == 404:
            return Result(key, ResultKind.NOT_FOUND)
        if response.status_code != 200:
            raise self._error(response, "a response query")
        link = self._json(response, "response").get("link")
        return self._follow(key, link)

    def _follow(self, key: str, link: object) -> Result:
        if not isinstance(link, str):
            raise ProviderTimeout(self.name, "a response without a link")
        path = urllib.parse.urlsplit(link).path
        base = urllib.parse.urlsplit(self.settings.base_url).path
        if base and path.startswith(base):
            path = path[len(base) :]
        if path.startswith("/transactions/"):
            return self._read_transaction(key, urllib.parse.unquote(path.rsplit("/", 1)[1]))
        if path.startswith("/requeststates/"):
            response = self._call("GET", path)
            if response.status_code != 200:
                raise self._error(response, "a request-state query")
            return self._settle_single(key, self._json(response, "request state"), poll=False)
        if path.startswith("/batchtransactions/"):
            batch_id = urllib.parse.unquote(path.split("/")[2])
            return self._batch_results(batch_id, [key], wait=False)[key]
        raise ProviderTimeout(self.name, "a response linking to an unknown resource")

    # -- batches -----------------------------------------------------------------------------
    def _batch(self, payments: Sequence[Payment]) -> _Results:
        keys = [p.key for p in payments]
        cid = batch_correlation_id(keys, self.namespace)
        self.journal.record(cid, keys, "batch")  # before the request leaves
        self._remember(cid, keys)
        body = {
            "batchTitle": f"sap-payments {cid}",
            "batchdescription": (payments[0].reference or "disbursement")[:256],
            "transactions": [self._transaction(p, in_batch=True) for p in payments],
        }
        response = self._call("POST", "/batchtransactions", body=body, correlation=cid)
        if response.status_code == 202:
            state = self._poll_state(self._json(response, "batch request"))
            return self._batch_state(keys, state)
        _category, code, _text = error_fields(response)
        if code == "duplicateRequest":
            found = self._lookup_batch(cid, keys)
            if found is None:
                raise ProviderTimeout(self.name, "a batch said duplicate, yet not found")
            return found
        raise self._error(response, f"a batch of {len(keys)}")

    def _batch_state(self, keys: Sequence[str], state: Mapping[str, Any]) -> _Results:
        status = state.get("status")
        if status == "failed":
            return self._failed_state(keys, state)
        if status == "completed" and isinstance(state.get("objectReference"), str):
            return self._batch_results(state["objectReference"], keys, wait=True)
        return {key: Result(key, ResultKind.PENDING) for key in keys}

    def _lookup_batch(self, cid: str, keys: Sequence[str]) -> _Results | None:
        """The results of the batch sent under ``cid``; None when the operator never got it."""
        response = self._call("GET", f"/responses/{cid}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, "a response query")
        link = self._json(response, "response").get("link")
        if not isinstance(link, str):
            raise ProviderTimeout(self.name, "a response without a link")
        path = urllib.parse.urlsplit(link).path
        base = urllib.parse.urlsplit(self.settings.base_url).path
        if base and path.startswith(base):
            path = path[len(base) :]
        if path.startswith("/batchtransactions/"):
            return self._batch_results(urllib.parse.unquote(path.split("/")[2]), keys, wait=False)
        if path.startswith("/requeststates/"):
            state_answer = self._call("GET", path)
            if state_answer.status_code != 200:
                raise self._error(state_answer, "a request-state query")
            return self._batch_state(keys, self._json(state_answer, "request state"))
        raise ProviderTimeout(self.name, "a response linking to an unknown resource")

    def _pages(self, path: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        offset = 0
        size = self.settings.page_size
        while True:
            response = self._call("GET", path, params={"limit": size, "offset": offset})
            if response.status_code != 200:
                raise self._error(response, "a batch listing")
            page = self._json(response, "batch listing")
            if not isinstance(page, list):
                raise ProviderTimeout(self.name, "a batch listing that is not a list")
            entries.extend(entry for entry in page if isinstance(entry, dict))
            offset += len(page)
            available = response.headers.get("X-Records-Available-Count")
            if not page or (available is not None and offset >= int(available)):
                return entries
            if available is None and len(page) < size:
                return entries

    def batch_results(self, batch_id: str) -> list[Result]:
        """Every settled transaction of a batch (its completions and rejections)."""
        return list(self._batch_results(batch_id, [], wait=False).values())

    def _batch_results(self, batch_id: str, keys: Sequence[str], *, wait: bool) -> _Results:
        quoted = urllib.parse.quote(batch_id, safe="")
        polls = 0
        while True:
            response = self._call("GET", f"/batchtransactions/{quoted}")
            if response.status_code != 200:
                raise self._error(response, "a batch query")
            batch = self._json(response, "batch")
            if not wait or batch.get("batchStatus") == "completed":
                break
            if polls >= self.settings.poll_limit:
                break
            polls += 1
            self.sleep(self.settings.poll_interval)
        results: _Results = {}
        counts = {
            kind: batch.get(f"{kind}Count") if isinstance(batch, dict) else None
            for kind in ("completed", "rejection")
        }
        listings = [
            (path, counts[kind])
            for path, kind in (("completions", "completed"), ("rejections", "rejection"))
        ]
        pages = {
            path: [] if count == 0 else self._pages(f"/batchtransactions/{quoted}/{path}")
            for path, count in listings  # a count of 0 said: nothing to list
        }
        for entry in pages["completions"]:
            key = entry.get("requestingOrganisationTransactionReference")
            if isinstance(key, str):
                reference = entry.get("transactionReference")
                results[key] = Result(
                    key,
                    ResultKind.PAID,
                    provider_reference=reference if isinstance(reference, str) else None,
                )
        for entry in pages["rejections"]:
            key = entry.get("requestingOrganisationTransactionReference")
            text = entry.get("rejectionReason")
            if isinstance(key, str) and key not in results:
                text = text if isinstance(text, str) else ""
                reference = entry.get("transactionReference")
                results[key] = Result(
                    key,
                    ResultKind.FAILED,
                    rejection_reason(text),
                    provider_reference=reference if isinstance(reference, str) else None,
                    provider_code=text.split(":", 1)[0][:64] or None,
                    provider_message=text or None,
                )
        for key in keys:  # in the batch, not settled yet (never not-found: it arrived)
            results.setdefault(key, Result(key, ResultKind.PENDING))
        return results

    # -- the protocol ------------------------------------------------------------------------
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        """Send payments, as one batch or as single disbursements; idempotent by key.

        A key that travelled before under another correlation id (in another batch, or alone)
        is first looked up and sent again only when the operator never received it.

        Raises:
            ProviderTimeout: no answer for some payments (they may have been applied).
            ProviderUnavailable: the operator could not be reached.
            GsmaRequestRejected: the operator refused the request as a whole.
        """
        if not payments:
            return []
        self._check(payments)
        results: _Results = {}
        unique = list({p.key: p for p in payments}.values())
        pending = unique
        if self.settings.check_accounts:
            pending = self._drop_dead(pending, results)
        pending = self._clear_to_send(pending, results)
        if pending:
            bulk = self.settings.bulk and len(pending) >= self.settings.bulk_threshold
            if bulk:
                results.update(self._batch(pending))
            else:
                namespace = self.namespace
                pairs = [(correlation_id(p.key, namespace), p.key) for p in pending]
                self.journal.record_many(pairs, "single")
                for pair in pairs:
                    self._remember(pair[0], [pair[1]])
                results.update((r.key, r) for r in self._map(self._single, pending))
        return [results[p.key] for p in payments]

    def _planned(self, payments: Sequence[Payment]) -> dict[str, str]:
        namespace = self.namespace
        if self.settings.bulk and len(payments) >= self.settings.bulk_threshold:
            cid = batch_correlation_id([p.key for p in payments], namespace)
            return {p.key: cid for p in payments}
        return {p.key: correlation_id(p.key, namespace) for p in payments}

    def _clear_to_send(self, payments: list[Payment], results: _Results) -> list[Payment]:
        """Drop keys sent before under another correlation id that the operator did receive."""
        prior = self.journal.correlations([p.key for p in payments])
        if not prior:
            return payments
        absent: set[str] = set()
        while payments:
            planned = self._planned(payments)
            doubtful = [
                p.key
                for p in payments
                if p.key not in absent
                and any(cid != planned[p.key] for cid, _, _ in prior.get(p.key, ()))
            ]
            if not doubtful:
                break
            for result in self.status(doubtful):
                if result.kind is ResultKind.NOT_FOUND:
                    absent.add(result.key)
                else:
                    results[result.key] = result
            payments = [p for p in payments if p.key not in results]
        return payments

    def _drop_dead(self, payments: list[Payment], results: _Results) -> list[Payment]:
        """``check_accounts``: fail payments to inactive or unregistered wallets unsent."""
        numbers = sorted({_msisdn(p) for p in payments})
        statuses = dict(
            zip(numbers, self._map_patiently(self.account_status, numbers), strict=True)
        )
        alive = []
        for payment in payments:
            reason = ACCOUNT_REASONS.get(statuses[_msisdn(payment)])
            if reason is None:
                alive.append(payment)
            else:
                results[payment.key] = Result(
                    payment.key,
                    ResultKind.FAILED,
                    reason,
                    provider_code=f"accountStatus:{statuses[_msisdn(payment)]}",
                    provider_message="not sent: the wallet cannot receive (checked first)",
                )
        return alive

    def status(self, keys: Sequence[str]) -> list[Result]:
        """The current result of each key; ``NOT_FOUND`` only when the operator answers 404 for
        every correlation id the key travelled under (``GET /responses/{id}``)."""
        if not keys:
            return []
        unique = list(dict.fromkeys(keys))
        prior = self.journal.correlations(unique)
        with self._lock:
            issued = dict(self._issued)
        batches: dict[str, list[str]] = {}
        for key in unique:
            for cid, kind, _ in prior.get(key, ()):
                if kind == "batch":
                    batches.setdefault(cid, [])
        for cid in batches:
            batches[cid] = list(issued.get(cid, ())) or self.journal.keys_of(cid)
        found: _Results = {}
        wanted = set(unique)
        batch_ids = list(batches)
        answers = self._map_patiently(lambda cid: self._lookup_batch(cid, batches[cid]), batch_ids)
        for answer in answers:
            if answer is not None:
                for key, result in answer.items():
                    if key in wanted:
                        found.setdefault(key, result)
        rest = [key for key in unique if key not in found]
        for namespace in dict.fromkeys((self.namespace, self.settings.correlation_namespace)):
            # bound to a ledger, a key not found under its namespace is asked again under the
            # unbound one: it may have been sent before the ledger had an id
            for result in self._map_patiently(functools.partial(self._lookup_in, namespace), rest):
                found[result.key] = result
            rest = [key for key in rest if found[key].kind is ResultKind.NOT_FOUND]
            if not rest:
                break
        self._not_in_flight(found, prior)
        return [found[key] for key in keys]

    def _not_in_flight(
        self, found: _Results, prior: Mapping[str, list[tuple[str, str, float]]]
    ) -> None:
        """A batch sent moments ago may still be on its way (a killed run's last request, a
        slow operator): its 404 is not yet authoritative, and a "not found" now would let the
        key go again in another batch, under another correlation id. Within ``in_flight_grace``
        of the last batch that carried it, a key's status is still unknown."""
        horizon = time.time() - self.settings.in_flight_grace
        for key, result in found.items():
            if result.kind is ResultKind.NOT_FOUND and any(
                kind == "batch" and at > horizon for _, kind, at in prior.get(key, ())
            ):
                raise ProviderTimeout(
                    self.name,
                    f"key {key} was sent in a batch less than {self.settings.in_flight_grace} s "
                    "ago and is not found yet; ask again later",
                )

    # -- accounts ----------------------------------------------------------------------------
    def account_status(self, msisdn: str) -> str:
        """The wallet's GSMA account status: ``available``, ``unavailable`` or
        ``unregistered`` (a 404 is unregistered)."""
        path = f"/accounts/msisdn/{urllib.parse.quote(msisdn, safe='+')}/status"
        response = self._call("GET", path)
        if response.status_code == 404:
            return "unregistered"
        if response.status_code != 200:
            raise self._error(response, "an account status query")
        status = self._json(response, "account status").get("accountStatus")
        if not isinstance(status, str):
            raise ProviderTimeout(self.name, "an account status answer without accountStatus")
        return status

    def account_name(self, msisdn: str) -> str | None:
        """The name the operator holds for the wallet (``fullName``, else the parts)."""
        path = f"/accounts/msisdn/{urllib.parse.quote(msisdn, safe='+')}/accountname"
        response = self._call("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, "an account name query")
        name = self._json(response, "account name").get("name")
        if not isinstance(name, dict):
            return None
        if isinstance(name.get("fullName"), str) and name["fullName"].strip():
            return str(name["fullName"])
        parts = [name.get(part) for part in ("firstName", "middleName", "lastName")]
        joined = " ".join(part for part in parts if isinstance(part, str) and part.strip())
        return joined or None

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        """Can this wallet be paid, and (when ``payee_name`` is given) is it the payee's?

        The status comes from ``/accounts/msisdn/{msisdn}/status``; the name check reads
        ``/accountname`` and compares it here — the payee's name is never sent.
        """
        if not isinstance(address, WalletAddress):
            return AddressCheck(ok=False, reason=Reason.UNKNOWN_ACCOUNT)
        status = self.account_status(address.msisdn)
        reason = ACCOUNT_REASONS.get(status)
        if reason is not None:
            return AddressCheck(ok=False, reason=reason)
        if status != "available":
            return AddressCheck(ok=False, reason=Reason.OTHER)
        if payee_name is None:
            return AddressCheck(ok=True)
        held = self.account_name(address.msisdn)
        if held is None:
            return AddressCheck(ok=True, name_matches=None)
        if names_match(payee_name, held):
            return AddressCheck(ok=True, name_matches=True)
        return AddressCheck(ok=False, reason=Reason.NAME_MISMATCH, name_matches=False)

    # -- reports and callbacks ---------------------------------------------------------------
    def parse_report(self, data: bytes) -> list[Result]:
        """Results from a callback body: a transaction representation (the key is its
        ``requestingOrganisationTransactionReference``) or a list of batch completions.

        Raises:
            ProviderError: ``provider_code="MALFORMED_REPORT"``: not such a body.
            ForeignLedger: an entry echoes another ledger's id (``sapLedger`` metadata).
        """

        def bad(message: str) -> ProviderError:
            return ProviderError(
                self.name, f"malformed report: {message}", provider_code="MALFORMED_REPORT"
            )

        try:
            document = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
            raise bad("not JSON text") from None
        entries = document if isinstance(document, list) else [document]
        results = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise bad(f"entry {index} is not an object")
            key = entry.get("requestingOrganisationTransactionReference")
            if not isinstance(key, str) or not key:
                raise bad(f"entry {index} names no requestingOrganisationTransactionReference")
            self.check_ledger(entry)
            if "transactionStatus" in entry:
                results.append(self._from_transaction(key, entry))
            elif "completionDate" in entry:
                reference = entry.get("transactionReference")
                results.append(
                    Result(
                        key,
                        ResultKind.PAID,
                        provider_reference=reference if isinstance(reference, str) else None,
                    )
                )
            elif isinstance(entry.get("rejectionReason"), str):
                results.append(
                    Result(
                        key,
                        ResultKind.FAILED,
                        rejection_reason(entry["rejectionReason"]),
                        provider_message=entry["rejectionReason"],
                    )
                )
            else:
                raise bad(f"entry {index} is not a transaction, completion or rejection")
        return results

    def close(self) -> None:
        """Stop the worker threads and close the client (when it was built here) and journal."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._own_client:
            self.client.close()
        self.journal.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The default TLS context (system CAs via httpx), built once: building one takes tens of
    milliseconds, and every provider instance would otherwise build its own."""
    return httpx.create_ssl_context()


def _raise_first(errors: Sequence[BaseException]) -> None:
    if not errors:
        return
    for error in errors:
        if isinstance(error, ProviderTimeout):
            raise error
    raise errors[0]


def _msisdn(payment: Payment) -> str:
    address = payment.address
    return address.msisdn if isinstance(address, WalletAddress) else ""


def _metadata(body: Mapping[str, Any], name: str) -> str | None:
    for entry in body.get("metadata") or ():
        if isinstance(entry, dict) and entry.get("key") == name:
            value = entry.get("value")
            return value if isinstance(value, str) else None
    return None


def gsma_mobile_money(name: str, settings: Mapping[str, Any]) -> GsmaProvider:
    """Entry point ``gsma-mobile-money``: an operator's GSMA Mobile Money API 1.2."""
    return GsmaProvider(name, settings)
