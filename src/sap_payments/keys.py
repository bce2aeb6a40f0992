"""Key management on a ledger: ``keys new``, ``keys status`` and ``keys rotate``.

Rotation seals every personal value again under a new data key, a batch of rows per
transaction, while the ledger stays in use: each sealed value names the key it was sealed under
and the keyring keeps the old keys until no value needs them. The new key is written to the
keyring file *before* anything is sealed under it, so an interrupted rotation loses nothing and
is resumed by running it again. The index key (blind indexes, the audit trail's address
fingerprints) is never rotated: that would change every fingerprint already signed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

from sap_payments.crypto import Keyring, KeyringError
from sap_payments.sqlite_store import SQLiteStore

__all__ = ["Rotation", "new_keyring", "rotate_keys"]


@attrs.frozen
class Rotation:
    """What a rotation did."""

    active: str
    resumed: bool
    rows: int
    retired: tuple[str, ...]
    status: dict[str, dict[str, int]]


def new_keyring(path: str | Path) -> Keyring:
    """Create a keyring file (mode 0600) with one data key and an index key.

    Raises:
        KeyringError: the file exists already (a keyring is never overwritten).
    """
    path = Path(path)
    if path.exists():
        raise KeyringError(f"{path} exists: a keyring is never overwritten")
    return Keyring.generate().save(path)


def rotate_keys(
    store: SQLiteStore,
    *,
    batch: int = 5000,
    retire: bool = True,
    after_batch: Callable[[int], None] | None = None,
) -> Rotation:
    """Seal everything under a new key (or finish an interrupted rotation).

    A rotation is resumed, not restarted, when values are still sealed under an older key of the
    keyring than its active one. Once every value is under the active key, the other keys are
    dropped from the keyring file (``retire=False`` keeps them: backups taken before the
    rotation need them).

    Raises:
        KeyringError: the keyring was not read from a file (it could not be updated), or the
            ledger is in the plaintext mode.
    """
    keyring = store.keyring
    path = keyring.path
    if path is None:
        raise KeyringError("rotation writes the keyring: give it as a file, not inline")
    if keyring.plaintext:
        raise KeyringError("the plaintext mode has no keys to rotate")
    older = {k for k in keyring.keys if k != keyring.active}
    unfinished = older | {"plaintext"}
    resumed = any(unfinished & set(counts) for counts in store.key_status().values())
    if not resumed:
        keyring = keyring.with_new_key().save(path)
        store.set_keyring(keyring)
    rows = store.reencrypt(batch=batch, after_batch=after_batch)
    status = store.key_status()
    retired: tuple[str, ...] = ()
    if retire:
        used = {k for counts in status.values() for k in counts}
        retired = tuple(sorted(k for k in keyring.keys if k != keyring.active and k not in used))
        if retired:
            keyring = keyring.without_keys(set(retired)).save(path)
            store.set_keyring(keyring)
    return Rotation(keyring.active, resumed, rows, retired, status)
