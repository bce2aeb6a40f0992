"""Reading banks' answers: pain.002 status reports and camt.054 notifications.

The fixtures in ``tests/data/iso20022`` were written for these tests from the XSDs (see each
file's comment); the real samples in ``shared/standards/iso20022/samples`` are read where present.

Run as a script, this module measures the readers' rate on generated files::

    .venv/bin/python tests/test_iso20022_reading.py 100000
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sap_payments.errors import InvalidInput
from sap_payments.iso20022 import reading
from sap_payments.iso20022.model import EntryNotice, StatusCode, TransactionStatus
from sap_payments.iso20022.reading import (
    REASONS,
    BankFileError,
    MalformedFile,
    UnknownMessage,
    message_type,
    notice_results,
    read_camt054,
    read_pain002,
    read_status_report,
    rejected_messages,
    rejected_payment_infos,
    status_results,
)
from sap_payments.money import MINOR_UNITS, Money
from sap_payments.providers import Reason, Result, ResultKind

DATA = Path(__file__).resolve().parent / "data" / "iso20022"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "standards" / "iso20022"
SAMPLES = SHARED / "samples"

PAIN_03 = DATA / "pain.002.003.03_de_variant.xml"
PAIN_10_GROUP = DATA / "pain.002.001.10_group_rjct.xml"
PAIN_10_PARTIAL = DATA / "pain.002.001.10_partial.xml"
CAMT_02 = DATA / "camt.054.001.02_amtdtls.xml"
CAMT_04 = DATA / "camt.054.001.04_prefixed.xml"
CAMT_08 = DATA / "camt.054.001.08_returns.xml"

P10 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"
TX_PATH = "/Document/CstmrPmtStsRpt/OrgnlPmtInfAndSts"


def sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"the shared ISO 20022 samples are not there ({path})")
    return path


def line_of(text: str, needle: str, start: int = 0) -> int:
    """1-based line of the first line containing ``needle`` at or after line ``start``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number >= start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def pain002(body: str, group: str = "<GrpSts>PART</GrpSts>") -> bytes:
    """A small pain.002.001.10 around ``body`` (the OrgnlPmtInfAndSts blocks)."""
    return (
        f'<Document xmlns="{P10}"><CstmrPmtStsRpt>'
        "<GrpHdr><MsgId>S1</MsgId><CreDtTm>2025-09-05T10:00:00</CreDtTm></GrpHdr>"
        "<OrgnlGrpInfAndSts><OrgnlMsgId>M1</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09"
        f"</OrgnlMsgNmId>{group}</OrgnlGrpInfAndSts>{body}</CstmrPmtStsRpt></Document>"
    ).encode()


def block(transactions: str, status: str = "PART", ident: str = "P1") -> str:
    return (
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>{ident}</OrgnlPmtInfId>"
        f"<PmtInfSts>{status}</PmtInfSts>{transactions}</OrgnlPmtInfAndSts>"
    )


def tx(key: str, status: str | None = "ACSC", amount: str = "360000", ccy: str = "VND") -> str:
    own = f"<TxSts>{status}</TxSts>" if status else ""
    return (
        f"<TxInfAndSts><OrgnlEndToEndId>{key}</OrgnlEndToEndId>{own}"
        f'<OrgnlTxRef><Amt><InstdAmt Ccy="{ccy}">{amount}</InstdAmt></Amt></OrgnlTxRef>'
        "</TxInfAndSts>"
    )


def by_key(items: Sequence[TransactionStatus]) -> dict[str, TransactionStatus]:
    return {item.end_to_end_id: item for item in items}


# -- message type -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (PAIN_03, "pain.002"),
        (PAIN_10_GROUP, "pain.002"),
        (PAIN_10_PARTIAL, "pain.002"),
        (CAMT_02, "camt.054"),
        (CAMT_04, "camt.054"),
        (CAMT_08, "camt.054"),
    ],
)
def test_message_type_from_path_and_bytes(path: Path, kind: str) -> None:
    assert message_type(path) == kind
    assert message_type(path.read_bytes()) == kind


def test_a_pain001_is_an_unknown_message_with_its_line_and_path() -> None:
    data = (
        b'<?xml version="1.0"?>\n<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09">'
        b"\n  <CstmrCdtTrfInitn><GrpHdr/></CstmrCdtTrfInitn>\n</Document>\n"
    )
    with pytest.raises(UnknownMessage) as caught:
        message_type(data)
    assert caught.value.line == 3
    assert caught.value.path == "/Document/CstmrCdtTrfInitn"
    assert "line 3" in str(caught.value)
    assert "CstmrCdtTrfInitn" in str(caught.value)
    with pytest.raises(UnknownMessage):
        read_pain002(data)


def test_the_message_element_as_root_is_an_unknown_message() -> None:
    data = f'<CstmrPmtStsRpt xmlns="{P10}"><GrpHdr/></CstmrPmtStsRpt>'.encode()
    with pytest.raises(UnknownMessage, match="GrpHdr"):
        read_pain002(data)


def test_an_empty_document_is_an_unknown_message() -> None:
    with pytest.raises(UnknownMessage, match="empty"):
        message_type(b"<Document/>")


def test_each_reader_refuses_the_other_message() -> None:
    with pytest.raises(UnknownMessage, match=r"camt\.054, not a pain\.002"):
        read_pain002(CAMT_08)
    with pytest.raises(UnknownMessage, match=r"pain\.002, not a camt\.054"):
        read_camt054(PAIN_10_PARTIAL)


