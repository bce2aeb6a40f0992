"""A parallel import whose parent is killed (SIGKILL: the out-of-memory killer, ``kill -9``)
leaves nothing behind: its ``--workers`` die with it instead of living on blocked on a pipe, and
the next run removes the scratch folder it could not remove itself.

Real processes: the CLI in a process of its own, its workers found in ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sap_payments._scratch import PREFIX, remove_orphaned_scratch
from sap_payments.roster import PARALLEL_MIN_BYTES
from sap_payments.synthetic import RosterSpec, roster_rows, write_roster_csv

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finds the worker processes in /proc (Linux)"
)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == parent:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX"  # a zombie holds no memory, only its pid


@pytest.fixture(scope="module")
def large_roster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("large") / "roster.csv"
    write_roster_csv(path, roster_rows(RosterSpec(n=70_000, seed=3)))
    assert path.stat().st_size >= PARALLEL_MIN_BYTES  # large enough for the parallel reader
    return path


def test_killed_import_leaves_no_worker_and_no_scratch(tmp_path: Path, large_roster: Path) -> None:
    temp = tmp_path / "tmp"  # where the scratch folders go (TMPDIR), watched by this test alone
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    db = tmp_path / "l.db"
    command = [sys.executable, "-m", "sap_payments.cli", "--db", str(db), "--quiet"]
    parent = subprocess.Popen(
        [*command, "import", "roster", str(large_roster), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers) < 2:
            assert parent.poll() is None, "the import ended before its workers were seen"
            assert time.monotonic() < deadline, "no workers started"
            workers = children(parent.pid)
            time.sleep(0.005)
        scratch = [p for p in temp.iterdir() if p.name.startswith(PREFIX)]
        assert len(scratch) == 1  # made before the workers start
        parent.send_signal(signal.SIGKILL)
        parent.wait()

        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if alive(pid)], "workers outlived their parent"
        assert scratch[0].is_dir()  # a killed process cannot clean up

        done = subprocess.run(
            [*command, "cycle", "show", "--period", "2021-09"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "no cycle 2021-09" in done.stderr  # it opened the ledger
        assert not scratch[0].exists()  # and removed the dead run's scratch folder
        assert f"removed {scratch[0]}" in done.stderr
    finally:
        parent.kill()
        parent.wait()
        for pid in workers:  # on failure, leave no process behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_only_the_scratch_of_dead_processes_is_removed(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(finished.stdout)
    names = {
        "dead": f"{PREFIX}{dead}-abcd1234",
        "alive": f"{PREFIX}{os.getpid()}-abcd1234",
        "old-style": f"{PREFIX}abcd1234",  # made by an earlier version: whose, nobody knows
        "other": f"not-ours-{dead}-abcd1234",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "scratch0.db").write_bytes(b"x" * 100)
    (tmp_path / f"{PREFIX}{dead}-file").write_bytes(b"")  # not a folder: not ours

    assert remove_orphaned_scratch(tmp_path) == [tmp_path / names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["alive"], names["old-style"], names["other"], f"{PREFIX}{dead}-file"]
    )
