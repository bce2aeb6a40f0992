"""``sap-payments demo``: the Phú Lộc pilot, replayed on a synthetic roster, three months long.

In 2021 Phú Lộc district (Thừa Thiên Huế) paid 8,364 social-assistance beneficiaries in 17
communes without cash, through ViettelPay e-wallets, with a bank and the post office alongside.
The demo builds a roster like it (:mod:`sap_payments.synthetic`) and runs September, October and
November 2021 end to end: import, prepare, approve, dispatch, reconcile, close. The e-wallet and
the bank are sandbox providers; cash goes through the ``postal-cash`` plugin (payout lists with
collection codes) and a simulated post office whose confirmation files are imported, after which
the payment window is closed. Some wallets turn out dead and those beneficiaries fall back to cash
at their commune's post office; some cash is not collected and is paid again as arrears; a few
beneficiaries die or join between the months. It prints the change report, the coverage and the
settlement, and writes them (CSV and JSON) under ``--dir``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from sap_payments.config import Config
from sap_payments.coverage import CoverageReport
from sap_payments.ledger import Ledger
from sap_payments.periods import Period
from sap_payments.reports import (
    write_change_report,
    write_coverage_report,
    write_settlement_report,
)
from sap_payments.roster import ROSTER_COLUMNS
from sap_payments.signing import generate_signing_key
from sap_payments.synthetic import (
    PHU_LOC_AREAS,
    RosterSpec,
    roster_rows,
    write_areas_csv,
    write_roster_csv,
)
from sap_payments.testing.bank import BankSimulator
from sap_payments.testing.post_office import PostOfficeSimulator

__all__ = ["APPROVER", "DEMO_CONFIG", "PERIOD", "PERIODS", "PREPARER", "run_demo"]

PERIODS = ("2021-09", "2021-10", "2021-11")
PERIOD = PERIODS[0]
APPROVER = "Trưởng phòng Bảo trợ xã hội (demo)"
#: Who prepares each cycle (the maker): the approver (the checker) must be someone else.
PREPARER = "Chuyên viên chi trả (demo)"

_PAY_POINTS = "\n".join(
    f'"{area.commune_code}" = "BD-{area.commune_code}"' for area in PHU_LOC_AREAS
)

#: The demo's collection-code key (a real one: secrets.token_hex(32), kept out of files).
_DEMO_SECRET = hashlib.sha256(b"sap-payments demo collection key").hexdigest()

DEMO_CONFIG = f"""\
# Written by 'sap-payments demo'. The providers are the pilot's three channels, played by the
# sandboxes that ship with sap_payments.testing (deterministic from their seed); cash goes through
# the postal-cash plugin, answered by a simulated post office.
currency = "VND"
programme = "monthly-allowance"
outbox = "outbox"

