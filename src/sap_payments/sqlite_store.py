"""The embedded ledger: one SQLite file in WAL mode, through the standard library.

Schema changes are forward migrations numbered by ``PRAGMA user_version``; opening a database
applies the missing ones in one transaction, and refuses a database newer than this code.

At-most-once is enforced by the schema as well as by the engine: the ``claims`` table holds one
row per month carried by a live instruction (one that is not FAILED, RETURNED, UNCLAIMED or
CANCELLED), keyed by programme, beneficiary and month, so a second claim on a month fails.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from sap_payments import _sqlite
from sap_payments._chain import (
    EVENT_COLUMNS,
    GENESIS,
    address_fingerprinter,
    event_hash,
    instruction_content,
)
from sap_payments._scratch import remove_orphaned_scratch, scratch_directory
from sap_payments.crypto import (
    ERASED,
    KEYRING_ENV,
    Cipher,
    Keyring,
    KeyringError,
    KeyringMismatch,
    KeyringNotFound,
    default_keyring_path,
)
from sap_payments.errors import ConcurrentUpdate, NotALedger, SchemaVersionError, StoreError
from sap_payments.store import (
    DETAILS_FROM,
    ApprovalEntry,
    ApprovalRecord,
    ApproverKey,
    AreaRecord,
    BatchRecord,
    BeneficiaryRecord,
    CampaignRecord,
    CampaignTarget,
    CheckpointRecord,
    CycleRecord,
    EnrolmentAttempt,
    EventRecord,
    FlagRecord,
    ImportRecord,
    ImportSummary,
    InstructionRecord,
    LeaseRecord,
    LineRecord,
    MandateUpdate,
    Move,
    ReviewItem,
)

__all__ = ["SQLiteStore", "write_staging"]

log = logging.getLogger(__name__)

#: The beneficiary columns of the table: the key fields, then all details packed in one.
_BENEFICIARY_COLUMNS: Final = (*BeneficiaryRecord._fields[:DETAILS_FROM], "details")
_SEPARATOR: Final = "\x1f"  # the roster import refuses control characters in every field


def _pack(record: BeneficiaryRecord) -> tuple[object, ...]:
    """The row in plaintext: the key fields, then every personal detail (the national id
    first) joined by U+001F in one value — the one value :func:`_seal_row` encrypts."""
    return (*record[:DETAILS_FROM], _details(record))


def _details(r: BeneficiaryRecord) -> str:
    return (
        f"{r.national_id or ''}\x1f{r.full_name}\x1f{r.birth_date or ''}\x1f{r.sex}\x1f"
        f"{r.msisdn or ''}\x1f{r.bank_bin or ''}\x1f{r.account_number or ''}\x1f"
        f"{r.pay_point or ''}\x1f{r.proxy_name or ''}\x1f{r.proxy_national_id or ''}\x1f"
        f"{r.proxy_relation or ''}\x1f{r.mandate_valid_until or ''}\x1f{r.home_delivery}"
    )


def _unpack(row: tuple[Any, ...]) -> BeneficiaryRecord:
    """The record of a plaintext row (:func:`_pack`'s, or one written before the national id
    moved into the details: 12 fields, the national id in its own column)."""
    fields = row[DETAILS_FROM].split(_SEPARATOR)
    national_id = (fields.pop(0) or None) if len(fields) == 13 else row[1]
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
    ) = fields
    return BeneficiaryRecord._make(
        (
            row[0],
            national_id,
            *row[2:DETAILS_FROM],
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


def _pack_address(beneficiary_id: str, key: str) -> str:
    """A financial address key (``ewallet:…``, ``bank:…:…``) packed as a beneficiary's details
    are (so whatever protects ``details`` at rest protects it too)."""
    kind, _, rest = key.partition(":")
    msisdn = rest if kind == "ewallet" else None
    bank_bin, _, account = rest.partition(":") if kind == "bank" else ("", "", "")
    if not (msisdn or (bank_bin and account)):
        raise StoreError(f"beneficiary {beneficiary_id}: not an account address ({kind})")
    record = BeneficiaryRecord(
        beneficiary_id, None, "", "", "", "", None, 0, None, None, "", kind, "", "", None, "",
        msisdn, bank_bin or None, account or None, None, None, None, None, None, 0,
    )  # fmt: skip
    return str(_pack(record)[DETAILS_FROM])


def _unpack_address(beneficiary_id: str, details: str) -> str:
    """The address key :func:`_pack_address` packed."""
    blank = (beneficiary_id, None, "", "", "", "", None, 0, None, None, "", "", "")
    record = _unpack((*blank, details))
    if record.msisdn:
        return f"ewallet:{record.msisdn}"
    return f"bank:{record.bank_bin}:{record.account_number}"


_INSTRUCTION_COLUMNS: Final = InstructionRecord._fields
#: The beneficiary columns as stored: the national id column stays empty (it is sealed inside
#: ``details``), then the blind indexes and the keyed digest of the details.
#: The blind-index column of each lookup purpose.
_INDEX_COLUMNS: Final = {
    "national_id": "national_id_index",
    "msisdn": "msisdn_index",
    "account": "account_index",
}
_STORED_COLUMNS: Final = (
    *_BENEFICIARY_COLUMNS,
    "national_id_index",
    "msisdn_index",
    "account_index",
    "digest",
)
_COMPARED: Final = tuple(
    c
    for c in _STORED_COLUMNS[1:]
    if c not in {"national_id", "details"} and not c.endswith("_index")
)
#: The instruction columns as stored: address and payee_name stay empty, sealed together in
#: ``payee`` (in the plaintext mode they are kept as they are and ``payee`` is NULL).
_INSTRUCTION_STORED: Final = (*_INSTRUCTION_COLUMNS, "payee")
_ADDRESS: Final = _INSTRUCTION_COLUMNS.index("address")
_PAYEE_NAME: Final = _INSTRUCTION_COLUMNS.index("payee_name")
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
    # 3: postal cash — flags raised on beneficiaries (re-verification after unclaimed months)
    """
    CREATE TABLE flags (
        flag_id INTEGER PRIMARY KEY,
        programme TEXT NOT NULL,
        beneficiary_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        raised_at TEXT NOT NULL,
        detail TEXT,
        cleared_at TEXT
    );
    -- one open flag of a kind per beneficiary
    CREATE UNIQUE INDEX flags_open ON flags (programme, beneficiary_id, kind)
        WHERE cleared_at IS NULL;
    """,
    # 4: enrolment campaigns — campaigns, their targets and attempts, and the mandate updates
    # they schedule (a beneficiary's switch to the new account from a benefit month on)
    """
    CREATE TABLE campaigns (
        name TEXT PRIMARY KEY,
        programme TEXT NOT NULL,
        provider TEXT NOT NULL,
        channel TEXT NOT NULL,
        target_channel TEXT NOT NULL,
        communes TEXT NOT NULL,
        districts TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT
    ) WITHOUT ROWID;

    CREATE TABLE campaign_targets (
        campaign TEXT NOT NULL,
        beneficiary_id TEXT NOT NULL,
        province_code TEXT NOT NULL,
        district_code TEXT NOT NULL,
        commune_code TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        updated_at TEXT NOT NULL,
        -- personal: the new account, packed and sealed like beneficiaries.details (bound to
        -- campaign_targets|details|<beneficiary_id>), until it is scheduled
        details BLOB,
        PRIMARY KEY (campaign, beneficiary_id)
    ) WITHOUT ROWID;

    CREATE TABLE enrolment_attempts (
        seq INTEGER PRIMARY KEY,
        campaign TEXT NOT NULL,
        beneficiary_id TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT,
        source TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT,
        provider_reference TEXT
    );
    CREATE INDEX enrolment_attempts_by_campaign ON enrolment_attempts (campaign);

    CREATE TABLE mandate_updates (
        campaign TEXT NOT NULL,
        beneficiary_id TEXT NOT NULL,
        programme TEXT NOT NULL,
        from_period INTEGER NOT NULL,
        channel TEXT NOT NULL,
        provider TEXT NOT NULL,
        -- personal: the new account, packed and sealed like beneficiaries.details (bound to
        -- mandate_updates|details|<beneficiary_id>); NULL once applied
        details BLOB,
        state TEXT NOT NULL,
        scheduled_at TEXT NOT NULL,
        applied_at TEXT,
        applied_period INTEGER,
        applied_version INTEGER,
        PRIMARY KEY (campaign, beneficiary_id)
    ) WITHOUT ROWID;
    CREATE INDEX mandate_updates_by_state ON mandate_updates (programme, state);
    """,
    # 5: audit trail and signed approval — every event hash-chained (its ``hash``, and the
    # ``content`` of the events that create or revise an instruction), the chain's head, the
    # maker of a cycle, approvers' public keys, signed approvals with their manifest, and
    # signed checkpoints of closed cycles (see sap_payments.audit and sap_payments.signing)
    """
    ALTER TABLE events ADD COLUMN content TEXT;
    ALTER TABLE events ADD COLUMN hash BLOB;
    ALTER TABLE cycles ADD COLUMN prepared_by TEXT;

    -- the last sealed event: a row deleted from the end of the log is missed without it
    CREATE TABLE chain_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL
    );

    CREATE TABLE approver_keys (
        name TEXT PRIMARY KEY,
        public_key BLOB NOT NULL,  -- raw Ed25519, 32 bytes
        key_id TEXT NOT NULL UNIQUE,
        added_at TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE approvals (
        programme TEXT NOT NULL,
        period INTEGER NOT NULL,
        approver TEXT NOT NULL,
        key_id TEXT,               -- NULL: approved without a signature (no approver keys)
        signature BLOB,
        manifest_sha256 TEXT NOT NULL,
        instructions INTEGER NOT NULL,
        total INTEGER NOT NULL,
        currency TEXT NOT NULL,
        signed_at TEXT NOT NULL,
        PRIMARY KEY (programme, period)
    ) WITHOUT ROWID;

    -- the manifest an approval signed, one row an instruction (no address, no name)
    CREATE TABLE approval_entries (
        programme TEXT NOT NULL,
        period INTEGER NOT NULL,
        instruction_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        amount INTEGER NOT NULL,
        currency TEXT NOT NULL,
        provider TEXT NOT NULL,
        PRIMARY KEY (programme, period, instruction_id)
    ) WITHOUT ROWID;

    CREATE TABLE checkpoints (
        programme TEXT NOT NULL,
        period INTEGER NOT NULL,
        size INTEGER NOT NULL,
        head TEXT NOT NULL,
        signed_at TEXT NOT NULL,
        key_id TEXT NOT NULL,
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL,
        PRIMARY KEY (programme, period)
    ) WITHOUT ROWID;
    """,
    # 6: personal data at rest (crypto.py) — the details sealed (AES-256-GCM; the national id
    # moves into them), keyed blind indexes for lookups, a keyed digest for change detection,
    # instructions' address and payee name sealed together in ``payee``, erasure
    """
    ALTER TABLE beneficiaries ADD COLUMN national_id_index BLOB;
    ALTER TABLE beneficiaries ADD COLUMN msisdn_index BLOB;
    ALTER TABLE beneficiaries ADD COLUMN account_index BLOB;
    ALTER TABLE beneficiaries ADD COLUMN digest BLOB;
    ALTER TABLE beneficiaries ADD COLUMN erased_at TEXT;
    DROP INDEX beneficiaries_by_national_id;
    CREATE INDEX beneficiaries_by_national_id_index
        ON beneficiaries (national_id_index) WHERE national_id_index IS NOT NULL;
    -- history keeps the old version's sealed details as they were (a BLOB; JSON holds none)
    ALTER TABLE beneficiary_history ADD COLUMN details BLOB;
    DROP TRIGGER beneficiaries_history;
    CREATE TRIGGER beneficiaries_history BEFORE UPDATE ON beneficiaries
    WHEN old.seen_in != new.seen_in AND old.version != new.version BEGIN
        INSERT INTO beneficiary_history (beneficiary_id, version, replaced_by_import, record,
            details) VALUES (old.beneficiary_id, old.version, new.seen_in,
            json_array(@OLD_KEY_COLUMNS@, NULL), old.details);
    END;
    ALTER TABLE instructions ADD COLUMN payee BLOB;
    -- mode ('aes-256-gcm' | 'plaintext'), index_check, key:<id> → a fingerprint of each key
    CREATE TABLE encryption (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
    # 7: concurrency and identity — the ledger's random id (in every id and file that leaves,
    # so another ledger's files are refused), and per-cycle leases that keep two dispatch /
    # reconcile / close runs of one cycle apart (sap_payments.leases)
    """
    CREATE TABLE ledger_identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        ledger_id TEXT NOT NULL
    );
    INSERT INTO ledger_identity (id, ledger_id) VALUES (1, lower(hex(randomblob(8))));

    CREATE TABLE leases (
        programme TEXT NOT NULL,
        period INTEGER NOT NULL,
        operation TEXT NOT NULL,   -- dispatch, reconcile, close, close-window
        holder TEXT NOT NULL,      -- a random token of the holding run
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        acquired_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (programme, period)
    ) WITHOUT ROWID;
    """,
    # 8: hostile providers — what a plugin must remember to read its provider's answers, kept
    # (and backed up) with the ledger instead of in files of its own; and review items: an
    # answer that does not match what was sent (another amount, currency or account) waits
    # here, its instruction UNKNOWN, until an operator resolves it
    """
    CREATE TABLE plugin_state (
        provider TEXT NOT NULL,    -- the provider instance (sap-payments.toml)
        namespace TEXT NOT NULL,   -- the plugin's own grouping, e.g. "message"
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (provider, namespace, key)
    ) WITHOUT ROWID;

    CREATE TABLE review_items (
        item_id INTEGER PRIMARY KEY,
        instruction_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,        -- amount_mismatch, address_mismatch, …
        detail TEXT NOT NULL,      -- no personal data: amounts, fingerprints, codes
        raised_at TEXT NOT NULL,
        resolved_at TEXT,
        resolved_by TEXT,
        resolution TEXT
    );
    CREATE INDEX review_items_open ON review_items (instruction_id) WHERE resolved_at IS NULL;
    -- prepare's dead-address stream reads returned payments too (a closed account, AC04)
    CREATE INDEX instructions_returned ON instructions (programme, beneficiary_id)
        WHERE state = 'RETURNED';
    """,
)

SCHEMA_VERSION: Final = len(_MIGRATIONS)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, one at a time (triggers hold ";" inside)."""
    script = script.replace("@OLD_COLUMNS@", ", ".join(f"old.{c}" for c in _BENEFICIARY_COLUMNS))
    script = script.replace(
        "@OLD_KEY_COLUMNS@", ", ".join(f"old.{c}" for c in _BENEFICIARY_COLUMNS[:-1])
    )
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        raise StoreError(f"migration script ends in an incomplete statement: {buffer[:60]!r}")


def _differs(new: str, old: str) -> str:
    """SQL: the row ``new`` differs from ``old`` in some roster column (NULL-safe); the sealed
    details differ at every sealing, so their keyed digest is compared instead."""
    return "(" + " OR ".join(f"{new}.{c} IS NOT {old}.{c}" for c in _COMPARED) + ")"


#: States that release an instruction's claims (its months are due again).
_RELEASING: Final = frozenset({"FAILED", "RETURNED", "UNCLAIMED", "CANCELLED"})

#: SQL: beneficiary_id within [start, stop), either bound open when NULL (bind each twice).
_RANGE: Final = "(? IS NULL OR beneficiary_id >= ?) AND (? IS NULL OR beneficiary_id < ?)"


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _upsert_sql(import_id: int, table: str | None = None) -> str:
    """INSERT … ON CONFLICT of roster rows: bound values (columns, line, programme), or the
    rows of a staging ``table`` in line order (the programme bound)."""
    columns = ", ".join(_STORED_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _STORED_COLUMNS[1:])
    differs = _differs("excluded", "beneficiaries")
    marks = f"1, {import_id}, {import_id}, {import_id}"
    if table is None:
        source = f"VALUES ({_placeholders(len(_STORED_COLUMNS) + 2)}, {marks})"
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


def _seal_row(cipher: Cipher, record: BeneficiaryRecord) -> tuple[object, ...]:
    """The row as stored (:data:`_STORED_COLUMNS`): the details sealed under the active key and
    bound to the record, the national id column empty, the blind indexes and the digest."""
    r = record
    details = _details(r)
    ident = r[0]
    index = cipher.index_bytes
    national_id, msisdn, account = r.national_id, r.msisdn, r.account_number
    return (
        ident,
        None,
        *r[2:DETAILS_FROM],
        cipher.seal(b"beneficiaries|details|" + ident.encode(), details),
        index("national_id", national_id) if national_id else None,
        index("msisdn", msisdn) if msisdn else None,
        index("account", f"{r.bank_bin}:{account}") if account else None,
        cipher.digest(details),
    )


def _open_row(cipher: Cipher, row: Sequence[Any]) -> BeneficiaryRecord:
    """The record of a stored row (:data:`_BENEFICIARY_COLUMNS`), its details opened."""
    details = row[DETAILS_FROM]
    if not isinstance(details, str):
        ident = row[0]
        details = cipher.open(
            b"beneficiaries|details|" + ident.encode(), details, ("beneficiaries", "details", ident)
        )
    return _unpack((*row[:DETAILS_FROM], details))


def _history_row(record: str, details: bytes | str | None) -> list[Any]:
    """A history version's row: the JSON of its key columns, its details apart (a version
    saved before encryption keeps its plaintext details in the JSON)."""
    row: list[Any] = json.loads(record)
    if details is not None:
        row[DETAILS_FROM] = details
    return row


def _erased_details(record: BeneficiaryRecord) -> str:
    """The details of an erased beneficiary: ``[erased]`` wherever a personal detail was;
    the channel's structure (a wallet, an account at a bank BIN, a pay point) stays."""
    r = record
    erased = r._replace(
        national_id=None,
        full_name=ERASED,
        birth_date=None,
        sex="",
        msisdn=ERASED if r.msisdn else None,
        account_number=ERASED if r.account_number else None,
        proxy_name=ERASED if r.proxy_name else None,
        proxy_national_id=None,
        proxy_relation=None,
        mandate_valid_until=None,
    )
    return str(_pack(erased)[DETAILS_FROM])


