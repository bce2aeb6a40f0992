"""VietQR payloads: the shared test vectors, a test-only builder, and mutated payloads.

The vectors live outside the project (``../shared/standards/vietqr/test_vectors.json``) and are
read in place; the tests that need them skip when the directory is absent.
"""

from __future__ import annotations

import doctest
import json
import re
import string
import unicodedata
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sap_payments import vietqr
from sap_payments.beneficiaries import BankAccount, Channel
from sap_payments.errors import InvalidInput, SapPaymentsError
from sap_payments.iso20022.napas import NAPAS_BANKS
from sap_payments.money import Money
from sap_payments.vietqr import InvalidVietQR, VietQR, crc16_ccitt_false, parse_vietqr

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VECTORS_FILE = SHARED / "standards" / "vietqr" / "test_vectors.json"

UNKNOWN_BIN = "123456"
assert UNKNOWN_BIN not in NAPAS_BANKS


# -- a test-only builder --------------------------------------------------------------------------
def tlv(ident: str, value: str) -> str:
    """One data object: id, length in characters, value."""
    assert len(ident) == 2
    assert len(value) <= 99
    return f"{ident}{len(value):02d}{value}"


def with_crc(body: str) -> str:
    """``body`` + ``6304`` + the CRC over the UTF-8 bytes of both (a lone surrogate, which no
    scanner returns, passes as its 3 bytes)."""
    body += "6304"
    return body + f"{crc16_ccitt_false(body.encode('utf-8', 'surrogatepass')):04X}"


def recrc(payload: str) -> str:
    """A payload whose (altered) body gets a CRC that matches again."""
    assert payload[-8:-4] == "6304"
    return with_crc(payload[:-8])


def compose(
    bank_bin: str,
    account: str,
    *,
    card: bool = False,
    dynamic: bool = False,
    amount: int | None = None,
    purpose: str | None = None,
    currency: str = "704",
    guid: str = "A000000727",
    service: str | None = None,
) -> str:
    """A VietQR payload, fields in the order NAPAS apps write them (``service`` overrides the
    service code that ``card`` chooses; ``""`` leaves it out)."""
    if service is None:
        service = "QRIBFTTC" if card else "QRIBFTTA"
    organisation = tlv("00", bank_bin) + tlv("01", account)
    merchant = tlv("00", guid) + tlv("01", organisation) + (service and tlv("02", service))
    body = tlv("00", "01") + tlv("01", "12" if dynamic else "11") + tlv("38", merchant)
    body += tlv("53", currency)
    if amount is not None:
        body += tlv("54", str(amount))
    body += tlv("58", "VN")
    if purpose is not None:
        body += tlv("62", tlv("08", purpose))
    return with_crc(body)


def crc_matches(payload: str) -> bool:
    """Whether some form the parser tries (stripped; NFC) ends with a matching CRC."""
    text = payload.strip()
    for form in (text, unicodedata.normalize("NFC", text)):
        if form[-8:-4] == "6304" and len(form) >= 8:
            data = form[:-4].encode("utf-8", "surrogatepass")
            if form[-4:] == f"{crc16_ccitt_false(data):04X}":
                return True
    return False


def rejected(payload: str) -> InvalidVietQR:
    with pytest.raises(InvalidVietQR) as info:
        parse_vietqr(payload)
    return info.value


# -- the shared vectors ---------------------------------------------------------------------------
@attrs.frozen
class Expected:
    bank_bin: str
    account: str
    to_card: bool
    dynamic: bool
    amount: int | None
    purpose: str | None
    bank_short_name: str


#: What each vector (by its CRC) holds: from its note, and where the note is silent (the
#: account of the MB vectors) from reading the payload by hand.
EXPECTED: dict[str, Expected] = {
    "C15C": Expected("970415", "0011001932418", False, True, 120000, "ung ho lu lut", "VietinBank"),
    "CBB4": Expected("970423", "0099999999", False, False, None, None, "TPBank"),
    "D9C6": Expected("970422", "0023457923442", False, True, 40123, "test text string", "MBBank"),
    "722F": Expected("970422", "0023457923442", False, True, 40123, "chuyen khoan", "MBBank"),
    "E5DB": Expected(
        "970422",
        "0023457923442ASDFLJ",
        False,
        True,
        40123,
        "chuyen khoan alsdkf laksj",
        "MBBank",
    ),
    "4F52": Expected("970403", "9704031101234567", True, False, None, None, "Sacombank"),
}


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    if not VECTORS_FILE.is_file():
        pytest.skip(f"VietQR test vectors not found at {VECTORS_FILE} (the shared directory)")
    data: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    return data