[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"
seed = 2021
fail_per_mille = 25
fail_reasons = ["inactive_wallet"]
late_per_mille = 150
return_per_mille = 2

[providers.vietinbank]
plugin = "sandbox-bank"
channel = "bank"
seed = 2021
fail_per_mille = 15
fail_reasons = ["closed_account"]

[providers.vnpost]                     # cash at the post office: payout lists with collection
plugin = "postal-cash"                 # codes out, confirmation files back (a simulated office)
channel = "postal"
outbox = "postal-outbox"               # relative to this file
window_days = 15
key_id = "demo-2021"
# Demo only: a real key comes from secret_env, never from a file like this one.
secret = "{_DEMO_SECRET}"

[fallback_pay_points]   # cash at the commune's post office when a wallet or account is dead
{_PAY_POINTS}
"""

#: Between months: who dies (status ceased from the month before) and who joins.
_DEATHS_PER_MILLE = 3
_JOINERS = 25


def _signing_keys(ledger: Ledger, directory: Path, out: TextIO) -> tuple[Path, Path]:
    """The approver's and the agency's signing keys (made once, under ``keys/``); the approver
    is registered, so every approval is signed (docs/audit.md)."""
    keys = []
    for name in ("approver", "agency"):
        private = directory / "keys" / f"{name}.pem"
        if not private.exists():
            generate_signing_key(private)
        keys.append(private)
    registered = ledger.add_approver(APPROVER, keys[0].with_name("approver.pub.pem"))
    out.write(
        f"Approver {APPROVER} registered with signing key {registered.key_id}; "
        f"cycles are prepared by {PREPARER}\n"
    )
    return keys[0], keys[1]


def _clear(directory: Path) -> None:
    for name in ("sap-payments.db", "sap-payments.db-wal", "sap-payments.db-shm"):
        (directory / name).unlink(missing_ok=True)
    for folder in ("outbox", "bank-outbox", "bank-inbox", "postal-outbox", "postal-inbox"):
        if (directory / folder).is_dir():
            for path in sorted((directory / folder).rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()


def _next_roster(rows: list[dict[str, str]], month: int, seed: int) -> list[dict[str, str]]:
    """The agency's next export: a few deaths, a few new (and back-dated) decisions."""
    period = PERIODS[month]
    previous = str(Period.parse(period).previous())
    changed = []
    for number, row in enumerate(rows):
        if (
            row["status"] == "active"
            and (number * 7919 + month * 104729) % 1000 < _DEATHS_PER_MILLE
        ):
            row = {**row, "status": "ceased", "last_period": previous}
        changed.append(row)
    spec = RosterSpec(n=_JOINERS, seed=seed + month, id_prefix=f"PLN{month}", takeover=period)
    for cells in roster_rows(spec):
        row = dict(zip(ROSTER_COLUMNS, cells, strict=True))
        if row["national_id"]:  # another block of serials: never a current beneficiary's id
            row["national_id"] = f"{month + 1:03d}" + row["national_id"][3:]
        if row["proxy_national_id"]:
            row["proxy_national_id"] = f"{month + 4:03d}" + row["proxy_national_id"][3:]
        changed.append(row)
    return changed


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    write_roster_csv(path, ([row[c] for c in ROSTER_COLUMNS] for row in rows))


_BANK_FILES = """
[providers.vietinbank]                 # the bank through ISO 20022 files (pain.001 out,
plugin = "iso20022-bank"               # pain.002 and camt.054 in), answered by the simulator
channel = "bank"
outbox = "{outbox}"
debtor_name = "Sở Lao động - Thương binh và Xã hội tỉnh Thừa Thiên Huế"
debtor_account = "102010001234567"
debtor_bank_bin = "970415"
"""


def demo_config(bank: str, directory: Path) -> str:
    """The demo's configuration; ``bank="iso20022"`` routes the bank channel through files."""
    if bank == "sandbox":
        return DEMO_CONFIG
    start = DEMO_CONFIG.index("[providers.vietinbank]")
    end = DEMO_CONFIG.index("[providers.vnpost]")
    files = _BANK_FILES.format(outbox=(directory / "bank-outbox").resolve().as_posix())
    return DEMO_CONFIG[:start] + files.lstrip() + "\n" + DEMO_CONFIG[end:]


_GSMA_EWALLET = """
[providers.viettelpay]                 # the e-wallet through the GSMA Mobile Money API, answered
plugin = "gsma-mobile-money"           # by a loopback sandbox server started for the demo
channel = "ewallet"
base_url = "{base_url}"
bulk = true
bulk_threshold = 20
max_batch = 500
debit_party = "SLDTBXH-TTH-DISBURSEMENT"
journal = "{journal}"
poll_interval = 0.01
"""


def gsma_ewallet_config(config: str, base_url: str, directory: Path) -> str:
    """``config`` with the e-wallet provider swapped for ``gsma-mobile-money`` at ``base_url``."""
    journal = directory / "gsma-journal.db"
    for suffix in ("", "-wal", "-shm"):  # a new demo ledger: a new journal
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    start = config.index("[providers.viettelpay]")
    end = config.index("[providers.", start + 1)
    swapped = _GSMA_EWALLET.format(base_url=base_url, journal=journal.resolve().as_posix())
    return config[:start] + swapped.lstrip() + "\n" + config[end:]


def _post_office(ledger: Ledger, directory: Path, seed: int, period: str) -> PostOfficeSimulator:
    """The simulated post office of the ``vnpost`` provider (postal-cash); it pays from the
    5th of the benefit month (the demo replays 2021)."""

    def authorisation(instruction_id: str) -> str | None:
        # what the counter clerk copies from the proxy's identity document: its last 4 digits
        record = ledger.store.instruction(instruction_id)
        person = ledger.store.beneficiary(record.beneficiary_id) if record else None
        held = person.proxy_national_id if person else None
        return held[-4:] if held else None

    return PostOfficeSimulator(
        directory / "postal-outbox",
        directory / "postal-inbox",
        seed=seed,
        authorisation=authorisation,
        start=Period.parse(period).first_day + dt.timedelta(days=4),
    )


def _settle(
    ledger: Ledger,
    period: str,
    bank: BankSimulator | None,
    post_office: PostOfficeSimulator | None = None,
) -> int:
    """Dispatch, then ask (and read the bank's files) until nothing is open; the rounds taken.

    With a post office: its confirmation files are imported and the payment window closed
    (the demo does not wait the window's days: it closes it early, on purpose)."""
    ledger.dispatch(period)
    if post_office is not None:
        for path in post_office.process():
            ledger.import_confirmations(path, provider="vnpost")
        ledger.close_window(period, provider="vnpost", early=True)
    for rounds in range(1, 21):
        if bank is not None:
            for path in bank.process():
                ledger.import_report(path, provider="vietinbank")
        if ledger.reconcile(period).open == 0:
            return rounds
        ledger.dispatch(period)  # anything the provider never received goes again
    return 20


def _campaign(ledger: Ledger, out: TextIO, coverage: CoverageReport, names: dict[str, str]) -> str:
    """Between the first two months: an account-opening campaign moves the commune with the
    lowest electronic share from cash to ViettelPay wallets from the next month on."""
    communes = [line for line in coverage.lines if line.level == "commune" and line.commune_code]
    commune = min(communes, key=lambda line: (line.electronic_share.tenths or 0, line.commune_code))
    code = str(commune.commune_code)
    at = f"{coverage.period}-25T09:00:00+00:00"  # the replayed month, not today
    summary = ledger.create_campaign(
        f"cashless-{code}", provider="viettelpay", communes=[code], by="demo", at=at
    )
    run = ledger.run_campaign(summary.campaign.name, by="demo", at=at)
    start = coverage.period.next()
    switched = ledger.schedule_campaign(summary.campaign.name, start, by="demo")
    out.write(
        f"Account-opening campaign in {code} {names.get(code, '')}: {summary.targeted:,} on cash "
        f"targeted with viettelpay — "
        + ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in run.outcomes.items())
        + f"; {switched:,} paid into their wallet from {start} (cash kept as fallback)\n"
    )
    return code


