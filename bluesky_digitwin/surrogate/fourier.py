"""Fourier features: the scaled coordinates and sines and cosines of them, as network inputs.

A small ReLU or SiLU network learns smooth structure first and fine structure late ("spectral
bias"): on the paper's 30 k-point ARPES map, whose rings are a fraction of a degree wide, the
search's networks stop at a validation R² of about 0.95 within the epochs a 4-minute fit
allows. Feeding the network ``sin(2π B x)`` and ``cos(2π B x)`` for random frequencies ``B``
(Tancik et al., NeurIPS 2020) lets it fit that structure in the same epochs (R² about 0.996,
benchmarks/RESULTS.md).

What it costs: between measured lines the encoded networks interpolate *worse* (they resolve
the lines' structure and have nothing to tell them how it moves between lines), and
derivatives such as ∂M/∂T oscillate. So it is an option (``SearchStrategy(fourier_scale=...)``,
``digitwin fit --fourier-scale``) for a map whose measured lines are what the twin must
reproduce, never the default, and never with a stated monotonic shape.

The frequencies are drawn once per fit, seeded, from a normal distribution per feature whose
standard deviation is ``scale`` cycles per standard deviation of that feature, capped at a
quarter of the sampling's Nyquist frequency along it (:data:`NYQUIST_SHARE`): a slow axis with
a few lines gets low frequencies only, a fast axis with many points gets ``scale``. The saved
networks carry them in a Keras layer (:func:`encoding_layer`), so a ``.keras`` file still maps
raw coordinates to the raw target on its own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bluesky_digitwin.scan_lines import READBACK_JITTER, line_labels

__all__ = [
    "FOURIER_COUNT",
    "NYQUIST_SHARE",
    "encode",
    "encoding_layer",
    "fourier_frequencies",
    "register_encoding_layer",
]

#: Frequencies drawn; the network sees the coordinates and a sine and a cosine of each.
FOURIER_COUNT = 64
#: A feature's frequencies are capped at this share of the Nyquist frequency of its sampling.
NYQUIST_SHARE = 0.25


def _nyquist(column: np.ndarray) -> float:
    """Nyquist frequency of one scaled feature's sampling, from the median spacing of its
    values, a jittering readback counting as one value (the scan-line rule of
    :mod:`~bluesky_digitwin.scan_lines`)."""
    labels, n = line_labels(column, READBACK_JITTER * float(np.ptp(column)))
    if n < 2:
        return math.inf
    centres = np.sort(np.bincount(labels, weights=column) / np.bincount(labels))
    return 0.5 / float(np.median(np.diff(centres)))


def fourier_frequencies(x_scaled: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Frequencies ``B`` (``FOURIER_COUNT`` x features), cycles per scaled unit.

    Parameters
    ----------
    x_scaled
        All the points' standardised coordinates (points x features).
    scale
        Standard deviation of the frequencies, cycles per standard deviation of a feature.
    seed
        Seed of the draw: the same data, scale and seed give the same frequencies.
    """
    x_scaled = np.asarray(x_scaled, dtype=np.float64)
    sigma = np.array([min(scale, NYQUIST_SHARE * _nyquist(c)) for c in x_scaled.T])
    rng = np.random.default_rng(seed)
    return rng.normal(size=(FOURIER_COUNT, x_scaled.shape[1])) * sigma


def encode(x_scaled: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """``[x, sin(2π x Bᵀ), cos(2π x Bᵀ)]`` as float32; ``x`` itself when there are none."""
    x_scaled = np.asarray(x_scaled, dtype=np.float32)
    if len(frequencies) == 0:
        return x_scaled
    phase = 2 * np.pi * (x_scaled.astype(np.float64) @ np.asarray(frequencies, np.float64).T)
    return np.concatenate([x_scaled, np.sin(phase), np.cos(phase)], axis=1).astype(np.float32)


_layer_class: Any = None


def register_encoding_layer() -> Any:
    """The Keras layer class of the encoding, registered for loading (TensorFlow loads here).

    Call it before loading a saved network that may contain the layer: Keras' ``safe_mode``
    loads registered layers, never code stored in the file.
    """
    global _layer_class
    if _layer_class is not None:
        return _layer_class
    from bluesky_digitwin.tensorflow_runtime import keras

    @keras.saving.register_keras_serializable(package="bluesky_digitwin")
    class FourierEncoding(keras.layers.Layer):
        """Fixed (untrained) Fourier features: ``[x, sin(2π x Bᵀ), cos(2π x Bᵀ)]``."""

        def __init__(self, frequencies: list[list[float]], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.frequencies = [[float(v) for v in row] for row in frequencies]
            self._angular = keras.ops.convert_to_tensor(
                2 * np.pi * np.asarray(self.frequencies, np.float32).T, dtype="float32"
            )

        def call(self, inputs: Any) -> Any:
            phase = keras.ops.matmul(inputs, self._angular)
            return keras.ops.concatenate(
                [inputs, keras.ops.sin(phase), keras.ops.cos(phase)], axis=-1
            )

        def compute_output_shape(self, input_shape: Any) -> Any:
            return (*input_shape[:-1], input_shape[-1] + 2 * len(self.frequencies))

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "frequencies": self.frequencies}

    _layer_class = FourierEncoding
    return _layer_class


def encoding_layer(frequencies: np.ndarray, name: str = "fourier_features") -> Any:
    """A Keras layer that applies :func:`encode` with ``frequencies``."""
    return register_encoding_layer()(np.asarray(frequencies).tolist(), name=name)
