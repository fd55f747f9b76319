"""The DigitalTwin: an ensemble of the best networks of a search, with its provenance.

A twin simulates the measurement anywhere inside the range it learned. Its uncertainty is the
spread of the ensemble (several good networks of different shapes, as the paper suggests
averaging). It is an interpolator only: a prediction outside the learned range is flagged.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bluesky_digitwin.data import (
    DigitwinInputError,
    TableLike,
    prepare_training_data,
)
from bluesky_digitwin.errors import DigitwinWarning
from bluesky_digitwin.fit_settings import (
    MOVED_KEYWORDS,
    SETTINGS,
    check_moved,
    check_settings,
    monotonic_pairs,
)
from bluesky_digitwin.holdout import HoldoutComparison, compare_on_holdout
from bluesky_digitwin.prediction import OutsideRangeWarning, prediction_dataset
from bluesky_digitwin.resolution import (
    UnresolvedStep,
    UnresolvedStepWarning,
    find_unresolved_steps,
    unresolved_steps_message,
)
from bluesky_digitwin.surrogate.ensemble import (
    BestShapeShare,
    EnsembleRecipe,
    Member,
    default_recipe,
    gather_shares,
    train_group_members,
    within_tolerance,
)
from bluesky_digitwin.surrogate.fourier import register_encoding_layer
from bluesky_digitwin.surrogate.members import build_new_members, build_trial_members
from bluesky_digitwin.surrogate.precision import hidden_matmuls, resolve_precision
from bluesky_digitwin.surrogate.search import (
    Progress,
    SearchSpace,
    SplitData,
    run_search,
)
from bluesky_digitwin.surrogate.search_settings import (
    RemoteWorkers,
    SearchStrategy,
    check_fourier_with_monotonic,
)
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.twin_files import (
    FORMAT,
    FORMAT_VERSION,
    TwinFileError,
    check_replaceable,
    check_save_destination,
    package_versions,
    read_twin_files,
    write_twin_files,
)

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
    "monotonic_pairs",
]

logger = logging.getLogger(__name__)


class EnsembleWarning(DigitwinWarning):
    """The twin has fewer networks than asked for, so its uncertainty is poorer or unknown."""


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
            (:class:`~bluesky_digitwin.surrogate.training.TrainConfig`: at most 250 epochs;
            ``TrainConfig.paper()`` trains the paper's 500).
        strategy
            How the search proposes, stops and judges trials: sampler and pruner (TPE and
            ASHA), hyperparameters to try first (e.g. ``previous_twin.hyperparameters``), the
            held-out share, and whether random points or whole scan lines are held out
            (:class:`~bluesky_digitwin.surrogate.search_settings.SearchStrategy`).
        ensemble
            How the twin's networks are made from the search
            (:class:`~bluesky_digitwin.surrogate.ensemble.EnsembleRecipe`): by default 12 new
            networks of the best trial's hyperparameters (its learning rate capped at 1e-3)
            and of a fixed reference network,
            trained together (at most 250 epochs, ``EnsembleRecipe.max_epochs``), each then
            refitted on all the points; ``EnsembleRecipe(size=...)``
            changes their number (their spread is the twin's uncertainty);
            ``EnsembleRecipe.paper()`` keeps the best trials' own networks as the paper did,
            and is the default above ``TrainConfig.reference_points`` points (a large map:
            :func:`~bluesky_digitwin.surrogate.ensemble.default_recipe`).
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
            other sign, also between the measured lines (``TrainConfig.monotonic``). That
            about doubles the training time, and whether it helps depends on the material
            (benchmarks/RESULTS.md: better on a moving transition, not on a sharp first-order
            one): measure it on yours.
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
        strategy = strategy or SearchStrategy()
        # Data warnings point at the user's call of fit, and respect the user's filters.
        prepared = prepare_training_data(data, features, target, stacklevel=2)
        if units:
            prepared.units.update({k: str(v) for k, v in units.items() if k in prepared.units})
        # Before the search: where the data, not the twin, limit a derivative is news at once.
        unresolved = find_unresolved_steps(prepared.x, prepared.y, prepared.features)
        if unresolved:
            warnings.warn(
                unresolved_steps_message(unresolved, prepared.target, prepared.units),
                UnresolvedStepWarning,
                stacklevel=2,
            )
        train_config = train_config or TrainConfig()
        # Before the workers start: a precision this process cannot honour fails now.
        hidden_matmuls(train_config.precision)
        recipe = ensemble or default_recipe(prepared.n_points, train_config)
        if monotonic:
            train_config = replace(
                train_config, monotonic=monotonic_pairs(monotonic, prepared.features)
            )
        check_fourier_with_monotonic(strategy.fourier_scale, train_config.monotonic)
        batch_sizes = (space or SearchSpace()).batch_choices(prepared.n_points)
        training = recipe.member_training(train_config)

        def train_reference(split: SplitData) -> list[Member]:
            # The reference networks do not depend on the search: they train on this
            # process's core while the workers search, instead of after the search with the
            # other core idle.
            return [
                member
                for group in recipe.reference_groups(batch_sizes, len(split.y_train))
                for member in train_group_members(group, split, training, seed=seed or 0)
            ]

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
            beside=train_reference if recipe.reference_groups(batch_sizes) else None,
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
                    train_config,
                    space,
                    seed,
                    trained=[
                        *(result.beside or ()),
                        *gather_shares(result.after or (), result.split.x_train.shape[1]),
                    ],
                )
            else:
                members, member_meta, val_scaled = build_trial_members(
                    result, eligible[: recipe.size], prepared, training
                )
        finally:
            result.cleanup()
        split, scaling = result.split, result.scaling
        holdout_result = compare_on_holdout(
            list(prepared.features),
            prepared.target,
            scaling.coordinates(split.x_train),
            split.y_train * scaling.y_std + scaling.y_mean,
            scaling.coordinates(split.x_val),
            split.y_val * scaling.y_std + scaling.y_mean,
            val_scaled * scaling.y_std + scaling.y_mean,
            held_out=split.held_out,
            suggest_fourier=strategy.fourier_scale is None
            and train_config.is_large_map(prepared.n_points),
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
                "fourier_scale": strategy.fourier_scale,
                "refit_epochs": recipe.refit_epochs,
                "ensemble_tolerance": recipe.tolerance,
                "ensemble": asdict(recipe),
                "space": asdict(space or SearchSpace()),
                "train_config": asdict(train_config),
                # What "auto" meant here, where the twin's networks trained.
                "precision": resolve_precision(train_config.precision),
                "monotonic": dict(monotonic or {}),
            },
            "data": {
                "sha256": prepared.sha256(),
                "n_points": prepared.n_points,
                "source": os.fspath(data) if isinstance(data, (str, os.PathLike)) else None,
            },
            "holdout": holdout_result.to_dict(),
            "unresolved_steps": [step.to_dict() for step in unresolved],
            "provenance": dict(provenance or {}),
            "versions": package_versions(),
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
        """The first network's hyperparameters: the best trial's, as the ensemble recipe
        trained them (e.g. its learning rate capped, ``EnsembleRecipe.trial_rate_cap``);
        usable as ``warm_start`` of a new fit."""
        return dict(self.metadata["members"][0]["params"])

    @property
    def validation_rmse(self) -> float:
        """The twin's RMSE on the points the search held out, in the target's units.

        The mean of its networks there, before their refit on all the points let them see
        those points (:attr:`holdout`); one network alone can be far worse or better. Twins
        saved without the comparison give their first network's.
        """
        holdout = self.holdout
        if holdout is not None:
            return holdout.twin_rmse
        return float(self.metadata["members"][0]["validation_rmse"])

    @property
    def holdout(self) -> HoldoutComparison | None:
        """The twin against linear and RBF interpolation on the held-out points (if recorded)."""
        recorded = self.metadata.get("holdout")
        return None if recorded is None else HoldoutComparison.from_dict(recorded)

    @property
    def unresolved_steps(self) -> list[UnresolvedStep]:
        """The measured lines' steps that each hold a jump they do not resolve.

        Found in the training data by
        :func:`~bluesky_digitwin.resolution.find_unresolved_steps` when the twin was fitted:
        there a derivative along the line is uncertain beyond the twin's ±2σ. Empty when there
        were none, or for a twin fitted before they were recorded.
        """
        return [UnresolvedStep.from_dict(d) for d in self.metadata.get("unresolved_steps", [])]

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
        twin and nothing else (:func:`~bluesky_digitwin.twin_files.check_replaceable`): other
        files are never deleted.
        """
        self.metadata = write_twin_files(directory, self._members, self.metadata)
        return Path(directory)

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
        register_encoding_layer()  # a twin fitted with Fourier features has this layer
        meta, members = read_twin_files(directory)
        return cls(members, meta)
