"""The ``iso20022-bank`` provider plugin: payment files out, status reports and notifications in.

A bank does not answer a file straight away: ``submit`` writes the batch as a pain.001 file
(and its manifest) into the configured ``outbox`` directory, atomically, and answers PENDING for
every payment. The bank's pain.002 status reports and camt.054 notifications arrive later as
files; ``parse_report`` turns one into results (``Ledger.import_report`` applies them, exactly
once per file).

The same batch gives the same bytes: the file's ``CreDtTm`` is the time the ledger committed the
batch (``Payment.batch_created_at``), not the wall clock, so a batch written again — after a
crash between the file and the ledger's commit — is the same file (only a provider used without
a ledger, whose payments carry no such time, stamps the wall clock).

What the plugin remembers (capability ``keeps_state``): which message carried which payment, so
that a rejection of a whole message or payment information applies to every transaction under
it, and which EndToEndId stands for which key. Bound to a ledger, it keeps this in the ledger's
plugin state (:class:`~sap_payments.providers.PluginState`), backed up with it; unbound (a test
calling the factory), in memory. Namespaces::

    payment/<key>            {"message": MsgId, "end_to_end_id": …, "amount": …, "currency": …}
    message/<MsgId>          {"file": …, "created_at": …, "count": …, "control_sum": …,
                              "currency": …, "keys": [...]}
    end_to_end/<EndToEndId>  the key, for a key that cannot be an EndToEndId as it is
    migration/register.db    when the outbox's old register was read into the ledger

A key is the EndToEndId when it can be one (1–35 letters, digits and hyphens, starting with a
letter or digit: every instruction id); any other key (longer, or with other characters) is sent
as ``SAPK`` + 31 hex digits of its SHA-256, and the answers are mapped back.

Older versions kept this in ``register.db`` in the outbox. The first time the provider is bound
to a ledger's state, that register is read into the ledger (rows of messages made for another
ledger are left out) and renamed ``register.db.migrated``; a pending cycle carries on.

Answers are checked against what was sent, and refused whole —
:class:`~sap_payments.providers.ReportRefused`, a ``ProviderError``, naming the element and
line; ``import reports`` adds the file — when a file is not a pain.002 or camt.054 or is
malformed; when a pain.002 answers a message (``OrgnlMsgId``, ``OrgnlPmtInfId``) or names a
transaction (``OrgnlEndToEndId``) this provider never sent, or a transaction under another
message than the one it was sent in; when a camt.054's batch entry names a message of ours that
was never sent; and when a camt.054 holds no entry for a payment this provider sent (an account
notification of fees and other transfers only: nothing in it is ours to import).

Bound to a ledger (capability ``ledger_identity``), every file's MsgId and PmtInfId carry the
ledger's id — ``SAP-<ledger id>-<14 hex digits>``, 35 characters — and a pain.002 or camt.054
answering another ledger's file (its OrgnlMsgId / OrgnlPmtInfId, or a batch entry's MsgId, names
another ledger) is refused whole with :class:`~sap_payments.errors.ForeignLedger`.

Settings (``[providers.NAME]`` in ``sap-payments.toml``)::

    plugin = "iso20022-bank"
    channel = "bank"
    outbox = "/srv/sap-payments/outbox/vietinbank"   # where pain.001 files are written
    debtor_name = "Sở LĐ-TB&XH tỉnh Thừa Thiên Huế"  # the agency's budget account
    debtor_account = "1234567890"
    debtor_bank_bin = "970415"
    version = "09"                                   # or "03"
    latin_names = false                              # the bank wants names without diacritics
    max_batch = 5000
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from sap_payments._files import write_atomically
from sap_payments.beneficiaries import BankAccount, Channel, FinancialAddress
from sap_payments.errors import ConfigError, ForeignLedger
from sap_payments.iso20022.model import BankProfile, CreditTransfer, DebtorAccount, TransferBatch
from sap_payments.iso20022.napas import bank_by_bin
from sap_payments.iso20022.pain001 import InvalidBatch, write_pain001
from sap_payments.iso20022.reading import (
    REASONS,
    BankFileError,
    message_type,
    notice_results,
    read_notification,
    read_status_report,
    status_results,
)
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    MemoryPluginState,
    Payment,
    PaymentsRefused,
    PluginState,
    ProviderError,
    Reason,
    ReportRefused,
    Result,
    ResultKind,
)

__all__ = ["BankFileProvider", "bank_files", "end_to_end_id", "ledger_of_message"]

#: A ledger id: 16 lower-case hex digits (see ``Store.ledger_id``).
_LEDGER_ID: Final = re.compile(r"[0-9a-f]{16}")
#: The MsgId (and PmtInfId) of a file made for a ledger: its id, then 14 hex digits of the keys.
_TAGGED: Final = re.compile(r"SAP-([0-9a-f]{16})-[0-9A-F]{14}")
#: The MsgId of a file made before ledgers had ids (or by a provider bound to none).
_UNTAGGED: Final = re.compile(r"SAP[0-9A-F]{29}")
#: A key that is its own EndToEndId (every instruction id is one).
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,34}")
#: The old register, read into the ledger's state once (see the module doc).
_REGISTER: Final = "register.db"


def ledger_of_message(message_id: str) -> str | None:
    """The ledger id a MsgId or PmtInfId of ours carries; None for any other id (a file made
    before ledgers had ids, or by someone else).

    >>> ledger_of_message("SAP-3f9a0c1d2e3b4c5d-A1B2C3D4E5F607")
    '3f9a0c1d2e3b4c5d'
    """
    match = _TAGGED.fullmatch(message_id.strip())
    return match[1] if match else None


_KEYS: Final = frozenset(
    {
        "outbox",
        "debtor_name",
        "debtor_account",
        "debtor_bank_bin",
        "debtor_bic",
        "version",
        "latin_names",
        "max_batch",
    }
)


@attrs.frozen
class _Settings:
    outbox: Path
    debtor: DebtorAccount
    profile: BankProfile
    max_batch: int

    @classmethod
    def of(cls, name: str, settings: Mapping[str, Any]) -> _Settings:
        def fail(key: str, message: str) -> ConfigError:
            return ConfigError(message, key=f"providers.{name}.{key}")

        unknown = sorted(set(settings) - _KEYS)
        if unknown:
            raise fail(unknown[0], "unknown setting of the iso20022-bank plugin")
        for key in ("outbox", "debtor_name", "debtor_account", "debtor_bank_bin"):
            if not isinstance(settings.get(key), str) or not settings[key]:
                raise fail(key, "required (a non-empty string)")
        version = settings.get("version", "09")
        if version not in ("09", "03"):
            raise fail("version", 'must be "09" (pain.001.001.09) or "03" (pain.001.001.03)')
        latin = settings.get("latin_names", False)
        if not isinstance(latin, bool):
            raise fail("latin_names", "must be true or false")
        max_batch = settings.get("max_batch", 5000)
        if type(max_batch) is not int or max_batch < 1:
            raise fail("max_batch", "must be a whole number of at least 1")
        bank_bin = settings["debtor_bank_bin"]
        bank = bank_by_bin(bank_bin)
        if bank is None:
            raise fail("debtor_bank_bin", f"{bank_bin} is not a NAPAS member bank's BIN")
        debtor = DebtorAccount(
            settings["debtor_name"],
            settings["debtor_account"],
            bank_bin,
            settings.get("debtor_bic") or bank.swift,
        )
        return cls(Path(settings["outbox"]), debtor, BankProfile(latin, version), max_batch)


def end_to_end_id(key: str) -> str:
    """The EndToEndId a payment's key is sent under: the key itself when it can be one (every
    instruction id can), else ``SAPK`` and 31 hex digits of its SHA-256 (35 characters).

    >>> end_to_end_id("202109-3f9a0c1d2e3b4c5d6e7f80")
    '202109-3f9a0c1d2e3b4c5d6e7f80'
    >>> end_to_end_id("conf-0123456789ab-submit_twice_is_idempotent-0")
    'SAPKA1C128D9A6D90F0C2E5EDD7FA26FB77'
    """
    if _PLAIN_KEY.fullmatch(key):
        return key
    return "SAPK" + hashlib.sha256(key.encode()).hexdigest()[:31].upper()


class BankFileProvider:
    """A bank that takes pain.001 files and answers with pain.002 and camt.054 files."""

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = _Settings.of(name, settings)
        self.capabilities = Capabilities(
            channels=frozenset({Channel.BANK}),
            max_batch=self.settings.max_batch,
            status_query=False,
            callbacks=False,
            address_validation=True,
            ledger_identity=True,
            keeps_state=True,
        )
        #: the ledger this provider works for (``bind_ledger``); None: files carry no ledger id
        self.ledger_id: str | None = None
        #: what it remembers (``bind_state``): in memory until bound to a ledger's state
        self.state: PluginState = MemoryPluginState()
        self.settings.outbox.mkdir(parents=True, exist_ok=True)

    def bind_ledger(self, ledger_id: str) -> None:
        """Work for the ledger ``ledger_id``: its id goes into every MsgId, and answers to
        another ledger's files are refused (see the module doc)."""
        if not _LEDGER_ID.fullmatch(ledger_id):
            raise ProviderError(self.name, f"not a ledger id (16 hex digits): {ledger_id!r}")
        self.ledger_id = ledger_id

    def bind_state(self, state: PluginState) -> None:
        """Remember in ``state`` (the ledger's) from now on; the outbox's old ``register.db``,
        if there is one, is read into it first (see the module doc)."""
        self.state = state
        self._migrate_register()

    def _migrate_register(self) -> None:
        path = self.settings.outbox / _REGISTER
        if not path.is_file() or self.state.get("migration", _REGISTER) is not None:
            return
        try:
            register = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = register.execute(
                    "SELECT key, message_id, amount, currency FROM sent ORDER BY message_id, key"
                ).fetchall()
            finally:
                register.close()
        except sqlite3.Error as exc:
            raise ProviderError(
                self.name, f"{path}: the old register cannot be read ({exc}); nothing was moved"
            ) from exc
        messages: dict[str, list[tuple[str, int, str]]] = {}
        for key, message_id, amount, currency in rows:
            theirs = ledger_of_message(str(message_id))
            if theirs is None or self.ledger_id is None or theirs == self.ledger_id:
                messages.setdefault(str(message_id), []).append((str(key), amount, currency))
        with self.state.transaction():
            for message_id, sent in messages.items():
                self._remember(message_id, None, None, [(k, k, a, c, None) for k, a, c in sent])
            self.state.put_json(
                "migration",
                _REGISTER,
                {"messages": len(messages), "payments": sum(len(s) for s in messages.values())},
            )
        with contextlib.suppress(OSError):  # another process may have moved it first
            path.rename(path.with_name(f"{_REGISTER}.migrated"))

    # -- out --------------------------------------------------------------------------------
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        """Write the payments not yet sent as one pain.001 file; PENDING for every payment.

        Raises:
            ProviderError: a key sent before comes again with another amount (a key is never
                reused for another payment); nothing was written.
        """
        fresh: dict[str, Payment] = {}
        for payment in payments:
            sent = self.state.get_json("payment", payment.key)
            if sent is None:
                first = fresh.setdefault(payment.key, payment)
                sent = {
                    "amount": first.amount.minor,
                    "currency": first.amount.currency,
                    "address": _fingerprint(first),
                }
            if (sent["amount"], sent["currency"]) != (
                payment.amount.minor,
                payment.amount.currency,
            ) or sent.get("address", _fingerprint(payment)) != _fingerprint(payment):
                raise ProviderError(
                    self.name,
                    f"payment {payment.key}: sent before with another amount or account; a key "
                    "is never reused for another payment: nothing was written",
                    provider_code="KEY_REUSED",
                )
        if fresh:
            self._write(list(fresh.values()))
        return [Result(p.key, ResultKind.PENDING) for p in payments]

    def _write(self, payments: Sequence[Payment]) -> None:
        # by key: the same payments in any order are the same file, byte for byte
        payments = sorted(payments, key=lambda p: p.key)
        digest = hashlib.sha256("\n".join(p.key for p in payments).encode()).hexdigest()
        if self.ledger_id is not None:  # 35 characters: the ledger, then the keys
            message_id = f"SAP-{self.ledger_id}-{digest[:14].upper()}"
        else:  # not bound to a ledger: 32 characters, the same for the same keys
            message_id = f"SAP{digest[:29].upper()}"
        created = _created_at(payments)
        #: the key each EndToEndId of the file stands for
        key_of = {end_to_end_id(p.key): p.key for p in payments}
        transfers = []
        for payment in payments:
            address = payment.address
            if not isinstance(address, BankAccount):  # nothing written yet: refuse this one
                raise PaymentsRefused(
                    self.name,
                    {payment.key: (Reason.UNKNOWN_ACCOUNT, "not a bank account")},
                    provider_code="BANK",
                )
            transfers.append(
                CreditTransfer(
                    end_to_end_id(payment.key),
                    payment.amount,
                    payment.payee_name,
                    address.account_number,
                    address.bank_bin,
                    payment.reference,
                )
            )
        batch = TransferBatch(
            message_id, created, created.date(), self.settings.debtor, tuple(transfers)
        )
        try:
            data = write_pain001(batch, self.settings.profile)
        except InvalidBatch as exc:  # nothing written: one transfer's fault fails that payment
            if exc.end_to_end_id is None:  # the batch or its debtor: not one payment's fault
                raise
            dead = exc.field in ("account", "bank_bin")  # the next cycle tries the next address
            raise PaymentsRefused(
                self.name,
                {
                    key_of.get(exc.end_to_end_id, exc.end_to_end_id): (
                        Reason.UNKNOWN_ACCOUNT if dead else Reason.REFUSED,
                        f"{exc.field}: {exc.reason}",
                    )
                },
                provider_code="INVALID_FIELD",
            ) from exc
        directory = self.settings.outbox
        name = f"pain.001.001.{self.settings.profile.version}-{message_id}"
        write_atomically(directory / f"{name}.xml", data)
        write_atomically(
            directory / f"{name}.manifest.json",
            json.dumps(
                {
                    "message_id": message_id,
                    "ledger_id": self.ledger_id,
                    "created_at": created.isoformat(),
                    "count": len(transfers),
                    "control_sum": sum(t.amount.minor for t in transfers),
                    "currency": "VND",
                    "sha256": hashlib.sha256(data).hexdigest(),
                },
                indent=1,
            ).encode(),
        )
        # After the file: a remembered key always has its file. A crash in between leaves a
        # file whose keys are not remembered; sent again, the batch writes the same bytes.
        self._remember(
            message_id,
            f"{name}.xml",
            created,
            [
                (e2e, key, p.amount.minor, p.amount.currency, _fingerprint(p))
                for (e2e, key), p in zip(key_of.items(), payments, strict=True)
            ],
        )

    def _remember(
        self,
        message_id: str,
        file: str | None,
        created: dt.datetime | None,
        sent: Iterable[tuple[str, str, int, str, str | None]],
    ) -> None:
        """Remember a message and its payments: (EndToEndId, key, amount, currency, address
        fingerprint or None) each."""
        sent = list(sent)
        with self.state.transaction():
            for e2e, key, amount, currency, address in sent:
                remembered: dict[str, str | int] = {
                    "message": message_id,
                    "end_to_end_id": e2e,
                    "amount": amount,
                    "currency": currency,
                }
                if address is not None:
                    remembered["address"] = address
                self.state.put_json("payment", key, remembered)
                if e2e != key:
                    self.state.put_json("end_to_end", e2e, key)
            self.state.put_json(
                "message",
                message_id,
                {
                    "file": file,
                    "created_at": None if created is None else created.isoformat(),
                    "count": len(sent),
                    "control_sum": sum(row[2] for row in sent),
                    "currency": sent[0][3] if sent else None,
                    "keys": [row[1] for row in sent],
                },
            )

    def status(self, keys: Sequence[str]) -> list[Result]:
        raise ProviderError(
            self.name, "a bank answers by file: import its reports", provider_code="NO_STATUS"
        )

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        if not isinstance(address, BankAccount) or bank_by_bin(address.bank_bin) is None:
            return AddressCheck(ok=False, reason=Reason.UNKNOWN_ACCOUNT)
        account = address.account_number
        if not (6 <= len(account) <= 19 and account.isalnum() and account.isascii()):
            return AddressCheck(ok=False, reason=Reason.UNKNOWN_ACCOUNT)
        return AddressCheck(ok=True)

    # -- in ---------------------------------------------------------------------------------
    def parse_report(self, data: bytes) -> list[Result]:
        """The results of a pain.002 or camt.054 file. A rejection of a whole message or payment
        information becomes a FAILED result for every key that message carried.

        Raises:
            ReportRefused (a ProviderError): malformed, not a pain.002 / camt.054, or it names
                a message or transaction this provider never sent, or holds nothing of ours
                (see the module doc); the error names the line and element where it can.
            ForeignLedger (an InvalidInput): it answers a file made for another ledger.
        """
        try:
            if message_type(data) == "camt.054":
                return self._notification(data)
            return self._status_report(data)
        except BankFileError as exc:  # the readers' error, as the protocol's
            raise ReportRefused(self.name, exc.reason, line=exc.line, path=exc.path) from exc

    def _refused(self, reason: str) -> ReportRefused:
        return ReportRefused(self.name, f"{reason}: nothing was applied")

    def _key_of(self, end_to_end: str) -> str | None:
        """The key of a payment this provider sent under the EndToEndId ``end_to_end``."""
        sent = self.state.get_json("payment", end_to_end)
        if sent is not None and sent.get("end_to_end_id", end_to_end) == end_to_end:
            return end_to_end
        key = self.state.get_json("end_to_end", end_to_end)
        return key if isinstance(key, str) else None

    def _notification(self, data: bytes) -> list[Result]:
        # A notification covers the whole account (fees, other transfers): keep the entries
        # of payments this plugin sent, by their EndToEndId.
        notification = read_notification(data)
        self._refuse_foreign(notification.batch_ids)
        for batch_id in notification.batch_ids:
            if self._ours(batch_id) and self.state.get("message", batch_id) is None:
                raise self._refused(
                    f"a batch entry names message {batch_id}, which this provider never sent"
                )
        ours = []
        for notice in notification.notices:
            key = self._key_of(notice.end_to_end_id)
            if key is not None:
                ours.append(attrs.evolve(notice, end_to_end_id=key))
        if not ours:
            raise self._refused(
                f"no entry answers a payment this provider sent ({len(notification.notices)} "
                "entries with an EndToEndId, none of them ours)"
            )
        return notice_results(ours)

    def _ours(self, message_id: str) -> bool:
        """Whether ``message_id`` has the shape of this provider's MsgIds."""
        if self.ledger_id is not None and ledger_of_message(message_id) == self.ledger_id:
            return True
        return _UNTAGGED.fullmatch(message_id.strip()) is not None

    def _status_report(self, data: bytes) -> list[Result]:
        report = read_status_report(data)  # one pass for transactions and rejected blocks
        self._refuse_foreign(report.original_ids)
        answered = set(report.original_ids)
        for message_id in report.original_ids:
            if self.state.get("message", message_id) is None:
                raise self._refused(
                    f"it answers message {message_id} (OrgnlMsgId or OrgnlPmtInfId), which this "
                    "provider never sent"
                )
        results = []
        for result in status_results(report.transactions):
            key = self._key_of(result.key)
            if key is None:
                raise self._refused(
                    f"it names transaction {result.key} (OrgnlEndToEndId), which this provider "
                    "never sent"
                )
            sent = self.state.get_json("payment", key)
            if answered and sent["message"] not in answered:
                raise self._refused(
                    f"transaction {result.key} was sent in message {sent['message']}, not in "
                    "the message this report answers"
                )
            results.append(attrs.evolve(result, key=key))
        if not answered and not results:
            raise self._refused("it answers no message and no transaction this provider sent")
        listed = {r.key for r in results}
        for message_id, code in (*report.rejected_messages, *report.rejected_payment_infos):
            message = self.state.get_json("message", message_id) or {}
            for key in message.get("keys", ()):
                if key not in listed:
                    listed.add(key)
                    results.append(
                        Result(
                            key,
                            ResultKind.FAILED,
                            REASONS.get(code or "", Reason.OTHER),
                            provider_code=code,
                            provider_message=f"message {message_id} rejected as a whole",
                        )
                    )
        return results

    def _refuse_foreign(self, message_ids: Sequence[str]) -> None:
        """Raise ForeignLedger when one of our message ids in an answer names another ledger."""
        if self.ledger_id is None:
            return
        for message_id in message_ids:
            theirs = ledger_of_message(message_id)
            if theirs is not None and theirs != self.ledger_id:
                raise ForeignLedger(theirs, self.ledger_id)

    def close(self) -> None:
        """Nothing to release: the state is the ledger's (or memory)."""


def _fingerprint(payment: Payment) -> str:
    """8 hex digits of the SHA-256 of the payment's key and address: enough to notice a key
    sent again to another account, too few to tell which account it is (a plugin's state keeps
    no account numbers)."""
    return hashlib.sha256(f"{payment.key}\n{payment.address.key}".encode()).hexdigest()[:8]


def _created_at(payments: Sequence[Payment]) -> dt.datetime:
    """CreDtTm of a file of ``payments``: when the ledger committed their batch (the earliest,
    should they come from several), to the second; the wall clock only for payments that carry
    no such time (a provider used without a ledger)."""
    stamps = [
        p.batch_created_at
        if p.batch_created_at.tzinfo
        else p.batch_created_at.replace(tzinfo=dt.UTC)
        for p in payments
        if p.batch_created_at is not None
    ]
    created = min(stamps) if stamps else dt.datetime.now(dt.UTC)
    return created.replace(microsecond=0)


def bank_files(name: str, settings: Mapping[str, Any]) -> BankFileProvider:
    """Entry point ``iso20022-bank``."""
    return BankFileProvider(name, settings)
