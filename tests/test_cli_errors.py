"""Failures a clerk can act on get a one-line cause and exit 1, never "internal error … report it"
(exit 70): a ``--db`` that is no ledger, a damaged ledger, a ledger another process holds, a full
disk. Each is made for real, as an outsider would meet it: files given as ``--db``, a ledger cut
in half or with a page overwritten, a second process holding the write lock, a small filesystem.

And three messages that sent the clerk the wrong way: ``report public`` into a missing folder,
``cycle dispatch`` leaving instructions for a provider that is not configured (exit 3, so that a
cron job notices), ``cycle close`` advising reconcile when dispatch is what is needed.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sap_payments import (
    Ledger,
    LedgerBusy,
    LedgerDamaged,
    LedgerFull,
    NotALedger,
    StoreError,
)
from sap_payments._sqlite import BUSY_TIMEOUT, translate
from sap_payments.cli import EXIT_WAITING, main
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
ROSTER = EXAMPLES / "roster.csv"
AREAS = EXAMPLES / "areas.csv"
CONFIG = EXAMPLES / "sap-payments.toml"
PERIOD = "2021-09"
DAMAGED = "error: the ledger file is damaged: restore it from a backup (docs/operations.md)"


def cli(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sap-payments ARGV`` in a process of its own, as a clerk or a cron job runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sap_payments.cli", *argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        timeout=60,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], start: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(start), done.stderr
    assert "internal error" not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def roster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 synthetic beneficiaries: a ledger of some 800 KB, a few hundred pages."""
    path = tmp_path_factory.mktemp("roster") / "roster.csv"
    write_roster_csv(path, roster_rows(RosterSpec(n=2000, seed=7)))
    return path


@pytest.fixture(scope="module")
def ledger_file(tmp_path_factory: pytest.TempPathFactory, roster: Path) -> Path:
    """A real ledger with the roster imported, closed cleanly (no -wal file left)."""
    folder = tmp_path_factory.mktemp("ledger")
    done = cli("import", "roster", str(roster), "--db", str(folder / "l.db"), "-q", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert not (folder / "l.db-wal").exists()
    return folder / "l.db"


def copy_ledger(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    shutil.copyfile(f"{source}.keyring", f"{target}.keyring")
    return target


# -- a --db that is not a ledger ---------------------------------------------------------------
def foreign_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE register (batch TEXT PRIMARY KEY)")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: shutil.copyfile(ROSTER, p), id="csv"),
        pytest.param(lambda p: p.write_bytes(os.urandom(50_000)), id="random-bytes"),
        pytest.param(foreign_sqlite, id="another-programs-sqlite"),
    ],
)
def test_a_file_that_is_no_ledger_is_named_and_left_alone(
    tmp_path: Path, make: object, roster: Path
) -> None:
    path = tmp_path / "given.db"
    assert callable(make)
    make(path)
    before = path.read_bytes()
    for argv in (("cycle", "show", "--period", PERIOD), ("import", "roster", str(roster))):
        done = cli(*argv, "--db", str(path), cwd=tmp_path)
        assert_one_line_error(done, f"error: {path} is not a sap-payments ledger")
    assert path.read_bytes() == before  # not migrated, not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given.db"]  # no keyring, no -wal


