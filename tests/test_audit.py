"""The tamper-evident audit trail: the hash chain, the instructions cross-checked against it, and
signed checkpoints.

The tampering tests edit a closed ledger file directly with sqlite3, the way someone with access
to the database would — change a byte of an event, an amount, delete, insert or swap rows — and
every edit must be caught; an untampered copy verifies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import RosterLoader, live_instruction, open_ledger, roster_row, settle
from sap_payments import Ledger
from sap_payments import cycles as cycles_module
from sap_payments._chain import GENESIS, encode, event_hash
from sap_payments.audit import AuditFailed, Checkpoint, InvalidCheckpoint, verify
from sap_payments.config import Config
from sap_payments.cycles import CLOSED
from sap_payments.errors import ConfigError, CycleStateError, InvalidInput
from sap_payments.signing import generate_signing_key, load_private_key

P = "2021-09"
PROGRAMME = "monthly-allowance"
OUTCOMES = ("PAID", "PAID", "FAILED", "PAID", "RETURNED", "UNCLAIMED", "PAID")


def _closed_ledger(directory: Path) -> Path:
    """A ledger with a closed cycle (paid, failed, returned, unclaimed, one held), a second
    cycle prepared, and a checkpoint of the first at ``directory / "checkpoint.json"``."""
    directory.mkdir(parents=True, exist_ok=True)
    ledger = open_ledger(directory)
    rows = [
        roster_row(f"B{k}", msisdn=f"09123456{k:02d}", coefficient=str(1 + k % 3))
        for k in range(len(OUTCOMES))
    ]
    rows.append(
        roster_row(
            "BH", proxy_name="Trần Thị Bé", proxy_relation="con", mandate_valid_until="2021-08-31"
        )
    )
    RosterLoader(directory)(ledger, *rows)
    ledger.prepare(P, by="maker")
    ledger.approve(P, by="checker")
    for k, outcome in enumerate(OUTCOMES):
        settle(ledger, live_instruction(ledger, P, f"B{k}").instruction_id, outcome)
    ledger.close_cycle(P)
    private, _public, _ = generate_signing_key(directory / "agency.pem")
    ledger.checkpoint(P, key=private).write(directory / "checkpoint.json")
    ledger.prepare("2021-10", by="maker")
    ledger.close()
    return directory / "l.db"


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _closed_ledger(tmp_path_factory.mktemp("closed"))


def _copy(source: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for path in source.parent.iterdir():
        if path.is_file():
            shutil.copy(path, directory / path.name)
    return directory / source.name


def _verify(path: Path, checkpoint: Checkpoint | None = None) -> list[str]:
    with Ledger.open(path, durable=False) as ledger:
        report = verify(ledger.store, checkpoint)
        assert report.total_problems >= len(report.problems)
        return [str(p) for p in report.problems]


@pytest.fixture
def copy(closed: Path, tmp_path: Path) -> Path:
    return _copy(closed, tmp_path / "copy")


def _sql(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# -- an untampered ledger -------------------------------------------------------------------------
def test_an_untampered_ledger_verifies_with_and_without_its_checkpoint(closed: Path) -> None:
    checkpoint = Checkpoint.load(closed.parent / "checkpoint.json")
    assert checkpoint.signature_valid()
    assert _verify(closed) == []
    assert _verify(closed, checkpoint) == []
    with Ledger.open(closed, durable=False) as ledger:
        report = ledger.verify_audit(closed.parent / "checkpoint.json")
        assert report.ok
        # every instruction of both cycles was cross-checked, and every event chained
        (count,) = ledger.store.query("SELECT count(*) FROM instructions")[0]
        assert report.instructions == count > 0
        (events,) = ledger.store.query("SELECT count(*) FROM events WHERE hash IS NOT NULL")[0]
        assert report.events == events == report.head_seq


def test_the_chain_is_sha256_over_the_previous_hash_and_the_row_as_json(closed: Path) -> None:
    """Anyone can recompute it from the documented encoding, without sap_payments' store."""
    db = _sql(closed)
    previous = GENESIS
    rows = db.execute(
        "SELECT seq, at, kind, instruction_id, from_state, to_state, actor, detail, content, hash "
        "FROM events ORDER BY seq"
    ).fetchall()
    for *row, stored in rows:
        text = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
        previous = hashlib.sha256(previous + text.encode()).digest()
        assert previous == stored
    assert db.execute("SELECT seq, hash FROM chain_head").fetchone() == (rows[-1][0], previous)