# -- pain.002 ---------------------------------------------------------------------------------


def test_pain002_03_in_a_german_namespace() -> None:
    report = read_status_report(PAIN_03)
    assert [(s.end_to_end_id, s.status) for s in report.transactions] == [
        ("I2025-09-0000001", StatusCode.ACSC),
        ("I2025-09-0000002", StatusCode.ACCP),  # ACTC: technically valid, not settled
        ("I2025-09-0000003", StatusCode.ACSP),
        ("I2025-09-0000004", StatusCode.PDNG),
        ("I2025-09-0000005", StatusCode.RJCT),
        ("I2025-09-0000006", StatusCode.RJCT),
    ]
    first, *_, closed, proprietary = report.transactions
    assert first.amount == Money.vnd(540_000)  # "540000.00"
    assert report.transactions[3].amount is None  # no OrgnlTxRef
    assert closed == TransactionStatus(
        "I2025-09-0000005",
        StatusCode.RJCT,
        "AC04",
        "Konto aufgeloest Tai khoan da dong",
        Money.vnd(1_080_000),
    )
    assert (proprietary.reason, proprietary.additional) == ("DK-901", None)
    assert report.rejected_messages == report.rejected_payment_infos == ()


def test_pain002_03_results() -> None:
    results = status_results(read_pain002(PAIN_03))
    assert [r.kind for r in results] == [
        ResultKind.PAID,
        ResultKind.PENDING,
        ResultKind.PENDING,
        ResultKind.PENDING,
        ResultKind.FAILED,
        ResultKind.FAILED,
    ]
    assert results[0] == Result("I2025-09-0000001", ResultKind.PAID, amount=Money.vnd(540_000))
    assert results[4] == Result(
        "I2025-09-0000005",
        ResultKind.FAILED,
        Reason.CLOSED_ACCOUNT,
        provider_code="AC04",
        provider_message="Konto aufgeloest Tai khoan da dong",
        amount=Money.vnd(1_080_000),
    )
    assert (results[5].reason, results[5].provider_code) == (Reason.OTHER, "DK-901")


def test_pain002_10_group_rejection_without_transactions() -> None:
    assert read_pain002(PAIN_10_GROUP) == []
    assert rejected_messages(PAIN_10_GROUP) == [("SAP-2025-09-HUE-0002", "AM10")]
    assert rejected_payment_infos(PAIN_10_GROUP) == []


def test_pain002_10_payment_rejections() -> None:
    report = read_status_report(PAIN_10_PARTIAL)
    assert report.rejected_messages == ()
    assert report.rejected_payment_infos == (
        ("SAP-2025-09-HUE-0003-A", "AM04"),  # no transactions listed
        ("SAP-2025-09-HUE-0003-B", "DT01"),  # three listed
    )
    statuses = by_key(report.transactions)
    assert len(report.transactions) == 3 + 6 + 12 + 2
    words = "Requested execution date in the past"
    # no status of its own: the block's rejection and reason
    assert statuses["I2025-09-0000101"] == TransactionStatus(
        "I2025-09-0000101", StatusCode.RJCT, "DT01", words, Money.vnd(360_000)
    )
    # rejected with its own reason: that reason (and not the block's words)
    assert statuses["I2025-09-0000102"] == TransactionStatus(
        "I2025-09-0000102", StatusCode.RJCT, "AC01", None, Money.vnd(540_000)
    )
    # says ACSC, but the block is rejected: rejected
    assert statuses["I2025-09-0000103"].status is StatusCode.RJCT
    assert statuses["I2025-09-0000103"].reason == "DT01"


def test_pain002_10_every_status() -> None:
    statuses = by_key(read_pain002(PAIN_10_PARTIAL))
    assert {key: statuses[key].status for key in statuses if key[-3] == "2"} == {
        "I2025-09-0000201": StatusCode.ACSC,
        "I2025-09-0000202": StatusCode.ACSP,
        "I2025-09-0000203": StatusCode.PDNG,
        "I2025-09-0000204": StatusCode.ACCP,
        "I2025-09-0000205": StatusCode.ACWC,
        "I2025-09-0000206": StatusCode.RCVD,
    }
    # the block says ACSC and its transactions say nothing: settled
    assert statuses["I2025-09-0000401"].status is StatusCode.ACSC
    assert statuses["I2025-09-0000402"].amount == Money.vnd(1_080_000)  # "1080000.00"


def test_pain002_10_every_reason_code() -> None:
    results = {r.key: r for r in status_results(read_pain002(PAIN_10_PARTIAL))}
    expected = {
        "AC01": Reason.UNKNOWN_ACCOUNT,
        "AC04": Reason.CLOSED_ACCOUNT,
        "AC06": Reason.REFUSED,
        "AG01": Reason.REFUSED,
        "AM04": Reason.PROVIDER_ERROR,
        "AM05": Reason.DUPLICATE,
        "AM10": Reason.PROVIDER_ERROR,
        "BE01": Reason.NAME_MISMATCH,
        "MS03": Reason.OTHER,
        "NARR": Reason.OTHER,
        "MD07": Reason.PAYEE_DECEASED,
    }
    failed = {
        r.provider_code: r.reason
        for key, r in results.items()
        if key.startswith("I2025-09-00003") and key != "I2025-09-0000399"
    }
    assert failed == expected
    assert results["I2025-09-0000310"].provider_message == "Beneficiary account name differs"
    proprietary = results["I2025-09-0000399"]
    assert (proprietary.reason, proprietary.provider_code, proprietary.provider_message) == (
        Reason.OTHER,
        "VCB-E17",
        "Tai khoan bi phong toa",
    )
    assert all(r.kind is ResultKind.FAILED for k, r in results.items() if k[-3] in "13")
    assert [results[k].kind for k in ("I2025-09-0000201", "I2025-09-0000206")] == [
        ResultKind.PAID,
        ResultKind.PENDING,
    ]


