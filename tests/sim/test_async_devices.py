"""Tests of the ophyd-async instruments, made with init_devices and driven by a real RunEngine."""

from __future__ import annotations

import time

import bluesky.plan_stubs as bps
import numpy as np
import pytest

pytest.importorskip("ophyd_async")  # ophyd-async needs Python 3.11

from bluesky import RunEngine
from bluesky.plans import count, grid_scan, scan
from bluesky.utils import FailedStatus
from ophyd_async.core import init_devices

from bluesky_digitwin.sim import (
    ArpesMap,
    FirstOrderMagnet,
    Magnetometer,
    MovingTransitionMagnet,
    SuperconductingFilm,
)
from bluesky_digitwin.sim.async_devices import (
    AsyncArpesDetector,
    AsyncMagnetometer,
    AsyncResistanceBridge,
)


@pytest.fixture
def RE() -> RunEngine:
    # Made before the devices: init_devices connects them in the RunEngine's event loop.
    return RunEngine({})


def run(RE: RunEngine, plan) -> list[tuple[str, dict]]:
    """Run ``plan`` and return its documents in order."""
    docs: list[tuple[str, dict]] = []
    RE(plan, lambda name, doc: docs.append((name, doc)))
    return docs


def column(docs: list[tuple[str, dict]], key: str) -> np.ndarray:
    return np.array([doc["data"][key] for name, doc in docs if name == "event"], dtype=float)


def descriptor(docs: list[tuple[str, dict]]) -> dict:
    (found,) = [doc for name, doc in docs if name == "descriptor"]
    return found


def test_init_devices_names_them_and_a_scan_reads_the_material(RE):
    with init_devices():
        amag = AsyncMagnetometer(FirstOrderMagnet(), noise=0.0)
    assert amag.name == "amag" and amag.temperature.name == "amag-temperature"
    RE(bps.mv(amag.field, 5000))
    docs = run(RE, scan([amag], amag.temperature, 10, 60, 11))

    keys = descriptor(docs)["data_keys"]
    assert {k: keys[k]["units"] for k in ("amag-temperature", "amag-field", "amag-moment")} == {
        "amag-temperature": "K",
        "amag-field": "Oe",
        "amag-moment": "emu",
    }
    T = column(docs, "amag-temperature")
    np.testing.assert_allclose(T, np.linspace(10, 60, 11))
    np.testing.assert_array_equal(column(docs, "amag-field"), 5000.0)
    expected = FirstOrderMagnet().moment(T, 5000.0)
    np.testing.assert_allclose(column(docs, "amag-moment"), expected, rtol=1e-12)
    assert expected[0] > 10 * expected[-1]  # through the transition


def test_the_device_hints_its_reading_only(RE):
    with init_devices():
        amag = AsyncMagnetometer()
    assert amag.hints == {"fields": ["amag-moment"]}
    docs = run(RE, scan([amag], amag.temperature, 10, 20, 2))
    start = docs[0][1]
    assert start["hints"]["dimensions"] == [(["amag-temperature"], "primary")]
    assert descriptor(docs)["hints"] == {"amag": {"fields": ["amag-moment"]}}


def test_the_same_seed_measures_the_same_as_the_ophyd_device(RE):
    """One material model for both libraries: same material, seed and positions, same noise."""
    material = MovingTransitionMagnet(noise_emu=1e-4)
    mag = Magnetometer(material, seed=5, name="mag")
    with init_devices():
        amag = AsyncMagnetometer(material, seed=5)
    readings = {}
    for device, key in ((mag, "mag_moment"), (amag, "amag-moment")):
        RE(bps.mv(device.field, 2500.0))
        readings[key] = column(run(RE, scan([device], device.temperature, 50, 100, 21)), key)
    np.testing.assert_array_equal(readings["mag_moment"], readings["amag-moment"])
    residual = readings["amag-moment"] - material.moment(np.linspace(50, 100, 21), 2500.0)
    assert 0.3e-4 < residual.std() < 3e-4  # noisy, by the material's noise


