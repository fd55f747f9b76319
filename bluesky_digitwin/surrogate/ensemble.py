"""The twin's ensemble: many new networks of the best shapes, trained together.

The search finds good hyperparameters; which *networks* a twin keeps is a separate choice. A
derived quantity (an integral or a derivative across the coarse lines) depends on how each
network interpolates between the measured lines, which the pointwise validation error of one
trial cannot see, and which differs from one initialisation to the next. Averaging many
networks averages that luck away. So by default (:class:`EnsembleRecipe`) the twin's members
are new networks (new seeds) of the best trial's hyperparameters and of a wide reference
network, trained as one population per configuration
(:func:`~bluesky_digitwin.surrogate.population.train_population`) with the search's recipe and
early stopping on the held-out points, then refitted briefly on all points.
``EnsembleRecipe.paper()`` keeps the best trials' own networks instead, as the paper did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.surrogate.network import check_activation
from bluesky_digitwin.surrogate.population import train_group
from bluesky_digitwin.surrogate.training import TrainConfig, TrainResult

if TYPE_CHECKING:
    import keras

    from bluesky_digitwin.surrogate.search import SplitData

__all__ = [
    "REFERENCE_CONFIGURATION",
    "EnsembleRecipe",
    "Member",
    "TrainedEnsemble",
    "train_members",
]


#: The reference network: wide and shallow, at a moderate learning rate. On ErCo2 its members
#: gave |ΔS_M| RMSE 1.0-1.6 J/(kg K) where the search's usual pick (7 narrow layers near the
#: top of the learning-rate range, chosen on pointwise error) gave 1.2-3.5 (benchmarks/).
REFERENCE_CONFIGURATION: dict[str, Any] = {
    "n_layers": 3,
    "n_units": 200,
    "learning_rate": 1e-3,
    "activation": "silu",
}


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
        the reference of the previous default.
    reference_steps
        The reference networks' batch is small enough for at least this many Adam steps an
        epoch (but at least 16 points); ``None`` keeps the search's smallest batch. The
        paper's batch sizes give a 300-point scan 5 steps an epoch, too few to learn an
        oscillating map in 500 epochs; from about 640 training points on (ErCo2's size) the
        default changes nothing.
    """

    size: int = 12
    configurations: int = 1
    reference: bool = True
    retrain: bool = True
    reference_activation: str = "silu"
    reference_steps: int | None = 10

    def __post_init__(self) -> None:
        if self.size < 1:
            raise DigitwinInputError(
                f"the ensemble needs at least one network; got size {self.size}"
            )
        if self.configurations < 0 or (self.configurations == 0 and not self.reference):
            raise DigitwinInputError(
                "EnsembleRecipe.configurations must be at least 1 (or 0 with reference=True), "
                f"got {self.configurations}"
            )
        check_activation(self.reference_activation)
        if self.reference_steps is not None and self.reference_steps < 1:
            raise DigitwinInputError(
                f"EnsembleRecipe.reference_steps must be at least 1, got {self.reference_steps}"
            )

    @classmethod
    def paper(cls, size: int = 5) -> EnsembleRecipe:
        """The paper's ensemble: the ``size`` best trials' own networks."""
        return cls(size=size, retrain=False)

    def plan(
        self,
        trials: Sequence[tuple[int, dict[str, Any]]],
        batch_sizes: Sequence[int],
        n_train: int | None = None,
    ) -> list[tuple[int | None, dict[str, Any], int]]:
        """``(trial or None, hyperparameters, networks)`` for each configuration to train.

        ``trials`` are the eligible trials' numbers and hyperparameters, best first. The
        networks are dealt out in turn, best trial first, so each configuration gets an even
        share of ``size``. The reference's batch is the smallest of ``batch_sizes``, or
        smaller for ``reference_steps`` steps an epoch over ``n_train`` training points.
        """
        reference_batch = int(min(batch_sizes))
        if n_train is not None and self.reference_steps is not None:
            reference_batch = min(reference_batch, max(16, n_train // self.reference_steps))
        groups: list[tuple[int | None, dict[str, Any]]] = [
            (number, dict(params)) for number, params in trials[: self.configurations]
        ]
        if self.reference:
            groups.append(
                (
                    None,
                    {
                        **REFERENCE_CONFIGURATION,
                        "activation": self.reference_activation,
                        "batch_size": reference_batch,
                        "l2": 0.0,
                        "dropout": 0.0,
                        "regularization": "none",
                    },
                )
            )
        counts = [0] * len(groups)
        for i in range(self.size):
            counts[i % len(groups)] += 1
        return [(n, p, c) for (n, p), c in zip(groups, counts, strict=True) if c > 0]


@dataclass
class Member:
    """One network of the ensemble (on scaled data), with how it was made."""

    model: keras.Model
    params: dict[str, Any]
    seed: int
    source_trial: int | None
    result: TrainResult


@dataclass
class TrainedEnsemble:
    """The networks, and the ensemble's prediction of the held-out points before the refit.

    ``validation_prediction`` (scaled) comes from networks that had not seen those points: it is
    what :func:`~bluesky_digitwin.holdout.compare_on_holdout` scores the twin with.
    """

    members: list[Member]
    validation_prediction: np.ndarray


def train_members(
    plan: Sequence[tuple[int | None, dict[str, Any], int]],
    split: SplitData,
    *,
    train_config: TrainConfig,
    refit_epochs: int,
    seed: int = 0,
) -> TrainedEnsemble:
    """Train new networks of each planned configuration, then refit them on all points.

    Parameters
    ----------
    plan
        ``(trial or None, hyperparameters, networks)`` from :meth:`EnsembleRecipe.plan`.
    split
        The search's scaled training and held-out points.
    train_config
        The search's training recipe (epochs, early stopping on the held-out points).
    refit_epochs
        Then this many epochs on all the points at the final learning rate (0: none).
    seed
        Base of the networks' seeds (each network gets its own).
    """
    from bluesky_digitwin.surrogate.network import build_mlp

    x_all = np.concatenate([split.x_train, split.x_val])
    y_all = np.concatenate([split.y_train, split.y_val])
    refit = replace(
        train_config,
        max_epochs=max(refit_epochs, 1),
        patience=max(refit_epochs, 1),
        lr_drop_epoch=max(refit_epochs, 1),
    )
    members: list[Member] = []
    validation = []
    for rank, (trial_number, params, count) in enumerate(plan):
        seeds = [(seed * 1_000_003 + rank * 10_007 + j) % (2**31 - 1) for j in range(count)]
        models = [
            build_mlp(
                split.x_train.shape[1],
                int(params["n_layers"]),
                int(params["n_units"]),
                l2=float(params.get("l2", 0.0)),
                dropout=float(params.get("dropout", 0.0)),
                activation=str(params.get("activation", "relu")),
                seed=s,
            )
            for s in seeds
        ]
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
            config=train_config,
        )
        validation.extend(np.asarray(m(split.x_val, training=False)).reshape(-1) for m in models)
        if refit_epochs > 0:
            # The held-out points join in: a short, gentle continuation at the final learning
            # rate, keeping the weights with the lowest loss over all points.
            train_group(
                models,
                x_all,
                y_all,
                None,
                None,
                batch_size=batch,
                learning_rates=[rate / train_config.lr_drop_factor] * count,
                seeds=[s + 1 for s in seeds],
                config=refit,
            )
        members.extend(
            Member(model=m, params=dict(params), seed=s, source_trial=trial_number, result=r)
            for m, s, r in zip(models, seeds, results, strict=True)
        )
    return TrainedEnsemble(members, np.mean(validation, axis=0))
