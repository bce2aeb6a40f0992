"""Reading banks' answers: pain.002 status reports and camt.054 debit/credit notifications.

A bank answers a pain.001 payment file twice: a *pain.002* says what it did with each transaction
(accepted, settled, rejected and why), and a *camt.054* reports what was booked on the agency's
account (the debit that paid a beneficiary, or the credit that brought a returned payment back).
This module turns both into the shared values of :mod:`sap_payments.iso20022.model`
(:class:`TransactionStatus`, :class:`EntryNotice`) and those into provider :class:`Result`\\ s.

Versions and variants
    The readers do not need the version in advance. Elements are matched by their *local* name
    only, so pain.002.001.03 and .10, camt.054.001.02, .04 and .08 and national variants that
    keep the ISO structure under another namespace (the German ``pain.002.003.03``, …) all read
    the same way. The message type comes from the root's first child: ``CstmrPmtStsRpt`` is a
    pain.002, ``BkToCstmrDbtCdtNtfctn`` a camt.054; anything else is :class:`UnknownMessage`.

All or nothing
    A file is parsed to its end before anything is returned. A file that is not well-formed XML,
    or that breaks a rule below, raises :class:`MalformedFile` naming the line and the element
    path (``/Document/CstmrPmtStsRpt/OrgnlPmtInfAndSts[1]/TxInfAndSts[3]``); nothing from it is
    returned. A DOCTYPE is refused (bank files have none; it is how entity attacks arrive).

Streaming
    :func:`xml.etree.ElementTree.iterparse` reads the file in chunks; every transaction is
    detached from the tree as soon as it is read, so memory holds the results and one
    transaction, not the document.

pain.002: statuses
    Transaction ``TxSts``, payment-information ``PmtInfSts`` and group ``GrpSts`` are read from
    ``OrgnlGrpInfAndSts``, ``OrgnlPmtInfAndSts`` and ``TxInfAndSts`` (in that, the schema's,
    order), reasons from ``StsRsnInf/Rsn/Cd`` or ``…/Prtry``, the bank's words from every
    ``StsRsnInf/AddtlInf`` (joined with spaces), the amount from ``OrgnlTxRef/Amt/InstdAmt``.

    * A payment-information or group RJCT applies to every transaction under it, whatever the
      transaction's own status; the transaction's own reason is kept when it has one, else the
      block's. Since a file need not list the transactions of a rejected block,
      :func:`rejected_messages` and :func:`rejected_payment_infos` return every rejected block
      (listed transactions or not) for the caller, who knows which keys each carried.
    * Otherwise a transaction's own ``TxSts`` decides. Without one it takes its payment
      information's status, else the group's — except PART, which says "look at the
      transactions". A transaction with no status at all is malformed.
    * Codes of the external code list that :class:`StatusCode` does not name are read as their
      nearest equivalent: ACCC → ACSC (credited to the creditor's account); ACTC, ACFC → ACCP;
      ACIS, ACPD, ACWP → ACSP; BLCK, PRES and the verification-of-payee answers RCVC, RVMC,
      RVNM, RVNA → PDNG; CANC → RJCT; PATC → PART. A transaction status outside the list is
      malformed; an unknown group or payment status is ignored (the transactions decide).
    * Every listed transaction must carry ``OrgnlEndToEndId``: a status report answers our own
      file, and a status that names no transaction cannot be applied.

camt.054: notices
    One :class:`EntryNotice` per ``Ntfctn/Ntry/NtryDtls/TxDtls`` that has ``Refs/EndToEndId``:
    the entry's ``CdtDbtInd`` (the booking on the agency's account; a detail's own indicator is
    not consulted), ``Sts`` (``Sts/Cd`` in .08, text before; booked means BOOK), ``RvslInd``,
    the detail's ``Amt`` (.04 and later; ``AmtDtls/TxAmt/Amt`` or ``AmtDtls/InstdAmt/Amt``
    otherwise, and the entry's ``Amt`` when it is the entry's only detail), ``RtrInf/Rsn/Cd``
    (or ``Prtry``; an ``RtrInf`` without a reason reads as the empty string ``""``) with the
    bank's words on it (every ``RtrInf/AddtlInf``, joined with spaces) and, as the
    bank's reference, the detail's ``Refs/AcctSvcrRef``, else the entry's ``AcctSvcrRef``, else
    ``Refs/TxId``. Details without an EndToEndId (fees, interest, others' credits) and amounts in
    a currency sap_payments does not pay in (not in :data:`~sap_payments.money.MINOR_UNITS`) are
    skipped: they cannot belong to an instruction. EndToEndIds that are not ours (a manual
    payment, ``NOTPROVIDED``) are returned as read; the caller ignores keys it does not know.

Status → result (:func:`status_results`)
    ACSC → PAID; ACCP, ACSP, ACWC, PDNG, RCVD (and PART on a transaction) → PENDING; RJCT →
    FAILED with the reason mapped by :data:`REASONS` (OTHER for an unknown or missing one), the
    ISO code in ``provider_code`` and AddtlInf in ``provider_message``.

Notice → result (:func:`notice_results`)
    A booked debit, no reversal, no return information → PAID (amount and reference kept); the
    same not yet booked (PDNG, INFO, FUTR) → PENDING; a booked notice with return information or
    a reversal → RETURNED with the mapped reason, the code in ``provider_code`` and the return's
    AddtlInf in ``provider_message``; a return not yet booked is left out (the
    booked one follows); credits without return information are not ours and are left out.

Reason codes (:data:`REASONS`; ISO ExternalStatusReason1Code / ExternalReturnReason1Code)::

    AC01  unknown_account   IncorrectAccountNumber
    AC02  provider_error    InvalidDebtorAccountNumber (the agency's account)
    AC03  unknown_account   InvalidCreditorAccountNumber
    AC04  closed_account    ClosedAccountNumber
    AC05  provider_error    ClosedDebtorAccountNumber (the agency's account)
    AC06  refused           BlockedAccount (may be lifted: not a dead address)
    AC07  closed_account    ClosedCreditorAccountNumber
    AG01  refused           TransactionForbidden
    AG02  provider_error    InvalidBankOperationCode
    AG03  refused           TransactionNotSupported
    AM01  provider_error    ZeroAmount
    AM02  limit_exceeded    NotAllowedAmount (above the allowed maximum)
    AM03  refused           NotAllowedCurrency
    AM04  provider_error    InsufficientFunds (the agency's account, not the payee's)
    AM05  duplicate         Duplication
    AM09  provider_error    WrongAmount
    AM10  provider_error    InvalidControlSum (our file)
    AM14  limit_exceeded    AmountExceedsAgreedLimit
    BE01  name_mismatch     InconsistentWithEndCustomer
    BE04  provider_error    MissingCreditorAddress (our file)
    BE05  provider_error    UnrecognisedInitiatingParty
    BE06  unknown_account   UnknownEndCustomer
    CNOR  unknown_account   CreditorBankIsNotRegistered
    CUST  other             RequestedByCustomer
    DNOR  provider_error    DebtorBankIsNotRegistered
    DT01  provider_error    InvalidDate
    DUPL  duplicate         DuplicatePayment
    ED05  provider_error    SettlementFailed
    FF01  provider_error    InvalidFileFormat
    FOCR  other             FollowingCancellationRequest
    MD07  payee_deceased    EndCustomerDeceased
    MS02  other             NotSpecifiedReasonCustomerGenerated
    MS03  other             NotSpecifiedReasonAgentGenerated
    NARR  other             Narrative (read AddtlInf)
    RC01  unknown_account   BankIdentifierIncorrect (the payee's bank)
    RR01  provider_error    MissingDebtorAccountOrIdentification
    RR02  provider_error    MissingDebtorNameOrAddress
    RR03  provider_error    MissingCreditorNameOrAddress
    RR04  refused           RegulatoryReason
    TM01  provider_error    CutOffTime

Codes of the agency's own side (its account, its file) are ``provider_error``: nothing is wrong
with the payee's address. Any other code, and proprietary text, is ``other``; the code itself
always stays in ``Result.provider_code``.
"""