def test_instruction_events_carry_amount_payee_and_a_fingerprint_never_the_address(
    closed: Path,
) -> None:
    db = _sql(closed)
    contents = db.execute(
        "SELECT kind, content FROM events WHERE content IS NOT NULL ORDER BY seq"
    ).fetchall()
    assert {kind for kind, _ in contents} == {"instruction.created"}
    amount, currency, beneficiary, provider, fingerprint = json.loads(contents[0][1])
    assert (currency, provider) == ("VND", "viettelpay")
    assert amount > 0
    assert beneficiary.startswith("B")
    assert len(fingerprint) >= 32
    everything = " ".join(str(value) for row in db.execute("SELECT * FROM events") for value in row)
    for secret in ("0912345600", "Trần Thị Bé", "Nguyễn Văn An"):
        assert secret not in everything


# -- tampering: each kind, at seeded random places -----------------------------------------------
def _events(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    return db.execute("SELECT * FROM events ORDER BY seq").fetchall()


def _columns(db: sqlite3.Connection) -> list[str]:
    return [row[1] for row in db.execute("PRAGMA table_info(events)")]


def _change_byte(db: sqlite3.Connection, rng: random.Random) -> str:
    rows = db.execute("SELECT seq, detail FROM events WHERE detail IS NOT NULL").fetchall()
    seq, detail = rng.choice(rows)
    at = rng.randrange(len(detail))
    replacement = "X" if detail[at] != "X" else "Y"
    db.execute(
        "UPDATE events SET detail = ? WHERE seq = ?",
        (detail[:at] + replacement + detail[at + 1 :], seq),
    )
    return f"event {seq}"


def _change_field(db: sqlite3.Connection, rng: random.Random) -> str:
    seq = rng.choice([row[0] for row in _events(db)])
    column = rng.choice(["at", "kind", "actor", "to_state", "from_state", "content", "hash"])
    (value,) = db.execute(f"SELECT {column} FROM events WHERE seq = ?", (seq,)).fetchone()
    new: object = "2021-01-01T00:00:00+00:00" if column == "at" else "tampered"
    if column == "hash":
        new = bytes(32) if value != bytes(32) else b"\x01" * 32
    if value == new:
        new = "tampered again"
    db.execute(f"UPDATE events SET {column} = ? WHERE seq = ?", (new, seq))
    return f"event {seq}"


def _change_amount(db: sqlite3.Connection, rng: random.Random) -> str:
    ident, amount = rng.choice(
        db.execute("SELECT instruction_id, amount FROM instructions").fetchall()
    )
    delta = rng.choice([1, -1, 1000, 100_000, -amount // 2])
    db.execute(
        "UPDATE instructions SET amount = ? WHERE instruction_id = ?", (amount + delta, ident)
    )
    return f"instruction {ident}"


def _change_instruction(db: sqlite3.Connection, rng: random.Random) -> str:
    ident, state = rng.choice(
        db.execute("SELECT instruction_id, state FROM instructions").fetchall()
    )
    column, value = rng.choice(
        [
            ("currency", "USD"),
            ("provider", "vietinbank"),
            ("state", "READY" if state != "READY" else "PAID"),
        ]
    )
    db.execute(f"UPDATE instructions SET {column} = ? WHERE instruction_id = ?", (value, ident))
    return f"instruction {ident}"


def _delete_instruction(db: sqlite3.Connection, rng: random.Random) -> str:
    (ident,) = rng.choice(db.execute("SELECT instruction_id FROM instructions").fetchall())
    db.execute("DELETE FROM instructions WHERE instruction_id = ?", (ident,))
    return f"instruction {ident}"


def _delete_event(db: sqlite3.Connection, rng: random.Random) -> str:
    seqs = [row[0] for row in _events(db)]
    seq = rng.choice([seqs[0], seqs[-1], *rng.sample(seqs, 3)])
    db.execute("DELETE FROM events WHERE seq = ?", (seq,))
    return "event"


def _insert_event(db: sqlite3.Connection, rng: random.Random) -> str:
    rows = _events(db)
    template = list(rng.choice(rows))
    columns = _columns(db)
    template[columns.index("seq")] = None  # the next seq, at the end of the log
    template[columns.index("detail")] = "a forged event"
    if rng.random() < 0.5:  # with a hash copied from a real row, or none at all
        template[columns.index("hash")] = None
    db.execute(f"INSERT INTO events VALUES ({', '.join('?' * len(columns))})", template)
    return "event"


def _swap_events(db: sqlite3.Connection, rng: random.Random) -> str:
    rows = _events(db)
    columns = _columns(db)
    first, second = rng.sample(rows, 2)
    while first[1:-1] == second[1:-1]:
        first, second = rng.sample(rows, 2)
    keep_hash = rng.random() < 0.5  # the hashes stay with their seq, or move with the rows
    for target, source in ((first, second), (second, first)):
        values = list(source[1:])
        if keep_hash:
            values[-1] = target[-1]
        sets = ", ".join(f"{c} = ?" for c in columns[1:])
        db.execute(f"UPDATE events SET {sets} WHERE seq = ?", (*values, target[0]))
    return "event"


TAMPERINGS: dict[str, Callable[[sqlite3.Connection, random.Random], str]] = {
    "change a byte of a detail": _change_byte,
    "change a field of an event": _change_field,
    "change an amount": _change_amount,
    "change an instruction's currency, provider or state": _change_instruction,
    "delete an instruction": _delete_instruction,
    "delete an event": _delete_event,
    "insert an event": _insert_event,
    "swap two events": _swap_events,
}


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("kind", list(TAMPERINGS))
def test_every_tampering_is_caught(closed: Path, tmp_path: Path, kind: str, seed: int) -> None:
    path = _copy(closed, tmp_path / "copy")
    db = _sql(path)
    where = TAMPERINGS[kind](db, random.Random(f"{kind}/{seed}"))
    db.close()
    problems = _verify(path)
    assert problems, f"{kind} not caught"
    if where.startswith("instruction "):  # it names the instruction
        assert any(p.startswith(where) for p in problems), problems
    if where.startswith("event "):  # it names the first bad event: that one
        first = next(p for p in problems if p.startswith("event "))
        assert first.startswith(where + ":"), problems


def test_a_deleted_event_is_named_and_so_is_the_one_after_it(copy: Path) -> None:
    db = _sql(copy)
    db.execute("DELETE FROM events WHERE seq = 5")
    db.close()
    problems = _verify(copy)
    assert problems[0] == "event 6: event 5 missing: deleted from the log"


def test_the_last_events_deleted_are_caught_by_the_chain_head(copy: Path) -> None:
    db = _sql(copy)
    (last,) = db.execute("SELECT max(seq) FROM events").fetchone()
    db.execute("DELETE FROM events WHERE seq > ?", (last - 2,))
    db.close()
    assert any("events were deleted from its end" in p for p in _verify(copy))


def _rechain(db: sqlite3.Connection) -> None:
    """What a careful forger does: recompute every hash and the head after editing."""
    previous = GENESIS
    rows = db.execute(
        "SELECT seq, at, kind, instruction_id, from_state, to_state, actor, detail, content "
        "FROM events ORDER BY seq"
    ).fetchall()
    for row in rows:
        previous = event_hash(previous, row)
        db.execute("UPDATE events SET hash = ? WHERE seq = ?", (previous, row[0]))
    db.execute("UPDATE chain_head SET seq = ?, hash = ?", (rows[-1][0], previous))


def test_a_rewritten_log_that_is_consistent_is_caught_only_by_the_checkpoint(copy: Path) -> None:
    checkpoint = Checkpoint.load(copy.parent / "checkpoint.json")
    db = _sql(copy)
    db.execute(
        "UPDATE events SET detail = 'nothing happened' WHERE seq = "
        "(SELECT min(seq) FROM events WHERE kind = 'cycle.approved')"
    )
    _rechain(db)
    db.close()
    assert _verify(copy) == []  # the chain alone cannot tell
    problems = _verify(copy, checkpoint)
    assert any("the log was rewritten" in p for p in problems), problems


def test_a_truncated_log_is_caught_by_the_checkpoint(copy: Path) -> None:
    checkpoint = Checkpoint.load(copy.parent / "checkpoint.json")
    db = _sql(copy)
    # drop everything after the first cycle's 'cycle.prepared' event, instructions included
    (cut,) = db.execute("SELECT min(seq) FROM events WHERE kind = 'cycle.approved'").fetchone()
    db.execute("DELETE FROM events WHERE seq >= ?", (cut,))
    db.execute("DELETE FROM instructions WHERE period > 24260")
    _rechain(db)
    db.close()
    problems = _verify(copy, checkpoint)
    assert any("events were removed" in p for p in problems), problems


def test_a_forged_checkpoint_signature_is_caught(closed: Path, tmp_path: Path) -> None:
    checkpoint = Checkpoint.load(closed.parent / "checkpoint.json")
    forged = Checkpoint.from_json(
        checkpoint.to_json().replace(f'"size": {checkpoint.size}', f'"size": {checkpoint.size - 1}')
    )
    assert not forged.signature_valid()
    assert any("signature does not verify" in p for p in _verify(closed, forged))


def test_a_checkpoint_needs_a_closed_cycle_and_an_intact_log(copy: Path, tmp_path: Path) -> None:
    key = load_private_key(copy.parent / "agency.pem")
    with Ledger.open(copy, durable=False) as ledger:
        with pytest.raises(CycleStateError, match="not closed"):
            ledger.checkpoint("2021-10", key=key)
        stored = ledger.checkpoint(P)  # without a key: the one made before
        assert stored == Checkpoint.load(copy.parent / "checkpoint.json")
        assert ledger.cycle(P).state == CLOSED
    db = _sql(copy)
    db.execute("UPDATE instructions SET amount = amount + 1 WHERE rowid = 1")
    db.close()
    with Ledger.open(copy, durable=False) as ledger, pytest.raises(AuditFailed):
        ledger.checkpoint(P, key=key)  # a tampered log is never signed


def test_bad_checkpoint_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(InvalidCheckpoint, match="not a"):
        Checkpoint.load(bad)
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(InvalidCheckpoint, match="not JSON"):
        Checkpoint.load(bad)
    with pytest.raises(InvalidCheckpoint, match="cannot be read"):
        Checkpoint.load(tmp_path / "missing.json")


def test_events_written_outside_a_transaction_are_sealed(tmp_path: Path) -> None:
    """append_events and apply_moves outside any transaction still chain their events."""
    from sap_payments.store import EventRecord

    with open_ledger(tmp_path) as ledger:
        ledger.store.append_events(
            [EventRecord("2021-09-01T00:00:00+00:00", "note", None, None, None, "me", "x")]
        )
        assert verify(ledger.store).ok
        (unsealed,) = ledger.store.query("SELECT count(*) FROM events WHERE hash IS NULL")[0]
        assert unsealed == 0


def test_a_ledger_from_before_the_audit_trail_is_sealed_on_its_next_write(tmp_path: Path) -> None:
    """Events that exist without hashes (a ledger migrated to this version) are chained from
    the first when the ledger is next written to, and then verify."""
    load = RosterLoader(tmp_path)
    with open_ledger(tmp_path) as ledger:
        load(ledger, roster_row("B1"))
        ledger.prepare(P)
    db = _sql(tmp_path / "l.db")
    db.execute("UPDATE events SET hash = NULL")
    db.execute("DELETE FROM chain_head")
    db.close()
    with open_ledger(tmp_path) as ledger:
        assert not verify(ledger.store).ok
        ledger.approve(P, by="checker")
        assert verify(ledger.store).ok


# -- the encoding ----------------------------------------------------------------------------
_values = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text()


@given(st.lists(_values, max_size=12))
def test_the_encoding_is_compact_json(row: list[object]) -> None:
    """The fast encoder is exactly ``json.dumps(…, ensure_ascii=False, separators=(",", ":"))``,
    the encoding docs/audit.md documents."""
    assert encode(row) == json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    assert encode(tuple(row)) == encode(row)


def test_a_parallel_prepare_chains_the_same_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers compute the created events' contents; the parent chains them: the same contents
    as one process computes, and a trail that verifies."""
    monkeypatch.setattr(cycles_module, "PARALLEL_MIN_BENEFICIARIES", 0)
    rows = [roster_row(f"B{k:03d}", msisdn=f"0912345{k:03d}") for k in range(60)]
    contents = []
    for workers in (1, 2):
        directory = tmp_path / f"w{workers}"
        directory.mkdir()
        with open_ledger(directory) as ledger:
            RosterLoader(directory)(ledger, *rows)
            ledger.prepare(P, workers=workers)
            assert ledger.verify_audit().ok
            contents.append(
                sorted(
                    (event.instruction_id, event.content)
                    for _, event in ledger.store.events()
                    if event.content is not None
                )
            )
    assert len(contents[0]) == 60
    # the fingerprints are keyed per ledger, and the ids carry the ledger's id: compare the rest
    assert sorted(c.rsplit(",", 1)[0] for _, c in contents[0]) == sorted(
        c.rsplit(",", 1)[0] for _, c in contents[1]
    )


def test_an_erased_address_still_verifies_and_its_amount_is_still_covered(tmp_path: Path) -> None:
    """Erasure (docs/security.md) replaces addresses on purpose: the trail still verifies, and
    the rest of the instruction is still checked against it."""
    with open_ledger(tmp_path) as ledger:
        RosterLoader(tmp_path)(
            ledger, roster_row("B1", last_period=P), roster_row("B2", msisdn="0912345670")
        )
        ledger.prepare(P)
        ledger.approve(P, by="checker")
        for beneficiary in ("B1", "B2"):
            settle(ledger, live_instruction(ledger, P, beneficiary).instruction_id, "PAID")
        ledger.close_cycle(P)
        assert ledger.erase(["B1"], today=dt.date(2040, 1, 1)) == ["B1"]
        erased = live_instruction(ledger, P, "B1")
        assert "[erased]" in erased.address
        assert ledger.verify_audit().ok
    db = _sql(tmp_path / "l.db")
    db.execute(
        "UPDATE instructions SET amount = 1 WHERE instruction_id = ?", (erased.instruction_id,)
    )
    db.close()
    with open_ledger(tmp_path) as ledger:
        assert [str(p) for p in ledger.verify_audit().problems] == [
            f"instruction {erased.instruction_id}: amount differs from the audit trail"
        ]


# -- a checkpoint at every close (checkpoint_key in the configuration) ------------------------
def test_closing_signs_a_checkpoint_when_the_agency_key_is_configured(tmp_path: Path) -> None:
    generate_signing_key(tmp_path / "keys" / "agency.pem")
    config_file = tmp_path / "sap-payments.toml"
    config_file.write_text(
        'checkpoint_key = "keys/agency.pem"\ncheckpoints = "checkpoints"\n', encoding="utf-8"
    )
    config = Config.load(config_file)
    assert config.checkpoint_key == tmp_path / "keys" / "agency.pem"
    with Ledger.open(tmp_path / "l.db", config=config) as ledger:
        RosterLoader(tmp_path)(ledger, roster_row("B1"), roster_row("B2"))
        ledger.prepare(P, by="maker")
        ledger.approve(P, by="checker")
        for record, _ in ledger.instructions(P):
            settle(ledger, record.instruction_id, "PAID")
        closed = ledger.close_cycle(P)
        assert closed.checkpoint is not None
        assert closed.checkpoint.signature_valid()
        assert (
            closed.checkpoint_file == tmp_path / "checkpoints" / f"checkpoint-{PROGRAMME}-{P}.json"
        )
        written = Checkpoint.load(closed.checkpoint_file)
        assert written == closed.checkpoint == ledger.checkpoint(P)  # stored in the ledger too
        assert verify(ledger.store, written).problems == ()


def test_without_the_key_closing_makes_no_checkpoint(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        RosterLoader(tmp_path)(ledger, roster_row("B1"))
        ledger.prepare(P)
        ledger.approve(P, by="checker")
        for record, _ in ledger.instructions(P):
            settle(ledger, record.instruction_id, "PAID")
        closed = ledger.close_cycle(P)
        assert (closed.checkpoint, closed.checkpoint_file) == (None, None)
        with pytest.raises(InvalidInput, match="no checkpoint"):
            ledger.checkpoint(P)


def test_a_configured_checkpoint_key_must_be_a_path() -> None:
    with pytest.raises(ConfigError, match="signing key"):
        Config.loads("checkpoint_key = 3")