def test_a_group_rejection_rejects_the_listed_transactions() -> None:
    reason = "<StsRsnInf><Rsn><Cd>FF01</Cd></Rsn><AddtlInf>bad file</AddtlInf></StsRsnInf>"
    data = pain002(
        block(tx("E1", "ACSC") + tx("E2", None) + tx("E3", "RJCT")),
        group=f"<GrpSts>RJCT</GrpSts>{reason}",
    )
    statuses = read_pain002(data)
    assert [(s.status, s.reason, s.additional) for s in statuses] == [
        (StatusCode.RJCT, "FF01", "bad file")
    ] * 3
    assert rejected_messages(data) == [("M1", "FF01")]
    assert [r.reason for r in status_results(statuses)] == [Reason.PROVIDER_ERROR] * 3


def test_statuses_outside_statuscode_read_as_their_equivalent() -> None:
    data = pain002(block(tx("E1", "ACCC") + tx("E2", "ACTC") + tx("E3", "CANC")))
    assert [s.status for s in read_pain002(data)] == [
        StatusCode.ACSC,
        StatusCode.ACCP,
        StatusCode.RJCT,
    ]


def test_a_group_status_applies_to_transactions_without_one() -> None:
    data = pain002(block(tx("E1", None), status="PART"), group="<GrpSts>ACCP</GrpSts>")
    assert [s.status for s in read_pain002(data)] == [StatusCode.ACCP]


def test_namespace_prefixes_and_other_namespaces_read_alike() -> None:
    data = (
        b'<p:Document xmlns:p="urn:example:bank:pain.002.vn.1"><p:CstmrPmtStsRpt>'
        b"<p:OrgnlGrpInfAndSts><p:OrgnlMsgId>M1</p:OrgnlMsgId><p:GrpSts>ACSC</p:GrpSts>"
        b"</p:OrgnlGrpInfAndSts><p:OrgnlPmtInfAndSts><p:OrgnlPmtInfId>P1</p:OrgnlPmtInfId>"
        b"<p:TxInfAndSts><p:OrgnlEndToEndId> E1 </p:OrgnlEndToEndId></p:TxInfAndSts>"
        b"</p:OrgnlPmtInfAndSts></p:CstmrPmtStsRpt></p:Document>"
    )
    assert read_pain002(data) == [TransactionStatus("E1", StatusCode.ACSC)]


def test_the_verification_of_payee_sample(request: pytest.FixtureRequest) -> None:
    path = sample("pain.002.001.10_hbci4java_vop-rcvc.xml")
    assert message_type(path) == "pain.002"
    # GrpSts and PmtInfSts RCVC (the payee's name matches), no transactions: nothing to apply
    report = read_status_report(path)
    assert report.transactions == ()
    assert report.original_ids == ("2025-11-02T18:33:03:0287", "2025-11-02T18:33:03:0287")
    assert rejected_messages(path) == rejected_payment_infos(path) == []


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: b"\xef\xbb\xbf" + text.encode(),
        lambda text: ('<?xml version="1.0" encoding="UTF-16"?>' + text).encode("utf-16"),
    ],
    ids=["utf-8 with BOM", "utf-16"],
)
def test_encodings(encode: Callable[[str], bytes]) -> None:
    words = "<StsRsnInf><AddtlInf>Tài khoản đã đóng</AddtlInf></StsRsnInf>"
    text = pain002(block(tx("E1", "RJCT").replace("</TxSts>", f"</TxSts>{words}"))).decode()
    (status,) = read_pain002(encode(text))
    assert status.additional == "Tài khoản đã đóng"


def test_transactions_outside_a_payment_information_take_the_group_status() -> None:
    # pain.002.001.02 listed transactions directly under the message
    data = pain002(tx("E1", None), group="<GrpSts>ACSC</GrpSts>")
    assert read_pain002(data) == [
        TransactionStatus("E1", StatusCode.ACSC, amount=Money.vnd(360_000))
    ]


def test_an_amount_in_a_currency_we_do_not_pay_in_is_left_out() -> None:
    data = pain002(block(tx("E1", "ACSC", amount="12.50", ccy="XTS")))  # ISO's test code
    assert read_pain002(data) == [TransactionStatus("E1", StatusCode.ACSC)]


@settings(max_examples=60, deadline=None)
@given(
    minor=st.integers(min_value=0, max_value=10**15),
    ccy=st.sampled_from(["VND", "USD"]),
    zeros=st.integers(min_value=0, max_value=3),
)
def test_amounts_are_read_exactly(minor: int, ccy: str, zeros: int) -> None:
    text = str(Money(minor, ccy).to_decimal()) + ("0" * zeros if ccy == "USD" else "")
    if zeros and ccy == "VND":
        text += "." + "0" * zeros
    (status,) = read_pain002(pain002(block(tx("E1", amount=text, ccy=ccy))))
    assert status.amount == Money(minor, ccy)
    assert Decimal(text) == status.amount.to_decimal()


