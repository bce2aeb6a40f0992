"""One-time collection codes for cash paid out at the post office.

Each line of a payout list carries an 11-digit code: 10 digits of an HMAC-SHA256 of the
instruction id, the amount and the pay point, keyed with an agency secret, and one Damm check
digit. It is printed in groups of 4, 4 and 3 to be read aloud (``4821 0937 558``). The code is
derived, not stored: whoever holds the secret can compute it again, nobody else can produce one,
and a code made for one instruction, amount and pay point does not verify for any other.

>>> key = CollectionKey.from_hex("2021-key-1", "00" * 32)  # a real secret: secrets.token_hex(32)
>>> code = collection_code(key, "202109-1a2b3c4d5e6f70819202", 360_000, "BD-20107")
>>> code
'5976 6873 057'
>>> normalise_code("5976-6873-057")
'59766873057'
>>> verify_code(code, "202109-1a2b3c4d5e6f70819202", 360_000, "BD-20107", keys=[key])
CollectionKey(key_id='2021-key-1')
>>> verify_code(code, "202109-1a2b3c4d5e6f70819202", 630_000, "BD-20107", keys=[key]) is None
True

The check digit is public arithmetic, not a secret: it lets :func:`normalise_code` reject a
mistyped digit or two swapped neighbours before any lookup, so a typo is reported as a typo and
not as a forgery. The format, what the codes protect against and what not, and key rotation are in
``docs/collection-codes.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Final

import attrs

from sap_payments.errors import InvalidInput

__all__ = [
    "CODE_DIGITS",
    "MAC_DIGITS",
    "MIN_SECRET_BYTES",
    "CollectionKey",
    "InvalidCollectionCode",
    "collection_code",
    "damm_check_digit",
    "damm_valid",
    "normalise_code",
    "verify_code",
]

#: Digits taken from the MAC: a random guess verifies with probability about 10**-10.
MAC_DIGITS: Final = 10
#: Digits of a whole code: the MAC digits and one Damm check digit.
CODE_DIGITS: Final = MAC_DIGITS + 1
#: The shortest agency secret accepted: 256 bits, the output size of SHA-256.
MIN_SECRET_BYTES: Final = 32

#: Leading bytes of the HMAC read as a big-endian integer and reduced mod 10**MAC_DIGITS. With 64
#: bits the most likely value is more likely than the least likely one by a factor of
#: 1 + 1/floor(2**64 / 10**10), about 1 + 5.4e-10 (see docs/collection-codes.md, "Bias").
_MAC_BYTES: Final = 8
#: Labels the MAC input, so that a MAC made with the same secret for another purpose, or by a
#: later version of this format, is never taken for a collection code.
_DOMAIN: Final = "sap-payments/collection-code/v1"
#: Separates the fields of the MAC input (ASCII unit separator); refused inside a field.
_SEPARATOR: Final = "\x1f"
#: Groups of the printed form: 4 + 4 + 3 digits. A Vietnamese mobile number has 10 digits,
#: usually grouped 4-3-3, so the code neither looks nor reads like one.
_GROUPS: Final = (4, 4, 3)
#: What a clerk may type between digits: spaces (any whitespace) and dashes (ASCII and the
#: typographic ones a word processor substitutes).
_FILLER: Final = re.compile(r"[\s\-\u2010\u2011\u2012\u2013\u2014\u2212]+")
_ASCII_DIGITS: Final = frozenset("0123456789")

#: The Damm algorithm's quasigroup of order 10: the table of H. Michael Damm's thesis "Total
#: anti-symmetrische Quasigruppen" (Marburg, 2004), as Wikipedia's "Damm algorithm" gives it.
#: Row: interim digit, column: next digit. Its diagonal is 0 and it is totally anti-symmetric,
#: which is what makes the check digit catch every single-digit error and every transposition of
#: adjacent digits; the tests check both properties of the table exhaustively.
_DAMM: Final[tuple[tuple[int, ...], ...]] = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


class InvalidCollectionCode(InvalidInput):
    """Text that is not a well-formed collection code: a wrong length, a character other than a
    digit, space or dash, or a check digit that does not match (a mistyped or swapped digit).

    ``reason`` says which, for the clerk. Neither the message nor the error holds the text given:
    a collection code is a credential and should not end up in logs.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a valid collection code: {reason}")
        self.reason = reason


