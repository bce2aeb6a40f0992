"""Files written atomically: a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_file", "write_atomically"]


@contextlib.contextmanager
def atomic_file(target: Path, mode: str) -> Iterator[IO[Any]]:
    """Write ``target`` through a temporary file in the same directory, then rename it in place.

    A reader sees either the old file or the whole new one, never a partial file; on error the
    temporary file is removed and ``target`` is left as it was. As with ``tempfile.mkstemp``, the
    file is readable by its owner only (0600): files in the roster format usually hold personal
    data.

    Raises:
        FileNotFoundError: the folder does not exist (the message names it).
    """
    directory = target.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except (FileNotFoundError, NotADirectoryError) as exc:
        # the temporary file's name would mean nothing to the reader: name the folder
        if directory.is_dir():
            raise
        raise type(exc)(exc.errno, f"the folder {directory} does not exist") from None
    try:
        if mode == "w":
            fh: IO[Any] = os.fdopen(fd, "w", encoding="utf-8", newline="")
        else:
            fh = os.fdopen(fd, "wb")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    # Make the rename itself durable (POSIX; directories cannot be opened on Windows).
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically and durably."""
    with atomic_file(target, "wb") as handle:
        handle.write(data)
