"""Benchmark: import a synthetic roster and prepare its first cycle.

    python benchmarks/prepare.py               # 100,000 beneficiaries
    python benchmarks/prepare.py --n 1000000   # the target size
    python benchmarks/prepare.py --encryption both   # sealed and plaintext side by side

``--encryption``: ``on`` (the default: personal data sealed with AES-256-GCM, as every ledger
stores it), ``off`` (the insecure plaintext mode, for this comparison only) or ``both``.

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
from sap_payments.crypto import Keyring
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the workers):
    less disturbed than wall time when other work shares the machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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
    parser.add_argument(
        "--encryption",
        choices=("on", "off", "both"),
        default="on",
        help="seal personal data (on, the default), store it in clear (off: insecure, for "
        "comparison only), or run both and compare",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each mode, alternating; the best is shown"
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

        modes = ("off", "on") if args.encryption == "both" else (args.encryption,)
        # mode → [(import s, import CPU s, prepare s, prepare CPU s)], the modes alternating
        runs: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in modes}
        for repeat in range(args.repeat):
            for mode in modes if repeat % 2 == 0 else modes[::-1]:  # neither always goes first
                name = f"ledger-{mode}-{repeat}.db"
                keyring = Keyring.insecure_plaintext() if mode == "off" else Keyring.generate()
                with Ledger.open(work / name, keyring=keyring) as ledger:
                    started, cpu = time.perf_counter(), cpu_seconds()
                    imported = ledger.import_roster(roster, workers=args.workers)
                    import_seconds = time.perf_counter() - started
                    import_cpu = cpu_seconds() - cpu
                    started, cpu = time.perf_counter(), cpu_seconds()
                    prepared = ledger.prepare("2021-09", workers=args.workers)
                    prepare_seconds = time.perf_counter() - started
                    prepare_cpu = cpu_seconds() - cpu
                size = sum(p.stat().st_size for p in work.glob(name + "*"))
                for p in work.glob(name + "*"):
                    p.unlink()
                runs[mode].append((import_seconds, import_cpu, prepare_seconds, prepare_cpu))
        # the best of the repeats: the machine is shared, noise only ever adds time
        import_seconds, _, prepare_seconds, _ = (min(t) for t in zip(*runs[modes[-1]], strict=True))

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
    if len(runs) == 2:
        count = prepared.count
        off = [min(t) for t in zip(*runs["off"], strict=True)]
        on = [min(t) for t in zip(*runs["on"], strict=True)]
        print(
            f"encryption (best of {args.repeat})   plaintext (insecure)   sealed (AES-256-GCM)"
            "   rate lost"
        )
        for label, k, per in (("import", 0, n), ("prepare", 2, count)):
            print(
                f"  {label:8} wall       {per / off[k]:>12,.0f} /s      {per / on[k]:>12,.0f} /s"
                f"      {1 - off[k] / on[k]:>6.1%}"
            )
            print(
                f"  {label:8} CPU        {off[k + 1]:>12.2f} s       {on[k + 1]:>12.2f} s "
                f"      {1 - off[k + 1] / on[k + 1]:>6.1%}  (CPU time of all processes)"
            )
        print("  target: encryption costs at most 30% of the import rate")
    else:
        print(f"encryption              {'on (AES-256-GCM)' if modes == ('on',) else 'off'}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"workers                 {args.workers:>12}")
    print(f"peak RSS                {peak_rss_mb():>12.1f} MB    (target < 400)")
    print(f"peak RSS of a worker    {children:>12.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
