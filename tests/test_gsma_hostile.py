"""The gsma-mobile-money adapter against an operator that answers badly (issue #12).

An answer that does not match what we sent is never applied as success, never crashes the run,
and is named in a one-line message. The operator here is :class:`SpecOperator`, a second fake
written from the GSMA Mobile Money API 1.2 disbursement flow alone — not from our sandbox
server — and served through ``httpx.MockTransport``; each of its answers can be spoiled
(:class:`strategies.Mutation`): a JSON value that is no object, an HTML page, truncated or
nested text, an oversized body, a field dropped or of the wrong type, another instruction's
key, another amount or wallet, another state or HTTP status, a bad header, a listing that
ignores ``offset``, or a value generated from the GSMA OpenAPI schema of that answer (valid, and
about nothing we sent).

What is asserted, whatever the answers: only :class:`ProviderError` subclasses leave the
adapter; every result is about the key it is returned for; a PAID result stands on an answer
that said "completed" of that key, and carries the amount and wallet that answer echoed (so the
engine can refuse another amount or account); nothing is paid twice; and through dispatch and
reconcile no instruction is PAID unless the operator confirmed it for that key and amount.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gsma_openapi
from conftest import roster_row, write_roster
from sap_payments import Ledger
from sap_payments.beneficiaries import WalletAddress, normalise_msisdn
from sap_payments.dispatch import dispatch, reconcile
from sap_payments.errors import ConfigError
from sap_payments.gsma import CallbackHandler, GsmaProvider, parse_amount
from sap_payments.money import Money
from sap_payments.providers import (
    Payment,
    ProviderError,
    ProviderTimeout,
    Result,
    ResultKind,
)
from strategies import Mutation, from_openapi, hostile_plans, hostile_routes

BASE = "http://operator.test/mm/v1.2"
KEY = "requestingOrganisationTransactionReference"
HTML = b"<html><head><title>Gateway</title></head><body>" + b"x" * 1173 + b"</body></html>"
assert len(HTML) == 1234

#: (kind of claim, operator's words): what a transaction status says.
_PAID = {"completed", "success", "successful", "paid"}
_FAILED = {"failed", "rejected", "declined", "cancelled"}


# -- the second operator, from the GSMA files ---------------------------------------------------
@attrs.frozen
class Claim:
    """What an answer the operator served said of one key: ``kind`` paid / failed / returned;
    for paid, the amount and wallet it echoed (None: none echoed; ``"bad"``: unreadable)."""

    key: str
    kind: str
    amount: Money | str | None = None
    wallet: str | None = None


Rule = Callable[[str, Any], Any]
Plan = tuple[Mutation | None, ...]
Routes = dict[str, Plan]


class SpecOperator:
    """A mobile-money operator following the GSMA MM API 1.2 disbursement flow, from the spec:

    * ``POST /transactions/type/disbursement`` → ``201`` with the transaction (``sync``), or
      ``202`` with a ``pending`` request state; a repeated ``X-CorrelationID`` → ``400``
      ``businessRule/duplicateRequest``;
    * ``GET /requeststates/{serverCorrelationId}`` → ``completed``, ``objectReference`` the
      transaction (or the batch);
    * ``GET /transactions/{transactionReference}``;
    * ``GET /responses/{clientCorrelationId}`` → ``{"link": …}``, or ``404`` with an
      ``errorObject`` for a request never received;
    * ``POST /batchtransactions`` → ``202`` request state; ``GET /batchtransactions/{batchId}``
      and its ``/completions`` and ``/rejections``, paged by ``limit``/``offset`` with
      ``X-Records-Available-Count``;
    * ``GET /accounts/msisdn/{msisdn}/status``.

    Every request received completes: the books (``paid``) pay each correlation id once. The
    answers are spoiled by ``routes`` (route → one :class:`Mutation` or None per answer of
    that route, in order), then ``plan`` (one per answer, in order), and by ``rules`` (route →
    function of (path, body) → body, for every answer of that route). Every answer served,
    spoiled or not, is read back for what it claims (``claims``).
    """

    def __init__(
        self,
        *,
        sync: bool = False,
        plan: Sequence[Mutation | None] = (),
        routes: Mapping[str, Sequence[Mutation | None]] | None = None,
        rules: Mapping[str, Rule] | None = None,
        draw: Callable[[st.SearchStrategy[Any]], Any] | None = None,
        padding: int = (1 << 20) + 1,
        max_requests: int = 400,
        record: bool = False,
    ) -> None:
        self.sync = sync
        self.plan = list(plan)
        self.routes = {route: list(queue) for route, queue in (routes or {}).items()}
        self.rules = dict(rules or {})
        self.draw = draw
        self.padding = padding
        self.max_requests = max_requests
        self.record = record
        self.requests = 0
        self.exchanges: list[
            tuple[str, str, str, dict[str, str], bytes, int, dict[str, str], bytes]
        ]
        self.exchanges = []
        self.requests_by_correlation: dict[str, str] = {}  # X-CorrelationID → server id
        self.states: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.links: dict[str, str] = {}  # X-CorrelationID → the resource it made
        self.owners: dict[str, tuple[str, ...]] = {}  # server id / reference / batch → keys
        self.paid: Counter[str] = Counter()
        self.amounts: dict[str, Money] = {}
        self.claims: list[Claim] = []
        self.keys: list[str] = []  # every key received, in order

    # -- plumbing ---------------------------------------------------------------------------
    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def provider(self, directory: Path | None = None, **extra: Any) -> GsmaProvider:
        settings: dict[str, Any] = {
            "base_url": BASE,
            "poll_interval": 0,
            "backoff": 0.001,
            "max_retries": 1,
            "max_concurrency": 1,
            "in_flight_grace": 0,
            "page_size": 2,
            **extra,
        }
        if settings.get("bulk"):
            settings.setdefault("bulk_threshold", 2)
            settings.setdefault("debit_party", "ACC-0001")
            assert directory is not None
            settings.setdefault("journal", str(directory / "journal.db"))
        return GsmaProvider("viettelpay", settings, client=self.client(), sleep=lambda _s: None)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert self.requests <= self.max_requests, "the adapter does not stop asking"
        path = request.url.path.removeprefix("/mm/v1.2")
        route, status, body, headers = self.route(request, path)
        queue = self.routes.get(route) or self.plan
        mutation = queue.pop(0) if queue else None
        offset_ignored = mutation is not None and mutation.kind == "offset_ignored"
        if offset_ignored and route.endswith(("/completions", "/rejections")):
            # the first page whatever the offset, and no count to stop by
            route, status, body, headers = self.route(request, path, first_page=True)
            del headers["X-Records-Available-Count"]
        body = copy.deepcopy(body)  # the books are never spoiled
        if route in self.rules:
            body = self.rules[route](path, body)
        content: bytes | None = None
        if mutation is not None:
            status, body, content = self.spoil(
                request.method, path, status, body, headers, mutation
            )
        if content is None:
            content = json.dumps(body).encode() if body is not None or status != 204 else b""
            headers.setdefault("Content-Type", "application/json")
        self.read_claims(route, path, request, body if content is not None else None)
        if self.record:
            self.exchanges.append(
                (
                    request.method,
                    path,
                    request.url.query.decode(),
                    dict(request.headers),
                    request.content,
                    status,
                    headers,
                    content,
                )
            )
        raw = [(name.encode(), value.encode()) for name, value in headers.items()]  # "²" too
        return httpx.Response(status, headers=raw, content=content)

    @staticmethod
    def error(status: int, category: str, code: str) -> tuple[int, dict[str, Any]]:
        return status, {"errorCategory": category, "errorCode": code}

    # -- the API ----------------------------------------------------------------------------
    def route(
        self, request: httpx.Request, path: str, *, first_page: bool = False
    ) -> tuple[str, int, Any, dict[str, str]]:
        method, parts = request.method, path.strip("/").split("/")
        headers: dict[str, str] = {"X-Date": "2021-09-01T00:00:00+00:00"}
        if method == "POST" and path == "/transactions/type/disbursement":
            return ("POST /transactions/type/disbursement", *self.disburse(request), headers)
        if method == "POST" and path == "/batchtransactions":
            return ("POST /batchtransactions", *self.batch(request), headers)
        if method != "GET":
            return (f"{method} ?", *self.error(404, "identification", "identifierError"), headers)
        if parts[0] == "requeststates" and len(parts) == 2:
            state = self.states.get(parts[1])
            answer = (200, state) if state else self.error(404, "identification", "identifierError")
            return ("GET /requeststates/{id}", *answer, headers)
        if parts[0] == "transactions" and len(parts) == 2:
            found = self.transactions.get(urllib.parse.unquote(parts[1]))
            answer = (200, found) if found else self.error(404, "identification", "identifierError")
            return ("GET /transactions/{ref}", *answer, headers)
        if parts[0] == "responses" and len(parts) == 2:
            link = self.links.get(parts[1])
            answer = (
                (200, {"link": link})
                if link
                else self.error(404, "identification", "identifierError")
            )
            return ("GET /responses/{cid}", *answer, headers)
        if parts[0] == "batchtransactions" and len(parts) in (2, 3):
            batch = self.batches.get(urllib.parse.unquote(parts[1]))
            if batch is None:
                answer = self.error(404, "identification", "identifierError")
                return ("GET /batchtransactions/{id}", *answer, headers)
            if len(parts) == 2:
                return ("GET /batchtransactions/{id}", 200, batch["batch"], headers)
            entries = batch.get(parts[2])
            if entries is None:
                answer = self.error(404, "identification", "identifierError")
                return (f"GET /batchtransactions/{{id}}/{parts[2]}", *answer, headers)
            query = urllib.parse.parse_qs(request.url.query.decode())
            limit = int(query.get("limit", ["50"])[0])
            offset = 0 if first_page else int(query.get("offset", ["0"])[0])
            headers["X-Records-Available-Count"] = str(len(entries))
            page = entries[offset : offset + limit]
            return (f"GET /batchtransactions/{{id}}/{parts[2]}", 200, page, headers)
        if parts[:2] == ["accounts", "msisdn"] and len(parts) == 4 and parts[3] == "status":
            return (
                "GET /accounts/msisdn/{msisdn}/status",
                200,
                {"accountStatus": "available"},
                headers,
            )
        return ("GET ?", *self.error(404, "identification", "identifierError"), headers)

    def _received(self, request: httpx.Request) -> tuple[str, dict[str, Any]] | None:
        correlation = request.headers.get("X-CorrelationID", "")
        body = json.loads(request.content)
        assert isinstance(body, dict)
        if correlation in self.requests_by_correlation:
            return None
        return correlation, body

    def _transaction(self, given: Mapping[str, Any]) -> dict[str, Any]:
        reference = f"T-{len(self.transactions) + 1}"
        key = given[KEY]
        self.keys.append(key)
        self.paid[key] += 1
        self.amounts[key] = parse_amount(given["amount"], given["currency"])
        transaction = {
            "transactionReference": reference,
            KEY: key,
            "type": "disbursement",
            "transactionStatus": "completed",
            "amount": given["amount"],
            "currency": given["currency"],
            "creditParty": given["creditParty"],
            "debitParty": given.get("debitParty") or [{"key": "accountid", "value": "OP-1"}],
            "creationDate": "2021-09-01T00:00:00+00:00",
        }
        self.transactions[reference] = transaction
        self.owners[reference] = (key,)
        return transaction

    def _request_state(self, keys: tuple[str, ...], reference: str) -> dict[str, Any]:
        server = str(uuid.uuid4())
        self.owners[server] = keys
        self.states[server] = {
            "serverCorrelationId": server,
            "status": "completed",
            "notificationMethod": "polling",
            "objectReference": reference,
        }
        return {
            "serverCorrelationId": server,
            "status": "pending",
            "notificationMethod": "polling",
            "pollLimit": 5,
        }

    def disburse(self, request: httpx.Request) -> tuple[int, Any]:
        received = self._received(request)
        if received is None:
            return self.error(400, "businessRule", "duplicateRequest")
        correlation, body = received
        transaction = self._transaction(body)
        reference = transaction["transactionReference"]
        state = self._request_state((body[KEY],), reference)
        self.requests_by_correlation[correlation] = state["serverCorrelationId"]
        self.links[correlation] = f"/transactions/{reference}"
        if self.sync:
            return 201, transaction
        return 202, state

    def batch(self, request: httpx.Request) -> tuple[int, Any]:
        received = self._received(request)
        if received is None:
            return self.error(400, "businessRule", "duplicateRequest")
        correlation, body = received
        batch_id = f"B-{len(self.batches) + 1}"
        completions = []
        for item in body["transactions"]:
            transaction = self._transaction(item)
            completions.append(
                {
                    "transactionReference": transaction["transactionReference"],
                    KEY: transaction[KEY],
                    "creditParty": transaction["creditParty"],
                    "debitParty": transaction["debitParty"],
                    "completionDate": "2021-09-01T00:00:01+00:00",
                    "link": f"/transactions/{transaction['transactionReference']}",
                }
            )
        keys = tuple(entry[KEY] for entry in completions)
        self.owners[batch_id] = keys
        self.batches[batch_id] = {
            "batch": {
                "batchId": batch_id,
                "batchStatus": "completed",
                "approvalDate": "2021-09-01T00:00:00+00:00",
                "completionDate": "2021-09-01T00:00:01+00:00",
                "completedCount": len(completions),
                "rejectionCount": 0,
            },
            "completions": completions,
            "rejections": [],
        }
        state = self._request_state(keys, batch_id)
        self.requests_by_correlation[correlation] = state["serverCorrelationId"]
        self.links[correlation] = f"/batchtransactions/{batch_id}"
        return 202, state

    # -- spoiling ---------------------------------------------------------------------------
    def _pool(self, index: int) -> str:
        pool = [*sorted(set(self.keys)), "I-NEVER-SENT"]
        return pool[index % len(pool)]

    def spoil(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        headers: dict[str, str],
        mutation: Mutation,
    ) -> tuple[int, Any, bytes | None]:
        kind, value, index = mutation.kind, mutation.value, mutation.index
        targets: list[dict[str, Any]] = (
            [body]
            if isinstance(body, dict)
            else [e for e in body if isinstance(e, dict)][index % max(1, len(body)) :][:1]
            if isinstance(body, list)
            else []
        )
        if kind == "not_object":
            return status, value, None
        if kind == "html":
            headers["Content-Type"] = "text/html; charset=utf-8"
            return int(value), None, HTML  # type: ignore[call-overload]
        if kind == "truncate":
            text = json.dumps(body).encode()
            return status, None, text[: int(len(text) * float(value))]  # type: ignore[arg-type]
        if kind == "deep":
            depth = int(value)  # type: ignore[call-overload]
            return status, None, b"[" * depth + b"]" * depth
        if kind == "huge":
            return status, None, json.dumps({"padding": "x" * self.padding, "body": body}).encode()
        if kind == "status":
            return int(value), body, None  # type: ignore[call-overload]
        if kind == "count_header":
            headers["X-Records-Available-Count"] = str(value)
            return status, body, None
        if kind == "extra_entry" and isinstance(body, list):
            body.append(
                {KEY: self._pool(index), "creditParty": [{"key": "msisdn", "value": "0999999999"}]}
            )
            return status, body, None
        if kind == "spec":
            generated = self.spec_value(method, path, status)
            return status, (body if generated is _NOTHING else generated), None
        for target in targets:
            fields = sorted(target)
            if kind == "drop" and fields:
                del target[fields[index % len(fields)]]
            elif kind == "retype" and fields:
                target[fields[index % len(fields)]] = value
            elif kind == "foreign_key":
                target[KEY] = self._pool(index)
            elif kind == "amount":
                target["amount"] = value
            elif kind == "currency":
                target["currency"] = value
            elif kind == "wallet":
                target["creditParty"] = (
                    [{"key": "msisdn", "value": value}] if isinstance(value, str) else value
                )
            elif kind == "state":
                for field in ("transactionStatus", "status", "batchStatus"):
                    if field in target:
                        target[field] = value
            elif kind == "link" and "link" in target:
                target["link"] = value
        return status, body, None

    def spec_value(self, method: str, path: str, status: int) -> Any:
        if self.draw is None:
            return _NOTHING
        schema = response_schema(method, path, status)
        if schema is None:
            return _NOTHING
        document, node = schema
        return self.draw(from_openapi(document, node))

    # -- what the answers said --------------------------------------------------------------
    def read_claims(self, route: str, path: str, request: httpx.Request, body: Any) -> None:
        parts = path.strip("/").split("/")
        owners: tuple[str, ...] = ()
        if route == "POST /transactions/type/disbursement":
            sent = json.loads(request.content)
            owners = (sent.get(KEY),)
        elif route == "POST /batchtransactions":
            owners = tuple(t.get(KEY) for t in json.loads(request.content)["transactions"])
        elif len(parts) > 1:
            owners = self.owners.get(urllib.parse.unquote(parts[1]), ())
        if isinstance(body, dict):
            self._claim_object(body, owners)
        elif isinstance(body, list) and route.endswith(("/completions", "/rejections")):
            for entry in body:  # an entry counts for a key of this batch only
                if isinstance(entry, dict) and entry.get(KEY) in owners:
                    wallet = _wallet_of(entry)
                    if route.endswith("/completions"):
                        self.claims.append(Claim(entry[KEY], "paid", None, wallet))
                    else:
                        self.claims.append(Claim(entry[KEY], "failed"))

    def _claim_object(self, body: Mapping[str, Any], owners: tuple[str, ...]) -> None:
        status = body.get("transactionStatus")
        if isinstance(status, str):
            named = body.get(KEY)
            # it speaks for the key of the request it answers, whether or not it names it;
            # naming another key, it speaks for none
            if isinstance(named, str) and named:
                keys = (named,) if named in owners else ()
            else:
                keys = owners
            kind = (
                "paid"
                if status.lower() in _PAID
                else "failed"
                if status.lower() in _FAILED
                else "returned"
                if status.lower() == "reversed"
                else None
            )
            if kind is not None:
                amount = _amount_of(body)
                for key in keys:
                    self.claims.append(Claim(key, kind, amount, _wallet_of(body)))
            return
        if body.get("status") == "failed" or body.get("errorCode") is not None:
            for key in owners:  # a failed request state, or an errorObject
                self.claims.append(Claim(key, "failed"))


_NOTHING = object()


def _amount_of(body: Mapping[str, Any]) -> Money | str | None:
    if body.get("amount") is None and body.get("currency") is None:
        return None
    try:
        return parse_amount(body.get("amount"), body.get("currency"))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return "bad"


def _wallet_of(body: Mapping[str, Any]) -> str | None:
    parties = body.get("creditParty")
    if not isinstance(parties, list):
        return None
    numbers = {
        p["value"]
        for p in parties
        if isinstance(p, dict)
        and p.get("key") == "msisdn"
        and isinstance(p.get("value"), str)
        and p["value"]
    }
    return numbers.pop() if len(numbers) == 1 else ("bad" if numbers else None)


@cache
def _spec_available() -> bool:
    return all((gsma_openapi.STANDARDS / name).is_file() for name in gsma_openapi.FILES)


def response_schema(method: str, path: str, status: int) -> tuple[dict[str, Any], Any] | None:
    """The GSMA schema of the answer ``status`` to ``method path``, when the files are here."""
    if not _spec_available():
        return None
    try:
        spec, operation, _params, _template = gsma_openapi._find(method, path)
    except gsma_openapi.SpecViolation:
        return None
    declared = operation["responses"].get(str(status))
    if declared is None:
        return None
    content = spec._resolve(declared).get("content", {}).get("application/json")
    return None if content is None else (spec.document, content["schema"])


# -- checks ---------------------------------------------------------------------------------------
def payments(count: int = 4) -> list[Payment]:
    return [
        Payment(
            key=f"I-{n}",
            amount=Money.vnd(360_000 + 1000 * n),
            address=WalletAddress(f"+8491234567{n}"),
            payee_name="Nguyễn Văn An",
            reference="monthly-allowance 2021-09",
        )
        for n in range(1, count + 1)
    ]


def check(operator: SpecOperator, keys: Sequence[str], results: Sequence[Result]) -> None:
    """Every result about its own key, and standing on what an answer to a request about that
    key said of it (a claim)."""
    assert [r.key for r in results] == list(keys)
    for result in results:
        if result.kind is ResultKind.PAID:
            wallet = result.address.msisdn if isinstance(result.address, WalletAddress) else None
            assert Claim(result.key, "paid", result.amount, wallet) in operator.claims, (
                f"{result} stands on no answer: {operator.claims}"
            )
        elif result.kind in (ResultKind.FAILED, ResultKind.RETURNED):
            assert any(
                c.key == result.key and c.kind == result.kind.value for c in operator.claims
            ), f"{result} stands on no answer"
        elif result.kind is ResultKind.NOT_FOUND:
            assert result.key not in operator.paid, f"{result.key} was received"


def run_adapter(operator: SpecOperator, directory: Path, *, bulk: bool) -> list[Exception]:
    """Submit two payments, then two more (two batches in bulk mode), ask the status of all
    four, submit three again (another batch: each key is looked up first), ask again; what
    escaped."""
    sent = payments()
    keys = [p.key for p in sent]
    escaped: list[Exception] = []
    with operator.provider(directory, bulk=bulk, max_answer_bytes=8192) as provider:
        steps: list[tuple[Sequence[str], Callable[[], list[Result]]]] = [
            (keys[:2], lambda: provider.submit(sent[:2])),
            (keys[2:], lambda: provider.submit(sent[2:])),
            (keys, lambda: provider.status(keys)),
            (keys[:3], lambda: provider.submit(sent[:3])),
            (keys, lambda: provider.status(keys)),
        ]
        for asked, step in steps:
            try:
                results = step()
            except ProviderError as exc:  # anything else fails the test
                escaped.append(exc)
                continue
            check(operator, asked, results)
    assert all("\n" not in str(exc) for exc in escaped)  # one-line messages
    assert all(count == 1 for count in operator.paid.values()), f"paid twice: {operator.paid}"
    return escaped


# -- the fake itself follows the spec ------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async", "bulk"])
def test_the_spec_operator_pays_and_speaks_the_gsma_api(mode: str, tmp_path: Path) -> None:
    operator = SpecOperator(sync=mode == "sync", record=True)
    sent = payments()
    with operator.provider(tmp_path, bulk=mode == "bulk") as provider:
        results = provider.submit(sent)
        again = provider.status([p.key for p in sent])
    for result, payment in zip(results, sent, strict=True):
        assert result.kind is ResultKind.PAID
        if mode != "bulk":  # a completion echoes no amount
            assert result.amount == payment.amount
        assert result.address == payment.address  # echoed by the operator
    assert [r.kind for r in again] == [ResultKind.PAID] * 4
    assert operator.paid == Counter(p.key for p in sent)
    if not _spec_available():
        pytest.skip(f"GSMA OpenAPI files not found under {gsma_openapi.STANDARDS}")
    for method, path, query, headers, body, status, answer_headers, answer in operator.exchanges:
        gsma_openapi.check_request(method, path, query, headers, body)
        gsma_openapi.check_response(method, path, status, answer_headers, answer)


# -- a JSON answer that is no object ------------------------------------------------------------
NOT_OBJECTS = [([], "a list"), ("text", "a string"), (5, "a number"), (None, "null")]


def replace(value: Any) -> Rule:
    return lambda _path, _body: value


@pytest.mark.parametrize(("value", "kind"), NOT_OBJECTS)
@pytest.mark.parametrize(
    ("route", "mode", "call", "where"),
    [
        ("GET /requeststates/{id}", "async", "submit", "GET /requeststates/…"),
        (
            "POST /transactions/type/disbursement",
            "async",
            "submit",
            "POST /transactions/type/disbursement",
        ),
        (
            "POST /transactions/type/disbursement",
            "sync",
            "submit",
            "POST /transactions/type/disbursement",
        ),
        ("GET /transactions/{ref}", "async", "submit", "GET /transactions/…"),
        ("POST /batchtransactions", "bulk", "submit", "POST /batchtransactions"),
        ("GET /batchtransactions/{id}", "bulk", "submit", "GET /batchtransactions/…"),
        ("GET /responses/{cid}", "sync", "status", "GET /responses/…"),
        ("GET /responses/{cid}", "bulk", "status", "GET /responses/…"),
        ("GET /transactions/{ref}", "sync", "status", "GET /transactions/…"),
        ("GET /batchtransactions/{id}", "bulk", "status", "GET /batchtransactions/…"),
        (
            "GET /accounts/msisdn/{msisdn}/status",
            "sync",
            "account",
            "GET /accounts/msisdn/…/status",
        ),
    ],
)
def test_an_answer_that_is_no_json_object_is_a_one_line_typed_error(
    tmp_path: Path, route: str, mode: str, call: str, where: str, value: Any, kind: str
) -> None:
    """The request-state poll, the single and batch look-ups, the account status and the
    batch results all read the shape of the answer (at HEAD: AttributeError, exit 70)."""
    operator = SpecOperator(sync=mode == "sync")
    sent = payments(3)
    with operator.provider(tmp_path, bulk=mode == "bulk") as provider:
        if call == "status":
            provider.submit(sent)  # clean answers: the operator has them
        operator.rules[route] = replace(value)
        calls: dict[str, Callable[[], object]] = {
            "account": lambda: provider.account_status("+84912345671"),
            "status": lambda: provider.status([p.key for p in sent]),
            "submit": lambda: provider.submit(sent),
        }
        with pytest.raises(ProviderTimeout) as caught:
            calls[call]()
    message = str(caught.value)
    assert f"the operator's answer to {where} is not a JSON object ({kind})" in message
    assert "\n" not in message
    assert "912345671" not in message


def test_dispatch_and_reconcile_leave_unknown_what_a_list_answer_left_open(
    template: Path, tmp_path: Path
) -> None:
    operator = SpecOperator(rules={"GET /requeststates/{id}": replace([])})
    with Ledger.open(copy_ledger(template, tmp_path)) as ledger:
        provider = operator.provider(tmp_path)
        dispatch(ledger.store, PERIOD, providers={"viettelpay": provider})
        assert states(ledger) == Counter({"UNKNOWN": 4})  # not SUBMITTED, no crash
        operator.rules = {"GET /responses/{cid}": replace("busy")}
        assert reconcile(ledger.store, PERIOD, providers={"viettelpay": provider}).open == 4
        assert states(ledger) == Counter({"UNKNOWN": 4})
        operator.rules = {}
        assert reconcile(ledger.store, PERIOD, providers={"viettelpay": provider}).open == 0
        assert states(ledger) == Counter({"PAID": 4})
        provider.close()
    assert operator.paid == Counter(dict.fromkeys(operator.paid, 1))
    assert len(operator.paid) == 4


# -- an answer about another key --------------------------------------------------------------
def rename(key: str | Callable[[str], str]) -> Rule:
    def rule(_path: str, body: Any) -> Any:
        if isinstance(body, dict) and KEY in body:
            body[KEY] = key(body[KEY]) if callable(key) else key
        return body

    return rule


def test_a_transaction_answer_naming_another_key_is_applied_to_neither(tmp_path: Path) -> None:
    """At HEAD: KeyError from submit (a key not sent), or each result applied to the other
    instruction (two keys swapped)."""
    operator = SpecOperator(sync=True)
    operator.rules["POST /transactions/type/disbursement"] = rename("I-NEVER-SENT")
    with operator.provider(tmp_path) as provider, pytest.raises(ProviderTimeout) as caught:
        provider.submit(payments(1))
    assert "is about key 'I-NEVER-SENT', not 'I-1'" in str(caught.value)
    assert caught.value.provider_code is None  # our words, not the operator's

    swapped = SpecOperator(sync=True)
    swapped.rules["POST /transactions/type/disbursement"] = rename(
        lambda key: {"I-1": "I-2", "I-2": "I-1"}[key]
    )
    with swapped.provider(tmp_path) as provider, pytest.raises(ProviderTimeout):
        provider.submit(payments(2))


def test_a_status_answer_naming_another_key_leaves_the_key_unknown(
    template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    operator = SpecOperator(sync=True)
    with Ledger.open(copy_ledger(template, tmp_path)) as ledger:
        provider = operator.provider(tmp_path)
        operator.rules["POST /transactions/type/disbursement"] = replace(["no"])
        dispatch(ledger.store, PERIOD, providers={"viettelpay": provider})
        assert states(ledger) == Counter({"UNKNOWN": 4})
        first, second = sorted(operator.keys)[:2]
        operator.rules = {}
        operator.rules["GET /transactions/{ref}"] = rename(
            lambda key: {first: second, second: first}.get(key, key)
        )
        with caplog.at_level(logging.WARNING, logger="sap_payments.gsma"):
            reconcile(ledger.store, PERIOD, providers={"viettelpay": provider})
        assert f"is about key {second!r}, not {first!r}" in caplog.text
        by_id = {r.instruction_id: r.state for r, _ in ledger.instructions(PERIOD)}
        assert by_id[first] == by_id[second] == "UNKNOWN"  # never applied to the other
        provider.close()


def test_status_of_a_key_whose_answer_names_another_key_raises_not_keyerror(
    tmp_path: Path,
) -> None:
    operator = SpecOperator(sync=True)
    with operator.provider(tmp_path) as provider:
        provider.submit(payments(2))
        operator.rules["GET /transactions/{ref}"] = rename("I-2")
        with pytest.raises(ProviderTimeout, match=r"is about key 'I-2', not 'I-1'"):
            provider.status(["I-1"])


def test_a_batch_listing_naming_a_key_of_another_batch_is_not_applied_to_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Batch A's completions name B's first key, which B's own listing does not (yet) show as
    completed: at HEAD the key was PAID on A's word."""
    operator = SpecOperator()
    sent = payments(4)
    with operator.provider(tmp_path, bulk=True) as provider:
        provider.submit(sent[:2])  # batch B-1: I-1, I-2
        provider.submit(sent[2:])  # batch B-2: I-3, I-4

        def listing(path: str, body: Any) -> Any:
            if "/B-1/" in path:
                return [*body, {**body[0], KEY: "I-3"}]
            return [entry for entry in body if entry[KEY] != "I-3"]

        operator.rules["GET /batchtransactions/{id}/completions"] = listing
        with caplog.at_level(logging.WARNING, logger="sap_payments.gsma"):
            results = {r.key: r.kind for r in provider.status(["I-1", "I-3"])}
        assert results == {"I-1": ResultKind.PAID, "I-3": ResultKind.PENDING}
        assert "not in the batch ('I-3')" in caplog.text

        # a batch callback naming batch B-1's request reads only B-1's keys
        handler = CallbackHandler(provider)
        correlation = next(c for c, link in operator.links.items() if link.endswith("B-1"))
        body = json.dumps({"batchId": "B-1", "batchStatus": "completed"}).encode()
        answer = handler({"X-CorrelationID": correlation}, body)
        assert {r.key for r in answer.results} == {"I-1", "I-2"}