# -- camt.054 ---------------------------------------------------------------------------------


def test_camt054_02_amounts_in_amount_details() -> None:
    notices = read_camt054(CAMT_02)
    assert notices == [
        EntryNotice("I2025-09-0000001", Money.vnd(540_000), True, True, False, None, "BIDV-B-0001"),
        EntryNotice("I2025-09-0000002", Money.vnd(360_000), True, True, False, None, "BIDV-T-0002"),
        EntryNotice(
            "I2025-09-0000005",
            Money.vnd(1_080_000),
            True,
            False,
            False,
            "AC04",
            "BIDV-R-0003",
            "Account closed",  # the return's AddtlInf: the bank's own words
        ),
        # its only detail names no amount: the entry's
        EntryNotice("I2025-09-0000003", Money.vnd(720_000), False, True),
        # someone else's credit: read, and left out of the results
        EntryNotice("NOTPROVIDED", Money.vnd(5_000_000), True, False),
    ]  # the fee (no details) and the detail without EndToEndId are not there
    assert notice_results(notices) == [
        Result(
            "I2025-09-0000001",
            ResultKind.PAID,
            provider_reference="BIDV-B-0001",
            amount=Money.vnd(540_000),
        ),
        Result(
            "I2025-09-0000002",
            ResultKind.PAID,
            provider_reference="BIDV-T-0002",
            amount=Money.vnd(360_000),
        ),
        Result(
            "I2025-09-0000005",
            ResultKind.RETURNED,
            Reason.CLOSED_ACCOUNT,
            provider_reference="BIDV-R-0003",
            provider_code="AC04",
            provider_message="Account closed",
            amount=Money.vnd(1_080_000),
        ),
        Result("I2025-09-0000003", ResultKind.PENDING, amount=Money.vnd(720_000)),
    ]


def test_camt054_04_with_a_namespace_prefix() -> None:
    # the GBP card payment on the same account is read too; the plugin keeps only its own keys
    notices = [n for n in read_camt054(CAMT_04) if n.amount.currency == "VND"]
    assert [(n.end_to_end_id, n.debit, n.return_reason, n.bank_reference) for n in notices] == [
        ("I2025-09-0000011", True, None, "VCB-0006-1"),
        ("I2025-09-0000012", False, "MD07", "VCB-0006-2"),  # the detail's own AcctSvcrRef
    ]
    returned = notice_results(notices)[1]
    assert (returned.kind, returned.reason, returned.amount) == (
        ResultKind.RETURNED,
        Reason.PAYEE_DECEASED,
        Money.vnd(360_000),
    )


def test_camt054_08_returns_and_reversals() -> None:
    notices = read_camt054(CAMT_08)
    assert len(notices) == 7
    assert notices[3] == EntryNotice(
        "I2025-09-0000022", Money.vnd(540_000), True, False, True, None, "CTG-0007-4"
    )
    assert notices[6].bank_reference == "CTG-TX-0007-7"  # no AcctSvcrRef: the TxId
    results = notice_results(notices)
    assert [(r.key, r.kind, r.reason, r.provider_code) for r in results] == [
        ("I2025-09-0000021", ResultKind.PAID, None, None),
        ("I2025-09-0000022", ResultKind.PAID, None, None),
        ("I2025-09-0000021", ResultKind.RETURNED, Reason.UNKNOWN_ACCOUNT, "AC01"),
        ("I2025-09-0000022", ResultKind.RETURNED, Reason.OTHER, None),  # a reversal
        ("I2025-09-0000023", ResultKind.PENDING, None, None),
        # I2025-09-0000024: a return not booked yet is left out
        ("I2025-09-0000025", ResultKind.PENDING, None, None),  # INFO: not booked
    ]
    assert results[2].provider_reference == "CTG-0007-3"


def test_a_return_without_a_reason_code() -> None:
    notice = EntryNotice("E1", Money.vnd(1), True, False, return_reason="")
    assert notice_results([notice]) == [
        Result("E1", ResultKind.RETURNED, Reason.OTHER, amount=Money.vnd(1))
    ]


def test_the_genkgo_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    path = sample("camt.054.001.08_genkgo_v8.xml")
    assert message_type(path) == "camt.054"
    monkeypatch.setitem(MINOR_UNITS, "CHF", 2)  # (in the table already; kept explicit)
    notices = read_camt054(path)
    assert [(n.end_to_end_id, n.amount.minor) for n in notices] == [
        ("UXC06170000006PI00001EE00001", 310),
        ("UXC06170000006PI00001EE00002", 320),
        ("UXC06170000006PI00001EE00002", 320),
    ]
    # the entry is a booked debit (its details say CRDT; the entry's indicator decides)
    assert {(n.booked, n.debit, n.reversal, n.bank_reference) for n in notices} == {
        (True, True, False, "ACSR160617103200001")
    }
    assert [r.kind for r in notice_results(notices)] == [ResultKind.PAID] * 3