def test_a_missing_db_is_still_created(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    done = cli("import", "areas", str(AREAS), "--db", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with Ledger.open(path) as ledger:
        assert len(list(ledger.store.areas())) == 3


# -- a damaged ledger ----------------------------------------------------------------------------
def test_a_ledger_cut_in_half_is_damaged(tmp_path: Path, ledger_file: Path, roster: Path) -> None:
    path = copy_ledger(ledger_file, tmp_path / "half.db")
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    for argv in (("cycle", "show", "--period", PERIOD), ("import", "roster", str(roster))):
        assert_one_line_error(cli(*argv, "--db", str(path), cwd=tmp_path), DAMAGED)


def test_a_ledger_with_a_damaged_page_is_damaged(
    tmp_path: Path, ledger_file: Path, roster: Path
) -> None:
    """The file opens (its first pages are sound); a page the command reads is not."""
    path = copy_ledger(ledger_file, tmp_path / "page.db")
    db = sqlite3.connect(path)
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    (root,) = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'beneficiaries'"
    ).fetchone()
    db.close()
    with path.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xa5" * page_size)
    assert_one_line_error(
        cli("import", "roster", str(roster), "--db", str(path), cwd=tmp_path), DAMAGED
    )


# -- a ledger another process holds --------------------------------------------------------------
_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


@contextlib.contextmanager
def write_lock_held(path: Path, seconds: float) -> Iterator[None]:
    """Another process holding the ledger's write lock (``BEGIN IMMEDIATE``)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_ledger_held_by_another_process_past_the_timeout(
    tmp_path: Path, ledger_file: Path, roster: Path
) -> None:
    path = copy_ledger(ledger_file, tmp_path / "held.db")
    with write_lock_held(path, BUSY_TIMEOUT + 4):
        started = time.monotonic()
        done = cli("import", "roster", str(roster), "--db", str(path), cwd=tmp_path)
        waited = time.monotonic() - started
    assert_one_line_error(done, "error: another command holds the ledger: wait")
    assert waited >= BUSY_TIMEOUT - 0.5  # it waited for the lock before giving up
    # once the other process is done, the same command works
    assert cli("import", "roster", str(roster), "--db", str(path), cwd=tmp_path).returncode == 0


# -- a full disk ---------------------------------------------------------------------------------
@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``; skips where mounting is not allowed."""
    where.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small filesystem needs root (mount -t tmpfs); the mapping is unit-tested")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_changes_nothing(tmp_path: Path, roster: Path) -> None:
    with small_filesystem(tmp_path / "small", "256k") as small:
        path = small / "l.db"
        done = cli("import", "roster", str(roster), "--db", str(path), cwd=tmp_path)
        assert_one_line_error(done, "error: the disk is full: nothing was changed")
        check = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        assert check.execute("SELECT count(*) FROM beneficiaries").fetchone() == (0,)
        assert check.execute("SELECT count(*) FROM imports").fetchone() == (0,)
        check.close()


# -- the mapping itself --------------------------------------------------------------------------
def sqlite_error(tmp_path: Path, kind: str) -> sqlite3.Error:
    """A real error of SQLite's of each kind the store translates."""
    path = tmp_path / f"{kind}.db"
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        if kind == "full":
            db.execute("CREATE TABLE t (x BLOB)")
            db.execute("PRAGMA max_page_count = 3")
            db.execute("INSERT INTO t VALUES (zeroblob(100000))")
        elif kind == "busy":
            other = sqlite3.connect(path, isolation_level=None, timeout=0)
            other.execute("BEGIN IMMEDIATE")
            db.execute("BEGIN IMMEDIATE")
        elif kind == "notadb":
            path.write_bytes(b"beneficiary_id,full_name\n" * 1000)
            db.execute("SELECT * FROM sqlite_master")
        elif kind == "corrupt":
            db.execute("CREATE TABLE t (x)")
            db.execute("INSERT INTO t VALUES (1)")
            with path.open("r+b") as handle:
                handle.seek(4096)
                handle.write(b"\xa5" * 4096)
            sqlite3.connect(path).execute("SELECT * FROM t").fetchall()
        else:
            db.execute("CREATE TABLE t (x PRIMARY KEY)")
            db.execute("INSERT INTO t VALUES (1), (1)")
    except sqlite3.Error as exc:
        return exc
    finally:
        db.close()
    raise AssertionError(f"no {kind} error")


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("full", LedgerFull),
        ("busy", LedgerBusy),
        ("notadb", NotALedger),
        ("corrupt", LedgerDamaged),
        ("constraint", None),  # a bug, not the clerk's to fix: passed through unchanged
    ],
)
def test_sqlite_errors_map_to_store_errors(tmp_path: Path, kind: str, error: type | None) -> None:
    mapped = translate(sqlite_error(tmp_path, kind), "/srv/ledger.db")
    if error is None:
        assert mapped is None
        return
    assert type(mapped) is error
    assert isinstance(mapped, StoreError)
    assert isinstance(mapped, LedgerFull | LedgerBusy | NotALedger | LedgerDamaged)
    assert mapped.path == "/srv/ledger.db"
    # a worker process can raise it to the parent: it pickles with its path and message
    again = pickle.loads(pickle.dumps(mapped))
    assert (type(again), str(again), again.path) == (error, str(mapped), mapped.path)


