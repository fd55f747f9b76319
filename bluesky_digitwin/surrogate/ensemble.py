"""The twin's ensemble: many new networks of the best shapes, trained together.

The search finds good hyperparameters; which *networks* a twin keeps is a separate choice. A
derived quantity (an integral or a derivative across the coarse lines) depends on how each
network interpolates between the measured lines, which the pointwise validation error of one
trial cannot see, and which differs from one initialisation to the next. Averaging many
networks averages that luck away. So by default (:class:`EnsembleRecipe`) the twin's members
are new networks (new seeds) of the best trial's hyperparameters and of a fixed reference
network, trained as one population per configuration
(:func:`~bluesky_digitwin.surrogate.population.train_population`) with the search's recipe and
early stopping on the held-out points, then refitted briefly on all points.
``EnsembleRecipe.paper()`` keeps the best trials' own networks instead, as the paper did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.surrogate.network import check_activation
from bluesky_digitwin.surrogate.population import train_group
from bluesky_digitwin.surrogate.search_settings import is_number, is_whole
from bluesky_digitwin.surrogate.training import TrainConfig, TrainResult
from bluesky_digitwin.surrogate.trials import trial_params

if TYPE_CHECKING:
    import keras
    import optuna

    from bluesky_digitwin.surrogate.split import SplitData

__all__ = [
    "REFERENCE_CONFIGURATION",
    "BestShapeShare",
    "EnsembleRecipe",
    "Member",
    "MemberRecord",
    "MemberTraining",
    "PlannedGroup",
    "TrainedEnsemble",
    "default_recipe",
    "gather_shares",
    "read_records",
    "train_group_members",
    "train_members",
    "within_tolerance",
    "write_records",
]


#: The reference network: a fixed shape at a moderate learning rate, trained beside the search.
#: Five layers of 160 nodes (the paper's network's shape): against the earlier 3 x 200, it
#: lowered the median |ΔS_M| error on ErCo2 by 16 % and on the simulated first-order magnets
#: by 2-13 %, and raised it by 10 % on the moving transition (benchmarks/RESULTS.md).
REFERENCE_CONFIGURATION: dict[str, Any] = {
    "n_layers": 5,
    "n_units": 160,
    "learning_rate": 1e-3,
    "activation": "silu",
}


class PlannedGroup(NamedTuple):
    """Networks of one configuration that the twin will hold.

    Attributes
    ----------
    trial
        The search trial whose hyperparameters they take, or None for the reference.
    params
        Their hyperparameters (as a trial records them).
    count
        How many networks (each of its own seed).
    rank
        The group's place in the recipe, from which its networks' seeds are drawn: the same
        networks whether the group trains after the search or beside it.
    """

    trial: int | None
    params: dict[str, Any]
    count: int
    rank: int


@dataclass(frozen=True)
class EnsembleRecipe:
    """How the twin's networks are made from a finished search.

    Attributes
    ----------
    size
        Networks in the twin.
    configurations
        How many of the best trials' hyperparameters the networks are made with.
    reference
        Also make networks of :data:`REFERENCE_CONFIGURATION` (batch size: the smallest the
        search offers for the data's size), which interpolate between scan lines more
        reliably than networks chosen on pointwise error alone.
    retrain
        True: new networks (new seeds) of each configuration, trained together
        (:func:`~bluesky_digitwin.surrogate.population.train_population`). False: the paper's
        way, the best trials' own networks, ``size`` of them (``configurations`` and
        ``reference`` are not used).
    reference_activation
        The reference networks' hidden-layer activation (one of
        :data:`~bluesky_digitwin.surrogate.network.ACTIVATIONS`). SiLU by default: smooth, so
        the derivative a derived quantity integrates is smooth too; on a densely scanned
        oscillating map it lifted the twin's R^2 between the lines from 0.79 to 0.99 and on
        ErCo2 it lowered the median |ΔS_M| error (benchmarks/RESULTS.md). ``"relu"`` is
        the reference of the previous default. Several activations (a tuple, e.g.
        ``("silu", "relu")``) make one reference group of each, the networks dealt out in
        turn to the trials' groups and the references' groups: their errors differ in kind,
        so their mean errs less where no one group is right on every material.
    reference_shape
        The reference networks' hidden layers and nodes per layer, ``(5, 160)`` by default
        (:data:`REFERENCE_CONFIGURATION`); ``(3, 200)`` was the default before: cheaper, worse
        between the lines on ErCo2 and the first-order magnets, better on the moving transition
        (benchmarks/RESULTS.md). A JSON list is the same recipe.
    reference_l2
        The L2 penalty on the reference networks' hidden kernels (as the search's ``l2``
        choice); 0 leaves them unregularised.
    reference_steps
        The reference networks' batch is small enough for at least this many Adam steps an
        epoch (but at least 16 points); ``None`` keeps the search's smallest batch. The
        paper's batch sizes give a 300-point scan 5 steps an epoch, too few to learn an
        oscillating map in 500 epochs; from about 640 training points on (ErCo2's size) the
        default changes nothing.
    trial_activation
        The activation of the new networks of the best trials' configurations; ``None``
        keeps each trial's own. The search picks shapes by pointwise error on the measured
        lines; a smooth activation may interpolate between them better (benchmarks/).
    trial_rate_cap
        The highest initial learning rate of the new networks of the best trials'
        configurations, by default the reference's (1e-3); ``None`` keeps each trial's own.
        The search favours fast rates (1.4-3.2e-3), which win pointwise on the measured lines
        but make networks whose |ΔS_M| between the lines varies most from seed to seed: on
        ErCo2 the cap took the twin's worst seed from 1.60 to 1.20 J/(kg K) at 5 T, and it
        was level or better on the simulated magnets (benchmarks/RESULTS.md).
    tolerance
        If given, a trial's hyperparameters (or, with :meth:`paper`, its network) are used
        only if its validation MSE is at most this many times the best one's. Off by default:
        on ErCo2, dropping the networks that fit M less well made |ΔS_M| worse, not better
        (benchmarks/RESULTS.md).
    max_epochs
        The new networks train at most this many epochs (counted as ``TrainConfig`` counts
        them) before their refit, fewer than the search's trials when smaller (as when the
        trials train the paper's 500, ``TrainConfig.paper()``); ``None`` trains them as long as
        a trial. 250 by default: the 100-epoch refit at the initial rate that follows re-heats
        them anyway. Against 500, on the fidelity benchmark's four magnets (five seeds) the
        derived quantity was the same within the seeds' spread (ErCo2's worst seed better; an
        ARPES-like map's unseen lines about 1 % worse), the twin's networks trained about a
        quarter fewer epochs, and a cold ErCo2 fit took a few seconds less in five pairs of six
        (benchmarks/RESULTS.md). The search's trials train ``TrainConfig.max_epochs``.
    refit_epochs
        After the search, each chosen network trains this many more epochs on *all* the
        points (held-out ones included). 0 skips it.
    refit_rate
        The refit's learning rate as a multiple of the network's initial one; ``None``: its
        final rate (the initial one divided by ``TrainConfig.lr_drop_factor``), a gentle
        continuation. By default 100 epochs at the initial rate, so the held-out fifth of the
        points is learned, not only brushed: on the fidelity benchmark's weakly first-order
        magnet with a 2 T gap between fields, |ΔS_M| at 2 T fell from 0.49 to 0.36 J/(kg K)
        (median of five seeds) against 30 epochs at the final rate, the earlier default; it
        costs about a fifth more wall time (benchmarks/RESULTS.md).
    """

    size: int = 12
    configurations: int = 1
    reference: bool = True
    retrain: bool = True
    reference_activation: str | tuple[str, ...] = "silu"
    reference_shape: tuple[int, int] = (
        REFERENCE_CONFIGURATION["n_layers"],
        REFERENCE_CONFIGURATION["n_units"],
    )
    reference_l2: float = 0.0
    reference_steps: int | None = 10
    trial_activation: str | None = None
    trial_rate_cap: float | None = REFERENCE_CONFIGURATION["learning_rate"]
    tolerance: float | None = None
    max_epochs: int | None = 250
    refit_epochs: int = 100
    refit_rate: float | None = 1.0

    def __post_init__(self) -> None:
        if not (is_whole(self.size) and self.size >= 1):
            raise DigitwinInputError(
                f"the ensemble needs at least one network; got size {self.size!r}"
            )
        if self.configurations < 0 or (self.configurations == 0 and not self.reference):
            raise DigitwinInputError(
                "EnsembleRecipe.configurations must be at least 1 (or 0 with reference=True), "
                f"got {self.configurations}"
            )
        if not isinstance(self.reference_activation, str):
            # A JSON list (fit options, twin.json) is the same recipe as the tuple.
            object.__setattr__(self, "reference_activation", tuple(self.reference_activation))
            if not self.reference_activation:
                raise DigitwinInputError(
                    "EnsembleRecipe.reference_activation needs at least one activation, e.g. "
                    '"silu" or ("silu", "relu"); for no reference networks give reference=False'
                )
        for activation in self.reference_activations:
            check_activation(activation)
        shape = self.reference_shape
        if (
            not isinstance(shape, Sequence)
            or isinstance(shape, str)
            or len(shape) != 2
            or not all(is_whole(n) and n >= 1 for n in shape)
        ):
            raise DigitwinInputError(
                "EnsembleRecipe.reference_shape is (hidden layers, nodes per layer), two whole "
                f"numbers of at least 1, e.g. (5, 160); got {shape!r}"
            )
        object.__setattr__(self, "reference_shape", (int(shape[0]), int(shape[1])))
        if self.trial_activation is not None:
            check_activation(self.trial_activation)
        if self.tolerance is not None and not (is_number(self.tolerance) and self.tolerance >= 1):
            # Members are the trials within this factor of the best one: below 1, not even it.
            raise DigitwinInputError(
                f"EnsembleRecipe.tolerance is a factor on the best validation MSE, at least 1; "
                f"got {self.tolerance!r}"
            )
        if self.max_epochs is not None and not (is_whole(self.max_epochs) and self.max_epochs >= 1):
            raise DigitwinInputError(
                "EnsembleRecipe.max_epochs is the new networks' most epochs before their refit, "
                f"a whole number of at least 1 (or None: as long as a trial); got "
                f"{self.max_epochs!r}"
            )
        if not (is_whole(self.refit_epochs) and self.refit_epochs >= 0):
            raise DigitwinInputError(
                f"EnsembleRecipe.refit_epochs must be 0 or more (a whole number), got "
                f"{self.refit_epochs!r}"
            )
        if self.refit_rate is not None and not (
            is_number(self.refit_rate) and 0 < self.refit_rate <= 10
        ):
            raise DigitwinInputError(
                "EnsembleRecipe.refit_rate is a multiple of each network's initial learning "
                f"rate, above 0 and at most 10 (or None for its final rate); got "
                f"{self.refit_rate!r}"
            )
        if not (is_number(self.reference_l2) and 0 <= self.reference_l2 < 1):
            raise DigitwinInputError(
                "EnsembleRecipe.reference_l2 is the reference networks' L2 penalty, 0 (none) "
                f"or a small positive number such as 1e-5; got {self.reference_l2!r}"
            )
        if self.trial_rate_cap is not None and not (
            is_number(self.trial_rate_cap) and 0 < self.trial_rate_cap < 1
        ):
            raise DigitwinInputError(
                "EnsembleRecipe.trial_rate_cap is a learning rate, above 0 and below 1 (e.g. "
                f"1e-3), or None for each trial's own; got {self.trial_rate_cap!r}"
            )
        if self.reference_steps is not None and self.reference_steps < 1:
            raise DigitwinInputError(
                f"EnsembleRecipe.reference_steps must be at least 1, got {self.reference_steps}"
            )

    @classmethod
    def paper(cls, size: int = 5) -> EnsembleRecipe:
        """The paper's ensemble: the ``size`` best trials' own networks, refitted gently
        (30 epochs at their final learning rate)."""
        return cls(size=size, retrain=False, max_epochs=None, refit_epochs=30, refit_rate=None)

    def member_training(self, train_config: TrainConfig) -> MemberTraining:
        """How the recipe's networks train: ``train_config`` with its epochs capped at
        :attr:`max_epochs`, then the recipe's refit."""
        config = train_config
        if self.max_epochs is not None and self.max_epochs < train_config.max_epochs:
            config = replace(train_config, max_epochs=int(self.max_epochs))
        return MemberTraining(config, self.refit_epochs, self.refit_rate)

    @property
    def reference_activations(self) -> tuple[str, ...]:
        """The activation of each reference group."""
        # __post_init__ has made a sequence a tuple.
        activation = self.reference_activation
        return (activation,) if isinstance(activation, str) else activation

    def reference_groups(
        self, batch_sizes: Sequence[int], n_train: int | None = None
    ) -> list[PlannedGroup]:
        """The reference networks' groups, one per activation (none when the recipe has none).

        They depend on the data's size only, not on the search, so they can be trained while
        the search runs (``DigitalTwin.fit`` does). The reference's batch is the smallest of
        ``batch_sizes``, or smaller for ``reference_steps`` steps an epoch over ``n_train``
        training points. The ``size`` networks are dealt out in turn to ``configurations``
        trials' groups, then the reference groups; the references' shares are those of the
        last groups.
        """
        if not (self.retrain and self.reference):
            return []
        batch = int(min(batch_sizes))
        if n_train is not None and self.reference_steps is not None:
            batch = min(batch, max(16, n_train // self.reference_steps))
        n_groups = self.configurations + len(self.reference_activations)
        groups = []
        for i, activation in enumerate(self.reference_activations):
            rank = self.configurations + i
            count = len(range(rank, self.size, n_groups))
            params = {
                **REFERENCE_CONFIGURATION,
                "n_layers": self.reference_shape[0],
                "n_units": self.reference_shape[1],
                "activation": activation,
                "batch_size": batch,
                "l2": float(self.reference_l2),
                "dropout": 0.0,
                "regularization": "l2" if self.reference_l2 > 0 else "none",
            }
            if count > 0:
                groups.append(PlannedGroup(None, params, count, rank))
        return groups

    def plan(
        self,
        trials: Sequence[tuple[int, dict[str, Any]]],
        batch_sizes: Sequence[int],
        n_train: int | None = None,
    ) -> list[PlannedGroup]:
        """The groups of networks to train: the best trials' configurations, then the reference.

        ``trials`` are the eligible trials' numbers and hyperparameters, best first. The
        networks are dealt out in turn, best trial first, so each configuration gets an even
        share of ``size`` (the references' shares are fixed: :meth:`reference_groups`).
        """
        references = self.reference_groups(batch_sizes, n_train)
        chosen = list(trials[: self.configurations])
        share = self.size - sum(group.count for group in references)
        counts = [0] * len(chosen)
        for i in range(share if chosen else 0):
            counts[i % len(chosen)] += 1
        if self.trial_activation is not None:
            chosen = [(n, {**p, "activation": self.trial_activation}) for n, p in chosen]
        if self.trial_rate_cap is not None:
            cap = float(self.trial_rate_cap)
            chosen = [(n, {**p, "learning_rate": min(p["learning_rate"], cap)}) for n, p in chosen]
        groups = [
            PlannedGroup(number, dict(params), count, rank)
            for rank, ((number, params), count) in enumerate(zip(chosen, counts, strict=True))
            if count > 0
        ]
        return groups + references


def default_recipe(n_points: int, train_config: TrainConfig) -> EnsembleRecipe:
    """The twin's recipe when the user names none: chosen by the data's size.

    Up to ``train_config.reference_points`` points (every magnetisation set of the paper),
    :class:`EnsembleRecipe`'s default. Above it, where epochs are counted in passes over that
    many points, the paper's (:meth:`EnsembleRecipe.paper`): on the fidelity benchmark's
    15 472-point ARPES-like map it predicted the unseen lines better (28.5 against 29.7 counts
    RMSE, median of three seeds) in half the time (211 against 440 s), because the new networks
    of the default, the reference ones above all, cost more than the whole search at that size
    (benchmarks/RESULTS.md). Its ±2σ is narrower there (0.59 against 0.75 of the true values).
    """
    if train_config.is_large_map(n_points):
        return EnsembleRecipe.paper()
    return EnsembleRecipe()


@dataclass
class Member:
    """One network of the ensemble (on scaled data), with how it was made."""

    model: keras.Model
    params: dict[str, Any]
    seed: int
    source_trial: int | None
    result: TrainResult
    #: Its prediction of the held-out points (scaled) before the refit on all points.
    validation: np.ndarray


def _network(params: Mapping[str, Any], n_features: int, seed: int) -> keras.Model:
    """A new network of the shape ``params`` (a trial's hyperparameters) describe."""
    from bluesky_digitwin.surrogate.network import build_mlp

    return build_mlp(
        n_features,
        int(params["n_layers"]),
        int(params["n_units"]),
        l2=float(params.get("l2", 0.0)),
        dropout=float(params.get("dropout", 0.0)),
        activation=str(params.get("activation", "relu")),
        seed=seed,
    )


@dataclass
class MemberRecord:
    """A trained :class:`Member` as plain values (its weights as arrays), to pass between
    processes: a search worker trains some of the twin's networks and sends them this way."""

    params: dict[str, Any]
    seed: int
    source_trial: int | None
    result: TrainResult
    validation: np.ndarray
    weights: list[np.ndarray]
    #: Its place in its group (which of the group's seeds it has).
    index: int

    @classmethod
    def of(cls, member: Member, index: int) -> MemberRecord:
        return cls(
            params=dict(member.params),
            seed=member.seed,
            source_trial=member.source_trial,
            result=member.result,
            validation=member.validation,
            weights=[np.asarray(w) for w in member.model.get_weights()],
            index=index,
        )

    def member(self, n_features: int) -> Member:
        """The network again, in this process."""
        model = _network(self.params, n_features, self.seed)
        model.set_weights(self.weights)
        return Member(
            model=model,
            params=dict(self.params),
            seed=self.seed,
            source_trial=self.source_trial,
            result=self.result,
            validation=self.validation,
        )


@dataclass
class TrainedEnsemble:
    """The networks, and the ensemble's prediction of the held-out points before the refit.

    ``validation_prediction`` (scaled) comes from networks that had not seen those points: it is
    what :func:`~bluesky_digitwin.holdout.compare_on_holdout` scores the twin with.
    """

    members: list[Member]
    validation_prediction: np.ndarray


@dataclass(frozen=True)
class MemberTraining:
    """How a twin's networks train: with early stopping on the held-out points, then a refit
    on all of them (:meth:`EnsembleRecipe.member_training` makes one from a recipe).

    Attributes
    ----------
    config
        The first training's recipe (epochs, early stopping, learning-rate drop).
    refit_epochs
        Then this many epochs on all the points; 0: none.
    refit_rate
        The refit's learning rate as a multiple of each network's initial one; ``None``: the
        final rate of ``config`` (the initial one divided by ``lr_drop_factor``).
    """

    config: TrainConfig
    refit_epochs: int
    refit_rate: float | None

    def refit_schedule(self) -> tuple[TrainConfig, float]:
        """How a network continues on all the points after early stopping: the training
        settings of the refit, and its learning rate as a multiple of the network's initial
        one.

        The refit keeps the weights with the lowest loss over all the points; its rate is
        constant.
        """
        epochs = self.refit_epochs
        refit = replace(self.config, max_epochs=epochs, patience=epochs, lr_drop_epoch=epochs)
        rate = self.refit_rate
        factor = 1.0 / self.config.lr_drop_factor if rate is None else float(rate)
        return refit, factor


def train_members(
    plan: Sequence[PlannedGroup],
    split: SplitData,
    training: MemberTraining,
    *,
    seed: int = 0,
    trained: Sequence[Member] = (),
) -> TrainedEnsemble:
    """Train new networks of each planned group, then refit them on all points.

    Parameters
    ----------
    plan
        The groups, from :meth:`EnsembleRecipe.plan`.
    split
        The search's scaled training and held-out points.
    training
        How the networks train: the search's recipe with early stopping on the held-out
        points, then the refit on all the points.
    seed
        Base of the networks' seeds (each network gets its own).
    trained
        Networks already trained (e.g. the reference's, beside the search): a group whose
        networks are all here is not trained again.
    """
    members: list[Member] = []
    for group in plan:
        # The reference groups differ by activation alone: matched by their whole settings.
        ready = [m for m in trained if m.source_trial == group.trial and m.params == group.params]
        if len(ready) == group.count:
            members.extend(ready)
        else:
            members.extend(train_group_members(group, split, training, seed=seed))
    return TrainedEnsemble(members, np.mean([m.validation for m in members], axis=0))


def train_group_members(
    group: PlannedGroup,
    split: SplitData,
    training: MemberTraining,
    *,
    seed: int = 0,
    indices: Sequence[int] | None = None,
) -> list[Member]:
    """Train the networks of one planned group together, then refit them on all points.

    Parameters as for :func:`train_members`; the networks' seeds come from ``seed`` and the
    group's rank. ``indices`` trains only those of the group's networks (each with the seed
    it has in the whole group, so the same networks whichever process trains which).
    """
    params = group.params
    chosen = range(group.count) if indices is None else indices
    seeds = [(seed * 1_000_003 + group.rank * 10_007 + j) % (2**31 - 1) for j in chosen]
    count = len(seeds)
    if count == 0:
        return []
    models = [_network(params, split.x_train.shape[1], s) for s in seeds]
    rate = float(params["learning_rate"])
    batch = int(params["batch_size"])
    results = train_group(
        models,
        split.x_train,
        split.y_train,
        split.x_val,
        split.y_val,
        batch_size=batch,
        learning_rates=[rate] * count,
        seeds=seeds,
        config=training.config,
    )
    validation = [np.asarray(m(split.x_val, training=False)).reshape(-1) for m in models]
    if training.refit_epochs > 0:
        # The held-out points join in, keeping the weights with the lowest loss over all.
        refit, factor = training.refit_schedule()
        train_group(
            models,
            np.concatenate([split.x_train, split.x_val]),
            np.concatenate([split.y_train, split.y_val]),
            None,
            None,
            batch_size=batch,
            learning_rates=[rate * factor] * count,
            seeds=[s + 1 for s in seeds],
            config=refit,
        )
    return [
        Member(
            model=m,
            params=dict(params),
            seed=s,
            source_trial=group.trial,
            result=r,
            validation=v,
        )
        for m, s, r, v in zip(models, seeds, results, validation, strict=True)
    ]


def within_tolerance(
    trials: Sequence[optuna.trial.FrozenTrial], tolerance: float | None
) -> list[optuna.trial.FrozenTrial]:
    """The trials (best first) whose validation MSE is at most ``tolerance`` times the best
    one's; all of them when ``tolerance`` is None."""
    if not trials or tolerance is None:
        return list(trials)
    limit = tolerance * trials[0].value
    return [t for t in trials if t.value <= limit]


@dataclass(frozen=True)
class BestShapeShare:
    """The twin's networks of the best trials' shapes, shared out to the processes that
    searched (``run_search(after=...)``).

    Part ``p`` of ``n`` trains networks ``p, p + n, ...`` of each planned group of a trial's
    configuration, as one population, with the seeds they have in the whole group: the same
    networks as one process training all of them, while the spawned search worker's core
    would otherwise idle after the search. The reference group is left out (it trains beside
    the search).
    """

    recipe: EnsembleRecipe
    batch_sizes: tuple[int, ...]
    train_config: TrainConfig
    seed: int = 0

    def __call__(
        self,
        split: SplitData,
        trials: Sequence[optuna.trial.FrozenTrial],
        part: int,
        parts: int,
    ) -> list[MemberRecord]:
        eligible = within_tolerance(trials, self.recipe.tolerance)
        plan = self.recipe.plan(
            [(t.number, trial_params(t)) for t in eligible], self.batch_sizes, len(split.y_train)
        )
        training = self.recipe.member_training(self.train_config)
        records: list[MemberRecord] = []
        for group in plan:
            if group.trial is None:
                continue
            indices = range(part, group.count, parts)
            members = train_group_members(group, split, training, seed=self.seed, indices=indices)
            records.extend(MemberRecord.of(m, j) for m, j in zip(members, indices, strict=True))
        return records

    def save_part(self, output: Sequence[MemberRecord], file: BinaryIO) -> None:
        """Write a spawned worker's part for the search's process: :func:`write_records`."""
        write_records(output, file)

    def load_part(self, path: Path) -> list[MemberRecord]:
        """Read a part :meth:`save_part` wrote."""
        return read_records(path)


def write_records(records: Sequence[MemberRecord], file: BinaryIO) -> None:
    """Write networks as one ``.npz``: their weights and validation predictions as arrays,
    everything else as JSON in a text array. No pickle: :func:`read_records` reads it with
    ``allow_pickle=False``, as the twin's own files are read."""
    arrays: dict[str, np.ndarray] = {}
    described = []
    for i, record in enumerate(records):
        arrays[f"validation_{i}"] = np.asarray(record.validation)
        for j, weight in enumerate(record.weights):
            arrays[f"weights_{i}_{j}"] = np.asarray(weight)
        described.append(
            {
                "params": dict(record.params),
                "seed": record.seed,
                "source_trial": record.source_trial,
                "index": record.index,
                "n_weights": len(record.weights),
                "result": asdict(record.result),
            }
        )
    arrays["records"] = np.array(json.dumps(described))
    np.savez(file, **arrays)


def read_records(path: Path) -> list[MemberRecord]:
    """The networks :func:`write_records` wrote to ``path``."""
    with np.load(path, allow_pickle=False) as arrays:
        described = json.loads(str(arrays["records"]))
        return [
            MemberRecord(
                params=d["params"],
                seed=d["seed"],
                source_trial=d["source_trial"],
                result=TrainResult(**d["result"]),
                validation=arrays[f"validation_{i}"],
                weights=[arrays[f"weights_{i}_{j}"] for j in range(d["n_weights"])],
                index=d["index"],
            )
            for i, d in enumerate(described)
        ]


def gather_shares(shares: Sequence[Sequence[MemberRecord] | None], n_features: int) -> list[Member]:
    """The networks :class:`BestShapeShare`'s parts trained, in each group's order."""
    records = sorted((r for share in shares for r in share or ()), key=lambda r: r.index)
    return [r.member(n_features) for r in records]
