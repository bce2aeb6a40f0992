"""The signing and audit commands of the command line (see cli.py and docs/audit.md).

``keys generate-signing-key|add-approver|approvers`` join the ``keys`` group (the keyring's
commands live in :mod:`sap_payments._keys_cli`); ``audit verify|checkpoint`` are a group of
their own. The options that bind ``cycle approve`` to the review (``--expect-digest``,
``--expect-count``, ``--expect-total``) and the review line ``cycle show`` and ``report
changes`` print are here too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, TextIO

from sap_payments.audit import AuditFailed, AuditReport
from sap_payments.errors import InvalidInput
from sap_payments.ledger import Ledger
from sap_payments.money import MINOR_UNITS, Money
from sap_payments.signing import CycleReview, generate_signing_key

__all__ = [
    "SIGNING_ACTIONS",
    "add_audit_parsers",
    "add_expect_arguments",
    "audit_command",
    "expectations",
    "parse_total",
    "signing_command",
    "write_review",
]

#: The ``keys`` actions handled here.
SIGNING_ACTIONS: Final = frozenset({"generate-signing-key", "add-approver", "approvers"})


def _subcommands(parser: argparse.ArgumentParser) -> Any:
    """The sub-command action of ``parser`` (argparse keeps no public handle on it)."""
    for action in parser._actions:  # no public handle on a group's sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="action", metavar="ACTION", required=True)


def add_audit_parsers(commands: Any, common: argparse.ArgumentParser, period: Any) -> None:
    """Add the signing actions to the ``keys`` group (created if missing) and the ``audit``
    group."""
    keys = commands.choices.get("keys") or commands.add_parser(
        "keys", help="keys: approvers' signing keys", parents=[common]
    )
    actions = _subcommands(keys)
    generate = actions.add_parser(
        "generate-signing-key",
        help="make an Ed25519 key pair for an approver or the agency (private key mode 0600)",
        parents=[common],
    )
    generate.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the private key file (PEM)"
    )
    add = actions.add_parser(
        "add-approver",
        help="register an approver's public key: from then on approvals must be signed",
        parents=[common],
    )
    add.add_argument("name", help="the approver's name, as given to 'cycle approve --by'")
    add.add_argument("public_key", type=Path, metavar="PUBLIC_KEY_FILE")
    actions.add_parser("approvers", help="the registered approvers", parents=[common])

    audit = commands.add_parser(
        "audit", help="verify the tamper-evident audit trail; checkpoints", parents=[common]
    )
    audits = audit.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = audits.add_parser(
        "verify",
        help="check the hash chain of events and the instructions against it",
        parents=[common],
    )
    verify.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="also check that the log still begins with the events this checkpoint signed",
    )
    checkpoint = audits.add_parser(
        "checkpoint",
        help="sign (with --key) or export a closed cycle's checkpoint as a JSON file",
        parents=[common],
    )
    checkpoint.add_argument("--period", type=period, required=True, metavar="YYYY-MM")
    checkpoint.add_argument("--out", type=Path, required=True, metavar="FILE")
    checkpoint.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="the agency's private signing key: makes a new checkpoint (else the stored one)",
    )
    checkpoint.add_argument("--programme", help="programme id (default: monthly-allowance)")


def signing_command(
    args: argparse.Namespace, out: TextIO, open_ledger: Callable[[argparse.Namespace], Ledger]
) -> None:
    if args.action == "generate-signing-key":
        private, public, ident = generate_signing_key(args.out)
        out.write(
            f"private key {private} (mode 0600: keep it to yourself), public key {public}; "
            f"key id {ident}\n"
        )
        return
    with open_ledger(args) as ledger:
        if args.action == "add-approver":
            key = ledger.add_approver(args.name, args.public_key)
            out.write(
                f"approver {key.name} registered with key {key.key_id}; from now on every "
                "approval must be signed\n"
            )
            return
        registered = ledger.approvers()
        if not registered:
            out.write("no approver keys: this ledger runs without signed approval\n")
        for key in registered:
            out.write(f"{key.name:<40} key {key.key_id}  added {key.added_at}\n")


def write_audit_report(out: TextIO, report: AuditReport) -> None:
    out.write(
        f"audit trail: {report.events:,} events, chain head at event {report.head_seq} "
        f"({report.head[:16]}…); {report.instructions:,} instructions checked against it\n"
    )
    if report.checkpoint is not None:
        c = report.checkpoint
        out.write(
            f"checkpoint {c.programme} {c.period}: events 1-{c.size}, head {c.head[:16]}…, "
            f"signed {c.signed_at} with key {c.key_id}\n"
        )
    for problem in report.problems:
        out.write(f"  {problem}\n")
    if report.total_problems > len(report.problems):
        out.write(f"  … and {report.total_problems - len(report.problems)} more\n")
    out.write("OK\n" if report.ok else f"NOT OK: {report.total_problems} problems\n")


def audit_command(
    args: argparse.Namespace, out: TextIO, open_ledger: Callable[[argparse.Namespace], Ledger]
) -> None:
    with open_ledger(args) as ledger:
        if args.action == "verify":
            report = ledger.verify_audit(args.checkpoint)
            write_audit_report(out, report)
            if not report.ok:
                raise AuditFailed(report)
            return
        checkpoint = ledger.checkpoint(args.period, key=args.key, programme=args.programme)
    checkpoint.write(args.out)
    out.write(
        f"checkpoint of cycle {checkpoint.period} ({checkpoint.programme}): events "
        f"1-{checkpoint.size}, head {checkpoint.head}, key {checkpoint.key_id} → {args.out}\n"
    )


# -- binding an approval to the review ---------------------------------------------------------
def add_expect_arguments(parser: argparse.ArgumentParser) -> None:
    """``cycle approve``'s ``--expect-digest``, ``--expect-count`` and ``--expect-total``."""
    parser.add_argument(
        "--expect-digest",
        metavar="HEX",
        help="the review digest 'cycle show' or 'report changes' printed: nothing is approved "
        "if the cycle changed since (recommended)",
    )
    parser.add_argument(
        "--expect-count",
        type=int,
        metavar="N",
        help="the number of instructions reviewed: refuse if the cycle now has another",
    )
    parser.add_argument(
        "--expect-total",
        metavar="AMOUNT",
        help="the total reviewed, as printed ('6,390,000 VND') or in minor units: refuse if the "
        "cycle's total differs",
    )


