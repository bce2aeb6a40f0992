"""Tools for testing with sap_payments and for proving provider plugins.

* :mod:`sap_payments.testing.sandbox` — deterministic sandbox providers for the three channels
  (entry points ``sandbox-ewallet``, ``sandbox-bank``, ``sandbox-postal``), with books a test
  can inspect: how often money moved for a key, in what order, how often a key was polled.
* :mod:`sap_payments.testing.conformance` — the checks a third-party provider plugin runs
  against itself: :func:`check_provider`, or :class:`ProviderConformance` to subclass in a
  pytest module.
* :mod:`sap_payments.testing.gsma_server` — a GSMA Mobile Money API sandbox HTTP server on
  loopback, with injectable faults (imported on its own: ``docs/mobile-money.md``).

Neither needs pytest to import. ``docs/plugins.md`` walks through writing and proving a plugin.
"""

from __future__ import annotations

from sap_payments.testing.conformance import (
    CHECKS,
    HOSTILE,
    Answers,
    Check,
    ConformanceFailure,
    Hostile,
    MakeKey,
    MakePayment,
    MoneyProbe,
    ProviderConformance,
    check_provider,
    default_payment,
    instruction_key,
    run_check,
)
from sap_payments.testing.sandbox import (
    REPORT_FORMAT,
    SandboxProvider,
    SandboxSettings,
    bank,
    ewallet,
    postal,
)

__all__ = [
    "CHECKS",
    "HOSTILE",
    "REPORT_FORMAT",
    "Answers",
    "Check",
    "ConformanceFailure",
    "Hostile",
    "MakeKey",
    "MakePayment",
    "MoneyProbe",
    "ProviderConformance",
    "SandboxProvider",
    "SandboxSettings",
    "bank",
    "check_provider",
    "default_payment",
    "ewallet",
    "instruction_key",
    "postal",
    "run_check",
]
