"""The errors sap_payments raises.

Every error derives from :class:`SapPaymentsError`, so ``except SapPaymentsError`` catches all of
them; each subclass names one kind of failure and carries its context as attributes. Where the
meaning matches a builtin, the error subclasses it too (``InvalidRoster`` is a ``ValueError``)::

    SapPaymentsError
    ├── InvalidInput (ValueError)              bad data from outside: fix the input and retry
    │   ├── CurrencyMismatch                   two Money values of different currencies combined
    │   ├── InvalidPeriod                      not a YYYY-MM benefit month
    │   ├── InvalidRuleSet                     a rule-set file that cannot be used
    │   ├── UnknownCategory (LookupError)      a category code the rule set does not define
    │   ├── InvalidRoster                      a roster file with bad rows (``.problems``: all)
    │   │   └── InvalidEnrolmentResults (enrolment)  a provider's enrolment results file
    │   ├── ConfigError                        a configuration file that cannot be used
    │   ├── ForeignLedger                      a report, answer or file made for another ledger
    │   ├── FuturePeriod (cycles)              a month beyond next month, not asked for on purpose
    │   ├── InvalidReport (dispatch)           a report naming unknown instructions or amounts
    │   ├── InvalidBatch (iso20022.pain001)    a batch a pain.001 cannot carry
    │   │   └── UnknownBank (LookupError)      a BIN not in the NAPAS table
    │   ├── BankFileError (iso20022.reading)   a bank file that cannot be read, with line, path
    │   │   ├── MalformedFile                  not well-formed, or not the message's structure
    │   │   └── UnknownMessage                 not a pain.002 or camt.054
    │   ├── InvalidVietQR (vietqr)             a VietQR payload: crc, format, currency, bin…
    │   ├── InvalidCollectionCode              a mistyped or malformed postal collection code
    │   ├── InvalidConfirmations (postal)      a post-office confirmation file that cannot be read
    │   ├── KeyFileError (signing)             a signing key file that cannot be read
    │   ├── InvalidCheckpoint (audit)          an audit checkpoint file that cannot be read
    │   └── NoPublicLines (public_list)        a public list of a commune with no payment
    ├── ProviderError (providers)              a provider refused or failed a request
    │   ├── ProviderTimeout                    no answer: the outcome is unknown
    │   ├── PaymentsRefused                    some payments refused before anything was sent
    │   └── ProviderUnavailable                not reached: nothing was sent
    ├── PluginError (plugins)                  a provider plugin cannot be found or loaded
    │   ├── UnknownPlugin (LookupError)
    │   ├── DuplicatePlugin
    │   └── PluginLoadError                    names the distribution that failed
    ├── StateError                             the request does not fit the current state
    │   ├── InvalidTransition                  an instruction move the transition table forbids
    │   ├── CycleNotFound (LookupError)        no such cycle
    │   ├── NoCycles (coverage)                a trend asked of a programme with no cycle
    │   ├── CampaignError (enrolment)          a campaign action that does not fit
    │   │   └── CampaignNotFound (LookupError)
    │   ├── InstructionNotFound (LookupError)  no such instruction
    │   ├── ReviewNotFound (reviews, LookupError)  no such review item
    │   ├── ReviewRefused (reviews)            a review decision that does not fit
    │   ├── ApprovalRefused (signing)          maker = checker, or a missing or wrong key
    │   │   └── CycleChanged                   the cycle is not the one reviewed (--expect-digest)
    │   ├── ApprovalMismatch (signing)         instructions to send differ from the approval
    │   ├── AuditFailed (audit)                the audit trail does not verify
    │   ├── ErasureRefused (crypto)            erasing within the retention period, or with an
    │   │                                      instruction not settled
    │   ├── ConcurrentUpdate                   an instruction's state changed under a move
    │   │                                      (compare-and-set failed; nothing was applied)
    │   └── CycleStateError                    e.g. re-preparing an approved cycle
    │       ├── CycleBusy (leases)             another run holds the cycle's lease
    │       └── WindowStillOpen (postal)       closing a payment window before its last day
    ├── SignatureError (signing)               an approval's signature is missing or invalid
    └── StoreError                             the ledger database cannot be used
        ├── SchemaVersionError                 a database written by a newer sap_payments
        ├── NotALedger                         ``--db`` names a file that is no ledger
        ├── LedgerDamaged                      a truncated or corrupted ledger file
        ├── LedgerBusy                         another process held the ledger too long
        ├── LedgerFull                         the disk is full; the change was rolled back
        └── KeyringError (crypto)              a keyring missing, unreadable or not the ledger's
            ├── KeyringNotFound                an encrypted ledger opened without its keyring
            ├── KeyringMismatch                another ledger's keyring, or a changed key
            └── DecryptionError                a sealed value that fails to open (tampered,
                                               copied from another row, unknown key)

The errors of a part (in brackets) are defined in its module, next to the code that raises them.
Messages are written for the clerk who has to act on them; they never contain personal data
(names, national ids, phone or account numbers), only ids, line numbers and column names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import attrs

__all__ = [
    "ConcurrentUpdate",
    "ConfigError",
    "CurrencyMismatch",
    "CycleNotFound",
    "CycleStateError",
    "ForeignLedger",
    "InstructionNotFound",
    "InvalidInput",
    "InvalidPeriod",
    "InvalidRoster",
    "InvalidRuleSet",
    "InvalidTransition",
    "LedgerBusy",
    "LedgerDamaged",
    "LedgerFull",
    "NotALedger",
    "RowProblem",
    "SapPaymentsError",
    "SchemaVersionError",
    "StateError",
    "StoreError",
    "UnknownCategory",
]


class SapPaymentsError(Exception):
    """Base class of every error raised by sap_payments."""


class InvalidInput(SapPaymentsError, ValueError):
    """Data given to sap_payments is not valid; nothing was changed."""


class CurrencyMismatch(InvalidInput):
    """Two amounts of different currencies were combined."""

    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"cannot combine amounts in {left} and {right}")
        self.left = left
        self.right = right


class InvalidPeriod(InvalidInput):
    """A benefit month that is not of the form ``YYYY-MM``."""

    def __init__(self, text: object) -> None:
        super().__init__(f"not a benefit month (expected YYYY-MM): {text!r}")
        self.text = text


class InvalidRuleSet(InvalidInput):
    """A rule set (standard levels and coefficients) that cannot be used."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class UnknownCategory(InvalidInput, LookupError):
    """A beneficiary category code that the rule set does not define.

    It is a ``LookupError`` too, like a missing dictionary key: the code was looked up and not
    found. ``code`` is the code as given.
    """

    def __init__(self, code: str) -> None:
        super().__init__(f"unknown category {code!r} (not in the rule set)")
        self.code = code


