"""Personal data at rest: the keyring, sealing bound to the record, blind indexes, key rotation
(interrupted and resumed), erasure, and the ``keys``/``erase`` commands."""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import io
import json
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import roster_row, write_roster
from sap_payments import Ledger
from sap_payments.cli import main
from sap_payments.crypto import (
    ERASED,
    KEYRING_ENV,
    Cipher,
    DecryptionError,
    ErasureRefused,
    Keyring,
    KeyringError,
    KeyringMismatch,
    KeyringNotFound,
    default_keyring_path,
)
from sap_payments.sqlite_store import SQLiteStore

P = "2021-09"
WHERE = ("t", "c", "r")


# -- the keyring and the cipher ---------------------------------------------------------------
def test_keyring_file_round_trip_private_and_never_shown(tmp_path: Path) -> None:
    keyring = Keyring.generate().save(tmp_path / "k.keyring")
    assert stat.S_IMODE((tmp_path / "k.keyring").stat().st_mode) == 0o600
    loaded = Keyring.load(tmp_path / "k.keyring")
    assert (loaded.active, dict(loaded.keys), loaded.index_key) == (
        keyring.active,
        dict(keyring.keys),
        keyring.index_key,
    )
    for secret in (*keyring.keys.values(), keyring.index_key):
        assert base64.b64encode(secret).decode() not in repr(loaded)
        assert secret.hex() not in repr(loaded)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"keys": {}}',
        '{"active": "k9", "keys": {"k1": "AAAA"}, "index_key": "AAAA"}',
    ],
)
def test_a_bad_keyring_is_a_typed_error(text: str) -> None:
    with pytest.raises(KeyringError):
        Keyring.loads(text)


@given(st.text(), st.text(min_size=1, max_size=40))
def test_seal_then_open_gives_the_text_back(text: str, record: str) -> None:
    cipher = Cipher(KEYRING)
    aad = f"beneficiaries|details|{record}".encode()
    sealed = cipher.seal(aad, text)
    assert isinstance(sealed, bytes)
    assert sealed.startswith(b"\x01\x02k1")  # version, key id length, key id
    assert cipher.open(aad, sealed, WHERE) == text
    assert sealed != cipher.seal(aad, text)  # a fresh nonce each time


KEYRING = Keyring.generate()


def test_a_value_opens_only_for_its_own_table_column_and_record() -> None:
    cipher = Cipher(KEYRING)
    sealed = cipher.seal(b"beneficiaries|details|B1", "Nguyễn Văn An")
    for other in (b"beneficiaries|details|B2", b"instructions|details|B1", b"beneficiaries|x|B1"):
        with pytest.raises(DecryptionError, match="authentication failed"):
            cipher.open(other, sealed, WHERE)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        cipher.open(b"beneficiaries|details|B1", bytes(tampered), WHERE)
    with pytest.raises(DecryptionError, match="not in the keyring"):
        Cipher(Keyring.generate("k7")).open(b"beneficiaries|details|B1", sealed, WHERE)
    assert cipher.open(b"whatever", Cipher.erased(ERASED), WHERE) == ERASED


def test_blind_index_is_keyed_and_separates_purposes() -> None:
    one, two = Cipher(KEYRING), Cipher(Keyring.generate())
    # HMAC-SHA256 under the index key, truncated to 16 bytes
    expected = hmac.digest(KEYRING.index_key, b"msisdn\x00+84912345678", "sha256")[:16].hex()
    assert one.blind_index("msisdn", "+84912345678") == expected
    assert one.blind_index("national_id", "046012345678") == one.blind_index(
        "national_id", "046012345678"
    )
    assert len(one.blind_index("address", "ewallet:+84912345678")) == 32
    assert one.blind_index("msisdn", "x") != one.blind_index("account", "x")
    assert one.blind_index("msisdn", "x") != two.blind_index("msisdn", "x")
    assert "046012345678" not in one.blind_index("national_id", "046012345678")


# -- the store --------------------------------------------------------------------------------
def _ledger(tmp_path: Path, *rows: dict[str, str], name: str = "l.db") -> Ledger:
    ledger = Ledger.open(tmp_path / name, durable=False)
    ledger.import_roster(write_roster(tmp_path / "roster.csv", rows))
    return ledger


