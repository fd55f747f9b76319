"""Train many networks of one shape at once, in one compiled computation.

The surrogate networks are small: one 5x160 network on 808 points is about 0.4 GFLOP an epoch,
which two CPU cores run in about 1.5 ms, yet :func:`~bluesky_digitwin.surrogate.training.train`
takes about 16 ms an epoch. The rest is per-operation overhead (one matmul, one bias, one Adam
update at a time). Here ``k`` networks of the same depth and width are stacked: each layer is one
batched matmul over ``(k, batch, width)``, each Adam update one op for all members, so ``k``
networks pay the overhead once. Each member keeps its own initial weights, learning rate, L2
penalty, shuffling seed, early stopping and best weights: the result is what training each one
alone with :func:`~bluesky_digitwin.surrogate.training.train` gives (to float rounding;
``tests/surrogate/test_population.py`` checks it).

The members are ordinary Keras models from
:func:`~bluesky_digitwin.surrogate.network.build_mlp`; their weights are read at the start and
the best ones written back at the end, so everything downstream (saving, the scaling wrapper,
``safe_mode`` loading) is unchanged.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bluesky_digitwin.surrogate.training import (
    TrainConfig,
    TrainingArrays,
    TrainResult,
    grappler_disabled,
    slope_penalty,
    slope_points,
)

if TYPE_CHECKING:
    import keras

__all__ = [
    "PopulationStopCheck",
    "activation_name",
    "dense_layers",
    "train_group",
    "train_population",
]

#: Called after each chunk with (epochs done, best loss of each member, still training); returns
#: a bool per member, True to stop that member (an Optuna pruner's verdict, for example).
PopulationStopCheck = Callable[[int, np.ndarray, np.ndarray], Sequence[bool]]

# Keras' Adam defaults, which train() uses.
_BETA_1 = 0.9
_BETA_2 = 0.999
_EPSILON = 1e-7


def dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    """The Dense layers of a network from ``build_mlp``, input side first.

    Raises
    ------
    ValueError
        The network has layers a population cannot stack (dropout, anything but Dense).
    """
    from bluesky_digitwin._tf import keras

    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if not isinstance(layer, keras.layers.Dense):
            raise ValueError(
                f"a population trains stacks of Dense layers only; {model.name} has "
                f"{type(layer).__name__} {layer.name!r} (train it alone with train())"
            )
        layers.append(layer)
    return layers


def activation_name(layer: keras.layers.Dense) -> str:
    """The Keras name of a Dense layer's activation (``"relu"``, ``"silu"``, ...)."""
    from bluesky_digitwin._tf import keras

    return str(keras.activations.serialize(layer.activation))


def _layer_l2(layer: Any) -> float:
    regularizer = layer.kernel_regularizer
    return 0.0 if regularizer is None else float(regularizer.get_config().get("l2", 0.0))


