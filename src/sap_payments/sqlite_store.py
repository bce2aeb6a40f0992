"""The embedded ledger: one SQLite file in WAL mode, through the standard library.

Schema changes are forward migrations numbered by ``PRAGMA user_version``; opening a database
applies the missing ones in one transaction, and refuses a database newer than this code.

At-most-once is enforced by the schema as well as by the engine: the ``claims`` table holds one
row per month carried by a live instruction (one that is not FAILED, RETURNED, UNCLAIMED or
CANCELLED), keyed by programme, beneficiary and month, so a second claim on a month fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from sap_payments.errors import SchemaVersionError, StoreError
from sap_payments.store import (
    DETAILS_FROM,
    AreaRecord,
    BatchRecord,
    BeneficiaryRecord,
    CycleRecord,
    EventRecord,
    ImportRecord,
    ImportSummary,
    InstructionRecord,
    LineRecord,
    Move,
)

__all__ = ["SQLiteStore", "write_staging"]

#: The beneficiary columns of the table: the key fields, then all details packed in one.
_BENEFICIARY_COLUMNS: Final = (*BeneficiaryRecord._fields[:DETAILS_FROM], "details")
_SEPARATOR: Final = "\x1f"  # the roster import refuses control characters in every field


def _pack(record: BeneficiaryRecord) -> tuple[object, ...]:
    r = record
    details = (
        f"{r.full_name}\x1f{r.birth_date or ''}\x1f{r.sex}\x1f{r.msisdn or ''}\x1f"
        f"{r.bank_bin or ''}\x1f{r.account_number or ''}\x1f{r.pay_point or ''}\x1f"
        f"{r.proxy_name or ''}\x1f{r.proxy_national_id or ''}\x1f{r.proxy_relation or ''}\x1f"
        f"{r.mandate_valid_until or ''}\x1f{r.home_delivery}"
    )
    return (*r[:DETAILS_FROM], details)


def _unpack(row: tuple[Any, ...]) -> BeneficiaryRecord:
    (
        full_name,
        birth_date,
        sex,
        msisdn,
        bank_bin,
        account_number,
        pay_point,
        proxy_name,
        proxy_national_id,
        proxy_relation,
        mandate_valid_until,
        home_delivery,
    ) = row[DETAILS_FROM].split(_SEPARATOR)
    return BeneficiaryRecord._make(
        (
            *row[:DETAILS_FROM],
            full_name,
            birth_date or None,
            sex,
            msisdn or None,
            bank_bin or None,
            account_number or None,
            pay_point or None,
            proxy_name or None,
            proxy_national_id or None,
            proxy_relation or None,
            mandate_valid_until or None,
            int(home_delivery),
        )
    )


_INSTRUCTION_COLUMNS: Final = InstructionRecord._fields
_LINE_COLUMNS: Final = LineRecord._fields

_CLAIMS_FROM_INSTRUCTIONS: Final = (
    "INSERT INTO claims (programme, beneficiary_id, month, instruction_id) "
    "SELECT i.programme, i.beneficiary_id, json_extract(j.value, '$[0]'), i.instruction_id "
    "FROM instructions AS i, json_each(i.lines) AS j"
)

_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the first schema
    """
    CREATE TABLE imports (
        import_id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        rows INTEGER, added INTEGER, changed INTEGER, unchanged INTEGER,
        at TEXT NOT NULL
    );
    CREATE INDEX imports_by_hash ON imports (kind, sha256);

    CREATE TABLE areas (
        commune_code TEXT PRIMARY KEY,
        commune_name TEXT NOT NULL,
        district_code TEXT NOT NULL,
        district_name TEXT NOT NULL,
        province_code TEXT NOT NULL,
        province_name TEXT NOT NULL
    );

    CREATE TABLE beneficiaries (
        beneficiary_id TEXT NOT NULL UNIQUE,
        national_id TEXT,
        province_code TEXT NOT NULL,
        district_code TEXT NOT NULL,
        commune_code TEXT NOT NULL,
        category TEXT NOT NULL,
        coefficient TEXT,
        first_period INTEGER NOT NULL,
        last_period INTEGER,
        paid_through INTEGER,
        status TEXT NOT NULL,
        channel TEXT NOT NULL,
        provider TEXT NOT NULL,
        -- full_name … home_delivery, joined by U+001F: one value to bind, (later) to encrypt
        details TEXT NOT NULL,
        programme TEXT NOT NULL,
        version INTEGER NOT NULL,
        import_id INTEGER NOT NULL,   -- the import that last changed the row
        created_in INTEGER NOT NULL,  -- the import that added it
        seen_in INTEGER NOT NULL,     -- the last import that listed it
        line INTEGER NOT NULL         -- its line in that import
    );
    -- Not unique: an import checks for shared national ids itself, so it can name every row.
    CREATE INDEX beneficiaries_by_national_id
        ON beneficiaries (national_id) WHERE national_id IS NOT NULL;

    CREATE TABLE import_problems (
        import_id INTEGER NOT NULL,
        line INTEGER NOT NULL,
        column_name TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TRIGGER beneficiaries_listed_twice BEFORE UPDATE OF seen_in ON beneficiaries
    WHEN old.seen_in = new.seen_in BEGIN
        INSERT INTO import_problems VALUES
            (new.seen_in, new.line, 'beneficiary_id', 'duplicate of line ' || old.line);
    END;
    CREATE TRIGGER beneficiaries_other_programme BEFORE UPDATE OF programme ON beneficiaries
    WHEN old.programme != new.programme BEGIN
        INSERT INTO import_problems VALUES
            (new.seen_in, new.line, 'beneficiary_id',
             'beneficiary is enrolled in programme ' || old.programme);
    END;
    CREATE TRIGGER beneficiaries_history BEFORE UPDATE ON beneficiaries
    WHEN old.seen_in != new.seen_in AND old.version != new.version BEGIN
        INSERT INTO beneficiary_history VALUES (old.beneficiary_id, old.version, new.seen_in,
            json_array(@OLD_COLUMNS@));
    END;

    CREATE TABLE beneficiary_history (
        beneficiary_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        replaced_by_import INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (beneficiary_id, version)
    ) WITHOUT ROWID;

    CREATE TABLE cycles (
        programme TEXT NOT NULL,
        period INTEGER NOT NULL,
        state TEXT NOT NULL,
        ruleset TEXT NOT NULL,
        prepared_at TEXT NOT NULL,
        approved_at TEXT,
        approved_by TEXT,
        instructions INTEGER NOT NULL,
        total INTEGER NOT NULL,
        currency TEXT NOT NULL,
        PRIMARY KEY (programme, period)
    ) WITHOUT ROWID;

    -- Rows are a few hundred bytes: rowid tables with indexes beat WITHOUT ROWID here.
    CREATE TABLE instructions (
        instruction_id TEXT NOT NULL,
        programme TEXT NOT NULL,
        period INTEGER NOT NULL,
        beneficiary_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        held_reason TEXT,
        channel TEXT NOT NULL,
        provider TEXT NOT NULL,
        address TEXT NOT NULL,
        payee_kind TEXT NOT NULL,
        payee_name TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        currency TEXT NOT NULL,
        lines TEXT NOT NULL,
        province_code TEXT NOT NULL,
        district_code TEXT NOT NULL,
        commune_code TEXT NOT NULL
    );
    CREATE UNIQUE INDEX instructions_by_id ON instructions (instruction_id);
    CREATE UNIQUE INDEX instructions_by_cycle
        ON instructions (programme, period, beneficiary_id, seq);

    -- At most once, in the schema: a claim is a month paid (or being paid) by a live
    -- instruction, one per programme, beneficiary and month. When an instruction ends FAILED,
    -- RETURNED, UNCLAIMED or CANCELLED its claims are deleted and the months are due again;
    -- the instruction's own ``lines`` column keeps what it carried.
    CREATE TABLE claims (
        programme TEXT NOT NULL,
        beneficiary_id TEXT NOT NULL,
        month INTEGER NOT NULL,
        instruction_id TEXT NOT NULL,
        PRIMARY KEY (programme, beneficiary_id, month)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        instruction_id TEXT,
        from_state TEXT,
        to_state TEXT,
        actor TEXT,
        detail TEXT
    );
    """,
    # 2: dispatch — batches (the outbox's manifests), each instruction's batch and outcome,
    # and the settlement figures frozen when a cycle closes
    """
    -- (which batch carried an instruction is the detail of its READY → SUBMITTED event)
    ALTER TABLE instructions ADD COLUMN reason TEXT;
    ALTER TABLE instructions ADD COLUMN provider_reference TEXT;
    -- Failed payments are few: prepare looks for dead addresses here, not in every instruction.
    CREATE INDEX instructions_failed ON instructions (programme, beneficiary_id)
        WHERE state = 'FAILED';

    CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        programme TEXT NOT NULL,
        period INTEGER NOT NULL,
        payments INTEGER NOT NULL,
        control_sum INTEGER NOT NULL,
        currency TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        answered_at TEXT,
        outcome TEXT
    );

    CREATE TABLE settlements (
        programme TEXT NOT NULL,
        period INTEGER NOT NULL,
        provider TEXT NOT NULL,
        province_code TEXT NOT NULL,
        district_code TEXT NOT NULL,
        commune_code TEXT NOT NULL,
        state TEXT NOT NULL,
        count INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        frozen_at TEXT NOT NULL
    );
    CREATE INDEX settlements_by_cycle ON settlements (programme, period);
    """,
)

SCHEMA_VERSION: Final = len(_MIGRATIONS)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, one at a time (triggers hold ";" inside)."""
    script = script.replace("@OLD_COLUMNS@", ", ".join(f"old.{c}" for c in _BENEFICIARY_COLUMNS))
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        raise StoreError(f"migration script ends in an incomplete statement: {buffer[:60]!r}")


