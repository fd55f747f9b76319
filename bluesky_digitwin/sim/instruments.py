"""What a simulated instrument is, whichever library makes it a device.

The simulated instruments exist twice: as ophyd devices (:mod:`bluesky_digitwin.sim.devices`)
and as ophyd-async devices (:mod:`bluesky_digitwin.sim.async_devices`). Both are built from the
same two pieces here, so that the physics (:mod:`bluesky_digitwin.sim.materials`) and what is
measured how stay in one place:

- an :class:`InstrumentSpec` says what an instrument kind is: its two axes (names, units,
  starting positions), its reading (name, units), the material it measures by default and the
  material parameter its ``noise`` argument sets;
- a :class:`MaterialProbe` is one instrument's measurement: its material (with the noise
  asked for) and its own noise generator, measuring at two axis positions.

A device of either library moves its axes, and on trigger hands their readbacks to
:meth:`MaterialProbe.measure`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bluesky_digitwin.sim.materials import (
    ArpesMap,
    FirstOrderMagnet,
    SuperconductingFilm,
)

__all__ = [
    "ARPES_DETECTOR",
    "MAGNETOMETER",
    "RESISTANCE_BRIDGE",
    "AxisSpec",
    "InstrumentSpec",
    "MaterialProbe",
    "check_seconds_per_point",
]


@dataclass(frozen=True)
class AxisSpec:
    """One movable axis of an instrument.

    Attributes
    ----------
    name
        Attribute name on the device (``temperature``); the data key is derived from it.
    units
        Engineering units written to the data keys.
    start
        Position when the device is made.
    precision
        Decimals shown by tables (None: the library's default).
    """

    name: str
    units: str
    start: float
    precision: int | None = None


@dataclass(frozen=True)
class InstrumentSpec:
    """An instrument kind: two axes, one reading, a default material and its noise parameter.

    Attributes
    ----------
    axes
        The two axes, in the order the material's methods take them.
    reading
        Name of the reading; also the material's noiseless method (``moment``, ...).
    units
        Units of the reading.
    precision
        Decimals of the reading shown by tables.
    default_material
        Makes the material measured when none is given.
    noise_parameter
        The material's field that the device's ``noise`` argument replaces.
    noise_type
        Type of that field (``float``: a standard deviation; ``bool``: counting noise on/off).
    """

    axes: tuple[AxisSpec, AxisSpec]
    reading: str
    units: str
    precision: int
    default_material: Callable[[], Any]
    noise_parameter: str
    noise_type: type

    def material_with(self, material: Any | None, noise: float | bool | None) -> Any:
        """``material`` (default: a new default one) with its noise set to ``noise`` if given."""
        material = material if material is not None else self.default_material()
        if noise is not None:
            value = self.noise_type(noise)
            material = dataclasses.replace(material, **{self.noise_parameter: value})
        return material


#: A magnetometer (SQUID/VSM): temperature and field, reading the moment of a magnet.
MAGNETOMETER = InstrumentSpec(
    axes=(AxisSpec("temperature", "K", 300.0), AxisSpec("field", "Oe", 0.0, precision=1)),
    reading="moment",
    units="emu",
    # Moments span 5e-5 to 0.1 emu: 6 decimals keep LiveTable's columns readable.
    precision=6,
    default_material=FirstOrderMagnet,
    noise_parameter="noise_emu",
    noise_type=float,
)

#: A resistance bridge in a cryostat with a magnet, reading a superconducting film.
RESISTANCE_BRIDGE = InstrumentSpec(
    axes=(AxisSpec("temperature", "K", 10.0), AxisSpec("field", "Oe", 0.0, precision=1)),
    reading="resistance",
    units="ohm",
    precision=5,
    default_material=SuperconductingFilm,
    noise_parameter="noise_ohm",
    noise_type=float,
)

#: A photoemission analyser over two emission angles, counting from an ARPES map.
ARPES_DETECTOR = InstrumentSpec(
    axes=(AxisSpec("theta", "deg", 0.0), AxisSpec("phi", "deg", 0.0)),
    reading="intensity",
    units="counts",
    precision=1,
    default_material=ArpesMap,
    noise_parameter="poisson_noise",
    noise_type=bool,
)


class MaterialProbe:
    """One instrument's measurement of its material at two axis positions.

    Parameters
    ----------
    spec
        The instrument kind.
    material
        The material measured (default: ``spec.default_material()``).
    noise
        Replaces the material's noise parameter (``spec.noise_parameter``) if not None.
    seed
        Seed (or Generator) of the noise: one generator per instrument, so that the same seed
        gives the same noise, point after point.
    """

    def __init__(
        self,
        spec: InstrumentSpec,
        material: Any | None = None,
        *,
        noise: float | bool | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.spec = spec
        self.material = spec.material_with(material, noise)
        self._rng = np.random.default_rng(seed)

    def measure(self, a: float, b: float) -> float:
        """The reading at axis positions ``a`` and ``b``, with the material's noise."""
        return self._evaluate(a, b, noisy=True)

    def noiseless(self, a: float, b: float) -> float:
        """The reading at ``a`` and ``b`` without noise; draws no random numbers."""
        return self._evaluate(a, b, noisy=False)

    def _evaluate(self, a: float, b: float, *, noisy: bool) -> float:
        # One-element arrays rather than scalars: the models are written for arrays (numpy's
        # Generator.poisson, for one, returns a plain int for a 0-d input).
        first = np.array([a], dtype=np.float64)
        second = np.array([b], dtype=np.float64)
        if noisy:
            values = self.material.measure(first, second, rng=self._rng)
        else:
            values = getattr(self.material, self.spec.reading)(first, second)
        return float(values[0])


def check_seconds_per_point(seconds: float) -> float:
    """``seconds`` as a float if it is a finite number >= 0, else a ValueError."""
    seconds = float(seconds)
    if not (np.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"seconds_per_point must be finite and >= 0, got {seconds}")
    return seconds
