"""Where a search keeps its trials and their networks: Optuna storages and artifact stores.

A journal file by default, any Optuna RDB URL (PostgreSQL for workers on several machines), or a
ready storage object; trial networks go to an Optuna artifact store, by default a directory
beside the journal (or the user cache for a database). Passwords never reach a message.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore

from bluesky_digitwin.errors import DigitwinInputError
from bluesky_digitwin.redaction import redact, redact_url
from bluesky_digitwin.surrogate.recovery import retry_trial
from bluesky_digitwin.surrogate.search_settings import HEARTBEAT_INTERVAL, check_heartbeat
from bluesky_digitwin.surrogate.study_record import ArtifactLocation

__all__ = ["absolute_storage", "default_artifact_dir", "describe_artifact_store", "open_storage"]


def open_storage(
    storage: str | os.PathLike | optuna.storages.BaseStorage,
    *,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
) -> Any:
    """Open a storage: a database URL (``postgresql://...``, ``sqlite:///...``), a journal file
    path, or a ready Optuna storage object.

    A database storage gets Optuna's heartbeats every ``heartbeat_interval`` seconds (``None``:
    none): the trial of a worker that stops beating is failed after twice that time and queued
    again with the same hyperparameters. Credentials belong in the environment (``PGPASSWORD``,
    ``~/.pgpass``), not in the URL; a password in the URL is never shown or logged
    (:func:`~bluesky_digitwin.redaction.redact`).
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    text = os.fspath(storage)
    if "://" in text:
        check_heartbeat(heartbeat_interval)
        with warnings.catch_warnings():
            # Heartbeats have been "experimental" in Optuna since 2.9; they are what we need.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(
                    text,
                    heartbeat_interval=heartbeat_interval,
                    heartbeat_stale_trial_callback=(
                        retry_trial if heartbeat_interval is not None else None
                    ),
                )
            except ImportError as exc:
                raise DigitwinInputError(
                    f"no database driver for {redact_url(text)}: {exc}. For PostgreSQL, "
                    "pip install 'bluesky-digitwin[postgres]'"
                ) from None
            except Exception as exc:
                # Say why in one line, and never with the password: SQLAlchemy's messages may
                # quote the URL.
                reason = redact(str(exc).strip().splitlines()[0], url=text)
                raise DigitwinInputError(
                    f"cannot open the storage {redact_url(text)}: {reason}. Check that the "
                    "database server runs and that the user, database and password (from "
                    "PGPASSWORD or ~/.pgpass, not the URL) are right"
                ) from None
    from optuna.storages.journal import JournalFileBackend

    path = Path(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def default_artifact_dir(storage: str | os.PathLike | Any) -> Path:
    """Where trial networks go by default: beside a journal file, or in the user cache."""
    if isinstance(storage, (str, os.PathLike)) and "://" not in os.fspath(storage):
        return Path(os.fspath(storage) + ".artifacts")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "bluesky-digitwin" / "artifacts"


def describe_artifact_store(store: Any) -> ArtifactLocation:
    """What tells a worker where trial models go: a directory path, or the store's kind."""
    if isinstance(store, FileSystemArtifactStore):
        return ArtifactLocation("filesystem", os.path.abspath(store._base_path))
    return ArtifactLocation(type(store).__name__)


def absolute_storage(storage: str | os.PathLike) -> str:
    """A journal path that means the same file in a process started elsewhere."""
    text = os.fspath(storage)
    return text if "://" in text else os.path.abspath(text)