def vector(vectors: dict[str, Any], crc: str) -> dict[str, str]:
    found = [v for v in vectors["vectors"] if v["crc"] == crc]
    assert len(found) == 1, crc
    return dict(found[0])


def test_every_vector_has_an_expectation(vectors: dict[str, Any]) -> None:
    assert sorted(v["crc"] for v in vectors["vectors"]) == sorted(EXPECTED)


def test_crc_check_value(vectors: dict[str, Any]) -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert f"{crc16_ccitt_false(b'123456789'):04X}" == vectors["crc_check_value_for_123456789"]
    assert crc16_ccitt_false(b"") == 0xFFFF


@pytest.mark.parametrize("crc", sorted(EXPECTED))
def test_vector_parses_to_the_documented_values(vectors: dict[str, Any], crc: str) -> None:
    qr = vector(vectors, crc)["qr"]
    assert qr[-4:] == crc
    assert f"{crc16_ccitt_false(qr[:-4].encode()):04X}" == crc
    expected = EXPECTED[crc]
    parsed = parse_vietqr(qr)
    amount = None if expected.amount is None else Money.vnd(expected.amount)
    assert parsed == VietQR(
        expected.bank_bin,
        expected.account,
        expected.to_card,
        expected.dynamic,
        amount,
        expected.purpose,
        expected.bank_short_name,
    )
    # The builder writes the same payload, character for character.
    assert qr == compose(
        expected.bank_bin,
        expected.account,
        card=expected.to_card,
        dynamic=expected.dynamic,
        amount=expected.amount,
        purpose=expected.purpose,
    )


@pytest.mark.parametrize("crc", sorted(EXPECTED))
def test_vector_note_agrees(vectors: dict[str, Any], crc: str) -> None:
    """What the note states (BIN, account or card, amount, purpose, static/dynamic) is parsed."""
    entry = vector(vectors, crc)
    note, parsed = entry["note"], parse_vietqr(entry["qr"])
    stated = 0
    if match := re.search(r"BIN (\d{6})", note):
        assert parsed.bank_bin == match[1]
        stated += 1
    if match := re.search(r"\b(account|card) ([0-9A-Za-z]{6,19})\b", note):
        assert parsed.account == match[2]
        assert parsed.to_card == (match[1] == "card")
        stated += 1
    if match := re.search(r"amount (\d+)", note):
        assert parsed.amount == Money.vnd(int(match[1]))
        stated += 1
    if match := re.search(r"purpose '([^']*)'", note):
        assert parsed.purpose == match[1]
        stated += 1
    if "static" in note or "dynamic" in note:
        assert parsed.dynamic == ("dynamic" in note)
        stated += 1
    if "19-char" in note:
        assert len(parsed.account) == 19
        stated += 1
    assert stated, f"note of {crc} states nothing checkable: {note!r}"


def test_address_of_a_vector(vectors: dict[str, Any]) -> None:
    parsed = parse_vietqr(vector(vectors, "C15C")["qr"])
    address = parsed.address("vietinbank")
    assert address == BankAccount("970415", "0011001932418", "vietinbank")
    assert address.channel is Channel.BANK
    assert address.key == "bank:970415:0011001932418"
    assert parsed.address().provider is None


def test_card_vector_address_holds_the_card_number(vectors: dict[str, Any]) -> None:
    parsed = parse_vietqr(vector(vectors, "4F52")["qr"])
    assert parsed.to_card
    assert parsed.address() == BankAccount("970403", "9704031101234567")


def test_surrounding_white_space_is_stripped(vectors: dict[str, Any]) -> None:
    qr = vector(vectors, "CBB4")["qr"]
    assert parse_vietqr(f" \t{qr}\r\n") == parse_vietqr(qr)


# -- mutated vectors ------------------------------------------------------------------------------
@pytest.mark.parametrize("crc", sorted(EXPECTED))
def test_foreign_currency_is_rejected(vectors: dict[str, Any], crc: str) -> None:
    qr = vector(vectors, crc)["qr"]
    assert qr.count("5303704") == 1
    error = rejected(recrc(qr.replace("5303704", "5303840")))
    assert (error.reason, error.field) == ("currency", "53")
    assert "840" in str(error)
    assert EXPECTED[crc].account not in str(error)


