"""Fourier features: frequencies chosen by the sampling, the encoding in numpy and in Keras,
and a twin fitted with them that saves, loads and predicts the same."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import optuna
import pytest
from digitwin_testing import smooth_table, subprocess_env, two_network_fit

from bluesky_digitwin import DigitalTwin, DigitwinInputError, EnsembleRecipe
from bluesky_digitwin.surrogate.fourier import (
    FOURIER_COUNT,
    NYQUIST_SHARE,
    encode,
    encoding_layer,
    fourier_frequencies,
)
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.search_settings import SearchStrategy
from bluesky_digitwin.surrogate.search_space import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.twin_files import load_member


def scan_lines(n_fast: int = 800, n_lines: int = 5) -> np.ndarray:
    """Scaled-like coordinates: a dense fast axis, a few slow-axis lines."""
    fast, slow = np.meshgrid(np.linspace(-1.7, 1.7, n_fast), np.linspace(-1.4, 1.4, n_lines))
    return np.column_stack([fast.ravel(), slow.ravel()])


def test_frequencies_are_capped_by_each_axis_sampling():
    x = scan_lines()
    frequencies = fourier_frequencies(x, scale=10.0, seed=0)
    assert frequencies.shape == (FOURIER_COUNT, 2)
    # The slow axis has lines 0.7 apart: Nyquist 0.71 cycles a unit, a quarter of it ~0.18.
    slow_cap = NYQUIST_SHARE * 0.5 / 0.7
    assert np.std(frequencies[:, 1]) == pytest.approx(slow_cap, rel=0.3)
    # The fast axis (spacing 0.004: a quarter of its Nyquist is 58) gets the full scale.
    assert np.std(frequencies[:, 0]) == pytest.approx(10.0, rel=0.3)
    # A field readback that jitters around each line's setpoint is still a few lines.
    jittered = x + [0.0, 1.0] * np.random.default_rng(0).normal(0, 1e-5, size=x.shape)
    assert np.std(fourier_frequencies(jittered, 10.0, seed=0)[:, 1]) == pytest.approx(
        np.std(frequencies[:, 1]), rel=0.05
    )
    # Seeded: the same data and seed give the same draw, another seed another.
    np.testing.assert_array_equal(frequencies, fourier_frequencies(x, 10.0, seed=0))
    assert not np.allclose(frequencies, fourier_frequencies(x, 10.0, seed=1))


def test_encoding_keeps_the_coordinates_first_and_matches_keras():
    x = scan_lines(20, 3).astype(np.float32)
    frequencies = fourier_frequencies(x, 3.0, seed=2)
    encoded = encode(x, frequencies)
    assert encoded.shape == (len(x), 2 + 2 * FOURIER_COUNT)
    np.testing.assert_array_equal(encoded[:, :2], x)
    np.testing.assert_allclose(encoded[:, 2:4] ** 2 + encoded[:, 66:68] ** 2, 1.0, atol=1e-5)
    layer = encoding_layer(frequencies)
    np.testing.assert_allclose(np.asarray(layer(x)), encoded, atol=2e-4)
    assert encode(x, np.zeros((0, 2))) is not None
    np.testing.assert_array_equal(encode(x, np.zeros((0, 2))), x)


def test_scaling_round_trips_its_frequencies_and_stays_as_before_without():
    x, y = scan_lines(30, 4) * [3.0, 2.0] + [10.0, 1.0], np.arange(120.0)
    plain = Scaling.from_data(x, y)
    assert "fourier_frequencies" not in plain.to_dict()  # twin.json as before
    encoded = Scaling.from_data(x, y, fourier_scale=5.0, seed=3)
    again = Scaling.from_dict(encoded.to_dict())
    assert again == encoded
    inputs = encoded.inputs(x)
    assert inputs.shape == (120, 2 + 2 * FOURIER_COUNT)
    np.testing.assert_allclose(encoded.coordinates(inputs), x, rtol=1e-5)
    np.testing.assert_allclose(plain.inputs(x), plain.scale_x(x))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "10", True])
def test_a_bad_fourier_scale_is_one_clear_error(bad):
    with pytest.raises(DigitwinInputError, match="fourier_scale must be"):
        SearchStrategy(fourier_scale=bad)


def test_fourier_features_and_a_monotonic_shape_are_refused_together():
    with pytest.raises(DigitwinInputError, match="cannot be combined"):
        DigitalTwin.fit(
            smooth_table(),
            ["x", "h"],
            "y",
            n_trials=1,
            n_workers=1,
            strategy=SearchStrategy(fourier_scale=5.0),
            monotonic={"h": "increasing"},
        )


@pytest.mark.parametrize(
    "ensemble",
    # New networks with the reference (the default's way) and the trials' own, refitted on all
    # the points (the paper's way, which loads the trials' saved networks).
    [EnsembleRecipe(size=2), two_network_fit()["ensemble"]],
    ids=["new networks", "the trials' own"],
)
def test_a_twin_with_fourier_features_fits_saves_loads_and_predicts_the_same(tmp_path, ensemble):
    table = smooth_table(n_fast=40)
    twin = DigitalTwin.fit(
        table,
        ["x", "h"],
        "y",
        **{
            **two_network_fit(),
            "strategy": SearchStrategy(pruner=optuna.pruners.NopPruner(), fourier_scale=5.0),
            "ensemble": ensemble,
        },
    )
    assert twin.metadata["search"]["fourier_scale"] == 5.0
    frequencies = np.asarray(twin.metadata["scaling"]["fourier_frequencies"])
    assert frequencies.shape == (FOURIER_COUNT, 2)
    points = {"x": table["x"].to_numpy()[:50], "h": table["h"].to_numpy()[:50]}
    before = twin.predict(points)["y"].values
    assert np.isfinite(before).all()
    twin.save(tmp_path / "twin")
    # Each saved network maps raw coordinates through the encoding to a network that takes
    # the coordinates and their sines and cosines.
    from bluesky_digitwin.tensorflow_runtime import keras

    saved = load_member(keras, sorted((tmp_path / "twin").glob("*.keras"))[0])
    assert "fourier_features" in [layer.name for layer in saved.layers]
    (core,) = [layer for layer in saved.layers if isinstance(layer, keras.Model)]
    assert core.inputs[0].shape[-1] == 2 + 2 * FOURIER_COUNT
    loaded = DigitalTwin.load(tmp_path / "twin")
    np.testing.assert_allclose(loaded.predict(points)["y"].values, before, rtol=1e-5)
    # A new process (``digitwin predict``, a user's script) loads it with nothing registered
    # beforehand.
    script = (
        "import sys, numpy as np\n"
        "from bluesky_digitwin import DigitalTwin\n"
        "twin = DigitalTwin.load(sys.argv[1])\n"
        "points = {'x': np.array(sys.argv[2].split(','), float),"
        " 'h': np.array(sys.argv[3].split(','), float)}\n"
        "print(','.join(repr(float(v)) for v in twin.predict(points)['y'].values))\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "twin"),
            ",".join(map(repr, points["x"].tolist())),
            ",".join(map(repr, points["h"].tolist())),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
        check=True,
    )
    fresh = np.array(out.stdout.strip().splitlines()[-1].split(","), float)
    np.testing.assert_allclose(fresh, before, rtol=1e-5)


def test_a_study_searched_without_fourier_features_is_not_continued_with_them(tmp_path):
    # Its trials' networks take the plain coordinates; the paper's ensemble would load them.
    options = {
        "n_trials": 1,
        "n_workers": 1,
        "seed": 0,
        "storage": tmp_path / "search.journal",
        "study_name": "map",
        "space": SearchSpace(n_layers=(2, 2), n_units=(8, 8), l2=None),
        "train_config": TrainConfig(max_epochs=5, chunk_epochs=5),
        "ensemble": EnsembleRecipe(size=1, reference=False),
    }
    DigitalTwin.fit(smooth_table(), ["x", "h"], "y", **options)
    with pytest.raises(DigitwinInputError, match=r"searched with fourier_scale=None, not 5\.0"):
        DigitalTwin.fit(
            smooth_table(),
            ["x", "h"],
            "y",
            strategy=SearchStrategy(fourier_scale=5.0),
            **options,
        )
