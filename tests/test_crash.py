"""Kill the dispatching process with SIGKILL at random points, run it again, and check that
nothing was paid twice and nothing was lost.

The providers are the sandboxes with their books in files (`state`), so what they paid survives
the dispatcher's death, as a real provider's would. The default run sends about 20,000
instructions with 8 kills; ``pytest -m slow`` repeats it with ten more seeds and 12 kills each.
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

from sap_payments import Config, Ledger
from sap_payments.instructions import OPEN_STATES
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv
from sap_payments.testing.sandbox import SandboxProvider, bank, ewallet, postal

PERIOD = "2021-09"
PROGRAMME = "monthly-allowance"

CONFIG = """
[providers.viettelpay]
plugin = "sandbox-ewallet"
channel = "ewallet"
state = "{dir}/viettelpay.db"
seed = 3
timeout_per_mille = 3
late_per_mille = 200
max_batch = 100

[providers.vietinbank]
plugin = "sandbox-bank"
channel = "bank"
state = "{dir}/vietinbank.db"
seed = 3
timeout_per_mille = 3
max_batch = 100

[providers.vnpost]
plugin = "sandbox-postal"
channel = "postal"
state = "{dir}/vnpost.db"
seed = 3
max_batch = 100
"""


def run_with_kills(tmp_path: Path, n: int, kills: int, seed: int) -> None:
    config_path = tmp_path / "sap-payments.toml"
    config_path.write_text(CONFIG.format(dir=tmp_path), encoding="utf-8")
    roster = tmp_path / "roster.csv"
    write_roster_csv(roster, roster_rows(RosterSpec(n=n, seed=seed)))
    db = tmp_path / "ledger.db"
    with Ledger.open(db, config=Config.load(config_path)) as ledger:
        ledger.import_roster(roster)
        ledger.prepare(PERIOD)
        approval = ledger.approve(PERIOD, by="checker")
    command = [
        sys.executable,
        "-m",
        "sap_payments.cli",
        "--db",
        str(db),
        "--config",
        str(config_path),
        "--quiet",
        "cycle",
        "dispatch",
        "--period",
        PERIOD,
    ]
    rng = random.Random(seed)
    killed = 0
    for _ in range(kills):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.15, 0.6))  # start-up (~0.15 s), then a point early in the run
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed += 1
        process.wait()
    finished = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert killed >= 1, "no run was killed: lengthen the payroll or shorten the waits"

    with Ledger.open(db, config=Config.load(config_path)) as ledger:
        for _ in range(30):  # settle what is still pending, by status queries
            if ledger.reconcile(PERIOD).open == 0:
                break
        records = [record for record, _ in ledger.instructions(PERIOD)]
        sandboxes: dict[str, SandboxProvider] = {
            name: factory(name, {"state": str(tmp_path / f"{name}.db"), "seed": 3})
            for name, factory in (("viettelpay", ewallet), ("vietinbank", bank), ("vnpost", postal))
        }
        try:
            moved: dict[str, int] = {}
            for sandbox in sandboxes.values():
                for key, amount in sandbox.movements():
                    assert key not in moved, f"{key} paid twice"
                    moved[key] = amount
            live = [r for r in records if r.state != "CANCELLED"]
            assert len(live) == approval.ready  # nothing lost …
            assert not [r for r in live if r.state in OPEN_STATES]  # … nothing left open …
            # … and the ledger agrees with the providers' books: money left the agency for
            # every instruction paid, returned, or advanced as cash that was not collected
            advanced = {"PAID", "RETURNED", "UNCLAIMED"}
            for record in live:
                if record.state in advanced:
                    assert moved.get(record.instruction_id) == record.amount, record
                else:
                    assert record.instruction_id not in moved, record
            paid = sum(r.amount for r in live if r.state in advanced)
            assert paid == sum(moved.values())
            assert paid > 0
        finally:
            for sandbox in sandboxes.values():
                sandbox.close()


def test_killed_dispatch_runs_pay_nothing_twice_and_lose_nothing(tmp_path: Path) -> None:
    run_with_kills(tmp_path, n=20_300, kills=8, seed=12)  # about 20,000 instructions


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20, 30))
def test_killed_dispatch_runs_with_more_seeds(tmp_path: Path, seed: int) -> None:
    run_with_kills(tmp_path, n=20_300, kills=12, seed=seed)