def train_population(
    models: Sequence[keras.Model],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    batch_size: int,
    learning_rates: Sequence[float],
    seeds: Sequence[int],
    config: TrainConfig | None = None,
    should_stop: PopulationStopCheck | None = None,
) -> list[TrainResult]:
    """Train ``models`` (same depth and width) together, in place; restore each one's best.

    Parameters
    ----------
    models
        Networks from :func:`~bluesky_digitwin.surrogate.network.build_mlp` with the same
        number of features, layers and units (their L2 penalties may differ).
    x_train, y_train, x_val, y_val
        Scaled data, shared by all members, as for
        :func:`~bluesky_digitwin.surrogate.training.train`.
    batch_size
        Adam's batch size, shared by all members.
    learning_rates, seeds
        One per member: initial learning rate and shuffling seed.
    config
        Epoch limits, early stopping (per member) and the learning-rate drop (all at once).
    should_stop
        Called after each chunk of epochs with ``(epochs_done, best_losses, active)``; return a
        bool per member, True to stop it (it counts as "pruned").

    Returns
    -------
    list of TrainResult
        One per member, in order, as :func:`~bluesky_digitwin.surrogate.training.train` reports.
    """
    from bluesky_digitwin._tf import tf

    k = len(models)
    if k == 0:
        raise ValueError("a population needs at least one network")
    if len(learning_rates) != k or len(seeds) != k:
        raise ValueError(
            f"give one learning rate and one seed per network: {k} networks, "
            f"{len(learning_rates)} learning rates, {len(seeds)} seeds"
        )
    stacks = [dense_layers(m) for m in models]
    shapes = [[tuple(layer.kernel.shape) for layer in layers] for layers in stacks]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(
            "the networks of a population must have the same depth and width; got "
            + ", ".join(str([w[1] for w in s[:-1]]) for s in shapes)
        )
    activations = {activation_name(layers[0]) for layers in stacks}
    if len(activations) > 1:
        raise ValueError(
            "the networks of a population must share one activation; got "
            + ", ".join(sorted(activations))
        )
    hidden_activation = stacks[0][0].activation

    data = TrainingArrays.of(x_train, y_train, x_val, y_val, batch_size, config)
    x_train, y_train, xv, yv = data.x, data.y, tf.constant(data.x_val), tf.constant(data.y_val)
    n, unit, config, batch_size = len(data.x), data.unit, data.config, data.batch_size

    n_layers = len(shapes[0])
    # Stacked weights: kernels (k, in, out), biases (k, 1, out); one Adam state per variable.
    kernels = [
        tf.Variable(np.stack([s[i].kernel.numpy() for s in stacks])) for i in range(n_layers)
    ]
    biases = [
        tf.Variable(np.stack([s[i].bias.numpy()[None, :] for s in stacks])) for i in range(n_layers)
    ]
    weights = [w for pair in zip(kernels, biases, strict=True) for w in pair]
    # Each member's L2 penalty per layer (build_mlp regularises the hidden kernels only).
    l2 = [
        tf.constant(np.array([_layer_l2(s[i]) for s in stacks], np.float32).reshape(k, 1, 1))
        for i in range(n_layers)
    ]
    has_regularization = any(float(tf.reduce_max(c)) > 0 for c in l2)
    moments = [tf.Variable(tf.zeros_like(w)) for w in weights]
    velocities = [tf.Variable(tf.zeros_like(w)) for w in weights]
    steps = tf.Variable(tf.zeros((k, 1, 1), tf.float32))
    rates = tf.Variable(np.asarray(learning_rates, np.float32).reshape(k, 1, 1))
    best_weights = [tf.Variable(w.value(), trainable=False) for w in weights]
    best_loss = tf.Variable(np.full(k, np.inf, np.float32))
    best_epoch = tf.Variable(np.full(k, -1, np.int64))

    def forward(x):
        # x: (k, points, features), or (1, points, features) broadcast over the members.
        h = x
        for i in range(n_layers):
            h = tf.matmul(h, kernels[i]) + biases[i]
            if i < n_layers - 1:
                h = hidden_activation(h)
        return h

    x_all = tf.constant(x_train)
    y_all = tf.constant(y_train)
    n_batches = math.ceil(n / batch_size)
    padded = n_batches * batch_size
    # Padding to whole batches, masked out of the loss, as train() does.
    mask = tf.constant((np.arange(padded) < n).astype(np.float32).reshape(n_batches, batch_size, 1))
    seed_pairs = [tf.constant([int(s), 0], dtype=tf.int64) for s in seeds]
    xv_batch, yv_batch = xv[None], yv[None]
    directions = tf.constant(data.directions)
    monotonic = bool(config.monotonic)
    low, high = tf.constant(data.x.min(axis=0)), tf.constant(data.x.max(axis=0))

    def run_chunk(first_epoch, n_epochs, active):
        # active: (k,) 1.0 for members still training; the others stay exactly as they are.
        gate = tf.reshape(active, (k, 1, 1))
        losses = tf.TensorArray(tf.float32, size=n_epochs)
        for i in tf.range(n_epochs):
            epoch = tf.cast(first_epoch, tf.int64) + tf.cast(i, tf.int64)
            # Each member's own permutation, drawn exactly as train() draws it from its seed.
            offset = tf.stack([tf.constant(0, tf.int64), epoch])
            order = tf.stack(
                [tf.argsort(tf.random.stateless_uniform([n], seed=p + offset)) for p in seed_pairs]
            )
            order = tf.reshape(tf.pad(order, [[0, 0], [0, padded - n]]), (k, n_batches, batch_size))
            for b in tf.range(n_batches):
                xb = tf.gather(x_all, order[:, b])  # (k, batch, features)
                yb = tf.gather(y_all, order[:, b])
                mb = mask[b]
                with tf.GradientTape() as tape:
                    pred = forward(xb)
                    # Members' losses are summed: each one's gradient is its own loss's.
                    loss = tf.reduce_sum(mb * tf.square(pred - yb)) / tf.reduce_sum(mb)
                    if has_regularization:
                        for c, w in zip(l2, kernels, strict=True):
                            loss += tf.reduce_sum(c * tf.square(w))
                    if monotonic:
                        step = epoch * n_batches + tf.cast(b, tf.int64)
                        points = tf.stack(
                            [slope_points(tf, p, step, batch_size, low, high) for p in seed_pairs]
                        )
                        loss += config.monotonic_weight * slope_penalty(
                            tf, forward, points, directions
                        )
                grads = tape.gradient(loss, weights)
                steps.assign_add(gate)
                alpha = rates * tf.sqrt(1 - _BETA_2**steps) / (1 - _BETA_1**steps)
                for w, g, m, v in zip(weights, grads, moments, velocities, strict=True):
                    m.assign_add(gate * (g - m) * (1 - _BETA_1))
                    v.assign_add(gate * (tf.square(g) - v) * (1 - _BETA_2))
                    w.assign_sub(gate * alpha * m / (tf.sqrt(v) + _EPSILON))
            val_loss = tf.reduce_mean(tf.square(forward(xv_batch) - yv_batch), axis=[1, 2])
            losses = losses.write(i, val_loss)
            improved = tf.logical_and(val_loss < best_loss, active > 0)
            best_loss.assign(tf.where(improved, val_loss, best_loss))
            best_epoch.assign(tf.where(improved, epoch, best_epoch))
            keep = tf.reshape(improved, (k, 1, 1))
            for kept, w in zip(best_weights, weights, strict=True):
                kept.assign(tf.where(keep, w, kept))
        return losses.stack()

    compiled = tf.function(run_chunk, jit_compile=config.jit_compile, reduce_retracing=True)

    active = np.ones(k, bool)
    stopped_by = ["max_epochs"] * k
    histories: list[list[float]] = [[] for _ in range(k)]
    rate_logs: list[list[float]] = [[] for _ in range(k)]
    epochs_run = np.zeros(k, int)
    epochs_done = 0
    base_rates = np.asarray(learning_rates, np.float32)
    while epochs_done < config.max_epochs and active.any():
        n_epochs = min(config.chunk_epochs, config.max_epochs - epochs_done)
        if epochs_done < config.lr_drop_epoch:
            n_epochs = min(n_epochs, config.lr_drop_epoch - epochs_done)
            current = base_rates
        else:
            current = base_rates / np.float32(config.lr_drop_factor)
        rates.assign(current.reshape(k, 1, 1))
        with grappler_disabled(tf) if epochs_done == 0 else contextlib.nullcontext():
            chunk = compiled(
                tf.constant(epochs_done, tf.int64),
                tf.constant(n_epochs, tf.int32),
                tf.constant(active.astype(np.float32)),
            ).numpy()  # (epochs, k)
        epochs_done += n_epochs
        best = best_loss.numpy()
        best_at = best_epoch.numpy()
        for j in np.flatnonzero(active):
            histories[j].extend(float(v) for v in chunk[:, j])
            rate_logs[j].extend([float(current[j])] * n_epochs)
            epochs_run[j] = epochs_done
            if not np.isfinite(chunk[:, j]).all():
                stopped_by[j], active[j] = "diverged", False
            elif epochs_done - 1 - int(best_at[j]) >= config.patience:
                stopped_by[j], active[j] = "early_stopping", False
        if should_stop is not None and active.any():
            verdict = np.asarray(should_stop(round(epochs_done * unit), best, active.copy()), bool)
            for j in np.flatnonzero(active & verdict):
                stopped_by[j], active[j] = "pruned", False

    # Each member ends with its best weights (or, if it never improved, as it ended).
    best_at = best_epoch.numpy()
    best_values = [w.numpy() for w in best_weights]
    last_values = [w.numpy() for w in weights]
    for j, layers in enumerate(stacks):
        values = best_values if best_at[j] >= 0 else last_values
        for i, layer in enumerate(layers):
            layer.kernel.assign(values[2 * i][j])
            layer.bias.assign(values[2 * i + 1][j][0])
    return [
        TrainResult(
            best_loss=float(best_loss.numpy()[j]),
            best_epoch=int(best_at[j]),
            epochs_run=int(epochs_run[j]),
            stopped_by=stopped_by[j],
            history=histories[j],
            learning_rates=rate_logs[j],
        )
        for j in range(k)
    ]


