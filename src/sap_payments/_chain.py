"""The primitives of the audit trail that the store and the auditor share.

Every row of the ``events`` table carries ``hash = SHA-256(previous hash || encoding of the
row)``, the first row chaining from 32 zero bytes. The encoding is the row as a compact JSON
array, in this order::

    [seq, at, kind, instruction_id, from_state, to_state, actor, detail, content]

(``json.dumps(row, ensure_ascii=False, separators=(",", ":"))`` in UTF-8), so anyone can
recompute the chain without sap_payments. ``content`` is set on the events that create or
revise an instruction: what the instruction pays, to whom and where (see
:func:`instruction_content`), which lets ``audit verify`` cross-check the instructions table
against the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Final

from sap_payments.store import InstructionRecord

__all__ = [
    "ADDRESS_DOMAIN",
    "EVENT_COLUMNS",
    "GENESIS",
    "address_fingerprinter",
    "encode",
    "event_hash",
    "instruction_content",
]

#: The hash the first event chains from.
GENESIS: Final = bytes(32)
#: The columns of an event, in the order the hash covers them.
EVENT_COLUMNS: Final = (
    "seq",
    "at",
    "kind",
    "instruction_id",
    "from_state",
    "to_state",
    "actor",
    "detail",
    "content",
)
#: Domain separation of the unkeyed address fingerprint (used only when the store has no
#: keyed blind index).
ADDRESS_DOMAIN: Final = "sap-payments/address-fingerprint/v1\x1f"


def _make_encode() -> Callable[[object], str]:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, minus the Python-level
    wrapper around the C encoder: hashing a million events a prepare, that wrapper measured
    about half the cost of the chain."""
    slow = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C encoder
        return slow.encode
    sort_keys = skip_keys = False
    allow_nan = True
    fast = make(
        None,
        slow.default,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        sort_keys,
        skip_keys,
        allow_nan,
    )
    join = "".join

    def encode(value: object) -> str:
        return join(fast(value, 0))

    return encode


#: The canonical JSON of an event row or an instruction's content (see the module's docstring).
encode: Final[Callable[[object], str]] = _make_encode()
_sha256 = hashlib.sha256


def event_hash(previous: bytes, row: Sequence[object]) -> bytes:
    """The chain hash of one event row (the :data:`EVENT_COLUMNS`, in order)."""
    return _sha256(previous + encode(row).encode()).digest()


def _unkeyed(address: str) -> str:
    return _sha256((ADDRESS_DOMAIN + address).encode()).hexdigest()


def address_fingerprint(store: object, address: str) -> str:
    """A fingerprint of a payee address: never the address itself (see
    :func:`address_fingerprinter`)."""
    return address_fingerprinter(store)(address)


def address_fingerprinter(store: object) -> Callable[[str], str]:
    """The function that fingerprints addresses for ``store``.

    The store's keyed blind index (an HMAC under a key of the ledger's keyring) when it has
    one, so that a fingerprint cannot be reversed by trying every phone number; otherwise an
    unkeyed SHA-256 of a domain-separated string (weaker: a phone number can be guessed from
    it by brute force; it still never puts the address itself in the trail).
    """
    blind = getattr(store, "blind_index", None)
    if blind is None:
        return _unkeyed

    def keyed(address: str) -> str:
        value = blind("address", address)
        return value.hex() if isinstance(value, bytes | bytearray) else str(value)

    return keyed


def instruction_content(record: InstructionRecord, fingerprint: Callable[[str], str]) -> str:
    """What the chain records of an instruction when it is created or revised:
    ``[amount, currency, beneficiary_id, provider, address fingerprint]`` as JSON."""
    return encode(
        [
            record.amount,
            record.currency,
            record.beneficiary_id,
            record.provider,
            fingerprint(record.address),
        ]
    )
