"""Control totals of a prepared cycle: per provider, per commune, and rolled up commune →
district (when there is one) → province."""

from __future__ import annotations

from pathlib import Path

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import Money


def test_totals_roll_up_through_districts_when_present(tmp_path: Path) -> None:
    load = RosterLoader(tmp_path)
    with open_ledger(tmp_path) as ledger:
        load(
            ledger,
            # three-tier (before 2025-07-01): province 46, district 482
            roster_row("A1", commune_code="20107"),
            roster_row("A2", commune_code="20107", category="disabled_heavy"),
            roster_row(
                "A3",
                commune_code="20110",
                provider="vnpost",
                channel="postal",
                pay_point="BD-20110",
            ),
            # two-tier (no district since 2025-07-01): province 46 directly
            roster_row("B1", district_code="", commune_code="19999"),
        )
        result = ledger.prepare("2021-09")
    vnd = Money.vnd
    assert result.total == vnd(360_000 * 3 + 540_000)
    assert {k: (t.count, t.amount) for k, t in result.by_provider.items()} == {
        "viettelpay": (3, vnd(360_000 + 540_000 + 360_000)),
        "vnpost": (1, vnd(360_000)),
    }
    assert {k: t.count for k, t in result.by_commune.items()} == {
        "19999": 1,
        "20107": 2,
        "20110": 1,
    }
    by_area = {k: (t.count, t.amount.minor) for k, t in result.by_area.items()}
    assert by_area == {
        ("46",): (4, 1_620_000),
        ("46", "19999"): (1, 360_000),
        ("46", "482"): (3, 1_260_000),
        ("46", "482", "20107"): (2, 900_000),
        ("46", "482", "20110"): (1, 360_000),
    }
    assert list(by_area) == sorted(by_area)  # each area before the areas inside it
    # every level adds up to the cycle's total
    assert sum(t.amount.minor for k, t in result.by_area.items() if len(k) == 1) == 1_620_000
    assert sum(t.amount.minor for t in result.by_commune.values()) == result.total.minor


def test_a_stored_beneficiary_reads_back_as_domain_objects(tmp_path: Path) -> None:
    import datetime as dt
    from decimal import Decimal

    from sap_payments import BankAccount, CashPickup, Period, WalletAddress

    load = RosterLoader(tmp_path)
    with open_ledger(tmp_path) as ledger:
        load(
            ledger,
            roster_row(
                "P1",
                coefficient="1,5",
                pay_point="BD-20107",
                bank_bin="970415",
                account_number="123456789012",
                proxy_name="Lê Thị Hoa",
                proxy_relation="con",
                mandate_valid_until="2022-12-31",
            ),
        )
        found = ledger.beneficiary("P1")
        assert ledger.beneficiary("nobody") is None
    assert found is not None
    assert found.beneficiary.area.commune_code == "20107"
    assert found.beneficiary.birth_date == dt.date(1940, 1, 1)
    assert found.decision.coefficient == Decimal("1.5")
    assert found.decision.first_payable() == Period.parse("2021-09")
    assert found.mandate.primary == WalletAddress("+84912345678", "viettelpay")
    assert found.mandate.fallbacks == (
        BankAccount("970415", "123456789012", None),
        CashPickup("BD-20107", False, None),
    )
    assert found.mandate.proxy is not None
    assert found.mandate.proxy.name == "Lê Thị Hoa"
    assert not found.mandate.expired_for(Period.parse("2022-12"))
    assert found.mandate.expired_for(Period.parse("2023-01"))


def test_an_instruction_reads_back_as_a_domain_object(tmp_path: Path) -> None:
    from sap_payments import Instruction, InstructionState, LineKind, Period, WalletAddress

    load = RosterLoader(tmp_path)
    with open_ledger(tmp_path) as ledger:
        load(ledger, roster_row("A1", first_period="2021-07", paid_through=""))
        ledger.prepare("2021-09")
        (record, _), *_ = list(ledger.instructions("2021-09"))
        found = ledger.instruction(record.instruction_id)
        assert ledger.instruction("202109-NOPE") is None
    assert isinstance(found, Instruction)
    assert found.state is InstructionState.CREATED
    assert not found.final
    assert found.address == WalletAddress("+84912345678", "viettelpay")
    assert found.amount == Money.vnd(3 * 360_000)
    assert [(str(e.month), e.kind, e.amount.minor) for e in found.lines] == [
        ("2021-07", LineKind.ARREARS, 360_000),
        ("2021-08", LineKind.ARREARS, 360_000),
        ("2021-09", LineKind.REGULAR, 360_000),
    ]
    assert sum(e.amount.minor for e in found.lines) == found.amount.minor
    assert found.period == Period.parse("2021-09")