def _differs(new: str, old: str) -> str:
    """SQL: the row ``new`` differs from ``old`` in some roster column (NULL-safe)."""
    return "(" + " OR ".join(f"{new}.{c} IS NOT {old}.{c}" for c in _BENEFICIARY_COLUMNS[1:]) + ")"


#: States that release an instruction's claims (its months are due again).
_RELEASING: Final = frozenset({"FAILED", "RETURNED", "UNCLAIMED", "CANCELLED"})

#: SQL: beneficiary_id within [start, stop), either bound open when NULL (bind each twice).
_RANGE: Final = "(? IS NULL OR beneficiary_id >= ?) AND (? IS NULL OR beneficiary_id < ?)"


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _upsert_sql(import_id: int, table: str | None = None) -> str:
    """INSERT … ON CONFLICT of roster rows: bound values (columns, line, programme), or the
    rows of a staging ``table`` in line order (the programme bound)."""
    columns = ", ".join(_BENEFICIARY_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _BENEFICIARY_COLUMNS[1:])
    differs = _differs("excluded", "beneficiaries")
    marks = f"1, {import_id}, {import_id}, {import_id}"
    if table is None:
        source = f"VALUES ({_placeholders(len(_BENEFICIARY_COLUMNS) + 2)}, {marks})"
    else:  # "WHERE true" keeps SQLite from reading ON CONFLICT as a join's ON
        source = f"SELECT {columns}, line, ?, {marks} FROM {table} WHERE true ORDER BY rowid"
    return (
        f"INSERT INTO beneficiaries ({columns}, line, programme, version, import_id, "
        f"created_in, seen_in) {source} "
        f"ON CONFLICT (beneficiary_id) DO UPDATE SET {updates}, programme = excluded.programme, "
        f"version = beneficiaries.version + ({differs}), "
        f"import_id = CASE WHEN {differs} THEN excluded.import_id "
        "ELSE beneficiaries.import_id END, "
        "seen_in = excluded.seen_in, line = excluded.line"
    )