@pytest.mark.parametrize("crc", sorted(EXPECTED))
def test_unknown_bin_is_rejected(vectors: dict[str, Any], crc: str) -> None:
    qr = vector(vectors, crc)["qr"]
    known = "0006" + EXPECTED[crc].bank_bin
    assert qr.count(known) == 1
    error = rejected(recrc(qr.replace(known, "0006" + UNKNOWN_BIN)))
    assert (error.reason, error.field) == ("bin", "38.01.00")
    assert UNKNOWN_BIN in str(error)
    assert EXPECTED[crc].account not in str(error)


@pytest.mark.parametrize("crc", sorted(EXPECTED))
def test_bad_crc_is_rejected(vectors: dict[str, Any], crc: str) -> None:
    qr = vector(vectors, crc)["qr"]
    wrong = f"{(int(crc, 16) + 1) % 0x10000:04X}"
    error = rejected(qr[:-4] + wrong)
    assert (error.reason, error.field, error.position) == ("crc", "63", len(qr) - 8)
    assert EXPECTED[crc].account not in str(error)


@given(data=st.data())
def test_a_flipped_character_anywhere_is_a_crc_error(vectors: dict[str, Any], data: Any) -> None:
    qr = data.draw(st.sampled_from(sorted(v["qr"] for v in vectors["vectors"])))
    position = data.draw(st.integers(0, len(qr) - 1), label="position")
    replacement = data.draw(
        st.one_of(
            st.sampled_from(string.printable),
            st.sampled_from("ăâđêôơưạảấầẩẫậ\u0301\u0300\u00a0"),
            st.characters(),
        ),
        label="replacement",
    )
    assume(replacement != qr[position])
    mutated = qr[:position] + replacement + qr[position + 1 :]
    # CRC-16 catches every change of one byte; a change of length (a multi-byte character,
    # white space stripped at an end) it catches but for 1 in 65,536: those are skipped.
    assume(not crc_matches(mutated))
    error = rejected(mutated)
    assert error.reason == "crc"
    assert error.field == "63"


def test_lower_case_crc_is_a_crc_error(vectors: dict[str, Any]) -> None:
    qr = vector(vectors, "C15C")["qr"]
    assert rejected(qr[:-4] + qr[-4:].lower()).reason == "crc"


def body_objects(qr: str) -> list[tuple[str, int, int]]:
    """(id, start, end) of the payload's top-level data objects, read independently."""
    found, pos = [], 0
    while pos < len(qr):
        length = int(qr[pos + 2 : pos + 4])
        found.append((qr[pos : pos + 2], pos, pos + 4 + length))
        pos += 4 + length
    return found


