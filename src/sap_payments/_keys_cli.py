"""The ``keys`` commands and ``erase`` of the command line (see cli.py and docs/security.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sap_payments.config import Config
from sap_payments.crypto import KEYRING_ENV, default_keyring_path
from sap_payments.errors import InvalidInput
from sap_payments.keys import new_keyring
from sap_payments.ledger import Ledger

__all__ = ["add_keys_parsers", "erase_command", "keys_command"]


def add_keys_parsers(commands: Any, common: argparse.ArgumentParser, period: Any) -> None:
    """``keys new|status|rotate`` and ``erase``."""
    keys = commands.add_parser(
        "keys", help="the keyring personal data is sealed with", parents=[common]
    )
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser(
        "new",
        help="create a keyring file (mode 0600) before the ledger's first use",
        parents=[common],
    )
    new.add_argument(
        "path",
        type=Path,
        nargs="?",
        help="where (default: the configured keyring, else DB.keyring)",
    )
    actions.add_parser("status", help="how many sealed values each key id holds", parents=[common])
    rotate = actions.add_parser(
        "rotate",
        help="seal everything under a new key, in small transactions (run again to resume)",
        parents=[common],
    )
    rotate.add_argument("--batch", type=int, default=5000, help="rows a transaction (5000)")
    rotate.add_argument(
        "--keep-old",
        action="store_true",
        help="keep the old keys in the keyring (backups taken before the rotation need them)",
    )
    erase = commands.add_parser(
        "erase",
        help="erase personal data past the retention period (ids, amounts, events stay)",
        parents=[common],
    )
    erase.add_argument(
        "--beneficiary", action="append", default=[], metavar="ID", help="repeat for more"
    )
    erase.add_argument(
        "--closed-before",
        type=period,
        metavar="YYYY-MM",
        help="every beneficiary whose last benefit month is earlier",
    )
    erase.add_argument("--programme", help="programme id (default: monthly-allowance)")
    erase.add_argument("--by", help="who erases (recorded in the event)")


def keys_command(
    args: argparse.Namespace, out: TextIO, open_ledger: Callable[[argparse.Namespace], Ledger]
) -> None:
    if args.action == "new":
        path = args.path
        if path is None:
            config = Config.find(getattr(args, "config", None))
            db = getattr(args, "db", Path("sap-payments.db"))
            path = config.keyring or default_keyring_path(db)
        keyring = new_keyring(path)
        out.write(
            f"keyring {path}: key {keyring.active} and an index key (mode 0600)\n"
            f"keep it apart from the database and its backups; point to it with keyring = "
            f'"{path}" in the configuration or {KEYRING_ENV}\n'
        )
        return
    with open_ledger(args) as ledger:
        if args.action == "status":
            keyring = ledger.store.keyring
            mode = "plaintext (insecure)" if keyring.plaintext else "aes-256-gcm"
            out.write(
                f"keyring {keyring.path or '(inline)'}: {mode}, active key {keyring.active}\n"
            )
            for place, counts in ledger.key_status().items():
                shown = ", ".join(f"{key} {count:,}" for key, count in sorted(counts.items()))
                out.write(f"{place:30} {shown}\n")
            return
        started = [0]

        def progress(rows: int) -> None:
            if sys.stderr.isatty() and not getattr(args, "quiet", False):
                sys.stderr.write(f"\rre-sealed {rows:,} rows")
            started[0] = rows

        done = ledger.rotate_keys(batch=args.batch, retire=not args.keep_old, after_batch=progress)
        if started[0] and sys.stderr.isatty():
            sys.stderr.write("\n")
        verb = "resumed: " if done.resumed else ""
        out.write(f"{verb}{done.rows:,} values re-sealed under key {done.active}\n")
        if done.retired:
            out.write(f"retired keys: {', '.join(done.retired)}\n")


def erase_command(
    args: argparse.Namespace, out: TextIO, open_ledger: Callable[[argparse.Namespace], Ledger]
) -> None:
    if not args.beneficiary and args.closed_before is None:
        raise InvalidInput("erase: give --beneficiary ID or --closed-before YYYY-MM")
    with open_ledger(args) as ledger:
        erased = ledger.erase(
            args.beneficiary,
            closed_before=args.closed_before,
            by=args.by,
            programme=args.programme,
        )
    out.write(f"erased the personal data of {len(erased)} beneficiaries\n")
    for ident in erased:
        out.write(f"  {ident}\n")
