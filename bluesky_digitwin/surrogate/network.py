"""The surrogate network: a small fully connected ReLU net, as in Terashima et al. (2023).

The network trains on scaled data (features and target standardised). The model that is saved
and used for prediction wraps it between a fixed input normalisation and an output rescaling, so
a saved ``.keras`` file maps raw coordinates to the raw measured quantity on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.surrogate.fourier import encode, encoding_layer, fourier_frequencies

if TYPE_CHECKING:
    import keras

__all__ = ["Scaling", "build_mlp", "wrap_with_scaling"]


@dataclass(frozen=True)
class Scaling:
    """Standardisation of features and target, ``(x - mean) / std``, and the networks' inputs.

    Computed in float64 from the training data so huge (Oe) and tiny (emu) magnitudes both train
    well in float32. ``fourier_frequencies`` (none by default) are the Fourier features the
    networks see besides the scaled coordinates (:mod:`~bluesky_digitwin.surrogate.fourier`).
    """

    x_mean: tuple[float, ...]
    x_std: tuple[float, ...]
    y_mean: float
    y_std: float
    fourier_frequencies: tuple[tuple[float, ...], ...] = ()

    @classmethod
    def from_data(
        cls, x: np.ndarray, y: np.ndarray, *, fourier_scale: float | None = None, seed: int = 0
    ) -> Scaling:
        """The scaling of these data; with ``fourier_scale``, Fourier features drawn with
        ``seed`` (:func:`~bluesky_digitwin.surrogate.fourier.fourier_frequencies`)."""
        x_std = x.std(axis=0)
        y_std = float(y.std())
        # A constant column is rejected earlier; guard anyway so scaling never divides by zero.
        x_std = np.where(x_std > 0, x_std, 1.0)
        scaling = cls(
            x_mean=tuple(float(v) for v in x.mean(axis=0)),
            x_std=tuple(float(v) for v in x_std),
            y_mean=float(y.mean()),
            y_std=y_std if y_std > 0 else 1.0,
        )
        if fourier_scale is None:
            return scaling
        frequencies = fourier_frequencies(scaling.scale_x(x), fourier_scale, seed)
        return replace(
            scaling,
            fourier_frequencies=tuple(tuple(float(v) for v in row) for row in frequencies),
        )

    def scale_x(self, x: np.ndarray) -> np.ndarray:
        return ((x - np.asarray(self.x_mean)) / np.asarray(self.x_std)).astype(np.float32)

    def scale_y(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.y_mean) / self.y_std).astype(np.float32)

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """What the networks see of raw coordinates ``x``: scaled, then Fourier-encoded if
        this scaling has Fourier features (the scaled coordinates are the first columns)."""
        frequencies = np.asarray(self.fourier_frequencies).reshape(-1, len(self.x_mean))
        return encode(self.scale_x(x), frequencies)

    def coordinates(self, inputs: np.ndarray) -> np.ndarray:
        """The raw coordinates of network inputs (the inverse of :meth:`inputs`)."""
        n = len(self.x_mean)
        return np.asarray(inputs)[:, :n] * np.asarray(self.x_std) + np.asarray(self.x_mean)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.fourier_frequencies:
            del d["fourier_frequencies"]  # twin.json as before for the default twin
        else:
            d["fourier_frequencies"] = [list(row) for row in self.fourier_frequencies]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Scaling:
        return cls(
            x_mean=tuple(d["x_mean"]),
            x_std=tuple(d["x_std"]),
            y_mean=float(d["y_mean"]),
            y_std=float(d["y_std"]),
            fourier_frequencies=tuple(
                tuple(float(v) for v in row) for row in d.get("fourier_frequencies", ())
            ),
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

    Uses built-in layers (and the package's registered Fourier-feature layer when the scaling
    has Fourier features), so the saved ``.keras`` file loads with ``safe_mode=True``.
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
    scaled = normalise(inputs)
    if scaling.fourier_frequencies:
        scaled = encoding_layer(np.asarray(scaling.fourier_frequencies))(scaled)
    outputs = rescale(core(scaled))
    return keras.Model(inputs, outputs, name=name)