@given(data=st.data())
def test_truncated_payload_with_a_fresh_crc_is_a_format_error(
    vectors: dict[str, Any], data: Any
) -> None:
    qr = data.draw(st.sampled_from(sorted(v["qr"] for v in vectors["vectors"])))
    boundaries = {end for _, _, end in body_objects(qr)}
    cut = data.draw(st.integers(1, len(qr) - 9).filter(lambda k: k not in boundaries))
    error = rejected(with_crc(qr[:cut]))
    assert error.reason == "format"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        # field 38 cut short: the length runs past the end of the payload
        pytest.param(lambda q: q[: q.index("0208QRIBFTT")], "38", id="truncated-38"),
        # 38.01.01's length one short: one character left over in 38.01
        pytest.param(lambda q: q.replace("01130011", "01120011", 1), "38.01", id="short-length"),
        # 38.01.01's length one too long: runs past the end of 38.01
        pytest.param(lambda q: q.replace("01130011", "01140011", 1), "38.01.01", id="long-length"),
        # a length that is not 2 digits
        pytest.param(lambda q: q.replace("5303704", "53x3704"), "53", id="length-not-digits"),
        pytest.param(lambda q: q.replace("3857", "38 7"), "38", id="38-length-space"),
        # an id that is not 2 digits
        pytest.param(lambda q: q.replace("5303704", "5X03704"), None, id="id-not-digits"),
        # the amount's length runs past the end of the payload
        pytest.param(lambda q: q.replace("5406120000", "5499120000"), "54", id="54-too-long"),
        pytest.param(lambda q: re.sub(r"3857.{57}", "", q), "38", id="missing-38"),
        pytest.param(lambda q: q.replace("A000000727", "A000000677"), "38.00", id="wrong-guid"),
        pytest.param(
            lambda q: q.replace("0010A000000727", "0310A000000727"), "38.00", id="no-guid"
        ),
        pytest.param(lambda q: q.replace("0006970415", "0006 70415"), "38.01.00", id="bin-space"),
        pytest.param(lambda q: q.replace("0006970415", "0006A70415"), "38.01.00", id="bin-letter"),
        pytest.param(lambda q: q.replace("000201", "000202"), "00", id="format-indicator-02"),
        pytest.param(lambda q: q.replace("010212", "010213"), "01", id="initiation-13"),
        pytest.param(lambda q: q.replace("5802VN", "5802TH"), "58", id="country-TH"),
        pytest.param(lambda q: q.replace("5802VN", ""), "58", id="no-country"),
        pytest.param(lambda q: q.replace("5303704", ""), "53", id="no-currency"),
        pytest.param(lambda q: q.replace("5406120000", "5406120.50"), "54", id="amount-fraction"),
        pytest.param(lambda q: q.replace("5406120000", "5406000000"), "54", id="amount-zero"),
        pytest.param(lambda q: q.replace("5406120000", "54061,2000"), "54", id="amount-comma"),
        pytest.param(lambda q: q.replace("5406120000", "5302VN5406120000"), "53", id="53-twice"),
        pytest.param(lambda q: q.replace("0813ung", "0812ung"), "62", id="62-leftover"),
        pytest.param(lambda q: q.replace("6217", "6215"), None, id="62-short-leftover"),
        pytest.param(lambda q: "010212000201" + q[12:], "00", id="00-not-first"),
    ],
)
def test_structural_mutations_are_format_errors(
    vectors: dict[str, Any], mutate: Any, field: str | None
) -> None:
    """Mutations of the first vector (VietinBank, 0011001932418), each with a CRC that matches."""
    entry = vector(vectors, "C15C")
    body = entry["qr"][:-8]
    mutated = mutate(body)
    assert mutated != body
    error = rejected(with_crc(mutated))
    assert error.reason == "format", str(error)
    assert error.field == field, str(error)
    assert "0011001932418" not in str(error)
    if error.field is not None and error.position is not None:
        assert f"field {error.field} at offset {error.position}" in str(error)


def test_error_positions_point_at_the_data_object(vectors: dict[str, Any]) -> None:
    qr = vector(vectors, "C15C")["qr"]
    mutated = recrc(qr.replace("5303704", "5303840"))
    error = rejected(mutated)
    assert error.position is not None
    assert mutated[error.position : error.position + 7] == "5303840"
    assert str(error).startswith(f"VietQR field 53 at offset {error.position}: ")


@pytest.mark.parametrize("service", ["QRPUSH", "QRIBFTTX", "qribftta", "12345678", ""])
def test_other_service_codes_are_rejected(service: str) -> None:
    error = rejected(compose("970415", "0011001932418", service=service))
    assert (error.reason, error.field) == ("service", "38.02")
    # Upper-case letter codes are named; anything else might be a number, and is not.
    if service:
        assert (service in str(error)) == (service.isalpha() and service.isupper())


@pytest.mark.parametrize("bank_bin", ["97041", "9704150", "", "97041a"])
def test_bin_not_six_digits(bank_bin: str) -> None:
    error = rejected(compose(bank_bin, "0011001932418"))
    assert (error.reason, error.field) == ("format", "38.01.00")


@pytest.mark.parametrize(
    ("account", "card"),
    [
        ("12345", False),  # too short
        ("12345678901234567890", False),  # 20 characters
        ("0011-001932", False),  # not alphanumeric
        ("0011 001932", False),
        ("００１１００１９３２４１８", False),  # full-width digits are not ASCII
        ("970403110123456", True),  # 15 digits
        ("97040311012345678901", True),  # 20 digits
        ("9704031101234567A", True),  # a letter in a card number
    ],
)
def test_account_and_card_numbers_of_the_wrong_shape(account: str, card: bool) -> None:
    error = rejected(compose("970403", account, card=card))
    assert (error.reason, error.field) == ("format", "38.01.01")
    assert ("card" if card else "account") in str(error)
    assert account not in str(error)


