"""Several commands at once on one ledger, in real processes, against an operator written from
the plugin protocol alone (``outsider_wallet``), whose books several processes share.

Two dispatches, two reconcile loops, a "callback" loop (results pushed without a lease) and a
report-import loop run together on one cycle; then the cycle is settled and the ledger is held
against the operator's books:

* no key's money left the float twice, and no instruction was moved twice;
* the event sequence of every instruction is legal under the one transition table;
* every instruction that was returned is RETURNED, and the ledger's states, paid total and
  settlement report equal the operator's books;
* ``audit verify`` is OK.

The default run is small (two seeds); ``-m slow`` runs many seeds on a larger roster.
"""

from __future__ import annotations

import multiprocessing
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import roster_row, write_roster
from outsider_wallet import OutsiderWallet
from sap_payments import Ledger, Period
from sap_payments.dispatch import dispatch, import_report, reconcile
from sap_payments.errors import StateError
from sap_payments.instructions import TRANSITIONS, InstructionState

PERIOD = "2021-09"
OPEN = ("SUBMITTED", "ACCEPTED", "UNKNOWN")


def _wallet(books: Path, seed: int) -> OutsiderWallet:
    return OutsiderWallet("wallet", books, seed=seed, max_batch=25)


def _retry_busy(call: object) -> None:
    """Run ``call`` until no other run holds the cycle (a busy cycle is not a failure)."""
    assert callable(call)
    for _ in range(400):
        try:
            call()
            return
        except StateError as exc:
            if "is being" not in str(exc):
                raise
            time.sleep(0.05)
    raise AssertionError("the cycle stayed busy")


def _dispatcher(db: str, books: str, seed: int) -> None:
    with Ledger.open(db) as ledger:
        providers = {"wallet": _wallet(Path(books), seed)}
        _retry_busy(lambda: dispatch(ledger.store, PERIOD, providers=providers))


def _reconciler(db: str, books: str, seed: int, rounds: int) -> None:
    with Ledger.open(db) as ledger:
        providers = {"wallet": _wallet(Path(books), seed)}
        for _ in range(rounds):
            _retry_busy(lambda: reconcile(ledger.store, PERIOD, providers=providers))


def _open_keys(ledger: Ledger) -> list[str]:
    records = ledger.store.instructions_in_states(
        ledger.config.programme, Period.parse(PERIOD).ordinal, list(OPEN)
    )
    return [r.instruction_id for r in records]


def _callbacks(db: str, books: str, seed: int, rounds: int) -> None:
    """The operator pushing outcomes as they stand, applied with no lease (as a webhook is)."""
    chooser = random.Random(seed)
    with Ledger.open(db) as ledger:
        wallet = _wallet(Path(books), seed)
        for _ in range(rounds):
            keys = _open_keys(ledger)
            chooser.shuffle(keys)
            if keys:
                ledger.apply_results(wallet.status(keys[:30]), provider="wallet")
            time.sleep(0.01)


def _reports(db: str, books: str, seed: int, rounds: int, folder: str) -> None:
    """The operator's report files, imported as they arrive (no lease either)."""
    chooser = random.Random(seed + 1)
    with Ledger.open(db) as ledger:
        wallet = _wallet(Path(books), seed)
        for number in range(rounds):
            keys = _open_keys(ledger)
            chooser.shuffle(keys)
            if keys:
                path = Path(folder) / f"report-{number}.json"
                path.write_bytes(wallet.report(keys[:30]))
                import_report(ledger.store, wallet, path)
            time.sleep(0.01)


def _setup(directory: Path, people: int) -> Path:
    roster = write_roster(
        directory / "roster.csv",
        [
            roster_row(f"B{number:05d}", provider="wallet", msisdn=f"09{number:08d}")
            for number in range(people)
        ],
    )
    db = directory / "ledger.db"
    with Ledger.open(db) as ledger:
        ledger.import_roster(roster)
        ledger.prepare(PERIOD, by="maker")
        ledger.approve(PERIOD, by="checker")
    return db


