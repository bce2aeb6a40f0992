"""Benchmark: what the audit trail and signed approval cost on a payroll.

    python benchmarks/audit.py               # 100,000 beneficiaries
    python benchmarks/audit.py --n 1000000

Prepares a synthetic payroll twice in the same process tree — with the audit trail, and with it
switched off (no hash chain, no instruction contents, no approval manifest) — and prints, for
prepare and for a signed approve, the wall time and the CPU time of the parent and of the
worker processes. CPU times are the steadier figures on a busy machine. Then times
``audit verify`` on the full ledger.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sap_payments import Ledger, cycles, sqlite_store
from sap_payments.signing import generate_signing_key
from sap_payments.store import ApprovalRecord
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _switch_off() -> Callable[[], None]:
    """Turn the audit trail off (plain inserts, no contents, no manifest); returns the undo."""
    saved = (
        sqlite_store.SQLiteStore._seal_events,
        sqlite_store.SQLiteStore._append_sealed,
        sqlite_store.instruction_content,
        cycles.instruction_content,
        cycles.sign_approval,
    )

    def append(self: sqlite_store.SQLiteStore, rows: object) -> None:
        self._db.executemany(
            "INSERT INTO events (at, kind, instruction_id, from_state, to_state, actor, detail, "
            "content) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (row[:-1] for row in rows),  # type: ignore[attr-defined]
        )

    def unsigned(*args: object) -> ApprovalRecord:
        programme, period, approver, currency, at = args[1], args[2], args[3], args[4], args[6]
        return ApprovalRecord(
            str(programme), int(period), str(approver), None, None, "0" * 64, 0, 0, str(currency),
            str(at),
        )  # fmt: skip

    sqlite_store.SQLiteStore._seal_events = lambda self: (0, bytes(32))  # type: ignore[method-assign]
    sqlite_store.SQLiteStore._append_sealed = append  # type: ignore[method-assign]
    sqlite_store.instruction_content = cycles.instruction_content = lambda *_: ""  # type: ignore[assignment]
    cycles.sign_approval = unsigned  # type: ignore[assignment]

    def undo() -> None:
        (
            sqlite_store.SQLiteStore._seal_events,
            sqlite_store.SQLiteStore._append_sealed,
            sqlite_store.instruction_content,
            cycles.instruction_content,
            cycles.sign_approval,
        ) = saved  # type: ignore[method-assign, assignment]

    return undo


def run(work: Path, roster: Path, *, audit: bool, workers: int) -> tuple[float, ...]:
    undo = None if audit else _switch_off()
    try:
        key, public, _ = generate_signing_key(work / "keys" / "approver.pem")
        with Ledger.open(work / "ledger.db") as ledger:
            ledger.import_roster(roster, workers=workers)
            if audit:
                ledger.add_approver("checker", public)
            cpu, children, wall = time.process_time(), _children_cpu(), time.perf_counter()
            prepared = ledger.prepare("2021-09", workers=workers, by="maker")
            prepare = (
                time.perf_counter() - wall,
                time.process_time() - cpu,
                _children_cpu() - children,
            )
            cpu, wall = time.process_time(), time.perf_counter()
            ledger.approve("2021-09", by="checker", key=key if audit else None)
            approve = (time.perf_counter() - wall, time.process_time() - cpu)
            verify = 0.0
            if audit:
                wall = time.perf_counter()
                report = ledger.verify_audit()
                verify = time.perf_counter() - wall
                assert report.ok, report.problems
        return (prepared.count, *prepare, *approve, verify)
    finally:
        if undo is not None:
            undo()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="beneficiaries (default 100,000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        roster = Path(tmp) / "roster.csv"
        write_roster_csv(roster, roster_rows(RosterSpec(n=args.n, seed=7, id_prefix="B")))
        results = {}
        for audit in (False, True, False, True):  # alternated: load drifts on a shared machine
            work = Path(tempfile.mkdtemp(dir=tmp))
            figures = run(work, roster, audit=audit, workers=args.workers)
            results.setdefault(audit, []).append(figures)
    print(f"beneficiaries {args.n:,}, workers {args.workers}; best of 2 runs each")
    print(
        f"{'':12} {'prepare wall':>13} {'parent cpu':>11} {'workers cpu':>12} "
        f"{'approve wall':>13} {'approve cpu':>12}"
    )
    best = {
        audit: [min(column) for column in zip(*runs, strict=True)]
        for audit, runs in results.items()
    }
    for audit, label in ((False, "audit off"), (True, "audit on")):
        count, pw, pc, wc, aw, ac, _ = best[audit]
        print(f"{label:12} {pw:12.2f}s {pc:10.2f}s {wc:11.2f}s {aw:12.2f}s {ac:11.2f}s")
    count = best[True][0]
    off, on = best[False], best[True]
    print(
        f"cost per instruction: prepare {(on[2] - off[2]) / count * 1e6:.1f} µs parent CPU + "
        f"{(on[3] - off[3]) / count * 1e6:.1f} µs worker CPU; approve (manifest, signature, "
        f"chain) {(on[5] - off[5]) / count * 1e6:.1f} µs CPU"
    )
    print(f"audit verify: {on[6]:.2f} s ({count:,} instructions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
