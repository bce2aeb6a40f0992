"""``sap-payments sandbox serve`` and ``sap-payments demo --ewallet gsma``."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sap_payments.cli import main
from sap_payments.config import Config
from sap_payments.demo import demo_config, gsma_ewallet_config
from sap_payments.errors import InvalidInput
from sap_payments.ledger import Ledger
from sap_payments.plugins import open_provider
from sap_payments.testing.gsma_server import Faults


def test_sandbox_serve_answers_until_interrupted(tmp_path: Path) -> None:
    state = tmp_path / "books.db"
    command = [sys.executable, "-m", "sap_payments.cli", "sandbox", "serve", "--port", "0",
               "--state", str(state), "--fault", "inactive=1000"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("GSMA Mobile Money sandbox on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        with urllib.request.urlopen(f"{url}/heartbeat", timeout=10) as answer:
            assert json.load(answer) == {"serviceStatus": "available"}
        status = f"{url}/accounts/msisdn/+84912345678/status"
        with urllib.request.urlopen(status, timeout=10) as answer:
            assert json.load(answer) == {"accountStatus": "unavailable"}  # the fault
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert state.is_file()


def test_sandbox_serve_refuses_an_unknown_fault() -> None:
    err = io.StringIO()
    code = main(["sandbox", "serve", "--port", "0", "--fault", "gremlins=3"], out=err)
    assert code == 1


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["error=100", "drop=20"], Faults(error_per_mille=100, drop_per_mille=20)),
        (["latency=0.05", "duplicate_callbacks"], Faults(latency=0.05, duplicate_callbacks=True)),
        (["pending-polls=2", "seed=9"], Faults(pending_polls=2, seed=9)),
    ],
)
def test_faults_parse(specs: list[str], expected: Faults) -> None:
    assert Faults.parse(specs) == expected


@pytest.mark.parametrize("spec", ["error=2000", "error=x", "latency=", "nothing=1"])
def test_bad_faults_are_refused(spec: str) -> None:
    with pytest.raises(InvalidInput):
        Faults.parse([spec])


def test_the_demo_config_swaps_the_ewallet_provider(tmp_path: Path) -> None:
    text = gsma_ewallet_config(demo_config("sandbox", tmp_path), "http://127.0.0.1:9", tmp_path)
    (tmp_path / "sap-payments.toml").write_text(text, encoding="utf-8")
    config = Config.load(tmp_path / "sap-payments.toml")
    assert set(config.providers) == {"viettelpay", "vietinbank", "vnpost"}
    wallet = config.providers["viettelpay"]
    assert wallet.plugin == "gsma-mobile-money"
    with open_provider(wallet) as provider:
        assert provider.settings.bulk
        assert provider.settings.journal == (tmp_path / "gsma-journal.db").resolve()
        assert provider.capabilities.address_validation


@pytest.mark.slow  # the whole demo, three months (the sandbox demo runs in test_demo.py)
def test_demo_can_route_the_ewallet_through_the_gsma_api(tmp_path: Path) -> None:
    directory = tmp_path / "gsma"
    out = io.StringIO()
    code = main(["demo", "--dir", str(directory), "--quiet", "--ewallet", "gsma"], out=out)
    assert code == 0, out.getvalue()
    config = (directory / "sap-payments.toml").read_text(encoding="utf-8")
    assert 'plugin = "gsma-mobile-money"' in config
    assert (directory / "gsma-journal.db").is_file()
    with Ledger.open(directory / "sap-payments.db") as ledger:
        assert [c.state for c in ledger.store.cycles("monthly-allowance")] == ["closed"] * 3
        wallets = [r for r, _ in ledger.instructions("2021-09") if r.provider == "viettelpay"]
        states = {r.state for r in wallets}
    assert "PAID" in states
    assert "FAILED" in states  # the server's inactive wallets
    assert states <= {"PAID", "FAILED", "CANCELLED"}
