"""The postal-cash plugin: payout lists, confirmation import, window close, flags, anomalies."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import openpyxl
import pytest

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import Config, Ledger
from sap_payments.beneficiaries import CashPickup, WalletAddress
from sap_payments.cli import main
from sap_payments.collection_codes import CollectionKey, collection_code
from sap_payments.errors import ConfigError, CycleStateError
from sap_payments.money import Money
from sap_payments.periods import Period
from sap_payments.plugins import load_plugin
from sap_payments.postal import (
    CONFIRMATION_COLUMNS,
    PAYOUT_COLUMNS,
    REVIEW_COLUMNS,
    InvalidConfirmations,
    PostalCashProvider,
    WindowStillOpen,
    postal_cash,
)
from sap_payments.postal.window import unclaimed_streaks
from sap_payments.providers import Payment, ProviderError, ResultKind
from sap_payments.testing.conformance import check_provider

P = "2021-09"
SECRET = "5e" * 32
POINT = "BD-20107"
PROXY_ID = "046099998888"


def settings(outbox: Path, **extra: object) -> dict[str, object]:
    return {"outbox": str(outbox), "secret": SECRET, "window_days": 10, **extra}


def config(outbox: Path, **extra: object) -> Config:
    lines = [
        "[providers.vnpost]",
        'plugin = "postal-cash"',
        'channel = "postal"',
        f'outbox = "{outbox.as_posix()}"',
        f'secret = "{SECRET}"',
        "window_days = 10",
        *(f"{key} = {json.dumps(value)}" for key, value in extra.items()),
    ]
    return Config.loads("\n".join(lines) + "\n")


def cash_row(beneficiary_id: str, **overrides: str) -> dict[str, str]:
    return roster_row(
        beneficiary_id,
        channel="postal",
        provider="vnpost",
        msisdn="",
        pay_point=POINT,
        **overrides,
    )


def proxy(valid_until: str = "2022-12-31", national_id: str = PROXY_ID) -> dict[str, str]:
    return {
        "proxy_name": "Trần Thị Bình",
        "proxy_national_id": national_id,
        "proxy_relation": "con",
        "mandate_valid_until": valid_until,
    }


def postal_ledger(tmp_path: Path, *rows: Mapping[str, str], **extra: object) -> Ledger:
    ledger = open_ledger(tmp_path)
    ledger.config = config(tmp_path / "outbox", **extra)
    RosterLoader(tmp_path)(ledger, *rows)
    return ledger


def dispatched(ledger: Ledger, period: str = P) -> None:
    ledger.prepare(period)
    ledger.approve(period, by="checker")
    ledger.dispatch(period)


def payout_lines(outbox: Path) -> dict[str, dict[str, str]]:
    """instruction_id → its payout-list CSV row, over every list in the outbox."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted(outbox.glob("payout-*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                found[row["instruction_id"]] = row
    return found


def ids(ledger: Ledger, period: str = P) -> dict[str, str]:
    return {
        r.beneficiary_id: r.instruction_id
        for r, _ in ledger.instructions(period)
        if r.state != "CANCELLED"
    }


def states(ledger: Ledger, period: str = P) -> dict[str, str]:
    return {r.beneficiary_id: r.state for r, _ in ledger.instructions(period)}


def confirmation(line: Mapping[str, str], **overrides: str) -> dict[str, str]:
    row = {
        "instruction_id": line["instruction_id"],
        "code": line["collection_code"],
        "amount": line["amount"],
        "pay_point": line["pay_point"],
        "outcome": "paid",
        "collected_on": "2021-09-14",
        "collected_by": "beneficiary",
        "proxy_name": "",
        "authorisation": "",
    }
    row.update(overrides)
    return row


def write_confirmations(path: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CONFIRMATION_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


def review_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"outbox": ""}, "outbox"),
        ({"window_days": 0}, "window_days"),
        ({"secret": "abc"}, "secret"),
        ({"secret": "zz" * 32}, "secret"),
        ({"secret_env": "SAP_TEST_POSTAL_SECRET_NOT_SET"}, "secret"),
        ({"reverify_after_unclaimed": -1}, "reverify_after_unclaimed"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    tmp_path: Path, extra: dict[str, object], key: str
) -> None:
    given = {**settings(tmp_path), **extra}
    with pytest.raises(ConfigError) as caught:
        PostalCashProvider("vnpost", given)
    assert f"providers.vnpost.{key}" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_the_secret_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAP_TEST_POSTAL_SECRET", SECRET)
    given = {"outbox": str(tmp_path), "secret_env": "SAP_TEST_POSTAL_SECRET", "key_id": "k-2021"}
    provider = PostalCashProvider("vnpost", given)
    assert provider.keys == (CollectionKey("k-2021", bytes.fromhex(SECRET)),)
    assert provider.keys[0].secret == bytes.fromhex(SECRET)
    both = {**given, "secret": SECRET}
    with pytest.raises(ConfigError, match="not both"):
        PostalCashProvider("vnpost", both)


