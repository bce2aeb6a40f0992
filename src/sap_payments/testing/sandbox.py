"""Sandbox providers: deterministic stand-ins for an e-wallet operator, a bank and the post office.

Three factories, registered as entry points of group ``sap_payments.providers``::

    sandbox-ewallet = "sap_payments.testing.sandbox:ewallet"
    sandbox-bank    = "sap_payments.testing.sandbox:bank"
    sandbox-postal  = "sap_payments.testing.sandbox:postal"

Each returns a :class:`SandboxProvider` that keeps its own books (which keys it received, what
money it moved) in SQLite — in memory by default, in a file with the ``state`` setting — and
decides every outcome from ``seed`` and the payment's key alone: the same key gets the same fate
whatever the call order, the batch it travels in or the process that sends it. A dead address
(an inactive wallet, a closed account) is a property of the address rather than of one payment,
so that outcome is drawn from ``(seed, address)`` and every payment to that address fails alike.

Time in the sandbox is counted in status queries: a *late* key answers ``PENDING`` to its first
``late_polls`` status queries, and a paid key drawn for a return turns ``RETURNED`` on the
``return_polls``-th query after the first that showed it paid. Nothing depends on the clock.

``submit`` answers ``PENDING`` for every new key, except a failure that is not late, which is
``FAILED`` at once (the payment is refused on the spot and no money moves). Timeouts and
unavailability are drawn per key as well and strike the first submit that brings a drawn key:
a timeout after the whole batch was applied and committed, unavailability before anything was.
A resubmit of known keys never times out, and the retry after an unavailability goes through,
so a caller that follows the protocol (status query after a timeout, resend after
unavailable) always gets on.

The settings, the report format and the test hooks (:meth:`SandboxProvider.applied`,
``applied_total``, ``movements``, ``status_polls``, ``reports``) are described in
``docs/plugins.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import attrs

from sap_payments.beneficiaries import (
    BankAccount,
    CashPickup,
    Channel,
    FinancialAddress,
    WalletAddress,
    normalise_msisdn,
)
from sap_payments.errors import ConfigError, InvalidInput
from sap_payments.money import MINOR_UNITS, Money
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    EnrolmentOutcome,
    EnrolmentOutcomeKind,
    EnrolmentRequest,
    Payment,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Reason,
    Result,
    ResultKind,
)

__all__ = [
    "REPORT_FORMAT",
    "SandboxProvider",
    "SandboxSettings",
    "bank",
    "ewallet",
    "postal",
]

#: The value of the ``format`` member of every sandbox report document.
REPORT_FORMAT: Final = "sap-payments-sandbox-report/1"

_SCHEMA_VERSION: Final = 1

_DEFAULT_FAIL_REASONS: Final[Mapping[Channel, tuple[Reason, ...]]] = {
    Channel.EWALLET: (Reason.INACTIVE_WALLET, Reason.NAME_MISMATCH),
    Channel.BANK: (Reason.CLOSED_ACCOUNT, Reason.NAME_MISMATCH),
    Channel.POSTAL: (Reason.REFUSED,),
}

#: Why a paid payment comes back, by channel.
_RETURN_REASON: Final[Mapping[Channel, Reason]] = {
    Channel.EWALLET: Reason.INACTIVE_WALLET,
    Channel.BANK: Reason.CLOSED_ACCOUNT,
    Channel.POSTAL: Reason.REFUSED,
}

_PER_MILLE: Final = (
    "fail_per_mille",
    "late_per_mille",
    "timeout_per_mille",
    "unavailable_per_mille",
    "return_per_mille",
    "unclaimed_per_mille",
    "duplicate_per_mille",
)
_COUNTS: Final = ("late_polls", "return_polls")
_COMMON_KEYS: Final = frozenset(
    {
        *_PER_MILLE,
        *_COUNTS,
        "seed",
        "fail_reasons",
        "reorder",
        "state",
        "max_batch",
        "currency",
    }
    - {"unclaimed_per_mille"}
)
#: Account opening (capability ``enrolment``, e-wallet and bank sandboxes): per-mille rates
#: drawn from (seed, beneficiary id), and how many ``enrol`` calls a pending one stays pending.
_ENROL_PER_MILLE: Final = (
    "enrol_already_per_mille",
    "enrol_refused_per_mille",
    "enrol_failed_per_mille",
    "enrol_pending_per_mille",
)
_ENROL_KEYS: Final = frozenset({*_ENROL_PER_MILLE, "enrol_pending_polls"})
_CHANNEL_KEYS: Final[Mapping[Channel, frozenset[str]]] = {
    Channel.EWALLET: _COMMON_KEYS | _ENROL_KEYS | {"dead_msisdns"},
    Channel.BANK: _COMMON_KEYS | _ENROL_KEYS | {"closed_accounts"},
    Channel.POSTAL: _COMMON_KEYS | {"unclaimed_per_mille"},
}

_FINAL_IN_REPORTS: Final = frozenset(
    {ResultKind.PAID, ResultKind.FAILED, ResultKind.RETURNED, ResultKind.UNCLAIMED}
)

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # One row per key ever received: the payment as recorded and its drawn fate.
    "CREATE TABLE IF NOT EXISTS payments ("
    " key TEXT PRIMARY KEY, amount INTEGER NOT NULL, currency TEXT NOT NULL,"
    " address TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT,"
    " late_until INTEGER NOT NULL, return_at INTEGER, polls INTEGER NOT NULL DEFAULT 0,"
    " reference TEXT NOT NULL)",
    # Money that left the agency's float, in order.
    "CREATE TABLE IF NOT EXISTS movements ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, amount INTEGER NOT NULL)",
    # Keys whose first submit was answered with ProviderUnavailable (the retry goes through).
    "CREATE TABLE IF NOT EXISTS tripped (key TEXT PRIMARY KEY)",
    # Report documents not yet drained by reports().
    "CREATE TABLE IF NOT EXISTS reports (number INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    # Account-opening requests received (key → enrol calls so far): a pending one's clock.
    "CREATE TABLE IF NOT EXISTS enrolments (key TEXT PRIMARY KEY, calls INTEGER NOT NULL)",
)


def _ppm(seed: int, subject: str, what: str) -> int:
    """A number in 0..999,999, a pure function of (seed, subject, what): compared with a rate in
    parts per million it decides one aspect (``what``) of one key's or address's fate."""
    return _number(seed, subject, what) % 1_000_000


def _number(seed: int, subject: str, what: str) -> int:
    digest = hashlib.sha256(f"{seed}:{subject}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _hit(seed: int, subject: str, what: str, per_mille: int) -> bool:
    """True for about ``per_mille`` subjects in a thousand (exactly none at 0, all at 1000)."""
    if per_mille <= 0:  # the draw could not hit (it is below 1,000,000): skip the hashing
        return False
    if per_mille >= 1000:
        return True
    return _ppm(seed, subject, what) < per_mille * 1000


# -- settings -------------------------------------------------------------------------------------
@attrs.frozen
class SandboxSettings:
    """A sandbox provider's settings, checked. Rates are per mille (0–1000), never floats."""

    channel: Channel
    seed: int = 0
    fail_per_mille: int = 20
    fail_reasons: tuple[Reason, ...] = ()
    late_per_mille: int = 100
    late_polls: int = 2
    timeout_per_mille: int = 0
    unavailable_per_mille: int = 0
    return_per_mille: int = 5
    return_polls: int = 3
    unclaimed_per_mille: int = 0
    duplicate_per_mille: int = 0
    reorder: bool = False
    state: Path | None = None
    max_batch: int = 500
    currency: str = "VND"
    dead_msisdns: frozenset[str] = frozenset()
    closed_accounts: frozenset[str] = frozenset()
    enrol_already_per_mille: int = 100
    enrol_refused_per_mille: int = 30
    enrol_failed_per_mille: int = 20
    enrol_pending_per_mille: int = 0
    enrol_pending_polls: int = 1

    @classmethod
    def from_mapping(
        cls, name: str, channel: Channel, settings: Mapping[str, Any]
    ) -> SandboxSettings:
        """Check ``settings`` (as read from ``sap-payments.toml``) for a sandbox of ``channel``.

        Raises:
            ConfigError: an unknown key or a bad value; ``key`` names the setting as
                ``providers.<name>.<setting>``.
        """

        def fail(key: str, message: str) -> ConfigError:
            return ConfigError(message, key=f"providers.{name}.{key}")

        allowed = _CHANNEL_KEYS[channel]
        unknown = sorted(set(settings) - allowed)
        if unknown:
            raise fail(
                unknown[0],
                f"not a setting of the {channel} sandbox (known: {', '.join(sorted(allowed))})",
            )
        values: dict[str, Any] = {"channel": channel}

        def integer(key: str, low: int, high: int | None = None) -> None:
            if key not in settings:
                return
            value = settings[key]
            if type(value) is not int:
                raise fail(key, f"must be a whole number, not {type(value).__name__}")
            if value < low or (high is not None and value > high):
                bounds = f"{low}–{high}" if high is not None else f"at least {low}"
                raise fail(key, f"must be {bounds}, not {value}")
            values[key] = value

        def strings(key: str) -> tuple[str, ...]:
            value = settings[key]
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise fail(key, "must be a list of strings")
            if not all(isinstance(item, str) and item.strip() for item in value):
                raise fail(key, "must be a list of non-empty strings")
            return tuple(item.strip() for item in value)

        seed = settings.get("seed", 0)
        if type(seed) is not int:
            raise fail("seed", f"must be a whole number, not {type(seed).__name__}")
        values["seed"] = seed
        for key in _PER_MILLE:
            integer(key, 0, 1000)
        for key in _COUNTS:
            integer(key, 0)
        for key in _ENROL_PER_MILLE:
            integer(key, 0, 1000)
        integer("enrol_pending_polls", 0)
        integer("max_batch", 1)
        if channel is Channel.POSTAL and "unclaimed_per_mille" not in values:
            values["unclaimed_per_mille"] = 30

        if "fail_reasons" in settings:
            reasons = []
            for text in strings("fail_reasons"):
                try:
                    reasons.append(Reason(text))
                except ValueError:
                    known = ", ".join(reason.value for reason in Reason)
                    raise fail("fail_reasons", f"{text!r} is not a reason ({known})") from None
            if not reasons:
                raise fail("fail_reasons", "must name at least one reason")
            values["fail_reasons"] = tuple(reasons)
        else:
            values["fail_reasons"] = _DEFAULT_FAIL_REASONS[channel]

        if "reorder" in settings:
            if not isinstance(settings["reorder"], bool):
                raise fail("reorder", "must be true or false")
            values["reorder"] = settings["reorder"]
        if "state" in settings:
            state = settings["state"]
            if not isinstance(state, str | os.PathLike) or not str(state).strip():
                raise fail("state", "must be the path of a SQLite file")
            values["state"] = Path(state)
        if "currency" in settings:
            if not isinstance(settings["currency"], str) or settings["currency"] not in MINOR_UNITS:
                raise fail("currency", f"unknown currency {settings['currency']!r}")
            values["currency"] = settings["currency"]
        if "dead_msisdns" in settings:
            numbers = set()
            for text in strings("dead_msisdns"):
                try:
                    numbers.add(normalise_msisdn(text))
                except InvalidInput as exc:
                    raise fail("dead_msisdns", str(exc)) from None
            values["dead_msisdns"] = frozenset(numbers)
        if "closed_accounts" in settings:
            values["closed_accounts"] = frozenset(strings("closed_accounts"))
        return cls(**values)


