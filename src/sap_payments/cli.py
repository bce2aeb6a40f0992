"""``sap-payments``: the command line for scripts and clerks.

Every command exits 0 on success and non-zero on any error, with a one-line cause on stderr
(``--debug`` adds the traceback); ``cycle dispatch`` exits 3 when instructions wait for a
provider that is not configured (docs/formats.md, section 5). ``cycle dispatch`` and ``cycle
reconcile`` go on past a provider that fails, then exit 1 with one ``error:`` line per failure.
Long work shows progress on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from sap_payments._audit_cli import (
    SIGNING_ACTIONS,
    add_audit_parsers,
    add_expect_arguments,
    audit_command,
    expectations,
    signing_command,
    write_review,
)
from sap_payments._enrolment_cli import (
    add_campaign_parser,
    add_enrolment_report,
    campaign_command,
    enrolment_command,
)
from sap_payments._keys_cli import add_keys_parsers, erase_command, keys_command
from sap_payments._review_cli import add_review_parsers, review_command
from sap_payments.config import Config
from sap_payments.cycles import reviewing
from sap_payments.errors import InvalidInput, SapPaymentsError
from sap_payments.ledger import SHARED_KINDS, Ledger
from sap_payments.output import FORMATS
from sap_payments.periods import Period
from sap_payments.postal import write_anomaly_report, write_flags
from sap_payments.public_list import write_public_files
from sap_payments.reports import (
    write_change_report,
    write_coverage_report,
    write_coverage_trend,
    write_cycle,
    write_records,
    write_settlement_report,
)
from sap_payments.rules import RuleSet
from sap_payments.store import AreaRecord

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_WAITING = 3  # cycle dispatch: instructions wait for a provider that is not configured
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class Progress:
    """A counter on stderr, redrawn in place; silent when stderr is not a terminal."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        rate = f", {done / elapsed:,.0f}/s" if elapsed > 0.5 else ""
        sys.stderr.write(f"\r{self.label}: {done:,}{rate}   ")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _period(text: str) -> Period:
    try:
        return Period.parse(text)
    except SapPaymentsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def _percent(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"not a whole percentage from 0 to 100: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        type=Path,
        default=argparse.SUPPRESS,
        help="the ledger database (default ./sap-payments.db)",
    )
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="configuration file (default ./sap-payments.toml when present)",
    )
    common.add_argument(
        "--rules",
        type=Path,
        default=argparse.SUPPRESS,
        help="rule-set TOML file (default: the configured one, else the Vietnamese default)",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks on errors",
    )
    common.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress output",
    )
    parser = argparse.ArgumentParser(
        prog="sap-payments",
        description="Pay social assistance electronically: import rosters, prepare and approve "
        "payment cycles, report.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def programme(p: argparse.ArgumentParser) -> None:
        p.add_argument("--programme", help="programme id (default: monthly-allowance)")

    def workers(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--workers",
            type=_positive,
            default=min(4, os.cpu_count() or 1),
            help="processes for large inputs (default: the CPUs, at most 4; small inputs use 1)",
        )

    def lease_wait(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="when another run holds the cycle (dispatch, reconcile, close), wait this long "
            "for it instead of exiting 1 at once (default: 0)",
        )

    def fmt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=FORMATS, default="table", help="output format")
        p.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")

    imp = commands.add_parser("import", help="import a roster or area list", parents=[common])
    imports = imp.add_subparsers(dest="what", metavar="WHAT", required=True)
    roster = imports.add_parser(
        "roster", help="import a beneficiary roster (CSV or XLSX, format v1)", parents=[common]
    )
    roster.add_argument("file", type=Path)
    programme(roster)
    workers(roster)
    areas = imports.add_parser(
        "areas", help="import area codes and names (CSV or XLSX)", parents=[common]
    )
    areas.add_argument("file", type=Path)
    report_files = imports.add_parser(
        "reports",
        help="apply a provider's report files (a bank's pain.002 / camt.054), each exactly once",
        parents=[common],
    )
    report_files.add_argument(
        "files", type=Path, nargs="+", help="files, or directories (an inbox: every file in it)"
    )
    report_files.add_argument("--provider", required=True, help="the configured provider")
    confirmations = imports.add_parser(
        "confirmations",
        help="apply a post office's confirmation file (CSV or XLSX), exactly once",
        parents=[common],
    )
    confirmations.add_argument("file", type=Path)
    confirmations.add_argument("--provider", required=True, help="the postal-cash provider")
    confirmations.add_argument(
        "--review-out", type=Path, metavar="FILE", help="write the rejected rows here (CSV)"
    )

    cycle = commands.add_parser("cycle", help="prepare, approve and show cycles", parents=[common])
    cycles = cycle.add_subparsers(dest="action", metavar="ACTION", required=True)
    prep = cycles.add_parser(
        "prepare", help="compute the instructions of a benefit month", parents=[common]
    )
    prep.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    prep.add_argument("--by", help="who prepares (the maker: someone else must approve)")
    prep.add_argument(
        "--allow-future",
        action="store_true",
        help="prepare a month beyond next month, on purpose (refused otherwise)",
    )
    programme(prep)
    workers(prep)
    discard = cycles.add_parser(
        "discard",
        help="discard a prepared, unapproved cycle: its drafts are cancelled, it blocks no month",
        parents=[common],
    )
    discard.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    discard.add_argument("--by", help="who discards it (recorded)")
    discard.add_argument("--reason", help="why (recorded with the cycle.discarded event)")
    programme(discard)
    appr = cycles.add_parser(
        "approve", help="approve a prepared cycle (CREATED → READY)", parents=[common]
    )
    appr.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    appr.add_argument("--by", required=True, help="the approver's name")
    appr.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="the approver's private signing key (needed once approver keys are registered)",
    )
    add_expect_arguments(appr)
    programme(appr)
    for action, text in (
        ("dispatch", "send the cycle's READY instructions to their providers"),
        ("reconcile", "ask the providers about open instructions and apply the answers"),
        ("close", "close the cycle (refused while anything is open); freezes settlement"),
    ):
        sub = cycles.add_parser(action, help=text, parents=[common])
        sub.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
        programme(sub)
        lease_wait(sub)
    window = cycles.add_parser(
        "close-window",
        help="close a postal provider's payment window: uncollected cash becomes UNCLAIMED",
        parents=[common],
    )
    window.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    window.add_argument("--provider", required=True, help="the postal-cash provider")
    window.add_argument(
        "--early", action="store_true", help="close before the window's last day, on purpose"
    )
    programme(window)
    lease_wait(window)
    show = cycles.add_parser("show", help="list a cycle's instructions", parents=[common])
    show.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    programme(show)
    fmt(show)

    report = commands.add_parser("report", help="reports", parents=[common])
    reports = report.add_subparsers(dest="report", metavar="REPORT", required=True)
    changes = reports.add_parser(
        "changes", help="what changed since the previous cycle, and why", parents=[common]
    )
    changes.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    programme(changes)
    fmt(changes)
    coverage = reports.add_parser(
        "coverage",
        help="per area: beneficiaries, paid by channel, electronic and proxy shares",
        parents=[common],
    )
    # either one cycle (--period) or every cycle (--trend): argparse makes one of them required
    which = coverage.add_mutually_exclusive_group(required=True)
    which.add_argument("--period", type=_period, metavar="YYYY-MM")
    which.add_argument(
        "--trend",
        action="store_true",
        help="the electronic share per area in every cycle, against --target",
    )
    coverage.add_argument(
        "--target",
        type=_percent,
        metavar="PERCENT",
        help="with --trend: the electronic share each area should reach, 0-100 (default 80)",
    )
    programme(coverage)
    fmt(coverage)
    public = reports.add_parser(
        "public",
        help="a commune's public list (công khai): masked names and ids, amounts; CSV and XLSX",
        parents=[common],
    )
    public.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    public.add_argument("--commune", required=True, metavar="CODE", help="the commune code")
    programme(public)
    public.add_argument(
        "--output",
        "-o",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="the directory to write the two files into (default: the current directory)",
    )
    settlement = reports.add_parser(
        "settlement",
        help="per provider and area: paid, failed, returned, unclaimed, open, owed",
        parents=[common],
    )
    settlement.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    programme(settlement)
    fmt(settlement)

    anomalies = reports.add_parser(
        "anomalies",
        help="proxies paid for many, collections after ceasing, shared phones and accounts",
        parents=[common],
    )
    anomalies.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    anomalies.add_argument(
        "--max-per-proxy",
        type=_positive,
        default=3,
        metavar="N",
        help="flag a proxy paid for more than N beneficiaries (default 3)",
    )
    programme(anomalies)
    fmt(anomalies)
    flags = reports.add_parser(
        "flags", help="beneficiaries flagged for a clerk (e.g. re-verification)", parents=[common]
    )
    flags.add_argument("--kind", help="only flags of this kind (e.g. reverify)")
    programme(flags)
    fmt(flags)

    add_enrolment_report(reports, common, programme, _period)
    add_campaign_parser(commands, common, programme, _period)
    add_keys_parsers(commands, common, _period)
    add_audit_parsers(commands, common, _period)

    beneficiary = commands.add_parser(
        "beneficiary", help="find beneficiaries by blind index", parents=[common]
    )
    beneficiary_actions = beneficiary.add_subparsers(dest="action", metavar="ACTION", required=True)
    find = beneficiary_actions.add_parser(
        "find",
        help="the ids of beneficiaries with a national id, mobile number or account",
        parents=[common],
    )
    which = find.add_mutually_exclusive_group(required=True)
    which.add_argument("--national-id", metavar="DIGITS")
    which.add_argument("--msisdn", metavar="NUMBER")
    which.add_argument("--account", metavar="BIN:NUMBER")
    shared = beneficiary_actions.add_parser(
        "shared",
        help="beneficiaries sharing a national id, mobile number or account",
        parents=[common],
    )
    shared.add_argument("kind", choices=SHARED_KINDS)
    fmt(shared)
    unflag = beneficiary_actions.add_parser(
        "unflag",
        help="clear a beneficiary's open flags (e.g. once re-verified)",
        parents=[common],
    )
    unflag.add_argument("beneficiary_id", metavar="BENEFICIARY_ID")
    unflag.add_argument("--by", required=True, help="who clears it (recorded)")
    unflag.add_argument(
        "--reason", required=True, help="why, without personal data (recorded in the event)"
    )
    unflag.add_argument("--kind", help="only flags of this kind (default: every open flag)")
    programme(unflag)

    rules = commands.add_parser("rules", help="the rule set in force", parents=[common])
    rules_actions = rules.add_subparsers(dest="action", metavar="ACTION", required=True)
    rules_show = rules_actions.add_parser(
        "show", help="standard levels and category coefficients", parents=[common]
    )
    fmt(rules_show)

    demo = commands.add_parser(
        "demo", help="run the Phú Lộc pilot demo on a synthetic roster", parents=[common]
    )
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("sap-payments-demo"),
        help="where the demo writes its roster, ledger and reports (default ./sap-payments-demo)",
    )
    demo.add_argument("--seed", type=int, default=2021, help="seed of the synthetic roster")
    demo.add_argument(
        "--bank",
        choices=("sandbox", "iso20022"),
        default="sandbox",
        help="the bank channel: the in-process sandbox, or ISO 20022 files (pain.001 out, "
        "pain.002 and camt.054 back from a simulated bank)",
    )
    demo.add_argument(
        "--ewallet",
        choices=("sandbox", "gsma"),
        default="sandbox",
        help="the e-wallet channel: the in-process sandbox, or the GSMA Mobile Money API "
        "against a loopback sandbox server started for the demo",
    )
    add_review_parsers(commands, common, _period)
    sandbox = commands.add_parser("sandbox", help="sandbox servers to test against")
    sandboxes = sandbox.add_subparsers(dest="action", metavar="ACTION", required=True)
    serve = sandboxes.add_parser(
        "serve", help="serve the GSMA Mobile Money API sandbox on loopback until interrupted"
    )
    serve.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--state", type=Path, help="SQLite file of the books (default: memory)")
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="inject a fault, e.g. error=100 drop=20 rate_limit=50 latency=0.05 inactive=20 "
        "pending_polls=2 duplicate_callbacks (rates per mille; repeat the option)",
    )
    serve.add_argument("--api-key", help="require this X-API-Key")
    serve.add_argument("--webhook-secret", help="sign callbacks with this whsec_… secret")
    return parser