from __future__ import annotations

import contextlib
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, TypeVar
from xml.parsers import expat

import attrs

from sap_payments.errors import InvalidInput
from sap_payments.iso20022.model import EntryNotice, StatusCode, TransactionStatus
from sap_payments.money import MINOR_UNITS, Money
from sap_payments.providers import Reason, Result, ResultKind

__all__ = [
    "REASONS",
    "BankFileError",
    "MalformedFile",
    "Notification",
    "StatusReport",
    "UnknownMessage",
    "message_type",
    "notice_results",
    "read_camt054",
    "read_notification",
    "read_pain002",
    "read_status_report",
    "rejected_messages",
    "rejected_payment_infos",
    "status_results",
]

_T = TypeVar("_T")

# -- errors -----------------------------------------------------------------------------------


class BankFileError(InvalidInput):
    """A bank file that cannot be read; nothing from it was returned.

    ``reason`` says what is wrong; ``source`` is the file's path (``"<bytes>"`` for data in
    memory), ``line`` the 1-based line and ``path`` the element path
    (``/Document/CstmrPmtStsRpt/OrgnlPmtInfAndSts[1]/…``) of the problem, each ``None`` when
    unknown.
    """

    def __init__(
        self, message: str, *, source: str, line: int | None = None, path: str | None = None
    ) -> None:
        where = ", ".join(part for part in (f"line {line}" if line else "", path or "") if part)
        super().__init__(f"{source}: {where}: {message}" if where else f"{source}: {message}")
        self.reason = message
        self.source = source
        self.line = line
        self.path = path


class MalformedFile(BankFileError):
    """Not well-formed XML, or a pain.002 / camt.054 that breaks the rules the readers rely on."""


class UnknownMessage(BankFileError):
    """Not a pain.002 or camt.054 (or not the one the reader was asked to read)."""


# -- reason codes -----------------------------------------------------------------------------

_R = Reason
#: ISO status and return reason code → sap_payments' reason (see the table in the module doc).
REASONS: Final[Mapping[str, Reason]] = MappingProxyType(
    {
        "AC01": _R.UNKNOWN_ACCOUNT,
        "AC02": _R.PROVIDER_ERROR,
        "AC03": _R.UNKNOWN_ACCOUNT,
        "AC04": _R.CLOSED_ACCOUNT,
        "AC05": _R.PROVIDER_ERROR,
        "AC06": _R.REFUSED,
        "AC07": _R.CLOSED_ACCOUNT,
        "AG01": _R.REFUSED,
        "AG02": _R.PROVIDER_ERROR,
        "AG03": _R.REFUSED,
        "AM01": _R.PROVIDER_ERROR,
        "AM02": _R.LIMIT_EXCEEDED,
        "AM03": _R.REFUSED,
        "AM04": _R.PROVIDER_ERROR,
        "AM05": _R.DUPLICATE,
        "AM09": _R.PROVIDER_ERROR,
        "AM10": _R.PROVIDER_ERROR,
        "AM14": _R.LIMIT_EXCEEDED,
        "BE01": _R.NAME_MISMATCH,
        "BE04": _R.PROVIDER_ERROR,
        "BE05": _R.PROVIDER_ERROR,
        "BE06": _R.UNKNOWN_ACCOUNT,
        "CNOR": _R.UNKNOWN_ACCOUNT,
        "CUST": _R.OTHER,
        "DNOR": _R.PROVIDER_ERROR,
        "DT01": _R.PROVIDER_ERROR,
        "DUPL": _R.DUPLICATE,
        "ED05": _R.PROVIDER_ERROR,
        "FF01": _R.PROVIDER_ERROR,
        "FOCR": _R.OTHER,
        "MD07": _R.PAYEE_DECEASED,
        "MS02": _R.OTHER,
        "MS03": _R.OTHER,
        "NARR": _R.OTHER,
        "RC01": _R.UNKNOWN_ACCOUNT,
        "RR01": _R.PROVIDER_ERROR,
        "RR02": _R.PROVIDER_ERROR,
        "RR03": _R.PROVIDER_ERROR,
        "RR04": _R.REFUSED,
        "TM01": _R.PROVIDER_ERROR,
    }
)