def parse_total(text: str, currency: str) -> Money:
    """An amount as a clerk types it: ``6,390,000``, ``6390000 VND``, ``1 250.50 USD``; in
    ``currency`` unless the text names one."""
    number, _, named = text.strip().rpartition(" ")
    if not (named.isalpha() and number):
        number, named = text.strip(), currency
    named = named.upper()
    digits = "".join(c for c in number if c not in ", _")
    try:
        value = Decimal(digits).scaleb(MINOR_UNITS[named])
    except (InvalidOperation, KeyError):
        value = Decimal("NaN")
    if not value.is_finite() or value != value.to_integral_value() or value < 0:
        raise InvalidInput(f"--expect-total: not an amount in {named}: {text!r}")
    return Money(int(value), named)


def expectations(args: argparse.Namespace, ledger: Ledger) -> dict[str, Any]:
    """The ``expect_*`` keywords of :meth:`Ledger.approve` from the command line."""
    total = None
    if args.expect_total is not None:
        currency = ledger.cycle(args.period, programme=args.programme).currency
        total = parse_total(args.expect_total, currency)
    return {
        "expect_digest": args.expect_digest,
        "expect_count": args.expect_count,
        "expect_total": total,
    }


def write_review(args: argparse.Namespace, out: TextIO, review: CycleReview | None) -> None:
    """The review line of ``cycle show`` and ``report changes``: after a table on the
    command's output; on stderr when the report went to a file (``--output``) or is CSV, so
    that neither the output nor the CSV changes. JSON holds it (``"review"``)."""
    if review is None:
        return
    if args.output is None and args.format == "table":
        out.write(f"\n{review}\n")
    elif args.output is not None or args.format == "csv":
        sys.stderr.write(f"{review}\n")
