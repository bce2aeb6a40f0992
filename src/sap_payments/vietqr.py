"""VietQR: read a beneficiary's bank account from the QR code their banking app shows.

Every Vietnamese banking app can show a "receive money" QR code in the NAPAS VietQR format, a
profile of the EMVCo merchant-presented QR code. Field staff scan it instead of copying a bank
name and a 13-digit account number by hand. :func:`parse_vietqr` checks the code and reads the
bank's NAPAS BIN and the account (or card) number from it; :meth:`VietQR.address` turns that into
the :class:`~sap_payments.beneficiaries.BankAccount` a mandate pays to.

>>> qr = parse_vietqr(
...     "00020101021138540010A00000072701240006970423011000999999990208QRIBFTTA"
...     "53037045802VN6304CBB4"
... )
>>> qr.bank_bin, qr.account, qr.bank_short_name, qr.dynamic, qr.amount
('970423', '0099999999', 'TPBank', False, None)
>>> qr.address(provider="bank-pilot").key
'bank:970423:0099999999'

The payload
    A sequence of data objects, each a 2-digit id, a 2-digit length and that many characters of
    value (lengths count characters, not bytes). The objects read are:

    ==========  =================================================================================
    ``00``      payload format indicator, ``01``; must come first
    ``01``      point of initiation: ``11`` static (reusable), ``12`` dynamic (one payment);
                absent means static
    ``38``      NAPAS merchant account information, itself data objects: ``00`` the NAPAS GUID
                ``A000000727``; ``01`` the beneficiary organisation (``00`` the bank's BIN, 6
                digits; ``01`` the account or card number); ``02`` the service code,
                ``QRIBFTTA`` (transfer to an account) or ``QRIBFTTC`` (transfer to a card)
    ``53``      currency, ISO 4217 numeric: must be ``704`` (VND)
    ``54``      amount (optional): whole đồng, digits with an optional ``.`` and zero decimals
    ``58``      country: must be ``VN``
    ``62``      additional data (optional), data objects; ``08`` the purpose of the transfer
    ``63``      CRC: must be last, ``6304`` and 4 upper-case hex digits
    ==========  =================================================================================

    Other objects (merchant category ``52``, names ``59``/``60``, other templates) must be
    well-formed but are not read. No id may appear twice in one template.

The CRC
    CRC-16/CCITT-FALSE (:func:`crc16_ccitt_false`) of the UTF-8 bytes of everything up to and
    including ``6304``, written as 4 upper-case hex digits. VietQR wants ASCII in its fields, but
    some apps put Vietnamese text in the purpose: the CRC is then over its UTF-8 bytes while the
    lengths count characters. Surrounding white space is stripped first. If a scanner or a
    spreadsheet decomposed the accents of a code (NFD), the CRC of the text as given fails and the
    CRC of its NFC form is tried: the form whose CRC matches is the one parsed. Text read from the
    code (the purpose) is returned in NFC.

Card numbers
    With ``QRIBFTTC`` the number is a card's (16–19 digits) and
    :attr:`BankAccount.account_number <sap_payments.beneficiaries.BankAccount.account_number>`
    then holds a card number; NAPAS routes the transfer to the card's account. An account number
    (``QRIBFTTA``) is 6–19 letters or digits, the roster importer's rule.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from typing import Final, Literal

import attrs

from sap_payments.beneficiaries import BankAccount, nfc
from sap_payments.errors import InvalidInput
from sap_payments.iso20022.napas import bank_by_bin
from sap_payments.money import Money

__all__ = ["InvalidVietQR", "Reason", "VietQR", "crc16_ccitt_false", "parse_vietqr"]

#: Why a payload was rejected (:attr:`InvalidVietQR.reason`).
Reason = Literal["crc", "format", "currency", "bin", "service"]

_NAPAS_GUID: Final = "A000000727"
_TO_ACCOUNT: Final = "QRIBFTTA"
_TO_CARD: Final = "QRIBFTTC"
_VND: Final = "704"
_CRC_ID: Final = "6304"

# ASCII only: ``\d`` would also take Arabic-Indic and other Unicode digits, which int() accepts.
_TWO_DIGITS: Final = re.compile(r"[0-9]{2}")
_HEX4: Final = re.compile(r"[0-9A-F]{4}")
_BIN: Final = re.compile(r"[0-9]{6}")
_ACCOUNT: Final = re.compile(r"[A-Za-z0-9]{6,19}")
_CARD: Final = re.compile(r"[0-9]{16,19}")
_AMOUNT: Final = re.compile(r"[0-9]+(?:\.[0-9]*)?")
_CURRENCY: Final = re.compile(r"[0-9]{3}")
_COUNTRY: Final = re.compile(r"[A-Z]{2}")
_SERVICE: Final = re.compile(r"[A-Z]{1,10}")  # echoed in messages: letters only, never a number


class InvalidVietQR(InvalidInput):
    """A VietQR payload that cannot be used; nothing was read from it.

    ``reason`` says what kind of problem it is:

    * ``"crc"``: the CRC (field 63) is missing or does not match: the code was misread, cut
      short or altered. Scan it again.
    * ``"format"``: not a well-formed VietQR transfer code (a data object cut short, a bad
      length, a missing or wrong field, an account number of the wrong shape).
    * ``"currency"``: the code asks for a currency other than VND.
    * ``"bin"``: the bank's BIN is not a NAPAS member in
      :data:`~sap_payments.iso20022.napas.NAPAS_BANKS`.
    * ``"service"``: neither a transfer to an account (``QRIBFTTA``) nor to a card
      (``QRIBFTTC``), e.g. a shop's payment code.

    ``field`` is the data object's id path (``"38.01.00"`` is the BIN inside the beneficiary
    organisation inside field 38), ``None`` when no field is to blame; ``position`` is the offset
    (0-based, in characters) of that data object's id in the payload after surrounding white
    space was stripped (in its NFC form when that is the form whose CRC matched). The message
    names both; like every message of sap_payments it never holds the account or card number.
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        field: str | None = None,
        position: int | None = None,
    ) -> None:
        where = "" if field is None else f" field {field}"
        at = "" if position is None else f" at offset {position}"
        super().__init__(f"VietQR{where}{at}: {message}")
        self.reason: Reason = reason
        self.field = field
        self.position = position


