"""A wallet operator written from docs/plugins.md alone, not from our sandboxes.

It keeps its books in a SQLite file that any number of processes share (each call is one
``BEGIN IMMEDIATE`` transaction), so several commands of ours can talk to "the same operator" at
once. What it promises, as the plugin protocol asks of a provider:

* ``submit`` is idempotent by key: a known key is never paid again, and a known key sent with
  another amount or address is refused whole (``ProviderError``); a new key either fails on the
  spot (``FAILED``, no money moves) or is taken (``PENDING``: the money leaves the float now);
* ``status`` answers ``NOT_FOUND`` for a key it never received, else the key's outcome as it
  stands: a taken key is ``PAID``; a key drawn for a return shows ``PAID`` at its first status
  look and ``RETURNED`` from the second on — the money comes back (a negative movement) the
  first time it is seen returned;
* ``parse_report`` reads its own report documents (``report(keys)``): the keys' outcomes now.

Fates are drawn from (seed, key), so every process agrees on them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sap_payments.beneficiaries import Channel, FinancialAddress
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    ProviderError,
    Reason,
    Result,
    ResultKind,
)


def _draw(seed: int, key: str, what: str) -> int:
    """0–999 from (seed, key, what)."""
    digest = hashlib.sha256(f"{seed}|{key}|{what}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000


class OutsiderWallet:
    """An e-wallet operator behind the ``Provider`` protocol, with books in ``books``."""

    def __init__(
        self,
        name: str,
        books: Path,
        *,
        seed: int = 0,
        fail_per_mille: int = 100,
        return_per_mille: int = 200,
        max_batch: int = 40,
    ) -> None:
        self._name = name
        self.books = books
        self.seed = seed
        self.fail_per_mille = fail_per_mille
        self.return_per_mille = return_per_mille
        self._capabilities = Capabilities(
            channels=frozenset({Channel.EWALLET}), max_batch=max_batch, status_query=True
        )
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS payments (key TEXT PRIMARY KEY, amount INTEGER, "
                "address TEXT, fate TEXT, looks INTEGER DEFAULT 0, returned INTEGER DEFAULT 0)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS movements (seq INTEGER PRIMARY KEY, key TEXT, "
                "amount INTEGER)"
            )

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.books, timeout=60, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _fate(self, key: str) -> str:
        if _draw(self.seed, key, "fail") < self.fail_per_mille:
            return "failed"
        if _draw(self.seed, key, "return") < self.return_per_mille:
            return "returned"
        return "paid"

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        answers = []
        with self._transaction() as db:
            for payment in payments:
                row = db.execute(
                    "SELECT amount, address, fate FROM payments WHERE key = ?", (payment.key,)
                ).fetchone()
                if row is not None:
                    if (row[0], row[1]) != (payment.amount.minor, payment.address.key):
                        raise ProviderError(
                            self._name, f"key {payment.key} was sent before with other details"
                        )
                    fate = row[2]
                else:
                    fate = self._fate(payment.key)
                    db.execute(
                        "INSERT INTO payments (key, amount, address, fate) VALUES (?, ?, ?, ?)",
                        (payment.key, payment.amount.minor, payment.address.key, fate),
                    )
                    if fate != "failed":
                        db.execute(
                            "INSERT INTO movements (key, amount) VALUES (?, ?)",
                            (payment.key, payment.amount.minor),
                        )
                if fate == "failed":
                    answers.append(Result(payment.key, ResultKind.FAILED, Reason.REFUSED))
                else:
                    answers.append(Result(payment.key, ResultKind.PENDING))
        return answers

    def _look(self, db: sqlite3.Connection, key: str) -> Result:
        row = db.execute(
            "SELECT amount, fate, looks, returned FROM payments WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return Result(key, ResultKind.NOT_FOUND)
        amount, fate, looks, returned = row
        looks += 1
        db.execute("UPDATE payments SET looks = ? WHERE key = ?", (looks, key))
        if fate == "failed":
            return Result(key, ResultKind.FAILED, Reason.REFUSED)
        if fate == "returned" and looks >= 2:
            if not returned:
                db.execute("UPDATE payments SET returned = 1 WHERE key = ?", (key,))
                db.execute("INSERT INTO movements (key, amount) VALUES (?, ?)", (key, -amount))
            return Result(key, ResultKind.RETURNED, Reason.INACTIVE_WALLET)
        return Result(key, ResultKind.PAID)

    def status(self, keys: Sequence[str]) -> list[Result]:
        with self._transaction() as db:
            return [self._look(db, key) for key in keys]

    def report(self, keys: Sequence[str]) -> bytes:
        """A report document of the keys' outcomes as they stand (each a status look)."""
        with self._transaction() as db:
            results = [self._look(db, key) for key in keys]
        entries = [
            {"key": r.key, "kind": r.kind.value, "reason": r.reason and r.reason.value}
            for r in results
            if r.kind is not ResultKind.NOT_FOUND
        ]
        return json.dumps({"operator": self._name, "results": entries}).encode()

    def parse_report(self, data: bytes) -> list[Result]:
        try:
            document = json.loads(data)
            return [
                Result(
                    entry["key"],
                    ResultKind(entry["kind"]),
                    Reason(entry["reason"]) if entry["reason"] else None,
                )
                for entry in document["results"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(self._name, f"not a report of this operator: {exc}") from None

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=True)

    def close(self) -> None:
        pass

    # -- the operator's books, for the tests -------------------------------------------------
    def net(self) -> dict[str, int]:
        """key → money that left the float for it, net of returns."""
        db = sqlite3.connect(self.books, timeout=60)
        try:
            rows = db.execute("SELECT key, sum(amount) FROM movements GROUP BY key").fetchall()
        finally:
            db.close()
        return {str(key): int(amount) for key, amount in rows}

    def paid_twice(self) -> list[str]:
        """Keys whose money left the float more than once (never, for a correct caller)."""
        db = sqlite3.connect(self.books, timeout=60)
        try:
            rows = db.execute(
                "SELECT key FROM movements WHERE amount > 0 GROUP BY key HAVING count(*) > 1"
            ).fetchall()
        finally:
            db.close()
        return [str(key) for (key,) in rows]
