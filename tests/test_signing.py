"""Signed maker-checker approval: who may approve, the signed manifest, and what dispatch checks
before money moves."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import Ledger, Period
from sap_payments.cli import main
from sap_payments.config import Config
from sap_payments.dispatch import dispatch
from sap_payments.errors import ConfigError
from sap_payments.providers import ResultKind
from sap_payments.signing import (
    APPROVAL_CONTEXT,
    ApprovalMismatch,
    ApprovalRefused,
    KeyFileError,
    SignatureError,
    generate_signing_key,
    load_private_key,
    load_public_key,
    manifest_sha256,
    verify_signature,
)
from test_dispatch import Scripted

P = "2021-09"
PROGRAMME = "monthly-allowance"
PERIOD = Period.parse(P)


def _ledger(tmp_path: Path, n: int = 4) -> Ledger:
    ledger = open_ledger(tmp_path)
    RosterLoader(tmp_path)(ledger, *(roster_row(f"B{k}", msisdn=f"091234567{k}") for k in range(n)))
    return ledger


def _keys(tmp_path: Path, name: str) -> tuple[Path, Path]:
    private, public, _ = generate_signing_key(tmp_path / "keys" / f"{name}.pem")
    return private, public


def _signed(tmp_path: Path) -> tuple[Ledger, Scripted]:
    """A ledger with a registered approver; prepared by the maker, approved and signed."""
    ledger = _ledger(tmp_path)
    private, public = _keys(tmp_path, "checker")
    ledger.add_approver("Chị Hà", public)
    ledger.prepare(P, by="Anh Minh")
    ledger.approve(P, by="Chị Hà", key=private)
    return ledger, Scripted()


def _dispatch(ledger: Ledger, provider: Scripted) -> None:
    dispatch(ledger.store, P, providers={"viettelpay": provider})


def _ids(ledger: Ledger) -> list[str]:
    return sorted(r.instruction_id for r, _ in ledger.instructions(P))


# -- maker-checker ----------------------------------------------------------------------------
@pytest.mark.parametrize("approver", ["Anh Minh", "anh minh", "  Anh  Minh "])
def test_the_maker_cannot_approve(tmp_path: Path, approver: str) -> None:
    with _ledger(tmp_path) as ledger:
        ledger.prepare(P, by="Anh Minh")
        assert ledger.cycle(P).prepared_by == "Anh Minh"
        with pytest.raises(ApprovalRefused, match="prepared this cycle") as caught:
            ledger.approve(P, by=approver)
        assert (caught.value.programme, caught.value.period) == (PROGRAMME, P)
        assert ledger.cycle(P).state == "prepared"  # nothing changed
        ledger.approve(P, by="Chị Hà")
        assert ledger.cycle(P).approved_by == "Chị Hà"


def test_re_preparing_without_a_name_keeps_the_maker(tmp_path: Path) -> None:
    with _ledger(tmp_path) as ledger:
        ledger.prepare(P, by="Anh Minh")
        (tmp_path / "more").mkdir()
        RosterLoader(tmp_path / "more")(ledger, roster_row("B9", msisdn="0912345699"))
        assert ledger.prepare(P).created == 1
        assert ledger.cycle(P).prepared_by == "Anh Minh"
        with pytest.raises(ApprovalRefused):
            ledger.approve(P, by="Anh Minh")


# -- a ledger without approver keys ---------------------------------------------------------------
def test_without_keys_approval_is_unsigned_and_dispatch_still_checks_the_manifest(
    tmp_path: Path,
) -> None:
    with _ledger(tmp_path) as ledger:
        ledger.prepare(P)
        ledger.approve(P, by="checker")
        approval = ledger.store.approval(PROGRAMME, PERIOD.ordinal)
        assert approval is not None
        assert (approval.signature, approval.key_id, approval.instructions) == (None, None, 4)
        assert approval.total == sum(r.amount for r, _ in ledger.instructions(P))
        entries = list(ledger.store.approval_entries(PROGRAMME, PERIOD.ordinal))
        assert [e.instruction_id for e in entries] == _ids(ledger)
        db = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
        db.execute("UPDATE instructions SET amount = amount * 10 WHERE rowid = 1")
        db.close()
        provider = Scripted()
        with pytest.raises(ApprovalMismatch, match="amount changed since approval"):
            _dispatch(ledger, provider)
        assert provider.submits == []


def test_a_key_given_to_a_ledger_without_approvers_is_refused(tmp_path: Path) -> None:
    private, _ = _keys(tmp_path, "someone")
    with _ledger(tmp_path) as ledger:
        ledger.prepare(P)
        with pytest.raises(ApprovalRefused, match="no approver key is registered"):
            ledger.approve(P, by="checker", key=private)


# -- signed approval ----------------------------------------------------------------------------
def test_a_signed_approval_verifies_and_dispatch_sends(tmp_path: Path) -> None:
    ledger, provider = _signed(tmp_path)
    with ledger:
        approval = ledger.store.approval(PROGRAMME, PERIOD.ordinal)
        assert approval is not None
        assert approval.signature is not None
        (key,) = ledger.approvers()
        assert approval.key_id == key.key_id
        digest, count, total = manifest_sha256(
            PROGRAMME,
            PERIOD.ordinal,
            ledger.store.approval_entries(PROGRAMME, PERIOD.ordinal),
            "VND",
        )
        assert (digest, count, total) == (approval.manifest_sha256, 4, approval.total)
        assert verify_signature(
            key.public_key, approval.signature, APPROVAL_CONTEXT + digest.encode()
        )
        _dispatch(ledger, provider)
        assert sorted(k for batch in provider.submits for k in batch) == _ids(ledger)
        assert ledger.verify_audit().ok


def test_once_keys_are_registered_approval_must_be_signed_by_that_approver(
    tmp_path: Path,
) -> None:
    with _ledger(tmp_path) as ledger:
        mine, my_public = _keys(tmp_path, "checker")
        other, other_public = _keys(tmp_path, "other")
        ledger.add_approver("Chị Hà", my_public)
        ledger.add_approver("Anh Tuấn", other_public)
        ledger.prepare(P, by="Anh Minh")
        with pytest.raises(ApprovalRefused, match="must be signed"):
            ledger.approve(P, by="Chị Hà")
        with pytest.raises(ApprovalRefused, match="not 'Chị Hà''s"):
            ledger.approve(P, by="Chị Hà", key=other)
        with pytest.raises(ApprovalRefused, match="not a registered approver"):
            ledger.approve(P, by="Someone Else", key=mine)
        assert ledger.cycle(P).state == "prepared"
        ledger.approve(P, by="chị hà", key=mine)  # the same person, written otherwise
        assert ledger.cycle(P).state == "approved"


def test_registering_an_approver(tmp_path: Path) -> None:
    with _ledger(tmp_path) as ledger:
        _, public = _keys(tmp_path, "checker")
        key = ledger.add_approver("Chị Hà", public)
        assert key.public_key == load_public_key(public)
        with pytest.raises(ValueError, match="registered already"):
            ledger.add_approver("Chị Hà", _keys(tmp_path, "second")[1])
        with pytest.raises(ValueError, match="registered already"):
            ledger.add_approver("Another", public)
        kinds = [event.kind for _, event in ledger.store.events()]
        assert kinds.count("approver.added") == 1


def test_keys_cannot_be_registered_while_an_unsigned_cycle_is_open(tmp_path: Path) -> None:
    with _ledger(tmp_path) as ledger:
        ledger.prepare(P)
        ledger.approve(P, by="checker")
        with pytest.raises(ApprovalRefused, match="close it before registering"):
            ledger.add_approver("Chị Hà", _keys(tmp_path, "checker")[1])


# -- what dispatch refuses ------------------------------------------------------------------------
def _sql(tmp_path: Path, statement: str, parameters: Sequence[object] = ()) -> None:
    db = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    db.execute(statement, parameters)
    db.close()


def test_an_amount_edited_after_approval_is_refused_naming_the_instruction(
    tmp_path: Path,
) -> None:
    ledger, provider = _signed(tmp_path)
    with ledger:
        target = _ids(ledger)[2]
        _sql(
            tmp_path, "UPDATE instructions SET amount = 9999999 WHERE instruction_id = ?", [target]
        )
        with pytest.raises(ApprovalMismatch) as caught:
            _dispatch(ledger, provider)
        assert caught.value.instruction_ids == (target,)
        assert target in str(caught.value)
        assert provider.submits == []  # nothing was sent, not even the others


def test_an_account_edited_after_approval_is_refused(tmp_path: Path) -> None:
    ledger, provider = _signed(tmp_path)
    with ledger:
        record = ledger.store.instruction(_ids(ledger)[0])
        assert record is not None
        with ledger.store.transaction():  # through the store: the column is encrypted
            ledger.store.replace_instruction(record._replace(address="ewallet:0999999999"))
        with pytest.raises(ApprovalMismatch, match="address changed since approval") as caught:
            _dispatch(ledger, provider)
        assert provider.submits == []
        assert "0999999999" not in str(caught.value)  # no personal data in the message


def test_an_instruction_not_covered_by_the_approval_is_refused(tmp_path: Path) -> None:
    ledger, provider = _signed(tmp_path)
    with ledger:
        target = _ids(ledger)[1]
        _sql(tmp_path, "DELETE FROM approval_entries WHERE instruction_id = ?", [target])
        # the manifest no longer matches its digest: caught as a broken approval first
        with pytest.raises(SignatureError, match="manifest was changed"):
            _dispatch(ledger, provider)
        assert provider.submits == []


def test_a_manifest_rewritten_to_match_an_edit_breaks_the_signature(tmp_path: Path) -> None:
    ledger, provider = _signed(tmp_path)
    with ledger:
        target = _ids(ledger)[0]
        _sql(tmp_path, "UPDATE instructions SET amount = 1 WHERE instruction_id = ?", [target])
        _sql(tmp_path, "UPDATE approval_entries SET amount = 1 WHERE instruction_id = ?", [target])
        entries = ledger.store.approval_entries(PROGRAMME, PERIOD.ordinal)
        digest, _, _ = manifest_sha256(PROGRAMME, PERIOD.ordinal, entries, "VND")
        _sql(tmp_path, "UPDATE approvals SET manifest_sha256 = ?", [digest])
        with pytest.raises(SignatureError, match="signature does not verify"):
            _dispatch(ledger, provider)
        assert provider.submits == []


def test_a_signature_removed_from_the_ledger_is_refused(tmp_path: Path) -> None:
    ledger, provider = _signed(tmp_path)
    with ledger:
        _sql(tmp_path, "UPDATE approvals SET signature = NULL, key_id = NULL")
        with pytest.raises(SignatureError, match="without a signature"):
            _dispatch(ledger, provider)
        _sql(tmp_path, "DELETE FROM approvals")
        with pytest.raises(SignatureError, match="no signed approval"):
            _dispatch(ledger, provider)
        assert provider.submits == []


def test_an_instruction_added_after_approval_is_not_covered(tmp_path: Path) -> None:
    ledger, provider = _signed(tmp_path)
    with ledger:
        record = ledger.store.instruction(_ids(ledger)[0])
        assert record is not None
        with ledger.store.transaction():
            forged = record._replace(
                instruction_id="202109-FORGEDFORGEDFORGED00", beneficiary_id="B-forged", seq=1
            )
            ledger.store.insert_instructions([forged], "2021-09-02T00:00:00+00:00")
            ledger.store.set_state(
                [forged.instruction_id], "READY", from_state=forged.state, release_lines=False
            )
        with pytest.raises(ApprovalMismatch, match="not covered by the approval") as caught:
            _dispatch(ledger, provider)
        assert caught.value.instruction_ids == ("202109-FORGEDFORGEDFORGED00",)
        assert provider.submits == []


# -- keys -----------------------------------------------------------------------------------------
def test_generated_keys_are_private_and_never_overwritten(tmp_path: Path) -> None:
    private, public, ident = generate_signing_key(tmp_path / "me.pem")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert public.name == "me.pub.pem"
    assert isinstance(load_private_key(private), Ed25519PrivateKey)
    assert load_public_key(public) == load_public_key(private)  # a private file gives its half
    assert len(ident) == 16
    with pytest.raises(KeyFileError, match="exists already"):
        generate_signing_key(tmp_path / "me.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key", encoding="utf-8")
    with pytest.raises(KeyFileError):
        load_private_key(garbage)
    with pytest.raises(KeyFileError):
        load_public_key(garbage)
    with pytest.raises(KeyFileError, match="cannot be read"):
        load_private_key(tmp_path / "missing.pem")


# -- the command line -----------------------------------------------------------------------------
def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_the_signing_workflow_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    roster = RosterLoader(tmp_path)
    with open_ledger(tmp_path) as ledger:
        roster(ledger, roster_row("B1"), roster_row("B2", msisdn="0912345679"))
    db = ["--db", str(tmp_path / "l.db")]
    code, text = _run(*db, "keys", "generate-signing-key", "--out", "ha.pem")
    assert code == 0
    assert "key id" in text
    assert _run(*db, "keys", "approvers")[1].startswith("no approver keys")
    code, text = _run(*db, "keys", "add-approver", "Chị Hà", "ha.pub.pem")
    assert code == 0, text
    assert "Chị Hà" in _run(*db, "keys", "approvers")[1]
    assert _run(*db, "cycle", "prepare", "--period", P, "--by", "Anh Minh")[0] == 0
    code, _ = _run(*db, "cycle", "approve", "--period", P, "--by", "Anh Minh", "--key", "ha.pem")
    assert code == 1
    assert "prepared this cycle" in capsys.readouterr().err
    code, _ = _run(*db, "cycle", "approve", "--period", P, "--by", "Chị Hà")
    assert code == 1
    assert "--key" in capsys.readouterr().err
    code, text = _run(*db, "cycle", "approve", "--period", P, "--by", "Chị Hà", "--key", "ha.pem")
    assert code == 0, text
    assert "signed with key" in text
    code, text = _run(*db, "audit", "verify")
    assert code == 0
    assert text.endswith("OK\n")
    _sql(tmp_path, "UPDATE instructions SET amount = amount + 1 WHERE rowid = 1")
    code, text = _run(*db, "audit", "verify")
    assert code == 1
    assert "amount differs from the audit trail" in text
    assert text.endswith("NOT OK: 1 problems\n")


def test_results_keep_flowing_after_a_signed_dispatch(tmp_path: Path) -> None:
    """A signed cycle goes all the way: dispatch, results, close, checkpoint, verify."""
    ledger, provider = _signed(tmp_path)
    with ledger:
        provider.default = ResultKind.PAID
        _dispatch(ledger, provider)
        ledger.close_cycle(P)
        agency, _ = _keys(tmp_path, "agency")
        checkpoint = ledger.checkpoint(P, key=agency)
        assert ledger.verify_audit(checkpoint).ok
        assert ledger.cycle(P).state == "closed"
        assert sorted(provider.known) == _ids(ledger)


@pytest.mark.parametrize(
    ("statement", "found"),
    [
        ("DELETE FROM approver_keys", "approver key registered here is missing or changed"),
        ("UPDATE approver_keys SET name = 'Someone'", "missing or changed"),
        ("UPDATE approvals SET signature = zeroblob(64)", "its signature does not verify"),
        ("UPDATE approval_entries SET amount = amount + 1", "manifest was changed"),
        ("UPDATE approvals SET key_id = NULL, signature = NULL", "differs from the one recorded"),
        ("DELETE FROM approvals", "is missing"),
    ],
)
def test_audit_verify_checks_approver_keys_and_approvals(
    tmp_path: Path, statement: str, found: str
) -> None:
    """Switching a ledger back to unsigned mode, or rewriting an approval, shows in the audit
    even before a dispatch would refuse it."""
    ledger, _ = _signed(tmp_path)
    with ledger:
        assert ledger.verify_audit().ok
        _sql(tmp_path, statement)
        problems = [str(p) for p in ledger.verify_audit().problems]
        assert any(found in p for p in problems), problems


# -- approver keys pinned in the configuration ------------------------------------------------
def _pinned_dispatch(ledger: Ledger, provider: Scripted, trusted: Sequence[str]) -> None:
    dispatch(ledger.store, P, providers={"viettelpay": provider}, trusted_approver_keys=trusted)


def _checker_key_id(ledger: Ledger) -> str:
    (key,) = ledger.approvers()
    return key.key_id


def test_pinned_keys_survive_the_ledgers_keys_being_deleted(tmp_path: Path) -> None:
    """Without pinning, an insider who deletes the approver keys and the approval from the
    database turns signing off; with the key ids pinned in the configuration, dispatch still
    refuses."""
    ledger, provider = _signed(tmp_path)
    with ledger:
        pinned = [_checker_key_id(ledger)]
        _sql(tmp_path, "DELETE FROM approver_keys")
        _sql(tmp_path, "UPDATE approvals SET signature = NULL, key_id = NULL")
        _dispatch(ledger, Scripted())  # unpinned: the database alone decides, and lets it pass
    (tmp_path / "again").mkdir()
    ledger, provider = _signed(tmp_path / "again")
    with ledger:
        pinned = [_checker_key_id(ledger)]
        _sql(tmp_path / "again", "DELETE FROM approver_keys")
        with pytest.raises(SignatureError, match="not registered in this ledger"):
            _pinned_dispatch(ledger, provider, pinned)
        _sql(tmp_path / "again", "UPDATE approvals SET signature = NULL, key_id = NULL")
        with pytest.raises(SignatureError, match="pins approver keys"):
            _pinned_dispatch(ledger, provider, pinned)
        assert provider.submits == []


def test_a_key_that_is_not_pinned_is_refused(tmp_path: Path) -> None:
    ledger, provider = _signed(tmp_path)
    with ledger:
        with pytest.raises(SignatureError, match="not one of the approver keys"):
            _pinned_dispatch(ledger, provider, ["0123456789abcdef"])
        assert provider.submits == []
        _pinned_dispatch(ledger, provider, [_checker_key_id(ledger)])
        assert sum(len(batch) for batch in provider.submits) == len(_ids(ledger))


def test_a_registered_key_swapped_for_another_is_refused(tmp_path: Path) -> None:
    """An insider puts their own public key under the approver's key id and signs the manifest
    with it: the key id no longer matches the key."""
    ledger, provider = _signed(tmp_path)
    with ledger:
        forger = Ed25519PrivateKey.generate()
        raw = forger.public_key().public_bytes_raw()
        _sql(tmp_path, "UPDATE approver_keys SET public_key = ?", [raw])
        approval = ledger.store.approval(PROGRAMME, PERIOD.ordinal)
        assert approval is not None
        signature = forger.sign(APPROVAL_CONTEXT + approval.manifest_sha256.encode())
        _sql(tmp_path, "UPDATE approvals SET signature = ?", [signature])
        with pytest.raises(SignatureError, match="is not that key"):
            _dispatch(ledger, provider)
        assert provider.submits == []


def test_the_configuration_pins_approver_keys(tmp_path: Path) -> None:
    config = Config.loads('approver_keys = ["2d49caa11efd2e7d"]')
    assert config.approver_keys == ("2d49caa11efd2e7d",)
    assert Config.loads("").approver_keys == ()
    for bad in ('approver_keys = "2d49caa11efd2e7d"', 'approver_keys = ["Chị Hà"]'):
        with pytest.raises(ConfigError, match="approver key ids"):
            Config.loads(bad)
    ledger, _ = _signed(tmp_path)
    ledger.close()
    with (
        Ledger.open(
            tmp_path / "l.db", config=Config.loads('approver_keys = ["0123456789abcdef"]')
        ) as pinned,
        pytest.raises(SignatureError, match="not one of the approver keys"),
    ):
        pinned.dispatch(P)
