"""The values that cross the bank-file boundary, shared by the writer, the readers and the
plugin. Plain data; no XML here.
"""

from __future__ import annotations

import datetime as dt
import enum

import attrs

from sap_payments.money import Money

__all__ = [
    "BankProfile",
    "CreditTransfer",
    "DebtorAccount",
    "EntryNotice",
    "StatusCode",
    "TransactionStatus",
    "TransferBatch",
]


@attrs.frozen
class DebtorAccount:
    """The agency's budget account the money leaves from (configured)."""

    name: str
    account: str  # the account number (Othr/Id)
    bank_bin: str  # NAPAS BIN of the agency's bank
    bic: str | None = None  # the bank's BIC, when known


@attrs.frozen
class CreditTransfer:
    """One payment in a pain.001: to a beneficiary's (or proxy's) bank account."""

    end_to_end_id: str  # the instruction's key (≤ 35 characters)
    amount: Money
    creditor_name: str
    account: str  # 6–19 letters or digits (Othr/Id)
    bank_bin: str  # NAPAS BIN (clearing member id)
    remittance: str  # ≤ 140 characters, naming the programme and month


@attrs.frozen
class TransferBatch:
    """One pain.001 file: one batch of one cycle to one bank."""

    message_id: str  # MsgId and PmtInfId (≤ 35 characters)
    created_at: dt.datetime  # CreDtTm (timezone-aware; part of the bytes, so fixed per batch)
    execution_date: dt.date  # ReqdExctnDt
    debtor: DebtorAccount
    transfers: tuple[CreditTransfer, ...]


@attrs.frozen
class BankProfile:
    """What a bank demands of a file beyond the schema."""

    latin_names: bool = False  # transliterate names and texts to the Latin subset (đ → d)
    version: str = "09"  # pain.001.001.09, or "03"


class StatusCode(enum.StrEnum):
    """ISO 20022 ExternalPaymentTransactionStatus / group status codes sap_payments reads."""

    ACCP = "ACCP"  # accepted customer profile
    ACSC = "ACSC"  # accepted, settlement completed
    ACSP = "ACSP"  # accepted, settlement in process
    ACWC = "ACWC"  # accepted with change
    PDNG = "PDNG"  # pending
    RCVD = "RCVD"  # received
    PART = "PART"  # partially accepted (group or payment level)
    RJCT = "RJCT"  # rejected


@attrs.frozen
class TransactionStatus:
    """One transaction's status from a pain.002 (group and payment-level statuses already
    applied to the transactions under them)."""

    end_to_end_id: str
    status: StatusCode
    reason: str | None = None  # the ISO reason code (AC01, AC04, …) or proprietary text
    additional: str | None = None  # AddtlInf, the bank's own words
    amount: Money | None = None


@attrs.frozen
class EntryNotice:
    """One transaction detail of a camt.054 entry: a booked debit confirms a payment, return
    information or a reversal says it came back."""

    end_to_end_id: str
    amount: Money
    booked: bool  # Sts BOOK
    debit: bool  # CdtDbtInd DBIT
    reversal: bool = False  # RvslInd true
    return_reason: str | None = None  # RtrInf/Rsn/Cd
    bank_reference: str | None = None  # AcctSvcrRef or TxId
    return_text: str | None = None  # RtrInf/AddtlInf, the bank's own words on a return
