"""Per-cycle leases: one dispatch, reconcile, close or window close of a cycle at a time.

Two runs of ``cycle dispatch`` on one cycle would each take the other's in-flight SUBMITTED
batches for a dead run's and "recover" them — query, hear NOT_FOUND while the first run's call
is still on the wire, and send them again. So every command that sends to, or settles with, a
provider holds the cycle's lease while it works: a row ``(programme, period)`` in the ledger
naming the operation, a random holder token, the host and process id, when it was taken, and
when it expires unless renewed (the heartbeat: each batch renews it).

A lease blocks another run while its holder is alive:

* on the same host, while the holder's process runs (``pid`` alive and started when the lease
  says) — whatever the expiry, since a live process may be in a long provider call; a killed
  run's lease is free at once;
* from another host, until it expires (:data:`DEFAULT_TTL` after the last heartbeat).

A second run either waits (``wait`` seconds, polling) or raises :class:`CycleBusy` naming the
holder: "cycle 2021-09 is being dispatched by host/4242 since 2021-10-01T08:00:00+00:00". Taking
over a dead or expired holder's lease is recorded as a ``lease.taken_over`` event. A lease is
re-entrant within one process (``dispatch`` runs ``reconcile``'s recovery under its own lease).

Results that arrive without a lease — ``import reports``, post-office confirmations, GSMA
callbacks — need none: every state change is compare-and-set against the state read in the
same transaction (``Store.apply_moves``), so they can race a dispatch or a reconcile safely.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from sap_payments.errors import CycleStateError, StateError
from sap_payments.store import EventRecord, LeaseRecord

if TYPE_CHECKING:
    from sap_payments.periods import Period
    from sap_payments.store import Store

__all__ = ["DEFAULT_TTL", "OPERATIONS", "CycleBusy", "CycleLease", "cycle_lease"]

#: Seconds a lease stays valid after its last heartbeat (for holders on other hosts).
DEFAULT_TTL: Final = 300.0
#: How often a waiting run looks again.
_POLL: Final = 0.25

#: The operations that hold a lease, and how a message names them.
OPERATIONS: Final = {
    "dispatch": "dispatched",
    "reconcile": "reconciled",
    "close": "closed",
    "close-window": "window-closed",
}


class CycleBusy(CycleStateError):
    """Another run holds the cycle's lease: ``lease`` names it (operation, host, pid, since)."""

    def __init__(
        self, programme: str, period: str, lease: LeaseRecord, *, lost: bool = False
    ) -> None:
        verb = OPERATIONS.get(lease.operation, lease.operation)
        who = f"{lease.host}/{lease.pid}"
        if lost:
            text = (
                f"cycle {period} ({programme}): this run lost its lease to {who}, which is "
                f"{verb.removesuffix('ed')}ing it since {lease.acquired_at}; stopped"
            )
        else:
            text = (
                f"cycle {period} ({programme}) is being {verb} by {who} since "
                f"{lease.acquired_at}: wait for it to finish, or run again with --wait SECONDS"
            )
        StateError.__init__(self, text)
        self.programme = programme
        self.period = period
        self.lease = lease


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or ``""``: with the pid, it
    tells a live holder from a later process that reused its pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            stat = handle.read()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return not started or _process_start(pid) in {"", started}


def _blocks(lease: LeaseRecord, host: str, now: dt.datetime) -> bool:
    """Whether ``lease`` keeps another run (on ``host``) out at ``now``."""
    if lease.host == host:
        started = lease.holder.split(":", 1)[0]
        return _alive(lease.pid, started)
    return dt.datetime.fromisoformat(lease.expires_at) > now


class CycleLease:
    """A held lease; :meth:`renew` is the heartbeat (cheap: it writes at most every
    ``ttl / 10`` seconds) and notices a lease lost to another run."""

    def __init__(self, store: Store, period: Period, record: LeaseRecord, ttl: float) -> None:
        self.store = store
        self.period = period
        self.record = record
        self.ttl = ttl
        self._renewed = time.monotonic()

    def renew(self, *, force: bool = False) -> None:
        """Push the expiry ``ttl`` seconds ahead.

        Raises:
            CycleBusy: another run took the lease over (this run was presumed dead).
        """
        if not force and time.monotonic() - self._renewed < self.ttl / 10:
            return
        now = _now()
        record = self.record
        with self.store.transaction():
            current = self.store.lease(record.programme, record.period)
            if current is None or current.holder != record.holder:
                if current is None:
                    current = record
                raise CycleBusy(record.programme, str(self.period), current, lost=True)
            self.record = record._replace(
                heartbeat_at=_stamp(now),
                expires_at=_stamp(now + dt.timedelta(seconds=self.ttl)),
            )
            self.store.put_lease(self.record)
        self._renewed = time.monotonic()


#: Leases this process holds: (store, programme, period) → the lease (re-entrancy).
_HELD: dict[tuple[int, str, int], CycleLease] = {}


@contextlib.contextmanager
def cycle_lease(
    store: Store,
    programme: str,
    period: Period,
    operation: str,
    *,
    wait: float = 0.0,
    ttl: float = DEFAULT_TTL,
) -> Iterator[CycleLease]:
    """Hold the cycle's lease for ``operation`` while the block runs.

    Args:
        wait: seconds to wait for a busy lease before giving up (0: give up at once).
        ttl: seconds the lease stays valid after each heartbeat, for runs on other hosts.

    Raises:
        CycleBusy: another live run holds the lease (after ``wait`` seconds).
    """
    if operation not in OPERATIONS:
        raise ValueError(f"not a leased operation: {operation!r}")
    key = (id(store), programme, period.ordinal)
    held = _HELD.get(key)
    if held is not None:  # re-entrant: this process already holds it
        yield held
        return
    host = socket.gethostname()
    pid = os.getpid()
    holder = f"{_process_start(pid)}:{uuid.uuid4().hex}"
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        now = _now()
        with store.transaction():
            current = store.lease(programme, period.ordinal)
            if current is None or not _blocks(current, host, now):
                record = LeaseRecord(
                    programme,
                    period.ordinal,
                    operation,
                    holder,
                    host,
                    pid,
                    _stamp(now),
                    _stamp(now),
                    _stamp(now + dt.timedelta(seconds=ttl)),
                )
                store.put_lease(record)
                if current is not None:
                    store.append_events(
                        [
                            EventRecord(
                                _stamp(now),
                                "lease.taken_over",
                                None,
                                None,
                                None,
                                None,
                                f"{programme} {period} {operation}: from {current.operation} "
                                f"by {current.host}/{current.pid} since {current.acquired_at} "
                                f"(last heartbeat {current.heartbeat_at})",
                            )
                        ]
                    )
                break
        if time.monotonic() >= deadline:
            raise CycleBusy(programme, str(period), current)
        time.sleep(_POLL)
    lease = _HELD[key] = CycleLease(store, period, record, ttl)
    try:
        yield lease
    finally:
        del _HELD[key]
        # A lease that cannot be dropped (the ledger went away under us) frees itself: its
        # holder's process ends, or it expires.
        with contextlib.suppress(Exception), store.transaction():
            store.drop_lease(programme, period.ordinal, holder)