def _replay_problems(ledger: Ledger) -> list[str]:
    """Every instruction's events replayed through the transition table."""
    problems = []
    state: dict[str, str] = {}
    moves: dict[str, set[tuple[str, str]]] = {}
    for seq, event in ledger.store.events():
        ident = event.instruction_id
        if ident is None or event.to_state is None:
            continue  # not a move (result.ignored, report.imported, …)
        if event.from_state is None:
            state[ident] = event.to_state
            continue
        if event.from_state == event.to_state:
            continue  # revised in place
        before = state.get(ident)
        if before != event.from_state:
            problems.append(f"event {seq}: {ident} moved from {event.from_state}, was {before}")
        if InstructionState(event.to_state) not in TRANSITIONS[InstructionState(event.from_state)]:
            problems.append(f"event {seq}: {ident} {event.from_state}→{event.to_state} illegal")
        pair = (event.from_state, event.to_state)
        if pair in moves.setdefault(ident, set()):
            problems.append(f"event {seq}: {ident} {pair} recorded twice")
        moves[ident].add(pair)
        state[ident] = event.to_state
    return problems


def _run(tmp_path: Path, seed: int, people: int, *, dispatchers: int = 2) -> None:
    db = _setup(tmp_path, people)
    books = tmp_path / "books.db"
    wallet = _wallet(books, seed)  # the operator's books exist before anyone calls
    if not dispatchers:  # sent first: the rest race over the answers
        with Ledger.open(db) as ledger:
            dispatch(ledger.store, PERIOD, providers={"wallet": wallet})
    context = multiprocessing.get_context("spawn")
    processes = [
        *(
            context.Process(target=_dispatcher, args=(str(db), str(books), seed))
            for _ in range(dispatchers)
        ),
        context.Process(target=_reconciler, args=(str(db), str(books), seed, 8)),
        context.Process(target=_reconciler, args=(str(db), str(books), seed, 8)),
        context.Process(target=_callbacks, args=(str(db), str(books), seed, 40)),
        context.Process(target=_reports, args=(str(db), str(books), seed, 40, str(tmp_path))),
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    assert [p.exitcode for p in processes] == [0] * len(processes)

    with Ledger.open(db) as ledger:
        for _ in range(6):  # settle what is still open: outcomes show within two looks
            if not _open_keys(ledger):
                break
            reconcile(ledger.store, PERIOD, providers={"wallet": wallet})
        assert _open_keys(ledger) == []
        assert wallet.paid_twice() == []
        assert _replay_problems(ledger) == []

        net = wallet.net()
        records = [r for r, _ in ledger.instructions(PERIOD)]
        returned_events = {
            event.instruction_id for _, event in ledger.store.events() if event.to_state == "RETURNED"
        }
        for record in records:
            key = record.instruction_id
            if key in returned_events:
                assert record.state == "RETURNED", key
            if record.state == "PAID":
                assert net.get(key) == record.amount, key
            elif record.state == "RETURNED":
                assert key in net and net[key] == 0, key
            else:
                assert record.state == "FAILED", (key, record.state)
                assert key not in net, key
        paid = sum(r.amount for r in records if r.state == "PAID")
        assert paid == sum(net.values())
        total = ledger.settlement(PERIOD).total
        assert total.paid.amount.minor == paid
        assert total.returned.count == sum(1 for r in records if r.state == "RETURNED")
        assert ledger.verify_audit().ok


@pytest.mark.parametrize("seed", [1, 2])
def test_concurrent_commands_on_one_ledger(tmp_path: Path, seed: int) -> None:
    _run(tmp_path, seed, people=240)


@pytest.mark.parametrize("seed", [3])
def test_reconciles_callbacks_and_reports_race_over_answers(tmp_path: Path, seed: int) -> None:
    _run(tmp_path, seed, people=240, dispatchers=0)


@pytest.mark.slow
@pytest.mark.parametrize("dispatchers", [0, 2])
@pytest.mark.parametrize("seed", range(4, 16))
def test_concurrent_commands_on_one_ledger_many_seeds(
    tmp_path: Path, seed: int, dispatchers: int
) -> None:
    _run(tmp_path, seed, people=800, dispatchers=dispatchers)


def _hold_lease(db: str, ready: object, release: object) -> None:
    from sap_payments.leases import cycle_lease

    with Ledger.open(db) as ledger, cycle_lease(
        ledger.store, ledger.config.programme, Period.parse(PERIOD), "dispatch"
    ):
        ready.set()  # type: ignore[attr-defined]
        release.wait(60)  # type: ignore[attr-defined]


def test_a_second_dispatch_is_refused_naming_the_first(tmp_path: Path) -> None:
    db = _setup(tmp_path, 3)
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lease, args=(str(db), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        done = subprocess.run(
            [sys.executable, "-m", "sap_payments.cli", "--db", str(db), "cycle", "dispatch",
             "--period", PERIOD],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 1, done.stderr
        assert f"cycle {PERIOD}" in done.stderr
        assert f"is being dispatched by " in done.stderr
        assert f"/{holder.pid} since " in done.stderr
        assert "Traceback" not in done.stderr
        with Ledger.open(db) as ledger:  # nothing moved
            assert {r.state for r, _ in ledger.instructions(PERIOD)} == {"READY"}
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0


def test_a_killed_holder_frees_the_cycle_at_once(tmp_path: Path) -> None:
    db = _setup(tmp_path, 3)
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lease, args=(str(db), ready, release))
    holder.start()
    assert ready.wait(60)
    holder.kill()
    holder.join(30)
    books = tmp_path / "books.db"
    with Ledger.open(db) as ledger:
        sent = dispatch(ledger.store, PERIOD, providers={"wallet": _wallet(books, 0)})
        assert sent.sent == 3
        taken = [e for _, e in ledger.store.events() if e.kind == "lease.taken_over"]
        assert len(taken) == 1
        assert f"by " in (taken[0].detail or "")
        assert ledger.store.lease(ledger.config.programme, Period.parse(PERIOD).ordinal) is None


# -- the mechanics, one at a time ---------------------------------------------------------------
def _states(ledger: Ledger) -> dict[str, str]:
    return {r.instruction_id: r.state for r, _ in ledger.instructions(PERIOD)}


def test_a_move_whose_start_no_longer_holds_applies_nothing(tmp_path: Path) -> None:
    from sap_payments.errors import ConcurrentUpdate
    from sap_payments.store import Move

    db = _setup(tmp_path, 3)
    with Ledger.open(db) as ledger:
        first, second, third = sorted(_states(ledger))
        events = len(list(ledger.store.events()))
        stale = [
            Move(first, "READY", "SUBMITTED", "instruction.submitted"),
            Move(second, "SUBMITTED", "ACCEPTED", "instruction.accepted"),  # it is READY
            Move(third, "READY", "SUBMITTED", "instruction.submitted", reason="x"),
        ]
        with pytest.raises(ConcurrentUpdate) as caught:
            ledger.store.apply_moves(stale, "2021-10-01T00:00:00+00:00", None)
        assert caught.value.instruction_ids == (second,)
        assert set(_states(ledger).values()) == {"READY"}  # rolled back whole
        assert len(list(ledger.store.events())) == events


def test_an_instructions_two_moves_apply_in_order_whatever_else_is_in_the_batch(
    tmp_path: Path,
) -> None:
    """A RETURNED for one instruction already PAID, then a RETURNED for one ACCEPTED (PAID then
    RETURNED): the second's PAID must not be written after its RETURNED."""
    from sap_payments.providers import Result, ResultKind

    db = _setup(tmp_path, 2)
    books = tmp_path / "books.db"
    with Ledger.open(db) as ledger:
        wallet = OutsiderWallet("wallet", books, fail_per_mille=0, return_per_mille=0)
        dispatch(ledger.store, PERIOD, providers={"wallet": wallet})
        first, second = sorted(_states(ledger))
        ledger.apply_results([Result(first, ResultKind.PAID)], provider="wallet")
        assert _states(ledger) == {first: "PAID", second: "ACCEPTED"}
        back = [Result(first, ResultKind.RETURNED), Result(second, ResultKind.RETURNED)]
        ledger.apply_results(back, provider="wallet")
        assert _states(ledger) == {first: "RETURNED", second: "RETURNED"}
        assert _replay_problems(ledger) == []


def test_never_received_resends_only_from_a_status_query_under_the_lease(
    tmp_path: Path,
) -> None:
    """A report or callback saying NOT_FOUND may describe a batch still on the wire: it is
    ignored. The status query of a reconcile, under the cycle's lease, is authoritative."""
    from sap_payments.providers import Result, ResultKind

    db = _setup(tmp_path, 1)
    books = tmp_path / "books.db"
    with Ledger.open(db) as ledger:
        (key,) = _states(ledger)
        programme = ledger.config.programme
        with ledger.store.transaction():  # a dispatch that died after its outbox commit
            ledger.store.set_state([key], "SUBMITTED", from_state="READY", release_lines=False)
        outcome = ledger.apply_results([Result(key, ResultKind.NOT_FOUND)], provider="wallet")
        assert outcome.ignored == 1
        assert _states(ledger) == {key: "SUBMITTED"}
        ignored = [e for _, e in ledger.store.events() if e.kind == "result.ignored"]
        assert [e.instruction_id for e in ignored] == [key]
        reconcile(ledger.store, PERIOD, providers={"wallet": OutsiderWallet("wallet", books)})
        assert _states(ledger) == {key: "READY"}
        assert ledger.store.lease(programme, Period.parse(PERIOD).ordinal) is None
