"""The ledger's SQLite connection: it turns the failures a clerk can act on into the store's own
errors, ``raise … from exc`` (as httpx maps httpcore's exceptions at its boundary):

* ``SQLITE_NOTADB`` → ``NotALedger``: ``--db`` names a CSV, a spreadsheet, random bytes;
* ``SQLITE_CORRUPT`` → ``LedgerDamaged``: a truncated file, a damaged page;
* ``SQLITE_BUSY`` → ``LedgerBusy``: another process held the write lock past the timeout;
* ``SQLITE_FULL`` → ``LedgerFull``: the disk (of the ledger or of its scratch files) is full.

Every statement goes through :class:`LedgerConnection` and its cursors, so the errors are the
same wherever the store meets them: opening the file, taking the write lock, committing, or
reading row after row. Other SQLite errors (a constraint, a bad statement) are bugs and pass
through unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, NoReturn, Self

from sap_payments.errors import LedgerBusy, LedgerDamaged, LedgerFull, NotALedger, StoreError

__all__ = ["BUSY_TIMEOUT", "LedgerConnection", "connect", "translate"]

#: Seconds a command waits for another one's write lock before giving up (``LedgerBusy``).
BUSY_TIMEOUT: Final = 5.0

_ERRORS: Final[dict[int, type[StoreError]]] = {
    sqlite3.SQLITE_NOTADB: NotALedger,
    sqlite3.SQLITE_CORRUPT: LedgerDamaged,
    sqlite3.SQLITE_BUSY: LedgerBusy,
    sqlite3.SQLITE_FULL: LedgerFull,
}


def translate(exc: sqlite3.Error, path: str) -> StoreError | None:
    """The store's error for SQLite's ``exc`` on the ledger at ``path``; None for a bug."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised by the sqlite3 module itself (a closed connection, a bad call)
        return None
    error = _ERRORS.get(code & 0xFF)  # the primary code: SQLITE_BUSY_SNAPSHOT is SQLITE_BUSY
    return None if error is None else error(path)


def _reraise(exc: sqlite3.Error, connection: sqlite3.Connection) -> NoReturn:
    error = translate(exc, getattr(connection, "path", ""))
    if error is None:
        raise exc
    raise error from exc


class LedgerCursor(sqlite3.Cursor):
    """A cursor whose statements and rows raise the store's errors (see the module)."""

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            _reraise(exc, self.connection)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Self:
        try:
            return super().executemany(sql, seq_of_parameters)
        except sqlite3.Error as exc:
            _reraise(exc, self.connection)

    def executescript(self, sql_script: str, /) -> Self:
        try:
            super().executescript(sql_script)
        except sqlite3.Error as exc:
            _reraise(exc, self.connection)
        return self

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.Error as exc:
            _reraise(exc, self.connection)

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        try:
            return super().fetchmany(size)
        except sqlite3.Error as exc:
            _reraise(exc, self.connection)

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.Error as exc:
            _reraise(exc, self.connection)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # a generator, not self
        # Rows a few hundred at a time: mapping errors row by row (a Python ``__next__``) would
        # cost a method call per row on the streaming merges of prepare.
        return _rows(self)


def _rows(cursor: LedgerCursor) -> Iterator[Any]:
    fetch = sqlite3.Cursor.fetchmany
    while True:
        try:
            rows = fetch(cursor, 512)
        except sqlite3.Error as exc:
            _reraise(exc, cursor.connection)
        if not rows:
            return
        yield from rows


class LedgerConnection(sqlite3.Connection):
    """A connection to a ledger (and the scratch files attached to it) whose statements raise
    the store's errors; ``path`` is the ledger file they name."""

    path: str = ""

    def execute(self, sql: str, parameters: Any = (), /) -> LedgerCursor:
        return LedgerCursor(self).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> LedgerCursor:
        return LedgerCursor(self).executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> LedgerCursor:
        return LedgerCursor(self).executescript(sql_script)


def connect(path: Path, *, readonly: bool = False) -> LedgerConnection:
    """Open the ledger at ``path`` (created when missing, unless ``readonly``), in autocommit
    mode (transactions are the store's ``BEGIN``/``COMMIT``), waiting :data:`BUSY_TIMEOUT`
    seconds for another process's write lock.

    Raises:
        StoreError: the file cannot be opened (a missing folder, no permission).
    """
    try:
        if readonly:
            uri = path.resolve().as_uri() + "?mode=ro"
            db = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
                factory=LedgerConnection,
            )
        else:
            db = sqlite3.connect(
                path,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
                factory=LedgerConnection,
            )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the ledger {path}: {exc}") from exc
    db.path = str(path)
    return db