def test_the_plugin_is_registered() -> None:
    assert load_plugin("postal-cash") is postal_cash


# -- the provider protocol -----------------------------------------------------------------------
def test_the_conformance_kit_passes(tmp_path: Path) -> None:
    # status_query is false (the post office answers by file), so the kit does not ask for
    # statuses; the file round trip is proven by the whole-cycle test below.
    check_provider(postal_cash, settings(tmp_path / "outbox"))


def test_parse_report_refuses_and_points_to_the_confirmation_import(tmp_path: Path) -> None:
    provider = postal_cash("vnpost", settings(tmp_path))
    with pytest.raises(ProviderError, match="import confirmations"):
        provider.parse_report(b"instruction_id,code\n")
    with pytest.raises(ProviderError, match="confirmations"):
        provider.status(["x"])
    assert not provider.validate(WalletAddress("+84912345678")).ok
    assert provider.validate(CashPickup(POINT)).ok
    provider.close()


def payment(key: str, amount: int = 360_000, **address: object) -> Payment:
    pickup = CashPickup(str(address.get("pay_point", POINT)), bool(address.get("home", False)))
    proxy_payee = bool(address.get("proxy", False))
    return Payment(
        key, Money.vnd(amount), pickup, "Lê Văn Cường", "monthly-allowance 2021-09", proxy_payee
    )