def test_a_key_both_completed_and_rejected_stays_open(tmp_path: Path) -> None:
    operator = SpecOperator()
    sent = payments(2)

    def rejections(_path: str, _body: Any) -> Any:
        return [{KEY: "I-1", "rejectionReason": "requestDeclined", "creditParty": []}]

    def batch(_path: str, body: Any) -> Any:
        return {**body, "rejectionCount": 1}

    operator.rules["GET /batchtransactions/{id}/rejections"] = rejections
    operator.rules["GET /batchtransactions/{id}"] = batch
    with operator.provider(tmp_path, bulk=True) as provider:
        results = {r.key: r.kind for r in provider.submit(sent)}
    assert results == {"I-1": ResultKind.PENDING, "I-2": ResultKind.PAID}


def test_a_callback_naming_another_key_than_its_request_is_refused(tmp_path: Path) -> None:
    operator = SpecOperator(sync=True)
    with operator.provider(tmp_path) as provider:
        provider.submit(payments(2))
        handler = CallbackHandler(provider)
        correlation = next(c for c, link in operator.links.items() if link == "/transactions/T-1")
        body = json.dumps({**operator.transactions["T-2"]}).encode()  # I-2's, for I-1's request
        answer = handler({"X-CorrelationID": correlation}, body)
    assert answer.status == 400
    assert not answer.results
    assert "names key 'I-2'" in answer.detail


