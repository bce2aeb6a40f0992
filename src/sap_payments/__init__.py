"""sap_payments: pay social assistance electronically.

The public API is what this module exports (``__all__``); everything else is an implementation
detail that may change. Start with :class:`Ledger`::

    from sap_payments import Ledger

    with Ledger.open("sap-payments.db") as ledger:
        ledger.import_roster("roster.csv")
        ledger.prepare("2021-09")
        ledger.approve("2021-09", by="Trưởng phòng BTXH")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from sap_payments.areas import Area
from sap_payments.audit import (
    AuditFailed,
    AuditProblem,
    AuditReport,
    Checkpoint,
    InvalidCheckpoint,
    make_checkpoint,
)
from sap_payments.audit import verify as verify_audit
from sap_payments.beneficiaries import (
    BankAccount,
    Beneficiary,
    CashPickup,
    Channel,
    Decision,
    Enrolment,
    FinancialAddress,
    Mandate,
    Proxy,
    Sex,
    Status,
    WalletAddress,
    normalise_msisdn,
    parse_address,
)
from sap_payments.changes import Change, ChangeReport, change_report
from sap_payments.collection_codes import (
    CollectionKey,
    InvalidCollectionCode,
    collection_code,
    verify_code,
)
from sap_payments.config import DEFAULT_PROGRAMME, Config, ProviderConfig
from sap_payments.coverage import (
    CoverageLine,
    CoverageReport,
    CoverageTrend,
    NoCycles,
    SettlementLine,
    SettlementReport,
    Share,
    Tally,
    TrendRow,
    coverage_report,
    coverage_trend,
    settlement_report,
)
from sap_payments.crypto import (
    DecryptionError,
    ErasureRefused,
    Keyring,
    KeyringError,
    KeyringMismatch,
    KeyringNotFound,
)
from sap_payments.cycles import (
    ApprovalResult,
    ControlTotal,
    PrepareResult,
    approve,
    instruction_id,
    prepare,
    transition,
)
from sap_payments.enrolment import (
    CampaignError,
    CampaignNotFound,
    CampaignSummary,
    EnrolmentImport,
    InvalidEnrolmentResults,
    RunResult,
    campaign_summary,
    create_campaign,
    import_enrolment_results,
    run_campaign,
    schedule_campaign,
)
from sap_payments.enrolment_report import EnrolmentLine, EnrolmentReport, enrolment_report
from sap_payments.entitlements import Entitlement, due_months
from sap_payments.errors import (
    ConfigError,
    CurrencyMismatch,
    CycleNotFound,
    CycleStateError,
    InstructionNotFound,
    InvalidInput,
    InvalidPeriod,
    InvalidRoster,
    InvalidRuleSet,
    InvalidTransition,
    RowProblem,
    SapPaymentsError,
    SchemaVersionError,
    StateError,
    StoreError,
    UnknownCategory,
)
from sap_payments.instructions import (
    FINAL_STATES,
    OPEN_STATES,
    REPAYABLE_STATES,
    TRANSITIONS,
    Event,
    Instruction,
    InstructionState,
    LineKind,
    check_transition,
)
from sap_payments.ledger import Ledger
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.postal import (
    Anomaly,
    AnomalyReport,
    ConfirmationImport,
    InvalidConfirmations,
    PostalCashProvider,
    ReviewLine,
    WindowClose,
    WindowStillOpen,
    anomaly_report,
    close_window,
    import_confirmations,
)
from sap_payments.public_list import (
    NoPublicLines,
    PublicLine,
    PublicList,
    mask_name,
    mask_national_id,
    public_list,
)
from sap_payments.roster import ROSTER_COLUMNS, ImportResult, import_areas, import_roster
from sap_payments.rules import Category, RuleSet, StandardLevel
from sap_payments.signing import (
    ApprovalMismatch,
    ApprovalRefused,
    KeyFileError,
    SignatureError,
    add_approver,
    generate_signing_key,
    load_private_key,
    load_public_key,
)
from sap_payments.sqlite_store import SQLiteStore
from sap_payments.store import Store
from sap_payments.vietqr import InvalidVietQR, VietQR, parse_vietqr

try:
    __version__ = _version("sap-payments")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree, not installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_PROGRAMME",
    "FINAL_STATES",
    "OPEN_STATES",
    "REPAYABLE_STATES",
    "ROSTER_COLUMNS",
    "TRANSITIONS",
    "Anomaly",
    "AnomalyReport",
    "ApprovalMismatch",
    "ApprovalRefused",
    "ApprovalResult",
    "Area",
    "AuditFailed",
    "AuditProblem",
    "AuditReport",
    "BankAccount",
    "Beneficiary",
    "CampaignError",
    "CampaignNotFound",
    "CampaignSummary",
    "CashPickup",
    "Category",
    "Change",
    "ChangeReport",
    "Channel",
    "Checkpoint",
    "CollectionKey",
    "Config",
    "ConfigError",
    "ConfirmationImport",
    "ControlTotal",
    "CoverageLine",
    "CoverageReport",
    "CoverageTrend",
    "CurrencyMismatch",
    "CycleNotFound",
    "CycleStateError",
    "Decision",
    "DecryptionError",
    "Enrolment",
    "EnrolmentImport",
    "EnrolmentLine",
    "EnrolmentReport",
    "Entitlement",
    "ErasureRefused",
    "Event",
    "FinancialAddress",
    "ImportResult",
    "Instruction",
    "InstructionNotFound",
    "InstructionState",
    "InvalidCheckpoint",
    "InvalidCollectionCode",
    "InvalidConfirmations",
    "InvalidEnrolmentResults",
    "InvalidInput",
    "InvalidPeriod",
    "InvalidRoster",
    "InvalidRuleSet",
    "InvalidTransition",
    "InvalidVietQR",
    "KeyFileError",
    "Keyring",
    "KeyringError",
    "KeyringMismatch",
    "KeyringNotFound",
    "Ledger",
    "LineKind",
    "Mandate",
    "Money",
    "NoCycles",
    "NoPublicLines",
    "Period",
    "PostalCashProvider",
    "PrepareResult",
    "ProviderConfig",
    "Proxy",
    "PublicLine",
    "PublicList",
    "ReviewLine",
    "RowProblem",
    "RuleSet",
    "RunResult",
    "SQLiteStore",
    "SapPaymentsError",
    "SchemaVersionError",
    "SettlementLine",
    "SettlementReport",
    "Sex",
    "Share",
    "SignatureError",
    "StandardLevel",
    "StateError",
    "Status",
    "Store",
    "StoreError",
    "Tally",
    "TrendRow",
    "UnknownCategory",
    "VietQR",
    "WalletAddress",
    "WindowClose",
    "WindowStillOpen",
    "__version__",
    "add_approver",
    "anomaly_report",
    "approve",
    "campaign_summary",
    "change_report",
    "check_transition",
    "close_window",
    "collection_code",
    "coverage_report",
    "coverage_trend",
    "create_campaign",
    "due_months",
    "enrolment_report",
    "generate_signing_key",
    "import_areas",
    "import_confirmations",
    "import_enrolment_results",
    "import_roster",
    "instruction_id",
    "load_private_key",
    "load_public_key",
    "make_checkpoint",
    "mask_name",
    "mask_national_id",
    "normalise_msisdn",
    "parse_address",
    "parse_vietqr",
    "prepare",
    "public_list",
    "run_campaign",
    "schedule_campaign",
    "settlement_report",
    "transition",
    "verify_audit",
    "verify_code",
]
