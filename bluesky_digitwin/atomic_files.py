"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file the package writes goes through :func:`atomic_path` (or, for a directory of files
such as a saved twin, :func:`replace_dir`): the data go to a temporary file beside the target,
are flushed to disk, and replace the target by one rename.

A directory cannot replace another in one rename, so :func:`replace_dir` takes three steps
(the old one is renamed aside, the new one into place, the old one removed) and a process
killed between them leaves the directory under another name. The names say what each one is
(``.NAME.digitwin-new-TOKEN`` is being written, ``.NAME.digitwin-old-TOKEN`` is the old one
set aside by the same swap), so the next :func:`replace_dir` or :func:`recover_dir` of that
target finishes or rolls back the swap and removes what is left. Every writer holds a lock on
the parent directory while it writes and swaps, so what is left under those names while the
lock is free is provably stale.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bluesky_digitwin.errors import DigitwinError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks; recovery still runs
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CannotWriteError",
    "atomic_path",
    "check_can_create",
    "fsync_dir",
    "recover_dir",
    "replace_dir",
]

logger = logging.getLogger(__name__)

_NEW = "digitwin-new-"
_OLD = "digitwin-old-"


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


def check_can_create(path: str | os.PathLike) -> None:
    """Check that ``path`` can be written (made, or replaced by a rename) before work is done.

    The nearest existing directory above ``path`` must be a directory this process can make
    entries in. Tried for real (a directory is made there and removed), as permissions alone
    do not tell: root writes anywhere but in ``/proc``, ``/sys`` or an immutable directory.

    Raises
    ------
    CannotWriteError
        Why not, in a phrase (e.g. ``/data/scans.csv is a file, not a directory``).
    """
    above = Path(os.path.abspath(path)).parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise CannotWriteError(f"{above} is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".digitwin-probe-", dir=above))
    except OSError as exc:
        raise CannotWriteError(f"cannot write in {above} ({exc.strerror or exc})") from None


class CannotWriteError(DigitwinError, OSError):
    """A path cannot be written; the message says why, in a phrase."""


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


@contextlib.contextmanager
def replace_dir(target: str | os.PathLike, complete: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a staging directory to fill; on success it replaces ``target`` (a directory).

    A reader sees the old directory or the whole new one under ``target``. A process killed
    at any point leaves either in place, or a swap that the next :func:`replace_dir` or
    :func:`recover_dir` of ``target`` finishes (see the module's notes). On an exception the
    staging directory is removed and ``target`` is left as it was.

    Parameters
    ----------
    target
        The directory to write; its parent is made if missing.
    complete
        Whether a staging directory was filled completely (e.g. its last-written file is
        there): only a complete one is swapped in by a recovery.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent, blocking=True):
        _recover(target, complete)
        new, old = _prefixes(target)
        staging = Path(tempfile.mkdtemp(prefix=new, dir=target.parent))
        aside = target.parent / (old + staging.name[len(new) :])  # the same swap's token
        try:
            yield staging
            for path in staging.iterdir():
                if path.is_file():
                    _fsync_file(path)
            fsync_dir(staging)
            if target.exists():
                os.replace(target, aside)
                os.replace(staging, target)
                fsync_dir(target.parent)
                # Saved: what cannot be removed now, the next recovery removes.
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(staging, target)
            fsync_dir(target.parent)
        except BaseException:
            if aside.exists() and not target.exists():
                os.replace(aside, target)  # failed between the renames: the old one back
            shutil.rmtree(staging, ignore_errors=True)
            raise


def recover_dir(target: str | os.PathLike, complete: Callable[[Path], bool]) -> None:
    """Finish or roll back an interrupted :func:`replace_dir` of ``target``; remove its debris.

    Does nothing when there is nothing to recover, and waits for no writer: while another
    process is writing ``target``, its staging directory is left alone (unless ``target``
    is missing, when it waits for that writer to finish its swap). A directory that cannot
    be written is left as it is (logged).
    """
    target = Path(target)
    if not _debris(target) and (target.exists() or _legacy_aside(target, complete) is None):
        return
    try:
        with _locked(target.parent, blocking=not target.exists()) as locked:
            if locked:
                _recover(target, complete)
    except OSError as exc:
        logger.warning("cannot finish the interrupted save of %s: %s", target, exc)


def _prefixes(target: Path) -> tuple[str, str]:
    """Name prefixes of ``target``'s staging and set-aside directories (then a token)."""
    return f".{target.name}.{_NEW}", f".{target.name}.{_OLD}"


def _legacy_aside(target: Path, complete: Callable[[Path], bool]) -> Path | None:
    """The old directory that a save of an earlier bluesky-digitwin set aside when killed
    between its two renames (``.NAME.old.XXXXXXXX/twin``, whole), if there is one."""
    try:
        candidates = [
            p / "twin"
            for p in target.parent.glob(f".{glob.escape(target.name)}.old.????????")
            if p.is_dir() and [c.name for c in p.iterdir()] == ["twin"]
        ]
    except OSError:
        return None
    return next((c for c in sorted(candidates) if complete(c)), None)


def _debris(target: Path) -> list[Path]:
    """Staging and set-aside directories of ``target``'s swaps, by name."""
    try:
        return sorted(
            p
            for p in target.parent.iterdir()
            if p.name.startswith(_prefixes(target)) and p.is_dir()
        )
    except OSError:
        return []


def _recover(target: Path, complete: Callable[[Path], bool]) -> None:
    """With the parent's lock held (no writer is running): make ``target`` whole, then remove
    every staging and set-aside directory of it."""
    new, old = _prefixes(target)
    if not target.exists():
        for aside in (p for p in _debris(target) if p.name.startswith(old)):
            staging = target.parent / (new + aside.name[len(old) :])
            # Killed between the renames: the new one was complete before the old was moved.
            finish = staging.is_dir() and complete(staging)
            os.replace(staging if finish else aside, target)
            fsync_dir(target.parent)
            logger.warning(
                "%s: an interrupted save was %s",
                target,
                "finished (the new version is in place)" if finish else "rolled back",
            )
            break
        legacy = None if target.exists() else _legacy_aside(target, complete)
        if legacy is not None:  # the old version back; its other debris is left alone
            os.replace(legacy, target)
            legacy.parent.rmdir()
            fsync_dir(target.parent)
            logger.warning("%s: an interrupted save was rolled back", target)
    for path in _debris(target):
        shutil.rmtree(path)


@contextlib.contextmanager
def _locked(directory: Path, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive lock on ``directory`` (flock; released if the process dies).

    Yields whether the lock is held: False if ``blocking`` is false and another process
    holds it. Where the platform has no flock, yields True without locking.
    """
    if fcntl is None:  # pragma: no cover
        yield True
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