def test_submit_writes_one_list_per_pay_point_with_a_manifest(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    provider = postal_cash("vnpost", settings(outbox))
    provider.today = lambda: dt.date(2021, 9, 5)
    batch = [
        payment("I-1"),
        payment("I-2", 540_000, home=True),
        payment("I-3", proxy=True),
        payment("I-4", pay_point="BD-20109"),
    ]
    results = provider.submit(batch)
    assert [(r.key, r.kind) for r in results] == [(p.key, ResultKind.PENDING) for p in batch]
    (manifest_path,) = outbox.glob("payout-*.manifest.json")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert (manifest["count"], manifest["control_sum"], manifest["currency"]) == (
        4,
        1_620_000,
        "VND",
    )
    assert (manifest["window_opens"], manifest["window_closes"]) == ("2021-09-05", "2021-09-15")
    assert [f["pay_point"] for f in manifest["files"]] == [POINT, "BD-20109"]
    for entry in manifest["files"]:
        for kind in ("csv", "xlsx"):
            data = (outbox / entry[kind]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"][kind]
    lines = payout_lines(outbox)
    assert list(next(iter(lines.values()))) == list(PAYOUT_COLUMNS)
    key = CollectionKey("postal-1", bytes.fromhex(SECRET))
    for line in lines.values():
        assert line["collection_code"] == collection_code(
            key, line["instruction_id"], int(line["amount"]), line["pay_point"]
        )
        assert line["window_closes"] == "2021-09-15"
    assert lines["I-2"]["home_delivery"] == "true"
    assert lines["I-3"]["payee_kind"] == "proxy"
    assert lines["I-1"]["payee_kind"] == "beneficiary"
    # the printable sheet: header with a signature column, the lines, a total row
    first = manifest["files"][0]
    sheet = openpyxl.load_workbook(outbox / first["xlsx"]).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][-1] == "Ký nhận"
    assert rows[-1][4] == first["control_sum"] == 1_260_000
    assert "3 người" in rows[-1][2]
    assert sheet.print_title_rows == "$2:$2"
    assert {row[6] for row in rows[2:-1]} == {
        lines[k]["collection_code"] for k in ("I-1", "I-2", "I-3")
    }
    # home deliveries come last on the list
    assert rows[-2][1] == "I-2"
    # submitting again writes nothing new (idempotent by key)
    before = sorted(p.name for p in outbox.iterdir())
    again = provider.submit(batch[:2])
    assert [r.kind for r in again] == [ResultKind.PENDING] * 2
    assert sorted(p.name for p in outbox.iterdir()) == before
    provider.close()


def test_payout_lists_carry_no_national_id(tmp_path: Path) -> None:
    ledger = postal_ledger(tmp_path, cash_row("B1"), cash_row("B2", **proxy()))
    dispatched(ledger)
    outbox = tmp_path / "outbox"
    texts = [p.read_bytes() for p in outbox.glob("payout-*.csv")]
    assert texts
    for person in ("B1", "B2"):
        record = ledger.store.beneficiary(person)
        assert record is not None
        assert record.national_id
        assert all(record.national_id.encode() not in text for text in texts)
    assert all(PROXY_ID.encode() not in text for text in texts)
    assert all("Trần Thị Bình".encode() in text for text in texts)  # the proxy is the payee
    assert set(states(ledger).values()) == {"ACCEPTED"}
    ledger.close()


def test_submit_refuses_an_address_that_is_not_cash(tmp_path: Path) -> None:
    provider = postal_cash("vnpost", settings(tmp_path))
    wallet = Payment("I-9", Money.vnd(1000), WalletAddress("+84912345678"), "X", "r")
    with pytest.raises(ProviderError, match="I-9"):
        provider.submit([payment("I-8"), wallet])
    assert not list(tmp_path.glob("payout-*"))
    provider.close()


# -- confirmations ---------------------------------------------------------------------------------
@pytest.fixture
def cycle(tmp_path: Path) -> Iterator[tuple[Ledger, dict[str, str], dict[str, dict[str, str]]]]:
    ledger = postal_ledger(
        tmp_path,
        cash_row("B1"),
        cash_row("B2", **proxy()),
        cash_row("B3"),
        cash_row("B4"),
        cash_row("B5"),
        cash_row("B6"),
        cash_row("B7", **proxy(valid_until="2021-09-10", national_id="046011112222")),
        cash_row("B8", **proxy(national_id="046033334444")),
        cash_row("B9"),
        cash_row("B10"),
        cash_row("B11", home_delivery="true"),
    )
    dispatched(ledger)
    by_id = ids(ledger)
    lines = payout_lines(tmp_path / "outbox")
    try:
        yield ledger, by_id, lines
    finally:
        ledger.close()


def mixed_file(path: Path, by_id: Mapping[str, str], lines: Mapping[str, dict[str, str]]) -> Path:
    def line(beneficiary: str) -> dict[str, str]:
        return lines[by_id[beneficiary]]

    wrong = line("B3")["collection_code"]
    wrong = wrong[:-1] + str((int(wrong[-1]) + 1) % 10)  # breaks the check digit: malformed
    other = line("B1")["collection_code"]  # a genuine code, of another instruction
    rows = [
        confirmation(line("B1")),  # 2
        confirmation(
            line("B2"), collected_by="proxy", proxy_name="trần thị  bình", authorisation="8888"
        ),  # 3
        confirmation(line("B3"), code=other),  # 4 wrong code
        confirmation(line("B4"), amount="400000"),  # 5 amount differs
        confirmation(line("B5")),  # 6
        confirmation(line("B5"), collected_on="2021-09-15"),  # 7 used twice
        confirmation(line("B6"), collected_by="proxy", proxy_name="Ai Đó", authorisation="1"),  # 8
        confirmation(
            line("B7"),
            collected_on="2021-09-20",
            collected_by="proxy",
            proxy_name="Trần Thị Bình",
            authorisation="2222",
        ),  # 9 mandate expired on the 10th
        confirmation(
            line("B8"), collected_by="proxy", proxy_name="Trần Thị Bình", authorisation="9999"
        ),  # 10 authorisation differs
        confirmation(line("B9"), outcome="unclaimed", collected_on="", collected_by=""),  # 11
        confirmation(line("B11"), collected_on="2021-09-16"),  # 12 home delivery
        confirmation(line("B3"), code=wrong),  # 13 malformed code
        confirmation(line("B1"), instruction_id="NO-SUCH-ID"),  # 14 unknown instruction
        confirmation(line("B10"), collected_on="14/09/2021"),  # 15 malformed date
    ]
    return write_confirmations(path, rows)


EXPECTED_REVIEW = [
    ("4", "B3", "wrong_code"),
    ("5", "B4", "amount_differs"),
    ("7", "B5", "code_used_twice"),
    ("8", "B6", "proxy_without_mandate"),
    ("9", "B7", "proxy_mandate_expired"),
    ("10", "B8", "authorisation_mismatch"),
    ("13", "B3", "malformed_code"),
    ("14", None, "unknown_instruction"),
    ("15", "B10", "malformed_row"),
]


def test_a_confirmation_file_applies_its_good_rows_and_reviews_the_rest(
    tmp_path: Path, cycle: tuple[Ledger, dict[str, str], dict[str, dict[str, str]]]
) -> None:
    ledger, by_id, lines = cycle
    path = mixed_file(tmp_path / "confirmations.csv", by_id, lines)
    review_path = tmp_path / "review.csv"
    done = ledger.import_confirmations(path, provider="vnpost", review_out=review_path)
    assert (done.rows, done.applied, done.repeated, done.rejected) == (14, 5, 0, 9)
    review = review_rows(review_path)
    assert list(review[0]) == list(REVIEW_COLUMNS)
    expected = [
        (row, by_id[b] if b else "NO-SUCH-ID", reason) for row, b, reason in EXPECTED_REVIEW
    ]
    assert [(r["row"], r["instruction_id"], r["reason"]) for r in review] == expected
    text = review_path.read_text(encoding="utf-8")
    for personal in ("Trần", "Bình", "Nguyễn", "Ai Đó", PROXY_ID):
        assert personal not in text
    now = states(ledger)
    assert {b: now[b] for b in ("B1", "B2", "B5", "B11")} == dict.fromkeys(
        ("B1", "B2", "B5", "B11"), "PAID"
    )
    assert now["B9"] == "UNCLAIMED"
    for b in ("B3", "B4", "B6", "B7", "B8", "B10"):
        assert now[b] == "ACCEPTED", b
    # every move is an event, through the transition table; each rejection is an event too
    paid_events = [e for _, e in ledger.store.events(by_id["B2"]) if e.kind == "instruction.paid"]
    assert [(e.from_state, e.to_state) for e in paid_events] == [("ACCEPTED", "PAID")]
    rejected = [e for _, e in ledger.store.events() if e.kind == "confirmation.rejected"]
    assert len(rejected) == 9
    outcomes = ledger.store.outcomes("monthly-allowance", 2021 * 12 + 8)
    assert outcomes[by_id["B2"]][1] == "postal;2021-09-14;proxy;postal-1"
    # the same file again: a no-op
    events = sum(1 for _ in ledger.store.events())
    again = ledger.import_confirmations(path, provider="vnpost")
    assert again.already_imported
    assert again.applied == 0
    assert sum(1 for _ in ledger.store.events()) == events
    assert states(ledger) == now


def test_a_corrected_file_sent_again_in_whole_repeats_without_rejections(
    tmp_path: Path, cycle: tuple[Ledger, dict[str, str], dict[str, dict[str, str]]]
) -> None:
    ledger, by_id, lines = cycle
    first = [confirmation(lines[by_id["B1"]]), confirmation(lines[by_id["B4"]], amount="1")]
    write_confirmations(tmp_path / "a.csv", first)
    assert ledger.import_confirmations(tmp_path / "a.csv", provider="vnpost").applied == 1
    second = [confirmation(lines[by_id["B1"]]), confirmation(lines[by_id["B4"]])]
    write_confirmations(tmp_path / "b.csv", second)
    done = ledger.import_confirmations(tmp_path / "b.csv", provider="vnpost")
    assert (done.applied, done.repeated, done.rejected) == (1, 1, 0)
    # but a second payment of B1 on another day is a code used twice
    third = [confirmation(lines[by_id["B1"]], collected_on="2021-09-20")]
    write_confirmations(tmp_path / "c.csv", third)
    done = ledger.import_confirmations(tmp_path / "c.csv", provider="vnpost")
    assert [r.reason for r in done.review] == ["code_used_twice"]


def test_confirmations_as_xlsx(
    tmp_path: Path, cycle: tuple[Ledger, dict[str, str], dict[str, dict[str, str]]]
) -> None:
    ledger, by_id, lines = cycle
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(list(CONFIRMATION_COLUMNS))
    line = lines[by_id["B1"]]
    sheet.append(
        [line["instruction_id"], line["collection_code"], int(line["amount"]), POINT, "paid",
         dt.date(2021, 9, 14), "beneficiary", None, None]
    )  # fmt: skip
    workbook.save(tmp_path / "c.xlsx")
    done = ledger.import_confirmations(tmp_path / "c.xlsx", provider="vnpost")
    assert (done.applied, done.rejected) == (1, 0)
    assert states(ledger)["B1"] == "PAID"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no header"),
        (b"instruction_id,code,amount\n", "lacks column pay_point"),
        (b"\xff\xfe\x00", "UTF-8"),
        (b"PK\x03\x04 broken", "XLSX"),
    ],
)
def test_an_unreadable_confirmation_file_applies_nothing(
    tmp_path: Path,
    cycle: tuple[Ledger, dict[str, str], dict[str, dict[str, str]]],
    data: bytes,
    message: str,
) -> None:
    ledger, _, _ = cycle
    (tmp_path / "bad.csv").write_bytes(data)
    with pytest.raises(InvalidConfirmations, match=message):
        ledger.import_confirmations(tmp_path / "bad.csv", provider="vnpost")
    assert ledger.store.query("SELECT count(*) FROM imports WHERE kind LIKE 'postal%'") == [(0,)]