_S = StatusCode
#: Status text → StatusCode: the codes StatusCode names, and the nearest equivalent of the
#: other codes of the ISO external list (see the module doc).
_STATUS: Final[dict[str, StatusCode]] = {
    **{code.value: code for code in StatusCode},
    "ACCC": _S.ACSC,
    "ACTC": _S.ACCP,
    "ACFC": _S.ACCP,
    "ACIS": _S.ACSP,
    "ACPD": _S.ACSP,
    "ACWP": _S.ACSP,
    "BLCK": _S.PDNG,
    "PRES": _S.PDNG,
    "RCVC": _S.PDNG,
    "RVMC": _S.PDNG,
    "RVNM": _S.PDNG,
    "RVNA": _S.PDNG,
    "CANC": _S.RJCT,
    "PATC": _S.PART,
}

_KINDS: Final[Mapping[StatusCode, ResultKind]] = MappingProxyType(
    {
        _S.ACSC: ResultKind.PAID,
        _S.ACCP: ResultKind.PENDING,
        _S.ACSP: ResultKind.PENDING,
        _S.ACWC: ResultKind.PENDING,
        _S.PDNG: ResultKind.PENDING,
        _S.RCVD: ResultKind.PENDING,
        _S.PART: ResultKind.PENDING,
        _S.RJCT: ResultKind.FAILED,
    }
)

_MESSAGES: Final[Mapping[str, str]] = MappingProxyType(
    {"CstmrPmtStsRpt": "pain.002", "BkToCstmrDbtCdtNtfctn": "camt.054"}
)

# -- public API -------------------------------------------------------------------------------


@attrs.frozen
class StatusReport:
    """Everything a pain.002 says, from one pass over the file.

    ``rejected_messages`` holds (OrgnlMsgId, reason code) for a group-level RJCT,
    ``rejected_payment_infos`` (OrgnlPmtInfId, reason code) for each payment-level RJCT: every
    transaction of that message or payment information is rejected, listed in ``transactions``
    or not. ``original_ids`` lists every OrgnlMsgId and OrgnlPmtInfId the report answers, in
    file order: the ids of our own files, which name the ledger that made them.
    """

    transactions: tuple[TransactionStatus, ...]
    rejected_messages: tuple[tuple[str, str | None], ...] = ()
    rejected_payment_infos: tuple[tuple[str, str | None], ...] = ()
    original_ids: tuple[str, ...] = ()


@attrs.frozen
class Notification:
    """Everything sap_payments reads from a camt.054, from one pass over the file: the notices,
    and the batch references of batch-booked entries (``NtryDtls/Btch/MsgId`` and
    ``PmtInfId``: the ids of our own files, which name the ledger that made them)."""

    notices: tuple[EntryNotice, ...]
    batch_ids: tuple[str, ...] = ()


def message_type(source: bytes | Path) -> str:
    """``"pain.002"`` or ``"camt.054"``, from the root's first child (the file is read no further).

    >>> message_type(b'<Document xmlns="urn:x"><CstmrPmtStsRpt/></Document>')
    'pain.002'

    Raises:
        UnknownMessage: any other message.
        MalformedFile: not XML up to that element.
    """
    with _opened(source) as (stream, name):
        kind, _line, _path = _sniff(stream, name)
        return kind


def read_status_report(source: bytes | Path) -> StatusReport:
    """Read a pain.002 (any version or national variant) whole.

    Raises:
        UnknownMessage: not a pain.002.
        MalformedFile: not well-formed, or a transaction without EndToEndId or status, or an
            amount that is not one; the error names the line and element path.
    """
    transactions, messages, infos, originals = _parse(source, "pain.002", _StatusReader().read)
    return StatusReport(tuple(transactions), tuple(messages), tuple(infos), tuple(originals))


def read_pain002(source: bytes | Path) -> list[TransactionStatus]:
    """The status of every transaction a pain.002 lists, group and payment statuses applied.

    Raises:
        UnknownMessage, MalformedFile: as :func:`read_status_report`.
    """
    return _parse(source, "pain.002", _StatusReader().read)[0]


def rejected_messages(source: bytes | Path) -> list[tuple[str, str | None]]:
    """(OrgnlMsgId, reason code) of a pain.002 whose group status is RJCT: every transaction of
    that original message is rejected, whether the file lists it or not."""
    return list(read_status_report(source).rejected_messages)


def rejected_payment_infos(source: bytes | Path) -> list[tuple[str, str | None]]:
    """(OrgnlPmtInfId, reason code) of each payment information a pain.002 rejects (PmtInfSts
    RJCT): every transaction of it is rejected, whether the file lists it or not."""
    return list(read_status_report(source).rejected_payment_infos)


def read_camt054(source: bytes | Path) -> list[EntryNotice]:
    """Every transaction detail of a camt.054 (.02, .04, .08 or a variant) that can be ours.

    Raises:
        UnknownMessage: not a camt.054.
        MalformedFile: not well-formed, an entry without CdtDbtInd or Sts, a detail without an
            amount, or an amount that is not one; the error names the line and element path.
    """
    return _parse(source, "camt.054", _NoticeReader().read)


