"""Every request the adapter sends and every answer the sandbox server gives validate against the
GSMA Mobile Money API 1.2 OpenAPI files — and the validator itself catches a broken body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gsma_openapi import (
    OUTSIDE_THE_SPEC,
    Received,
    SpecViolation,
    callback_endpoint,
    check_callback,
    check_request,
    check_response,
    require_spec,
)
from sap_payments.beneficiaries import Channel, WalletAddress
from sap_payments.gsma import GsmaProvider
from sap_payments.testing.conformance import default_payment
from sap_payments.testing.gsma_server import Faults, GsmaSandboxServer, gsma_server

pytestmark = pytest.mark.usefixtures("spec")


@pytest.fixture
def spec() -> None:
    require_spec()


def exercise(server: GsmaSandboxServer, journal: Path, **extra: Any) -> None:
    """Drive every endpoint: single and bulk disbursements, repeats, status, account checks."""
    base = {"base_url": server.base_url, "poll_interval": 0, "backoff": 0.001, **extra}
    server.add_account("+84911111111", "unavailable")
    server.add_account("+84922222222", "unregistered")
    server.add_account("+84933333333", "available", "Nguyễn Văn An")
    with GsmaProvider("single", base) as provider:
        payments = [default_payment(f"S{i}", Channel.EWALLET) for i in range(4)]
        dead = default_payment("S-dead", Channel.EWALLET)
        payments.append(dead.__class__(dead.key, dead.amount, WalletAddress("+84922222222"),
                                       dead.payee_name, dead.reference))  # fmt: skip
        provider.submit(payments)
        provider.submit(payments)  # duplicates: 400 duplicateRequest, then /responses
        provider.status(["S0", "S-dead", "never-sent"])
        for number in ("+84911111111", "+84922222222", "+84933333333"):
            provider.validate(WalletAddress(number), "Nguyễn Văn An")
    bulk = {**base, "bulk": True, "bulk_threshold": 2, "journal": str(journal),
            "debit_party": "ACC-1", "page_size": 2}  # fmt: skip
    with GsmaProvider("bulk", bulk) as provider:
        payments = [default_payment(f"B{i}", Channel.EWALLET) for i in range(5)]
        dead = default_payment("B-dead", Channel.EWALLET)
        payments.append(dead.__class__(dead.key, dead.amount, WalletAddress("+84911111111"),
                                       dead.payee_name, dead.reference))  # fmt: skip
        provider.submit(payments)
        provider.submit(payments)
        provider.status(["B0", "B-dead", "S1", "nobody"])


@pytest.mark.parametrize("pending_polls", [0, 1])  # 0: single disbursements answer 201 at once
@pytest.mark.parametrize("faulty", [False, True])
def test_every_exchange_validates(tmp_path: Path, pending_polls: int, faulty: bool) -> None:
    """Without faults every endpoint and answer is reached; with faults (429s, 5xx, answers
    dropped) which ones are reached depends on the draws and on timing, and whatever is
    exchanged still validates."""
    noise = {"rate_limit_per_mille": 100, "error_per_mille": 100, "drop_per_mille": 100}
    faults = Faults(pending_polls=pending_polls, retry_after=0, **(noise if faulty else {}))
    with gsma_server(record=True, faults=faults) as server:
        exercise(server, tmp_path / "journal.db")
        exchanges = list(server.exchanges)
    templates = set()
    statuses = set()
    for exchange in exchanges:
        if exchange.path in OUTSIDE_THE_SPEC:
            continue
        templates.add(
            check_request(
                exchange.method,
                exchange.path,
                exchange.query,
                exchange.request_headers,
                exchange.request_body,
            )
        )
        if exchange.status is not None:
            statuses.add(exchange.status)
            check_response(
                exchange.method,
                exchange.path,
                exchange.status,
                exchange.response_headers,
                exchange.response_body,
            )
    assert exchanges
    if faulty:
        return
    assert templates >= {
        "/transactions/type/{transactionType}",
        "/batchtransactions",
        "/batchtransactions/{batchId}",
        "/batchtransactions/{batchId}/completions",
        "/batchtransactions/{batchId}/rejections",
        "/requeststates/{serverCorrelationId}",
        "/responses/{clientCorrelationId}",
        "/transactions/{transactionReference}",
        "/accounts/{identifierType}/{identifier}/status",
        "/accounts/{identifierType}/{identifier}/accountname",
    }
    assert {200, 202, 400, 404} <= statuses
    assert (201 in statuses) is (pending_polls == 0)


def test_oauth_requests_validate(tmp_path: Path) -> None:
    with gsma_server(record=True, oauth_clients={"agency": "s3cret"}) as server:
        settings = {"token_url": "/oauth/token", "client_id": "agency", "client_secret": "s3cret"}
        exercise(server, tmp_path / "journal.db", **settings)
        exchanges = [e for e in server.exchanges if e.path not in OUTSIDE_THE_SPEC]
    assert exchanges
    for exchange in exchanges:
        assert exchange.request_headers["authorization"].startswith("Bearer ")
        check_request(exchange.method, exchange.path, exchange.query,
                      exchange.request_headers, exchange.request_body)  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    with callback_endpoint() as found:
        yield found


def test_callbacks_validate(
    tmp_path: Path, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    with gsma_server(record=True) as server:
        server.add_account("+84911111111", "unavailable")
        settings = {"base_url": server.base_url, "callback_url": url, "poll_interval": 0}
        with GsmaProvider("cb", settings) as provider:
            good = default_payment("C1", Channel.EWALLET)
            bad = default_payment("C2", Channel.EWALLET)
            bad = bad.__class__(bad.key, bad.amount, WalletAddress("+84911111111"),
                                bad.payee_name, bad.reference)  # fmt: skip
            provider.submit([good, bad])
        bulk = {**settings, "bulk": True, "bulk_threshold": 2, "debit_party": "ACC-1",
                "journal": str(tmp_path / "j.db")}  # fmt: skip
        with GsmaProvider("cb", bulk) as provider:
            provider.submit([default_payment(f"CB{i}", Channel.EWALLET) for i in range(3)])
        server.flush_callbacks()
    kinds = set()
    for headers, body in received:
        document = json.loads(body)
        if "batchId" in document:
            check_callback(("POST", "/batchtransactions"), "batchTransactionsSuccessEvent",
                           headers, body)  # fmt: skip
            kinds.add("batch")
        elif "errorCategory" in document:
            check_callback(("POST", "/transactions/type/{transactionType}"),
                           "transactionsFailureEvent", headers, body)  # fmt: skip
            kinds.add("failure")
        else:
            check_callback(("POST", "/transactions/type/{transactionType}"),
                           "transactionsSuccessEvent", headers, body)  # fmt: skip
            kinds.add("success")
    assert kinds == {"batch", "failure", "success"}


def test_the_validator_catches_broken_bodies() -> None:
    """A check that cannot fail proves nothing: a few broken exchanges, each refused."""
    headers = {"X-CorrelationID": "8f5e5d4e-0c1a-4c8e-9d8b-2b0f0a4f6c11"}
    good = {"amount": "360000", "currency": "VND",
            "creditParty": [{"key": "msisdn", "value": "+84912345678"}]}  # fmt: skip
    check_request("POST", "/transactions/type/disbursement", "", headers, json.dumps(good).encode())
    broken = [
        {**good, "amount": 360000},  # a number, not a string
        {**good, "amount": "-5"},
        {**good, "currency": "ABC"},
        {k: v for k, v in good.items() if k != "creditParty"},
    ]
    for body in broken:
        with pytest.raises(SpecViolation):
            check_request("POST", "/transactions/type/disbursement", "", headers,
                          json.dumps(body).encode())  # fmt: skip
    with pytest.raises(SpecViolation, match="X-CorrelationID"):
        check_request("POST", "/transactions/type/disbursement", "",
                      {"X-CorrelationID": "not-a-uuid"}, json.dumps(good).encode())  # fmt: skip
    with pytest.raises(SpecViolation):
        check_response("GET", "/requeststates/8f5e5d4e-0c1a-4c8e-9d8b-2b0f0a4f6c11", 200, {},
                       json.dumps({"status": "done"}).encode())  # fmt: skip
    with pytest.raises(SpecViolation, match="not declared"):
        check_response("GET", "/heartbeat", 418, {}, b"")
