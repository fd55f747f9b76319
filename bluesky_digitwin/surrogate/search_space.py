"""Where the hyperparameter search looks: the paper's space, or the default SiLU one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from bluesky_digitwin.errors import DigitwinInputError

__all__ = ["SearchSpace", "default_batch_sizes"]


def default_batch_sizes(n_points: int) -> tuple[int, ...]:
    """The paper's batch-size choices by data size."""
    if n_points < 256:
        return (16, 32, 64)
    if n_points < 1024:
        return (64, 128, 256)
    if n_points < 4096:
        return (128, 256, 512)
    return (256, 512, 1024)


@dataclass(frozen=True)
class SearchSpace:
    """Where the search looks. Defaults are the paper's space with SiLU instead of ReLU, plus
    an optional L2 penalty; :meth:`paper` is the paper's own.

    Attributes
    ----------
    n_layers, n_units
        Inclusive integer ranges of hidden layers and of nodes per layer.
    learning_rate
        Range of Adam's initial learning rate, searched on a log scale.
    batch_sizes
        Choices of batch size; ``None`` picks them by data size (:func:`default_batch_sizes`).
    l2
        Log range of the L2 penalty, offered as a choice beside "none"; ``None`` never
        regularises.
    dropout
        Range of the dropout rate, offered as a choice beside "none"; ``None`` (default) never
        uses dropout.
    activations
        Hidden-layer activations to choose from (names in
        :data:`~bluesky_digitwin.surrogate.network.ACTIVATIONS`). SiLU by default: smooth, so
        the derivative a derived quantity integrates is smooth too, where a ReLU network's is
        piecewise constant; on the fidelity benchmark it cut the |ΔS_M| error between widely
        spaced fields by a third or more (benchmarks/RESULTS.md). The paper's is ReLU.
    """

    n_layers: tuple[int, int] = (2, 10)
    n_units: tuple[int, int] = (50, 200)
    learning_rate: tuple[float, float] = (5e-4, 5e-3)
    batch_sizes: tuple[int, ...] | None = None
    l2: tuple[float, float] | None = (1e-7, 1e-3)
    dropout: tuple[float, float] | None = None
    activations: tuple[str, ...] = ("silu",)

    @classmethod
    def paper(cls, **changes: Any) -> SearchSpace:
        """The paper's space: ReLU networks, no L2 penalty (``changes`` override fields).

        The paper's training, 500 epochs a network, is ``TrainConfig.paper()``;
        ``digitwin fit --paper-search`` takes both.
        """
        return cls(**{"activations": ("relu",), "l2": None, **changes})

    def __post_init__(self) -> None:
        from bluesky_digitwin.surrogate.network import check_activation

        if isinstance(self.activations, str) or not self.activations:
            raise DigitwinInputError(
                "SearchSpace.activations must be a non-empty tuple of names, e.g. "
                f"('relu', 'silu'); got {self.activations!r}"
            )
        for name in self.activations:
            check_activation(name)

    def batch_choices(self, n_points: int) -> tuple[int, ...]:
        """The batch sizes offered for ``n_points`` points: ``batch_sizes``, or by data size."""
        return tuple(self.batch_sizes or default_batch_sizes(n_points))

    def suggest(self, trial: optuna.Trial, n_points: int) -> dict[str, Any]:
        """Ask ``trial`` for one set of hyperparameters."""
        params: dict[str, Any] = {
            "n_layers": trial.suggest_int("n_layers", *self.n_layers),
            "n_units": trial.suggest_int("n_units", *self.n_units),
            "learning_rate": trial.suggest_float("learning_rate", *self.learning_rate, log=True),
            "batch_size": trial.suggest_categorical(
                "batch_size", list(self.batch_choices(n_points))
            ),
            "l2": 0.0,
            "dropout": 0.0,
            "activation": trial.suggest_categorical("activation", list(self.activations)),
        }
        choices = ["none"]
        if self.l2 is not None:
            choices.append("l2")
        if self.dropout is not None:
            choices.append("dropout")
        if len(choices) > 1:
            regularization = trial.suggest_categorical("regularization", choices)
            if regularization == "l2":
                params["l2"] = trial.suggest_float("l2", *self.l2, log=True)
            elif regularization == "dropout":
                params["dropout"] = trial.suggest_float("dropout", *self.dropout)
        return params