def _open(args: argparse.Namespace) -> Ledger:
    config = Config.find(getattr(args, "config", None))
    rules_path = getattr(args, "rules", None)
    rules = RuleSet.load(rules_path) if rules_path else None
    return Ledger.open(getattr(args, "db", Path("sap-payments.db")), config=config, rules=rules)


def _progress(args: argparse.Namespace, label: str) -> Progress:
    return Progress(label, enabled=not getattr(args, "quiet", False) and sys.stderr.isatty())


class _Target:
    """Where a report goes: ``--output FILE`` or the command's output stream."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.path: Path | None = args.output
        self.out = out
        self.handle: TextIO | None = None

    def __enter__(self) -> TextIO:
        if self.path is None:
            return self.out
        self.handle = self.path.open("w", encoding="utf-8", newline="")
        return self.handle

    def __exit__(self, *exc_info: object) -> None:
        if self.handle is not None:
            self.handle.close()


def _cmd_import(args: argparse.Namespace, out: TextIO) -> None:
    with _open(args) as ledger:
        if args.what == "reports":
            paths = sorted(
                path
                for given in args.files
                for path in (
                    [p for p in given.iterdir() if p.is_file()] if given.is_dir() else [given]
                )
                if not path.name.startswith(".")
            )
            for path in paths:
                done = ledger.import_report(path, provider=args.provider)
                if done.already_imported:
                    out.write(f"{path.name}: imported before; nothing to do\n")
                else:
                    out.write(
                        f"{path.name}: {done.results:,} results, {done.applied:,} applied, "
                        f"{done.ignored:,} stale\n"
                    )
            return
        if args.what == "confirmations":
            confirmed = ledger.import_confirmations(
                args.file, provider=args.provider, review_out=args.review_out
            )
            if confirmed.already_imported:
                out.write(f"{args.file.name}: imported before; nothing to do\n")
                return
            out.write(
                f"{args.file.name}: {confirmed.rows:,} rows, {confirmed.applied:,} applied, "
                f"{confirmed.repeated:,} repeated, {confirmed.rejected:,} to review\n"
            )
            if confirmed.rejected and args.review_out is not None:
                out.write(f"  review list: {args.review_out}\n")
            elif confirmed.rejected:
                out.write("  (write the review list with --review-out FILE)\n")
            return
        if args.what == "areas":
            count = ledger.import_areas(args.file)
            out.write(f"imported {count:,} areas from {args.file}\n")
            return
        progress = _progress(args, "rows read")
        try:
            result = ledger.import_roster(
                args.file, programme=args.programme, progress=progress, workers=args.workers
            )
        finally:
            progress.done()
        out.write(
            f"imported {result.rows:,} rows from {args.file}: {result.added:,} added, "
            f"{result.changed:,} changed, {result.unchanged:,} unchanged\n"
        )


def _area_label(key: tuple[str, ...], names: dict[str, AreaRecord]) -> str:
    """An indented line label: ``46 Thừa Thiên Huế`` / ``  482 Phú Lộc`` / ``    20107 …``."""
    code = key[-1]
    known = names.get(code)
    name = ""
    if len(key) == 1:
        name = next((a.province_name for a in names.values() if a.province_code == code), "")
    elif known is not None and known.commune_code == code and len(key) >= 2:
        name = known.commune_name
    if not name and len(key) == 2:
        name = next((a.district_name for a in names.values() if a.district_code == code), "")
    return "  " * (len(key) - 1) + (f"{code} {name}" if name else code)


def _cmd_cycle(args: argparse.Namespace, out: TextIO) -> None:
    with _open(args) as ledger:
        if args.action == "prepare":
            progress = _progress(args, "beneficiaries")
            try:
                result = ledger.prepare(
                    args.period,
                    programme=args.programme,
                    progress=progress,
                    workers=args.workers,
                    by=args.by,
                    allow_future=args.allow_future,
                )
            finally:
                progress.done()
            out.write(
                f"cycle {result.period} ({result.programme}) prepared: {result.count:,} "
                f"instructions, total {result.total}"
                f" — {result.created:,} created, {result.revised:,} revised, "
                f"{result.cancelled:,} cancelled, {result.unchanged:,} unchanged, "
                f"{result.held:,} held\n"
            )
            out.write("control totals by provider:\n")
            for name, total in result.by_provider.items():
                out.write(f"  {name:<34} {total.count:>9,}  {total.amount}\n")
            names = {a.commune_code: a for a in ledger.store.areas()}
            out.write("control totals by area:\n")
            for key, total in result.by_area.items():
                out.write(f"  {_area_label(key, names):<34} {total.count:>9,}  {total.amount}\n")
            return
        if args.action == "discard":
            discarded = ledger.discard_cycle(
                args.period, programme=args.programme, by=args.by, reason=args.reason
            )
            out.write(
                f"cycle {discarded.period} ({discarded.programme}) discarded: "
                f"{discarded.cancelled:,} draft instructions cancelled (their months are due "
                "again); the month can be prepared again\n"
            )
            return
        if args.action == "approve":
            expected = expectations(args, ledger)
            approval = ledger.approve(
                args.period, by=args.by, programme=args.programme, key=args.key, **expected
            )
            out.write(
                f"cycle {approval.period} approved by {approval.approved_by}: "
                f"{approval.ready:,} instructions ready, total {approval.total}; "
                f"{approval.cancelled_held:,} held instructions cancelled (their months stay due)\n"
            )
            reviewed = " (as reviewed)" if any(v is not None for v in expected.values()) else ""
            if approval.key_id is not None:
                out.write(
                    f"signed with key {approval.key_id}; manifest sha256 "
                    f"{approval.manifest_sha256}{reviewed}\n"
                )
            elif reviewed:
                out.write(f"manifest sha256 {approval.manifest_sha256}{reviewed}\n")
            return
        if args.action == "dispatch":
            progress = _progress(args, "instructions sent")
            try:
                sent = ledger.dispatch(
                    args.period, programme=args.programme, progress=progress, wait=args.wait
                )
            finally:
                progress.done()
            answers = [
                f"{sent.paid:,} paid",
                f"{sent.failed:,} failed",
                f"{sent.pending:,} pending",
                f"{sent.unknown:,} unknown (a status query will settle them)",
            ]
            if sent.refused:
                answers.append(f"{sent.refused:,} refused by the provider before sending")
            if sent.review:
                answers.append(f"{sent.review:,} held for review (see 'review list')")
            out.write(
                f"cycle {args.period}: this run sent {sent.sent:,} instructions in "
                f"{sent.batches:,} batches; their answers: {', '.join(answers)}\n"
                f"cycle {args.period} now holds: {_by_state(sent.states)}\n"
            )
            for name, count in sorted(sent.waiting.items()):
                out.write(
                    f"  warning: provider {name} is not configured: {count} instructions wait\n"
                )
            if sent.errors:
                raise _ProvidersFailed(sent.errors)
            _check_nothing_waits(ledger, args)
            return
        if args.action == "reconcile":
            done = ledger.reconcile(args.period, programme=args.programme, wait=args.wait)
            held = f", {done.held:,} held for review" if done.held else ""
            reviewed = (
                f"; {done.under_review:,} under review, not queried (see 'review list')"
                if done.under_review
                else ""
            )
            out.write(
                f"cycle {args.period}: {done.queried:,} queried, {done.applied:,} results "
                f"applied, {done.ignored:,} stale results ignored{held}{reviewed}; "
                f"{done.open:,} still open\n"
            )
            if done.errors:
                raise _ProvidersFailed(done.errors)
            return
        if args.action == "close-window":
            window = ledger.close_window(
                args.period,
                provider=args.provider,
                programme=args.programme,
                early=args.early,
                wait=args.wait,
            )
            out.write(
                f"cycle {window.period}, {window.provider}: window closed; {window.unclaimed:,} "
                f"instructions unclaimed ({window.amount}, owed back, due again as arrears); "
                f"{len(window.flagged):,} beneficiaries flagged for re-verification\n"
            )
            return
        if args.action == "close":
            closed = ledger.close_cycle(args.period, programme=args.programme, wait=args.wait)
            out.write(
                f"cycle {closed.period} closed: {closed.paid:,} of {closed.instructed:,} "
                "instructions paid; settlement figures frozen\n"
            )
            if closed.checkpoint is not None:
                where = f" → {closed.checkpoint_file}" if closed.checkpoint_file else ""
                out.write(
                    f"audit checkpoint signed (key {closed.checkpoint.key_id}): "
                    f"{closed.checkpoint.size:,} events, head {closed.checkpoint.head[:16]}…"
                    f"{where}\n"
                )
            return
        cycle = ledger.cycle(args.period, programme=args.programme)
        rows, review = reviewing(ledger.store, cycle, ledger.instructions(cycle=cycle))
        with _Target(args, out) as target:
            write_cycle(
                target,
                args.format,
                cycle,
                rows,
                review=review,
                outcomes={
                    ident: detail
                    for ident, _, _, _, detail in ledger.store.result_details(
                        cycle.programme, cycle.period
                    )
                    if detail is not None
                },
            )
        write_review(args, out, review())


def _by_state(states: Mapping[str, int]) -> str:
    return ", ".join(f"{count:,} {state}" for state, count in states.items()) or "nothing"


class _ProvidersFailed(Exception):
    """Dispatch or reconcile done as far as it could, but providers failed: one line each on
    stderr, exit ``EXIT_ERROR``."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = tuple(lines)