@attrs.frozen
class VietQR:
    """What a VietQR transfer code says: the bank, the account or card, and what the payer asks.

    ``amount`` and ``purpose`` are what the code asks the payer to send and to write; enrolment
    uses neither. ``bank_short_name`` comes from the NAPAS table, not from the code.
    """

    bank_bin: str
    account: str
    to_card: bool
    dynamic: bool
    amount: Money | None
    purpose: str | None
    bank_short_name: str

    def address(self, provider: str | None = None) -> BankAccount:
        """The bank financial address this code names (a card number when :attr:`to_card`)."""
        return BankAccount(self.bank_bin, self.account, provider)


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, not reflected, no final XOR.

    The checksum EMVCo QR codes end with (field 63).

    >>> f"{crc16_ccitt_false(b'123456789'):04X}"
    '29B1'
    """
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


@attrs.frozen
class _Object:
    """One data object: its id path, its value and the offsets of its id and of its value."""

    path: str
    value: str
    position: int

    @property
    def start(self) -> int:
        return self.position + 4

    @property
    def end(self) -> int:
        return self.start + len(self.value)


def _format(
    message: str, item: _Object | None = None, *, path: str | None = None, inside: int | None = None
) -> InvalidVietQR:
    """A format error about ``item``; or, when it is missing, about ``path`` in the template
    whose id is at offset ``inside``."""
    if item is not None:
        return InvalidVietQR("format", message, field=item.path, position=item.position)
    return InvalidVietQR("format", message, field=path, position=inside)


def _objects(text: str, start: int, end: int, parent: str | None) -> list[_Object]:
    """The data objects of ``text[start:end]`` (the payload, or a template's value)."""
    found: list[_Object] = []
    seen: dict[str, int] = {}
    where = "the payload" if parent is None else f"field {parent}"
    pos = start
    while pos < end:
        if end - pos < 4:
            raise InvalidVietQR(
                "format",
                f"{end - pos} character(s) left at the end of {where} where a data object "
                "(2-digit id, 2-digit length) should start: the data is cut short",
                field=parent,
                position=pos,
            )
        ident, length = text[pos : pos + 2], text[pos + 2 : pos + 4]
        if not _TWO_DIGITS.fullmatch(ident):
            raise InvalidVietQR(
                "format",
                f"a data object of {where} should start here with a 2-digit id",
                field=parent,
                position=pos,
            )
        path = ident if parent is None else f"{parent}.{ident}"
        if not _TWO_DIGITS.fullmatch(length):
            raise InvalidVietQR("format", "the length is not 2 digits", field=path, position=pos)
        value_end = pos + 4 + int(length)
        if value_end > end:
            raise InvalidVietQR(
                "format",
                f"its length {length} runs {value_end - end} character(s) past the end of "
                f"{where}: the data is cut short or the length is wrong",
                field=path,
                position=pos,
            )
        if ident in seen:
            raise InvalidVietQR(
                "format", f"appears twice (first at offset {seen[ident]})", field=path, position=pos
            )
        seen[ident] = pos
        found.append(_Object(path, text[pos + 4 : value_end], pos))
        pos = value_end
    return found


def _template(text: str, item: _Object) -> dict[str, _Object]:
    """The data objects inside ``item``'s value, by their own (last) id."""
    return {
        child.path.rsplit(".", 1)[-1]: child
        for child in _objects(text, item.start, item.end, item.path)
    }


def _checked(payload: str) -> str:
    """The payload without surrounding white space, in the form whose CRC matches."""
    text = payload.strip()
    if not text:
        raise InvalidVietQR("format", "the payload is empty")
    trailer = len(text) - 8
    if trailer < 0 or text[trailer : trailer + 4] != _CRC_ID:
        raise InvalidVietQR(
            "crc",
            "the payload does not end with its CRC ('6304' and 4 hex digits): it was cut short, "
            "or it is not a VietQR code",
            field="63",
            position=max(trailer, 0),
        )
    written = text[-4:]
    if not _HEX4.fullmatch(written):
        raise InvalidVietQR(
            "crc", "the CRC is not 4 upper-case hex digits", field="63", position=trailer
        )
    for form in dict.fromkeys((text, unicodedata.normalize("NFC", text))):
        # surrogatepass: a lone surrogate (never in a scanned code) fails the CRC, not encode().
        if f"{crc16_ccitt_false(form[:-4].encode('utf-8', 'surrogatepass')):04X}" == written:
            break
    else:
        raise InvalidVietQR(
            "crc",
            "the CRC does not match the payload: the code was misread, cut short or altered; "
            "scan it again",
            field="63",
            position=trailer,
        )
    try:
        form.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidVietQR(
            "format", "not valid Unicode text (a lone surrogate)", position=exc.start
        ) from exc
    return form


def parse_vietqr(payload: str) -> VietQR:
    """Check a VietQR transfer code and read the bank account (or card) it names.

    The checks run in this order, and the first that fails raises: the CRC; the data objects'
    structure (ids, lengths, nothing cut short, no id twice); ``00`` first and ``63`` last;
    ``01``; ``38`` (GUID, BIN, NAPAS membership, service code, account or card number); ``53``;
    ``54``; ``58``; ``62``.

    Args:
        payload: the text the QR code holds, as a scanner returns it.

    Raises:
        InvalidVietQR: the payload cannot be used; ``reason`` says why (see the class).
    """
    text = _checked(payload)
    root = _objects(text, 0, len(text), None)
    if root[0].path != "00":
        raise _format(
            "the payload must start with the payload format indicator (field 00)",
            path="00",
            inside=0,
        )
    if root[0].value != "01":
        raise _format("the payload format indicator must be 01", root[0])
    if root[-1].path != "63" or root[-1].position != len(text) - 8:
        raise _format("the CRC must be the last data object", path="63")
    fields = {item.path: item for item in root}
    dynamic = _dynamic(fields.get("01"))
    bank_bin, account, to_card, short_name = _merchant_account(text, fields.get("38"))
    _check_currency(fields.get("53"))
    amount = _amount(fields.get("54"))
    _check_country(fields.get("58"))
    purpose = _purpose(text, fields.get("62"))
    return VietQR(bank_bin, account, to_card, dynamic, amount, purpose, short_name)


def _dynamic(item: _Object | None) -> bool:
    if item is None:
        return False
    if item.value not in ("11", "12"):
        raise _format("point of initiation must be 11 (static) or 12 (dynamic)", item)
    return item.value == "12"


def _merchant_account(text: str, item: _Object | None) -> tuple[str, str, bool, str]:
    """(BIN, account or card number, to card, bank short name) from field 38."""
    if item is None:
        raise _format(
            "no NAPAS merchant account information (field 38): not a VietQR transfer code",
            path="38",
        )
    merchant = _template(text, item)
    guid = merchant.get("00")
    if guid is None or guid.value.upper() != _NAPAS_GUID:
        raise _format(
            f"field 38 must carry the NAPAS GUID {_NAPAS_GUID}: not a VietQR code",
            guid,
            path="38.00",
            inside=item.position,
        )
    organisation = merchant.get("01")
    if organisation is None:
        raise _format(
            "no beneficiary organisation (bank BIN and account)", path="38.01", inside=item.position
        )
    parts = _template(text, organisation)
    bin_item, number = parts.get("00"), parts.get("01")
    if bin_item is None:
        raise _format("no bank BIN (acquirer id)", path="38.01.00", inside=organisation.position)
    if not _BIN.fullmatch(bin_item.value):
        raise _format("the bank BIN must be 6 digits", bin_item)
    bank = bank_by_bin(bin_item.value)
    if bank is None:
        raise InvalidVietQR(
            "bin",
            f"bank BIN {bin_item.value} is not a NAPAS member bank sap_payments knows",
            field=bin_item.path,
            position=bin_item.position,
        )
    service = merchant.get("02")
    if service is None:
        raise InvalidVietQR(
            "service",
            "no service code: a transfer code says QRIBFTTA (to an account) or QRIBFTTC (to a "
            "card)",
            field="38.02",
            position=item.position,
        )
    if service.value not in (_TO_ACCOUNT, _TO_CARD):
        shown = f" {service.value}" if _SERVICE.fullmatch(service.value) else ""
        raise InvalidVietQR(
            "service",
            f"service code{shown} is neither QRIBFTTA (transfer to an account) nor QRIBFTTC "
            "(transfer to a card): not a code to receive a transfer",
            field=service.path,
            position=service.position,
        )
    to_card = service.value == _TO_CARD
    if number is None:
        raise _format(
            f"no {'card' if to_card else 'account'} number",
            path="38.01.01",
            inside=organisation.position,
        )
    if to_card and not _CARD.fullmatch(number.value):
        raise _format(
            f"a card number (QRIBFTTC) must be 16–19 digits; this one has {len(number.value)} "
            "characters or holds other characters than digits",
            number,
        )
    if not to_card and not _ACCOUNT.fullmatch(number.value):
        raise _format(
            f"an account number (QRIBFTTA) must be 6–19 letters or digits; this one has "
            f"{len(number.value)} characters or holds other characters",
            number,
        )
    return bank.bin, number.value, to_card, bank.short_name


def _check_currency(item: _Object | None) -> None:
    if item is None:
        raise _format("no transaction currency (field 53)", path="53")
    if item.value != _VND:
        shown = f" {item.value}" if _CURRENCY.fullmatch(item.value) else ""
        raise InvalidVietQR(
            "currency",
            f"currency{shown} is not VND (704): sap_payments pays in đồng only",
            field=item.path,
            position=item.position,
        )


def _amount(item: _Object | None) -> Money | None:
    if item is None:
        return None
    if len(item.value) > 13 or not _AMOUNT.fullmatch(item.value):
        raise _format("the amount must be up to 13 digits with an optional '.'", item)
    value = Decimal(item.value)
    if value != value.to_integral_value():
        raise _format("the amount has a fraction of a đồng: VND has no minor unit", item)
    if not value:
        raise _format("the amount is zero", item)
    return Money.vnd(int(value))


def _check_country(item: _Object | None) -> None:
    if item is None:
        raise _format("no country code (field 58)", path="58")
    if item.value != "VN":
        shown = f" {item.value}" if _COUNTRY.fullmatch(item.value) else ""
        raise _format(f"country{shown} is not VN", item)


def _purpose(text: str, item: _Object | None) -> str | None:
    if item is None:
        return None
    purpose = _template(text, item).get("08")
    if purpose is None:
        return None
    return nfc(purpose.value) or None
