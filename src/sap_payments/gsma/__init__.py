"""E-wallet disbursements over the GSMA Mobile Money API 1.2 (plugin ``gsma-mobile-money``).

* :class:`GsmaProvider` — the adapter (single and bulk disbursements, status by
  ``/responses/{clientCorrelationId}``, account status and name checks);
* :class:`CallbackHandler` / :func:`apply_callback` — the operator's callbacks, checked
  (``X-Content-Hash``, Standard Webhooks signature, replays) and applied;
* :mod:`sap_payments.testing.gsma_server` — a conformant sandbox server to test against.

``docs/mobile-money.md`` describes the settings, the idempotency scheme and the error mapping.
"""

from __future__ import annotations

from sap_payments.gsma._http import (
    GsmaAuthorisationError,
    GsmaError,
    GsmaMalformedAnswer,
    GsmaMismatchedAnswer,
    GsmaRequestRejected,
)
from sap_payments.gsma._wire import (
    ACCOUNT_REASONS,
    ERROR_REASONS,
    REQUEST_ERRORS,
    amount_text,
    batch_correlation_id,
    correlation_id,
    parse_amount,
)
from sap_payments.gsma.callbacks import (
    CallbackHandler,
    CallbackResponse,
    InvalidSignature,
    apply_callback,
    sign_webhook,
    verify_webhook,
)
from sap_payments.gsma.journal import Journal
from sap_payments.gsma.provider import GsmaProvider, gsma_mobile_money, names_match
from sap_payments.gsma.settings import GsmaSettings

__all__ = [
    "ACCOUNT_REASONS",
    "ERROR_REASONS",
    "REQUEST_ERRORS",
    "CallbackHandler",
    "CallbackResponse",
    "GsmaAuthorisationError",
    "GsmaError",
    "GsmaMalformedAnswer",
    "GsmaMismatchedAnswer",
    "GsmaProvider",
    "GsmaRequestRejected",
    "GsmaSettings",
    "InvalidSignature",
    "Journal",
    "amount_text",
    "apply_callback",
    "batch_correlation_id",
    "correlation_id",
    "gsma_mobile_money",
    "names_match",
    "parse_amount",
    "sign_webhook",
    "verify_webhook",
]
