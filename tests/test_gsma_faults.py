"""At most once, under every fault the sandbox server injects: a seeded sweep of dispatch and
reconcile rounds through the real dispatcher, each seed drawing its faults, its mode (single or
bulk) and its limits; restarts (a fresh provider on the same journal) happen between rounds.

After the rounds every instruction is settled, and the server's books hold exactly one payment
for each PAID instruction, for its amount, and none for any other.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import roster_row, write_roster
from sap_payments import Ledger
from sap_payments.dispatch import dispatch, reconcile
from sap_payments.gsma import GsmaProvider
from sap_payments.instructions import OPEN_STATES
from sap_payments.testing.gsma_server import Faults, gsma_server

PERIOD = "2021-09"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An approved cycle of 24 e-wallet instructions, copied for each seed."""
    directory = tmp_path_factory.mktemp("gsma-template")
    rows = [roster_row(f"B{i:02d}", msisdn=f"09{i:08d}") for i in range(24)]
    roster = write_roster(directory / "roster.csv", rows)
    with Ledger.open(directory / "ledger.db") as ledger:
        ledger.import_roster(roster)
        ledger.prepare(PERIOD)
        ledger.approve(PERIOD, by="checker")
    return directory / "ledger.db"


def draw(seed: int, journal: Path) -> tuple[Faults, dict[str, Any]]:
    rng = random.Random(seed)
    faults = Faults(
        seed=seed,
        error_per_mille=rng.choice([0, 100, 250]),
        drop_per_mille=rng.choice([0, 100, 300]),
        rate_limit_per_mille=rng.choice([0, 0, 150]),
        retry_after=0,
        inactive_per_mille=rng.choice([0, 100]),
        unregistered_per_mille=rng.choice([0, 50]),
        pending_polls=rng.randrange(0, 4),
        poll_limit=rng.randrange(1, 4),
    )
    settings = {
        "poll_interval": 0,
        "backoff": 0.001,
        "max_retries": rng.randrange(1, 4),  # 0 with 40% faults and pages of 2: no liveness
        "poll_limit": rng.randrange(0, 3),
        "bulk": rng.random() < 0.6,
        "bulk_threshold": rng.randrange(2, 8),
        "max_batch": rng.choice([3, 5, 8, 50]),
        "max_concurrency": rng.choice([1, 4]),
        "check_accounts": rng.random() < 0.2,
        "journal": str(journal),
        "debit_party": "ACC-0001",
        "page_size": rng.choice([2, 1000]),
        "in_flight_grace": 0,  # no request outlives its answer here: nothing is in flight
    }
    return faults, settings


def run_seed(template: Path, directory: Path, seed: int) -> None:
    rng = random.Random(-seed)
    database = directory / "ledger.db"
    for companion in template.parent.glob(f"{template.name}*"):  # the keyring too, if any
        shutil.copy(companion, directory / companion.name.replace(template.name, database.name))
    faults, settings = draw(seed, directory / "journal.db")
    with gsma_server(faults=faults) as server, Ledger.open(database) as ledger:
        settings["base_url"] = server.base_url

        def fresh() -> GsmaProvider:
            return GsmaProvider("viettelpay", settings, sleep=lambda _seconds: None)

        provider = fresh()
        try:
            dispatch(ledger.store, PERIOD, providers={"viettelpay": provider})
            for _round in range(80):
                if rng.random() < 0.25:  # a restart: the memory goes, the journal stays
                    provider.close()
                    provider = fresh()
                providers = {"viettelpay": provider}
                if reconcile(ledger.store, PERIOD, providers=providers).open == 0:
                    break
                dispatch(ledger.store, PERIOD, providers=providers)
        finally:
            provider.close()
        records = [record for record, _ in ledger.instructions(PERIOD)]
        books = server.payments()
        paid = {key: server.paid(key) for key, *_ in books}
    still_open = [r.instruction_id for r in records if r.state in OPEN_STATES]
    assert not still_open, f"seed {seed}: {len(still_open)} still open ({faults}, {settings})"
    keys = [key for key, *_ in books]
    assert len(keys) == len(set(keys)), f"seed {seed}: paid twice: {faults}, {settings}"
    by_id = {r.instruction_id: r for r in records}
    for key, _msisdn, amount, _currency in books:
        assert by_id[key].state == "PAID", f"seed {seed}: {key} paid but {by_id[key].state}"
        assert int(amount) == by_id[key].amount
    assert {r.instruction_id for r in records if r.state == "PAID"} == set(paid)
    assert {r.state for r in records} <= {"PAID", "FAILED", "CANCELLED"}


@pytest.mark.parametrize("seed", range(60))
def test_at_most_once_under_injected_faults(template: Path, tmp_path: Path, seed: int) -> None:
    run_seed(template, tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(60, 1060))
def test_at_most_once_under_injected_faults_more_seeds(
    template: Path, tmp_path: Path, seed: int
) -> None:
    run_seed(template, tmp_path, seed)
