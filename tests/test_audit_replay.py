"""``audit verify`` replays each instruction's events through the transition table.

The hash chain covers whatever was appended, so events a race or a bug appends well-formed — a
payment recorded twice, a move out of a final state, a move from a state the instruction was
not in — chain correctly. These tests forge such events through the store's own append path
(the chain stays valid) and each must be reported, naming the event and the instruction; the
flows a real ledger goes through (results, returns, unclaimed cash, a resend after NOT_FOUND,
a held instruction released, re-preparing, the demo) must still verify. An empty ledger
verifies too.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from conftest import RosterLoader, drive, live_instruction, open_ledger, roster_row, settle
from sap_payments import Channel, Ledger
from sap_payments.audit import verify
from sap_payments.cli import main
from sap_payments.dispatch import apply_results, dispatch, reconcile
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    ProviderUnavailable,
    Reason,
    Result,
    ResultKind,
)
from sap_payments.store import EventRecord, Move

P = "2021-09"
AT = "2021-09-20T00:00:00+00:00"


def _problems(ledger: Ledger) -> list[str]:
    report = verify(ledger.store)
    return [str(p) for p in report.problems]


def _append(ledger: Ledger, *events: EventRecord) -> int:
    """Append events the way a buggy concurrent run would: well-formed, through the store's
    own path, so the hash chain stays valid. Returns the seq of the first."""
    store = ledger.store
    with store.transaction():
        first = 1 + max((seq for seq, _ in store.events()), default=0)
        store.append_events(list(events))
    return first


def _move(ledger: Ledger, ident: str, start: str, end: str) -> int:
    """Move an instruction (row and event) without asking the transition table, as a bug
    would. Returns the seq of its event."""
    store = ledger.store
    with store.transaction():
        seq = 1 + max((seq for seq, _ in store.events()), default=0)
        store.apply_moves([Move(ident, start, end, f"instruction.{end.lower()}")], AT, "buggy-run")
    return seq


def _event(ident: str, start: str | None, end: str | None, kind: str = "") -> EventRecord:
    kind = kind or f"instruction.{(end or 'ignored').lower()}"
    return EventRecord(AT, kind, ident, start, end, "racing-run", None)


@pytest.fixture
def settled(tmp_path: Path) -> Iterator[tuple[Ledger, dict[str, str]]]:
    """An approved cycle: B0 PAID, B1 RETURNED, B2 FAILED, B3 UNCLAIMED, B4 READY."""
    ledger = open_ledger(tmp_path)
    rows = [roster_row(f"B{k}", msisdn=f"09123456{k:02d}") for k in range(5)]
    RosterLoader(tmp_path)(ledger, *rows)
    ledger.prepare(P, by="maker")
    ledger.approve(P, by="checker")
    ids = {f"B{k}": live_instruction(ledger, P, f"B{k}").instruction_id for k in range(5)}
    drive(ledger, ids["B0"], "SUBMITTED", "PAID")
    settle(ledger, ids["B1"], "RETURNED")
    settle(ledger, ids["B2"], "FAILED")
    settle(ledger, ids["B3"], "UNCLAIMED")
    assert _problems(ledger) == []
    try:
        yield ledger, ids
    finally:
        ledger.close()


# -- impossible sequences are reported, the chain intact --------------------------------------
def test_paid_twice_is_reported(settled: tuple[Ledger, dict[str, str]]) -> None:
    """Two runs that both read SUBMITTED and both record SUBMITTED → PAID: the row says PAID,
    the chain hashes both events; the replay finds the second."""
    ledger, ids = settled
    ident = ids["B0"]
    seq = _append(ledger, _event(ident, "SUBMITTED", "PAID"))
    problems = _problems(ledger)
    assert problems, "a payment recorded twice verified"
    assert problems[0].startswith(f"event {seq}: instruction {ident}: "), problems
    assert "the same move recorded twice" in problems[0]
    assert "hash" not in " ".join(problems)  # the chain itself is intact


def test_a_move_out_of_a_final_state_is_reported(settled: tuple[Ledger, dict[str, str]]) -> None:
    ledger, ids = settled
    ident = ids["B1"]  # RETURNED
    seq = _move(ledger, ident, "RETURNED", "PAID")
    problems = _problems(ledger)
    assert problems == [
        f"event {seq}: instruction {ident}: instruction.paid: RETURNED → PAID is not a move the "
        "transition table allows"
    ]


def test_a_move_the_table_does_not_have_is_reported(
    settled: tuple[Ledger, dict[str, str]],
) -> None:
    ledger, ids = settled
    ident = ids["B4"]  # READY: paid without ever being sent
    seq = _move(ledger, ident, "READY", "PAID")
    problems = _problems(ledger)
    assert len(problems) == 1
    assert problems[0].startswith(f"event {seq}: instruction {ident}: "), problems
    assert "READY → PAID is not a move the transition table allows" in problems[0]


def test_a_move_from_another_state_than_the_last_one_left_is_reported(
    settled: tuple[Ledger, dict[str, str]],
) -> None:
    """UNKNOWN → ACCEPTED → PAID appended to a PAID instruction: each move is in the table and
    the last leaves PAID, as the row says; but the instruction was never UNKNOWN here."""
    ledger, ids = settled
    ident = ids["B0"]
    seq = _append(ledger, _event(ident, "UNKNOWN", "ACCEPTED"), _event(ident, "ACCEPTED", "PAID"))
    problems = _problems(ledger)
    assert problems == [
        f"event {seq}: instruction {ident}: instruction.accepted moves it from UNKNOWN, but the "
        "events before left it PAID"
    ]


def test_a_move_of_an_instruction_never_created_is_reported(
    settled: tuple[Ledger, dict[str, str]],
) -> None:
    ledger, _ = settled
    seq = _append(ledger, _event("202109-00000000000000000000", "SUBMITTED", "PAID"))
    problems = _problems(ledger)
    assert problems, problems
    assert problems[0].startswith(f"event {seq}: instruction 202109-00000000000000000000: ")
    assert "never created" in problems[0]


def test_an_instruction_created_twice_is_reported(
    settled: tuple[Ledger, dict[str, str]],
) -> None:
    ledger, ids = settled
    ident = ids["B4"]
    (created,) = [e for _, e in ledger.store.events(ident) if e.kind == "instruction.created"]
    seq = _append(ledger, created._replace(at=AT), _event(ident, "CREATED", "READY"))
    problems = _problems(ledger)
    assert problems, problems
    assert problems[0].startswith(f"event {seq}: instruction {ident}: "), problems


def test_verify_cli_names_the_event_and_fails(
    settled: tuple[Ledger, dict[str, str]], tmp_path: Path
) -> None:
    ledger, ids = settled
    seq = _append(ledger, _event(ids["B0"], "SUBMITTED", "PAID"))
    ledger.close()
    out = io.StringIO()
    assert main(["--db", str(tmp_path / "l.db"), "audit", "verify"], out=out) == 1
    text = out.getvalue()
    assert f"  event {seq}: instruction {ids['B0']}: " in text
    assert text.endswith("NOT OK: 1 problems\n")


def test_result_ignored_and_other_events_without_a_move_do_not_move_the_state(
    settled: tuple[Ledger, dict[str, str]],
) -> None:
    """``result.ignored`` carries the state it found but moves nothing; neither does an event
    that names an instruction without states."""
    ledger, ids = settled
    _append(
        ledger,
        _event(ids["B0"], "PAID", None, "result.ignored"),
        _event(ids["B2"], "SUBMITTED", None, "result.ignored"),  # judged before a move
        _event(ids["B3"], None, None, "confirmation.rejected"),
    )
    assert _problems(ledger) == []


# -- the flows a ledger goes through still verify ---------------------------------------------
class _Provider:
    """Answers as the test says; unreachable, then NOT_FOUND for keys it never received."""

    def __init__(self) -> None:
        self.name = "viettelpay"
        self.capabilities = Capabilities(channels=frozenset({Channel.EWALLET}), max_batch=2)
        self.unavailable = False
        self.answer: dict[str, ResultKind] = {}
        self.known: set[str] = set()

    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        if self.unavailable:
            raise ProviderUnavailable(self.name, "connection refused")
        self.known.update(p.key for p in payments)
        return [Result(p.key, self.answer.get(p.key, ResultKind.PENDING)) for p in payments]

    def status(self, keys: Sequence[str]) -> list[Result]:
        return [
            Result(k, self.answer.get(k, ResultKind.PENDING))
            if k in self.known
            else Result(k, ResultKind.NOT_FOUND)
            for k in keys
        ]

    def validate(self, address: object, payee_name: str | None = None) -> AddressCheck:
        return AddressCheck(ok=True)

    def parse_report(self, data: bytes) -> list[Result]:
        return []

    def close(self) -> None:
        pass


def test_a_cycle_through_dispatch_results_and_close_verifies(tmp_path: Path) -> None:
    """Unreachable → UNKNOWN → NOT_FOUND → READY → resent; paid, failed, returned (through
    ACCEPTED → PAID), unclaimed; stale results ignored; a held instruction released by a
    roster change (HELD → CREATED), one revised, one cancelled on re-preparing; closed, and
    the next month prepared and approved."""
    load = RosterLoader(tmp_path)
    rows = [roster_row(f"B{k}", msisdn=f"09123457{k:02d}") for k in range(6)]
    held = {"proxy_name": "Trần Thị Bé", "proxy_relation": "con"}
    held["mandate_valid_until"] = "2021-08-31"
    with open_ledger(tmp_path) as ledger:
        load(ledger, *rows, roster_row("BH", **held))
        ledger.prepare(P, by="maker")
        assert live_instruction(ledger, P, "BH").state == "HELD"
        # the mandate renewed, one beneficiary's coefficient changed, one suspended
        renewed = {**held, "mandate_valid_until": "2022-12-31"}
        changed = [*rows[:4], roster_row("B4", msisdn="0912345704", coefficient="2")]
        load(ledger, *changed, roster_row("B5", status="suspended"), roster_row("BH", **renewed))
        ledger.prepare(P, by="maker")
        assert live_instruction(ledger, P, "BH").state == "CREATED"
        assert _problems(ledger) == []
        ledger.approve(P, by="checker")
        ids = {r.beneficiary_id: r.instruction_id for r, _ in ledger.instructions(P)}
        provider = _Provider()
        providers = {"viettelpay": provider}
        provider.unavailable = True
        dispatch(ledger.store, P, providers=providers)  # nothing reached: UNKNOWN
        provider.unavailable = False
        reconcile(ledger.store, P, providers=providers)  # NOT_FOUND: back to READY
        provider.answer = {
            ids["B0"]: ResultKind.PAID,
            ids["B1"]: ResultKind.FAILED,
        }
        dispatch(ledger.store, P, providers=providers)  # resent
        apply_results(
            ledger.store,
            [
                Result(ids["B0"], ResultKind.PAID),  # repeated: ignored
                Result(ids["B1"], ResultKind.PAID),  # after FAILED: ignored
                Result(ids["B2"], ResultKind.RETURNED, Reason.CLOSED_ACCOUNT),  # PAID, RETURNED
                Result(ids["B3"], ResultKind.UNCLAIMED),
                Result(ids["B4"], ResultKind.PAID),
                Result(ids["BH"], ResultKind.PAID),
                Result(ids["B4"], ResultKind.RETURNED, Reason.CLOSED_ACCOUNT),
            ],
        )
        assert not [r for r, _ in ledger.instructions(P) if r.state in {"READY", "ACCEPTED"}]
        assert _problems(ledger) == []
        ledger.close_cycle(P)
        ledger.prepare("2021-10", by="maker")
        ledger.approve("2021-10", by="checker")
        report = ledger.verify_audit()
        assert report.ok, [str(p) for p in report.problems]


@pytest.mark.slow  # the demo's own test (test_demo.py) verifies each month as it checkpoints it
def test_the_demo_verifies(tmp_path: Path) -> None:
    """Three months with the sandbox providers (faults, fallbacks, returns, unclaimed cash,
    an enrolment campaign): the trail replays cleanly."""
    out = io.StringIO()
    assert main(["demo", "--dir", str(tmp_path / "demo")], out=out) == 0, out.getvalue()
    with Ledger.open(tmp_path / "demo" / "sap-payments.db", durable=False) as ledger:
        report = ledger.verify_audit()
    assert report.ok, [str(p) for p in report.problems]
    assert report.events > 1000


# -- an empty ledger --------------------------------------------------------------------------
def test_an_empty_ledger_verifies(tmp_path: Path) -> None:
    """No event yet, though a transaction has sealed the (empty) chain: the head is event 0."""
    with open_ledger(tmp_path) as ledger:
        assert verify(ledger.store).ok
        with ledger.store.transaction():
            pass
        report = verify(ledger.store)
        assert report.ok, [str(p) for p in report.problems]
        assert (report.events, report.head_seq) == (0, 0)


def test_audit_verify_of_a_fresh_ledger_says_ok(tmp_path: Path) -> None:
    db = str(tmp_path / "fresh.db")
    areas = tmp_path / "areas.csv"
    areas.write_text(
        "province_code,province_name,district_code,district_name,commune_code,commune_name\n"
        "46,Thừa Thiên Huế,482,Phú Lộc,20107,Lộc An\n",
        encoding="utf-8",
    )
    assert main(["--db", db, "import", "areas", str(areas)], out=io.StringIO()) == 0
    out = io.StringIO()
    assert main(["--db", db, "audit", "verify"], out=out) == 0, out.getvalue()
    assert out.getvalue().endswith("\nOK\n")