def read_notification(source: bytes | Path) -> Notification:
    """A camt.054 as :func:`read_camt054` reads it, with the batch references of its entries.

    Raises:
        UnknownMessage, MalformedFile: as :func:`read_camt054`.
    """
    reader = _NoticeReader()
    notices = _parse(source, "camt.054", reader.read)
    return Notification(tuple(notices), tuple(dict.fromkeys(reader.batch_ids)))


def status_results(statuses: Iterable[TransactionStatus]) -> list[Result]:
    """Provider results of pain.002 statuses (see the module doc for the mapping)."""
    results = []
    for status in statuses:
        kind = _KINDS[status.status]
        if kind is ResultKind.FAILED:
            code = status.reason
            results.append(
                Result(
                    status.end_to_end_id,
                    kind,
                    REASONS.get(code, Reason.OTHER) if code else Reason.OTHER,
                    provider_code=code,
                    provider_message=status.additional,
                    amount=status.amount,
                )
            )
        else:
            results.append(Result(status.end_to_end_id, kind, amount=status.amount))
    return results


def notice_results(notices: Iterable[EntryNotice]) -> list[Result]:
    """Provider results of camt.054 notices (see the module doc); notices that say nothing about
    a payment of ours (credits, returns not booked yet) are left out."""
    results = []
    for notice in notices:
        code = notice.return_reason
        if code is not None or notice.reversal:
            if not notice.booked:
                continue
            results.append(
                Result(
                    notice.end_to_end_id,
                    ResultKind.RETURNED,
                    REASONS.get(code, Reason.OTHER) if code else Reason.OTHER,
                    provider_reference=notice.bank_reference,
                    provider_code=code or None,
                    provider_message=notice.return_text,
                    amount=notice.amount,
                )
            )
        elif notice.debit:
            kind = ResultKind.PAID if notice.booked else ResultKind.PENDING
            results.append(
                Result(
                    notice.end_to_end_id,
                    kind,
                    provider_reference=notice.bank_reference,
                    amount=notice.amount,
                )
            )
    return results


# -- the file, its type and where things are in it ---------------------------------------------

_CHUNK: Final = 64 * 1024
_EVENTS: Final = ("start", "end")
#: Elements that repeat: their position is always shown in a path, [1] included.
_REPEATED: Final = frozenset(
    {"OrgnlPmtInfAndSts", "TxInfAndSts", "StsRsnInf", "Ntfctn", "Ntry", "NtryDtls", "TxDtls"}
)

_Step = tuple[str, int]  # (local name, 1-based position among same-named siblings)


class _Problem(Exception):
    """A rule broken at ``steps`` (the element path from the root)."""

    def __init__(self, message: str, steps: Sequence[_Step]) -> None:
        super().__init__(message)
        self.message = message
        self.steps = list(steps)


class _Bad(Exception):
    """A rule broken inside the element being read; ``steps`` lead from it to the culprit."""

    def __init__(self, message: str, *steps: _Step) -> None:
        super().__init__(message)
        self.message = message
        self.steps = steps


class _Found(Exception):
    def __init__(self, name: str | None, line: int) -> None:
        super().__init__(name)
        self.name = name
        self.line = line


@contextlib.contextmanager
def _opened(source: bytes | Path) -> Iterator[tuple[IO[bytes], str]]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source), "<bytes>"
        return
    path = Path(source)
    with path.open("rb") as stream:
        yield stream, str(path)


def _feed(parser: Any, stream: IO[bytes]) -> None:
    while chunk := stream.read(_CHUNK):
        parser.Parse(chunk)
    parser.Parse(b"", 1)  # isfinal (positional only, and FBT003 wants no bare True)


def _raw_local(name: str) -> str:
    return name.rpartition(":")[2]  # expat without namespace processing: "prefix:Name"


def _join(steps: Sequence[_Step], more: Sequence[_Step]) -> list[_Step]:
    """``steps`` followed by ``more``, where a step ``("..", 0)`` goes up one element."""
    joined = list(steps)
    for step in more:
        if step[0] == "..":
            joined.pop()
        else:
            joined.append(step)
    return joined


def _show(steps: Sequence[_Step]) -> str:
    return "/" + "/".join(
        f"{name}[{index}]" if index > 1 or name in _REPEATED else name for name, index in steps
    )


