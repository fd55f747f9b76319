"""Where a search's training data can be read again, typed: the runs in Tiled, or a stored copy.

A search on a shared storage can be joined by workers on other machines (``digitwin worker``).
They read the training data from where the study says: the same runs from Tiled
(:class:`TiledRunsSource`, made by :func:`bluesky_digitwin.tiled.runs_data_source`) or the
scaled arrays stored as an Optuna artifact of the study (:class:`ArtifactSource`). The study
keeps it as JSON (:meth:`to_json`, :func:`data_source_from_json`) in its record
(:class:`~bluesky_digitwin.surrogate.study_record.StudyRecord`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bluesky_digitwin.errors import DigitwinInputError

__all__ = ["ArtifactSource", "DataSource", "TiledRunsSource", "data_source_from_json"]


@dataclass(frozen=True)
class TiledRunsSource:
    """Runs to read again from a Tiled server, exactly as the search read them.

    Attributes
    ----------
    uri
        The Tiled node the runs are in (the API key comes from ``TILED_API_KEY`` or the user's
        profile, never from here).
    runs
        The runs' uids, in the order they were read.
    features, target
        The columns the twin learns.
    keys
        Data keys by column name, where they differ.
    stream
        The event stream read.
    include_simulated
        Simulated runs were read too (by default they are refused).
    """

    kind: ClassVar[str] = "tiled"

    uri: str
    runs: tuple[str, ...]
    features: tuple[str, ...]
    target: str
    keys: Mapping[str, str] | None = None
    stream: str = "primary"
    include_simulated: bool = False

    def __post_init__(self) -> None:
        # Lists from JSON or from a caller become tuples: the source is a value.
        object.__setattr__(self, "runs", tuple(self.runs))
        object.__setattr__(self, "features", _names(self.features))
        if self.keys is not None:
            object.__setattr__(self, "keys", dict(self.keys))

    def to_json(self) -> dict[str, Any]:
        """As a study keeps it."""
        return {
            "kind": self.kind,
            "uri": self.uri,
            "runs": list(self.runs),
            "features": list(self.features),
            "target": self.target,
            "keys": dict(self.keys) if self.keys else None,
            "stream": self.stream,
            "include_simulated": self.include_simulated,
        }


@dataclass(frozen=True)
class ArtifactSource:
    """The scaled training and validation arrays, stored as an artifact of the study."""

    kind: ClassVar[str] = "artifact"

    artifact_id: str

    def to_json(self) -> dict[str, Any]:
        """As a study keeps it."""
        return {"kind": self.kind, "artifact_id": self.artifact_id}


DataSource = TiledRunsSource | ArtifactSource


def data_source_from_json(value: Mapping[str, Any]) -> DataSource:
    """The data source a study keeps (or a mapping of the same layout), typed.

    Raises
    ------
    DigitwinInputError
        ``value`` is not a data source this code knows.
    """
    if not isinstance(value, Mapping):
        raise DigitwinInputError(
            f"a data source is a mapping with a 'kind', got {type(value).__name__}"
        )
    kind = value.get("kind")
    fields = {k: v for k, v in value.items() if k != "kind"}
    try:
        if kind == TiledRunsSource.kind:
            return TiledRunsSource(**fields)
        if kind == ArtifactSource.kind:
            return ArtifactSource(**fields)
    except TypeError as error:
        raise DigitwinInputError(f"the {kind!r} data source is malformed: {error}") from None
    raise DigitwinInputError(
        f"unknown kind of training data source {kind!r}: 'tiled' (runs to read again) or "
        "'artifact' (a copy stored in the study)"
    )


def _names(value: Sequence[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)