def test_the_library_raises_ledger_full_and_keeps_nothing(tmp_path: Path, roster: Path) -> None:
    """Through the Python API: the store's connection raises the typed error, rolled back."""
    with Ledger.open(tmp_path / "l.db", durable=False) as ledger:
        (pages,) = ledger.store.query("PRAGMA page_count")[0]
        ledger.store.query(f"PRAGMA max_page_count = {int(str(pages)) + 8}")
        with pytest.raises(LedgerFull) as raised:
            ledger.import_roster(roster)
        assert raised.value.path == str(tmp_path / "l.db")
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert ledger.store.query("SELECT count(*) FROM beneficiaries") == [(0,)]


# -- messages that sent the clerk the wrong way --------------------------------------------------
@pytest.fixture
def approved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """--db and --config of a ledger whose cycle is approved: every instruction READY."""
    monkeypatch.chdir(tmp_path)  # the example's sandbox providers keep their books here
    base = ["--db", str(tmp_path / "l.db"), "--config", str(CONFIG)]
    for argv in (
        ("import", "areas", str(AREAS)),
        ("import", "roster", str(ROSTER)),
        ("cycle", "prepare", "--period", PERIOD),
        ("cycle", "approve", "--period", PERIOD, "--by", "Chị Hà"),
    ):
        assert main([*base, *argv], out=io.StringIO()) == 0  # in this process: quicker
    return base


def test_public_list_into_a_missing_folder_names_the_folder(
    tmp_path: Path, approved: list[str]
) -> None:
    missing = tmp_path / "lists" / "2021-09"
    done = cli(
        *approved,
        "report",
        "public",
        "--period",
        PERIOD,
        "--commune",
        "20107",
        "--output",
        str(missing),
        cwd=tmp_path,
    )
    assert_one_line_error(done, f"error: the folder {missing} does not exist")
    assert ".tmp" not in done.stderr


def test_close_with_ready_instructions_advises_dispatch(
    tmp_path: Path, approved: list[str]
) -> None:
    done = cli(*approved, "cycle", "close", "--period", PERIOD, cwd=tmp_path)
    assert_one_line_error(done, "error: cycle 2021-09")
    assert "READY" in done.stderr
    assert "run 'cycle dispatch'" in done.stderr
    assert "reconcile" not in done.stderr  # nothing was sent: there is nothing to ask about


def test_dispatch_exits_3_while_instructions_wait_for_an_unconfigured_provider(
    tmp_path: Path, approved: list[str]
) -> None:
    text = CONFIG.read_text(encoding="utf-8")
    start = text.index("[providers.vnpost]")
    end = text.index("\n\n", start)
    without_post = tmp_path / "without-post.toml"
    without_post.write_text(text[:start] + text[end + 2 :], encoding="utf-8")
    base = [approved[0], approved[1], "--config", str(without_post)]

    done = cli(*base, "cycle", "dispatch", "--period", PERIOD, cwd=tmp_path)
    assert done.returncode == EXIT_WAITING == 3, done.stderr
    warned = re.search(r"provider vnpost is not configured: (\d+) instructions wait", done.stdout)
    assert warned is not None, done.stdout  # the summary's warning, as before
    error = done.stderr.splitlines()
    assert len(error) == 1
    assert error[0].startswith("error: instructions wait for a provider that is not configured")
    assert f"(provider vnpost: {warned[1]})" in error[0]
    assert "run 'cycle dispatch' again" in error[0]

    # with the provider configured again, the next dispatch sends them and exits 0
    done = cli(*approved, "cycle", "dispatch", "--period", PERIOD, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
