"""A compiled training loop for the small surrogate networks.

Keras' ``model.fit`` pays Python overhead on every batch and every epoch (iterators, callbacks,
logs). Our networks are tiny, so that overhead is most of the time. Here a whole chunk of epochs
(shuffling, all batches, the validation loss, keeping the best weights) runs as one compiled
TensorFlow graph, and Python only looks in between chunks: to report to a pruner and to stop.

The recipe is the paper's (Terashima et al. 2023): Adam on the mean squared error, early
stopping that restores the best weights, and the learning rate divided by 5 after 100 *epochs*
(the paper's code counted optimizer steps by mistake). The paper trains at most 500 epochs
(:meth:`TrainConfig.paper`); by default a network here trains at most 250, which kept the
derived quantities of the fidelity benchmark within the seeds' spread and made a cold fit
faster (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bluesky_digitwin.surrogate.precision import check_precision

if TYPE_CHECKING:
    import keras

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingArrays",
    "grappler_disabled",
    "slope_penalty",
    "slope_points",
    "train",
]


@dataclass(frozen=True)
class TrainConfig:
    """How one network is trained.

    Attributes
    ----------
    max_epochs
        Upper bound of epochs: 250 by default, the paper's 500 with :meth:`paper`. The learning
        rate drops at epoch 100, so 250 leaves 150 epochs at the lower rate, and early stopping
        ends most networks before either bound. Against 500, on the fidelity benchmark's
        magnets (five seeds each, ErCo2 ten) the derived quantities stayed within the seeds'
        spread and a cold ErCo2 ``digitwin fit`` was 12-15 % shorter (median 1.29 times a
        one-network script's time against 1.52 in one run, 1.38 against 1.56 in another;
        benchmarks/RESULTS.md, "Every network at most 250 epochs: the new default").
    patience
        Early stopping: stop when the validation loss has not improved for this many epochs.
    lr_drop_epoch, lr_drop_factor
        Divide the learning rate by ``lr_drop_factor`` from epoch ``lr_drop_epoch`` on.
    chunk_epochs
        Epochs run inside one compiled call; Python reports and checks for stopping in between.
    jit_compile
        Also compile the chunk with XLA. Off by default: on CPU it compiled slower and ran
        about twice slower per epoch for these networks (TensorFlow 2.21, benchmarks/).
    reference_points
        The epoch counts above (and the epochs reported to a pruner) are passes over this many
        training points. With more points, one real epoch counts as ``n / reference_points`` of
        them: a 24 000-point training set trains at most 171 real epochs and meets ASHA's first
        rung after 9, so a 30-trial search of the ARPES map takes minutes, not the 12 it took
        counting real epochs (benchmarks/RESULTS.md). Tables up to this size (the paper's
        magnetisation data) are unaffected. ``None`` counts real epochs whatever the size.
    monotonic
        Shape knowledge: ``(feature index, +1 or -1)`` pairs for a target that increases (+1)
        or decreases (-1) with that feature, e.g. magnetisation with field. Each step then
        also penalises the network's slope where it has the wrong sign, at random points
        spread over the whole box the training points span: between the measured lines,
        where the data say nothing, as much as on them.
    monotonic_weight
        Weight of that penalty against the mean squared error (both on scaled data).
    precision
        ``"auto"``, ``"float32"`` or ``"mixed_bfloat16"``: the arithmetic of the population
        trainer's hidden-to-hidden matmuls (:mod:`~bluesky_digitwin.surrogate.precision`).
        ``"auto"`` takes bfloat16 where the CPU multiplies it natively. :func:`train` (a
        Keras network alone) always trains in float32.
    """

    max_epochs: int = 250
    patience: int = 30
    lr_drop_epoch: int = 100
    lr_drop_factor: float = 5.0
    chunk_epochs: int = 10
    jit_compile: bool = False
    reference_points: int | None = 8192
    monotonic: tuple[tuple[int, int], ...] = ()
    monotonic_weight: float = 1.0
    precision: str = "auto"

    def __post_init__(self) -> None:
        check_precision(self.precision)
        # From JSON (a study record, twin.json) the pairs come back as lists.
        pairs = tuple((int(index), int(sign)) for index, sign in self.monotonic)
        object.__setattr__(self, "monotonic", pairs)
        for index, sign in pairs:
            if index < 0 or sign not in (1, -1):
                raise ValueError(
                    f"monotonic pairs are (feature index >= 0, +1 or -1), got {(index, sign)}"
                )
        if len({index for index, _ in pairs}) != len(pairs):
            raise ValueError(f"monotonic names a feature twice: {pairs}")
        if not self.monotonic_weight > 0:
            raise ValueError(f"monotonic_weight must be > 0, got {self.monotonic_weight}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.chunk_epochs < 1:
            raise ValueError(f"chunk_epochs must be >= 1, got {self.chunk_epochs}")
        if self.lr_drop_factor <= 0:
            raise ValueError(f"lr_drop_factor must be > 0, got {self.lr_drop_factor}")
        if self.reference_points is not None and self.reference_points < 1:
            raise ValueError(f"reference_points must be >= 1, got {self.reference_points}")

    @classmethod
    def paper(cls, **changes: Any) -> TrainConfig:
        """The paper's training: at most 500 epochs (``changes`` override fields).

        Epochs are still counted in passes over ``reference_points``; the paper counted real
        epochs (``reference_points=None``), which makes a 30 000-point map's search take
        minutes longer.
        """
        return cls(**{"max_epochs": 500, **changes})

    def is_large_map(self, n_points: int) -> bool:
        """Whether ``n_points`` is above ``reference_points``: a large map, where epochs are
        counted in passes over that many points (and the paper's ensemble is the default)."""
        return self.reference_points is not None and n_points > self.reference_points

    def in_real_epochs(self, n_points: int) -> tuple[float, TrainConfig]:
        """The size of a real epoch in counted epochs, and this recipe in real epochs.

        For ``n_points`` training points: ``(1.0, self)`` up to ``reference_points``.
        """
        if not self.is_large_map(n_points):
            return 1.0, self
        unit = n_points / self.reference_points

        def real(epochs: int) -> int:
            return max(1, math.ceil(epochs / unit))

        return unit, replace(
            self,
            max_epochs=real(self.max_epochs),
            patience=real(self.patience),
            lr_drop_epoch=real(self.lr_drop_epoch),
            chunk_epochs=max(1, round(self.chunk_epochs / unit)),
            reference_points=None,
        )

    def as_trained(self, n_points: int) -> tuple[float, TrainConfig]:
        """What this recipe does to ``n_points`` training points.

        The size of a real epoch in counted epochs, and the recipe in real epochs without
        ``reference_points`` (which only sets the first). Two recipes that give the same train
        the same networks and report the same epochs to a pruner, e.g. any two
        ``reference_points`` of at least ``n_points``.
        """
        unit, real = self.in_real_epochs(n_points)
        return unit, replace(real, reference_points=None)


@dataclass
class TrainResult:
    """What happened while training one network.

    ``best_loss`` is the validation MSE (on scaled data) of the restored weights, or the training
    MSE when there was no validation set. ``history`` and ``learning_rates`` have one entry per
    epoch run.
    """

    best_loss: float
    best_epoch: int
    epochs_run: int
    stopped_by: str  # "max_epochs", "early_stopping", "pruned" or "diverged"
    history: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TrainingArrays:
    """Data and recipe as a training loop uses them: float32, the target as a column, epochs
    counted as ``TrainConfig.reference_points`` says, the batch no larger than the data, and
    the training points standing in for a validation set that was not given."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    batch_size: int
    unit: float
    config: TrainConfig

    @property
    def directions(self) -> np.ndarray:
        """Per feature: +1 increasing, -1 decreasing, 0 free (``config.monotonic``)."""
        directions = np.zeros(self.x.shape[1], np.float32)
        for index, sign in self.config.monotonic:
            if index >= len(directions):
                raise ValueError(
                    f"monotonic names feature {index}, but the data have "
                    f"{len(directions)} feature(s)"
                )
            directions[index] = sign
        return directions

    @classmethod
    def of(
        cls,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray | None,
        y_val: np.ndarray | None,
        batch_size: int,
        config: TrainConfig | None,
    ) -> TrainingArrays:
        x = np.asarray(x_train, np.float32)
        y = np.asarray(y_train, np.float32).reshape(-1, 1)
        unit, config = (config or TrainConfig()).in_real_epochs(len(x))
        if x_val is not None and y_val is not None and len(x_val) > 0:
            xv = np.asarray(x_val, np.float32)
            yv = np.asarray(y_val, np.float32).reshape(-1, 1)
        else:
            xv, yv = x, y
        return cls(x, y, xv, yv, int(max(1, min(batch_size, len(x)))), unit, config)


def slope_points(tf, seed_pair, step, n_points: int, low, high):
    """Where a step checks the slopes: ``n_points`` uniform random points in ``[low, high]``.

    Drawn from the network's seed and the step number, so a network trained alone and the
    same network trained in a population see the same points.
    """
    draw = tf.random.stateless_uniform(
        [n_points, len(low)], seed=seed_pair + tf.stack([tf.constant(1, tf.int64), step])
    )
    return low + (high - low) * draw


def slope_penalty(tf, forward, points, directions):
    """Squared wrong-sign slopes of ``forward`` at ``points``, mean over points.

    ``points`` is ``(points, features)`` or ``(members, points, features)``; the members'
    penalties are summed, as their losses are. ``directions`` is +1, -1 or 0 per feature.
    """
    with tf.GradientTape() as inner:
        inner.watch(points)
        total = tf.reduce_sum(forward(points))
    # Each member's output depends on its own points only, so this is each one's own slope.
    slopes = inner.gradient(total, points)
    wrong = tf.nn.relu(-directions * slopes)
    return tf.reduce_sum(tf.reduce_mean(tf.reduce_sum(tf.square(wrong), axis=-1), axis=-1))


# Called after each chunk with (epochs done, best loss so far); returning True stops training.
StopCheck = Callable[[int, float], bool]


def train(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    config: TrainConfig | None = None,
    seed: int = 0,
    should_stop: StopCheck | None = None,
) -> TrainResult:
    """Train ``model`` (scaled inputs to a scaled target) in place and restore its best weights.

    Parameters
    ----------
    model
        A network from :func:`~bluesky_digitwin.surrogate.network.build_mlp`.
    x_train, y_train
        Scaled training data, shapes (n, n_features) and (n,).
    x_val, y_val
        Scaled validation data. Without it, the loss watched for early stopping and for the best
        weights is the training loss (used when refitting on all data).
    batch_size, learning_rate
        Adam's batch size and initial learning rate.
    config
        Epoch limits, early stopping and the learning-rate drop.
    seed
        Seed of the shuffling.
    should_stop
        Called after each chunk of epochs with ``(epochs_done, best_loss)``, epochs counted as
        ``config`` counts them (see ``TrainConfig.reference_points``); return True to stop (an
        Optuna pruner's verdict, for example).

    Returns
    -------
    TrainResult
        With ``best_epoch`` and ``epochs_run`` in real epochs.
    """
    from bluesky_digitwin.tensorflow_runtime import (  # TensorFlow loads only when training starts
        keras,
        tf,
    )

    data = TrainingArrays.of(x_train, y_train, x_val, y_val, batch_size, config)
    x_train, y_train, xv, yv = data.x, data.y, tf.constant(data.x_val), tf.constant(data.y_val)
    n, unit, config, batch_size = len(data.x), data.unit, data.config, data.batch_size

    n_batches = math.ceil(n / batch_size)
    # The learning rate is a variable that Python lowers between chunks, at an epoch boundary.
    # (A Keras LearningRateSchedule would do the same inside the graph but costs ~0.4 ms a step.)
    optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
    weights = model.trainable_variables
    optimizer.build(weights)
    best_weights = [tf.Variable(w.value, trainable=False) for w in weights]
    best_loss = tf.Variable(np.inf, dtype=tf.float32, trainable=False)
    best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)

    x_all = tf.constant(x_train)
    y_all = tf.constant(y_train)
    # Every batch has the same static shape (XLA wants that): the shuffled indices are padded to
    # a whole number of batches and the padding is masked out of the loss, which makes the last,
    # short batch exactly what Keras would compute for it.
    padded = n_batches * batch_size
    mask = tf.constant((np.arange(padded) < n).astype(np.float32).reshape(n_batches, batch_size, 1))
    seed_pair = tf.constant([seed, 0], dtype=tf.int64)
    has_regularization = bool(model.losses)
    directions = tf.constant(data.directions)
    monotonic = bool(config.monotonic)
    low, high = tf.constant(data.x.min(axis=0)), tf.constant(data.x.max(axis=0))

    def run_chunk(first_epoch, n_epochs):
        losses = tf.TensorArray(tf.float32, size=n_epochs)
        for i in tf.range(n_epochs):
            epoch = tf.cast(first_epoch, tf.int64) + tf.cast(i, tf.int64)
            # A random permutation from sorting uniform keys (XLA has no shuffle op).
            keys = tf.random.stateless_uniform(
                [n], seed=seed_pair + tf.stack([tf.constant(0, tf.int64), epoch])
            )
            order = tf.argsort(keys)
            order = tf.reshape(tf.pad(order, [[0, padded - n]]), (n_batches, batch_size))
            for b in tf.range(n_batches):
                xb = tf.gather(x_all, order[b])
                yb = tf.gather(y_all, order[b])
                mb = mask[b]
                with tf.GradientTape() as tape:
                    pred = model(xb, training=True)
                    loss = tf.reduce_sum(mb * tf.square(pred - yb)) / tf.reduce_sum(mb)
                    if has_regularization:
                        loss += tf.add_n(model.losses)
                    if monotonic:
                        step = epoch * n_batches + tf.cast(b, tf.int64)
                        points = slope_points(tf, seed_pair, step, batch_size, low, high)
                        loss += config.monotonic_weight * slope_penalty(
                            tf, lambda p: model(p, training=True), points, directions
                        )
                grads = tape.gradient(loss, weights)
                optimizer.apply_gradients(zip(grads, weights, strict=True))
            val_loss = tf.reduce_mean(tf.square(model(xv, training=False) - yv))
            losses = losses.write(i, val_loss)
            if val_loss < best_loss:
                best_loss.assign(val_loss)
                best_epoch.assign(epoch)
                for keep, w in zip(best_weights, weights, strict=True):
                    keep.assign(w)
        return losses.stack()

    compiled = tf.function(run_chunk, jit_compile=config.jit_compile, reduce_retracing=True)

    history: list[float] = []
    learning_rates: list[float] = []
    stopped_by = "max_epochs"
    epochs_done = 0
    while epochs_done < config.max_epochs:
        n_epochs = min(config.chunk_epochs, config.max_epochs - epochs_done)
        if epochs_done < config.lr_drop_epoch:
            # End the chunk at the drop so the drop happens at exactly that epoch.
            n_epochs = min(n_epochs, config.lr_drop_epoch - epochs_done)
        else:
            optimizer.learning_rate = float(learning_rate) / config.lr_drop_factor
        learning_rates.extend([float(optimizer.learning_rate.numpy())] * n_epochs)
        # The first call traces and instantiates the graph: do that without Grappler.
        with grappler_disabled(tf) if epochs_done == 0 else contextlib.nullcontext():
            chunk_losses = compiled(
                tf.constant(epochs_done, tf.int64), tf.constant(n_epochs, tf.int32)
            ).numpy()
        history.extend(float(v) for v in chunk_losses)
        epochs_done += n_epochs
        if not np.isfinite(chunk_losses).all():
            stopped_by = "diverged"
            break
        since_best = epochs_done - 1 - int(best_epoch.numpy())
        if since_best >= config.patience:
            stopped_by = "early_stopping"
            break
        counted = round(epochs_done * unit)
        if should_stop is not None and should_stop(counted, float(best_loss.numpy())):
            stopped_by = "pruned"
            break

    if int(best_epoch.numpy()) >= 0:
        for keep, w in zip(best_weights, weights, strict=True):
            w.assign(keep)
    return TrainResult(
        best_loss=float(best_loss.numpy()),
        best_epoch=int(best_epoch.numpy()),
        epochs_run=epochs_done,
        stopped_by=stopped_by,
        history=history,
        learning_rates=learning_rates,
    )


_grappler_lock = threading.Lock()


@contextlib.contextmanager
def grappler_disabled(tf):
    """Instantiate graphs without TensorFlow's Grappler optimizer passes.

    Each search trial compiles a new graph, and Grappler's passes cost about 0.5 s a graph
    while making these small loops no faster (benchmarks/RESULTS.md). The option is global in
    TensorFlow, so it is switched off only around the instantiating call and restored after.
    """
    with _grappler_lock:
        before = tf.config.optimizer.get_experimental_options()
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
        try:
            yield
        finally:
            tf.config.optimizer.set_experimental_options(
                {"disable_meta_optimizer": bool(before.get("disable_meta_optimizer", False))}
            )