def _check_key_id(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"a key id is a str, not {type(value).__name__}")
    if not value or not value.isprintable() or value != value.strip():
        raise InvalidInput(f"key id {value!r}: expected printable text without surrounding spaces")


def _check_secret(_instance: object, _attribute: object, value: bytes) -> None:
    # attrs.validators.instance_of would quote the value in its message: the secret itself.
    if not isinstance(value, bytes):
        raise TypeError(f"a collection key secret is bytes, not {type(value).__name__}")
    if len(value) < MIN_SECRET_BYTES:
        raise InvalidInput(
            f"a collection key secret needs at least {MIN_SECRET_BYTES} bytes, got {len(value)}"
        )


@attrs.frozen
class CollectionKey:
    """An agency secret that collection codes are computed with, and the id it is known by.

    ``secret`` is at least :data:`MIN_SECRET_BYTES` random bytes. It is left out of the ``repr``
    (and so of ``str``), which shows the id only; the id goes into logs and reports, to say which
    key verified a code. Several keys may be current at once while one replaces another: see
    :func:`verify_code`.

    >>> CollectionKey("2021-key-1", bytes(range(32)))
    CollectionKey(key_id='2021-key-1')
    """

    key_id: str = attrs.field(validator=_check_key_id)
    secret: bytes = attrs.field(validator=_check_secret, repr=False)

    @classmethod
    def from_hex(cls, key_id: str, text: str) -> CollectionKey:
        """The key whose secret is written as hexadecimal ``text`` (spaces between bytes allowed),
        e.g. as made by ``python -c "import secrets; print(secrets.token_hex(32))"``.

        Raises:
            InvalidInput: ``text`` is not hexadecimal, or is shorter than 32 bytes. The message
                never quotes it.
        """
        try:
            secret = bytes.fromhex(text)
        except (TypeError, ValueError):
            # ``from None``: the parser's own message says where the text went wrong, which is
            # part of the secret; keep it out of tracebacks.
            raise InvalidInput(
                f"collection key {key_id}: the secret is not hexadecimal "
                "(two hex digits per byte, e.g. from secrets.token_hex(32))"
            ) from None
        return cls(key_id, secret)


def damm_check_digit(digits: str) -> str:
    """The Damm check digit of a string of ASCII digits: appended, it makes :func:`damm_valid`
    true.

    >>> damm_check_digit("572")
    '4'

    Raises:
        InvalidInput: ``digits`` holds something other than ASCII digits 0-9.
    """
    if not _ASCII_DIGITS.issuperset(digits):
        raise InvalidInput("a Damm check digit is computed over the digits 0-9 only")
    return str(_damm_interim(digits))


