"""``sap-payments demo``: the Phú Lộc pilot, replayed on a synthetic roster.

In 2021 Phú Lộc district (Thừa Thiên Huế) paid 8,364 social-assistance beneficiaries in 17
communes without cash, through ViettelPay e-wallets, with a bank and the post office alongside.
The demo builds a roster like it (see :mod:`sap_payments.synthetic`), imports it with the commune
names, prepares and approves the September 2021 cycle, and prints the control totals and the
change report. Everything it writes goes under ``--dir``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from sap_payments.config import Config
from sap_payments.ledger import Ledger
from sap_payments.reports import write_change_report
from sap_payments.synthetic import (
    PHU_LOC_AREAS,
    RosterSpec,
    roster_rows,
    write_areas_csv,
    write_roster_csv,
)

__all__ = ["DEMO_CONFIG", "run_demo"]

PERIOD = "2021-09"
APPROVER = "Trưởng phòng Bảo trợ xã hội (demo)"

DEMO_CONFIG = """\
# Written by 'sap-payments demo'. The providers are the pilot's three channels; the plugins are
# the sandboxes that ship with sap_payments.testing.
currency = "VND"
programme = "monthly-allowance"

[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"

[providers.vietinbank]
plugin = "sandbox-bank"
channel = "bank"

[providers.vnpost]
plugin = "sandbox-postal"
channel = "postal"
"""


def _clear(directory: Path) -> None:
    for name in ("sap-payments.db", "sap-payments.db-wal", "sap-payments.db-shm"):
        (directory / name).unlink(missing_ok=True)


def run_demo(directory: Path, *, seed: int = 2021, out: TextIO, quiet: bool = False) -> Path:
    """Run the demo in ``directory`` (created if needed; an earlier demo ledger is replaced)."""
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    _clear(directory)
    config_path = directory / "sap-payments.toml"
    config_path.write_text(DEMO_CONFIG, encoding="utf-8")
    roster = directory / "roster.csv"
    areas = directory / "areas.csv"
    spec = RosterSpec(seed=seed)
    rows = write_roster_csv(roster, roster_rows(spec))
    write_areas_csv(areas, PHU_LOC_AREAS)
    out.write(
        f"Synthetic Phú Lộc roster: {rows:,} beneficiaries in {len(PHU_LOC_AREAS)} "
        f"communes (seed {seed}) → {roster}\n"
    )

    with Ledger.open(directory / "sap-payments.db", config=Config.load(config_path)) as ledger:
        ledger.import_areas(areas)
        imported = ledger.import_roster(roster)
        out.write(f"Imported: {imported.added:,} beneficiaries\n")
        prepared = ledger.prepare(PERIOD)
        out.write(
            f"Cycle {PERIOD} prepared: {prepared.count:,} instructions, total {prepared.total} "
            f"({prepared.held:,} held)\n"
        )
        for name, total in prepared.by_provider.items():
            out.write(f"  {name:<12} {total.count:>6,} instructions  {total.amount!s:>22}\n")
        approval = ledger.approve(PERIOD, by=APPROVER)
        out.write(
            f"Approved by {approval.approved_by}: {approval.ready:,} ready, total "
            f"{approval.total}; {approval.cancelled_held:,} held instructions cancelled "
            "(their months stay due)\n"
        )
        report = ledger.changes(PERIOD)
        names = {area.commune_code: area.commune_name for area in PHU_LOC_AREAS}

        out.write(f"\nChange report {PERIOD} (no earlier cycle in this ledger):\n")
        reasons = Counter((c.kind, c.reason.split(";")[0]) for c in report.changes)
        for (kind, reason), count in sorted(reasons.items(), key=lambda item: -item[1]):
            out.write(f"  {kind:<15} {count:>6,}  {reason}\n")
        with_arrears = sum("arrears" in c.reason for c in report.changes)
        out.write(f"  ({with_arrears:,} of them with arrears for back-dated decisions)\n")

        per_commune = Counter(c.commune_code for c in report.changes if c.kind == "added")
        out.write("\nInstructions per commune:\n")
        for code, count in sorted(per_commune.items()):
            out.write(f"  {code} {names.get(code, ''):<22} {count:>6,}\n")

        for fmt in ("csv", "json"):
            path = directory / f"changes-{PERIOD}.{fmt}"
            with path.open("w", encoding="utf-8", newline="") as handle:
                write_change_report(handle, fmt, report)
    out.write(
        f"\nWrote the roster, the ledger and the change report (CSV, JSON) to {directory} "
        f"in {time.monotonic() - started:.1f} s.\n"
        f"Next: sap-payments --db {directory / 'sap-payments.db'} cycle show --period {PERIOD}\n"
    )
    del quiet
    return directory
