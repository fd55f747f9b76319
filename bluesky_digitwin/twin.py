"""The DigitalTwin: an ensemble of the best networks of a search, with its provenance.

A twin simulates the measurement anywhere inside the range it learned. Its uncertainty is the
spread of the ensemble (several good networks of different shapes, as the paper suggests
averaging). It is an interpolator only: a prediction outside the learned range is flagged.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import tempfile
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bluesky_digitwin.atomic_files import (
    CannotWriteError,
    check_can_create,
    recover_dir,
    replace_dir,
)
from bluesky_digitwin.data import (
    DigitwinInputError,
    TableLike,
    TrainingData,
    prepare_training_data,
)
from bluesky_digitwin.errors import DigitwinWarning
from bluesky_digitwin.holdout import HoldoutComparison, compare_on_holdout
from bluesky_digitwin.names import check_name
from bluesky_digitwin.prediction import OutsideRangeWarning, prediction_dataset
from bluesky_digitwin.surrogate.ensemble import (
    BestShapeShare,
    EnsembleRecipe,
    Member,
    gather_shares,
    train_group_members,
    train_members,
    within_tolerance,
)
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.search import (
    Progress,
    SearchResult,
    SearchSpace,
    SplitData,
    run_search,
    trial_params,
)
from bluesky_digitwin.surrogate.search_settings import RemoteWorkers, SearchStrategy
from bluesky_digitwin.surrogate.training import TrainConfig

__all__ = [
    "MOVED_KEYWORDS",
    "SETTINGS",
    "DigitalTwin",
    "EnsembleWarning",
    "OutsideRangeWarning",
    "TwinFileError",
    "build_new_members",
    "build_trial_members",
    "check_moved",
    "check_replaceable",
    "check_save_destination",
    "check_settings",
]

logger = logging.getLogger(__name__)

FORMAT = "bluesky-digitwin/twin"
FORMAT_VERSION = 1
METADATA_FILE = "twin.json"


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("bluesky-digitwin", "tensorflow", "keras", "optuna", "numpy", "xarray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


class EnsembleWarning(DigitwinWarning):
    """The twin has fewer networks than asked for, so its uncertainty is poorer or unknown."""


#: The settings objects :meth:`DigitalTwin.fit` takes, by keyword: what is searched, how a
#: network trains, how the search chooses, how the ensemble is built, what workers elsewhere
#: need.
SETTINGS: dict[str, type] = {
    "space": SearchSpace,
    "train_config": TrainConfig,
    "strategy": SearchStrategy,
    "ensemble": EnsembleRecipe,
    "remote": RemoteWorkers,
}


#: Keywords ``fit`` took before its settings were grouped, and where each went.
MOVED_KEYWORDS = {
    "ensemble_size": "ensemble=EnsembleRecipe(size=...)",
    "ensemble_tolerance": "ensemble=EnsembleRecipe(tolerance=...)",
    "refit_epochs": "ensemble=EnsembleRecipe(refit_epochs=...)",
    "sampler": "strategy=SearchStrategy(sampler=...)",
    "pruner": "strategy=SearchStrategy(pruner=...)",
    "warm_start": "strategy=SearchStrategy(warm_start=...)",
    "validation_fraction": "strategy=SearchStrategy(validation_fraction=...)",
    "holdout": "strategy=SearchStrategy(holdout=...)",
    "data_source": "remote=RemoteWorkers(data_source=...)",
    "heartbeat_interval": "remote=RemoteWorkers(heartbeat_interval=...)",
    "artifact_store": "remote=RemoteWorkers(artifact_store=...)",
}


def check_moved(keywords: Mapping[str, Any]) -> None:
    """Raise :class:`DigitwinInputError` for keywords ``fit`` does not take, saying where the
    moved ones went (:data:`MOVED_KEYWORDS`)."""
    if not keywords:
        return
    moved = [f"{k} -> {MOVED_KEYWORDS[k]}" for k in sorted(keywords) if k in MOVED_KEYWORDS]
    unknown = sorted(k for k in keywords if k not in MOVED_KEYWORDS)
    parts = []
    if moved:
        # The settings classes named, in the order given: "ensemble=EnsembleRecipe(size=...)".
        classes = dict.fromkeys(
            MOVED_KEYWORDS[k].split("=", 1)[1].split("(")[0]
            for k in keywords
            if k in MOVED_KEYWORDS
        )
        parts.append(
            "these keywords moved into settings objects: "
            + "; ".join(moved)
            + f" (from bluesky_digitwin import {', '.join(classes)})"
        )
    if unknown:
        parts.append(f"DigitalTwin.fit takes no keyword {', '.join(map(repr, unknown))}")
    raise DigitwinInputError(" and ".join(parts))


def check_settings(**settings: Any) -> None:
    """Raise :class:`DigitwinInputError` unless each given setting is its settings object.

    A plain dict (``ensemble={"size": 5}``) gets a message naming the object to use instead;
    keywords of earlier versions are :func:`check_moved`'s.
    """
    for name, value in settings.items():
        kind = SETTINGS[name]
        if value is not None and not isinstance(value, kind):
            article = "an" if kind.__name__[0] in "AEIOU" else "a"
            raise DigitwinInputError(
                f"{name} must be {article} {kind.__name__}, got {type(value).__name__}; e.g. "
                f"{name}={kind.__name__}(...) (from bluesky_digitwin import {kind.__name__})"
            )


class TwinFileError(DigitwinInputError):
    """A saved twin cannot be loaded: a file of it is missing, damaged or was edited."""


class DigitalTwin:
    """A trained digital twin of a scanning measurement.

    Make one with :meth:`fit` (or :meth:`load`); ask it with :meth:`predict`.

    Attributes
    ----------
    features : tuple of str
        The coordinates it takes, e.g. ``("T", "H")``.
    target : str
        The quantity it simulates, e.g. ``"M"``.
    units : dict
        Units of the features and the target ("" when unknown).
    ranges : dict
        The learned (min, max) of each feature.
    metadata : dict
        Everything recorded about how the twin was made (JSON-serialisable).
    """

    def __init__(self, members: Sequence[Any], metadata: dict[str, Any]):
        if not members:
            raise ValueError("a twin needs at least one network")
        self._members = list(members)
        self.metadata = metadata

    # -- making one ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        data: TableLike,
        features: Sequence[str],
        target: str,
        *,
        n_trials: int = 30,
        n_workers: int | None = None,
        seed: int | None = None,
        storage: Any = None,
        study_name: str | None = None,
        space: SearchSpace | None = None,
        train_config: TrainConfig | None = None,
        strategy: SearchStrategy | None = None,
        ensemble: EnsembleRecipe | None = None,
        remote: RemoteWorkers | None = None,
        units: Mapping[str, str] | None = None,
        monotonic: Mapping[str, str] | None = None,
        progress: Callable[[Progress], None] | None = None,
        provenance: Mapping[str, Any] | None = None,
        **moved: Any,
    ) -> DigitalTwin:
        """Learn ``target`` as a function of ``features`` and return the twin.

        Parameters
        ----------
        data
            An xarray Dataset (1-D along ``point`` or a grid), a pandas DataFrame, or the path
            of a CSV (header row) or netCDF file.
        features, target
            Column names of the coordinates and of the measured quantity.
        n_trials
            Finished trials of the hyperparameter search (the paper used about 30).
        n_workers
            Parallel search workers on this machine (default: one per core). ``0`` trains
            nothing here and waits for workers elsewhere (``digitwin worker``) on ``storage``.
        seed
            Makes the search repeatable on one machine (exactly so with one worker).
        storage, study_name
            Optuna storage (journal file path or database URL) and study to create or
            continue; by default a temporary journal.
        space
            Where the search looks
            (:class:`~bluesky_digitwin.surrogate.search_space.SearchSpace`; ``SearchSpace.paper()``
            is the paper's).
        train_config
            How each network trains
            (:class:`~bluesky_digitwin.surrogate.training.TrainConfig`).
        strategy
            How the search proposes, stops and judges trials: sampler and pruner (TPE and
            ASHA), hyperparameters to try first (e.g. ``previous_twin.hyperparameters``), the
            held-out share, and whether random points or whole scan lines are held out
            (:class:`~bluesky_digitwin.surrogate.search_settings.SearchStrategy`).
        ensemble
            How the twin's networks are made from the search
            (:class:`~bluesky_digitwin.surrogate.ensemble.EnsembleRecipe`): by default 12 new
            networks of the best trial's hyperparameters and of a wide reference network,
            trained together, each refitted on all the points; ``EnsembleRecipe(size=...)``
            changes their number (their spread is the twin's uncertainty);
            ``EnsembleRecipe.paper()`` keeps the best trials' own networks as the paper did.
        remote
            What workers on other machines need: where they read the data again (the runs in
            Tiled, as :meth:`fit_runs` gives them; by default the data are stored in the
            study), their heartbeat on a database storage, and where trial models go
            (:class:`~bluesky_digitwin.surrogate.search_settings.RemoteWorkers`).
        units
            Units by name, for columns whose data carries no ``units`` attribute.
        monotonic
            Shape knowledge, by feature: ``"increasing"`` or ``"decreasing"``, e.g.
            ``{"H": "increasing"}`` for a magnetisation that grows with field. Every network
            (search trials and the twin's members) is then penalised where its slope has the
            other sign, also between the measured lines (``TrainConfig.monotonic``).
        progress
            Called with a :class:`~bluesky_digitwin.surrogate.search.Progress` while searching.
        provenance
            Extra JSON-serialisable facts to record, e.g. the run uids the data came from.
        **moved
            Keywords of earlier versions that are now fields of a settings object
            (:data:`MOVED_KEYWORDS`, e.g. ``ensemble_size`` is ``EnsembleRecipe.size``): each
            is an error that says where it went.
        """
        check_moved(moved)
        check_settings(
            space=space,
            train_config=train_config,
            strategy=strategy,
            ensemble=ensemble,
            remote=remote,
        )
        recipe = ensemble or EnsembleRecipe()
        strategy = strategy or SearchStrategy()
        # Data warnings point at the user's call of fit, and respect the user's filters.
        prepared = prepare_training_data(data, features, target, stacklevel=2)
        if units:
            prepared.units.update({k: str(v) for k, v in units.items() if k in prepared.units})
        train_config = train_config or TrainConfig()
        if monotonic:
            train_config = replace(
                train_config, monotonic=monotonic_pairs(monotonic, prepared.features)
            )
        batch_sizes = (space or SearchSpace()).batch_choices(prepared.n_points)

        def train_reference(split: SplitData) -> list[Member]:
            # The reference networks do not depend on the search: they train on this
            # process's core while the workers search, instead of after the search with the
            # other core idle.
            group = recipe.reference_group(batch_sizes, len(split.y_train))
            assert group is not None  # only called when the recipe has a reference
            return train_group_members(
                group,
                split,
                train_config=train_config,
                refit_epochs=recipe.refit_epochs,
                seed=seed or 0,
            )

        shares = BestShapeShare(recipe, tuple(batch_sizes), train_config, seed=seed or 0)
        result = run_search(
            prepared,
            n_trials=n_trials,
            n_workers=n_workers,
            seed=seed,
            storage=storage,
            study_name=study_name,
            space=space,
            train_config=train_config,
            strategy=strategy,
            remote=remote,
            progress=progress,
            beside=train_reference if recipe.reference_group(batch_sizes) else None,
            # The best trial's networks train in every searching process as soon as the
            # search ends, not in this one alone after the workers have exited.
            after=shares if recipe.retrain else None,
        )
        eligible = within_tolerance(result.best_trials, recipe.tolerance)
        if not recipe.retrain and len(eligible) < recipe.size:
            within = (
                ""
                if recipe.tolerance is None
                else f" within {recipe.tolerance:g}x the best validation MSE"
            )
            warnings.warn(
                f"only {len(eligible)} trial(s) completed{within} (the others were pruned, "
                "failed or much worse), so the twin has "
                f"{len(eligible)} network(s) instead of {recipe.size}; run more trials for a "
                "fuller ensemble and its uncertainty"
                + (
                    f" (with one it has none: {prepared.target}_std is NaN)"
                    if len(eligible) == 1
                    else ""
                ),
                EnsembleWarning,
                stacklevel=2,
            )
        try:
            trials = result.study.get_trials(deepcopy=False)
            if recipe.retrain:
                members, member_meta, val_scaled = build_new_members(
                    result,
                    eligible,
                    prepared,
                    recipe,
                    recipe.refit_epochs,
                    train_config,
                    space,
                    seed,
                    trained=[
                        *(result.beside or ()),
                        *gather_shares(result.after or (), len(prepared.features)),
                    ],
                )
            else:
                members, member_meta, val_scaled = build_trial_members(
                    result, eligible[: recipe.size], prepared, recipe.refit_epochs, train_config
                )
        finally:
            result.cleanup()
        split, scaling = result.split, result.scaling
        holdout_result = compare_on_holdout(
            list(prepared.features),
            prepared.target,
            split.x_train * np.asarray(scaling.x_std) + np.asarray(scaling.x_mean),
            split.y_train * scaling.y_std + scaling.y_mean,
            split.x_val * np.asarray(scaling.x_std) + np.asarray(scaling.x_mean),
            split.y_val * scaling.y_std + scaling.y_mean,
            val_scaled * scaling.y_std + scaling.y_mean,
            held_out=split.held_out,
        )
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "id": uuid.uuid4().hex,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "features": list(prepared.features),
            "target": prepared.target,
            "units": dict(prepared.units),
            "ranges": {k: list(v) for k, v in prepared.ranges.items()},
            "scaling": result.scaling.to_dict(),
            "members": member_meta,
            "search": {
                "study_name": result.study.study_name,
                "storage": result.storage_description,
                "n_trials": len(trials),
                "n_complete": sum(t.state.name == "COMPLETE" for t in trials),
                "n_pruned": sum(t.state.name == "PRUNED" for t in trials),
                "n_failed": sum(t.state.name == "FAIL" for t in trials),
                "wall_time_s": round(result.wall_time, 3),
                "seed": seed,
                "validation_fraction": strategy.validation_fraction,
                "holdout": strategy.holdout,
                "refit_epochs": recipe.refit_epochs,
                "ensemble_tolerance": recipe.tolerance,
                "ensemble": asdict(recipe),
                "space": asdict(space or SearchSpace()),
                "train_config": asdict(train_config),
                "monotonic": dict(monotonic or {}),
            },
            "data": {
                "sha256": prepared.sha256(),
                "n_points": prepared.n_points,
                "source": os.fspath(data) if isinstance(data, (str, os.PathLike)) else None,
            },
            "holdout": holdout_result.to_dict(),
            "provenance": dict(provenance or {}),
            "versions": _versions(),
        }
        return cls(members, meta)

    @classmethod
    def fit_runs(
        cls,
        source: Any,
        uids: Sequence[str] | str | None = None,
        *,
        query: Any = None,
        features: Sequence[str],
        target: str,
        keys: Mapping[str, str] | None = None,
        stream: str = "primary",
        include_simulated: bool = False,
        provenance: Mapping[str, Any] | None = None,
        **fit_options: Any,
    ) -> DigitalTwin:
        """Learn from runs stored in Tiled (measured runs only, unless asked otherwise).

        Reads the runs with :func:`bluesky_digitwin.tiled.read_runs` (same parameters:
        ``source`` is a :class:`~bluesky_digitwin.tiled.TwinCatalog`, a Tiled node holding
        ``measured``, or a catalog of runs; give run ``uids`` or a Tiled ``query``; simulated
        runs are refused unless ``include_simulated``) and calls :meth:`fit` with
        ``fit_options`` (``n_trials``, ``space``, ...). The twin's provenance records the run
        uids and the Tiled URI (plus ``provenance`` given here), and search workers on other
        machines read the same runs from Tiled rather than from a copy in the study.
        """
        # Tiled's client is loaded only when runs are read: a twin of a table needs none of it.
        from bluesky_digitwin.tiled import read_runs, runs_data_source, runs_provenance

        data = read_runs(
            source,
            uids,
            query=query,
            features=features,
            target=target,
            keys=keys,
            stream=stream,
            include_simulated=include_simulated,
        )
        # Workers elsewhere read the same runs (the rest of what they need is the caller's).
        remote = replace(
            fit_options.pop("remote", None) or RemoteWorkers(),
            data_source=runs_data_source(data, features, target, keys, stream, include_simulated),
        )
        return cls.fit(
            data,
            features,
            target,
            provenance={**runs_provenance(data), **(provenance or {})},
            remote=remote,
            **fit_options,
        )

    # -- what it is ---------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.metadata["id"]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.metadata["features"])

    @property
    def target(self) -> str:
        return self.metadata["target"]

    @property
    def units(self) -> dict[str, str]:
        return dict(self.metadata["units"])

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        return {k: (float(v[0]), float(v[1])) for k, v in self.metadata["ranges"].items()}

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The best trial's hyperparameters (usable as ``warm_start`` of a new fit)."""
        return dict(self.metadata["members"][0]["params"])

    @property
    def validation_rmse(self) -> float:
        """RMSE of the best network on the held-out points, in the target's units."""
        return float(self.metadata["members"][0]["validation_rmse"])

    @property
    def holdout(self) -> HoldoutComparison | None:
        """The twin against linear and RBF interpolation on the held-out points (if recorded)."""
        recorded = self.metadata.get("holdout")
        return None if recorded is None else HoldoutComparison.from_dict(recorded)

    @property
    def ensemble_size(self) -> int:
        return len(self._members)

    def select(self, indices: Sequence[int]) -> DigitalTwin:
        """A twin of some of this twin's networks (by their index in ``metadata["members"]``).

        For looking inside an ensemble: e.g. the networks of the reference configuration
        alone (``trial`` is None in their record) against those of the best trial. The held-out
        comparison and the other records describe the whole twin and are kept as they are.

        Raises
        ------
        DigitwinInputError
            No index, or an index that is not one of the twin's networks.
        """
        chosen = [int(i) for i in indices]
        bad = [i for i in chosen if not 0 <= i < len(self._members)]
        if not chosen or bad:
            raise DigitwinInputError(
                f"select() takes indices of the twin's {len(self._members)} networks "
                f"(0..{len(self._members) - 1}); got {list(indices)}"
            )
        meta = dict(self.metadata)
        meta["members"] = [self.metadata["members"][i] for i in chosen]
        return type(self)([self._members[i] for i in chosen], meta)

    def __repr__(self) -> str:
        ranges = ", ".join(
            f"{k} {lo:g}..{hi:g}{' ' + self.units.get(k, '') if self.units.get(k) else ''}"
            for k, (lo, hi) in self.ranges.items()
        )
        return (
            f"<DigitalTwin {self.target}({', '.join(self.features)}) over {ranges}; "
            f"{self.ensemble_size} networks, validation RMSE {self.validation_rmse:.4g} "
            f"{self.units.get(self.target, '')}>".replace(" >", ">")
        )

    # -- using it -----------------------------------------------------------------------------

    def predict(
        self, points: Mapping[str, Any] | xr.Dataset | pd.DataFrame, *, warn: bool = True
    ) -> xr.Dataset:
        """Simulate the measurement at ``points``.

        Parameters
        ----------
        points
            The coordinates: a dict of equal-length arrays, a pandas DataFrame, or an xarray
            Dataset (e.g. :func:`~bluesky_digitwin.data.make_grid`, which gives a grid).
        warn
            Warn (:class:`OutsideRangeWarning`) when a point lies outside the learned range.

        Returns
        -------
        xarray.Dataset
            ``<target>`` (ensemble mean), ``<target>_std`` (ensemble spread; NaN for a twin
            of one network, whose uncertainty cannot be estimated: ``attrs["uncertainty"]``
            says which) and ``outside_range`` (bool), with the feature coordinates; units in
            ``attrs``.
        """

        def ensemble(x: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            outputs = self._member_outputs(x)
            if len(self._members) == 1:
                # One network has no spread: its uncertainty is unknown, not zero.
                return outputs[0], np.full(len(x), np.nan)
            return outputs.mean(axis=0), outputs.std(axis=0, ddof=1)

        prediction = prediction_dataset(
            points,
            self.features,
            self.target,
            self.units,
            self.ranges,
            ensemble,
            warn=warn,
            attrs={"twin_id": self.id},
        )
        prediction[f"{self.target}_std"].attrs["uncertainty"] = self.uncertainty
        return prediction

    @property
    def uncertainty(self) -> str:
        """What ``<target>_std`` of :meth:`predict` is, or why it is NaN (its attrs say it too)."""
        if len(self._members) == 1:
            return (
                "not estimated (NaN): a twin of one network has no spread; fit an ensemble of "
                "two or more networks (ensemble_size, and enough trials) for an uncertainty"
            )
        return f"standard deviation of the predictions of {len(self._members)} networks"

    def predict_members(
        self, points: Mapping[str, Any] | xr.Dataset | pd.DataFrame, *, warn: bool = True
    ) -> xr.DataArray:
        """Simulate the measurement at ``points`` with every network of the ensemble.

        A derived quantity (e.g. an integral along one axis) computed per network shows how
        uncertain the quantity is; computing it from the mean ± std of :meth:`predict` does not.

        Parameters
        ----------
        points, warn
            As for :meth:`predict`.

        Returns
        -------
        xarray.DataArray
            ``<target>`` with a leading dimension ``member`` (one entry per network, best
            first) followed by the dimensions :meth:`predict` gives; units in ``attrs``.
            Its mean over ``member`` is the ``<target>`` of :meth:`predict`.
        """
        runs: dict[str, np.ndarray] = {}

        def ensemble(x: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            runs["outputs"] = self._member_outputs(x)
            # No network output at a point that is not a real number (as predict gives).
            runs["outputs"][:, ~np.isfinite(x).all(axis=1)] = np.nan
            return runs["outputs"].mean(axis=0), np.zeros(len(x))

        mean = prediction_dataset(
            points,
            self.features,
            self.target,
            self.units,
            self.ranges,
            ensemble,
            warn=warn,
            attrs={"twin_id": self.id},
        )[self.target]
        values = runs["outputs"].reshape((len(self._members), *mean.shape))
        return xr.DataArray(
            values,
            dims=("member", *mean.dims),
            coords={**mean.coords, "member": np.arange(len(self._members))},
            name=self.target,
            attrs={**mean.attrs, "data_origin": "simulated", "twin_id": self.id},
        )

    def _member_outputs(self, x: np.ndarray) -> np.ndarray:
        """Every network's prediction at ``x``, shape (networks, points)."""
        return np.stack([self._run_member(m, x) for m in self._members])

    @staticmethod
    def _run_member(model: Any, x: np.ndarray) -> np.ndarray:
        out = np.empty(len(x), dtype=np.float64)
        # Chunks bound the memory of a large grid; each call is one graph execution.
        chunk = 65536
        for start in range(0, len(x), chunk):
            with np.errstate(over="ignore"):  # beyond float32: already flagged outside range
                xb = x[start : start + chunk].astype(np.float32)
            out[start : start + chunk] = np.asarray(model(xb, training=False)).reshape(-1)
        return out

    # -- storing it ---------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the twin to ``directory``: ``.keras`` files and ``twin.json``, atomically.

        The files are written to a hidden sibling directory which then replaces
        ``directory``: a crash never leaves a half-written twin under that name, and a save
        killed while swapping the directories is finished or rolled back by the next save or
        load of it. An existing directory is replaced only if it is empty or holds a saved
        twin and nothing else (:func:`check_replaceable`): other files are never deleted.
        """
        target = Path(directory)
        check_replaceable(target)
        meta = json.loads(json.dumps(self.metadata))
        with replace_dir(target, _is_complete) as staging:
            for i, (model, member) in enumerate(zip(self._members, meta["members"], strict=True)):
                name = f"member_{i}.keras"
                model.save(staging / name)
                member["file"] = name
                member["sha256"] = _sha256(staging / name)
            # Written last: a staging directory holding it is complete (_is_complete).
            _write_json(staging / METADATA_FILE, meta)
        self.metadata = meta
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DigitalTwin:
        """Load a twin saved by :meth:`save` (Keras ``safe_mode``; checksums verified).

        Raises
        ------
        DigitwinInputError
            ``directory`` holds no twin.
        TwinFileError
            Its ``twin.json`` or a network file is damaged, edited or missing (a subclass of
            :class:`~bluesky_digitwin.errors.DigitwinInputError`).
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
        problem = _metadata_problem(meta)
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
        members = []
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
            members.append(_load_member(keras, file))
        return cls(members, meta)


def _load_member(keras: Any, file: Path) -> Any:
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


def _metadata_problem(meta: Any) -> str | None:
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


#: How a user states the direction of a monotonic feature, and its sign.
MONOTONIC_DIRECTIONS = {"increasing": 1, "decreasing": -1}


def monotonic_pairs(
    monotonic: Mapping[str, str], features: Sequence[str]
) -> tuple[tuple[int, int], ...]:
    """``{"H": "increasing"}`` as ``TrainConfig.monotonic``'s (feature index, sign) pairs.

    Raises
    ------
    DigitwinInputError
        A feature that is not one of ``features``, or a direction that is neither
        ``"increasing"`` nor ``"decreasing"``.
    """
    if not isinstance(monotonic, Mapping):
        raise DigitwinInputError(
            f"monotonic must map feature names to 'increasing' or 'decreasing', e.g. "
            f"{{'H': 'increasing'}}; got {type(monotonic).__name__}"
        )
    pairs = []
    for name, direction in monotonic.items():
        if name not in features:
            raise DigitwinInputError(
                f"monotonic names {name!r}, which is not a feature of this twin; the features "
                f"are {', '.join(map(str, features))}"
            )
        sign = MONOTONIC_DIRECTIONS.get(str(direction).strip().lower())
        if sign is None:
            raise DigitwinInputError(
                f"monotonic direction of {name!r} must be 'increasing' or 'decreasing', "
                f"got {direction!r}"
            )
        pairs.append((list(features).index(name), sign))
    return tuple(pairs)


def build_trial_members(
    result: SearchResult,
    trials: Sequence[Any],
    data: TrainingData,
    refit_epochs: int,
    train_config: TrainConfig,
) -> tuple[list[Any], list[dict[str, Any]], np.ndarray]:
    """The paper's ensemble: the best trials' own networks, refitted on all points.

    Also returns the networks' mean prediction of the held-out points (scaled) before the
    refit, when they had not seen them.
    """
    from optuna.artifacts import download_artifact

    from bluesky_digitwin.surrogate.network import wrap_with_scaling
    from bluesky_digitwin.surrogate.training import train
    from bluesky_digitwin.surrogate.trials import MODEL_ARTIFACT
    from bluesky_digitwin.tensorflow_runtime import keras

    scaling: Scaling = result.scaling
    x_all = scaling.scale_x(data.x)
    y_all = scaling.scale_y(data.y)
    split = result.split
    val_var = float(np.var(split.y_val)) or 1.0
    members, meta, validation = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rank, trial in enumerate(trials):
            path = os.path.join(tmp, f"trial-{trial.number}.keras")
            download_artifact(
                artifact_store=result.artifact_store,
                file_path=path,
                artifact_id=trial.user_attrs[MODEL_ARTIFACT],
            )
            core = keras.saving.load_model(path, compile=False, safe_mode=True)
            params = trial_params(trial)
            validation.append(np.asarray(core(split.x_val, training=False)).reshape(-1))
            if refit_epochs > 0:
                # The held-out points join in: a short, gentle continuation at the final
                # learning rate, keeping the weights with the lowest loss over all points.
                train(
                    core,
                    x_all,
                    y_all,
                    batch_size=int(params["batch_size"]),
                    learning_rate=float(params["learning_rate"]) / train_config.lr_drop_factor,
                    config=replace(
                        train_config,
                        max_epochs=refit_epochs,
                        patience=refit_epochs,
                        lr_drop_epoch=refit_epochs,
                    ),
                    seed=int(trial.user_attrs.get("seed", trial.number)) + 1,
                )
            members.append(wrap_with_scaling(core, scaling, name=f"member_{rank}"))
            mse = float(trial.value)
            meta.append(
                {
                    "trial": trial.number,
                    "params": params,
                    "validation_mse_scaled": mse,
                    "validation_rmse": float(np.sqrt(mse) * scaling.y_std),
                    "validation_r2": float(1 - mse / val_var),
                    "best_epoch": int(trial.user_attrs.get("best_epoch", -1)),
                    "epochs_run": int(trial.user_attrs.get("epochs_run", -1)),
                }
            )
    return members, meta, np.mean(validation, axis=0)


def build_new_members(
    result: SearchResult,
    trials: Sequence[Any],
    data: TrainingData,
    recipe: EnsembleRecipe,
    refit_epochs: int,
    train_config: TrainConfig,
    space: SearchSpace | None,
    seed: int | None,
    *,
    trained: Sequence[Member] = (),
) -> tuple[list[Any], list[dict[str, Any]], np.ndarray]:
    """New networks of the best trials' hyperparameters (and the reference), trained together.

    ``trained``: networks of the plan already trained (the reference's, beside the search).
    """
    from bluesky_digitwin.surrogate.network import wrap_with_scaling

    scaling: Scaling = result.scaling
    batch_sizes = (space or SearchSpace()).batch_choices(data.n_points)
    plan = recipe.plan(
        [(t.number, trial_params(t)) for t in trials], batch_sizes, len(result.split.y_train)
    )
    ensemble = train_members(
        plan,
        result.split,
        train_config=train_config,
        refit_epochs=refit_epochs,
        seed=seed or 0,
        trained=trained,
    )
    val_var = float(np.var(result.split.y_val)) or 1.0
    members, meta = [], []
    for rank, member in enumerate(ensemble.members):
        members.append(wrap_with_scaling(member.model, scaling, name=f"member_{rank}"))
        mse = float(member.result.best_loss)
        meta.append(
            {
                "trial": member.source_trial,
                "params": member.params,
                "seed": member.seed,
                "validation_mse_scaled": mse,
                "validation_rmse": float(np.sqrt(mse) * scaling.y_std),
                "validation_r2": float(1 - mse / val_var),
                "best_epoch": member.result.best_epoch,
                "epochs_run": member.result.epochs_run,
            }
        )
    return members, meta, ensemble.validation_prediction


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
    foreign = sorted(p.name for p in path.iterdir() if p.name not in _twin_files(path))
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


def _twin_files(path: Path) -> set[str]:
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
