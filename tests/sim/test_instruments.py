"""Tests of the instrument specs and the MaterialProbe both device libraries measure through."""

from __future__ import annotations

import numpy as np
import pytest

from bluesky_digitwin.sim import ArpesMap, FirstOrderMagnet, SuperconductingFilm
from bluesky_digitwin.sim.instruments import (
    ARPES_DETECTOR,
    MAGNETOMETER,
    RESISTANCE_BRIDGE,
    MaterialProbe,
    check_seconds_per_point,
)


def test_the_noise_argument_sets_the_materials_noise_parameter():
    assert MaterialProbe(MAGNETOMETER).material == FirstOrderMagnet()
    assert MaterialProbe(MAGNETOMETER, noise=2e-6).material.noise_emu == 2e-6
    assert MaterialProbe(RESISTANCE_BRIDGE, noise=0).material.noise_ohm == 0.0
    film = SuperconductingFilm(noise_ohm=0.01)
    assert MaterialProbe(RESISTANCE_BRIDGE, film).material is film  # None keeps it
    probe = MaterialProbe(ARPES_DETECTOR, ArpesMap(), noise=False)
    assert probe.material.poisson_noise is False


def test_noiseless_readings_draw_no_random_numbers():
    noisy = FirstOrderMagnet(noise_emu=1e-4)
    first, second = (
        MaterialProbe(MAGNETOMETER, noisy, seed=3),
        MaterialProbe(MAGNETOMETER, noisy, seed=3),
    )
    assert first.noiseless(30.0, 5000.0) == pytest.approx(noisy.moment([30.0], 5000.0)[0])
    # The noiseless call drew nothing: both probes still measure the same noise.
    assert first.measure(30.0, 5000.0) == second.measure(30.0, 5000.0)
    assert first.measure(30.0, 5000.0) != first.noiseless(30.0, 5000.0)


def test_arpes_counts_are_whole_numbers():
    probe = MaterialProbe(ARPES_DETECTOR, seed=0)
    counts = [probe.measure(theta, 0.0) for theta in np.linspace(-5, 5, 7)]
    assert all(isinstance(c, float) and c == round(c) for c in counts)


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_seconds_per_point_must_be_finite_and_not_negative(seconds):
    with pytest.raises(ValueError, match="seconds_per_point"):
        check_seconds_per_point(seconds)
    assert check_seconds_per_point(0) == 0.0
