"""The anomaly report: proxies paid for many, collections after ceasing, shared phones and
accounts — by ids, with values masked; and a property of the confirmation import."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import Config, Ledger
from sap_payments.cli import main
from sap_payments.errors import CycleNotFound
from sap_payments.postal import anomaly_report, write_anomaly_report
from sap_payments.postal.anomalies import mask_tail
from test_postal import (
    POINT,
    SECRET,
    P,
    cash_row,
    confirmation,
    dispatched,
    ids,
    payout_lines,
    proxy,
    write_confirmations,
)

TOML = f"""
[providers.vnpost]
plugin = "postal-cash"
channel = "postal"
outbox = "{{outbox}}"
secret = "{SECRET}"

[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"

[providers.vietinbank]
plugin = "sandbox-bank"
channel = "bank"
"""

PHONE = "0912000678"


def bank_row(beneficiary_id: str, account: str) -> dict[str, str]:
    return roster_row(
        beneficiary_id,
        channel="bank",
        provider="vietinbank",
        msisdn="",
        bank_bin="970415",
        account_number=account,
    )


def ledger_for(tmp_path: Path) -> tuple[Ledger, RosterLoader]:
    ledger = open_ledger(tmp_path)
    ledger.config = Config.loads(TOML.format(outbox=(tmp_path / "outbox").as_posix()))
    return ledger, RosterLoader(tmp_path)


@pytest.fixture
def report_ledger(tmp_path: Path) -> Ledger:
    ledger, load = ledger_for(tmp_path)
    load(
        ledger,
        *(cash_row(f"P{k}", **proxy()) for k in range(5)),  # one proxy for five
        cash_row("Q1", **proxy(national_id="046055556666")),
        roster_row("W1", msisdn=PHONE),
        roster_row("W2", msisdn=PHONE),
        roster_row("W3", msisdn="0912000999"),
        bank_row("K1", "1020100012345"),
        bank_row("K2", "1020100012345"),
        bank_row("K3", "1020100099999"),
        cash_row("L1", last_period="2021-09"),
        cash_row("L2"),
    )
    dispatched(ledger)
    lines = payout_lines(tmp_path / "outbox")
    by_id = ids(ledger)
    write_confirmations(
        tmp_path / "c.csv",
        [
            confirmation(lines[by_id["L1"]], collected_on="2021-10-03"),  # after its last month
            confirmation(lines[by_id["L2"]], collected_on="2021-09-20"),
        ],
    )
    assert ledger.import_confirmations(tmp_path / "c.csv", provider="vnpost").applied == 2
    return ledger


def test_the_report_finds_each_kind(report_ledger: Ledger) -> None:
    ledger = report_ledger
    by_id = ids(ledger)
    report = ledger.anomalies(P)
    found = {(a.kind, a.subject): a for a in report.anomalies}
    proxy_line = found["proxy_for_many", "id *********888"]
    assert proxy_line.beneficiary_ids == ("P0", "P1", "P2", "P3", "P4")
    assert set(proxy_line.instruction_ids) == {by_id[f"P{k}"] for k in range(5)}
    assert "5 beneficiaries" in proxy_line.detail
    late = found["collected_after_ceased", by_id["L1"]]
    assert late.beneficiary_ids == ("L1",)
    assert "2021-10-03" in late.detail
    assert "2021-09" in late.detail
    phone = found["shared_phone", "*********678"]
    assert phone.beneficiary_ids == ("W1", "W2")
    account = found["shared_account", "970415:**********345"]
    assert account.beneficiary_ids == ("K1", "K2")
    assert len(report.anomalies) == 4  # nothing about Q1, W3, K3 or L2
    # with room for five per proxy, the proxy is no longer an anomaly
    assert all(a.kind != "proxy_for_many" for a in ledger.anomalies(P, max_per_proxy=5).anomalies)


def test_a_collection_after_the_beneficiary_ceased(tmp_path: Path) -> None:
    ledger, load = ledger_for(tmp_path)
    load(ledger, cash_row("D1"), cash_row("D2"))
    dispatched(ledger)
    lines, by_id = payout_lines(tmp_path / "outbox"), ids(ledger)
    # the death is reported after the lists went out: ceased, last month August
    load(ledger, cash_row("D1", status="ceased", last_period="2021-08"), cash_row("D2"))
    rows = [confirmation(lines[by_id[b]], collected_on="2021-09-20") for b in ("D1", "D2")]
    write_confirmations(tmp_path / "c.csv", rows)
    ledger.import_confirmations(tmp_path / "c.csv", provider="vnpost")
    (anomaly,) = ledger.anomalies(P).anomalies
    assert (anomaly.kind, anomaly.beneficiary_ids) == ("collected_after_ceased", ("D1",))
    ledger.close()


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_the_report_names_ids_never_people(report_ledger: Ledger, fmt: str) -> None:
    out = io.StringIO()
    count = write_anomaly_report(out, fmt, report_ledger.anomalies(P))
    assert count == 4
    text = out.getvalue()
    for personal in ("Nguyễn", "Trần", "Bình", PHONE, "+84912000678", "1020100012345", "046099"):
        assert personal not in text, personal
    assert "P0" in text
    if fmt == "json":
        document = json.loads(text)
        assert document["anomalies"][0]["beneficiary_ids"] == ["P0", "P1", "P2", "P3", "P4"]
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows[0]["beneficiary_ids"] == "P0;P1;P2;P3;P4"


def test_the_report_through_the_cli(tmp_path: Path, report_ledger: Ledger) -> None:
    report_ledger.close()
    toml = tmp_path / "sap-payments.toml"
    toml.write_text(TOML.format(outbox=(tmp_path / "outbox").as_posix()), encoding="utf-8")
    out = io.StringIO()
    argv = ["report", "anomalies", "--db", str(tmp_path / "l.db"), "--config", str(toml)]
    assert main([*argv, "--period", P, "--max-per-proxy", "4", "--format", "csv"], out=out) == 0
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["kind"] for r in rows] == [
        "proxy_for_many",
        "collected_after_ceased",
        "shared_phone",
        "shared_account",
    ]


def test_the_report_of_a_cycle_never_prepared(tmp_path: Path) -> None:
    ledger, _ = ledger_for(tmp_path)
    with pytest.raises(CycleNotFound):
        anomaly_report(ledger.store, "2030-01")
    ledger.close()


def test_mask_tail() -> None:
    assert mask_tail("+84912345678") == "*********678"
    assert mask_tail("12") == "**"
    assert mask_tail("abcd", 1) == "***d"


# -- a property of the import: a genuine code of one instruction never pays another -------------
@pytest.fixture(scope="module")
def codes_ledger(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Ledger, Path, list[dict[str, str]]]:
    directory = tmp_path_factory.mktemp("codes")
    ledger, load = ledger_for(directory)
    load(ledger, *(cash_row(f"C{k}") for k in range(6)))
    dispatched(ledger)
    lines = list(payout_lines(directory / "outbox").values())
    return ledger, directory, lines


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pair=st.sampled_from(list(itertools.permutations(range(6), 2))), sequence=st.integers(0, 10**9)
)
def test_a_code_confirms_only_its_own_instruction(
    codes_ledger: tuple[Ledger, Path, list[dict[str, str]]], pair: tuple[int, int], sequence: int
) -> None:
    ledger, directory, lines = codes_ledger
    named, coded = lines[pair[0]], lines[pair[1]]
    row = confirmation(named, code=coded["collection_code"])
    path = write_confirmations(directory / f"c-{sequence}.csv", [row])
    done = ledger.import_confirmations(path, provider="vnpost")
    if done.already_imported:
        return
    assert done.applied == 0
    assert [r.reason for r in done.review] == ["wrong_code"]
    assert {r.state for r, _ in ledger.instructions(P)} == {"ACCEPTED"}
    assert POINT == named["pay_point"] == coded["pay_point"]