def _raw(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def test_a_new_ledger_gets_a_keyring_beside_it_and_stores_no_plaintext(tmp_path: Path) -> None:
    row = roster_row("B1", full_name="Hồ Thị Canary", msisdn="0912000111")
    with _ledger(tmp_path, row) as ledger:
        ledger.prepare(P)
        (national_id, details, index) = ledger.store.query(
            "SELECT national_id, details, national_id_index FROM beneficiaries"
        )[0]
        assert national_id is None
        assert isinstance(details, bytes)
        assert index.hex() == ledger.store.blind_index("national_id", row["national_id"])
        (address, payee_name, payee) = ledger.store.query(
            "SELECT address, payee_name, payee FROM instructions"
        )[0]
        assert (address, payee_name) == ("", "")
        assert isinstance(payee, bytes)
        record = ledger.store.beneficiary("B1")
        assert record is not None
        assert record.full_name == "Hồ Thị Canary"
        (instruction,) = ledger.store.beneficiary_instructions(ledger.config.programme, "B1")
        assert (instruction.address, instruction.payee_name) == (
            "ewallet:+84912000111",
            "Hồ Thị Canary",
        )
    assert stat.S_IMODE(default_keyring_path(tmp_path / "l.db").stat().st_mode) == 0o600
    raw = _raw(tmp_path / "l.db")
    for secret in ("Hồ Thị Canary", row["national_id"], "912000111"):
        assert secret.encode() not in raw


def test_a_ciphertext_copied_to_another_row_fails_to_open(tmp_path: Path) -> None:
    with _ledger(tmp_path, roster_row("B1"), roster_row("B2", full_name="Trần Văn Bình")) as led:
        led.prepare(P)
        db = sqlite3.connect(tmp_path / "l.db")
        with db:
            db.execute(
                "UPDATE beneficiaries SET details = "
                "(SELECT details FROM beneficiaries WHERE beneficiary_id = 'B1') "
                "WHERE beneficiary_id = 'B2'"
            )
            db.execute(
                "UPDATE instructions SET payee = (SELECT payee FROM instructions "
                "WHERE beneficiary_id = 'B1') WHERE beneficiary_id = 'B2'"
            )
        db.close()
        assert led.store.beneficiary("B1") is not None
        with pytest.raises(DecryptionError) as caught:
            led.store.beneficiary("B2")
        assert (caught.value.table, caught.value.column, caught.value.record) == (
            "beneficiaries",
            "details",
            "B2",
        )
        with pytest.raises(DecryptionError, match=r"instructions\.payee of"):
            led.store.beneficiary_instructions(led.config.programme, "B2")


def test_an_encrypted_ledger_refuses_to_open_without_its_keyring(tmp_path: Path) -> None:
    _ledger(tmp_path, roster_row("B1")).close()
    keyring = default_keyring_path(tmp_path / "l.db")
    moved = keyring.rename(tmp_path / "elsewhere.keyring")
    with pytest.raises(KeyringNotFound, match="encrypted and its keyring was not found"):
        Ledger.open(tmp_path / "l.db")
    with pytest.raises(KeyringMismatch, match="index key differs"):
        SQLiteStore(tmp_path / "l.db", keyring=Keyring.generate())
    with pytest.raises(KeyringMismatch, match="plaintext"):
        SQLiteStore(tmp_path / "l.db", keyring=Keyring.insecure_plaintext())
    with Ledger.open(tmp_path / "l.db", keyring=Keyring.load(moved)) as ledger:
        record = ledger.store.beneficiary("B1")
        assert record is not None
        assert record.full_name == roster_row()["full_name"]


@pytest.mark.parametrize("form", ["path", "json", "base64"])
def test_the_keyring_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    keyring = Keyring.generate().save(tmp_path / "env.keyring")
    text = keyring.dumps()
    value = {
        "path": str(tmp_path / "env.keyring"),
        "json": text,
        "base64": base64.b64encode(text.encode()).decode(),
    }[form]
    monkeypatch.setenv(KEYRING_ENV, value)
    _ledger(tmp_path, roster_row("B1")).close()
    assert not default_keyring_path(tmp_path / "l.db").exists()
    monkeypatch.delenv(KEYRING_ENV)
    with pytest.raises(KeyringNotFound):
        SQLiteStore(tmp_path / "l.db")
    assert SQLiteStore(tmp_path / "l.db", keyring=keyring).beneficiary("B1") is not None


def test_the_configured_keyring_is_used(tmp_path: Path) -> None:
    from sap_payments.config import Config

    Keyring.generate().save(tmp_path / "agency.keyring")
    (tmp_path / "sap-payments.toml").write_text('keyring = "agency.keyring"\n')
    config = Config.load(tmp_path / "sap-payments.toml")
    with Ledger.open(tmp_path / "l.db", config=config) as ledger:
        assert ledger.store.keyring.path == tmp_path / "agency.keyring"
    assert not default_keyring_path(tmp_path / "l.db").exists()


def test_reimporting_the_same_roster_changes_nothing_though_ciphertexts_differ(
    tmp_path: Path,
) -> None:
    rows = [roster_row("B1"), roster_row("B2", national_id="046099999999")]
    with _ledger(tmp_path, *rows) as ledger:
        again = ledger.import_roster(write_roster(tmp_path / "again.csv", rows))
        assert (again.added, again.changed, again.unchanged) == (0, 0, 2)
        changed = [rows[0], {**rows[1], "msisdn": "0912999888"}]
        third = ledger.import_roster(write_roster(tmp_path / "third.csv", changed))
        assert (third.changed, third.unchanged) == (1, 1)
        ((version, old),) = ledger.store.beneficiary_history("B2")
        assert (version, old.msisdn, old.national_id) == (1, "+84912345678", "046099999999")


def test_shared_national_ids_are_found_through_the_blind_index(tmp_path: Path) -> None:
    from sap_payments import InvalidRoster

    with _ledger(tmp_path, roster_row("B1")) as ledger:
        clash = roster_row("B2", national_id=roster_row("B1")["national_id"])
        with pytest.raises(InvalidRoster) as caught:
            ledger.import_roster(write_roster(tmp_path / "clash.csv", [roster_row("B1"), clash]))
        assert "line 3, column national_id" in str(caught.value)
        assert clash["national_id"] not in str(caught.value)


def test_the_plaintext_mode_stores_clear_text_and_a_keyring_then_seals_it(tmp_path: Path) -> None:
    """The benchmark's insecure mode — and how a ledger written in clear gets sealed."""
    with Ledger.open(tmp_path / "l.db", keyring=Keyring.insecure_plaintext()) as ledger:
        ledger.import_roster(write_roster(tmp_path / "r.csv", [roster_row("B1")]))
        ledger.prepare(P)
        assert ledger.key_status() == {
            "beneficiaries.details": {"plaintext": 1},
            "instructions.payee": {"plaintext": 1},
        }
    assert roster_row()["full_name"].encode() in _raw(tmp_path / "l.db")
    keyring = Keyring.generate().save(tmp_path / "real.keyring")
    with Ledger.open(tmp_path / "l.db", keyring=keyring) as ledger:  # sealed as it opens
        assert ledger.key_status() == {
            "beneficiaries.details": {"k1": 1},
            "instructions.payee": {"k1": 1},
        }
        record = ledger.store.beneficiary("B1")
        assert record is not None
        assert record.full_name == roster_row()["full_name"]
    with pytest.raises(KeyringMismatch):
        SQLiteStore(tmp_path / "l.db", keyring=Keyring.insecure_plaintext())


# -- rotation ---------------------------------------------------------------------------------
class Interrupted(Exception):
    pass


def _rotation_ledger(tmp_path: Path) -> Ledger:
    rows = [roster_row(f"B{n:03d}") for n in range(120)]
    ledger = _ledger(tmp_path, *rows)
    ledger.prepare(P)
    changed = [{**row, "msisdn": "0912000999"} for row in rows[:30]] + rows[30:]
    ledger.import_roster(write_roster(tmp_path / "changed.csv", changed))  # 30 in history
    return ledger


def test_an_interrupted_rotation_resumes_and_ends_under_the_new_key(tmp_path: Path) -> None:
    ledger = _rotation_ledger(tmp_path)
    before = {r.beneficiary_id: r for r in ledger.store.beneficiaries(ledger.config.programme)}
    history = ledger.store.beneficiary_history("B000")
    payees = sorted((r.instruction_id, r.address, r.payee_name) for r, _ in ledger.instructions(P))
    assert ledger.key_status() == {
        "beneficiaries.details": {"k1": 120},
        "beneficiary_history.details": {"k1": 30},
        "instructions.payee": {"k1": 120},
    }

    def stop_after_two(rows: int) -> None:
        if rows >= 100:
            raise Interrupted

    with pytest.raises(Interrupted):
        ledger.rotate_keys(batch=50, after_batch=stop_after_two)
    # half done: both keys in use, the keyring file holds both, and every reader still works
    assert ledger.key_status()["beneficiaries.details"] == {"k1": 20, "k2": 100}
    assert sorted(Keyring.load(ledger.store.keyring.path or "").keys) == ["k1", "k2"]
    with SQLiteStore(tmp_path / "l.db", readonly=True) as reader:
        assert {
            r.beneficiary_id: r for r in reader.beneficiaries(ledger.config.programme)
        } == before
    ledger.close()

    with Ledger.open(tmp_path / "l.db") as ledger:
        done = ledger.rotate_keys(batch=50)
        assert (done.active, done.resumed, done.retired) == ("k2", True, ("k1",))
        assert ledger.key_status() == {
            "beneficiaries.details": {"k2": 120},
            "beneficiary_history.details": {"k2": 30},
            "instructions.payee": {"k2": 120},
        }
        assert {
            r.beneficiary_id: r for r in ledger.store.beneficiaries(ledger.config.programme)
        } == before
        assert ledger.store.beneficiary_history("B000") == history
        assert (
            sorted((r.instruction_id, r.address, r.payee_name) for r, _ in ledger.instructions(P))
            == payees
        )
    assert list(Keyring.load(default_keyring_path(tmp_path / "l.db")).keys) == ["k2"]
    # a second rotation starts afresh
    with Ledger.open(tmp_path / "l.db") as ledger:
        again = ledger.rotate_keys(retire=False)
        assert (again.active, again.resumed, again.retired) == ("k3", False, ())
        assert sorted(ledger.store.keyring.keys) == ["k2", "k3"]
        ledger.rotate_keys()  # retires k2 and k3: a key id is never used twice
        assert list(ledger.rotate_keys().status["beneficiaries.details"]) == ["k5"]


# -- erasure ----------------------------------------------------------------------------------
LONG_AFTER = dt.date(2040, 1, 1)


def _erasure_ledger(tmp_path: Path) -> Ledger:
    ceased = roster_row(
        "B1",
        full_name="Phan Thị Erasable",
        last_period="2021-09",
        status="ceased",
        proxy_name="Phan Văn Proxy",
        proxy_national_id="046077777777",
        proxy_relation="son",
    )
    ledger = _ledger(tmp_path, ceased, roster_row("B2"))
    ledger.import_roster(
        write_roster(tmp_path / "v2.csv", [{**ceased, "msisdn": "0912111222"}, roster_row("B2")])
    )
    ledger.prepare(P)
    return ledger


def test_erasure_waits_for_the_retention_period_and_settled_instructions(tmp_path: Path) -> None:
    with _erasure_ledger(tmp_path) as ledger:
        with pytest.raises(ErasureRefused, match="retention period"):
            ledger.erase(["B1"], today=dt.date(2026, 11, 1))
        with pytest.raises(ErasureRefused, match="B2: within the retention period"):
            ledger.erase(["B2"], today=LONG_AFTER)
        with pytest.raises(ErasureRefused, match="is not settled"):
            ledger.erase(["B1"], today=LONG_AFTER)
        with pytest.raises(ErasureRefused, match="allows erasing only"):
            ledger.erase(closed_before="2030-01", today=dt.date(2026, 11, 1))
        record = ledger.store.beneficiary("B1")
        assert record is not None
        assert record.full_name == "Phan Thị Erasable"


def test_erasure_removes_personal_data_but_keeps_amounts_states_and_events(
    tmp_path: Path,
) -> None:
    with _erasure_ledger(tmp_path) as ledger:
        ledger.approve(P, by="checker")
        (b1,) = [r for r, _ in ledger.instructions(P) if r.beneficiary_id == "B1"]
        ledger.store.set_state(
            [b1.instruction_id], "CANCELLED", from_state=b1.state, release_lines=True
        )
        totals = ledger.store.cycle_totals(ledger.config.programme, 24260)
        events = len(list(ledger.store.events()))
        assert ledger.erase(closed_before="2021-10", today=LONG_AFTER, by="dpo") == ["B1"]

        record = ledger.store.beneficiary("B1")
        assert record is not None
        assert (record.full_name, record.national_id, record.birth_date) == (ERASED, None, None)
        assert (record.msisdn, record.proxy_name, record.proxy_national_id) == (
            ERASED,
            ERASED,
            None,
        )
        assert (record.status, record.last_period, record.channel) == ("ceased", 24260, "ewallet")
        ((_, old),) = ledger.store.beneficiary_history("B1")
        assert (old.full_name, old.national_id, old.msisdn) == (ERASED, None, ERASED)
        (after,) = [r for r, _ in ledger.instructions(P) if r.beneficiary_id == "B1"]
        assert (after.payee_name, after.address) == (ERASED, f"ewallet:{ERASED}")
        assert (after.amount, after.state) == (b1.amount, "CANCELLED")
        assert ledger.store.cycle_totals(ledger.config.programme, 24260) == totals
        kinds = [e.kind for _, e in ledger.store.events()]
        assert len(kinds) == events + 1
        assert kinds[-1] == "beneficiary.erased"
        other = ledger.store.beneficiary("B2")
        assert other is not None
        assert other.full_name == roster_row()["full_name"]
        assert ledger.key_status()["beneficiaries.details"] == {"erased": 1, "k1": 1}
        # the reports still run, and show the marker
        ledger.changes(P)
        ledger.coverage(P)
        ledger.settlement(P)
        out = io.StringIO()
        assert main(["--db", str(tmp_path / "l.db"), "cycle", "show", "--period", P], out=out) == 0
        assert ERASED in out.getvalue()
        assert "Phan Thị Erasable" not in out.getvalue()
        # an erased beneficiary is no longer found by national id
        assert ledger.store.query(
            "SELECT count(*) FROM beneficiaries WHERE national_id_index IS NOT NULL"
        ) == [(1,)]
    raw = _raw(tmp_path / "l.db")
    for gone in ("Phan Thị Erasable", "Phan Văn Proxy", "046077777777", "912111222"):
        assert gone.encode() not in raw


# -- the command line -------------------------------------------------------------------------
def test_keys_and_erase_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(KEYRING_ENV, raising=False)

    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        return main(["--db", "l.db", *argv], out=out), out.getvalue()

    code, text = run("keys", "new")
    assert code == 0
    assert "l.db.keyring" in text
    assert run("keys", "new")[0] == 1  # never overwritten
    write_roster(tmp_path / "r.csv", [roster_row("B1", last_period="2021-09", status="ceased")])
    assert run("import", "roster", "r.csv")[0] == 0
    code, text = run("keys", "status")
    assert code == 0
    assert "beneficiaries.details" in text
    assert "k1 1" in text
    code, text = run("keys", "rotate", "--batch", "10")
    assert code == 0
    assert "under key k2" in text
    assert "retired keys: k1" in text
    assert "k2 1" in run("keys", "status")[1]
    code, text = run("erase", "--beneficiary", "B1")
    assert code == 1  # within the retention period
    (tmp_path / "sap-payments.toml").write_text("retention_months = 0\n")
    code, text = run("erase", "--beneficiary", "B1", "--by", "dpo")
    assert code == 0
    assert "B1" in text
    with Ledger.open(tmp_path / "l.db") as ledger:
        record = ledger.store.beneficiary("B1")
        assert record is not None
        assert record.full_name == ERASED
    keyring = json.loads((tmp_path / "l.db.keyring").read_text())
    assert keyring["active"] == "k2"


_FORKED = Cipher(KEYRING)


def _child_nonce() -> bytes:
    return bytes(_FORKED.seal(b"a", "x"))[4:16]  # 0x01, 0x02, "k1", then the nonce


def test_a_forked_child_never_reuses_the_parents_nonces() -> None:
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    _FORKED.seal(b"a", "x")  # the parent's pool is filled: a forked child inherits it
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply(_child_nonce)
    assert child != _child_nonce()