def run_demo(
    directory: Path,
    *,
    seed: int = 2021,
    out: TextIO,
    quiet: bool = False,
    bank: str = "sandbox",
    ewallet: str = "sandbox",
    gsma_url: str | None = None,
) -> Path:
    """Run the demo in ``directory`` (created if needed; an earlier demo ledger is replaced).

    ``bank="iso20022"`` sends the bank channel as pain.001 files and reads the simulated bank's
    pain.002 and camt.054 answers (:mod:`sap_payments.testing.bank`). ``ewallet="gsma"`` pays
    the e-wallet channel through the GSMA Mobile Money API, against ``gsma_url`` or else a
    sandbox server started for the demo's duration (:mod:`sap_payments.testing.gsma_server`).
    """
    if ewallet == "gsma" and gsma_url is None:
        from sap_payments.testing.gsma_server import Faults, gsma_server

        faults = Faults(seed=seed, inactive_per_mille=25, pending_polls=1)
        with gsma_server(faults=faults) as server:
            return run_demo(
                directory,
                seed=seed,
                out=out,
                quiet=quiet,
                bank=bank,
                ewallet=ewallet,
                gsma_url=server.base_url,
            )
    del quiet
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    _clear(directory)
    config_path = directory / "sap-payments.toml"
    config_text = demo_config(bank, directory)
    if gsma_url is not None:
        config_text = gsma_ewallet_config(config_text, gsma_url, directory)
    config_path.write_text(config_text, encoding="utf-8")
    simulator = (
        BankSimulator(directory / "bank-outbox", directory / "bank-inbox", seed=seed)
        if bank == "iso20022"
        else None
    )
    roster = directory / "roster.csv"
    spec = RosterSpec(seed=seed)
    count = write_roster_csv(roster, roster_rows(spec))
    write_areas_csv(directory / "areas.csv", PHU_LOC_AREAS)
    names = {area.commune_code: area.commune_name for area in PHU_LOC_AREAS}
    out.write(
        f"Synthetic Phú Lộc roster: {count:,} beneficiaries in {len(PHU_LOC_AREAS)} communes "
        f"(seed {seed}) → {roster}\n"
    )
    with roster.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))

    with Ledger.open(directory / "sap-payments.db", config=Config.load(config_path)) as ledger:
        # a ledger id of the seed's, not a random one: the sandboxes' fates follow the
        # instruction ids (which carry it), and the demo replays exactly from its seed
        ledger.store.set_ledger_id(
            hashlib.sha256(f"sap-payments demo {seed}".encode()).hexdigest()[:16]
        )
        ledger.import_areas(directory / "areas.csv")
        approver_key, agency_key = _signing_keys(ledger, directory, out)
        for month, period in enumerate(PERIODS):
            out.write(f"\n── {period} ──\n")
            if month:
                rows = _next_roster(rows, month, seed)
                roster = directory / f"roster-{period}.csv"
                _write(roster, rows)
            imported = ledger.import_roster(roster)
            out.write(
                f"Imported {roster.name}: {imported.added:,} added, {imported.changed:,} "
                f"changed, {imported.unchanged:,} unchanged\n"
            )
            if month == 0:
                out.write(f"Imported: {imported.added:,} beneficiaries\n")
            prepared = ledger.prepare(period, by=PREPARER)
            out.write(
                f"Cycle {period} prepared: {prepared.count:,} instructions, total "
                f"{prepared.total} ({prepared.held:,} held)\n"
            )
            report = ledger.changes(period)
            kinds = Counter(change.kind for change in report.changes)
            if month == 0:
                out.write("Change report: every beneficiary is new in this ledger")
            else:
                out.write(
                    "Change report: "
                    + ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in kinds.items())
                )
            arrears = sum("arrears" in change.reason for change in report.changes)
            fallbacks = sum(
                change.kind == "payee_changed" and "postal" in change.reason
                for change in report.changes
            )
            out.write(f"; {arrears:,} with arrears, {fallbacks:,} moved to cash\n")
            # the approval is bound to what the change report showed (its review digest)
            reviewed = report.review.digest if report.review is not None else None
            approval = ledger.approve(period, by=APPROVER, key=approver_key, expect_digest=reviewed)
            out.write(
                f"Approved by {approval.approved_by}: {approval.ready:,} ready, total "
                f"{approval.total}\n"
            )
            post_office = _post_office(ledger, directory, seed, period)
            rounds = _settle(ledger, period, simulator, post_office)
            counts = post_office.counts
            out.write(
                f"Post office: {counts['paid']:,} collected ({counts['by_proxy']:,} by a proxy), "
                f"{counts['unclaimed'] + counts['not_reported']:,} not collected in the window "
                "(due again next month)\n"
            )
            closed = ledger.close_cycle(period)
            ledger.checkpoint(period, key=agency_key).write(directory / f"checkpoint-{period}.json")
            settlement = ledger.settlement(period)
            total = settlement.total
            out.write(
                f"Dispatched and settled in {rounds} reconcile rounds; closed: "
                f"{closed.paid:,} of {closed.instructed:,} paid; failed {total.failed.count:,}, "
                f"returned {total.returned.count:,}, unclaimed {total.unclaimed.count:,}; "
                f"owed back by the providers {total.balance}\n"
            )
            coverage = ledger.coverage(period)
            for fmt in ("csv", "json"):
                with (directory / f"changes-{period}.{fmt}").open("w", encoding="utf-8") as f:
                    write_change_report(f, fmt, report)
                with (directory / f"coverage-{period}.{fmt}").open("w", encoding="utf-8") as f:
                    write_coverage_report(f, fmt, coverage)
                with (directory / f"settlement-{period}.{fmt}").open("w", encoding="utf-8") as f:
                    write_settlement_report(f, fmt, settlement)
            if month == 0:
                campaign_commune = _campaign(ledger, out, coverage, names)

        shares = [
            next(x for x in ledger.coverage(p).lines if x.commune_code == campaign_commune)
            for p in PERIODS
        ]
        out.write(
            f"\nCampaign commune {campaign_commune}: electronic share "
            + " → ".join(
                f"{p} {x.electronic_share.percent}%" for p, x in zip(PERIODS, shares, strict=True)
            )
            + "\n"
        )

        last = PERIODS[-1]
        out.write(f"\nCoverage {last} (electronic share = paid by e-wallet or bank / all paid):\n")
        for line in ledger.coverage(last).lines:
            if line.commune_code:
                label = f"  {line.commune_code} {names.get(line.commune_code, '')}"
            else:
                label = line.district_name or line.province_name or "total"
            share = line.electronic_share.percent or "-"
            out.write(
                f"  {label:<28} {line.beneficiaries:>6,} beneficiaries  "
                f"{line.paid.count:>6,} paid  {share:>5}% electronic\n"
            )
        out.write(f"\nSettlement {last} by provider:\n")
        for entry in ledger.settlement(last).lines:
            if entry.province_code is None:
                out.write(
                    f"  {entry.provider or 'all':<12} paid {entry.paid.amount!s:>20}   "
                    f"owed back {entry.balance!s:>16}\n"
                )
        audit = ledger.verify_audit(directory / f"checkpoint-{last}.json")
        out.write(
            f"\nAudit trail: {audit.events:,} hash-chained events, {audit.instructions:,} "
            f"instructions checked against them and the signed checkpoint of {last}: "
            + ("OK\n" if audit.ok else f"{audit.total_problems} PROBLEMS\n")
        )
    out.write(
        f"\nWrote the rosters, the ledger, the outbox and the reports (CSV, JSON) to {directory} "
        f"in {time.monotonic() - started:.1f} s.\n"
        f"Next: sap-payments --db {directory / 'sap-payments.db'} report coverage --period {last}\n"
    )
    return directory
