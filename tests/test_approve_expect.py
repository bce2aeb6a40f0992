"""Approval bound to what the checker reviewed.

``cycle show`` and ``report changes`` print a prepared cycle's review digest (the SHA-256 of the
manifest its approval will sign) with the count and total; ``cycle approve --expect-digest``
(or ``--expect-count`` / ``--expect-total``) refuses, approving nothing, when the cycle was
prepared again since and differs — the maker re-preparing between the checker's review and
the approval can no longer slip changes past the checker.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RosterLoader, open_ledger, roster_row
from sap_payments import CycleChanged, CycleReview, InvalidInput, Ledger, Money, Period
from sap_payments.cli import main
from sap_payments.signing import generate_signing_key

P = "2021-09"
ROWS = (
    roster_row("B1", msisdn="0912345601"),
    roster_row("B2", msisdn="0912345602", coefficient="2"),
    roster_row("B3", msisdn="0912345603"),
    roster_row(
        "BH", proxy_name="Trần Thị Bé", proxy_relation="con", mandate_valid_until="2021-08-31"
    ),  # held: approval cancels it, so it is not in the review
)


@pytest.fixture
def prepared(tmp_path: Path) -> Iterator[tuple[Ledger, RosterLoader]]:
    load = RosterLoader(tmp_path)
    ledger = open_ledger(tmp_path)
    load(ledger, *ROWS)
    ledger.prepare(P, by="maker")
    try:
        yield ledger, load
    finally:
        ledger.close()


def _review(ledger: Ledger) -> CycleReview:
    review = ledger.review(P)
    assert review is not None
    return review


def _nothing_approved(ledger: Ledger, events: int) -> None:
    assert ledger.cycle(P).state == "prepared"
    assert ledger.store.approval("monthly-allowance", Period.parse(P).ordinal) is None
    assert {r.state for r, _ in ledger.instructions(P)} == {"CREATED", "HELD"}
    assert sum(1 for _ in ledger.store.events()) == events


def _events(ledger: Ledger) -> int:
    return sum(1 for _ in ledger.store.events())


# -- the Python API ---------------------------------------------------------------------------
def test_approving_a_cycle_changed_since_its_review_is_refused(
    prepared: tuple[Ledger, RosterLoader],
) -> None:
    ledger, load = prepared
    reviewed = _review(ledger)
    assert (reviewed.count, reviewed.total) == (3, Money.vnd(4 * 360_000))
    assert not reviewed.approved
    # the maker prepares again after a roster change the checker never saw
    load(ledger, *ROWS[:2], roster_row("B3", msisdn="0987654321"), ROWS[3])
    ledger.prepare(P, by="maker")
    now = _review(ledger)
    assert now.digest != reviewed.digest
    assert (now.count, now.total) == (reviewed.count, reviewed.total)  # only the account
    events = _events(ledger)
    with pytest.raises(CycleChanged) as caught:
        ledger.approve(P, by="checker", expect_digest=reviewed.digest)
    message = str(caught.value)
    assert "\n" not in message
    assert (
        f"the cycle changed since it was reviewed: digest {reviewed.digest[:16]}… now "
        f"{now.digest[:16]}…; run 'report changes' again" in message
    )
    assert caught.value.differences == (
        ("digest", f"{reviewed.digest[:16]}…", f"{now.digest[:16]}…"),
    )
    _nothing_approved(ledger, events)
    # the count and total alone do not see an account changed: the digest does
    approval = ledger.approve(P, by="checker", expect_digest=now.digest.upper())
    assert approval.manifest_sha256 == now.digest
    assert ledger.cycle(P).state == "approved"
    assert ledger.verify_audit().ok
    recorded = _review(ledger)
    assert (recorded.digest, recorded.count, recorded.total, recorded.approved) == (
        now.digest,
        3,
        now.total,
        True,
    )


def test_the_expected_total_and_count(prepared: tuple[Ledger, RosterLoader]) -> None:
    ledger, load = prepared
    load(ledger, *ROWS[:2], roster_row("B3", msisdn="0912345603", coefficient="3"), ROWS[3])
    ledger.prepare(P, by="maker")  # B3 now paid 3 × 360,000
    events = _events(ledger)
    with pytest.raises(CycleChanged, match=r"total 1,440,000 VND now 2,160,000 VND; run"):
        ledger.approve(P, by="checker", expect_total=Money.vnd(1_440_000))
    with pytest.raises(CycleChanged, match=r": count 4 now 3, total 1,440,000 VND now"):
        ledger.approve(P, by="checker", expect_count=4, expect_total=1_440_000)
    _nothing_approved(ledger, events)
    approval = ledger.approve(P, by="checker", expect_count=3, expect_total=2_160_000)
    assert approval.total == Money.vnd(2_160_000)


def test_a_signed_approval_signs_the_reviewed_digest(
    prepared: tuple[Ledger, RosterLoader], tmp_path: Path
) -> None:
    ledger, _ = prepared
    private, public, key = generate_signing_key(tmp_path / "ha.pem")
    ledger.add_approver("Chị Hà", public)
    reviewed = _review(ledger)
    approval = ledger.approve(P, by="Chị Hà", key=private, expect_digest=reviewed.digest)
    assert (approval.manifest_sha256, approval.key_id) == (reviewed.digest, key)
    assert ledger.verify_audit().ok


def test_a_malformed_digest_is_refused_before_anything(
    prepared: tuple[Ledger, RosterLoader],
) -> None:
    ledger, _ = prepared
    events = _events(ledger)
    for bad in ("abc", _review(ledger).digest + "0", "z" * 64):
        with pytest.raises(InvalidInput, match="not a review digest"):
            ledger.approve(P, by="checker", expect_digest=bad)
    _nothing_approved(ledger, events)


def test_without_an_expectation_approval_works_as_before(
    prepared: tuple[Ledger, RosterLoader],
) -> None:
    ledger, _ = prepared
    reviewed = _review(ledger)
    assert ledger.approve(P, by="checker").manifest_sha256 == reviewed.digest


# -- the command line -------------------------------------------------------------------------
def _run(db: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--db", str(db), *argv], out=out)
    return code, out.getvalue()


def _digest_line(text: str) -> str:
    (line,) = [x for x in text.splitlines() if x.startswith("review digest ")]
    return line.split()[2]


def test_cli_show_and_changes_print_the_digest_approve_checks_it(
    prepared: tuple[Ledger, RosterLoader],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger, load = prepared
    db = tmp_path / "l.db"
    reviewed = _review(ledger)
    # text and JSON forms of both reports print it
    code, text = _run(db, "cycle", "show", "--period", P)
    assert code == 0
    assert _digest_line(text) == reviewed.digest
    assert "(3 instructions to approve, total 1,440,000 VND)" in text
    code, text = _run(db, "report", "changes", "--period", P)
    assert code == 0
    assert _digest_line(text) == reviewed.digest
    for command in (["cycle", "show"], ["report", "changes"]):
        code, text = _run(db, *command, "--period", P, "--format", "json")
        assert json.loads(text)["review"] == {
            "digest": reviewed.digest,
            "count": 3,
            "total": 1_440_000,
        }
    code, text = _run(db, "cycle", "show", "--period", P, "--format", "csv")
    assert code == 0
    assert "review digest" not in text
    assert _digest_line(capsys.readouterr().err) == reviewed.digest  # … it goes to stderr

    load(ledger, *ROWS[:2], roster_row("B3", msisdn="0912345603", coefficient="2"), ROWS[3])
    ledger.prepare(P, by="maker")
    events = _events(ledger)
    code, text = _run(
        db, "cycle", "approve", "--period", P, "--by", "checker", "--expect-digest", reviewed.digest
    )
    assert code == 1, text
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: cycle 2021-09 (monthly-allowance): approval refused: ")
    assert f"the cycle changed since it was reviewed: digest {reviewed.digest[:16]}… now " in err
    assert err.endswith("; run 'report changes' again\n")
    code, text = _run(
        db, "cycle", "approve", "--period", P, "--by", "checker", "--expect-total", "1,440,000"
    )
    assert code == 1
    assert "total 1,440,000 VND now 1,800,000 VND" in capsys.readouterr().err
    assert ledger.cycle(P).state == "prepared"
    assert _events(ledger) == events

    _, text = _run(db, "report", "changes", "--period", P)  # reviewed again
    digest = _digest_line(text)
    code, text = _run(
        db,
        "cycle",
        "approve",
        "--period",
        P,
        "--by",
        "checker",
        "--expect-digest",
        digest,
        "--expect-count",
        "3",
        "--expect-total",
        "1,800,000 VND",
    )
    assert code == 0, capsys.readouterr().err
    assert f"manifest sha256 {digest} (as reviewed)" in text
    code, text = _run(db, "cycle", "show", "--period", P)
    assert f"approved: manifest sha256 {digest} (3 instructions" in text


@pytest.mark.parametrize(
    ("text", "minor", "currency"),
    [
        ("1,800,000", 1_800_000, "VND"),
        ("1800000 VND", 1_800_000, "VND"),
        ("1 800 000", 1_800_000, "VND"),
        ("12.50 USD", 1250, "USD"),
    ],
)
def test_the_expected_total_is_read_as_printed(text: str, minor: int, currency: str) -> None:
    from sap_payments._audit_cli import parse_total

    assert parse_total(text, "VND") == Money(minor, currency)


@pytest.mark.parametrize("text", ["", "abc", "1.5", "1,800,000 XYZ", "-5"])
def test_a_bad_expected_total_is_refused(text: str) -> None:
    from sap_payments._audit_cli import parse_total

    with pytest.raises(InvalidInput, match="--expect-total"):
        parse_total(text, "VND")
