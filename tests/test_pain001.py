"""pain.001 files out: valid against the official XSDs, right counts and sums, the same bytes
every time, Latin names on request, names cut without splitting a letter, nothing personal beyond
name and account, and a typed error naming the transfer and field for every bad input."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from sap_payments.errors import InvalidInput
from sap_payments.iso20022.latin import fit, to_latin
from sap_payments.iso20022.model import BankProfile, CreditTransfer, DebtorAccount, TransferBatch
from sap_payments.iso20022.pain001 import (
    PAIN001_VERSIONS,
    InvalidBatch,
    UnknownBank,
    validate_pain001,
    write_pain001,
)
from sap_payments.money import Money

SHARED = Path(__file__).parents[1].parent / "shared"
SCHEMAS = SHARED / "standards" / "iso20022"
XS = "{http://www.w3.org/2001/XMLSchema}"
HANOI = dt.timezone(dt.timedelta(hours=7))
LONG_NAME = "Tôn Nữ Thị " + "Hoàng Phương Ngọc Diễm " * 10  # 241 characters


@pytest.fixture(scope="module")
def schema_dir() -> Path:
    if not all((SCHEMAS / f"pain.001.001.{v}.xsd").is_file() for v in PAIN001_VERSIONS):
        pytest.skip(f"the official pain.001 XSDs are not there ({SCHEMAS})")
    return SCHEMAS


def ns(version: str) -> str:
    return f"urn:iso:std:iso:20022:tech:xsd:pain.001.001.{version}"


def transfer(**changes: Any) -> CreditTransfer:
    base = CreditTransfer(
        end_to_end_id="BTXH-2024-07-000001",
        amount=Money.vnd(360_000),
        creditor_name="Nguyễn Văn An",
        account="1012345678",
        bank_bin="970415",
        remittance="Trợ cấp xã hội hằng tháng - tháng 07/2024",
    )
    return attrs.evolve(base, **changes)


def batch(*transfers: CreditTransfer, **changes: Any) -> TransferBatch:
    base = TransferBatch(
        message_id="BTXH-2024-07-VTB-001",
        created_at=dt.datetime(2024, 7, 5, 8, 30, 15, 123456, tzinfo=HANOI),
        execution_date=dt.date(2024, 7, 10),
        debtor=DebtorAccount("Sở LĐ-TB&XH tỉnh Thừa Thiên Huế", "3761102009003", "970415"),
        transfers=transfers or SAMPLE,
    )
    return attrs.evolve(base, **changes)


SAMPLE = (
    # VietinBank (SWIFT known), diacritics, đ/Đ
    transfer(end_to_end_id="BTXH-2024-07-000001", creditor_name="Nguyễn Thị Hồng Đào"),
    # COOPBANK (no SWIFT code), characters XML must escape
    transfer(
        end_to_end_id="BTXH-2024-07-000002",
        amount=Money.vnd(540_000),
        creditor_name="Trần Văn Bình <ủy quyền> & con",
        account="0123456",
        bank_bin="970446",
    ),
    # a name over the schema's 140 characters, Vietcombank
    transfer(
        end_to_end_id="BTXH-2024-07-000003",
        amount=Money.vnd(1_080_000),
        creditor_name=LONG_NAME,
        account="0071000123456",
        bank_bin="970436",
    ),
    # decomposed (NFD) name, letters in the account, the social policy bank (no SWIFT code)
    transfer(
        end_to_end_id="BTXH-2024-07-000004",
        amount=Money.vnd(270_000),
        creditor_name=unicodedata.normalize("NFD", "Lê Văn Tám"),
        account="VBSP00123456789",
        bank_bin="999888",
    ),
    # a 19-digit account and a 35-character EndToEndId
    transfer(
        end_to_end_id="E" * 35,
        amount=Money.vnd(1),
        creditor_name="Đặng Quốc Đạt",
        account="1" * 19,
        bank_bin="970418",
    ),
)


def parse(data: bytes) -> Any:
    return etree.fromstring(data)


def texts(root: Any, path: str, version: str) -> list[str]:
    return [el.text for el in root.iterfind(path, {"p": ns(version)})]


def name_limit(version: str) -> int:
    """maxLength of the type of ``Nm`` in the party type that ``Cdtr`` has, read from the XSD."""
    schema = etree.parse(str(SCHEMAS / f"pain.001.001.{version}.xsd"))

    def complex_type(name: str) -> Any:
        return schema.find(f"{XS}complexType[@name='{name}']")

    def element_type(type_: Any, element: str) -> str:
        return str(type_.find(f".//{XS}element[@name='{element}']").get("type"))

    document = complex_type("Document")
    initiation = complex_type(element_type(document, "CstmrCdtTrfInitn"))
    payment = complex_type(element_type(initiation, "PmtInf"))
    transaction = complex_type(element_type(payment, "CdtTrfTxInf"))
    party = complex_type(element_type(transaction, "Cdtr"))
    text_type = element_type(party, "Nm")
    simple = schema.find(f"{XS}simpleType[@name='{text_type}']")
    return int(simple.find(f".//{XS}maxLength").get("value"))


# -- validity ----------------------------------------------------------------------------------
@pytest.mark.parametrize("latin", [False, True])
@pytest.mark.parametrize("version", PAIN001_VERSIONS)
def test_every_version_validates_against_its_xsd(
    schema_dir: Path, version: str, latin: bool
) -> None:
    data = write_pain001(batch(), BankProfile(latin_names=latin, version=version))
    validate_pain001(data, version, schema_dir)
    schema = etree.XMLSchema(etree.parse(str(schema_dir / f"pain.001.001.{version}.xsd")))
    schema.assertValid(parse(data))  # and lxml directly, without the helper


def test_default_is_version_09_with_the_default_namespace() -> None:
    data = write_pain001(batch())
    assert data.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"><CstmrCdtTrfInitn>'
    )
    assert parse(data).tag == f"{{{ns('09')}}}Document"
    assert write_pain001(batch(), BankProfile(version="03")).count(ns("03").encode()) == 1


def test_the_helper_reports_a_schema_error(schema_dir: Path) -> None:
    data = write_pain001(batch())
    broken = data.replace(b"<NbOfTxs>5</NbOfTxs>", b"<NbOfTxs>five</NbOfTxs>", 1)
    with pytest.raises(ValueError, match="NbOfTxs"):
        validate_pain001(broken, "09", schema_dir)
    with pytest.raises(ValueError, match="well-formed"):
        validate_pain001(data[:-20], "09", schema_dir)
    with pytest.raises(ValueError, match="version"):
        validate_pain001(data, "02", schema_dir)
    with pytest.raises(ValueError, match=r"pain\.001\.001\.03"):  # a .09 file is not a .03 file
        validate_pain001(data, "03", schema_dir)


def test_layout_is_compact_after_the_declaration() -> None:
    data = write_pain001(batch())
    declaration, body = data.split(b"\n", 1)
    assert declaration == b'<?xml version="1.0" encoding="UTF-8"?>'
    assert body.endswith(b"</Document>\n")
    assert b"\n" not in body[:-1]  # no white space between the elements
    tree = etree.fromstring(data)
    assert etree.tostring(tree, encoding="unicode").encode() == body[:-1]


# -- content -----------------------------------------------------------------------------------
@pytest.mark.parametrize("version", PAIN001_VERSIONS)
def test_counts_and_control_sum(version: str) -> None:
    root = parse(write_pain001(batch(), BankProfile(version=version)))
    amounts = [t.amount.minor for t in SAMPLE]
    assert texts(root, "p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", version) == ["5"]
    assert texts(root, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", version) == [str(sum(amounts))]
    assert texts(root, ".//p:PmtInf/p:NbOfTxs", version) == ["5"]
    assert texts(root, ".//p:PmtInf/p:CtrlSum", version) == ["2250001"]
    instructed = texts(root, ".//p:CdtTrfTxInf/p:Amt/p:InstdAmt", version)
    assert instructed == [str(a) for a in amounts]  # whole đồng, no decimals
    assert all(re.fullmatch("[1-9][0-9]*", a) for a in instructed)
    assert {el.get("Ccy") for el in root.iterfind(".//p:InstdAmt", {"p": ns(version)})} == {"VND"}
    assert texts(root, ".//p:EndToEndId", version) == [t.end_to_end_id for t in SAMPLE]


@pytest.mark.parametrize("version", PAIN001_VERSIONS)
def test_group_header_and_debtor(version: str) -> None:
    root = parse(write_pain001(batch(), BankProfile(version=version)))
    bic = "BICFI" if version == "09" else "BIC"
    date = ".//p:PmtInf/p:ReqdExctnDt" + ("/p:Dt" if version == "09" else "")

    def one(path: str) -> str:
        (value,) = texts(root, path, version)
        return value

    assert one(".//p:GrpHdr/p:MsgId") == one(".//p:PmtInf/p:PmtInfId") == "BTXH-2024-07-VTB-001"
    assert one(".//p:GrpHdr/p:CreDtTm") == "2024-07-05T08:30:15+07:00"
    assert one(".//p:GrpHdr/p:InitgPty/p:Nm") == "Sở LĐ-TB&XH tỉnh Thừa Thiên Huế"
    assert one(date) == "2024-07-10"
    assert one(".//p:PmtInf/p:PmtMtd") == "TRF"
    assert one(".//p:PmtInf/p:ChrgBr") == "SLEV"
    assert one(".//p:Dbtr/p:Nm") == "Sở LĐ-TB&XH tỉnh Thừa Thiên Huế"
    assert one(".//p:DbtrAcct/p:Id/p:Othr/p:Id") == "3761102009003"
    assert one(f".//p:DbtrAgt/p:FinInstnId/p:{bic}") == "ICBVVNVX"
    assert one(".//p:DbtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId") == "970415"


def test_a_configured_debtor_bic_wins_over_the_table() -> None:
    debtor = DebtorAccount("UBND xã Lộc Trì", "123456789", "970415", bic="ICBVVNVX111")
    root = parse(write_pain001(batch(debtor=debtor)))
    assert texts(root, ".//p:DbtrAgt/p:FinInstnId/p:BICFI", "09") == ["ICBVVNVX111"]


@pytest.mark.parametrize("version", PAIN001_VERSIONS)
def test_creditor_agent_by_bic_where_known_and_always_by_bin(version: str) -> None:
    root = parse(write_pain001(batch(), BankProfile(version=version)))
    bic = "BICFI" if version == "09" else "BIC"
    agents = list(root.iterfind(".//p:CdtTrfTxInf/p:CdtrAgt/p:FinInstnId", {"p": ns(version)}))
    found = [
        (
            [el.text for el in agent.iterfind(f"p:{bic}", {"p": ns(version)})],
            [el.text for el in agent.iterfind("p:ClrSysMmbId/p:MmbId", {"p": ns(version)})],
        )
        for agent in agents
    ]
    assert found == [
        (["ICBVVNVX"], ["970415"]),
        ([], ["970446"]),  # COOPBANK: no SWIFT code
        (["BFTVVNVX"], ["970436"]),
        ([], ["999888"]),
        (["BIDVVNVX"], ["970418"]),
    ]


@pytest.mark.parametrize("version", PAIN001_VERSIONS)
def test_creditors_name_account_and_remittance(version: str) -> None:
    root = parse(write_pain001(batch(), BankProfile(version=version)))
    names = texts(root, ".//p:CdtTrfTxInf/p:Cdtr/p:Nm", version)
    assert names[0] == "Nguyễn Thị Hồng Đào"
    assert names[1] == "Trần Văn Bình <ủy quyền> & con"  # escaped in the file, intact when read
    assert names[3] == "Lê Văn Tám"  # NFC
    assert all(unicodedata.is_normalized("NFC", n) for n in names)
    accounts = texts(root, ".//p:CdtTrfTxInf/p:CdtrAcct/p:Id/p:Othr/p:Id", version)
    assert accounts == [t.account for t in SAMPLE]
    remittances = texts(root, ".//p:CdtTrfTxInf/p:RmtInf/p:Ustrd", version)
    assert remittances == ["Trợ cấp xã hội hằng tháng - tháng 07/2024"] * 5


@pytest.mark.parametrize("version", PAIN001_VERSIONS)
def test_a_long_name_is_cut_to_the_schemas_limit(schema_dir: Path, version: str) -> None:
    limit = name_limit(version)
    assert limit == 140  # Max140Text in both official XSDs (70 is the EPC SEPA restriction)
    root = parse(write_pain001(batch(), BankProfile(version=version)))
    name = texts(root, ".//p:CdtTrfTxInf/p:Cdtr/p:Nm", version)[2]
    assert len(LONG_NAME) > limit
    assert name == LONG_NAME[:limit]


def test_the_remittance_text_is_cut_to_140_characters() -> None:
    long = "Trợ cấp xã hội hằng tháng " * 10
    root = parse(write_pain001(batch(transfer(remittance=long))))
    assert texts(root, ".//p:RmtInf/p:Ustrd", "09") == [long[:140]]


@pytest.mark.parametrize("version", PAIN001_VERSIONS)
def test_only_what_the_bank_needs_leaves_the_agency(version: str) -> None:
    root = parse(write_pain001(batch(), BankProfile(version=version)))
    elements = {etree.QName(el).localname for el in root.iter()}
    assert elements == {
        *("Document", "CstmrCdtTrfInitn", "GrpHdr", "MsgId", "CreDtTm", "NbOfTxs", "CtrlSum"),
        *("InitgPty", "Nm", "PmtInf", "PmtInfId", "PmtMtd", "ReqdExctnDt", "Dbtr", "DbtrAcct"),
        *("Id", "Othr", "DbtrAgt", "FinInstnId", "ClrSysMmbId", "MmbId", "ChrgBr"),
        *("CdtTrfTxInf", "PmtId", "EndToEndId", "Amt", "InstdAmt", "CdtrAgt", "Cdtr", "CdtrAcct"),
        *("RmtInf", "Ustrd"),
        "BICFI" if version == "09" else "BIC",
        *(("Dt",) if version == "09" else ()),
    }
    # no party identification (national id), no birth date, no address, no contact
    for element in ("PrvtId", "DtAndPlcOfBirth", "BirthDt", "PstlAdr", "CtctDtls", "Othr/Id"):
        assert not root.findall(f".//p:Cdtr//p:{element}", {"p": ns(version)})


# -- determinism -------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", [BankProfile(), BankProfile(latin_names=True, version="03")])
def test_regenerating_a_batch_gives_the_same_bytes(profile: BankProfile) -> None:
    first = write_pain001(batch(), profile)
    rebuilt = TransferBatch(
        "BTXH-2024-07-VTB-001",
        dt.datetime(2024, 7, 5, 8, 30, 15, 123456, tzinfo=HANOI),
        dt.date(2024, 7, 10),
        DebtorAccount("Sở LĐ-TB&XH tỉnh Thừa Thiên Huế", "3761102009003", "970415"),
        tuple(attrs.evolve(t) for t in SAMPLE),
    )
    assert write_pain001(rebuilt, profile) == first
    assert write_pain001(batch(), profile) == first


def test_the_same_instant_in_another_zone_is_written_with_its_own_offset() -> None:
    utc = batch(created_at=dt.datetime(2024, 7, 5, 1, 30, 15, tzinfo=dt.UTC))
    root = parse(write_pain001(utc))
    assert texts(root, ".//p:GrpHdr/p:CreDtTm", "09") == ["2024-07-05T01:30:15+00:00"]


# -- Latin names -------------------------------------------------------------------------------
@pytest.mark.parametrize("version", PAIN001_VERSIONS)
def test_latin_profile_writes_ascii_only(schema_dir: Path, version: str) -> None:
    data = write_pain001(batch(), BankProfile(latin_names=True, version=version))
    assert data.isascii()
    validate_pain001(data, version, schema_dir)
    root = parse(data)
    names = texts(root, ".//p:CdtTrfTxInf/p:Cdtr/p:Nm", version)
    assert names[0] == "Nguyen Thi Hong Dao"
    assert names[1] == "Tran Van Binh <uy quyen> & con"
    assert names[3] == "Le Van Tam"
    assert names[4] == "Dang Quoc Dat"
    assert len(names[2]) == 140
    assert texts(root, ".//p:Dbtr/p:Nm", version) == ["So LD-TB&XH tinh Thua Thien Hue"]
    assert (
        texts(root, ".//p:RmtInf/p:Ustrd", version)[0]
        == "Tro cap xa hoi hang thang - thang 07/2024"
    )


def test_to_latin_strips_every_vietnamese_diacritic() -> None:
    vowels = {
        "a": "aàáảãạăằắẳẵặâầấẩẫậ",
        "e": "eèéẻẽẹêềếểễệ",
        "i": "iìíỉĩị",
        "o": "oòóỏõọôồốổỗộơờớởỡợ",
        "u": "uùúủũụưừứửữự",
        "y": "yỳýỷỹỵ",
    }
    for base, letters in vowels.items():
        assert to_latin(letters) == base * len(letters)
        assert to_latin(letters.upper()) == base.upper() * len(letters)
        nfd = unicodedata.normalize("NFD", letters)
        assert to_latin(nfd) == base * len(letters)
    assert to_latin("đĐ") == "dD"
    assert to_latin("Plain ASCII & <text> 123") == "Plain ASCII & <text> 123"


def test_to_latin_replaces_what_has_no_latin_form() -> None:
    assert to_latin("Nguyễn\u00a0Văn – “Tư”") == 'Nguyen Van - "Tu"'
    assert to_latin("陳 Ø") == "? ?"


@given(st.text())
def test_to_latin_is_always_ascii(text: str) -> None:
    assert to_latin(text).isascii()


# -- fit: never split a letter ------------------------------------------------------------------
_VIETNAMESE = "aàáảãạăằắẳẵặâầấẩẫậeèéẻẽẹêềếểễệiìíỉĩịoòóỏõọôồốổỗộơờớởỡợuùúủũụưừứửữựyỳýỷỹỵđ"
_LETTERS = sorted({*_VIETNAMESE, *_VIETNAMESE.upper(), *"bcdghklmnpqrstvx "})
_MARKS = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0306", "\u0309", "\u031b", "\u0323"]

#: Vietnamese text as it arrives: composed, decomposed, and with marks no letter composes with
#: (``q̣́``), so that NFC leaves combining marks in place.
vietnamese_text = st.lists(
    st.one_of(
        st.sampled_from(_LETTERS),
        st.sampled_from(_LETTERS).map(lambda c: unicodedata.normalize("NFD", c)),
        st.tuples(st.sampled_from(_LETTERS), st.lists(st.sampled_from(_MARKS), max_size=3)).map(
            lambda pair: pair[0] + "".join(pair[1])
        ),
    ),
    max_size=60,
).map("".join)


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


@given(vietnamese_text, st.data())
def test_fit_never_splits_a_letter(text: str, data: st.DataObject) -> None:
    whole = unicodedata.normalize("NFC", text)
    limit = data.draw(st.integers(min_value=0, max_value=len(whole) + 2), label="limit")
    result = fit(text, limit)
    assert len(result) <= limit
    assert unicodedata.is_normalized("NFC", result)
    assert whole.startswith(result)
    if len(result) < len(whole):
        # the cut falls before a new letter, never before one of the marks of the last one...
        assert not _is_mark(whole[len(result)])
        # ...and as late as that allows: every later cut up to the limit would split a letter
        assert all(_is_mark(whole[k]) for k in range(len(result) + 1, limit + 1))
    else:
        assert len(whole) <= limit


@given(st.text(), st.integers(min_value=0, max_value=50))
def test_fit_holds_for_any_text(text: str, limit: int) -> None:
    result = fit(text, limit)
    assert len(result) <= limit
    assert unicodedata.normalize("NFC", text).startswith(result)


def test_fit_examples() -> None:
    assert fit("Nguyễn Văn An", 6) == "Nguyễn"
    assert fit(unicodedata.normalize("NFD", "Nguyễn Văn An"), 5) == "Nguyễ"  # NFC first
    assert fit("aq\u0323\u0301", 2) == "a"  # q with two marks has no single character
    assert fit("ab", 2) == "ab"
    assert fit("", 0) == ""
    with pytest.raises(ValueError, match="negative"):
        fit("a", -1)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(vietnamese_text.filter(lambda s: to_latin(s).strip()), min_size=1, max_size=5),
    st.sampled_from(PAIN001_VERSIONS),
    st.booleans(),
)
def test_any_vietnamese_names_give_a_valid_file(
    names: list[str], version: str, latin: bool
) -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"the official pain.001 XSDs are not there ({SCHEMAS})")
    transfers = [
        transfer(end_to_end_id=f"E{i}", creditor_name=name * 3, remittance=name)
        for i, name in enumerate(names)
    ]
    data = write_pain001(batch(*transfers), BankProfile(latin_names=latin, version=version))
    validate_pain001(data, version, SCHEMAS)
    if latin:
        assert data.isascii()


# -- errors ------------------------------------------------------------------------------------
ONE = "BTXH-2024-07-000001"
NAIVE = dt.datetime(2024, 7, 5, 8, 30)  # noqa: DTZ001 - the naive time under test
ERRORS = [
    # (what, batch, profile, error class, field, EndToEndId named)
    ("non-VND", batch(transfer(amount=Money(100, "USD"))), None, InvalidBatch, "amount", ONE),
    ("zero", batch(transfer(amount=Money.vnd(0))), None, InvalidBatch, "amount", ONE),
    ("negative", batch(transfer(amount=Money.vnd(-5))), None, InvalidBatch, "amount", ONE),
    ("huge", batch(transfer(amount=Money.vnd(10**18))), None, InvalidBatch, "amount", ONE),
    ("unknown BIN", batch(transfer(bank_bin="970499")), None, UnknownBank, "bank_bin", ONE),
    ("short account", batch(transfer(account="12345")), None, InvalidBatch, "account", ONE),
    ("long account", batch(transfer(account="1" * 20)), None, InvalidBatch, "account", ONE),
    ("dashed account", batch(transfer(account="101-234-567")), None, InvalidBatch, "account", ONE),
    ("wide digits", batch(transfer(account="１２３４５６７")), None, InvalidBatch, "account", ONE),
    ("EndToEndId > 35", batch(transfer(end_to_end_id="E" * 36)), None, InvalidBatch,
     "end_to_end_id", "E" * 36),
    ("empty EndToEndId", batch(transfer(end_to_end_id="")), None, InvalidBatch,
     "end_to_end_id", ""),
    ("repeated EndToEndId", batch(transfer(), transfer()), None, InvalidBatch,
     "end_to_end_id", ONE),
    ("empty name", batch(transfer(creditor_name="  ")), None, InvalidBatch, "creditor_name", ONE),
    ("line break", batch(transfer(creditor_name="Nguyễn\nVăn An")), None, InvalidBatch,
     "creditor_name", ONE),
    ("empty remittance", batch(transfer(remittance="")), None, InvalidBatch, "remittance", ONE),
    ("empty batch", attrs.evolve(batch(), transfers=()), None, InvalidBatch, "transfers", None),
    ("control sum", batch(transfer(amount=Money.vnd(6 * 10**17)),
                          transfer(end_to_end_id="X2", amount=Money.vnd(6 * 10**17))),
     None, InvalidBatch, "transfers", None),
    ("MsgId > 35", batch(message_id="M" * 36), None, InvalidBatch, "message_id", None),
    ("naive time", batch(created_at=NAIVE), None, InvalidBatch, "created_at", None),
    ("debtor BIN", batch(debtor=DebtorAccount("Sở", "3761102009003", "123456")), None,
     UnknownBank, "debtor.bank_bin", None),
    ("debtor account", batch(debtor=DebtorAccount("Sở", "37-61", "970415")), None, InvalidBatch,
     "debtor.account", None),
    ("debtor BIC", batch(debtor=DebtorAccount("Sở", "3761102009003", "970415", bic="icbv")),
     None, InvalidBatch, "debtor.bic", None),
    ("debtor name", batch(debtor=DebtorAccount("", "3761102009003", "970415")), None,
     InvalidBatch, "debtor.name", None),
    ("version", batch(), BankProfile(version="02"), InvalidBatch, "profile.version", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "profile", "error", "field", "end_to_end_id"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_bad_input_raises_a_typed_error_naming_transfer_and_field(
    data: TransferBatch,
    profile: BankProfile | None,
    error: type[InvalidBatch],
    field: str,
    end_to_end_id: str | None,
) -> None:
    with pytest.raises(error) as caught:
        write_pain001(data, profile or BankProfile())
    exc = caught.value
    assert isinstance(exc, InvalidInput)
    assert isinstance(exc, ValueError)
    assert exc.field == field
    assert exc.end_to_end_id == end_to_end_id
    assert exc.message_id == data.message_id
    message = str(exc)
    assert field in message
    if end_to_end_id:
        assert f"transfer {end_to_end_id}" in message
    # the clerk's message names no person and no account number
    for transfer_ in data.transfers:
        assert transfer_.account not in message
        if transfer_.creditor_name.strip():
            assert transfer_.creditor_name not in message


def test_an_unknown_bank_is_a_lookup_error_with_the_bin() -> None:
    with pytest.raises(LookupError) as caught:
        write_pain001(batch(transfer(bank_bin="970499")))
    assert isinstance(caught.value, UnknownBank)
    assert caught.value.bank_bin == "970499"
    assert "970499" in str(caught.value)
