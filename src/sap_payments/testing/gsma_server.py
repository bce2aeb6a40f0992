"""A GSMA Mobile Money API 1.2 sandbox server on loopback, with books that survive a kill.

Standard library only (``http.server.ThreadingHTTPServer``, ``sqlite3``, ``urllib``). It speaks
the part of the API that disbursements use, answering as the OpenAPI files describe:

* ``POST /transactions/type/disbursement`` and ``POST /batchtransactions`` → 202 with a
  ``requestStateObject``; a repeated ``X-CorrelationID`` → 400 ``duplicateRequest``;
* ``GET /requeststates/{serverCorrelationId}``, ``GET /responses/{clientCorrelationId}`` (404
  when that id never arrived), ``GET /transactions/{transactionReference}``;
* ``GET /batchtransactions/{batchId}`` and its ``/completions`` and ``/rejections`` (paged with
  ``limit``/``offset``, ``X-Records-Available-Count``);
* ``GET /accounts/msisdn/{msisdn}/status`` and ``/accountname``; ``GET /heartbeat``;
* ``POST /oauth/token`` (client credentials; outside the GSMA files) when OAuth is on.

Every request that is accepted is recorded, and its money moved, in one SQLite transaction
(``state`` file: WAL, ``synchronous=NORMAL``) *before* the answer is written: a test may kill the
client — or this server — at any point and read the books after. Callbacks (``X-Callback-URL``)
are PUT from a background thread, with ``X-Content-Hash`` and, with a ``webhook_secret``, a
Standard Webhooks signature.

Faults (:class:`Faults`; ``--fault NAME=VALUE`` on the command line) are drawn per request from
a seeded generator: latency, 5xx answers (nothing applied), responses dropped after the payment
was applied (the connection closes without an answer), 429 with ``Retry-After``, duplicate and
out-of-order callbacks, inactive and unregistered wallets, requests that stay pending for some
polls. ``docs/mobile-money.md`` lists them.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import random
import secrets
import sqlite3
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import attrs

from sap_payments.errors import InvalidInput
from sap_payments.gsma._wire import content_hash, error_object, parse_amount, x_date
from sap_payments.gsma.callbacks import sign_webhook
from sap_payments.money import MINOR_UNITS

__all__ = ["Exchange", "Faults", "GsmaSandboxServer", "gsma_server"]

_UUID: Final = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_FLOAT_ACCOUNT: Final = [{"key": "accountid", "value": "sandbox-float"}]

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS requests ("
    " cid TEXT PRIMARY KEY, scid TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,"
    " status TEXT NOT NULL, object_ref TEXT, error TEXT, polls INTEGER NOT NULL DEFAULT 0,"
    " created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS transactions ("
    " ref TEXT PRIMARY KEY, cid TEXT NOT NULL, batch_id TEXT, key TEXT, msisdn TEXT NOT NULL,"
    " amount TEXT NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,"
    " debit TEXT NOT NULL, created TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS transactions_batch ON transactions (batch_id, status)",
    "CREATE TABLE IF NOT EXISTS batches ("
    " batch_id TEXT PRIMARY KEY, cid TEXT NOT NULL, title TEXT, description TEXT,"
    " created TEXT NOT NULL, completed INTEGER NOT NULL, rejected INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS accounts ("
    " msisdn TEXT PRIMARY KEY, status TEXT NOT NULL, name TEXT)",
)


_FAULT_NAMES: Final = (
    "error",
    "drop",
    "rate_limit",
    "inactive",
    "unregistered",
    "latency",
    "post_latency",
    "retry_after",
    "pending_polls",
    "poll_limit",
    "seed",
    "duplicate_callbacks",
    "reorder_callbacks",
)


@attrs.frozen
class Faults:
    """What goes wrong, and how often (rates per mille, 0–1000; durations in seconds)."""

    seed: int = 0
    latency: float = 0.0  # added before every answer
    post_latency: float = 0.0  # added to each POST, before it is applied (requests in flight)
    error_per_mille: int = 0  # 500/503 before anything is applied
    drop_per_mille: int = 0  # POST applied, then the connection closes without an answer
    rate_limit_per_mille: int = 0  # 429 with Retry-After
    retry_after: int = 1
    duplicate_callbacks: bool = False  # every callback delivered twice (same webhook-id)
    reorder_callbacks: bool = False  # callbacks delivered after random delays (out of order)
    inactive_per_mille: int = 0  # wallets drawn as "unavailable" (from seed and MSISDN)
    unregistered_per_mille: int = 0  # wallets drawn as "unregistered"
    pending_polls: int = 0  # a request answers "pending" to its first N state queries
    poll_limit: int = 20  # the pollLimit the server announces

    @classmethod
    def parse(cls, specs: Sequence[str]) -> Faults:
        """Faults from ``NAME=VALUE`` strings (``error=100``, ``latency=0.05``,
        ``duplicate_callbacks``); rates are per mille.

        Raises:
            InvalidInput: an unknown fault or a bad value.
        """
        fields = {
            "error": "error_per_mille",
            "drop": "drop_per_mille",
            "rate_limit": "rate_limit_per_mille",
            "inactive": "inactive_per_mille",
            "unregistered": "unregistered_per_mille",
        }
        values: dict[str, Any] = {}
        for spec in specs:
            name, _, text = spec.partition("=")
            name = name.strip().replace("-", "_")
            field = fields.get(name, name)
            if field in ("duplicate_callbacks", "reorder_callbacks"):
                values[field] = text.strip().lower() not in ("0", "false", "no")
                continue
            if field not in attrs.fields_dict(cls) or not text:
                known = ", ".join(_FAULT_NAMES)
                raise InvalidInput(f"not a fault: {spec!r} (known: {known})")
            try:
                value: float = float(text) if field.endswith("latency") else int(text)
            except ValueError:
                raise InvalidInput(f"fault {name}: not a number: {text!r}") from None
            if value < 0 or (field.endswith("per_mille") and value > 1000):
                raise InvalidInput(f"fault {name}: out of range: {text!r}")
            values[field] = value
        return cls(**values)


@attrs.frozen
class Exchange:
    """One request and its answer as the server saw them (``status`` None: dropped)."""

    method: str
    path: str
    query: str
    request_headers: Mapping[str, str]
    request_body: bytes
    status: int | None
    response_headers: Mapping[str, str]
    response_body: bytes


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _draw(seed: int, subject: str, what: str) -> int:
    digest = hashlib.sha256(f"{seed}:{subject}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1000


class _Answer(Exception):  # control flow inside the handler, never escapes
    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _error(status: int, category: str, code: str, text: str) -> _Answer:
    return _Answer(status, error_object(category, code, text))


class GsmaSandboxServer:
    """The sandbox server; start with :meth:`start` or as a context manager.

    Args:
        state: the SQLite file of the books (default: in memory, gone with the server).
        faults: what goes wrong (:class:`Faults`).
        host, port: where to listen (port 0: any free port).
        api_key: require this ``X-API-Key``.
        oauth_clients: client id → secret; require ``Authorization: Bearer`` tokens from
            ``POST /oauth/token``.
        token_ttl: lifetime of a token (seconds).
        webhook_secret: sign callbacks (Standard Webhooks, ``whsec_<base64>``).
        record: keep every :class:`Exchange` (for schema validation in tests).
    """

    def __init__(
        self,
        *,
        state: Path | str | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        oauth_clients: Mapping[str, str] | None = None,
        token_ttl: int = 3600,
        webhook_secret: str | None = None,
        record: bool = False,
    ) -> None:
        self.faults = faults or Faults()
        self.api_key = api_key
        self.oauth_clients = dict(oauth_clients or {})
        self.token_ttl = token_ttl
        self.webhook_secret = webhook_secret
        self.record = record
        self.exchanges: list[Exchange] = []
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.in_flight = 0  # requests being handled now, and the most at once
        self.in_flight_peak = 0
        self._rng = random.Random(self.faults.seed)  # noqa: S311  # fault draws, not secrets
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            ":memory:" if state is None else str(state),
            isolation_level=None,
            check_same_thread=False,
            timeout=30,
        )
        if state is not None:
            self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL: a commit is in the write-ahead log before the answer leaves, so the books
        # survive a kill of any process; only a crash of the machine could lose the last ones.
        self._db.execute("PRAGMA synchronous = NORMAL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._callbacks = 0  # callbacks promised (counted before the answer) and not yet done
        self._delivered = threading.Condition(self._lock)
        server = self

        class Handler(_Handler):
            sandbox = server

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GsmaSandboxServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="gsma-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self.flush_callbacks()
        with self._lock:
            self._db.close()

    def __enter__(self) -> GsmaSandboxServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- the books (test hooks) --------------------------------------------------------------
    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def add_account(self, msisdn: str, status: str = "available", name: str | None = None) -> None:
        """Register a wallet with a status (available, unavailable, unregistered) and name."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)", (msisdn, status, name)
            )

    def paid(self, key: str) -> int:
        """How many completed transactions (money moved) carry instruction ``key``."""
        rows = self._query(
            "SELECT count(*) FROM transactions WHERE key = ? AND status = 'completed'", (key,)
        )
        return int(rows[0][0])

    def payments(self) -> list[tuple[str, str, str, str]]:
        """``(key, msisdn, amount, currency)`` of every completed transaction, in order."""
        rows = self._query(
            "SELECT key, msisdn, amount, currency FROM transactions"
            " WHERE status = 'completed' ORDER BY rowid"
        )
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def requests_received(self) -> int:
        return int(self._query("SELECT count(*) FROM requests")[0][0])

    def flush_callbacks(self, timeout: float = 60.0) -> None:
        """Wait for every callback of a request answered so far to be delivered (or to fail).
        A callback is counted before its request is answered, so none slips past."""
        with self._delivered:
            self._delivered.wait_for(lambda: self._callbacks == 0, timeout=timeout)

    # -- accounts ----------------------------------------------------------------------------
    def account(self, msisdn: str) -> tuple[str, str | None]:
        rows = self._query("SELECT status, name FROM accounts WHERE msisdn = ?", (msisdn,))
        if rows:
            return str(rows[0][0]), rows[0][1]
        return self._drawn(msisdn), None

    def _accounts(self, numbers: Sequence[str]) -> dict[str, str]:
        """The status of each of ``numbers`` (registered ones in one query per 500)."""
        unique = list(dict.fromkeys(numbers))
        found: dict[str, str] = {}
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            found.update(
                self._db.execute(
                    "SELECT msisdn, status FROM accounts"
                    f" WHERE msisdn IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
            )
        return {number: found.get(number) or self._drawn(number) for number in unique}

    def _drawn(self, msisdn: str) -> str:
        faults = self.faults
        if not faults.unregistered_per_mille and not faults.inactive_per_mille:
            return "available"
        draw = _draw(faults.seed, msisdn, "account")
        if draw < faults.unregistered_per_mille:
            return "unregistered"
        if draw < faults.unregistered_per_mille + faults.inactive_per_mille:
            return "unavailable"
        return "available"

    # -- faults ------------------------------------------------------------------------------
    def _roll(self, per_mille: int) -> bool:
        if per_mille <= 0:
            return False
        with self._lock:
            return self._rng.randrange(1000) < per_mille

    def before(self, method: str) -> None:
        """Latency, 429 and 5xx: drawn before anything is read or applied."""
        faults = self.faults
        if faults.latency:
            time.sleep(faults.latency)
        if faults.post_latency and method == "POST":
            time.sleep(faults.post_latency)
        if self._roll(faults.rate_limit_per_mille):
            raise _Answer(
                429,
                error_object("businessRule", "rateLimitError", "slow down"),
                {"Retry-After": str(faults.retry_after)},
            )
        if self._roll(faults.error_per_mille):
            status = 503 if self._roll(500) else 500
            category = "serviceUnavailable" if status == 503 else "internal"
            raise _error(status, category, "genericError", "injected fault")

    def drop(self) -> bool:
        return self._roll(self.faults.drop_per_mille)

    # -- auth --------------------------------------------------------------------------------
    def authorise(self, headers: Mapping[str, str]) -> None:
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            raise _error(401, "authorisation", "clientAuthorisationError", "bad API key")
        if self.oauth_clients:
            token = headers.get("authorization", "").removeprefix("Bearer ").strip()
            with self._lock:
                expires = self.tokens.get(token)
            if expires is None or expires < time.monotonic():
                raise _error(401, "authorisation", "clientAuthorisationError", "bad token")

    def issue_token(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        form = urllib.parse.parse_qs(body.decode("ascii", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            raise _Answer(400, {"error": "unsupported_grant_type"})
        basic = headers.get("authorization", "")
        try:
            client, _, secret = (
                base64.b64decode(basic.removeprefix("Basic ")).decode().partition(":")
            )
        except ValueError:
            raise _Answer(401, {"error": "invalid_client"}) from None
        if self.oauth_clients.get(client) != secret:
            raise _Answer(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
            self.tokens_issued += 1
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid (tests of the renewal on 401)."""
        with self._lock:
            self.tokens.clear()

    # -- requests ----------------------------------------------------------------------------
    def _state(self, row: Sequence[Any], *, count_poll: bool) -> dict[str, Any]:
        cid, scid, kind, status, object_ref, error, polls = row
        if count_poll:
            polls += 1
            self._db.execute("UPDATE requests SET polls = ? WHERE cid = ?", (polls, cid))
        visible = status if polls >= self.faults.pending_polls else "pending"
        state: dict[str, Any] = {
            "serverCorrelationId": scid,
            "status": visible,
            "notificationMethod": "polling",
            "pollLimit": self.faults.poll_limit,
        }
        if visible == "completed" and object_ref:
            state["objectReference"] = object_ref
        if visible == "failed" and error:
            state["error"] = json.loads(error)
        if visible == "pending":
            state["pendingReason"] = "processing"
        del kind
        return state

    def _request_row(self, column: str, value: str) -> Sequence[Any] | None:
        rows = self._db.execute(
            "SELECT cid, scid, kind, status, object_ref, error, polls FROM requests"
            f" WHERE {column} = ?",
            (value,),
        ).fetchall()
        return rows[0] if rows else None

    def _correlation(self, headers: Mapping[str, str]) -> str:
        cid = headers.get("x-correlationid", "")
        try:
            uuid.UUID(cid)
        except ValueError:
            raise _error(
                400, "validation", "formatError", "X-CorrelationID must be a UUID"
            ) from None
        return cid.lower()

    def _check_transaction(self, body: Any, where: str) -> tuple[str, str, str, str]:
        """``(msisdn, amount, currency, key)`` of a transaction body, or a validation error."""
        if not isinstance(body, dict):
            raise _error(400, "validation", "formatError", f"{where}: not an object")
        parties = body.get("creditParty")
        msisdn = None
        if isinstance(parties, list):
            for party in parties:
                if isinstance(party, dict) and party.get("key") == "msisdn":
                    msisdn = party.get("value")
        if not isinstance(msisdn, str) or not msisdn:
            raise _error(400, "validation", "mandatoryValueNotSupplied", f"{where}: no msisdn")
        amount, currency = body.get("amount"), body.get("currency")
        if not isinstance(currency, str) or currency not in MINOR_UNITS:
            raise _error(400, "validation", "currencyNotSupported", f"{where}: currency")
        try:
            money = parse_amount(str(amount), currency)
        except (ValueError, InvalidInput):
            raise _error(400, "validation", "formatError", f"{where}: amount") from None
        if money.minor <= 0:
            raise _error(400, "validation", "negativeValue", f"{where}: amount")
        key = body.get("requestingOrganisationTransactionReference")
        return msisdn, str(amount), currency, key if isinstance(key, str) else ""

    def _decide(self, msisdn: str, known: str | None = None) -> tuple[str, dict[str, Any] | None]:
        status = known or self.account(msisdn)[0]
        if status == "unregistered":
            return "failed", error_object("identification", "identifierError", "unregistered")
        if status != "available":
            return "failed", error_object("businessRule", "incorrectState", "account " + status)
        return "completed", None

    def disburse(self, headers: Mapping[str, str], body: Any) -> tuple[_Answer, Callable[[], None]]:
        cid = self._correlation(headers)
        msisdn, amount, currency, key = self._check_transaction(body, "transaction")
        debit = body.get("debitParty") or _FLOAT_ACCOUNT
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._request_row("cid", cid) is not None:
                    raise _error(400, "businessRule", "duplicateRequest", "X-CorrelationID seen")
                status, error = self._decide(msisdn)
                scid = str(uuid.uuid4())
                ref = None
                if status == "completed":
                    ref = "TX-" + hashlib.sha256(cid.encode()).hexdigest()[:20].upper()
                    self._db.execute(
                        "INSERT INTO transactions VALUES (?, ?, NULL, ?, ?, ?, ?, 'completed',"
                        " NULL, ?, ?)",
                        (ref, cid, key, msisdn, amount, currency, json.dumps(debit), _now()),
                    )
                self._db.execute(
                    "INSERT INTO requests VALUES (?, ?, 'single', ?, ?, ?, 0, ?)",
                    (cid, scid, status, ref, json.dumps(error) if error else None, _now()),
                )
                row = self._request_row("cid", cid)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        if row is None:  # cannot happen: inserted just above
            raise _error(500, "internal", "genericError", "the request was not recorded")
        state = self._state(row, count_poll=False)
        url = headers.get("x-callback-url")
        if url:
            state["notificationMethod"] = "callback"
        callback = None
        if url:
            if status == "completed" and ref is not None:
                payload = self.transaction(ref)
            else:
                payload = error or {}
            callback = self._callback(url, cid, payload)
        if not url and self.faults.pending_polls == 0:  # settled at once: answer synchronously
            if status == "completed" and ref is not None:
                return _Answer(201, self.transaction(ref)), lambda: None
            if error is not None:
                code = 404 if error["errorCategory"] == "identification" else 400
                return _Answer(code, error), lambda: None
        return _Answer(202, state), callback or (lambda: None)

    def batch(self, headers: Mapping[str, str], body: Any) -> tuple[_Answer, Callable[[], None]]:
        cid = self._correlation(headers)
        if not isinstance(body, dict) or not isinstance(body.get("transactions"), list):
            raise _error(400, "validation", "formatError", "no transactions")
        entries = body["transactions"]
        if not entries:
            raise _error(400, "validation", "formatError", "an empty batch")
        checked = [self._check_transaction(entry, f"transactions[{i}]") for i, entry in
                   enumerate(entries)]  # fmt: skip
        at = _now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._request_row("cid", cid) is not None:
                    raise _error(400, "businessRule", "duplicateRequest", "X-CorrelationID seen")
                batch_id = "B-" + hashlib.sha256(cid.encode()).hexdigest()[:20].upper()
                rows = []
                statuses = self._accounts([msisdn for msisdn, *_ in checked])
                last: tuple[Any, str] = (None, "")  # the same debit party, encoded once
                for number, (entry, (msisdn, amount, currency, key)) in enumerate(
                    zip(entries, checked, strict=True)
                ):
                    status, error = self._decide(msisdn, statuses[msisdn])
                    reason = None
                    if error is not None:
                        reason = f"{error['errorCode']}: {error.get('errordescription', '')}"
                    ref = f"{batch_id}-{number:06d}"
                    debit = entry.get("debitParty") or _FLOAT_ACCOUNT
                    if debit != last[0]:
                        last = (debit, json.dumps(debit, separators=(",", ":")))
                    encoded = last[1]
                    rows.append(
                        (ref, cid, batch_id, key, msisdn, amount, currency, status, reason,
                         encoded, at)
                    )  # fmt: skip
                self._db.executemany(
                    "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                title, description = body.get("batchTitle"), body.get("batchdescription")
                completed = sum(row[7] == "completed" for row in rows)
                self._db.execute(
                    "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (batch_id, cid, title, description, at, completed, len(rows) - completed),
                )
                self._db.execute(
                    "INSERT INTO requests VALUES (?, ?, 'batch', 'completed', ?, NULL, 0, ?)",
                    (cid, str(uuid.uuid4()), batch_id, at),
                )
                row = self._request_row("cid", cid)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        if row is None:  # cannot happen: inserted just above
            raise _error(500, "internal", "genericError", "the request was not recorded")
        state = self._state(row, count_poll=False)
        url = headers.get("x-callback-url")
        callback = None
        if url:
            state["notificationMethod"] = "callback"
            callback = self._callback(url, cid, self.batch_view(batch_id))
        return _Answer(202, state), callback or (lambda: None)

    def request_state(self, scid: str) -> dict[str, Any]:
        with self._lock:
            row = self._request_row("scid", scid)
            if row is None:
                raise _error(404, "identification", "identifierError", "no such request state")
            return self._state(row, count_poll=True)

    def response(self, cid: str) -> dict[str, Any]:
        with self._lock:
            row = self._request_row("cid", cid.lower())
            if row is None:
                raise _error(404, "identification", "identifierError", "no such request")
            state = self._state(row, count_poll=False)
        _cid, scid, kind, _status, object_ref, _error_text, _polls = row
        if state["status"] == "completed" and object_ref:
            if kind == "batch":
                return {"link": f"/batchtransactions/{object_ref}"}
            return {"link": f"/transactions/{object_ref}"}
        return {"link": f"/requeststates/{scid}"}

    def transaction(self, ref: str) -> dict[str, Any]:
        rows = self._query(
            "SELECT ref, key, msisdn, amount, currency, status, debit, created FROM transactions"
            " WHERE ref = ?",
            (ref,),
        )
        if not rows:
            raise _error(404, "identification", "identifierError", "no such transaction")
        ref, key, msisdn, amount, currency, status, debit, created = rows[0]
        body: dict[str, Any] = {
            "transactionReference": ref,
            "creditParty": [{"key": "msisdn", "value": msisdn}],
            "debitParty": json.loads(debit),
            "type": "disbursement",
            "transactionStatus": status,
            "amount": amount,
            "currency": currency,
            "creationDate": created,
        }
        if key:
            body["requestingOrganisationTransactionReference"] = key
        return body

    def batch_view(self, batch_id: str) -> dict[str, Any]:
        rows = self._query(
            "SELECT created, title, description, completed, rejected FROM batches"
            " WHERE batch_id = ?",
            (batch_id,),
        )
        if not rows:
            raise _error(404, "identification", "identifierError", "no such batch")
        created, title, description, completed, rejected = rows[0]
        view: dict[str, Any] = {
            "batchId": batch_id,
            "batchStatus": "completed",
            "approvalDate": created,
            "completionDate": created,
            "completedCount": int(completed),
            "rejectionCount": int(rejected),
            "parsingSuccessCount": int(completed) + int(rejected),
            "creationDate": created,
        }
        if isinstance(title, str):
            view["batchTitle"] = title
        if isinstance(description, str):
            view["batchdescription"] = description
        return view

    def batch_entries(
        self, batch_id: str, completed: bool, limit: int, offset: int
    ) -> tuple[bytes, int, int]:
        """A page of a batch's completions or rejections: ``(JSON array, returned, total)``.
        SQLite builds the JSON (its JSON1 functions): a page of thousands stays cheap."""
        view = self.batch_view(batch_id)  # 404 for an unknown batch
        total = view["completedCount"] if completed else view["rejectionCount"]
        sign = "=" if completed else "!="
        fields = (
            "'completionDate', created, 'link', '/transactions/' || ref"
            if completed
            else "'rejectionReason', coalesce(reason, 'rejected'), 'rejectionDate', created"
        )
        returned, body = self._query(
            "SELECT count(*), coalesce(json_group_array(json(entry)), '[]') FROM ("
            " SELECT json_object('transactionReference', ref,"
            " 'requestingOrganisationTransactionReference', key,"
            " 'creditParty', json_array(json_object('key', 'msisdn', 'value', msisdn)),"
            f" 'debitParty', json(debit), {fields}) AS entry"
            f" FROM transactions WHERE batch_id = ? AND status {sign} 'completed'"
            " ORDER BY ref LIMIT ? OFFSET ?)",
            (batch_id, limit, offset),
        )[0]
        return str(body).encode(), int(returned), int(total)

    # -- callbacks ---------------------------------------------------------------------------
    def _callback(self, url: str, cid: str, payload: Mapping[str, Any]) -> Callable[[], None]:
        """A function that starts delivering the callback (after the answer is written)."""
        if not url.startswith(("http://", "https://")):
            return lambda: None
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Date": x_date(),
            "X-CorrelationID": cid,
            "X-Content-Hash": content_hash(body),
        }
        if self.webhook_secret:
            message = f"msg_{uuid.uuid4().hex}"
            stamp = int(time.time())
            headers["webhook-id"] = message
            headers["webhook-timestamp"] = str(stamp)
            headers["webhook-signature"] = sign_webhook(self.webhook_secret, message, stamp, body)
        times = 2 if self.faults.duplicate_callbacks else 1
        delay = 0.0
        if self.faults.reorder_callbacks:
            with self._lock:
                delay = self._rng.uniform(0.0, 0.2)

        def deliver() -> None:
            try:
                if delay:
                    time.sleep(delay)
                for _ in range(times):
                    request = urllib.request.Request(  # noqa: S310  # http(s) only, checked
                        url, data=body, headers=headers, method="PUT"
                    )
                    with contextlib.suppress(OSError):
                        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
            finally:
                with self._delivered:
                    self._callbacks -= 1
                    self._delivered.notify_all()

        def start() -> None:
            threading.Thread(target=deliver, name="gsma-callback", daemon=True).start()

        with self._lock:
            self._callbacks += 1
        return start


class _Handler(BaseHTTPRequestHandler):
    sandbox: GsmaSandboxServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # the base's name
        """Quiet: the requests carry MSISDNs, which are not for logs."""

    def do_GET(self) -> None:  # http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        sandbox = self.sandbox
        with sandbox._lock:
            sandbox.in_flight += 1
            sandbox.in_flight_peak = max(sandbox.in_flight_peak, sandbox.in_flight)
        try:
            self._serve(method)
        finally:
            with sandbox._lock:
                sandbox.in_flight -= 1

    def _serve(self, method: str) -> None:
        sandbox = self.sandbox
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = urllib.parse.parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        after: Callable[[], None] = lambda: None  # noqa: E731  # the default: nothing
        dropped = False
        try:
            if path == "/oauth/token" and method == "POST":
                raise _Answer(200, sandbox.issue_token(headers, raw))
            sandbox.before(method)
            sandbox.authorise(headers)
            answer, after = self._route(method, path, query, headers, raw)
            if method == "POST" and answer.status in (201, 202) and sandbox.drop():
                dropped = True
        except _Answer as exc:
            answer = exc
        try:  # the callback goes even when the client is gone before its answer
            if dropped:
                self.close_connection = True
                self._record(method, split, headers, raw, None, {}, b"")
                return
            if isinstance(answer.body, bytes):  # JSON already
                body = answer.body
            else:
                body = b"" if answer.body is None else json.dumps(answer.body).encode()
            response_headers = {"X-Date": x_date(), **answer.headers}
            if body:
                response_headers["Content-Type"] = "application/json"
            self.send_response(answer.status)
            for name, value in response_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self._record(method, split, headers, raw, answer.status, response_headers, body)
        finally:
            after()

    def _record(
        self,
        method: str,
        split: urllib.parse.SplitResult,
        headers: Mapping[str, str],
        raw: bytes,
        status: int | None,
        response_headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        sandbox = self.sandbox
        if sandbox.record:
            exchange = Exchange(
                method, split.path, split.query, dict(headers), raw, status,
                dict(response_headers), body,
            )  # fmt: skip
            with sandbox._lock:
                sandbox.exchanges.append(exchange)

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        raw: bytes,
    ) -> tuple[_Answer, Callable[[], None]]:
        sandbox = self.sandbox
        parts = [urllib.parse.unquote(part) for part in path.strip("/").split("/")]
        nothing: Callable[[], None] = lambda: None  # noqa: E731
        if method == "POST":
            claimed = headers.get("x-content-hash")
            if claimed is not None and claimed.lower() != content_hash(raw):
                raise _error(400, "validation", "formatError", "X-Content-Hash does not match")
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise _error(400, "validation", "formatError", "the body is not JSON") from None
            if parts == ["transactions", "type", "disbursement"]:
                return sandbox.disburse(headers, body)
            if parts == ["batchtransactions"]:
                return sandbox.batch(headers, body)
        elif method == "GET":
            if parts == ["heartbeat"]:
                return _Answer(200, {"serviceStatus": "available"}), nothing
            if len(parts) == 2 and parts[0] == "requeststates":
                return _Answer(200, sandbox.request_state(parts[1])), nothing
            if len(parts) == 2 and parts[0] == "responses":
                return _Answer(200, sandbox.response(parts[1])), nothing
            if len(parts) == 2 and parts[0] == "transactions":
                return _Answer(200, sandbox.transaction(parts[1])), nothing
            if len(parts) == 2 and parts[0] == "batchtransactions":
                return _Answer(200, sandbox.batch_view(parts[1])), nothing
            if len(parts) == 3 and parts[0] == "batchtransactions":
                if parts[2] not in ("completions", "rejections"):
                    raise _error(404, "identification", "identifierError", "no such resource")
                try:
                    limit = int(query.get("limit", ["50"])[0])
                    offset = int(query.get("offset", ["0"])[0])
                except ValueError:
                    raise _error(400, "validation", "invalidOffset", "limit/offset") from None
                if limit < 1 or offset < 0:
                    raise _error(400, "validation", "invalidOffset", "limit/offset")
                entries, returned, total = sandbox.batch_entries(
                    parts[1], parts[2] == "completions", min(limit, 5000), offset
                )
                counts = {
                    "X-Records-Available-Count": str(total),
                    "X-Records-Returned-Count": str(returned),
                }
                return _Answer(200, entries, counts), nothing
            if len(parts) == 4 and parts[:2] == ["accounts", "msisdn"]:
                status, name = sandbox.account(parts[2])
                if parts[3] == "status":
                    return _Answer(200, {"accountStatus": status}), nothing
                if parts[3] == "accountname":
                    if status == "unregistered":
                        raise _error(404, "identification", "identifierError", "unregistered")
                    return _Answer(200, {"name": {"fullName": name}} if name else {}), nothing
        raise _error(404, "identification", "identifierError", f"no route {method} {path}")


@contextlib.contextmanager
def gsma_server(**options: Any) -> Iterator[GsmaSandboxServer]:
    """A started :class:`GsmaSandboxServer` for the block (``server.base_url``)."""
    server = GsmaSandboxServer(**options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