class _InstructionsWait(Exception):
    """Dispatch done, but READY instructions are left: exit ``EXIT_WAITING``, so that a
    scheduled run is noticed."""


def _check_nothing_waits(ledger: Ledger, args: argparse.Namespace) -> None:
    """After a dispatch, READY instructions are left only for providers not configured."""
    waiting: dict[str, int] = {}
    programme = args.programme or ledger.config.programme
    for _ident, provider in ledger.store.instruction_ids_in_state(
        programme, args.period.ordinal, "READY"
    ):
        waiting[provider] = waiting.get(provider, 0) + 1
    if waiting:
        listed = ", ".join(f"provider {name}: {n:,}" for name, n in sorted(waiting.items()))
        raise _InstructionsWait(
            f"instructions wait for a provider that is not configured ({listed}); configure it "
            "in sap-payments.toml and run 'cycle dispatch' again"
        )


def _cmd_report(args: argparse.Namespace, out: TextIO) -> None:
    if args.report == "enrolment":
        enrolment_command(args, out, _open, _Target)
        return
    if args.report == "coverage" and args.trend:
        with _open(args) as ledger:
            trend = ledger.coverage_trend(
                programme=args.programme,
                target_percent=80 if args.target is None else args.target,
            )
        with _Target(args, out) as target:
            write_coverage_trend(target, args.format, trend)
        return
    if args.report == "coverage":
        if args.target is not None:
            raise InvalidInput("--target applies to --trend only")
        with _open(args) as ledger:
            coverage = ledger.coverage(args.period, programme=args.programme)
        with _Target(args, out) as target:
            write_coverage_report(target, args.format, coverage)
        return
    if args.report == "public":
        with _open(args) as ledger:
            public = ledger.public_list(args.period, args.commune, programme=args.programme)
        csv_path, xlsx_path = write_public_files(public, args.output)
        out.write(
            f"public list of commune {args.commune} for {public.period}: "
            f"{public.total.count:,} lines, total {public.total.amount}; wrote {csv_path} "
            f"and {xlsx_path}\n"
        )
        return
    if args.report == "anomalies":
        with _open(args) as ledger:
            anomalies = ledger.anomalies(
                args.period, programme=args.programme, max_per_proxy=args.max_per_proxy
            )
        with _Target(args, out) as target:
            write_anomaly_report(target, args.format, anomalies)
        return
    if args.report == "flags":
        with _open(args) as ledger:
            programme = args.programme or ledger.config.programme
            flagged = ledger.flags(kind=args.kind, programme=programme)
        with _Target(args, out) as target:
            write_flags(target, args.format, programme, flagged)
        return
    if args.report == "settlement":
        with _open(args) as ledger:
            settlement = ledger.settlement(args.period, programme=args.programme)
        with _Target(args, out) as target:
            write_settlement_report(target, args.format, settlement)
        return
    with _open(args) as ledger:
        report = ledger.changes(args.period, programme=args.programme)
    with _Target(args, out) as target:
        write_change_report(target, args.format, report)
    write_review(args, out, report.review)