def test_confirmations_need_a_postal_cash_provider(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path)
    ledger.config = Config.loads('[providers.v]\nplugin = "sandbox-postal"\nchannel = "postal"\n')
    with pytest.raises(ConfigError, match="not a postal-cash provider"):
        ledger.import_confirmations(tmp_path / "x.csv", provider="v")
    with pytest.raises(ConfigError, match="not configured"):
        ledger.close_window(P, provider="nobody")
    ledger.close()


# -- window close, settlement, arrears, re-verification -------------------------------------------
def test_closing_the_window_early_is_refused_unless_on_purpose(
    cycle: tuple[Ledger, dict[str, str], dict[str, dict[str, str]]],
) -> None:
    ledger, by_id, _ = cycle
    provider = ledger.provider_instances()["vnpost"]
    assert isinstance(provider, PostalCashProvider)
    closes = provider.window_closes([by_id["B1"]])[by_id["B1"]]
    provider.today = lambda: closes
    with pytest.raises(WindowStillOpen) as caught:
        ledger.close_window(P, provider="vnpost")
    assert isinstance(caught.value, CycleStateError)
    assert set(states(ledger).values()) == {"ACCEPTED"}
    provider.today = lambda: closes + dt.timedelta(days=1)
    done = ledger.close_window(P, provider="vnpost")
    assert done.unclaimed == 11
    assert set(states(ledger).values()) == {"UNCLAIMED"}


