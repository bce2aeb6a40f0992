"""What travels on the wire: correlation ids, amounts, error objects and their meaning.

Pure functions, no I/O; shared by the adapter (:mod:`sap_payments.gsma.provider`) and the sandbox
server (:mod:`sap_payments.testing.gsma_server`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sap_payments.money import MINOR_UNITS, Money
from sap_payments.providers import Reason

__all__ = [
    "ACCOUNT_REASONS",
    "DEFAULT_NAMESPACE",
    "ERROR_REASONS",
    "REQUEST_ERRORS",
    "amount_text",
    "batch_correlation_id",
    "content_hash",
    "correlation_id",
    "error_object",
    "parse_amount",
    "rejection_reason",
    "x_date",
]

#: The namespace of the correlation ids sap_payments derives (uuid5 of this URL).
DEFAULT_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sap-payments:gsma-mmapi:1.2")


def correlation_id(key: str, namespace: uuid.UUID = DEFAULT_NAMESPACE) -> str:
    """The ``X-CorrelationID`` of a single disbursement: a UUID derived from the instruction key
    alone, so a resend after a crash carries the same id.

    >>> correlation_id("I-1") == correlation_id("I-1") != correlation_id("I-2")
    True
    """
    return str(uuid.uuid5(namespace, f"single:{key}"))


def batch_correlation_id(keys: Iterable[str], namespace: uuid.UUID = DEFAULT_NAMESPACE) -> str:
    """The ``X-CorrelationID`` of a batch: a UUID over its keys, sorted (order does not matter)."""
    return str(uuid.uuid5(namespace, "batch:" + "\n".join(sorted(set(keys)))))


def content_hash(body: bytes) -> str:
    """``X-Content-Hash``: the SHA-256 hex digest of the body, as GSMA defines it."""
    return hashlib.sha256(body).hexdigest()


def x_date(now: dt.datetime | None = None) -> str:
    """``X-Date``: an RFC 3339 date-time in UTC."""
    return (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")


def amount_text(money: Money) -> str:
    """A GSMA ``amount``: a decimal string, no trailing zeros after the point.

    >>> amount_text(Money.vnd(360_000)), amount_text(Money(1230, "USD"))
    ('360000', '12.3')
    >>> amount_text(Money(5, "USD")), amount_text(Money(700, "USD"))
    ('0.05', '7')
    """
    places = MINOR_UNITS[money.currency]
    if places == 0:
        return str(money.minor)
    whole, fraction = divmod(money.minor, 10**places)
    digits = f"{fraction:0{places}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def parse_amount(text: str, currency: str) -> Money:
    """The Money a GSMA ``amount`` string stands for.

    Raises:
        ValueError: not a decimal amount, or finer than the currency's minor unit.
    """
    places = MINOR_UNITS[currency]
    if text.isdigit() and text.isascii():  # the common case: whole units, no point
        return Money(int(text) * 10**places, currency)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value() or value < 0:
        raise ValueError(f"amount {text!r} is not whole minor units of {currency}")
    return Money(int(scaled), currency)


# -- errors ---------------------------------------------------------------------------------------
#: GSMA ``errorCode`` → our reason, for codes that say the *payee's* account cannot take this
#: payment: the payment fails (final) and the instruction is re-routed.
ERROR_REASONS: Final[Mapping[str, Reason]] = {
    "identifierError": Reason.UNKNOWN_ACCOUNT,
    "incorrectState": Reason.INACTIVE_WALLET,
    "requestDeclined": Reason.REFUSED,
    "dailyVolumeLimitExceeded": Reason.LIMIT_EXCEEDED,
    "dailyValueLimitExceeded": Reason.LIMIT_EXCEEDED,
    "weeklyVolumeLimitExceeded": Reason.LIMIT_EXCEEDED,
    "weeklyValueLimitExceeded": Reason.LIMIT_EXCEEDED,
    "monthlyVolumeLimitExceeded": Reason.LIMIT_EXCEEDED,
    "monthlyValueLimitExceeded": Reason.LIMIT_EXCEEDED,
    "accountMaxTotalVolumeExceeded": Reason.LIMIT_EXCEEDED,
    "accountMaxTotalValueExceeded": Reason.LIMIT_EXCEEDED,
    "maxBalanceExceeded": Reason.LIMIT_EXCEEDED,
    "greaterThanTransactionMaxValue": Reason.LIMIT_EXCEEDED,
    "lessThanTransactionMinValue": Reason.LIMIT_EXCEEDED,
    "countryofOriginNotPermitted": Reason.REFUSED,
    "nationalityNotPermitted": Reason.REFUSED,
    "idDocumentNotSupported": Reason.REFUSED,
    "issuingCountryNotSupported": Reason.REFUSED,
}

#: Codes that concern the *request* (our configuration, our float, our credentials), not the
#: payee: answered synchronously they raise a typed error and fail no instruction.
REQUEST_ERRORS: Final = frozenset(
    {
        "genericError",
        "samePartiesError",
        "insufficientFunds",
        "underPaymentNotAllowed",
        "overPaymentNotAllowed",
        "transactionTypeError",
        "noMandateAuthority",
        "linkViolation",
        "quoteHasExpired",
        "lengthError",
        "formatError",
        "negativeValue",
        "currencyNotSupported",
        "mandatoryValueNotSupplied",
        "invalidOffset",
        "clientAuthorisationError",
        "servicingPartyAuthorisationError",
        "requestingPartyAuthorisationError",
    }
)

#: Account status (``/accounts/msisdn/{msisdn}/status``) → why a wallet cannot be paid.
ACCOUNT_REASONS: Final[Mapping[str, Reason]] = {
    "unavailable": Reason.INACTIVE_WALLET,
    "unregistered": Reason.UNKNOWN_ACCOUNT,
}


def error_object(
    category: str, code: str, description: str | None = None, *, at: dt.datetime | None = None
) -> dict[str, Any]:
    """A GSMA ``errorObject``."""
    error: dict[str, Any] = {"errorCategory": category, "errorCode": code}
    if description:
        error["errordescription"] = description[:256]
    error["errorDateTime"] = x_date(at)
    return error


def rejection_reason(text: str) -> Reason:
    """Our reason for a batch rejection's free-text ``rejectionReason``: its first word when that
    is a GSMA error code or account status, else a few plain words, else ``OTHER``."""
    first = text.strip().split(":", 1)[0].split(" ", 1)[0]
    if first in ERROR_REASONS:
        return ERROR_REASONS[first]
    if first in ACCOUNT_REASONS:
        return ACCOUNT_REASONS[first]
    lowered = text.lower()
    if "inactive" in lowered or "unavailable" in lowered:
        return Reason.INACTIVE_WALLET
    if "unregistered" in lowered or "not found" in lowered:
        return Reason.UNKNOWN_ACCOUNT
    if "limit" in lowered:
        return Reason.LIMIT_EXCEEDED
    return Reason.OTHER