# -- what the operator echoed: amount and wallet, for the engine to compare ---------------------
def test_results_carry_the_amount_and_wallet_the_operator_echoed(tmp_path: Path) -> None:
    operator = SpecOperator(sync=True)

    def other(_path: str, body: Any) -> Any:
        return {**body, "amount": "1", "creditParty": [{"key": "msisdn", "value": "0999999999"}]}

    operator.rules["POST /transactions/type/disbursement"] = other
    with operator.provider(tmp_path) as provider:
        (result,) = provider.submit(payments(1))
    assert result.kind is ResultKind.PAID
    assert result.amount == Money.vnd(1)
    assert result.address == WalletAddress("0999999999")


def test_an_answer_for_another_amount_is_not_paid_through_dispatch(
    template: Path, tmp_path: Path
) -> None:
    operator = SpecOperator(sync=True)
    operator.rules["POST /transactions/type/disbursement"] = lambda _p, body: {
        **body,
        "amount": "1",
    }
    with Ledger.open(copy_ledger(template, tmp_path)) as ledger:
        provider = operator.provider(tmp_path)
        dispatch(ledger.store, PERIOD, providers={"viettelpay": provider})
        reconcile(ledger.store, PERIOD, providers={"viettelpay": provider})
        provider.close()
        assert "PAID" not in states(ledger)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("Infinity", "VND"), ("1e400", "VND"), ("NaN", "VND"), ("360000", "XYZ"), (360000, "VND")],
)
def test_an_amount_that_is_none_makes_the_answer_unusable(
    tmp_path: Path, amount: object, currency: object
) -> None:
    """At HEAD: OverflowError (Infinity), a 400-digit amount taken, KeyError (a currency we do
    not know), or PAID with no amount at all (a number where a string is due)."""
    operator = SpecOperator(sync=True)
    operator.rules["POST /transactions/type/disbursement"] = lambda _p, body: {
        **body,
        "amount": amount,
        "currency": currency,
    }
    with operator.provider(tmp_path) as provider, pytest.raises(ProviderTimeout) as caught:
        provider.submit(payments(1))
    assert "has an amount or currency that cannot be read" in str(caught.value)