def train_group(
    models: Sequence[keras.Model],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    batch_size: int,
    learning_rates: Sequence[float],
    seeds: Sequence[int],
    config: TrainConfig | None = None,
    should_stop: PopulationStopCheck | None = None,
) -> list[TrainResult]:
    """Train ``models`` of one configuration: as one population, or one by one if they
    cannot stack (dropout layers).

    Even a single network trains faster here than with
    :func:`~bluesky_digitwin.surrogate.training.train` (raw matmuls and one fused Adam update
    instead of Keras layers and optimizer; benchmarks/RESULTS.md), to the same result.
    Parameters as for :func:`train_population`.
    """
    from bluesky_digitwin.surrogate.training import train

    try:
        for model in models:
            dense_layers(model)
    except ValueError:
        results = []
        for j, (model, rate, seed) in enumerate(zip(models, learning_rates, seeds, strict=True)):
            alone = None
            if should_stop is not None:

                def alone(epochs: int, best: float, j: int = j) -> bool:
                    # As a population would ask: this member's loss, the only one active.
                    losses = np.full(len(models), np.inf)
                    losses[j] = best
                    verdict = should_stop(epochs, losses, np.arange(len(models)) == j)
                    return bool(verdict[j])

            results.append(
                train(
                    model,
                    x_train,
                    y_train,
                    x_val,
                    y_val,
                    batch_size=batch_size,
                    learning_rate=rate,
                    config=config,
                    seed=seed,
                    should_stop=alone,
                )
            )
        return results
    return train_population(
        models,
        x_train,
        y_train,
        x_val,
        y_val,
        batch_size=batch_size,
        learning_rates=learning_rates,
        seeds=seeds,
        config=config,
        should_stop=should_stop,
    )
