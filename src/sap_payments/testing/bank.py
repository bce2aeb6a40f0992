"""A bank simulator for the ``iso20022-bank`` plugin: it reads the pain.001 files the plugin
writes into its outbox and answers, as a bank would, with a pain.002.001.10 status report and a
camt.054.001.08 debit notification per file, written into an inbox directory — so a whole cycle
runs through the real file formats. Deterministic from a seed; files valid against the XSDs.

    simulator = BankSimulator(outbox, inbox, seed=7, reject_per_mille=20, return_per_mille=5)
    written = simulator.process()      # answers every pain.001 not answered yet
    ledger.import_report(path, provider="vietinbank") for path in written
    later = simulator.return_payments([instruction_id], "AC04")   # money back, weeks later

Rejections and returns carry the bank's words beside the code (``AddtlInf``), as real banks'
files do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from xml.sax.saxutils import escape

import attrs

from sap_payments._files import write_atomically

__all__ = ["BankSimulator", "Transfer"]

_REJECT_REASONS: Final = ("AC04", "AC01", "BE01")  # closed account, wrong number, name mismatch
_RETURN_REASONS: Final = ("AC04",)
#: The bank's own words beside each code (StsRsnInf/AddtlInf, RtrInf/AddtlInf).
_WORDS: Final = {
    "AC01": "Incorrect account number",
    "AC04": "Account closed",
    "BE01": "Name does not match the account",
    "FF01": "File rejected: invalid format",
}


@attrs.frozen
class Transfer:
    """One transaction as the bank read it from a pain.001."""

    end_to_end_id: str
    amount: int
    currency: str


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def read_pain001(path: Path) -> tuple[str, str, str, list[Transfer]]:
    """(MsgId, PmtInfId, debtor account, transfers) of a pain.001 (any version, any namespace)."""
    message_id = payment_info = debtor = ""
    transfers: list[Transfer] = []
    end_to_end = ""
    in_debtor_account = False
    # S314: it reads the files this library itself wrote into the outbox
    for event, element in ET.iterparse(path, events=("start", "end")):  # noqa: S314
        name = _local(element.tag)
        if event == "start":
            if name == "DbtrAcct":
                in_debtor_account = True
            continue
        if name == "MsgId" and not message_id:
            message_id = (element.text or "").strip()
        elif name == "PmtInfId":
            payment_info = (element.text or "").strip()
        elif name == "Id" and in_debtor_account and not debtor:
            debtor = (element.text or "").strip()
        elif name == "DbtrAcct":
            in_debtor_account = False
        elif name == "EndToEndId":
            end_to_end = (element.text or "").strip()
        elif name == "InstdAmt":
            transfers.append(
                Transfer(
                    end_to_end, int((element.text or "0").split(".")[0]), element.get("Ccy", "")
                )
            )
            element.clear()
    return message_id, payment_info, debtor, transfers


class BankSimulator:
    """Answers pain.001 files with pain.002 and camt.054 files, deterministically."""

    def __init__(
        self,
        outbox: Path,
        inbox: Path,
        *,
        seed: int = 0,
        reject_per_mille: int = 20,
        return_per_mille: int = 5,
        reject_file_per_mille: int = 0,
        clock: dt.datetime | None = None,
    ) -> None:
        self.outbox = Path(outbox)
        self.inbox = Path(inbox)
        self.seed = seed
        self.reject_per_mille = reject_per_mille
        self.return_per_mille = return_per_mille
        self.reject_file_per_mille = reject_file_per_mille
        self.clock = clock or dt.datetime(2021, 9, 6, 9, 0, tzinfo=dt.UTC)

    def _draw(self, subject: str, what: str) -> int:
        digest = hashlib.sha256(f"{self.seed}:{subject}:{what}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % 1000

    def process(self) -> list[Path]:
        """Answer every pain.001 in the outbox not answered yet; the files written, in order."""
        written: list[Path] = []
        self.inbox.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.outbox.glob("pain.001.*.xml")):
            status = self.inbox / f"pain.002-{path.stem}.xml"
            if status.exists():
                continue
            message_id, payment_info, debtor, transfers = read_pain001(path)
            rejected_file = self._draw(message_id, "file") < self.reject_file_per_mille
            outcomes = {
                t.end_to_end_id: (
                    _REJECT_REASONS[self._draw(t.end_to_end_id, "why") % len(_REJECT_REASONS)]
                    if rejected_file
                    or self._draw(t.end_to_end_id, "reject") < self.reject_per_mille
                    else None
                )
                for t in transfers
            }
            write_atomically(
                status, self._pain002(message_id, payment_info, transfers, outcomes, rejected_file)
            )
            written.append(status)
            if not rejected_file:
                notice = self.inbox / f"camt.054-{path.stem}.xml"
                write_atomically(notice, self._camt054(message_id, debtor, transfers, outcomes))
                written.append(notice)
        return written

    def _stamp(self) -> str:
        return self.clock.isoformat(timespec="seconds")

    def _pain002(
        self,
        message_id: str,
        payment_info: str,
        transfers: Sequence[Transfer],
        outcomes: dict[str, str | None],
        rejected_file: bool,
    ) -> bytes:
        rejected = sum(1 for why in outcomes.values() if why)
        group = "RJCT" if rejected_file else ("PART" if rejected else "ACCP")
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">'
            "<CstmrPmtStsRpt>"
            f"<GrpHdr><MsgId>STS-{escape(message_id[:31])}</MsgId>"
            f"<CreDtTm>{self._stamp()}</CreDtTm></GrpHdr>"
            f"<OrgnlGrpInfAndSts><OrgnlMsgId>{escape(message_id)}</OrgnlMsgId>"
            "<OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>"
            f"<OrgnlNbOfTxs>{len(transfers)}</OrgnlNbOfTxs><GrpSts>{group}</GrpSts>"
        ]
        if rejected_file:
            parts.append(
                f"<StsRsnInf><Rsn><Cd>FF01</Cd></Rsn><AddtlInf>{_WORDS['FF01']}</AddtlInf>"
                "</StsRsnInf>"
            )
        parts.append("</OrgnlGrpInfAndSts>")
        if not rejected_file:
            parts.append(
                f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>{escape(payment_info)}</OrgnlPmtInfId>"
            )
            for transfer in transfers:
                why = outcomes[transfer.end_to_end_id]
                parts.append(
                    f"<TxInfAndSts><OrgnlEndToEndId>{escape(transfer.end_to_end_id)}"
                    f"</OrgnlEndToEndId><TxSts>{'RJCT' if why else 'ACSC'}</TxSts>"
                )
                if why:
                    parts.append(
                        f"<StsRsnInf><Rsn><Cd>{why}</Cd></Rsn><AddtlInf>{_WORDS[why]}</AddtlInf>"
                        "</StsRsnInf>"
                    )
                parts.append(
                    f'<OrgnlTxRef><Amt><InstdAmt Ccy="{transfer.currency}">{transfer.amount}'
                    "</InstdAmt></Amt></OrgnlTxRef></TxInfAndSts>"
                )
            parts.append("</OrgnlPmtInfAndSts>")
        parts.append("</CstmrPmtStsRpt></Document>\n")
        return "".join(parts).encode()

    def _camt054(
        self,
        message_id: str,
        debtor: str,
        transfers: Sequence[Transfer],
        outcomes: dict[str, str | None],
    ) -> bytes:
        booked = dt.date(self.clock.year, self.clock.month, self.clock.day).isoformat()
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">'
            "<BkToCstmrDbtCdtNtfctn>"
            f"<GrpHdr><MsgId>NTF-{escape(message_id[:31])}</MsgId>"
            f"<CreDtTm>{self._stamp()}</CreDtTm></GrpHdr>"
            f"<Ntfctn><Id>NTF-{escape(message_id[:31])}</Id><CreDtTm>{self._stamp()}</CreDtTm>"
            f"<Acct><Id><Othr><Id>{escape(debtor)}</Id></Othr></Id></Acct>"
        ]
        # The batch is booked as one debit, with a detail per payment (batch booking, as banks
        # book a bulk payment file); each return is an entry of its own.
        paid = [t for t in transfers if not outcomes[t.end_to_end_id]]
        if paid:
            currency = paid[0].currency
            parts.append(
                f'<Ntry><Amt Ccy="{currency}">{sum(t.amount for t in paid)}</Amt>'
                "<CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
                f"<BookgDt><Dt>{booked}</Dt></BookgDt>"
                f"<AcctSvcrRef>BK-{escape(message_id[-20:])}</AcctSvcrRef><BkTxCd/><NtryDtls>"
                f"<Btch><MsgId>{escape(message_id)}</MsgId><NbOfTxs>{len(paid)}</NbOfTxs></Btch>"
            )
            for number, transfer in enumerate(paid, start=1):
                parts.append(
                    f"<TxDtls><Refs><AcctSvcrRef>BK{number:07d}</AcctSvcrRef>"
                    f"<EndToEndId>{escape(transfer.end_to_end_id)}</EndToEndId></Refs>"
                    f'<Amt Ccy="{transfer.currency}">{transfer.amount}</Amt>'
                    "<CdtDbtInd>DBIT</CdtDbtInd></TxDtls>"
                )
            parts.append("</NtryDtls></Ntry>")
        parts.extend(
            self._return_entry(transfer, _RETURN_REASONS[0], booked)
            for transfer in paid
            if self._draw(transfer.end_to_end_id, "return") < self.return_per_mille
        )
        parts.append("</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>\n")
        return "".join(parts).encode()

    @staticmethod
    def _return_entry(transfer: Transfer, why: str, booked: str) -> str:
        """A booked credit bringing ``transfer`` back, with its return reason and words."""
        key = escape(transfer.end_to_end_id)
        money = f'Ccy="{transfer.currency}">{transfer.amount}'
        words = f"<AddtlInf>{escape(_WORDS[why])}</AddtlInf>" if why in _WORDS else ""
        return (
            f"<Ntry><Amt {money}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><Dt>{booked}</Dt></BookgDt><BkTxCd/>"
            f"<NtryDtls><TxDtls><Refs><EndToEndId>{key}</EndToEndId></Refs>"
            f"<Amt {money}</Amt><CdtDbtInd>CRDT</CdtDbtInd>"
            f"<RtrInf><Rsn><Cd>{escape(why)}</Cd></Rsn>{words}</RtrInf></TxDtls></NtryDtls></Ntry>"
        )

    def return_payments(self, end_to_end_ids: Sequence[str], reason: str = "AC04") -> Path:
        """A camt.054.001.08 in the inbox bringing back the payments ``end_to_end_ids`` (read
        from the outbox's pain.001 files), each a booked credit with return reason ``reason``
        — a bank returning money weeks after it paid, e.g. for a closed account (AC04).

        Raises:
            KeyError: an id that no pain.001 in the outbox carries.
        """
        sent: dict[str, tuple[str, str, Transfer]] = {}
        for path in sorted(self.outbox.glob("pain.001.*.xml")):
            message_id, _payment_info, debtor, transfers = read_pain001(path)
            for transfer in transfers:
                sent[transfer.end_to_end_id] = (message_id, debtor, transfer)
        chosen = [sent[key] for key in end_to_end_ids]
        booked = dt.date(self.clock.year, self.clock.month, self.clock.day).isoformat()
        name = hashlib.sha256("\n".join([reason, *end_to_end_ids]).encode()).hexdigest()[:16]
        debtor = chosen[0][1] if chosen else ""
        data = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">'
            "<BkToCstmrDbtCdtNtfctn>"
            f"<GrpHdr><MsgId>RTN-{name}</MsgId><CreDtTm>{self._stamp()}</CreDtTm></GrpHdr>"
            f"<Ntfctn><Id>RTN-{name}</Id><CreDtTm>{self._stamp()}</CreDtTm>"
            f"<Acct><Id><Othr><Id>{escape(debtor)}</Id></Othr></Id></Acct>"
            + "".join(self._return_entry(transfer, reason, booked) for _, _, transfer in chosen)
            + "</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>\n"
        ).encode()
        self.inbox.mkdir(parents=True, exist_ok=True)
        path = self.inbox / f"camt.054-returns-{name}.xml"
        write_atomically(path, data)
        return path