def test_the_sim_package_offers_them_beside_the_ophyd_ones():
    import bluesky_digitwin.sim as sim

    assert sim.AsyncMagnetometer is AsyncMagnetometer
    assert {"AsyncArpesDetector", "AsyncResistanceBridge", "Magnetometer"} <= set(sim.__all__)


def test_noise_none_keeps_the_materials_noise():
    noisy = FirstOrderMagnet(noise_emu=3e-6)
    assert AsyncMagnetometer(noisy, name="m").material.noise_emu == 3e-6
    assert AsyncMagnetometer(noisy, noise=0.0, name="m").material.noise_emu == 0.0
    assert AsyncResistanceBridge(name="b").material == SuperconductingFilm()
    assert AsyncArpesDetector(noise=False, name="a").material.poisson_noise is False


def test_resistance_bridge_and_arpes_detector_measure_their_materials(RE):
    film = SuperconductingFilm(noise_ohm=0.0)
    arpes_map = ArpesMap()
    with init_devices():
        bridge = AsyncResistanceBridge(film)
        arpes = AsyncArpesDetector(arpes_map, noise=False)
    RE(bps.mv(bridge.field, 10000))
    docs = run(RE, scan([bridge], bridge.temperature, 4.0, 8.0, 9))
    assert descriptor(docs)["data_keys"]["bridge-resistance"]["units"] == "ohm"
    T = column(docs, "bridge-temperature")
    np.testing.assert_allclose(
        column(docs, "bridge-resistance"), film.resistance(T, 10000.0), rtol=1e-12
    )

    (t0, t1) = arpes_map.theta_range_deg
    docs = run(RE, grid_scan([arpes], arpes.phi, -5, 5, 3, arpes.theta, t0, t1, 7))
    assert descriptor(docs)["data_keys"]["arpes-intensity"]["units"] == "counts"
    theta, phi = column(docs, "arpes-theta"), column(docs, "arpes-phi")
    counts = column(docs, "arpes-intensity")
    assert len(counts) == 21
    np.testing.assert_allclose(counts, arpes_map.intensity(theta, phi), rtol=1e-12)


def test_a_scan_mixes_an_ophyd_async_and_an_ophyd_device(RE):
    """The async magnetometer's temperature and moment, the ophyd magnetometer's field."""
    ophyd_mag = Magnetometer(name="mag")
    with init_devices():
        amag = AsyncMagnetometer(FirstOrderMagnet(), noise=0.0)
    docs = run(RE, grid_scan([amag], amag.temperature, 10, 60, 3, ophyd_mag.field, 0, 5e4, 2))
    start = docs[0][1]
    assert start["motors"] == ("amag-temperature", "mag_field")
    keys = descriptor(docs)["data_keys"]
    assert {"amag-temperature", "amag-moment", "mag_field", "mag_field_setpoint"} <= set(keys)
    np.testing.assert_array_equal(column(docs, "mag_field"), [0, 5e4] * 3)
    # The async instrument measures at its own field (0 Oe): the ophyd one moved its own.
    T = column(docs, "amag-temperature")
    np.testing.assert_allclose(column(docs, "amag-moment"), FirstOrderMagnet().moment(T, 0.0))


def test_a_failed_measurement_fails_the_plan_instead_of_hanging(RE):
    with init_devices():
        amag = AsyncMagnetometer(seconds_per_point=0.01)
    RE(bps.mv(amag.temperature, -1.0))
    with pytest.raises(FailedStatus) as failure:
        RE(count([amag]))
    assert "temperatures must be finite" in str(failure.value.__cause__)
    assert RE.state == "idle"


def test_seconds_per_point_paces_the_scan(RE):
    with init_devices():
        amag = AsyncMagnetometer(seconds_per_point=0.05)
    began = time.perf_counter()
    docs = run(RE, scan([amag], amag.temperature, 10, 20, 3))
    assert time.perf_counter() - began >= 0.15
    assert len(column(docs, "amag-moment")) == 3
    with pytest.raises(ValueError, match="seconds_per_point"):
        amag.seconds_per_point = -1
