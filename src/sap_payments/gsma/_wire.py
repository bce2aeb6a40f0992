"""What travels on the wire: correlation ids, amounts, error objects and their meaning.

Pure functions, no I/O; shared by the adapter (:mod:`sap_payments.gsma.provider`) and the sandbox
server (:mod:`sap_payments.testing.gsma_server`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
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


#: A GSMA ``amount``: digits, and at most four after a point (the spec's pattern, but lenient
#: about leading zeros and trailing zeros, which some operators send: ``"007"``, ``"7.50"``).
_AMOUNT: Final = re.compile(r"([0-9]{1,18})(?:\.([0-9]{1,4}))?")


def parse_amount(text: str, currency: str) -> Money:
    """The Money a GSMA ``amount`` string stands for.

    Only plain decimal text is read — at most 18 digits before the point and 4 after it, as the
    GSMA schema allows — so an operator's answer can never make us build a huge number
    (``"1e999999999"``), an infinity or a NaN.

    >>> parse_amount("360000", "VND"), parse_amount("12.30", "USD")
    (Money(minor=360000, currency='VND'), Money(minor=1230, currency='USD'))

    Raises:
        ValueError: not such an amount, finer than the currency's minor unit, or a currency
            sap_payments does not know.
    """
    places = MINOR_UNITS.get(currency) if isinstance(currency, str) else None
    if places is None:
        raise ValueError(f"unknown currency {str(currency)[:8]!r}")
    match = _AMOUNT.fullmatch(text) if isinstance(text, str) and text.isascii() else None
    if match is None:
        raise ValueError(f"not an amount: {str(text)[:32]!r}")
    whole, fraction = match.group(1), (match.group(2) or "").rstrip("0")
    if len(fraction) > places:
        raise ValueError(f"amount {text!r} is not whole minor units of {currency}")
    return Money(int(whole) * 10**places + int(fraction.ljust(places, "0") or "0"), currency)


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