def test_a_whole_cycle_through_the_post_office(
    tmp_path: Path, cycle: tuple[Ledger, dict[str, str], dict[str, dict[str, str]]]
) -> None:
    ledger, by_id, lines = cycle
    path = mixed_file(tmp_path / "confirmations.csv", by_id, lines)
    review = tmp_path / "review.csv"
    done = ledger.import_confirmations(path, provider="vnpost", review_out=review)
    assert done.rejected == len(EXPECTED_REVIEW)
    # window close: what was not collected becomes UNCLAIMED through the transition table
    closed = ledger.close_window(P, provider="vnpost", early=True)
    unclaimed = {"B3", "B4", "B6", "B7", "B8", "B10"}
    assert closed.unclaimed == len(unclaimed)
    assert closed.flagged == ()  # one month is not three
    now = states(ledger)
    assert {b for b, s in now.items() if s == "UNCLAIMED"} == unclaimed | {"B9"}
    moves = [
        (e.from_state, e.to_state, e.actor)
        for _, e in ledger.store.events(by_id["B10"])
        if e.kind == "instruction.unclaimed"
    ]
    assert moves == [("ACCEPTED", "UNCLAIMED", "window-close")]
    # settlement: the unclaimed money is owed back by the provider
    ledger.close_cycle(P)
    settlement = ledger.settlement(P)
    amount = {r.beneficiary_id: r.amount for r, _ in ledger.instructions(P)}
    owed = sum(amount[b] for b in unclaimed | {"B9"})
    assert settlement.total.unclaimed.count == 7
    assert settlement.total.unclaimed.amount == Money.vnd(owed)
    assert settlement.total.balance == Money.vnd(owed)
    # next cycle: the months come back as arrears
    ledger.prepare("2021-10")
    october = {
        r.beneficiary_id: [(line.month, line.kind) for line in lines]
        for r, lines in ledger.instructions("2021-10")
    }
    september = 2021 * 12 + 8
    for b in unclaimed | {"B9"}:
        assert (september, "arrears") in october[b], b
    for b in ("B1", "B2", "B5", "B11"):
        assert all(month != september for month, _ in october[b]), b