def test_parse_amount_reads_plain_decimals_only() -> None:
    assert parse_amount("360000", "VND") == Money.vnd(360_000)
    assert parse_amount("12.30", "USD") == Money(1230, "USD")
    for text in ("Infinity", "NaN", "1e400", "-5", " 5", "٣", "1" * 19):
        with pytest.raises(ValueError, match="not an amount"):
            parse_amount(text, "VND")
    with pytest.raises(ValueError, match="unknown currency"):
        parse_amount("5", "XYZ")


# -- answer sizes ---------------------------------------------------------------------------------
def streamed(total: int, chunk: int, taken: list[int]) -> Iterator[bytes]:
    yield b'{"transactionStatus": "completed", "padding": "'
    sent = 0
    while sent < total:
        taken.append(chunk)
        sent += chunk
        yield b"x" * chunk
    yield b'"}'


def test_an_answer_larger_than_the_cap_is_unreadable_and_not_read_to_the_end() -> None:
    taken: list[int] = []

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, content=streamed(8 << 20, 64 << 10, taken))

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with (
        GsmaProvider("viettelpay", {"base_url": BASE}, client=client) as provider,
        pytest.raises(ProviderTimeout) as caught,
    ):
        provider.submit(payments(1))
    assert "is larger than 1,048,576 bytes" in str(caught.value)
    assert "POST /transactions/type/disbursement" in str(caught.value)
    assert sum(taken) <= (1 << 20) + (64 << 10)  # stopped at the cap, not at 8 MiB


