"""Kill ``sap-payments cycle dispatch`` with SIGKILL while it pays through a slow GSMA sandbox
server, run it again, and find every payment applied exactly once in the server's books.

The server lives in this test process (books in a SQLite file); the dispatcher is a child
process killed at random points. A killed run may leave a batch on its way to the server: the
adapter's journal says which batch carried each key, and a batch's "not found" becomes
authoritative only ``in_flight_grace`` after it was sent, so the rerun never sends those keys
again under another correlation id while the first request may still land.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import roster_row, write_roster
from sap_payments import Config, Ledger
from sap_payments.instructions import OPEN_STATES
from sap_payments.testing.gsma_server import Faults, gsma_server

PERIOD = "2021-09"

CONFIG = """
[providers.viettelpay]
plugin = "gsma-mobile-money"
channel = "ewallet"
base_url = "{url}"
bulk = true
bulk_threshold = 10
max_batch = 40
journal = "{dir}/gsma-journal.db"
debit_party = "ACC-0001"
poll_interval = 0.01
in_flight_grace = 1.0
max_retries = 3
backoff = 0.01
"""


def run_with_kills(tmp_path: Path, n: int, kills: int, seed: int) -> None:
    rows = [roster_row(f"B{i:05d}", msisdn=f"09{i:08d}") for i in range(n)]
    roster = write_roster(tmp_path / "roster.csv", rows)
    faults = Faults(
        seed=seed, latency=0.01, post_latency=0.1, drop_per_mille=30, error_per_mille=30
    )
    with gsma_server(faults=faults, state=tmp_path / "server-books.db") as server:
        config_path = tmp_path / "sap-payments.toml"
        config_path.write_text(CONFIG.format(url=server.base_url, dir=tmp_path), encoding="utf-8")
        db = tmp_path / "ledger.db"
        with Ledger.open(db, config=Config.load(config_path)) as ledger:
            ledger.import_roster(roster)
            ledger.prepare(PERIOD)
            approval = ledger.approve(PERIOD, by="checker")
        command = [
            sys.executable, "-m", "sap_payments.cli", "--db", str(db), "--config",
            str(config_path), "--quiet", "cycle", "dispatch", "--period", PERIOD,
        ]  # fmt: skip
        rng = random.Random(seed)
        killed = 0
        for _ in range(kills):
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.6, 1.5))  # start-up, then a point in the run
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                killed += 1
            process.wait()
        finished = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        assert finished.returncode == 0, finished.stderr
        assert killed >= 1, "no run was killed: lengthen the payroll or shorten the waits"

        with Ledger.open(db, config=Config.load(config_path)) as ledger:
            for _ in range(100):  # settle: status queries, and resends of what never arrived
                if ledger.reconcile(PERIOD).open == 0:
                    break
                time.sleep(0.1)  # a batch's "not found" waits out in_flight_grace
                ledger.dispatch(PERIOD)
            records = [record for record, _ in ledger.instructions(PERIOD)]
        books = server.payments()
    live = [r for r in records if r.state != "CANCELLED"]
    assert len(live) == approval.ready  # nothing lost …
    assert not [r for r in live if r.state in OPEN_STATES]  # … nothing left open …
    keys = [key for key, *_ in books]
    assert len(keys) == len(set(keys)), "a payment was applied twice"  # … nothing paid twice
    paid = {r.instruction_id: r.amount for r in live if r.state == "PAID"}
    assert {key: int(amount) for key, _msisdn, amount, _currency in books} == paid
    assert len(paid) > n // 2


def test_killed_gsma_dispatch_pays_each_instruction_once(tmp_path: Path) -> None:
    run_with_kills(tmp_path, n=800, kills=4, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20, 26))
def test_killed_gsma_dispatch_with_more_seeds(tmp_path: Path, seed: int) -> None:
    run_with_kills(tmp_path, n=2400, kills=8, seed=seed)
