"""Payment files out: a :class:`TransferBatch` as an ISO 20022 pain.001 message.

One batch is one file: a group header with the number of transactions and their control sum,
one payment information block for the agency's budget account (the debtor), and one credit
transfer per payment to a beneficiary's (or proxy's) Vietnamese bank account. pain.001.001.09 is
the default; pain.001.001.03 is written for banks that still take the 2009 version.

What leaves the agency is what the bank needs and no more: the creditor's name, account number
and bank, the amount, the instruction's key (``EndToEndId``) and the remittance text. The types
carry no national id or birth date, so none can slip into the file.

The output is a pure function of the batch and the profile: no clock, no randomness, a fixed
element order, UTF-8 with an XML declaration and the message's namespace as the default one.
Regenerating a batch gives the same bytes, so a file's SHA-256 identifies it.

The XML is built as text, with every value escaped: this writes 100,000 transfers in well under
a second, where building a tree first would take several. :func:`validate_pain001` checks a file
against the official XSD; it needs lxml, which is a test dependency, not a runtime one.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import re
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape

import attrs

from sap_payments.errors import InvalidInput
from sap_payments.iso20022.latin import fit, to_latin
from sap_payments.iso20022.model import BankProfile, TransferBatch
from sap_payments.iso20022.napas import NAPAS_BANKS

__all__ = [
    "PAIN001_VERSIONS",
    "InvalidBatch",
    "UnknownBank",
    "validate_pain001",
    "write_pain001",
]

#: The pain.001 versions written: ``"09"`` (pain.001.001.09, the default) and ``"03"``.
PAIN001_VERSIONS: Final = ("09", "03")

#: Max35Text: MsgId, PmtInfId, EndToEndId.
_ID_LIMIT: Final = 35
#: Max140Text: the party names (``Nm`` of PartyIdentification135 in .09 and of
#: PartyIdentification32 in .03 — 140 in both official XSDs; 70 is the EPC SEPA restriction, not
#: ISO's) and the unstructured remittance text (``Ustrd``).
_TEXT_LIMIT: Final = 140
#: ActiveOrHistoricCurrencyAndAmount and DecimalNumber (CtrlSum): totalDigits 18.
_AMOUNT_BOUND: Final = 10**18

#: A Vietnamese bank account number: 6 to 19 letters or digits.
_ACCOUNT: Final = re.compile("[A-Za-z0-9]{6,19}")
#: Characters that have no place in a one-line text field: control characters (line breaks and
#: tabs included), lone surrogates and the non-characters XML forbids.
_FORBIDDEN: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


class InvalidBatch(InvalidInput):
    """A transfer batch that cannot be written as a pain.001; nothing was written.

    ``message_id`` names the batch, ``end_to_end_id`` the transfer at fault (``None`` when the
    fault is in the batch itself or its debtor), ``field`` the field of :class:`TransferBatch`,
    :class:`DebtorAccount` (``debtor.…``) or :class:`CreditTransfer` at fault. The message
    names no person and no account number.
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str,
        message_id: str | None = None,
        end_to_end_id: str | None = None,
    ) -> None:
        where = f"batch {message_id}" if message_id is not None else "batch"
        if end_to_end_id is not None:
            where += f", transfer {end_to_end_id}"
        super().__init__(f"{where}: {field}: {reason}")
        self.reason = reason
        self.field = field
        self.message_id = message_id
        self.end_to_end_id = end_to_end_id


class UnknownBank(InvalidBatch, LookupError):
    """A NAPAS BIN that the table of member banks (:mod:`sap_payments.iso20022.napas`) lacks."""

    def __init__(
        self,
        bank_bin: str,
        *,
        field: str,
        message_id: str | None = None,
        end_to_end_id: str | None = None,
    ) -> None:
        super().__init__(
            f"{bank_bin!r} is not the BIN of a NAPAS member bank",
            field=field,
            message_id=message_id,
            end_to_end_id=end_to_end_id,
        )
        self.bank_bin = bank_bin


@attrs.frozen
class _Layout:
    """What differs between the versions written."""

    namespace: str
    bic_element: str  # BICFI (.09) or BIC (.03)
    bic: re.Pattern[str]  # the version's BIC pattern, from its XSD
    execution_date: str  # ReqdExctnDt with a {date} placeholder: a choice in .09, a date in .03


_LAYOUTS: Final = {
    "09": _Layout(
        "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09",
        "BICFI",
        re.compile("[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?"),  # BICFIDec2014Identifier
        "<ReqdExctnDt><Dt>{date}</Dt></ReqdExctnDt>",
    ),
    "03": _Layout(
        "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03",
        "BIC",
        re.compile("[A-Z]{6}[A-Z2-9][A-NP-Z0-9]([A-Z0-9]{3})?"),  # BICIdentifier
        "<ReqdExctnDt>{date}</ReqdExctnDt>",
    ),
}

_DEFAULT_PROFILE: Final = BankProfile()


def _compact(template: str) -> str:
    """The template without the white space between elements (one line; machines read it)."""
    return "".join(line.strip() for line in template.splitlines())


