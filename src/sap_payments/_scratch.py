"""The private temporary folders of parallel imports and preparations (50–100 MB of scratch
SQLite files), named after the process that owns them: ``sap-payments-<pid>-XXXXXXXX``.

A run removes its folder when it ends; one that is killed (SIGKILL, the out-of-memory killer, a
power cut) cannot, so the next run removes the folders whose owner is dead.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Final

__all__ = ["PREFIX", "remove_orphaned_scratch", "scratch_directory"]

log = logging.getLogger(__name__)

PREFIX: Final = "sap-payments-"
_NAME: Final = re.compile(re.escape(PREFIX) + r"(\d+)-\w+")


def scratch_directory() -> tempfile.TemporaryDirectory[str]:
    """A new private folder (mode 0700) in the temporary directory, named after this process."""
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphaned_scratch(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove this user's scratch folders in ``root`` (default: the temporary directory) whose
    owning process is dead; return them. POSIX only: elsewhere whether a process lives cannot
    be asked without harming it, and nothing is removed."""
    if os.name != "posix":
        return []
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root or tempfile.gettempdir()))
    except OSError:
        return []
    for entry in entries:
        found = _NAME.fullmatch(entry.name)
        try:
            if (
                found is None
                or not entry.is_dir(follow_symlinks=False)
                or entry.stat(follow_symlinks=False).st_uid != os.getuid()
                or _alive(int(found[1]))
            ):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        log.warning("removed %s, the scratch folder of a run that was killed", entry.path)
        removed.append(Path(entry.path))
    return removed
