"""Tests of the simulated instruments, driven by a real bluesky RunEngine."""

from __future__ import annotations

import time

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, grid_scan, scan
from bluesky.utils import FailedStatus
from ophyd.utils import ReadOnlyError

from bluesky_digitwin.sim import (
    ArpesDetector,
    ArpesMap,
    FirstOrderMagnet,
    Magnetometer,
    MovingTransitionMagnet,
    ResistanceBridge,
    SuperconductingFilm,
)


@pytest.fixture
def RE() -> RunEngine:
    return RunEngine({})


def run(RE: RunEngine, plan) -> list[tuple[str, dict]]:
    """Run ``plan`` and return its documents in order."""
    docs: list[tuple[str, dict]] = []
    RE(plan, lambda name, doc: docs.append((name, doc)))
    return docs


def column(docs: list[tuple[str, dict]], key: str) -> np.ndarray:
    """The values of ``key`` in the events of the documents, in order."""
    return np.array([doc["data"][key] for name, doc in docs if name == "event"], dtype=float)


def data_keys(docs: list[tuple[str, dict]]) -> dict:
    (descriptor,) = [doc for name, doc in docs if name == "descriptor"]
    return descriptor["data_keys"]


def test_magnetometer_scan_reads_the_material(RE):
    mag = Magnetometer(FirstOrderMagnet(), noise=0.0, seconds_per_point=0.0, name="mag")
    RE(bps.mv(mag.field, 5000))
    docs = run(RE, scan([mag.moment], mag.temperature, 10, 60, 11))
    T = column(docs, "mag_temperature")
    np.testing.assert_allclose(T, np.linspace(10, 60, 11))
    expected = FirstOrderMagnet().moment(T, 5000.0)
    np.testing.assert_allclose(column(docs, "mag_moment"), expected, rtol=1e-12)
    # Through the transition near 35-40 K the moment falls to a paramagnetic tail.
    assert expected[0] > 10 * expected[-1]
    keys = data_keys(docs)
    assert keys["mag_moment"]["units"] == "emu"
    assert keys["mag_temperature"]["units"] == "K"
    assert keys["mag_temperature_setpoint"]["units"] == "K"
    assert keys["mag_moment"]["source"].startswith("SIM:")


def test_whole_magnetometer_as_detector_records_both_axes(RE):
    mag = Magnetometer(MovingTransitionMagnet(), name="mag")
    RE(bps.mv(mag.field, 2500.0))
    docs = run(RE, scan([mag], mag.temperature, 50, 100, 6))
    keys = data_keys(docs)
    assert {keys[k]["units"] for k in ("mag_field", "mag_field_setpoint")} == {"Oe"}
    assert keys["mag_field_setpoint"]["dtype"] == "number"  # moved to a float, whatever given
    np.testing.assert_array_equal(column(docs, "mag_field"), 2500.0)
    T = column(docs, "mag_temperature")
    np.testing.assert_allclose(
        column(docs, "mag_moment"), MovingTransitionMagnet().moment(T, 2500.0), rtol=1e-12
    )


def test_count_measures_at_the_current_axes(RE):
    mag = Magnetometer(name="mag")
    fields = [1000.0, 20000.0]

    def plan():
        yield from bps.mv(mag.temperature, 40.0)
        for field in fields:
            yield from bps.mv(mag.field, field)
            yield from count([mag])

    docs = run(RE, plan())
    np.testing.assert_allclose(
        column(docs, "mag_moment"), mag.material.moment(40.0, np.array(fields)), rtol=1e-12
    )


def test_noise_is_gaussian_and_reproducible_with_a_seed(RE):
    def readings(seed: int) -> np.ndarray:
        mag = Magnetometer(FirstOrderMagnet(), noise=1e-4, seed=seed, name="mag")
        RE(bps.mv(mag.field, 5000))
        return column(run(RE, scan([mag], mag.temperature, 10, 60, 41)), "mag_moment")

    first, again, other = readings(1), readings(1), readings(2)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    residual = first - FirstOrderMagnet().moment(np.linspace(10, 60, 41), 5000.0)
    assert 0.5e-4 < residual.std() < 2e-4


def test_noise_none_keeps_the_materials_noise():
    noisy = FirstOrderMagnet(noise_emu=3e-6)
    assert Magnetometer(noisy, name="m").material.noise_emu == 3e-6
    assert Magnetometer(noisy, noise=0.0, name="m").material.noise_emu == 0.0
    assert ResistanceBridge(name="b").material.noise_ohm == SuperconductingFilm().noise_ohm
    assert ArpesDetector(noise=False, name="a").material.poisson_noise is False


