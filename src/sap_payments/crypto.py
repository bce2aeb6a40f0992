"""Personal data at rest: the keyring, AES-256-GCM sealing and keyed blind indexes.

Every personal detail the ledger keeps (names, national ids, birth dates, phone and account
numbers, the proxy's name and id) is stored sealed: AES-256-GCM under a key from the keyring,
with the associated data naming the table, the column and the record
(``b"beneficiaries|details|<beneficiary_id>"``), so a ciphertext copied into another row fails
to open. A sealed value is a BLOB::

    version (1 byte: 1) | key id length (1 byte) | key id (ASCII) | nonce (12 bytes)
    | ciphertext and tag

Version 0 marks an erased value: the bytes after it are the placeholder text shown instead
(``[erased]``), never personal data. A ``str`` found where a BLOB is expected is a value written
before encryption (or by a ledger in the insecure ``plaintext`` mode) and is read as it is.

Lookups and duplicate checks never see plaintext either: they compare a keyed blind index,
HMAC-SHA256 under the keyring's index key, truncated to 16 bytes (32 hex digits).

The keyring is a JSON file (or the value of ``SAP_PAYMENTS_KEYRING``: a path, or the JSON itself,
or that JSON in base64), never the database::

    {"active": "k2", "keys": {"k1": "<base64 of 32 bytes>", "k2": "..."}, "index_key": "<base64>"}

See ``docs/security.md`` for where to keep it, how to rotate and how to erase.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sap_payments.errors import StateError, StoreError

__all__ = [
    "ERASED",
    "KEYRING_ENV",
    "Cipher",
    "DecryptionError",
    "ErasureRefused",
    "Keyring",
    "KeyringError",
    "KeyringMismatch",
    "KeyringNotFound",
    "default_keyring_path",
]

log = logging.getLogger(__name__)

#: The environment variable naming the keyring: a path, or the keyring's JSON (plain or base64).
KEYRING_ENV: Final = "SAP_PAYMENTS_KEYRING"
#: What an erased personal detail reads as.
ERASED: Final = "[erased]"

_VERSION: Final = 1
_ERASED_VERSION: Final = 0
_NONCE: Final = 12
_INDEX_BYTES: Final = 16


class KeyringError(StoreError):
    """The keyring cannot be used: missing, unreadable, or not the one the ledger was sealed
    with. The message names files and key ids, never key material."""


class KeyringNotFound(KeyringError):
    """An encrypted ledger was opened without its keyring."""

    def __init__(self, ledger: str, looked: str) -> None:
        super().__init__(
            f"the ledger {ledger} is encrypted and its keyring was not found ({looked}); "
            f"set keyring = PATH in the configuration or {KEYRING_ENV}"
        )
        self.ledger = ledger


class KeyringMismatch(KeyringError):
    """The keyring given is not the one the ledger's data was sealed with."""


class DecryptionError(KeyringError):
    """A sealed value failed to open: wrong key, tampered bytes, or copied from another row.

    Carries the table, column and record id (a beneficiary or instruction id), not the value.
    """

    def __init__(self, table: str, column: str, record: str, why: str) -> None:
        super().__init__(f"{table}.{column} of {record} cannot be decrypted: {why}")
        self.table = table
        self.column = column
        self.record = record


