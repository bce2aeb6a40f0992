"""Cash paid out by the post office: the ``postal-cash`` provider plugin and what goes with it.

* :mod:`~sap_payments.postal.plugin` — the plugin: ``submit`` writes one payout list per pay
  point (CSV and printable XLSX, with the batch manifest) carrying each line's one-time
  collection code, and answers PENDING;
* :mod:`~sap_payments.postal.confirmations` — the post office's confirmation file: each code
  paid (when, by whom) or unclaimed; bad lines go to a review list, the rest applies once;
* :mod:`~sap_payments.postal.window` — closing the payment window: what was not collected
  becomes UNCLAIMED (owed back, due again as arrears); beneficiaries whose cash goes uncollected
  month after month are flagged for re-verification;
* :mod:`~sap_payments.postal.anomalies` — the anomaly report: proxies collecting for many,
  collections after a beneficiary ceased, phones and accounts shared by several beneficiaries.

The formats and rules are in ``docs/postal.md``.
"""

from __future__ import annotations

from sap_payments.postal.anomalies import (
    ANOMALY_COLUMNS,
    Anomaly,
    AnomalyReport,
    anomaly_report,
    write_anomaly_report,
)
from sap_payments.postal.confirmations import (
    CONFIRMATION_COLUMNS,
    REVIEW_COLUMNS,
    ConfirmationImport,
    InvalidConfirmations,
    ReviewLine,
    import_confirmations,
    write_review_csv,
)
from sap_payments.postal.plugin import PAYOUT_COLUMNS, PostalCashProvider, postal_cash
from sap_payments.postal.window import (
    FLAG_COLUMNS,
    REVERIFY,
    WindowClose,
    WindowStillOpen,
    close_window,
    write_flags,
)

__all__ = [
    "ANOMALY_COLUMNS",
    "CONFIRMATION_COLUMNS",
    "FLAG_COLUMNS",
    "PAYOUT_COLUMNS",
    "REVERIFY",
    "REVIEW_COLUMNS",
    "Anomaly",
    "AnomalyReport",
    "ConfirmationImport",
    "InvalidConfirmations",
    "PostalCashProvider",
    "ReviewLine",
    "WindowClose",
    "WindowStillOpen",
    "anomaly_report",
    "close_window",
    "import_confirmations",
    "postal_cash",
    "write_anomaly_report",
    "write_flags",
    "write_review_csv",
]