def test_card_number_lengths_16_to_19_are_accepted() -> None:
    for length in range(16, 20):
        card = "9" * length
        assert parse_vietqr(compose("970403", card, card=True)).account == card


def test_missing_account_number_and_bin() -> None:
    no_account = compose("970415", "0011001932418").replace("01130011001932418", "")
    error = rejected(recrc(no_account.replace("0127", "0110").replace("3857", "3840")))
    assert (error.reason, error.field) == ("format", "38.01.01")
    no_bin = compose("970415", "0011001932418").replace("0006970415", "")
    error = rejected(recrc(no_bin.replace("0127", "0117").replace("3857", "3847")))
    assert (error.reason, error.field) == ("format", "38.01.00")


def test_static_payload_without_point_of_initiation_is_static() -> None:
    payload = compose("970415", "0011001932418", dynamic=True)
    parsed = parse_vietqr(recrc(payload.replace("010212", "", 1)))
    assert not parsed.dynamic


def test_amount_with_zero_decimals_is_whole_dong() -> None:
    payload = compose("970415", "0011001932418", amount=1000)
    for written in ("1000.", "1000.00"):
        parsed = parse_vietqr(recrc(payload.replace("54041000", tlv("54", written))))
        assert parsed.amount == Money.vnd(1000)


@pytest.mark.parametrize("written", ["12345678901234", "1.5", ".5", "1e5", "-1000", "+1000"])
def test_amounts_that_are_not_whole_dong_up_to_13_characters(written: str) -> None:
    payload = compose("970415", "0011001932418", amount=1000)
    error = rejected(recrc(payload.replace("54041000", tlv("54", written))))
    assert (error.reason, error.field) == ("format", "54")


def test_largest_amount() -> None:
    parsed = parse_vietqr(compose("970415", "0011001932418", amount=10**13 - 1))
    assert parsed.amount == Money.vnd(9_999_999_999_999)


def test_other_fields_are_read_past() -> None:
    body = compose("970415", "0011001932418")[:-8]
    extra = tlv("52", "0000") + tlv("59", "NGUYEN VAN AN") + tlv("60", "HUE")
    extra += tlv("26", tlv("00", "A000000677") + tlv("01", "X"))
    parsed = parse_vietqr(with_crc(body.replace("5802VN", "5802VN" + extra)))
    assert (parsed.bank_bin, parsed.account) == ("970415", "0011001932418")


def test_empty_and_non_vietqr_payloads() -> None:
    assert rejected("").reason == "format"
    assert rejected("   \n").reason == "format"
    assert rejected("https://example.com/pay").reason == "crc"
    assert rejected("6304").reason == "crc"


def test_payload_that_is_only_a_crc_is_a_format_error() -> None:
    error = rejected(with_crc(""))
    assert error.reason == "format"


def test_lone_surrogate() -> None:
    payload = compose("970415", "0011001932418", purpose="ab")
    assert rejected(payload.replace("ab", "a\ud800")).reason == "crc"
    # Even with a CRC computed over it (a surrogate cannot come from a scanner), it is refused.
    body = compose("970415", "0011001932418", purpose="a\ud800")[:-4]
    forged = body + f"{crc16_ccitt_false(body.encode('utf-8', 'surrogatepass')):04X}"
    assert rejected(forged).reason == "format"


# -- Unicode --------------------------------------------------------------------------------------
def test_vietnamese_purpose_lengths_count_characters_and_crc_is_over_utf8() -> None:
    purpose = "ủng hộ lũ lụt"
    assert len(purpose) == 13
    assert len(purpose.encode()) > 13
    payload = compose("970415", "0011001932418", purpose=purpose)
    assert "62170813ủng hộ lũ lụt6304" in payload
    assert parse_vietqr(payload).purpose == purpose
    # A CRC computed over the code points' low bytes (as some generators do) does not match.
    latin = payload[:-4].encode("latin-1", "replace")
    assert crc16_ccitt_false(latin) != int(payload[-4:], 16)
    bad = payload[:-4] + f"{crc16_ccitt_false(latin):04X}"
    assert rejected(bad).reason == "crc"