def test_the_postfinance_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    path = sample("camt.054.001.08_postfinance_v2019.xml")
    monkeypatch.setitem(MINOR_UNITS, "CHF", 2)
    assert read_camt054(path) == [
        EntryNotice(
            "NOTPROVIDED", Money(52_210, "CHF"), True, False, False, None, "2000000000000000"
        )
    ]
    assert notice_results(read_camt054(path)) == []  # a credit: not ours


# -- result mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (StatusCode.ACSC, ResultKind.PAID),
        (StatusCode.ACCP, ResultKind.PENDING),
        (StatusCode.ACSP, ResultKind.PENDING),
        (StatusCode.ACWC, ResultKind.PENDING),
        (StatusCode.PDNG, ResultKind.PENDING),
        (StatusCode.RCVD, ResultKind.PENDING),
        (StatusCode.PART, ResultKind.PENDING),
        (StatusCode.RJCT, ResultKind.FAILED),
    ],
)
def test_every_status_maps_to_a_result(status: StatusCode, kind: ResultKind) -> None:
    (result,) = status_results([TransactionStatus("E1", status)])
    assert result.kind is kind
    assert result.reason is (Reason.OTHER if kind is ResultKind.FAILED else None)


def test_an_unknown_reason_code_is_other_and_kept() -> None:
    (result,) = status_results([TransactionStatus("E1", StatusCode.RJCT, "ZZ99", "words")])
    assert (result.reason, result.provider_code, result.provider_message) == (
        Reason.OTHER,
        "ZZ99",
        "words",
    )


def test_the_reason_table_in_the_docstring_is_the_mapping() -> None:
    assert reading.__doc__ is not None
    table = dict(re.findall(r"^    ([A-Z0-9]{4})  ([a-z_]+) ", reading.__doc__, re.MULTILINE))
    assert table == {code: reason.value for code, reason in REASONS.items()}


# -- malformed files --------------------------------------------------------------------------


def test_a_truncated_file() -> None:
    text = PAIN_10_PARTIAL.read_text()
    cut = text[: text.index("I2025-09-0000305")]
    with pytest.raises(MalformedFile) as caught:
        read_pain002(cut.encode())
    error = caught.value
    assert error.line == cut.count("\n") + 1
    assert error.path == f"{TX_PATH}[3]/TxInfAndSts[11]/OrgnlEndToEndId"
    assert f"line {error.line}" in str(error)
    assert error.path in str(error)
    assert isinstance(error, BankFileError)
    assert isinstance(error, InvalidInput)
    assert isinstance(error, ValueError)


def test_a_transaction_without_end_to_end_id() -> None:
    text = PAIN_10_PARTIAL.read_text()
    broken = text.replace("<OrgnlEndToEndId>I2025-09-0000203</OrgnlEndToEndId>", "")
    with pytest.raises(MalformedFile, match="without OrgnlEndToEndId") as caught:
        read_pain002(broken.encode())
    assert caught.value.path == f"{TX_PATH}[3]/TxInfAndSts[3]"
    assert caught.value.line == line_of(
        broken, "<TxInfAndSts>", line_of(broken, "HUE-0003-203") - 1
    )
    assert caught.value.source == "<bytes>"


def test_an_amount_that_is_not_a_number(tmp_path: Path) -> None:
    text = PAIN_10_PARTIAL.read_text()
    number = line_of(text, "I2025-09-0000203")
    lines = text.splitlines(keepends=True)
    at = line_of(text, "InstdAmt", number)
    lines[at - 1] = lines[at - 1].replace("720000", "72O000")
    path = tmp_path / "status.xml"
    path.write_text("".join(lines))
    with pytest.raises(MalformedFile, match="'72O000' is not a number") as caught:
        read_pain002(path)
    assert (caught.value.line, caught.value.path) == (
        at,
        f"{TX_PATH}[3]/TxInfAndSts[3]/OrgnlTxRef/Amt/InstdAmt",
    )
    assert caught.value.source == str(path)


def test_a_camt_amount_that_is_not_a_number() -> None:
    text = CAMT_08.read_text()
    start = line_of(text, "<NtryRef>2</NtryRef>")
    at = line_of(text, '<Amt Ccy="VND">540000</Amt>', start + 5)
    lines = text.splitlines(keepends=True)
    lines[at - 1] = lines[at - 1].replace("540000", "540,000")
    with pytest.raises(MalformedFile, match="is not a number") as caught:
        read_camt054("".join(lines).encode())
    assert (caught.value.line, caught.value.path) == (
        at,
        "/Document/BkToCstmrDbtCdtNtfctn/Ntfctn[1]/Ntry[2]/NtryDtls[1]/TxDtls[1]/Amt",
    )


_FIRST_AMOUNT = '<Amt Ccy="VND">360000</Amt>\n            <CdtDbtInd>'
_FIRST_DETAIL = "/Ntry[1]/NtryDtls[1]/TxDtls[1]"