def _cmd_beneficiary(args: argparse.Namespace, out: TextIO) -> None:
    with _open(args) as ledger:
        if args.action == "unflag":
            cleared = ledger.clear_flags(
                args.beneficiary_id,
                by=args.by,
                reason=args.reason,
                kind=args.kind,
                programme=args.programme,
            )
            kinds = ", ".join(flag.kind for flag in cleared)
            out.write(f"beneficiary {args.beneficiary_id}: cleared {kinds}\n")
            return
        if args.action == "find":
            account = None
            if args.account is not None:
                bank_bin, _, number = args.account.partition(":")
                account = (bank_bin, number)
            found = ledger.find_beneficiaries(
                national_id=args.national_id, msisdn=args.msisdn, account=account
            )
            for ident in found:
                out.write(f"{ident}\n")
            if not found:
                out.write("no beneficiary found\n")
            return
        groups = ledger.shared_details(args.kind)
    rows = ((n, len(ids), " ".join(ids)) for n, ids in enumerate(groups, start=1))
    with _Target(args, out) as target:
        write_records(
            target,
            args.format,
            ("group", "beneficiaries", "beneficiary_ids"),
            rows,
            header={"kind": args.kind, "count": len(groups)},
            key="groups",
        )


def _cmd_rules(args: argparse.Namespace, out: TextIO) -> None:
    config = Config.find(getattr(args, "config", None))
    rules_path = getattr(args, "rules", None) or config.rules
    rules = RuleSet.load(rules_path) if rules_path else RuleSet.vietnam_default()
    columns = ("kind", "code", "value", "description", "basis")

    def rows() -> Iterator[Sequence[Any]]:
        for level in rules.levels:
            yield (
                "level",
                level.effective_from.isoformat(),
                level.amount.minor,
                f"standard level from {level.effective_from}",
                level.basis,
            )
        for code, category in sorted(rules.categories.items()):
            yield (
                "category",
                code,
                str(category.coefficient),
                category.description,
                category.basis,
            )

    header = {"name": rules.name, "currency": rules.currency, "fingerprint": rules.fingerprint()}
    with _Target(args, out) as target:
        write_records(target, args.format, columns, rows(), header=header, key="rules")


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> None:
    from sap_payments.demo import run_demo

    run_demo(
        args.dir,
        seed=args.seed,
        out=out,
        quiet=getattr(args, "quiet", False),
        bank=args.bank,
        ewallet=args.ewallet,
    )