#: The head and tail, laid out here for people; written compact, after the XML declaration.
_HEAD: Final = '<?xml version="1.0" encoding="UTF-8"?>\n' + _compact(
    """\
<Document xmlns="{namespace}">
  <CstmrCdtTrfInitn>
    <GrpHdr>
      <MsgId>{message_id}</MsgId>
      <CreDtTm>{created_at}</CreDtTm>
      <NbOfTxs>{count}</NbOfTxs>
      <CtrlSum>{total}</CtrlSum>
      <InitgPty>
        <Nm>{debtor_name}</Nm>
      </InitgPty>
    </GrpHdr>
    <PmtInf>
      <PmtInfId>{message_id}</PmtInfId>
      <PmtMtd>TRF</PmtMtd>
      <NbOfTxs>{count}</NbOfTxs>
      <CtrlSum>{total}</CtrlSum>
      {execution_date}
      <Dbtr>
        <Nm>{debtor_name}</Nm>
      </Dbtr>
      <DbtrAcct>
        <Id>
          <Othr>
            <Id>{debtor_account}</Id>
          </Othr>
        </Id>
      </DbtrAcct>
      <DbtrAgt>
        {debtor_agent}
      </DbtrAgt>
      <ChrgBr>SLEV</ChrgBr>
"""
)

_TAIL: Final = "</PmtInf></CstmrCdtTrfInitn></Document>\n"


def _agent(bank_bin: str, bic: str | None, element: str) -> str:
    """FinInstnId of a bank: its BIC when known, its NAPAS BIN as clearing-system member id."""
    bic_element = f"<{element}>{bic}</{element}>" if bic else ""
    return (
        f"<FinInstnId>{bic_element}<ClrSysMmbId><MmbId>{bank_bin}</MmbId></ClrSysMmbId>"
        "</FinInstnId>"
    )


class _Rejected(Exception):
    """A field the file cannot carry; turned into :class:`InvalidBatch` with its context."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def write_pain001(batch: TransferBatch, profile: BankProfile = _DEFAULT_PROFILE) -> bytes:
    """The pain.001 file of ``batch``, as UTF-8 bytes, in the version ``profile`` asks for.

    Names and the remittance text are put in NFC and cut to the schema's 140 characters without
    splitting a letter; with ``profile.latin_names`` they are first transliterated to ASCII
    (``Đặng Thị Ánh`` → ``Dang Thi Anh``). Identifiers are never cut: a long one is an error.

    Raises:
        InvalidBatch: a field the file cannot carry: an unsupported version, an empty batch, a
            naive ``created_at``, an id that is empty or over 35 characters or repeated, an
            amount that is not a positive VND amount, an account number that is not 6–19
            letters or digits, an empty name or remittance text, a control character in a text,
            a BIC the schema rejects.
        UnknownBank: a BIN that is not in the NAPAS table (debtor's or creditor's bank).
    """
    message_id = batch.message_id
    try:
        layout, head = _head(batch, profile)
    except _Rejected as exc:
        raise InvalidBatch(exc.reason, field=exc.field, message_id=message_id) from None

    latin = profile.latin_names
    bic_element = layout.bic_element
    agents: dict[str, str] = {}  # FinInstnId by BIN
    remittances: dict[str, str] = {}  # a cycle's texts repeat: "Trợ cấp … tháng 7/2024"
    seen: set[str] = set()
    parts: list[str] = []
    total = 0
    for transfer in batch.transfers:
        end_to_end_id = transfer.end_to_end_id
        try:
            _check_id("end_to_end_id", end_to_end_id)
            if end_to_end_id in seen:
                raise _Rejected("end_to_end_id", "repeats an earlier transfer's EndToEndId")
            seen.add(end_to_end_id)
            amount = transfer.amount
            if amount.currency != "VND":
                raise _Rejected("amount", f"in {amount.currency}; these files pay VND only")
            if not 0 < amount.minor < _AMOUNT_BOUND:
                raise _Rejected("amount", f"{amount.minor} đồng is not a payable amount")
            total += amount.minor
            if not _ACCOUNT.fullmatch(transfer.account):
                raise _Rejected("account", "not an account number of 6–19 letters or digits")
            agent = agents.get(transfer.bank_bin)
            if agent is None:
                bank = NAPAS_BANKS.get(transfer.bank_bin)
                if bank is None:
                    raise UnknownBank(
                        transfer.bank_bin,
                        field="bank_bin",
                        message_id=message_id,
                        end_to_end_id=end_to_end_id,
                    )
                agent = agents[bank.bin] = _agent(bank.bin, bank.swift, bic_element)
            name = _text("creditor_name", transfer.creditor_name, latin)
            remittance = remittances.get(transfer.remittance)
            if remittance is None:
                remittance = _text("remittance", transfer.remittance, latin)
                remittances[transfer.remittance] = remittance
        except _Rejected as exc:
            raise InvalidBatch(
                exc.reason, field=exc.field, message_id=message_id, end_to_end_id=end_to_end_id
            ) from None
        parts.append(
            f"<CdtTrfTxInf><PmtId><EndToEndId>{escape(end_to_end_id)}</EndToEndId></PmtId>"
            f'<Amt><InstdAmt Ccy="VND">{amount.minor}</InstdAmt></Amt>'
            f"<CdtrAgt>{agent}</CdtrAgt><Cdtr><Nm>{name}</Nm></Cdtr>"
            f"<CdtrAcct><Id><Othr><Id>{transfer.account}</Id></Othr></Id></CdtrAcct>"
            f"<RmtInf><Ustrd>{remittance}</Ustrd></RmtInf></CdtTrfTxInf>"
        )
    if total >= _AMOUNT_BOUND:
        raise InvalidBatch(
            "the control sum has more than 18 digits: split the batch",
            field="transfers",
            message_id=message_id,
        )
    header = _HEAD.format(count=len(parts), total=total, **head)
    return "".join((header, *parts, _TAIL)).encode("utf-8")


def _head(batch: TransferBatch, profile: BankProfile) -> tuple[_Layout, dict[str, str]]:
    """The version's layout and the values of the file's head but the count and control sum;
    checks the batch's own fields and its debtor."""
    layout = _LAYOUTS.get(profile.version)
    if layout is None:
        raise _Rejected(
            "profile.version",
            f"unsupported pain.001 version {profile.version!r} "
            f"(expected one of {', '.join(PAIN001_VERSIONS)})",
        )
    _check_id("message_id", batch.message_id)
    if not batch.transfers:
        raise _Rejected("transfers", "the batch holds no transfer")
    created_at = _date_time(batch.created_at)
    date = batch.execution_date
    debtor = batch.debtor
    debtor_name = _text("debtor.name", debtor.name, profile.latin_names)
    if not _ACCOUNT.fullmatch(debtor.account):
        raise _Rejected("debtor.account", "not an account number of 6–19 letters or digits")
    bank = NAPAS_BANKS.get(debtor.bank_bin)
    if bank is None:
        raise UnknownBank(debtor.bank_bin, field="debtor.bank_bin", message_id=batch.message_id)
    bic = debtor.bic or bank.swift
    if bic is not None and not layout.bic.fullmatch(bic):
        raise _Rejected("debtor.bic", f"{bic!r} is not a BIC the pain.001 schema accepts")
    execution_date = f"{date.year:04d}-{date.month:02d}-{date.day:02d}"
    head = {
        "namespace": layout.namespace,
        "message_id": escape(batch.message_id),
        "created_at": created_at,
        "debtor_name": debtor_name,
        "execution_date": layout.execution_date.format(date=execution_date),
        "debtor_account": debtor.account,
        "debtor_agent": _agent(bank.bin, bic, layout.bic_element),
    }
    return layout, head