def write_staging(path: Path, rows: Iterable[tuple[int, BeneficiaryRecord]]) -> int:
    """Write checked roster rows to a throw-away SQLite file, for a parallel import."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("DROP TABLE IF EXISTS staging")
        db.execute(f"CREATE TABLE staging ({', '.join(_BENEFICIARY_COLUMNS)}, line INTEGER)")
        db.execute("BEGIN")
        cursor = db.executemany(
            f"INSERT INTO staging VALUES ({_placeholders(len(_BENEFICIARY_COLUMNS) + 1)})",
            ((*_pack(record), line) for line, record in rows),
        )
        db.execute("COMMIT")
        return cursor.rowcount
    finally:
        db.close()


class SQLiteStore:
    """A ledger in one SQLite file.

    Args:
        path: the database file; created with the current schema when missing.
        durable: fsync on every commit (``synchronous=FULL``). Turn off only for throw-away
            databases in tests.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, durable: bool = True, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._db = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the ledger {self.path}: {exc}") from exc
        self._depth = 0
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self.scratch_paths: list[Path] = []
        db = self._db
        if not readonly:
            db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'OFF'}")
        # 128 MiB page cache for the writer; a read-only worker streams and needs little.
        db.execute(f"PRAGMA cache_size = {-65536 if readonly else -131072}")
        self._migrate()

    # -- plumbing -------------------------------------------------------------------------
    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            raise StoreError(f"the ledger {self.path} needs migrating; open it for writing once")
        self._db.execute("BEGIN IMMEDIATE")  # nothing is attached yet
        try:
            for number in range(version, SCHEMA_VERSION):
                for statement in _statements(_MIGRATIONS[number]):
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        # Take the write lock on the ledger at once, and on the ledger only: attached scratch
        # files stay writable for worker processes (BEGIN IMMEDIATE would lock them too).
        self._db.execute("BEGIN")
        try:
            self._db.execute("UPDATE main.imports SET kind = kind WHERE 0")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def scratch(self, count: int) -> list[str]:
        """Names of ``count`` attached scratch databases that worker processes may write
        (their files are :attr:`scratch_paths`); call outside a transaction."""
        if len(self.scratch_paths) < count:
            if self._depth:
                raise StoreError("scratch files must be attached outside a transaction")
            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="sap-payments-")
            for number in range(len(self.scratch_paths), count):
                path = Path(self._scratch.name) / f"scratch{number}.db"
                self._db.execute(f"ATTACH DATABASE ? AS scratch{number}", (str(path),))
                self.scratch_paths.append(path)
        return [f"scratch{number}" for number in range(count)]

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- roster -----------------------------------------------------------------------------
    def upsert_roster(
        self, programme: str, import_id: int, rows: Iterable[tuple[int, BeneficiaryRecord]]
    ) -> int:
        (before,) = self._db.execute("SELECT count(*) FROM beneficiaries").fetchone()
        self._db.executemany(
            _upsert_sql(import_id),
            ((*_pack(record), line, programme) for line, record in rows),
        )
        (after,) = self._db.execute("SELECT count(*) FROM beneficiaries").fetchone()
        return int(after - before)

    def upsert_staged(self, programme: str, import_id: int, names: Sequence[str]) -> int:
        """:meth:`upsert_roster` from attached staging files, in their order."""
        (before,) = self._db.execute("SELECT count(*) FROM beneficiaries").fetchone()
        for name in names:
            self._db.execute(_upsert_sql(import_id, f"{name}.staging"), (programme,))
            self._db.execute(f"DELETE FROM {name}.staging")
        (after,) = self._db.execute("SELECT count(*) FROM beneficiaries").fetchone()
        return int(after - before)

    def roster_problems(self, import_id: int) -> Iterator[tuple[int, str, str]]:
        db = self._db
        yield from db.execute(
            "SELECT line, column_name, reason FROM import_problems WHERE import_id = ?",
            (import_id,),
        )
        shared = [
            national_id
            for (national_id,) in db.execute(
                "SELECT national_id FROM beneficiaries WHERE national_id IS NOT NULL "
                "GROUP BY national_id HAVING count(*) > 1"
            )
        ]
        for national_id in shared:
            holders = db.execute(
                "SELECT beneficiary_id, seen_in = ?, line FROM beneficiaries "
                "WHERE national_id = ? ORDER BY seen_in = ?, line",
                (import_id, national_id, import_id),
            ).fetchall()
            first_id, first_listed, first_line = holders[0]
            for _, listed, line in holders[1:]:
                if listed:
                    yield (
                        line,
                        "national_id",
                        f"duplicate of line {first_line}"
                        if first_listed
                        else f"national id already belongs to beneficiary {first_id}",
                    )
        if db.execute("SELECT 1 FROM areas LIMIT 1").fetchone():
            yield from db.execute(
                "SELECT b.line, 'commune_code', 'unknown commune ' || b.commune_code "
                "FROM beneficiaries AS b LEFT JOIN areas AS a USING (commune_code) "
                "WHERE b.seen_in = ? AND a.commune_code IS NULL",
                (import_id,),
            )
            yield from db.execute(
                "SELECT b.line, 'district_code', 'commune ' || b.commune_code || ' lies in "
                "province ' || a.province_code || ', district ' || "
                "CASE a.district_code WHEN '' THEN '(none)' ELSE a.district_code END "
                "FROM beneficiaries AS b JOIN areas AS a USING (commune_code) "
                "WHERE b.seen_in = ? AND (a.province_code != b.province_code "
                "OR a.district_code != b.district_code)",
                (import_id,),
            )

    def changed_in(self, import_id: int) -> int:
        (count,) = self._db.execute(
            "SELECT count(*) FROM beneficiary_history WHERE replaced_by_import = ?", (import_id,)
        ).fetchone()
        return int(count)

    def find_import(self, kind: str, sha256: str) -> ImportRecord | None:
        row = self._db.execute(
            "SELECT import_id, kind, source, sha256, rows, added, changed, unchanged, at "
            "FROM imports WHERE kind = ? AND sha256 = ? AND rows IS NOT NULL "
            "ORDER BY import_id DESC LIMIT 1",
            (kind, sha256),
        ).fetchone()
        return ImportRecord(*row) if row else None

    def add_import(self, kind: str, source: str, sha256: str, at: str) -> int:
        cursor = self._db.execute(
            "INSERT INTO imports (kind, source, sha256, at) VALUES (?, ?, ?, ?)",
            (kind, source, sha256, at),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_import(self, import_id: int, rows: int, summary: ImportSummary) -> None:
        self._db.execute(
            "UPDATE imports SET rows = ?, added = ?, changed = ?, unchanged = ? "
            "WHERE import_id = ?",
            (rows, *summary, import_id),
        )

    def upsert_areas(self, rows: Iterable[AreaRecord]) -> int:
        cursor = self._db.executemany(
            "INSERT INTO areas (province_code, province_name, district_code, district_name, "
            "commune_code, commune_name) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (commune_code) DO UPDATE SET province_code = excluded.province_code, "
            "province_name = excluded.province_name, district_code = excluded.district_code, "
            "district_name = excluded.district_name, commune_name = excluded.commune_name",
            rows,
        )
        return cursor.rowcount

    def areas(self) -> Iterator[AreaRecord]:
        for row in self._db.execute(
            "SELECT province_code, province_name, district_code, district_name, commune_code, "
            "commune_name FROM areas ORDER BY province_code, district_code, commune_code"
        ):
            yield AreaRecord(*row)

    def beneficiary(self, beneficiary_id: str) -> BeneficiaryRecord | None:
        row = self._db.execute(
            f"SELECT {', '.join(_BENEFICIARY_COLUMNS)} FROM beneficiaries WHERE beneficiary_id = ?",
            (beneficiary_id,),
        ).fetchone()
        return _unpack(row) if row else None

    def beneficiaries(
        self, programme: str, start: str | None = None, stop: str | None = None
    ) -> Iterator[BeneficiaryRecord]:
        cursor = self._db.execute(
            f"SELECT {', '.join(_BENEFICIARY_COLUMNS)} FROM beneficiaries "
            f"WHERE programme = ? AND {_RANGE} ORDER BY beneficiary_id",
            (programme, start, start, stop, stop),
        )
        while batch := cursor.fetchmany(4096):
            for row in batch:
                yield _unpack(row)

    def beneficiaries_by_area(self, programme: str, period: int) -> list[tuple[str, str, str, int]]:
        return [
            (str(province), str(district), str(commune), int(count))
            for province, district, commune, count in self._db.execute(
                "SELECT province_code, district_code, commune_code, count(*) FROM beneficiaries "
                "WHERE programme = ? AND (last_period IS NULL OR last_period >= ?) "
                "GROUP BY province_code, district_code, commune_code",
                (programme, period),
            )
        ]

    def beneficiary_history(self, beneficiary_id: str) -> list[tuple[int, BeneficiaryRecord]]:
        return [
            (version, _unpack(json.loads(record)))
            for version, record in self._db.execute(
                "SELECT version, record FROM beneficiary_history WHERE beneficiary_id = ? "
                "ORDER BY version",
                (beneficiary_id,),
            )
        ]

    # -- cycles -----------------------------------------------------------------------------
    def cycle(self, programme: str, period: int) -> CycleRecord | None:
        row = self._db.execute(
            f"SELECT {', '.join(CycleRecord._fields)} FROM cycles "
            "WHERE programme = ? AND period = ?",
            (programme, period),
        ).fetchone()
        return CycleRecord._make(row) if row else None

    def cycles(self, programme: str) -> list[CycleRecord]:
        return [
            CycleRecord._make(row)
            for row in self._db.execute(
                f"SELECT {', '.join(CycleRecord._fields)} FROM cycles WHERE programme = ? "
                "ORDER BY period",
                (programme,),
            )
        ]

    def save_cycle(self, cycle: CycleRecord) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO cycles ({', '.join(CycleRecord._fields)}) "
            f"VALUES ({_placeholders(len(CycleRecord._fields))})",
            cycle,
        )

    def live_months(
        self,
        programme: str,
        exclude_period: int,
        start: str | None = None,
        stop: str | None = None,
    ) -> Iterator[tuple[str, int]]:
        cursor = self._db.execute(
            "SELECT beneficiary_id, month FROM claims "
            f"WHERE programme = ? AND {_RANGE} AND instruction_id NOT IN ("
            "  SELECT instruction_id FROM instructions WHERE programme = ? AND period = ?) "
            "ORDER BY beneficiary_id, month",
            (programme, start, start, stop, stop, programme, exclude_period),
        )
        while batch := cursor.fetchmany(4096):
            yield from batch

    def cycle_instructions(
        self,
        programme: str,
        period: int,
        *,
        with_lines: bool = False,
        start: str | None = None,
        stop: str | None = None,
    ) -> Iterator[tuple[InstructionRecord, list[LineRecord]]]:
        cursor = self._db.execute(
            f"SELECT {', '.join(_INSTRUCTION_COLUMNS)} FROM instructions "
            f"WHERE programme = ? AND period = ? AND {_RANGE} ORDER BY beneficiary_id, seq",
            (programme, period, start, start, stop, stop),
        )
        make = InstructionRecord._make
        if not with_lines:
            while batch := cursor.fetchmany(4096):
                for row in batch:
                    yield make(row), []
            return
        loads = json.loads
        while batch := cursor.fetchmany(4096):
            for row in batch:
                record = make(row)
                yield (
                    record,
                    [
                        LineRecord(record.instruction_id, programme, record.beneficiary_id, *line)
                        for line in loads(record.lines)
                    ],
                )

    def instruction(self, instruction_id: str) -> InstructionRecord | None:
        row = self._db.execute(
            f"SELECT {', '.join(_INSTRUCTION_COLUMNS)} FROM instructions WHERE instruction_id = ?",
            (instruction_id,),
        ).fetchone()
        return InstructionRecord._make(row) if row else None

    def beneficiary_instructions(
        self, programme: str, beneficiary_id: str
    ) -> list[InstructionRecord]:
        return [
            InstructionRecord._make(row)
            for row in self._db.execute(
                f"SELECT {', '.join(_INSTRUCTION_COLUMNS)} FROM instructions "
                "WHERE programme = ? AND beneficiary_id = ? ORDER BY period, seq",
                (programme, beneficiary_id),
            )
        ]

    def insert_instructions(self, instructions: Sequence[InstructionRecord], at: str) -> None:
        if not instructions:
            return
        watermark = self._watermark()
        self._db.executemany(
            f"INSERT INTO instructions ({', '.join(_INSTRUCTION_COLUMNS)}) "
            f"VALUES ({_placeholders(len(_INSTRUCTION_COLUMNS))})",
            instructions,
        )
        self._derive(watermark, at)

    def insert_instructions_from(self, table: str, at: str) -> int:
        """:meth:`insert_instructions` from a scratch table of instruction rows."""
        watermark = self._watermark()
        columns = ", ".join(_INSTRUCTION_COLUMNS)
        cursor = self._db.execute(
            f"INSERT INTO instructions ({columns}) SELECT {columns} FROM {table} ORDER BY rowid"
        )
        self._derive(watermark, at)
        return cursor.rowcount

    def _watermark(self) -> int:
        (watermark,) = self._db.execute(
            "SELECT coalesce(max(rowid), 0) FROM instructions"
        ).fetchone()
        return int(watermark)

    def _derive(self, watermark: int, at: str) -> None:
        """Lines and events of the instructions past ``watermark``, derived set-wise from the
        rows just written: no second round of parameter binding per row."""
        db = self._db
        db.execute(_CLAIMS_FROM_INSTRUCTIONS + " WHERE i.rowid > ?", (watermark,))
        db.execute(
            "INSERT INTO events (at, kind, instruction_id, from_state, to_state) "
            "SELECT ?, 'instruction.created', instruction_id, NULL, 'CREATED' FROM instructions "
            "WHERE rowid > ? ORDER BY rowid",
            (at, watermark),
        )
        db.execute(
            "INSERT INTO events (at, kind, instruction_id, from_state, to_state, detail) "
            "SELECT ?, 'instruction.held', instruction_id, 'CREATED', 'HELD', held_reason "
            "FROM instructions WHERE rowid > ? AND state = 'HELD' ORDER BY rowid",
            (at, watermark),
        )

    def split_points(self, programme: str, parts: int) -> list[str]:
        """beneficiary_ids that cut the programme's beneficiaries into ``parts`` even ranges."""
        (total,) = self._db.execute(
            "SELECT count(*) FROM beneficiaries WHERE programme = ?", (programme,)
        ).fetchone()
        points: list[str] = []
        for k in range(1, parts):
            row = self._db.execute(
                "SELECT beneficiary_id FROM beneficiaries WHERE programme = ? "
                "ORDER BY beneficiary_id LIMIT 1 OFFSET ?",
                (programme, total * k // parts),
            ).fetchone()
            if row is not None and (not points or row[0] > points[-1]):
                points.append(row[0])
        return points

    def cycle_totals(self, programme: str, period: int) -> list[tuple[str, str, str, int, int]]:
        return [
            (str(state), str(provider), str(commune), int(count), int(amount))
            for state, provider, commune, count, amount in self._db.execute(
                "SELECT state, provider, commune_code, count(*), sum(amount) FROM instructions "
                "WHERE programme = ? AND period = ? GROUP BY state, provider, commune_code "
                "ORDER BY state, provider, commune_code",
                (programme, period),
            )
        ]

    def replace_instruction(self, instruction: InstructionRecord) -> None:
        db = self._db
        db.execute(
            "DELETE FROM claims WHERE programme = ? AND beneficiary_id = ? AND instruction_id = ?",
            (instruction.programme, instruction.beneficiary_id, instruction.instruction_id),
        )
        updates = ", ".join(f"{c} = ?" for c in _INSTRUCTION_COLUMNS)
        db.execute(
            f"UPDATE instructions SET {updates} WHERE instruction_id = ?",
            (*instruction, instruction.instruction_id),
        )
        db.execute(
            _CLAIMS_FROM_INSTRUCTIONS + " WHERE i.instruction_id = ?", (instruction.instruction_id,)
        )

    def set_state(
        self, instruction_ids: Sequence[str], to_state: str, *, release_lines: bool
    ) -> None:
        db = self._db
        db.executemany(
            "UPDATE instructions SET state = ? WHERE instruction_id = ?",
            ((to_state, instruction_id) for instruction_id in instruction_ids),
        )
        if release_lines:
            db.executemany(
                "DELETE FROM claims WHERE (programme, beneficiary_id, instruction_id) = "
                "(SELECT programme, beneficiary_id, instruction_id FROM instructions "
                " WHERE instruction_id = ?)",
                ((instruction_id,) for instruction_id in instruction_ids),
            )

    def bulk_transition(
        self,
        programme: str,
        period: int,
        from_state: str,
        to_state: str,
        event: EventRecord,
        *,
        release_lines: bool,
    ) -> int:
        db = self._db
        db.execute(
            "INSERT INTO events (at, kind, instruction_id, from_state, to_state, actor, detail) "
            "SELECT ?, ?, instruction_id, state, ?, ?, "
            "CASE WHEN ? IS NULL THEN held_reason ELSE ? END "
            "FROM instructions WHERE programme = ? AND period = ? AND state = ? "
            "ORDER BY beneficiary_id, seq",
            (
                event.at,
                event.kind,
                to_state,
                event.actor,
                event.detail,
                event.detail,
                programme,
                period,
                from_state,
            ),
        )
        if release_lines:
            db.executemany(
                "DELETE FROM claims WHERE programme = ? AND beneficiary_id = ? "
                "AND instruction_id = ?",
                db.execute(
                    "SELECT programme, beneficiary_id, instruction_id FROM instructions "
                    "WHERE programme = ? AND period = ? AND state = ?",
                    (programme, period, from_state),
                ).fetchall(),
            )
        cursor = db.execute(
            "UPDATE instructions SET state = ? WHERE programme = ? AND period = ? AND state = ?",
            (to_state, programme, period, from_state),
        )
        return cursor.rowcount

    def append_events(self, events: Iterable[EventRecord]) -> None:
        self._db.executemany(
            "INSERT INTO events (at, kind, instruction_id, from_state, to_state, actor, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            events,
        )

    # -- dispatch ---------------------------------------------------------------------------
    def instructions_in_states(
        self, programme: str, period: int, states: Sequence[str]
    ) -> list[InstructionRecord]:
        marks = _placeholders(len(states))
        return [
            InstructionRecord._make(row)
            for row in self._db.execute(
                f"SELECT {', '.join(_INSTRUCTION_COLUMNS)} FROM instructions "
                f"WHERE programme = ? AND period = ? AND state IN ({marks})",
                (programme, period, *states),
            )
        ]

    def instruction_ids_in_state(
        self, programme: str, period: int, state: str
    ) -> list[tuple[str, str]]:
        return [
            (str(ident), str(provider))
            for ident, provider in self._db.execute(
                "SELECT instruction_id, provider FROM instructions WHERE programme = ? "
                "AND period = ? AND state = ? ORDER BY provider, beneficiary_id, seq",
                (programme, period, state),
            )
        ]

    def instructions_by_id(self, instruction_ids: Sequence[str]) -> list[InstructionRecord]:
        found: list[InstructionRecord] = []
        make = InstructionRecord._make
        columns = ", ".join(_INSTRUCTION_COLUMNS)
        for start in range(0, len(instruction_ids), 999):
            chunk = instruction_ids[start : start + 999]
            cursor = self._db.execute(
                f"SELECT {columns} FROM instructions "
                f"WHERE instruction_id IN ({_placeholders(len(chunk))})",
                chunk,
            )
            found.extend(map(make, cursor.fetchall()))
        return found

    def add_batch(self, batch: BatchRecord) -> None:
        self._db.execute(
            f"INSERT INTO batches ({', '.join(BatchRecord._fields)}) "
            f"VALUES ({_placeholders(len(BatchRecord._fields))})",
            batch,
        )

    def answer_batch(self, batch_id: str, at: str, outcome: str) -> None:
        self._db.execute(
            "UPDATE batches SET answered_at = ?, outcome = ? WHERE batch_id = ?",
            (at, outcome, batch_id),
        )

    def batches(self, programme: str, period: int) -> list[BatchRecord]:
        return [
            BatchRecord._make(row)
            for row in self._db.execute(
                f"SELECT {', '.join(BatchRecord._fields)} FROM batches "
                "WHERE programme = ? AND period = ? ORDER BY created_at, batch_id",
                (programme, period),
            )
        ]

    def apply_moves(self, moves: Sequence[Move], at: str, actor: str | None) -> None:
        if not moves:
            return
        db = self._db
        # Moves that set nothing but the state go set-wise, a statement for each state and up
        # to 500 instructions; those with a reason or reference one row at a time.
        plain: dict[str, list[str]] = {}
        detailed = []
        for m in moves:
            if m.reason is None and m.provider_reference is None:
                plain.setdefault(m.to_state, []).append(m.instruction_id)
            else:
                detailed.append((m.to_state, m.reason, m.provider_reference, m.instruction_id))
        for to_state, idents in plain.items():
            for start in range(0, len(idents), 500):
                chunk = idents[start : start + 500]
                db.execute(
                    "UPDATE instructions SET state = ? "
                    f"WHERE instruction_id IN ({_placeholders(len(chunk))})",
                    (to_state, *chunk),
                )
        db.executemany(
            "UPDATE instructions SET state = ?, reason = coalesce(?, reason), "
            "provider_reference = coalesce(?, provider_reference) WHERE instruction_id = ?",
            detailed,
        )
        released = [(m.instruction_id,) for m in moves if m.to_state in _RELEASING]
        if released:
            db.executemany(
                "DELETE FROM claims WHERE (programme, beneficiary_id, instruction_id) = "
                "(SELECT programme, beneficiary_id, instruction_id FROM instructions "
                " WHERE instruction_id = ?)",
                released,
            )
        db.executemany(
            "INSERT INTO events (at, kind, instruction_id, from_state, to_state, actor, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (at, m.kind, m.instruction_id, m.from_state, m.to_state, actor, m.detail)
                for m in moves
            ),
        )

    def outcomes(self, programme: str, period: int) -> dict[str, tuple[str | None, str | None]]:
        return {
            str(ident): (reason, reference)
            for ident, reason, reference in self._db.execute(
                "SELECT instruction_id, reason, provider_reference FROM instructions "
                "WHERE programme = ? AND period = ?",
                (programme, period),
            )
        }

    def dead_addresses(
        self,
        programme: str,
        reasons: Sequence[str],
        start: str | None = None,
        stop: str | None = None,
    ) -> Iterator[tuple[str, str]]:
        cursor = self._db.execute(
            "SELECT beneficiary_id, address FROM instructions "
            f"WHERE programme = ? AND state = 'FAILED' AND {_RANGE} "
            f"AND reason IN ({_placeholders(len(reasons))}) ORDER BY beneficiary_id",
            (programme, start, start, stop, stop, *reasons),
        )
        while batch := cursor.fetchmany(4096):
            yield from batch

    def freeze_settlement(self, programme: str, period: int, at: str) -> None:
        self._db.execute(
            "DELETE FROM settlements WHERE programme = ? AND period = ?", (programme, period)
        )
        self._db.execute(
            "INSERT INTO settlements SELECT programme, period, provider, province_code, "
            "district_code, commune_code, state, count(*), sum(amount), ? FROM instructions "
            "WHERE programme = ? AND period = ? GROUP BY provider, province_code, "
            "district_code, commune_code, state",
            (at, programme, period),
        )

    def settlement(
        self, programme: str, period: int
    ) -> list[tuple[str, str, str, str, str, int, int]]:
        frozen = self._db.execute(
            "SELECT provider, province_code, district_code, commune_code, state, count, amount "
            "FROM settlements WHERE programme = ? AND period = ? "
            "ORDER BY provider, province_code, district_code, commune_code, state",
            (programme, period),
        ).fetchall()
        if frozen:
            return [tuple(row) for row in frozen]
        return [
            tuple(row)
            for row in self._db.execute(
                "SELECT provider, province_code, district_code, commune_code, state, count(*), "
                "sum(amount) FROM instructions WHERE programme = ? AND period = ? "
                "GROUP BY provider, province_code, district_code, commune_code, state "
                "ORDER BY provider, province_code, district_code, commune_code, state",
                (programme, period),
            )
        ]

    def events(self, instruction_id: str | None = None) -> Iterator[tuple[int, EventRecord]]:
        columns = "seq, at, kind, instruction_id, from_state, to_state, actor, detail"
        if instruction_id is None:
            cursor = self._db.execute(f"SELECT {columns} FROM events ORDER BY seq")
        else:
            cursor = self._db.execute(
                f"SELECT {columns} FROM events WHERE instruction_id = ? ORDER BY seq",
                (instruction_id,),
            )
        for seq, *rest in cursor:
            yield seq, EventRecord(*rest)

    def count_beneficiaries(self, programme: str) -> int:
        (total,) = self._db.execute(
            "SELECT count(*) FROM beneficiaries WHERE programme = ?", (programme,)
        ).fetchone()
        return int(total)

    def query(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run a read-only query (reports and tests); never used to change the ledger."""
        return list(self._db.execute(sql, parameters))