def test_decomposed_payload_is_read_in_nfc() -> None:
    """A code whose accents a channel decomposed after it was made: its NFC form has the CRC."""
    payload = compose("970415", "0011001932418", purpose="ủng hộ")
    decomposed = unicodedata.normalize("NFD", payload)
    assert decomposed != payload
    assert parse_vietqr(decomposed).purpose == "ủng hộ"


def test_decomposed_at_generation_is_read_in_nfc() -> None:
    """A code made with decomposed accents (lengths and CRC over the NFD text) reads as NFC."""
    purpose = unicodedata.normalize("NFD", "ủng hộ")
    parsed = parse_vietqr(compose("970415", "0011001932418", purpose=purpose))
    assert parsed.purpose == "ủng hộ"


def test_blank_purpose_is_none() -> None:
    assert parse_vietqr(compose("970415", "0011001932418", purpose="  ")).purpose is None


# -- round trip -----------------------------------------------------------------------------------
ALNUM = string.ascii_letters + string.digits
VIETNAMESE = (
    "aăâbcdđeêghiklmnoôơpqrstuưvxyáàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
)
PURPOSE_ALPHABET = VIETNAMESE + VIETNAMESE.upper() + string.digits + " "

bins = st.sampled_from(sorted(NAPAS_BANKS))
accounts = st.text(ALNUM, min_size=6, max_size=19)
cards = st.text(string.digits, min_size=16, max_size=19)
amounts = st.none() | st.integers(1, 10**13 - 1)
purposes = st.none() | st.text(PURPOSE_ALPHABET, min_size=1, max_size=25).map(
    lambda text: unicodedata.normalize("NFC", text).strip()
).filter(bool)


@given(
    bank_bin=bins,
    card=st.booleans(),
    data=st.data(),
    dynamic=st.booleans(),
    amount=amounts,
    purpose=purposes,
    decompose=st.booleans(),
)
def test_round_trip(
    bank_bin: str,
    card: bool,
    data: Any,
    dynamic: bool,
    amount: int | None,
    purpose: str | None,
    decompose: bool,
) -> None:
    account = data.draw(cards if card else accounts, label="account")
    written = purpose
    if purpose is not None and decompose:
        written = unicodedata.normalize("NFD", purpose)
    payload = compose(bank_bin, account, card=card, dynamic=dynamic, amount=amount, purpose=written)
    parsed = parse_vietqr(payload)
    assert parsed == VietQR(
        bank_bin,
        account,
        card,
        dynamic,
        None if amount is None else Money.vnd(amount),
        purpose,
        NAPAS_BANKS[bank_bin].short_name,
    )
    assert parsed.address() == BankAccount(bank_bin, account)


# Error tests with random accounts: an account starts and ends with a digit, so that no word of
# a message can equal it by chance.
error_accounts = st.from_regex(r"[0-9][A-Za-z0-9]{4,17}[0-9]", fullmatch=True)


@given(bank_bin=bins, account=error_accounts, data=st.data())
def test_built_payload_errors_never_hold_the_account(
    bank_bin: str, account: str, data: Any
) -> None:
    # Constants that messages name (the GUID, the unknown BIN) are not the account's to hide.
    assume(account not in "A000000727 " + UNKNOWN_BIN)
    payload = compose(bank_bin, account, amount=data.draw(amounts))
    mutations = {
        "currency": recrc(payload.replace("5303704", "5303840")),
        "bin": recrc(payload.replace("0006" + bank_bin, "0006" + UNKNOWN_BIN, 1)),
        "format": recrc(payload.replace("A000000727", "A000000728")),
        "service": recrc(payload.replace("QRIBFTTA", "QRPUSHXX")),
    }
    position = data.draw(st.integers(0, len(payload) - 1), label="position")
    replacement = data.draw(st.sampled_from(ALNUM), label="replacement")
    assume(replacement != payload[position])
    mutations["crc"] = payload[:position] + replacement + payload[position + 1 :]
    for reason, mutated in mutations.items():
        error = rejected(mutated)
        assert error.reason == reason
        assert account not in str(error)
        assert account not in repr(error.args)


# -- the error and the module ---------------------------------------------------------------------
def test_invalid_vietqr_is_invalid_input() -> None:
    error = rejected("nonsense")
    assert isinstance(error, InvalidInput)
    assert isinstance(error, ValueError)
    assert isinstance(error, SapPaymentsError)


def test_module_doctests() -> None:
    failures, tried = doctest.testmod(vietqr)
    assert tried >= 3
    assert failures == 0
