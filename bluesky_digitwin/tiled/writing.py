"""Writing runs: a container's writer, the router that sends each run to its origin's
container, and the backup of runs Tiled did not take (replayed later).
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import event_model

from bluesky_digitwin.errors import DataWarning, DigitwinInputError
from bluesky_digitwin.redaction import redact
from bluesky_digitwin.run_documents import (
    SIMULATED,
    DataOriginError,
    RunMetadataError,
    data_origin_of,
)

from .layout import normalize_start

__all__ = [
    "BACKUP_SUFFIX",
    "ContainerWriter",
    "OriginRouter",
    "ReplayedRun",
    "default_backup_directory",
    "read_backup",
    "replay_hint",
    "try_lock",
    "write_document",
]

logger = logging.getLogger(__name__)

#: event_model's RunRouter warns this whenever a callback raises at a run's start document.
RUN_ROUTER_ADVICE = r"The callback .* when RunRouter passed it a 'start' document"


def write_document(writer: Callable[[str, Any], None], name: str, doc: Mapping[str, Any]) -> None:
    """``writer(name, doc)``, without event_model's advice when a start document fails.

    TiledWriter routes each run through event_model's RunRouter, which warns, whenever a
    callback raises at a start document, that the error may come from a factory written for
    event-model < 1.14 and must be updated. Here the error is Tiled's (the server is gone, or
    refuses the run), and the caller says it with the run's backup: the advice would send the
    user to code that is not theirs. Other warnings pass as before. The filter is set around
    start documents only: setting one resets Python's record of warnings already shown once,
    which around every event would repeat the session's other warnings at every event.
    """
    if name != "start":
        writer(name, doc)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=RUN_ROUTER_ADVICE, category=UserWarning)
        writer(name, doc)


class ContainerWriter:
    """A bluesky callback writing runs of one origin to its container, refusing the others.

    A run of the other origin (or with a contradictory ``data_origin``) is refused at its start
    document with a :class:`DataOriginError`, before TiledWriter sees it: nothing of it is
    written, and its later documents are dropped.
    """

    def __init__(self, origin: str, writer: Callable[[str, Any], None], uri: str) -> None:
        self.origin = origin
        self.uri = uri
        self._writer = writer
        # event_model's RunRouter follows each run's documents; a factory that raises at the
        # start leaves that run with no callbacks, so nothing of it reaches the writer.
        self._router = event_model.RunRouter([self._factory])

    def _factory(self, name: str, start: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        origin = data_origin_of(start)
        if origin != self.origin:
            raise DataOriginError(
                f"refused run {start.get('uid')}: it is {origin} (data_origin "
                f"{start.get('data_origin')!r}, tiled_specs {start.get('tiled_specs')!r}) and "
                f"does not belong in the {self.origin!r} container at {self.uri}; nothing of "
                "it was written (TwinCatalog.subscribe routes each run to its container)"
            )
        return [self._writer], []

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        write_document(self._router, name, doc)

    def __repr__(self) -> str:
        return f"<ContainerWriter {self.origin!r} -> {self.uri}>"


# -- backups of runs Tiled did not take ----------------------------------------------------------

#: The name of a backup file: the run's uid and this suffix (JSON lines, one document a line).
BACKUP_SUFFIX = ".jsonl"


def default_backup_directory(
    catalog_directory: str | os.PathLike | None = None, uri: str | None = None
) -> Path:
    """Where runs Tiled did not take are kept when no backup directory is given.

    ``backup/`` inside an embedded catalog's directory; otherwise
    ``$XDG_DATA_HOME/bluesky-digitwin/tiled-backup`` (``~/.local/share/...`` by default), in a
    folder per server node when its ``uri`` is given (so that a replay sends runs back where
    they were meant to go).
    """
    if catalog_directory is not None:
        return Path(catalog_directory) / "backup"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    directory = Path(base) / "bluesky-digitwin" / "tiled-backup"
    if uri is None:
        return directory
    parts = urlsplit(uri)
    return directory / re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parts.netloc}{parts.path}").strip("_")


class _DocumentEncoder(event_model.NumpyEncoder):
    """JSON for documents: numpy values as numbers and lists, anything else as its repr."""

    def default(self, obj: Any) -> Any:
        try:
            return super().default(obj)
        except TypeError:
            return repr(obj)  # kept readable rather than lost with the rest of the run


def try_lock(file: Any) -> bool:
    """Take an exclusive lock on an open file, where the system has them: whether it was taken.

    The backup of a run being written is locked, so that a replay (from this session or
    another) leaves it alone.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no such locks; a run still being written is not detected
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class _Journal:
    """The documents of one run appended to ``<directory>/<uid>.jsonl`` as they come.

    The format is TiledWriter's and bluesky's JSON-lines backup: ``{"name": ..., "doc": ...}``
    a line. Written before Tiled sees a document, so that a failed write, a server gone or a
    killed session loses nothing; removed once Tiled has the whole run.
    """

    def __init__(self, directory: Path, uid: str) -> None:
        self.path = directory / f"{uid}{BACKUP_SUFFIX}"
        self.broken: str | None = None
        self._file: Any = None

    def write(self, name: str, doc: Mapping[str, Any]) -> None:
        if self.broken is not None:
            return
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Open for the whole run (closed at its stop): one flush per document.
                self._file = open(self.path, "a", encoding="utf-8")
                try_lock(self._file)
            line = json.dumps({"name": name, "doc": doc}, cls=_DocumentEncoder)
            self._file.write(line + "\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            self.broken = f"{type(exc).__name__}: {exc}"
            logger.error("cannot keep the documents of a run in %s (%s)", self.path, self.broken)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)  # still locked: no replay takes it meanwhile
        self.close()