def _erased_address(address: str) -> str:
    """An address key with its personal part replaced (``ewallet:[erased]``,
    ``bank:970415:[erased]``); a pay point is no one's personal data and stays."""
    kind, _, rest = address.partition(":")
    if kind == "ewallet":
        return f"ewallet:{ERASED}"
    if kind == "bank":
        return f"bank:{rest.partition(':')[0]}:{ERASED}"
    return address


def write_staging(
    path: Path, rows: Iterable[tuple[int, BeneficiaryRecord]], keyring: Keyring
) -> int:
    """Write checked roster rows, sealed as the ledger stores them, to a throw-away SQLite
    file (in the store's private scratch directory), for a parallel import."""
    cipher = Cipher(keyring)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("DROP TABLE IF EXISTS staging")
        db.execute(f"CREATE TABLE staging ({', '.join(_STORED_COLUMNS)}, line INTEGER)")
        db.execute("BEGIN")
        cursor = db.executemany(
            f"INSERT INTO staging VALUES ({_placeholders(len(_STORED_COLUMNS) + 1)})",
            ((*_seal_row(cipher, record), line) for line, record in rows),
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
        keyring: the keys personal data is sealed with (see :mod:`sap_payments.crypto`). When
            not given: ``SAP_PAYMENTS_KEYRING``, else ``<path>.keyring``; a new ledger without
            either gets a fresh keyring written there (mode 0600, with a warning to move it
            off the machine). An encrypted ledger without its keyring raises
            :class:`~sap_payments.crypto.KeyringNotFound`.

    Raises:
        KeyringError: the keyring is missing, unreadable, or not this ledger's.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = True,
        readonly: bool = False,
        keyring: Keyring | None = None,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # NotALedger, LedgerDamaged, LedgerBusy, LedgerFull: raised by the connection itself
        self._db = db = _sqlite.connect(self.path, readonly=readonly)
        self._depth = 0
        self._seal_floor = 0  # the last event seq when the current transaction began
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self.scratch_paths: list[Path] = []
        if not readonly:
            remove_orphaned_scratch()
        try:
            self._refuse_foreign()  # before the first write: WAL mode changes the file's header
            if not readonly:
                db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'OFF'}")
            # 128 MiB page cache for the writer; a read-only worker streams and needs little.
            db.execute(f"PRAGMA cache_size = {-65536 if readonly else -131072}")
            self._migrate()
            self._cipher = self._open_keyring(keyring)
        except BaseException:
            db.close()
            raise
        db.create_function("sap_key_id", 1, Cipher.key_id, deterministic=True)
        if self._reseal_on_open and db.execute("SELECT 1 FROM beneficiaries LIMIT 1").fetchone():
            log.warning("sealing the personal data of %s, stored in clear until now", self.path)
            self.reencrypt()

    # -- personal data at rest ------------------------------------------------------------
    @property
    def keyring(self) -> Keyring:
        """The keyring this ledger's personal data is sealed with."""
        return self._cipher.keyring

    def _open_keyring(self, keyring: Keyring | None) -> Cipher:
        settings = dict(self._db.execute("SELECT name, value FROM encryption").fetchall())
        mode = settings.get("mode")
        memory = str(self.path) in {":memory:", ""}
        default = default_keyring_path(self.path)
        if keyring is None:
            keyring = Keyring.from_env()
        if keyring is None:
            if memory:
                keyring = Keyring.generate()
            elif default.is_file():
                keyring = Keyring.load(default)
            elif mode == "plaintext":
                keyring = Keyring.insecure_plaintext()
            elif mode is None and not self.readonly:
                keyring = Keyring.generate().save(default)
                log.warning(
                    "generated a keyring for the new ledger at %s: keep it off this machine "
                    "(see docs/security.md); without it the ledger's personal data is lost",
                    default,
                )
            else:
                raise KeyringNotFound(str(self.path), f"no {KEYRING_ENV}, no {default}")
        cipher = Cipher(keyring)
        if mode == "aes-256-gcm" and keyring.plaintext:
            raise KeyringMismatch(
                f"the ledger {self.path} is encrypted: the plaintext mode cannot open it"
            )
        if mode == "aes-256-gcm" and settings.get("index_check") != cipher.index_check():
            raise KeyringMismatch(
                f"the keyring {keyring.path or '(given)'} is not the ledger {self.path}'s "
                "(its index key differs)"
            )
        fresh: dict[str, str] = {}
        for key_id in keyring.keys:
            check = settings.get(f"key:{key_id}")
            if check is None:
                fresh[f"key:{key_id}"] = cipher.key_check(key_id)
            elif check != cipher.key_check(key_id):
                raise KeyringMismatch(
                    f"key {key_id!r} of the keyring {keyring.path or '(given)'} is not the key "
                    f"the ledger {self.path} knows by that id"
                )
        wanted = "plaintext" if keyring.plaintext else "aes-256-gcm"
        if mode is None or (mode == "plaintext") != keyring.plaintext:
            fresh["mode"] = wanted
            fresh["index_check"] = cipher.index_check()
        if fresh and not self.readonly:
            with self._write():
                self._db.executemany(
                    "INSERT OR REPLACE INTO encryption (name, value) VALUES (?, ?)", fresh.items()
                )
        # a ledger written in clear (before encryption, or in the plaintext mode) now given a
        # keyring: its personal data is sealed, and its blind indexes keyed, by :meth:`reencrypt`
        # — at once, when this store is done opening
        self._reseal_on_open = mode != wanted and wanted != "plaintext" and not self.readonly
        return cipher

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def blind_index(self, purpose: str, value: str) -> str:
        """A keyed fingerprint (HMAC-SHA256 under the keyring's index key, 32 hex digits) of
        ``value`` for ``purpose`` (e.g. ``"address"``, ``"national_id"``): equal values give
        equal fingerprints, and nothing about the value can be learnt without the key."""
        return self._cipher.blind_index(purpose, value)

    def seal_scratch(self, purpose: str, text: str) -> bytes | str:
        """``text`` sealed for a scratch file (a worker's rows awaiting the parent)."""
        return self._cipher.seal(b"scratch|" + purpose.encode(), text)

    def open_scratch(self, purpose: str, value: bytes | str) -> str:
        return self._cipher.open(b"scratch|" + purpose.encode(), value, ("scratch", purpose, "-"))

    def seal_instructions(self, records: Iterable[InstructionRecord]) -> list[tuple[object, ...]]:
        """Instruction rows as stored (:data:`_INSTRUCTION_STORED`): address and payee name
        sealed together, bound to the instruction id."""
        cipher = self._cipher
        if cipher.plaintext:
            return [(*r, None) for r in records]
        seal = cipher.seal
        return [
            (
                *r[:_ADDRESS],
                "",
                r[_ADDRESS + 1],
                "",
                *r[_PAYEE_NAME + 1 :],
                seal(b"instructions|payee|" + r[0].encode(), f"{r[_ADDRESS]}\x1f{r[_PAYEE_NAME]}"),
            )
            for r in records
        ]

    def key_status(self) -> dict[str, dict[str, int]]:
        """Sealed values by place (``table.column``) and key id: a key id, ``plaintext``
        (written before encryption, or in the plaintext mode) or ``erased``."""
        found: dict[str, dict[str, int]] = {}
        for place, sql in (
            ("beneficiaries.details", "SELECT sap_key_id(details), count(*) FROM beneficiaries "
             "GROUP BY 1"),
            ("beneficiary_history.details", "SELECT sap_key_id(coalesce(details, record)), "
             "count(*) FROM beneficiary_history GROUP BY 1"),
            ("instructions.payee", "SELECT sap_key_id(coalesce(payee, nullif(address, ''))), "
             "count(*) FROM instructions GROUP BY 1"),
            ("campaign_targets.details", "SELECT sap_key_id(details), count(*) "
             "FROM campaign_targets GROUP BY 1"),
            ("mandate_updates.details", "SELECT sap_key_id(details), count(*) "
             "FROM mandate_updates GROUP BY 1"),
        ):  # fmt: skip
            counts = {str(k): int(n) for k, n in self._db.execute(sql) if k != "none"}
            if counts:
                found[place] = counts
        return found

    def reencrypt(
        self, *, batch: int = 5000, after_batch: Callable[[int], None] | None = None
    ) -> int:
        """Seal again under the active key every value sealed under another key or stored in
        plaintext, ``batch`` rows a transaction, so the ledger stays usable meanwhile (every
        value names its key, and the keyring keeps the old keys until this is done). An
        interrupted run is resumed by running it again. Returns the rows rewritten.

        ``after_batch(rows so far)`` is called after each committed batch.
        """
        cipher = self._cipher
        if cipher.plaintext:
            raise KeyringError("the plaintext mode seals nothing: give a real keyring")
        prefix = cipher.active_prefix
        stale = (
            "(typeof({c}) = 'text' OR (typeof({c}) = 'blob' AND substr({c}, 1, 1) != x'00' "
            "AND substr({c}, 1, ?) != ?))"
        )
        stale_values = (len(prefix), prefix)
        done = 0

        def batches(
            select: str, start: tuple[Any, ...], rewrite: Callable[[list[Any]], None]
        ) -> None:
            """Rewrite what ``select`` finds, ``batch`` rows a transaction, walking the table
            by the key its first ``len(start)`` columns form (so a resumed run starts over)."""
            nonlocal done
            key = start
            while True:
                with self.transaction():
                    rows = self._db.execute(select, (*key, *stale_values, batch)).fetchall()
                    if not rows:
                        return
                    rewrite(rows)
                    key = tuple(rows[-1][: len(start)])
                    done += len(rows)
                if after_batch is not None:
                    after_batch(done)

        def beneficiaries(rows: list[Any]) -> None:
            self._db.executemany(
                "UPDATE beneficiaries SET national_id = NULL, details = ?, "
                "national_id_index = ?, msisdn_index = ?, account_index = ?, digest = ? "
                "WHERE rowid = ?",
                (
                    (*_seal_row(cipher, _open_row(cipher, row[1:]))[DETAILS_FROM:], row[0])
                    for row in rows
                ),
            )

        def history(rows: list[Any]) -> None:
            updates = []
            for ident, version, record, details in rows:
                sealed = _seal_row(cipher, _open_row(cipher, _history_row(record, details)))
                updates.append(
                    (
                        json.dumps([*sealed[:DETAILS_FROM], None], ensure_ascii=False),
                        sealed[DETAILS_FROM],
                        ident,
                        version,
                    )
                )
            self._db.executemany(
                "UPDATE beneficiary_history SET record = ?, details = ? "
                "WHERE beneficiary_id = ? AND version = ?",
                updates,
            )

        def accounts(table: str) -> Callable[[list[Any]], None]:
            def rewrite(rows: list[Any]) -> None:
                resealed = []
                for campaign, ident, details in rows:
                    aad = f"{table}|details|{ident}".encode()
                    text = cipher.open(aad, details, (table, "details", ident))
                    resealed.append((cipher.seal(aad, text), campaign, ident))
                self._db.executemany(
                    f"UPDATE {table} SET details = ? WHERE campaign = ? AND beneficiary_id = ?",
                    resealed,
                )

            return rewrite

        def instructions(rows: list[Any]) -> None:
            self._db.executemany(
                "UPDATE instructions SET address = ?, payee_name = ?, payee = ? WHERE rowid = ?",
                (
                    (sealed[_ADDRESS], sealed[_PAYEE_NAME], sealed[-1], row[0])
                    for row in rows
                    for sealed in self.seal_instructions([self._instruction(row[1:])])
                ),
            )

        batches(  # beneficiaries, by rowid
            f"SELECT rowid, {', '.join(_BENEFICIARY_COLUMNS)} FROM beneficiaries WHERE rowid > ? "
            f"AND ({stale.format(c='details')} OR national_id IS NOT NULL) "
            "ORDER BY rowid LIMIT ?",
            (0,),
            beneficiaries,
        )
        batches(  # history, by its key
            "SELECT beneficiary_id, version, record, details FROM beneficiary_history "
            "WHERE (beneficiary_id, version) > (?, ?) AND (details IS NULL OR "
            f"{stale.format(c='details')}) ORDER BY beneficiary_id, version LIMIT ?",
            ("", -1),
            history,
        )
        for table in ("campaign_targets", "mandate_updates"):  # new accounts awaiting a switch
            batches(
                f"SELECT campaign, beneficiary_id, details FROM {table} "
                "WHERE (campaign, beneficiary_id) > (?, ?) AND details IS NOT NULL "
                f"AND {stale.format(c='details')} ORDER BY campaign, beneficiary_id LIMIT ?",
                ("", ""),
                accounts(table),
            )
        batches(  # instructions, by rowid
            f"SELECT rowid, {', '.join(_INSTRUCTION_STORED)} FROM instructions WHERE rowid > ? "
            f"AND ((payee IS NULL AND address != '') OR {stale.format(c='payee')}) "
            "ORDER BY rowid LIMIT ?",
            (0,),
            instructions,
        )
        return done

    def set_keyring(self, keyring: Keyring) -> None:
        """Seal with ``keyring`` from now on (after checking it is this ledger's)."""
        self._cipher = self._open_keyring(keyring)

    def erasable(self, programme: str, closed_before: int) -> list[str]:
        """Beneficiaries of the programme whose entitlement ended before month
        ``closed_before`` (an ordinal), not yet erased."""
        return [
            str(ident)
            for (ident,) in self._db.execute(
                "SELECT beneficiary_id FROM beneficiaries WHERE programme = ? "
                "AND last_period IS NOT NULL AND last_period < ? AND erased_at IS NULL "
                "ORDER BY beneficiary_id",
                (programme, closed_before),
            )
        ]

    def erase_beneficiaries(
        self, beneficiary_ids: Sequence[str], at: str, actor: str | None = None
    ) -> int:
        """Replace the personal data of beneficiaries — their details, every earlier version's,
        their instructions' address and payee name — by erasure markers reading ``[erased]``;
        ids, amounts, states and events stay. Deleted content is overwritten on disk
        (``secure_delete``). Returns how many were erased."""
        db = self._db
        erased = 0
        db.execute("PRAGMA secure_delete = ON")
        try:
            with self.transaction():
                for ident in beneficiary_ids:
                    record = self.beneficiary(ident)
                    if record is None:
                        continue
                    db.execute(
                        "UPDATE beneficiaries SET national_id = NULL, details = ?, "
                        "national_id_index = NULL, msisdn_index = NULL, account_index = NULL, "
                        "digest = 'erased', erased_at = ? WHERE beneficiary_id = ?",
                        (Cipher.erased(_erased_details(record)), at, ident),
                    )
                    for version, old in self.beneficiary_history(ident):
                        db.execute(
                            "UPDATE beneficiary_history SET record = ?, details = ? "
                            "WHERE beneficiary_id = ? AND version = ?",
                            (
                                json.dumps([ident, None, *old[2:DETAILS_FROM], None]),
                                Cipher.erased(_erased_details(old)),
                                ident,
                                version,
                            ),
                        )
                    for row in db.execute(
                        f"SELECT {', '.join(_INSTRUCTION_STORED)} FROM instructions "
                        "WHERE beneficiary_id = ?",
                        (ident,),
                    ).fetchall():
                        instruction = self._instruction(row)
                        db.execute(
                            "UPDATE instructions SET address = '', payee_name = '', payee = ? "
                            "WHERE instruction_id = ?",
                            (
                                Cipher.erased(
                                    f"{_erased_address(instruction.address)}\x1f{ERASED}"
                                ),
                                instruction.instruction_id,
                            ),
                        )
                    for table in ("campaign_targets", "mandate_updates"):  # a pending account
                        db.execute(
                            f"UPDATE {table} SET details = NULL WHERE beneficiary_id = ?", (ident,)
                        )
                    erased += 1
                self.append_events(
                    EventRecord(
                        at=at,
                        kind="beneficiary.erased",
                        instruction_id=None,
                        from_state=None,
                        to_state=None,
                        actor=actor,
                        detail=f"beneficiary {ident}: personal data erased",
                    )
                    for ident in beneficiary_ids
                )
        finally:
            db.execute("PRAGMA secure_delete = OFF")
        if not self.readonly:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return erased

    def _instruction(self, row: Sequence[Any]) -> InstructionRecord:
        """The record of a stored instruction row, its address and payee name opened."""
        payee = row[-1]
        if payee is None:
            return InstructionRecord._make(row[:-1])
        ident = row[0]
        text = self._cipher.open(
            b"instructions|payee|" + ident.encode(), payee, ("instructions", "payee", ident)
        )
        address, _, name = text.partition("\x1f")
        return InstructionRecord._make(
            (*row[:_ADDRESS], address, row[_ADDRESS + 1], name, *row[_PAYEE_NAME + 1 : -1])
        )

    # -- plumbing -------------------------------------------------------------------------
    def _refuse_foreign(self) -> None:
        """Raise NotALedger for another program's SQLite database: one with tables but no
        schema version (a ledger's first migration sets both at once)."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version == 0 and self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
            raise NotALedger(self.path)

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

    @functools.cached_property
    def ledger_id(self) -> str:
        """This ledger's random id (16 hex digits; see :attr:`Store.ledger_id`)."""
        row = self._db.execute("SELECT ledger_id FROM ledger_identity WHERE id = 1").fetchone()
        if row is None:  # pragma: no cover - migration 7 writes it
            raise StoreError(f"the ledger {self.path} has no ledger id")
        return str(row[0])

    def set_ledger_id(self, ledger_id: str) -> None:
        """Give a new ledger a chosen id instead of its random one — for a demo or a test that
        must replay exactly (a sandbox's fates follow the instruction ids, which carry the
        ledger id). Never for a real ledger: two ledgers must not share an id.

        Raises:
            StoreError: not 16 lower-case hex digits, or the ledger already holds instructions
                (their ids carry the id it has).
        """
        if len(ledger_id) != 16 or not all(c in "0123456789abcdef" for c in ledger_id):
            raise StoreError(f"not a ledger id (16 lower-case hex digits): {ledger_id!r}")
        with self.transaction():
            if self._db.execute("SELECT 1 FROM instructions LIMIT 1").fetchone():
                raise StoreError(
                    f"the ledger {self.path} holds instructions already: its id cannot change"
                )
            self._db.execute("UPDATE ledger_identity SET ledger_id = ? WHERE id = 1", (ledger_id,))
        self.__dict__.pop("ledger_id", None)  # the cached value

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
            self._seal_floor = self._last_event_seq()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._depth = 1
        try:
            yield
            self._seal_events()  # the audit trail: chain what this transaction recorded
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
                self._scratch = scratch_directory()  # named after this process (_scratch)
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
            ((*_seal_row(self._cipher, record), line, programme) for line, record in rows),
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
                "SELECT national_id_index FROM beneficiaries WHERE national_id_index IS NOT NULL "
                "GROUP BY national_id_index HAVING count(*) > 1"
            )
        ]
        for national_id in shared:
            holders = db.execute(
                "SELECT beneficiary_id, seen_in = ?, line FROM beneficiaries "
                "WHERE national_id_index = ? ORDER BY seen_in = ?, line",
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

    def beneficiaries_by_index(self, purpose: str, value: str) -> list[str]:
        column = _INDEX_COLUMNS[purpose]
        return [
            str(ident)
            for (ident,) in self._db.execute(
                f"SELECT beneficiary_id FROM beneficiaries WHERE {column} = ? "
                "ORDER BY beneficiary_id",
                (self._cipher.index_bytes(purpose, value),),
            )
        ]

    def shared_indexes(self, purpose: str) -> list[tuple[str, ...]]:
        column = _INDEX_COLUMNS[purpose]
        groups: dict[bytes, list[str]] = {}
        for index, ident in self._db.execute(
            f"SELECT {column}, beneficiary_id FROM beneficiaries WHERE {column} IN "
            f"(SELECT {column} FROM beneficiaries WHERE {column} IS NOT NULL "
            f"GROUP BY {column} HAVING count(*) > 1)"
        ):
            groups.setdefault(bytes(index), []).append(str(ident))
        return sorted(tuple(sorted(ids)) for ids in groups.values())

    def beneficiary(self, beneficiary_id: str) -> BeneficiaryRecord | None:
        row = self._db.execute(
            f"SELECT {', '.join(_BENEFICIARY_COLUMNS)} FROM beneficiaries WHERE beneficiary_id = ?",
            (beneficiary_id,),
        ).fetchone()
        return _open_row(self._cipher, row) if row else None

    def beneficiaries(
        self, programme: str, start: str | None = None, stop: str | None = None
    ) -> Iterator[BeneficiaryRecord]:
        cursor = self._db.execute(
            f"SELECT {', '.join(_BENEFICIARY_COLUMNS)} FROM beneficiaries "
            f"WHERE programme = ? AND {_RANGE} ORDER BY beneficiary_id",
            (programme, start, start, stop, stop),
        )
        cipher = self._cipher
        while batch := cursor.fetchmany(4096):
            for row in batch:
                yield _open_row(cipher, row)

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
            (version, _open_row(self._cipher, _history_row(record, details)))
            for version, record, details in self._db.execute(
                "SELECT version, record, details FROM beneficiary_history "
                "WHERE beneficiary_id = ? ORDER BY version",
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
            f"SELECT {', '.join(_INSTRUCTION_STORED)} FROM instructions "
            f"WHERE programme = ? AND period = ? AND {_RANGE} ORDER BY beneficiary_id, seq",
            (programme, period, start, start, stop, stop),
        )
        make = self._instruction
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
            f"SELECT {', '.join(_INSTRUCTION_STORED)} FROM instructions WHERE instruction_id = ?",
            (instruction_id,),
        ).fetchone()
        return self._instruction(row) if row else None

    def beneficiary_instructions(
        self, programme: str, beneficiary_id: str
    ) -> list[InstructionRecord]:
        return [
            self._instruction(row)
            for row in self._db.execute(
                f"SELECT {', '.join(_INSTRUCTION_STORED)} FROM instructions "
                "WHERE programme = ? AND beneficiary_id = ? ORDER BY period, seq",
                (programme, beneficiary_id),
            )
        ]

    def insert_instructions(self, instructions: Sequence[InstructionRecord], at: str) -> None:
        if not instructions:
            return
        watermark = self._watermark()
        self._db.executemany(
            f"INSERT INTO instructions ({', '.join(_INSTRUCTION_STORED)}) "
            f"VALUES ({_placeholders(len(_INSTRUCTION_STORED))})",
            self.seal_instructions(instructions),
        )
        fingerprint = address_fingerprinter(self)
        self._derive(
            watermark,
            at,
            ((r.instruction_id, instruction_content(r, fingerprint)) for r in instructions),
        )

    def insert_instructions_from(self, table: str, at: str) -> int:
        """:meth:`insert_instructions` from a scratch table of stored instruction rows
        (:meth:`seal_instructions`)."""
        watermark = self._watermark()
        columns = ", ".join(_INSTRUCTION_STORED)
        cursor = self._db.execute(
            f"INSERT INTO instructions ({columns}) SELECT {columns} FROM {table} ORDER BY rowid"
        )
        self._derive(watermark, at, self._scratch_contents(table))
        return cursor.rowcount

    def _scratch_contents(self, table: str) -> Iterator[tuple[str, str]]:
        """(instruction id, content) of a scratch table's rows: the worker that wrote them
        computed each one's audit-trail content (no address to open here)."""
        cursor = self._db.execute(f"SELECT instruction_id, content FROM {table} ORDER BY rowid")
        while batch := cursor.fetchmany(4096):
            yield from batch

    def _watermark(self) -> int:
        (watermark,) = self._db.execute(
            "SELECT coalesce(max(rowid), 0) FROM instructions"
        ).fetchone()
        return int(watermark)

    def _derive(self, watermark: int, at: str, contents: Iterable[tuple[str, str]]) -> None:
        """Lines and events of the instructions past ``watermark``; ``contents``: (id, audit
        content) of each, in order.

        The claims and the held events are derived set-wise from the rows just written; the
        created events carry each instruction's content (amount, payee, address fingerprint)
        for the audit trail, so they are built here, already chained."""
        db = self._db
        db.execute(_CLAIMS_FROM_INSTRUCTIONS + " WHERE i.rowid > ?", (watermark,))
        self._append_sealed(
            (at, "instruction.created", ident, None, "CREATED", None, None, content)
            for ident, content in contents
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
        updates = ", ".join(f"{c} = ?" for c in _INSTRUCTION_STORED)
        db.execute(
            f"UPDATE instructions SET {updates} WHERE instruction_id = ?",
            (*self.seal_instructions([instruction])[0], instruction.instruction_id),
        )
        db.execute(
            _CLAIMS_FROM_INSTRUCTIONS + " WHERE i.instruction_id = ?", (instruction.instruction_id,)
        )

    def set_state(
        self,
        instruction_ids: Sequence[str],
        to_state: str,
        *,
        from_state: str,
        release_lines: bool,
    ) -> None:
        db = self._db
        cursor = db.executemany(
            "UPDATE instructions SET state = ? WHERE instruction_id = ? AND state = ?",
            ((to_state, instruction_id, from_state) for instruction_id in instruction_ids),
        )
        if cursor.rowcount != len(instruction_ids):
            self._moved_under(instruction_ids, from_state, to_state)
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
        if not self._depth:  # in a transaction, so that its events are sealed
            with self.transaction():
                return self.bulk_transition(
                    programme, period, from_state, to_state, event, release_lines=release_lines
                )
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
        with self.transaction():  # sealed into the audit trail when it commits
            self._db.executemany(
                "INSERT INTO events (at, kind, instruction_id, from_state, to_state, actor, "
                "detail, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                events,
            )

    # -- dispatch ---------------------------------------------------------------------------
    def instructions_in_states(
        self, programme: str, period: int, states: Sequence[str]
    ) -> list[InstructionRecord]:
        marks = _placeholders(len(states))
        return [
            self._instruction(row)
            for row in self._db.execute(
                f"SELECT {', '.join(_INSTRUCTION_STORED)} FROM instructions "
                f"WHERE programme = ? AND period = ? AND state IN ({marks})",
                (programme, period, *states),
            )
        ]

    def instruction_states(self, programme: str, period: int) -> Iterator[tuple[str, str]]:
        cursor = self._db.execute(
            "SELECT beneficiary_id, state FROM instructions WHERE programme = ? AND period = ?",
            (programme, period),
        )
        while batch := cursor.fetchmany(4096):
            yield from batch

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
        make = self._instruction
        columns = ", ".join(_INSTRUCTION_STORED)
        for start in range(0, len(instruction_ids), 999):
            chunk = instruction_ids[start : start + 999]
            cursor = self._db.execute(
                f"SELECT {columns} FROM instructions "
                f"WHERE instruction_id IN ({_placeholders(len(chunk))})",
                chunk,
            )
            found.extend(map(make, cursor.fetchall()))
        return found

    def states_by_id(self, instruction_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(instruction_ids), 999):
            chunk = instruction_ids[start : start + 999]
            for ident, state, provider in self._db.execute(
                "SELECT instruction_id, state, provider FROM instructions "
                f"WHERE instruction_id IN ({_placeholders(len(chunk))})",
                chunk,
            ):
                found[ident] = (state, provider)
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
        if not self._depth:  # in a transaction, so that its events are sealed
            with self.transaction():
                self.apply_moves(moves, at, actor)
            return
        db = self._db
        # Compare-and-set: every UPDATE names the state the move starts from, and the rows it
        # changed are counted; a move whose start no longer holds (another command moved the
        # instruction first) raises ConcurrentUpdate and the transaction rolls back whole.
        # An instruction's second move (PAID then RETURNED) runs in a later round than its
        # first. Moves that set nothing but the state go set-wise, a statement for each
        # (from, to) pair and up to 500 instructions; those with a reason or reference one
        # row at a time.
        rounds: list[list[Move]] = []
        step: dict[str, int] = {}
        for m in moves:
            number = step.get(m.instruction_id, 0)
            step[m.instruction_id] = number + 1
            if number == len(rounds):
                rounds.append([])
            rounds[number].append(m)
        for round_moves in rounds:
            plain: dict[tuple[str, str], list[str]] = {}
            detailed: dict[tuple[str, str], list[tuple[object, ...]]] = {}
            for m in round_moves:
                pair = (m.from_state, m.to_state)
                if m.reason is None and m.provider_reference is None:
                    plain.setdefault(pair, []).append(m.instruction_id)
                else:
                    detailed.setdefault(pair, []).append(
                        (m.to_state, m.reason, m.provider_reference, m.instruction_id, m.from_state)
                    )
            for (from_state, to_state), idents in plain.items():
                for start in range(0, len(idents), 500):
                    chunk = idents[start : start + 500]
                    cursor = db.execute(
                        "UPDATE instructions SET state = ? WHERE state = ? "
                        f"AND instruction_id IN ({_placeholders(len(chunk))})",
                        (to_state, from_state, *chunk),
                    )
                    if cursor.rowcount != len(chunk):
                        self._moved_under(chunk, from_state, to_state)
            for (from_state, to_state), rows in detailed.items():
                cursor = db.executemany(
                    "UPDATE instructions SET state = ?, reason = coalesce(?, reason), "
                    "provider_reference = coalesce(?, provider_reference) "
                    "WHERE instruction_id = ? AND state = ?",
                    rows,
                )
                if cursor.rowcount != len(rows):
                    self._moved_under([str(row[3]) for row in rows], from_state, to_state)
        released = [(m.instruction_id,) for m in moves if m.to_state in _RELEASING]
        if released:
            db.executemany(
                "DELETE FROM claims WHERE (programme, beneficiary_id, instruction_id) = "
                "(SELECT programme, beneficiary_id, instruction_id FROM instructions "
                " WHERE instruction_id = ?)",
                released,
            )
        self._append_sealed(
            (at, m.kind, m.instruction_id, m.from_state, m.to_state, actor, m.detail, None)
            for m in moves
        )

    def _moved_under(self, idents: Sequence[str], from_state: str, to_state: str) -> NoReturn:
        """Raise :class:`ConcurrentUpdate` naming those of ``idents`` not in ``from_state``."""
        states = dict(
            self._db.execute(
                "SELECT instruction_id, state FROM instructions "
                f"WHERE instruction_id IN ({_placeholders(len(idents))})",
                idents,
            ).fetchall()
        )
        moved = [i for i in idents if states.get(i) not in {from_state, to_state}] or list(idents)
        raise ConcurrentUpdate(moved, from_state, to_state)

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
        # FAILED through its partial index; RETURNED (money back from a closed account) too —
        # a scan of the programme's instructions until an index like instructions_failed
        # covers RETURNED rows
        branch = (
            f"SELECT {', '.join(_INSTRUCTION_STORED)} FROM instructions "
            f"WHERE programme = ? AND state = '{{}}' AND {_RANGE} "
            f"AND reason IN ({_placeholders(len(reasons))})"
        )
        cursor = self._db.execute(
            f"{branch.format('FAILED')} UNION ALL {branch.format('RETURNED')} "
            "ORDER BY beneficiary_id",
            (programme, start, start, stop, stop, *reasons) * 2,
        )
        make = self._instruction
        while batch := cursor.fetchmany(4096):
            for row in batch:
                record = make(row)
                yield record.beneficiary_id, record.address

    def result_details(
        self, programme: str, period: int
    ) -> list[tuple[str, str, str, int, str | None]]:
        # the events table has no index by instruction: one pass over the result events,
        # kept for the cycle's settled instructions (few), the latest event winning
        ended = "('FAILED', 'RETURNED', 'UNCLAIMED')"
        settled = {
            str(ident): (str(provider), str(state), int(amount))
            for ident, provider, state, amount in self._db.execute(
                "SELECT instruction_id, provider, state, amount FROM instructions "
                f"WHERE programme = ? AND period = ? AND state IN {ended}",
                (programme, period),
            )
        }
        if not settled:
            return []
        details: dict[str, str] = {}
        for ident, to_state, detail in self._db.execute(
            "SELECT instruction_id, to_state, detail FROM events "
            f"WHERE to_state IN {ended} AND instruction_id LIKE ? ORDER BY seq",
            (f"{period // 12:04d}{period % 12 + 1:02d}-%",),
        ):
            found = settled.get(ident)
            if found is not None and found[1] == to_state:
                details[ident] = detail
        return [(ident, *settled[ident], details.get(ident)) for ident in sorted(settled)]

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
        columns = "seq, at, kind, instruction_id, from_state, to_state, actor, detail, content"
        if instruction_id is None:
            cursor = self._db.execute(f"SELECT {columns} FROM events ORDER BY seq")
        else:
            cursor = self._db.execute(
                f"SELECT {columns} FROM events WHERE instruction_id = ? ORDER BY seq",
                (instruction_id,),
            )
        for seq, *rest in cursor:
            yield seq, EventRecord(*rest)

    # -- audit trail and signed approval ------------------------------------------------------
    def _last_event_seq(self) -> int:
        (last,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(last)

    def chain_head(self) -> tuple[int, bytes] | None:
        row = self._db.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def _seal_events(self) -> tuple[int, bytes]:
        """Chain the events this transaction recorded, in seq order, and move the head.

        Rows past the head that were already there when the transaction began were not
        written by sap_payments: they stay unsealed, for ``audit verify`` to report, and the
        chain goes on from the head over them. A ledger never sealed (one just migrated) is
        sealed from its first event. Returns the new head."""
        db = self._db
        head = self.chain_head()
        if head is None:
            seq, digest, after = 0, GENESIS, 0
        else:
            seq, digest = head
            after = max(seq, self._seal_floor)
        select = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        while rows := db.execute(select, (after, 20_000)).fetchall():
            updates = []
            for row in rows:
                digest = event_hash(digest, row)
                updates.append((digest, row[0]))
            db.executemany("UPDATE events SET hash = ? WHERE seq = ?", updates)
            after = seq = int(rows[-1][0])
        if head is None or seq != head[0]:
            db.execute(
                "INSERT OR REPLACE INTO chain_head (id, seq, hash) VALUES (1, ?, ?)", (seq, digest)
            )
        return seq, digest

    def _append_sealed(self, rows: Iterable[tuple[object, ...]]) -> None:
        """Insert events (``at`` … ``content``) already chained: their hashes are computed
        here, before the insert, not read back and updated."""
        _, digest = self._seal_events()
        seq = first = self._last_event_seq()
        insert = (
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}, hash) "
            f"VALUES ({_placeholders(len(EVENT_COLUMNS) + 1)})"
        )
        chunk: list[tuple[object, ...]] = []
        for row in rows:
            seq += 1
            full = (seq, *row)
            digest = event_hash(digest, full)
            chunk.append((*full, digest))
            if len(chunk) == 5000:
                self._db.executemany(insert, chunk)
                chunk.clear()
        if chunk:
            self._db.executemany(insert, chunk)
        if seq != first:
            self._db.execute(
                "INSERT OR REPLACE INTO chain_head (id, seq, hash) VALUES (1, ?, ?)", (seq, digest)
            )

    def chained_events(self) -> Iterator[tuple[int, EventRecord, bytes | None]]:
        cursor = self._db.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)}, hash FROM events ORDER BY seq"
        )
        while batch := cursor.fetchmany(4096):
            for seq, *rest, digest in batch:
                yield seq, EventRecord(*rest), None if digest is None else bytes(digest)

    def programmes(self) -> list[str]:
        return [
            str(name)
            for (name,) in self._db.execute("SELECT DISTINCT programme FROM cycles ORDER BY 1")
        ]

    def add_approver_key(self, key: ApproverKey) -> None:
        self._db.execute(
            "INSERT INTO approver_keys (name, public_key, key_id, added_at) VALUES (?, ?, ?, ?)",
            key,
        )

    def approver_keys(self) -> list[ApproverKey]:
        return [
            ApproverKey(str(name), bytes(public), str(key_id), str(added))
            for name, public, key_id, added in self._db.execute(
                "SELECT name, public_key, key_id, added_at FROM approver_keys ORDER BY name"
            )
        ]

    def save_approval_entries(
        self, programme: str, period: int, entries: Iterable[ApprovalEntry]
    ) -> None:
        db = self._db
        db.execute(
            "DELETE FROM approval_entries WHERE programme = ? AND period = ?", (programme, period)
        )
        db.executemany(
            "INSERT INTO approval_entries (programme, period, instruction_id, fingerprint, "
            "amount, currency, provider) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((programme, period, *entry) for entry in entries),
        )

    def _save_cycle_record(self, table: str, record: tuple[object, ...]) -> None:
        """Insert or replace a row keyed by (programme, period) from a NamedTuple record."""
        fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
        self._db.execute(
            f"INSERT OR REPLACE INTO {table} ({', '.join(fields)}) "
            f"VALUES ({_placeholders(len(fields))})",
            record,
        )

    def _cycle_row(
        self, table: str, fields: Sequence[str], programme: str, period: int
    ) -> tuple[Any, ...] | None:
        """The row of ``table`` for a cycle, or None."""
        row: tuple[Any, ...] | None = self._db.execute(
            f"SELECT {', '.join(fields)} FROM {table} WHERE programme = ? AND period = ?",
            (programme, period),
        ).fetchone()
        return row

    def lease(self, programme: str, period: int) -> LeaseRecord | None:
        row = self._cycle_row("leases", LeaseRecord._fields, programme, period)
        return None if row is None else LeaseRecord._make(row)

    def put_lease(self, lease: LeaseRecord) -> None:
        self._save_cycle_record("leases", lease)

    def drop_lease(self, programme: str, period: int, holder: str) -> None:
        self._db.execute(
            "DELETE FROM leases WHERE programme = ? AND period = ? AND holder = ?",
            (programme, period, holder),
        )

    def save_approval(self, approval: ApprovalRecord) -> None:
        self._save_cycle_record("approvals", approval)

    def approval(self, programme: str, period: int) -> ApprovalRecord | None:
        row = self._cycle_row("approvals", ApprovalRecord._fields, programme, period)
        if row is None:
            return None
        record = ApprovalRecord._make(row)
        signature = record.signature
        return record._replace(signature=None if signature is None else bytes(signature))

    def approval_entries(
        self, programme: str, period: int, instruction_ids: Sequence[str] | None = None
    ) -> Iterator[ApprovalEntry]:
        columns = ", ".join(ApprovalEntry._fields)
        make = ApprovalEntry._make
        if instruction_ids is None:
            cursor = self._db.execute(
                f"SELECT {columns} FROM approval_entries WHERE programme = ? AND period = ? "
                "ORDER BY instruction_id",
                (programme, period),
            )
            while batch := cursor.fetchmany(4096):
                yield from map(make, batch)
            return
        found: list[ApprovalEntry] = []
        for start in range(0, len(instruction_ids), 999):
            chunk = instruction_ids[start : start + 999]
            found.extend(
                map(
                    make,
                    self._db.execute(
                        f"SELECT {columns} FROM approval_entries WHERE programme = ? "
                        f"AND period = ? AND instruction_id IN ({_placeholders(len(chunk))})",
                        (programme, period, *chunk),
                    ),
                )
            )
        yield from sorted(found)

    def save_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self._save_cycle_record("checkpoints", checkpoint)

    def checkpoint(self, programme: str, period: int) -> CheckpointRecord | None:
        row = self._cycle_row("checkpoints", CheckpointRecord._fields, programme, period)
        if row is None:
            return None
        record = CheckpointRecord._make(row)
        return record._replace(
            public_key=bytes(record.public_key), signature=bytes(record.signature)
        )

    # -- review items -------------------------------------------------------------------------
    def add_review_item(
        self, instruction_id: str, provider: str, kind: str, detail: str, at: str
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO review_items (instruction_id, provider, kind, detail, raised_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (instruction_id, provider, kind, detail, at),
        )
        return int(cursor.lastrowid or 0)

    def open_reviews(self, instruction_ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(instruction_ids), 999):
            chunk = instruction_ids[start : start + 999]
            for ident, item_id in self._db.execute(
                "SELECT instruction_id, min(item_id) FROM review_items WHERE resolved_at IS NULL "
                f"AND instruction_id IN ({_placeholders(len(chunk))}) GROUP BY instruction_id",
                chunk,
            ):
                found[str(ident)] = int(item_id)
        return found

    def review_item(self, item_id: int) -> ReviewItem | None:
        row = self._db.execute(
            f"SELECT {', '.join(ReviewItem._fields)} FROM review_items WHERE item_id = ?",
            (item_id,),
        ).fetchone()
        return ReviewItem._make(row) if row else None

    def review_items(
        self,
        programme: str | None = None,
        period: int | None = None,
        *,
        include_resolved: bool = False,
    ) -> list[ReviewItem]:
        columns = ", ".join(f"r.{name}" for name in ReviewItem._fields)
        return [
            ReviewItem._make(row)
            for row in self._db.execute(
                f"SELECT {columns} FROM review_items r "
                "LEFT JOIN instructions i ON i.instruction_id = r.instruction_id "
                "WHERE (? OR r.resolved_at IS NULL) AND (? IS NULL OR i.programme = ?) "
                "AND (? IS NULL OR i.period = ?) ORDER BY r.item_id",
                (include_resolved, programme, programme, period, period),
            )
        ]

    def resolve_review_item(self, item_id: int, at: str, by: str, resolution: str) -> bool:
        cursor = self._db.execute(
            "UPDATE review_items SET resolved_at = ?, resolved_by = ?, resolution = ? "
            "WHERE item_id = ? AND resolved_at IS NULL",
            (at, by, resolution, item_id),
        )
        return cursor.rowcount == 1

    # -- flags ------------------------------------------------------------------------------
    def add_flags(self, flags: Sequence[FlagRecord]) -> list[FlagRecord]:
        raised = []
        for flag in flags:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO flags (programme, beneficiary_id, kind, raised_at, "
                "detail, cleared_at) VALUES (?, ?, ?, ?, ?, ?)",
                flag,
            )
            if cursor.rowcount:
                raised.append(flag)
        return raised

    def flags(self, programme: str, kind: str | None = None) -> list[FlagRecord]:
        return [
            FlagRecord(*row)
            for row in self._db.execute(
                "SELECT programme, beneficiary_id, kind, raised_at, detail, cleared_at "
                "FROM flags WHERE programme = ? AND cleared_at IS NULL "
                "AND (? IS NULL OR kind = ?) ORDER BY beneficiary_id, kind",
                (programme, kind, kind),
            )
        ]

    def clear_flags(
        self, programme: str, beneficiary_id: str, kind: str | None, at: str
    ) -> list[FlagRecord]:
        cleared = [
            flag for flag in self.flags(programme, kind) if flag.beneficiary_id == beneficiary_id
        ]
        self._db.execute(
            "UPDATE flags SET cleared_at = ? WHERE programme = ? AND beneficiary_id = ? "
            "AND cleared_at IS NULL AND (? IS NULL OR kind = ?)",
            (at, programme, beneficiary_id, kind, kind),
        )
        return [flag._replace(cleared_at=at) for flag in cleared]

    # -- enrolment campaigns ----------------------------------------------------------------
    def _seal_address(self, table: str, beneficiary_id: str, key: str) -> bytes | str:
        """A campaign's new account (an address key), packed as details are and sealed."""
        aad = f"{table}|details|{beneficiary_id}".encode()
        return self._cipher.seal(aad, _pack_address(beneficiary_id, key))

    def _open_address(self, table: str, beneficiary_id: str, value: bytes | str) -> str:
        aad = f"{table}|details|{beneficiary_id}".encode()
        text = self._cipher.open(aad, value, (table, "details", beneficiary_id))
        return _unpack_address(beneficiary_id, text)

    def beneficiary_version(self, beneficiary_id: str) -> int | None:
        row = self._db.execute(
            "SELECT version FROM beneficiaries WHERE beneficiary_id = ?", (beneficiary_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def beneficiaries_on_channel(
        self, programme: str, channel: str, communes: Sequence[str], districts: Sequence[str]
    ) -> list[tuple[str, str, str, str]]:
        return [
            (str(ident), str(province), str(district), str(commune))
            for ident, province, district, commune in self._db.execute(
                "SELECT beneficiary_id, province_code, district_code, commune_code "
                "FROM beneficiaries WHERE programme = ? AND channel = ? AND status != 'ceased' "
                "AND (commune_code IN (SELECT value FROM json_each(?)) "
                "OR district_code IN (SELECT value FROM json_each(?))) ORDER BY beneficiary_id",
                (programme, channel, json.dumps(list(communes)), json.dumps(list(districts))),
            )
        ]

    def channels_by_area(self, programme: str) -> list[tuple[str, str, str, str, str, int]]:
        return [
            (str(p), str(d), str(c), str(channel), str(provider), int(count))
            for p, d, c, channel, provider, count in self._db.execute(
                "SELECT province_code, district_code, commune_code, channel, provider, count(*) "
                "FROM beneficiaries WHERE programme = ? AND status != 'ceased' "
                "GROUP BY province_code, district_code, commune_code, channel, provider",
                (programme,),
            )
        ]

    def add_campaign(self, campaign: CampaignRecord, targets: Sequence[CampaignTarget]) -> None:
        db = self._db
        db.execute(
            f"INSERT INTO campaigns ({', '.join(CampaignRecord._fields)}) "
            f"VALUES ({_placeholders(len(CampaignRecord._fields))})",
            campaign,
        )
        db.executemany(
            f"INSERT INTO campaign_targets ({', '.join(CampaignTarget._fields)}) "
            f"VALUES ({_placeholders(len(CampaignTarget._fields))})",
            targets,
        )

    def campaign(self, name: str) -> CampaignRecord | None:
        row = self._db.execute(
            f"SELECT {', '.join(CampaignRecord._fields)} FROM campaigns WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else CampaignRecord._make(row)

    def campaigns(self) -> list[CampaignRecord]:
        return [
            CampaignRecord._make(row)
            for row in self._db.execute(
                f"SELECT {', '.join(CampaignRecord._fields)} FROM campaigns "
                "ORDER BY created_at, name"
            )
        ]

    def campaign_targets(self, campaign: str | None = None) -> list[CampaignTarget]:
        return [
            CampaignTarget._make(row)
            for row in self._db.execute(
                f"SELECT {', '.join(CampaignTarget._fields)} FROM campaign_targets "
                "WHERE ? IS NULL OR campaign = ? ORDER BY campaign, beneficiary_id",
                (campaign, campaign),
            )
        ]

    def record_enrolment(
        self, attempts: Sequence[EnrolmentAttempt], addresses: Mapping[str, str]
    ) -> None:
        db = self._db
        db.executemany(
            f"INSERT INTO enrolment_attempts ({', '.join(EnrolmentAttempt._fields)}) "
            f"VALUES ({_placeholders(len(EnrolmentAttempt._fields))})",
            attempts,
        )
        db.executemany(
            "UPDATE campaign_targets SET state = ?, reason = ?, updated_at = ?, details = ? "
            "WHERE campaign = ? AND beneficiary_id = ?",
            [
                (
                    a.outcome,
                    a.reason,
                    a.at,
                    self._seal_address(
                        "campaign_targets", a.beneficiary_id, addresses[a.beneficiary_id]
                    )
                    if a.beneficiary_id in addresses
                    else None,
                    a.campaign,
                    a.beneficiary_id,
                )
                for a in attempts
            ],
        )

    def enrolment_attempts(self, campaign: str | None = None) -> list[EnrolmentAttempt]:
        return [
            EnrolmentAttempt._make(row)
            for row in self._db.execute(
                f"SELECT {', '.join(EnrolmentAttempt._fields)} FROM enrolment_attempts "
                "WHERE ? IS NULL OR campaign = ? ORDER BY seq",
                (campaign, campaign),
            )
        ]

    def schedule_mandate_updates(
        self, campaign: str, programme: str, from_period: int, channel: str, provider: str, at: str
    ) -> int:
        db = self._db
        rows = db.execute(
            "SELECT beneficiary_id, details FROM campaign_targets "
            "WHERE campaign = ? AND details IS NOT NULL ORDER BY beneficiary_id",
            (campaign,),
        ).fetchall()
        db.executemany(
            "INSERT INTO mandate_updates (campaign, beneficiary_id, programme, from_period, "
            "channel, provider, details, state, scheduled_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'scheduled', ?)",
            [
                (
                    campaign,
                    ident,
                    programme,
                    from_period,
                    channel,
                    provider,
                    self._seal_address(
                        "mandate_updates",
                        ident,
                        self._open_address("campaign_targets", ident, details),
                    ),
                    at,
                )
                for ident, details in rows
            ],
        )
        db.execute(
            "UPDATE campaign_targets SET state = 'scheduled', details = NULL, updated_at = ? "
            "WHERE campaign = ? AND details IS NOT NULL",
            (at, campaign),
        )
        return len(rows)

    def mandate_updates(
        self,
        programme: str,
        states: Sequence[str],
        campaign: str | None = None,
        *,
        changed_since: bool = False,
    ) -> list[MandateUpdate]:
        columns = ", ".join(
            f"u.{f}" if f != "address" else "u.details" for f in MandateUpdate._fields
        )
        changed = (
            " AND u.applied_version < (SELECT b.version FROM beneficiaries AS b "
            "WHERE b.beneficiary_id = u.beneficiary_id)"
            if changed_since
            else ""
        )
        found = []
        for row in self._db.execute(
            f"SELECT {columns} FROM mandate_updates AS u WHERE u.programme = ? "
            f"AND (? IS NULL OR u.campaign = ?) AND u.state IN ({_placeholders(len(states))})"
            f"{changed} ORDER BY u.beneficiary_id, u.campaign",
            (programme, campaign, campaign, *states),
        ):
            update = MandateUpdate._make(row)
            if update.address is not None:
                update = update._replace(
                    address=self._open_address(
                        "mandate_updates", update.beneficiary_id, update.address
                    )
                )
            found.append(update)
        return found

    def apply_mandate_update(
        self,
        update: MandateUpdate,
        record: BeneficiaryRecord,
        *,
        period: int,
        import_id: int,
        at: str,
    ) -> int:
        db = self._db
        ident = update.beneficiary_id
        # the old version to the history as the roster import's trigger keeps it
        db.execute(
            "INSERT INTO beneficiary_history (beneficiary_id, version, replaced_by_import, record, "
            f"details) SELECT beneficiary_id, version, ?, "
            f"json_array({', '.join(_BENEFICIARY_COLUMNS[:-1])}, NULL), details "
            "FROM beneficiaries WHERE beneficiary_id = ?",
            (import_id, ident),
        )
        updates = ", ".join(f"{c} = ?" for c in _STORED_COLUMNS[1:])
        db.execute(
            f"UPDATE beneficiaries SET {updates}, version = version + 1, import_id = ? "
            "WHERE beneficiary_id = ?",
            (*_seal_row(self._cipher, record)[1:], import_id, ident),
        )
        version = self.beneficiary_version(ident)
        db.execute(
            "UPDATE mandate_updates SET state = 'applied', details = NULL, "
            "applied_at = coalesce(applied_at, ?), applied_period = coalesce(applied_period, ?), "
            "applied_version = ? WHERE campaign = ? AND beneficiary_id = ?",
            (at, period, version, update.campaign, ident),
        )
        db.execute(
            "UPDATE campaign_targets SET state = 'applied', updated_at = ? "
            "WHERE campaign = ? AND beneficiary_id = ?",
            (at, update.campaign, ident),
        )
        assert version is not None
        return version

    def supersede_mandate_update(self, campaign: str, beneficiary_id: str, at: str) -> None:
        self._db.execute(
            "UPDATE mandate_updates SET state = 'superseded', applied_at = ? "
            "WHERE campaign = ? AND beneficiary_id = ?",
            (at, campaign, beneficiary_id),
        )

    # -- plugin state -------------------------------------------------------------------------
    def plugin_state_get(self, provider: str, namespace: str, key: str) -> bytes | None:
        row = self._db.execute(
            "SELECT value FROM plugin_state WHERE provider = ? AND namespace = ? AND key = ?",
            (provider, namespace, key),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def plugin_state_put(
        self, provider: str, namespace: str, key: str, value: bytes, at: str
    ) -> None:
        self._db.execute(
            "INSERT INTO plugin_state (provider, namespace, key, value, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, namespace, key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (provider, namespace, key, bytes(value), at),
        )

    def plugin_state_items(self, provider: str, namespace: str) -> Iterator[tuple[str, bytes]]:
        after = ""
        while True:  # a page at a time, by key: the caller may write while it reads
            page = self._db.execute(
                "SELECT key, value FROM plugin_state WHERE provider = ? AND namespace = ? "
                "AND key > ? ORDER BY key LIMIT 1000",
                (provider, namespace, after),
            ).fetchall()
            for key, value in page:
                yield str(key), bytes(value)
            if len(page) < 1000:
                return
            after = str(page[-1][0])

    def count_beneficiaries(self, programme: str) -> int:
        (total,) = self._db.execute(
            "SELECT count(*) FROM beneficiaries WHERE programme = ?", (programme,)
        ).fetchone()
        return int(total)

    def query(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run a read-only query (reports and tests); never used to change the ledger."""
        return list(self._db.execute(sql, parameters))