def test_a_declared_length_past_the_cap_is_not_read_at_all() -> None:
    taken: list[int] = []

    def handler(_request: httpx.Request) -> httpx.Response:
        headers = {"Content-Length": str(4 << 20)}
        return httpx.Response(201, headers=headers, content=streamed(4 << 20, 64 << 10, taken))

    client = httpx.Client(transport=httpx.MockTransport(handler))
    settings = {"base_url": BASE, "max_answer_bytes": 65536}
    with (
        GsmaProvider("viettelpay", settings, client=client) as provider,
        pytest.raises(ProviderTimeout, match="is larger than 65,536 bytes"),
    ):
        provider.submit(payments(1))
    assert taken == []


def test_a_batch_listing_page_may_be_larger_in_proportion_to_its_entries(tmp_path: Path) -> None:
    """A page of 1,000 completions (about 1.3 MiB) is read with the default settings; the cap
    of a listing is ``max_answer_bytes`` plus ``max_entry_bytes`` for each entry asked for."""
    operator = SpecOperator()
    sent = [
        attrs.evolve(p, key=f"K-{n:04d}", address=WalletAddress(f"+849{n:08d}"))
        for n, p in enumerate(payments(1) * 1000)
    ]

    def fat(_path: str, body: Any) -> Any:
        return [{**entry, "customData": [{"key": "note", "value": "n" * 1000}]} for entry in body]

    operator.rules["GET /batchtransactions/{id}/completions"] = fat
    operator.max_requests = 100
    with operator.provider(tmp_path, bulk=True, page_size=1000, max_batch=1000) as provider:
        results = provider.submit(sent)
    assert {r.kind for r in results} == {ResultKind.PAID}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("max_answer_bytes", 100, "at least 1024"), ("max_entry_bytes", 1.5, "a whole number")],
)
def test_the_caps_are_checked_settings(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        GsmaProvider("viettelpay", {"base_url": BASE, key: value})
    assert caught.value.key == f"providers.viettelpay.{key}"


# -- an answer that is not what the status says ------------------------------------------------
def html(status: int) -> Callable[[httpx.Request], httpx.Response]:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Content-Type": "text/html"}, content=HTML)

    return handler


def test_an_html_page_with_status_200_says_what_was_wrong() -> None:
    client = httpx.Client(transport=httpx.MockTransport(html(200)))
    with (
        GsmaProvider("viettelpay", {"base_url": BASE}, client=client) as provider,
        pytest.raises(ProviderTimeout) as caught,  # not "refused": it may have been applied
    ):
        provider.submit(payments(1))
    message = str(caught.value)
    assert (
        "the operator's answer to POST /transactions/type/disbursement is HTTP 200 but the body "
        "is not JSON (text/html, 1,234 bytes)"
    ) in message
    assert "refused" not in message


def test_an_html_refusal_says_its_body_is_no_error_object() -> None:
    client = httpx.Client(transport=httpx.MockTransport(html(403)))
    with (
        GsmaProvider("viettelpay", {"base_url": BASE}, client=client) as provider,
        pytest.raises(ProviderError) as caught,
    ):
        provider.submit(payments(1))
    assert "was refused: the body is not JSON (text/html, 1,234 bytes) (HTTP 403)" in str(
        caught.value
    )


def test_a_404_page_that_is_not_the_operators_is_no_proof_of_never_received(
    tmp_path: Path,
) -> None:
    """A 404 without an ``errorObject`` (a proxy's page, a wrong base URL): at HEAD the key was
    NOT_FOUND — and dispatch would have sent it again."""
    operator = SpecOperator(sync=True)
    with operator.provider(tmp_path) as provider:
        provider.submit(payments(1))
        operator.plan = [Mutation("html", 404)] * 10
        with pytest.raises(ProviderError):
            provider.status(["I-1"])
        operator.plan = [Mutation("html", 404)] * 10
        with pytest.raises(ProviderError):
            provider.account_status("+84912345671")


# -- answers that crashed the adapter at HEAD ---------------------------------------------------
CRASHES = {
    "Retry-After is no number nor date": (
        "POST /transactions/type/disbursement",
        lambda: httpx.Response(429, headers={"Retry-After": "soon"}, json={}),
    ),
    "X-Records-Available-Count is no number": ("count_header", "abc"),
    "pollLimit is Infinity": ("pollLimit", None),
    "metadata is a number": ("metadata", None),
    "a list nested 100,000 deep": ("deep", 100_000),
    "a link that is no URL": ("link", "http://["),
    "a link with a control character": ("link", "/requeststates/\x00 ?x=1"),
    "a listing that ignores offset": ("offset_ignored", None),
}


@pytest.mark.parametrize("case", sorted(CRASHES))
def test_answers_that_crashed_the_adapter_are_provider_errors(tmp_path: Path, case: str) -> None:
    operator = SpecOperator(max_requests=60)
    sent = payments(4)
    bulk = False
    what, value = CRASHES[case]
    if what == "POST /transactions/type/disbursement":
        client = httpx.Client(transport=httpx.MockTransport(lambda _r: value()))  # type: ignore[operator]
        settings = {"base_url": BASE, "backoff": 0.001}
        with (
            GsmaProvider("viettelpay", settings, client=client) as provider,
            pytest.raises(ProviderError),
        ):
            provider.submit(sent)
        return
    if what in ("count_header", "offset_ignored"):
        bulk = True
        operator.plan = [None, None, None] + [Mutation(what, value)] * 5
    elif what == "pollLimit":
        operator.rules["POST /transactions/type/disbursement"] = lambda _p, body: {
            **body,
            "pollLimit": float("inf"),
        }
    elif what == "metadata":
        operator.sync = True
        operator.rules["POST /transactions/type/disbursement"] = lambda _p, body: {
            **body,
            "transactionStatus": "failed",
            "metadata": 5,
        }
    elif what == "deep":
        operator.plan = [Mutation("deep", value)]
    elif what == "link":
        operator.sync = True
        operator.rules["GET /responses/{cid}"] = lambda _p, body: {"link": value}
    escaped: list[ProviderError] = []
    with operator.provider(tmp_path, bulk=bulk) as provider:
        try:
            results = provider.submit(sent)
            if what == "link":
                results = provider.status([p.key for p in sent])
        except ProviderError as exc:  # anything else fails the test
            escaped.append(exc)
        else:
            check(operator, [p.key for p in sent], results)
    assert all("\n" not in str(exc) for exc in escaped)
    assert operator.requests < 60


# -- the sweep ----------------------------------------------------------------------------------
HOSTILE = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@HOSTILE
@given(
    plan=hostile_plans(),
    routes=hostile_routes(),
    mode=st.sampled_from(["sync", "async", "bulk"]),
    data=st.data(),
)
def test_hostile_answers_never_crash_nor_confirm_what_was_not_said(
    plan: Plan, routes: Routes, mode: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        operator = SpecOperator(
            sync=mode == "sync",
            plan=plan,
            routes=routes,
            draw=data.draw,
            padding=8192 + 4096 * 2 + 1,
        )
        run_adapter(operator, Path(directory), bulk=mode == "bulk")


@pytest.mark.slow
@settings(HOSTILE, max_examples=3000)
@given(
    plan=hostile_plans(max_size=40),
    routes=hostile_routes(max_size=10),
    mode=st.sampled_from(["sync", "async", "bulk"]),
    data=st.data(),
)
def test_hostile_answers_never_crash_nor_confirm_what_was_not_said_more(
    plan: Plan, routes: Routes, mode: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        operator = SpecOperator(
            sync=mode == "sync",
            plan=plan,
            routes=routes,
            draw=data.draw,
            padding=8192 + 4096 * 2 + 1,
        )
        run_adapter(operator, Path(directory), bulk=mode == "bulk")


# -- through dispatch and reconcile -------------------------------------------------------------
PERIOD = "2021-09"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An approved cycle of four e-wallet instructions, copied for each test."""
    directory = tmp_path_factory.mktemp("hostile-template")
    rows = [roster_row(f"B{i}", msisdn=f"09{i:08d}") for i in range(1, 5)]
    roster = write_roster(directory / "roster.csv", rows)
    with Ledger.open(directory / "ledger.db") as ledger:
        ledger.import_roster(roster)
        ledger.prepare(PERIOD)
        ledger.approve(PERIOD, by="checker")
    return directory / "ledger.db"


def copy_ledger(template: Path, directory: Path) -> Path:
    database = directory / "ledger.db"
    for companion in template.parent.glob(f"{template.name}*"):  # the keyring too, if any
        shutil.copy(companion, directory / companion.name.replace(template.name, database.name))
    return database


def states(ledger: Ledger) -> Counter[str]:
    return Counter(record.state for record, _ in ledger.instructions(PERIOD))


def run_engine(template: Path, operator: SpecOperator, directory: Path, *, bulk: bool) -> None:
    with Ledger.open(copy_ledger(template, directory)) as ledger:
        provider = operator.provider(directory, bulk=bulk, max_answer_bytes=8192)
        providers = {"viettelpay": provider}
        try:
            dispatch(ledger.store, PERIOD, providers=providers)
            for _round in range(3):
                if reconcile(ledger.store, PERIOD, providers=providers).open == 0:
                    break
                dispatch(ledger.store, PERIOD, providers=providers)
        finally:
            provider.close()
        records = [record for record, _ in ledger.instructions(PERIOD)]
    assert all(count == 1 for count in operator.paid.values()), f"paid twice: {operator.paid}"
    for record in records:
        if record.state != "PAID":
            continue
        amount = Money(record.amount, record.currency)
        wallet = record.address.removeprefix("ewallet:")
        assert any(
            claim.key == record.instruction_id
            and claim.kind == "paid"
            and claim.amount in (None, amount)
            and (claim.wallet is None or _same_wallet(claim.wallet, wallet))
            for claim in operator.claims
        ), f"{record.instruction_id} PAID, but the operator never confirmed {amount} to it"
        assert operator.paid[record.instruction_id] == 1
        assert operator.amounts[record.instruction_id] == amount


def _same_wallet(echoed: str, ours: str) -> bool:
    try:
        return normalise_msisdn(echoed) == normalise_msisdn(ours)
    except ValueError:
        return False


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    plan=hostile_plans(),
    routes=hostile_routes(),
    mode=st.sampled_from(["sync", "async", "bulk"]),
    data=st.data(),
)
def test_dispatch_and_reconcile_under_hostile_answers(
    template: Path, plan: Plan, routes: Routes, mode: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        operator = SpecOperator(
            sync=mode == "sync",
            plan=plan,
            routes=routes,
            draw=data.draw,
            padding=8192 + 4096 * 2 + 1,
        )
        run_engine(template, operator, Path(directory), bulk=mode == "bulk")


@pytest.mark.slow
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    plan=hostile_plans(max_size=40),
    routes=hostile_routes(max_size=10),
    mode=st.sampled_from(["sync", "async", "bulk"]),
    data=st.data(),
)
def test_dispatch_and_reconcile_under_hostile_answers_more(
    template: Path, plan: Plan, routes: Routes, mode: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        operator = SpecOperator(
            sync=mode == "sync",
            plan=plan,
            routes=routes,
            draw=data.draw,
            padding=8192 + 4096 * 2 + 1,
        )
        run_engine(template, operator, Path(directory), bulk=mode == "bulk")


# -- a key sent again as another payment ----------------------------------------------------------
@pytest.mark.parametrize("change", ["amount", "wallet"])
@pytest.mark.parametrize("mode", ["sync", "bulk"])
def test_a_key_sent_again_as_another_payment_is_refused_unsent(
    tmp_path: Path, change: str, mode: str
) -> None:
    """The operator deduplicates by correlation id: it would answer the second payment with
    the first one's result, and the second would pass for paid (at HEAD: PAID)."""
    operator = SpecOperator(sync=mode == "sync")
    sent = payments(2)
    first = sent[0]
    changed = (
        attrs.evolve(first, amount=Money.vnd(first.amount.minor * 2))
        if change == "amount"
        else attrs.evolve(first, address=WalletAddress("+84987654321"))
    )
    with operator.provider(tmp_path, bulk=mode == "bulk") as provider:
        provider.submit(sent)
    asked = operator.requests
    with operator.provider(tmp_path, bulk=mode == "bulk") as provider:  # a new process
        if mode == "sync":  # single mode keeps no journal file: the same process only
            provider.submit(sent)
            asked = operator.requests
        with pytest.raises(ProviderError) as caught:
            provider.submit([changed, sent[1]])
        assert not isinstance(caught.value, ProviderTimeout)  # known not taken, not unknown
        assert caught.value.provider_code == "KEY_REUSED"
        assert "I-1" in str(caught.value)
        assert "987654321" not in str(caught.value)
        assert operator.requests == asked  # nothing sent
        with pytest.raises(ProviderError, match="another amount or wallet"):
            provider.submit([first, changed])  # the same key twice in one call
        assert [r.kind for r in provider.submit(sent)] == [ResultKind.PAID] * 2  # unchanged: fine
    assert operator.paid == Counter({"I-1": 1, "I-2": 1})


def test_json_nested_beyond_reason_in_a_report_or_callback_is_refused(tmp_path: Path) -> None:
    """At HEAD: RecursionError from parse_report and from the callback handler."""
    deep = b"[" * 100_000 + b"]" * 100_000
    with SpecOperator().provider(tmp_path) as provider:
        with pytest.raises(ProviderError, match="not JSON"):
            provider.parse_report(deep)
        assert CallbackHandler(provider)({}, deep).status == 400