@pytest.mark.parametrize(
    ("old", "new", "message", "path"),
    [
        (
            "<CdtDbtInd>DBIT</CdtDbtInd>",
            "<CdtDbtInd>DEBIT</CdtDbtInd>",
            "not DBIT or CRDT",
            "/Ntry[1]/CdtDbtInd",
        ),
        (
            "<RvslInd>true</RvslInd>",
            "<RvslInd>yes</RvslInd>",
            "not true or false",
            "/Ntry[4]/RvslInd",
        ),
        (
            "<EndToEndId>I2025-09-0000021</EndToEndId>",
            "<EndToEndId> </EndToEndId>",
            "empty EndToEndId",
            f"{_FIRST_DETAIL}/Refs/EndToEndId",
        ),
        (
            _FIRST_AMOUNT,
            _FIRST_AMOUNT.replace("VND", "vnd"),
            "not an ISO 4217 code",
            f"{_FIRST_DETAIL}/Amt",
        ),
        (
            _FIRST_AMOUNT,
            _FIRST_AMOUNT.replace("360000", "360000.5"),
            "more decimals than VND",
            f"{_FIRST_DETAIL}/Amt",
        ),
    ],
)
def test_malformed_camt054(old: str, new: str, message: str, path: str) -> None:
    text = CAMT_08.read_text()
    assert old in text
    with pytest.raises(MalformedFile, match=message) as caught:
        read_camt054(text.replace(old, new, 1).encode())
    assert caught.value.path == "/Document/BkToCstmrDbtCdtNtfctn/Ntfctn[1]" + path


def test_an_entry_without_status() -> None:
    text = CAMT_02.read_text().replace("<Sts>BOOK</Sts>", "", 1)
    with pytest.raises(MalformedFile, match="without a status") as caught:
        read_camt054(text.encode())
    assert caught.value.path == "/Document/BkToCstmrDbtCdtNtfctn/Ntfctn[1]/Ntry[1]"
    assert caught.value.line == line_of(text, "<Ntry>")


def test_a_detail_without_amount_in_an_entry_of_several() -> None:
    text = CAMT_02.read_text()
    first = text.index("<AmtDtls>")
    broken = text[:first] + text[text.index("</AmtDtls>", first) + len("</AmtDtls>") :]
    with pytest.raises(MalformedFile, match="without an amount, in an entry of several") as caught:
        read_camt054(broken.encode())
    assert caught.value.path.endswith("/Ntry[1]/NtryDtls[1]/TxDtls[1]")


@pytest.mark.parametrize(
    ("transaction", "message"),
    [
        (tx("E1", "XXXX"), "unknown transaction status 'XXXX'"),
        (tx("E1", None), "no status"),
        (tx("E1", amount="-5"), "not a number"),
        (tx("E1", amount=""), "not a number"),
        (tx("E1", amount="1" * 19), "more than 18 digits"),
        (tx("E1", amount="1e5"), "not a number"),
        (tx("E1", amount="١٢"), "not a number"),  # Arabic-Indic digits: int() would take them
        ("<TxInfAndSts><OrgnlEndToEndId/><TxSts>ACSC</TxSts></TxInfAndSts>", "empty"),
        (
            "<TxInfAndSts><OrgnlEndToEndId>E1</OrgnlEndToEndId><OrgnlTxRef><Amt><InstdAmt>"
            "5</InstdAmt></Amt></OrgnlTxRef></TxInfAndSts>",
            "without a currency",
        ),
    ],
)
def test_malformed_pain002(transaction: str, message: str) -> None:
    with pytest.raises(MalformedFile, match=message) as caught:
        read_pain002(pain002(block(transaction)))
    assert caught.value.path is not None
    assert caught.value.path.startswith(f"{TX_PATH}[1]/TxInfAndSts[1]")
    assert caught.value.line == 1


def test_statuses_out_of_schema_order() -> None:
    late_group = pain002("").replace(
        b"<OrgnlGrpInfAndSts>", block(tx("E1")).encode() + b"<OrgnlGrpInfAndSts>"
    )
    with pytest.raises(MalformedFile, match="group status after payment information"):
        read_pain002(late_group)
    late_status = pain002(
        "<OrgnlPmtInfAndSts><OrgnlPmtInfId>P1</OrgnlPmtInfId>"
        f"{tx('E1')}<PmtInfSts>RJCT</PmtInfSts></OrgnlPmtInfAndSts>"
    )
    with pytest.raises(MalformedFile, match="after its transactions"):
        read_pain002(late_status)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"%PDF-1.7\n",
        b"<Document><CstmrPmtStsRpt>",
        b"<Document><CstmrPmtStsRpt></b></Document>",
    ],
)
def test_not_xml(data: bytes) -> None:
    with pytest.raises(MalformedFile, match="not well-formed XML") as caught:
        read_pain002(data)
    assert caught.value.line == 1


def test_a_doctype_is_refused() -> None:
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n' + pain002(block(tx("&b;")))
    )
    with pytest.raises(MalformedFile, match="DOCTYPE") as caught:
        read_pain002(data)
    assert caught.value.line == 2


def test_nothing_is_returned_from_a_file_broken_at_its_end() -> None:
    good = "".join(tx(f"E{n}") for n in range(500))
    with pytest.raises(MalformedFile) as caught:
        read_pain002(pain002(block(good + tx("E500", "NOPE"))))
    assert caught.value.path == f"{TX_PATH}[1]/TxInfAndSts[501]/TxSts"


def test_errors_on_a_later_line_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "large.xml"
    write_pain002(path, 5_000)
    text = path.read_text()
    at = line_of(text, "I2025-09-000004321")
    path.write_text(
        text.replace(
            "I2025-09-000004321</OrgnlEndToEndId><TxSts>ACSC",
            "I2025-09-000004321</OrgnlEndToEndId><TxSts>OOPS",
        )
    )
    with pytest.raises(MalformedFile) as caught:
        read_pain002(path)
    assert (caught.value.line, caught.value.path) == (at, f"{TX_PATH}[1]/TxInfAndSts[4322]/TxSts")