def _cmd_sandbox(args: argparse.Namespace, out: TextIO) -> None:
    from sap_payments.testing.gsma_server import Faults, GsmaSandboxServer

    server = GsmaSandboxServer(
        state=args.state,
        faults=Faults.parse(args.fault),
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
    )
    out.write(f"GSMA Mobile Money sandbox on {server.base_url} (Ctrl-C stops it)\n")
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out.write("stopped\n")
    finally:
        server.stop()


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], None]] = {
    "campaign": lambda args, out: campaign_command(args, out, _open),
    "import": _cmd_import,
    "cycle": _cmd_cycle,
    "report": _cmd_report,
    "rules": _cmd_rules,
    "beneficiary": _cmd_beneficiary,
    "demo": _cmd_demo,
    "sandbox": _cmd_sandbox,
    "keys": lambda args, out: (signing_command if args.action in SIGNING_ACTIONS else keys_command)(
        args, out, _open
    ),
    "audit": lambda args, out: audit_command(args, out, _open),
    "review": lambda args, out: review_command(args, out, _open, _Target),
    "erase": lambda args, out: erase_command(args, out, _open),
}


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status (the console script exits with it)."""
    out = out or sys.stdout
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    debug = getattr(args, "debug", False)
    try:
        _COMMANDS[args.command](args, out)
    except _InstructionsWait as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_WAITING
    except _ProvidersFailed as exc:
        sys.stderr.writelines(f"error: {line}\n" for line in exc.lines)
        return EXIT_ERROR
    except SapPaymentsError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; nothing half-done was kept\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`… | head`): stop quietly, as other command-line tools do.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if exc.filename else ""
        sys.stderr.write(f"error: {exc.strerror or exc}{where}\n")
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            traceback.print_exc()
        sys.stderr.write(
            f"internal error: {type(exc).__name__}; run again with --debug and report it\n"
        )
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
