"""The canary test over the whole demo: three months of import, prepare, signed approval,
dispatch through every channel (e-wallet, bank, the post office's payout lists and
confirmations), window close, a campaign and every report, with canary values planted in the
synthetic roster. None of them may appear in the ledger file, its -wal or -shm, the logs
(captured at DEBUG) or the demo's own output.

Provider files (outbox payloads, payout lists, the post office's confirmations, the sandboxes'
books) are left out on purpose: they carry what a provider needs to pay (docs/security.md).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sap_payments import demo as demo_module
from sap_payments.roster import ROSTER_COLUMNS

COLUMN = {name: index for index, name in enumerate(ROSTER_COLUMNS)}

#: Unique values that appear in no synthetic roster.
CANARIES = {
    "full_name": "Vương Thị Canarydemo",
    "national_id": "046987650123",
    "msisdn": "0398760123",
    "account_number": "88776655440123",
    "proxy_name": "Đặng Văn Proxydemo",
    "proxy_national_id": "046123490123",
}
FORMS = {**CANARIES, "msisdn e164": "+84398760123"}


def _planted(original: Any) -> Any:
    """``roster_rows`` with the canaries planted in three beneficiaries of the first roster
    (and kept on them in every later roster: the demo derives those from the first)."""
    chosen: dict[str, dict[str, str]] = {}

    def rows(spec: Any) -> Iterator[list[str]]:
        for cells in original(spec):
            cells = list(cells)
            ident = cells[COLUMN["beneficiary_id"]]
            if len(chosen) < 3 and ident not in chosen:
                channel = cells[COLUMN["channel"]]
                wanted = {"ewallet", "bank", "proxy"} - {v["kind"] for v in chosen.values()}
                kind = "proxy" if cells[COLUMN["proxy_name"]] else channel
                if kind in wanted and ident not in chosen:
                    if kind == "ewallet":
                        chosen[ident] = {
                            "kind": kind,
                            "full_name": CANARIES["full_name"],
                            "national_id": CANARIES["national_id"],
                            "msisdn": CANARIES["msisdn"],
                        }
                    elif kind == "bank":
                        chosen[ident] = {
                            "kind": kind,
                            "account_number": CANARIES["account_number"],
                        }
                    else:
                        chosen[ident] = {
                            "kind": kind,
                            "proxy_name": CANARIES["proxy_name"],
                            "proxy_national_id": CANARIES["proxy_national_id"],
                        }
            for field, value in chosen.get(ident, {}).items():
                if field != "kind":
                    cells[COLUMN[field]] = value
            yield cells

    rows.chosen = chosen  # type: ignore[attr-defined]
    return rows


def test_no_canary_leaves_the_demo_in_the_ledger_or_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    planted = _planted(demo_module.roster_rows)
    monkeypatch.setattr(demo_module, "roster_rows", planted)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with caplog.at_level(logging.DEBUG):
        directory = demo_module.run_demo(tmp_path / "demo", out=out)
    assert {v["kind"] for v in planted.chosen.values()} == {"ewallet", "bank", "proxy"}

    # The canaries did reach the roster the demo imported, and a provider file: the test
    # would see them if the ledger kept them in clear.
    roster = (directory / "roster.csv").read_text(encoding="utf-8")
    assert all(value in roster for value in CANARIES.values())

    ledger_files = [p for p in directory.iterdir() if p.name.startswith("sap-payments.db")]
    assert any(p.name == "sap-payments.db" for p in ledger_files)
    texts = {p.name: p.read_bytes() for p in ledger_files}
    texts["logs"] = caplog.text.encode()
    texts["output"] = out.getvalue().encode()
    leaks = [
        f"{what} in {where}"
        for where, data in texts.items()
        for what, value in FORMS.items()
        if value.encode() in data
    ]
    assert leaks == []
