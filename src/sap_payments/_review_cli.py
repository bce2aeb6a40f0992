"""The ``review`` commands of the command line: answers that did not match what was sent (see
cli.py, sap_payments.reviews and docs/operations.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TextIO

from sap_payments.ledger import Ledger
from sap_payments.output import FORMATS
from sap_payments.reports import write_records
from sap_payments.reviews import RESOLUTIONS

__all__ = ["add_review_parsers", "review_command"]

REVIEW_COLUMNS = (
    "item",
    "instruction_id",
    "provider",
    "kind",
    "raised_at",
    "detail",
    "resolved_at",
    "resolved_by",
    "resolution",
)


def add_review_parsers(commands: Any, common: argparse.ArgumentParser, period: Any) -> None:
    """``review list`` and ``review resolve``."""
    review = commands.add_parser(
        "review",
        help="answers that did not match what was sent (another amount, currency or account)",
        parents=[common],
    )
    actions = review.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="the review items waiting for a decision", parents=[common]
    )
    listing.add_argument("--period", type=period, metavar="YYYY-MM", help="of this cycle only")
    listing.add_argument("--all", action="store_true", help="the resolved items too")
    listing.add_argument("--programme", help="programme id (default: monthly-allowance)")
    listing.add_argument("--format", choices=FORMATS, default="table", help="output format")
    listing.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    resolve = actions.add_parser(
        "resolve",
        help="decide a review item: paid, resend (same key), failed, returned",
        parents=[common],
    )
    resolve.add_argument("item", type=int, metavar="ITEM", help="the item's number")
    resolve.add_argument(
        "--as",
        dest="resolution",
        required=True,
        choices=RESOLUTIONS,
        help="paid: the provider confirms the instruction's amount reached its account; "
        "resend: the provider confirms it never paid the key (sent again, same key); "
        "failed: no money moved (needs --no-money-moved); returned: paid, and back with us",
    )
    resolve.add_argument("--by", required=True, help="who decides (recorded)")
    resolve.add_argument(
        "--reason", required=True, help="why, without personal data (recorded in the events)"
    )
    resolve.add_argument(
        "--no-money-moved",
        action="store_true",
        help="with --as failed: the provider confirmed in writing that no money moved under "
        "the key (its months are paid again next cycle, under a new key)",
    )


def review_command(
    args: argparse.Namespace,
    out: TextIO,
    open_ledger: Callable[[argparse.Namespace], Ledger],
    target: Callable[[argparse.Namespace, TextIO], AbstractContextManager[TextIO]],
) -> None:
    """Run ``review list`` or ``review resolve``."""
    with open_ledger(args) as ledger:
        if args.action == "resolve":
            items = ledger.resolve_review(
                args.item,
                args.resolution,
                by=args.by,
                reason=args.reason,
                no_money_moved=args.no_money_moved,
            )
            numbers = ", ".join(str(item.item_id) for item in items)
            out.write(
                f"review item {numbers} resolved as {args.resolution} by {args.by}: instruction "
                f"{items[0].instruction_id}{_next_step(args.resolution)}\n"
            )
            return
        items = ledger.review_items(
            args.period, programme=args.programme, include_resolved=args.all
        )

    def rows() -> Iterator[list[Any]]:
        for item in items:
            yield [
                item.item_id,
                item.instruction_id,
                item.provider,
                item.kind,
                item.raised_at,
                item.detail,
                item.resolved_at or "",
                item.resolved_by or "",
                item.resolution or "",
            ]

    with target(args, out) as handle:
        write_records(
            handle,
            args.format,
            REVIEW_COLUMNS,
            rows(),
            header={"review_items": len(items)},
            key="items",
        )


def _next_step(resolution: str) -> str:
    return {
        "paid": " is PAID",
        "resend": " is READY: 'cycle dispatch' sends it again, same key",
        "failed": " is FAILED: its months are paid again in the next cycle prepared",
        "returned": " is RETURNED: its months are paid again in the next cycle prepared",
    }[resolution]
