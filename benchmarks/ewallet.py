"""Benchmark: dispatch N e-wallet instructions through the GSMA sandbox server on loopback.

    python benchmarks/ewallet.py                     # 50,000 instructions, bulk then single
    python benchmarks/ewallet.py --mode bulk --n 100000
    python benchmarks/ewallet.py --mode single --n 10000 --concurrency 16

The server (``sap-payments sandbox serve``) runs in a separate process with its books in a
SQLite file (fsynced, as in the tests). For each mode a ledger with an approved cycle of N
e-wallet instructions is dispatched by :func:`sap_payments.dispatch.dispatch` through the
``gsma-mobile-money`` adapter, then reconciled until nothing is open. It prints instructions/s
(dispatch wall time, which includes the ledger's outbox commits and results), the p50/p99
latency of the adapter's HTTP requests, the request count, and the peak RSS of this process and
of the server. Target (issue 5): at least 5,000 instructions/s in bulk mode on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sap_payments import Ledger
from sap_payments.beneficiaries import WalletAddress
from sap_payments.dispatch import dispatch, reconcile
from sap_payments.gsma import GsmaProvider
from sap_payments.money import Money
from sap_payments.providers import Payment, Provider, Result, ResultKind
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv

PERIOD = "2021-09"


@contextlib.contextmanager
def server_process(state: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    command = [sys.executable, "-m", "sap_payments.cli", "sandbox", "serve", "--port", "0",
               "--state", str(state)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    url = line.split(" on ", 1)[1].split(" ", 1)[0]
    try:
        yield url, process
    finally:
        peak = Path(f"/proc/{process.pid}/status")
        if peak.is_file():  # the server's own high-water mark (Linux)
            for line in peak.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    print(f"        server peak RSS {int(line.split()[1]) / 1024:.0f} MB")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def approved_ledger(work: Path, n: int) -> Path:
    roster = work / "roster.csv"
    spec = RosterSpec(n=n, seed=5, id_prefix="E", ewallet_share=1000, bank_share=0,
                      postal_share=0, proxy_per_mille=0)  # fmt: skip
    write_roster_csv(roster, roster_rows(spec))
    path = work / "template.db"
    with Ledger.open(path) as ledger:
        ledger.import_roster(roster)
        ledger.prepare(PERIOD)
        ready = ledger.approve(PERIOD, by="benchmark").ready
    print(f"approved cycle: {ready:,} e-wallet instructions")
    return path


def copy_ledger(template: Path, target: Path) -> Path:
    for companion in template.parent.glob(f"{template.name}*"):
        shutil.copy(companion, target.parent / companion.name.replace(template.name, target.name))
    return target


class Timed:
    """The provider, with the time spent inside ``submit`` added up."""

    def __init__(self, inner: GsmaProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.seconds = 0.0

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        started = time.perf_counter()
        try:
            return self.inner.submit(payments)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def spread(latencies: list[float]) -> str:
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return f"request latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def settings_for(mode: str, url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "base_url": url,
        "bulk": mode == "bulk",
        "max_batch": args.max_batch if mode == "bulk" else 100,
        "max_concurrency": args.concurrency,
        "journal": str(work / f"{mode}-{time.monotonic_ns()}-journal.db"),
        "debit_party": "SLDTBXH-DISBURSEMENT",
        "poll_interval": 0.01,
        "timeout": 60,
    }


def channel(mode: str, n: int, work: Path, url: str, args: argparse.Namespace) -> None:
    """The adapter and the server alone: payments built in memory, submitted in batches."""
    payments = [
        Payment(f"{mode}-{i:07d}", Money.vnd(360_000), WalletAddress(f"+8490{i:07d}"),
                "Nguyễn Văn An", "monthly-allowance 2021-09")
        for i in range(n)
    ]  # fmt: skip
    with GsmaProvider("viettelpay", settings_for(mode, url, work, args)) as provider:
        size = provider.capabilities.max_batch
        started = time.perf_counter()
        paid = 0
        for start in range(0, n, size):
            results = provider.submit(payments[start : start + size])
            paid += sum(r.kind is ResultKind.PAID for r in results)
        elapsed = time.perf_counter() - started
        latencies = provider.latencies()
    print(
        f"{mode:>6} channel: {n:,} payments in {elapsed:.2f} s = {n / elapsed:,.0f} "
        f"instructions/s ({paid:,} paid); {len(latencies):,} requests, {spread(latencies)}"
    )


def run(mode: str, template: Path, work: Path, url: str, args: argparse.Namespace) -> None:
    """The whole dispatcher: outbox commits, the adapter, the results applied to the ledger."""
    database = copy_ledger(template, work / f"{mode}.db")
    settings = settings_for(mode, url, work, args)
    with Ledger.open(database) as ledger, GsmaProvider("viettelpay", settings) as provider:
        timed = Timed(provider)
        providers: dict[str, Provider] = {"viettelpay": timed}  # type: ignore[dict-item]
        started = time.perf_counter()
        result = dispatch(ledger.store, PERIOD, providers=providers)
        inside = timed.seconds
        dispatched = time.perf_counter() - started
        rounds = 0
        while reconcile(ledger.store, PERIOD, providers=providers).open and rounds < 20:
            rounds += 1
        total = time.perf_counter() - started
        latencies = provider.latencies()
        requests = provider.http.requests
    print(
        f"{mode:>6} dispatch: {result.sent:,} sent in {dispatched:.2f} s = "
        f"{result.sent / dispatched:,.0f} instructions/s (of which in the adapter "
        f"{inside:.2f} s); settled after {rounds} reconcile rounds in {total:.2f} s; paid "
        f"{result.paid:,}, failed {result.failed:,}, pending {result.pending:,}, unknown "
        f"{result.unknown:,}; {requests:,} requests, {spread(latencies)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="instructions (default 50,000)")
    parser.add_argument("--mode", choices=("bulk", "single", "both"), default="both")
    parser.add_argument("--max-batch", type=int, default=1000, help="bulk batch size")
    parser.add_argument("--concurrency", type=int, default=8, help="threads (single mode)")
    parser.add_argument(
        "--single-n",
        type=int,
        default=10_000,
        help="payments in single mode (default 10,000: one durable commit per request on the "
        "server makes it slow; the dispatch run is left out unless this is at least --n)",
    )
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    modes = ("bulk", "single") if args.mode == "both" else (args.mode,)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        template = approved_ledger(work, args.n)
        for mode in modes:
            n = args.n if mode == "bulk" else min(args.n, args.single_n)
            with server_process(work / f"{mode}-server.db") as (url, _process):
                channel(mode, n, work, url, args)
                if mode == "bulk" or args.single_n >= args.n:
                    run(mode, template, work, url, args)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (ledger, adapter): {own:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