# -- schema validity of the fixtures and generated files ----------------------------------------


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("pain.002.001.10_group_rjct.xml", "pain.002.001.10.xsd"),
        ("pain.002.001.10_partial.xml", "pain.002.001.10.xsd"),
        ("camt.054.001.02_amtdtls.xml", "camt.054.001.02.xsd"),
        ("camt.054.001.04_prefixed.xml", "camt.054.001.04.xsd"),
        ("camt.054.001.08_returns.xml", "camt.054.001.08.xsd"),
        ("generated pain.002", "pain.002.001.10.xsd"),
        ("generated camt.054", "camt.054.001.08.xsd"),
        ("generated camt.054 batch", "camt.054.001.08.xsd"),
    ],
)
def test_fixtures_are_valid(name: str, schema: str, tmp_path: Path) -> None:
    etree = pytest.importorskip("lxml.etree")
    xsd = SHARED / schema
    if not xsd.exists():
        pytest.skip(f"the shared XSD is not there ({xsd})")
    if name.startswith("generated"):
        path = tmp_path / "generated.xml"
        if "pain" in name:
            write_pain002(path, 120)
        else:
            write_camt054(path, 450, per_entry=100 if "batch" in name else 1)
    else:
        path = DATA / name
    validator = etree.XMLSchema(etree.parse(str(xsd)))
    document = etree.parse(str(path))
    assert validator.validate(document), validator.error_log


# -- large files ------------------------------------------------------------------------------

AMOUNTS = (360_000, 540_000, 720_000, 900_000, 1_080_000, 1_440_000)
_CHUNK = 2_000


def write_pain002(path: Path, count: int) -> None:
    """A pain.002.001.10 answering one payment information of ``count`` transactions, one in
    fifty rejected (AC04), the rest settled; one transaction a line."""
    with path.open("w", encoding="utf-8") as out:
        out.write(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{P10}">\n<CstmrPmtStsRpt>'
            "<GrpHdr><MsgId>STS-GENERATED</MsgId><CreDtTm>2025-09-05T10:00:00+07:00</CreDtTm>"
            "</GrpHdr>\n<OrgnlGrpInfAndSts><OrgnlMsgId>SAP-2025-09-GEN</OrgnlMsgId>"
            "<OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId><GrpSts>PART</GrpSts>"
            "</OrgnlGrpInfAndSts>\n<OrgnlPmtInfAndSts><OrgnlPmtInfId>SAP-2025-09-GEN"
            "</OrgnlPmtInfId><PmtInfSts>PART</PmtInfSts>\n"
        )
        for start in range(0, count, _CHUNK):
            lines = []
            for n in range(start, min(count, start + _CHUNK)):
                rejected = n % 50 == 49
                reason = (
                    "<StsRsnInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>Tai khoan da dong</AddtlInf>"
                    "</StsRsnInf>"
                    if rejected
                    else ""
                )
                lines.append(
                    f"<TxInfAndSts><OrgnlEndToEndId>I2025-09-{n:09d}</OrgnlEndToEndId>"
                    f"<TxSts>{'RJCT' if rejected else 'ACSC'}</TxSts>{reason}<OrgnlTxRef><Amt>"
                    f'<InstdAmt Ccy="VND">{AMOUNTS[n % 6]}</InstdAmt></Amt></OrgnlTxRef>'
                    "</TxInfAndSts>\n"
                )
            out.write("".join(lines))
        out.write("</OrgnlPmtInfAndSts>\n</CstmrPmtStsRpt>\n</Document>\n")


def write_camt054(path: Path, count: int, per_entry: int = 1) -> None:
    """A camt.054.001.08 booking ``count`` payments, ``per_entry`` to an entry (1: one entry a
    payment, as the bank simulator writes; more: batch bookings), one in two hundred returned."""
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:20022:'
            'tech:xsd:camt.054.001.08">\n<BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>NTF-GENERATED'
            "</MsgId><CreDtTm>2025-09-05T18:00:00+07:00</CreDtTm></GrpHdr>\n<Ntfctn><Id>NTF-1"
            "</Id><Acct><Id><Othr><Id>1234567890</Id></Othr></Id></Acct>\n"
        )
        head = "<CdtDbtInd>{0}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2025-09-05</Dt>"
        for start in range(0, count, per_entry):
            numbers = range(start, min(count, start + per_entry))
            total = sum(AMOUNTS[n % 6] for n in numbers)
            lines = [
                f'<Ntry><Amt Ccy="VND">{total}</Amt>{head.format("DBIT")}</BookgDt>'
                f"<AcctSvcrRef>BK{start:09d}</AcctSvcrRef><BkTxCd/><NtryDtls>\n"
            ]
            lines.extend(
                f"<TxDtls><Refs><EndToEndId>I2025-09-{n:09d}</EndToEndId></Refs>"
                f'<Amt Ccy="VND">{AMOUNTS[n % 6]}</Amt><CdtDbtInd>DBIT</CdtDbtInd></TxDtls>\n'
                for n in numbers
            )
            lines.append("</NtryDtls></Ntry>\n")
            lines.extend(
                f'<Ntry><Amt Ccy="VND">{AMOUNTS[n % 6]}</Amt>{head.format("CRDT")}</BookgDt>'
                f"<BkTxCd/><NtryDtls><TxDtls><Refs><EndToEndId>I2025-09-{n:09d}</EndToEndId>"
                f'</Refs><Amt Ccy="VND">{AMOUNTS[n % 6]}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
                "<RtrInf><Rsn><Cd>AC04</Cd></Rsn></RtrInf></TxDtls></NtryDtls></Ntry>\n"
                for n in numbers
                if n % 200 == 199
            )
            out.write("".join(lines))
        out.write("</Ntfctn>\n</BkToCstmrDbtCdtNtfctn>\n</Document>\n")


