"""Callbacks: content hash, Standard Webhooks signatures, replays, and applying the results."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import roster_row, write_roster
from gsma_openapi import Received, callback_endpoint
from sap_payments import Ledger
from sap_payments.beneficiaries import Channel, WalletAddress
from sap_payments.dispatch import dispatch
from sap_payments.gsma import (
    CallbackHandler,
    GsmaProvider,
    InvalidSignature,
    apply_callback,
    correlation_id,
    sign_webhook,
    verify_webhook,
)
from sap_payments.providers import Reason, ResultKind
from sap_payments.testing.conformance import default_payment
from sap_payments.testing.gsma_server import Faults, gsma_server

SECRET = "whsec_" + base64.b64encode(b"a shared secret of the agency").decode()
NOW = 1_700_000_000.0


def signed(body: bytes, message_id: str = "msg_1", at: float = NOW, **extra: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": sign_webhook(SECRET, message_id, int(at), body),
        "X-Content-Hash": hashlib.sha256(body).hexdigest(),
        **extra,
    }


@pytest.fixture
def provider() -> Iterator[GsmaProvider]:
    with (
        gsma_server() as server,
        GsmaProvider("viettelpay", {"base_url": server.base_url, "poll_interval": 0}) as made,
    ):
        made.server = server  # type: ignore[attr-defined]  # the test reaches the books
        yield made


def transaction_body(key: str, status: str = "completed") -> bytes:
    return json.dumps(
        {
            "transactionReference": f"TX-{key}",
            "requestingOrganisationTransactionReference": key,
            "creditParty": [{"key": "msisdn", "value": "+84912345678"}],
            "debitParty": [{"key": "accountid", "value": "float"}],
            "type": "disbursement",
            "transactionStatus": status,
            "amount": "360000",
            "currency": "VND",
        }
    ).encode()


# -- signatures -----------------------------------------------------------------------------------
def test_standard_webhooks_signature_round_trip() -> None:
    body = b'{"a":1}'
    headers = {k.lower(): v for k, v in signed(body).items()}
    assert verify_webhook(SECRET, headers, body, now=NOW) == "msg_1"
    # a known vector: HMAC-SHA256 over "id.timestamp.body" with the decoded secret, base64
    expected = base64.b64encode(
        __import__("hmac")
        .new(b"a shared secret of the agency", b'msg_1.1700000000.{"a":1}', hashlib.sha256)
        .digest()
    ).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    several = {**headers, "webhook-signature": f"v1,bm9wZQ== {headers['webhook-signature']}"}
    assert verify_webhook(SECRET, several, body, now=NOW) == "msg_1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-signature": "v1,AAAA"}, "no webhook-signature matches"),
        ({"webhook-timestamp": str(int(NOW) - 301)}, "too far from now"),
        ({"webhook-timestamp": str(int(NOW) + 301)}, "too far from now"),
        ({"webhook-timestamp": "soon"}, "whole number"),
        ({"webhook-id": ""}, "required"),
    ],
)
def test_bad_signatures_are_refused(change: dict[str, str], message: str) -> None:
    body = b"{}"
    headers = {**{k.lower(): v for k, v in signed(body).items()}, **change}
    with pytest.raises(InvalidSignature, match=message):
        verify_webhook(SECRET, headers, body, now=NOW)


def test_the_handler_checks_before_reading(provider: GsmaProvider) -> None:
    handler = CallbackHandler(provider, secret=SECRET, clock=lambda: NOW)
    body = transaction_body("K1")
    accepted = handler(signed(body), body)
    assert accepted.status == 204
    assert [(r.key, r.kind) for r in accepted.results] == [("K1", ResultKind.PAID)]
    tampered = body.replace(b"360000", b"960000")
    assert handler(signed(body, "msg_2"), tampered).status == 400  # X-Content-Hash
    no_hash = {k: v for k, v in signed(body, "msg_3").items() if k != "X-Content-Hash"}
    assert handler(no_hash, tampered).status == 401  # the signature covers the body
    replay = handler(signed(body), body)
    assert (replay.status, replay.results) == (400, ())
    assert "replayed" in replay.detail
    stale = handler(signed(body, "msg_4", at=NOW - 600), body)
    assert stale.status == 401
    unsigned = handler({"X-Content-Hash": hashlib.sha256(body).hexdigest()}, body)
    assert unsigned.status == 401


def test_without_a_secret_only_the_content_hash_is_checked(provider: GsmaProvider) -> None:
    handler = CallbackHandler(provider)
    body = transaction_body("K1")
    assert handler({}, body).status == 204
    assert handler({"X-Content-Hash": "00" * 32}, body).status == 400
    assert handler({}, b"not json").status == 400
    assert handler({}, b'{"what": "ever"}').status == 400


def test_the_memory_of_ids_is_bounded(provider: GsmaProvider) -> None:
    clock = [NOW]
    handler = CallbackHandler(provider, secret=SECRET, remember=3, clock=lambda: clock[0])
    body = transaction_body("K1")
    for number in range(10):
        assert handler(signed(body, f"m{number}"), body).status == 204
    assert len(handler._seen) <= 3
    clock[0] = NOW + 100  # still within the tolerance of the timestamps
    assert handler(signed(body, "m9"), body).status == 400  # the newest are remembered


def test_failure_callbacks_are_found_by_correlation_id(provider: GsmaProvider) -> None:
    handler = CallbackHandler(provider)
    provider.submit([default_payment("F1", Channel.EWALLET)])  # this process sent it
    failure = json.dumps({"errorCategory": "businessRule", "errorCode": "incorrectState"}).encode()
    response = handler({"X-CorrelationID": correlation_id("F1")}, failure)
    assert [(r.key, r.kind, r.reason) for r in response.results] == [
        ("F1", ResultKind.FAILED, Reason.INACTIVE_WALLET)
    ]
    assert handler({"X-CorrelationID": correlation_id("unknown")}, failure).status == 404
    assert handler({}, failure).status == 404
    outsider = CallbackHandler(provider, resolve=lambda cid: ["Z9"])
    assert outsider({"X-CorrelationID": "x"}, failure).results[0].key == "Z9"


def test_a_batch_callback_reads_the_batch(tmp_path: Path) -> None:
    with gsma_server() as server:
        server.add_account("+84911111111", "unavailable")
        settings = {"base_url": server.base_url, "poll_interval": 0, "bulk": True,
                    "bulk_threshold": 2, "journal": str(tmp_path / "j.db"),
                    "debit_party": "ACC-1"}  # fmt: skip
        with GsmaProvider("p", settings) as provider:
            dead = default_payment("BC2", Channel.EWALLET)
            dead = dead.__class__(dead.key, dead.amount, WalletAddress("+84911111111"),
                                  dead.payee_name, dead.reference)  # fmt: skip
            provider.submit([default_payment("BC1", Channel.EWALLET), dead])
            batch_id = server._query("SELECT batch_id FROM batches")[0][0]
            body = json.dumps(server.batch_view(batch_id)).encode()
            results = CallbackHandler(provider)({}, body).results
    assert sorted((r.key, r.kind) for r in results) == [
        ("BC1", ResultKind.PAID),
        ("BC2", ResultKind.FAILED),
    ]


# -- end to end: callbacks applied to a ledger ----------------------------------------------------
@pytest.fixture
def endpoint() -> Iterator[tuple[str, Received]]:
    with callback_endpoint("/gsma/callbacks") as found:
        yield found


def test_duplicate_and_out_of_order_callbacks_settle_each_instruction_once(
    tmp_path: Path, endpoint: tuple[str, Received]
) -> None:
    url, queue = endpoint
    faults = Faults(duplicate_callbacks=True, reorder_callbacks=True, pending_polls=50, seed=5)
    rows = [roster_row(f"B{i}", msisdn=f"09{i:08d}") for i in range(12)]
    rows.append(roster_row("DEAD", msisdn="0911111111"))
    with gsma_server(faults=faults, webhook_secret=SECRET) as server:
        server.add_account("+84911111111", "unavailable")
        settings = {"base_url": server.base_url, "callback_url": url, "webhook_secret": SECRET,
                    "poll_interval": 0, "max_concurrency": 4}  # fmt: skip
        roster = tmp_path / "roster.csv"
        write_roster(roster, rows)
        with (
            Ledger.open(tmp_path / "ledger.db") as ledger,
            GsmaProvider("viettelpay", settings) as provider,
        ):
            ledger.import_roster(roster)
            ledger.prepare("2021-09")
            ledger.approve("2021-09", by="checker")
            result = dispatch(ledger.store, "2021-09", providers={"viettelpay": provider})
            assert result.pending == len(rows)  # polled past the limit: pending, by callback
            server.flush_callbacks()
            handler = CallbackHandler(provider)
            answers = [apply_callback(ledger.store, handler, h, b) for h, b in list(queue)]
            records = {r.instruction_id: r for r, _ in ledger.instructions("2021-09")}
    statuses = [response.status for response, _ in answers]
    assert len(answers) == 2 * len(rows)  # every callback twice (a retry, same webhook-id)
    assert statuses.count(204) == len(rows)
    assert statuses.count(400) == len(rows)
    states = sorted(r.state for r in records.values())
    assert states == ["FAILED"] + ["PAID"] * 12
    failed = next(r for r in records.values() if r.state == "FAILED")
    assert failed.instruction_id in {r.key for resp, _ in answers for r in resp.results}
