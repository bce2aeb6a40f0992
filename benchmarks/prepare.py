"""Benchmark: import a synthetic roster and prepare its first cycle.

    python benchmarks/prepare.py               # 100,000 beneficiaries
    python benchmarks/prepare.py --n 1000000   # the target size

Prints rows/s for the import, instructions/s for prepare, peak RSS, and the floor: the raw
SQLite ``executemany`` insert rate of the same number of instruction-shaped rows, into a file
database with the same durability settings. Targets at 1,000,000 (docs/benchmarks.md): import
≥ 100,000 rows/s; prepare within 4x of the floor's time; peak RSS < 400 MB.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from sap_payments import Ledger
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor(path: Path, n: int, *, full: bool) -> float:
    """Seconds to insert n instruction rows with one executemany, durably committed (WAL,
    synchronous=FULL), into a bare table keyed by the instruction id: nothing else written.

    ``full``: the rows prepare writes, all 18 fields of an instruction (the floor the target is
    measured against); otherwise a narrow 9-field row, shown for comparison.
    """
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    width = 18 if full else 9
    db.execute(
        f"CREATE TABLE t (id TEXT PRIMARY KEY, {', '.join(f'c{k}' for k in range(1, width))})"
    )

    def row(i: int) -> tuple[object, ...]:
        ident = f"202109-{i * 2654435761 % 2**64:020X}"  # ids arrive in no particular order
        if not full:
            return (
                ident,
                f"B-{i:09d}",
                "CREATED",
                "ewallet",
                "viettelpay",
                f"ewallet:+8491{i % 10_000_000:07d}",
                "Nguyễn Văn An",
                360_000,
                "VND",
            )
        return (
            ident,
            "monthly-allowance",
            24260,
            f"B-{i:09d}",
            1,
            "CREATED",
            None,
            "ewallet",
            "viettelpay",
            f"ewallet:+8491{i % 10_000_000:07d}",
            "beneficiary",
            "Nguyễn Văn An",
            360_000,
            "VND",
            '[[24260,"regular",360000,"1"]]',
            "46",
            "482",
            "20107",
        )

    started = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO t VALUES ({', '.join('?' * width)})", (row(i) for i in range(n)))
    db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="beneficiaries (default 100,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes for import and prepare (2)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        roster = work / "roster.csv"
        started = time.perf_counter()
        write_roster_csv(roster, roster_rows(RosterSpec(n=args.n, seed=args.seed, id_prefix="B")))
        generated = time.perf_counter() - started

        floor_seconds = floor(work / "floor.db", args.n, full=True)
        narrow_seconds = floor(work / "narrow.db", args.n, full=False)

        with Ledger.open(work / "ledger.db") as ledger:
            started = time.perf_counter()
            imported = ledger.import_roster(roster, workers=args.workers)
            import_seconds = time.perf_counter() - started
            started = time.perf_counter()
            prepared = ledger.prepare("2021-09", workers=args.workers)
            prepare_seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in work.glob("ledger.db*"))

    n = args.n
    print(f"beneficiaries           {n:>12,}")
    print(f"roster generated        {generated:>12.2f} s")
    print(
        f"import                  {import_seconds:>12.2f} s  {n / import_seconds:>12,.0f} rows/s"
        f"  ({imported.added:,} added)"
    )
    print(
        f"prepare                 {prepare_seconds:>12.2f} s  "
        f"{prepared.count / prepare_seconds:>12,.0f} instructions/s  ({prepared.count:,} "
        f"instructions, total {prepared.total})"
    )
    print(
        f"floor: executemany      {floor_seconds:>12.2f} s  {n / floor_seconds:>12,.0f} rows/s"
        "  (the same number of instruction rows, 18 fields)"
    )
    print(f"  narrow, 9 fields      {narrow_seconds:>12.2f} s  {n / narrow_seconds:>12,.0f} rows/s")
    print(f"prepare / floor         {prepare_seconds / floor_seconds:>12.2f} x   (target <= 4)")
    print(f"prepare / narrow floor  {prepare_seconds / narrow_seconds:>12.2f} x")
    print(f"ledger size             {size / 2**20:>12.1f} MiB")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"workers                 {args.workers:>12}")
    print(f"peak RSS                {peak_rss_mb():>12.1f} MB    (target < 400)")
    print(f"peak RSS of a worker    {children:>12.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
