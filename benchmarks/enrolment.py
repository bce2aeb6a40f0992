"""Benchmark: an account-opening campaign over every cash beneficiary of a synthetic roster.

    python benchmarks/enrolment.py               # 100,000 beneficiaries, 40% on cash
    python benchmarks/enrolment.py --n 20000

Prints the time of each step — create (targeting), run (one enrol call to the in-process
sandbox e-wallet and one attempt recorded per target), apply (scheduling), the prepare that
applies the mandate updates (against a prepare of the same roster without a campaign), and
``report enrolment`` — with targets per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sap_payments import Config, Ledger
from sap_payments.synthetic import PHU_LOC_AREAS, RosterSpec, roster_rows, write_roster_csv

CONFIG = """
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="beneficiaries")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        roster = directory / "roster.csv"
        spec = RosterSpec(n=args.n, ewallet_share=560, bank_share=40, postal_share=400)
        write_roster_csv(roster, roster_rows(spec))
        timings: dict[str, float] = {}
        for with_campaign in (False, True):
            ledger = Ledger.open(directory / f"l{with_campaign}.db", config=Config.loads(CONFIG))
            ledger.import_roster(roster)
            ledger.prepare("2021-09")
            ledger.approve("2021-09", by="checker")
            if with_campaign:
                communes = [area.commune_code for area in PHU_LOC_AREAS]
                started = time.perf_counter()
                summary = ledger.create_campaign("all", provider="viettelpay", communes=communes)
                timings["create"] = time.perf_counter() - started
                started = time.perf_counter()
                run = ledger.run_campaign("all")
                timings["run"] = time.perf_counter() - started
                started = time.perf_counter()
                scheduled = ledger.schedule_campaign("all", "2021-10")
                timings["apply"] = time.perf_counter() - started
            started = time.perf_counter()
            ledger.prepare("2021-10")
            timings[f"prepare {with_campaign}"] = time.perf_counter() - started
            if with_campaign:
                started = time.perf_counter()
                report = ledger.enrolment_report()
                timings["report"] = time.perf_counter() - started
            ledger.close()
    targets = summary.targeted
    print(f"{args.n:,} beneficiaries, {targets:,} on cash targeted; outcomes {run.outcomes}")
    print(f"create (targeting)     {timings['create']:7.2f} s")
    rate = targets / timings["run"]
    print(f"run (enrol + record)   {timings['run']:7.2f} s  {rate:>9,.0f} targets/s")
    print(f"apply (schedule)       {timings['apply']:7.2f} s  {scheduled:,} scheduled")
    extra = timings["prepare True"] - timings["prepare False"]
    print(
        f"prepare 2021-10        {timings['prepare False']:7.2f} s without a campaign, "
        f"{timings['prepare True']:.2f} s applying {scheduled:,} updates "
        f"({scheduled / extra if extra > 0 else float('inf'):,.0f} updates/s)"
    )
    print(f"report enrolment       {timings['report']:7.2f} s  {len(report.lines):,} lines")


if __name__ == "__main__":
    main()