def _sniff(stream: IO[bytes], source: str) -> tuple[str, int, str]:
    """(message type, line and path of the message element); refuses a DOCTYPE on the way."""
    parser = expat.ParserCreate()
    root = ""

    def start(name: str, _attributes: object) -> None:
        nonlocal root
        if root:
            raise _Found(_raw_local(name), parser.CurrentLineNumber)
        root = _raw_local(name)

    def end(_name: str) -> None:  # only the root can end before a child starts
        raise _Found(None, parser.CurrentLineNumber)

    def doctype(*_args: object) -> None:
        raise MalformedFile(
            "a DOCTYPE declaration: bank files have none, and entities are refused",
            source=source,
            line=parser.CurrentLineNumber,
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype
    try:
        _feed(parser, stream)
    except _Found as found:
        if found.name is None:
            raise UnknownMessage(
                "the root element is empty: not a pain.002 or camt.054",
                source=source,
                line=found.line,
                path=_show([(root, 1)]),
            ) from None
        kind = _MESSAGES.get(found.name)
        path = _show([(root, 1), (found.name, 1)])
        if kind is None:
            raise UnknownMessage(
                f"message {found.name[:60]!r} is not a pain.002 (CstmrPmtStsRpt) or camt.054 "
                "(BkToCstmrDbtCdtNtfctn)",
                source=source,
                line=found.line,
                path=path,
            ) from None
        return kind, found.line, path
    except expat.ExpatError as exc:
        raise _broken(stream, source, exc.code, exc.lineno) from exc
    raise _broken(stream, source, None, None)  # pragma: no cover - expat reports it first


def _locate(stream: IO[bytes], target: Sequence[_Step] | None) -> tuple[int | None, list[_Step]]:
    """A second, slower pass, only for error messages: the line where the element at ``target``
    starts or (no target) where the XML breaks, with the path of the open elements there."""
    stream.seek(0)
    parser = expat.ParserCreate()
    stack: list[_Step] = []
    seen: list[dict[str, int]] = [{}]
    wanted = list(target) if target else None
    depth = len(wanted) if wanted else -1

    def start(raw: str, _attributes: object) -> None:
        name = _raw_local(raw)
        counts = seen[-1]
        index = counts[name] = counts.get(name, 0) + 1
        stack.append((name, index))
        seen.append({})
        if len(stack) == depth and stack == wanted:
            raise _Found(name, parser.CurrentLineNumber)

    def end(_raw: str) -> None:
        stack.pop()
        seen.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        _feed(parser, stream)
    except _Found as found:
        return found.line, stack
    except expat.ExpatError as exc:
        return exc.lineno, stack
    return None, stack


def _broken(stream: IO[bytes], source: str, code: int | None, line: int | None) -> MalformedFile:
    where, stack = _locate(stream, None)
    what = expat.ErrorString(code) if code is not None else "no root element"
    return MalformedFile(
        f"not well-formed XML ({what})",
        source=source,
        line=line or where,
        path=_show(stack) if stack else None,
    )


def _parse(
    source: bytes | Path, expected: str, read: Callable[[Iterator[tuple[str, Any]]], _T]
) -> _T:
    with _opened(source) as (stream, name):
        kind, line, path = _sniff(stream, name)
        if kind != expected:
            raise UnknownMessage(
                f"this is a {kind}, not a {expected}", source=name, line=line, path=path
            )
        stream.seek(0)
        try:
            # S314: the standard library's expat refuses nothing by default, but _sniff has
            # refused a DOCTYPE already, and without one there is no entity to expand.
            return read(ET.iterparse(stream, events=_EVENTS))  # noqa: S314
        except ET.ParseError as exc:
            raise _broken(stream, name, exc.code, exc.position[0]) from exc
        except _Problem as problem:
            where, _ = _locate(stream, problem.steps)
            raise MalformedFile(
                problem.message, source=name, line=where, path=_show(problem.steps)
            ) from None
        except _Bad as bad:  # pragma: no cover - the readers turn each into a _Problem
            raise MalformedFile(bad.message, source=name) from None


# -- reading values ---------------------------------------------------------------------------


class _Codes(dict[str, int | None]):
    """Qualified tag → handler code, by local name, worked out once per distinct tag."""

    def __init__(self, table: Mapping[str, int]) -> None:
        super().__init__()
        self._table = table

    def __missing__(self, tag: str) -> int | None:
        code = self[tag] = self._table.get(tag.rpartition("}")[2])
        return code


class _Names(dict[str, str]):
    """Qualified tag (``{urn:…}TxSts``) → local name (``TxSts``)."""

    def __missing__(self, tag: str) -> str:
        name = self[tag] = tag.rpartition("}")[2]
        return name


_AMOUNT: Final = re.compile(r"\s*\+?([0-9]*)(?:\.([0-9]*))?\s*")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")


def _text(element: ET.Element) -> str | None:
    text = element.text
    if text is None:
        return None
    return text.strip() or None


def _short(text: str | None) -> str:
    return repr(text if text is None or len(text) <= 40 else text[:40] + "…")


class _Amounts:
    """Reads ``<… Ccy="VND">360000</…>`` into Money, remembering the amounts already seen
    (social-assistance amounts repeat), up to a bound."""

    _KEEP: Final = 4096

    def __init__(self) -> None:
        self._seen: dict[tuple[str | None, str | None], Money | None] = {}

    def __call__(self, element: ET.Element) -> Money | None:
        """The amount; ``None`` for a currency sap_payments does not pay in. Raises _Bad."""
        key = (element.text, element.get("Ccy"))
        try:
            return self._seen[key]
        except KeyError:
            pass
        money = _money(*key)
        if len(self._seen) < self._KEEP:
            self._seen[key] = money
        return money


def _money(text: str | None, currency: str | None) -> Money | None:
    match = _AMOUNT.fullmatch(text or "")
    if match is None or not (match[1] or match[2]):
        raise _Bad(f"amount {_short(text)} is not a number")
    if currency is None:
        raise _Bad("amount without a currency (Ccy)")
    if not _CURRENCY.fullmatch(currency):
        raise _Bad(f"currency {_short(currency)} is not an ISO 4217 code")
    decimals = MINOR_UNITS.get(currency)
    if decimals is None:
        return None
    whole, fraction = match[1] or "0", (match[2] or "").rstrip("0")
    if len(whole) > 18:
        raise _Bad(f"amount {_short(text)} has more than 18 digits")
    if len(fraction) > decimals:
        raise _Bad(f"amount {_short(text)} has more decimals than {currency} has")
    return Money(int(whole) * 10**decimals + int(fraction.ljust(decimals, "0") or "0"), currency)


def _reason(element: ET.Element, names: _Names) -> str | None:
    """The code (or proprietary text) of a ``Rsn`` choice."""
    for child in element:
        if names[child.tag] in ("Cd", "Prtry"):
            return _text(child)
    return None


# -- pain.002 ---------------------------------------------------------------------------------

_GROUP, _BLOCK, _TX = 1, 2, 3
_PAIN002: Final = {"OrgnlGrpInfAndSts": _GROUP, "OrgnlPmtInfAndSts": _BLOCK, "TxInfAndSts": _TX}
_BLOCK_NAME: Final = "OrgnlPmtInfAndSts"


@attrs.frozen
class _Level:
    """A group or payment-information status: its id, status and reasons."""

    ident: str | None
    status: StatusCode | None  # None: absent, or a code outside the list
    reason: str | None
    additional: str | None


@attrs.frozen
class _Context:
    """What the group and payment-information statuses say about the transactions under them."""

    status: StatusCode | None = None  # what a transaction without a TxSts takes
    reason: str | None = None
    additional: str | None = None
    overrides: bool = False  # a rejection: it applies whatever the transaction says

    @classmethod
    def of(cls, block: _Level | None, group: _Level | None) -> _Context:
        for level in (block, group):
            if level is not None and level.status is StatusCode.RJCT:
                return cls(StatusCode.RJCT, level.reason, level.additional, overrides=True)
        for level in (block, group):
            if level is not None and level.status not in (None, StatusCode.PART):
                return cls(level.status, level.reason, level.additional)
        return cls()


class _StatusReader:
    def __init__(self) -> None:
        self.names = _Names()
        self.amounts = _Amounts()
        self.texts: dict[str, str] = {}  # one copy of each repeated reason and AddtlInf

    def read(
        self, events: Iterator[tuple[str, Any]]
    ) -> tuple[
        list[TransactionStatus],
        list[tuple[str, str | None]],
        list[tuple[str, str | None]],
        list[str],
    ]:
        names = self.names
        codes = _Codes(_PAIN002)
        root = _next(events, [])
        message = _next(events, [(names[root.tag], 1)])
        here: list[_Step] = [(names[root.tag], 1), (names[message.tag], 1)]
        group: _Level | None = None
        block: _Level | None = None
        context: _Context | None = None
        block_element: ET.Element | None = None
        parent = message
        blocks = numbered = 0
        out: list[TransactionStatus] = []
        rejected_messages: list[tuple[str, str | None]] = []
        rejected_infos: list[tuple[str, str | None]] = []
        originals: list[str] = []  # every OrgnlMsgId and OrgnlPmtInfId answered
        transaction = self.transaction
        for event, element in events:
            code = codes[element.tag]
            if code is None:
                continue
            if event == "start":
                if code == _BLOCK:
                    blocks += 1
                    numbered = 0
                    parent = block_element = element
                    block = context = None
                continue
            if code == _TX:
                numbered += 1
                if context is None:  # the block's own fields come before its transactions
                    if block_element is not None:
                        block = self.level(block_element, "PmtInfSts", "OrgnlPmtInfId", header=True)
                    context = _Context.of(block, group)
                try:
                    out.append(transaction(element, context))
                except _Bad as bad:
                    at = [(_BLOCK_NAME, blocks)] if block_element is not None else []
                    steps = [*here, *at, (names[element.tag], numbered), *bad.steps]
                    raise _Problem(bad.message, steps) from None
                try:  # _detach, inlined: once per transaction
                    parent.remove(element)
                except ValueError:
                    element.clear()
            elif code == _BLOCK:
                final = self.level(element, "PmtInfSts", "OrgnlPmtInfId")
                where = [*here, (_BLOCK_NAME, blocks)]
                if block is not None and final != block:
                    raise _Problem(
                        "payment information status after its transactions (schema order is "
                        "OrgnlPmtInfId, PmtInfSts, StsRsnInf, then TxInfAndSts)",
                        where,
                    )
                if final.ident is not None:
                    originals.append(final.ident)
                if final.status is StatusCode.RJCT:
                    if final.ident is None:
                        raise _Problem("rejected payment information without OrgnlPmtInfId", where)
                    rejected_infos.append((final.ident, final.reason))
                _detach(message, element)
                parent, block_element, block, context = message, None, None, None
            else:  # _GROUP
                where = [*here, (names[element.tag], 1)]
                if blocks or out:
                    raise _Problem(
                        "group status after payment information (OrgnlGrpInfAndSts comes first)",
                        where,
                    )
                group = self.level(element, "GrpSts", "OrgnlMsgId")
                if group.ident is not None:
                    originals.append(group.ident)
                if group.status is StatusCode.RJCT:
                    if group.ident is None:
                        raise _Problem("rejected group without OrgnlMsgId", where)
                    rejected_messages.append((group.ident, group.reason))
                _detach(message, element)
                context = None
        return out, rejected_messages, rejected_infos, originals

    def keep(self, text: str) -> str:
        """One copy of a text that repeats (reasons, the bank's words), up to a bound."""
        texts = self.texts
        return texts.setdefault(text, text) if len(texts) < 4096 else text

    def reasons(self, element: ET.Element, reason: str | None, notes: list[str]) -> str | None:
        """Fold one ``StsRsnInf`` in: the first reason code wins, every AddtlInf is kept."""
        names = self.names
        for child in element:
            name = names[child.tag]
            if name == "Rsn":
                reason = reason or _reason(child, names)
            elif name == "AddtlInf":
                note = _text(child)
                if note:
                    notes.append(note)
        return reason

    def level(
        self, element: ET.Element, status_name: str, id_name: str, *, header: bool = False
    ) -> _Level:
        """A group's or payment information's own status (``header``: only what comes before
        its first transaction, however much of the file the parser has already read)."""
        names = self.names
        ident = text = reason = None
        notes: list[str] = []
        for child in element:
            name = names[child.tag]
            if header and name == "TxInfAndSts":
                break
            if name == status_name:
                text = _text(child)
            elif name == id_name:
                ident = _text(child)
            elif name == "StsRsnInf":
                reason = self.reasons(child, reason, notes)
        return _Level(
            ident,
            _STATUS.get(text) if text else None,
            self.keep(reason) if reason else None,
            self.keep(" ".join(notes)) if notes else None,
        )

    def transaction(self, element: ET.Element, context: _Context) -> TransactionStatus:
        """One ``TxInfAndSts``, the block's and group's statuses applied. Raises _Bad.

        The hot path of the reader: plain locals, no helper calls for the usual children.
        """
        names = self.names
        key = text = reason = amount = None
        notes: list[str] | None = None
        for child in element:
            name = names[child.tag]
            if name == "OrgnlEndToEndId":
                key = child.text
                key = key.strip() if key else None
                if not key:
                    raise _Bad("empty OrgnlEndToEndId", (name, 1))
            elif name == "TxSts":
                text = child.text
            elif name == "StsRsnInf":
                if notes is None:
                    notes = []
                reason = self.reasons(child, reason, notes)
            elif name == "OrgnlTxRef":
                amount = self.amount(child)
        if key is None:
            raise _Bad("transaction status without OrgnlEndToEndId: it cannot be applied")
        status = None
        if text is not None:
            status = _STATUS.get(text) or _STATUS.get(text.strip())
            if status is None and text.strip():
                raise _Bad(f"unknown transaction status {_short(text)}", ("TxSts", 1))
        if context.overrides and status is not StatusCode.RJCT:
            status = reason = notes = None  # the rejection's reason, not the status's
        if status is None:
            if context.status is None:
                raise _Bad("no status: no TxSts, and no group or payment status that applies")
            status = context.status
        additional = self.keep(" ".join(notes)) if notes else None
        if reason:
            reason = self.keep(reason)
        elif status is context.status:  # the block's or group's reason and words, unless its own
            reason = context.reason
            additional = additional or context.additional
        return TransactionStatus(key, status, reason, additional, amount)

    def amount(self, reference: ET.Element) -> Money | None:
        """``OrgnlTxRef/Amt/InstdAmt``."""
        names = self.names
        for child in reference:
            if names[child.tag] == "Amt":
                for choice in child:
                    if names[choice.tag] == "InstdAmt":
                        try:
                            return self.amounts(choice)
                        except _Bad as bad:
                            raise _Bad(
                                bad.message, ("OrgnlTxRef", 1), ("Amt", 1), ("InstdAmt", 1)
                            ) from None
        return None


def _next(events: Iterator[tuple[str, Any]], here: list[_Step]) -> ET.Element:
    for _event, element in events:
        return element  # type: ignore[no-any-return]
    raise _Problem("the file ends early", here)  # pragma: no cover - expat reports it first


# -- camt.054 ---------------------------------------------------------------------------------

_NTFCTN, _NTRY, _NTRYDTLS, _TXDTLS = 1, 2, 3, 4
_CAMT054: Final = {"Ntfctn": _NTFCTN, "Ntry": _NTRY, "NtryDtls": _NTRYDTLS, "TxDtls": _TXDTLS}
_BOOLEAN: Final = {"true": True, "1": True, "false": False, "0": False}


@attrs.define
class _Entry:
    """The entry-level fields of a ``Ntry``."""

    debit: bool
    booked: bool
    reversal: bool
    reference: str | None
    amount: ET.Element | None


#: One TxDtls as read: EndToEndId, amount (None: a currency sap_payments does not pay in),
#: whether it names an amount at all, the return reason, the bank's reference and its words on
#: the return (``RtrInf/AddtlInf``).
_Detail = tuple[str, Money | None, bool, str | None, str | None, str | None]


class _NoticeReader:
    def __init__(self) -> None:
        self.names = _Names()
        self.amounts = _Amounts()
        self.batch_ids: list[str] = []  # NtryDtls/Btch/MsgId and PmtInfId, as read

    def read(self, events: Iterator[tuple[str, Any]]) -> list[EntryNotice]:
        names = self.names
        codes = _Codes(_CAMT054)
        root = _next(events, [])
        message = _next(events, [(names[root.tag], 1)])
        here: list[_Step] = [(names[root.tag], 1), (names[message.tag], 1)]
        notifications = entries = details = numbered = 0
        notification = message
        entry_element = holder = message
        entry: _Entry | None = None
        waiting: tuple[_Detail, list[_Step]] | None = None  # a detail that needs the entry's Amt
        out: list[EntryNotice] = []
        detail_of = self.detail
        for event, element in events:
            code = codes[element.tag]
            if code is None:
                continue
            if event == "start":
                if code == _NTRY:
                    entries += 1
                    details = 0
                    entry_element = holder = element
                    entry = waiting = None
                elif code == _NTRYDTLS:
                    details += 1
                    numbered = 0
                    holder = element
                elif code == _NTFCTN:
                    notifications += 1
                    entries = 0
                    notification = element
                continue
            if code == _TXDTLS:
                numbered += 1
                try:
                    if entry is None:
                        entry = self.entry(entry_element)
                    detail = detail_of(element, entry)
                except _Bad as bad:
                    steps = self.steps(here, notifications, entries, details, element, numbered)
                    raise _Problem(bad.message, _join(steps, bad.steps)) from None
                if waiting is not None:
                    raise _Problem(
                        "transaction details without an amount, in an entry of several",
                        waiting[1],
                    )
                if detail is not None:
                    key, amount, has_amount, returned, reference, words = detail
                    if not has_amount:
                        steps = self.steps(here, notifications, entries, details, element, numbered)
                        waiting = (detail, steps)
                    elif amount is not None:
                        out.append(
                            EntryNotice(
                                key,
                                amount,
                                entry.booked,
                                entry.debit,
                                entry.reversal,
                                returned,
                                reference,
                                words,
                            )
                        )
                try:  # _detach, inlined: once per transaction
                    holder.remove(element)
                except ValueError:
                    element.clear()
            elif code == _NTRYDTLS:
                self.batch(element)
                holder = entry_element
            elif code == _NTRY:
                if waiting is not None and entry is not None:
                    out.extend(self.settle(waiting, entry))
                _detach(notification, element)
                entry_element = holder = notification
                entry = waiting = None
            else:  # _NTFCTN
                _detach(message, element)
                notification = entry_element = holder = message
        return out

    def batch(self, details: ET.Element) -> None:
        """Note the batch references of a ``NtryDtls`` (its ``Btch``: ``MsgId``, ``PmtInfId``)."""
        names = self.names
        for child in details:
            if names[child.tag] == "Btch":
                for part in child:
                    if names[part.tag] in ("MsgId", "PmtInfId") and (text := _text(part)):
                        self.batch_ids.append(text)

    def settle(self, waiting: tuple[_Detail, list[_Step]], entry: _Entry) -> list[EntryNotice]:
        """The notice of an entry's only detail, which names no amount: the entry's ``Amt``."""
        (key, _, _, returned, reference, words), steps = waiting
        if entry.amount is None:
            raise _Problem("transaction details without an amount", steps)
        try:
            amount = self.amounts(entry.amount)
        except _Bad as bad:
            raise _Problem(bad.message, [*steps[:-2], ("Amt", 1)]) from None
        if amount is None:
            return []
        return [
            EntryNotice(
                key, amount, entry.booked, entry.debit, entry.reversal, returned, reference, words
            )
        ]

    def steps(
        self,
        here: list[_Step],
        notifications: int,
        entries: int,
        details: int,
        element: ET.Element,
        numbered: int,
    ) -> list[_Step]:
        return [
            *here,
            ("Ntfctn", notifications),
            ("Ntry", entries),
            ("NtryDtls", details),
            (self.names[element.tag], numbered),
        ]

    def entry(self, element: ET.Element) -> _Entry:
        """The entry-level fields, read when the entry's first transaction detail ends (they
        come before ``NtryDtls`` in every version). Raises _Bad relative to the detail."""
        names = self.names
        up = ("..", 0), ("..", 0)  # from the TxDtls back up to its Ntry
        side = status = reference = None
        reversal = False
        amount = None
        for child in element:
            name = names[child.tag]
            if name == "CdtDbtInd":
                side = _text(child)
                if side not in ("DBIT", "CRDT"):
                    raise _Bad(f"CdtDbtInd {_short(side)} is not DBIT or CRDT", *up, (name, 1))
            elif name == "Sts":
                status = _text(child)
                if status is None:  # camt.054.001.08: Sts/Cd (or Sts/Prtry)
                    for choice in child:
                        if names[choice.tag] in ("Cd", "Prtry"):
                            status = _text(choice)
            elif name == "RvslInd":
                text = _text(child)
                flag = _BOOLEAN.get(text or "")
                if flag is None:
                    raise _Bad(f"RvslInd {_short(text)} is not true or false", *up, (name, 1))
                reversal = flag
            elif name == "AcctSvcrRef":
                reference = _text(child)
            elif name == "Amt":
                amount = child
            elif name == "NtryDtls":
                break
        if side is None:
            raise _Bad("entry without CdtDbtInd", *up)
        if status is None:
            raise _Bad("entry without a status (Sts)", *up)
        return _Entry(side == "DBIT", status == "BOOK", reversal, reference, amount)

    def detail(self, element: ET.Element, entry: _Entry) -> _Detail | None:
        """One TxDtls; ``None`` when it has no EndToEndId (nothing to match it to). The hot
        path of the reader: plain locals, no helper calls for the usual children."""
        names = self.names
        key = reference = transaction_id = returned = None
        words: list[str] = []
        amount: Money | None = None
        has_amount = False
        details: ET.Element | None = None
        for child in element:
            name = names[child.tag]
            if name == "Refs":
                for ref in child:
                    kind = names[ref.tag]
                    if kind == "EndToEndId":
                        key = ref.text
                        key = key.strip() if key else None
                        if not key:
                            raise _Bad("empty EndToEndId", ("Refs", 1), ("EndToEndId", 1))
                    elif kind == "AcctSvcrRef":
                        reference = _text(ref)
                    elif kind == "TxId":
                        transaction_id = _text(ref)
            elif name == "Amt":
                amount, has_amount = self.amount(child, ("Amt", 1)), True
            elif name == "AmtDtls":
                details = child
            elif name == "RtrInf":
                returned = ""
                for part in child:
                    if names[part.tag] == "Rsn":
                        returned = _reason(part, names) or ""
                    elif names[part.tag] == "AddtlInf" and (said := _text(part)):
                        words.append(said)
        if key is None:
            return None
        if not has_amount and details is not None:
            found = self.detailed_amount(details)
            if found is not None:
                amount, has_amount = found[0], True
        return (
            key,
            amount,
            has_amount,
            returned,
            reference or entry.reference or transaction_id,
            " ".join(words)[:500] or None,
        )

    def amount(self, element: ET.Element, *steps: _Step) -> Money | None:
        try:
            return self.amounts(element)
        except _Bad as bad:
            raise _Bad(bad.message, *steps) from None

    def detailed_amount(self, details: ET.Element) -> tuple[Money | None] | None:
        """``AmtDtls/TxAmt/Amt``, else ``AmtDtls/InstdAmt/Amt`` (camt.054.001.02)."""
        names = self.names
        found: dict[str, ET.Element] = {}
        for child in details:
            name = names[child.tag]
            if name in ("TxAmt", "InstdAmt"):
                for part in child:
                    if names[part.tag] == "Amt":
                        found[name] = part
        for name in ("TxAmt", "InstdAmt"):
            if name in found:
                return (self.amount(found[name], ("AmtDtls", 1), (name, 1), ("Amt", 1)),)
        return None


def _detach(parent: ET.Element, element: ET.Element) -> None:
    """Drop a read element from the tree, so memory stays flat."""
    try:
        parent.remove(element)
    except ValueError:  # not a direct child (a variant nests it deeper): empty it at least
        element.clear()
