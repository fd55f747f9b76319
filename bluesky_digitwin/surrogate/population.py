"""Train many networks of one shape at once, in one compiled computation.

The surrogate networks are small: one 5x160 network on 808 points is about 0.43 GFLOP an
epoch, about 5-6 ms at the rate the benchmarks' 2-core CPU reaches on such matmuls (73-86
GFLOP/s), yet :func:`~bluesky_digitwin.surrogate.training.train` takes 13-16 ms an epoch. The
rest is per-operation overhead (one matmul, one bias, one Adam update at a time). Here ``k``
networks of the same depth and width are stacked: each layer is one batched matmul over ``(k,
batch, width)``, each Adam update one op for all members, so ``k`` networks pay the overhead
once. On one thread (a search worker of a two-worker fit) that saves about a fifth: a member
costs 10-11 ms an epoch whatever ``k``, the arithmetic itself being most of it. On two threads
sixteen networks train 2.3 times faster than one by one, near the matmul's rate
(benchmarks/RESULTS.md, "Many networks at once").

Three things cut the arithmetic's own cost. Where the CPU multiplies bfloat16 natively, the
hidden-to-hidden matmuls run in bfloat16 (``TrainConfig.precision``,
:mod:`~bluesky_digitwin.surrogate.precision`; benchmarks/RESULTS.md, "bfloat16 matmuls, a
fused Adam and fewer traced loops"); in a process of the package's own (the command line, a
search worker) oneDNN does that inside its matmuls, without Cast ops around them, and the
first and last layers are computed without a batched matmul so that they stay float32
("bfloat16 inside oneDNN's matmuls"). A population whose members share one learning rate (a
search trial, an ensemble group) updates each stacked variable with TensorFlow's fused Adam
kernel instead of a dozen element-wise ops. And SiLU's gradient reuses the sigmoid of its
forward pass (both: "A fused Adam for ensemble groups, and SiLU's gradient from its own
sigmoid").

Each member keeps its own initial weights, learning rate, L2 penalty, shuffling seed, early
stopping and best weights: in float32 the result is what training each one alone with
:func:`~bluesky_digitwin.surrogate.training.train` gives (to float rounding;
``tests/surrogate/test_population.py`` checks it).

The members are ordinary Keras models from
:func:`~bluesky_digitwin.surrogate.network.build_mlp`; their weights are read at the start and
the best ones written back at the end, so everything downstream (saving, the scaling wrapper,
``safe_mode`` loading) is unchanged.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from bluesky_digitwin.surrogate.precision import hidden_matmuls
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
    "traced_loops",
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
    from bluesky_digitwin.tensorflow_runtime import keras

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
    from bluesky_digitwin.tensorflow_runtime import keras

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
    compact: bool = True,
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
    compact
        When at most half the members still train (and 50 or more epochs may remain), go on
        with those alone in a smaller compiled loop, instead of computing the stopped
        members' steps and discarding them. The result is the same either way (each member's
        arithmetic is its own); a new loop size is traced once per process.

    Returns
    -------
    list of TrainResult
        One per member, in order, as :func:`~bluesky_digitwin.surrogate.training.train` reports.
    """
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
    data = TrainingArrays.of(x_train, y_train, x_val, y_val, batch_size, config)
    n, unit, config, batch_size = len(data.x), data.unit, data.config, data.batch_size
    n_layers = len(shapes[0])
    # Each member's L2 penalty per layer (build_mlp regularises the hidden kernels only).
    l2 = [
        np.array([_layer_l2(s[i]) for s in stacks], np.float32).reshape(k, 1, 1)
        for i in range(n_layers)
    ]
    monotonic = bool(config.monotonic)
    key = _GraphKey(
        members=k,
        n_layers=n_layers,
        n_features=data.x.shape[1],
        activation=activation_name(stacks[0][0]),
        monotonic=monotonic,
        monotonic_weight=float(config.monotonic_weight) if monotonic else 0.0,
        jit_compile=bool(config.jit_compile),
        hidden_matmuls=hidden_matmuls(config.precision),
        shared_rate=len({float(rate) for rate in learning_rates}) == 1,
    )
    return _train_with(
        key,
        stacks,
        data,
        l2,
        n,
        unit,
        config,
        batch_size,
        learning_rates,
        seeds,
        should_stop,
        compact,
    )


