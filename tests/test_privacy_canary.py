"""The canary test: unique personal values planted in a roster must turn up nowhere they should
not — not in the ledger file, its -wal and -shm, the workers' scratch files, the logs (captured
at DEBUG), nor the text (``str`` and ``repr``) of any error raised on the way.

Excluded on purpose, and only these: the provider files. The outbox payload for a provider and a
sandbox provider's own books hold the MSISDN, account number and payee name that provider needs
to pay (docs/security.md, "What a provider sees"); they are written outside the ledger and are
the provider's business, not the ledger's at-rest data.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import roster_row, write_roster
from sap_payments import InvalidRoster, Ledger, SapPaymentsError
from sap_payments import cycles as cycles_module
from sap_payments import roster as roster_module
from sap_payments.config import Config
from sap_payments.crypto import DecryptionError, Keyring, KeyringNotFound
from sap_payments.sqlite_store import SQLiteStore

P = "2021-09"

#: Each canary is unique and appears in no other test data.
CANARIES = {
    "full name": "Vương Thị Canarybird",
    "national id": "046987654321",
    "msisdn": "0398765432",
    "account": "88776655443322",
    "proxy name": "Đặng Văn Proxycanary",
    "proxy id": "046123498765",
}
#: The forms a canary may take once normalised (the MSISDN is stored as +84…).
FORMS = {**CANARIES, "msisdn e164": "+84398765432", "msisdn digits": "398765432"}

TOML = """
[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"
[providers.vietinbank]
plugin = "sandbox-bank"
channel = "bank"
[providers.vnpost]
plugin = "sandbox-postal"
channel = "postal"
"""


def _rows() -> list[dict[str, str]]:
    return [
        roster_row(
            "C1",
            full_name=CANARIES["full name"],
            national_id=CANARIES["national id"],
            msisdn=CANARIES["msisdn"],
        ),
        roster_row(
            "C2",
            channel="bank",
            provider="vietinbank",
            msisdn="",
            bank_bin="970415",
            account_number=CANARIES["account"],
        ),
        roster_row(
            "C3",
            proxy_name=CANARIES["proxy name"],
            proxy_national_id=CANARIES["proxy id"],
            proxy_relation="son",
        ),
        *(roster_row(f"B{n}") for n in range(10)),
    ]


def _leaks(data: bytes | str, where: str) -> list[str]:
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    raw = data if isinstance(data, bytes) else data.encode()
    return [
        f"{name} in {where}"
        for name, value in FORMS.items()
        if value in text or value.encode() in raw or value.encode("utf-16-le") in raw
    ]


def _errors_of(action: object) -> Iterator[BaseException]:
    try:
        action()  # type: ignore[operator]
    except SapPaymentsError as exc:
        yield exc


@pytest.fixture
def scratch_bytes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every worker scratch file's bytes, read just before the store deletes it; and the worker
    paths switched on for this small roster."""
    kept: list[bytes] = []
    close = SQLiteStore.close

    def reading_close(self: SQLiteStore) -> None:
        for path in self.scratch_paths:
            for file in path.parent.glob(path.name + "*"):
                kept.append(file.read_bytes())
        close(self)

    monkeypatch.setattr(SQLiteStore, "close", reading_close)
    monkeypatch.setattr(cycles_module, "PARALLEL_MIN_BENEFICIARIES", 1)
    monkeypatch.setattr(roster_module, "PARALLEL_MIN_BYTES", 1)
    return kept


def test_no_canary_in_the_ledger_its_scratch_files_logs_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, scratch_bytes: list[bytes]
) -> None:
    caplog.set_level(logging.DEBUG)
    outbox = tmp_path / "outbox"
    config = Config.loads(f'outbox = "{outbox.as_posix()}"\n' + TOML)
    errors: list[BaseException] = []
    roster = write_roster(tmp_path / "roster.csv", _rows())
    with Ledger.open(tmp_path / "l.db", config=config) as ledger:
        ledger.import_roster(roster, workers=2)
        ledger.prepare(P, workers=2)
        ledger.approve(P, by="checker")
        ledger.dispatch(P)
        ledger.reconcile(P)
        ledger.changes(P)
        ledger.coverage(P)
        ledger.settlement(P)
        assert any(r.payee_name == CANARIES["full name"] for r, _ in ledger.instructions(P))
        # an import that names the canary row: a bad sex, and the canary national id twice
        bad = _rows()
        bad[0] = {**bad[0], "sex": "X"}
        bad.append(roster_row("C4", national_id=CANARIES["national id"]))
        failing = write_roster(tmp_path / "bad.csv", bad)
        errors += _errors_of(lambda: ledger.import_roster(failing))
        errors += _errors_of(lambda: ledger.import_roster(failing, workers=2))
    # a tampered row: another beneficiary's sealed details copied in
    db = sqlite3.connect(tmp_path / "l.db")
    with db:
        db.execute(
            "UPDATE beneficiaries SET details = (SELECT details FROM beneficiaries "
            "WHERE beneficiary_id = 'C1') WHERE beneficiary_id = 'B1'"
        )
    db.close()
    with Ledger.open(tmp_path / "l.db") as ledger:
        errors += _errors_of(lambda: ledger.store.beneficiary("B1"))
    (tmp_path / "l.db.keyring").rename(tmp_path / "moved.keyring")
    errors += _errors_of(lambda: Ledger.open(tmp_path / "l.db"))
    Keyring.load(tmp_path / "moved.keyring").save(tmp_path / "l.db.keyring")

    kinds = {type(e) for e in errors}
    assert {InvalidRoster, DecryptionError, KeyringNotFound} <= kinds, kinds
    found: list[str] = []
    for path in sorted(tmp_path.glob("l.db*")):
        if path.suffix != ".keyring":
            found += _leaks(path.read_bytes(), path.name)
    assert scratch_bytes, "the worker paths did not run"
    for number, data in enumerate(scratch_bytes):
        found += _leaks(data, f"scratch file {number}")
    found += _leaks(caplog.text, "the log")
    for record in caplog.records:
        found += _leaks(repr(record.args), "log arguments")
    for error in errors:
        found += _leaks(str(error), f"str({type(error).__name__})")
        found += _leaks(repr(error), f"repr({type(error).__name__})")
    assert found == []
    # the check can fail: the provider files (excluded above) do hold what the provider needs
    payloads = b"".join(p.read_bytes() for p in outbox.rglob("*.json"))
    assert _leaks(payloads, "outbox"), "the canary never reached the provider: the test is blind"