def read_backup(path: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """The documents of a run kept in a backup file, as ``(name, doc)`` pairs.

    A last line cut off (the session was killed while writing it) is left out with a
    :class:`~bluesky_digitwin.errors.DataWarning`.

    Raises
    ------
    DigitwinInputError
        The file is not a backup of a run (no start document first, a line that is not a
        document).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DigitwinInputError(f"cannot read the backup {path}: {exc}") from None
    docs = []
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
            docs.append((str(item["name"]), dict(item["doc"])))
        except (ValueError, TypeError, KeyError) as exc:
            if number == len(lines) and docs:
                warnings.warn(f"{path}: its last line is cut off; left out", DataWarning, 2)
                break
            raise DigitwinInputError(
                f"{path} line {number} is not a bluesky document ({exc}); a backup holds one "
                '{"name": ..., "doc": ...} a line'
            ) from None
    if not docs or docs[0][0] != "start" or "uid" not in docs[0][1]:
        raise DigitwinInputError(f"{path} is not the backup of a run: it does not begin with one")
    return docs


@dataclass(frozen=True)
class ReplayedRun:
    """What :meth:`TwinCatalog.replay` did with one backup file.

    Attributes
    ----------
    uid, origin, path
        The run, where it belongs ("measured", "simulated"; None if refused), its backup file.
    outcome
        "stored" (written now; the backup file is removed), "already stored" (Tiled had the
        whole run; the file is removed), "refused" (its metadata cannot be stored: ``detail``
        says why; the file is kept), "failed" (Tiled did not take it: ``detail``; kept) or
        "in progress" (a session is still writing the run; left alone).
    """

    uid: str
    origin: str | None
    path: Path
    outcome: Literal["stored", "already stored", "refused", "failed", "in progress"]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("stored", "already stored")


def replay_hint(path: Path, uri: str | None, catalog_directory: str | None) -> str:
    """How to put the runs of a backup into Tiled, for the messages."""
    if catalog_directory is not None:
        cli = f"digitwin replay {path} --tiled-dir {catalog_directory} (with the server stopped)"
    elif uri is not None:
        cli = f"digitwin replay {path} --tiled-uri {uri}"
    else:
        cli = f"digitwin replay {path} --tiled-uri URI"
    return f"catalog.replay({str(path)!r}), or {cli}"


class _RunShield:
    """One run's documents: into its backup first, then to the writer; never raising.

    After a failed write the writer gets nothing more of the run; the backup is kept and said
    loudly. The backup is removed when the writer took the whole run.
    """

    def __init__(
        self,
        writer: Callable[[str, Any], None] | None,
        uid: str,
        journal: _Journal,
        failed: dict[str, str],
        hint: str,
        refused: str | None = None,
    ) -> None:
        self._refused = refused
        self._writer = writer
        self._uid = uid
        self._journal = journal
        self._failed = failed
        self._hint = hint

    def lost(self, what: str) -> None:
        """Say that the run is not in Tiled, and where its documents are."""
        if self._journal.broken is None:
            message = (
                f"{what}; every document of the run is kept in {self._journal.path}: store it "
                f"with {self._hint}"
            )
        else:
            message = f"{what}, and its backup failed too ({self._journal.broken}): run LOST"
        logger.error(message)
        warnings.warn(message, DataWarning, stacklevel=2)

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        self._journal.write(name, doc)
        if name == "start" and self._refused is not None:
            self.lost(f"not written to Tiled: {self._refused}")
        writing = self._writer is not None and self._uid not in self._failed
        if writing:
            try:
                write_document(self._writer, name, doc)  # type: ignore[arg-type]
            except Exception as exc:
                writing = False
                self._failed[self._uid] = f"{type(exc).__name__}: {redact(str(exc))}"
                logger.debug("writing run %s to Tiled failed", self._uid, exc_info=True)
                if name == "stop":
                    self._journal.close()
                self.lost(
                    f"writing run {self._uid} to Tiled failed at its {name!r} document "
                    f"({self._failed[self._uid]})"
                )
        if name == "stop":
            if writing:
                self._journal.discard()
            else:
                self._journal.close()


class OriginRouter:
    """One bluesky callback sending each run to the Tiled container of its origin.

    Measured runs go to ``measured`` (stored with ``data_origin: "measured"``), simulated runs
    to ``simulated`` (stored with ``data_origin: "simulated"`` and the spec ``SimulatedRun``);
    the stored start is normalised (:func:`normalize_start`).

    Nothing here raises into the RunEngine, and no run is lost: every document is first
    appended to a backup file ``<backup_directory>/<uid>.jsonl``, removed once Tiled has the
    whole run. A run whose start metadata cannot be stored (see :func:`normalize_start`; the
    :class:`StartNormalizer` that :meth:`TwinCatalog.subscribe` installs stops such runs before
    they start) is not written, and recorded in :attr:`refused`; a failed write (Tiled refuses,
    or is gone) stops the writing of that run and is recorded in :attr:`failed`. Either way the
    backup is kept, and an error is logged and a :class:`~bluesky_digitwin.errors.DataWarning`
    issued, with the backup's path and how to store it (:meth:`TwinCatalog.replay`).

    Parameters
    ----------
    writers
        A writer callback per origin (TiledWriters on the two containers).
    backup_directory
        Where the backups go (created when needed); by default
        :func:`default_backup_directory`.
    replay_hint
        How to store a backup, for the messages, given its path.

    Attributes
    ----------
    refused : dict
        Run uid -> why it was not written.
    failed : dict
        Run uid -> the error that stopped its writing.
    backup_directory : Path
    """

    def __init__(
        self,
        writers: Mapping[str, Callable[[str, Any], None]],
        *,
        backup_directory: str | os.PathLike | None = None,
        replay_hint: Callable[[Path], str] | None = None,
    ) -> None:
        self._writers = dict(writers)
        self.backup_directory = Path(
            default_backup_directory() if backup_directory is None else backup_directory
        )
        try:  # a backup directory that cannot be written is said now, not when it is needed
            self.backup_directory.mkdir(parents=True, exist_ok=True)
            if not os.access(self.backup_directory, os.W_OK | os.X_OK):
                raise PermissionError("not writable")
        except OSError as exc:
            raise DigitwinInputError(
                f"cannot keep backups of runs in {self.backup_directory} ({exc}); give "
                "backup_directory= a directory this session can write"
            ) from None
        self._hint = replay_hint or (lambda path: f"TwinCatalog.replay({str(path)!r})")
        self.refused: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self._router = event_model.RunRouter([self._factory])
        self._warn_of_leftovers()

    def _warn_of_leftovers(self) -> None:
        """Backups left by earlier sessions (a write that failed, a session killed) are said."""
        left = sorted(self.backup_directory.glob(f"*{BACKUP_SUFFIX}"))
        if left:
            message = (
                f"{len(left)} run(s) kept in {self.backup_directory} are not in Tiled yet (a "
                "write that failed, a session that ended mid-run, or one still measuring): "
                "store them with "
                f"{self._hint(self.backup_directory)}"
            )
            logger.warning(message)
            warnings.warn(message, DataWarning, stacklevel=3)

    def _factory(self, name: str, start: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        uid = str(start.get("uid"))
        journal = _Journal(self.backup_directory, uid)
        try:
            origin = data_origin_of(normalize_start(start))
        except RunMetadataError as exc:
            self.refused[uid] = str(exc)
            hint = self._hint(journal.path)
            return [_RunShield(None, uid, journal, self.failed, hint, refused=str(exc))], []
        if origin == SIMULATED and "digital_twin" not in start:
            logger.warning("simulated run %s carries no digital_twin provenance", uid)
        shield = _RunShield(
            self._writers[origin], uid, journal, self.failed, self._hint(journal.path)
        )
        return [shield], []

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        try:
            self._router(name, doc)
        except Warning:
            raise  # the caller turned warnings into errors: theirs to see
        except Exception:
            # E.g. a document of a run whose start was never seen (subscribed mid-run).
            logger.exception("OriginRouter skipped a %r document", name)