class ErasureRefused(StateError):
    """Personal data cannot be erased yet: the retention period has not passed, or the
    beneficiary still has open instructions."""

    def __init__(self, beneficiary_id: str | None, message: str) -> None:
        super().__init__(message if beneficiary_id is None else f"{beneficiary_id}: {message}")
        self.beneficiary_id = beneficiary_id


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyringError(f"keyring: {what} must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise KeyringError(f"keyring: {what} is not valid base64") from None
    if len(raw) != 32:
        raise KeyringError(f"keyring: {what} must be 32 bytes (AES-256), found {len(raw)}")
    return raw


def _check_key_id(key_id: str) -> str:
    if not (key_id and key_id.isascii() and key_id.isprintable() and len(key_id) <= 64):
        raise KeyringError(f"keyring: bad key id {key_id!r} (1-64 printable ASCII characters)")
    return key_id


@attrs.frozen(repr=False)
class Keyring:
    """Data keys by id (one of them active: new values are sealed under it) and the index key.

    ``plaintext`` is the insecure mode for benchmarks only: nothing is sealed, blind indexes use
    a fixed public key. Never use it for real data.
    """

    active: str
    keys: Mapping[str, bytes]
    index_key: bytes
    path: Path | None = None
    plaintext: bool = False

    def __repr__(self) -> str:  # never show key material, even in a traceback
        mode = "plaintext" if self.plaintext else f"active={self.active!r}"
        return f"Keyring({mode}, keys={sorted(self.keys)}, path={self.path})"

    @classmethod
    def generate(cls, key_id: str = "k1") -> Keyring:
        """A new keyring with one fresh data key and a fresh index key."""
        _check_key_id(key_id)
        return cls(key_id, {key_id: secrets.token_bytes(32)}, secrets.token_bytes(32))

    @classmethod
    def insecure_plaintext(cls) -> Keyring:
        """The benchmark-only mode: personal data stored in clear. Insecure."""
        return cls("plaintext", {}, b"\x00" * 32, plaintext=True)

    @classmethod
    def loads(cls, text: str, *, path: Path | None = None) -> Keyring:
        try:
            data = json.loads(text)
        except ValueError:
            raise KeyringError(f"keyring {path or '(inline)'} is not valid JSON") from None
        if not isinstance(data, dict):
            raise KeyringError("keyring: must be a JSON object")
        if data.get("mode") == "plaintext":
            return attrs.evolve(cls.insecure_plaintext(), path=path)
        raw_keys = data.get("keys")
        if not isinstance(raw_keys, dict) or not raw_keys:
            raise KeyringError('keyring: needs "keys": {"<id>": "<base64 of 32 bytes>", ...}')
        keys = {_check_key_id(k): _unb64(v, f"key {k!r}") for k, v in raw_keys.items()}
        active = data.get("active")
        if not isinstance(active, str) or active not in keys:
            raise KeyringError('keyring: "active" must name one of its keys')
        return cls(active, keys, _unb64(data.get("index_key"), "index_key"), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyringError(f"cannot read the keyring {path}: {exc.strerror}") from None
        return cls.loads(text, path=path)

    @classmethod
    def from_env(cls) -> Keyring | None:
        """The keyring ``SAP_PAYMENTS_KEYRING`` names (a path, JSON, or base64 JSON), if set."""
        value = os.environ.get(KEYRING_ENV, "").strip()
        if not value:
            return None
        if value.startswith("{"):
            return cls.loads(value)
        if Path(value).is_file():
            return cls.load(value)
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise KeyringError(
                f"{KEYRING_ENV} is neither a keyring file nor a keyring's JSON"
            ) from None
        return cls.loads(decoded)

    def dumps(self) -> str:
        if self.plaintext:
            return json.dumps({"mode": "plaintext"}) + "\n"
        return (
            json.dumps(
                {
                    "active": self.active,
                    "keys": {k: _b64(v) for k, v in self.keys.items()},
                    "index_key": _b64(self.index_key),
                },
                indent=2,
            )
            + "\n"
        )

    def save(self, path: str | os.PathLike[str]) -> Keyring:
        """Write the keyring atomically, readable by its owner only (mode 0600)."""
        path = Path(path)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.dumps())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(name, path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return attrs.evolve(self, path=path)

    def with_new_key(self) -> Keyring:
        """This keyring plus a fresh data key, made active (the old ones stay for reading)."""
        if self.plaintext:
            raise KeyringError("the plaintext mode has no keys to rotate")
        # never an id used before: the highest kN so far (the active key is never retired) + 1
        numbers = [int(k[1:]) for k in self.keys if k[:1] == "k" and k[1:].isdigit()]
        number = max(numbers, default=len(self.keys)) + 1
        while f"k{number}" in self.keys:
            number += 1
        key_id = f"k{number}"
        return attrs.evolve(
            self, active=key_id, keys={**self.keys, key_id: secrets.token_bytes(32)}
        )

    def without_keys(self, key_ids: set[str]) -> Keyring:
        """This keyring less retired keys (never the active one)."""
        return attrs.evolve(
            self, keys={k: v for k, v in self.keys.items() if k not in key_ids or k == self.active}
        )


def default_keyring_path(ledger: str | os.PathLike[str]) -> Path:
    """Where a keyring generated for a ledger is written: ``<ledger>.keyring``."""
    ledger = Path(ledger)
    return ledger.with_name(ledger.name + ".keyring")


class Cipher:
    """Seals and opens values under a keyring; computes blind indexes.

    Args:
        keyring: the keys. Its active key seals; any of its keys opens.
    """

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.plaintext = keyring.plaintext
        self._aead = {k: AESGCM(v) for k, v in keyring.keys.items()}
        self._index_key = keyring.index_key
        # HMAC-SHA256 (RFC 2104) with its two keyed states computed once: a copy of each per
        # value is half the cost of hmac.digest, which sets both up again every time
        pad = keyring.index_key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in pad))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in pad))
        active = keyring.active.encode("ascii")
        #: every value sealed under the active key starts with these bytes
        self.active_prefix = bytes([_VERSION, len(active)]) + active
        self._seal = None if self.plaintext else self._aead[keyring.active].encrypt
        self._pool = b""
        self._pool_at = 0
        self._pool_pid = 0
        self._purposes: dict[str, Any] = {}
        self._digest = hashlib.blake2b(
            key=keyring.index_key, digest_size=_INDEX_BYTES, person=b"sap-details"
        )

    def seal(self, aad: bytes, text: str) -> bytes | str:
        """``text`` sealed under the active key, bound to ``aad`` (table|column|record)."""
        if self._seal is None:
            return text
        nonce = self._nonce()
        return self.active_prefix + nonce + self._seal(nonce, text.encode(), aad)

    def _nonce(self) -> bytes:
        """12 random bytes, drawn from the OS 4,096 nonces at a time (one system call a row
        measured as much as the encryption). The pool is refilled in a forked child, so two
        processes never share one."""
        if self._pool_at >= len(self._pool) or self._pool_pid != os.getpid():
            self._pool = os.urandom(_NONCE * 4096)
            self._pool_at = 0
            self._pool_pid = os.getpid()
        start = self._pool_at
        self._pool_at = start + _NONCE
        return self._pool[start : start + _NONCE]

    def open(self, aad: bytes, value: bytes | str, where: tuple[str, str, str]) -> str:
        """The text of a sealed value (an erased one: its placeholder; a ``str``: itself).

        Raises:
            DecryptionError: an unknown key id, tampered bytes, or another record's value.
        """
        if isinstance(value, str):
            return value
        if not value:
            raise DecryptionError(*where, "empty value")
        version = value[0]
        if version == _ERASED_VERSION:
            return value[1:].decode()
        if version != _VERSION:
            raise DecryptionError(*where, f"unknown format version {version}")
        size = value[1]
        key_id = value[2 : 2 + size].decode("ascii", "replace")
        aead = self._aead.get(key_id)
        if aead is None:
            raise DecryptionError(*where, f"key {key_id!r} is not in the keyring")
        start = 2 + size
        try:
            return aead.decrypt(
                value[start : start + _NONCE], value[start + _NONCE :], aad
            ).decode()
        except InvalidTag:
            raise DecryptionError(
                *where, "authentication failed (tampered, or not this record's value)"
            ) from None

    @staticmethod
    def erased(placeholder: str) -> bytes:
        """The stored form of an erased value showing ``placeholder``."""
        return bytes([_ERASED_VERSION]) + placeholder.encode()

    @staticmethod
    def key_id(value: bytes | str | None) -> str:
        """The key id a stored value was sealed under: ``plaintext``, ``erased`` or an id."""
        if value is None:
            return "none"
        if isinstance(value, str):
            return "plaintext"
        if not value or value[0] == _ERASED_VERSION:
            return "erased"
        return value[2 : 2 + value[1]].decode("ascii", "replace")

    def blind_index(self, purpose: str, value: str) -> str:
        """A keyed fingerprint of ``value`` for lookups: equal values, equal indexes; without the
        index key, nothing can be learnt from it. 32 hex digits."""
        return self.index_bytes(purpose, value).hex()

    def index_bytes(self, purpose: str, value: str) -> bytes:
        """:meth:`blind_index` as the 16 bytes the ledger's index columns hold."""
        keyed = self._purposes.get(purpose)
        if keyed is None:  # the inner state with the purpose in it, computed once a purpose
            keyed = self._purposes[purpose] = self._inner.copy()
            keyed.update(purpose.encode() + b"\x00")
        inner = keyed.copy()
        inner.update(value.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_INDEX_BYTES]

    def digest(self, text: str) -> bytes:
        """A keyed digest of a record's details (BLAKE2b under the index key, 16 bytes): the
        ledger compares it to tell a changed record from an unchanged one."""
        digest = self._digest.copy()  # the keyed state is set up once
        digest.update(text.encode())
        return digest.digest()

    def index_check(self) -> str:
        """A fingerprint of the index key, kept in the ledger to refuse a wrong keyring."""
        return self.blind_index("keyring-check", "sap-payments")

    def key_check(self, key_id: str) -> str:
        """A fingerprint of one data key (HMAC of a fixed text), kept in the ledger."""
        key = self.keyring.keys[key_id]
        return hmac.new(key, b"sap-payments key check", hashlib.sha256).hexdigest()[:32]