def damm_valid(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits, the last one the check digit) passes the Damm check.

    >>> damm_valid("5724"), damm_valid("5734"), damm_valid("7524")
    (True, False, False)

    An empty string or one with anything but ASCII digits is not valid.
    """
    return bool(digits) and _ASCII_DIGITS.issuperset(digits) and _damm_interim(digits) == 0


def _damm_interim(digits: str) -> int:
    interim = 0
    for digit in digits:
        interim = _DAMM[interim][ord(digit) - 48]
    return interim


def _mac_message(instruction_id: str, amount_minor: int, pay_point: str) -> bytes | str:
    """The MAC input for these fields, or why they cannot have a code (a str)."""
    if type(amount_minor) is not int:
        # A programming error (a float, Decimal or bool amount), not bad data: TypeError as Money.
        raise TypeError(
            f"amount_minor is whole minor units (int), not {type(amount_minor).__name__}"
        )
    encoded = []
    for name, value in (("instruction_id", instruction_id), ("pay_point", pay_point)):
        if not isinstance(value, str):
            raise TypeError(f"{name} is a str, not {type(value).__name__}")
        if not value:
            return f"{name} is empty"
        if _SEPARATOR in value:
            # Refused, not escaped: were it allowed inside a field, ("a\x1f5", 7, "P") and
            # ("a", 5, "7\x1fP") would be one message and so share a code.
            return f"{name} contains the unit separator U+001F"
        try:
            encoded.append(value.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate, e.g. from a badly decoded file
            return f"{name} is not valid Unicode text"
    if amount_minor <= 0:
        return f"amount_minor {amount_minor} is not positive; only a payout has a code"
    instruction, point = encoded
    fields = (_DOMAIN.encode("ascii"), instruction, str(amount_minor).encode("ascii"), point)
    return _SEPARATOR.encode("ascii").join(fields)


def _mac_digits(secret: bytes, message: bytes) -> str:
    mac = hmac.digest(secret, message, hashlib.sha256)
    value = int.from_bytes(mac[:_MAC_BYTES], "big") % 10**MAC_DIGITS
    return f"{value:0{MAC_DIGITS}d}"


def _format(digits: str) -> str:
    groups: list[str] = []
    start = 0
    for size in _GROUPS:
        groups.append(digits[start : start + size])
        start += size
    return " ".join(groups)


def collection_code(
    key: CollectionKey, instruction_id: str, amount_minor: int, pay_point: str
) -> str:
    """The collection code of one cash instruction, formatted for print: ``"4821 0937 558"``.

    The same inputs give the same code, every time the payout list is printed; a change of amount
    or pay point gives another. The fields are taken exactly as given (no trimming, case folding
    or Unicode normalisation): pass the ledger's own values.

    Args:
        key: the agency's current :class:`CollectionKey`.
        instruction_id: the instruction's id (unique across cycles).
        amount_minor: the amount to pay out, in minor units (đồng); positive.
        pay_point: the pay point (post office) where the cash is to be collected.

    Raises:
        InvalidInput: an empty id or pay point, one that holds U+001F, or an amount that is not
            positive.
        TypeError: an amount that is not an ``int`` (a float, a bool, a Decimal).
    """
    message = _mac_message(instruction_id, amount_minor, pay_point)
    if isinstance(message, str):
        raise InvalidInput(f"instruction {instruction_id}: no collection code: {message}")
    digits = _mac_digits(key.secret, message)
    return _format(digits + damm_check_digit(digits))


def normalise_code(text: str) -> str:
    """The 11 digits of a code as typed or read back, without its spaces and dashes.

    >>> normalise_code(" 5976 6873-057 ")
    '59766873057'

    The check digit is checked here, so a mistyped digit or two swapped neighbours are reported as
    such, before any lookup; a code that passes may still be the wrong one (see
    :func:`verify_code`).

    Raises:
        InvalidCollectionCode: a character other than an ASCII digit, space or dash; not 11
            digits; or a check digit that does not match.
    """
    if not isinstance(text, str):
        raise TypeError(f"a collection code is a str, not {type(text).__name__}")
    digits = _FILLER.sub("", text)
    for position, char in enumerate(digits, start=1):
        if char not in _ASCII_DIGITS:
            raise InvalidCollectionCode(
                f"character {position} is not a digit 0-9 (only digits, spaces and dashes)"
            )
    if len(digits) != CODE_DIGITS:
        raise InvalidCollectionCode(f"expected {CODE_DIGITS} digits, got {len(digits)}")
    if not damm_valid(digits):
        raise InvalidCollectionCode(
            "the check digit does not match: a digit is mistyped or two digits are swapped"
        )
    return digits


def verify_code(
    code: str,
    instruction_id: str,
    amount_minor: int,
    pay_point: str,
    keys: Sequence[CollectionKey],
) -> CollectionKey | None:
    """The key under which ``code`` is the code of this instruction, amount and pay point; None if
    there is none: a wrong code, or one made for another instruction, amount or pay point, or
    under a key that is not in ``keys``.

    A code does not say which key made it, so each key is tried: list the current key and the
    previous ones still needed for confirmations to come. Every key is tried, and the digits are
    compared with :func:`hmac.compare_digest`, so the time taken says nothing about how close a
    guess came. Fields that could never have had a code (an empty id, an amount that is not
    positive) verify nothing: None.

    Verifying says the code is genuine for these values; it does not say the code has not been
    used before. That is the ledger's record, kept by the confirmation import.

    Raises:
        InvalidCollectionCode: ``code`` is malformed (see :func:`normalise_code`).
        InvalidInput: ``keys`` is empty, which would make every code look wrong.
        TypeError: an amount that is not an ``int``.
    """
    digits = normalise_code(code)
    if not keys:
        raise InvalidInput("no collection keys to verify codes with: configure the current key")
    message = _mac_message(instruction_id, amount_minor, pay_point)
    if isinstance(message, str):
        return None
    given = digits[:MAC_DIGITS].encode("ascii")
    found: CollectionKey | None = None
    for key in keys:
        expected = _mac_digits(key.secret, message).encode("ascii")
        if hmac.compare_digest(expected, given) and found is None:
            found = key
    return found
