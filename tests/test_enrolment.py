"""Account-opening campaigns (sap_payments.enrolment): targeting, attempts and their outcomes,
the provider's results file, and the switch of the mandate from a chosen month on."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import ConfigError, Ledger
from sap_payments.beneficiaries import Channel, FinancialAddress, WalletAddress
from sap_payments.config import Config
from sap_payments.enrolment import (
    CampaignError,
    CampaignNotFound,
    InvalidEnrolmentResults,
    apply_mandate_updates,
    create_campaign,
    run_campaign,
)
from sap_payments.periods import Period
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    ProviderTimeout,
    Reason,
    Result,
)
from sap_payments.testing.sandbox import SandboxProvider, ewallet

TOML = """
[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"
fail_per_mille = 0
late_per_mille = 0
return_per_mille = 0
enrol_already_per_mille = 0
enrol_refused_per_mille = 0
enrol_failed_per_mille = 0
dead_msisdns = ["0912000002"]
[providers.vietinbank]
plugin = "sandbox-bank"
channel = "bank"
fail_per_mille = 0
late_per_mille = 0
return_per_mille = 0
[providers.vnpost]
plugin = "sandbox-postal"
channel = "postal"
fail_per_mille = 0
late_per_mille = 0
return_per_mille = 0
unclaimed_per_mille = 0
[fallback_pay_points]
"20107" = "BD-20107"
"""

#: A VietQR code of TPBank (BIN 970423), account 0099999999 (from docs/vietqr.md).
VIETQR = (
    "00020101021138540010A00000072701240006970423011000999999990208QRIBFTTA53037045802VN6304CBB4"
)


def postal(beneficiary_id: str, commune: str = "20107", **overrides: str) -> dict[str, str]:
    columns = {
        "channel": "postal",
        "provider": "vnpost",
        "msisdn": "",
        "pay_point": f"BD-{commune}",
        "commune_code": commune,
    }
    return roster_row(beneficiary_id, **{**columns, **overrides})


#: B1–B4 cash in commune 20107 (B1, B2 with a known phone), B5 on a wallet there, B6 cash in
#: 20109 (district 483), B7 cash in 20107 but ceased.
ROSTER = (
    postal("B1", msisdn="0912000001"),
    postal("B2", msisdn="0912000002"),
    postal("B3"),
    postal("B4"),
    roster_row("B5", msisdn="0912000005"),
    postal("B6", commune="20109", district_code="483"),
    postal("B7", status="ceased", last_period="2021-06"),
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(tmp_path)
    opened.config = Config.loads(TOML)
    RosterLoader(tmp_path)(opened, *ROSTER)
    try:
        yield opened
    finally:
        opened.close()


def targets(ledger: Ledger, name: str = "c1") -> dict[str, str]:
    return {t.beneficiary_id: t.state for t in ledger.store.campaign_targets(name)}


def sandbox(**settings: object) -> SandboxProvider:
    base: dict[str, object] = {
        "enrol_already_per_mille": 0,
        "enrol_refused_per_mille": 0,
        "enrol_failed_per_mille": 0,
    }
    return ewallet("viettelpay", {**base, **settings})


def write_results(path: Path, rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


# -- targeting ------------------------------------------------------------------------------------
def test_a_campaign_targets_the_channel_in_the_communes_given(ledger: Ledger) -> None:
    summary = ledger.create_campaign("c1", provider="viettelpay", communes=["20107"], by="clerk")
    # not B5 (already on a wallet), not B6 (another commune), not B7 (ceased)
    assert targets(ledger) == dict.fromkeys(["B1", "B2", "B3", "B4"], "targeted")
    assert summary.targeted == 4
    assert summary.campaign.channel == "ewallet"
    assert summary.campaign.target_channel == "postal"
    assert summary.by_commune == {"20107": {"targeted": 4}}
    kinds = [e.kind for _, e in ledger.store.events() if e.kind.startswith("campaign.")]
    assert kinds == ["campaign.created"]


def test_a_campaign_targets_districts_too(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", districts=["483"])
    assert targets(ledger) == {"B6": "targeted"}
    ledger.create_campaign("c2", provider="viettelpay", communes=["20107"], districts=["483"])
    assert set(targets(ledger, "c2")) == {"B1", "B2", "B3", "B4", "B6"}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"provider": "viettelpay"}, CampaignError, "at least one commune"),
        ({"provider": "viettelpay", "communes": ["99999"]}, CampaignError, "no beneficiary"),
        ({"provider": "vnpost", "communes": ["20107"]}, CampaignError, "opens accounts"),
        (
            {"provider": "viettelpay", "communes": ["20107"], "channel": "ewallet"},
            CampaignError,
            "already",
        ),
        ({"provider": "momo", "communes": ["20107"]}, ConfigError, "not configured"),
    ],
)
def test_a_campaign_that_cannot_be_created(
    ledger: Ledger, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ledger.create_campaign("c1", **kwargs)  # type: ignore[arg-type]
    assert ledger.store.campaigns() == []


def test_a_campaign_name_is_taken_once(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    with pytest.raises(CampaignError, match="exists"):
        ledger.create_campaign("c1", provider="viettelpay", communes=["20109"])
    with pytest.raises(CampaignNotFound):
        ledger.campaign("nope")


# -- attempts through the provider ----------------------------------------------------------------
def test_run_opens_wallets_and_records_each_attempt(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    with sandbox() as provider:
        result = run_campaign(ledger.store, "c1", provider, by="field officer")
    assert result.attempted == 4
    assert result.outcomes == {"opened": 4}
    assert targets(ledger) == dict.fromkeys(["B1", "B2", "B3", "B4"], "opened")
    attempts = ledger.store.enrolment_attempts("c1")
    assert [(a.beneficiary_id, a.source, a.outcome, a.actor) for a in attempts] == [
        (ident, "enrol", "opened", "field officer") for ident in ("B1", "B2", "B3", "B4")
    ]
    assert all(a.at and a.provider_reference for a in attempts)
    # a second run has nothing left to try
    with sandbox() as provider:
        assert run_campaign(ledger.store, "c1", provider).attempted == 0


@pytest.mark.parametrize(
    ("settings", "outcome", "reason"),
    [
        ({"enrol_already_per_mille": 1000}, "already_had", None),
        ({"enrol_refused_per_mille": 1000}, "refused", "declined"),
        ({"enrol_failed_per_mille": 1000}, "failed", "identity_check_failed"),
    ],
)
def test_each_outcome_of_the_provider_is_recorded(
    ledger: Ledger, settings: dict[str, int], outcome: str, reason: str | None
) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    with sandbox(**settings) as provider:
        run_campaign(ledger.store, "c1", provider)
    assert set(targets(ledger).values()) == {outcome}
    assert {t.reason for t in ledger.store.campaign_targets("c1")} == {reason}


def test_a_pending_outcome_is_asked_again_on_the_next_run(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    with sandbox(enrol_pending_per_mille=1000, enrol_pending_polls=1) as provider:
        first = run_campaign(ledger.store, "c1", provider)
        second = run_campaign(ledger.store, "c1", provider)
    assert first.outcomes == {"pending": 4}
    assert second.outcomes == {"opened": 4}
    assert len(ledger.store.enrolment_attempts("c1")) == 8


def test_no_national_id_fails_the_identity_check(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        ledger.config = Config.loads(TOML)
        RosterLoader(tmp_path)(ledger, postal("B1", national_id=""))
        ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
        with sandbox() as provider:
            assert run_campaign(ledger.store, "c1", provider).outcomes == {"failed": 1}


def test_failed_targets_are_tried_again_only_when_asked(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    with sandbox(enrol_failed_per_mille=1000) as provider:
        run_campaign(ledger.store, "c1", provider)
    with sandbox() as provider:
        assert run_campaign(ledger.store, "c1", provider).attempted == 0
        again = run_campaign(ledger.store, "c1", provider, retry_failed=True)
    assert again.outcomes == {"opened": 4}


class Checking:
    """A provider that cannot open accounts but checks them (like the GSMA adapter's account
    status): dead numbers are inactive wallets."""

    def __init__(self, dead: frozenset[str] = frozenset(), *, validation: bool = True) -> None:
        self.name = "viettelpay"
        self.capabilities = Capabilities(
            channels=frozenset({Channel.EWALLET}), address_validation=validation
        )
        self.dead = dead
        self.checked: list[FinancialAddress] = []

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        raise AssertionError("a campaign never pays")

    def status(self, keys: Sequence[str]) -> list[Result]:
        raise AssertionError("a campaign never asks for payments")

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        self.checked.append(address)
        assert isinstance(address, WalletAddress)
        if address.msisdn in self.dead:
            return AddressCheck(ok=False, reason=Reason.INACTIVE_WALLET)
        return AddressCheck(ok=True)

    def parse_report(self, data: bytes) -> list[Result]:
        return []

    def close(self) -> None:
        pass


def test_a_provider_without_enrolment_confirms_the_wallets_already_known(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    provider = Checking(frozenset({"+84912000002"}))
    result = run_campaign(ledger.store, "c1", provider)
    assert result.outcomes == {"already_had": 1, "failed": 3}
    states = {t.beneficiary_id: (t.state, t.reason) for t in ledger.store.campaign_targets("c1")}
    assert states == {
        "B1": ("already_had", None),
        "B2": ("failed", "inactive_wallet"),
        "B3": ("failed", "no known account to confirm"),
        "B4": ("failed", "no known account to confirm"),
    }
    assert {a.source for a in ledger.store.enrolment_attempts("c1")} == {"validate"}
    assert [a.msisdn for a in provider.checked if isinstance(a, WalletAddress)] == [
        "+84912000001",
        "+84912000002",
    ]


def test_a_provider_that_can_neither_enrol_nor_check_is_refused(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    with pytest.raises(CampaignError, match="import its results"):
        run_campaign(ledger.store, "c1", Checking(validation=False))
    with sandbox() as other:
        other.name = "momo"
        with pytest.raises(CampaignError, match="provider viettelpay"):
            run_campaign(ledger.store, "c1", other)


def test_a_timeout_leaves_the_target_pending(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])

    class Slow(SandboxProvider):
        def enrol(self, request: object) -> object:  # type: ignore[override]
            raise ProviderTimeout(self.name, "read timed out")

    with Slow("viettelpay", Channel.EWALLET, {}) as provider:
        assert run_campaign(ledger.store, "c1", provider).outcomes == {"pending": 4}
    assert {t.reason for t in ledger.store.campaign_targets("c1")} == {"timeout"}


def test_the_ledger_runs_the_configured_provider(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    seen: list[tuple[int, int]] = []
    result = ledger.run_campaign(
        "c1", by="clerk", progress=lambda done, total: seen.append((done, total))
    )
    assert result.outcomes == {"opened": 4}
    assert seen == [(4, 4)]


# -- the provider's results file ------------------------------------------------------------------
COLUMNS = ("beneficiary_id", "outcome", "reason", "msisdn", "reference")


def test_a_results_file_sets_each_outcome_and_is_imported_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    path = write_results(
        tmp_path / "results.csv",
        [
            {"beneficiary_id": "B1", "outcome": "opened", "msisdn": "0912 000 001"},
            {"beneficiary_id": "B2", "outcome": "refused", "reason": "không muốn"},
            {"beneficiary_id": "B3", "outcome": "failed", "reason": "no national id card"},
            {"beneficiary_id": "B4", "outcome": "pending", "reference": "VTP-123"},
        ],
        COLUMNS,
    )
    done = ledger.import_enrolment_results("c1", path, by="clerk")
    assert not done.already_imported
    assert done.rows == 4
    assert done.outcomes == {"failed": 1, "opened": 1, "pending": 1, "refused": 1}
    assert targets(ledger) == {"B1": "opened", "B2": "refused", "B3": "failed", "B4": "pending"}
    attempts = ledger.store.enrolment_attempts("c1")
    assert {a.source for a in attempts} == {"import 2"}  # import 1 was the roster
    assert [a.provider_reference for a in attempts] == [None, None, None, "VTP-123"]
    # the same file again: nothing changes
    again = ledger.import_enrolment_results("c1", path, by="clerk")
    assert again.already_imported
    assert len(ledger.store.enrolment_attempts("c1")) == 4
    # the new account is kept for scheduling, normalised
    assert ledger.schedule_campaign("c1", "2021-10") == 1
    [update] = ledger.store.mandate_updates("monthly-allowance", ("scheduled",))
    assert (update.beneficiary_id, update.address) == ("B1", "ewallet:+84912000001")


@pytest.mark.parametrize(
    ("header", "row", "line", "column", "reason"),
    [
        (("beneficiary_id", "result"), {}, 1, "result", "unknown column"),
        (("beneficiary_id",), {}, 1, "outcome", "missing"),
        (
            COLUMNS,
            {"beneficiary_id": "B6", "outcome": "opened"},
            2,
            "beneficiary_id",
            "not a target",
        ),
        (
            COLUMNS,
            {"beneficiary_id": "B9", "outcome": "pending"},
            2,
            "beneficiary_id",
            "not a target",
        ),
        (COLUMNS, {"beneficiary_id": "B1", "outcome": "done"}, 2, "outcome", "must be one of"),
        (COLUMNS, {"beneficiary_id": "B1", "outcome": "refused"}, 2, "reason", "required"),
        (COLUMNS, {"beneficiary_id": "B1", "outcome": "opened"}, 2, "msisdn", "required"),
        (
            COLUMNS,
            {"beneficiary_id": "B1", "outcome": "failed", "reason": "x", "msisdn": "0912000001"},
            2,
            "msisdn",
            "must be empty",
        ),
        (
            COLUMNS,
            {"beneficiary_id": "B1", "outcome": "opened", "msisdn": "12345"},
            2,
            "msisdn",
            "not a Vietnamese mobile number",
        ),
        (
            ("beneficiary_id", "outcome", "vietqr"),
            {"beneficiary_id": "B1", "outcome": "opened", "vietqr": VIETQR},
            2,
            "vietqr",
            "switches to ewallet",
        ),
    ],
)
def test_a_bad_results_file_names_line_column_and_reason_and_applies_nothing(
    ledger: Ledger,
    tmp_path: Path,
    header: Sequence[str],
    row: dict[str, str],
    line: int,
    column: str,
    reason: str,
) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    good = {"beneficiary_id": "B4", "outcome": "pending"} if "outcome" in header else {}
    rows = [good, row] if good else [row]
    if good:
        line += 1
    path = write_results(
        tmp_path / "bad.csv", [{k: v for k, v in r.items() if k in header} for r in rows], header
    )
    with pytest.raises(InvalidEnrolmentResults) as caught:
        ledger.import_enrolment_results("c1", path)
    problem = caught.value.problems[0]
    assert (problem.line, problem.column) == (line, column)
    assert reason in problem.reason
    assert "nothing was imported" in str(caught.value)
    assert ledger.store.enrolment_attempts("c1") == []
    assert set(targets(ledger).values()) == {"targeted"}
    # no personal data in the message
    assert "0912000001" not in str(caught.value)
    assert "0099999999" not in str(caught.value)


def test_a_beneficiary_listed_twice_is_named_with_the_first_line(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    path = write_results(
        tmp_path / "twice.csv",
        [{"beneficiary_id": "B1", "outcome": "pending"}] * 2,
        ("beneficiary_id", "outcome"),
    )
    with pytest.raises(
        InvalidEnrolmentResults,
        match=r"line 3, column beneficiary_id: listed twice \(first on line 2\)",
    ):
        ledger.import_enrolment_results("c1", path)


def test_a_vietqr_column_gives_the_bank_account(ledger: Ledger, tmp_path: Path) -> None:
    ledger.create_campaign("bank", provider="vietinbank", communes=["20107"])
    path = write_results(
        tmp_path / "qr.csv",
        [
            {"beneficiary_id": "B1", "outcome": "opened", "vietqr": VIETQR},
            {
                "beneficiary_id": "B2",
                "outcome": "already_had",
                "bank_bin": "970415",
                "account_number": "123456789012",
            },
        ],
        ("beneficiary_id", "outcome", "vietqr", "bank_bin", "account_number"),
    )
    ledger.import_enrolment_results("bank", path)
    ledger.schedule_campaign("bank", "2021-09")
    updates = ledger.store.mandate_updates("monthly-allowance", ("scheduled",))
    assert [(u.beneficiary_id, u.channel, u.provider, u.address) for u in updates] == [
        ("B1", "bank", "vietinbank", "bank:970423:0099999999"),
        ("B2", "bank", "vietinbank", "bank:970415:123456789012"),
    ]


@pytest.mark.parametrize(
    ("cells", "column", "reason"),
    [
        ({"vietqr": VIETQR[:-4] + "0000"}, "vietqr", "crc"),
        ({"vietqr": "hello"}, "vietqr", "crc"),
        (
            {"vietqr": VIETQR, "bank_bin": "970415", "account_number": "123456789"},
            "vietqr",
            "give one account",
        ),
        (
            {"bank_bin": "123456", "account_number": "123456789"},
            "bank_bin",
            "not the BIN of a NAPAS member",
        ),
        ({"bank_bin": "970415", "account_number": "12"}, "account_number", "6–19"),
        ({"msisdn": "0912000001"}, "msisdn", "switches to bank"),
    ],
)
def test_a_bad_bank_account_or_vietqr_is_named(
    ledger: Ledger, tmp_path: Path, cells: dict[str, str], column: str, reason: str
) -> None:
    ledger.create_campaign("bank", provider="vietinbank", communes=["20107"])
    columns = ("beneficiary_id", "outcome", "msisdn", "vietqr", "bank_bin", "account_number")
    path = write_results(
        tmp_path / "qr.csv", [{"beneficiary_id": "B1", "outcome": "opened", **cells}], columns
    )
    with pytest.raises(InvalidEnrolmentResults) as caught:
        ledger.import_enrolment_results("bank", path)
    [problem] = caught.value.problems
    assert (problem.line, problem.column) == (2, column)
    assert reason in problem.reason


# -- switching the mandate from a chosen month ----------------------------------------------------
def settle(ledger: Ledger, period: str) -> None:
    """Prepare, approve, dispatch and reconcile until nothing is open, then close."""
    ledger.prepare(period)
    ledger.approve(period, by="checker")
    ledger.dispatch(period)
    for _ in range(10):
        if ledger.reconcile(period).open == 0:
            break
    ledger.close_cycle(period)


def channels(ledger: Ledger, period: str) -> dict[str, tuple[str, str, str]]:
    return {
        r.beneficiary_id: (r.channel, r.provider, r.address)
        for r, _ in ledger.instructions(period)
        if r.state != "CANCELLED"
    }


def test_the_switch_takes_effect_from_the_chosen_month_with_the_pay_point_as_fallback(
    ledger: Ledger,
) -> None:
    settle(ledger, "2021-09")
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    ledger.run_campaign("c1", by="clerk")
    assert ledger.schedule_campaign("c1", "2021-11", by="clerk") == 4
    assert set(targets(ledger).values()) == {"scheduled"}
    assert ledger.campaign("c1").scheduled_from == ("2021-11",)
    settle(ledger, "2021-10")
    october = channels(ledger, "2021-10")
    assert october["B1"] == ("postal", "vnpost", "postal:BD-20107")  # not yet
    settle(ledger, "2021-11")
    november = channels(ledger, "2021-11")
    assert november["B1"] == ("ewallet", "viettelpay", "ewallet:+84912000001")
    assert november["B3"][:2] == ("ewallet", "viettelpay")
    assert november["B6"] == ("postal", "vnpost", "postal:BD-20109")  # not targeted
    record = ledger.store.beneficiary("B1")
    assert record is not None
    assert (record.channel, record.pay_point) == ("ewallet", "BD-20107")  # the old one stays
    history = ledger.store.beneficiary_history("B1")
    assert [r.channel for _, r in history][-1] == "postal"
    events = [e for _, e in ledger.store.events() if e.kind == "mandate.updated"]
    assert len(events) == 4
    assert "fallback postal" in (events[0].detail or "")
    assert all("0912" not in (e.detail or "") for e in events)
    assert set(targets(ledger).values()) == {"applied"}
    # the address is no longer kept by the campaign once applied
    assert all(
        u.address is None for u in ledger.store.mandate_updates("monthly-allowance", ("applied",))
    )
    # B2's new wallet is dead: December pays B2 at the commune's post office again
    assert (
        ledger.store.instruction(
            next(
                r.instruction_id
                for r, _ in ledger.instructions("2021-11")
                if r.beneficiary_id == "B2"
            )
        ).state
        == "FAILED"
    )  # type: ignore[union-attr]
    ledger.prepare("2021-12")
    december = channels(ledger, "2021-12")
    assert december["B2"] == ("postal", "vnpost", "postal:BD-20107")
    assert december["B1"] == ("ewallet", "viettelpay", "ewallet:+84912000001")


def test_a_switch_cannot_be_scheduled_into_an_approved_cycle(ledger: Ledger) -> None:
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    ledger.run_campaign("c1")
    with pytest.raises(CampaignError, match="2021-09 is approved; schedule from 2021-10"):
        ledger.schedule_campaign("c1", "2021-09")
    assert set(targets(ledger).values()) == {"opened"}


def test_a_prepared_cycle_of_the_month_takes_the_switch_when_prepared_again(ledger: Ledger) -> None:
    ledger.prepare("2021-09")
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    ledger.run_campaign("c1")
    ledger.schedule_campaign("c1", "2021-09")
    assert channels(ledger, "2021-09")["B1"][0] == "postal"
    result = ledger.prepare("2021-09")
    assert result.revised == 4
    assert channels(ledger, "2021-09")["B1"][0] == "ewallet"


def test_a_roster_still_listing_cash_is_overridden_and_another_account_wins(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    ledger.run_campaign("c1")
    ledger.schedule_campaign("c1", "2021-09")
    ledger.prepare("2021-09")
    ledger.approve("2021-09", by="checker")
    # the agency's next export still lists B1–B4 as cash, and B3 with a wallet of its own
    reload = RosterLoader(tmp_path / "again")
    (tmp_path / "again").mkdir()
    changed = [*ROSTER]
    changed[2] = roster_row("B3", msisdn="0912000333")
    reload(ledger, *changed)
    record = ledger.store.beneficiary("B1")
    assert record is not None
    assert record.channel == "postal"
    ledger.prepare("2021-10")
    october = channels(ledger, "2021-10")
    assert october["B1"] == ("ewallet", "viettelpay", "ewallet:+84912000001")
    assert october["B3"] == ("ewallet", "viettelpay", "ewallet:+84912000333")
    kinds = [e.kind for _, e in ledger.store.events() if e.kind.startswith("mandate.")]
    assert kinds.count("mandate.reapplied") == 3
    assert kinds.count("mandate.superseded") == 1
    states = {
        u.beneficiary_id: u.state
        for u in ledger.store.mandate_updates("monthly-allowance", ("applied", "superseded"))
    }
    assert states == {"B1": "applied", "B2": "applied", "B3": "superseded", "B4": "applied"}
    periods = {
        u.applied_period for u in ledger.store.mandate_updates("monthly-allowance", ("applied",))
    }
    assert periods == {Period.parse("2021-09").ordinal}  # first applied; re-applied since
    # nothing more to do when nothing changed
    assert (
        apply_mandate_updates(ledger.store, "monthly-allowance", Period.parse("2021-10"), "t") == 0
    )


def test_create_campaign_as_a_function_checks_its_name(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="campaign name"):
        create_campaign(
            ledger.store, "a b", provider="viettelpay", channel="ewallet", communes=["20107"]
        )


# -- the sandbox's account opening ----------------------------------------------------------------
def test_the_sandbox_opens_accounts_deterministically() -> None:
    from sap_payments.providers import EnrolmentRequest
    from sap_payments.testing.sandbox import bank, postal

    request = EnrolmentRequest("c:B1", "B1", "Nguyễn Văn An", "046012345678")
    with sandbox() as one, sandbox() as two, bank("vietinbank", {}) as banker:
        first, again, other = one.enrol(request), one.enrol(request), two.enrol(request)
        assert first == again == other
        assert first.kind.value == "opened"
        assert isinstance(first.address, WalletAddress)
        assert first.address.msisdn.startswith("+849")
        with_phone = one.enrol(
            EnrolmentRequest("c:B2", "B2", "X", "046012345679", None, "+84912000009")
        )
        assert with_phone.address == WalletAddress("+84912000009", "viettelpay")
        account = banker.enrol(request)
        assert account.address is not None
        assert account.address.key.startswith("bank:970415:")
        assert banker.capabilities.enrolment
    with postal("vnpost", {}) as cash:
        assert not cash.capabilities.enrolment


# -- personal data --------------------------------------------------------------------------------
def test_the_new_account_is_sealed_and_forgotten_once_applied(ledger: Ledger) -> None:
    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    ledger.run_campaign("c1")
    raw = ledger.store.query("SELECT details FROM campaign_targets WHERE beneficiary_id = 'B1'")
    assert raw[0][0] is not None
    assert isinstance(raw[0][0], bytes)  # sealed (the ledger encrypts personal data)
    assert "912000001" not in repr(raw)
    ledger.schedule_campaign("c1", "2021-09")
    assert ledger.store.query(
        "SELECT count(*) FROM campaign_targets WHERE details IS NOT NULL"
    ) == [(0,)]
    raw = ledger.store.query("SELECT details FROM mandate_updates WHERE beneficiary_id = 'B1'")
    assert "912000001" not in repr(raw)
    ledger.prepare("2021-09")
    assert ledger.store.query("SELECT count(*) FROM mandate_updates WHERE details IS NOT NULL") == [
        (0,)
    ]
    for _, event in ledger.store.events():
        assert "912000001" not in (event.detail or "")


def test_a_results_workbook_is_read_like_a_csv(ledger: Ledger, tmp_path: Path) -> None:
    import openpyxl

    ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["beneficiary_id", "outcome", "msisdn"])
    sheet.append(["B1", "opened", "0912000001"])
    sheet.append(["B2", "bogus", ""])
    workbook.save(tmp_path / "r.xlsx")
    with pytest.raises(InvalidEnrolmentResults, match="line 3, column outcome"):
        ledger.import_enrolment_results("c1", tmp_path / "r.xlsx")
    sheet.delete_rows(3)
    workbook.save(tmp_path / "r.xlsx")
    assert ledger.import_enrolment_results("c1", tmp_path / "r.xlsx").outcomes == {"opened": 1}


# -- all or nothing, for any file -----------------------------------------------------------------
OUTCOME_ROWS = {
    "opened": {"msisdn": "0912000001"},
    "already_had": {"msisdn": "+84912000002"},
    "refused": {"reason": "declined"},
    "failed": {"reason": "no id card"},
    "pending": {},
}


@settings(max_examples=25, deadline=None)
@given(
    outcomes=st.dictionaries(
        st.sampled_from(["B1", "B2", "B3", "B4"]), st.sampled_from(sorted(OUTCOME_ROWS)), min_size=1
    ),
    broken=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
)
def test_any_results_file_is_applied_whole_or_not_at_all(
    outcomes: dict[str, str], broken: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp, open_ledger(Path(tmp)) as ledger:
        ledger.config = Config.loads(TOML)
        RosterLoader(Path(tmp))(ledger, *ROSTER)
        ledger.create_campaign("c1", provider="viettelpay", communes=["20107"])
        rows = [
            {"beneficiary_id": ident, "outcome": outcome, **OUTCOME_ROWS[outcome]}
            for ident, outcome in outcomes.items()
        ]
        if broken is not None:
            rows[broken % len(rows)]["outcome"] = "maybe"
        path = write_results(
            Path(tmp) / "r.csv", rows, ("beneficiary_id", "outcome", "reason", "msisdn")
        )
        if broken is not None:
            with pytest.raises(InvalidEnrolmentResults):
                ledger.import_enrolment_results("c1", path)
            assert set(targets(ledger).values()) == {"targeted"}
            assert ledger.store.enrolment_attempts() == []
            return
        ledger.import_enrolment_results("c1", path)
        expected = {ident: outcomes.get(ident, "targeted") for ident in ("B1", "B2", "B3", "B4")}
        assert targets(ledger) == expected
        assert ledger.import_enrolment_results("c1", path).already_imported
        assert targets(ledger) == expected
        assert len(ledger.store.enrolment_attempts()) == len(outcomes)
