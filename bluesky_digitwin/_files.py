"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file the package writes goes through :func:`atomic_path` (or, for a directory of files
such as a saved twin, a staging directory renamed into place): the data go to a temporary file
beside the target, are flushed to disk, and replace the target by one rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "fsync_dir"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    staging = Path(tmp)
    try:
        yield staging
        with open(staging, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(staging, target)
        fsync_dir(target.parent)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename in it) to disk, where the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
