"""The surrogate network: a small fully connected ReLU net, as in Terashima et al. (2023).

The network trains on scaled data (features and target standardised). The model that is saved
and used for prediction wraps it between a fixed input normalisation and an output rescaling, so
a saved ``.keras`` file maps raw coordinates to the raw measured quantity on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from bluesky_digitwin.data import DigitwinInputError

if TYPE_CHECKING:
    import keras

__all__ = ["Scaling", "build_mlp", "wrap_with_scaling"]


@dataclass(frozen=True)
class Scaling:
    """Standardisation of features and target: ``(x - mean) / std``.

    Computed in float64 from the training data so huge (Oe) and tiny (emu) magnitudes both train
    well in float32.
    """

    x_mean: tuple[float, ...]
    x_std: tuple[float, ...]
    y_mean: float
    y_std: float

    @classmethod
    def from_data(cls, x: np.ndarray, y: np.ndarray) -> Scaling:
        x_std = x.std(axis=0)
        y_std = float(y.std())
        # A constant column is rejected earlier; guard anyway so scaling never divides by zero.
        x_std = np.where(x_std > 0, x_std, 1.0)
        return cls(
            x_mean=tuple(float(v) for v in x.mean(axis=0)),
            x_std=tuple(float(v) for v in x_std),
            y_mean=float(y.mean()),
            y_std=y_std if y_std > 0 else 1.0,
        )

    def scale_x(self, x: np.ndarray) -> np.ndarray:
        return ((x - np.asarray(self.x_mean)) / np.asarray(self.x_std)).astype(np.float32)

    def scale_y(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.y_mean) / self.y_std).astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Scaling:
        return cls(
            x_mean=tuple(d["x_mean"]),
            x_std=tuple(d["x_std"]),
            y_mean=float(d["y_mean"]),
            y_std=float(d["y_std"]),
        )


#: Hidden-layer activations a network may use, by Keras name. ReLU is the paper's; the smooth
#: ones give a network whose derivative (what |ΔS_M| integrates) is smooth rather than
#: piecewise constant.
ACTIVATIONS: tuple[str, ...] = ("relu", "silu", "tanh", "softplus", "gelu")


def check_activation(activation: str) -> str:
    """Return ``activation`` if it is one of :data:`ACTIVATIONS`, else raise one clear error."""
    if activation not in ACTIVATIONS:
        raise DigitwinInputError(
            f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}"
        )
    return activation


def build_mlp(
    n_features: int,
    n_layers: int,
    n_units: int,
    *,
    l2: float = 0.0,
    dropout: float = 0.0,
    activation: str = "relu",
    seed: int | None = None,
    name: str = "mlp",
) -> keras.Model:
    """Build the fully connected network on scaled inputs.

    Parameters
    ----------
    n_features
        Number of input coordinates (e.g. 2 for T and H).
    n_layers, n_units
        Hidden layers and the width of each (the paper: 2-10 layers of 50-200 nodes).
    l2
        L2 penalty on the hidden kernels (0 for none).
    dropout
        Dropout rate after each hidden layer (0 for none).
    activation
        Of the hidden layers, one of :data:`ACTIVATIONS`.
    seed
        Seed of the weight initialisers, so a trial is repeatable.
    """
    from bluesky_digitwin.tensorflow_runtime import (
        keras,  # TensorFlow loads only when a network is built
    )

    check_activation(activation)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=(n_features,), name="scaled_coordinates")
    h = inputs
    for i in range(n_layers):
        init_seed = None if seed is None else seed * 1000 + i
        h = keras.layers.Dense(
            n_units,
            activation=activation,
            # He initialisation suits the ReLU family; tanh keeps Glorot's.
            kernel_initializer=(
                keras.initializers.GlorotUniform(seed=init_seed)
                if activation == "tanh"
                else keras.initializers.HeUniform(seed=init_seed)
            ),
            kernel_regularizer=regularizer,
            name=f"hidden_{i}",
        )(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout, seed=init_seed, name=f"dropout_{i}")(h)
    out_seed = None if seed is None else seed * 1000 + n_layers
    outputs = keras.layers.Dense(
        1, kernel_initializer=keras.initializers.GlorotUniform(seed=out_seed), name="scaled_target"
    )(h)
    return keras.Model(inputs, outputs, name=name)


def wrap_with_scaling(
    core: keras.Model, scaling: Scaling, name: str = "twin_member"
) -> keras.Model:
    """Return a model from raw coordinates to the raw target, sharing ``core``'s weights.

    Uses only built-in layers, so the saved ``.keras`` file loads with ``safe_mode=True`` and no
    custom objects.
    """
    from bluesky_digitwin.tensorflow_runtime import keras

    n_features = len(scaling.x_mean)
    inputs = keras.Input(shape=(n_features,), name="coordinates")
    normalise = keras.layers.Normalization(
        mean=list(scaling.x_mean),
        variance=[s**2 for s in scaling.x_std],
        name="feature_scaling",
    )
    rescale = keras.layers.Rescaling(
        scale=scaling.y_std, offset=scaling.y_mean, name="target_scaling"
    )
    outputs = rescale(core(normalise(inputs)))
    return keras.Model(inputs, outputs, name=name)
