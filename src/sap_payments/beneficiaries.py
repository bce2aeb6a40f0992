"""Beneficiaries, their decisions and their mandates.

* :class:`Beneficiary` — the person (đối tượng), with area, category and status.
* :class:`Decision` — the legal basis (quyết định hưởng): programme, category, coefficient override,
  the first and last benefit month, and the month through which payment was settled before this
  system took over (``paid_through``: those months are never paid again).
* :class:`Mandate` — to whom and how (phương thức nhận / ủy quyền): the payee (the beneficiary,
  or an authorised :class:`Proxy` valid through a date), and the ordered financial addresses:
  the first is used, the others are fallbacks.
* Financial addresses: :class:`WalletAddress` (MSISDN in E.164), :class:`BankAccount` (NAPAS BIN +
  account number) and :class:`CashPickup` (pay point, home delivery).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from decimal import Decimal

import attrs

from sap_payments.areas import Area
from sap_payments.errors import InvalidInput
from sap_payments.periods import Period

__all__ = [
    "BankAccount",
    "Beneficiary",
    "CashPickup",
    "Channel",
    "Decision",
    "Enrolment",
    "FinancialAddress",
    "Mandate",
    "Proxy",
    "Sex",
    "Status",
    "WalletAddress",
    "nfc",
    "normalise_msisdn",
    "parse_address",
]


def nfc(text: str) -> str:
    """Unicode NFC with surrounding white space removed: how every name is stored and compared."""
    return unicodedata.normalize("NFC", text).strip()


class Channel(enum.StrEnum):
    EWALLET = "ewallet"
    BANK = "bank"
    POSTAL = "postal"

    @property
    def electronic(self) -> bool:
        return self is not Channel.POSTAL


class Status(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CEASED = "ceased"


class Sex(enum.StrEnum):
    MALE = "M"
    FEMALE = "F"


_MSISDN = re.compile(r"(?:\+?84|0)([35789]\d{8})")


def normalise_msisdn(text: str) -> str:
    """A Vietnamese mobile number in E.164 (``+84…``); local ``09xxxxxxxx`` and ``+849…`` accepted.

    >>> normalise_msisdn("0912 345 678"), normalise_msisdn("+84912345678")
    ('+84912345678', '+84912345678')
    """
    compact = re.sub(r"[\s.-]", "", text)
    match = _MSISDN.fullmatch(compact)
    if match is None:
        raise InvalidInput("not a Vietnamese mobile number (09xxxxxxxx or +849xxxxxxxx)")
    return "+84" + match[1]


@attrs.frozen
class WalletAddress:
    """An e-wallet / mobile-money account, identified by its MSISDN."""

    msisdn: str
    provider: str | None = None
    channel: Channel = attrs.field(default=Channel.EWALLET, init=False)

    @property
    def key(self) -> str:
        return f"ewallet:{self.msisdn}"


@attrs.frozen
class BankAccount:
    """A bank account: the NAPAS member BIN and the account number."""

    bank_bin: str
    account_number: str
    provider: str | None = None
    channel: Channel = attrs.field(default=Channel.BANK, init=False)

    @property
    def key(self) -> str:
        return f"bank:{self.bank_bin}:{self.account_number}"


@attrs.frozen
class CashPickup:
    """Cash at a pay point (a commune post office), or delivered at home."""

    pay_point: str
    home_delivery: bool = False
    provider: str | None = None
    channel: Channel = attrs.field(default=Channel.POSTAL, init=False)

    @property
    def key(self) -> str:
        return f"postal:{self.pay_point}" + (":home" if self.home_delivery else "")


FinancialAddress = WalletAddress | BankAccount | CashPickup


def parse_address(key: str, provider: str | None = None) -> FinancialAddress:
    """The address whose :attr:`key` is ``key`` (the form instructions store)."""
    kind, _, rest = key.partition(":")
    if kind == "ewallet" and rest:
        return WalletAddress(rest, provider)
    if kind == "bank" and rest.count(":") == 1:
        bank_bin, account = rest.split(":")
        return BankAccount(bank_bin, account, provider)
    if kind == "postal" and rest:
        point, _, home = rest.partition(":")
        return CashPickup(point, home == "home", provider)
    raise InvalidInput(f"not a financial address key: {kind!r}")


@attrs.frozen
class Proxy:
    """A person authorised to receive the payment for the beneficiary (người được ủy quyền)."""

    name: str = attrs.field(converter=nfc)
    relation: str = attrs.field(converter=nfc)
    national_id: str | None = None


@attrs.frozen
class Mandate:
    """To whom and how a beneficiary is paid."""

    beneficiary_id: str
    addresses: tuple[FinancialAddress, ...]
    proxy: Proxy | None = None
    valid_until: dt.date | None = None

    def __attrs_post_init__(self) -> None:
        if not self.addresses:
            raise InvalidInput(f"mandate of {self.beneficiary_id} has no financial address")

    @property
    def primary(self) -> FinancialAddress:
        return self.addresses[0]

    @property
    def fallbacks(self) -> tuple[FinancialAddress, ...]:
        return self.addresses[1:]

    def expired_for(self, period: Period) -> bool:
        """True when a proxy's authorisation ended before ``period`` began."""
        return (
            self.proxy is not None
            and self.valid_until is not None
            and self.valid_until < period.first_day
        )


@attrs.frozen
class Decision:
    """The legal basis of a beneficiary's monthly entitlement."""

    programme: str
    category: str
    first_period: Period
    coefficient: Decimal | None = None
    last_period: Period | None = None
    paid_through: Period | None = None

    def first_payable(self) -> Period:
        """The first month this system may pay: after ``paid_through``, from ``first_period``."""
        if self.paid_through is not None and self.paid_through >= self.first_period:
            return self.paid_through.next()
        return self.first_period


@attrs.frozen
class Beneficiary:
    """A person entitled to social assistance."""

    beneficiary_id: str
    full_name: str = attrs.field(converter=nfc)
    area: Area
    category: str
    status: Status = Status.ACTIVE
    national_id: str | None = None
    birth_date: dt.date | None = None
    sex: Sex | None = None


@attrs.frozen
class Enrolment:
    """A beneficiary with the decision they are paid under and the mandate they are paid by."""

    beneficiary: Beneficiary
    decision: Decision
    mandate: Mandate