class ConfigError(InvalidInput):
    """A configuration file (``sap-payments.toml``) that cannot be used."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.key = key


class ForeignLedger(InvalidInput):
    """A report, answer or file that was made for another ledger (ours: ``ours``, the one it
    names: ``theirs``, both ledger ids); nothing from it was applied.

    Every id and file that leaves a ledger carries the ledger's id (see
    :attr:`sap_payments.store.Store.ledger_id`), so an answer to another ledger's file — a
    copy of the ledger, a test ledger built from the same roster — is recognised here rather
    than applied to instructions it never concerned. ``source`` names the file when known.
    """

    def __init__(
        self, theirs: str, ours: str, *, source: str | None = None, what: str = "file"
    ) -> None:
        where = f"{source}: " if source else ""
        super().__init__(
            f"{where}this {what} was made for ledger {theirs}, not this ledger ({ours}): "
            "nothing was applied"
        )
        self.theirs = theirs
        self.ours = ours
        self.source = source
        self.what = what


@attrs.frozen
class RowProblem:
    """One problem found in one row of an input file.

    ``line`` is the 1-based line (CSV) or row (XLSX) number as the clerk sees it in an editor or
    spreadsheet, header included; ``column`` is the column name from the header.
    """

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


class InvalidRoster(InvalidInput):
    """A roster file with invalid rows. Nothing from the file was applied.

    ``problems`` lists the problems found, in file order: all of them, up to a cap the importer
    sets so that a file of a million bad rows cannot exhaust memory; ``total`` counts them all.
    """

    #: How many problems the message itself lists.
    SHOWN = 20

    def __init__(
        self, source: str, problems: Sequence[RowProblem], *, total: int | None = None
    ) -> None:
        self.source = source
        self.problems: tuple[RowProblem, ...] = tuple(problems)
        count = self.total = max(total or 0, len(self.problems))
        shown = "\n".join(f"  {p}" for p in self.problems[: self.SHOWN])
        more = count - min(len(self.problems), self.SHOWN)
        tail = f"\n  … and {more} more" if more > 0 else ""
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source}: {count} {noun}; nothing was imported\n{shown}{tail}")


class StateError(SapPaymentsError):
    """The request does not fit the current state of the ledger."""


class InvalidTransition(StateError):
    """An instruction move that the transition table does not allow."""

    def __init__(self, instruction_id: str, from_state: str, to_state: str) -> None:
        super().__init__(
            f"instruction {instruction_id}: cannot move from {from_state} to {to_state}"
        )
        self.instruction_id = instruction_id
        self.from_state = from_state
        self.to_state = to_state


class ConcurrentUpdate(StateError):
    """A move's compare-and-set failed: the instruction was no longer in the state the move
    started from, because another command moved it first. The whole transaction was rolled
    back; run the command again (it re-reads the states)."""

    def __init__(self, instruction_ids: Sequence[str], expected: str, to_state: str) -> None:
        shown = ", ".join(instruction_ids[:5]) + (" …" if len(instruction_ids) > 5 else "")
        super().__init__(
            f"{len(instruction_ids)} instruction(s) left {expected} before the move to "
            f"{to_state} ({shown}): another command changed them; nothing was applied, run "
            "the command again"
        )
        self.instruction_ids = tuple(instruction_ids)
        self.expected = expected
        self.to_state = to_state


class CycleNotFound(StateError, LookupError):
    """No cycle for this programme and period."""

    def __init__(self, programme: str, period: str) -> None:
        super().__init__(
            f"no cycle {period} for programme {programme}: run 'cycle prepare --period {period}'"
        )
        self.programme = programme
        self.period = period


class InstructionNotFound(StateError, LookupError):
    """No instruction with this id."""

    def __init__(self, instruction_id: str) -> None:
        super().__init__(f"no instruction {instruction_id}")
        self.instruction_id = instruction_id


class CycleStateError(StateError):
    """The cycle is not in a state that allows this action."""

    def __init__(self, programme: str, period: str, message: str) -> None:
        super().__init__(f"cycle {period} ({programme}): {message}")
        self.programme = programme
        self.period = period


class StoreError(SapPaymentsError):
    """The ledger database cannot be opened or used."""


class SchemaVersionError(StoreError):
    """The database was written by a newer version of sap_payments."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than this sap_payments supports "
            f"({supported}); upgrade sap_payments"
        )
        self.found = found
        self.supported = supported


class _LedgerFileError(StoreError):
    """A ledger file that cannot be used as it is; ``path`` names it.

    Pickles with its path, so that a worker process can raise it to the parent.
    """

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(message)
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path,)


class NotALedger(_LedgerFileError):
    """The file is not a sap_payments ledger (a CSV, another program's database…); it was left
    as it was."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, f"{path} is not a sap-payments ledger")


class LedgerDamaged(_LedgerFileError):
    """The ledger file is truncated or corrupted: only a backup can bring it back."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            path,
            f"the ledger file is damaged: restore it from a backup (docs/operations.md); {path}",
        )


class LedgerBusy(_LedgerFileError):
    """Another process held the ledger's write lock for longer than the store waits (5 s)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            path,
            "another command holds the ledger: wait for it to finish, then run this one again "
            f"({path})",
        )


class LedgerFull(_LedgerFileError):
    """The disk (of the ledger, or of its temporary files) is full; the transaction under way
    was rolled back, so nothing of it was kept."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            path,
            f"the disk is full: nothing was changed; free some space and try again ({path})",
        )
