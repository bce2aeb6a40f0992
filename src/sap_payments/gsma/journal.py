"""The adapter's journal: which correlation id carried each key, written before the request.

An operator deduplicates by ``X-CorrelationID`` only. A single disbursement's id is derived from
its key, so it needs no record; a batch's id is derived from all of its keys, so after a crash a
status query for one key cannot rebuild it. The journal keeps ``(correlation id, key, kind)`` for
every request sent, committed (fsynced) *before* the request leaves: whatever the operator may
have received, the journal knows how to ask about it. It also keeps a key from travelling under
a second correlation id (as a single after a batch, or in another batch) until the operator has
said the first never arrived.

With each key it keeps what the payment was (``digest``: the amount, and 16 bits of a hash of
the wallet number — enough to see that a key now goes to another wallet, too little to say
which), so that a key sent again with another amount or to another wallet is refused before it
leaves: the operator would take it for the first payment, already made.

In memory when no file is given — enough for one process, and for single mode, whose ids need
no journal at all.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["Journal"]

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS sent ("
    " correlation TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL,"
    " digest TEXT, PRIMARY KEY (correlation, key))",
    "CREATE INDEX IF NOT EXISTS sent_key ON sent (key)",
)


class Journal:
    """``(correlation id, key, kind)`` of every request sent; thread-safe."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            ":memory:" if path is None else str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=30,
        )
        if path is not None:
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(sent)")}
        if "digest" not in columns:  # a journal written before the digests were kept
            self._db.execute("ALTER TABLE sent ADD COLUMN digest TEXT")

    def record(
        self,
        correlation: str,
        keys: Iterable[str],
        kind: str,
        digests: Mapping[str, str] | None = None,
    ) -> None:
        """Note that ``keys`` are about to travel under ``correlation`` (committed on return),
        each with its payment's ``digests`` when given."""
        self.record_many([(correlation, key) for key in keys], kind, digests)

    def record_many(
        self,
        pairs: Sequence[tuple[str, str]],
        kind: str,
        digests: Mapping[str, str] | None = None,
    ) -> None:
        at = time.time()
        digests = digests or {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO sent (correlation, key, kind, at, digest)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(cid, key, kind, at, digests.get(key)) for cid, key in pairs],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def correlations(self, keys: Sequence[str]) -> dict[str, list[tuple[str, str, float]]]:
        """key → ``[(correlation id, kind, when sent), ...]`` for the keys ever sent, newest
        first (``when``: seconds since the epoch)."""
        found: dict[str, list[tuple[str, str, float]]] = {}
        for key, correlation, kind, at in self._sent_rows(
            keys, "key, correlation, kind, at", "", " ORDER BY rowid DESC"
        ):
            found.setdefault(key, []).append((correlation, kind, float(at)))
        return found

    def digests(self, keys: Sequence[str]) -> dict[str, set[str]]:
        """key → the digests of the payments it was sent with (keys sent with none left out)."""
        found: dict[str, set[str]] = {}
        for key, digest in self._sent_rows(keys, "key, digest", "digest IS NOT NULL AND ", ""):
            found.setdefault(key, set()).add(digest)
        return found

    def _sent_rows(
        self, keys: Sequence[str], columns: str, condition: str, order: str
    ) -> list[tuple[Any, ...]]:
        """Rows of ``sent`` for ``keys`` (each once), 500 keys a query; the fragments are
        fixed SQL, the keys bound."""
        rows: list[tuple[Any, ...]] = []
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                rows.extend(
                    self._db.execute(
                        f"SELECT {columns} FROM sent WHERE {condition}"
                        f"key IN ({', '.join('?' * len(chunk))}){order}",
                        chunk,
                    ).fetchall()
                )
        return rows

    def keys_of(self, correlation: str) -> list[str]:
        """The keys that travelled under ``correlation``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key FROM sent WHERE correlation = ? ORDER BY rowid", (correlation,)
            ).fetchall()
        return [key for (key,) in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
