"""Benchmark: write a pain.001 of N transactions, and read a pain.002 and a camt.054 of N.

    python benchmarks/iso20022.py                  # 100,000 transactions
    python benchmarks/iso20022.py --n 20000
    pip install sepaxml && python benchmarks/iso20022.py   # adds python-sepaxml for comparison

Prints transactions/s and peak RSS for each, checks the pain.001 against the XSD when lxml and
the shared schemas are there, and — in the same run, when python-sepaxml is installed (only in
the benchmark's environment, it is no dependency) — times sepaxml writing the same number of
transfers. Targets (issue 4): our writer at least 10x sepaxml's rate with XSD-valid output;
the readers at least 200,000 transactions/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

from sap_payments.iso20022.model import CreditTransfer, DebtorAccount, TransferBatch
from sap_payments.iso20022.pain001 import write_pain001
from sap_payments.iso20022.reading import read_camt054, read_pain002
from sap_payments.money import Money
from sap_payments.testing.bank import BankSimulator

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "standards" / "iso20022"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    n = args.n
    debtor = DebtorAccount("Sở LĐ-TB&XH tỉnh Thừa Thiên Huế", "102010001234567", "970415")
    transfers = tuple(
        CreditTransfer(
            f"202109-{i:020X}",
            Money.vnd(360_000 + (i % 7) * 90_000),
            "Nguyễn Thị Hồng Đào",
            f"10201{i:010d}",
            ("970415", "970436", "970418", "970405")[i % 4],
            "monthly-allowance 2021-09",
        )
        for i in range(n)
    )
    created = dt.datetime(2021, 9, 5, 8, 0, tzinfo=dt.UTC)
    batch = TransferBatch("SAPBENCH0001", created, created.date(), debtor, transfers)

    started = time.perf_counter()
    data = write_pain001(batch)
    write_seconds = time.perf_counter() - started
    print(
        f"pain.001 write      {n:>9,} tx  {write_seconds:>7.2f} s  {n / write_seconds:>12,.0f} tx/s"
        f"  ({len(data) / 2**20:.1f} MiB)   peak RSS {rss_mb():.0f} MB"
    )

    if SHARED.is_dir():
        try:
            from lxml import etree
        except ImportError:
            print("XSD check skipped: lxml is not installed")
        else:
            schema = etree.XMLSchema(etree.parse(str(SHARED / "pain.001.001.09.xsd")))
            valid = schema.validate(etree.fromstring(data))
            print(f"pain.001 XSD-valid  {valid}")

    with tempfile.TemporaryDirectory() as tmp:
        outbox, inbox = Path(tmp) / "outbox", Path(tmp) / "inbox"
        outbox.mkdir()
        (outbox / "pain.001.001.09-SAPBENCH0001.xml").write_bytes(data)
        BankSimulator(outbox, inbox, seed=1, reject_per_mille=20, return_per_mille=5).process()
        status = next(inbox.glob("pain.002-*.xml"))
        notice = next(inbox.glob("camt.054-*.xml"))
        for label, reader, path in (
            ("pain.002 read", read_pain002, status),
            ("camt.054 read", read_camt054, notice),
        ):
            started = time.perf_counter()
            count = len(reader(path))
            seconds = time.perf_counter() - started
            print(
                f"{label:<19} {count:>9,} tx  {seconds:>7.2f} s  {count / seconds:>12,.0f} tx/s"
                f"  ({path.stat().st_size / 2**20:.1f} MiB)   peak RSS {rss_mb():.0f} MB"
            )

    try:
        from sepaxml import SepaTransfer  # type: ignore[import-untyped]
    except ImportError:
        print("sepaxml: not installed (pip install sepaxml, in the benchmark's environment only)")
        return 0
    config = {
        "name": "Agency",
        "IBAN": "DE89370400440532013000",
        "BIC": "COBADEFFXXX",
        "batch": True,
        "currency": "EUR",
    }
    sepa = SepaTransfer(config, schema="pain.001.001.09", clean=True)
    started = time.perf_counter()
    for i in range(n):
        sepa.add_payment(
            {
                "name": "Nguyen Thi Hong Dao",
                "IBAN": "DE75512108001245126199",
                "BIC": "SOGEDEFFXXX",
                "amount": 36_000 + i % 7,
                "execution_date": created.date(),
                "description": "monthly-allowance 2021-09",
                "endtoend_id": f"E2E{i:020d}",
            }
        )
    sepa.export(validate=False)
    sepa_seconds = time.perf_counter() - started
    print(
        f"sepaxml write       {n:>9,} tx  {sepa_seconds:>7.2f} s  {n / sepa_seconds:>12,.0f} tx/s"
    )
    print(f"our writer / sepaxml {sepa_seconds / write_seconds:>8.1f}x   (target >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