# -- the provider ---------------------------------------------------------------------------------
@attrs.frozen
class _Record:
    """A received key as the sandbox's books hold it."""

    key: str
    amount: Money
    address: str
    outcome: ResultKind  # PAID, FAILED or UNCLAIMED: where the payment ends (before a return)
    reason: Reason | None
    late_until: int  # the first late_until status queries answer PENDING
    return_at: int | None  # the status query (1-based) that first answers RETURNED
    polls: int
    reference: str

    def visible(self, polls: int) -> tuple[ResultKind, Reason | None]:
        """What the provider says after ``polls`` status queries (0: the answer to submit)."""
        if polls == 0:
            if self.outcome is ResultKind.FAILED and self.late_until == 0:
                return self.outcome, self.reason
            return ResultKind.PENDING, None
        if polls <= self.late_until:
            return ResultKind.PENDING, None
        if self.return_at is not None and polls >= self.return_at:
            return ResultKind.RETURNED, self.reason
        return self.ending()

    def ending(self) -> tuple[ResultKind, Reason | None]:
        """Where the payment ends, before any return (``reason`` holds the return's reason
        for a paid payment that will come back)."""
        if self.outcome is ResultKind.FAILED:
            return self.outcome, self.reason
        return self.outcome, None


class SandboxProvider:
    """A sandbox provider for one channel (implements :class:`~sap_payments.providers.Provider`).

    Args:
        name: the provider instance's name (``[providers.<name>]``).
        channel: the channel it pays through.
        settings: the sandbox settings (see :class:`SandboxSettings` and ``docs/plugins.md``).

    Raises:
        ConfigError: bad settings, or a ``state`` file that cannot be used.
    """

    name: str
    capabilities: Capabilities

    def __init__(
        self, name: str, channel: Channel, settings: Mapping[str, Any] | None = None
    ) -> None:
        self.name = name
        self.channel = channel
        self.settings = SandboxSettings.from_mapping(name, channel, settings or {})
        self.capabilities = Capabilities(
            channels=frozenset({channel}),
            max_batch=self.settings.max_batch,
            status_query=True,
            callbacks=True,
            address_validation=channel is not Channel.POSTAL,
            enrolment=channel is not Channel.POSTAL,
        )
        # Failures with a dead-address reason belong to the address (a closed account is closed
        # for every payment to it), the others to the key. Of all payments, fail_per_mille in a
        # thousand fail: a fraction f·d of addresses is dead (d: the share of dead-address
        # reasons), and a key to a live address fails with probability f·(1-d) / (1 - f·d).
        reasons = self.settings.fail_reasons
        if channel is Channel.POSTAL:
            self._dead_reasons: tuple[Reason, ...] = ()
        else:
            self._dead_reasons = tuple(reason for reason in reasons if reason.dead_address)
        self._other_reasons = tuple(r for r in reasons if r not in self._dead_reasons)
        total, dead, rate = len(reasons), len(self._dead_reasons), self.settings.fail_per_mille
        self._dead_ppm = rate * dead * 1000 // total
        live = 1000 * total - rate * dead
        self._other_ppm = 1_000_000 * rate * (total - dead) // live if live else 0
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = self._open()

    def __repr__(self) -> str:
        return f"<SandboxProvider {self.name!r} ({self.channel}, seed {self.settings.seed})>"

    def __enter__(self) -> SandboxProvider:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the books ---------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        state = self.settings.state
        key = f"providers.{self.name}.state"
        try:
            db = sqlite3.connect(
                ":memory:" if state is None else state,
                isolation_level=None,
                check_same_thread=False,
                timeout=30,
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the sandbox state file: {exc}", key=key) from exc
        try:
            if state is not None:
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > _SCHEMA_VERSION:
                raise ConfigError(
                    f"the sandbox state file has schema {version}, newer than this one", key=key
                )
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('channel', ?), ('reports', '0')",
                (self.channel.value,),
            )
            (stored,) = db.execute("SELECT value FROM meta WHERE name = 'channel'").fetchone()
            if stored != self.channel.value:
                db.execute("ROLLBACK")
                raise ConfigError(
                    f"the state file holds the books of a {stored} sandbox, not {self.channel}",
                    key=key,
                )
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.close()
            raise ConfigError(f"cannot use the sandbox state file: {exc}", key=key) from exc
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, fsynced before returning)."""
        with self._lock:
            db = self._db
            if db is None:
                raise ProviderError(self.name, "the sandbox is closed", provider_code="CLOSED")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _record(self, db: sqlite3.Connection, key: str) -> _Record | None:
        return self._records(db, [key]).get(key)

    def _records(self, db: sqlite3.Connection, keys: Sequence[str]) -> dict[str, _Record]:
        """The books' records of ``keys`` (those known), in one query per 500 keys."""
        found: dict[str, _Record] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            for row in db.execute(
                "SELECT key, amount, currency, address, outcome, reason, late_until, return_at,"
                f" polls, reference FROM payments WHERE key IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                found[row[0]] = self._from_row(row)
        return found

    @staticmethod
    def _from_row(row: tuple[Any, ...]) -> _Record:
        key, amount, currency, address, outcome, reason, late_until, return_at, polls, ref = row
        return _Record(
            key,
            Money(amount, currency),
            address,
            ResultKind(outcome),
            None if reason is None else Reason(reason),
            late_until,
            return_at,
            polls,
            ref,
        )

    def _result(self, record: _Record, polls: int) -> Result:
        kind, reason = record.visible(polls)
        return self._make_result(record, kind, reason)

    def _make_result(self, record: _Record, kind: ResultKind, reason: Reason | None) -> Result:
        return Result(
            key=record.key,
            kind=kind,
            reason=reason,
            provider_reference=record.reference,
            provider_code=None if reason is None else f"SBX-{reason.value.upper()}",
            provider_message=None if reason is None else f"sandbox: {reason.value}",
            amount=record.amount,
        )

    # -- fate --------------------------------------------------------------------------------
    def _listed(self, address: FinancialAddress) -> Reason | None:
        """The reason a ``dead_msisdns`` / ``closed_accounts`` address is refused, if it is."""
        settings = self.settings
        if isinstance(address, WalletAddress):
            try:
                msisdn = normalise_msisdn(address.msisdn)
            except InvalidInput:
                msisdn = address.msisdn
            if msisdn in settings.dead_msisdns:
                return Reason.INACTIVE_WALLET
        elif isinstance(address, BankAccount):
            forms = {address.account_number, f"{address.bank_bin}:{address.account_number}"}
            if forms & settings.closed_accounts:
                return Reason.CLOSED_ACCOUNT
        return None

    def _dead(self, address: FinancialAddress) -> Reason | None:
        """Why this address can never be paid, if it cannot: listed in the settings, or drawn
        from (seed, address) with a dead-address reason. A cash pick-up point is shared by many
        payees and is never dead."""
        listed = self._listed(address)
        dead = self._dead_reasons
        if listed is not None or isinstance(address, CashPickup) or not dead:
            return listed
        seed = self.settings.seed
        if _ppm(seed, address.key, "dead") < self._dead_ppm:
            return dead[_number(seed, address.key, "reason") % len(dead)]
        return None

    def _fate(self, payment: Payment) -> _Record:
        """The drawn fate of a new key: a pure function of (seed, key) and, for a dead
        address, of (seed, address)."""
        settings = self.settings
        seed, key = settings.seed, payment.key
        outcome = ResultKind.PAID
        reason: Reason | None = None
        late = _hit(seed, key, "late", settings.late_per_mille)
        dead = self._dead(payment.address)
        other = self._other_reasons
        if dead is not None:
            outcome, reason = ResultKind.FAILED, dead
            if self._listed(payment.address) is not None:
                late = False  # a listed address is refused on the spot
        elif _ppm(seed, key, "fail") < self._other_ppm:
            outcome = ResultKind.FAILED
            reason = other[_number(seed, key, "reason") % len(other)]
        if outcome is ResultKind.PAID and _hit(
            seed, key, "unclaimed", settings.unclaimed_per_mille
        ):
            outcome = ResultKind.UNCLAIMED
        late_until = settings.late_polls if late else 0
        return_at = None
        if outcome is ResultKind.PAID and _hit(seed, key, "return", settings.return_per_mille):
            return_at = late_until + 1 + settings.return_polls
            reason = _RETURN_REASON[self.channel]
        digest = hashlib.sha256(f"{seed}:{key}:reference".encode()).hexdigest()
        return _Record(
            key=key,
            amount=payment.amount,
            address=payment.address.key,
            outcome=outcome,
            reason=reason,
            late_until=late_until,
            return_at=return_at,
            polls=0,
            reference=f"SBX-{self.channel.value[0].upper()}-{digest[:12].upper()}",
        )

    # -- the protocol ------------------------------------------------------------------------
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        """Receive a batch; idempotent by key.

        Every payment is checked before anything is applied. Then, in one transaction: new keys
        are recorded with their drawn fate and the money of those not refused moves; the
        transaction is committed (fsynced when ``state`` is a file) before this returns or
        raises the timeout.

        Raises:
            ProviderError: a bad batch (``provider_code``: ``BATCH_TOO_LARGE``,
                ``WRONG_CHANNEL``, ``INVALID_AMOUNT``, ``CURRENCY_NOT_SUPPORTED``,
                ``INVALID_KEY``, ``DUPLICATE_KEY_MISMATCH``); nothing was applied.
            ProviderUnavailable: a new key in the batch was drawn for unavailability and this
                is its first submit; nothing was applied.
            ProviderTimeout: a new key in the batch was drawn for a timeout; the whole batch
                was applied and committed first.
        """
        if not payments:
            return []
        if len(payments) > self.settings.max_batch:
            raise ProviderError(
                self.name,
                f"a batch of {len(payments)} is over the limit of {self.settings.max_batch}",
                provider_code="BATCH_TOO_LARGE",
            )
        settings = self.settings
        seed = settings.seed
        with self._transaction() as db:
            # the keys already in the books, then those new in this batch
            records: dict[str, _Record] = self._records(db, [p.key for p in payments])
            fresh: dict[str, Payment] = {}
            for index, payment in enumerate(payments):
                self._check(index, payment)
                if payment.key not in records and payment.key not in fresh:
                    fresh[payment.key] = payment
                first = fresh.get(payment.key)
                amount, address = (
                    (first.amount, first.address.key)
                    if first is not None
                    else (records[payment.key].amount, records[payment.key].address)
                )
                if (amount, address) != (payment.amount, payment.address.key):
                    raise ProviderError(
                        self.name,
                        f"payment {index}: key {payment.key} was received before with another "
                        "amount or address",
                        provider_code="DUPLICATE_KEY_MISMATCH",
                    )
            unavailable = [
                key
                for key in fresh
                if _hit(seed, key, "unavailable", settings.unavailable_per_mille)
                and db.execute("SELECT 1 FROM tripped WHERE key = ?", (key,)).fetchone() is None
            ]
            if unavailable:
                # Remembered (a note, not a payment) so that the retry goes through.
                db.executemany("INSERT INTO tripped VALUES (?)", [(key,) for key in unavailable])
            timed_out = False
            finals: list[Result] = []
            new = [self._fate(payment) for payment in ([] if unavailable else fresh.values())]
            self._insert_all(db, new)
            db.executemany(
                "INSERT INTO movements (key, amount) VALUES (?, ?)",
                [(r.key, r.amount.minor) for r in new if r.outcome is not ResultKind.FAILED],
            )
            for record in new:
                if record.late_until == 0:
                    finals.append(self._make_result(record, *record.ending()))
                records[record.key] = record
                timed_out |= _hit(seed, record.key, "timeout", settings.timeout_per_mille)
            self._queue_report(db, finals)
        if unavailable:
            raise ProviderUnavailable(
                self.name, "the sandbox is unavailable (nothing was applied); try again"
            )
        if timed_out:
            raise ProviderTimeout(
                self.name, "no answer in time (the sandbox applied the batch before timing out)"
            )
        return [self._result(records[p.key], records[p.key].polls) for p in payments]

    def _check(self, index: int, payment: Payment) -> None:
        problem: tuple[str, str] | None = None
        if not isinstance(payment.key, str) or not payment.key:
            problem = ("INVALID_KEY", "the key must be a non-empty string")
        elif payment.address.channel is not self.channel:
            problem = ("WRONG_CHANNEL", f"a {payment.address.channel} address, not {self.channel}")
        elif payment.amount.currency != self.settings.currency:
            problem = (
                "CURRENCY_NOT_SUPPORTED",
                f"{payment.amount.currency}; this sandbox pays {self.settings.currency}",
            )
        elif payment.amount.minor <= 0:
            problem = ("INVALID_AMOUNT", "the amount must be positive")
        if problem is not None:
            code, message = problem
            raise ProviderError(self.name, f"payment {index}: {message}", provider_code=code)

    def _insert_all(self, db: sqlite3.Connection, records: Sequence[_Record]) -> None:
        db.executemany(
            "INSERT INTO payments (key, amount, currency, address, outcome, reason, late_until,"
            " return_at, polls, reference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            [
                (
                    record.key,
                    record.amount.minor,
                    record.amount.currency,
                    record.address,
                    record.outcome.value,
                    None if record.reason is None else record.reason.value,
                    record.late_until,
                    record.return_at,
                    record.reference,
                )
                for record in records
            ],
        )

    def status(self, keys: Sequence[str]) -> list[Result]:
        """The current result of each key (``NOT_FOUND`` when never received).

        Every occurrence of a known key counts as one status query of that key: this is the
        sandbox's clock for late results and returns.
        """
        results: list[Result] = []
        finals: list[Result] = []
        with self._transaction() as db:
            known = self._records(db, keys)
            counted: dict[str, int] = {}
            for key in keys:
                record = known.get(key)
                if record is None:
                    results.append(Result(key=key, kind=ResultKind.NOT_FOUND))
                    continue
                polls = counted.get(key, record.polls) + 1
                counted[key] = polls
                if record.late_until > 0 and polls == record.late_until + 1:
                    finals.append(self._make_result(record, *record.ending()))
                if polls == record.return_at:
                    finals.append(self._make_result(record, ResultKind.RETURNED, record.reason))
                results.append(self._result(record, polls))
            db.executemany(
                "UPDATE payments SET polls = ? WHERE key = ?",
                [(polls, key) for key, polls in counted.items()],
            )
            self._queue_report(db, finals)
        return results

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        """Can ``address`` be paid? Dead addresses (listed or drawn) answer ``ok=False``.

        The sandbox does not compare names: ``name_matches`` is always ``None``.
        """
        if address.channel is not self.channel:
            return AddressCheck(ok=False, reason=Reason.UNKNOWN_ACCOUNT)
        dead = self._dead(address)
        if dead is not None:
            return AddressCheck(ok=False, reason=dead)
        return AddressCheck(ok=True)

    def enrol(self, request: EnrolmentRequest) -> EnrolmentOutcome:
        """Open (or find) an account for a beneficiary (capability ``enrolment``).

        The fate is drawn from ``(seed, beneficiary id)``, so the same person gets the same
        answer and the same account from any campaign: about ``enrol_already_per_mille`` in a
        thousand already have one, ``enrol_refused_per_mille`` decline, ``enrol_failed_per_mille``
        fail the identity check (and every request without a national id fails), the rest get a
        new account. ``enrol_pending_per_mille`` of them answer ``PENDING`` to their first
        ``enrol_pending_polls`` calls with the same key. A wallet is opened on the request's
        mobile number when it has one, else on a number drawn for the person; a bank account is
        at VietinBank (BIN 970415) with a drawn 12-digit number.
        """
        if self.channel is Channel.POSTAL:  # pragma: no cover - the capability is not declared
            raise ProviderError(self.name, "the postal sandbox opens no accounts")
        settings, seed = self.settings, self.settings.seed
        subject = request.beneficiary_id
        with self._transaction() as db:
            row = db.execute(
                "SELECT calls FROM enrolments WHERE key = ?", (request.key,)
            ).fetchone()
            calls = 1 if row is None else int(row[0]) + 1
            db.execute("INSERT OR REPLACE INTO enrolments VALUES (?, ?)", (request.key, calls))
        reference = (
            "SBX-E-"
            + hashlib.sha256(f"{seed}:{request.key}:enrol".encode()).hexdigest()[:12].upper()
        )
        if _hit(seed, subject, "enrol-pending", settings.enrol_pending_per_mille) and (
            calls <= settings.enrol_pending_polls
        ):
            return EnrolmentOutcome(
                request.key, EnrolmentOutcomeKind.PENDING, provider_reference=reference
            )
        draw = _ppm(seed, subject, "enrol") // 1000  # 0..999
        already = settings.enrol_already_per_mille
        refused = already + settings.enrol_refused_per_mille
        failed = refused + settings.enrol_failed_per_mille
        if already <= draw < refused:
            return EnrolmentOutcome(
                request.key,
                EnrolmentOutcomeKind.REFUSED,
                reason="declined",
                provider_reference=reference,
                provider_code="SBX-DECLINED",
            )
        if request.national_id is None or refused <= draw < failed:
            return EnrolmentOutcome(
                request.key,
                EnrolmentOutcomeKind.FAILED,
                reason="identity_check_failed",
                provider_reference=reference,
                provider_code="SBX-KYC",
            )
        address: FinancialAddress
        if self.channel is Channel.EWALLET:
            number = request.msisdn or f"+849{_number(seed, subject, 'msisdn') % 10**8:08d}"
            address = WalletAddress(number, self.name)
        else:
            account = f"{_number(seed, subject, 'account') % 10**12:012d}"
            address = BankAccount("970415", account, self.name)
        kind = EnrolmentOutcomeKind.ALREADY_HAD if draw < already else EnrolmentOutcomeKind.OPENED
        return EnrolmentOutcome(request.key, kind, address, provider_reference=reference)

    # -- reports -----------------------------------------------------------------------------
    def _queue_report(self, db: sqlite3.Connection, results: list[Result]) -> None:
        if not results:
            return
        seed = self.settings.seed
        (last,) = db.execute("SELECT value FROM meta WHERE name = 'reports'").fetchone()
        number = int(last) + 1
        entries: list[Result] = []
        for result in results:
            entries.append(result)
            subject = f"{result.key}:{result.kind.value}"
            if _hit(seed, subject, "duplicate", self.settings.duplicate_per_mille):
                entries.append(result)
        if self.settings.reorder:
            order = sorted(
                range(len(entries)), key=lambda i: _number(seed, f"{number}:{i}", "reorder")
            )
            entries = [entries[i] for i in order]
        document = {
            "format": REPORT_FORMAT,
            "provider": self.name,
            "channel": self.channel.value,
            "report": number,
            "results": [_entry(result) for result in entries],
        }
        body = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        db.execute("UPDATE meta SET value = ? WHERE name = 'reports'", (str(number),))
        db.execute("INSERT INTO reports VALUES (?, ?)", (number, body.encode()))

    def reports(self) -> list[bytes]:
        """Drain the queued report documents (one per submit or status call that made results
        final). With ``reorder`` the documents come back in a seeded shuffled order too."""
        with self._transaction() as db:
            rows = db.execute("SELECT number, body FROM reports ORDER BY number").fetchall()
            db.execute("DELETE FROM reports")
        if self.settings.reorder:
            seed = self.settings.seed
            rows.sort(key=lambda row: _number(seed, str(row[0]), "reorder-reports"))
        return [bytes(body) for _, body in rows]

    def parse_report(self, data: bytes) -> list[Result]:
        """The results in a sandbox report document (see ``docs/plugins.md``).

        Raises:
            ProviderError: ``provider_code="MALFORMED_REPORT"``: not a report of this sandbox.
        """

        def bad(message: str) -> ProviderError:
            return ProviderError(
                self.name, f"malformed report: {message}", provider_code="MALFORMED_REPORT"
            )

        if not isinstance(data, bytes | bytearray | memoryview):
            raise bad(f"expected bytes, got {type(data).__name__}")
        try:
            document = json.loads(bytes(data).decode("utf-8"))
        except UnicodeDecodeError:
            raise bad("not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise bad(f"not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        except RecursionError:  # json's decoder recurses once per level of nesting
            raise bad("JSON nested beyond reason") from None
        if not isinstance(document, dict):
            raise bad("the document is not a JSON object")
        if document.get("format") != REPORT_FORMAT:
            raise bad(f"format is not {REPORT_FORMAT!r}")
        if document.get("provider") != self.name:
            raise bad(f"the report is not addressed to provider {self.name}")
        entries = document.get("results")
        if not isinstance(entries, list):
            raise bad("results is not a list")
        return [_parse_entry(index, entry, bad) for index, entry in enumerate(entries)]

    # -- test hooks --------------------------------------------------------------------------
    def _query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            if self._db is None:
                raise ProviderError(self.name, "the sandbox is closed", provider_code="CLOSED")
            return self._db.execute(sql, parameters).fetchall()

    def applied(self, key: str) -> int:
        """How many times money moved for ``key``: 0 or 1 for a correct caller (and always at
        most 1 here, since the sandbox is idempotent; 0 for a refused payment)."""
        return int(self._query("SELECT count(*) FROM movements WHERE key = ?", (key,))[0][0])

    def applied_total(self) -> int:
        """Minor units moved, over every key."""
        return int(self._query("SELECT coalesce(sum(amount), 0) FROM movements")[0][0])

    def movements(self) -> list[tuple[str, int]]:
        """``(key, amount in minor units)`` of every movement, in order."""
        rows = self._query("SELECT key, amount FROM movements ORDER BY seq")
        return [(str(key), int(amount)) for key, amount in rows]

    def status_polls(self, key: str) -> int:
        """How many status queries ``key`` has had (0 when unknown)."""
        rows = self._query("SELECT polls FROM payments WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close the books (idempotent). A ``state`` file keeps them for the next instance."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


_Bad = Callable[[str], ProviderError]


def _entry(result: Result) -> dict[str, Any]:
    amount = result.amount
    return {
        "key": result.key,
        "status": result.kind.value,
        "reason": None if result.reason is None else result.reason.value,
        "reference": result.provider_reference,
        "code": result.provider_code,
        "message": result.provider_message,
        "amount": None if amount is None else amount.minor,
        "currency": None if amount is None else amount.currency,
    }


def _optional_text(entry: Mapping[str, Any], field: str, where: str, bad: _Bad) -> str | None:
    value = entry.get(field)
    if value is not None and not isinstance(value, str):
        raise bad(f"{where}: {field} is not a string")
    return value


def _parse_entry(index: int, entry: object, bad: _Bad) -> Result:
    where = f"results[{index}]"
    if not isinstance(entry, dict):
        raise bad(f"{where} is not an object")
    key = entry.get("key")
    if not isinstance(key, str) or not key:
        raise bad(f"{where}: key is missing or not a string")
    status = entry.get("status")
    try:
        kind = ResultKind(str(status))
    except ValueError:
        raise bad(f"{where}: status {status!r} is not a result") from None
    if kind not in _FINAL_IN_REPORTS:
        raise bad(f"{where}: status {kind.value!r} does not belong in a report")
    reason: Reason | None = None
    if entry.get("reason") is not None:
        try:
            reason = Reason(entry["reason"])
        except ValueError:
            raise bad(f"{where}: reason {entry['reason']!r} is not a reason") from None
    if reason is None and kind in (ResultKind.FAILED, ResultKind.RETURNED):
        raise bad(f"{where}: a {kind.value} result needs a reason")
    minor, currency = entry.get("amount"), entry.get("currency")
    amount: Money | None = None
    if minor is not None or currency is not None:
        if type(minor) is not int or not isinstance(currency, str) or currency not in MINOR_UNITS:
            raise bad(f"{where}: amount must be whole minor units with a known currency")
        amount = Money(minor, currency)
    return Result(
        key=key,
        kind=kind,
        reason=reason,
        provider_reference=_optional_text(entry, "reference", where, bad),
        provider_code=_optional_text(entry, "code", where, bad),
        provider_message=_optional_text(entry, "message", where, bad),
        amount=amount,
    )


# -- the factories (entry points) ----------------------------------------------------------------
def ewallet(name: str, settings: Mapping[str, Any]) -> SandboxProvider:
    """Entry point ``sandbox-ewallet``: an e-wallet / mobile-money operator."""
    return SandboxProvider(name, Channel.EWALLET, settings)


def bank(name: str, settings: Mapping[str, Any]) -> SandboxProvider:
    """Entry point ``sandbox-bank``: a bank paying into accounts."""
    return SandboxProvider(name, Channel.BANK, settings)


def postal(name: str, settings: Mapping[str, Any]) -> SandboxProvider:
    """Entry point ``sandbox-postal``: the post office paying cash at pay points or at home."""
    return SandboxProvider(name, Channel.POSTAL, settings)