def _loop_activation(name: str) -> Callable[[Any], Any]:
    """The hidden layers' activation as the training loop computes it: Keras's, but SiLU
    with a backward pass that reuses the forward's sigmoid.

    TensorFlow's own SiLU recomputes ``sigmoid(beta * x)`` for its gradient (saving memory
    these small networks do not need) and also works out a gradient for ``beta``: ten
    element-wise ops a layer against six here, about a tenth of a six-network epoch
    (benchmarks/RESULTS.md, "A fused Adam for ensemble groups, and SiLU's gradient from its own
    sigmoid"). The values are the same; the gradient differs by rounding, and differentiates
    again for the slope penalty.
    """
    from bluesky_digitwin.tensorflow_runtime import keras, tf

    if name != "silu":
        return keras.activations.get(name)

    @tf.custom_gradient
    def silu(x: Any) -> Any:
        sigmoid = tf.sigmoid(x)
        y = x * sigmoid

        def gradient(dy: Any) -> Any:
            # d/dx x sigmoid(x) = sigmoid + x sigmoid (1 - sigmoid)
            return dy * (sigmoid + y * (1.0 - sigmoid))

        return y, gradient

    return silu


def _exact_first_layer(tf: Any, x: Any, kernel: Any) -> Any:
    """``x @ kernel`` in float32 without a batched matmul, which oneDNN may run in bfloat16.

    ``x`` is (k or 1, points, features), ``kernel`` (k, features, units). With a few features
    (a scan's axes) it is a broadcast product summed over the features (as a sum of one
    product per feature, its gradient's reductions made some processes' epochs a third
    slower); with many (Fourier features) one two-dimensional matmul a member, which oneDNN
    keeps in float32.
    """
    if x.shape[-1] <= 8:
        return tf.reduce_sum(x[:, :, :, None] * kernel[:, None, :, :], axis=2)
    k, shared = kernel.shape[0], x.shape[0] == 1
    return tf.stack([tf.matmul(x[0 if shared else j], kernel[j]) for j in range(k)])


def _exact_last_layer(tf: Any, h: Any, kernel: Any) -> Any:
    """``h @ kernel`` for a one-output layer, in float32: a product summed over the units."""
    return tf.reduce_sum(h * tf.transpose(kernel, [0, 2, 1]), axis=-1, keepdims=True)


class _AdamScalars(NamedTuple):
    """Tensors a training step's update reads that stay the same over a chunk of epochs."""

    rate: Any
    beta1: Any
    beta2: Any
    epsilon: Any
    l2_slopes: list[Any]  # 2 c per layer: the gradient of c * sum(w**2) is 2 c w


@dataclass(frozen=True)
class _GraphKey:
    """What shapes a population's compiled training loop; everything else is data to it.

    Widths, batch size, numbers of points, learning rates, seeds and L2 penalties (zero for
    none) are values in variables of relaxed shape, so a search's trials of one depth share
    one traced graph instead of tracing their own (0.1-1 s a trace, benchmarks/RESULTS.md).
    Whether the members share one learning rate is a shape: then Adam is one fused op a
    variable (a population of one always does).
    """

    members: int
    n_layers: int
    n_features: int
    activation: str
    monotonic: bool
    monotonic_weight: float
    jit_compile: bool
    hidden_matmuls: str
    shared_rate: bool