def test_generated_files_read_back(tmp_path: Path) -> None:
    write_pain002(tmp_path / "status.xml", 1_000)
    statuses = read_pain002(tmp_path / "status.xml")
    assert len(statuses) == 1_000
    assert sum(s.status is StatusCode.RJCT for s in statuses) == 20
    assert statuses[-1] == TransactionStatus(
        "I2025-09-000000999", StatusCode.RJCT, "AC04", "Tai khoan da dong", Money.vnd(900_000)
    )
    for per_entry in (1, 300):
        write_camt054(tmp_path / "notices.xml", 1_000, per_entry)
        results = notice_results(read_camt054(tmp_path / "notices.xml"))
        assert len(results) == 1_005
        assert sum(r.kind is ResultKind.RETURNED for r in results) == 5
        assert Money.total(
            [r.amount for r in results if r.kind is ResultKind.PAID and r.amount], "VND"
        ) == Money.vnd(sum(AMOUNTS[n % 6] for n in range(1_000)))


_PROBE = """
import sys, tracemalloc
from pathlib import Path
from sap_payments.iso20022.reading import read_camt054, read_pain002

read = read_pain002 if sys.argv[1] == "pain.002" else read_camt054
tracemalloc.start()
result = read(Path(sys.argv[2]))
kept, peak = tracemalloc.get_traced_memory()
print(len(result), peak - kept, kept)
"""


def transient_memory(kind: str, path: Path) -> tuple[int, int, int]:
    """(transactions read, bytes at the peak beyond what the result keeps, bytes it keeps), read
    in a fresh interpreter under tracemalloc."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, kind, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    count, transient, kept = map(int, done.stdout.split())
    return count, transient, kept


LAYOUTS: list[tuple[str, Callable[[Path, int], None]]] = [
    ("pain.002", write_pain002),
    ("camt.054", lambda path, count: write_camt054(path, count, per_entry=1)),
    ("camt.054", lambda path, count: write_camt054(path, count, per_entry=50_000)),
]
LAYOUT_IDS = ["pain.002", "camt.054 entry per payment", "camt.054 batches"]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "write"), LAYOUTS, ids=LAYOUT_IDS)
def test_memory_stays_flat_on_large_files(
    kind: str, write: Callable[[Path, int], None], tmp_path: Path
) -> None:
    """200,000 transactions: beyond the results, the peak holds well under a MiB — no tree of
    the document (hundreds of MiB), not even an emptied element per transaction (16 MiB)."""
    path = tmp_path / "large.xml"
    write(path, 200_000)
    count, transient, kept = transient_memory(kind, path)
    assert count >= 200_000
    assert transient < 2**20, (transient, kept, path.stat().st_size)


@pytest.mark.parametrize(("kind", "write"), LAYOUTS, ids=LAYOUT_IDS)
def test_memory_stays_flat(kind: str, write: Callable[[Path, int], None], tmp_path: Path) -> None:
    """The default run's version of the test above, on 20,000 transactions: what a tree of
    emptied elements would hold (1.6 MiB) is already over the bound."""
    path = tmp_path / "mid.xml"
    write(path, 20_000)
    count, transient, kept = transient_memory(kind, path)
    assert count >= 20_000
    assert transient < 2**20, (transient, kept, path.stat().st_size)


# -- rate -------------------------------------------------------------------------------------


def measure(count: int) -> None:
    """Print the readers' rate on generated files of ``count`` transactions."""
    with tempfile.TemporaryDirectory() as directory:
        cases: list[tuple[str, Callable[[Path], Sequence[object]], Callable[..., list[Result]]]]
        cases = [
            ("pain.002.001.10", read_pain002, status_results),
            ("camt.054.001.08, an entry a payment", read_camt054, notice_results),
            ("camt.054.001.08, batches of 1,000", read_camt054, notice_results),
        ]
        for number, (name, read, results) in enumerate(cases):
            path = Path(directory) / f"{number}.xml"
            if number == 0:
                write_pain002(path, count)
            else:
                write_camt054(path, count, per_entry=1 if number == 1 else 1_000)
            best = best_results = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                items = read(path)
                middle = time.perf_counter()
                results(items)
                ended = time.perf_counter()
                best = min(best, middle - started)
                best_results = min(best_results, ended - middle)
            size = path.stat().st_size / 2**20
            print(
                f"{name:38} {len(items):>8,} in {best:6.3f} s = {len(items) / best:>9,.0f}/s read"
                f"  ({size:5.1f} MiB, {size / best:5.1f} MiB/s); results {best_results:.3f} s"
            )


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
