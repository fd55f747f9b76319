"""A saved twin's files: ``twin.json`` and one ``.keras`` file a network, written atomically.

What :meth:`DigitalTwin.save <bluesky_digitwin.twin.DigitalTwin.save>` writes and
:meth:`~bluesky_digitwin.twin.DigitalTwin.load` reads (the layout is in docs/architecture.md):
every network in Keras' own format (no pickle), each with its SHA-256 in ``twin.json``, which
is written last, so a directory holding it is a complete twin. Loading checks what using a twin
relies on, so a file damaged or edited by hand gives one clear line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bluesky_digitwin.atomic_files import (
    CannotWriteError,
    check_can_create,
    recover_dir,
    replace_dir,
)
from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.names import check_name

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "TwinFileError",
    "check_replaceable",
    "check_save_destination",
    "load_member",
    "metadata_problem",
    "package_versions",
    "read_twin_files",
    "twin_file_names",
    "write_twin_files",
]

FORMAT = "bluesky-digitwin/twin"
FORMAT_VERSION = 1
METADATA_FILE = "twin.json"


class TwinFileError(DigitwinInputError):
    """A saved twin cannot be loaded: a file of it is missing, damaged or was edited."""


def package_versions() -> dict[str, str]:
    """The versions of the packages a twin depends on, to record with it."""
    versions = {}
    for package in ("bluesky-digitwin", "tensorflow", "keras", "optuna", "numpy", "xarray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_twin_files(
    directory: str | os.PathLike, models: Sequence[Any], meta: dict[str, Any]
) -> dict[str, Any]:
    """Write ``models`` and ``meta`` as a twin in ``directory``, atomically; return the
    metadata as written (each member with its file name and checksum).

    The files are written to a hidden sibling directory which then replaces ``directory``: a
    crash never leaves a half-written twin under that name, and a save killed while swapping
    the directories is finished or rolled back by the next save or load of it. An existing
    directory is replaced only if it is empty or holds a saved twin and nothing else
    (:func:`check_replaceable`): other files are never deleted.
    """
    target = Path(directory)
    check_replaceable(target)
    meta = json.loads(json.dumps(meta))
    with replace_dir(target, _is_complete) as staging:
        for i, (model, member) in enumerate(zip(models, meta["members"], strict=True)):
            name = f"member_{i}.keras"
            model.save(staging / name)
            member["file"] = name
            member["sha256"] = _sha256(staging / name)
        # Written last: a staging directory holding it is complete (_is_complete).
        _write_json(staging / METADATA_FILE, meta)
    return meta


def read_twin_files(directory: str | os.PathLike) -> tuple[dict[str, Any], list[Any]]:
    """The metadata and the networks of the twin saved in ``directory``.

    Networks are loaded in Keras' ``safe_mode``, each checked against its checksum.

    Raises
    ------
    DigitwinInputError
        ``directory`` holds no twin.
    TwinFileError
        Its ``twin.json`` or a network file is damaged, edited or missing.
    """
    from bluesky_digitwin.tensorflow_runtime import keras

    path = Path(directory)
    recover_dir(path, _is_complete)
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise DigitwinInputError(f"{path} holds no saved twin (no {METADATA_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TwinFileError(f"{meta_path} is not valid JSON: {exc}") from None
    problem = metadata_problem(meta)
    if problem:
        raise TwinFileError(
            f"{meta_path} is damaged or was edited: {problem}; save the twin again or "
            "restore it from a copy"
        )
    if meta["format_version"] > FORMAT_VERSION:
        raise TwinFileError(
            f"{path} was saved by a newer bluesky-digitwin (format "
            f"{meta['format_version']}); upgrade the package to load it"
        )
    models = []
    for member in meta["members"]:
        # The file name comes from the JSON: it must name a file in this directory.
        try:
            file = path / check_name(member["file"], "member file")
        except DigitwinInputError as exc:
            raise TwinFileError(f"{meta_path}: {exc}") from None
        if not file.is_file():
            raise TwinFileError(f"{file} is missing; the twin is incomplete")
        if _sha256(file) != member["sha256"]:
            raise TwinFileError(
                f"{file} does not match its checksum; the twin is damaged: save it again "
                "or restore it from a copy"
            )
        models.append(load_member(keras, file))
    return meta, models


def load_member(keras: Any, file: Path) -> Any:
    """One network of a twin, loaded in Keras' safe_mode, or a :class:`TwinFileError`.

    Keras' own messages are not passed on: they advise to turn safe_mode off (never do that
    for a file that was edited), or say "File not found" of a file that is there but is not
    a ``.keras`` archive.
    """
    try:
        return keras.saving.load_model(file, compile=False, safe_mode=True)
    except Exception as exc:
        if "safe_mode" in str(exc):
            raise TwinFileError(
                f"{file} holds code (a Lambda layer or the like) that is not run when loading, "
                "as it could do anything; bluesky-digitwin never saves such a network, so this "
                "file was made or changed elsewhere: save the twin again from its source"
            ) from None
        raise TwinFileError(
            f"{file} is not a Keras model file bluesky-digitwin can read; the twin is damaged: "
            "save it again or restore it from a copy"
        ) from None


def metadata_problem(meta: Any) -> str | None:
    """What is wrong with the contents of a twin.json, in a phrase, or None.

    Checks what loading and using a twin rely on, so a file edited by hand or damaged gives
    one clear line rather than a KeyError later.
    """
    if not isinstance(meta, dict):
        return f"it holds a {type(meta).__name__}, not a JSON object"
    for key in ("format", "format_version", "id", "features", "target", "ranges", "members"):
        if key not in meta:
            return f"{key!r} is missing"
    if meta["format"] != FORMAT:
        return f"'format' is {meta['format']!r}, not {FORMAT!r}: it is not a bluesky-digitwin twin"
    version = meta["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        return f"'format_version' must be a whole number, not {version!r}"
    if not isinstance(meta["id"], str) or not meta["id"]:
        return "'id' must be a non-empty string"
    features = meta["features"]
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) and f for f in features)
    ):
        return "'features' must be a list of names"
    if not isinstance(meta["target"], str) or not meta["target"]:
        return "'target' must be a name"
    if not isinstance(meta.get("units", {}), dict):
        return "'units' must be a JSON object"
    ranges = meta["ranges"]
    if not isinstance(ranges, dict) or not all(
        isinstance(ranges.get(f), list)
        and len(ranges[f]) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ranges[f])
        for f in features
    ):
        return "'ranges' must give a (min, max) for every feature"
    members = meta["members"]
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        return "'members' must be a list of JSON objects"
    if not members:
        return "'members' is empty"
    for i, member in enumerate(members):
        for key in ("file", "sha256", "params", "validation_rmse"):
            if key not in member:
                return f"member {i} has no {key!r}"
        if not isinstance(member["sha256"], str):
            return f"member {i}'s 'sha256' must be a string"
        if not isinstance(member["params"], dict):
            return f"member {i}'s 'params' must be a JSON object"
    return None


def check_replaceable(directory: str | os.PathLike) -> None:
    """Refuse to save a twin over anything but nothing, an empty directory or a saved twin.

    Saving replaces the directory whole, so it may hold the twin's own files only:
    ``twin.json`` and the member files it names. Anything else (the data, notes, a figures
    folder) would be deleted with it.

    Raises
    ------
    DigitwinInputError
        ``directory`` is a file, or holds something that is not part of a saved twin.
    """
    path = Path(directory)
    if not path.exists():
        return
    if not path.is_dir():
        raise DigitwinInputError(f"{path} is a file, not a directory; choose a new directory")
    foreign = sorted(p.name for p in path.iterdir() if p.name not in twin_file_names(path))
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise DigitwinInputError(
            f"{path} holds files that are not part of a saved twin ({shown}); saving there "
            "would delete them: choose a new or empty directory"
        )


def check_save_destination(directory: str | os.PathLike) -> None:
    """Check, before a twin is learned, that it can be saved to ``directory``.

    It must be replaceable (:func:`check_replaceable`) and made where this process can write
    (tried for real: permissions do not stop root, but ``/proc`` or an immutable directory
    do).

    Raises
    ------
    DigitwinInputError
        Why not, in one line.
    """
    check_replaceable(directory)
    try:
        check_can_create(directory)
    except CannotWriteError as exc:
        raise DigitwinInputError(
            f"{directory}: {exc}; choose a directory you can write to"
        ) from None


def twin_file_names(path: Path) -> set[str]:
    """Names of the files of the twin saved in ``path``: twin.json and the members it names."""
    names = {METADATA_FILE}
    try:
        meta = json.loads((path / METADATA_FILE).read_text())
        names.update(m["file"] for m in meta["members"] if isinstance(m.get("file"), str))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # no readable twin.json: only a twin.json itself may be replaced
    return names


def _is_complete(staging: Path) -> bool:
    """Whether a save wrote all of ``staging`` (twin.json is written last)."""
    return (staging / METADATA_FILE).is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
