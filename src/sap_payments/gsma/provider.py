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
import hashlib
import json
import math
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
    GsmaMalformedAnswer,
    GsmaMismatchedAnswer,
    GsmaRequestRejected,
    Http,
    body_problem,
    error_fields,
    json_kind,
    log,
    malformed,
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
#: The field of a transaction, completion or rejection that names the instruction key.
_KEY: Final = "requestingOrganisationTransactionReference"
#: The metadata key of the ledger id a bound provider sends with every transaction.
LEDGER_METADATA: Final = "sapLedger"

_Results = dict[str, Result]


def _short(text: object) -> str:
    """An operator's value quoted in a message: repr, cut to 40 characters."""
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:39] + "…"


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
        limit: int | None = None,
    ) -> httpx.Response:
        started = time.perf_counter()
        try:
            return self.http.request(
                method,
                self._url(path),
                body=body,
                correlation=correlation,
                params=params,
                limit=limit,
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

    def _json(self, response: httpx.Response) -> Any:
        """The answer's JSON value.

        Raises:
            GsmaMalformedAnswer: the body is not JSON (or nests beyond reason).
        """
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError
            problem = body_problem(response) or "the body is not JSON"
            raise self._malformed(
                response, f"is HTTP {response.status_code} but {problem}"
            ) from exc

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        """The answer's JSON object — every GSMA answer but a listing is one.

        Raises:
            GsmaMalformedAnswer: the body is not JSON, or another JSON value (a list, a string,
                a number, null).
        """
        body = self._json(response)
        if not isinstance(body, dict):
            raise self._malformed(response, f"is not a JSON object ({json_kind(body)})")
        return body

    def _malformed(self, response: httpx.Response, problem: str) -> GsmaMalformedAnswer:
        return malformed(
            self.name, self.http.describe(response), problem, status=response.status_code
        )

    def _mismatch(
        self, where: str, problem: str, expected: str, answered: str
    ) -> GsmaMismatchedAnswer:
        error = GsmaMismatchedAnswer(
            self.name, where, problem, expected=expected, answered=answered
        )
        log.warning("%s", error)
        return error

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

    def _error(
        self, response: httpx.Response, what: str, expected: str = "200"
    ) -> GsmaError | GsmaMalformedAnswer:
        """The error for an answer with a status the request does not expect (``expected``).

        A 4xx is a refusal (:class:`GsmaRequestRejected`, the ``errorObject``'s words kept, or
        what was wrong with the body when it is not one). Any other status — a 200 where 201 was
        due, a redirect, an HTML page from a proxy — is no refusal: the request may have been
        applied, so it is :class:`GsmaMalformedAnswer` (outcome unknown), saying what was wrong.
        """
        status = response.status_code
        problem = body_problem(response)
        if not 400 <= status < 500:
            described = f"but {problem}" if problem else f"where {expected} was expected"
            return self._malformed(response, f"is HTTP {status} {described}")
        category, code, text = error_fields(response)
        if problem is None and category is None and code is None:
            problem = "the body is not a GSMA errorObject"
        return GsmaRequestRejected(
            self.name,
            f"{what} was refused" + (f": {problem}" if problem else ""),
            status=status,
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
    def _from_transaction(
        self, key: str | None, body: Any, *, where: str = "a transaction query"
    ) -> Result:
        """The result a transaction representation says, for ``key`` (the key asked about).

        An answer that names another key is about another instruction: it is applied to
        neither (:class:`GsmaMismatchedAnswer`). An amount or currency that is there but cannot
        be read makes the answer unusable: a PAID result always carries the amount the operator
        confirmed, or none when it echoed none.

        Raises:
            GsmaMalformedAnswer: no ``transactionStatus``, or an unreadable key or amount.
            GsmaMismatchedAnswer: the answer names another key than ``key``.
        """
        if not isinstance(body, dict):
            raise malformed(self.name, where, f"is not a JSON object ({json_kind(body)})")
        if not isinstance(body.get("transactionStatus"), str):
            raise malformed(self.name, where, "is a transaction without a transactionStatus")
        echoed = body.get(_KEY)
        if isinstance(echoed, str) and echoed:
            if key is not None and echoed != key:
                raise self._mismatch(
                    where,
                    f"is about key {_short(echoed)}, not {key!r}: applied to neither",
                    key,
                    echoed,
                )
            key = echoed
        elif echoed not in (None, ""):
            raise malformed(self.name, where, f"names its key with {json_kind(echoed)}")
        if key is None:
            raise ProviderError(self.name, "a transaction answer names no instruction key")
        status = body["transactionStatus"].lower()
        amount = None
        given, currency = body.get("amount"), body.get("currency")
        if given is not None or currency is not None:
            try:
                if not isinstance(given, str) or not isinstance(currency, str):
                    raise ValueError("not two strings")  # one way out, below
                amount = parse_amount(given, currency)
            except (ValueError, InvalidInput):
                raise malformed(
                    self.name, where, "has an amount or currency that cannot be read"
                ) from None
        try:
            address = _credited(body)
        except ValueError:
            raise malformed(self.name, where, "names more than one credited wallet") from None
        reference = body.get("transactionReference")
        reference = reference if isinstance(reference, str) else None
        if status in _PAID:
            return Result(
                key, ResultKind.PAID, provider_reference=reference, amount=amount, address=address
            )
        if status in _FAILED or status in _RETURNED:
            code = _metadata(body, "errorCode")
            return Result(
                key,
                ResultKind.RETURNED if status in _RETURNED else ResultKind.FAILED,
                _reason_of(code) if code else Reason.OTHER,
                provider_reference=reference,
                provider_code=code or status,
                amount=amount,
                address=address,
            )
        return Result(
            key, ResultKind.PENDING, provider_reference=reference, amount=amount, address=address
        )

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

    def _poll_state(self, state: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        """Poll a pending request state within the poll limit (ours and the server's)."""
        limit = self.settings.poll_limit
        server = state.get("pollLimit")
        if (
            isinstance(server, int | float)
            and not isinstance(server, bool)
            and math.isfinite(server)
        ):
            limit = min(limit, int(server))
        if state.get("notificationMethod") == "callback" and self.settings.callback_url:
            return state  # the callback will settle it
        polls = 0
        while state.get("status") == "pending" and polls < limit:
            server_id = state.get("serverCorrelationId")
            if not isinstance(server_id, str) or not server_id:
                raise malformed(
                    self.name, where, "is a pending request state without a serverCorrelationId"
                )
            self.sleep(self.settings.poll_interval)
            polls += 1
            response = self._call("GET", f"/requeststates/{urllib.parse.quote(server_id, safe='')}")
            if response.status_code != 200:
                raise self._error(response, "a request-state query")
            state = self._object(response)
            where = self.http.describe(response)
        return state

    def _settle_single(
        self, key: str, state: Mapping[str, Any], *, poll: bool, where: str
    ) -> Result:
        if poll:
            state = self._poll_state(state, where)
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
        return self._from_transaction(
            key, self._object(response), where=self.http.describe(response)
        )

    def _not_found(self, response: httpx.Response) -> bool:
        """Whether the answer is the operator's own 404: a GSMA ``errorObject``. A 404 page
        of something else on the way (a proxy, a wrong ``base_url``) proves nothing, and
        "never received" would send a payment again."""
        return response.status_code == 404 and any(error_fields(response)[:2])

    def _path_in_api(self, link: str, where: str) -> str:
        """The path of a ``link`` below the API root (its host, if any, is never followed)."""
        try:
            path = urllib.parse.urlsplit(link).path
        except ValueError:  # "http://[": not a URL
            raise malformed(self.name, where, "is a response whose link is no URL") from None
        base = urllib.parse.urlsplit(self.settings.base_url).path
        if base and path.startswith(base):
            path = path[len(base) :]
        return path

    # -- single disbursements ----------------------------------------------------------------
    def _single(self, payment: Payment) -> Result:
        cid = correlation_id(payment.key, self.namespace)
        response = self._call(
            "POST", _DISBURSE, body=self._transaction(payment, in_batch=False), correlation=cid
        )
        status = response.status_code
        where = self.http.describe(response)
        if status == 201:
            return self._from_transaction(payment.key, self._object(response), where=where)
        if status == 202:
            state = self._object(response)
            return self._settle_single(payment.key, state, poll=True, where=where)
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
        raise self._error(response, f"the disbursement of key {payment.key}", "201 or 202")

    def _lookup_in(self, namespace: uuid.UUID, key: str) -> Result:
        """A single disbursement's result, by its correlation id in ``namespace``."""
        return self._lookup_single(key, correlation_id(key, namespace))

    def _lookup_single(self, key: str, cid: str) -> Result:
        response = self._call("GET", f"/responses/{cid}")
        if self._not_found(response):
            return Result(key, ResultKind.NOT_FOUND)
        if response.status_code != 200:
            raise self._error(response, "a response query")
        link = self._object(response).get("link")
        return self._follow(key, link, self.http.describe(response))

    def _follow(self, key: str, link: object, where: str) -> Result:
        if not isinstance(link, str):
            raise malformed(self.name, where, "is a response without a link")
        path = self._path_in_api(link, where)
        if path.startswith("/transactions/"):
            return self._read_transaction(key, urllib.parse.unquote(path.rsplit("/", 1)[1]))
        if path.startswith("/requeststates/"):
            response = self._call("GET", _state_path(path))
            if response.status_code != 200:
                raise self._error(response, "a request-state query")
            return self._settle_single(
                key, self._object(response), poll=False, where=self.http.describe(response)
            )
        if path.startswith("/batchtransactions/"):
            batch_id = urllib.parse.unquote(path.split("/")[2])
            return self._batch_results(batch_id, [key], wait=False)[key]
        raise malformed(self.name, where, "is a response linking to an unknown resource")

    # -- batches -----------------------------------------------------------------------------
    def _batch(self, payments: Sequence[Payment]) -> _Results:
        keys = [p.key for p in payments]
        cid = batch_correlation_id(keys, self.namespace)
        digests = {p.key: _digest(p) for p in payments}
        self.journal.record(cid, keys, "batch", digests)  # before the request leaves
        self._remember(cid, keys)
        body = {
            "batchTitle": f"sap-payments {cid}",
            "batchdescription": (payments[0].reference or "disbursement")[:256],
            "transactions": [self._transaction(p, in_batch=True) for p in payments],
        }
        response = self._call("POST", "/batchtransactions", body=body, correlation=cid)
        if response.status_code == 202:
            where = self.http.describe(response)
            state = self._poll_state(self._object(response), where)
            return self._batch_state(keys, state)
        _category, code, _text = error_fields(response)
        if code == "duplicateRequest":
            found = self._lookup_batch(cid, keys)
            if found is None:
                raise ProviderTimeout(self.name, "a batch said duplicate, yet not found")
            return found
        raise self._error(response, f"a batch of {len(keys)}", "202")

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
        if self._not_found(response):
            return None
        if response.status_code != 200:
            raise self._error(response, "a response query")
        where = self.http.describe(response)
        link = self._object(response).get("link")
        if not isinstance(link, str):
            raise malformed(self.name, where, "is a response without a link")
        path = self._path_in_api(link, where)
        if path.startswith("/batchtransactions/"):
            return self._batch_results(urllib.parse.unquote(path.split("/")[2]), keys, wait=False)
        if path.startswith("/requeststates/"):
            state_answer = self._call("GET", _state_path(path))
            if state_answer.status_code != 200:
                raise self._error(state_answer, "a request-state query")
            return self._batch_state(keys, self._object(state_answer))
        raise malformed(self.name, where, "is a response linking to an unknown resource")

    def _pages(self, path: str, most: int) -> list[dict[str, Any]]:
        """The entries of a batch listing, page by page; no more than ``most`` (the keys of
        the batch: an operator that ignores ``offset``, or lists more than it could hold,
        cannot keep us reading)."""
        entries: list[dict[str, Any]] = []
        offset = 0
        size = self.settings.page_size
        cap = self.settings.max_answer_bytes + self.settings.max_entry_bytes * size
        while True:
            response = self._call("GET", path, params={"limit": size, "offset": offset}, limit=cap)
            if response.status_code != 200:
                raise self._error(response, "a batch listing")
            page = self._json(response)
            if not isinstance(page, list):
                raise self._malformed(response, f"is not a JSON list ({json_kind(page)})")
            entries.extend(entry for entry in page if isinstance(entry, dict))
            offset += len(page)
            header = response.headers.get("X-Records-Available-Count", "")
            available = int(header) if header.isascii() and header.isdigit() else None
            if not page or offset >= most or (available is not None and offset >= available):
                return entries
            if available is None and len(page) < size:
                return entries

    def batch_results(self, batch_id: str, keys: Sequence[str] = ()) -> list[Result]:
        """Every settled transaction of a batch (its completions and rejections); with
        ``keys`` (the keys the batch carried), only theirs — an entry naming any other key is
        ignored and logged."""
        return list(self._batch_results(batch_id, keys, wait=False).values())

    def _batch_results(self, batch_id: str, keys: Sequence[str], *, wait: bool) -> _Results:
        """The results of a batch's keys: completions PAID, rejections FAILED, the others
        PENDING. An entry naming a key not in ``keys`` (when given) is about another
        instruction and is ignored; a key both completed and rejected stays PENDING."""
        quoted = urllib.parse.quote(batch_id, safe="")
        polls = 0
        while True:
            response = self._call("GET", f"/batchtransactions/{quoted}")
            if response.status_code != 200:
                raise self._error(response, "a batch query")
            batch = self._object(response)
            if not wait or batch.get("batchStatus") == "completed":
                break
            if polls >= self.settings.poll_limit:
                break
            polls += 1
            self.sleep(self.settings.poll_interval)
        counts = {kind: batch.get(f"{kind}Count") for kind in ("completed", "rejection")}
        most = len(keys) if keys else self.settings.max_batch
        listings = [
            (path, counts[kind])
            for path, kind in (("completions", "completed"), ("rejections", "rejection"))
        ]
        pages = {
            path: [] if count == 0 else self._pages(f"/batchtransactions/{quoted}/{path}", most)
            for path, count in listings  # a count of 0 said: nothing to list
        }
        wanted = frozenset(keys)
        foreign: set[str] = set()
        unusable: set[str] = set()  # listed with two credited wallets

        def key_of(entry: Mapping[str, Any]) -> str | None:
            key = entry.get(_KEY)
            if not isinstance(key, str) or not key:
                return None
            if wanted and key not in wanted:
                foreign.add(key)
                return None
            return key

        completed: _Results = {}
        for entry in pages["completions"]:
            key = key_of(entry)
            if key is None:
                continue
            try:
                address = _credited(entry)
            except ValueError:  # two wallets for one key: no confirmation, the key stays open
                unusable.add(key)
                continue
            reference = entry.get("transactionReference")
            completed.setdefault(
                key,
                Result(
                    key,
                    ResultKind.PAID,
                    provider_reference=reference if isinstance(reference, str) else None,
                    address=address,
                ),
            )
        rejected: _Results = {}
        for entry in pages["rejections"]:
            key = key_of(entry)
            if key is not None:
                text = entry.get("rejectionReason")
                text = text if isinstance(text, str) else ""
                reference = entry.get("transactionReference")
                rejected.setdefault(
                    key,
                    Result(
                        key,
                        ResultKind.FAILED,
                        rejection_reason(text),
                        provider_reference=reference if isinstance(reference, str) else None,
                        provider_code=text.split(":", 1)[0][:64] or None,
                        provider_message=text[:256] or None,
                    ),
                )
        both = (completed.keys() & rejected.keys()) | unusable
        results = {key: r for key, r in (rejected | completed).items() if key not in both}
        where = "GET /batchtransactions/…/completions and /rejections"
        if foreign:
            log.warning(
                "provider %s: the operator's answer to %s names %d key(s) not in the batch "
                "(%s): ignored",
                self.name,
                where,
                len(foreign),
                ", ".join(_short(key) for key in sorted(foreign)[:3]),
            )
        if both:
            log.warning(
                "provider %s: the operator's answer to %s lists %d key(s) both completed and "
                "rejected, or completed into two wallets (%s): still open",
                self.name,
                where,
                len(both),
                ", ".join(sorted(both)[:3]),
            )
        for key in keys:  # in the batch, not settled yet (never not-found: it arrived)
            results.setdefault(key, Result(key, ResultKind.PENDING))
        return results

    # -- the protocol ------------------------------------------------------------------------
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        """Send payments, as one batch or as single disbursements; idempotent by key.

        A key that travelled before under another correlation id (in another batch, or alone)
        is first looked up and sent again only when the operator never received it.

        Every result is for the key it is returned for: an answer that names another key is
        applied to neither instruction. A result carries the amount and the wallet the
        operator's answer echoed (``amount``, ``address``; None where it echoed none), never
        those sent, so that the engine can refuse an answer about another amount or account.

        Raises:
            ProviderTimeout: no answer for some payments (they may have been applied); among
                them :class:`GsmaMalformedAnswer` — an answer that could not be used (not JSON,
                not the shape the API defines, too large) — and :class:`GsmaMismatchedAnswer`
                — an answer about another key or amount.
            ProviderUnavailable: the operator could not be reached.
            GsmaRequestRejected: the operator refused the request as a whole.
        """
        if not payments:
            return []
        self._check(payments)
        self._refuse_changed(payments)
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
                digests = {p.key: _digest(p) for p in pending}
                self.journal.record_many(pairs, "single", digests)
                for pair in pairs:
                    self._remember(pair[0], [pair[1]])
                answered = self._map(self._single, pending)
                results.update(zip((p.key for p in pending), answered, strict=True))
        return [self._own(p.key, results.get(p.key)) for p in payments]

    def _own(self, key: str, result: Result | None) -> Result:
        """``result`` when it is about ``key``; else the answer was about another key."""
        if result is None or result.key != key:
            answered = "nothing" if result is None else result.key
            raise self._mismatch(
                f"the request about key {key}",
                f"is about {_short(answered)}, not {key!r}: not applied",
                key,
                answered,
            )
        return result

    def _refuse_changed(self, payments: Sequence[Payment]) -> None:
        """Refuse, before anything is sent, a key that travelled before — or travels twice in
        this call — with another amount or to another wallet: the operator deduplicates by
        correlation id, so it would answer with the first payment, and the second would pass
        for paid. A caller's bug (the ledger never changes a payment it sent): nothing sent.

        Raises:
            ProviderError: ``provider_code="KEY_REUSED"``, naming the keys.
        """
        known = self.journal.digests([p.key for p in payments])
        now: dict[str, str] = {}
        changed: list[str] = []
        for payment in payments:
            digest = _digest(payment)
            # what the key went with before, and with earlier in this call
            seen = known.get(payment.key, set()) | {now.setdefault(payment.key, digest)}
            if seen != {digest}:
                changed.append(payment.key)
        if changed:
            shown = ", ".join(dict.fromkeys(changed[:3]))
            raise ProviderError(
                self.name,
                f"{len(set(changed))} key(s) sent before with another amount or wallet "
                f"({shown}): refused, nothing sent",
                provider_code="KEY_REUSED",
            )

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
            lookup = functools.partial(self._lookup_in, namespace)
            for key, result in zip(rest, self._map_patiently(lookup, rest), strict=True):
                found[key] = self._own(key, result)
            rest = [key for key in rest if found[key].kind is ResultKind.NOT_FOUND]
            if not rest:
                break
        self._not_in_flight(found, prior)
        return [self._own(key, found.get(key)) for key in keys]

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
        if self._not_found(response):
            return "unregistered"
        if response.status_code != 200:
            raise self._error(response, "an account status query")
        status = self._object(response).get("accountStatus")
        if not isinstance(status, str):
            raise self._malformed(response, "has no accountStatus")
        return status

    def account_name(self, msisdn: str) -> str | None:
        """The name the operator holds for the wallet (``fullName``, else the parts)."""
        path = f"/accounts/msisdn/{urllib.parse.quote(msisdn, safe='+')}/accountname"
        response = self._call("GET", path)
        if self._not_found(response):
            return None
        if response.status_code != 200:
            raise self._error(response, "an account name query")
        name = self._object(response).get("name")
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
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, RecursionError):
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
                try:
                    results.append(self._from_transaction(key, entry, where="the report"))
                except GsmaMalformedAnswer as exc:  # an amount, a wallet that cannot be read
                    raise bad(f"entry {index} {exc.problem}") from None
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


def _digest(payment: Payment) -> str:
    """What the journal keeps of a payment: its amount, and 16 bits of a hash of its wallet."""
    tag = hashlib.sha256(_msisdn(payment).encode()).hexdigest()[:4]
    return f"{payment.amount.minor} {payment.amount.currency} {tag}"


def _state_path(path: str) -> str:
    """``/requeststates/{id}`` of a linked path, the id quoted again: a link's text never
    reaches the request line as it came (a control character, a ``/``, a query)."""
    server_id = urllib.parse.unquote(path.split("/")[2])
    return f"/requeststates/{urllib.parse.quote(server_id, safe='')}"


def _credited(body: Mapping[str, Any]) -> WalletAddress | None:
    """The wallet a transaction or completion says it credited (``creditParty`` → ``msisdn``),
    as the operator wrote it; None when it names none.

    Raises:
        ValueError: it names two different wallets.
    """
    parties = body.get("creditParty")
    if not isinstance(parties, list):
        return None
    numbers = {
        party["value"]
        for party in parties
        if isinstance(party, dict)
        and party.get("key") == "msisdn"
        and isinstance(party.get("value"), str)
        and party["value"]
    }
    if len(numbers) > 1:
        raise ValueError("more than one credited wallet")
    return WalletAddress(numbers.pop()) if numbers else None


def _metadata(body: Mapping[str, Any], name: str) -> str | None:
    entries = body.get("metadata")
    if not isinstance(entries, list):  # absent, or not the list of pairs the API defines
        return None
    for entry in entries:
        if isinstance(entry, dict) and entry.get("key") == name:
            value = entry.get("value")
            return value if isinstance(value, str) else None
    return None


def gsma_mobile_money(name: str, settings: Mapping[str, Any]) -> GsmaProvider:
    """Entry point ``gsma-mobile-money``: an operator's GSMA Mobile Money API 1.2."""
    return GsmaProvider(name, settings)
