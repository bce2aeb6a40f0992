"""The ``iso20022-bank`` provider plugin: payment files out, status reports and notifications in.

A bank does not answer a file straight away: ``submit`` writes the batch as a pain.001 file
(and its manifest) into the configured ``outbox`` directory, atomically, and answers PENDING for
every payment. The bank's pain.002 status reports and camt.054 notifications arrive later as
files; ``parse_report`` turns one into results (``Ledger.import_bank_file`` applies them,
exactly once per file). The plugin keeps a register of which keys each message carried, so a
rejection of a whole message or payment information applies to every transaction under it.

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

import datetime as dt
import hashlib
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from sap_payments._files import write_atomically
from sap_payments.beneficiaries import BankAccount, Channel, FinancialAddress
from sap_payments.errors import ConfigError, ForeignLedger
from sap_payments.iso20022.model import BankProfile, CreditTransfer, DebtorAccount, TransferBatch
from sap_payments.iso20022.napas import bank_by_bin
from sap_payments.iso20022.pain001 import write_pain001
from sap_payments.iso20022.reading import (
    REASONS,
    message_type,
    notice_results,
    read_notification,
    read_status_report,
    status_results,
)
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    ProviderError,
    Reason,
    Result,
    ResultKind,
)

__all__ = ["BankFileProvider", "bank_files", "ledger_of_message"]

#: A ledger id: 16 lower-case hex digits (see ``Store.ledger_id``).
_LEDGER_ID: Final = re.compile(r"[0-9a-f]{16}")
#: The MsgId (and PmtInfId) of a file made for a ledger: its id, then 14 hex digits of the keys.
_TAGGED: Final = re.compile(r"SAP-([0-9a-f]{16})-[0-9A-F]{14}")


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
        )
        #: the ledger this provider works for (``bind_ledger``); None: files carry no ledger id
        self.ledger_id: str | None = None
        self.settings.outbox.mkdir(parents=True, exist_ok=True)
        self._register = sqlite3.connect(self.settings.outbox / "register.db")
        self._register.execute(
            "CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, message_id TEXT NOT NULL, "
            "amount INTEGER NOT NULL, currency TEXT NOT NULL)"
        )
        self._register.commit()

    def bind_ledger(self, ledger_id: str) -> None:
        """Work for the ledger ``ledger_id``: its id goes into every MsgId, and answers to
        another ledger's files are refused (see the module doc)."""
        if not _LEDGER_ID.fullmatch(ledger_id):
            raise ProviderError(self.name, f"not a ledger id (16 hex digits): {ledger_id!r}")
        self.ledger_id = ledger_id

    # -- out --------------------------------------------------------------------------------
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        """Write the payments not yet sent as one pain.001 file; PENDING for every payment."""
        known = self._known([p.key for p in payments])
        fresh = [p for p in payments if p.key not in known]
        if fresh:
            self._write(fresh)
        return [Result(p.key, ResultKind.PENDING) for p in payments]

    def _known(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            found.update(
                row[0]
                for row in self._register.execute(
                    f"SELECT key FROM sent WHERE key IN ({', '.join('?' * len(chunk))})", chunk
                )
            )
        return found

    def _write(self, payments: Sequence[Payment]) -> None:
        digest = hashlib.sha256("\n".join(sorted(p.key for p in payments)).encode()).hexdigest()
        if self.ledger_id is not None:  # 35 characters: the ledger, then the keys
            message_id = f"SAP-{self.ledger_id}-{digest[:14].upper()}"
        else:  # not bound to a ledger: 32 characters, the same for the same keys
            message_id = f"SAP{digest[:29].upper()}"
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        transfers = []
        for payment in payments:
            address = payment.address
            if not isinstance(address, BankAccount):
                raise ProviderError(
                    self.name, f"payment {payment.key}: not a bank account", provider_code="BANK"
                )
            transfers.append(
                CreditTransfer(
                    payment.key,
                    payment.amount,
                    payment.payee_name,
                    address.account_number,
                    address.bank_bin,
                    payment.reference,
                )
            )
        batch = TransferBatch(message_id, now, now.date(), self.settings.debtor, tuple(transfers))
        data = write_pain001(batch, self.settings.profile)
        directory = self.settings.outbox
        name = f"pain.001.001.{self.settings.profile.version}-{message_id}"
        write_atomically(directory / f"{name}.xml", data)
        write_atomically(
            directory / f"{name}.manifest.json",
            json.dumps(
                {
                    "message_id": message_id,
                    "ledger_id": self.ledger_id,
                    "count": len(transfers),
                    "control_sum": sum(t.amount.minor for t in transfers),
                    "currency": "VND",
                    "sha256": hashlib.sha256(data).hexdigest(),
                },
                indent=1,
            ).encode(),
        )
        with self._register:  # after the file: a registered key always has its file
            self._register.executemany(
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?)",
                [(p.key, message_id, p.amount.minor, p.amount.currency) for p in payments],
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
            BankFileError (an InvalidInput): malformed, or not a pain.002 / camt.054.
            ForeignLedger (an InvalidInput): it answers a file made for another ledger.
        """
        if message_type(data) == "camt.054":
            # A notification covers the whole account (fees, other transfers): keep the entries
            # of payments this plugin sent, by their EndToEndId.
            notification = read_notification(data)
            self._refuse_foreign(notification.batch_ids)
            notices = notification.notices
            ours = self._known([n.end_to_end_id for n in notices])
            return notice_results([n for n in notices if n.end_to_end_id in ours])
        report = read_status_report(data)  # one pass for transactions and rejected blocks
        self._refuse_foreign(report.original_ids)
        results = status_results(report.transactions)
        listed = {r.key for r in results}
        for message_id, code in (*report.rejected_messages, *report.rejected_payment_infos):
            for (key,) in self._register.execute(
                "SELECT key FROM sent WHERE message_id = ?", (message_id,)
            ):
                if key not in listed:
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
        self._register.close()


def bank_files(name: str, settings: Mapping[str, Any]) -> BankFileProvider:
    """Entry point ``iso20022-bank``."""
    return BankFileProvider(name, settings)