def test_three_unclaimed_months_in_a_row_flag_the_beneficiary(tmp_path: Path) -> None:
    ledger = postal_ledger(tmp_path, cash_row("B1"), cash_row("B2"), reverify_after_unclaimed=3)
    flagged_after = []
    for period in ("2021-09", "2021-10", "2021-11"):
        dispatched(ledger, period)
        line = payout_lines(tmp_path / "outbox")[ids(ledger, period)["B2"]]
        paid = confirmation(line, collected_on=f"{period}-14")  # a day of the month's window
        write_confirmations(tmp_path / f"c-{period}.csv", [paid])
        ledger.import_confirmations(tmp_path / f"c-{period}.csv", provider="vnpost")
        closed = ledger.close_window(period, provider="vnpost", early=True)
        flagged_after.append(closed.flagged)
        ledger.close_cycle(period)
    assert flagged_after == [(), (), ("B1",)]
    flags = ledger.flags()
    assert [(f.beneficiary_id, f.kind) for f in flags] == [("B1", "reverify")]
    streaks = unclaimed_streaks(
        ledger.store, "monthly-allowance", Period.parse("2021-11"), ["B1", "B2"], 9
    )
    assert streaks == {"B1": 3, "B2": 0}
    assert unclaimed_streaks(
        ledger.store, "monthly-allowance", Period.parse("2021-10"), ["B1"], 9
    ) == {"B1": 2}
    assert "3 cycles" in (flags[0].detail or "")
    events = [e for _, e in ledger.store.events() if e.kind == "beneficiary.flagged"]
    assert len(events) == 1
    assert events[0].detail.startswith("B1: reverify")
    # the November instruction carries three months: September, October as arrears
    november = {r.beneficiary_id: lines for r, lines in ledger.instructions("2021-11")}
    assert len(november["B1"]) == 3
    ledger.close()


# -- CLI -----------------------------------------------------------------------------------------
def test_the_cli_imports_closes_and_reports(
    tmp_path: Path, cycle: tuple[Ledger, dict[str, str], dict[str, dict[str, str]]]
) -> None:
    ledger, by_id, lines = cycle
    toml = tmp_path / "sap-payments.toml"
    toml.write_text(
        '[providers.vnpost]\nplugin = "postal-cash"\nchannel = "postal"\n'
        f'outbox = "outbox"\nsecret = "{SECRET}"\nwindow_days = 10\n',
        encoding="utf-8",
    )
    ledger.close()
    base = ["--db", str(tmp_path / "l.db"), "--config", str(toml)]
    path = mixed_file(tmp_path / "confirmations.csv", by_id, lines)

    def run(*argv: str) -> str:
        out = io.StringIO()
        assert main([*argv[:2], *base, *argv[2:]], out=out) == 0, out.getvalue()
        return out.getvalue()

    review = tmp_path / "review.csv"
    text = run(
        "import", "confirmations", str(path), "--provider", "vnpost", "--review-out", str(review)
    )
    assert "14 rows, 5 applied, 0 repeated, 9 to review" in text
    assert len(review_rows(review)) == 9
    assert "imported before" in run("import", "confirmations", str(path), "--provider", "vnpost")
    code = main(["cycle", "close-window", *base, "--period", P, "--provider", "vnpost"])
    assert code == 1  # the window is still open
    text = run("cycle", "close-window", "--period", P, "--provider", "vnpost", "--early")
    assert "6 instructions unclaimed" in text
    document = json.loads(run("report", "flags", "--format", "json"))
    assert document["flags"] == []
    document = json.loads(run("report", "anomalies", "--period", P, "--format", "json"))
    assert document["period"] == P
    assert document["anomalies"] == []


def test_a_relative_outbox_is_relative_to_the_config_file(tmp_path: Path) -> None:
    toml = tmp_path / "etc" / "sap-payments.toml"
    toml.parent.mkdir()
    toml.write_text(
        '[providers.vnpost]\nplugin = "postal-cash"\nchannel = "postal"\n'
        f'outbox = "lists"\nsecret = "{SECRET}"\n',
        encoding="utf-8",
    )
    loaded = Config.load(toml)
    assert loaded.providers["vnpost"].settings["outbox"] == str(tmp_path / "etc" / "lists")
    absolute = Config.loads(toml.read_text(encoding="utf-8").replace('"lists"', '"/srv/x"'))
    assert absolute.providers["vnpost"].settings["outbox"] == "/srv/x"