def test_seconds_per_point_paces_the_scan(RE):
    mag = Magnetometer(seconds_per_point=0.05, name="mag")
    assert mag.seconds_per_point == 0.05
    began = time.perf_counter()
    docs = run(RE, scan([mag.moment], mag.temperature, 10, 20, 3))
    assert time.perf_counter() - began >= 0.15
    assert len(column(docs, "mag_moment")) == 3
    with pytest.raises(ValueError, match="seconds_per_point"):
        mag.seconds_per_point = -1


def test_a_failed_measurement_fails_the_plan_instead_of_hanging(RE):
    # The models reject T <= 0 K; the status must fail (bluesky raises) in both trigger paths.
    for seconds in (0.0, 0.01):
        mag = Magnetometer(seconds_per_point=seconds, name="mag")
        RE(bps.mv(mag.temperature, -1.0))
        with pytest.raises(FailedStatus) as failure:
            RE(count([mag.moment]))
        assert "temperatures must be finite" in str(failure.value.__cause__)


def test_axes_readback_is_read_only():
    mag = Magnetometer(name="mag")
    with pytest.raises(ReadOnlyError):
        mag.temperature.readback.put(3.0)


def test_resistance_bridge_reads_the_film(RE):
    film = SuperconductingFilm(noise_ohm=0.0)
    bridge = ResistanceBridge(film, name="bridge")
    RE(bps.mv(bridge.field, 10000))
    docs = run(RE, scan([bridge], bridge.temperature, 4.0, 8.0, 9))
    keys = data_keys(docs)
    assert keys["bridge_resistance"]["units"] == "ohm"
    assert keys["bridge_field"]["units"] == "Oe"
    T = column(docs, "bridge_temperature")
    R = column(docs, "bridge_resistance")
    np.testing.assert_allclose(R, film.resistance(T, 10000.0), rtol=1e-12)
    assert R[0] < 0.01 * film.R_normal_ohm < 0.99 * film.R_normal_ohm < R[-1]


def test_resistance_bridge_is_noisy_by_default(RE):
    bridge = ResistanceBridge(seed=3, name="bridge")
    docs = run(RE, scan([bridge], bridge.temperature, 9.0, 10.0, 30))  # normal state, flat
    residual = column(docs, "bridge_resistance") - SuperconductingFilm().R_normal_ohm
    assert 0.001 < residual.std() < 0.004


def test_arpes_grid_scan_shows_edges_and_detection_limit(RE):
    arpes_map = ArpesMap()
    arpes = ArpesDetector(arpes_map, noise=False, name="arpes")
    (t0, t1) = arpes_map.theta_range_deg
    docs = run(RE, grid_scan([arpes.intensity], arpes.phi, -5, 5, 3, arpes.theta, t0, t1, 7))
    keys = data_keys(docs)
    assert keys["arpes_intensity"]["units"] == "counts"
    assert keys["arpes_theta"]["units"] == keys["arpes_phi"]["units"] == "deg"
    theta, phi = column(docs, "arpes_theta"), column(docs, "arpes_phi")
    counts = column(docs, "arpes_intensity")
    assert len(counts) == 21
    np.testing.assert_allclose(counts, arpes_map.intensity(theta, phi), rtol=1e-12)
    # At the slit edges the sensitivity is ~5 %: the background falls under the detection limit.
    at_edges = np.isclose(theta, t0) | np.isclose(theta, t1)
    np.testing.assert_array_equal(counts[at_edges], 0.0)
    assert counts[~at_edges].max() > 50
    # The detection limit: every reading is 0 or at least the limit.
    assert np.all((counts == 0) | (counts >= arpes_map.detection_limit))


def test_arpes_counting_noise_is_reproducible(RE):
    def counts(seed: int) -> np.ndarray:
        arpes = ArpesDetector(seed=seed, name="arpes")

        def plan():
            for phi in (-2.0, 0.0, 2.0):  # two nested scans: phi outside, theta inside
                yield from bps.mv(arpes.phi, phi)
                yield from scan([arpes], arpes.theta, -10, 10, 5)

        return column(run(RE, plan()), "arpes_intensity")

    first = counts(7)
    np.testing.assert_array_equal(first, counts(7))
    assert np.all(first == np.round(first))  # Poisson counts are integers
    assert not np.array_equal(first, counts(8))


def test_an_instrument_read_whole_hints_its_reading_only(RE):
    """Its axes are what is scanned or held: bluesky's callbacks should plot the reading."""
    mag = Magnetometer(name="mag")
    assert mag.hints == {"fields": ["mag_moment"]}
    assert mag.temperature.hints == {"fields": ["mag_temperature"]}  # as a motor, its readback
    docs = run(RE, scan([mag], mag.temperature, 10, 20, 2))
    (descriptor,) = [doc for name, doc in docs if name == "descriptor"]
    assert descriptor["hints"] == {"mag": {"fields": ["mag_moment"]}}
    assert ArpesDetector(name="arpes").hints == {"fields": ["arpes_intensity"]}
