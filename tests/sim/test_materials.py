"""Tests of the simulated materials: data layout, reproducibility and physical behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from bluesky_digitwin.sim import (
    ArpesMap,
    FirstOrderMagnet,
    MovingTransitionMagnet,
    SuperconductingFilm,
    arpes_scan,
    coarse_arpes,
    coarse_magnetization,
    coarse_moving_transition,
    coarse_resistance,
    isofield_scans,
    resistance_scans,
)

ERCO2_FIELDS = [100.0, 1000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0]


def transition_temperature(T: np.ndarray, M: np.ndarray) -> float:
    """Temperature of the steepest fall of M(T)."""
    return float(T[np.argmin(np.gradient(M, T))])


def check_layout(ds: xr.Dataset, units: dict[str, str], model: str) -> None:
    """One dimension ``point``, the named 1-D float variables with units, simulated provenance."""
    assert set(ds.dims) == {"point"}
    assert set(ds.data_vars) == set(units)
    for name, unit in units.items():
        var = ds[name]
        assert var.dims == ("point",)
        assert var.dtype == np.float64
        assert var.attrs["units"] == unit
        assert var.attrs["long_name"]
        assert np.isfinite(var.values).all()
    assert ds.attrs["source"] == f"bluesky_digitwin.sim.{model}"
    assert ds.attrs["material"]
    # Attributes must survive netCDF: plain strings and numbers only.
    assert all(isinstance(v, (str, int, float)) for v in ds.attrs.values())


def check_scan_order(slow: np.ndarray, fast: np.ndarray) -> None:
    """Blocks of constant slow axis, the fast axis strictly increasing inside each block."""
    change = np.flatnonzero(np.diff(slow) != 0) + 1
    blocks = np.split(np.arange(slow.size), change)
    assert len({float(slow[b[0]]) for b in blocks}) == len(blocks)  # each block appears once
    for b in blocks:
        assert np.all(np.diff(fast[b]) > 0)


# --------------------------------------------------------------------------------------------
# FirstOrderMagnet (ErCo2-like)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def erco2() -> xr.Dataset:
    return coarse_magnetization(seed=0)


def test_coarse_magnetization_layout(erco2):
    check_layout(erco2, {"T": "K", "H": "Oe", "M": "emu"}, "FirstOrderMagnet")
    assert erco2.sizes["point"] == 808
    check_scan_order(erco2["H"].values, erco2["T"].values)
    fields, counts = np.unique(erco2["H"].values, return_counts=True)
    np.testing.assert_array_equal(fields, ERCO2_FIELDS)
    assert np.all(counts == 101)
    assert erco2["T"].min() == 10.0 and erco2["T"].max() == 60.0


def test_coarse_magnetization_moment_range(erco2):
    M = erco2["M"].values
    assert 1e-5 < M.min() < 1e-3  # paramagnetic tail at 100 Oe, 60 K
    assert 0.05 < M.max() < 0.1  # saturated ferrimagnet at 10 K


def test_coarse_magnetization_reproducible():
    a, b = coarse_magnetization(seed=3), coarse_magnetization(seed=3)
    xr.testing.assert_identical(a, b)
    c = coarse_magnetization(seed=4)
    assert not np.array_equal(a["M"].values, c["M"].values)
    np.testing.assert_array_equal(a["T"].values, c["T"].values)


def test_parameters_attr_rebuilds_the_material(erco2):
    params = json.loads(erco2.attrs["parameters"])
    assert FirstOrderMagnet(**params) == FirstOrderMagnet(noise_emu=params["noise_emu"])


def test_noiseless_scan_equals_model():
    magnet = FirstOrderMagnet()
    T = np.linspace(10, 60, 11)
    ds = isofield_scans(magnet, [1000.0, 20000.0], T, noise=0.0, seed=1)
    expected = np.concatenate([magnet.moment(T, 1000.0), magnet.moment(T, 20000.0)])
    np.testing.assert_array_equal(ds["M"].values, expected)
    assert ds.attrs["noise"] == "none"


def test_scan_noise_has_the_requested_std():
    magnet = FirstOrderMagnet()
    T = np.linspace(10, 60, 2000)
    ds = isofield_scans(magnet, [5000.0], T, noise=1e-3, seed=7)
    residual = ds["M"].values - magnet.moment(T, 5000.0)
    assert residual.std() == pytest.approx(1e-3, rel=0.1)


def test_moment_decreases_with_T_when_ordered_and_increases_with_H():
    magnet = FirstOrderMagnet()
    T = np.linspace(10, 30, 41)
    M = np.array([magnet.moment(T, H) for H in ERCO2_FIELDS])
    assert np.all(np.diff(M, axis=1) < 0)  # ordered phase: thermal disorder lowers M
    T_all = np.linspace(10, 60, 101)
    M_all = np.array([magnet.moment(T_all, H) for H in ERCO2_FIELDS])
    assert np.all(np.diff(M_all, axis=0) > 0)  # more field, more moment, at every T


def test_first_order_at_low_field_smooth_at_high_field():
    magnet = FirstOrderMagnet()
    T = np.linspace(25, 55, 6001)  # 5 mK steps
    low, high = magnet.moment(T, 100.0), magnet.moment(T, 50000.0)
    ms = magnet.mass_g * magnet.saturation_magnetization
    # A discontinuity: at 100 Oe the moment falls by more than a third of M_s within one 5 mK step.
    assert (-np.diff(low)).max() > ms / 3
    assert (-np.diff(high)).max() < ms * 1e-3
    assert np.abs(np.gradient(low, T)).max() > 50 * np.abs(np.gradient(high, T)).max()


def test_transition_temperature_near_35K_and_rises_with_field():
    magnet = FirstOrderMagnet()
    T = np.linspace(20, 60, 4001)
    Tt = [transition_temperature(T, magnet.moment(T, H)) for H in ERCO2_FIELDS]
    assert 33.0 < Tt[0] < 36.0
    assert np.all(np.diff(Tt) > 0)
    assert Tt[-1] - Tt[0] > 8.0


def test_magnetization_units_and_symmetry():
    magnet = FirstOrderMagnet()
    T, H = np.array([10.0, 40.0]), np.array([2000.0, 30000.0])
    m = magnet.magnetization(T, H)  # emu/g
    np.testing.assert_allclose(magnet.moment(T, H), m * magnet.mass_g)
    np.testing.assert_allclose(magnet.magnetization(T, -H), -m)
    # N_A mu_B = 5585 emu/mol: 7 mu_B per 285.1 g/mol is 137 emu/g.
    assert magnet.saturation_magnetization == pytest.approx(137.1, rel=1e-3)
    assert magnet.magnetization(40.0, np.ones((3, 4))).shape == (3, 4)
    with pytest.raises(ValueError, match="> 0 K"):
        magnet.moment(0.0, 100.0)


def test_stable_branch_is_the_global_free_energy_minimum():
    magnet = FirstOrderMagnet()
    # Around the first-order transition at 100 Oe two minima coexist; the solver must pick the
    # lower one on both sides. Brute force: the free energy on a fine grid of x.
    T = np.linspace(33.0, 36.5, 15)
    H = np.full_like(T, 100.0)
    b = magnet.moment_muB * 0.67171381563 * H * 1e-4
    x = np.linspace(0.0, 40.0, 40001)
    f = magnet._free_energy(x[None, :], T[:, None], b[:, None])
    best = x[np.argmin(f, axis=1)]
    from bluesky_digitwin.sim.materials import _brillouin

    np.testing.assert_allclose(
        magnet.reduced_magnetization(T, H), _brillouin(magnet.J, best), atol=2e-3
    )


def test_entropy_change_matches_maxwell_relation_and_magnitude():
    magnet = FirstOrderMagnet()
    # Away from the transition M(T, H) is smooth; the Maxwell integral must equal the exact
    # Delta S_M = S(T, H) - S(T, 0) of the model.
    H = np.linspace(0.0, 50000.0, 2001)
    for T in (20.0, 45.0):
        dT = 1e-3
        dMdT = (magnet.magnetization(T + dT, H) - magnet.magnetization(T - dT, H)) / (2 * dT)
        maxwell = np.trapezoid(dMdT, H * 1e-4)  # (A m^2/kg/K) * T = J/(kg K)
        assert maxwell == pytest.approx(float(magnet.entropy_change(T, 50000.0)), rel=1e-4)
    T = np.linspace(10, 60, 501)
    dS = magnet.entropy_change(T, 50000.0)
    assert np.all(dS <= 1e-12)
    assert 20.0 < -dS.min() < 60.0  # ErCo2: about 35 J/(kg K) at 5 T
    assert 30.0 < T[np.argmin(dS)] < 40.0


def test_ragged_isofield_scan():
    magnet = FirstOrderMagnet()
    grid = {5000.0: [30.0, 20.0, 40.0], 100.0: np.linspace(10, 60, 5)}
    ds = isofield_scans(magnet, None, grid)
    assert ds.sizes["point"] == 8
    np.testing.assert_array_equal(ds["H"].values, [100.0] * 5 + [5000.0] * 3)
    np.testing.assert_array_equal(ds["T"].values[5:], [20.0, 30.0, 40.0])
    ordered = isofield_scans(magnet, [5000.0, 100.0], grid)
    assert ordered["H"].values[0] == 5000.0  # fields in the order asked for
    with pytest.raises(ValueError, match="no temperatures"):
        isofield_scans(magnet, [7.0], grid)


# --------------------------------------------------------------------------------------------
# MovingTransitionMagnet (Fe3Ga4-like)
# --------------------------------------------------------------------------------------------


def test_coarse_moving_transition_layout():
    ds = coarse_moving_transition(seed=0)
    check_layout(ds, {"T": "K", "H": "Oe", "M": "emu"}, "MovingTransitionMagnet")
    assert ds.sizes["point"] == 2737
    check_scan_order(ds["H"].values, ds["T"].values)
    assert float(ds["T"].min()) == 5.0 and float(ds["T"].max()) == 200.0
    assert float(ds["H"].min()) == 100.0 and float(ds["H"].max()) == 20000.0


def test_moving_transition_moves_strongly_with_field():
    magnet = MovingTransitionMagnet()
    T = np.linspace(5, 200, 3901)
    Tt = {H: transition_temperature(T, magnet.moment(T, H)) for H in (100.0, 10000.0, 11000.0)}
    Tt[20000.0] = transition_temperature(T, magnet.moment(T, 20000.0))
    assert Tt[20000.0] - Tt[100.0] > 40.0  # tens of K over 2 T
    assert Tt[11000.0] - Tt[10000.0] > 2.0  # several K per 0.1 T
    np.testing.assert_allclose(
        [Tt[h] for h in sorted(Tt)], magnet.transition_temperature(sorted(Tt)), atol=0.2
    )


def test_moving_transition_high_moment_below_low_moment_above():
    magnet = MovingTransitionMagnet()
    for H in (100.0, 1000.0, 20000.0):
        Tt = float(magnet.transition_temperature(H))
        assert magnet.moment(Tt - 20, H) > 10 * magnet.moment(Tt + 20, H)
    assert magnet.moment(50.0, 20000.0) > magnet.moment(50.0, 100.0)


# --------------------------------------------------------------------------------------------
# SuperconductingFilm
# --------------------------------------------------------------------------------------------


def test_superconductor_zero_below_normal_above():
    film = SuperconductingFilm()
    assert film.critical_temperature(0.0) == pytest.approx(7.3)
    assert film.resistance(6.0, 0.0) < 1e-6  # 1.3 K below the zero-field transition
    for H in (0.0, 10000.0, 30000.0):
        Tc, w = float(film.critical_temperature(H)), float(film.transition_width(H))
        assert w < 0.5
        assert film.resistance(Tc - 10 * w, H) < 1e-4 * film.R_normal_ohm
        assert film.resistance(Tc + 10 * w, H) == pytest.approx(0.066, rel=1e-4)
        assert film.resistance(Tc, H) == pytest.approx(0.033)


def test_superconductor_tc_decreases_with_field():
    film = SuperconductingFilm()
    T = np.linspace(1.0, 10.0, 9001)
    fields = [0.0, 5000.0, 10000.0, 20000.0, 30000.0]
    # Midpoint of the measured (noiseless) transition, not the model's formula.
    half = [T[np.argmin(np.abs(film.resistance(T, H) - 0.033))] for H in fields]
    assert np.all(np.diff(half) < -0.3)
    widths = film.transition_width(fields)
    assert np.all(np.diff(widths) > 0)


def test_coarse_resistance_ragged_and_noisy():
    ds = coarse_resistance(seed=0)
    check_layout(ds, {"T": "K", "H": "Oe", "R": "ohm"}, "SuperconductingFilm")
    check_scan_order(ds["H"].values, ds["T"].values)
    _, counts = np.unique(ds["H"].values, return_counts=True)
    assert len(set(counts)) > 1  # ragged: sweeps of different lengths
    film = SuperconductingFilm()
    residual = ds["R"].values - film.resistance(ds["T"].values, ds["H"].values)
    assert residual.std() == pytest.approx(film.noise_ohm, rel=0.15)
    xr.testing.assert_identical(ds, coarse_resistance(seed=0))


def test_resistance_scans_seed_and_noise_override():
    film = SuperconductingFilm()
    T = np.linspace(2, 10, 50)
    a = resistance_scans(film, [0.0, 10000.0], T, seed=5)
    b = resistance_scans(film, [0.0, 10000.0], T, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(a["R"].values, b["R"].values)
    quiet = resistance_scans(film, [0.0, 10000.0], T, noise=0.0)
    np.testing.assert_array_equal(quiet["R"].values, film.resistance(a["T"], a["H"]))
    assert a.sizes["point"] == 100


# --------------------------------------------------------------------------------------------
# ArpesMap
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arpes_grid() -> tuple[ArpesMap, np.ndarray, np.ndarray, np.ndarray]:
    arpes = ArpesMap(seed=0)
    theta = np.linspace(-22.7, 24.3, 471)
    phi = np.linspace(-15, 15, 301)
    TH, PH = np.meshgrid(theta, phi)
    return arpes, theta, TH, arpes.intensity(TH, PH)


def test_coarse_arpes_layout():
    ds = coarse_arpes(seed=0)
    check_layout(ds, {"theta": "deg", "phi": "deg", "I": "counts"}, "ArpesMap")
    assert ds.sizes["point"] == 29977
    check_scan_order(ds["phi"].values, ds["theta"].values)
    assert float(ds["theta"].min()) == pytest.approx(-22.7)
    assert float(ds["theta"].max()) == pytest.approx(24.3)
    xr.testing.assert_identical(ds, coarse_arpes(seed=0))
    assert not np.array_equal(ds["I"].values, coarse_arpes(seed=1)["I"].values)


def test_arpes_has_several_distinct_peaks(arpes_grid):
    _, _, _, image = arpes_grid
    peaks = (image == ndimage.maximum_filter(image, size=15)) & (image > 0.3 * image.max())
    _, n_peaks = ndimage.label(peaks)
    assert n_peaks >= 8


def test_arpes_detection_limit(arpes_grid):
    arpes, _, _, image = arpes_grid
    assert (image == 0).mean() > 0.1
    assert image[image > 0].min() >= arpes.detection_limit
    noisy = arpes_scan(arpes, np.linspace(-22.7, 24.3, 100), np.linspace(-15, 15, 20), seed=1)
    counts = noisy["I"].values
    assert (counts == 0).any() and counts[counts > 0].min() >= arpes.detection_limit
    np.testing.assert_array_equal(counts, np.round(counts))  # Poisson counts are integers


def test_arpes_edge_sensitivity(arpes_grid):
    arpes, theta, TH, image = arpes_grid
    s = arpes.sensitivity(theta)
    assert s[0] < 0.1 and s[-1] < 0.1
    assert s[np.abs(theta - theta.mean()) < 10].min() > 0.95
    # Same features, but measured through the detector: the edges lose most of their counts.
    edge = (TH < -21.7) | (TH > 23.3)
    centre = np.abs(TH - 0.8) < 15
    ratio_measured = image[edge].mean() / image[centre].mean()
    expected_free = arpes.spectral_weight(TH, 0 * TH + np.linspace(-15, 15, TH.shape[0])[:, None])
    ratio_free = expected_free[edge].mean() / expected_free[centre].mean()
    assert ratio_measured < 0.3 * ratio_free


def test_arpes_map_seed_sets_the_layout():
    theta, phi = np.meshgrid(np.linspace(-20, 20, 81), np.linspace(-15, 15, 61))
    a = ArpesMap(seed=1).intensity(theta, phi)
    np.testing.assert_array_equal(a, ArpesMap(seed=1).intensity(theta, phi))
    assert not np.array_equal(a, ArpesMap(seed=2).intensity(theta, phi))
    quiet = arpes_scan(ArpesMap(seed=1), theta[0], phi[:, 0], noise=False)
    np.testing.assert_array_equal(quiet["I"].values, a.ravel())
