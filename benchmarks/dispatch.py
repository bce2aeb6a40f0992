"""Benchmark: dispatch and reconcile N instructions through the in-process sandbox providers.

    python benchmarks/dispatch.py                # 100,000 instructions
    python benchmarks/dispatch.py --n 20000

Prints instructions/s for dispatch (outbox commit, provider call, results applied) and for the
reconcile rounds that settle what was pending, and the peak RSS. Target (issue 3): the library
is never the bottleneck — at least 20,000 instructions/s through the in-process sandbox.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sap_payments import Config, Ledger
from sap_payments.providers import Provider
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv

CONFIG = """
[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"
max_batch = 1000
late_per_mille = 100

[providers.vietinbank]
plugin = "sandbox-bank"
channel = "bank"
max_batch = 1000

[providers.vnpost]
plugin = "sandbox-postal"
channel = "postal"
max_batch = 1000
"""


class Timed:
    """A provider wrapper that adds up the time spent inside the provider."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="beneficiaries (default 100,000)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument(
        "--no-fsync", action="store_true", help="synchronous=OFF, to see what durability costs"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        roster = work / "roster.csv"
        write_roster_csv(roster, roster_rows(RosterSpec(n=args.n, seed=5, id_prefix="B")))
        config = Config.loads(CONFIG)
        with Ledger.open(work / "ledger.db", config=config, durable=not args.no_fsync) as ledger:
            ledger.import_roster(roster, workers=2)
            ledger.prepare("2021-09", workers=2)
            ready = ledger.approve("2021-09", by="checker").ready
            timed = {name: Timed(p) for name, p in ledger.provider_instances().items()}
            ledger.providers = timed  # type: ignore[assignment]
            started = time.perf_counter()
            sent = ledger.dispatch("2021-09")
            dispatch_seconds = time.perf_counter() - started
            dispatch_inside = sum(t.seconds for t in timed.values())
            started = time.perf_counter()
            rounds = 0
            while True:
                rounds += 1
                done = ledger.reconcile("2021-09")
                if done.open == 0 or rounds == 10:
                    break
            reconcile_seconds = time.perf_counter() - started
            closed = ledger.close_cycle("2021-09")
    print(f"instructions            {ready:>12,}")
    print(
        f"dispatch                {dispatch_seconds:>12.2f} s  "
        f"{ready / dispatch_seconds:>12,.0f} instructions/s  ({sent.batches:,} batches)"
    )
    print(
        f"reconcile ({rounds} rounds)    {reconcile_seconds:>12.2f} s  "
        f"{ready / reconcile_seconds:>12,.0f} instructions/s"
    )
    total = dispatch_seconds + reconcile_seconds
    inside = sum(t.seconds for t in timed.values())
    reconcile_inside = inside - dispatch_inside
    print(
        f"  in the sandbox: dispatch {dispatch_inside:.2f} s, reconcile {reconcile_inside:.2f} s;"
        f" the library alone: dispatch {ready / (dispatch_seconds - dispatch_inside):,.0f}/s,"
        f" reconcile {ready / (reconcile_seconds - reconcile_inside):,.0f}/s"
    )
    print(
        f"dispatch + reconcile    {total:>12.2f} s  {ready / total:>12,.0f} instructions/s"
        "   (target >= 20,000)"
    )
    print(f"closed                  {closed.paid:>12,} paid of {closed.instructed:,}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS                {rss:>12.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
