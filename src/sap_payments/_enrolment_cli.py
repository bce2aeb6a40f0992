"""The ``campaign`` commands and ``report enrolment`` of the command line (see cli.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TextIO

from sap_payments.enrolment import CampaignSummary
from sap_payments.enrolment_report import write_enrolment_report
from sap_payments.ledger import Ledger
from sap_payments.output import FORMATS
from sap_payments.periods import Period
from sap_payments.reports import write_records

__all__ = ["add_campaign_parser", "add_enrolment_report", "campaign_command", "enrolment_command"]

Options = Callable[[argparse.ArgumentParser], None]


def add_enrolment_report(
    reports: Any, common: argparse.ArgumentParser, programme: Options, period: Any
) -> None:
    """``report enrolment``."""
    enrolment = reports.add_parser(
        "enrolment",
        help="account-opening campaigns per commune and provider: targeted, opened, pending, "
        "failed, and the share paid into an account, month by month",
        parents=[common],
    )
    enrolment.add_argument(
        "--period",
        type=period,
        action="append",
        metavar="YYYY-MM",
        help="only this month (repeat for more); default: every month, then the records now",
    )
    programme(enrolment)
    enrolment.add_argument("--format", choices=FORMATS, default="table", help="output format")
    enrolment.add_argument("--output", "-o", type=Path, help="write to this file, not stdout")


def add_campaign_parser(
    commands: Any, common: argparse.ArgumentParser, programme: Options, period: Any
) -> None:
    """``campaign create|run|import|apply|show``."""
    campaign = commands.add_parser(
        "campaign", help="account-opening campaigns: cash to e-wallet or bank", parents=[common]
    )
    actions = campaign.add_subparsers(dest="action", metavar="ACTION", required=True)

    def by(p: argparse.ArgumentParser) -> None:
        p.add_argument("--by", help="who does it (recorded with each attempt and event)")

    create = actions.add_parser(
        "create", help="target the beneficiaries of some areas on a channel", parents=[common]
    )
    create.add_argument("--name", required=True, help="the campaign's name (letters, digits)")
    create.add_argument("--commune", nargs="+", default=[], metavar="CODE", help="communes")
    create.add_argument("--district", nargs="+", default=[], metavar="CODE", help="districts")
    create.add_argument(
        "--channel",
        choices=("postal", "bank", "ewallet"),
        default="postal",
        help="the targets' current channel (default postal)",
    )
    create.add_argument(
        "--provider", required=True, help="the configured e-wallet or bank provider"
    )
    programme(create)
    by(create)
    run = actions.add_parser(
        "run", help="ask the provider to open (or confirm) each account", parents=[common]
    )
    run.add_argument("name")
    run.add_argument("--retry-failed", action="store_true", help="try failed targets again")
    by(run)
    results = actions.add_parser(
        "import", help="apply the provider's results file (CSV or XLSX), once", parents=[common]
    )
    results.add_argument("name")
    results.add_argument("file", type=Path)
    by(results)
    apply = actions.add_parser(
        "apply",
        help="switch the beneficiaries with a new account from a benefit month on",
        parents=[common],
    )
    apply.add_argument("name")
    apply.add_argument("--from-period", type=period, required=True, metavar="YYYY-MM")
    by(apply)
    show = actions.add_parser("show", help="a campaign and its targets", parents=[common])
    show.add_argument("name")
    show.add_argument("--format", choices=FORMATS, default="table", help="output format")


def _outcomes(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in counts.items()) or "none"


class _Progress:
    """``done/total`` on stderr when it is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if self.enabled:
            sys.stderr.write(f"\rattempts: {done:,}/{total:,}   ")
            sys.stderr.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _show(out: TextIO, fmt: str, summary: CampaignSummary) -> None:
    c = summary.campaign
    columns = ("commune_code", "state", "count")
    rows = [
        (commune, state, count)
        for commune, states in summary.by_commune.items()
        for state, count in states.items()
    ]
    header = {
        "campaign": c.name,
        "programme": c.programme,
        "provider": c.provider,
        "from_channel": c.target_channel,
        "to_channel": c.channel,
        "created_at": c.created_at,
        "created_by": c.created_by,
        "targeted": summary.targeted,
        "states": summary.states,
        "scheduled_from": list(summary.scheduled_from),
    }
    if fmt == "table":
        out.write(
            f"campaign {c.name} ({c.programme}): {c.target_channel} → {c.channel} with "
            f"{c.provider}; {summary.targeted:,} targeted — {_outcomes(summary.states)}"
            + (
                f"; switching from {', '.join(summary.scheduled_from)}"
                if summary.scheduled_from
                else ""
            )
            + "\n"
        )
    write_records(out, fmt, columns, iter(rows), header=header, key="communes")


def campaign_command(
    args: argparse.Namespace, out: TextIO, open_ledger: Callable[[argparse.Namespace], Ledger]
) -> None:
    """Run ``campaign ACTION``."""
    with open_ledger(args) as ledger:
        if args.action == "create":
            summary = ledger.create_campaign(
                args.name,
                provider=args.provider,
                communes=args.commune,
                districts=args.district,
                channel=args.channel,
                programme=args.programme,
                by=args.by,
            )
            out.write(
                f"campaign {args.name} created: {summary.targeted:,} beneficiaries on "
                f"{args.channel} in {len(summary.by_commune):,} communes, for "
                f"{summary.campaign.provider} ({summary.campaign.channel})\n"
            )
        elif args.action == "run":
            progress = _Progress(not getattr(args, "quiet", False) and sys.stderr.isatty())
            try:
                result = ledger.run_campaign(
                    args.name, by=args.by, retry_failed=args.retry_failed, progress=progress
                )
            finally:
                progress.done()
            out.write(
                f"campaign {args.name}: {result.attempted:,} attempts — "
                f"{_outcomes(result.outcomes)}\n"
            )
        elif args.action == "import":
            done = ledger.import_enrolment_results(args.name, args.file, by=args.by)
            if done.already_imported:
                out.write(f"{args.file.name}: imported before; nothing to do\n")
            else:
                out.write(f"{args.file.name}: {done.rows:,} results — {_outcomes(done.outcomes)}\n")
        elif args.action == "apply":
            count = ledger.schedule_campaign(args.name, args.from_period, by=args.by)
            out.write(
                f"campaign {args.name}: {count:,} beneficiaries switch to their new account "
                f"from {args.from_period} (applied when that cycle is prepared; the old "
                "address stays as fallback)\n"
            )
        else:
            _show(out, args.format, ledger.campaign(args.name))


def enrolment_command(
    args: argparse.Namespace,
    out: TextIO,
    open_ledger: Callable[[argparse.Namespace], Ledger],
    target: Callable[[argparse.Namespace, TextIO], AbstractContextManager[TextIO]],
) -> None:
    """Run ``report enrolment``."""
    periods: list[Period] | None = args.period
    with open_ledger(args) as ledger:
        report = ledger.enrolment_report(periods, programme=args.programme)
    with target(args, out) as handle:
        write_enrolment_report(handle, args.format, report)