class _Graph:
    """One compiled training loop (``run_chunk``) and the variables it reads and updates.

    The variables have relaxed shapes (``None`` for widths and point counts): each training
    run assigns its own values, of its own sizes, and the traced graph stays valid.
    """

    def __init__(self, key: _GraphKey) -> None:
        from bluesky_digitwin.tensorflow_runtime import tf

        k, f, n_layers = key.members, key.n_features, key.n_layers
        self.key = key
        self.used = False  # not called yet: its first call instantiates the graph

        def variable(shape: list[int | None], dtype: Any = tf.float32, trainable=False) -> Any:
            zeros = np.zeros([1 if d is None else d for d in shape], dtype.as_numpy_dtype)
            return tf.Variable(zeros, shape=tf.TensorShape(shape), trainable=trainable)

        # Trainable: the gradient tape watches these (and only these).
        kernels = [variable([k, None, None], trainable=True) for _ in range(n_layers)]
        biases = [variable([k, 1, None], trainable=True) for _ in range(n_layers)]
        self.weights = [w for pair in zip(kernels, biases, strict=True) for w in pair]
        self.moments = [variable([k, None, None]) for _ in self.weights]
        self.velocities = [variable([k, None, None]) for _ in self.weights]
        self.best_weights = [variable([k, None, None]) for _ in self.weights]
        self.l2 = [variable([k, 1, 1]) for _ in range(n_layers)]
        self.steps = variable([k, 1, 1])
        self.rates = variable([k, 1, 1])
        self.best_loss = variable([k])
        self.best_epoch = variable([k], tf.int64)
        self.seeds = variable([k, 2], tf.int64)
        self.x = variable([None, f])
        self.y = variable([None, 1])
        self.x_val = variable([None, f])
        self.y_val = variable([None, 1])
        self.mask = variable([None, None, 1])
        self.low = variable([f])
        self.high = variable([f])
        self.directions = variable([f])

        hidden_activation = _loop_activation(key.activation)
        weights, moments, velocities = self.weights, self.moments, self.velocities
        best_weights, best_loss, best_epoch = self.best_weights, self.best_loss, self.best_epoch
        l2, steps, rates, seeds, mask = self.l2, self.steps, self.rates, self.seeds, self.mask

        def matmul(i, h):
            # Hidden to hidden in bfloat16 if asked: over 99 % of the arithmetic. The first
            # layer keeps the inputs' resolution, the last the output's; both cost little.
            hidden = 0 < i < n_layers - 1
            if key.hidden_matmuls == "bfloat16_casts" and hidden:
                product = tf.matmul(tf.cast(h, tf.bfloat16), tf.cast(kernels[i], tf.bfloat16))
                return tf.cast(product, tf.float32)
            if key.hidden_matmuls == "bfloat16_onednn" and not hidden:
                # Here oneDNN would run a batched matmul in bfloat16: not these two.
                if i == 0:
                    return _exact_first_layer(tf, h, kernels[0])
                return _exact_last_layer(tf, h, kernels[i])
            return tf.matmul(h, kernels[i])

        def forward(x):
            # x: (k, points, features), or (1, points, features) broadcast over the members.
            h = x
            for i in range(n_layers):
                h = matmul(i, h) + biases[i]
                if i < n_layers - 1:
                    h = hidden_activation(h)
            return h

        def adam_step(grads, gate, scalars):
            # The L2 penalty c * sum(w**2) of each kernel enters as its gradient, 2 c w, here
            # rather than in the loss: with c = 0 for networks without it, trials with and
            # without L2 share one traced loop (a 30-trial search traced 9 loops, not 15).
            grads = [
                g + scalars.l2_slopes[i // 2] * weights[i] if i % 2 == 0 else g
                for i, g in enumerate(grads)
            ]
            steps.assign_add(gate)
            if key.shared_rate:
                # One learning rate for all (a trial; an ensemble group): TensorFlow's fused
                # Adam kernel on the stacked variables, one op a variable instead of a dozen
                # (a third of a six-network epoch, 15 % of a one-network one). It updates a
                # stopped member too, but nothing reads that: its best weights are frozen
                # (``improved`` below) and compaction leaves it out. The members still training
                # have all taken the same steps, the most of any. The bias-correction powers
                # are made once a step and the other scalars once a chunk (``scalars``), not
                # once a variable: fewer ops for each depth's loop to trace.
                t = tf.reduce_max(steps)
                beta1_power, beta2_power = _BETA_1**t, _BETA_2**t
                for w, g, m, v in zip(weights, grads, moments, velocities, strict=True):
                    tf.raw_ops.ResourceApplyAdam(
                        var=w.handle,
                        m=m.handle,
                        v=v.handle,
                        beta1_power=beta1_power,
                        beta2_power=beta2_power,
                        lr=scalars.rate,
                        beta1=scalars.beta1,
                        beta2=scalars.beta2,
                        epsilon=scalars.epsilon,
                        grad=g,
                    )
                return
            alpha = rates * tf.sqrt(1 - _BETA_2**steps) / (1 - _BETA_1**steps)
            for w, g, m, v in zip(weights, grads, moments, velocities, strict=True):
                m.assign_add(gate * (g - m) * (1 - _BETA_1))
                v.assign_add(gate * (tf.square(g) - v) * (1 - _BETA_2))
                w.assign_sub(gate * alpha * m / (tf.sqrt(v) + _EPSILON))

        def run_chunk(first_epoch, n_epochs, active):
            # active: (k,) 1.0 for members still training; the others' best weights and losses
            # stay as they are.
            gate = tf.reshape(active, (k, 1, 1))
            x_all, y_all = self.x.value(), self.y.value()
            n = tf.shape(x_all, out_type=tf.int64)[0]
            n_batches = tf.shape(mask, out_type=tf.int64)[0]
            batch_size = tf.shape(mask, out_type=tf.int64)[1]
            xv_batch, yv_batch = self.x_val.value()[None], self.y_val.value()[None]
            directions = self.directions.value()
            low, high = self.low.value(), self.high.value()
            # Constant over the chunk (the rate drops between chunks): made once, outside the
            # loops. A step runs no faster for it, but each depth's loop has fewer ops to trace
            # (a 30-trial search traces up to nine depths in each process; RESULTS.md).
            scalars = _AdamScalars(
                rate=rates[0, 0, 0],
                beta1=tf.constant(_BETA_1),
                beta2=tf.constant(_BETA_2),
                epsilon=tf.constant(_EPSILON),
                l2_slopes=[2.0 * c.value() for c in l2],
            )
            losses = tf.TensorArray(tf.float32, size=n_epochs)
            for i in tf.range(n_epochs):
                epoch = tf.cast(first_epoch, tf.int64) + tf.cast(i, tf.int64)
                # Each member's own permutation, drawn exactly as train() draws it from its seed.
                offset = tf.stack([tf.constant(0, tf.int64), epoch])
                order = tf.stack(
                    [
                        tf.argsort(tf.random.stateless_uniform([n], seed=seeds[j] + offset))
                        for j in range(k)
                    ]
                )
                order = tf.reshape(
                    tf.pad(order, [[0, 0], [0, n_batches * batch_size - n]]),
                    (k, n_batches, batch_size),
                )
                for b in tf.range(n_batches):
                    xb = tf.gather(x_all, order[:, b])  # (k, batch, features)
                    yb = tf.gather(y_all, order[:, b])
                    mb = mask[b]
                    with tf.GradientTape() as tape:
                        pred = forward(xb)
                        # Members' losses are summed: each one's gradient is its own loss's.
                        loss = tf.reduce_sum(mb * tf.square(pred - yb)) / tf.reduce_sum(mb)
                        if key.monotonic:
                            step = epoch * n_batches + tf.cast(b, tf.int64)
                            points = tf.stack(
                                [
                                    slope_points(tf, seeds[j], step, batch_size, low, high)
                                    for j in range(k)
                                ]
                            )
                            loss += key.monotonic_weight * slope_penalty(
                                tf, forward, points, directions
                            )
                    adam_step(tape.gradient(loss, weights), gate, scalars)
                val_loss = tf.reduce_mean(tf.square(forward(xv_batch) - yv_batch), axis=[1, 2])
                losses = losses.write(i, val_loss)
                improved = tf.logical_and(val_loss < best_loss, active > 0)
                best_loss.assign(tf.where(improved, val_loss, best_loss))
                best_epoch.assign(tf.where(improved, epoch, best_epoch))
                keep = tf.reshape(improved, (k, 1, 1))
                for kept, w in zip(best_weights, weights, strict=True):
                    kept.assign(tf.where(keep, w, kept))
            return losses.stack()

        # Only scalars are passed, and every array is a variable of relaxed shape: one trace.
        self.run_chunk = tf.function(run_chunk, jit_compile=key.jit_compile)


#: Compiled training loops not in use, by what shapes them. A process (a search worker) keeps
#: them for its lifetime: a few per depth it trains, each holding its last run's arrays.
_idle_graphs: dict[_GraphKey, list[_Graph]] = {}
_idle_lock = threading.Lock()


@contextlib.contextmanager
def _borrowed_graph(key: _GraphKey) -> Iterator[_Graph]:
    """A compiled loop for ``key``, for this run alone (two threads never share one)."""
    with _idle_lock:
        idle = _idle_graphs.get(key)
        graph = idle.pop() if idle else None
    if graph is None:
        graph = _Graph(key)
    try:
        yield graph
    finally:
        with _idle_lock:
            _idle_graphs.setdefault(key, []).append(graph)


def traced_loops() -> int:
    """How many times this process has traced a population's training loop.

    One per depth, activation and kind of penalty a process trains (and per number of members),
    not one per network: for tests and benchmarks of the graph reuse.
    """
    with _idle_lock:
        graphs = [graph for idle in _idle_graphs.values() for graph in idle]
    return sum(graph.run_chunk.experimental_get_tracing_count() for graph in graphs)


@dataclass
class _MembersState:
    """Every member's training state as arrays (member first): what a compiled loop's
    variables hold, kept here while the members move to a smaller loop."""

    weights: list[np.ndarray]
    moments: list[np.ndarray]
    velocities: list[np.ndarray]
    best_weights: list[np.ndarray]
    l2: list[np.ndarray]
    steps: np.ndarray
    best_loss: np.ndarray
    best_epoch: np.ndarray
    seeds: np.ndarray

    @classmethod
    def start(
        cls, stacks: list[list[Any]], l2: list[np.ndarray], seeds: Sequence[int]
    ) -> _MembersState:
        k = len(stacks)
        # Stacked weights: kernels (k, in, out), biases (k, 1, out); one Adam state per variable.
        values = []
        for i in range(len(stacks[0])):
            values.append(np.stack([s[i].kernel.numpy() for s in stacks]))
            values.append(np.stack([s[i].bias.numpy()[None, :] for s in stacks]))
        return cls(
            weights=values,
            moments=[np.zeros_like(v) for v in values],
            velocities=[np.zeros_like(v) for v in values],
            best_weights=[v.copy() for v in values],
            l2=l2,
            steps=np.zeros((k, 1, 1), np.float32),
            best_loss=np.full(k, np.inf, np.float32),
            best_epoch=np.full(k, -1, np.int64),
            seeds=np.array([[int(s), 0] for s in seeds], np.int64),
        )

    def load(self, graph: _Graph, members: np.ndarray) -> None:
        """Put ``members``' state into ``graph``'s variables."""
        for names in ("weights", "moments", "velocities", "best_weights", "l2"):
            for variable, value in zip(getattr(graph, names), getattr(self, names), strict=True):
                variable.assign(value[members])
        for name in ("steps", "best_loss", "best_epoch", "seeds"):
            getattr(graph, name).assign(getattr(self, name)[members])

    def keep(self, graph: _Graph, members: np.ndarray) -> None:
        """Read ``members``' state back from ``graph``'s variables."""
        for names in ("weights", "moments", "velocities", "best_weights"):
            for variable, value in zip(getattr(graph, names), getattr(self, names), strict=True):
                value[members] = variable.numpy()
        for name in ("steps", "best_loss", "best_epoch"):
            getattr(self, name)[members] = getattr(graph, name).numpy()


#: A population continues as a smaller one when at most this share of its members still train
#: and at least ``_COMPACT_MIN_EPOCHS`` epochs may remain: a stopped member's matmuls are
#: computed (and thrown away) until the loop ends, and one straggler kept a reference group
#: of six training 500 epochs while the others stopped at 120-240 (benchmarks/RESULTS.md).
_COMPACT_SHARE = 0.5
_COMPACT_MIN_EPOCHS = 50


@dataclass
class _Progress:
    """Where each member of a population stands: still training or why it stopped, and the
    loss and learning rate of each epoch it trained."""

    active: np.ndarray
    stopped_by: list[str]
    histories: list[list[float]]
    rate_logs: list[list[float]]
    epochs_run: np.ndarray
    epochs_done: int = 0

    @classmethod
    def start(cls, k: int) -> _Progress:
        return cls(
            active=np.ones(k, bool),
            stopped_by=["max_epochs"] * k,
            histories=[[] for _ in range(k)],
            rate_logs=[[] for _ in range(k)],
            epochs_run=np.zeros(k, int),
        )

    def record(
        self,
        chunk: np.ndarray,
        members: np.ndarray,
        rates: np.ndarray,
        best_epoch: np.ndarray,
        patience: int,
    ) -> None:
        """Take in one chunk's losses (epochs x ``members``) and stop the members that diverged
        or stopped improving."""
        self.epochs_done += len(chunk)
        for i, j in enumerate(members):
            if not self.active[j]:
                continue
            self.histories[j].extend(float(v) for v in chunk[:, i])
            self.rate_logs[j].extend([float(rates[j])] * len(chunk))
            self.epochs_run[j] = self.epochs_done
            if not np.isfinite(chunk[:, i]).all():
                self.stop(j, "diverged")
            elif self.epochs_done - 1 - int(best_epoch[j]) >= patience:
                self.stop(j, "early_stopping")

    def stop(self, member: int, why: str) -> None:
        self.stopped_by[member], self.active[member] = why, False

    def results(self, state: _MembersState) -> list[TrainResult]:
        return [
            TrainResult(
                best_loss=float(state.best_loss[j]),
                best_epoch=int(state.best_epoch[j]),
                epochs_run=int(self.epochs_run[j]),
                stopped_by=self.stopped_by[j],
                history=self.histories[j],
                learning_rates=self.rate_logs[j],
            )
            for j in range(len(self.active))
        ]


def _next_chunk(
    config: TrainConfig, epochs_done: int, base_rates: np.ndarray
) -> tuple[int, np.ndarray]:
    """How many epochs the next chunk runs, and at which rates (a chunk never spans the drop)."""
    n_epochs = min(config.chunk_epochs, config.max_epochs - epochs_done)
    if epochs_done < config.lr_drop_epoch:
        return min(n_epochs, config.lr_drop_epoch - epochs_done), base_rates
    return n_epochs, base_rates / np.float32(config.lr_drop_factor)


def _train_with(
    key: _GraphKey,
    stacks: list[list[Any]],
    data: TrainingArrays,
    l2: list[np.ndarray],
    n: int,
    unit: float,
    config: TrainConfig,
    batch_size: int,
    learning_rates: Sequence[float],
    seeds: Sequence[int],
    should_stop: PopulationStopCheck | None,
    compact: bool,
) -> list[TrainResult]:
    """Train in ``key``'s compiled loop; when most members have stopped, move the rest to a
    smaller loop (``compact``); write each member's best weights back."""
    n_batches = math.ceil(n / batch_size)
    # Padding to whole batches, masked out of the loss, as train() does.
    mask = (np.arange(n_batches * batch_size) < n).astype(np.float32)
    inputs = {
        "mask": mask.reshape(n_batches, batch_size, 1),
        "x": data.x,
        "y": data.y,
        "x_val": data.x_val,
        "y_val": data.y_val,
        "low": data.x.min(axis=0),
        "high": data.x.max(axis=0),
        "directions": data.directions,
    }
    state = _MembersState.start(stacks, l2, seeds)
    progress = _Progress.start(len(stacks))
    base_rates = np.asarray(learning_rates, np.float32)
    members = np.arange(len(stacks))
    while True:
        with _borrowed_graph(replace(key, members=len(members))) as graph:
            state.load(graph, members)
            for name, value in inputs.items():
                getattr(graph, name).assign(value)
            compacting = _run_chunks(
                graph, members, state, progress, base_rates, unit, config, should_stop, compact
            )
            state.keep(graph, members)
        if not compacting:
            break
        members = np.flatnonzero(progress.active)

    # Each member ends with its best weights (or, if it never improved, as the loop left it).
    for j, layers in enumerate(stacks):
        values = state.best_weights if state.best_epoch[j] >= 0 else state.weights
        for i, layer in enumerate(layers):
            layer.kernel.assign(values[2 * i][j])
            layer.bias.assign(values[2 * i + 1][j][0])
    return progress.results(state)


def _run_chunks(
    graph: _Graph,
    members: np.ndarray,
    state: _MembersState,
    progress: _Progress,
    base_rates: np.ndarray,
    unit: float,
    config: TrainConfig,
    should_stop: PopulationStopCheck | None,
    compact: bool,
) -> bool:
    """Run ``graph``'s loop chunk by chunk until the members are done; True if it stopped
    early so that the members still training continue in a smaller loop."""
    from bluesky_digitwin.tensorflow_runtime import tf

    while progress.epochs_done < config.max_epochs and progress.active.any():
        n_epochs, rates = _next_chunk(config, progress.epochs_done, base_rates)
        graph.rates.assign(rates[members].reshape(-1, 1, 1))
        # The first call instantiates the graph: do that without Grappler.
        with grappler_disabled(tf) if not graph.used else contextlib.nullcontext():
            graph.used = True
            chunk = graph.run_chunk(
                tf.constant(progress.epochs_done, tf.int64),
                tf.constant(n_epochs, tf.int32),
                tf.constant(progress.active[members].astype(np.float32)),
            ).numpy()  # (epochs, members)
        state.best_loss[members] = graph.best_loss.numpy()
        state.best_epoch[members] = graph.best_epoch.numpy()
        progress.record(chunk, members, rates, state.best_epoch, config.patience)
        if should_stop is not None and progress.active.any():
            verdict = should_stop(
                round(progress.epochs_done * unit),
                state.best_loss.copy(),
                progress.active.copy(),
            )
            for j in np.flatnonzero(progress.active & np.asarray(verdict, bool)):
                progress.stop(j, "pruned")
        still = int(progress.active.sum())
        if (
            compact
            and 0 < still <= _COMPACT_SHARE * len(members)
            and config.max_epochs - progress.epochs_done >= _COMPACT_MIN_EPOCHS
        ):
            return True
    return False


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