def _text(field: str, value: str, latin: bool) -> str:
    """A name or remittance text, ready for the file: Latin if asked, cut to fit, escaped."""
    if latin:
        value = to_latin(value)
    value = fit(value, _TEXT_LIMIT)
    if not value.strip():
        raise _Rejected(field, "is empty")
    if not value.isprintable() and _FORBIDDEN.search(value):
        raise _Rejected(field, "holds a control character (a line break, a tab, …)")
    return escape(value)


def _check_id(field: str, value: str) -> None:
    """An identifier (Max35Text) is written as given: never cut, never empty."""
    if not value:
        raise _Rejected(field, "is empty")
    if len(value) > _ID_LIMIT:
        raise _Rejected(field, f"{len(value)} characters; the schema allows at most {_ID_LIMIT}")
    if _FORBIDDEN.search(value):
        raise _Rejected(field, "holds a control character")


def _date_time(value: dt.datetime) -> str:
    """CreDtTm: seconds and the UTC offset (``2024-07-05T08:30:00+07:00``)."""
    offset = value.utcoffset()
    if offset is None:
        raise _Rejected("created_at", "has no UTC offset (a timezone-aware time is needed)")
    if offset % dt.timedelta(minutes=1):
        raise _Rejected("created_at", "has a UTC offset that is not a whole number of minutes")
    return value.isoformat(timespec="seconds")


def validate_pain001(data: bytes, version: str, schema_dir: Path) -> None:
    """Check ``data`` against the official pain.001.001.``version`` XSD in ``schema_dir``.

    For tests and benchmarks: it needs lxml, which sap_payments does not depend on at run time.

    Raises:
        ValueError: an unknown version, data that is not well-formed XML, or a document the
            schema rejects (the message holds the schema's first error and its line).
    """
    if version not in PAIN001_VERSIONS:
        raise ValueError(f"unknown pain.001 version {version!r}")
    etree = importlib.import_module("lxml.etree")
    schema = _schema(version, Path(schema_dir).resolve())
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        document = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from exc
    if not schema.validate(document):
        error = schema.error_log[0]
        raise ValueError(f"pain.001.001.{version}, line {error.line}: {error.message}")


@functools.cache
def _schema(version: str, schema_dir: Path) -> Any:
    etree = importlib.import_module("lxml.etree")
    return etree.XMLSchema(etree.parse(str(schema_dir / f"pain.001.001.{version}.xsd")))
