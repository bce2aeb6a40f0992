"""A simulated post office for the ``postal-cash`` plugin: it reads the payout lists in the
outbox and answers each with a confirmation file, as the real one would after its window.

Deterministic from its seed: most lines are collected (on a day inside the window; by the proxy
when the list names one), some are reported ``unclaimed`` and some are not reported at all (the
window close makes them UNCLAIMED). It never writes a bad row; tests write those by hand.

>>> office = PostOfficeSimulator(outbox, inbox, seed=2021)   # doctest: +SKIP
>>> for path in office.process():                            # doctest: +SKIP
...     ledger.import_confirmations(path, provider="vnpost")
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

from sap_payments._files import write_atomically
from sap_payments.postal.confirmations import CONFIRMATION_COLUMNS

__all__ = ["PostOfficeSimulator"]


class PostOfficeSimulator:
    """Answers every payout list in ``outbox`` not answered yet with a confirmation CSV in
    ``inbox``.

    Collections are dated from ``start`` (default: the day the list's window opened) over as
    many days as the window has. ``authorisation(instruction_id)`` gives what the counter
    clerk copies from a proxy's identity document (the last 4 digits, see ``docs/postal.md``);
    the simulator cannot see documents, so the caller looks it up.
    """

    def __init__(
        self,
        outbox: Path,
        inbox: Path,
        *,
        seed: int = 0,
        unclaimed_per_mille: int = 60,
        authorisation: Callable[[str], str | None] | None = None,
        start: dt.date | None = None,
    ) -> None:
        self.outbox = outbox
        self.inbox = inbox
        self.seed = seed
        self.unclaimed_per_mille = unclaimed_per_mille
        self.authorisation = authorisation or (lambda _key: None)
        #: the first day cash is paid (default: the day the list opened its window); a replay
        #: of past months sets it to their dates
        self.start = start
        #: what the last :meth:`process` reported: paid, paid to a proxy, unclaimed, not reported
        self.counts = {"paid": 0, "by_proxy": 0, "unclaimed": 0, "not_reported": 0}

    def _draw(self, key: str) -> int:
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def process(self) -> list[Path]:
        """Write a confirmation file for each list not answered yet; return their paths."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.counts = dict.fromkeys(self.counts, 0)
        written = []
        for manifest_path in sorted(self.outbox.glob("payout-*.manifest.json")):
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            target = self.inbox / f"confirmations-{manifest['list_id']}.csv"
            if target.exists():
                continue
            opens = dt.date.fromisoformat(manifest["window_opens"])
            days = (dt.date.fromisoformat(manifest["window_closes"]) - opens).days + 1
            opens = self.start or opens
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(CONFIRMATION_COLUMNS)
            for entry in manifest["files"]:
                with (self.outbox / entry["csv"]).open(encoding="utf-8", newline="") as handle:
                    for line in csv.DictReader(handle):
                        row = self._answer(line, opens, days)
                        if row is not None:
                            writer.writerow(row)
            write_atomically(target, out.getvalue().encode("utf-8"))
            written.append(target)
        return written

    def _answer(self, line: dict[str, str], opens: dt.date, days: int) -> list[str] | None:
        key = line["instruction_id"]
        draw = self._draw(key)
        fixed = [key, line["collection_code"], line["amount"], line["pay_point"]]
        ledger = line.get("ledger") or ""  # copied from the list, as a post office's system would
        if draw % 1000 < self.unclaimed_per_mille:
            if draw % 2:  # half reported, half left for the window close
                self.counts["not_reported"] += 1
                return None
            self.counts["unclaimed"] += 1
            return [*fixed, "unclaimed", "", "", "", "", ledger]
        on = opens + dt.timedelta(days=(draw // 1000) % days)
        self.counts["paid"] += 1
        if line["payee_kind"] == "proxy":
            self.counts["by_proxy"] += 1
            reference = self.authorisation(key) or ""
            return [*fixed, "paid", on.isoformat(), "proxy", line["payee"], reference, ledger]
        return [*fixed, "paid", on.isoformat(), "beneficiary", "", "", ledger]
