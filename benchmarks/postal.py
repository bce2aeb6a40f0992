"""Benchmark: a cycle of N cash payments through the postal-cash plugin.

    python benchmarks/postal.py                # 20,000 beneficiaries, all paid in cash
    python benchmarks/postal.py --n 100000

Prints, per step, the time and rate: dispatch (payout lists written: CSV + XLSX per pay point,
manifests), the confirmation import (every code verified, every mandate of a proxy checked),
the window close (the uncollected made UNCLAIMED, streaks looked at) and the anomaly report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

from sap_payments import Config, Ledger
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv
from sap_payments.testing.post_office import PostOfficeSimulator

SECRET = "b1" * 32

CONFIG = """
[providers.vnpost]
plugin = "postal-cash"
channel = "postal"
outbox = "{outbox}"
secret = "{secret}"
max_batch = 5000
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="beneficiaries (default 20,000)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        roster = work / "roster.csv"
        spec = RosterSpec(
            n=args.n, seed=7, id_prefix="C", ewallet_share=0, bank_share=0, postal_share=1000
        )
        write_roster_csv(roster, roster_rows(spec))
        outbox = work / "postal-outbox"
        config = Config.loads(CONFIG.format(outbox=outbox.as_posix(), secret=SECRET))
        with Ledger.open(work / "ledger.db", config=config) as ledger:
            ledger.import_roster(roster, workers=2)
            ledger.prepare("2021-09", workers=2)
            ready = ledger.approve("2021-09", by="checker").ready

            def authorisation(key: str) -> str | None:
                record = ledger.store.instruction(key)
                person = ledger.store.beneficiary(record.beneficiary_id) if record else None
                held = person.proxy_national_id if person else None
                return held[-4:] if held else None

            started = time.perf_counter()
            sent = ledger.dispatch("2021-09")
            dispatch_seconds = time.perf_counter() - started
            lists = len(list(outbox.glob("payout-*.csv")))
            office = PostOfficeSimulator(
                outbox,
                work / "inbox",
                seed=7,
                authorisation=authorisation,
                start=dt.date(2021, 9, 5),  # collections in the benefit month, as in 2021
            )
            files = office.process()
            started = time.perf_counter()
            applied = rejected = 0
            for path in files:
                done = ledger.import_confirmations(path, provider="vnpost")
                applied += done.applied
                rejected += done.rejected
            import_seconds = time.perf_counter() - started
            started = time.perf_counter()
            window = ledger.close_window("2021-09", provider="vnpost", early=True)
            window_seconds = time.perf_counter() - started
            started = time.perf_counter()
            anomalies = ledger.anomalies("2021-09")
            anomaly_seconds = time.perf_counter() - started
    print(f"instructions            {ready:>12,}")
    print(
        f"dispatch (lists)        {dispatch_seconds:>12.2f} s  {ready / dispatch_seconds:>10,.0f}"
        f" instructions/s  ({sent.batches:,} batches, {lists:,} pay-point lists, CSV + XLSX)"
    )
    rows = applied + rejected
    print(
        f"confirmation import     {import_seconds:>12.2f} s  {rows / import_seconds:>10,.0f}"
        f" rows/s  ({applied:,} applied, {rejected:,} to review)"
    )
    print(
        f"window close            {window_seconds:>12.2f} s  ({window.unclaimed:,} unclaimed, "
        f"{len(window.flagged):,} flagged)"
    )
    print(
        f"anomaly report          {anomaly_seconds:>12.2f} s  "
        f"({len(anomalies.anomalies):,} anomalies)"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS                {rss:>12.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
