"""What a search writes into its Optuna study for workers joining from anywhere, typed.

A search on a database storage can be joined by ``digitwin worker`` on any machine. The worker
gets nothing but the storage and the study's name, so the study carries what it needs, as the
user attribute :data:`STUDY_RECORD` (JSON, as Optuna storages keep attributes): the search
space, the training settings, the held-out split, the seed, the scaling, where the training
data are (an artifact, or runs to read again from Tiled) and where trial models go. Written by
:func:`~bluesky_digitwin.surrogate.search.run_search`, read by
:mod:`~bluesky_digitwin.surrogate.workers` and the dashboard (docs/architecture.md, "The study
record").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bluesky_digitwin.data_sources import DataSource, data_source_from_json

from .search_space import SearchSpace
from .training import TrainConfig

__all__ = ["RECORD_FORMAT", "STUDY_RECORD", "ArtifactLocation", "StudyRecord"]

#: The study attribute that tells a worker joining from anywhere what to search and on what data.
STUDY_RECORD = "digitwin"
#: The layout of the record this code writes and reads.
RECORD_FORMAT = 1


@dataclass(frozen=True)
class ArtifactLocation:
    """Where a study's trial models go, as far as a worker elsewhere can be told.

    Attributes
    ----------
    kind
        ``"filesystem"`` for Optuna's ``FileSystemArtifactStore``, else the store's class name
        (a worker must then be given the same store).
    path
        The directory of a filesystem store.
    """

    kind: str
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As the study keeps it."""
        return {"kind": self.kind, "path": self.path} if self.path else {"kind": self.kind}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ArtifactLocation:
        """The location a study keeps."""
        return cls(kind=str(value.get("kind")), path=value.get("path"))


@dataclass(frozen=True)
class StudyRecord:
    """A study's record (see the module's description).

    Attributes
    ----------
    space, train_config
        What is searched and how each trial trains.
    holdout
        What the validation split holds out: ``"points"`` or whole scan ``"lines"``.
    seed
        The search's seed (networks are seeded by it and the trial number).
    scaling
        The standardisation of the data (``Scaling.to_dict()``).
    data
        Where the training data are: a copy stored in the study
        (:class:`~bluesky_digitwin.data_sources.ArtifactSource`) or the runs to read again
        (:class:`~bluesky_digitwin.data_sources.TiledRunsSource`).
    artifacts
        Where trial models go.
    custom_sampler_or_pruner
        The search used its own sampler or pruner, which a record cannot carry.
    n_trials
        Finished trials the study is to hold.
    """

    space: SearchSpace
    train_config: TrainConfig
    holdout: str
    seed: int | None
    scaling: Mapping[str, Any]
    data: DataSource
    artifacts: ArtifactLocation
    custom_sampler_or_pruner: bool = False
    n_trials: int = 0
    format: int = field(default=RECORD_FORMAT)

    def to_json(self) -> dict[str, Any]:
        """As the study keeps it."""
        return {
            "format": self.format,
            "space": asdict(self.space),
            "train_config": asdict(self.train_config),
            "holdout": self.holdout,
            "seed": self.seed,
            "scaling": dict(self.scaling),
            "data": self.data.to_json(),
            "artifacts": self.artifacts.to_json(),
            "custom_sampler_or_pruner": self.custom_sampler_or_pruner,
            "n_trials": self.n_trials,
        }

    @classmethod
    def from_json(cls, record: Any) -> StudyRecord | None:
        """The record a study keeps, or ``None`` if it keeps none this code can read."""
        if not isinstance(record, Mapping) or record.get("format") != RECORD_FORMAT:
            return None
        # JSON turned the tuples into lists.
        space = {k: tuple(v) if isinstance(v, list) else v for k, v in record["space"].items()}
        return cls(
            space=SearchSpace(**space),
            train_config=TrainConfig(**record["train_config"]),
            holdout=record["holdout"],
            seed=record["seed"],
            scaling=record["scaling"],
            data=data_source_from_json(record["data"]),
            artifacts=ArtifactLocation.from_json(record["artifacts"]),
            custom_sampler_or_pruner=bool(record.get("custom_sampler_or_pruner", False)),
            n_trials=int(record.get("n_trials", 0)),
        )
